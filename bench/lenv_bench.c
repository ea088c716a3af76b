/*
 * lenv_bench: how fast lenv_score runs the GSM8K reward, without HTTP.
 *
 * Usage: lenv_bench GSM8K_TEST_JSONL
 * Loads the built-in gsm8k environment over the given test file and scores,
 * for every item, a group of 64 completions (the reference solution, the same
 * with a wrong final number, and the final number as "\boxed{N}", in turn) in
 * one lenv_score call, as the server does for one /score request. Prints the
 * median of 5 passes over the whole file, one state, one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/lenv.h"

#define GROUP 64
#define PASSES 5

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

int main(int argc, char **argv)
{
    int rc = 1;
    lenv_env *env = NULL;
    char **texts = NULL;
    size_t n_items = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s GSM8K_TEST_JSONL\n", argv[0]);
        return 2;
    }
    lenv_data_source src = {"test", argv[1]};
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    o.name_or_path = "gsm8k";
    o.data = &src;
    o.n_data = 1;
    if (lenv_open(&env, &o, &err) != LENV_OK) {
        fprintf(stderr, "lenv_bench: %s\n", err.message);
        return 1;
    }
    json_t *d = lenv_describe(env, 0);
    n_items = (size_t)json_integer_value(json_object_get(json_object_get(d, "splits"), "test"));
    json_decref(d);

    /* Three completions per item: right, wrong, boxed. */
    texts = calloc(n_items * 3, sizeof *texts);
    if (texts == NULL)
        goto done;
    for (size_t i = 0; i < n_items; i++) {
        char id[32];
        const json_t *item;
        snprintf(id, sizeof id, "test-%zu", i);
        if (lenv_item_find(&item, env, id, &err) != LENV_OK)
            goto done;
        const char *answer = json_string_value(json_object_get(item, "answer"));
        const char *h = strstr(answer, "####");
        long final = h ? strtol(h + 4, NULL, 10) : 0;
        texts[3 * i] = strdup(answer);
        if (asprintf(&texts[3 * i + 1], "%.*s#### %ld", h ? (int)(h - answer) : 0, answer,
                     final + 1) < 0)
            texts[3 * i + 1] = NULL;
        if (asprintf(&texts[3 * i + 2], "The answer is \\boxed{%s}.", h ? h + 5 : "0") < 0)
            texts[3 * i + 2] = NULL;
        if (!texts[3 * i] || !texts[3 * i + 1] || !texts[3 * i + 2])
            goto done;
    }

    double rates[PASSES];
    double ones = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        double t0 = now();
        size_t scored = 0;
        for (size_t i = 0; i < n_items; i++) {
            char id[32];
            const json_t *item;
            const char *group[GROUP];
            snprintf(id, sizeof id, "test-%zu", i);
            lenv_item_find(&item, env, id, &err);
            for (size_t j = 0; j < GROUP; j++)
                group[j] = texts[3 * i + j % 3];
            json_t *out = NULL;
            if (lenv_score(&out, env, item, group, NULL, GROUP, &err) != LENV_OK) {
                fprintf(stderr, "lenv_bench: %s: %s\n", id, err.message);
                goto done;
            }
            if (pass == 0) {
                size_t k;
                json_t *r;
                json_array_foreach(json_object_get(out, "rewards"), k, r)
                    ones += json_real_value(r);
            }
            json_decref(out);
            scored += GROUP;
        }
        rates[pass] = (double)scored / (now() - t0);
    }
    qsort(rates, PASSES, sizeof *rates, cmp_double);
    printf("lenv score gsm8k: %.0f completions/s (median of %d)\n", rates[PASSES / 2], PASSES);
    printf("lenv score gsm8k: %.0f of %zu completions scored 1 in the first pass\n", ones,
           n_items * GROUP);
    rc = 0;
done:
    if (texts)
        for (size_t i = 0; i < n_items * 3; i++)
            free(texts[i]);
    free(texts);
    lenv_free(env);
    return rc;
}
