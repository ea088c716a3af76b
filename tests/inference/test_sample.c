/*
 * inf_sample_token against a naive implementation of the documented rules
 * (sample.c's header): temperature, min_p, top_k, top_p, then the walk with
 * the stream's uniform draw. Random logits, many option combinations, every
 * draw must pick the same token. Also greedy's lowest-id tie-break and the
 * empirical frequencies of plain temperature sampling.
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

#include "inference/inference_int.h"

#define N 200

static double g_p[N];

static int by_p(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    if (g_p[x] != g_p[y])
        return g_p[x] > g_p[y] ? -1 : 1;
    return x - y;
}

static int naive(const float *logits, const inf_gen_options *o, uint64_t sample, uint64_t step)
{
    double mx = -INFINITY;
    for (int i = 0; i < N; i++)
        mx = fmax(mx, logits[i]);
    int order[N], m = 0;
    for (int i = 0; i < N; i++) {
        g_p[i] = exp((logits[i] - mx) / o->temperature);
        if (g_p[i] > 0 && g_p[i] >= o->min_p) /* max p is 1 */
            order[m++] = i;
    }
    bool sorted = (o->top_k > 0 && o->top_k < m) || o->top_p < 1.0f;
    if (sorted) {
        qsort(order, (size_t)m, sizeof order[0], by_p);
        if (o->top_k > 0 && o->top_k < m)
            m = o->top_k;
        double mass = 0, cum = 0;
        for (int i = 0; i < m; i++)
            mass += g_p[order[i]];
        for (int i = 0; i < m; i++) {
            cum += g_p[order[i]];
            if (cum >= o->top_p * mass) {
                m = i + 1;
                break;
            }
        }
    }
    double mass = 0, cum = 0;
    for (int i = 0; i < m; i++)
        mass += g_p[order[i]];
    double r = inf_rng_uniform(o->seed, sample, step) * mass;
    for (int i = 0; i < m; i++) {
        cum += g_p[order[i]];
        if (r < cum)
            return order[i];
    }
    return order[m - 1];
}

static void test_inference_sample__matches_naive(void **state)
{
    static const float temps[] = {0.3f, 0.7f, 1.0f, 1.8f};
    static const int topks[] = {0, 1, 5, 40};
    static const float topps[] = {1.0f, 0.9f, 0.5f};
    static const float minps[] = {0.0f, 0.05f};
    float logits[N];
    double work_p[N];
    int work_idx[N];
    uint64_t rng = 12345;
    size_t checked = 0;
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < N; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            logits[i] = (float)((double)(rng >> 40) / (double)(1 << 24)) * 8.0f - 4.0f;
        }
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 4; b++)
                for (size_t c = 0; c < 3; c++)
                    for (size_t d = 0; d < 2; d++) {
                        inf_gen_options o = INF_GEN_OPTIONS_INIT;
                        o.temperature = temps[a];
                        o.top_k = topks[b];
                        o.top_p = topps[c];
                        o.min_p = minps[d];
                        o.seed = (uint64_t)trial;
                        for (uint64_t step = 0; step < 5; step++) {
                            int got = inf_sample_token(logits, N, &o, 3, step, work_p, work_idx);
                            int want = o.top_k == 1 ? -1 : naive(logits, &o, 3, step);
                            if (o.top_k == 1) {
                                int best = 0;
                                for (int i = 1; i < N; i++)
                                    if (logits[i] > logits[best])
                                        best = i;
                                want = best;
                            }
                            if (got != want)
                                fail_msg("T=%g k=%d p=%g min_p=%g step %d: %d != %d",
                                         (double)o.temperature, o.top_k, (double)o.top_p,
                                         (double)o.min_p, (int)step, got, want);
                            checked++;
                        }
                    }
    }
    assert_int_equal(checked, 20 * 4 * 4 * 3 * 2 * 5);
}

static void test_inference_sample__greedy_ties(void **state)
{
    float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, 2.0f, 1.0f};
    double work_p[6];
    int work_idx[6];
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.temperature = 0.0f;
    assert_int_equal(inf_sample_token(logits, 6, &o, 0, 0, work_p, work_idx), 1);
    o.temperature = 1.0f;
    o.top_k = 1;
    assert_int_equal(inf_sample_token(logits, 6, &o, 9, 9, work_p, work_idx), 1);
}

/* Temperature 1 with no filters draws tokens at their softmax frequencies. */
/* The log-sum-exp the sampler hands back at temperature 1 (so generation
 * skips a second pass) has exactly inf__logsumexp's bits; with any cut or
 * another temperature it gives none. */
static void test_inference_sample__shared_logsumexp(void **state)
{
    (void)state;
    enum { V = 5003 };
    float *logits = malloc(V * sizeof *logits);
    double *p = malloc(V * sizeof *p);
    int *idx = malloc(V * sizeof *idx);
    assert_non_null(logits);
    assert_non_null(p);
    assert_non_null(idx);
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < V; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* wide spread: some terms underflow to 0 */
            logits[i] = (float)((double)(x % 2000001) / 1000.0 - 1000.0) * (round % 2 ? 1.0f : 0.01f);
        }
        inf_gen_options o = INF_GEN_OPTIONS_INIT;
        o.seed = (uint64_t)round;
        double lse;
        int tok = inf__sample_token(logits, V, &o, 0, (uint64_t)round, p, idx, &lse);
        double want = inf__logsumexp(logits, V);
        assert_memory_equal(&lse, &want, sizeof lse);
        assert_int_equal(tok, inf_sample_token(logits, V, &o, 0, (uint64_t)round, p, idx));
        o.temperature = 0.7f;
        inf__sample_token(logits, V, &o, 0, 0, p, idx, &lse);
        assert_true(isnan(lse));
        o.temperature = 1.0f;
        o.top_p = 0.9f;
        inf__sample_token(logits, V, &o, 0, 0, p, idx, &lse);
        assert_true(isnan(lse));
        o.top_p = 1.0f;
        o.min_p = 0.01f;
        inf__sample_token(logits, V, &o, 0, 0, p, idx, &lse);
        assert_true(isnan(lse));
    }
    /* A NaN logit: the sampler's sum would leave it out, inf__logsumexp's
     * would not, so no shared value. */
    logits[17] = NAN;
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    double lse;
    inf__sample_token(logits, V, &o, 0, 0, p, idx, &lse);
    assert_true(isnan(lse));
    free(logits);
    free(p);
    free(idx);
}

static void test_inference_sample__frequencies(void **state)
{
    float logits[4] = {0.0f, 1.0f, 2.0f, -1.0f};
    double work_p[4];
    int work_idx[4], counts[4] = {0};
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.seed = 77;
    const int draws = 40000;
    for (int i = 0; i < draws; i++)
        counts[inf_sample_token(logits, 4, &o, 0, (uint64_t)i, work_p, work_idx)]++;
    double z = exp(0.0) + exp(1.0) + exp(2.0) + exp(-1.0);
    for (int k = 0; k < 4; k++) {
        double want = exp((double)logits[k]) / z;
        double got = (double)counts[k] / draws;
        if (fabs(got - want) > 0.01)
            fail_msg("token %d: frequency %.4f, softmax %.4f", k, got, want);
    }
    float lp[4];
    inf_logprobs(lp, logits, 4);
    for (int k = 0; k < 4; k++)
        assert_true(fabs((double)lp[k] - (logits[k] - log(z))) < 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_sample__matches_naive),
        cmocka_unit_test(test_inference_sample__greedy_ties),
        cmocka_unit_test(test_inference_sample__frequencies),
        cmocka_unit_test(test_inference_sample__shared_logsumexp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
