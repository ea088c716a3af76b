/*
 * Batch and thread invariance of inf_generate on stories260K: every sample of
 * a group generated together (batched steps, several threads) is bit-identical
 * (tokens, logprob bits, finish reason, text) to the same sample generated
 * alone with one thread. Skips when $ENVSRV_DATA/models/stories260K is absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "inference/inference.h"

static char model_path[4200], tok_path[4200];

static int data_ok(void)
{
    const char *data = getenv("ENVSRV_DATA");
    const char *src = getenv("ENVSRV_SRC");
    char dir[4000];
    if (data && *data)
        snprintf(dir, sizeof dir, "%s/models/stories260K", data);
    else if (src && *src)
        snprintf(dir, sizeof dir, "%s/../shared/data/models/stories260K", src);
    else
        snprintf(dir, sizeof dir, "../shared/data/models/stories260K");
    snprintf(model_path, sizeof model_path, "%s/stories260K.bin", dir);
    snprintf(tok_path, sizeof tok_path, "%s/tok512.bin", dir);
    return access(model_path, R_OK) == 0 && access(tok_path, R_OK) == 0;
}

typedef struct fixture {
    inf_model *m;
    inf_tokenizer *t;
} fixture;

static int setup(void **state)
{
    if (!data_ok()) {
        *state = NULL;
        return 0;
    }
    fixture *f = calloc(1, sizeof *f);
    inf_error err = {0};
    if (inf_model_load_llama2c(&f->m, model_path, &err) ||
        inf_tokenizer_load_llama2c(&f->t, tok_path, inf_model_config(f->m)->vocab_size, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f) {
        inf_tokenizer_free(f->t);
        inf_model_free(f->m);
        free(f);
    }
    return 0;
}

#define NEED_DATA(f)                                                                       \
    do {                                                                                   \
        if (!(f)) {                                                                        \
            fprintf(stderr, "skipping: %s not found (set ENVSRV_DATA)\n", model_path);     \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

static const int prompt[] = {1, 403, 407, 261, 378}; /* BOS "Once upon a time" */

static void same_sample(const inf_sample *a, const inf_sample *b)
{
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_memory_equal(a->tokens, b->tokens, a->n_tokens * sizeof(int));
    assert_memory_equal(a->logprobs, b->logprobs, a->n_tokens * sizeof(float));
    assert_int_equal(a->finish, b->finish);
    assert_int_equal(a->stop_index, b->stop_index);
    assert_int_equal(a->text_len, b->text_len);
    assert_memory_equal(a->text, b->text, a->text_len);
}

static void check_invariance(const fixture *f, inf_gen_options o, int n_threads)
{
    inf_error err = {0};
    inf_result group;
    o.n_threads = n_threads;
    if (inf_generate(&group, f->m, f->t, prompt, 5, &o, &err))
        fail_msg("%s", err.message);
    for (int j = 0; j < o.n_samples; j++) {
        inf_gen_options alone = o;
        alone.n_samples = 1;
        alone.first_sample = o.first_sample + (uint64_t)j;
        alone.n_threads = 1;
        inf_result one;
        if (inf_generate(&one, f->m, f->t, prompt, 5, &alone, &err))
            fail_msg("%s", err.message);
        same_sample(&group.samples[j], &one.samples[0]);
        inf_result_free(&one);
    }
    inf_result_free(&group);
}

/* Samples of different lengths (eos, stop, length) leave the batch at
 * different steps; the rest must not notice. */
static void test_inference_batch__group_equals_alone(void **state)
{
    fixture *f = *state;
    NEED_DATA(f);
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.n_samples = 7;
    o.max_tokens = 80;
    o.temperature = 0.9f;
    o.top_p = 0.95f;
    o.seed = 5;
    const char *stops[] = {"ball"};
    o.stop = stops;
    o.n_stop = 1;
    check_invariance(f, o, 1);
    check_invariance(f, o, 3);
    o.n_samples = 3;
    o.min_p = 0.05f;
    o.top_k = 20;
    check_invariance(f, o, 8); /* more threads than samples */
}

/* The same request with 1, 2 and 4 threads gives the same bytes, and the
 * group's finish reasons cover more than one kind (the batch really shrank). */
static void test_inference_batch__threads(void **state)
{
    fixture *f = *state;
    NEED_DATA(f);
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.n_samples = 16;
    o.max_tokens = 120;
    o.temperature = 1.0f;
    o.seed = 99;
    const char *stops[] = {"."};
    o.stop = stops;
    o.n_stop = 1;
    inf_error err = {0};
    inf_result base;
    o.n_threads = 1;
    assert_int_equal(inf_generate(&base, f->m, f->t, prompt, 5, &o, &err), 0);
    int kinds[3] = {0};
    size_t min_len = SIZE_MAX, max_len = 0;
    for (int j = 0; j < 16; j++) {
        kinds[base.samples[j].finish]++;
        if (base.samples[j].n_tokens < min_len)
            min_len = base.samples[j].n_tokens;
        if (base.samples[j].n_tokens > max_len)
            max_len = base.samples[j].n_tokens;
    }
    assert_true(kinds[INF_FINISH_STOP] > 0);
    assert_true(min_len < max_len);
    for (int nt = 2; nt <= 4; nt += 2) {
        inf_result r;
        o.n_threads = nt;
        assert_int_equal(inf_generate(&r, f->m, f->t, prompt, 5, &o, &err), 0);
        for (int j = 0; j < 16; j++)
            same_sample(&base.samples[j], &r.samples[j]);
        inf_result_free(&r);
    }
    inf_result_free(&base);
}

/* The random draws are a function of (seed, sample, step) only. */
static void test_inference_batch__rng_stream(void **state)
{
    double a = inf_rng_uniform(1, 2, 3);
    assert_true(a >= 0.0 && a < 1.0);
    assert_true(a == inf_rng_uniform(1, 2, 3));
    assert_true(a != inf_rng_uniform(1, 3, 2));
    assert_true(a != inf_rng_uniform(2, 2, 3));
    /* roughly uniform: the mean of 10000 draws is near 1/2 */
    double sum = 0.0;
    for (uint64_t i = 0; i < 10000; i++)
        sum += inf_rng_uniform(42, 0, i);
    assert_true(sum / 10000 > 0.49 && sum / 10000 < 0.51);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_batch__group_equals_alone),
        cmocka_unit_test(test_inference_batch__threads),
        cmocka_unit_test(test_inference_batch__rng_stream),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
