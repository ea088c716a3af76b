/*
 * tools_bench: BFCL scoring and multi-turn steps, without HTTP.
 *
 * Usage: tools_bench [ANY]   (argv[1] is ignored; the data is
 * $ENVSRV_DATA/bfcl, else ../shared/data/bfcl; without it the BFCL part is
 * skipped, saying so.)
 *
 *  1. BFCL records scored per second: the built-in `tools` environment over
 *     the four BFCL categories (1,000 records); for every record one
 *     lenv_score call with a group of 8 completions (its gold calls in
 *     Hermes format and a wrong-function variant, alternating). Also the C
 *     verifier alone (vf_bfcl_score on the same completions).
 *  2. Steps per second of multi-turn episodes through lenv_reset/lenv_step:
 *     `guess` played by binary search (step() in Lua), and `calculator` with
 *     one tool call then the answer (tool parsing, schema check and the Lua
 *     tool per step).
 * Each figure is the median of 5 passes, one Lua state, one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua/lenv.h"
#include "verifiers/verifiers.h"

#define GROUP 8
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

static double median(double *v)
{
    qsort(v, PASSES, sizeof *v, cmp_double);
    return v[PASSES / 2];
}

/* The reference answer of a record (vf_bfcl_gold_calls) as Hermes text;
 * `wrong` renames the first call. New string, NULL when out of memory. */
static char *completion(const json_t *item, int wrong)
{
    json_t *calls = vf_bfcl_gold_calls(json_object_get(item, "ground_truth"),
                                       json_object_get(item, "function"));
    char *buf = NULL;
    size_t size = 0;
    FILE *f = calls ? open_memstream(&buf, &size) : NULL;
    if (f == NULL) {
        json_decref(calls);
        return NULL;
    }
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call) {
        if (wrong && i == 0)
            json_object_set_new(call, "name", json_string("no_such_function"));
        char *j = json_dumps(call, JSON_COMPACT);
        fprintf(f, "<tool_call>\n%s\n</tool_call>\n", j ? j : "{}");
        free(j);
    }
    fclose(f);
    json_decref(calls);
    return buf;
}

static int bench_bfcl(void)
{
    const char *data = getenv("ENVSRV_DATA");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bfcl", data && *data ? data : "../shared/data");
    if (access(dir, R_OK) != 0) {
        printf("tools bfcl: skipped, %s not found (set ENVSRV_DATA)\n", dir);
        return 0;
    }
    lenv_data_source src = {NULL, dir};
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = "tools";
    o.data = &src;
    o.n_data = 1;
    if (lenv_open(&env, &o, &err) != LENV_OK) {
        fprintf(stderr, "tools_bench: %s\n", err.message);
        return 1;
    }
    const char *cats[] = {"simple_python", "multiple", "parallel", "parallel_multiple"};
    json_t *d = lenv_describe(env, 0);
    size_t n = 0;
    for (size_t k = 0; k < 4; k++)
        n += (size_t)json_integer_value(json_object_get(json_object_get(d, "splits"), cats[k]));
    json_decref(d);
    const json_t **items = calloc(n, sizeof *items);
    char **texts = calloc(n * 2, sizeof *texts);
    int rc = 1;
    if (items == NULL || texts == NULL)
        goto done;
    size_t at = 0;
    for (size_t k = 0; k < 4; k++) {
        for (size_t i = 0;; i++) {
            char id[64];
            snprintf(id, sizeof id, "%s_%zu", cats[k], i);
            const json_t *item = NULL;
            if (lenv_item_find(&item, env, id, NULL) != LENV_OK || at == n)
                break;
            items[at] = item;
            texts[2 * at] = completion(items[at], 0);
            texts[2 * at + 1] = completion(items[at], 1);
            if (texts[2 * at] == NULL || texts[2 * at + 1] == NULL)
                goto done;
            at++;
        }
    }
    n = at;
    double rates[PASSES], crates[PASSES], ones = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        double t0 = now();
        for (size_t i = 0; i < n; i++) {
            const char *group[GROUP];
            for (int g = 0; g < GROUP; g++)
                group[g] = texts[2 * i + (g & 1)];
            json_t *out = NULL;
            if (lenv_score(&out, env, items[i], group, NULL, GROUP, &err) != LENV_OK) {
                fprintf(stderr, "tools_bench: %s\n", err.message);
                goto done;
            }
            if (pass == 0)
                ones += json_number_value(json_array_get(json_object_get(out, "rewards"), 0));
            json_decref(out);
        }
        rates[pass] = (double)(n * GROUP) / (now() - t0);
        t0 = now();
        for (size_t i = 0; i < n; i++) {
            for (int g = 0; g < GROUP; g++) {
                const char *t = texts[2 * i + (g & 1)];
                vf_bfcl_result r;
                vf_bfcl_score(&r, t, strlen(t), json_object_get(items[i], "function"),
                              json_object_get(items[i], "ground_truth"), 0);
            }
        }
        crates[pass] = (double)(n * GROUP) / (now() - t0);
    }
    printf("tools bfcl: %zu records x %d completions; %.0f gold completions scored 1\n", n, GROUP,
           ones);
    printf("tools bfcl lenv_score: %.0f completions/s, %.0f records/s (median of %d)\n",
           median(rates), median(rates) / GROUP, PASSES);
    printf("tools bfcl vf_bfcl_score (C only): %.0f completions/s (median of %d)\n",
           median(crates), PASSES);
    rc = 0;
done:
    for (size_t i = 0; texts && i < 2 * n; i++)
        free(texts[i]);
    free(texts);
    free(items);
    lenv_free(env);
    return rc;
}

/* Plays `episodes` episodes; returns the number of steps, or -1. */
static long play(lenv_env *env, const char *name, int episodes)
{
    long steps = 0;
    lenv_error err;
    for (int e = 0; e < episodes; e++) {
        char id[32];
        if (strcmp(name, "guess") == 0)
            snprintf(id, sizeof id, "g%d", 1 + e % 6);
        else
            snprintf(id, sizeof id, "%s", e % 2 ? "train" : "apples");
        const json_t *item = NULL;
        json_t *obs = NULL, *state = NULL, *res = NULL;
        if (lenv_item_find(&item, env, id, &err) != LENV_OK || lenv_reset(&obs, &state, env, item, &err))
            return -1;
        json_decref(obs);
        long lo = json_integer_value(json_object_get(item, "low"));
        long hi = json_integer_value(json_object_get(item, "high"));
        for (int turn = 0; turn < 12; turn++) {
            char action[200];
            if (strcmp(name, "guess") == 0)
                snprintf(action, sizeof action, "I guess %ld", (lo + hi) / 2);
            else if (turn == 0)
                snprintf(action, sizeof action, "<tool_call>{\"name\": \"calculator\", \"arguments\": "
                         "{\"expression\": \"%s\"}}</tool_call>", e % 2 ? "378 / 4.5" : "48*17 - 529");
            else
                snprintf(action, sizeof action, "Answer: %s", e % 2 ? "84" : "287");
            if (lenv_step(&res, &state, env, item, action, strlen(action), &err) != LENV_OK) {
                fprintf(stderr, "tools_bench: %s\n", err.message);
                json_decref(state);
                return -1;
            }
            steps++;
            const char *hint = json_string_value(json_object_get(
                json_array_get(json_object_get(res, "observation"), 0), "content"));
            int finished = json_is_true(json_object_get(res, "done"));
            if (hint && strcmp(hint, "Higher.") == 0)
                lo = (lo + hi) / 2 + 1;
            else if (hint && strcmp(hint, "Lower.") == 0)
                hi = (lo + hi) / 2 - 1;
            json_decref(res);
            if (finished)
                break;
        }
        json_decref(state);
    }
    return steps;
}

static int bench_steps(const char *name, int episodes)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = name;
    if (lenv_open(&env, &o, &err) != LENV_OK) {
        fprintf(stderr, "tools_bench: %s\n", err.message);
        return 1;
    }
    double rates[PASSES];
    long steps = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        double t0 = now();
        steps = play(env, name, episodes);
        if (steps < 0) {
            lenv_free(env);
            return 1;
        }
        rates[pass] = (double)steps / (now() - t0);
    }
    printf("multi-turn %s: %.0f steps/s over %d episodes of %.1f steps (median of %d)\n", name,
           median(rates), episodes, (double)steps / episodes, PASSES);
    lenv_free(env);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (bench_bfcl() != 0)
        return 1;
    if (bench_steps("guess", 2000) != 0 || bench_steps("calculator", 2000) != 0)
        return 1;
    return 0;
}
