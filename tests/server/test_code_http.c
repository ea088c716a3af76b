/*
 * The code environment over HTTP: its definition is long_running, so /score
 * runs on the sandbox worker pool (a suspended connection), not on an HTTP
 * thread. A right solution scores 1 and a wrong one 0 through that path, and
 * /health keeps answering meanwhile.
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

static void test_code_http_score__on_the_pool(void **state)
{
    (void)state;
    if (!tsup_bin()) {
        print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n");
        skip();
    }
    static const char *const args[] = { "--env", "code", "--env", "gsm8k", "--sandbox-workers", "1", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    const char *body =
        "{\"item_id\": \"test-0\", \"completions\": ["
        "\"```python\\ndef add_digits(n: int) -> int:\\n    return sum(int(c) for c in str(n))\\n```\","
        "\"```python\\ndef add_digits(n):\\n    return 0\\n```\"]}";
    int status = 0;
    json_t *j = tsup_call(&status, s.port, "POST", "/v1/envs/code/score", body);
    assert_int_equal(status, 200);
    json_t *rewards = json_object_get(j, "rewards");
    assert_true(json_number_value(json_array_get(rewards, 0)) == 1.0);
    assert_true(json_number_value(json_array_get(rewards, 1)) == 0.0);
    assert_non_null(json_object_get(j, "env_version"));
    json_decref(j);

    /* Single-turn episodes of the code env step on the pool too. */
    j = tsup_call(&status, s.port, "POST", "/v1/envs/code/episodes", "{\"item_id\": \"test-0\"}");
    assert_int_equal(status, 200);
    char path[256];
    snprintf(path, sizeof path, "/v1/episodes/%s/step", json_string_value(json_object_get(j, "episode_id")));
    json_decref(j);
    j = tsup_call(&status, s.port, "POST", path,
                  "{\"action\": \"```python\\ndef add_digits(n):\\n    return sum(map(int, str(n)))\\n```\"}");
    assert_int_equal(status, 200);
    assert_true(json_number_value(json_object_get(j, "reward")) == 1.0);
    assert_true(json_is_true(json_object_get(j, "done")));
    json_decref(j);

    /* A fast env on the same server still scores inline. */
    j = tsup_call(&status, s.port, "POST", "/v1/envs/gsm8k/score",
                  "{\"item_id\": \"test-0\", \"completions\": [\"#### 47\"]}");
    assert_int_equal(status, 200);
    assert_true(json_number_value(json_array_get(json_object_get(j, "rewards"), 0)) == 1.0);
    json_decref(j);
    j = tsup_call(&status, s.port, "GET", "/health", NULL);
    assert_int_equal(status, 200);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_http_score__on_the_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
