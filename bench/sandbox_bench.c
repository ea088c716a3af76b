/*
 * sandbox_bench: what isolation costs per run.
 *
 *   sandbox_bench [GSM8K_TEST_JSONL]
 *
 * For three programs: `python3 -c pass`, HumanEval problem 0 with its tests,
 * and a small C program compiled beforehand, runs each N times sandboxed
 * (sbx_run), back to back, then N times by plain fork+exec with the same
 * argv, the same output capture through pipes and no isolation, and prints
 * the median ms per run, runs/s (1000 / median, one at a time), the ratio
 * and the overhead in ms. HumanEval problem 0 runs sandboxed twice: cold
 * (a new interpreter per run) and warm (sbx_request.warm: a zygote that
 * forks per run), each against the same plain python3 process. A
 * compile-and-run of the C program is reported too.
 *
 * The argument is the GSM8K test file that `make bench` hands every
 * benchmark; HumanEval is found at $ENVSRV_DATA/humaneval/HumanEval.jsonl or
 * at <argument>/../../humaneval/HumanEval.jsonl. The floor (overhead under
 * 3 ms per run for `python3 -c pass`) is checked; missing it exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

#define FLOOR_MS 3.0

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Plain fork+exec in `dir` with stdout/stderr drained through pipes, as the
 * sandbox does. Returns the exit status, or -1. */
static int plain_run(const char *dir, const char *const *argv)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    char buf[65536];
    struct pollfd pf[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
    int open_fds = 2;
    while (pid > 0 && open_fds > 0) {
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd >= 0 && pf[i].revents) {
                if (read(pf[i].fd, buf, sizeof buf) <= 0) {
                    close(pf[i].fd);
                    pf[i].fd = -1;
                    open_fds--;
                }
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    int st = -1;
    if (pid > 0)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    return pid > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct workload {
    const char *name;
    const char *const *plain_argv;  /* run in the temp dir */
    sbx_request req;
} workload;

/* Median ms of `runs` sandboxed runs, back to back after one warm-up (page
 * cache, Python's imports); -1 when a run failed. */
static double measure_sbx(const workload *w, int runs)
{
    double *a = calloc((size_t)runs, sizeof *a), m = -1;
    if (!a)
        return -1;
    for (int i = -1; i < runs; i++) {
        sbx_result r;
        char err[256];
        double t0 = now_ms();
        int rc = sbx_run(&r, &w->req, err, sizeof err);
        double t1 = now_ms();
        if (rc != 0 || r.status != SBX_OK) {
            fprintf(stderr, "sandbox_bench: %s: sandboxed run failed: %s %s %.300s\n", w->name,
                    rc ? err : sbx_status_name(r.status), r.message, r.err.data ? r.err.data : "");
            sbx_result_free(&r);
            goto done;
        }
        sbx_result_free(&r);
        if (i >= 0)
            a[i] = t1 - t0;
    }
    m = median(a, runs);
done:
    free(a);
    return m;
}

/* The same for plain fork+exec in `dir`. */
static double measure_plain(const workload *w, const char *dir, int runs)
{
    double *a = calloc((size_t)runs, sizeof *a), m = -1;
    if (!a)
        return -1;
    for (int i = -1; i < runs; i++) {
        double t0 = now_ms();
        int st = plain_run(dir, w->plain_argv);
        double t1 = now_ms();
        if (st != 0) {
            fprintf(stderr, "sandbox_bench: %s: plain run exited %d\n", w->name, st);
            goto done;
        }
        if (i >= 0)
            a[i] = t1 - t0;
    }
    m = median(a, runs);
done:
    free(a);
    return m;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static int write_file(const char *dir, const char *name, const char *s, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(s, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* HumanEval record 0 as one program: prompt + solution + tests + check(). */
static char *humaneval_code(const char *gsm8k_path)
{
    char path[2048];
    const char *data = getenv("ENVSRV_DATA");
    if (data && *data) {
        snprintf(path, sizeof path, "%s/humaneval/HumanEval.jsonl", data);
    } else if (gsm8k_path) {
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", gsm8k_path);
        snprintf(path, sizeof path, "%s/../humaneval/HumanEval.jsonl", dirname(dirname(tmp)));
    } else {
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *line = NULL, *code = NULL;
    size_t cap = 0;
    json_t *rec = NULL;
    if (getline(&line, &cap, f) > 0 && (rec = json_loads(line, 0, NULL))) {
        const char *p = json_string_value(json_object_get(rec, "prompt"));
        const char *s = json_string_value(json_object_get(rec, "canonical_solution"));
        const char *t = json_string_value(json_object_get(rec, "test"));
        const char *e = json_string_value(json_object_get(rec, "entry_point"));
        if (p && s && t && e) {
            size_t n = strlen(p) + strlen(s) + strlen(t) + strlen(e) + 32;
            code = malloc(n);
            if (code)
                snprintf(code, n, "%s%s\n%s\ncheck(%s)\n", p, s, t, e);
        }
    }
    json_decref(rec);
    free(line);
    fclose(f);
    return code;
}

static const char c_program[] =
    "#include <stdio.h>\n"
    "int main(void) { long s = 0; for (int i = 0; i < 1000; i++) s += i * i;\n"
    "  printf(\"%ld\\n\", s); return 0; }\n";

int main(int argc, char **argv)
{
    char err[256];
    sbx_probe_info pi;
    if (sbx_init(&pi, NULL, err, sizeof err) != 0) {
        printf("sandbox_bench: skipped: %s\n", err);
        return 0;
    }
    int runs = getenv("SBX_BENCH_RUNS") ? atoi(getenv("SBX_BENCH_RUNS")) : 40;
    if (runs < 1)
        runs = 1;
    char dir[] = "/tmp/envsrv-sbx-bench.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "sandbox_bench: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    int rc = 1;
    char *he = humaneval_code(argc > 1 ? argv[1] : NULL);
    char *exe = NULL;
    size_t exe_len = 0;
    char cc[1200], exe_path[1100];
    snprintf(exe_path, sizeof exe_path, "%s/prog", dir);
    if (write_file(dir, "prog.c", c_program, sizeof c_program - 1) < 0)
        goto done;
    snprintf(cc, sizeof cc, "/usr/bin/gcc -O2 -o %s %s/prog.c", exe_path, dir);
    if (system(cc) != 0 || !(exe = read_file(exe_path, &exe_len))) {
        fprintf(stderr, "sandbox_bench: cannot compile the C program on the host\n");
        goto done;
    }
    if (he && write_file(dir, "main.py", he, strlen(he)) < 0)
        goto done;

    const char *py = sbx_language_find("python3")->run[0];
    const char *const py_pass[] = { py, "-c", "pass", NULL };
    const char *const py_main[] = { py, "-B", "-E", "-s", "main.py", NULL };
    const char *const c_plain[] = { exe_path, NULL };
    static const char *const c_sbx[] = { "/work/prog", NULL };
    sbx_file exe_file = { "prog", exe, exe_len, true };

    enum { NW = 5 };
    workload ws[NW];
    memset(ws, 0, sizeof ws);
    sbx_request base = SBX_REQUEST_INIT;
    ws[0] = (workload){ "python3 -c pass", py_pass, base };
    ws[0].req.argv = py_pass;
    ws[1] = (workload){ "HumanEval/0 + tests", py_main, base };
    ws[1].req.language = "python3";
    ws[1].req.code = he;
    ws[1].req.code_len = he ? strlen(he) : 0;
    /* The same program in a warm interpreter (a zygote that forks per run),
     * against the same plain python3 process. */
    ws[2] = ws[1];
    ws[2].name = "HumanEval/0 + tests, warm";
    ws[2].req.warm = true;
    ws[3] = (workload){ "C program (prebuilt)", c_plain, base };
    ws[3].req.argv = c_sbx;
    ws[3].req.files = &exe_file;
    ws[3].req.nfiles = 1;
    ws[4] = (workload){ "C compile+run (sandboxed)", NULL, base };
    ws[4].req.language = "c";
    ws[4].req.code = c_program;
    ws[4].req.code_len = sizeof c_program - 1;

    printf("%d runs each, one at a time, median; sandboxed and plain runs each back to back\n",
           runs);
    double plain[NW] = { 0 };
    for (int i = 0; i < NW; i++) {
        if (!ws[i].plain_argv || ((i == 1 || i == 2) && !he))
            continue;
        if ((plain[i] = i == 2 ? plain[1] : measure_plain(&ws[i], dir, runs)) < 0)
            goto done;
    }
    double pass_overhead = 1e9;
    /* Both tiers: the per-run cgroup's cost is worth seeing on its own. */
    for (int tier = 0; tier < 2; tier++) {
        sbx_options opts = SBX_OPTIONS_INIT;
        opts.no_cgroup = tier == 1;
        if (sbx_init(&pi, &opts, err, sizeof err) != 0) {
            fprintf(stderr, "sandbox_bench: %s\n", err);
            goto done;
        }
        if (tier == 1 && pi.tier != SBX_TIER_CGROUP)
            break;   /* the first pass already was the rlimits tier */
        printf("\ntier %s\n", sbx_tier_name(sbx_current_tier()));
        printf("%-26s %9s %9s %9s %9s %7s %10s\n", "program", "sbx ms", "sbx run/s", "plain ms",
               "plain/s", "ratio", "overhead");
        for (int i = 0; i < NW; i++) {
            if ((i == 1 || i == 2) && !he) {
                printf("%-26s (HumanEval.jsonl not found: set ENVSRV_DATA)\n", ws[i].name);
                continue;
            }
            double s = measure_sbx(&ws[i], i == 4 ? (runs + 3) / 4 : runs);
            if (s < 0)
                goto done;
            if (ws[i].plain_argv) {
                double p = plain[i];
                printf("%-26s %9.2f %9.1f %9.2f %9.1f %7.2f %+8.2f ms\n", ws[i].name, s,
                       1000 / s, p, 1000 / p, s / p, s - p);
                if (i == 0 && tier == 0)
                    pass_overhead = s - p;
            } else {
                printf("%-26s %9.2f %9.1f %9s %9s %7s %10s\n", ws[i].name, s, 1000 / s, "-", "-",
                       "-", "-");
            }
        }
    }
    bool ok = pass_overhead < FLOOR_MS;
    printf("floor: sandbox overhead for python3 -c pass = %.2f ms (< %.1f ms) %s\n", pass_overhead,
           FLOOR_MS, ok ? "ok" : "ABOVE");
    rc = ok ? 0 : 1;
done:
    free(he);
    free(exe);
    char rm[1100];
    snprintf(rm, sizeof rm, "%s/prog", dir);
    unlink(rm);
    snprintf(rm, sizeof rm, "%s/prog.c", dir);
    unlink(rm);
    snprintf(rm, sizeof rm, "%s/main.py", dir);
    unlink(rm);
    rmdir(dir);
    return rc;
}
