/*
 * The CPU forward pass against a slow, obvious reference written here
 * independently: double precision, naive loops, and every position recomputed
 * from scratch over the whole prefix (no KV cache), so the cached incremental
 * path of inf_forward is checked position by position.
 *
 * Models are tiny and random (fixed LCG seed): GQA 4 query / 2 kv heads, in
 * two flavours: llama2.c-like (interleaved RoPE, tied embeddings) and
 * Qwen-like (half-split RoPE, q/k/v bias, q/k RMSNorm, head_dim != dim/heads,
 * separate classifier, Llama 3 RoPE scaling).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "inference/inference.h"

#define MAX_T 24

typedef struct tiny {
    inf_config c;
    inf_weights w;
    inf_layer layers[4];
    float *arena;           /* all weights */
    size_t used, cap;
    uint64_t rng;
} tiny;

static float urand(tiny *t)
{
    t->rng = t->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(t->rng >> 40) / (double)(1ull << 24)) - 0.5f;
}

/* n random floats scaled by `scale`, plus `offset`. */
static float *tensor(tiny *t, size_t n, float scale, float offset)
{
    assert_true(t->used + n <= t->cap);
    float *p = t->arena + t->used;
    t->used += n;
    for (size_t i = 0; i < n; i++)
        p[i] = offset + scale * urand(t);
    return p;
}

static void build(tiny *t, bool qwen)
{
    memset(t, 0, sizeof *t);
    t->rng = qwen ? 7 : 3;
    inf_config *c = &t->c;
    c->dim = 32;
    c->hidden_dim = 48;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = qwen ? 12 : 8;
    c->vocab_size = 64;
    c->seq_len = MAX_T;
    c->norm_eps = qwen ? 1e-6f : 1e-5f;
    c->rope_theta = qwen ? 1000.0f : 10000.0f;
    c->rope_style = qwen ? INF_ROPE_HALF : INF_ROPE_INTERLEAVED;
    if (qwen)
        c->rope_scaling = (inf_rope_scaling){INF_ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 16};
    c->qkv_bias = qwen;
    c->qk_norm = qwen;
    c->tied_embeddings = !qwen;
    c->bos_id = 1;
    c->n_eos = 1;
    c->eos_ids[0] = 2;
    t->cap = 200000;
    t->arena = malloc(t->cap * sizeof(float));
    assert_non_null(t->arena);
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim, hd = (size_t)c->head_dim;
    size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd;
    t->w.tok_embeddings = tensor(t, (size_t)c->vocab_size * d, 2.0f, 0.0f);
    for (int l = 0; l < c->n_layers; l++) {
        inf_layer *L = &t->layers[l];
        L->attn_norm = tensor(t, d, 0.5f, 1.0f);
        L->wq = tensor(t, qd * d, 2.0f / sqrtf((float)d), 0.0f);
        L->wk = tensor(t, kvd * d, 2.0f / sqrtf((float)d), 0.0f);
        L->wv = tensor(t, kvd * d, 2.0f / sqrtf((float)d), 0.0f);
        if (qwen) {
            L->bq = tensor(t, qd, 0.5f, 0.0f);
            L->bk = tensor(t, kvd, 0.5f, 0.0f);
            L->bv = tensor(t, kvd, 0.5f, 0.0f);
            L->q_norm = tensor(t, hd, 0.5f, 1.0f);
            L->k_norm = tensor(t, hd, 0.5f, 1.0f);
        }
        L->wo = tensor(t, d * qd, 2.0f / sqrtf((float)qd), 0.0f);
        L->ffn_norm = tensor(t, d, 0.5f, 1.0f);
        L->w1 = tensor(t, h * d, 2.0f / sqrtf((float)d), 0.0f);
        L->w2 = tensor(t, d * h, 2.0f / sqrtf((float)h), 0.0f);
        L->w3 = tensor(t, h * d, 2.0f / sqrtf((float)d), 0.0f);
    }
    t->w.layers = t->layers;
    t->w.final_norm = tensor(t, d, 0.5f, 1.0f);
    t->w.classifier = qwen ? tensor(t, (size_t)c->vocab_size * d, 2.0f, 0.0f)
                           : t->w.tok_embeddings;
}

/* ---- the reference: doubles, no cache -------------------------------- */

static void ref_rmsnorm(double *out, const double *x, const float *w, int n, double eps)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * r * w[i];
}

/* out (rows) = W (rows, cols) x (cols) [+ b] */
static void ref_linear(double *out, const float *W, const float *b, const double *x, int rows,
                       int cols)
{
    for (int r = 0; r < rows; r++) {
        double s = b ? b[r] : 0.0;
        for (int k = 0; k < cols; k++)
            s += (double)W[(size_t)r * cols + k] * x[k];
        out[r] = s;
    }
}

static double ref_freq(const inf_config *c, int j)
{
    double f = pow((double)c->rope_theta, -2.0 * j / c->head_dim);
    if (c->rope_scaling.type == INF_ROPE_SCALING_LLAMA3) {
        const inf_rope_scaling *s = &c->rope_scaling;
        double wavelen = 2 * M_PI / f;
        double lo = s->original_max_pos / s->low_freq_factor;
        double hi = s->original_max_pos / s->high_freq_factor;
        if (wavelen > lo)
            f = f / s->factor;
        else if (wavelen >= hi) {
            double sm = (s->original_max_pos / wavelen - s->low_freq_factor) /
                        (s->high_freq_factor - s->low_freq_factor);
            f = (1 - sm) * f / s->factor + sm * f;
        }
    }
    return f;
}

static void ref_rope(double *v, const inf_config *c, int pos)
{
    int hd = c->head_dim, half = hd / 2;
    for (int j = 0; j < half; j++) {
        double a = pos * ref_freq(c, j), co = cos(a), si = sin(a);
        int i0 = c->rope_style == INF_ROPE_INTERLEAVED ? 2 * j : j;
        int i1 = c->rope_style == INF_ROPE_INTERLEAVED ? 2 * j + 1 : j + half;
        double x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * co - x1 * si;
        v[i1] = x0 * si + x1 * co;
    }
}

/* Logits (vocab) at the last of tokens[0..T-1], from scratch. */
static void ref_logits(double *logits, const tiny *t, const int *tokens, int T)
{
    const inf_config *c = &t->c;
    int D = c->dim, H = c->hidden_dim, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    static double x[MAX_T][64], xn[MAX_T][64], q[MAX_T][64], k[MAX_T][32], v[MAX_T][32];
    static double att_out[MAX_T][64], tmp[64], g[64], u[64];
    for (int p = 0; p < T; p++)
        for (int i = 0; i < D; i++)
            x[p][i] = t->w.tok_embeddings[(size_t)tokens[p] * D + i];
    for (int l = 0; l < c->n_layers; l++) {
        const inf_layer *L = &t->layers[l];
        for (int p = 0; p < T; p++) {
            ref_rmsnorm(xn[p], x[p], L->attn_norm, D, c->norm_eps);
            ref_linear(q[p], L->wq, L->bq, xn[p], nh * hd, D);
            ref_linear(k[p], L->wk, L->bk, xn[p], nkv * hd, D);
            ref_linear(v[p], L->wv, L->bv, xn[p], nkv * hd, D);
            for (int h = 0; h < nh; h++) {
                if (L->q_norm)
                    ref_rmsnorm(q[p] + h * hd, q[p] + h * hd, L->q_norm, hd, c->norm_eps);
                ref_rope(q[p] + h * hd, c, p);
            }
            for (int h = 0; h < nkv; h++) {
                if (L->k_norm)
                    ref_rmsnorm(k[p] + h * hd, k[p] + h * hd, L->k_norm, hd, c->norm_eps);
                ref_rope(k[p] + h * hd, c, p);
            }
        }
        /* causal attention, head h reads kv head h / (nh / nkv) */
        for (int p = 0; p < T; p++) {
            for (int h = 0; h < nh; h++) {
                int kh = h / (nh / nkv);
                double sc[MAX_T], mx = -INFINITY, sum = 0.0;
                for (int s = 0; s <= p; s++) {
                    double d = 0.0;
                    for (int i = 0; i < hd; i++)
                        d += q[p][h * hd + i] * k[s][kh * hd + i];
                    sc[s] = d / sqrt((double)hd);
                    if (sc[s] > mx)
                        mx = sc[s];
                }
                for (int s = 0; s <= p; s++)
                    sum += (sc[s] = exp(sc[s] - mx));
                for (int i = 0; i < hd; i++) {
                    double o = 0.0;
                    for (int s = 0; s <= p; s++)
                        o += sc[s] / sum * v[s][kh * hd + i];
                    att_out[p][h * hd + i] = o;
                }
            }
            ref_linear(tmp, L->wo, NULL, att_out[p], D, nh * hd);
            for (int i = 0; i < D; i++)
                x[p][i] += tmp[i];
            ref_rmsnorm(xn[p], x[p], L->ffn_norm, D, c->norm_eps);
            ref_linear(g, L->w1, NULL, xn[p], H, D);
            ref_linear(u, L->w3, NULL, xn[p], H, D);
            for (int i = 0; i < H; i++)
                g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_linear(tmp, L->w2, NULL, g, D, H);
            for (int i = 0; i < D; i++)
                x[p][i] += tmp[i];
        }
    }
    ref_rmsnorm(xn[T - 1], x[T - 1], t->w.final_norm, D, c->norm_eps);
    ref_linear(logits, t->w.classifier, NULL, xn[T - 1], c->vocab_size, D);
}

static void check_model(bool qwen)
{
    tiny t;
    build(&t, qwen);
    inf_model *m;
    inf_error err = {0};
    if (inf_model_create(&m, &t.c, &t.w, &err))
        fail_msg("%s", err.message);
    inf_state *s;
    assert_int_equal(inf_state_new(&s, m, 2, MAX_T, &err), 0);
    int tokens[MAX_T];
    uint64_t r = qwen ? 11 : 5;
    for (int p = 0; p < MAX_T; p++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        tokens[p] = (int)((r >> 33) % 64);
    }
    double ref[64], worst = 0.0;
    for (int p = 0; p < MAX_T; p++) {
        /* sequence 1 runs the same tokens: a second cache slot gives the same logits */
        const float *got = inf_forward(s, 1, tokens[p], p, &err);
        assert_non_null(got);
        ref_logits(ref, &t, tokens, p + 1);
        for (int i = 0; i < 64; i++) {
            double e = fabs((double)got[i] - ref[i]) / (1.0 + fabs(ref[i]));
            if (e > worst)
                worst = e;
        }
    }
    if (worst > 2e-5)
        fail_msg("%s model: worst relative logit error %g > 2e-5", qwen ? "qwen" : "llama",
                 worst);
    inf_state_free(s);
    inf_model_free(m);
    free(t.arena);
}

static void test_inference_reference__llama_tiny(void **state)
{
    check_model(false);
}

static void test_inference_reference__qwen_tiny(void **state)
{
    check_model(true);
}

/* inf_model_create validates: each broken field gives INF_EINVALID, named. */
static void test_inference_reference__bad_configs(void **state)
{
    tiny t;
    build(&t, true);
    static const struct {
        int which;
        const char *needle;
    } cases[] = {
        {0, "n_kv_heads"}, {1, "head_dim"}, {2, "norm_eps"}, {3, "rope_theta"},
        {4, "llama3"},     {5, "bias"},     {6, "eos"},      {7, "n_layers"},
        {8, "multiple"},   {9, "classifier"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        inf_config c = t.c;
        inf_weights w = t.w;
        inf_layer layers[4];
        memcpy(layers, t.layers, sizeof layers);
        w.layers = layers;
        switch (cases[i].which) {
        case 0: c.n_kv_heads = 8; break;
        case 1: c.head_dim = 7; break;
        case 2: c.norm_eps = -1.0f; break;
        case 3: c.rope_theta = NAN; break;
        case 4: c.rope_scaling.high_freq_factor = 0.5f; break;
        case 5: layers[1].bk = NULL; break;
        case 6: c.eos_ids[0] = 64; break;
        case 7: c.n_layers = 0; break;
        case 8: c.n_kv_heads = 3; break;
        case 9: w.classifier = NULL; break;
        }
        inf_model *m = NULL;
        inf_error err = {0};
        assert_int_equal(inf_model_create(&m, &c, &w, &err), INF_EINVALID);
        assert_null(m);
        if (!strstr(err.message, cases[i].needle))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, cases[i].needle);
    }
    /* state sizes are checked too */
    inf_model *m;
    assert_int_equal(inf_model_create(&m, &t.c, &t.w, NULL), 0);
    inf_state *s = NULL;
    inf_error err = {0};
    assert_int_equal(inf_state_new(&s, m, 1, MAX_T + 1, &err), INF_ELIMIT);
    assert_int_equal(inf_state_new(&s, m, 0, 4, &err), INF_ELIMIT);
    assert_null(s);
    inf_model_free(m);

    /* A long context: absurd requests are refused before anything is sized by them. */
    inf_config big = t.c;
    big.seq_len = 1 << 20;
    assert_int_equal(inf_model_create(&m, &big, &t.w, NULL), 0);
    assert_int_equal(inf_state_new(&s, m, 4096, 1 << 20, &err), INF_ELIMIT);
    assert_non_null(strstr(err.message, "limit"));
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.n_samples = 4096;
    o.max_tokens = 1 << 20;
    int prompt = 1;
    inf_result r;
    assert_int_equal(inf_generate(&r, m, NULL, &prompt, 1, &o, &err), INF_ELIMIT);
    assert_non_null(strstr(err.message, "limit"));
    assert_null(r.samples);
    inf_model_free(m);
    free(t.arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_reference__llama_tiny),
        cmocka_unit_test(test_inference_reference__qwen_tiny),
        cmocka_unit_test(test_inference_reference__bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
