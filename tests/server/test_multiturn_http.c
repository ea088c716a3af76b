/*
 * Multi-turn episodes over HTTP against the real binary: the guess game and
 * the calculator env with a tool the env runs (a good call, a schema
 * violation that goes back to the model as a tool error), the max_turns limit,
 * and transcript replay through POST /v1/envs/{env}/score with "messages"
 * (the same transcript always gives the same JSON); a wordle game and a
 * BFCL-style function call scored over HTTP.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/support.h"

static tsup_server g_srv;
static int g_up;

#define NEED_SERVER() TSUP_NEED_SERVER(g_up)

static int group_setup(void **state)
{
    (void)state;
    static const char *const args[] = { "--env", "guess", "--env", "calculator", "--env", "wordle",
                                        "--env", "tools", "--env", "dialogue_tools", "--threads", "2",
                                        NULL };
    g_up = tsup_bin() && tsup_server_start(&g_srv, args) == 0;
    return 0;
}

/* The group's server stops cleanly after every test above. */
static void test_multiturn_http__server_exits_cleanly(void **state)
{
    (void)state;
    tsup_server_stop_in_test(&g_srv, &g_up);
}

static int group_teardown(void **state)
{
    (void)state;
    return tsup_server_teardown(&g_srv, &g_up);
}

/* Starts an episode; returns its id (static copy). */
static const char *start_episode(const char *env, const char *item_id)
{
    static char id[128];
    char path[256], body[256];
    snprintf(path, sizeof path, "/v1/envs/%s/episodes", env);
    snprintf(body, sizeof body, "{\"item_id\": \"%s\"}", item_id);
    int status = 0;
    json_t *j = tsup_call(&status, g_srv.port, "POST", path, body);
    assert_int_equal(status, 200);
    assert_true(json_array_size(json_object_get(j, "observation")) > 0);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "episode_id")));
    json_decref(j);
    return id;
}

/* One step; returns the answer (new reference) after checking the status. */
static json_t *step(const char *episode, const char *action_json, int want_status)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/episodes/%s/step", episode);
    char *body = NULL;
    json_t *b = json_pack("{s:s}", "action", action_json);
    body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    int status = 0;
    json_t *j = tsup_call(&status, g_srv.port, "POST", path, body);
    free(body);
    assert_int_equal(status, want_status);
    return j;
}

/* The content of the last message of a step's observation (borrowed). */
static const char *last_content(const json_t *j)
{
    const json_t *obs = json_object_get(j, "observation");
    size_t n = json_array_size(obs);
    assert_true(n > 0);
    return json_string_value(json_object_get(json_array_get(obs, n - 1), "content"));
}

static void test_multiturn_http_guess__whole_episode(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *ep = start_episode("guess", "g1");   /* secret 37 in 1..100 */
    json_t *j = step(ep, "My guess is 50", 200);
    assert_false(json_is_true(json_object_get(j, "done")));
    assert_string_equal(last_content(j), "Lower.");
    assert_non_null(json_object_get(j, "env_version"));
    json_decref(j);
    j = step(ep, "25", 200);
    assert_string_equal(last_content(j), "Higher.");
    json_decref(j);
    j = step(ep, "It must be 37.", 200);
    assert_true(json_is_true(json_object_get(j, "done")));
    assert_true(json_number_value(json_object_get(j, "reward")) > 0.79 &&
                json_number_value(json_object_get(j, "reward")) < 0.81);   /* 1 - 2/10 */
    json_decref(j);
    /* A finished episode is gone. */
    j = step(ep, "37", 404);
    assert_string_equal(tsup_error_code(j), "unknown_episode");
    json_decref(j);
}

static void test_multiturn_http_guess__max_turns(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *ep = start_episode("guess", "g1");
    json_t *j = NULL;
    int turns = 0;
    for (;;) {
        json_decref(j);
        j = step(ep, "99", 200);
        turns++;
        if (json_is_true(json_object_get(j, "done")) || turns > 20)
            break;
    }
    assert_int_equal(turns, 10);
    assert_true(json_number_value(json_object_get(j, "reward")) == 0.0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "info"), "limit")),
                        "max_turns");
    json_decref(j);
}

static void test_multiturn_http_calculator__tool_calls(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *ep = start_episode("calculator", "apples");   /* 48*17-529 = 287 */
    /* A schema violation goes back to the model as a tool error. */
    json_t *j = step(ep, "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expr\": \"1\"}}</tool_call>",
                     200);
    assert_false(json_is_true(json_object_get(j, "done")));
    const json_t *msg = json_array_get(json_object_get(j, "observation"), 0);
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "tool");
    assert_memory_equal(json_string_value(json_object_get(msg, "content")), "error:", 6);
    json_decref(j);
    /* A good call is run by the env. */
    j = step(ep, "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"48*17-529\"}}</tool_call>",
             200);
    assert_false(json_is_true(json_object_get(j, "done")));
    assert_string_equal(last_content(j), "287");
    json_decref(j);
    j = step(ep, "Answer: 287", 200);
    assert_true(json_is_true(json_object_get(j, "done")));
    double r = json_number_value(json_object_get(j, "reward"));
    assert_true(r > 0.94 && r < 0.96);   /* one successful call costs 0.05 */
    json_decref(j);
}

static void test_multiturn_http_score__transcript_replay(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *body =
        "{\"item_id\": \"g1\", \"messages\": ["
        "{\"role\": \"assistant\", \"content\": \"50\"},"
        "{\"role\": \"user\", \"content\": \"Lower.\"},"
        "{\"role\": \"assistant\", \"content\": \"37\"}]}";
    int status = 0;
    tsup_response a, b;
    tsup_request(&a, g_srv.port, "POST", "/v1/envs/guess/score", NULL, body, strlen(body));
    tsup_request(&b, g_srv.port, "POST", "/v1/envs/guess/score", NULL, body, strlen(body));
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    /* Deterministic: byte-identical answers. */
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len);
    json_t *j = tsup_json(&a);
    json_t *rewards = json_object_get(j, "rewards");
    assert_int_equal(json_array_size(rewards), 2);
    assert_true(json_number_value(json_array_get(rewards, 0)) == 0.0);
    double total = json_number_value(json_object_get(j, "total"));
    assert_true(total > 0.89 && total < 0.91);   /* found on turn 2 */
    assert_true(json_is_true(json_object_get(j, "done")));
    assert_string_equal(json_string_value(json_object_get(j, "item_id")), "g1");
    assert_non_null(json_object_get(j, "env_version"));
    json_decref(j);
    tsup_response_free(&a);
    tsup_response_free(&b);

    /* Wrong types and both forms at once are clear errors. */
    j = tsup_call(&status, g_srv.port, "POST", "/v1/envs/guess/score",
                  "{\"item_id\": \"g1\", \"messages\": \"50\"}");
    assert_int_equal(status, 422);
    assert_string_equal(tsup_error_code(j), "invalid_field");
    json_decref(j);
    j = tsup_call(&status, g_srv.port, "POST", "/v1/envs/guess/score",
                  "{\"item_id\": \"g1\", \"messages\": [], \"completions\": [\"1\"]}");
    assert_int_equal(status, 400);
    assert_string_equal(tsup_error_code(j), "bad_request");
    json_decref(j);
    j = tsup_call(&status, g_srv.port, "POST", "/v1/envs/guess/score",
                  "{\"item_id\": \"g1\", \"messages\": [{\"role\": 7}]}");
    assert_int_equal(status, 422);
    json_decref(j);
}

static void test_multiturn_http_wordle__feedback_then_win(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *ep = start_episode("wordle", "w1");   /* target "crane" */
    json_t *j = step(ep, "sheep", 200);
    assert_false(json_is_true(json_object_get(j, "done")));
    assert_true(json_number_value(json_object_get(j, "reward")) == 0.0);
    assert_non_null(json_object_get(json_object_get(j, "info"), "marks"));
    json_decref(j);
    j = step(ep, "crane", 200);
    assert_true(json_is_true(json_object_get(j, "done")));
    double r = json_number_value(json_object_get(j, "reward"));
    assert_true(r > 0.0 && r < 1.0);   /* won on the second guess */
    json_decref(j);
}

static void test_multiturn_http_tools__bfcl_call_scored(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *body =
        "{\"item_id\": \"simple_python_sample_0\", \"completions\": ["
        "\"<tool_call>{\\\"name\\\": \\\"geometry.rectangle_area\\\", \\\"arguments\\\": "
        "{\\\"width\\\": 4.5, \\\"height\\\": 2}}</tool_call>\","
        "\"<tool_call>{\\\"name\\\": \\\"geometry.rectangle_area\\\", \\\"arguments\\\": "
        "{\\\"width\\\": 5, \\\"height\\\": 2}}</tool_call>\","
        "\"I cannot call tools.\"]}";
    int status = 0;
    json_t *j = tsup_call(&status, g_srv.port, "POST", "/v1/envs/tools/score", body);
    assert_int_equal(status, 200);
    json_t *rewards = json_object_get(j, "rewards");
    assert_true(json_number_value(json_array_get(rewards, 0)) == 1.0);   /* int 2 for float 2.0 is fine */
    assert_true(json_number_value(json_array_get(rewards, 1)) < 1.0);    /* wrong width */
    assert_true(json_number_value(json_array_get(rewards, 2)) == 0.0);   /* no call */
    json_decref(j);
    /* The item view carries the tool list in OpenAI format. */
    j = tsup_call(&status, g_srv.port, "GET", "/v1/envs/tools/items/simple_python_sample_0", NULL);
    assert_int_equal(status, 200);
    assert_true(json_array_size(json_object_get(j, "tools")) >= 1);
    json_decref(j);
}

/* Two tool calls in sequence, each result feeding the next, then the answer. */
static void test_multiturn_http_dialogue_tools__lookup_then_quote(void **state)
{
    (void)state;
    NEED_SERVER();
    int status = 0;
    json_t *j = tsup_call(&status, g_srv.port, "POST", "/v1/envs/dialogue_tools/episodes",
                          "{\"item_id\": \"shop-1\"}");
    assert_int_equal(status, 200);
    char ep[128];
    snprintf(ep, sizeof ep, "%s", json_string_value(json_object_get(j, "episode_id")));
    json_t *obs = json_object_get(j, "observation");
    const char *ask = json_string_value(json_object_get(json_array_get(obs, json_array_size(obs) - 1),
                                                        "content"));
    int qty = 0;
    char name[64] = "";
    assert_int_equal(sscanf(ask, "I need %d of the %63[^.].", &qty, name), 2);
    json_decref(j);

    char action[512];
    snprintf(action, sizeof action,
             "<tool_call>{\"name\": \"find_product\", \"arguments\": {\"name\": \"%s\"}}</tool_call>", name);
    j = step(ep, action, 200);
    json_t *found = json_loads(last_content(j), 0, NULL);
    assert_non_null(found);
    char code[64];
    snprintf(code, sizeof code, "%s", json_string_value(json_object_get(found, "code")));
    json_decref(found);
    json_decref(j);

    snprintf(action, sizeof action,
             "<tool_call>{\"name\": \"quote\", \"arguments\": {\"code\": \"%s\", \"quantity\": %d}}</tool_call>",
             code, qty);
    j = step(ep, action, 200);
    json_t *quote = json_loads(last_content(j), 0, NULL);
    assert_non_null(quote);
    char total[64];
    snprintf(total, sizeof total, "%s", json_string_value(json_object_get(quote, "total")));
    json_decref(quote);
    json_decref(j);

    snprintf(action, sizeof action, "Answer: %s", total);
    j = step(ep, action, 200);
    assert_true(json_is_true(json_object_get(j, "done")));
    assert_true(json_number_value(json_object_get(j, "reward")) == 1.0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multiturn_http_guess__whole_episode),
        cmocka_unit_test(test_multiturn_http_guess__max_turns),
        cmocka_unit_test(test_multiturn_http_calculator__tool_calls),
        cmocka_unit_test(test_multiturn_http_score__transcript_replay),
        cmocka_unit_test(test_multiturn_http_wordle__feedback_then_win),
        cmocka_unit_test(test_multiturn_http_tools__bfcl_call_scored),
        cmocka_unit_test(test_multiturn_http_dialogue_tools__lookup_then_quote),
        cmocka_unit_test(test_multiturn_http__server_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
