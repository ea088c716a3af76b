/*
 * The GSM8K verifier against the real data set: every record of
 * $ENVSRV_DATA/gsm8k/{test,train}.jsonl.
 *
 * For each record's `answer` field:
 *   (a) vf_gsm8k_reference finds the number after "####", and it equals the
 *       number read independently here (commas dropped, strtoll);
 *   (b) the answer text given as a completion scores 1.0 against itself;
 *   (c) the same text with the final number changed (n -> n + 1, rewritten
 *       after "####") scores 0.0.
 * Skips, saying so, when the data is not there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "verifiers/verifiers.h"

typedef struct counts {
    size_t records;
    size_t reference_ok;    /* (a) */
    size_t self_score;      /* (b) */
    size_t changed_zero;    /* (c) */
} counts;

/* $ENVSRV_DATA/gsm8k/<file>, else ../shared/data beside the repo. */
static void data_path(char *out, size_t cap, const char *file)
{
    const char *data = getenv("ENVSRV_DATA");
    const char *src = getenv("ENVSRV_SRC");
    if (data && *data)
        snprintf(out, cap, "%s/gsm8k/%s", data, file);
    else if (src && *src)
        snprintf(out, cap, "%s/../shared/data/gsm8k/%s", src, file);
    else
        snprintf(out, cap, "../shared/data/gsm8k/%s", file);
}

/* The number after the last "####", read without the verifier: digits, an
 * optional '-', commas dropped. Returns 0 and sets *n, or -1. */
static int independent_final(long long *n, const char *answer, size_t len, size_t *hash_pos)
{
    const char *last = NULL;
    for (const char *p = answer; (p = memmem(p, len - (size_t)(p - answer), "####", 4)) != NULL;
         p += 4)
        last = p;
    if (!last)
        return -1;
    char digits[64];
    size_t k = 0;
    for (const char *p = last + 4; p < answer + len && k + 1 < sizeof digits; p++) {
        if (*p == ',' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            continue;
        if (*p == '-' || (*p >= '0' && *p <= '9'))
            digits[k++] = *p;
        else
            return -1;
    }
    digits[k] = '\0';
    char *end;
    errno = 0;
    *n = strtoll(digits, &end, 10);
    if (k == 0 || *end != '\0' || errno)
        return -1;
    *hash_pos = (size_t)(last - answer);
    return 0;
}

static void check_file(const char *file, counts *c)
{
    char path[4096];
    data_path(path, sizeof path, file);
    FILE *f = fopen(path, "r");
    if (!f) {
        print_message("skipping: %s not found (set ENVSRV_DATA to the shared data folder)\n",
                      path);
        skip();
    }
    char *line = NULL, *changed = NULL;
    size_t line_cap = 0, changed_cap = 0;
    ssize_t n;
    memset(c, 0, sizeof *c);
    while ((n = getline(&line, &line_cap, f)) > 0) {
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)n, 0, &jerr);  /* new reference */
        if (!rec)
            fail_msg("%s:%zu: bad JSON: %s", path, c->records + 1, jerr.text);
        c->records++;
        json_t *ans = json_object_get(rec, "answer");          /* borrowed */
        if (!json_is_string(ans))
            fail_msg("%s:%zu: no \"answer\" string", path, c->records);
        const char *a = json_string_value(ans);
        size_t alen = json_string_length(ans);

        long long want = 0;
        size_t hash_pos = 0;
        if (independent_final(&want, a, alen, &hash_pos) != 0)
            fail_msg("%s:%zu: test cannot read the final number", path, c->records);
        char want_s[32];
        snprintf(want_s, sizeof want_s, "%lld", want);

        /* (a) */
        vf_number_answer ref;
        if (vf_gsm8k_reference(&ref, a, alen) == 0 && strcmp(ref.value, want_s) == 0)
            c->reference_ok++;
        else
            print_message("%s:%zu: reference \"%s\", want %s\n", path, c->records, ref.value,
                          want_s);

        /* (b) */
        vf_gsm8k_result r;
        if (vf_gsm8k_score(&r, a, alen, a, alen) == 0 && r.reward == 1.0)
            c->self_score++;
        else
            print_message("%s:%zu: self score %g (got %s \"%s\")\n", path, c->records, r.reward,
                          vf_answer_source_name(r.got.source), r.got.value);

        /* (c) */
        size_t need = hash_pos + 32;
        if (need > changed_cap) {
            char *grown = realloc(changed, need);
            assert_non_null(grown);
            changed = grown;
            changed_cap = need;
        }
        memcpy(changed, a, hash_pos);
        int m = snprintf(changed + hash_pos, 32, "#### %lld", want + 1);
        if (vf_gsm8k_score(&r, changed, hash_pos + (size_t)m, a, alen) == 0 && r.reward == 0.0 &&
            r.got.source == VF_SOURCE_HASHES)
            c->changed_zero++;
        else
            print_message("%s:%zu: changed answer scored %g (got \"%s\")\n", path, c->records,
                          r.reward, r.got.value);
        json_decref(rec);
    }
    free(line);
    free(changed);
    fclose(f);
    print_message("%s: %zu records: reference found %zu, self-score 1.0 %zu, changed 0.0 %zu\n",
                  file, c->records, c->reference_ok, c->self_score, c->changed_zero);
}

static void test_gsm8k_data__test_split(void **state)
{
    (void)state;
    counts c;
    check_file("test.jsonl", &c);
    assert_int_equal(c.records, 1319);
    assert_int_equal(c.reference_ok, c.records);
    assert_int_equal(c.self_score, c.records);
    assert_int_equal(c.changed_zero, c.records);
}

static void test_gsm8k_data__train_split(void **state)
{
    (void)state;
    counts c;
    check_file("train.jsonl", &c);
    assert_int_equal(c.records, 7473);
    assert_int_equal(c.reference_ok, c.records);
    assert_int_equal(c.self_score, c.records);
    assert_int_equal(c.changed_zero, c.records);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gsm8k_data__test_split),
        cmocka_unit_test(test_gsm8k_data__train_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
