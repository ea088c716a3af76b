/*
 * Integration tests of envsrv under hostile or demanding clients: a corpus of
 * malformed bodies, oversized and chunked uploads, concurrent clients,
 * keep-alive, and SIGTERM while a request is in flight. The server must answer
 * each with the documented error (never crash, never hang) and still exit 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/support.h"

static tsup_server g_srv;
static int g_up;

#define NEED_SERVER() TSUP_NEED_SERVER(g_up)

static int group_setup(void **state)
{
    (void)state;
    static const char *const args[] = { "--threads", "2", NULL };
    g_up = tsup_bin() && tsup_server_start(&g_srv, args) == 0;
    return 0;
}

/* The group's server stops cleanly after every test above. */
static void test_hostile__server_exits_cleanly(void **state)
{
    (void)state;
    tsup_server_stop_in_test(&g_srv, &g_up);
}

static int group_teardown(void **state)
{
    (void)state;
    return tsup_server_teardown(&g_srv, &g_up);
}

/* A malloc'd string of `n` copies of c (n + 1 bytes with the NUL). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Concatenates NUL-terminated parts into a malloc'd string. */
static char *concat(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    assert_non_null(s);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

/* Sends body and checks the answer's status and error code ("" for 200). */
static void expect(const char *path, const char *body, size_t len, int status, const char *code)
{
    tsup_response r;
    tsup_request(&r, g_srv.port, "POST", path, NULL, body, len);
    json_t *j = tsup_json(&r);
    if (r.status != status || strcmp(tsup_error_code(j), code) != 0) {
        print_error("POST %s with %zu-byte body %.60s...\n  expected %d '%s', got %d: %.300s\n", path, len,
                    body, status, code, r.status, r.body);
        fail();
    }
    json_decref(j);
    tsup_response_free(&r);
}

static void test_hostile_corpus__malformed_bodies(void **state)
{
    (void)state;
    NEED_SERVER();
    static const char score[] = "/v1/envs/gsm8k/score";
    static const char sample[] = "/v1/envs/gsm8k/sample";
    static const char episodes[] = "/v1/envs/gsm8k/episodes";
    static const struct {
        const char *path;
        const char *body;
        size_t len;      /* 0: strlen(body) */
        int status;
        const char *code;
    } cases[] = {
        { score, "", 0, 400, "bad_request" },
        { score, "null", 0, 400, "bad_request" },
        { score, "[]", 0, 400, "bad_request" },
        { score, "\"\"", 0, 400, "bad_request" },
        { score, "0", 0, 400, "bad_request" },
        { score, "{", 0, 400, "bad_json" },
        { score, "}", 0, 400, "bad_json" },
        { score, "{\"a\" 1}", 0, 400, "bad_json" },
        { score, "{\"a\": tru}", 0, 400, "bad_json" },
        { score, "{\"a\": 1,}", 0, 400, "bad_json" },
        { score, "{\"a\": 01}", 0, 400, "bad_json" },
        { score, "{\"a\": NaN}", 0, 400, "bad_json" },
        { score, "{\"a\": Infinity}", 0, 400, "bad_json" },
        { score, "\xef\xbb\xbf{}", 0, 400, "bad_json" },
        { score, "{\"item_id\": \"\xff\xfe\", \"completions\": [\"a\"]}", 0, 400, "bad_json" },
        { score, "{\"item_id\": \"test-0\", \"completions\": [\"\xc3\x28\"]}", 0, 400, "bad_json" },
        { score, "{\"item_id\": \"test-0\", \"completions\": [\"\\ud800\"]}", 0, 400, "bad_json" },
        { score, "{\"item_id\"\0: \"test-0\"}", 21, 400, "bad_json" },
        { score, "\0\0\0\0", 4, 400, "bad_json" },
        { score, "{}\0", 3, 400, "bad_json" },
        { score, "{\"item_id\": \"test-0\", \"completions\": [1e308]}", 0, 422, "invalid_field" },
        { score, "{\"item_id\": \"test-0\", \"completions\": [\"a\", [\"b\"]]}", 0, 422, "invalid_field" },
        { score, "{\"item_id\": \"test-0\", \"completions\": [\"a\\u0000b\"]}", 0, 200, "" },
        { score, "{\"item_id\": \"test-0\", \"completions\": [\"x\"], \"extra\": {\"y\": [1, 2]}}", 0, 200, "" },
        { score, "{\"item_id\": \"nope\", \"item_id\": \"test-0\", \"completions\": [\"x\"]}", 0, 200, "" },
        { score, "{\"item_id\": \"\", \"completions\": [\"x\"]}", 0, 404, "unknown_item" },
        /* gsm8k's reward needs item.answer: the env's own Lua error, a 500. */
        { score, "{\"item\": {}, \"completions\": [\"x\"]}", 0, 500, "env_error" },
        { score, "{\"item\": null, \"completions\": [\"x\"]}", 0, 422, "invalid_field" },
        { sample, "{\"n\": 1e999}", 0, 400, "bad_json" },
        { sample, "{\"n\": 123456789012345678901234567890}", 0, 400, "bad_json" },
        { sample, "{\"n\": -9223372036854775808}", 0, 422, "invalid_field" },
        { sample, "{\"n\": 9223372036854775807}", 0, 422, "invalid_field" },
        { sample, "{\"seed\": 9223372036854775807}", 0, 200, "" },
        { sample, "{\"n\": null}", 0, 422, "invalid_field" },
        { episodes, "{\"item_id\": {\"$ne\": 1}}", 0, 422, "invalid_field" },
        { "/v1/episodes/..%2F..%2Fetc/step", "{\"action\": \"x\"}", 0, 404, "unknown_episode" },
        { "/v1/episodes/x/step", "{\"action\": null}", 0, 422, "invalid_field" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(cases[i].path, cases[i].body, cases[i].len ? cases[i].len : strlen(cases[i].body),
               cases[i].status, cases[i].code);
}

static void test_hostile_corpus__deep_nesting(void **state)
{
    (void)state;
    NEED_SERVER();
    /* 100k-deep arrays: Jansson's depth limit answers, no stack overflow. */
    char *deep = repeat('[', 100000);
    expect("/v1/envs/gsm8k/score", deep, strlen(deep), 400, "bad_json");
    char *body = concat("{\"completions\": ", deep, "");
    expect("/v1/envs/gsm8k/score", body, strlen(body), 400, "bad_json");
    free(body);
    free(deep);
    char *objs = malloc(100000 * 5 + 1);
    assert_non_null(objs);
    for (size_t i = 0; i < 100000; i++)
        memcpy(objs + 5 * i, "{\"a\":", 5);
    objs[100000 * 5] = '\0';
    expect("/v1/envs/gsm8k/sample", objs, strlen(objs), 400, "bad_json");
    free(objs);

    /* An inline item nested deeper than the Lua conversion allows, but within
     * Jansson's limit: refused as a bad field, not a crash. */
    char *open_ = repeat('[', 1000), *close_ = repeat(']', 1000);
    char *inner = concat(open_, "1", close_);
    char *item = concat("{\"item\": {\"question\": \"q\", \"deep\": ", inner,
                        "}, \"completions\": [\"#### 1\"]}");
    tsup_response r;
    tsup_request(&r, g_srv.port, "POST", "/v1/envs/gsm8k/score", NULL, item, strlen(item));
    assert_true(r.status == 422 || r.status == 200);
    json_t *j = tsup_json(&r);
    if (r.status == 422)
        assert_string_equal(tsup_error_code(j), "invalid_field");
    json_decref(j);
    tsup_response_free(&r);
    free(item);
    free(inner);
    free(open_);
    free(close_);
}

static void test_hostile_corpus__large_requests(void **state)
{
    (void)state;
    NEED_SERVER();
    /* 64 completions, the benchmark's shape. */
    json_t *comps = json_array();
    for (int i = 0; i < 64; i++) {
        char c[64];
        snprintf(c, sizeof c, "step %d ... #### %d", i, i % 2 ? 47 : i);
        json_array_append_new(comps, json_string(c));
    }
    json_t *req = json_pack("{s:s, s:o}", "item_id", "test-0", "completions", comps);
    char *body = json_dumps(req, 0);
    int st = 0;
    json_t *j = tsup_call(&st, g_srv.port, "POST", "/v1/envs/gsm8k/score", body);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(j, "rewards")), 64);
    json_decref(j);
    free(body);
    json_decref(req);

    /* One 1 MB completion. */
    char *huge = repeat('7', 1 << 20);
    char *b = concat("{\"item_id\": \"test-0\", \"completions\": [\"", huge, "\"]}");
    expect("/v1/envs/gsm8k/score", b, strlen(b), 200, "");
    free(b);
    free(huge);

    /* More completions than LENV_MAX_COMPLETIONS. */
    size_t n = 4097;
    char *many = malloc(n * 4 + 64);
    assert_non_null(many);
    size_t o = (size_t)sprintf(many, "{\"item_id\": \"test-0\", \"completions\": [");
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(many + o, "%s\"a\"", i ? "," : "");
    sprintf(many + o, "]}");
    expect("/v1/envs/gsm8k/score", many, strlen(many), 422, "invalid_field");
    free(many);

    /* A 100 KB item id is just an unknown item; a long path is just unknown. */
    char *longid = repeat('x', 100000);
    char *lb = concat("{\"item_id\": \"", longid, "\", \"completions\": [\"a\"]}");
    expect("/v1/envs/gsm8k/score", lb, strlen(lb), 404, "unknown_item");
    free(lb);
    free(longid);
}

static void test_hostile_http__long_path_and_headers(void **state)
{
    (void)state;
    NEED_SERVER();
    /* A request line past libmicrohttpd's buffer gets an HTTP error from it
     * (414/431) or a close; either way the server carries on. */
    char *path = repeat('a', 100000);
    path[0] = '/';
    int fd = tsup_connect(g_srv.port);
    tsup_send_request(fd, "GET", path, NULL, NULL, 0, 0);
    tsup_response r;
    if (tsup_read_response(&r, fd) == 0) {
        assert_true(r.status >= 400 && r.status < 500);
        tsup_response_free(&r);
    }
    close(fd);
    free(path);
    int st = 0;
    json_t *j = tsup_call(&st, g_srv.port, "GET", "/health", NULL);
    assert_int_equal(st, 200);
    json_decref(j);
}

/* Sends a chunked body of `total` bytes in 4 KB chunks; returns 0 when the
 * server took it all, -1 when it closed the connection first. */
static int send_chunked(int fd, size_t total)
{
    static const char head[] = "POST /v1/envs/gsm8k/score HTTP/1.1\r\nHost: x\r\n"
                               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    tsup_send_all(fd, head, sizeof head - 1, 0);
    char chunk[4096 + 16];
    int hl = sprintf(chunk, "1000\r\n");
    memset(chunk + hl, ' ', 4096);
    memcpy(chunk + hl + 4096, "\r\n", 2);
    for (size_t sent = 0; sent < total; sent += 4096)
        if (tsup_send_all(fd, chunk, (size_t)hl + 4096 + 2, 1) != 0)
            return -1;
    return tsup_send_all(fd, "0\r\n\r\n", 5, 1);
}

static void test_hostile_limits__chunked_over_max_body(void **state)
{
    (void)state;
    if (!tsup_bin())
        skip();
    static const char *const args[] = { "--max-body", "16K", "--threads", "1", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    /* A little over the limit: answered 413 once the body ends. */
    int fd = tsup_connect(s.port);
    assert_int_equal(send_chunked(fd, 64 * 1024), 0);
    tsup_response r;
    assert_int_equal(tsup_read_response(&r, fd), 0);
    assert_int_equal(r.status, 413);
    json_t *j = tsup_json(&r);
    assert_string_equal(tsup_error_code(j), "body_too_large");
    json_decref(j);
    tsup_response_free(&r);
    close(fd);
    /* Far over it: the connection is cut rather than read forever. */
    fd = tsup_connect(s.port);
    int sent = send_chunked(fd, 16u << 20);
    if (sent == 0 && tsup_read_response(&r, fd) == 0) {
        assert_int_equal(r.status, 413);
        tsup_response_free(&r);
    }
    close(fd);
    /* A Content-Length over the limit is refused before the body is read. */
    fd = tsup_connect(s.port);
    static const char head[] = "POST /v1/envs/gsm8k/score HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: 1000000000\r\n\r\n";
    tsup_send_all(fd, head, sizeof head - 1, 0);
    assert_int_equal(tsup_read_response(&r, fd), 0);
    assert_int_equal(r.status, 413);
    tsup_response_free(&r);
    close(fd);
    int st = 0;
    j = tsup_call(&st, s.port, "GET", "/health", NULL);
    assert_int_equal(st, 200);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);
}

static void test_hostile_http__keep_alive(void **state)
{
    (void)state;
    NEED_SERVER();
    int fd = tsup_connect(g_srv.port);
    static const char body[] = "{\"item_id\": \"test-0\", \"completions\": [\"#### 1\"]}";
    for (int i = 0; i < 3; i++) {
        tsup_send_request(fd, "POST", "/v1/envs/gsm8k/score", NULL, body, sizeof body - 1, 1);
        tsup_response r;
        assert_int_equal(tsup_read_response(&r, fd), 0);
        assert_int_equal(r.status, 200);
        char conn[32];
        if (tsup_header(conn, sizeof conn, &r, "Connection") == 0)
            assert_string_not_equal(conn, "close");
        tsup_response_free(&r);
        /* An error answer keeps the connection too. */
        tsup_send_request(fd, "GET", "/v1/envs/nope", NULL, NULL, 0, 1);
        assert_int_equal(tsup_read_response(&r, fd), 0);
        assert_int_equal(r.status, 404);
        tsup_response_free(&r);
    }
    close(fd);
}

typedef struct worker {
    unsigned port;
    int id;
    int ok;       /* requests answered as expected */
} worker;

enum { N_WORKERS = 6, PER_WORKER = 30 };

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < PER_WORKER; i++) {
        /* Each worker scores its own inline item so answers are checkable. */
        char body[256];
        int want = w->id * 1000 + i;
        snprintf(body, sizeof body,
                 "{\"item\": {\"question\": \"q\", \"answer\": \"#### %d\"}, "
                 "\"completions\": [\"#### %d\", \"#### %d\"]}", want, want, want + 1);
        int st = 0;
        json_t *j = tsup_call(&st, w->port, "POST", "/v1/envs/gsm8k/score", body);
        json_t *rw = json_object_get(j, "rewards");
        if (st == 200 && json_number_value(json_array_get(rw, 0)) == 1.0 &&
            json_number_value(json_array_get(rw, 1)) == 0.0)
            w->ok++;
        json_decref(j);
    }
    return NULL;
}

static void test_hostile_http__concurrent_clients(void **state)
{
    (void)state;
    NEED_SERVER();
    pthread_t th[N_WORKERS];
    worker w[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        w[i] = (worker){ .port = g_srv.port, .id = i + 1, .ok = 0 };
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_WORKERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, PER_WORKER);
    }
}

/* A user env whose reward spins until the instruction limit stops it. */
static const char slow_env[] =
    "return {\n"
    "  name = \"slow\",\n"
    "  description = \"reward runs until the instruction limit\",\n"
    "  dataset = { test = \"items.jsonl\" },\n"
    "  prompt = function(item) return { { role = \"user\", content = item.q } } end,\n"
    "  reward = function(item, completion) while true do end end,\n"
    "}\n";

static double in_flight(unsigned port)
{
    tsup_response r;
    tsup_request(&r, port, "GET", "/metrics", NULL, NULL, 0);
    const char *p = strstr(r.body, "\nenvsrv_requests_in_flight ");
    double v = p ? strtod(p + strlen("\nenvsrv_requests_in_flight "), NULL) : -1;
    tsup_response_free(&r);
    return v;
}

static void test_hostile_shutdown__sigterm_during_request(void **state)
{
    (void)state;
    if (!tsup_bin())
        skip();
    char dir[64], envpath[128];
    tsup_mkdtemp(dir);
    tsup_write_file(dir, "slow.lua", slow_env);
    tsup_write_file(dir, "items.jsonl", "{\"q\": \"x\"}\n");
    snprintf(envpath, sizeof envpath, "%s/slow.lua", dir);
    const char *args[] = { "--env", envpath, "--threads", "4", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);

    static const char body[] = "{\"item_id\": \"test-0\", \"completions\": [\"x\"]}";
    int fd = tsup_connect(s.port);
    tsup_send_request(fd, "POST", "/v1/envs/slow/score", NULL, body, sizeof body - 1, 0);
    /* Wait until the server reports the slow request in flight (the scrape
     * itself is the other one) - or until it has already been answered, in
     * which case the test still checks a clean exit. */
    for (int tries = 0; tries < 10000; tries++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 0) > 0 || in_flight(s.port) >= 2)
            break;
    }
    kill(s.pid, SIGTERM);
    /* The in-flight request is still answered in full. */
    tsup_response r;
    assert_int_equal(tsup_read_response(&r, fd), 0);
    assert_int_equal(r.status, 500);
    json_t *j = tsup_json(&r);
    assert_string_equal(tsup_error_code(j), "env_error");
    json_decref(j);
    tsup_response_free(&r);
    close(fd);
    assert_int_equal(tsup_server_stop(&s), 0);
    tsup_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_corpus__malformed_bodies),
        cmocka_unit_test(test_hostile_corpus__deep_nesting),
        cmocka_unit_test(test_hostile_corpus__large_requests),
        cmocka_unit_test(test_hostile_http__long_path_and_headers),
        cmocka_unit_test(test_hostile_limits__chunked_over_max_body),
        cmocka_unit_test(test_hostile_http__keep_alive),
        cmocka_unit_test(test_hostile_http__concurrent_clients),
        cmocka_unit_test(test_hostile_shutdown__sigterm_during_request),
        cmocka_unit_test(test_hostile__server_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
