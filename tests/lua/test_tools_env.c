/*
 * Tests for the built-in `tools` environment (envs/tools.lua) and the parts
 * of lua/ it rests on: envsrv.verify.tool_calls / bfcl / schema, the
 * data_format join of BFCL question and answer files, item views with their
 * tool list, inline items, and, with the real BFCL data ($ENVSRV_DATA/bfcl;
 * skipped when absent), every record of the four categories scoring 1.0
 * through lenv_score with its gold calls and 0 with a wrong function.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua/lenv.h"
#include "verifiers/verifiers.h"

static const char *data_dir(void)
{
    const char *d = getenv("ENVSRV_DATA");
    return d && *d ? d : "../shared/data";
}

static lenv_env *open_tools(const lenv_data_source *data, size_t n_data)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = "tools";
    o.data = data;
    o.n_data = n_data;
    int rc = lenv_open(&env, &o, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_open(tools): %d %s", rc, err.message);
    return env;
}

/* Writes `src` to a temporary .lua file and opens it; *path is freed by the caller. */
static int open_source(lenv_env **env, const char *src, lenv_error *err, char **path)
{
    char tmpl[] = "/tmp/envsrv_tools_XXXXXX.lua";
    int fd = mkstemps(tmpl, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    *path = strdup(tmpl);
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = *path;
    return lenv_open(env, &o, err);
}

/* The gold completion of a record, in Hermes format (vf_bfcl_gold_calls
 * states the rule). New string. */
static char *gold_completion(const json_t *item, const char *rename_first)
{
    json_t *calls = vf_bfcl_gold_calls(json_object_get(item, "ground_truth"),
                                       json_object_get(item, "function"));
    assert_non_null(calls);
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    assert_non_null(f);
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call) {
        if (i == 0 && rename_first)
            json_object_set_new(call, "name", json_string(rename_first));
        char *j = json_dumps(call, JSON_COMPACT);
        fprintf(f, "<tool_call>\n%s\n</tool_call>\n", j);
        free(j);
    }
    fclose(f);
    json_decref(calls);
    return out;
}

/* Scores the gold completion and a wrong-function one; returns both rewards
 * and the reason of the wrong one. */
static void score_item(lenv_env *env, const json_t *item, double *good, double *bad,
                       char *reason, size_t cap)
{
    char *c[2] = {gold_completion(item, NULL), gold_completion(item, "no_such_function")};
    json_t *out = NULL;
    lenv_error err;
    int rc = lenv_score(&out, env, item, (const char *const *)c, NULL, 2, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_score(%s): %s", json_string_value(json_object_get(item, "id")), err.message);
    *good = json_number_value(json_array_get(json_object_get(out, "rewards"), 0));
    *bad = json_number_value(json_array_get(json_object_get(out, "rewards"), 1));
    if (*good != 1.0) {
        json_t *d = json_array_get(json_object_get(out, "details"), 0);
        fail_msg("%s: gold scored %g: %s %s", json_string_value(json_object_get(item, "id")),
                 *good, json_string_value(json_object_get(d, "reason")),
                 json_string_value(json_object_get(d, "message")));
    }
    snprintf(reason, cap, "%s", json_string_value(json_object_get(
                                    json_array_get(json_object_get(out, "details"), 1), "reason")));
    json_decref(out);
    free(c[0]);
    free(c[1]);
}

/* ---- the built-in samples ------------------------------------------------------ */

static void test_tools_env_samples__views_and_scores(void **state)
{
    (void)state;
    lenv_env *env = open_tools(NULL, 0);
    json_t *d = lenv_describe(env, 1);
    const char *cats[] = {"simple_python", "multiple", "parallel", "parallel_multiple"};
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "splits"), cats[k])), 3);
    assert_true(json_is_false(json_object_get(json_object_get(d, "params"), "partial_credit")));
    json_decref(d);

    const json_t *item = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_find(&item, env, "multiple_sample_0", &err), LENV_OK);
    json_t *view = NULL;
    assert_int_equal(lenv_item_view(&view, env, item, 1, &err), LENV_OK);
    const json_t *tools = json_object_get(view, "tools");
    assert_int_equal(json_array_size(tools), 3);
    const json_t *fn = json_object_get(json_array_get(tools, 0), "function");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 0), "type")), "function");
    assert_string_equal(json_string_value(json_object_get(fn, "name")), "library.find_book");
    assert_string_equal(json_string_value(json_object_get(json_object_get(fn, "parameters"), "type")),
                        "object"); /* BFCL's "dict" */
    const char *sys = json_string_value(json_object_get(json_array_get(json_object_get(view, "prompt"), 0),
                                                        "content"));
    assert_non_null(strstr(sys, "<tools>\n{\"function\":{\"description\":\"Find a book"));
    assert_non_null(strstr(sys, "<tool_call>"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(view, "prompt"), 1),
                                                          "role")), "user");
    assert_string_equal(json_string_value(json_object_get(json_object_get(view, "metadata"), "category")),
                        "multiple");
    assert_true(json_is_array(json_object_get(view, "answer")));
    json_decref(view);

    for (size_t k = 0; k < 4; k++) {
        for (int i = 0; i < 3; i++) {
            char id[64], reason[64];
            snprintf(id, sizeof id, "%s_sample_%d", cats[k], i);
            assert_int_equal(lenv_item_find(&item, env, id, &err), LENV_OK);
            double good, bad;
            score_item(env, item, &good, &bad, reason, sizeof reason);
            assert_true(bad == 0.0);
            assert_string_equal(reason, "wrong_function");
        }
    }
    lenv_free(env);
}

static void test_tools_env_score__formats_and_reasons(void **state)
{
    (void)state;
    lenv_env *env = open_tools(NULL, 0);
    const json_t *item = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_find(&item, env, "parallel_sample_0", &err), LENV_OK);
    const char *c[] = {
        /* Bare JSON list, other order, city case differs: right. */
        "[{\"name\": \"weather.forecast\", \"arguments\": {\"city\": \"bergen\", \"days\": 2}},"
        " {\"name\": \"weather.forecast\", \"arguments\": {\"city\": \"Oslo\", \"days\": 2}}]",
        /* OpenAI tool_calls with dots as underscores: right. */
        "{\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"weather_forecast\","
        " \"arguments\": \"{\\\"city\\\": \\\"Oslo\\\", \\\"days\\\": 2}\"}}, {\"type\": \"function\","
        " \"function\": {\"name\": \"weather_forecast\", \"arguments\": \"{\\\"city\\\": \\\"Bergen\\\", \\\"days\\\": 2}\"}}]}",
        "<tool_call>{\"name\": \"weather.forecast\", \"arguments\": {\"city\": \"Oslo\", \"days\": 2}}</tool_call>",
        "<tool_call>{\"name\": \"weather.forecast\", \"arguments\": {\"city\": \"Oslo\", \"days\": 2}</tool_call>",
        "It will rain.",
    };
    const char *want[] = {"ok", "ok", "wrong_count", "parse_error", "no_tool_call"};
    json_t *out = NULL;
    assert_int_equal(lenv_score(&out, env, item, c, NULL, 5, &err), LENV_OK);
    for (size_t i = 0; i < 5; i++) {
        const json_t *d = json_array_get(json_object_get(out, "details"), i);
        assert_string_equal(json_string_value(json_object_get(d, "reason")), want[i]);
        assert_true(json_number_value(json_array_get(json_object_get(out, "rewards"), i)) ==
                    (i < 2 ? 1.0 : 0.0));
    }
    json_decref(out);

    /* An inline item: a question record with its ground truth. */
    json_t *inl = json_loads("{\"id\": \"mine\", \"question\": [[{\"role\": \"user\", \"content\": \"Add 2 and 3\"}]],"
                             " \"function\": [{\"name\": \"add\", \"parameters\": {\"type\": \"dict\", \"properties\":"
                             " {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}, \"required\": []}}],"
                             " \"ground_truth\": [{\"add\": {\"a\": [2], \"b\": [3]}}]}", 0, NULL);
    assert_non_null(inl);
    const char *ic[] = {"<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}</tool_call>",
                        "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 4}}</tool_call>"};
    assert_int_equal(lenv_score(&out, env, inl, ic, NULL, 2, &err), LENV_OK);
    assert_true(json_number_value(json_array_get(json_object_get(out, "rewards"), 0)) == 1.0);
    assert_true(json_number_value(json_array_get(json_object_get(out, "rewards"), 1)) == 0.0);
    json_decref(out);
    /* An inline item without ground truth is the env's error, said plainly. */
    json_object_del(inl, "ground_truth");
    assert_int_equal(lenv_score(&out, env, inl, ic, NULL, 1, &err), LENV_ESCRIPT);
    json_decref(inl);
    lenv_free(env);
}

/* ---- the Lua bindings ------------------------------------------------------------ */

static const char *const BINDINGS_ENV =
    "local function check(cond, what) if not cond then error('failed: ' .. what) end end\n"
    "return { name = 'bindings', prompt = function() return {} end,\n"
    "  reward = function(item, completion)\n"
    "    local calls, why = envsrv.verify.tool_calls('<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": [1, 2]}}</tool_call>')\n"
    "    check(calls and #calls == 1 and calls[1].name == 'f' and calls[1].arguments.x[2] == 2, 'tool_calls')\n"
    "    calls, why = envsrv.verify.tool_calls('no calls here')\n"
    "    check(calls == nil and why == 'no tool call', 'no calls')\n"
    "    calls, why = envsrv.verify.tool_calls('<tool_call>{bad</tool_call>')\n"
    "    check(calls == nil and why:find('invalid JSON', 1, true), 'broken: ' .. tostring(why))\n"
    "    local ok, v = envsrv.verify.schema({ a = 'x', list = {} }, { type = 'object', required = { 'a', 'b' },\n"
    "      properties = { a = { type = 'integer' }, list = { type = 'array' } } })\n"
    "    check(not ok and #v == 2 and v[1].path == '$' and v[2].path == '$.a', 'schema')\n"
    "    ok = envsrv.verify.schema(3, { type = 'number' })\n"
    "    check(ok, 'schema ok')\n"
    "    local fns = { { name = 'f', parameters = { type = 'dict', properties = { x = { type = 'array', items = { type = 'integer' } } },\n"
    "      required = { 'x' } } } }\n"
    "    local r, d = envsrv.verify.bfcl(completion, fns, { { f = { x = { { 1, 2 } } } } }, { partial = true })\n"
    "    return r, d\n"
    "  end }\n";

static void test_tools_env_bindings__lua(void **state)
{
    (void)state;
    lenv_env *env = NULL;
    lenv_error err;
    char *path = NULL;
    if (open_source(&env, BINDINGS_ENV, &err, &path) != LENV_OK)
        fail_msg("open: %s", err.message);
    json_t *item = json_object();
    const char *c[] = {"{\"name\": \"f\", \"arguments\": {\"x\": [1, 2]}}",
                       "{\"name\": \"f\", \"arguments\": {\"x\": [2, 1]}}"};
    json_t *out = NULL;
    if (lenv_score(&out, env, item, c, NULL, 2, &err) != LENV_OK)
        fail_msg("score: %s", err.message);
    assert_true(json_number_value(json_array_get(json_object_get(out, "rewards"), 0)) == 1.0);
    assert_true(json_number_value(json_array_get(json_object_get(out, "rewards"), 1)) == 0.0);
    const json_t *d = json_array_get(json_object_get(out, "details"), 1);
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "wrong_value");
    assert_int_equal(json_integer_value(json_object_get(d, "params_total")), 1);
    json_decref(out);
    json_decref(item);
    lenv_free(env);
    unlink(path);
    free(path);
}

/* ---- data_format: the join ------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_tools_env_data__join_errors(void **state)
{
    (void)state;
    char dir[] = "/tmp/envsrv_bfcl_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p1[400], p2[400], sub[160];
    snprintf(sub, sizeof sub, "%s/possible_answer", dir);
    snprintf(p1, sizeof p1, "%s/BFCL_v4_simple_python.json", dir);
    snprintf(p2, sizeof p2, "%s/BFCL_v4_simple_python.json", sub);
    write_file(p1, "{\"id\": \"simple_python_0\", \"question\": [[{\"role\": \"user\", \"content\": \"hi\"}]],"
                   " \"function\": [{\"name\": \"f\", \"parameters\": {\"type\": \"dict\", \"properties\": {}}}]}\n");
    lenv_data_source src = {NULL, dir};
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = "tools";
    o.data = &src;
    o.n_data = 1;
    lenv_env *env = NULL;
    lenv_error err;
    /* No possible_answer/ folder. */
    assert_int_equal(lenv_open(&env, &o, &err), LENV_EIO);
    assert_non_null(strstr(err.message, "possible_answer"));
    assert_int_equal(mkdir(sub, 0700), 0);
    /* An answer file without the question's id. */
    write_file(p2, "{\"id\": \"simple_python_9\", \"ground_truth\": [{\"f\": {}}]}\n");
    assert_int_equal(lenv_open(&env, &o, &err), LENV_EIO);
    assert_non_null(strstr(err.message, "no record with id 'simple_python_0'"));
    /* Right: one split named by the '*' of the pattern. */
    write_file(p2, "{\"id\": \"simple_python_0\", \"ground_truth\": [{\"f\": {}}]}\n");
    if (lenv_open(&env, &o, &err) != LENV_OK)
        fail_msg("open: %s", err.message);
    json_t *d = lenv_describe(env, 0);
    assert_int_equal(json_object_size(json_object_get(d, "splits")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "splits"), "simple_python")), 1);
    json_decref(d);
    const json_t *item = NULL;
    assert_int_equal(lenv_item_find(&item, env, "simple_python_0", &err), LENV_OK);
    assert_true(json_is_array(json_object_get(item, "ground_truth")));
    lenv_free(env);
    unlink(p2);
    unlink(p1);
    rmdir(sub);
    rmdir(dir);
}

/* ---- the real BFCL data ---------------------------------------------------------- */

static void test_tools_env_bfcl__all_categories(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bfcl", data_dir());
    if (access(dir, R_OK) != 0) {
        print_message("skipping: %s not found (set ENVSRV_DATA to the shared data folder)\n", dir);
        skip();
    }
    lenv_data_source src = {NULL, dir};
    lenv_env *env = open_tools(&src, 1);
    json_t *d = lenv_describe(env, 0);
    const char *cats[] = {"simple_python", "multiple", "parallel", "parallel_multiple"};
    const size_t sizes[] = {400, 200, 200, 200};
    size_t total = 0;
    for (size_t k = 0; k < 4; k++) {
        size_t n = (size_t)json_integer_value(json_object_get(json_object_get(d, "splits"), cats[k]));
        assert_int_equal(n, sizes[k]);
        size_t ones = 0, zeros = 0;
        for (size_t i = 0; i < n; i++) {
            char id[64], reason[64];
            snprintf(id, sizeof id, "%s_%zu", cats[k], i);
            const json_t *item = NULL;
            lenv_error err;
            if (lenv_item_find(&item, env, id, &err) != LENV_OK)
                fail_msg("%s", err.message);
            double good, bad;
            score_item(env, item, &good, &bad, reason, sizeof reason);
            ones += good == 1.0;
            zeros += bad == 0.0 && strcmp(reason, "wrong_function") == 0;
        }
        print_message("tools env, %s: %zu/%zu gold completions scored 1.0, %zu/%zu wrong-function "
                      "ones 0\n", cats[k], ones, n, zeros, n);
        assert_int_equal(ones, n);
        assert_int_equal(zeros, n);
        total += n;
    }
    assert_int_equal(total, 1000);
    json_decref(d);

    /* The view of a real item lists its tools and ends with the question. */
    const json_t *item = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_find(&item, env, "simple_python_0", &err), LENV_OK);
    json_t *view = NULL;
    assert_int_equal(lenv_item_view(&view, env, item, 0, &err), LENV_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(
                            json_object_get(view, "tools"), 0), "function"), "name")),
                        "calculate_triangle_area");
    assert_null(json_object_get(view, "answer"));
    json_decref(view);
    lenv_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tools_env_samples__views_and_scores),
        cmocka_unit_test(test_tools_env_score__formats_and_reasons),
        cmocka_unit_test(test_tools_env_bindings__lua),
        cmocka_unit_test(test_tools_env_data__join_errors),
        cmocka_unit_test(test_tools_env_bfcl__all_categories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
