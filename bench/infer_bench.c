/*
 * Inference throughput on the CPU: generated tokens per second on llama2.c's
 * stories260K for one stream and for groups of 8 and 32 samples of one prompt
 * (batched decode), with 1 and 2 threads; then the same on a random float32
 * model of 41M parameters (dim 512, 8 layers, GQA 8/4 heads, vocab 32000),
 * big enough that weights come from memory and batching pays; then a
 * random bf16 model with the shapes of Qwen2.5-0.5B (dim 896, 24 layers,
 * 14/2 heads, FFN 4864, vocab 151936, tied; ~0.99 GB of weights) against
 * this machine's measured memory bandwidth and against a plain llama2.c-style
 * single-stream loop over the same weights, and prompt prefill (a 256-token
 * prompt many positions a pass, as inf_generate does, against one
 * inf_forward call a token), ending with issue 7's floors
 * ("floor: ... ok" or "BELOW", which bench/run.sh checks). Each figure is the
 * median of several runs; figures that are compared (bandwidth and decode,
 * n=1 and n=32) are measured interleaved, run by run, because the machine
 * is shared.
 *
 * Usage: infer_bench [qwen|prefill] (qwen: only the Qwen-shaped section;
 * prefill: only its prefill figures); reads $ENVSRV_DATA/models/stories260K
 * (default ../shared/data). `make bench` runs it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>
#include <pthread.h>

#include "inference/inference.h"

#define RUNS 5
#define MAX_RUNS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median tokens/s of RUNS generations; returns -1 on error. */
static double measure(const inf_model *m, const inf_tokenizer *t, int n_samples, int n_threads,
                      int max_tokens, int runs, float top_p)
{
    static const int prompt[] = {1, 403, 407, 261, 378}; /* BOS "Once upon a time" */
    double rates[MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        inf_gen_options o = INF_GEN_OPTIONS_INIT;
        o.n_samples = n_samples;
        o.n_threads = n_threads;
        o.max_tokens = max_tokens;
        o.temperature = 1.0f;
        o.top_p = top_p;
        o.seed = (uint64_t)r;
        o.ignore_eos = true;
        inf_result res;
        inf_error err = {0};
        double t0 = now();
        if (inf_generate(&res, m, t, prompt, 5, &o, &err)) {
            fprintf(stderr, "infer_bench: %s\n", err.message);
            return -1;
        }
        double dt = now() - t0;
        size_t toks = 0;
        for (size_t j = 0; j < res.n_samples; j++)
            toks += res.samples[j].n_tokens;
        rates[r] = (double)toks / dt;
        inf_result_free(&res);
    }
    qsort(rates, (size_t)runs, sizeof rates[0], cmp_double);
    return rates[runs / 2];
}

/* A random float32 model: every weight uniform in [-a, a] with a = 1/sqrt(fan-in)
 * (norm weights 1). On success *arena holds all weights; free it after the model. */
static int random_model(inf_model **out, float **arena, inf_layer *layers, inf_error *err)
{
    inf_config c = {0};
    c.dim = 512;
    c.hidden_dim = 1536;
    c.n_layers = 8;
    c.n_heads = 8;
    c.n_kv_heads = 4;
    c.head_dim = 64;
    c.vocab_size = 32000;
    c.seq_len = 512;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tied_embeddings = true;
    c.bos_id = 1;
    size_t d = 512, h = 1536, kv = 256, v = 32000, L = 8;
    size_t n = v * d + L * (2 * d + d * d * 2 + kv * d * 2 + 3 * h * d) + d;
    float *a = malloc(n * sizeof *a);
    if (!a)
        return -1;
    uint64_t s = 1;
    size_t at = 0;
#define TAKE(ptr, count, fan)                                                              \
    do {                                                                                   \
        float scale_ = (fan) ? 2.0f / sqrtf((float)(fan)) : 0.0f;                          \
        for (size_t i_ = 0; i_ < (count); i_++) {                                          \
            s = s * 6364136223846793005ull + 1442695040888963407ull;                       \
            a[at + i_] = (fan) ? scale_ * ((float)(s >> 40) / 16777216.0f - 0.5f) : 1.0f; \
        }                                                                                  \
        (ptr) = a + at;                                                                    \
        at += (count);                                                                     \
    } while (0)
    inf_weights w = {0};
    const float *mp;
    const float *emb;
    TAKE(emb, v * d, d);
    w.tok_embeddings = INF_MAT_F32(emb);
    for (size_t l = 0; l < L; l++) {
        TAKE(layers[l].attn_norm, d, 0);
        TAKE(mp, d * d, d);
        layers[l].wq = INF_MAT_F32(mp);
        TAKE(mp, kv * d, d);
        layers[l].wk = INF_MAT_F32(mp);
        TAKE(mp, kv * d, d);
        layers[l].wv = INF_MAT_F32(mp);
        TAKE(mp, d * d, d);
        layers[l].wo = INF_MAT_F32(mp);
        TAKE(layers[l].ffn_norm, d, 0);
        TAKE(mp, h * d, d);
        layers[l].w1 = INF_MAT_F32(mp);
        TAKE(mp, d * h, h);
        layers[l].w2 = INF_MAT_F32(mp);
        TAKE(mp, h * d, d);
        layers[l].w3 = INF_MAT_F32(mp);
    }
    TAKE(w.final_norm, d, 0);
#undef TAKE
    w.classifier = w.tok_embeddings;
    w.layers = layers;
    *arena = a;
    return inf_model_create(out, &c, &w, err);
}

/* ---- Qwen2.5-0.5B-shaped bf16 model ----------------------------------- */

#define QD 896
#define QH 4864
#define QL 24
#define QNH 14
#define QNKV 2
#define QHD 64
#define QV 151936
#define QSEQ 128    /* positions of the decode states and the plain loop */
#define QCTX 512    /* the model's context: room for the prefill prompt */
#define QPROMPT 256 /* prompt tokens of the prefill figure */

typedef struct qwen_model {
    inf_config c;
    inf_layer layers[QL];
    inf_weights w;
    uint16_t *mats;     /* all matrices, bf16 */
    float *vecs;        /* norms and biases */
    size_t n_mat;       /* bf16 elements */
} qwen_model;

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Fills n bf16 values uniform in [-a, a] from a xorshift stream. */
static void fill_bf16(uint16_t *p, size_t n, float a, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        p[i] = to_bf16(a * ((float)(*s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f));
    }
}

static int qwen_build(qwen_model *q, inf_model **out, inf_error *err)
{
    memset(q, 0, sizeof *q);
    inf_config *c = &q->c;
    *c = (inf_config){.dim = QD, .hidden_dim = QH, .n_layers = QL, .n_heads = QNH,
                      .n_kv_heads = QNKV, .head_dim = QHD, .vocab_size = QV, .seq_len = QCTX,
                      .norm_eps = 1e-6f, .rope_theta = 1000000.0f, .rope_style = INF_ROPE_HALF,
                      .qkv_bias = true, .tied_embeddings = true, .bos_id = -1};
    size_t per_layer = (size_t)QD * QD * 2 + (size_t)QNKV * QHD * QD * 2 + (size_t)QH * QD * 3;
    q->n_mat = (size_t)QV * QD + QL * per_layer;
    q->mats = malloc(q->n_mat * 2);
    q->vecs = malloc(((size_t)QL * (2 * QD + QD + 2 * QNKV * QHD) + QD) * sizeof(float));
    if (!q->mats || !q->vecs)
        return -1;
    uint64_t s = 88172645463325252ull;
    uint16_t *m = q->mats;
    float *v = q->vecs;
#define MAT(field, rows, cols)                                                              \
    do {                                                                                    \
        fill_bf16(m, (size_t)(rows) * (cols), 1.0f / sqrtf((float)(cols)), &s);             \
        field = (inf_mat){.data = m, .type = INF_DTYPE_BF16};                               \
        m += (size_t)(rows) * (cols);                                                       \
    } while (0)
#define VEC(field, n, val)                                                                  \
    do {                                                                                    \
        for (int i_ = 0; i_ < (n); i_++)                                                    \
            v[i_] = (val);                                                                  \
        field = v;                                                                          \
        v += (n);                                                                           \
    } while (0)
    MAT(q->w.tok_embeddings, QV, QD);
    for (int l = 0; l < QL; l++) {
        inf_layer *L = &q->layers[l];
        VEC(L->attn_norm, QD, 1.0f);
        MAT(L->wq, QD, QD);
        MAT(L->wk, QNKV * QHD, QD);
        MAT(L->wv, QNKV * QHD, QD);
        VEC(L->bq, QD, 0.01f);
        VEC(L->bk, QNKV * QHD, 0.01f);
        VEC(L->bv, QNKV * QHD, 0.01f);
        MAT(L->wo, QD, QD);
        VEC(L->ffn_norm, QD, 1.0f);
        MAT(L->w1, QH, QD);
        MAT(L->w2, QD, QH);
        MAT(L->w3, QH, QD);
    }
    VEC(q->w.final_norm, QD, 1.0f);
#undef MAT
#undef VEC
    q->w.classifier = q->w.tok_embeddings;
    q->w.layers = q->layers;
    return inf_model_create(out, c, &q->w, err);
}

/*
 * Memory bandwidth: a streaming read of the model's own weights (0.99 GB of
 * random bf16, 30 times the 32 MiB last-level cache, exactly the bytes a
 * decode step must read), split between `threads` threads. Every loaded
 * vector feeds a sum that is printed-or-discarded through `sink`, so the
 * compiler cannot drop the loads. Checked against an independent integer
 * read of 1 and 4 GiB of random data: 40-41 GB/s on one core of this machine,
 * as here.
 */
typedef struct bw_job {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_job;

/* 32-byte loads where the CPU has AVX (a scalar loop does not reach the
 * memory's speed on one core), else 8-byte ones. */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t read_avx(const uint64_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        c = _mm256_xor_si256(c, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        d = _mm256_xor_si256(d, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}
#endif

static void *bw_read(void *arg)
{
    bw_job *j = arg;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        j->sum = read_avx(j->p, j->n);
        return NULL;
    }
#endif
    uint64_t a[8] = {0};
    for (size_t i = 0; i + 8 <= j->n; i += 8)
        for (int k = 0; k < 8; k++)
            a[k] ^= j->p[i + k];
    j->sum = a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
    return NULL;
}

static uint64_t bw_sink;

/* GB/s of one streaming read of `bytes` at buf by `threads` threads (<= 8). */
static double bandwidth_once(const void *buf, size_t bytes, int threads)
{
    pthread_t th[8];
    bw_job jobs[8];
    size_t per = bytes / 8 / (size_t)threads / 16 * 16;
    double t0 = now();
    for (int k = 0; k < threads; k++) {
        jobs[k] = (bw_job){(const uint64_t *)buf + (size_t)k * per, per, 0};
        pthread_create(&th[k], NULL, bw_read, &jobs[k]);
    }
    for (int k = 0; k < threads; k++) {
        pthread_join(th[k], NULL);
        bw_sink ^= jobs[k].sum;
    }
    return (double)(per * 8 * (size_t)threads) / (now() - t0) / 1e9;
}

/* 16 decode steps alone (inf_forward: no prefill, no sampling) from `pos`:
 * tokens/s, or -1 on error. */
static double decode_rate(inf_state *st, int pos)
{
    double t0 = now();
    for (int k = 0; k < 16; k++)
        if (!inf_forward(st, 0, 100 + k, pos + k, NULL))
            return -1;
    return 16 / (now() - t0);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
}

/* ---- the baseline: llama2.c's run.c loop over the same bf16 weights ------ */

static float bf(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* xout (d,) = W (d,n) bf16 @ x (n,): run.c's matmul, one row at a time */
static void plain_matmul(float *xout, const float *x, const uint16_t *w, int n, int d)
{
    for (int i = 0; i < d; i++) {
        float val = 0.0f;
        for (int j = 0; j < n; j++)
            val += bf(w[(size_t)i * n + j]) * x[j];
        xout[i] = val;
    }
}

static void plain_rmsnorm(float *o, const float *x, const float *w, int n)
{
    float ss = 0.0f;
    for (int j = 0; j < n; j++)
        ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / n + 1e-6f);
    for (int j = 0; j < n; j++)
        o[j] = w[j] * (ss * x[j]);
}

typedef struct plain_state {
    float x[QD], xb[QD], xb2[QD], q[QD], k[QNKV * QHD], v[QNKV * QHD], hb[QH], hb2[QH];
    float att[QSEQ];
    float *kc, *vc;     /* (layer, pos, kv_dim) */
    float *logits;      /* (vocab,) */
} plain_state;

static void plain_forward(plain_state *s, const qwen_model *q, int token, int pos)
{
    const int kvd = QNKV * QHD, kv_mul = QNH / QNKV;
    const uint16_t *emb = q->w.tok_embeddings.data;
    for (int i = 0; i < QD; i++)
        s->x[i] = bf(emb[(size_t)token * QD + i]);
    for (int l = 0; l < QL; l++) {
        const inf_layer *L = &q->layers[l];
        plain_rmsnorm(s->xb, s->x, L->attn_norm, QD);
        plain_matmul(s->q, s->xb, L->wq.data, QD, QD);
        plain_matmul(s->k, s->xb, L->wk.data, QD, kvd);
        plain_matmul(s->v, s->xb, L->wv.data, QD, kvd);
        for (int i = 0; i < QD; i++)
            s->q[i] += L->bq[i];
        for (int i = 0; i < kvd; i++) {
            s->k[i] += L->bk[i];
            s->v[i] += L->bv[i];
        }
        for (int i = 0; i < QD; i += 2) {     /* RoPE (pairing does not matter for speed) */
            int hi = i % QHD;
            float f = 1.0f / powf(1000000.0f, hi / (float)QHD), c = cosf(pos * f),
                  sn = sinf(pos * f);
            for (int vi = 0; vi < (i < kvd ? 2 : 1); vi++) {
                float *vec = vi ? s->k : s->q;
                float a = vec[i], b = vec[i + 1];
                vec[i] = a * c - b * sn;
                vec[i + 1] = a * sn + b * c;
            }
        }
        float *kc = s->kc + (size_t)l * QSEQ * kvd, *vc = s->vc + (size_t)l * QSEQ * kvd;
        memcpy(kc + (size_t)pos * kvd, s->k, sizeof s->k);
        memcpy(vc + (size_t)pos * kvd, s->v, sizeof s->v);
        for (int h = 0; h < QNH; h++) {
            const float *qh = s->q + h * QHD;
            float mx = -1e30f, sum = 0.0f;
            for (int t = 0; t <= pos; t++) {
                const float *kt = kc + (size_t)t * kvd + (h / kv_mul) * QHD;
                float sc = 0.0f;
                for (int i = 0; i < QHD; i++)
                    sc += qh[i] * kt[i];
                s->att[t] = sc / sqrtf((float)QHD);
                if (s->att[t] > mx)
                    mx = s->att[t];
            }
            for (int t = 0; t <= pos; t++)
                sum += (s->att[t] = expf(s->att[t] - mx));
            float *o = s->xb + h * QHD;
            memset(o, 0, QHD * sizeof *o);
            for (int t = 0; t <= pos; t++) {
                const float *vt = vc + (size_t)t * kvd + (h / kv_mul) * QHD;
                for (int i = 0; i < QHD; i++)
                    o[i] += s->att[t] / sum * vt[i];
            }
        }
        plain_matmul(s->xb2, s->xb, L->wo.data, QD, QD);
        for (int i = 0; i < QD; i++)
            s->x[i] += s->xb2[i];
        plain_rmsnorm(s->xb, s->x, L->ffn_norm, QD);
        plain_matmul(s->hb, s->xb, L->w1.data, QD, QH);
        plain_matmul(s->hb2, s->xb, L->w3.data, QD, QH);
        for (int i = 0; i < QH; i++)
            s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i];
        plain_matmul(s->xb, s->hb, L->w2.data, QH, QD);
        for (int i = 0; i < QD; i++)
            s->x[i] += s->xb[i];
    }
    plain_rmsnorm(s->x, s->x, q->w.final_norm, QD);
    plain_matmul(s->logits, s->x, emb, QD, QV);
}

/* Median tokens/s of the plain loop: greedy decode of `steps` tokens. */
static double plain_rate(const qwen_model *q, int steps, int runs)
{
    plain_state *s = calloc(1, sizeof *s);
    s->kc = calloc((size_t)QL * QSEQ * QNKV * QHD, sizeof(float));
    s->vc = calloc((size_t)QL * QSEQ * QNKV * QHD, sizeof(float));
    s->logits = calloc(QV, sizeof(float));
    double rates[MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        int tok = 1;
        double t0 = now();
        for (int pos = 0; pos < steps; pos++) {
            plain_forward(s, q, tok, pos);
            int best = 0;
            for (int i = 1; i < QV; i++)
                if (s->logits[i] > s->logits[best])
                    best = i;
            tok = best;
        }
        rates[r] = steps / (now() - t0);
    }
    free(s->kc);
    free(s->vc);
    free(s->logits);
    free(s);
    qsort(rates, (size_t)runs, sizeof rates[0], cmp_double);
    return rates[runs / 2];
}

/* Prompt tokens/s of inf_generate's prefill: QPROMPT tokens with max_tokens
 * 1 and greedy sampling, so the call is the chunked prefill plus one
 * sampling step over the vocabulary; -1 on error. */
static double prefill_rate(const inf_model *m, const int *prompt, int threads)
{
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.max_tokens = 1;
    o.temperature = 0.0f;
    o.n_threads = threads;
    inf_result res;
    inf_error err = {0};
    double t0 = now();
    if (inf_generate(&res, m, NULL, prompt, QPROMPT, &o, &err)) {
        fprintf(stderr, "infer_bench: %s\n", err.message);
        return -1;
    }
    double dt = now() - t0;
    inf_result_free(&res);
    return QPROMPT / dt;
}

/* The same prompt the way inf_generate prefilled before: one inf_forward
 * call a token (the classifier at every position), in a fresh state; -1 on
 * error. */
static double prefill_rate_per_token(const inf_model *m, const int *prompt, int threads)
{
    inf_state *st = NULL;
    inf_error err = {0};
    double rate = -1;
    double t0 = now();
    if (inf_state_new(&st, m, 1, QPROMPT, &err) || inf_state_set_threads(st, threads, &err)) {
        fprintf(stderr, "infer_bench: %s\n", err.message);
        goto done;
    }
    for (int pos = 0; pos < QPROMPT; pos++)
        if (!inf_forward(st, 0, prompt[pos], pos, &err)) {
            fprintf(stderr, "infer_bench: %s\n", err.message);
            goto done;
        }
    rate = QPROMPT / (now() - t0);
done:
    inf_state_free(st);
    return rate;
}

/* Prefill figures: chunked and per-token, 1 and 2 threads, interleaved run
 * by run; medians of 3. Returns 0 or -1. */
static int prefill_bench(const inf_model *m)
{
    int prompt[QPROMPT];
    for (int i = 0; i < QPROMPT; i++)
        prompt[i] = (int)((7919u * (unsigned)i + 13u) % QV);
    double chunked[2][3], per_token[2][3];
    for (int r = 0; r < 3; r++)
        for (int t = 0; t < 2; t++)
            if ((chunked[t][r] = prefill_rate(m, prompt, t + 1)) < 0 ||
                (per_token[t][r] = prefill_rate_per_token(m, prompt, t + 1)) < 0)
                return -1;
    for (int t = 0; t < 2; t++) {
        double c = median(chunked[t], 3), p = median(per_token[t], 3);
        printf("  prefill of %d prompt tokens, %d thread%s: %.1f tokens/s in passes of "
               "positions (inf_generate), %.1f tokens/s one token a pass: %.2fx\n",
               QPROMPT, t + 1, t ? "s" : "", c, p, c / p);
    }
    return 0;
}

/* The Qwen-shaped section; only_prefill: just its prefill figures. */
static int qwen_bench(bool only_prefill)
{
    qwen_model q;
    inf_model *m = NULL;
    inf_error err = {0};
    double t0 = now();
    if (qwen_build(&q, &m, &err)) {
        fprintf(stderr, "infer_bench: qwen-shaped model: %s\n", err.message[0] ? err.message
                                                                               : "out of memory");
        free(q.mats);
        free(q.vecs);
        return 1;
    }
    double weight_gb = (double)q.n_mat * 2 / 1e9;
    printf("Qwen2.5-0.5B-shaped random bf16 (dim 896, 24 layers, 14/2 heads, FFN 4864, vocab "
           "151936, tied): %.3f GB of weights, built in %.1f s\n",
           weight_gb, now() - t0);
    inf_state *st[2] = {NULL, NULL};
    int rc = 1;
    if (only_prefill) {
        rc = prefill_bench(m) ? 1 : 0;
        goto done;
    }
    /* Bandwidth and decode steps alone, interleaved round by round so both
     * see the same neighbours on a shared machine. */
    double bw[2][5], dec[2][5];
    for (int t = 0; t < 2; t++)
        if (inf_state_new(&st[t], m, 1, QSEQ, &err) ||
            inf_state_set_threads(st[t], t + 1, &err)) {
            fprintf(stderr, "infer_bench: %s\n", err.message);
            goto done;
        }
    for (int r = 0; r < 5; r++)
        for (int t = 0; t < 2; t++) {
            bw[t][r] = bandwidth_once(q.mats, q.n_mat * 2, t + 1);
            if ((dec[t][r] = decode_rate(st[t], r * 16)) < 0)
                goto done;
        }
    double bw_med[2], dec_med[2], limit[2];
    for (int t = 0; t < 2; t++) {
        bw_med[t] = median(bw[t], 5);
        dec_med[t] = median(dec[t], 5);
        limit[t] = bw_med[t] / weight_gb;
    }
    printf("  memory bandwidth (streaming read of the %.3f GB of weights, median of 5): %.1f "
           "GB/s 1 thread, %.1f GB/s 2 threads (sink %llx)\n",
           weight_gb, bw_med[0], bw_med[1], (unsigned long long)(bw_sink & 0xf));
    printf("  bandwidth limit for one stream: %.1f tokens/s (1 thread), %.1f tokens/s "
           "(2 threads)\n",
           limit[0], limit[1]);
    for (int t = 0; t < 2; t++)
        printf("  decode steps alone (inf_forward), %d thread%s: %.2f tokens/s, %.2fx the "
               "bandwidth limit's time per token\n",
               t + 1, t ? "s" : "", dec_med[t], limit[t] / dec_med[t]);
    double base = plain_rate(&q, 4, 3);
    printf("  plain llama2.c-style single-stream loop: %.2f tokens/s\n", base);
    /* generation, 16 new tokens per sample: n = 1, 8, 32 interleaved run by
     * run at each thread count */
    static const int groups[3] = {1, 8, 32};
    double gen[2][3];
    for (int t = 0; t < 2; t++) {
        double rates[3][3];
        for (int r = 0; r < 3; r++)
            for (int g = 0; g < 3; g++)
                if ((rates[g][r] = measure(m, NULL, groups[g], t + 1, 16, 1, 1.0f)) < 0)
                    goto done;
        for (int g = 0; g < 3; g++) {
            gen[t][g] = median(rates[g], 3);
            printf("  n=%-3d threads=%d  %8.2f tokens/s  (%.2fx the plain loop, %.2fx n=1 at "
                   "%d thread%s)\n",
                   groups[g], t + 1, gen[t][g], gen[t][g] / base, gen[t][g] / gen[t][0], t + 1,
                   t ? "s" : "");
        }
    }
    if (prefill_bench(m))
        goto done;
    /* issue 7's floors */
    for (int t = 0; t < 2; t++) {
        double x = limit[t] / dec_med[t];
        printf("floor: single stream, %d thread%s: %.2fx the bandwidth limit's time per token "
               "(<= 1.50) %s\n",
               t + 1, t ? "s" : "", x, x <= 1.5 ? "ok" : "BELOW");
    }
    for (int t = 0; t < 2; t++) {
        double x = gen[t][2] / gen[t][0];
        printf("floor: n=32 / n=1 tokens/s, %d thread%s: %.2f (>= 4.00) %s\n", t + 1,
               t ? "s" : "", x, x >= 4.0 ? "ok" : "BELOW");
    }
    rc = 0;
done:
    inf_state_free(st[0]);
    inf_state_free(st[1]);
    inf_model_free(m);
    free(q.mats);
    free(q.vecs);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "qwen"))   /* only the Qwen-shaped section */
        return qwen_bench(false);
    if (argc > 1 && !strcmp(argv[1], "prefill"))    /* only its prefill figures */
        return qwen_bench(true);
    const char *data = getenv("ENVSRV_DATA");
    char model_path[4096], tok_path[4096];
    snprintf(model_path, sizeof model_path, "%s/models/stories260K/stories260K.bin",
             data && *data ? data : "../shared/data");
    snprintf(tok_path, sizeof tok_path, "%s/models/stories260K/tok512.bin",
             data && *data ? data : "../shared/data");
    inf_model *m = NULL;
    inf_tokenizer *t = NULL;
    inf_error err = {0};
    if (inf_model_load_llama2c(&m, model_path, &err) ||
        inf_tokenizer_load_llama2c(&t, tok_path, inf_model_config(m)->vocab_size, &err)) {
        fprintf(stderr, "infer_bench: %s\n", err.message);
        inf_model_free(m);
        return 1;
    }
    printf("stories260K, prompt 5 tokens, 256 new tokens per sample, T=1 top_p=0.95, median of %d\n",
           RUNS);
    static const int groups[] = {1, 8, 32};
    int rc = 0;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
        for (int threads = 1; threads <= 2; threads++) {
            if (groups[g] == 1 && threads == 2)
                continue;
            double rate = measure(m, t, groups[g], threads, 256, RUNS, 0.95f);
            if (rate < 0) {
                rc = 1;
                goto done;
            }
            printf("  n=%-3d threads=%d  %9.0f tokens/s\n", groups[g], threads, rate);
        }

    inf_model *big = NULL;
    float *arena = NULL;
    inf_layer layers[8];
    if (random_model(&big, &arena, layers, &err)) {
        fprintf(stderr, "infer_bench: random model: %s\n", err.message);
        rc = 1;
        goto done;
    }
    /* T=1 without top_p: a random model's distribution is nearly flat, so a
     * nucleus would hold most of the vocabulary, which real models never do. */
    printf("random f32 41M (dim 512, 8 layers, vocab 32000), 32 new tokens per sample, T=1, "
           "median of 3\n");
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
        for (int threads = 1; threads <= 2; threads++) {
            if (groups[g] == 1 && threads == 2)
                continue;
            double rate = measure(big, NULL, groups[g], threads, 32, 3, 1.0f);
            if (rate < 0) {
                rc = 1;
                break;
            }
            printf("  n=%-3d threads=%d  %9.1f tokens/s\n", groups[g], threads, rate);
        }
    inf_model_free(big);
    free(arena);
    if (qwen_bench(false))
        rc = 1;
done:
    inf_tokenizer_free(t);
    inf_model_free(m);
    return rc;
}
