/*
 * The cost of judging code through the `code` environment: all 164 HumanEval
 * canonical solutions scored with lenv_score from 2 threads (a pool of 2 Lua
 * states, each run sandboxed, with the tamper-proof harness of
 * envs/code.lua), against the same 164 programs (prompt + solution + test +
 * `check(entry_point)`) run as plain `/usr/bin/python3 prog.py` processes, 2 at
 * a time. Same parallelism, same interpreter; the difference is the sandbox
 * and the harness. The code env runs twice per pass: with its default
 * (warm interpreters) and with every run cold (sbx_options.no_warm).
 *
 *   code_bench [ignored]      (HumanEval from $ENVSRV_DATA/humaneval/HumanEval.jsonl)
 *
 * Passes interleave plain, warm and cold; prints the median of 5 passes of
 * each and the ratios to plain. The floor: the default path at most 1.5x.
 * Exits 0 when the data is missing (it says so), 1 when a solution fails or
 * a run meant to be warm was not.
 */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "lua/lenv.h"
#include "sandbox/sandbox.h"

#define PASSES 5
#define MAX_ITEMS 200

extern char **environ;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct work {
    lenv_env *env;                      /* NULL: the plain runs */
    const json_t *items[MAX_ITEMS];     /* borrowed from env */
    char *completions[MAX_ITEMS];       /* owned */
    char *programs[MAX_ITEMS];          /* owned: paths of the plain programs */
    size_t n;
    size_t next;
    int failures;
    bool want_warm;                     /* env runs: what details.warm must say */
    pthread_mutex_t mu;
} work;

static size_t take(work *w)
{
    pthread_mutex_lock(&w->mu);
    size_t i = w->next++;
    pthread_mutex_unlock(&w->mu);
    return i;
}

static void failed(work *w, size_t i, const char *why)
{
    pthread_mutex_lock(&w->mu);
    w->failures++;
    fprintf(stderr, "code_bench: item %zu: %s\n", i, why);
    pthread_mutex_unlock(&w->mu);
}

static void *env_worker(void *arg)
{
    work *w = arg;
    for (size_t i; (i = take(w)) < w->n;) {
        const char *c = w->completions[i];
        size_t len = strlen(c);
        json_t *out = NULL;
        lenv_error err;
        if (lenv_score(&out, w->env, w->items[i], &c, &len, 1, &err) != LENV_OK)
            failed(w, i, err.message);
        else if (json_number_value(json_array_get(json_object_get(out, "rewards"), 0)) != 1.0)
            failed(w, i, "the canonical solution did not pass");
        else if (json_is_true(json_object_get(json_array_get(json_object_get(out, "details"), 0),
                                              "warm")) != w->want_warm)
            failed(w, i, w->want_warm ? "ran cold, not warm" : "ran warm, not cold");
        json_decref(out);
    }
    return NULL;
}

static void *plain_worker(void *arg)
{
    work *w = arg;
    for (size_t i; (i = take(w)) < w->n;) {
        char *argv[] = { "/usr/bin/python3", w->programs[i], NULL };
        pid_t pid;
        int status = -1;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1 /* O_WRONLY */, 0);
        if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0 ||
            waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed(w, i, "the plain program failed");
        posix_spawn_file_actions_destroy(&fa);
    }
    return NULL;
}

/* One pass of 2 threads over all items; returns seconds. */
static double pass(work *w, void *(*fn)(void *))
{
    pthread_t th[2];
    w->next = 0;
    double t0 = now_s();
    for (int t = 0; t < 2; t++)
        pthread_create(&th[t], NULL, fn, w);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    return now_s() - t0;
}

/* One pass of the code env with warm interpreters on or off. */
static double env_pass(work *w, bool warm)
{
    char err[256];
    sbx_options o = SBX_OPTIONS_INIT;
    o.no_warm = !warm;
    if (sbx_init(NULL, &o, err, sizeof err) != 0) {
        fprintf(stderr, "code_bench: %s\n", err);
        w->failures++;
        return 0;
    }
    w->want_warm = warm;
    return pass(w, env_worker);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *joined(const char *a, const char *b, const char *c, const char *d)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s%s", a, b, c, d);
    return s;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const char *data = getenv("ENVSRV_DATA");
    char path[512], dir[] = "/tmp/envsrv-code-bench-XXXXXX";
    snprintf(path, sizeof path, "%s/humaneval/HumanEval.jsonl", data && *data ? data : "../shared/data");
    if (access(path, R_OK) != 0) {
        printf("code_bench: skipped, %s not found (set ENVSRV_DATA)\n", path);
        return 0;
    }
    int rc = 1;
    work w = { 0 };
    pthread_mutex_init(&w.mu, NULL);
    lenv_data_source src = { "test", path };
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = "code";
    o.n_states = 2;
    o.data = &src;
    o.n_data = 1;
    lenv_error err;
    if (lenv_open(&w.env, &o, &err) != LENV_OK) {
        fprintf(stderr, "code_bench: %s\n", err.message);
        goto done;
    }
    if (!mkdtemp(dir)) {
        perror("code_bench: mkdtemp");
        goto done;
    }
    for (; w.n < MAX_ITEMS; w.n++) {
        char id[32];
        const json_t *item;
        snprintf(id, sizeof id, "test-%zu", w.n);
        if (lenv_item_find(&item, w.env, id, &err) != LENV_OK)
            break;
        const char *prompt = json_string_value(json_object_get(item, "prompt"));
        const char *sol = json_string_value(json_object_get(item, "canonical_solution"));
        const char *test = json_string_value(json_object_get(item, "test"));
        const char *ep = json_string_value(json_object_get(item, "entry_point"));
        char check[256], file[600];
        snprintf(check, sizeof check, "\ncheck(%s)\n", ep);
        snprintf(file, sizeof file, "%s/p%zu.py", dir, w.n);
        w.items[w.n] = item;
        w.completions[w.n] = joined("```python\n", prompt, sol, "```\n");
        w.programs[w.n] = strdup(file);
        char *prog = joined(prompt, sol, test, check);
        FILE *f = fopen(file, "w");
        if (!prog || !f || !w.completions[w.n] || !w.programs[w.n] || fputs(prog, f) < 0) {
            fprintf(stderr, "code_bench: cannot write %s\n", file);
            free(prog);
            if (f)
                fclose(f);
            w.n++;
            goto done;
        }
        fclose(f);
        free(prog);
    }

    /* A first pass of each starts the zygotes and compiles the harness. */
    (void)env_pass(&w, true);
    (void)env_pass(&w, false);
    double warm_t[PASSES], cold_t[PASSES], plain_t[PASSES];
    for (int p = 0; p < PASSES; p++) {
        plain_t[p] = pass(&w, plain_worker);
        warm_t[p] = env_pass(&w, true);
        cold_t[p] = env_pass(&w, false);
    }
    if (w.failures) {
        fprintf(stderr, "code_bench: %d failures\n", w.failures);
        goto done;
    }
    qsort(warm_t, PASSES, sizeof warm_t[0], cmp_double);
    qsort(cold_t, PASSES, sizeof cold_t[0], cmp_double);
    qsort(plain_t, PASSES, sizeof plain_t[0], cmp_double);
    double warm = warm_t[PASSES / 2], cold = cold_t[PASSES / 2], plain = plain_t[PASSES / 2];
    printf("code env, %zu HumanEval canonical solutions, 2 threads, medians of %d passes:\n",
           w.n, PASSES);
    printf("  warm (default):                 %.2f s (%.1f ms each)  %.2fx plain\n", warm,
           warm * 1000 / (double)w.n, warm / plain);
    printf("  cold (no_warm):                 %.2f s (%.1f ms each)  %.2fx plain\n", cold,
           cold * 1000 / (double)w.n, cold / plain);
    printf("plain /usr/bin/python3, 2 at a time: %.2f s (%.1f ms each)\n", plain,
           plain * 1000 / (double)w.n);
    printf("floor: default (warm) %.2fx plain (<= 1.50x): %s\n", warm / plain,
           warm / plain <= 1.5 ? "ok" : "OVER THE FLOOR");
    printf("warm beats plain python3: %s (%.2fx)\n", warm < plain ? "yes" : "no", warm / plain);
    rc = 0;
done:
    for (size_t i = 0; i < w.n; i++) {
        if (w.programs[i])
            unlink(w.programs[i]);
        free(w.programs[i]);
        free(w.completions[i]);
    }
    rmdir(dir);
    lenv_free(w.env);
    pthread_mutex_destroy(&w.mu);
    return rc;
}
