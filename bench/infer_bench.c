/*
 * Inference throughput on the CPU: generated tokens per second on llama2.c's
 * stories260K for one stream and for groups of 8 and 32 samples of one prompt
 * (batched decode), with 1 and 2 threads; then the same on a random float32
 * model of 41M parameters (dim 512, 8 layers, GQA 8/4 heads, vocab 32000),
 * big enough that weights come from memory and batching pays. Each figure is
 * the median of several runs.
 *
 * Usage: infer_bench [ignored]; reads $ENVSRV_DATA/models/stories260K
 * (default ../shared/data). `make bench` runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

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
    TAKE(w.tok_embeddings, v * d, d);
    for (size_t l = 0; l < L; l++) {
        TAKE(layers[l].attn_norm, d, 0);
        TAKE(layers[l].wq, d * d, d);
        TAKE(layers[l].wk, kv * d, d);
        TAKE(layers[l].wv, kv * d, d);
        TAKE(layers[l].wo, d * d, d);
        TAKE(layers[l].ffn_norm, d, 0);
        TAKE(layers[l].w1, h * d, d);
        TAKE(layers[l].w2, d * h, h);
        TAKE(layers[l].w3, h * d, d);
    }
    TAKE(w.final_norm, d, 0);
#undef TAKE
    w.classifier = w.tok_embeddings;
    w.layers = layers;
    *arena = a;
    return inf_model_create(out, &c, &w, err);
}

int main(void)
{
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
done:
    inf_tokenizer_free(t);
    inf_model_free(m);
    return rc;
}
