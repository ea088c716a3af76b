/*
 * Batched prompt prefill (inf__forward_prompt): a prompt run many positions
 * a pass leaves the same bits as the same prompt run one token at a time
 * (inf_forward): the last position's logits and the whole KV cache of the
 * prompt, for tiny random models of each architecture the loaders produce
 * (llama: interleaved RoPE, tied embeddings; Qwen2: half RoPE, q/k/v bias,
 * untied; Qwen3: half RoPE, q/k RMSNorm), several weight types, prompt
 * lengths around the chunk size, and 1 and 2 threads. Then inf_generate's
 * first token and logprob equal those computed from token-by-token logits,
 * and the CPU attention's bits equal its original one-chain-per-score form.
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
#include "inference/inference_int.h"

enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3 };

#define N_LAYERS 2
#define SEQ_LEN  512
#define VOCAB    96

/* A random model whose weights live here; `m` borrows them. */
typedef struct tiny {
    inf_config c;
    inf_layer layers[N_LAYERS];
    inf_weights w;
    unsigned char *bytes;   /* matrices in the model's dtype */
    size_t bused, bcap;
    float *vecs;            /* norms and biases */
    size_t vused, vcap;
    float tmp[96 * 64];     /* one matrix as float before conversion */
    uint64_t rng;
    inf_model *m;
} tiny;

static float urand(tiny *t)
{
    t->rng = t->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(t->rng >> 40) / (double)(1ull << 24)) - 0.5f;
}

/* A (rows, cols) matrix of `type`, uniform in [-1, 1]/sqrt(cols). */
static inf_mat mat(tiny *t, inf_dtype type, size_t rows, size_t cols)
{
    assert_true(rows * cols <= sizeof t->tmp / sizeof t->tmp[0]);
    for (size_t i = 0; i < rows * cols; i++)
        t->tmp[i] = 2.0f * urand(t) / sqrtf((float)cols);
    size_t n = inf_dtype_row_bytes(type, cols) * rows;
    assert_true(n > 0 && t->bused + n <= t->bcap);
    unsigned char *b = t->bytes + t->bused;
    t->bused += n;
    assert_int_equal(inf_dtype_from_f32(b, type, t->tmp, rows * cols), 0);
    return (inf_mat){.data = b, .type = type};
}

/* n floats offset + scale * uniform[-1/2, 1/2]. */
static const float *vec(tiny *t, size_t n, float scale, float offset)
{
    assert_true(t->vused + n <= t->vcap);
    float *p = t->vecs + t->vused;
    t->vused += n;
    for (size_t i = 0; i < n; i++)
        p[i] = offset + scale * urand(t);
    return p;
}

/* GQA 4/2 heads, dim 32. Qwen's FFN is 56 wide (a masked tail in the fused
 * kernels) and its head_dim 12 (q_dim != dim); llama's rows suit Q8_0. */
static void tiny_build(tiny *t, int arch, inf_dtype type)
{
    memset(t, 0, sizeof *t);
    t->rng = 11 + (uint64_t)arch;
    bool qwen = arch != ARCH_LLAMA;
    inf_config *c = &t->c;
    c->dim = 32;
    c->hidden_dim = qwen ? 56 : 64;
    c->n_layers = N_LAYERS;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = qwen ? 12 : 8;
    c->vocab_size = VOCAB;
    c->seq_len = SEQ_LEN;
    c->norm_eps = qwen ? 1e-6f : 1e-5f;
    c->rope_theta = qwen ? 1000000.0f : 10000.0f;
    c->rope_style = qwen ? INF_ROPE_HALF : INF_ROPE_INTERLEAVED;
    c->qkv_bias = arch == ARCH_QWEN2;
    c->qk_norm = arch == ARCH_QWEN3;
    c->tied_embeddings = !qwen;
    c->bos_id = 1;
    c->n_eos = 1;
    c->eos_ids[0] = 2;
    t->bcap = 1u << 20;
    t->bytes = malloc(t->bcap);
    t->vcap = 4096;
    t->vecs = malloc(t->vcap * sizeof(float));
    assert_non_null(t->bytes);
    assert_non_null(t->vecs);
    size_t d = 32, h = (size_t)c->hidden_dim, hd = (size_t)c->head_dim;
    size_t qd = 4 * hd, kvd = 2 * hd;
    t->w.tok_embeddings = mat(t, type, VOCAB, d);
    for (int l = 0; l < N_LAYERS; l++) {
        inf_layer *L = &t->layers[l];
        L->attn_norm = vec(t, d, 0.5f, 1.0f);
        L->wq = mat(t, type, qd, d);
        L->wk = mat(t, type, kvd, d);
        L->wv = mat(t, type, kvd, d);
        if (c->qkv_bias) {
            L->bq = vec(t, qd, 0.5f, 0.0f);
            L->bk = vec(t, kvd, 0.5f, 0.0f);
            L->bv = vec(t, kvd, 0.5f, 0.0f);
        }
        if (c->qk_norm) {
            L->q_norm = vec(t, hd, 0.5f, 1.0f);
            L->k_norm = vec(t, hd, 0.5f, 1.0f);
        }
        L->wo = mat(t, type, d, qd);
        L->ffn_norm = vec(t, d, 0.5f, 1.0f);
        L->w1 = mat(t, type, h, d);
        L->w2 = mat(t, type, d, h);
        L->w3 = mat(t, type, h, d);
    }
    t->w.layers = t->layers;
    t->w.final_norm = vec(t, d, 0.5f, 1.0f);
    t->w.classifier = qwen ? mat(t, type, VOCAB, d) : t->w.tok_embeddings;
    inf_error err = {0};
    if (inf_model_create(&t->m, c, &t->w, &err))
        fail_msg("%s", err.message);
}

static void tiny_free(tiny *t)
{
    inf_model_free(t->m);
    free(t->bytes);
    free(t->vecs);
}

/* A fixed pseudo-random prompt of n tokens. */
static void make_prompt(int *p, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (int)((37u * (unsigned)i + 11u) % VOCAB);
}

/* Runs prompt (n,) chunked (rows a pass) and token by token, each in its own
 * state with `threads` threads, and compares the last logits and both caches
 * at positions [0, n) of every layer, bit for bit. */
static void check_prefill(const tiny *t, const int *prompt, int n, int rows, int threads)
{
    const inf_config *c = &t->c;
    size_t kv = (size_t)n * (size_t)c->n_kv_heads * (size_t)c->head_dim * sizeof(float);
    inf_state *one = NULL, *chunked = NULL;
    inf_error err = {0};
    /* a cache longer than the prompt, as inf_generate's is */
    if (inf_state_new(&one, t->m, 1, n + 3, &err) ||
        inf_state_set_threads(one, threads, &err) ||
        inf__state_new(&chunked, t->m, 1, rows, n + 3, &err) ||
        inf_state_set_threads(chunked, threads, &err))
        fail_msg("%s", err.message);
    const float *ref = NULL;
    for (int pos = 0; pos < n; pos++)
        if (!(ref = inf_forward(one, 0, prompt[pos], pos, &err)))
            fail_msg("%s", err.message);
    inf__forward_prompt(chunked, 0, prompt, n, 0);
    const float *got = inf__state_logits(chunked, 0);
    if (memcmp(ref, got, (size_t)c->vocab_size * sizeof(float)) != 0)
        fail_msg("logits differ: n=%d rows=%d threads=%d", n, rows, threads);
    for (int l = 0; l < c->n_layers; l++)
        for (int v = 0; v <= 1; v++)
            if (memcmp(inf__state_cache(one, v, 0, l), inf__state_cache(chunked, v, 0, l), kv))
                fail_msg("%s cache of layer %d differs: n=%d rows=%d threads=%d",
                         v ? "value" : "key", l, n, rows, threads);
    /* the logits are real numbers, not a zeroed buffer that matches */
    bool nonzero = false;
    for (int i = 0; i < c->vocab_size; i++) {
        assert_true(isfinite(got[i]));
        nonzero |= got[i] != 0.0f;
    }
    assert_true(nonzero);
    inf_state_free(one);
    inf_state_free(chunked);
}

/* Lengths around a chunk: within one, exactly one, just over, several. */
static void check_model(int arch, inf_dtype type)
{
    tiny t;
    tiny_build(&t, arch, type);
    int prompt[SEQ_LEN];
    make_prompt(prompt, SEQ_LEN);
    static const int row_counts[] = {INF__PREFILL_ROWS, 7};
    for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++) {
        int k = row_counts[r];
        int lens[] = {1, 2, k - 1, k, k + 1, 3 * k + 5};
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
            for (int threads = 1; threads <= 2; threads++)
                check_prefill(&t, prompt, lens[i], k, threads);
    }
    tiny_free(&t);
}

static void test_inference_prefill__llama(void **state)
{
    check_model(ARCH_LLAMA, INF_DTYPE_F32);
    check_model(ARCH_LLAMA, INF_DTYPE_BF16);
    check_model(ARCH_LLAMA, INF_DTYPE_Q8_0);
}

static void test_inference_prefill__qwen2(void **state)
{
    check_model(ARCH_QWEN2, INF_DTYPE_F32);
    check_model(ARCH_QWEN2, INF_DTYPE_BF16);
    check_model(ARCH_QWEN2, INF_DTYPE_F16);
}

static void test_inference_prefill__qwen3(void **state)
{
    check_model(ARCH_QWEN3, INF_DTYPE_F32);
    check_model(ARCH_QWEN3, INF_DTYPE_BF16);
}

/* The kernels without AVX-512 (and without any SIMD) batch differently; a
 * chunk is still the token-by-token result on each path. */
static void test_inference_prefill__cpu_paths(void **state)
{
    static const int disabled[] = {INF__CPU_AVX512, INF__CPU_FMA | INF__CPU_AVX512,
                                   INF__CPU_AVX | INF__CPU_FMA | INF__CPU_AVX512};
    tiny t;
    tiny_build(&t, ARCH_QWEN2, INF_DTYPE_BF16);
    int prompt[SEQ_LEN];
    make_prompt(prompt, SEQ_LEN);
    for (size_t k = 0; k < sizeof disabled / sizeof disabled[0]; k++) {
        inf__cpu_disabled = disabled[k];
        check_prefill(&t, prompt, 3 * INF__PREFILL_ROWS + 5, INF__PREFILL_ROWS, 1);
        check_prefill(&t, prompt, 13, 7, 2);
        inf__cpu_disabled = 0;
    }
    tiny_free(&t);
}

/* inf_generate prefills in chunks: its greedy first token and that token's
 * logprob are the argmax and log-softmax of the token-by-token logits, for
 * a prompt longer than two chunks, with 1 and 2 threads. */
static void test_inference_prefill__generate_first_token(void **state)
{
    tiny t;
    tiny_build(&t, ARCH_QWEN3, INF_DTYPE_BF16);
    int n = 2 * INF__PREFILL_ROWS + 9;
    int prompt[SEQ_LEN];
    make_prompt(prompt, n);
    inf_state *one = NULL;
    inf_error err = {0};
    assert_int_equal(inf_state_new(&one, t.m, 1, n, &err), 0);
    const float *logits = NULL;
    for (int pos = 0; pos < n; pos++)
        assert_non_null(logits = inf_forward(one, 0, prompt[pos], pos, &err));
    int best = 0;
    for (int i = 1; i < VOCAB; i++)
        if (logits[i] > logits[best])
            best = i;
    float logprob = (float)((double)logits[best] - inf__logsumexp(logits, VOCAB));
    assert_true(logprob < 0.0f && logprob > -10.0f);
    for (int threads = 1; threads <= 2; threads++) {
        inf_gen_options o = INF_GEN_OPTIONS_INIT;
        o.temperature = 0.0f;
        o.max_tokens = 4;
        o.ignore_eos = true;
        o.n_samples = 3;
        o.n_threads = threads;
        inf_result r;
        if (inf_generate(&r, t.m, NULL, prompt, (size_t)n, &o, &err))
            fail_msg("%s", err.message);
        for (size_t j = 0; j < r.n_samples; j++) {
            assert_int_equal(r.samples[j].n_tokens, 4);
            assert_int_equal(r.samples[j].tokens[0], best);
            assert_memory_equal(&r.samples[j].logprobs[0], &logprob, sizeof logprob);
        }
        inf_result_free(&r);
    }
    inf_state_free(one);
    tiny_free(&t);
}

/* Attention as the CPU table computed it before its scores ran eight
 * positions at a time: one chain per score, then run.c's softmax and sum. */
static void attention_one_chain(float *out, float *att, const float *q, const float *k,
                                const float *v, int n_pos, int head_dim, size_t stride)
{
    float scale = sqrtf((float)head_dim);
    for (int t = 0; t < n_pos; t++) {
        float score = 0.0f;
        for (int i = 0; i < head_dim; i++)
            score += q[i] * k[(size_t)t * stride + (size_t)i];
        att[t] = score / scale;
    }
    float max = att[0], sum = 0.0f;
    for (int t = 1; t < n_pos; t++)
        if (att[t] > max)
            max = att[t];
    for (int t = 0; t < n_pos; t++) {
        att[t] = expf(att[t] - max);
        sum += att[t];
    }
    for (int t = 0; t < n_pos; t++)
        att[t] /= sum;
    for (int i = 0; i < head_dim; i++)
        out[i] = 0.0f;
    for (int t = 0; t < n_pos; t++)
        for (int i = 0; i < head_dim; i++)
            out[i] += att[t] * v[(size_t)t * stride + (size_t)i];
}

/* The CPU attention gives those bits for every prefix length (blocks of
 * eight and the tail), head sizes of 64 and 12, and a strided cache. */
static void test_inference_prefill__attention_bits(void **state)
{
    enum { MAX_POS = 41, STRIDE = 160 };
    static float q[64], k[MAX_POS * STRIDE], v[MAX_POS * STRIDE];
    uint64_t r = 5;
    for (size_t i = 0; i < MAX_POS * STRIDE; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        k[i] = (float)((double)(r >> 40) / (double)(1ull << 24)) - 0.5f;
        v[i] = (float)((double)((r >> 20) & 0xffffff) / (double)(1ull << 24)) - 0.5f;
        if (i < 64)
            q[i] = 4.0f * k[i];
    }
    static const int head_dims[] = {64, 12};
    for (size_t h = 0; h < 2; h++)
        for (int n = 1; n <= MAX_POS; n++) {
            float want[64], got[64], att_w[MAX_POS], att_g[MAX_POS];
            int hd = head_dims[h];
            attention_one_chain(want, att_w, q, k + 16, v + 16, n, hd, STRIDE);
            inf__ops_cpu.attention(got, att_g, q, k + 16, v + 16, n, hd, STRIDE);
            if (memcmp(want, got, (size_t)hd * sizeof(float)) != 0)
                fail_msg("attention differs: n_pos=%d head_dim=%d", n, hd);
            assert_true(want[0] != 0.0f && isfinite(want[0]));
        }
}

/* A state needs at least a row per sequence; the prefill state's size counts
 * its rows apart from its one sequence. */
static void test_inference_prefill__state_rows(void **state)
{
    tiny t;
    tiny_build(&t, ARCH_LLAMA, INF_DTYPE_F32);
    inf_state *s = NULL;
    inf_error err = {0};
    assert_int_equal(inf__state_new(&s, t.m, 4, 3, 8, &err), INF_ELIMIT);
    assert_null(s);
    assert_non_null(strstr(err.message, "3 rows"));
    assert_int_equal(inf__state_new(&s, t.m, 1, INF_MAX_SAMPLES + 1, 8, &err), INF_ELIMIT);
    assert_int_equal(inf__state_new(&s, t.m, 1, INF_MAX_SAMPLES, 8, &err), 0);
    inf_state_free(s);
    tiny_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_prefill__llama),
        cmocka_unit_test(test_inference_prefill__qwen2),
        cmocka_unit_test(test_inference_prefill__qwen3),
        cmocka_unit_test(test_inference_prefill__cpu_paths),
        cmocka_unit_test(test_inference_prefill__generate_first_token),
        cmocka_unit_test(test_inference_prefill__attention_bits),
        cmocka_unit_test(test_inference_prefill__state_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
