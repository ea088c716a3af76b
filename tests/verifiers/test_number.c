/*
 * Tests for verifiers/number.c and verifiers/extract.c: reading one number
 * exactly (vf_number_parse), finding the final answer of a completion
 * (vf_number_extract), GSM8K references and scores, and hostile input.
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

/* want == NULL: the text must not parse as one number. */
static void check_parse_len(const char *text, size_t len, const char *want)
{
    char v[VF_VALUE_MAX];
    memset(v, 'x', sizeof v);
    int rc = vf_number_parse(v, sizeof v, text, len);
    if (want) {
        if (rc != 0 || strcmp(v, want) != 0)
            fail_msg("parse \"%.*s\": got rc %d value \"%s\", want \"%s\"", (int)len, text, rc,
                     v, want);
    } else if (rc != -1 || v[0] != '\0') {
        fail_msg("parse \"%.*s\": got rc %d value \"%s\", want no number", (int)len, text, rc, v);
    }
}

static void check_parse(const char *text, const char *want)
{
    check_parse_len(text, strlen(text), want);
}

/* want == NULL: no answer (source NONE). */
static void check_extract_len(const char *text, size_t len, vf_answer_source src,
                              const char *want)
{
    vf_number_answer a;
    int rc = vf_number_extract(&a, text, len);
    assert_int_equal(rc, 0);
    if (!want) {
        if (a.source != VF_SOURCE_NONE || a.value[0] != '\0')
            fail_msg("extract \"%.*s\": got %s \"%s\", want none", len > 200 ? 200 : (int)len,
                     text, vf_answer_source_name(a.source), a.value);
        return;
    }
    if (a.source != src || strcmp(a.value, want) != 0)
        fail_msg("extract \"%.*s\": got %s \"%s\", want %s \"%s\"", len > 200 ? 200 : (int)len,
                 text, vf_answer_source_name(a.source), a.value, vf_answer_source_name(src),
                 want);
    assert_true(a.start <= len && a.len <= len - a.start);
    assert_true(a.len > 0);
}

static void check_extract(const char *text, vf_answer_source src, const char *want)
{
    check_extract_len(text, strlen(text), src, want);
}

/* A buffer of `n` copies of `unit` followed by `tail`; caller frees. */
static char *repeat(const char *unit, size_t n, const char *tail, size_t *len)
{
    size_t u = strlen(unit), t = strlen(tail);
    char *s = malloc(u * n + t + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    memcpy(s + u * n, tail, t + 1);
    *len = u * n + t;
    return s;
}

#define MB (1024 * 1024)

/* ---- vf_number_parse: formats ------------------------------------------------ */

static void test_number_parse__integers(void **state)
{
    (void)state;
    check_parse("42", "42");
    check_parse("  42\n", "42");
    check_parse("0", "0");
    check_parse("007", "7");
    check_parse("-0", "0");
    check_parse("+5", "5");
    check_parse("-5", "-5");
    check_parse("\xe2\x88\x92" "5", "-5");   /* U+2212 MINUS SIGN */
    check_parse("(-5)", "-5");
    check_parse("(5)", "5");                  /* not an accounting negative */
    check_parse("42.", "42");
    check_parse("", NULL);
    check_parse("   ", NULL);
    check_parse("-", NULL);
    check_parse("abc", NULL);
    check_parse("--5", NULL);
    check_parse("x5", NULL);
    check_parse("= 5", NULL);
}

static void test_number_parse__thousands(void **state)
{
    (void)state;
    check_parse("1,200", "1200");
    check_parse("1{,}200", "1200");
    check_parse("12,345,678", "12345678");
    check_parse("1,234,567.25", "4938269/4");
    check_parse("999,999", "999999");
    /* Not thousands groups: the comma ends the number, so not one number. */
    check_parse("1,2", NULL);
    check_parse("1,20", NULL);
    check_parse("1,2345", NULL);
    check_parse("1234,567", NULL);
    check_parse("0,5", NULL);
    check_parse("1,234,56", NULL);
    check_parse("1 200", NULL);
    check_parse("1,", "1");
}

static void test_number_parse__currency(void **state)
{
    (void)state;
    check_parse("$18", "18");
    check_parse("\\$18", "18");
    check_parse("$ 18", "18");
    check_parse("18 dollars", "18");
    check_parse("$18.00", "18");
    check_parse("$1,234.50", "2469/2");
    check_parse("\\$1{,}234.50", "2469/2");
    check_parse("-$5", "-5");
    check_parse("$-5", "-5");
    check_parse("$42$", "42");
    check_parse("$$18", NULL);
}

static void test_number_parse__percent_and_units(void **state)
{
    (void)state;
    check_parse("25%", "25");
    check_parse("25 %", "25");
    check_parse("12.5\\%", "25/2");
    check_parse("18 dollars", "18");
    check_parse("18km", "18");
    check_parse("5 cm^2", "5");
    check_parse("5 m^{3}", "5");
    check_parse("18 \\text{ apples}", "18");
    check_parse("18\\text{ cm}", "18");
    check_parse("18 - 20", NULL);
    check_parse("18 apples and 3 pears", NULL);
    check_parse("5 \\times 10^3", NULL);
    check_parse("1 1/2", NULL);
}

static void test_number_parse__decimals(void **state)
{
    (void)state;
    check_parse(".5", "1/2");
    check_parse("0.5", "1/2");
    check_parse("0.50", "1/2");
    check_parse("18.00", "18");
    check_parse("0.33", "33/100");
    check_parse("-0.25", "-1/4");
    check_parse("0.0", "0");
    check_parse("-0.000", "0");
    check_parse("3.14159", "314159/100000");
    check_parse("1.2.3", NULL);
    check_parse(".", NULL);
}

static void test_number_parse__scientific(void **state)
{
    (void)state;
    check_parse("1.5e3", "1500");
    check_parse("1e3", "1000");
    check_parse("2E-2", "1/50");
    check_parse("2e+2", "200");
    check_parse("-4.2E1", "-42");
    char big[302];
    big[0] = '1';
    memset(big + 1, '0', 300);
    big[301] = '\0';
    check_parse("1e300", big);
    check_parse("1e301", NULL);
    check_parse("1e-301", NULL);
    check_parse("1e999999999", NULL);
    check_parse("1e99999999999999999999999999", NULL);
    /* 200 significant digits at scale 10^-499: the reduced fraction would be
     * about 700 characters, more than VF_VALUE_MAX. */
    char wide[260];
    memcpy(wide, "1.", 2);
    memset(wide + 2, '3', 199);
    memcpy(wide + 201, "e-300", 6);
    check_parse(wide, NULL);
    wide[201] = '\0';                      /* the same digits, no exponent: fits */
    char v[VF_VALUE_MAX];
    assert_int_equal(vf_number_parse(v, sizeof v, wide, strlen(wide)), 0);
    assert_int_equal(strlen(v), 200 + 1 + 200);
    check_parse("3e", "3");         /* no exponent digits: 'e' is a word */
    check_parse("3eggs", "3");
}

static void test_number_parse__fractions(void **state)
{
    (void)state;
    check_parse("1/2", "1/2");
    check_parse("2/4", "1/2");
    check_parse("-3/4", "-3/4");
    check_parse("6/3", "2");
    check_parse("1.5/0.25", "6");
    check_parse("\\frac{1}{2}", "1/2");
    check_parse("\\dfrac{3}{4}", "3/4");
    check_parse("\\tfrac{6}{4}", "3/2");
    check_parse("\\frac{-3}{4}", "-3/4");
    check_parse("-\\frac{3}{4}", "-3/4");
    check_parse("-\\frac{-3}{4}", "3/4");
    check_parse("\\frac 1 2", "1/2");
    check_parse("\\frac12", "1/2");
    check_parse("\\frac{1,000}{4}", "250");
    check_parse("\\frac{0.5}{2}", "1/4");
    check_parse("5/0", NULL);
    check_parse("\\frac{1}{0}", NULL);
    check_parse("\\frac{a}{b}", NULL);
    check_parse("\\frac{1}{", NULL);
    check_parse("\\frac{1/2}{3}", NULL);
    check_parse("\\fraction", NULL);
    check_parse("1/2/3", NULL);
}

/* Values just inside and just outside the 64-bit fast path must read the same
 * as GMP reads them (expected strings computed with Python's fractions). */
static void test_number_parse__fast_path_boundary(void **state)
{
    (void)state;
    check_parse("9999999999999999999", "9999999999999999999");
    check_parse("10000000000000000000", "10000000000000000000");
    check_parse("18446744073709551616", "18446744073709551616");
    check_parse("1234567890123456789.5", "2469135780246913579/2");
    check_parse("0.0000000000000000001", "1/10000000000000000000");
    check_parse("1e-20", "1/100000000000000000000");
    check_parse("123.456e-17", "1929/1562500000000000000");
    check_parse("9999999999999999999/9999999999999999998",
                "9999999999999999999/9999999999999999998");
    check_parse("18446744073709551616/0.000000000000000004",
                "4611686018427387904000000000000000000");
    check_parse("1e19", "10000000000000000000");
    check_parse("-12345678901234567890123", "-12345678901234567890123");
}

static void test_number_parse__exactness(void **state)
{
    (void)state;
    char a[VF_VALUE_MAX], b[VF_VALUE_MAX];
    struct { const char *x, *y; int equal; } cases[] = {
        { "0.5", "1/2", 1 },         { "18.00", "18", 1 },       { "1e3", "1000", 1 },
        { "0.33", "1/3", 0 },        { "\\frac{2}{4}", ".5", 1 }, { "1,000", "1e3", 1 },
        { "0.333333", "1/3", 0 },    { "-0", "0", 1 },           { "$18", "18 dollars", 1 },
        { "25%", "25", 1 },          { "2.50", "5/2", 1 },       { "100", "1e2", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(vf_number_parse(a, sizeof a, cases[i].x, strlen(cases[i].x)), 0);
        assert_int_equal(vf_number_parse(b, sizeof b, cases[i].y, strlen(cases[i].y)), 0);
        if ((strcmp(a, b) == 0) != cases[i].equal)
            fail_msg("\"%s\" (%s) vs \"%s\" (%s): want %s", cases[i].x, a, cases[i].y, b,
                     cases[i].equal ? "equal" : "different");
    }
}

static void test_number_parse__small_buffer(void **state)
{
    (void)state;
    char v[4];
    assert_int_equal(vf_number_parse(v, sizeof v, "123", 3), 0);
    assert_string_equal(v, "123");
    memset(v, 'x', sizeof v);
    assert_int_equal(vf_number_parse(v, sizeof v, "1234", 4), -1);
    assert_string_equal(v, "");
    assert_int_equal(vf_number_parse(v, sizeof v, "1/20", 4), -1);
    assert_string_equal(v, "");
    assert_int_equal(vf_number_parse(v, sizeof v, "12345678901234567890123", 23), -1);
    assert_string_equal(v, "");             /* the GMP path checks the size too */
    assert_int_equal(vf_number_parse(v, 0, "1", 1), -1);
    assert_int_equal(vf_number_parse(NULL, 8, "1", 1), -1);
    assert_int_equal(vf_number_parse(v, sizeof v, NULL, 0), -1);
    assert_string_equal(v, "");
}

/* Canonical values are fixed points: parsing one gives itself back. */
static void test_number_parse__canonical_fixed_point(void **state)
{
    (void)state;
    const char *inputs[] = { "1,200", "0.50", "-3/4", "1.5e3", "2E-2", "\\frac{6}{4}",
                             "$1,234.50", "-0.125", "12345678901234567890123.5", "1e-25" };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        char v[VF_VALUE_MAX], w[VF_VALUE_MAX];
        assert_int_equal(vf_number_parse(v, sizeof v, inputs[i], strlen(inputs[i])), 0);
        assert_int_equal(vf_number_parse(w, sizeof w, v, strlen(v)), 0);
        assert_string_equal(v, w);
    }
}

/* ---- vf_number_extract --------------------------------------------------------- */

static void test_number_extract__last_number(void **state)
{
    (void)state;
    check_extract("She makes 9 * 2 = $18 every day.", VF_SOURCE_LAST_NUMBER, "18");
    check_extract("So she has 42.", VF_SOURCE_LAST_NUMBER, "42");
    check_extract("apples, 3, 4", VF_SOURCE_LAST_NUMBER, "4");
    check_extract("a total of 1,200 apples", VF_SOURCE_LAST_NUMBER, "1200");
    check_extract("values 1,2", VF_SOURCE_LAST_NUMBER, "2");
    check_extract("1,2345", VF_SOURCE_LAST_NUMBER, "2345");
    check_extract("16-3-4=9", VF_SOURCE_LAST_NUMBER, "9");
    check_extract("16-3", VF_SOURCE_LAST_NUMBER, "3");       /* '-' after a digit: minus */
    check_extract("x = -5", VF_SOURCE_LAST_NUMBER, "-5");
    check_extract("the result (-5) is", VF_SOURCE_LAST_NUMBER, "-5");
    check_extract("it is \xe2\x88\x92" "7 degrees", VF_SOURCE_LAST_NUMBER, "-7");
    check_extract("Half: 1/2 of them", VF_SOURCE_LAST_NUMBER, "1/2");
    check_extract("costs $1,234.50 total", VF_SOURCE_LAST_NUMBER, "2469/2");
    check_extract("It grew by 25%.", VF_SOURCE_LAST_NUMBER, "25");
    check_extract("about 1.5e3 m", VF_SOURCE_LAST_NUMBER, "1500");
    check_extract("is \\frac{3}{4} now", VF_SOURCE_LAST_NUMBER, "3/4");
    check_extract("$\\dfrac{1}{2}$", VF_SOURCE_LAST_NUMBER, "1/2");
    check_extract("<<48/2=24>>24 clips", VF_SOURCE_LAST_NUMBER, "24");
    check_extract("an area of 5 cm^2", VF_SOURCE_LAST_NUMBER, "5");
    check_extract("ran 18km", VF_SOURCE_LAST_NUMBER, "18");
    check_extract("7 and H2O", VF_SOURCE_LAST_NUMBER, "7");   /* glued: H2O has no number */
    check_extract("3 then x2", VF_SOURCE_LAST_NUMBER, "3");
    check_extract("track 4.mp3", VF_SOURCE_LAST_NUMBER, "4");
    check_extract("version 1.2.3", VF_SOURCE_LAST_NUMBER, "6/5");
    check_extract("9 then 5/0", VF_SOURCE_LAST_NUMBER, "9");  /* 5/0 is not a number */
}

static void test_number_extract__no_number(void **state)
{
    (void)state;
    check_extract("I don't know", 0, NULL);
    check_extract("", 0, NULL);
    check_extract("x2 H2O mp3", 0, NULL);
    check_extract("\\boxed{}", 0, NULL);
    check_extract("#### ", 0, NULL);
    check_extract("The answer is unknown.", 0, NULL);
    check_extract("1e999999999", 0, NULL);
    vf_number_answer a;
    assert_int_equal(vf_number_extract(&a, NULL, 0), 0);
    assert_int_equal(a.source, VF_SOURCE_NONE);
}

static void test_number_extract__boxed(void **state)
{
    (void)state;
    check_extract("so \\boxed{42}.", VF_SOURCE_BOXED, "42");
    check_extract("\\boxed{\\frac{1}{2}}", VF_SOURCE_BOXED, "1/2");
    check_extract("\\boxed{1} then \\boxed{2}", VF_SOURCE_BOXED, "2");
    check_extract("\\fbox{7}", VF_SOURCE_BOXED, "7");
    check_extract("\\boxed {7}", VF_SOURCE_BOXED, "7");
    check_extract("\\boxed{\\$18}", VF_SOURCE_BOXED, "18");
    check_extract("\\boxed{18 \\text{ dollars}}", VF_SOURCE_BOXED, "18");
    check_extract("\\boxed{1{,}200}", VF_SOURCE_BOXED, "1200");
    check_extract("\\boxed{x = 5}", VF_SOURCE_BOXED, "5");
    check_extract("\\boxed{\\text{18}}", VF_SOURCE_BOXED, "18");
    check_extract("\\boxed{\\boxed{5}}", VF_SOURCE_BOXED, "5");
    check_extract("\\boxed{-\\dfrac{3}{4}}", VF_SOURCE_BOXED, "-3/4");
    check_extract("\\boxed{\\{3\\}}", VF_SOURCE_BOXED, "3");    /* escaped braces */
    /* An unterminated box is not an answer; one closed before it is. */
    check_extract("\\boxed{4} and \\boxed{5", VF_SOURCE_BOXED, "4");
    check_extract("\\boxed{oops 3 then \\boxed{9}", VF_SOURCE_BOXED, "9");
    check_extract("\\boxed{5", VF_SOURCE_LAST_NUMBER, "5");
    /* A box with no number falls back to the next kind. */
    check_extract("#### 6\n\\boxed{none}", VF_SOURCE_HASHES, "6");
}

static void test_number_extract__hashes(void **state)
{
    (void)state;
    check_extract("work 3 + 4 = 7\n#### 7", VF_SOURCE_HASHES, "7");
    check_extract("#### 1,600", VF_SOURCE_HASHES, "1600");
    check_extract("#### -3", VF_SOURCE_HASHES, "-3");
    check_extract("####$18.00", VF_SOURCE_HASHES, "18");
    check_extract("#### 6\nthen 8", VF_SOURCE_HASHES, "6");
    check_extract("#### 1\n#### 2\nmore 9", VF_SOURCE_HASHES, "2");
    check_extract("######## 12", VF_SOURCE_HASHES, "12");
    /* A markdown heading is not an answer. */
    check_extract("#### Step 1\nso 5", VF_SOURCE_LAST_NUMBER, "5");
    check_extract("### 4", VF_SOURCE_LAST_NUMBER, "4");
}

static void test_number_extract__phrases(void **state)
{
    (void)state;
    check_extract("The answer is 42.", VF_SOURCE_PHRASE, "42");
    check_extract("Answer: 42", VF_SOURCE_PHRASE, "42");
    check_extract("Final answer: $42", VF_SOURCE_PHRASE, "42");
    check_extract("**Answer:** 42", VF_SOURCE_PHRASE, "42");
    check_extract("**Final Answer**\n\n42 apples, from 3 trees", VF_SOURCE_PHRASE, "42");
    check_extract("the answer would be 1/2 of it", VF_SOURCE_PHRASE, "1/2");
    check_extract("ANSWER = -8", VF_SOURCE_PHRASE, "-8");
    check_extract("So the answer is: $1,250.", VF_SOURCE_PHRASE, "1250");
    check_extract("The answer is that she has 42 apples. Check: 40 + 2", VF_SOURCE_PHRASE,
                  "42");
    check_extract("The answer is 5. Wait, no: it is 6.", VF_SOURCE_PHRASE, "5");
    check_extract("answer is 3, answer is 4, total 9", VF_SOURCE_PHRASE, "4");
    /* No number in the phrase's sentence: an earlier phrase, else the last number. */
    check_extract("The answer is 7.\nI checked the answer is right. 9", VF_SOURCE_PHRASE, "7");
    check_extract("I answered 3 questions, 4 left", VF_SOURCE_LAST_NUMBER, "4");
    check_extract("The answers are 3 and 4", VF_SOURCE_LAST_NUMBER, "4");
    check_extract("The answer is wrong. Total: 12", VF_SOURCE_LAST_NUMBER, "12");
}

static void test_number_extract__precedence(void **state)
{
    (void)state;
    const char *all = "The answer is 3.\n#### 2\nthe final answer is \\boxed{1}. Then 4";
    check_extract(all, VF_SOURCE_BOXED, "1");
    check_extract("The answer is 3.\n#### 2\nThen 4", VF_SOURCE_HASHES, "2");
    check_extract("The answer is 3.\nThen 4", VF_SOURCE_PHRASE, "3");
    check_extract("Then 4", VF_SOURCE_LAST_NUMBER, "4");
    check_extract("the final answer is \\boxed{42}", VF_SOURCE_BOXED, "42");
}

static void test_number_extract__think(void **state)
{
    (void)state;
    check_extract("<think>the answer is 5</think>The answer is 7.", VF_SOURCE_PHRASE, "7");
    check_extract("<think>\\boxed{5}</think> so 7", VF_SOURCE_LAST_NUMBER, "7");
    check_extract("<think>5</think>", 0, NULL);
    check_extract("<think>\\boxed{5} and still thinking", 0, NULL);
    check_extract("The answer is 7 <think> maybe 8", VF_SOURCE_PHRASE, "7");
    /* Template opened <think> in the prompt: only the closer is in the completion. */
    check_extract("hmm 5 is wrong\n</think>\n\n#### 9", VF_SOURCE_HASHES, "9");
    check_extract("<think>a</think> 1 <think>b</think> 2", VF_SOURCE_LAST_NUMBER, "2");
    check_extract("</think>", 0, NULL);
    check_extract("<thin>5", VF_SOURCE_LAST_NUMBER, "5");
}

static void test_number_extract__spans(void **state)
{
    (void)state;
    const char *t = "She pays -$1,200 now";
    vf_number_answer a;
    assert_int_equal(vf_number_extract(&a, t, strlen(t)), 0);
    assert_int_equal(a.source, VF_SOURCE_LAST_NUMBER);
    assert_string_equal(a.value, "-1200");
    assert_int_equal(a.start, 9);
    assert_int_equal(a.len, 7);
    t = "so \\boxed{ 18 } ok";
    assert_int_equal(vf_number_extract(&a, t, strlen(t)), 0);
    assert_int_equal(a.source, VF_SOURCE_BOXED);
    assert_int_equal(a.start, 11);
    assert_int_equal(a.len, 2);
}

static void test_number_extract__source_names(void **state)
{
    (void)state;
    assert_string_equal(vf_answer_source_name(VF_SOURCE_NONE), "none");
    assert_string_equal(vf_answer_source_name(VF_SOURCE_BOXED), "boxed");
    assert_string_equal(vf_answer_source_name(VF_SOURCE_HASHES), "hashes");
    assert_string_equal(vf_answer_source_name(VF_SOURCE_PHRASE), "phrase");
    assert_string_equal(vf_answer_source_name(VF_SOURCE_LAST_NUMBER), "last_number");
    assert_string_equal(vf_answer_source_name((vf_answer_source)99), "none");
}

/* ---- GSM8K --------------------------------------------------------------------- */

static void test_number_gsm8k__reference(void **state)
{
    (void)state;
    vf_number_answer a;
    const char *r = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
                    "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18";
    assert_int_equal(vf_gsm8k_reference(&a, r, strlen(r)), 0);
    assert_int_equal(a.source, VF_SOURCE_HASHES);
    assert_string_equal(a.value, "18");
    r = "so 80,000*1.5=<<80000*1.5=120000>>120,000\n#### 1,450,000";
    assert_int_equal(vf_gsm8k_reference(&a, r, strlen(r)), 0);
    assert_string_equal(a.value, "1450000");
    r = "no hashes 42";
    assert_int_equal(vf_gsm8k_reference(&a, r, strlen(r)), -1);
    assert_int_equal(a.source, VF_SOURCE_NONE);
    assert_string_equal(a.value, "");
    assert_int_equal(vf_gsm8k_reference(&a, "#### none", 9), -1);
    assert_int_equal(vf_gsm8k_reference(&a, NULL, 0), -1);
}

static void test_number_gsm8k__score(void **state)
{
    (void)state;
    vf_gsm8k_result r;
    const char *ref = "2+1=<<2+1=3>>3 bolts\n#### 3";
    const char *good[] = { "It takes 3 bolts.", "The answer is \\boxed{3}.", "#### 3",
                           "Answer: 3.00", "so \\boxed{\\frac{6}{2}}" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(vf_gsm8k_score(&r, good[i], strlen(good[i]), ref, strlen(ref)), 0);
        if (r.reward != 1.0)
            fail_msg("\"%s\" got %s \"%s\", want 3", good[i],
                     vf_answer_source_name(r.got.source), r.got.value);
        assert_string_equal(r.want.value, "3");
    }
    const char *bad[] = { "It takes 4 bolts.", "I don't know", "\\boxed{3.5}", "3 or 4",
                          "<think>3</think>", "#### 0.3" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(vf_gsm8k_score(&r, bad[i], strlen(bad[i]), ref, strlen(ref)), 0);
        if (r.reward != 0.0)
            fail_msg("\"%s\" scored %g, want 0", bad[i], r.reward);
    }
    /* A bare reference is one number. */
    assert_int_equal(vf_gsm8k_score(&r, "so 1,200", 8, " 1200 ", 6), 0);
    assert_true(r.reward == 1.0);
    assert_int_equal(vf_gsm8k_score(&r, "so 0.5", 6, "1/2", 3), 0);
    assert_true(r.reward == 1.0);
    /* A reference with no number is a data error. */
    assert_int_equal(vf_gsm8k_score(&r, "42", 2, "forty-two", 9), -1);
    assert_true(r.reward == 0.0);
    assert_int_equal(vf_gsm8k_score(&r, "42", 2, "#### x", 6), -1);
    assert_true(r.reward == 0.0);
    assert_int_equal(vf_gsm8k_score(&r, "42", 2, NULL, 0), -1);
    assert_int_equal(vf_gsm8k_score(&r, NULL, 0, "42", 2), 0);
    assert_true(r.reward == 0.0);
}

/* ---- hostile input: every case must return quickly and correctly ----------------- */

static void test_number_hostile__megabyte_of_digits(void **state)
{
    (void)state;
    size_t len;
    char *s = repeat("7", MB, "", &len);
    check_parse_len(s, len, NULL);
    check_extract_len(s, len, 0, NULL);
    free(s);
    /* Still found: a normal number before a monster one. */
    s = repeat("9", MB, "", &len);
    memcpy(s, "is 42 ", 6);
    check_extract_len(s, len, VF_SOURCE_LAST_NUMBER, "42");
    free(s);
    s = repeat(",000", MB / 4, "", &len);
    s[0] = '1';                             /* "1000,000,000...": 1000, then 0s */
    check_extract_len(s, len, VF_SOURCE_LAST_NUMBER, "0");
    s[0] = ' ';
    s[1] = '1';                             /* " 100,000,000,...": too many digits */
    check_extract_len(s, len, 0, NULL);
    free(s);
    char *z = repeat("0", MB, "1", &len);
    z[0] = '.';
    check_parse_len(z, len, NULL);          /* 1e-(1M): out of bounds */
    check_extract_len(z, len, 0, NULL);
    free(z);
    z = repeat("0", MB, "5", &len);
    check_parse_len(z, len, "5");           /* leading zeros change nothing */
    free(z);
}

static void test_number_hostile__nested_braces(void **state)
{
    (void)state;
    size_t n = 10000, a, b;
    char *open = repeat("{", n, "5", &a);
    char *close = repeat("}", n, "}", &b);
    char *s = malloc(7 + a + b + 1);
    assert_non_null(s);
    memcpy(s, "\\boxed{", 7);
    memcpy(s + 7, open, a);
    memcpy(s + 7 + a, close, b + 1);
    check_extract_len(s, 7 + a + b, VF_SOURCE_BOXED, "5");
    check_extract_len(s, 7 + a + b - 1, VF_SOURCE_LAST_NUMBER, "5");   /* unterminated box */
    free(s);
    free(open);
    free(close);

    /* 10,000 nested boxes around one number. */
    open = repeat("\\boxed{", n, "-6", &a);
    close = repeat("}", n, "", &b);
    s = malloc(a + b + 1);
    assert_non_null(s);
    memcpy(s, open, a);
    memcpy(s + a, close, b + 1);
    check_extract_len(s, a + b, VF_SOURCE_BOXED, "-6");
    free(s);
    free(open);
    free(close);

    s = repeat("{", n, "\\frac{{1}}{2}", &a);
    check_extract_len(s, a, VF_SOURCE_LAST_NUMBER, "2");
    free(s);
}

static void test_number_hostile__repeated_markers(void **state)
{
    (void)state;
    size_t len;
    char *s = repeat("\\boxed{", MB / 7, "", &len);
    check_extract_len(s, len, 0, NULL);
    free(s);
    s = repeat("\\boxed{", MB / 7, "\\boxed{9}", &len);
    check_extract_len(s, len, VF_SOURCE_BOXED, "9");
    free(s);
    s = repeat("\\boxed{", MB / 7, "", &len);
    memcpy(s, "so 3 \\boxed{", 12);      /* overwrite the first copies */
    check_extract_len(s, len, VF_SOURCE_LAST_NUMBER, "3");
    free(s);
    s = repeat("answer is ", MB / 10, "", &len);
    check_extract_len(s, len, 0, NULL);
    free(s);
    s = repeat("answer is ", MB / 10, "5", &len);
    check_extract_len(s, len, VF_SOURCE_PHRASE, "5");
    free(s);
    s = repeat("the answer: x", MB / 13, "", &len);
    memcpy(s, "the answer: 4", 13);
    check_extract_len(s, len, VF_SOURCE_PHRASE, "4");
    free(s);
    s = repeat("#", MB, " 8", &len);
    check_extract_len(s, len, VF_SOURCE_HASHES, "8");
    free(s);
    s = repeat("#### x ", MB / 7, "", &len);
    check_extract_len(s, len, 0, NULL);
    free(s);
    s = repeat("<think>", MB / 7, "", &len);
    check_extract_len(s, len, 0, NULL);
    free(s);
    s = repeat("</think>", MB / 8, "3", &len);
    check_extract_len(s, len, VF_SOURCE_LAST_NUMBER, "3");
    free(s);
    s = repeat("x1", MB / 2, "", &len);
    check_extract_len(s, len, 0, NULL);
    free(s);
    s = repeat("1/", MB / 2, "1", &len);
    check_extract_len(s, len, VF_SOURCE_LAST_NUMBER, "1");
    free(s);
    s = repeat("\\frac{", MB / 6, "", &len);
    check_extract_len(s, len, 0, NULL);
    free(s);
    s = repeat("-", MB, "5", &len);
    check_extract_len(s, len, VF_SOURCE_LAST_NUMBER, "-5");
    free(s);
    s = repeat("$", MB, "5", &len);
    check_extract_len(s, len, VF_SOURCE_LAST_NUMBER, "5");
    free(s);
}

static void test_number_hostile__bytes(void **state)
{
    (void)state;
    /* Invalid UTF-8 is just bytes; a cut-off U+2212 is not a sign. */
    check_extract("\xff\xfe" "5\x80", VF_SOURCE_LAST_NUMBER, "5");
    check_extract("\x88\x92" "5", VF_SOURCE_LAST_NUMBER, "5");
    check_extract("\xe2\x88" "5", VF_SOURCE_LAST_NUMBER, "5");
    check_parse("\xe2\x88" "5", NULL);
    /* Embedded NUL bytes, through explicit lengths. */
    check_extract_len("12\0 34", 6, VF_SOURCE_LAST_NUMBER, "34");
    check_extract_len("#### 7\0tail 9", 13, VF_SOURCE_HASHES, "7");
    check_parse_len("12\0", 3, "12");
    check_parse_len("4\0" "2", 3, NULL);
    check_extract_len("\\boxed{\0" "3}", 10, VF_SOURCE_BOXED, "3");

    /* Pseudo-random bytes (fixed seed): whatever is found must be a canonical
     * value inside the input. */
    size_t len = MB;
    unsigned char *s = malloc(len);
    assert_non_null(s);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* Later rounds lean on the bytes numbers are made of. */
            static const char alphabet[] = "0123456789.,-+$/{}\\e#<>boxedfrac answer:\n";
            s[i] = round < 2 ? (unsigned char)x
                             : (unsigned char)alphabet[x % (sizeof alphabet - 1)];
        }
        vf_number_answer a;
        assert_int_equal(vf_number_extract(&a, (const char *)s, len), 0);
        if (a.source != VF_SOURCE_NONE) {
            char v[VF_VALUE_MAX];
            assert_true(a.start <= len && a.len <= len - a.start);
            assert_int_equal(vf_number_parse(v, sizeof v, a.value, strlen(a.value)), 0);
            assert_string_equal(v, a.value);
        }
        char v[VF_VALUE_MAX];
        (void)vf_number_parse(v, sizeof v, (const char *)s, len);
    }
    free(s);
}

/* Every prefix of some tricky texts, each in a buffer of exactly its length
 * (no NUL after it): under ASan, any read past `len` fails the test. */
/* Found by `make fuzz`: ".5e222" was accepted (5 * 10^221) but its 222-digit
 * canonical value was rejected when parsed back, so a completion scored 0
 * against its own extracted answer. Trailing zeros now count as a power of
 * ten, not as significant digits. */
static void test_number_canonical__roundtrips_big_powers(void **state)
{
    (void)state;
    const char *inputs[] = { ".5e222", "5e221", "1e300", "-7.5e299", "123e250" };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        char v[VF_VALUE_MAX], again[VF_VALUE_MAX];
        assert_int_equal(vf_number_parse(v, sizeof v, inputs[i], strlen(inputs[i])), 0);
        assert_int_equal(vf_number_parse(again, sizeof again, v, strlen(v)), 0);
        assert_string_equal(again, v);
        vf_gsm8k_result r;
        const char *c = "so the total is 5e221 grains";
        assert_int_equal(vf_gsm8k_score(&r, c, strlen(c), "5e221", 5), 0);
        assert_true(r.reward == 1.0);
    }
    /* 201 significant digits are still too many. */
    char big[260];
    memset(big, '7', 201);
    big[201] = '\0';
    char v[VF_VALUE_MAX];
    assert_int_equal(vf_number_parse(v, sizeof v, big, strlen(big)), -1);
}

static void test_number_hostile__exact_length_buffers(void **state)
{
    (void)state;
    const char *texts[] = {
        "\\boxed{-\\dfrac{1{,}200}{3}} #### $1,234.5e3 answer: \xe2\x88\x92" "5%",
        "<think>x</think>**Final Answer:** \\$12.50e-1 \\frac12 1/2.5",
        "The answer is \\fbox {\\tfrac{-3}{4}}. ## ####-$7 cm^{2} 0,5 1.2.3 x2",
        "\\frac{1}{0} 5/0 1e999 1{,}2 1{, .5 answer would be",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        size_t n = strlen(texts[t]);
        for (size_t len = 0; len <= n; len++) {
            char *buf = malloc(len ? len : 1);
            assert_non_null(buf);
            memcpy(buf, texts[t], len);
            vf_number_answer a;
            vf_gsm8k_result r;
            char v[VF_VALUE_MAX];
            assert_int_equal(vf_number_extract(&a, buf, len), 0);
            (void)vf_number_parse(v, sizeof v, buf, len);
            (void)vf_gsm8k_reference(&a, buf, len);
            (void)vf_gsm8k_score(&r, buf, len, buf, len);
            free(buf);
        }
    }
    /* And the full texts give what they should. */
    check_extract(texts[0], VF_SOURCE_BOXED, "-400");
    check_extract(texts[1], VF_SOURCE_PHRASE, "5/4");     /* 12.50e-1 */
    check_extract(texts[2], VF_SOURCE_BOXED, "-3/4");
    check_extract(texts[3], VF_SOURCE_LAST_NUMBER, "1/2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_number_parse__integers),
        cmocka_unit_test(test_number_parse__thousands),
        cmocka_unit_test(test_number_parse__currency),
        cmocka_unit_test(test_number_parse__percent_and_units),
        cmocka_unit_test(test_number_parse__decimals),
        cmocka_unit_test(test_number_parse__scientific),
        cmocka_unit_test(test_number_parse__fractions),
        cmocka_unit_test(test_number_parse__fast_path_boundary),
        cmocka_unit_test(test_number_parse__exactness),
        cmocka_unit_test(test_number_parse__small_buffer),
        cmocka_unit_test(test_number_parse__canonical_fixed_point),
        cmocka_unit_test(test_number_extract__last_number),
        cmocka_unit_test(test_number_extract__no_number),
        cmocka_unit_test(test_number_extract__boxed),
        cmocka_unit_test(test_number_extract__hashes),
        cmocka_unit_test(test_number_extract__phrases),
        cmocka_unit_test(test_number_extract__precedence),
        cmocka_unit_test(test_number_extract__think),
        cmocka_unit_test(test_number_extract__spans),
        cmocka_unit_test(test_number_extract__source_names),
        cmocka_unit_test(test_number_gsm8k__reference),
        cmocka_unit_test(test_number_gsm8k__score),
        cmocka_unit_test(test_number_hostile__megabyte_of_digits),
        cmocka_unit_test(test_number_hostile__nested_braces),
        cmocka_unit_test(test_number_hostile__repeated_markers),
        cmocka_unit_test(test_number_hostile__bytes),
        cmocka_unit_test(test_number_hostile__exact_length_buffers),
        cmocka_unit_test(test_number_canonical__roundtrips_big_powers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
