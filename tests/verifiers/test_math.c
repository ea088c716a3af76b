/*
 * Unit tests for the MATH answer verifier (verifiers/math_*.c): extraction,
 * normalization, every value kind, and the negative cases that a lenient
 * checker gets wrong (tuple order, open vs closed ends, signs, 1/3 vs 0.33).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "verifiers/verifiers.h"

typedef struct pair_case {
    const char *a;
    const char *b;
    int equal;
} pair_case;

/* Checks every pair both ways round; reports each mismatch before failing. */
static void check_pairs(const pair_case *cases, size_t n)
{
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        for (int swap = 0; swap < 2; swap++) {
            const char *a = swap ? cases[k].b : cases[k].a;
            const char *b = swap ? cases[k].a : cases[k].b;
            int eq = -1;
            int rc = vf_math_equal(&eq, a, strlen(a), b, strlen(b));
            if (rc != 0 || eq != cases[k].equal) {
                print_error("  %s  vs  %s : rc=%d equal=%d, want %d\n", a, b, rc, eq,
                            cases[k].equal);
                bad++;
            }
        }
    }
    assert_int_equal(bad, 0);
}

#define CHECK(cases) check_pairs(cases, sizeof cases / sizeof cases[0])

static void test_math_equal__rationals(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "1/2", "0.5", 1 },
        { "\\frac{1}{2}", "\\dfrac{1}{2}", 1 },
        { "\\frac12", "\\tfrac{1}{2}", 1 },
        { "\\frac 59", "\\frac{10}{18}", 1 },
        { "\\frac9{19}", "9/19", 1 },
        { "\\frac{14}{3}", "4\\frac{2}{3}", 1 },
        { "18", "18.00", 1 },
        { "18", "+18", 1 },
        { ".35625", "\\frac{57}{160}", 1 },
        { "-\\frac{35}{9}", "\\frac{-35}{9}", 1 },
        { "-\\frac{35}{9}", "\\frac{35}{-9}", 1 },
        { "\\frac{3}{56}", "\\frac{4}{56}", 0 },
        { "\\frac{1}{3}", "0.33", 0 },
        { "\\frac{1}{3}", "0.333333333333", 0 },
        { "2/3", "0.67", 0 },
        { "3", "-3", 0 },
        { "12345678901234567890123", "12345678901234567890123.0", 1 },
        { "12345678901234567890123", "12345678901234567890124", 0 },
    };
    CHECK(c);
}

static void test_math_equal__mixed_and_repeating(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "2\\frac{1}{4}", "\\frac94", 1 },
        { "137 \\frac{1}{2}", "275/2", 1 },
        { "1\\frac{4}{5}", "1.8", 1 },
        { "-2\\frac{1}{4}", "-2.25", 1 },
        { "0.\\overline{3}", "\\frac13", 1 },
        { "0.1\\overline{6}", "\\frac16", 1 },
        { "1.\\overline{142857}", "\\frac87", 1 },
        { "0.\\overline{3}", "0.3", 0 },
        { "2\\frac{1}{4}", "\\frac12", 0 },
    };
    CHECK(c);
}

static void test_math_equal__decorations(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "90^\\circ", "90", 1 },
        { "90^{\\circ}", "90", 1 },
        { "90^{\\circ}", "91", 0 },
        { "\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", 1 },
        { "50\\%", "50", 1 },
        { "\\$18.90", "18.9", 1 },
        { "\\$32,\\!348", "32348", 1 },
        { "10,\\!080", "10080", 1 },
        { "11,\\! 111,\\! 111,\\! 100", "11111111100", 1 },
        { "1{,}000", "1000", 1 },
        { "1,000,000", "1000000", 1 },
        { "864 \\mbox{ inches}^2", "864", 1 },
        { "15\\mbox{ cm}^2", "15", 1 },
        { "5.4 \\text{ cents}", "5.4", 1 },
        { "18 dollars", "18", 1 },
        { "x = 5", "5", 1 },
        { "x=5", "6", 0 },
        { "5.", "5", 1 },
        { "\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", 1 },
        { "3\\!\\cdot\\!4", "12", 1 },
        { "3 \\times 4", "12", 1 },
        { "7 \\div 2", "3.5", 1 },
        { "\\boxed{5}", "5", 1 },
        { "\\displaystyle\\frac{1}{2}", "0.5", 1 },
    };
    CHECK(c);
}

static void test_math_equal__surds_and_constants(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "3\\sqrt{13}", "\\sqrt{117}", 1 },
        { "\\sqrt{13}", "3.6055", 0 },
        { "\\sqrt2", "1.4142135623730951", 0 },
        { "\\sqrt2", "1.41421356237", 0 },
        { "\\frac{\\sqrt{3}}{2}", "0.866", 0 },
        { "\\pi", "3.14159", 0 },
        /* a short decimal is an inexact expression's value when it is that value */
        { "\\sin(\\pi/6)", "0.5", 1 },
        { "0.5", "\\cos\\frac{\\pi}{3}", 1 },
        { "\\tan(\\pi/4)", "1.0", 1 },
        { "\\log_2 8", "3.0", 1 },
        { "\\sin(\\pi/6)", "0.50001", 0 },
        { "\\sin \\pi", "0.0", 1 },
        { "2.5\\pi", "7.85398163397", 0 },
        { "11\\sqrt2", "11\\sqrt{2}", 1 },
        { "11\\sqrt2", "\\sqrt{242}", 1 },
        { "11\\sqrt2", "\\sqrt{243}", 0 },
        { "\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", 1 },
        { "\\sqrt{4}", "2", 1 },
        { "\\sqrt[3]{27}", "3", 1 },
        { "\\sqrt[3]{-8}", "-2", 1 },
        { "8^{2/3}", "4", 1 },
        { "288 \\pi", "\\pi \\cdot 288", 1 },
        { "288\\pi", "289\\pi", 0 },
        { "\\frac{20000}{\\pi}", "20000/\\pi", 1 },
        { "18+2\\pi", "2\\pi+18", 1 },
        { "e^2", "e \\cdot e", 1 },
        { "\\ln(e^3)", "3", 1 },
        { "\\log_2 8", "3", 1 },
        { "\\log_{10} 1000", "3", 1 },
        { "\\log_2 8", "4", 0 },
        { "\\pi", "3.14159", 0 },
        { "\\infty", "\\infty", 1 },
        { "-\\infty", "\\infty", 0 },
    };
    CHECK(c);
}

static void test_math_equal__complex(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "6 - 5i", "-5i + 6", 1 },
        { "6 - 5i", "6 + 5i", 0 },
        { "1+2i", "\\frac{5}{1-2i}", 1 },
        { "i^2", "-1", 1 },
        { "e^{i\\pi}", "-1", 1 },
        { "-2 + 7i", "-2+7i", 1 },
        { "1.5 + 2i", "\\frac32 + 2i", 1 },
        { "0.33 + i", "\\frac13 + i", 0 },
    };
    CHECK(c);
}

static void test_math_equal__expressions(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "x^2-1", "(x-1)(x+1)", 1 },
        { "x^2-1", "(x-1)^2", 0 },
        { "(a+5)(b+2)", "(b+2)(a+5)", 1 },
        { "(a+5)(b+2)", "ab+2a+5b+10", 1 },
        { "(a+5)(b+2)", "ab+2a+5b+11", 0 },
        { "2k+2", "2(k+1)", 1 },
        { "p - q", "-q + p", 1 },
        { "p - q", "q - p", 0 },
        { "\\frac{11+9a}{20}", "\\frac{11}{20}+\\frac{9a}{20}", 1 },
        { "x^5 - x^4 + x^3 - x^2 + x - 1", "(x-1)(x^4+x^2+1)", 1 },
        { "\\cot x", "\\frac{\\cos x}{\\sin x}", 1 },
        { "\\sin^2 x + \\cos^2 x", "1", 1 },
        { "\\sin 2x", "2\\sin x \\cos x", 1 },
        { "\\sin 2x", "2\\sin x", 0 },
        { "\\binom{5}{2}", "10", 1 },
        { "\\dbinom{n}{2}", "\\frac{n(n-1)}{2}", 1 },
        { "5!", "120", 1 },
        { "6r^2-4r-24", "2(3r^2-2r-12)", 1 },
        { "3R^2", "3r^2", 0 },
        { "x_1 + x_2", "x_2 + x_1", 1 },
        { "\\alpha + \\beta", "\\beta + \\alpha", 1 },
        { "|-3|", "3", 1 },
        { "\\lfloor 3.7 \\rfloor", "3", 1 },
        { "2^{10}", "1024", 1 },
        { "x^{-1}", "\\frac{1}{x}", 1 },
        { "\\sqrt{x^2}", "x", 1 },
        { "0.5x", "\\frac{x}{2}", 1 },
        { "0.33x", "\\frac{x}{3}", 0 },
    };
    CHECK(c);
}

static void test_math_equal__equations(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "y = 2x + 3", "2x+3", 1 },
        { "y = 2x + 3", "y=3+2x", 1 },
        { "y = -2x", "y = 2x", 0 },
        { "y = 2x + 3", "2x - y + 3 = 0", 1 },
        { "y = 2x + 3", "2x - y - 3 = 0", 0 },
        { "5x - 7y + 11z + 4 = 0", "-10x+14y-22z-8=0", 1 },
        { "5x - 7y + 11z + 4 = 0", "5x - 7y + 11z = -4", 1 },
        { "5x - 7y + 11z + 4 = 0", "5x - 7y + 11z + 5 = 0", 0 },
        /* fuzzer: a huge constant must not make the check depend on argument order */
        { "5! != x", "2 = x p!!!!!!! 0 w x", 0 },
        { "x + y = 0", "0 = 0", 0 },
    };
    CHECK(c);
}

static void test_math_equal__tuples_and_vectors(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "(6,31,-1)", "(6, 31, -1)", 1 },
        { "(6,31,-1)", "(31,6,-1)", 0 },
        { "(15,-29)", "(-29,15)", 0 },
        { "(1,-16,-4,43)", "\\left(1,-16,-4,43\\right)", 1 },
        { "\\left( \\frac{3}{2}, -13 \\right)", "(1.5,-13)", 1 },
        { "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
          "\\begin{bmatrix} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{bmatrix}", 1 },
        { "\\begin{pmatrix} -18 \\\\ -49 \\\\ 96 \\end{pmatrix}", "(-18,-49,96)", 1 },
        { "\\begin{pmatrix} -18 \\\\ -49 \\\\ 96 \\end{pmatrix}", "(-49,-18,96)", 0 },
        { "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
          "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", 1 },
        { "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
          "\\begin{pmatrix} -1 & 0 \\\\ 0 & 1 \\end{pmatrix}", 0 },
        { "\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", 0 },
    };
    CHECK(c);
}

static void test_math_equal__intervals(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "(3,4]", "(3, 4]", 1 },
        { "(3,4]", "[3,4]", 0 },
        { "(3,4]", "(3,4)", 0 },
        { "(-\\infty, 0]", "(-\\infty,0]", 1 },
        { "(-\\infty, 0]", "(-\\infty,0)", 0 },
        { "x \\in [-2,7]", "[-2,7]", 1 },
        { "[-2,7]", "[-2,7)", 0 },
        { "\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, 8/3]", 1 },
        { "\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]", "[\\pi^2/8, 1.25\\pi^2]", 1 },
        { "(0,9) \\cup (9,36)", "(9,36) \\cup (0,9)", 1 },
        { "(0,9) \\cup (9,36)", "(0,9] \\cup (9,36)", 0 },
        { "(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)", 1 },
        { "(2,\\infty)", "[2,\\infty)", 0 },
        { "x > 4", "(4, \\infty)", 1 },
        { "x \\geq 4", "[4, \\infty)", 1 },
        { "x \\ge 4", "(4, \\infty)", 0 },
        { "4 < x", "(4,\\infty)", 1 },
        { "x \\le -1", "(-\\infty, -1]", 1 },
        { "x < -1", "(-\\infty, -1]", 0 },
        { "-1 \\le x < 3", "[-1, 3)", 1 },
        { "3 > x \\geq -1", "[-1, 3)", 1 },
        { "-1 < x < 3", "[-1, 3)", 0 },
    };
    CHECK(c);
}

static void test_math_equal__sets_and_lists(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "1,-2", "-2, 1", 1 },
        { "1,-2", "1, 2", 0 },
        { "3, 5, 7", "7,5,3", 1 },
        { "3, 5, 7", "3, 5", 0 },
        { "3, 5, 7", "3, 5, 7, 7", 0 },
        { "\\{1,2\\}", "\\{2,1\\}", 1 },
        { "\\{1\\pm\\sqrt{5},-2\\}", "-2, 1-\\sqrt5, 1+\\sqrt5", 1 },
        { "\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5", 0 },
        { "1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}", 1 },
        { "3 \\pm 2 \\sqrt{2}", "3+2\\sqrt2,3-2\\sqrt2", 1 },
        { "x = 1, x = 2", "2, 1", 1 },
        { "1 \\text{ and } 2", "1, 2", 1 },
        { "(1,2), (3,4)", "(3,4), (1,2)", 1 },
        { "(1,2), (3,4)", "(2,1), (3,4)", 0 },
    };
    CHECK(c);
}

static void test_math_equal__text_and_choices(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "\\text{Evelyn}", "Evelyn", 1 },
        { "\\text{Evelyn}", "\\textbf{evelyn}", 1 },
        { "\\text{Evelyn}", "Navin", 0 },
        { "\\text{east}", "East", 1 },
        { "\\text{even}", "odd", 0 },
        { "\\text{(C)}", "C", 1 },
        { "\\text{(C)}", "(C)", 1 },
        { "\\text{(C)}", "\\text{C}", 1 },
        { "\\text{(C)}", "(D)", 0 },
        { "\\text{(C)}", "3", 0 },
    };
    CHECK(c);
}

static void test_math_equal__bases(void **state)
{
    (void)state;
    static const pair_case c[] = {
        { "52_8", "52_{8}", 1 },
        { "52_8", "42", 1 },
        { "52_8", "53_8", 0 },
        { "4210_{5}", "555", 1 },
    };
    CHECK(c);
}

/* Bad input: "no answer", quickly, never a crash. */
static void test_math_equal__malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "   ", "\\frac{1}{", "\\sqrt", "((((", "1 +", "\\begin{pmatrix} 1 & 2",
        "}{", "\\left(", "$$", "\\unknowncommand{3}", "52_1", "2^", "[3)", "\\\\",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int eq = 7;
        int rc = vf_math_equal(&eq, bad[k], strlen(bad[k]), "5", 1);
        if (rc != -1 || eq != 0)
            print_error("  '%s': rc=%d equal=%d\n", bad[k], rc, eq);
        assert_int_equal(rc, -1);
        assert_int_equal(eq, 0);
    }
}

/* Inputs that would blow up a naive bignum evaluator or recursive parser. */
static void test_math_equal__bounded(void **state)
{
    (void)state;
    int eq = -1;
    const char *tower = "10^{10^{10}}";
    assert_int_equal(vf_math_equal(&eq, tower, strlen(tower), "10^{10^{10}}+1", 14), 0);
    assert_int_equal(eq, 0);
    const char *fact = "100000!";
    assert_int_equal(vf_math_equal(&eq, fact, strlen(fact), "5", 1), 0);
    assert_int_equal(eq, 0);
    const char *pw = "2^{100000}";
    assert_int_equal(vf_math_equal(&eq, pw, strlen(pw), "2^{100000}", strlen(pw)), 0);
    assert_int_equal(eq, 1); /* identical text */

    char deep[1200];
    size_t n = 0;
    for (int k = 0; k < 400; k++)
        deep[n++] = '(';
    deep[n++] = '1';
    for (int k = 0; k < 400; k++)
        deep[n++] = ')';
    assert_int_equal(vf_math_equal(&eq, deep, n, "1", 1), -1);
    assert_int_equal(eq, 0);

    /* twenty nested brackets are ordinary LaTeX, not an attack */
    n = 0;
    for (int k = 0; k < 20; k++)
        n += (size_t)sprintf(deep + n, "\\sqrt{");
    deep[n++] = '1';
    for (int k = 0; k < 20; k++)
        deep[n++] = '}';
    assert_int_equal(vf_math_equal(&eq, deep, n, "1", 1), 0);
    assert_int_equal(eq, 1);

    char longs[5000];
    memset(longs, '1', sizeof longs);
    assert_int_equal(vf_math_equal(&eq, longs, sizeof longs, "1", 1), -1);

    /* many terms: within the node budget or rejected, never slow */
    char sum[1000];
    n = 0;
    for (int k = 0; k < 300; k++) {
        sum[n++] = '1';
        sum[n++] = '+';
    }
    sum[n++] = '1';
    assert_int_equal(vf_math_equal(&eq, sum, n, "301", 3), 0);
    assert_int_equal(eq, 1);
}

static void test_math_extract__sources(void **state)
{
    (void)state;
    static const struct {
        const char *completion;
        const char *want; /* NULL: no answer */
    } c[] = {
        { "so the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}" },
        { "\\boxed{1} then \\boxed{\\{1,2\\}}", "\\{1,2\\}" },
        { "nested \\boxed{\\frac{a}{\\sqrt{b}}} done", "\\frac{a}{\\sqrt{b}}" },
        { "\\fbox{7}", "7" },
        { "\\boxed 5$", "5" },
        { "\\boxed{\\boxed{9}}", "9" },
        { "<think>maybe \\boxed{3}</think>The answer is $4$.", "4" },
        { "<think>\\boxed{3} and never closed", NULL },
        { "Final answer: 12", "12" },
        { "The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}" },
        { "We get $x = 2$ and so the value is $\\sqrt{2}$.", "\\sqrt{2}" },
        { "We get \\(x = 2\\)", "x = 2" },
        { "The value is $3$ and then more words", NULL },
        { "unbalanced \\boxed{3", NULL },
        { "", NULL },
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        char out[VF_MATH_TEXT_MAX];
        int rc = vf_math_extract(out, sizeof out, c[k].completion, strlen(c[k].completion));
        if (c[k].want == NULL) {
            if (rc != -1)
                print_error("  '%s' -> '%s', want none\n", c[k].completion, out);
            assert_int_equal(rc, -1);
            assert_string_equal(out, "");
        } else {
            if (rc != 0 || strcmp(out, c[k].want) != 0)
                print_error("  '%s' -> rc=%d '%s'\n", c[k].completion, rc, out);
            assert_int_equal(rc, 0);
            assert_string_equal(out, c[k].want);
        }
    }
}

static void test_math_extract__small_buffer(void **state)
{
    (void)state;
    char out[4];
    const char *s = "\\boxed{12345}";
    assert_int_equal(vf_math_extract(out, sizeof out, s, strlen(s)), -1);
    assert_string_equal(out, "");
    assert_int_equal(vf_math_extract(out, sizeof out, "\\boxed{12}", 10), 0);
    assert_string_equal(out, "12");
}

static void test_math_score__reasons(void **state)
{
    (void)state;
    vf_math_result r;
    const char *sol = "We find $x = 3$, so the answer is $\\boxed{\\dfrac{3}{2}}$.";
    assert_int_equal(vf_math_score(&r, sol, strlen(sol), "\\frac32", 7), 0);
    assert_true(r.reward == 1.0);
    assert_string_equal(r.reason, "equal");
    assert_string_equal(r.got, "\\dfrac{3}{2}");

    const char *wrong = "so \\boxed{1.5001}";
    assert_int_equal(vf_math_score(&r, wrong, strlen(wrong), "\\frac32", 7), 0);
    assert_true(r.reward == 0.0);
    assert_string_equal(r.reason, "not_equal");
    assert_true(strlen(r.got_norm) > 0 && strlen(r.want_norm) > 0);

    const char *none = "I do not know.";
    assert_int_equal(vf_math_score(&r, none, strlen(none), "\\frac32", 7), 0);
    assert_string_equal(r.reason, "no_answer");
    assert_true(r.reward == 0.0);

    const char *junk = "\\boxed{\\frac{1}{}}";
    assert_int_equal(vf_math_score(&r, junk, strlen(junk), "\\frac32", 7), 0);
    assert_string_equal(r.reason, "unparsable_answer");

    /* a full solution as the reference: its last \boxed is the answer */
    const char *ref = "Thus $\\boxed{(3,4]}$.";
    const char *c2 = "The answer is $(3, 4]$.";
    assert_int_equal(vf_math_score(&r, c2, strlen(c2), ref, strlen(ref)), 0);
    assert_string_equal(r.reason, "equal");

    assert_int_equal(vf_math_score(&r, c2, strlen(c2), "\\frac{", 6), -1);
    assert_string_equal(r.reason, "unparsable_reference");
    assert_true(r.reward == 0.0);
    assert_int_equal(vf_math_score(&r, c2, strlen(c2), "", 0), -1);
    assert_string_equal(r.reason, "unparsable_reference");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_math_equal__rationals),
        cmocka_unit_test(test_math_equal__mixed_and_repeating),
        cmocka_unit_test(test_math_equal__decorations),
        cmocka_unit_test(test_math_equal__surds_and_constants),
        cmocka_unit_test(test_math_equal__complex),
        cmocka_unit_test(test_math_equal__expressions),
        cmocka_unit_test(test_math_equal__equations),
        cmocka_unit_test(test_math_equal__tuples_and_vectors),
        cmocka_unit_test(test_math_equal__intervals),
        cmocka_unit_test(test_math_equal__sets_and_lists),
        cmocka_unit_test(test_math_equal__text_and_choices),
        cmocka_unit_test(test_math_equal__bases),
        cmocka_unit_test(test_math_equal__malformed),
        cmocka_unit_test(test_math_equal__bounded),
        cmocka_unit_test(test_math_extract__sources),
        cmocka_unit_test(test_math_extract__small_buffer),
        cmocka_unit_test(test_math_score__reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
