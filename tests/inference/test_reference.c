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
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>

#include "inference/inference.h"
#include "inference/inference_int.h"

#define MAX_T 24

/* The float weights the reference reads (after rounding to the model's dtype). */
typedef struct ref_layer {
    float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *q_norm, *k_norm, *wo, *ffn_norm, *w1, *w2,
        *w3;
} ref_layer;

typedef struct tiny {
    inf_config c;
    inf_dtype dtype;        /* of the matrices the model gets */
    ref_layer rl[4];
    float *emb, *cls;       /* (vocab, dim) */
    inf_weights w;          /* the model's view: matrices in `bytes` */
    inf_layer layers[4];
    float *arena;           /* all float weights */
    size_t used, cap;
    unsigned char *bytes;   /* converted matrices */
    size_t bused, bcap;
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

/* Stores the (rows, cols) float matrix p as t->dtype and rounds p to what
 * was stored, so the reference computes with exactly the model's weights. */
static inf_mat mat(tiny *t, float *p, size_t rows, size_t cols)
{
    size_t n = inf_dtype_row_bytes(t->dtype, cols) * rows;
    assert_true(n > 0 && t->bused + n <= t->bcap);
    unsigned char *b = t->bytes + t->bused;
    t->bused += n;
    assert_int_equal(inf_dtype_from_f32(b, t->dtype, p, rows * cols), 0);
    inf_dtype_to_f32(p, t->dtype, b, rows * cols);
    return (inf_mat){.data = b, .type = t->dtype};
}

/* Flavours: FLAVOR_QWEN has both q/k/v bias and q/k norm (no HF
 * architecture has both); QWEN2 only the bias, QWEN3 only the norm. */
enum { FLAVOR_LLAMA = 0, FLAVOR_QWEN = 1, FLAVOR_QWEN2, FLAVOR_QWEN3 };

static void build_flavor(tiny *t, int flavor, inf_dtype dtype, inf_dtype vec_dtype);

static void build(tiny *t, bool qwen, inf_dtype dtype)
{
    build_flavor(t, qwen ? FLAVOR_QWEN : FLAVOR_LLAMA, dtype, INF_DTYPE_F32);
}

/* Rounds the n floats at p to what `type` can hold. */
static void round_to(float *p, size_t n, inf_dtype type)
{
    float h[64];    /* room for 64 elements of any non-Q8_0 type */
    assert_true(type != INF_DTYPE_Q8_0);
    for (size_t i = 0; i < n; i += 64) {
        size_t k = n - i < 64 ? n - i : 64;
        inf_dtype_from_f32(h, type, p + i, k);
        inf_dtype_to_f32(p + i, type, h, k);
    }
}

/* vec_dtype: what norms and biases are rounded to (a bf16 checkpoint stores
 * them as bf16 too). */
static void build_flavor(tiny *t, int flavor, inf_dtype dtype, inf_dtype vec_dtype)
{
    bool qwen = flavor != FLAVOR_LLAMA;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->rng = qwen ? 7 : 3;
    inf_config *c = &t->c;
    c->dim = 32;
    /* llama: rows Q8_0 can hold (multiples of 32); qwen: 56 = 3*16 + 8, so
     * w2's rows end in the fused rule's last half block (a masked tail in the
     * AVX-512 kernels) */
    c->hidden_dim = qwen ? 56 : 64;
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
    c->qkv_bias = flavor == FLAVOR_QWEN || flavor == FLAVOR_QWEN2;
    c->qk_norm = flavor == FLAVOR_QWEN || flavor == FLAVOR_QWEN3;
    c->tied_embeddings = !qwen;
    c->bos_id = 1;
    c->n_eos = 1;
    c->eos_ids[0] = 2;
    t->cap = 200000;
    t->arena = malloc(t->cap * sizeof(float));
    assert_non_null(t->arena);
    t->bcap = t->cap * sizeof(float);
    t->bytes = malloc(t->bcap);
    assert_non_null(t->bytes);
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim, hd = (size_t)c->head_dim;
    size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd;
    t->emb = tensor(t, (size_t)c->vocab_size * d, 2.0f, 0.0f);
    t->w.tok_embeddings = mat(t, t->emb, (size_t)c->vocab_size, d);
    for (int l = 0; l < c->n_layers; l++) {
        ref_layer *R = &t->rl[l];
        inf_layer *L = &t->layers[l];
        L->attn_norm = R->attn_norm = tensor(t, d, 0.5f, 1.0f);
        R->wq = tensor(t, qd * d, 2.0f / sqrtf((float)d), 0.0f);
        R->wk = tensor(t, kvd * d, 2.0f / sqrtf((float)d), 0.0f);
        R->wv = tensor(t, kvd * d, 2.0f / sqrtf((float)d), 0.0f);
        L->wq = mat(t, R->wq, qd, d);
        L->wk = mat(t, R->wk, kvd, d);
        L->wv = mat(t, R->wv, kvd, d);
        if (c->qkv_bias) {
            L->bq = R->bq = tensor(t, qd, 0.5f, 0.0f);
            L->bk = R->bk = tensor(t, kvd, 0.5f, 0.0f);
            L->bv = R->bv = tensor(t, kvd, 0.5f, 0.0f);
            round_to(R->bq, qd, vec_dtype);
            round_to(R->bk, kvd, vec_dtype);
            round_to(R->bv, kvd, vec_dtype);
        }
        if (c->qk_norm) {
            L->q_norm = R->q_norm = tensor(t, hd, 0.5f, 1.0f);
            L->k_norm = R->k_norm = tensor(t, hd, 0.5f, 1.0f);
            round_to(R->q_norm, hd, vec_dtype);
            round_to(R->k_norm, hd, vec_dtype);
        }
        round_to(R->attn_norm, d, vec_dtype);
        R->wo = tensor(t, d * qd, 2.0f / sqrtf((float)qd), 0.0f);
        L->wo = mat(t, R->wo, d, qd);
        L->ffn_norm = R->ffn_norm = tensor(t, d, 0.5f, 1.0f);
        round_to(R->ffn_norm, d, vec_dtype);
        R->w1 = tensor(t, h * d, 2.0f / sqrtf((float)d), 0.0f);
        R->w2 = tensor(t, d * h, 2.0f / sqrtf((float)h), 0.0f);
        R->w3 = tensor(t, h * d, 2.0f / sqrtf((float)d), 0.0f);
        L->w1 = mat(t, R->w1, h, d);
        L->w2 = mat(t, R->w2, d, h);
        L->w3 = mat(t, R->w3, h, d);
    }
    t->w.layers = t->layers;
    float *fn = tensor(t, d, 0.5f, 1.0f);
    round_to(fn, d, vec_dtype);
    t->w.final_norm = fn;
    if (qwen) {
        t->cls = tensor(t, (size_t)c->vocab_size * d, 2.0f, 0.0f);
        t->w.classifier = mat(t, t->cls, (size_t)c->vocab_size, d);
    } else {
        t->cls = t->emb;
        t->w.classifier = t->w.tok_embeddings;
    }
}

static void tiny_free(tiny *t)
{
    free(t->arena);
    free(t->bytes);
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
            x[p][i] = t->emb[(size_t)tokens[p] * D + i];
    for (int l = 0; l < c->n_layers; l++) {
        const ref_layer *L = &t->rl[l];
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
    ref_linear(logits, t->cls, NULL, xn[T - 1], c->vocab_size, D);
}

/* Worst relative logit error of model m against the reference of t over
 * MAX_T positions of a fixed random token sequence. */
static double worst_error(const tiny *t, const inf_model *m)
{
    inf_error err = {0};
    inf_state *s;
    assert_int_equal(inf_state_new(&s, m, 2, MAX_T, &err), 0);
    int tokens[MAX_T];
    uint64_t r = t->c.rope_style == INF_ROPE_HALF ? 11 : 5;
    for (int p = 0; p < MAX_T; p++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        tokens[p] = (int)((r >> 33) % 64);
    }
    double ref[64], worst = 0.0;
    for (int p = 0; p < MAX_T; p++) {
        /* sequence 1 runs the same tokens: a second cache slot gives the same logits */
        const float *got = inf_forward(s, 1, tokens[p], p, &err);
        assert_non_null(got);
        ref_logits(ref, t, tokens, p + 1);
        for (int i = 0; i < 64; i++) {
            double e = fabs((double)got[i] - ref[i]) / (1.0 + fabs(ref[i]));
            if (e > worst)
                worst = e;
        }
    }
    inf_state_free(s);
    return worst;
}

static void check_model(bool qwen, inf_dtype dtype)
{
    tiny t;
    build(&t, qwen, dtype);
    inf_model *m;
    inf_error err = {0};
    if (inf_model_create(&m, &t.c, &t.w, &err))
        fail_msg("%s", err.message);
    double worst = worst_error(&t, m);
    if (worst > 2e-5)
        fail_msg("%s %s model: worst relative logit error %g > 2e-5", qwen ? "qwen" : "llama",
                 inf_dtype_name(dtype), worst);
    inf_model_free(m);
    tiny_free(&t);
}

static void test_inference_reference__llama_tiny(void **state)
{
    check_model(false, INF_DTYPE_F32);
}

static void test_inference_reference__qwen_tiny(void **state)
{
    check_model(true, INF_DTYPE_F32);
}

/* The same models with bf16, f16 and Q8_0 matrices, read as stored (the
 * reference computes with the identical rounded values). */
static void test_inference_reference__dtypes(void **state)
{
    static const inf_dtype types[] = {INF_DTYPE_BF16, INF_DTYPE_F16, INF_DTYPE_Q8_0};
    for (size_t i = 0; i < 3; i++) {
        check_model(false, types[i]);
        if (types[i] != INF_DTYPE_Q8_0)     /* qwen's q_dim 48 is no Q8_0 row length */
            check_model(true, types[i]);
    }
}

/* A group of 6 samples (batched matmul over a converted row) is
 * bit-identical to each sample alone (the per-dtype single-stream dots read
 * straight from the weights, split by rows over 1, 2 or 3 threads), for
 * every dtype; and a group of 11 (8-wide + single dots) to the same group
 * split over 3 threads. */
static void test_inference_reference__dtype_batch_identical(void **state)
{
    static const inf_dtype types[] = {INF_DTYPE_F32, INF_DTYPE_BF16, INF_DTYPE_F16,
                                      INF_DTYPE_Q8_0};
    for (size_t i = 0; i < 4; i++) {
        tiny t;
        build(&t, types[i] != INF_DTYPE_Q8_0, types[i]);
        inf_model *m;
        assert_int_equal(inf_model_create(&m, &t.c, &t.w, NULL), 0);
        inf_gen_options o = INF_GEN_OPTIONS_INIT;
        o.n_samples = 6;
        o.max_tokens = 16;
        o.seed = 42;
        o.ignore_eos = true;
        int prompt[3] = {5, 9, 13};
        inf_result all, one;
        inf_error err = {0};
        if (inf_generate(&all, m, NULL, prompt, 3, &o, &err))
            fail_msg("%s", err.message);
        for (int j = 0; j < 6; j++) {
            inf_gen_options o1 = o;
            o1.n_samples = 1;
            o1.first_sample = (uint64_t)j;
            o1.n_threads = 1 + j % 3;   /* alone, row-parallel over 1, 2 or 3 threads */
            assert_int_equal(inf_generate(&one, m, NULL, prompt, 3, &o1, &err), 0);
            assert_int_equal(one.samples[0].n_tokens, all.samples[j].n_tokens);
            assert_memory_equal(one.samples[0].tokens, all.samples[j].tokens,
                                one.samples[0].n_tokens * sizeof(int));
            assert_memory_equal(one.samples[0].logprobs, all.samples[j].logprobs,
                                one.samples[0].n_tokens * sizeof(float));
            inf_result_free(&one);
        }
        inf_result_free(&all);
        inf_result g1, g3;
        o.n_samples = 11;
        assert_int_equal(inf_generate(&g1, m, NULL, prompt, 3, &o, &err), 0);
        o.n_threads = 3;
        assert_int_equal(inf_generate(&g3, m, NULL, prompt, 3, &o, &err), 0);
        for (int j = 0; j < 11; j++) {
            assert_memory_equal(g1.samples[j].tokens, g3.samples[j].tokens,
                                g1.samples[j].n_tokens * sizeof(int));
            assert_memory_equal(g1.samples[j].logprobs, g3.samples[j].logprobs,
                                g1.samples[j].n_tokens * sizeof(float));
        }
        inf_result_free(&g1);
        inf_result_free(&g3);
        inf_model_free(m);
        tiny_free(&t);
    }
}

/* The AVX-512, AVX/FMA and plain C kernels give the same bits: a group of 13
 * (4 x 6 tiles and their remainders) and a single stream generate identical
 * tokens and logprobs with each set of CPU features switched off, for every
 * dtype (on a CPU without a path, the runs simply share one). */
static void test_inference_reference__cpu_paths_identical(void **state)
{
    static const inf_dtype types[] = {INF_DTYPE_F32, INF_DTYPE_BF16, INF_DTYPE_F16,
                                      INF_DTYPE_Q8_0};
    static const int disabled[] = {INF__CPU_AVX512, INF__CPU_FMA | INF__CPU_AVX512,
                                   INF__CPU_AVX | INF__CPU_FMA | INF__CPU_AVX512};
    for (size_t i = 0; i < 4; i++) {
        tiny t;
        build(&t, types[i] != INF_DTYPE_Q8_0, types[i]);
        inf_model *m;
        assert_int_equal(inf_model_create(&m, &t.c, &t.w, NULL), 0);
        int prompt[3] = {5, 9, 13};
        for (int n = 1; n <= 13; n += 12) {
            inf_gen_options o = INF_GEN_OPTIONS_INIT;
            o.n_samples = n;
            o.max_tokens = 12;
            o.seed = 7;
            o.ignore_eos = true;
            inf_result all, other;
            inf_error err = {0};
            inf__cpu_disabled = 0;
            assert_int_equal(inf_generate(&all, m, NULL, prompt, 3, &o, &err), 0);
            for (size_t k = 0; k < sizeof disabled / sizeof disabled[0]; k++) {
                inf__cpu_disabled = disabled[k];
                int rc = inf_generate(&other, m, NULL, prompt, 3, &o, &err);
                inf__cpu_disabled = 0;
                assert_int_equal(rc, 0);
                for (int j = 0; j < n; j++) {
                    assert_int_equal(other.samples[j].n_tokens, all.samples[j].n_tokens);
                    assert_memory_equal(other.samples[j].tokens, all.samples[j].tokens,
                                        all.samples[j].n_tokens * sizeof(int));
                    assert_memory_equal(other.samples[j].logprobs, all.samples[j].logprobs,
                                        all.samples[j].n_tokens * sizeof(float));
                }
                inf_result_free(&other);
            }
            inf_result_free(&all);
        }
        inf_model_free(m);
        tiny_free(&t);
    }
}

/* Removes the flat directory `dir` and its files. */
static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

/*
 * Tiny Llama (interleaved RoPE: the writer permutes q/k to HF's half layout),
 * Qwen2 (bias) and Qwen3 (q/k norm) models written as HF directories in f32,
 * bf16 and f16 (one of them sharded) and loaded back: the loaded model's
 * logits match the double-precision reference of the original weights.
 */
static void test_inference_reference__hf_roundtrip(void **state)
{
    static const int flavors[] = {FLAVOR_LLAMA, FLAVOR_QWEN2, FLAVOR_QWEN3};
    static const inf_dtype types[] = {INF_DTYPE_F32, INF_DTYPE_BF16, INF_DTYPE_F16};
    for (size_t fi = 0; fi < 3; fi++)
        for (size_t ti = 0; ti < 3; ti++) {
            tiny t;
            build_flavor(&t, flavors[fi], types[ti], types[ti]);
            inf_model *m, *back;
            inf_error err = {0};
            assert_int_equal(inf_model_create(&m, &t.c, &t.w, NULL), 0);
            char dir[] = "/tmp/inf_hf_XXXXXX";
            assert_non_null(mkdtemp(dir));
            size_t shard = ti == 1 ? 4096 : 0;
            if (inf_model_save_hf(m, dir, types[ti], shard, &err) ||
                inf_model_load_hf(&back, dir, &err))
                fail_msg("flavor %d %s: %s", flavors[fi], inf_dtype_name(types[ti]),
                         err.message);
            const inf_config *bc = inf_model_config(back);
            assert_int_equal(bc->rope_style, INF_ROPE_HALF);
            assert_int_equal(bc->qkv_bias, t.c.qkv_bias);
            assert_int_equal(bc->qk_norm, t.c.qk_norm);
            assert_int_equal(bc->tied_embeddings, t.c.tied_embeddings);
            assert_true(bc->norm_eps == t.c.norm_eps && bc->rope_theta == t.c.rope_theta);
            assert_int_equal(bc->rope_scaling.type, t.c.rope_scaling.type);
            double worst = worst_error(&t, back);
            if (worst > 2e-5)
                fail_msg("flavor %d %s via HF: worst relative logit error %g", flavors[fi],
                         inf_dtype_name(types[ti]), worst);
            inf_model_free(back);
            inf_model_free(m);
            rm_dir(dir);
            tiny_free(&t);
        }
}

/*
 * The same through GGUF files: Llama (interleaved, as GGUF llama stores it),
 * Qwen2 and Qwen3 (half) in f32/f16/bf16, Llama also in Q8_0, and a Llama
 * loaded from HF (half order) written back to GGUF (rows permuted back).
 * Q8_0 logits also stay near the f32 model's.
 */
static void test_inference_reference__gguf_roundtrip(void **state)
{
    static const int flavors[] = {FLAVOR_LLAMA, FLAVOR_QWEN2, FLAVOR_QWEN3};
    static const inf_dtype types[] = {INF_DTYPE_F32, INF_DTYPE_F16, INF_DTYPE_BF16,
                                      INF_DTYPE_Q8_0};
    for (size_t fi = 0; fi < 3; fi++)
        for (size_t ti = 0; ti < 4; ti++) {
            if (types[ti] == INF_DTYPE_Q8_0 && flavors[fi] != FLAVOR_LLAMA)
                continue;   /* the qwen flavours' q_dim 48 is no Q8_0 row length */
            tiny t;
            build_flavor(&t, flavors[fi], types[ti], INF_DTYPE_F32);
            if (flavors[fi] == FLAVOR_LLAMA)  /* GGUF stores no rope scaling here */
                assert_int_equal(t.c.rope_scaling.type, INF_ROPE_SCALING_NONE);
            else
                t.c.rope_scaling.type = INF_ROPE_SCALING_NONE;
            inf_model *m, *back, *hf = NULL;
            inf_error err = {0};
            assert_int_equal(inf_model_create(&m, &t.c, &t.w, NULL), 0);
            char path[] = "/tmp/inf_gguf_XXXXXX";
            int fd = mkstemp(path);
            assert_true(fd >= 0);
            close(fd);
            const inf_model *src = m;
            char dir[] = "/tmp/inf_hf_XXXXXX";
            bool via_hf = flavors[fi] == FLAVOR_LLAMA && types[ti] == INF_DTYPE_F32;
            if (via_hf) {
                assert_non_null(mkdtemp(dir));
                if (inf_model_save_hf(m, dir, INF_DTYPE_F32, 0, &err) ||
                    inf_model_load_hf(&hf, dir, &err))
                    fail_msg("%s", err.message);
                assert_int_equal(inf_model_config(hf)->rope_style, INF_ROPE_HALF);
                src = hf;
            }
            if (inf_model_save_gguf(src, path, types[ti], &err) ||
                inf_model_load_gguf(&back, path, &err))
                fail_msg("flavor %d %s: %s", flavors[fi], inf_dtype_name(types[ti]),
                         err.message);
            assert_int_equal(inf_model_config(back)->rope_style,
                             flavors[fi] == FLAVOR_LLAMA ? INF_ROPE_INTERLEAVED : INF_ROPE_HALF);
            double worst = worst_error(&t, back);
            if (worst > 2e-5)
                fail_msg("flavor %d %s via GGUF: worst relative logit error %g", flavors[fi],
                         inf_dtype_name(types[ti]), worst);
            if (types[ti] == INF_DTYPE_Q8_0) {
                /* against the same weights unquantized */
                tiny f;
                build_flavor(&f, FLAVOR_LLAMA, INF_DTYPE_F32, INF_DTYPE_F32);
                double q8_vs_f32 = worst_error(&f, back);
                /* 8-bit weights (~0.4% RMS error each) through two layers and
                 * 24 positions; the worst of 1536 logits stays within 10% */
                if (!(q8_vs_f32 < 0.1 && q8_vs_f32 > 1e-4))
                    fail_msg("Q8_0 logits differ from f32 by %g (relative)", q8_vs_f32);
                tiny_free(&f);
            }
            inf_model_free(back);
            inf_model_free(hf);
            inf_model_free(m);
            if (via_hf)
                rm_dir(dir);
            unlink(path);
            tiny_free(&t);
        }
}

/* Conversions against values worked out by hand. */
static void test_inference_reference__dtype_conversions(void **state)
{
    float in[4] = {1.0f, -2.5f, 65504.0f, 1.0f + 0x1p-9f}, out[4];
    uint16_t h[4];
    assert_int_equal(inf_dtype_from_f32(h, INF_DTYPE_BF16, in, 4), 0);
    assert_int_equal(h[0], 0x3f80);
    assert_int_equal(h[1], 0xc020);
    assert_int_equal(h[3], 0x3f80);         /* 1 + 2^-9 is a tie: rounds to even */
    assert_int_equal(inf_dtype_from_f32(h, INF_DTYPE_F16, in, 4), 0);
    assert_int_equal(h[0], 0x3c00);
    assert_int_equal(h[1], 0xc100);
    assert_int_equal(h[2], 0x7bff);
    inf_dtype_to_f32(out, INF_DTYPE_F16, h, 3);
    assert_memory_equal(out, in, 3 * sizeof(float));
    uint16_t sub = 0x0001;                  /* smallest f16 subnormal */
    inf_dtype_to_f32(out, INF_DTYPE_F16, &sub, 1);
    assert_true(out[0] == 0x1p-24f);
    float tiny_v = 0x1p-24f;
    assert_int_equal(inf_dtype_from_f32(h, INF_DTYPE_F16, &tiny_v, 1), 0);
    assert_int_equal(h[0], 0x0001);
    /* Q8_0: d = max|x| / 127, q = round(x / d) */
    float blk[32] = {0};
    blk[0] = 127.0f;
    blk[1] = -63.6f;
    unsigned char q[34];
    assert_int_equal(inf_dtype_from_f32(q, INF_DTYPE_Q8_0, blk, 32), 0);
    assert_int_equal(q[0] | q[1] << 8, 0x3c00);     /* d = 1 */
    assert_int_equal((int8_t)q[2], 127);
    assert_int_equal((int8_t)q[3], -64);
    assert_int_equal(inf_dtype_from_f32(q, INF_DTYPE_Q8_0, blk, 31), INF_EINVALID);
    assert_int_equal(inf_dtype_row_bytes(INF_DTYPE_Q8_0, 64), 68);
    assert_int_equal(inf_dtype_row_bytes(INF_DTYPE_Q8_0, 48), 0);
    assert_string_equal(inf_dtype_name(INF_DTYPE_BF16), "bf16");
}

/* inf_model_create validates: each broken field gives INF_EINVALID, named. */
static void test_inference_reference__bad_configs(void **state)
{
    tiny t;
    build(&t, true, INF_DTYPE_F32);
    static const struct {
        int which;
        const char *needle;
    } cases[] = {
        {0, "n_kv_heads"}, {1, "head_dim"}, {2, "norm_eps"}, {3, "rope_theta"},
        {4, "llama3"},     {5, "bias"},     {6, "eos"},      {7, "n_layers"},
        {8, "multiple"},   {9, "classifier"}, {10, "not a multiple of 32"},
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
        case 9: w.classifier.data = NULL; break;
        case 10: layers[0].wo.type = INF_DTYPE_Q8_0; break;   /* rows of q_dim 48 */
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
    tiny_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_reference__llama_tiny),
        cmocka_unit_test(test_inference_reference__qwen_tiny),
        cmocka_unit_test(test_inference_reference__bad_configs),
        cmocka_unit_test(test_inference_reference__dtypes),
        cmocka_unit_test(test_inference_reference__dtype_batch_identical),
        cmocka_unit_test(test_inference_reference__cpu_paths_identical),
        cmocka_unit_test(test_inference_reference__dtype_conversions),
        cmocka_unit_test(test_inference_reference__hf_roundtrip),
        cmocka_unit_test(test_inference_reference__gguf_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
