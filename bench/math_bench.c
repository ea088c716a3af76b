/*
 * Micro-benchmark for the MATH verifier: vf_math_score over every (solution,
 * answer) pair of MATH-500, single-threaded (so the figure is per core).
 *
 *   math_bench ../shared/data/math500/test.jsonl
 *
 * Prints two lines:
 *   verify math: N checks/s per core (median of 5), median-answer p50 X ns, p99 Y ns
 *     - the solution (a full worked answer, extraction included) against `answer`;
 *   verify math (parse path): ...
 *     - the same, with the reference wrapped in braces ("{answer}"), which reads the
 *       same but defeats the identical-text shortcut, so both sides are parsed and
 *       compared value by value.
 * checks/s is the median of 5 passes over all pairs; p50/p99 are over pairs, each
 * pair's time being its median over the 5 passes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "verifiers/verifiers.h"

#define MAX_PAIRS 1000
#define PASSES 5

typedef struct pair {
    char *completion;
    char *reference;
    size_t clen, rlen;
} pair;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs PASSES passes over `pairs`; prints one line labelled `label`. Returns the
 * number of pairs judged equal in the last pass. */
static int run(const char *label, const pair *pairs, int n)
{
    static double per[PASSES][MAX_PAIRS];
    double pass_rate[PASSES];
    int equal = 0;
    vf_math_result *r = malloc(sizeof *r);
    if (!r)
        return -1;
    for (int p = 0; p < PASSES; p++) {
        double t0 = now_ns();
        equal = 0;
        for (int k = 0; k < n; k++) {
            double a = now_ns();
            vf_math_score(r, pairs[k].completion, pairs[k].clen, pairs[k].reference,
                          pairs[k].rlen);
            per[p][k] = now_ns() - a;
            equal += r->reward == 1.0;
        }
        pass_rate[p] = n / ((now_ns() - t0) / 1e9);
    }
    free(r);
    static double med[MAX_PAIRS];
    for (int k = 0; k < n; k++) {
        double v[PASSES];
        for (int p = 0; p < PASSES; p++)
            v[p] = per[p][k];
        qsort(v, PASSES, sizeof v[0], cmp_double);
        med[k] = v[PASSES / 2];
    }
    qsort(med, (size_t)n, sizeof med[0], cmp_double);
    qsort(pass_rate, PASSES, sizeof pass_rate[0], cmp_double);
    int p99 = (int)(0.99 * (n - 1) + 0.5);
    printf("%s: %.0f checks/s per core (median of %d), median-answer p50 %.0f ns, p99 %.0f ns"
           " (%d/%d equal)\n",
           label, pass_rate[PASSES / 2], PASSES, med[n / 2], med[p99], equal, n);
    return equal;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MATH500_TEST_JSONL\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        fprintf(stderr, "math_bench: cannot open %s\n", argv[1]);
        return 1;
    }
    static pair pairs[MAX_PAIRS], wrapped[MAX_PAIRS];
    int n = 0, rc = 1;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0 && n < MAX_PAIRS) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        const char *sol = o ? json_string_value(json_object_get(o, "solution")) : NULL;
        const char *ans = o ? json_string_value(json_object_get(o, "answer")) : NULL;
        if (sol && ans) {
            pairs[n].completion = strdup(sol);
            pairs[n].reference = strdup(ans);
            pairs[n].clen = strlen(sol);
            pairs[n].rlen = strlen(ans);
            size_t wl = pairs[n].rlen + 3;
            char *w = malloc(wl);
            if (w)
                snprintf(w, wl, "{%s}", ans);
            wrapped[n] = pairs[n];
            wrapped[n].reference = w;
            wrapped[n].rlen = w ? strlen(w) : 0;
            if (pairs[n].completion && pairs[n].reference && w)
                n++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "math_bench: no (solution, answer) records in %s\n", argv[1]);
        goto done;
    }
    run("verify math", pairs, n);
    run("verify math (parse path)", wrapped, n);
    rc = 0;
done:
    for (int k = 0; k < n; k++) {
        free(pairs[k].completion);
        free(pairs[k].reference);
        free(wrapped[k].reference);
    }
    return rc;
}
