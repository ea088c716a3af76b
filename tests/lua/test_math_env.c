/*
 * Tests for the built-in `math` environment (envs/math.lua) through lua/:
 * every sample problem's own solution scores 1 and a wrong answer 0, the
 * public view hides the answer, and with the real MATH-500 file (skipped when
 * $ENVSRV_DATA is absent) all 500 solutions score 1 through lenv_score.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/lenv.h"

static const char *data_dir(void)
{
    const char *d = getenv("ENVSRV_DATA");
    return d && *d ? d : "../shared/data";
}

static lenv_env *open_math(const lenv_data_source *data, size_t n_data)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = "math";
    o.n_states = 1;
    o.data = data;
    o.n_data = n_data;
    int rc = lenv_open(&env, &o, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_open(math): %d %s", rc, err.message);
    return env;
}

/* Scores the item's own solution and a wrong final answer; returns the
 * rewards through r_good and r_bad. */
static void score_pair(lenv_env *env, const json_t *item, double *r_good, double *r_bad)
{
    const char *solution = json_string_value(json_object_get(item, "solution"));
    assert_non_null(solution);
    const char *completions[2] = { solution, "After some work, the answer is \\boxed{-987654321}." };
    size_t lens[2] = { strlen(completions[0]), strlen(completions[1]) };
    json_t *out = NULL;
    lenv_error err;
    int rc = lenv_score(&out, env, item, completions, lens, 2, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_score(%s): %s", json_string_value(json_object_get(item, "id")), err.message);
    json_t *rewards = json_object_get(out, "rewards");
    *r_good = json_number_value(json_array_get(rewards, 0));
    *r_bad = json_number_value(json_array_get(rewards, 1));
    json_decref(out);
}

static void check_split(lenv_env *env, const char *split, size_t expect_n)
{
    json_t *desc = lenv_describe(env, 0);
    size_t n = (size_t)json_integer_value(json_object_get(json_object_get(desc, "splits"), split));
    json_decref(desc);
    if (expect_n)
        assert_int_equal(n, expect_n);
    assert_true(n > 0);
    size_t good = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%zu", split, i);
        const json_t *item = NULL;
        lenv_error err;
        assert_int_equal(lenv_item_find(&item, env, id, &err), LENV_OK);
        double rg, rb;
        score_pair(env, item, &rg, &rb);
        if (rg == 1.0)
            good++;
        else
            print_message("not equal: %s answer %s\n", id,
                          json_string_value(json_object_get(item, "answer")));
        if (rb == 0.0)
            bad++;
    }
    print_message("math %s: %zu items, solution scores 1: %zu, wrong answer scores 0: %zu\n",
                  split, n, good, bad);
    assert_int_equal(good, n);
    assert_int_equal(bad, n);
}

static void test_math_env_sample__solutions_score_one(void **state)
{
    (void)state;
    lenv_env *env = open_math(NULL, 0);
    assert_string_equal(lenv_name(env), "math");
    check_split(env, "test", 0);
    lenv_free(env);
}

static void test_math_env_view__hides_answer(void **state)
{
    (void)state;
    lenv_env *env = open_math(NULL, 0);
    const json_t *item = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_find(&item, env, "test-0", &err), LENV_OK);
    json_t *view = NULL;
    assert_int_equal(lenv_item_view(&view, env, item, 0, &err), LENV_OK);
    assert_null(json_object_get(view, "answer"));
    json_t *meta = json_object_get(view, "metadata");
    assert_non_null(json_object_get(meta, "subject"));
    json_t *prompt = json_object_get(view, "prompt");
    const char *user = json_string_value(json_object_get(json_array_get(prompt, 0), "content"));
    assert_non_null(strstr(user, "\\boxed{}"));
    json_decref(view);
    assert_int_equal(lenv_item_view(&view, env, item, 1, &err), LENV_OK);
    assert_non_null(json_object_get(view, "answer"));
    json_decref(view);
    lenv_free(env);
}

static void test_math_env_inline__equivalent_forms(void **state)
{
    (void)state;
    lenv_env *env = open_math(NULL, 0);
    json_t *item = json_pack("{s:s, s:s, s:s}", "id", "inline-half", "problem", "Half of one?",
                             "answer", "\\frac{1}{2}");
    const char *completions[4] = { "so it is \\boxed{0.5}", "The answer is $\\dfrac{2}{4}$.",
                                   "\\boxed{0.33}", "no idea" };
    size_t lens[4];
    for (int i = 0; i < 4; i++)
        lens[i] = strlen(completions[i]);
    json_t *out = NULL;
    lenv_error err;
    assert_int_equal(lenv_score(&out, env, item, completions, lens, 4, &err), LENV_OK);
    json_t *rewards = json_object_get(out, "rewards");
    assert_true(json_number_value(json_array_get(rewards, 0)) == 1.0);
    assert_true(json_number_value(json_array_get(rewards, 1)) == 1.0);
    assert_true(json_number_value(json_array_get(rewards, 2)) == 0.0);
    assert_true(json_number_value(json_array_get(rewards, 3)) == 0.0);
    json_t *d3 = json_array_get(json_object_get(out, "details"), 3);
    assert_string_equal(json_string_value(json_object_get(d3, "reason")), "no_answer");
    json_decref(out);
    json_decref(item);
    lenv_free(env);
}

static void test_math_env_real__math500_solutions_score_one(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/math500/test.jsonl", data_dir());
    if (access(path, R_OK) != 0) {
        print_message("skipped: %s not found (set ENVSRV_DATA to the shared data folder)\n", path);
        skip();
    }
    lenv_data_source src = { NULL, path };
    lenv_env *env = open_math(&src, 1);
    check_split(env, "test", 500);
    lenv_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_math_env_sample__solutions_score_one),
        cmocka_unit_test(test_math_env_view__hides_answer),
        cmocka_unit_test(test_math_env_inline__equivalent_forms),
        cmocka_unit_test(test_math_env_real__math500_solutions_score_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
