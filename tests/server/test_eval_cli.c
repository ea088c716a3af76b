/*
 * `envsrv eval` end to end with the real stories260K checkpoint: the report
 * names the env version, dataset hash and the model's SHA-256, is the same on
 * a second run (greedy), and the exit status gates on --min-score. A small
 * env written by the test gives a known reward, so both sides of the gate are
 * checked. Skipped when $ENVSRV_BIN or the shared data is absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/support.h"

static const char story_env[] =
    "return {\n"
    "  name = \"story\",\n"
    "  description = \"reward 1 for any non-empty continuation\",\n"
    "  dataset = { test = \"story.jsonl\" },\n"
    "  prompt = function(item) return { { role = \"user\", content = item.start } } end,\n"
    "  reward = function(item, completion) return #completion > 0 and 1 or 0 end,\n"
    "}\n";

static const char story_data[] =
    "{\"start\": \"Once upon a time\"}\n{\"start\": \"The cat sat\"}\n{\"start\": \"Lily went\"}\n";

static void test_eval_cli__report_and_gate(void **state)
{
    (void)state;
    if (!tsup_bin()) {
        print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n");
        skip();
    }
    char model[4096], tok[4096];
    tsup_stories260k(model, sizeof model, tok, sizeof tok);
    if (access(model, R_OK) != 0) {
        print_message("skipped: %s not found (set ENVSRV_DATA to the shared data folder)\n", model);
        skip();
    }
    char dir[64], env[128], report[128], report2[128];
    tsup_mkdtemp(dir);
    tsup_write_file(dir, "story.lua", story_env);
    tsup_write_file(dir, "story.jsonl", story_data);
    snprintf(env, sizeof env, "%s/story.lua", dir);
    snprintf(report, sizeof report, "%s/report.json", dir);
    snprintf(report2, sizeof report2, "%s/report2.json", dir);

    const char *const pass[] = { "eval", "--env", env, "--model", model, "--tokenizer", tok, "--limit", "3",
                                 "--max-tokens", "16", "--min-score", "0.5", "--report", report, NULL };
    char *out = NULL, *err = NULL;
    assert_int_equal(tsup_run(&out, &err, pass), 0);
    assert_non_null(strstr(out, "mean reward 1.0000"));
    free(out);
    free(err);
    json_t *r = json_load_file(report, 0, NULL);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "env")), "story");
    assert_int_equal(json_integer_value(json_object_get(r, "items")), 3);
    assert_true(json_number_value(json_object_get(r, "mean_reward")) == 1.0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "model"), "sha256")),
                        "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696");
    assert_int_equal(strlen(json_string_value(json_object_get(r, "env_version"))), 16);
    assert_int_equal(json_array_size(json_object_get(r, "results")), 3);

    /* Greedy: a second run gives the same report. */
    const char *const again[] = { "eval", "--env", env, "--model", model, "--tokenizer", tok, "--limit", "3",
                                  "--max-tokens", "16", "--report", report2, NULL };
    assert_int_equal(tsup_run(&out, &err, again), 0);
    free(out);
    free(err);
    json_t *r2 = json_load_file(report2, 0, NULL);
    assert_non_null(r2);
    assert_true(json_equal(json_object_get(r, "results"), json_object_get(r2, "results")));
    json_decref(r);
    json_decref(r2);

    /* gsm8k: stories260K cannot do arithmetic, so the gate fails with status 1. */
    const char *const fail[] = { "eval", "--env", "gsm8k", "--model", model, "--tokenizer", tok, "--limit", "2",
                                 "--max-tokens", "8", "--min-score", "0.5", NULL };
    assert_int_equal(tsup_run(&out, &err, fail), 1);
    assert_non_null(strstr(out, "FAIL: mean reward"));
    free(out);
    free(err);

    /* Bad arguments and bad files. */
    const char *const noenv[] = { "eval", "--model", model, NULL };
    assert_int_equal(tsup_run(&out, &err, noenv), 2);
    free(out);
    free(err);
    const char *const badenv[] = { "eval", "--env", "gsm9k", "--model", model, "--tokenizer", tok, NULL };
    assert_int_equal(tsup_run(&out, &err, badenv), 1);
    assert_non_null(strstr(err, "unknown environment 'gsm9k'"));
    free(out);
    free(err);
    tsup_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_cli__report_and_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
