/*
 * verify_bench — checks per second of vf_gsm8k_score on one core.
 *
 *   build/bench/verify_bench [test.jsonl]     (default $ENVSRV_DATA/gsm8k/test.jsonl)
 *
 * Completions are built from the GSM8K test split, two per record: the
 * reference `answer` text itself (ends "#### N"), and a model-style variant
 * (the worked solution without calculator annotations, ending "The answer is
 * \boxed{N}."). Each is scored against its record's `answer`, as the server
 * does. A second figure covers completions with no marker at all ("So the
 * result is N in total."), where the whole text is searched for a phrase and
 * then its last number. Throughput is timed over whole passes (median of REPS); latency
 * percentiles time each check alone (they include the ~20 ns clock read).
 * Prints, first:
 *   verify gsm8k: N checks/s (median of 5), p50 X ns, p99 Y ns
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "verifiers/verifiers.h"

#define REPS 5
#define MIN_PASS_NS 200000000.0   /* each timed repetition runs at least 0.2 s */

typedef struct item {
    char *completion;   /* owned */
    size_t clen;
    char *reference;    /* owned */
    size_t rlen;
} item;

typedef struct items {
    item *v;
    size_t n, cap;
} items;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int push(items *it, const char *c, size_t clen, const char *r, size_t rlen)
{
    if (it->n == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 1024;
        item *v = realloc(it->v, cap * sizeof *v);
        if (!v)
            return -1;
        it->v = v;
        it->cap = cap;
    }
    item *x = &it->v[it->n];
    x->completion = malloc(clen + 1);
    x->reference = malloc(rlen + 1);
    if (!x->completion || !x->reference) {
        free(x->completion);
        free(x->reference);
        return -1;
    }
    memcpy(x->completion, c, clen);
    x->completion[clen] = '\0';
    memcpy(x->reference, r, rlen);
    x->reference[rlen] = '\0';
    x->clen = clen;
    x->rlen = rlen;
    it->n++;
    return 0;
}

static void items_free(items *it)
{
    for (size_t i = 0; i < it->n; i++) {
        free(it->v[i].completion);
        free(it->v[i].reference);
    }
    free(it->v);
}

/* A model-style completion: the solution text before "####" with every
 * "<<...>>" annotation removed, then `ending` with N in place of %s ("The
 * answer is \boxed{%s}."). Returns a malloc'd string (caller frees) or NULL. */
static char *model_style(size_t *len, const char *a, size_t alen, const char *ending,
                         const char *value)
{
    const char *hash = memmem(a, alen, "####", 4);
    size_t body = hash ? (size_t)(hash - a) : alen;
    char *out = malloc(body + strlen(ending) + strlen(value) + 64);
    size_t n = 0;
    if (!out)
        return NULL;
    n += (size_t)sprintf(out, "Let's solve this step by step.\n");
    for (size_t i = 0; i < body; i++) {
        if (i + 1 < body && a[i] == '<' && a[i + 1] == '<') {
            const char *close = memmem(a + i, body - i, ">>", 2);
            if (close) {
                i = (size_t)(close - a) + 1;
                continue;
            }
        }
        out[n++] = a[i];
    }
    n += (size_t)sprintf(out + n, ending, value);
    *len = n;
    return out;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Median checks/s of vf_gsm8k_score over all of `it`, REPS timed repetitions
 * of at least MIN_PASS_NS each. Adds the rewards to *sink so nothing is
 * optimized away. */
static double median_rate(const items *it, double *sink)
{
    double rates[REPS];
    size_t passes = 1;
    for (;;) {              /* find a pass count that takes long enough */
        double t0 = now_ns();
        for (size_t p = 0; p < passes; p++)
            for (size_t i = 0; i < it->n; i++) {
                vf_gsm8k_result r;
                vf_gsm8k_score(&r, it->v[i].completion, it->v[i].clen, it->v[i].reference,
                               it->v[i].rlen);
                *sink += r.reward;
            }
        if (now_ns() - t0 >= MIN_PASS_NS / 4)
            break;
        passes *= 2;
    }
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = now_ns();
        for (size_t p = 0; p < passes * 4; p++)
            for (size_t i = 0; i < it->n; i++) {
                vf_gsm8k_result r;
                vf_gsm8k_score(&r, it->v[i].completion, it->v[i].clen, it->v[i].reference,
                               it->v[i].rlen);
                *sink += r.reward;
            }
        rates[rep] = (double)(passes * 4 * it->n) / ((now_ns() - t0) / 1e9);
    }
    qsort(rates, REPS, sizeof rates[0], cmp_double);
    return rates[REPS / 2];
}

static double mean_bytes(const items *it)
{
    size_t total = 0;
    for (size_t i = 0; i < it->n; i++)
        total += it->v[i].clen;
    return it->n ? (double)total / (double)it->n : 0.0;
}

int main(int argc, char **argv)
{
    int rc = 1;
    char path[4096];
    FILE *f = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    items it = { 0 }, plain = { 0 };
    double *lat = NULL;

    if (argc > 1) {
        snprintf(path, sizeof path, "%s", argv[1]);
    } else {
        const char *data = getenv("ENVSRV_DATA");
        snprintf(path, sizeof path, "%s/gsm8k/test.jsonl", data && *data ? data : "../shared/data");
    }
    f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "verify_bench: cannot open %s (pass the path of gsm8k/test.jsonl)\n", path);
        goto done;
    }
    while ((got = getline(&line, &line_cap, f)) > 0) {
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)got, 0, &jerr);  /* new reference */
        json_t *ans = rec ? json_object_get(rec, "answer") : NULL;  /* borrowed */
        if (!json_is_string(ans)) {
            fprintf(stderr, "verify_bench: %s: a line without an \"answer\" string\n", path);
            json_decref(rec);
            goto done;
        }
        const char *a = json_string_value(ans);
        size_t alen = json_string_length(ans), mlen = 0;
        vf_number_answer ref;
        if (vf_gsm8k_reference(&ref, a, alen) != 0) {
            fprintf(stderr, "verify_bench: %s: an answer without \"#### N\"\n", path);
            json_decref(rec);
            goto done;
        }
        size_t plen = 0;
        char *m = model_style(&mlen, a, alen, "The answer is \\boxed{%s}.", ref.value);
        char *pl = model_style(&plen, a, alen, "So the result is %s in total.", ref.value);
        int bad = !m || !pl || push(&it, a, alen, a, alen) != 0 ||
                  push(&it, m, mlen, a, alen) != 0 || push(&plain, pl, plen, a, alen) != 0;
        free(m);
        free(pl);
        json_decref(rec);
        if (bad) {
            fprintf(stderr, "verify_bench: out of memory\n");
            goto done;
        }
    }
    if (it.n == 0) {
        fprintf(stderr, "verify_bench: %s has no records\n", path);
        goto done;
    }
    /* Every completion is right by construction: check that first. */
    for (int set = 0; set < 2; set++) {
        const items *s = set ? &plain : &it;
        for (size_t i = 0; i < s->n; i++) {
            vf_gsm8k_result r;
            if (vf_gsm8k_score(&r, s->v[i].completion, s->v[i].clen, s->v[i].reference,
                               s->v[i].rlen) != 0 || r.reward != 1.0) {
                fprintf(stderr, "verify_bench: completion %zu scored %g (got \"%s\")\n", i,
                        r.reward, r.got.value);
                goto done;
            }
        }
    }

    double sink = 0, rate = median_rate(&it, &sink);
    double rate_plain = median_rate(&plain, &sink);

    /* Latency: each check timed alone, a few passes. */
    size_t nlat = it.n * 5;
    lat = malloc(nlat * sizeof *lat);
    if (!lat) {
        fprintf(stderr, "verify_bench: out of memory\n");
        goto done;
    }
    for (size_t k = 0; k < nlat; k++) {
        const item *x = &it.v[k % it.n];
        vf_gsm8k_result r;
        double t0 = now_ns();
        vf_gsm8k_score(&r, x->completion, x->clen, x->reference, x->rlen);
        lat[k] = now_ns() - t0;
        sink += r.reward;
    }
    qsort(lat, nlat, sizeof lat[0], cmp_double);

    printf("verify gsm8k: %.0f checks/s (median of %d), p50 %.0f ns, p99 %.0f ns\n",
           rate, REPS, lat[nlat / 2], lat[(size_t)((double)nlat * 0.99)]);
    printf("  %zu completions (reference text and \\boxed style), mean %.0f bytes\n", it.n,
           mean_bytes(&it));
    printf("verify gsm8k last-number style: %.0f checks/s (median of %d), mean %.0f bytes "
           "(sink %.0f)\n", rate_plain, REPS, mean_bytes(&plain), sink);
    rc = 0;
done:
    free(lat);
    free(line);
    if (f)
        fclose(f);
    items_free(&it);
    items_free(&plain);
    return rc;
}
