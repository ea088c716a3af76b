/*
 * verifiers/bfcl.c over the real BFCL v4 data ($ENVSRV_DATA/bfcl; skipped
 * when absent): for simple_python, multiple, parallel and parallel_multiple,
 * a completion built from the first acceptable value of every parameter, in
 * Hermes format, scores 1.0 for every record; systematic corruptions (wrong
 * function, wrong value, missing required parameter, extra call) score 0 with
 * the matching reason, and less than 1 with partial credit.
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

#include "verifiers/verifiers.h"

static const char *data_dir(void)
{
    const char *d = getenv("ENVSRV_DATA");
    return d && *d ? d : "../shared/data";
}

/* Reads a JSON Lines file into a new array; NULL when it cannot be read. */
static json_t *read_jsonl(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)n, 0, &jerr);
        if (rec == NULL)
            fail_msg("%s: %s", path, jerr.text);
        json_array_append_new(arr, rec);
    }
    free(line);
    fclose(f);
    return arr;
}

static const json_t *find_doc(const json_t *functions, const char *name)
{
    size_t i;
    json_t *f;
    json_array_foreach(functions, i, f)
        if (strcmp(json_string_value(json_object_get(f, "name")), name) == 0)
            return f;
    return NULL;
}


/* Hermes: one <tool_call> block per call. New string. */
static char *hermes(const json_t *calls)
{
    size_t cap = 1 << 16, used = 0;
    char *s = malloc(cap);
    s[0] = '\0';
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        char *j = json_dumps(c, JSON_COMPACT);
        size_t need = strlen(j) + 40;
        if (used + need >= cap)
            s = realloc(s, cap = (used + need) * 2);
        used += (size_t)sprintf(s + used, "<tool_call>\n%s\n</tool_call>\n", j);
        free(j);
    }
    return s;
}

/* Scores calls (as Hermes text); returns the result. */
static vf_bfcl_result score(const json_t *calls, const json_t *rec, const json_t *gt, int partial)
{
    char *text = hermes(calls);
    vf_bfcl_result r;
    int rc = vf_bfcl_score(&r, text, strlen(text), json_object_get(rec, "function"), gt, partial);
    if (rc != 0)
        fail_msg("%s: vf_bfcl_score failed: %s", json_string_value(json_object_get(rec, "id")),
                 r.message);
    free(text);
    return r;
}

/* A value that is not acceptable, made from an acceptable one; NULL if none. */
static json_t *corrupt_value(const json_t *v, const json_t *acceptable)
{
    json_t *x = NULL;
    if (json_is_string(v))
        x = json_sprintf("%szzqx", json_string_value(v));
    else if (json_is_integer(v))
        x = json_integer(json_integer_value(v) + 100003);
    else if (json_is_real(v))
        x = json_real(json_real_value(v) + 100003.5);
    else if (json_is_boolean(v))
        x = json_boolean(!json_is_true(v));
    if (x == NULL)
        return NULL;
    size_t i;
    json_t *a;
    json_array_foreach(acceptable, i, a) {
        if (json_equal(a, x)) {
            json_decref(x);
            return NULL;
        }
    }
    return x;
}

typedef struct counts {
    size_t records, exact, wrong_function, wrong_value, missing, extra, skipped_value,
        skipped_missing;
} counts;

static void expect_reason(const vf_bfcl_result *r, const char *reason, const char *id,
                          const char *what)
{
    if (r->reward != 0.0 || r->valid || strcmp(r->reason, reason) != 0)
        fail_msg("%s, %s: reward %g valid %d reason %s (%s), want 0 and %s", id, what, r->reward,
                 r->valid, r->reason, r->message, reason);
}

static void check_category(const char *category, size_t expect_n)
{
    char qpath[1024], apath[1024];
    snprintf(qpath, sizeof qpath, "%s/bfcl/BFCL_v4_%s.json", data_dir(), category);
    snprintf(apath, sizeof apath, "%s/bfcl/possible_answer/BFCL_v4_%s.json", data_dir(), category);
    if (access(qpath, R_OK) != 0 || access(apath, R_OK) != 0) {
        print_message("skipping: %s not found (set ENVSRV_DATA to the shared data folder)\n", qpath);
        skip();
    }
    json_t *qs = read_jsonl(qpath), *as = read_jsonl(apath);
    assert_non_null(qs);
    assert_non_null(as);
    assert_int_equal(json_array_size(qs), expect_n);
    assert_int_equal(json_array_size(as), expect_n);
    counts c = {0};
    for (size_t k = 0; k < expect_n; k++) {
        const json_t *rec = json_array_get(qs, k);
        const json_t *ans = json_array_get(as, k);
        const char *id = json_string_value(json_object_get(rec, "id"));
        assert_string_equal(id, json_string_value(json_object_get(ans, "id")));
        const json_t *gt = json_object_get(ans, "ground_truth");
        json_t *calls = vf_bfcl_gold_calls(gt, json_object_get(rec, "function"));
        assert_non_null(calls);
        c.records++;

        vf_bfcl_result r = score(calls, rec, gt, 0);
        if (r.reward != 1.0 || !r.valid)
            fail_msg("%s: gold calls scored %g (%s: %s)", id, r.reward, r.reason, r.message);
        c.exact++;

        /* Wrong function: the first call names a function that does not exist. */
        json_t *bad = json_deep_copy(calls);
        json_object_set_new(json_array_get(bad, 0), "name", json_string("no_such_function"));
        r = score(bad, rec, gt, 0);
        expect_reason(&r, "wrong_function", id, "wrong function");
        c.wrong_function++;
        json_decref(bad);

        /* Wrong value: the first scalar argument of the first call changed. */
        bad = json_deep_copy(calls);
        json_t *args = json_object_get(json_array_get(bad, 0), "arguments");
        const json_t *acc_all = json_object_iter_value(json_object_iter(json_array_get(gt, 0)));
        const char *p;
        json_t *v;
        int changed = 0;
        json_object_foreach(args, p, v) {
            json_t *x = corrupt_value(v, json_object_get(acc_all, p));
            if (x) {
                json_object_set_new(args, p, x);
                changed = 1;
                break;
            }
        }
        if (changed) {
            r = score(bad, rec, gt, 0);
            expect_reason(&r, "wrong_value", id, "wrong value");
            vf_bfcl_result rp = score(bad, rec, gt, 1);
            if (!(rp.reward < 1.0) || rp.valid)
                fail_msg("%s: wrong value with partial credit scored %g", id, rp.reward);
            c.wrong_value++;
        } else {
            c.skipped_value++;
        }
        json_decref(bad);

        /* Missing required parameter: the first required one of the first call. */
        bad = json_deep_copy(calls);
        args = json_object_get(json_array_get(bad, 0), "arguments");
        const char *fname = json_string_value(json_object_get(json_array_get(bad, 0), "name"));
        const json_t *doc = find_doc(json_object_get(rec, "function"), fname);
        assert_non_null(doc);
        const json_t *req = json_object_get(json_object_get(doc, "parameters"), "required");
        if (json_array_size(req) > 0 &&
            json_object_get(args, json_string_value(json_array_get(req, 0)))) {
            json_object_del(args, json_string_value(json_array_get(req, 0)));
            r = score(bad, rec, gt, 0);
            expect_reason(&r, "missing_param", id, "missing required parameter");
            c.missing++;
        } else {
            c.skipped_missing++;
        }
        json_decref(bad);

        /* Extra call: the last call twice. */
        bad = json_deep_copy(calls);
        json_array_append(bad, json_array_get(bad, json_array_size(bad) - 1));
        r = score(bad, rec, gt, 0);
        expect_reason(&r, "wrong_count", id, "extra call");
        vf_bfcl_result rp = score(bad, rec, gt, 1);
        double want = (double)json_array_size(calls) / (double)json_array_size(bad);
        if (rp.reward < want - 1e-9 || rp.reward > want + 1e-9)
            fail_msg("%s: extra call with partial credit scored %g, want %g", id, rp.reward, want);
        c.extra++;
        json_decref(bad);
        json_decref(calls);
    }
    print_message("%s: %zu records, %zu exact = 1.0; corruptions scored 0 with their reason: "
                  "wrong function %zu, wrong value %zu (%zu without a scalar to change), missing "
                  "required %zu (%zu without one), extra call %zu\n",
                  category, c.records, c.exact, c.wrong_function, c.wrong_value, c.skipped_value,
                  c.missing, c.skipped_missing, c.extra);
    assert_true(c.wrong_value >= c.records * 9 / 10);
    json_decref(qs);
    json_decref(as);
}

static void test_bfcl_data_simple_python__gold_and_corruptions(void **state)
{
    (void)state;
    check_category("simple_python", 400);
}

static void test_bfcl_data_multiple__gold_and_corruptions(void **state)
{
    (void)state;
    check_category("multiple", 200);
}

static void test_bfcl_data_parallel__gold_and_corruptions(void **state)
{
    (void)state;
    check_category("parallel", 200);
}

static void test_bfcl_data_parallel_multiple__gold_and_corruptions(void **state)
{
    (void)state;
    check_category("parallel_multiple", 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bfcl_data_simple_python__gold_and_corruptions),
        cmocka_unit_test(test_bfcl_data_multiple__gold_and_corruptions),
        cmocka_unit_test(test_bfcl_data_parallel__gold_and_corruptions),
        cmocka_unit_test(test_bfcl_data_parallel_multiple__gold_and_corruptions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
