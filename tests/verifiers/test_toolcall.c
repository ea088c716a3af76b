/*
 * Tests for verifiers/toolcall.c, schema.c and bfcl.c: every call format
 * models emit, broken JSON rejected with a reason, schema violations with
 * their JSON paths, and BFCL's matching rules one by one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "verifiers/verifiers.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Parses `text` and checks the calls against `want` (JSON text of the list). */
static void expect_calls(const char *text, const char *want)
{
    json_t *calls = NULL;
    char reason[VF_TOOL_REASON_MAX];
    int rc = vf_tool_calls_parse(&calls, text, strlen(text), reason, sizeof reason);
    if (rc != 0)
        fail_msg("parse %s: rc %d (%s)", text, rc, reason);
    json_t *w = json_loads(want, 0, NULL);
    assert_non_null(w);
    if (!json_equal(calls, w)) {
        char *got = json_dumps(calls, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("parse %s:\n got  %s\n want %s", text, got, want);
    }
    json_decref(w);
    json_decref(calls);
}

/* Parsing must fail with a reason that contains `part`. */
static void expect_broken(const char *text, const char *part)
{
    json_t *calls = (json_t *)1;
    char reason[VF_TOOL_REASON_MAX];
    int rc = vf_tool_calls_parse(&calls, text, strlen(text), reason, sizeof reason);
    if (rc != -1 || calls != NULL || strstr(reason, part) == NULL)
        fail_msg("parse %s: rc %d reason \"%s\", want -1 and \"%s\"", text, rc, reason, part);
}

/* Validates value against schema (both JSON text); `want` is the list of
 * "path: message-part" expected, in order, or NULL for valid. */
static void expect_schema(const char *value, const char *schema, const char *const *want)
{
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    json_t *s = json_loads(schema, 0, NULL);
    json_t *viol = json_array();
    assert_non_null(v);
    assert_non_null(s);
    int n = vf_schema_validate(viol, v, s, 16);
    size_t nw = 0;
    while (want && want[nw])
        nw++;
    char *dump = json_dumps(viol, JSON_COMPACT);
    if (n != (int)nw)
        fail_msg("%s against %s: %d violations %s, want %zu", value, schema, n, dump, nw);
    for (size_t i = 0; i < nw; i++) {
        const char *colon = strchr(want[i], ':');
        size_t plen = (size_t)(colon - want[i]);
        const json_t *e = json_array_get(viol, i);
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (strlen(path) != plen || strncmp(path, want[i], plen) != 0 || !strstr(msg, colon + 2))
            fail_msg("%s: violation %zu is %s, want %s", value, i, dump, want[i]);
    }
    free(dump);
    json_decref(v);
    json_decref(s);
    json_decref(viol);
}

static const char *const FUNCS =
    "[{\"name\": \"math.area\", \"parameters\": {\"type\": \"dict\", \"properties\": {"
    "  \"base\": {\"type\": \"integer\"}, \"height\": {\"type\": \"float\"},"
    "  \"unit\": {\"type\": \"string\"}, \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
    "  \"opts\": {\"type\": \"dict\", \"properties\": {\"round\": {\"type\": \"boolean\"}}},"
    "  \"exact\": {\"type\": \"boolean\"}},"
    "  \"required\": [\"base\", \"height\"]}},"
    " {\"name\": \"weather\", \"parameters\": {\"type\": \"dict\", \"properties\": {"
    "  \"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}]";

/* Matches the calls in `completion` against `gt` (JSON text). */
static vf_bfcl_result bfcl(const char *completion, const char *gt, int partial)
{
    json_t *f = json_loads(FUNCS, 0, NULL);
    json_t *g = json_loads(gt, 0, NULL);
    assert_non_null(f);
    assert_non_null(g);
    vf_bfcl_result r;
    int rc = vf_bfcl_score(&r, completion, strlen(completion), f, g, partial);
    if (rc != 0)
        fail_msg("vf_bfcl_score: %d %s", rc, r.message);
    json_decref(f);
    json_decref(g);
    return r;
}

static void expect_bfcl(const char *completion, const char *gt, double reward, const char *reason)
{
    vf_bfcl_result r = bfcl(completion, gt, 0);
    if (r.reward != reward || strcmp(r.reason, reason) != 0)
        fail_msg("%s vs %s: reward %g reason %s (%s), want %g %s", completion, gt, r.reward,
                 r.reason, r.message, reward, reason);
}

#define GT_AREA "[{\"math.area\": {\"base\": [10], \"height\": [5.0], \"unit\": [\"cm\", \"\"]}}]"

/* ---- parsing ------------------------------------------------------------------ */

static void test_toolcall_parse__hermes(void **state)
{
    (void)state;
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>",
                 "[{\"name\": \"f\", \"arguments\": {\"x\": 1}}]");
    expect_calls("Let me call two.\n<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n"
                 "<tool_call> {\"name\": \"b\", \"arguments\": {\"y\": [1, 2]}} </tool_call> done",
                 "[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"y\": [1, 2]}}]");
    /* Unclosed last tag, fences inside the tag, arguments as JSON text. */
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}",
                 "[{\"name\": \"f\", \"arguments\": {\"x\": 1}}]");
    expect_calls("<tool_call>\n```json\n{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 2}\"}\n```\n</tool_call>",
                 "[{\"name\": \"f\", \"arguments\": {\"x\": 2}}]");
    /* Reasoning about a call is not a call. */
    expect_calls("<think><tool_call>{\"name\": \"no\"}</tool_call></think>"
                 "<tool_call>{\"name\": \"yes\"}</tool_call>",
                 "[{\"name\": \"yes\", \"arguments\": {}}]");
}

static void test_toolcall_parse__llama_openai_bare(void **state)
{
    (void)state;
    expect_calls("{\"name\": \"f\", \"parameters\": {\"x\": \"a\"}}",
                 "[{\"name\": \"f\", \"arguments\": {\"x\": \"a\"}}]");
    expect_calls("<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"parameters\": {\"k\": 1}}",
                 "[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {\"k\": 1}}]");
    expect_calls("{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call_1\", "
                 "\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{\\\"a\\\": true}\"}}]}",
                 "[{\"name\": \"f\", \"arguments\": {\"a\": true}}]");
    expect_calls("[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {}}},"
                 " {\"name\": \"g\", \"arguments\": {\"b\": null}}]",
                 "[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {\"b\": null}}]");
    expect_calls("  \n\t{\"name\": \"f\", \"arguments\": {\"x\": 1}}  \n",
                 "[{\"name\": \"f\", \"arguments\": {\"x\": 1}}]");
    expect_calls("Sure:\n```json\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n```\nDone.",
                 "[{\"name\": \"f\", \"arguments\": {\"x\": 1}}]");
    expect_calls("```\n[{\"name\": \"f\"}, {\"name\": \"g\"}]\n```",
                 "[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {}}]");
}

static void test_toolcall_parse__no_calls(void **state)
{
    (void)state;
    expect_calls("The answer is 42.", "[]");
    expect_calls("", "[]");
    expect_calls("{\"answer\": 42}", "[]");            /* JSON, but not a call */
    expect_calls("```python\nprint(1)\n```", "[]");
    json_t *calls = NULL;
    assert_int_equal(vf_tool_calls_parse(&calls, NULL, 0, NULL, 0), 0);
    assert_int_equal(json_array_size(calls), 0);
    json_decref(calls);
}

static void test_toolcall_parse__broken(void **state)
{
    (void)state;
    expect_broken("<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1}</tool_call>", "tool call 1: invalid JSON");
    expect_broken("<tool_call>{\"name\": \"f\"}</tool_call><tool_call>{name: g}</tool_call>", "tool call 2: invalid JSON");
    expect_broken("<tool_call>{\"arguments\": {}}</tool_call>", "no \"name\"");
    expect_broken("<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>", "must be a JSON object");
    expect_broken("<tool_call>{\"name\": \"f\", \"arguments\": \"{bad\"}</tool_call>", "not valid JSON");
    expect_broken("<tool_call></tool_call>", "empty");
    expect_broken("<tool_call>{\"name\": \"f\"} trailing</tool_call>", "unexpected text");
    expect_broken("<tool_call>{\"name\": \"f\"}<tool_call>{\"name\": \"g\"}</tool_call>", "without </tool_call>");
    expect_broken("{\"name\": \"f\", \"arguments\": {\"x\": }", "invalid JSON");
    expect_broken("```json\n{\"name\": \"f\",,}\n```", "invalid JSON");
    /* Too many calls. */
    char big[64 * 40 + 100] = "";
    for (int i = 0; i < 65; i++)
        strcat(big, "<tool_call>{\"name\":\"f\"}</tool_call>");
    expect_broken(big, "more than 64");
}

static void test_toolcall_parse__hostile(void **state)
{
    (void)state;
    /* Deep nesting, NUL bytes and long garbage end quickly with a verdict. */
    size_t n = 200000;
    char *s = malloc(n + 1);
    memset(s, '[', n);
    s[n] = '\0';
    json_t *calls = NULL;
    char reason[VF_TOOL_REASON_MAX];
    assert_int_equal(vf_tool_calls_parse(&calls, s, n, reason, sizeof reason), -1);
    memcpy(s, "<tool_call>", 11);
    assert_int_equal(vf_tool_calls_parse(&calls, s, n, reason, sizeof reason), -1);
    memset(s, 'x', n);
    s[5] = '\0';
    assert_int_equal(vf_tool_calls_parse(&calls, s, n, reason, sizeof reason), 0);
    json_decref(calls);
    free(s);
}

/* ---- schema ------------------------------------------------------------------- */

static void test_toolcall_schema__valid(void **state)
{
    (void)state;
    const char *schema = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"},"
                         " \"b\": {\"type\": \"array\", \"items\": {\"type\": \"number\"}}},"
                         " \"required\": [\"a\"], \"additionalProperties\": false}";
    expect_schema("{\"a\": 1}", schema, NULL);
    expect_schema("{\"a\": 2.0, \"b\": [1, 2.5]}", schema, NULL); /* 2.0 is an integer */
    expect_schema("{\"x\": {\"y\": 1}}", "{\"type\": \"dict\", \"properties\": {\"x\": {\"type\": \"dict\"}}}", NULL);
    expect_schema("[1, \"a\"]", "{\"type\": \"tuple\"}", NULL);
    expect_schema("3", "{\"type\": [\"string\", \"integer\"]}", NULL);
    expect_schema("\"hello\"", "{}", NULL);
}

static void test_toolcall_schema__violations_with_paths(void **state)
{
    (void)state;
    const char *schema =
        "{\"type\": \"object\", \"required\": [\"order\", \"city\"], \"additionalProperties\": false,"
        " \"properties\": {"
        "  \"city\": {\"type\": \"string\", \"enum\": [\"Paris\", \"Rome\"]},"
        "  \"order\": {\"type\": \"object\", \"required\": [\"id\"], \"properties\": {"
        "     \"id\": {\"type\": \"integer\", \"minimum\": 1},"
        "     \"items\": {\"type\": \"array\", \"maxItems\": 3, \"items\": {\"type\": \"object\","
        "        \"properties\": {\"qty\": {\"type\": \"integer\"}, \"sku\": {\"type\": \"string\", \"maxLength\": 4}}}}}}}}";
    const char *const w1[] = {"$: missing required property 'city'", NULL};
    expect_schema("{\"order\": {\"id\": 3}}", schema, w1);
    const char *const w2[] = {"$.city: is not one of", "$.order.id: less than the minimum",
                              "$.order.items[1].qty: expected integer, got string",
                              "$.order.items[2].sku: longer than 4", "$.zip: unexpected property 'zip'",
                              NULL};
    expect_schema("{\"city\": \"Oslo\", \"zip\": 1, \"order\": {\"id\": 0, \"items\": [{\"qty\": 1},"
                  " {\"qty\": \"two\"}, {\"sku\": \"ABCDE\"}]}}", schema, w2);
    const char *const w3[] = {"$.order: missing required property 'id'", "$.order.items: at most 3", NULL};
    expect_schema("{\"city\": \"Rome\", \"order\": {\"items\": [{}, {}, {}, {}]}}", schema, w3);
    const char *const w4[] = {"$: expected object, got array", NULL};
    expect_schema("[1]", schema, w4);
    const char *const w5[] = {"$.n: expected float, got string", NULL};
    expect_schema("{\"n\": \"5\"}", "{\"properties\": {\"n\": {\"type\": \"float\"}}}", w5);
    const char *const w6[] = {"$.extra.k: expected integer, got boolean", NULL};
    expect_schema("{\"extra\": {\"k\": true}}", "{\"additionalProperties\": {\"additionalProperties\": {\"type\": \"integer\"}}}", w6);
}

static void test_toolcall_schema__limits(void **state)
{
    (void)state;
    /* At most `max` reported, all counted; deep nesting is a violation. */
    json_t *v = json_loads("[\"a\", \"b\", \"c\", \"d\"]", 0, NULL);
    json_t *s = json_loads("{\"items\": {\"type\": \"integer\"}}", 0, NULL);
    json_t *viol = json_array();
    assert_int_equal(vf_schema_validate(viol, v, s, 2), 4);
    assert_int_equal(json_array_size(viol), 2);
    json_decref(v);
    json_decref(s);
    json_decref(viol);
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < 100; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    s = json_loads("{\"items\": {\"items\": {\"items\": {}}}}", 0, NULL);
    viol = json_array();
    assert_int_equal(vf_schema_validate(viol, deep, s, 4), 0); /* the schema stops at depth 3 */
    json_decref(s);
    json_t *self = json_loads("{\"type\": \"array\"}", 0, NULL);
    json_object_set_new(self, "items", json_deep_copy(self));
    assert_int_equal(vf_schema_validate(viol, deep, self, 4), 0);
    json_decref(self);
    json_decref(deep);
    json_decref(viol);
}

/* ---- BFCL rules ---------------------------------------------------------------- */

static void test_toolcall_bfcl__exact_and_lenient(void **state)
{
    (void)state;
    const char *ok[] = {
        "<tool_call>{\"name\": \"math.area\", \"arguments\": {\"base\": 10, \"height\": 5.0, \"unit\": \"cm\"}}</tool_call>",
        "{\"name\": \"math.area\", \"parameters\": {\"base\": 10, \"height\": 5}}", /* int for float, unit omitted */
        "{\"name\": \"math_area\", \"arguments\": {\"base\": 10, \"height\": 5, \"unit\": \"C.M \"}}", /* dots, normalization */
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        expect_bfcl(ok[i], GT_AREA, 1.0, "ok");
}

static void test_toolcall_bfcl__failures_have_reasons(void **state)
{
    (void)state;
    expect_bfcl("The area is 25.", GT_AREA, 0, "no_tool_call");
    expect_bfcl("<tool_call>{\"name\": \"math.area\", </tool_call>", GT_AREA, 0, "parse_error");
    expect_bfcl("{\"name\": \"weather\", \"arguments\": {\"city\": \"x\"}}", GT_AREA, 0, "wrong_function");
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 10}}", GT_AREA, 0, "missing_param");
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 10, \"height\": 5, \"exact\": true}}",
                GT_AREA, 0, "unexpected_param");
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 10.0, \"height\": 5}}", GT_AREA, 0,
                "wrong_type"); /* a float is not an integer */
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 11, \"height\": 5}}", GT_AREA, 0,
                "wrong_value");
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 10, \"height\": 5, \"unit\": \"mm\"}}",
                GT_AREA, 0, "wrong_value");
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 10, \"height\": 5}}",
                "[{\"math.area\": {\"base\": [10], \"height\": [5.0], \"unit\": [\"cm\"]}}]", 0,
                "missing_optional");
    expect_bfcl("[{\"name\": \"math.area\", \"arguments\": {\"base\": 10, \"height\": 5}},"
                " {\"name\": \"math.area\", \"arguments\": {\"base\": 10, \"height\": 5}}]",
                GT_AREA, 0, "wrong_count");
}

static void test_toolcall_bfcl__lists_dicts_parallel(void **state)
{
    (void)state;
    const char *gt_list = "[{\"math.area\": {\"base\": [1], \"height\": [1.0], \"tags\": [[\"Red\", \"blue\"]],"
                          " \"opts\": [{\"round\": [true, \"\"]}]}}]";
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 1, \"height\": 1, \"tags\": [\"red\", \"Blue\"],"
                " \"opts\": {\"round\": true}}}", gt_list, 1.0, "ok");
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 1, \"height\": 1, \"tags\": [\"red\", \"blue\"],"
                " \"opts\": {}}}", gt_list, 1.0, "ok");  /* dict key omittable */
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 1, \"height\": 1, \"tags\": [\"blue\", \"red\"],"
                " \"opts\": {}}}", gt_list, 0, "wrong_value"); /* list order matters */
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 1, \"height\": 1, \"tags\": [\"red\", \"blue\"],"
                " \"opts\": {\"round\": false}}}", gt_list, 0, "wrong_value");
    expect_bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 1, \"height\": 1, \"tags\": [\"red\", 2]}}",
                gt_list, 0, "wrong_type");

    /* Parallel calls in any order; the same function twice. */
    const char *gt_par = "[{\"weather\": {\"city\": [\"Paris\"]}}, {\"weather\": {\"city\": [\"Rome\"]}},"
                         " {\"math.area\": {\"base\": [2], \"height\": [3.0]}}]";
    const char *calls = "<tool_call>{\"name\": \"math.area\", \"arguments\": {\"base\": 2, \"height\": 3}}</tool_call>"
                        "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"rome\"}}</tool_call>"
                        "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    expect_bfcl(calls, gt_par, 1.0, "ok");
    const char *one_wrong = "<tool_call>{\"name\": \"math.area\", \"arguments\": {\"base\": 2, \"height\": 3}}</tool_call>"
                            "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>"
                            "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    expect_bfcl(one_wrong, gt_par, 0, "wrong_value");
    vf_bfcl_result r = bfcl(one_wrong, gt_par, 1);
    assert_false(r.valid);
    assert_true(r.reward > 0.66 && r.reward < 0.67); /* 2 of 3 calls right, 0 of 1 parameter */
    assert_int_equal(r.calls_right, 2);
    assert_int_equal(r.params_total, 4);
    assert_int_equal(r.params_right, 3);
    const char *two_same = "<tool_call>{\"name\": \"math.area\", \"arguments\": {\"base\": 2, \"height\": 3}}</tool_call>"
                           "<tool_call>{\"name\": \"math.area\", \"arguments\": {\"base\": 2, \"height\": 3}}</tool_call>"
                           "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    expect_bfcl(two_same, gt_par, 0, "wrong_function");
    /* Partial credit on a single call: half the parameters right. */
    r = bfcl("{\"name\": \"math.area\", \"arguments\": {\"base\": 3, \"height\": 5}}", GT_AREA, 1);
    assert_true(r.reward == 0.5);
    assert_string_equal(r.reason, "wrong_value");
}

static void test_toolcall_bfcl__bad_ground_truth(void **state)
{
    (void)state;
    json_t *f = json_loads(FUNCS, 0, NULL);
    json_t *calls = json_array();
    vf_bfcl_result r;
    const char *bad[] = {"[]", "[1]", "[{\"a\": [1], \"b\": [2]}]", "[{\"nope\": {}}]",
                         "[{\"weather\": [1]}]", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *g = json_loads(bad[i], 0, NULL);
        assert_int_equal(vf_bfcl_match(&r, calls, f, g, 0), -1);
        assert_true(strlen(r.message) > 0);
        json_decref(g);
    }
    json_decref(calls);
    json_decref(f);
}

/* The reference answer: first values, "" left out, a required parameter's
 * second value when its first is "", undeclared parameters dropped, dict and
 * list-of-dict answers reduced recursively; and it scores 1.0 itself. */
static void test_toolcall_bfcl__gold_calls(void **state)
{
    (void)state;
    json_t *f = json_loads("[{\"name\": \"book\", \"parameters\": {\"type\": \"dict\", "
                           "\"properties\": {\"city\": {\"type\": \"string\"}, "
                           "\"nights\": {\"type\": \"integer\"}, \"opts\": {\"type\": \"dict\"}, "
                           "\"rooms\": {\"type\": \"array\", \"items\": {\"type\": \"dict\"}}, \"note\": {\"type\": \"string\"}}, "
                           "\"required\": [\"city\", \"nights\"]}}]", 0, NULL);
    json_t *gt = json_loads("[{\"book\": {\"city\": [\"\", \"Paris\"], \"nights\": [2, 3], "
                            "\"note\": [\"\", \"x\"], \"ghost\": [1, \"\"], "
                            "\"opts\": [{\"view\": [\"sea\", \"city\"], \"floor\": [\"\"]}], "
                            "\"rooms\": [[{\"beds\": [2, 1]}, {\"beds\": [1]}]]}}]", 0, NULL);
    assert_non_null(f);
    assert_non_null(gt);
    json_t *calls = vf_bfcl_gold_calls(gt, f);
    assert_non_null(calls);
    json_t *want = json_loads("[{\"name\": \"book\", \"arguments\": {\"city\": \"Paris\", \"nights\": 2, "
                              "\"opts\": {\"view\": \"sea\"}, \"rooms\": [{\"beds\": 2}, {\"beds\": 1}]}}]",
                              0, NULL);
    assert_true(json_equal(calls, want));
    vf_bfcl_result r;
    assert_int_equal(vf_bfcl_match(&r, calls, f, gt, 0), 0);
    if (!r.valid)
        fail_msg("the reference answer did not match: %s: %s", r.reason, r.message);
    json_decref(want);
    json_decref(calls);
    json_t *bad = json_loads("[{\"a\": [1], \"b\": [2]}]", 0, NULL);
    assert_null(vf_bfcl_gold_calls(bad, f));
    assert_null(vf_bfcl_gold_calls(f, f));   /* not one-key objects */
    json_decref(bad);
    json_decref(gt);
    json_decref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toolcall_parse__hermes),
        cmocka_unit_test(test_toolcall_parse__llama_openai_bare),
        cmocka_unit_test(test_toolcall_parse__no_calls),
        cmocka_unit_test(test_toolcall_parse__broken),
        cmocka_unit_test(test_toolcall_parse__hostile),
        cmocka_unit_test(test_toolcall_schema__valid),
        cmocka_unit_test(test_toolcall_schema__violations_with_paths),
        cmocka_unit_test(test_toolcall_schema__limits),
        cmocka_unit_test(test_toolcall_bfcl__exact_and_lenient),
        cmocka_unit_test(test_toolcall_bfcl__failures_have_reasons),
        cmocka_unit_test(test_toolcall_bfcl__lists_dicts_parallel),
        cmocka_unit_test(test_toolcall_bfcl__bad_ground_truth),
        cmocka_unit_test(test_toolcall_bfcl__gold_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
