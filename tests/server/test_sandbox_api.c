/*
 * Integration tests of the sandbox API (docs/api.md, "Sandbox") against the
 * real binary ($ENVSRV_BIN): GET /v1/sandbox, every validation error of
 * POST /v1/sandbox/run, each language, the limit statuses, invalid UTF-8
 * output, limit clamping, and the worker pool: HTTP threads keep answering
 * while every worker is busy, a full queue is a 503 with Retry-After, and
 * SIGTERM with runs still queued answers them all and exits 0.
 *
 * Nothing here sleeps to synchronise. Where a test needs the pool in a given
 * state (two runs running, one waiting) it polls GET /v1/sandbox -- which is
 * itself answered by an HTTP thread -- until the counts say so. Ordering is
 * checked with poll(2) on the runs' sockets: "no answer yet", not "fast".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/support.h"

static tsup_server g_srv;
static int g_up;

#define NEED_SERVER() TSUP_NEED_SERVER(g_up)

#define NEED_BIN()                                                                 \
    do {                                                                           \
        if (!tsup_bin()) {                                                         \
            print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n"); \
            skip();                                                                \
        }                                                                          \
    } while (0)

static int group_setup(void **state)
{
    (void)state;
    static const char *const args[] = { "--env", "gsm8k", "--threads", "2", "--sandbox-workers", "2",
                                        "--sandbox-limits", "cpu_ms=5000,wall_ms=10000", NULL };
    g_up = tsup_bin() && tsup_server_start(&g_srv, args) == 0;
    return 0;
}

/* The group's server stops cleanly after every test above. */
static void test_sandbox_api__server_exits_cleanly(void **state)
{
    (void)state;
    tsup_server_stop_in_test(&g_srv, &g_up);
}

static int group_teardown(void **state)
{
    (void)state;
    return tsup_server_teardown(&g_srv, &g_up);
}

/* POST /v1/sandbox/run expecting `status`/`code`; returns the message (static copy). */
static const char *expect_error(unsigned port, const char *body, int status, const char *code)
{
    static char message[1024];
    int st = 0;
    json_t *j = tsup_call(&st, port, "POST", "/v1/sandbox/run", body);
    if (st != status || strcmp(tsup_error_code(j), code) != 0) {
        char *dump = json_dumps(j, 0);
        print_error("%.200s\n  expected %d %s, got %d: %s\n", body, status, code, st, dump ? dump : "?");
        free(dump);
        json_decref(j);
        fail();
    }
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    assert_non_null(m);
    snprintf(message, sizeof message, "%s", m);
    json_decref(j);
    return message;
}

/* Runs `body` expecting 200; returns the result (new reference). */
static json_t *run_ok(unsigned port, const char *body)
{
    int st = 0;
    json_t *j = tsup_call(&st, port, "POST", "/v1/sandbox/run", body);
    if (st != 200) {
        char *dump = json_dumps(j, 0);
        print_error("%.200s\n  expected 200, got %d: %s\n", body, st, dump ? dump : "?");
        free(dump);
        json_decref(j);
        fail();
    }
    return j;
}

static const char *str(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    if (!s) {
        print_error("no string field '%s'\n", key);
        fail();
    }
    return s;
}

static long long num(const json_t *j, const char *key)
{
    const json_t *v = json_object_get(j, key);
    if (!json_is_integer(v)) {
        print_error("no integer field '%s'\n", key);
        fail();
    }
    return json_integer_value(v);
}

/* Polls GET /v1/sandbox until the pool has `running` runs going and
 * `waiting` queued (each -1: any). Fails the test after TSUP_TIMEOUT_S. */
static void wait_pool(unsigned port, long long running, long long waiting)
{
    time_t end = time(NULL) + TSUP_TIMEOUT_S;
    for (;;) {
        int st = 0;
        json_t *j = tsup_call(&st, port, "GET", "/v1/sandbox", NULL);
        assert_int_equal(st, 200);
        json_t *q = json_object_get(j, "queue");
        int ok = (running < 0 || num(q, "running") == running) && (waiting < 0 || num(q, "waiting") == waiting);
        json_decref(j);
        if (ok)
            return;
        if (time(NULL) > end) {
            print_error("the pool never reached running=%lld waiting=%lld\n", running, waiting);
            fail();
        }
        /* Back off between polls so the loop does not starve the runs of
         * CPU; the condition, not this pause, is what the test waits for. */
        struct timespec ts = { 0, 2 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

/* Sends a run on a fresh connection and returns the socket, unanswered. */
static int send_run(unsigned port, const char *body)
{
    int fd = tsup_connect(port);
    tsup_send_request(fd, "POST", "/v1/sandbox/run", NULL, body, strlen(body), 0);
    return fd;
}

/* Whether fd has something to read right now (an answer started, or EOF). */
static int readable_now(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    return poll(&p, 1, 0) > 0;
}

/* Reads the answer on fd, closes it, and returns its status; *out (when not
 * NULL) gets the body as JSON. */
static int read_run(json_t **out, int fd, char *retry_after, size_t ra_len)
{
    tsup_response r;
    assert_int_equal(tsup_read_response(&r, fd), 0);
    close(fd);
    int st = r.status;
    if (retry_after && tsup_header(retry_after, ra_len, &r, "Retry-After") != 0)
        retry_after[0] = '\0';
    if (out)
        *out = tsup_json(&r);
    tsup_response_free(&r);
    return st;
}

/* ---- GET /v1/sandbox --------------------------------------------------------------- */

static void test_sandbox_api_info__contents(void **state)
{
    (void)state;
    NEED_SERVER();
    int st = 0;
    json_t *j = tsup_call(&st, g_srv.port, "GET", "/v1/sandbox", NULL);
    assert_int_equal(st, 200);
    assert_true(json_is_true(json_object_get(j, "ready")));
    const char *tier = str(j, "tier");
    assert_true(strcmp(tier, "namespaces+seccomp+cgroup") == 0 || strcmp(tier, "namespaces+seccomp+rlimits") == 0);
    assert_string_equal(str(j, "mode"), "best-effort");
    assert_true(json_array_size(json_object_get(j, "layers")) >= 6);
    assert_true(json_is_array(json_object_get(j, "missing_layers")));
    assert_true(json_is_boolean(json_object_get(j, "as_root")));
    long long cg = num(j, "cgroup_version");
    assert_true(cg >= 0 && cg <= 2);
    assert_int_equal(num(j, "workers"), 2);
    json_t *q = json_object_get(j, "queue");
    assert_int_equal(num(q, "max"), 1024);
    json_t *max = json_object_get(json_object_get(j, "limits"), "max");
    assert_int_equal(num(max, "cpu_ms"), 5000);
    assert_int_equal(num(max, "wall_ms"), 10000);
    assert_int_equal(num(max, "memory_mb"), 1024);
    assert_int_equal(num(max, "output_bytes"), 8 << 20);
    json_t *def = json_object_get(json_object_get(j, "limits"), "default");
    assert_int_equal(num(def, "cpu_ms"), 2000);
    json_t *langs = json_object_get(j, "languages");
    assert_int_equal(json_array_size(langs), 5);
    const char *names[] = { "python", "c", "cpp", "bash", "lua" };
    for (size_t i = 0; i < 5; i++) {
        json_t *l = json_array_get(langs, i);
        assert_string_equal(str(l, "name"), names[i]);
        assert_true(json_is_boolean(json_object_get(l, "available")));
    }
    json_decref(j);
}

/* ---- validation ---------------------------------------------------------------------- */

static void test_sandbox_api_run__validation(void **state)
{
    (void)state;
    NEED_SERVER();
    unsigned p = g_srv.port;
    expect_error(p, "{\"language\": \"python\", \"code\": ", 400, "bad_json");
    expect_error(p, "[1]", 400, "bad_request");
    assert_non_null(strstr(expect_error(p, "{\"code\": \"x\"}", 422, "invalid_field"), "'language'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": 3, \"code\": \"x\"}", 422, "invalid_field"), "'language'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"cobol\", \"code\": \"x\"}", 422, "invalid_field"),
                           "cobol"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\"}", 422, "invalid_field"), "'code'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": [\"echo\"]}", 422, "invalid_field"),
                           "'code'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"stdin\": 5}", 422,
                                        "invalid_field"), "'stdin'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"python\", \"code\": \"\", \"warm\": 1}", 422,
                                        "invalid_field"), "'warm'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"files\": [\"a\"]}", 422,
                                        "invalid_field"), "'files'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"files\": {\"a\": 1}}", 422,
                                        "invalid_field"), "'files.a'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"files\": {\"../a\": \"x\"}}",
                                        422, "invalid_field"), "'files'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"files\": {\"..\": \"x\"}}",
                                        422, "invalid_field"), "'files'"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"files\": {\"main.sh\": \"x\"}}",
                                        422, "invalid_field"), "main.sh"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"limits\": 5}", 422,
                                        "invalid_field"), "'limits'"));
    const char *bad_limits[] = { "\"1000\"", "0", "-5", "1.5", "true", "null" };
    for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"language\": \"bash\", \"code\": \"\", \"limits\": {\"wall_ms\": %s}}",
                 bad_limits[i]);
        assert_non_null(strstr(expect_error(p, body, 422, "invalid_field"), "'limits.wall_ms'"));
    }
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"limits\": {\"disk_mb\": 1}}",
                                        422, "invalid_field"), "limits.disk_mb"));
    assert_non_null(strstr(expect_error(p, "{\"language\": \"bash\", \"code\": \"\", \"timeout\": 1}", 422,
                                        "invalid_field"), "'timeout'"));

    /* 65 files: one over the cap. */
    size_t cap = 65 * 32 + 128;
    char *body = malloc(cap);
    assert_non_null(body);
    size_t n = (size_t)snprintf(body, cap, "{\"language\": \"bash\", \"code\": \"\", \"files\": {");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s\"f%d\": \"\"", i ? ", " : "", i);
    snprintf(body + n, cap - n, "}}");
    assert_non_null(strstr(expect_error(p, body, 422, "invalid_field"), "'files'"));
    free(body);

    /* Code over 4 MiB (but under the 16 MiB body cap). */
    size_t big = (4u << 20) + 16;
    body = malloc(big + 64);
    assert_non_null(body);
    n = (size_t)snprintf(body, big + 64, "{\"language\": \"bash\", \"code\": \"");
    memset(body + n, '#', big);
    snprintf(body + n + big, 64, "\"}");
    assert_non_null(strstr(expect_error(p, body, 422, "invalid_field"), "'code'"));
    free(body);

    /* A GET on the run route is a 405, a POST on the info route too. */
    int st = 0;
    json_t *j = tsup_call(&st, p, "GET", "/v1/sandbox/run", NULL);
    assert_int_equal(st, 405);
    json_decref(j);
    j = tsup_call(&st, p, "POST", "/v1/sandbox", "{}");
    assert_int_equal(st, 405);
    json_decref(j);
}

/* ---- languages and statuses ---------------------------------------------------------- */

static void test_sandbox_api_run__python(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = run_ok(g_srv.port,
                       "{\"language\": \"python\", \"code\": \"import helper\\nprint(helper.twice(input()))\","
                       " \"stdin\": \"21\\n\", \"files\": {\"helper.py\": \"def twice(s): return int(s) * 2\\n\"}}");
    assert_string_equal(str(j, "status"), "OK");
    assert_string_equal(str(j, "stdout"), "42\n");
    assert_string_equal(str(j, "stderr"), "");
    assert_int_equal(num(j, "exit_code"), 0);
    assert_int_equal(num(j, "signal"), 0);
    assert_true(json_is_false(json_object_get(j, "stdout_truncated")));
    assert_true(json_is_false(json_object_get(j, "stderr_truncated")));
    assert_true(json_is_false(json_object_get(j, "output_replaced")));
    assert_int_equal(num(j, "stdout_bytes"), 3);
    assert_true(num(j, "wall_ms") >= 0 && num(j, "cpu_ms") >= 0 && num(j, "memory_kb") > 0);
    assert_true(strncmp(str(j, "sandbox"), "namespaces+seccomp+", 19) == 0);
    assert_true(json_is_true(json_object_get(j, "warm")));     /* python: warm by default */
    json_t *lim = json_object_get(j, "limits");
    assert_int_equal(num(lim, "cpu_ms"), 2000);
    assert_int_equal(num(lim, "wall_ms"), 5000);
    json_decref(j);

    /* "warm": false asks for a cold run, with the same answer. */
    j = run_ok(g_srv.port, "{\"language\": \"python\", \"code\": \"print(6 * 7)\", \"warm\": false}");
    assert_string_equal(str(j, "stdout"), "42\n");
    assert_true(json_is_false(json_object_get(j, "warm")));
    json_decref(j);

    /* A failing program is a 200 with RUNTIME_ERROR, not an HTTP error. */
    j = run_ok(g_srv.port, "{\"language\": \"python3\", \"code\": \"import sys\\nsys.exit('boom')\"}");
    assert_string_equal(str(j, "status"), "RUNTIME_ERROR");
    assert_int_equal(num(j, "exit_code"), 1);
    assert_non_null(strstr(str(j, "stderr"), "boom"));
    json_decref(j);
}

static void test_sandbox_api_run__c_bash_lua(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = run_ok(g_srv.port, "{\"language\": \"c\", \"code\": \"#include <stdio.h>\\nint main(void)"
                                   "{int a,b; scanf(\\\"%d %d\\\", &a, &b); printf(\\\"%d\\\\n\\\", a+b); return 0;}\","
                                   " \"stdin\": \"2 40\"}");
    assert_string_equal(str(j, "status"), "OK");
    assert_string_equal(str(j, "stdout"), "42\n");
    assert_int_equal(num(j, "compile_exit_code"), 0);
    json_decref(j);

    j = run_ok(g_srv.port, "{\"language\": \"c\", \"code\": \"int main(void) { return oops; }\"}");
    assert_string_equal(str(j, "status"), "COMPILE_ERROR");
    assert_non_null(strstr(str(j, "compile_output"), "oops"));
    json_decref(j);

    j = run_ok(g_srv.port, "{\"language\": \"bash\", \"code\": \"cat data.txt; echo err >&2; exit 3\","
                           " \"files\": {\"data.txt\": \"hello\\n\"}}");
    assert_string_equal(str(j, "status"), "RUNTIME_ERROR");
    assert_int_equal(num(j, "exit_code"), 3);
    assert_string_equal(str(j, "stdout"), "hello\n");
    assert_string_equal(str(j, "stderr"), "err\n");
    json_decref(j);

    j = run_ok(g_srv.port, "{\"language\": \"lua\", \"code\": \"print(io.read('n') * 2)\", \"stdin\": \"21\"}");
    assert_string_equal(str(j, "status"), "OK");
    assert_string_equal(str(j, "stdout"), "42\n");
    json_decref(j);
}

static void test_sandbox_api_run__limit_statuses(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = run_ok(g_srv.port, "{\"language\": \"python\", \"code\": \"while True: pass\","
                                   " \"limits\": {\"cpu_ms\": 300, \"wall_ms\": 3000}}");
    assert_string_equal(str(j, "status"), "TIME_LIMIT_EXCEEDED");
    assert_int_equal(num(json_object_get(j, "limits"), "cpu_ms"), 300);
    json_decref(j);

    j = run_ok(g_srv.port, "{\"language\": \"bash\", \"code\": \"sleep 10\", \"limits\": {\"wall_ms\": 200}}");
    assert_string_equal(str(j, "status"), "TIME_LIMIT_EXCEEDED");
    json_decref(j);

    j = run_ok(g_srv.port, "{\"language\": \"python\", \"code\": \"x = bytearray(200 * 1024 * 1024)\\nx[::4096] = "
                           "b'1' * len(x[::4096])\", \"limits\": {\"memory_mb\": 64}}");
    assert_string_equal(str(j, "status"), "MEMORY_LIMIT_EXCEEDED");
    json_decref(j);

    j = run_ok(g_srv.port, "{\"language\": \"python\", \"code\": \"print('x' * 100000)\","
                           " \"limits\": {\"output_bytes\": 1000}}");
    assert_string_equal(str(j, "status"), "OUTPUT_LIMIT_EXCEEDED");
    assert_true(json_is_true(json_object_get(j, "stdout_truncated")));
    assert_true(strlen(str(j, "stdout")) <= 1000);
    json_decref(j);
}

/* Limits over the server's maxima are clamped, not refused; so is a memory
 * limit under the sandbox's minimum. */
static void test_sandbox_api_run__limits_clamped(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = run_ok(g_srv.port, "{\"language\": \"bash\", \"code\": \"true\", \"limits\": {\"cpu_ms\": 99999999999,"
                                   " \"wall_ms\": 600000, \"memory_mb\": 1, \"output_bytes\": 1073741824}}");
    assert_string_equal(str(j, "status"), "OK");
    json_t *lim = json_object_get(j, "limits");
    assert_int_equal(num(lim, "cpu_ms"), 5000);
    assert_int_equal(num(lim, "wall_ms"), 10000);
    assert_int_equal(num(lim, "memory_mb"), 16);
    assert_int_equal(num(lim, "output_bytes"), 8 << 20);
    json_decref(j);
}

/* Bytes that are not UTF-8 become U+FFFD; NULs survive as \u0000. */
static void test_sandbox_api_run__invalid_utf8(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = run_ok(g_srv.port, "{\"language\": \"python\", \"code\": \"import sys\\nsys.stdout.buffer.write("
                                   "b'a\\\\xffb\\\\xc3\\\\xa9\\\\x00c\\\\xe2\\\\x82')\\nsys.stderr.buffer.write(b'\\\\xc0\\\\xaf')\"}");
    assert_string_equal(str(j, "status"), "OK");
    json_t *out = json_object_get(j, "stdout");
    const char want[] = "a\xEF\xBF\xBD" "b\xC3\xA9" "\0c\xEF\xBF\xBD\xEF\xBF\xBD";
    assert_int_equal(json_string_length(out), sizeof want - 1);
    assert_memory_equal(json_string_value(out), want, sizeof want - 1);
    assert_string_equal(str(j, "stderr"), "\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_true(json_is_true(json_object_get(j, "output_replaced")));
    assert_int_equal(num(j, "stdout_bytes"), 9);
    json_decref(j);
}

/* ---- the worker pool ------------------------------------------------------------------ */

/* Four slow runs on two workers: two run, two wait. Meanwhile /health is
 * answered although no run has -- the HTTP threads never wait for the pool. */
static void test_sandbox_api_pool__http_not_blocked(void **state)
{
    (void)state;
    NEED_SERVER();
    /* Two seconds each: the margin a single /health has to come back in
     * before the first runs could possibly answer. */
    const char *slow = "{\"language\": \"bash\", \"code\": \"sleep 2; echo done\"}";
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = send_run(g_srv.port, slow);
    wait_pool(g_srv.port, 2, 2);
    tsup_response r;
    tsup_request(&r, g_srv.port, "GET", "/health", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    tsup_response_free(&r);
    /* /health came back while runs were still queued: none of them may have
     * been answered yet. */
    for (int i = 0; i < 4; i++)
        assert_false(readable_now(fds[i]));
    for (int i = 0; i < 4; i++) {
        json_t *j = NULL;
        assert_int_equal(read_run(&j, fds[i], NULL, 0), 200);
        assert_string_equal(str(j, "status"), "OK");
        assert_string_equal(str(j, "stdout"), "done\n");
        json_decref(j);
    }
    wait_pool(g_srv.port, 0, 0);
}

/* One worker, a queue of one: the third run is refused at once. */
static void test_sandbox_api_pool__queue_full(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const args[] = { "--threads", "2", "--sandbox-workers", "1", "--sandbox-queue", "1", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    /* `a` must still be running when `b` is queued: two seconds of margin. */
    const char *slow = "{\"language\": \"bash\", \"code\": \"sleep 2; echo done\"}";
    const char *quick = "{\"language\": \"bash\", \"code\": \"echo done\"}";
    int a = send_run(s.port, slow);
    wait_pool(s.port, 1, 0);
    int b = send_run(s.port, quick);
    wait_pool(s.port, 1, 1);
    int c = send_run(s.port, quick);
    char ra[32];
    json_t *j = NULL;
    assert_int_equal(read_run(&j, c, ra, sizeof ra), 503);
    assert_string_equal(tsup_error_code(j), "queue_full");
    assert_string_equal(ra, "1");
    json_decref(j);
    assert_int_equal(read_run(NULL, a, NULL, 0), 200);
    assert_int_equal(read_run(NULL, b, NULL, 0), 200);
    assert_int_equal(tsup_server_stop(&s), 0);
}

/* SIGTERM with one run going and two queued: the running one completes, the
 * queued ones are answered 503, and the server exits 0 (leak-free under SAN=1). */
static void test_sandbox_api_pool__sigterm_with_queued_runs(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const args[] = { "--threads", "2", "--sandbox-workers", "1", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    /* `a` must still be running when `b` and `c` are queued. */
    const char *slow = "{\"language\": \"bash\", \"code\": \"sleep 2; echo done\"}";
    const char *quick = "{\"language\": \"bash\", \"code\": \"echo done\"}";
    int a = send_run(s.port, slow);
    wait_pool(s.port, 1, 0);
    int b = send_run(s.port, quick);
    int c = send_run(s.port, quick);
    wait_pool(s.port, 1, 2);
    assert_int_equal(tsup_server_stop(&s), 0);
    json_t *j = NULL;
    assert_int_equal(read_run(&j, a, NULL, 0), 200);
    assert_string_equal(str(j, "stdout"), "done\n");
    json_decref(j);
    for (int i = 0; i < 2; i++) {
        char ra[32];
        assert_int_equal(read_run(&j, i ? c : b, ra, sizeof ra), 503);
        assert_string_equal(tsup_error_code(j), "shutting_down");
        assert_string_equal(ra, "1");
        json_decref(j);
    }
}

/* ---- the command line ----------------------------------------------------------------- */

static void test_sandbox_api_cli__flags(void **state)
{
    (void)state;
    NEED_BIN();
    char *out = NULL, *err = NULL;
    static const char *const version[] = { "--version", NULL };
    assert_int_equal(tsup_run(&out, &err, version), 0);
    assert_non_null(strstr(out, "sandbox: namespaces+seccomp+"));
    assert_non_null(strstr(out, "seccomp filter"));
    free(out);
    free(err);

    static const char *const bad_mode[] = { "--sandbox", "loose", NULL };
    assert_int_equal(tsup_run(&out, &err, bad_mode), 2);
    assert_non_null(strstr(err, "--sandbox"));
    free(out);
    free(err);
    static const char *const bad_limit[] = { "--sandbox-limits", "disk_mb=5", NULL };
    assert_int_equal(tsup_run(&out, &err, bad_limit), 2);
    assert_non_null(strstr(err, "disk_mb"));
    free(out);
    free(err);
    static const char *const too_big[] = { "--sandbox-limits", "cpu_ms=600001", NULL };
    assert_int_equal(tsup_run(&out, &err, too_big), 2);
    free(out);
    free(err);
    static const char *const zero_workers[] = { "--sandbox-workers", "0", NULL };
    assert_int_equal(tsup_run(&out, &err, zero_workers), 2);
    free(out);
    free(err);
}

/* --sandbox strict: starts where every layer works (and says so), refuses
 * to start -- exit 1 with the missing layer named -- where one does not. */
static void test_sandbox_api_cli__strict(void **state)
{
    (void)state;
    NEED_BIN();
    char *out = NULL, *err = NULL;
    static const char *const version[] = { "--version", NULL };
    assert_int_equal(tsup_run(&out, &err, version), 0);
    int all = strstr(out, "  no ") == NULL;
    free(out);
    free(err);
    if (!all) {
        static const char *const strict[] = { "--sandbox", "strict", NULL };
        assert_int_equal(tsup_run(&out, &err, strict), 1);
        assert_non_null(strstr(err, "strict"));
        free(out);
        free(err);
        return;
    }
    static const char *const args[] = { "--sandbox", "strict", "--sandbox-workers", "1", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    int st = 0;
    json_t *j = tsup_call(&st, s.port, "GET", "/v1/sandbox", NULL);
    assert_int_equal(st, 200);
    assert_string_equal(str(j, "mode"), "strict");
    assert_string_equal(str(j, "tier"), "namespaces+seccomp+cgroup");
    assert_int_equal(json_array_size(json_object_get(j, "missing_layers")), 0);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sandbox_api_info__contents),
        cmocka_unit_test(test_sandbox_api_run__validation),
        cmocka_unit_test(test_sandbox_api_run__python),
        cmocka_unit_test(test_sandbox_api_run__c_bash_lua),
        cmocka_unit_test(test_sandbox_api_run__limit_statuses),
        cmocka_unit_test(test_sandbox_api_run__limits_clamped),
        cmocka_unit_test(test_sandbox_api_run__invalid_utf8),
        cmocka_unit_test(test_sandbox_api_pool__http_not_blocked),
        cmocka_unit_test(test_sandbox_api_pool__queue_full),
        cmocka_unit_test(test_sandbox_api_pool__sigterm_with_queued_runs),
        cmocka_unit_test(test_sandbox_api_cli__flags),
        cmocka_unit_test(test_sandbox_api_cli__strict),
        cmocka_unit_test(test_sandbox_api__server_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
