/*
 * Integration tests of the REST API against the real binary ($ENVSRV_BIN):
 * every route's happy path and every error code of docs/api.md.
 *
 * Most tests share one server started by the group setup (built-in gsm8k,
 * 2 threads); tests that need other flags start their own. Every server is
 * stopped with SIGTERM and must exit 0, which under SAN=1 also proves that
 * shutdown leaks nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    static const char *const args[] = { "--env", "gsm8k", "--threads", "2", NULL };
    g_up = tsup_bin() && tsup_server_start(&g_srv, args) == 0;
    return 0;
}

/* The group's server stops cleanly after every test above. */
static void test_http__server_exits_cleanly(void **state)
{
    (void)state;
    tsup_server_stop_in_test(&g_srv, &g_up);
}

static int group_teardown(void **state)
{
    (void)state;
    return tsup_server_teardown(&g_srv, &g_up);
}

/* Calls and checks an error answer; returns its message (static copy). */
static const char *expect_error(unsigned port, const char *method, const char *path, const char *body,
                                int status, const char *code)
{
    static char message[1024];
    int st = 0;
    json_t *j = tsup_call(&st, port, method, path, body);
    if (st != status || strcmp(tsup_error_code(j), code) != 0) {
        char *dump = json_dumps(j, 0);
        print_error("%s %s %s\n  expected %d %s, got %d: %s\n", method, path, body ? body : "", status,
                    code, st, dump ? dump : "?");
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

static json_t *expect_ok(unsigned port, const char *method, const char *path, const char *body)
{
    int st = 0;
    json_t *j = tsup_call(&st, port, method, path, body);
    if (st != 200) {
        char *dump = json_dumps(j, 0);
        print_error("%s %s: expected 200, got %d: %s\n", method, path, st, dump ? dump : "?");
        free(dump);
        json_decref(j);
        fail();
    }
    return j;
}

/* ---- happy paths ------------------------------------------------------------------ */

static void test_http_health__ok(void **state)
{
    (void)state;
    NEED_SERVER();
    tsup_response r;
    tsup_request(&r, g_srv.port, "GET", "/health", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_int_equal(tsup_header(ct, sizeof ct, &r, "Content-Type"), 0);
    assert_string_equal(ct, "application/json");
    json_t *j = tsup_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    tsup_response_free(&r);
}

static void test_http_envs__list(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = expect_ok(g_srv.port, "GET", "/v1/envs", NULL);
    json_t *envs = json_object_get(j, "envs");
    assert_int_equal(json_array_size(envs), 1);
    json_t *e = json_array_get(envs, 0);
    assert_string_equal(json_string_value(json_object_get(e, "name")), "gsm8k");
    assert_int_equal(strlen(json_string_value(json_object_get(e, "version"))), 16);
    assert_true(json_integer_value(json_object_get(json_object_get(e, "splits"), "test")) > 0);
    assert_null(json_object_get(e, "params"));
    json_decref(j);
}

static void test_http_envs__get_one(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = expect_ok(g_srv.port, "GET", "/v1/envs/gsm8k", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "gsm8k");
    assert_true(json_is_object(json_object_get(j, "params")));
    assert_true(json_is_false(json_object_get(j, "multi_turn")));
    json_decref(j);
}

static void test_http_items__get(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = expect_ok(g_srv.port, "GET", "/v1/envs/gsm8k/items/test-0", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "test-0");
    assert_true(json_array_size(json_object_get(j, "prompt")) >= 1);
    assert_null(json_object_get(j, "answer"));
    json_decref(j);

    j = expect_ok(g_srv.port, "GET", "/v1/envs/gsm8k/items/test-0?include_answer=1", NULL);
    assert_non_null(strstr(json_string_value(json_object_get(j, "answer")), "####"));
    json_decref(j);
    j = expect_ok(g_srv.port, "GET", "/v1/envs/gsm8k/items/test-0?include_answer=0", NULL);
    assert_null(json_object_get(j, "answer"));
    json_decref(j);

    /* Path parameters are percent-decoded: "test%2D0" is "test-0". */
    j = expect_ok(g_srv.port, "GET", "/v1/envs/gsm%38k/items/test%2D0", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "test-0");
    json_decref(j);
}

static void test_http_items__errors(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *m = expect_error(g_srv.port, "GET", "/v1/envs/gsm8k/items/test-999999", NULL, 404,
                                 "unknown_item");
    assert_non_null(strstr(m, "test-999999"));
    expect_error(g_srv.port, "GET", "/v1/envs/gsm8k/items/a%2Fb", NULL, 404, "unknown_item");
    expect_error(g_srv.port, "GET", "/v1/envs/gsm8k/items/test-0?include_answer=maybe", NULL, 422,
                 "invalid_field");
    expect_error(g_srv.port, "GET", "/v1/envs/gsm8k/items/x%00y", NULL, 400, "bad_request");
}

static void test_http_sample__deterministic(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *a = expect_ok(g_srv.port, "POST", "/v1/envs/gsm8k/sample", "{\"n\": 3, \"seed\": 7, \"split\": \"test\"}");
    json_t *b = expect_ok(g_srv.port, "POST", "/v1/envs/gsm8k/sample", "{\"n\": 3, \"seed\": 7}");
    assert_int_equal(json_array_size(json_object_get(a, "items")), 3);
    assert_true(json_equal(a, b));
    assert_int_equal(strlen(json_string_value(json_object_get(a, "env_version"))), 16);
    json_t *item = json_array_get(json_object_get(a, "items"), 0);
    assert_non_null(json_string_value(json_object_get(item, "id")));
    assert_null(json_object_get(item, "answer"));
    json_decref(a);
    json_decref(b);

    /* Every field is optional; an empty body is one item with seed 0. */
    a = expect_ok(g_srv.port, "POST", "/v1/envs/gsm8k/sample", "{}");
    b = expect_ok(g_srv.port, "POST", "/v1/envs/gsm8k/sample", NULL);
    assert_int_equal(json_array_size(json_object_get(a, "items")), 1);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

static void test_http_sample__invalid_fields(void **state)
{
    (void)state;
    NEED_SERVER();
    static const char *const bad[] = {
        "{\"n\": 0}", "{\"n\": -1}", "{\"n\": \"3\"}", "{\"n\": 1.5}", "{\"n\": true}",
        "{\"n\": 100001}", "{\"n\": 1e300}", "{\"seed\": -1}", "{\"seed\": \"x\"}",
        "{\"seed\": 1.0}", "{\"split\": 3}", "{\"split\": \"nope\"}", "{\"split\": \"a\\u0000b\"}",
        "{\"n\": 100000}", /* more than the split holds */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *m = expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/sample", bad[i], 422, "invalid_field");
        assert_true(strlen(m) > 0);
    }
    const char *m = expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/sample", "{\"n\": \"3\"}", 422, "invalid_field");
    assert_non_null(strstr(m, "'n'"));
    m = expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/sample", "{\"seed\": \"x\"}", 422, "invalid_field");
    assert_non_null(strstr(m, "'seed'"));
}

static void test_http_score__rewards(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *item = expect_ok(g_srv.port, "GET", "/v1/envs/gsm8k/items/test-0?include_answer=1", NULL);
    const char *answer = json_string_value(json_object_get(item, "answer"));
    json_t *req = json_pack("{s:s, s:[s, s, s]}", "item_id", "test-0", "completions", answer,
                            "The answer is 123456789.", "");
    char *body = json_dumps(req, 0);
    json_t *j = expect_ok(g_srv.port, "POST", "/v1/envs/gsm8k/score", body);
    json_t *rewards = json_object_get(j, "rewards");
    assert_int_equal(json_array_size(rewards), 3);
    assert_true(json_number_value(json_array_get(rewards, 0)) == 1.0);
    assert_true(json_number_value(json_array_get(rewards, 1)) == 0.0);
    assert_true(json_number_value(json_array_get(rewards, 2)) == 0.0);
    assert_int_equal(json_array_size(json_object_get(j, "details")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "item_id")), "test-0");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "env_version"))), 16);
    json_decref(j);
    free(body);
    json_decref(req);
    json_decref(item);
}

static void test_http_score__inline_item(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = expect_ok(g_srv.port, "POST", "/v1/envs/gsm8k/score",
                          "{\"item\": {\"question\": \"2+3?\", \"answer\": \"2+3=5\\n#### 5\"},"
                          " \"completions\": [\"#### 5\", \"#### 6\"]}");
    json_t *rewards = json_object_get(j, "rewards");
    assert_true(json_number_value(json_array_get(rewards, 0)) == 1.0);
    assert_true(json_number_value(json_array_get(rewards, 1)) == 0.0);
    assert_true(json_is_null(json_object_get(j, "item_id")));
    json_decref(j);
}

static void test_http_score__invalid_fields(void **state)
{
    (void)state;
    NEED_SERVER();
    unsigned p = g_srv.port;
    const char *path = "/v1/envs/gsm8k/score";
    const char *m = expect_error(p, "POST", path, "{\"item_id\": \"test-0\", \"completions\": [\"a\", \"b\", \"c\", 4]}",
                                 422, "invalid_field");
    assert_non_null(strstr(m, "field 'completions' must be an array of strings, element 3 is a"));
    m = expect_error(p, "POST", path, "{\"item_id\": \"test-0\", \"completions\": \"abc\"}", 422, "invalid_field");
    assert_non_null(strstr(m, "'completions'"));
    expect_error(p, "POST", path, "{\"item_id\": \"test-0\", \"completions\": []}", 422, "invalid_field");
    expect_error(p, "POST", path, "{\"item_id\": \"test-0\", \"completions\": [null]}", 422, "invalid_field");
    expect_error(p, "POST", path, "{\"item_id\": \"test-0\", \"completions\": {}}", 422, "invalid_field");
    m = expect_error(p, "POST", path, "{\"item_id\": 3, \"completions\": [\"a\"]}", 422, "invalid_field");
    assert_non_null(strstr(m, "'item_id'"));
    m = expect_error(p, "POST", path, "{\"item\": [], \"completions\": [\"a\"]}", 422, "invalid_field");
    assert_non_null(strstr(m, "'item'"));
    expect_error(p, "POST", path, "{\"item_id\": \"a\\u0000b\", \"completions\": [\"a\"]}", 422, "invalid_field");
    expect_error(p, "POST", path, "{\"item_id\": \"test-0\"}", 400, "bad_request");
    expect_error(p, "POST", path, "{\"completions\": [\"a\"]}", 400, "bad_request");
    expect_error(p, "POST", path, "{\"item_id\": \"test-0\", \"item\": {}, \"completions\": [\"a\"]}", 400,
                 "bad_request");
    m = expect_error(p, "POST", path, "{\"item_id\": \"test-424242\", \"completions\": [\"a\"]}", 404,
                     "unknown_item");
    assert_non_null(strstr(m, "test-424242"));
}

/* ---- errors common to all routes --------------------------------------------------------- */

static void test_http_errors__not_found(void **state)
{
    (void)state;
    NEED_SERVER();
    static const char *const paths[] = { "/", "/nope", "/v1", "/v1/envs/", "/v1/envs/gsm8k/",
                                         "/v1/envs/gsm8k/items", "/health/x", "//health",
                                         "/v1/envs/gsm8k/items/test-0/x", "/%ff%fe" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        expect_error(g_srv.port, "GET", paths[i], NULL, 404, "not_found");
}

static void test_http_errors__method_not_allowed(void **state)
{
    (void)state;
    NEED_SERVER();
    tsup_response r;
    tsup_request(&r, g_srv.port, "POST", "/health", NULL, "{}", 2);
    assert_int_equal(r.status, 405);
    char allow[64];
    assert_int_equal(tsup_header(allow, sizeof allow, &r, "Allow"), 0);
    assert_string_equal(allow, "GET");
    json_t *j = tsup_json(&r);
    assert_string_equal(tsup_error_code(j), "method_not_allowed");
    json_decref(j);
    tsup_response_free(&r);

    tsup_request(&r, g_srv.port, "GET", "/v1/envs/gsm8k/score", NULL, NULL, 0);
    assert_int_equal(r.status, 405);
    assert_int_equal(tsup_header(allow, sizeof allow, &r, "Allow"), 0);
    assert_string_equal(allow, "POST");
    tsup_response_free(&r);

    expect_error(g_srv.port, "DELETE", "/v1/envs/gsm8k", NULL, 405, "method_not_allowed");
    expect_error(g_srv.port, "PUT", "/v1/episodes/abc/step", "{}", 405, "method_not_allowed");
}

static void test_http_errors__bad_json(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *m = expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/score",
                                 "{\n  \"item_id\": \"test-0\",\n  \"completions\": [\"a\",]\n}", 400, "bad_json");
    assert_non_null(strstr(m, "at line 3 column"));
    expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/sample", "{\"n\": ", 400, "bad_json");
    expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/episodes", "{'a': 1}", 400, "bad_json");
    expect_error(g_srv.port, "POST", "/v1/episodes/0123/step", "{} {}", 400, "bad_json");
}

static void test_http_errors__body_not_object(void **state)
{
    (void)state;
    NEED_SERVER();
    static const char *const bodies[] = { "[]", "null", "\"x\"", "3", "true", "[{\"n\": 1}]" };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/score", bodies[i], 400, "bad_request");
        expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/sample", bodies[i], 400, "bad_request");
        expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/episodes", bodies[i], 400, "bad_request");
    }
    expect_error(g_srv.port, "POST", "/v1/envs/gsm8k/score", "", 400, "bad_request");
}

static void test_http_errors__unknown_env(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *m = expect_error(g_srv.port, "GET", "/v1/envs/gsm9k", NULL, 404, "unknown_env");
    assert_non_null(strstr(m, "gsm9k"));
    expect_error(g_srv.port, "GET", "/v1/envs/gsm9k/items/test-0", NULL, 404, "unknown_env");
    expect_error(g_srv.port, "POST", "/v1/envs/gsm9k/sample", "{}", 404, "unknown_env");
    expect_error(g_srv.port, "POST", "/v1/envs/gsm9k/score", "{}", 404, "unknown_env");
    expect_error(g_srv.port, "POST", "/v1/envs/gsm9k/episodes", "{}", 404, "unknown_env");
    /* Invalid UTF-8 in the name is echoed safely. */
    expect_error(g_srv.port, "GET", "/v1/envs/%ff%c3", NULL, 404, "unknown_env");
}

/* ---- episodes ------------------------------------------------------------------------ */

static void test_http_episodes__single_turn_flow(void **state)
{
    (void)state;
    NEED_SERVER();
    unsigned p = g_srv.port;
    json_t *item = expect_ok(p, "GET", "/v1/envs/gsm8k/items/test-1?include_answer=1", NULL);
    json_t *e = expect_ok(p, "POST", "/v1/envs/gsm8k/episodes", "{\"item_id\": \"test-1\"}");
    const char *id = json_string_value(json_object_get(e, "episode_id"));
    assert_non_null(id);
    assert_int_equal(strlen(id), 32);
    assert_true(json_equal(json_object_get(e, "observation"), json_object_get(item, "prompt")));
    assert_non_null(json_object_get(e, "env_version"));

    char path[128];
    snprintf(path, sizeof path, "/v1/episodes/%s/step", id);
    json_t *act = json_pack("{s:s}", "action", json_string_value(json_object_get(item, "answer")));
    char *body = json_dumps(act, 0);
    json_t *s = expect_ok(p, "POST", path, body);
    assert_true(json_number_value(json_object_get(s, "reward")) == 1.0);
    assert_true(json_is_true(json_object_get(s, "done")));
    assert_true(json_is_array(json_object_get(s, "observation")));
    assert_non_null(json_object_get(s, "info"));
    assert_non_null(json_object_get(s, "env_version"));
    /* Done episodes are removed. */
    expect_error(p, "POST", path, body, 404, "unknown_episode");
    json_decref(s);
    free(body);
    json_decref(act);
    json_decref(e);
    json_decref(item);
}

static void test_http_episodes__errors(void **state)
{
    (void)state;
    NEED_SERVER();
    unsigned p = g_srv.port;
    expect_error(p, "POST", "/v1/episodes/00000000000000000000000000000000/step", "{\"action\": \"x\"}", 404,
                 "unknown_episode");
    expect_error(p, "POST", "/v1/envs/gsm8k/episodes", "{\"item_id\": \"test-9999999\"}", 404, "unknown_item");
    expect_error(p, "POST", "/v1/envs/gsm8k/episodes", "{\"item_id\": []}", 422, "invalid_field");
    expect_error(p, "POST", "/v1/envs/gsm8k/episodes", "{}", 400, "bad_request");

    json_t *e = expect_ok(p, "POST", "/v1/envs/gsm8k/episodes",
                          "{\"item\": {\"question\": \"1+1?\", \"answer\": \"#### 2\"}}");
    char path[128];
    snprintf(path, sizeof path, "/v1/episodes/%s/step", json_string_value(json_object_get(e, "episode_id")));
    expect_error(p, "POST", path, "{}", 400, "bad_request");
    const char *m = expect_error(p, "POST", path, "{\"action\": 42}", 422, "invalid_field");
    assert_non_null(strstr(m, "'action'"));
    /* Bad input does not end the episode. */
    json_t *s = expect_ok(p, "POST", path, "{\"action\": \"#### 2\"}");
    assert_true(json_number_value(json_object_get(s, "reward")) == 1.0);
    json_decref(s);
    json_decref(e);
}

/* ---- metrics --------------------------------------------------------------------------- */

/* The value of the metrics line starting with `prefix` + " ", or -1. */
static double metric(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, prefix, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    return -1;
}

static char *get_metrics(unsigned port)
{
    tsup_response r;
    tsup_request(&r, port, "GET", "/metrics", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_int_equal(tsup_header(ct, sizeof ct, &r, "Content-Type"), 0);
    assert_string_equal(ct, "text/plain; version=0.0.4");
    char *text = r.body;
    r.body = NULL;
    tsup_response_free(&r);
    return text;
}

static void test_http_metrics__counts_follow_requests(void **state)
{
    (void)state;
    NEED_SERVER();
    unsigned p = g_srv.port;
    static const char score_ok[] = "envsrv_requests_total{route=\"/v1/envs/{env}/score\",status=\"200\"}";
    static const char score_422[] = "envsrv_requests_total{route=\"/v1/envs/{env}/score\",status=\"422\"}";
    static const char unmatched[] = "envsrv_requests_total{route=\"unmatched\",status=\"404\"}";
    static const char scored[] = "envsrv_completions_scored_total{env=\"gsm8k\"}";
    static const char count[] = "envsrv_request_duration_seconds_count{route=\"/v1/envs/{env}/score\"}";
    char *before = get_metrics(p);
    double ok0 = metric(before, score_ok), bad0 = metric(before, score_422);
    double un0 = metric(before, unmatched), sc0 = metric(before, scored), c0 = metric(before, count);
    double sum0 = metric(before, "envsrv_reward_sum{env=\"gsm8k\"}");
    assert_true(sc0 >= 0);

    json_t *j = expect_ok(p, "POST", "/v1/envs/gsm8k/score",
                          "{\"item\": {\"question\": \"q\", \"answer\": \"#### 5\"}, \"completions\": [\"#### 5\", \"#### 5\", \"x\"]}");
    json_decref(j);
    expect_error(p, "POST", "/v1/envs/gsm8k/score", "{\"item_id\": \"test-0\", \"completions\": []}", 422,
                 "invalid_field");
    expect_error(p, "GET", "/no/such/path/123", NULL, 404, "not_found");
    expect_error(p, "GET", "/no/such/path/456", NULL, 404, "not_found");

    char *after = get_metrics(p);
    assert_true(metric(after, score_ok) == (ok0 < 0 ? 0 : ok0) + 1);
    assert_true(metric(after, score_422) == (bad0 < 0 ? 0 : bad0) + 1);
    assert_true(metric(after, unmatched) == (un0 < 0 ? 0 : un0) + 2);
    assert_true(metric(after, scored) == sc0 + 3);
    assert_true(metric(after, "envsrv_reward_sum{env=\"gsm8k\"}") == sum0 + 2);
    assert_true(metric(after, count) == (c0 < 0 ? 0 : c0) + 2);
    double mean = metric(after, "envsrv_reward_mean{env=\"gsm8k\"}");
    assert_true(mean >= 0 && mean <= 1);
    /* The histogram's +Inf bucket equals its count; paths never become labels. */
    assert_true(metric(after, "envsrv_request_duration_seconds_bucket{route=\"/v1/envs/{env}/score\",le=\"+Inf\"}") ==
                metric(after, count));
    assert_null(strstr(after, "/no/such/path"));
    assert_non_null(strstr(after, "# TYPE envsrv_request_duration_seconds histogram"));
    assert_true(metric(after, "envsrv_episodes_open") >= 0);
    assert_true(metric(after, "envsrv_lua_errors_total{env=\"gsm8k\"}") >= 0);
    assert_true(metric(after, "envsrv_requests_in_flight") >= 1);
    free(before);
    free(after);
}

/* ---- servers with other flags -------------------------------------------------------------- */

static void test_http_limits__max_body(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const args[] = { "--max-body", "1K", "--threads", "1", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    static const char head[] = "{\"item_id\": \"test-0\", \"completions\": [\"x\"]}";
    char big[3000];
    memset(big, ' ', sizeof big); /* trailing whitespace keeps it valid JSON */
    memcpy(big, head, sizeof head - 1);
    tsup_response r;
    tsup_request(&r, s.port, "POST", "/v1/envs/gsm8k/score", NULL, big, sizeof big);
    assert_int_equal(r.status, 413);
    json_t *j = tsup_json(&r);
    assert_string_equal(tsup_error_code(j), "body_too_large");
    json_decref(j);
    tsup_response_free(&r);
    /* At the limit is fine. */
    tsup_request(&r, s.port, "POST", "/v1/envs/gsm8k/score", NULL, big, 1024);
    assert_int_equal(r.status, 200);
    tsup_response_free(&r);
    assert_int_equal(tsup_server_stop(&s), 0);
}

static void test_http_auth__api_key(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const args[] = { "--api-key", "s3cret-key", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    static const char *const paths[] = { "/health", "/v1/envs", "/metrics", "/nope" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        tsup_response r;
        tsup_request(&r, s.port, "GET", paths[i], NULL, NULL, 0);
        assert_int_equal(r.status, 401);
        char h[128];
        assert_int_equal(tsup_header(h, sizeof h, &r, "WWW-Authenticate"), 0);
        assert_non_null(strstr(h, "Bearer"));
        json_t *j = tsup_json(&r);
        assert_string_equal(tsup_error_code(j), "unauthorized");
        json_decref(j);
        tsup_response_free(&r);
    }
    static const char *const wrong[] = { "Authorization: Bearer s3cret-kez\r\n",
                                         "Authorization: Bearer s3cret-key2\r\n",
                                         "Authorization: Bearer s3cret\r\n",
                                         "Authorization: Basic s3cret-key\r\n",
                                         "Authorization: Bearer \r\n" };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        tsup_response r;
        tsup_request(&r, s.port, "POST", "/v1/envs/gsm8k/sample", wrong[i], "{}", 2);
        assert_int_equal(r.status, 401);
        tsup_response_free(&r);
    }
    tsup_response r;
    tsup_request(&r, s.port, "GET", "/health", "Authorization: Bearer s3cret-key\r\n", NULL, 0);
    assert_int_equal(r.status, 200);
    tsup_response_free(&r);
    tsup_request(&r, s.port, "POST", "/v1/envs/gsm8k/sample", "authorization: bearer s3cret-key\r\n", "{}", 2);
    assert_int_equal(r.status, 200);
    tsup_response_free(&r);
    assert_int_equal(tsup_server_stop(&s), 0);

    /* ENVSRV_API_KEY is the default key. */
    setenv("ENVSRV_API_KEY", "from-env", 1);
    int rc = tsup_server_start(&s, NULL);
    unsetenv("ENVSRV_API_KEY");
    assert_int_equal(rc, 0);
    tsup_request(&r, s.port, "GET", "/health", NULL, NULL, 0);
    assert_int_equal(r.status, 401);
    tsup_response_free(&r);
    tsup_request(&r, s.port, "GET", "/health", "Authorization: Bearer from-env\r\n", NULL, 0);
    assert_int_equal(r.status, 200);
    tsup_response_free(&r);
    assert_int_equal(tsup_server_stop(&s), 0);
}

static void test_http_episodes__cap(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const args[] = { "--max-episodes", "2", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    json_t *a = expect_ok(s.port, "POST", "/v1/envs/gsm8k/episodes", "{\"item_id\": \"test-0\"}");
    json_t *b = expect_ok(s.port, "POST", "/v1/envs/gsm8k/episodes", "{\"item_id\": \"test-1\"}");
    expect_error(s.port, "POST", "/v1/envs/gsm8k/episodes", "{\"item_id\": \"test-2\"}", 429, "too_many_episodes");
    char *m = get_metrics(s.port);
    assert_true(metric(m, "envsrv_episodes_open") == 2);
    free(m);
    /* Finishing one makes room. */
    char path[128];
    snprintf(path, sizeof path, "/v1/episodes/%s/step", json_string_value(json_object_get(a, "episode_id")));
    json_decref(expect_ok(s.port, "POST", path, "{\"action\": \"no idea\"}"));
    json_decref(expect_ok(s.port, "POST", "/v1/envs/gsm8k/episodes", "{\"item_id\": \"test-2\"}"));
    json_decref(a);
    json_decref(b);
    /* Open episodes at shutdown are freed (ASan checks). */
    assert_int_equal(tsup_server_stop(&s), 0);
}

/* A user environment whose reward fails on purpose: "loop" spins forever,
 * anything else raises an error on line 9. */
static const char broken_env[] =
    "-- test env: a reward that fails\n"
    "return {\n"
    "  name = \"broken\",\n"
    "  description = \"reward raises or loops\",\n"
    "  dataset = { test = \"items.jsonl\" },\n"
    "  prompt = function(item) return { { role = \"user\", content = item.q } } end,\n"
    "  reward = function(item, completion)\n"
    "    if completion == \"loop\" then while true do end end\n"
    "    error(\"boom from reward\")\n"
    "  end,\n"
    "}\n";

static void test_http_lua__error_and_runaway(void **state)
{
    (void)state;
    NEED_BIN();
    char dir[64], envpath[128];
    tsup_mkdtemp(dir);
    tsup_write_file(dir, "broken.lua", broken_env);
    tsup_write_file(dir, "items.jsonl", "{\"q\": \"what?\"}\n{\"q\": \"why?\"}\n");
    snprintf(envpath, sizeof envpath, "%s/broken.lua", dir);
    const char *args[] = { "--env", envpath, NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);

    int st = 0;
    json_t *j = tsup_call(&st, s.port, "POST", "/v1/envs/broken/score",
                          "{\"item_id\": \"test-0\", \"completions\": [\"anything\"]}");
    assert_int_equal(st, 500);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "env_error");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "boom from reward"));
    assert_non_null(strstr(json_string_value(json_object_get(e, "source")), "broken.lua"));
    assert_int_equal(json_integer_value(json_object_get(e, "line")), 9);
    json_decref(j);

    j = tsup_call(&st, s.port, "POST", "/v1/envs/broken/score",
                  "{\"item_id\": \"test-1\", \"completions\": [\"loop\"]}");
    assert_int_equal(st, 500);
    e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "env_error");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "instruction"));
    json_decref(j);

    /* The server is fine afterwards, and counted both failures. */
    json_decref(expect_ok(s.port, "GET", "/health", NULL));
    char *m = get_metrics(s.port);
    assert_true(metric(m, "envsrv_lua_errors_total{env=\"broken\"}") == 2);
    free(m);
    assert_int_equal(tsup_server_stop(&s), 0);
    tsup_rmdir(dir);
}

static void test_http_data__real_gsm8k(void **state)
{
    (void)state;
    NEED_BIN();
    char data[4096], path[4200];
    snprintf(data, sizeof data, "%s/gsm8k", tsup_data_dir());
    snprintf(path, sizeof path, "%s/test.jsonl", data);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        print_message("%s not found (set ENVSRV_DATA); skipping\n", path);
        skip();
    }
    char arg[4200];
    snprintf(arg, sizeof arg, "gsm8k=%s", data);
    const char *args[] = { "--env", "gsm8k", "--data", arg, NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    json_t *d = expect_ok(s.port, "GET", "/v1/envs/gsm8k", NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "splits"), "test")), 1319);
    json_decref(d);
    json_t *item = expect_ok(s.port, "GET", "/v1/envs/gsm8k/items/test-0?include_answer=1", NULL);
    json_t *req = json_pack("{s:s, s:[s]}", "item_id", "test-0", "completions",
                            json_string_value(json_object_get(item, "answer")));
    char *body = json_dumps(req, 0);
    json_t *j = expect_ok(s.port, "POST", "/v1/envs/gsm8k/score", body);
    assert_true(json_number_value(json_array_get(json_object_get(j, "rewards"), 0)) == 1.0);
    json_decref(j);
    free(body);
    json_decref(req);
    json_decref(item);
    assert_int_equal(tsup_server_stop(&s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_health__ok),
        cmocka_unit_test(test_http_envs__list),
        cmocka_unit_test(test_http_envs__get_one),
        cmocka_unit_test(test_http_items__get),
        cmocka_unit_test(test_http_items__errors),
        cmocka_unit_test(test_http_sample__deterministic),
        cmocka_unit_test(test_http_sample__invalid_fields),
        cmocka_unit_test(test_http_score__rewards),
        cmocka_unit_test(test_http_score__inline_item),
        cmocka_unit_test(test_http_score__invalid_fields),
        cmocka_unit_test(test_http_errors__not_found),
        cmocka_unit_test(test_http_errors__method_not_allowed),
        cmocka_unit_test(test_http_errors__bad_json),
        cmocka_unit_test(test_http_errors__body_not_object),
        cmocka_unit_test(test_http_errors__unknown_env),
        cmocka_unit_test(test_http_episodes__single_turn_flow),
        cmocka_unit_test(test_http_episodes__errors),
        cmocka_unit_test(test_http_metrics__counts_follow_requests),
        cmocka_unit_test(test_http_limits__max_body),
        cmocka_unit_test(test_http_auth__api_key),
        cmocka_unit_test(test_http_episodes__cap),
        cmocka_unit_test(test_http_lua__error_and_runaway),
        cmocka_unit_test(test_http_data__real_gsm8k),
        cmocka_unit_test(test_http__server_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
