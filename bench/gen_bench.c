/*
 * gen_bench: how fast the procedural environments (envs/gen_*.lua) generate
 * and verify items, without HTTP.
 *
 * Usage: gen_bench [ignored]   (make bench passes the GSM8K path; unused here)
 * For every gen-* family: generates ITEMS items spread over all its levels
 * with lenv_item_get (one per call, as GET /items/{id} does), then scores the
 * generator's own solution for each with lenv_score (one per call, as a
 * /score request of one completion does). Prints items per second for each
 * phase, the median of PASSES passes, one state, one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/lenv.h"

#define ITEMS 400
#define PASSES 3

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

/* One family: fills gen_rate and verify_rate (items/s); 0 or -1 with a message. */
static int bench_family(double *gen_rate, double *verify_rate, const char *name)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    json_t *items[ITEMS] = {0};
    char *texts[ITEMS] = {0};
    double g[PASSES], v[PASSES];
    int rc = -1, lo, hi;
    o.name_or_path = name;
    if (lenv_open(&env, &o, &err) != LENV_OK) {
        fprintf(stderr, "gen_bench: %s\n", err.message);
        return -1;
    }
    lenv_is_generated(env, &lo, &hi);
    for (int p = 0; p < PASSES; p++) {
        double t0 = now();
        for (int i = 0; i < ITEMS; i++) {
            char id[40];
            snprintf(id, sizeof id, "d%d-s%d", lo + i % (hi - lo + 1), i * 7919 + p);
            json_decref(items[i]);
            items[i] = NULL;
            if (lenv_item_get(&items[i], env, id, &err) != LENV_OK) {
                fprintf(stderr, "gen_bench: %s %s: %s\n", name, id, err.message);
                goto done;
            }
            free(texts[i]);
            const char *sol = json_string_value(json_object_get(items[i], "solution"));
            if (asprintf(&texts[i], "ANSWER: %s", sol ? sol : "") < 0) {
                texts[i] = NULL;
                goto done;
            }
        }
        double t1 = now();
        for (int i = 0; i < ITEMS; i++) {
            json_t *out = NULL;
            const char *c = texts[i];
            if (lenv_score(&out, env, items[i], &c, NULL, 1, &err) != LENV_OK) {
                fprintf(stderr, "gen_bench: %s: %s\n", name, err.message);
                goto done;
            }
            double r = json_number_value(json_array_get(json_object_get(out, "rewards"), 0));
            json_decref(out);
            if (r != 1.0) {
                fprintf(stderr, "gen_bench: %s: own solution scored %g\n", name, r);
                goto done;
            }
        }
        double t2 = now();
        g[p] = ITEMS / (t1 - t0);
        v[p] = ITEMS / (t2 - t1);
    }
    qsort(g, PASSES, sizeof *g, cmp_double);
    qsort(v, PASSES, sizeof *v, cmp_double);
    *gen_rate = g[PASSES / 2];
    *verify_rate = v[PASSES / 2];
    rc = 0;
done:
    for (int i = 0; i < ITEMS; i++) {
        json_decref(items[i]);
        free(texts[i]);
    }
    lenv_free(env);
    return rc;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("%-20s %14s %14s\n", "family", "generated/s", "verified/s");
    for (size_t i = 0; i < lenv_builtin_count(); i++) {
        const char *name = lenv_builtin_name(i);
        double gen, ver;
        if (strncmp(name, "gen-", 4) != 0)
            continue;
        if (bench_family(&gen, &ver, name) != 0)
            return 1;
        printf("%-20s %14.0f %14.0f\n", name, gen, ver);
    }
    return 0;
}
