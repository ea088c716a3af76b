/*
 * Procedural (gen-*) environments over HTTP against the real binary: items
 * generated from their ids, scoring, beacon challenges (deterministic, with
 * clear errors), and the curriculum's state surviving a restart through the
 * journal folder.
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

static char g_dir[64];

static int start(tsup_server *s)
{
    static char journal[128];
    snprintf(journal, sizeof journal, "%s", g_dir);
    const char *const args[] = { "--env", "gen-arithmetic", "--env", "gsm8k", "--journal", journal,
                                 "--curriculum", "target=0.5,window=16", NULL };
    return tsup_server_start(s, args);
}

/* The curriculum entry of `level` in GET /v1/envs/gen-arithmetic (its n). */
static long long level_count(unsigned port, int level)
{
    int status = 0;
    json_t *j = tsup_call(&status, port, "GET", "/v1/envs/gen-arithmetic", NULL);
    assert_int_equal(status, 200);
    json_t *cur = json_object_get(j, "curriculum");
    assert_non_null(cur);
    assert_true(json_number_value(json_object_get(cur, "target")) == 0.5);
    long long n = -1;
    size_t i;
    json_t *lv;
    json_array_foreach(json_object_get(cur, "levels"), i, lv)
        if (json_integer_value(json_object_get(lv, "level")) == level)
            n = json_integer_value(json_object_get(lv, "n"));
    json_decref(j);
    return n;
}

static void test_generated_http__items_score_challenge_curriculum(void **state)
{
    (void)state;
    if (!tsup_bin()) {
        print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n");
        skip();
    }
    tsup_mkdtemp(g_dir);
    tsup_server s;
    assert_int_equal(start(&s), 0);
    int status = 0;

    /* Any well-formed id is an item, generated on demand. */
    json_t *j = tsup_call(&status, s.port, "GET", "/v1/envs/gen-arithmetic/items/d2-s7?include_answer=1", NULL);
    assert_int_equal(status, 200);
    const char *answer = json_string_value(json_object_get(j, "answer"));
    assert_non_null(answer);
    char body[256];
    snprintf(body, sizeof body, "{\"item_id\": \"d2-s7\", \"completions\": [\"ANSWER: %s\", \"ANSWER: x\"]}",
             answer);
    json_decref(j);
    j = tsup_call(&status, s.port, "GET", "/v1/envs/gen-arithmetic/items/d2-s7x", NULL);
    assert_int_equal(status, 404);
    json_decref(j);

    j = tsup_call(&status, s.port, "POST", "/v1/envs/gen-arithmetic/score", body);
    assert_int_equal(status, 200);
    json_t *rewards = json_object_get(j, "rewards");
    assert_true(json_number_value(json_array_get(rewards, 0)) == 1.0);
    assert_true(json_number_value(json_array_get(rewards, 1)) == 0.0);
    json_decref(j);
    assert_int_equal(level_count(s.port, 2), 2);   /* both results went to level 2 */

    /* Challenges: the same beacon gives the same items; bad input is 422. */
    tsup_response a, b;
    const char *ch = "{\"beacon\": \"9f86d081884c7d65\", \"count\": 3}";
    tsup_request(&a, s.port, "POST", "/v1/envs/gen-arithmetic/challenge", NULL, ch, strlen(ch));
    tsup_request(&b, s.port, "POST", "/v1/envs/gen-arithmetic/challenge", NULL, ch, strlen(ch));
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len);
    j = tsup_json(&a);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 3);
    assert_null(json_object_get(json_array_get(json_object_get(j, "items"), 0), "answer"));
    json_decref(j);
    tsup_response_free(&a);
    tsup_response_free(&b);
    j = tsup_call(&status, s.port, "POST", "/v1/envs/gen-arithmetic/challenge", "{\"beacon\": \"xyz\"}");
    assert_int_equal(status, 422);
    json_decref(j);
    j = tsup_call(&status, s.port, "POST", "/v1/envs/gen-arithmetic/challenge",
                  "{\"beacon\": \"00\", \"count\": 0}");
    assert_int_equal(status, 422);
    json_decref(j);
    j = tsup_call(&status, s.port, "POST", "/v1/envs/gen-arithmetic/challenge", "{\"count\": 2}");
    assert_int_equal(status, 400);
    json_decref(j);
    j = tsup_call(&status, s.port, "POST", "/v1/envs/gsm8k/challenge", "{\"beacon\": \"00\"}");
    assert_int_equal(status, 422);   /* a dataset env has no generator */
    json_decref(j);

    /* The curriculum survives a restart (saved in the journal folder). */
    assert_int_equal(tsup_server_stop(&s), 0);
    assert_int_equal(start(&s), 0);
    assert_int_equal(level_count(s.port, 2), 2);
    assert_int_equal(tsup_server_stop(&s), 0);
    tsup_rmdir(g_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_http__items_score_challenge_curriculum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
