/*
 * MATH-500 proof for the MATH verifier (verifiers/math_*.c):
 *   - every record's `solution`, given as a completion, scores equal to its
 *     `answer` (500/500);
 *   - equivalence under rewriting: a generator makes, for every answer, rewritings
 *     that keep its value (decimals, p/q, scaled fractions, reordered sums,
 *     products and lists, surds moved inside the root, \dfrac, \left/\right, x =,
 *     degree signs, choice letters, thousands separators, +n, n.0, ...) and
 *     perturbations that change it (off-by-one numerators and constants, swapped
 *     tuple entries, flipped interval ends, sign flips, truncated decimals, ...).
 *     Per-category counts are printed; at least 97% of each side must be judged
 *     right;
 *   - the sample data of the `math` environment (envs/data/math/test.jsonl):
 *     every solution's last \boxed equals its answer.
 * The data comes from ENVSRV_DATA (fallback ../shared/data); tests skip without it.
 */
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "verifiers/verifiers.h"

#define MAX_RECORDS 600
#define S 2048

typedef struct record {
    char *solution;
    char *answer;
} record;

typedef struct dataset {
    record r[MAX_RECORDS];
    int n;
} dataset;

static void free_dataset(dataset *d)
{
    for (int k = 0; k < d->n; k++) {
        free(d->r[k].solution);
        free(d->r[k].answer);
    }
    d->n = 0;
}

/* Loads `solution` and `answer` of every JSONL line. Returns 0, or -1 when the
 * file cannot be opened (the caller skips). */
static int load_jsonl(dataset *d, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    d->n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0 && d->n < MAX_RECORDS) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        assert_non_null(o);
        const char *sol = json_string_value(json_object_get(o, "solution"));
        const char *ans = json_string_value(json_object_get(o, "answer"));
        assert_non_null(sol);
        assert_non_null(ans);
        d->r[d->n].solution = strdup(sol);
        d->r[d->n].answer = strdup(ans);
        d->n++;
        json_decref(o);
    }
    free(line);
    fclose(f);
    return 0;
}

static const char *data_dir(void)
{
    const char *d = getenv("ENVSRV_DATA");
    return d && *d ? d : "../shared/data";
}

static int load_math500(dataset *d)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/math500/test.jsonl", data_dir());
    return load_jsonl(d, path);
}

static void test_math500_solutions__all_equal(void **state)
{
    (void)state;
    static dataset d;
    if (load_math500(&d) < 0) {
        print_message("MATH-500 not found under %s (set ENVSRV_DATA); skipping\n", data_dir());
        skip();
    }
    assert_int_equal(d.n, 500);
    int ok = 0;
    for (int k = 0; k < d.n; k++) {
        vf_math_result r;
        int rc = vf_math_score(&r, d.r[k].solution, strlen(d.r[k].solution), d.r[k].answer,
                               strlen(d.r[k].answer));
        if (rc == 0 && r.reward == 1.0)
            ok++;
        else
            print_error("  record %d: '%s' vs '%s': %s\n", k, r.got, d.r[k].answer, r.reason);
    }
    print_message("MATH-500 solution vs answer: %d/%d equal\n", ok, d.n);
    assert_int_equal(ok, d.n);
    free_dataset(&d);
}

/* ------------------------------------------------------------- generator */

enum { SIDE_REWRITE = 1, SIDE_PERTURB = 0 };

typedef struct category {
    const char *name;
    int side;       /* SIDE_REWRITE: must be equal; SIDE_PERTURB: must not be */
    int total, right;
} category;

static category k_cats[] = {
    { "dfrac", SIDE_REWRITE, 0, 0 },
    { "p_over_q", SIDE_REWRITE, 0, 0 },
    { "exact_decimal", SIDE_REWRITE, 0, 0 },
    { "scaled_fraction", SIDE_REWRITE, 0, 0 },
    { "mixed_number", SIDE_REWRITE, 0, 0 },
    { "decimal_to_fraction", SIDE_REWRITE, 0, 0 },
    { "trailing_zero", SIDE_REWRITE, 0, 0 },
    { "scientific_notation", SIDE_REWRITE, 0, 0 },
    { "interval_as_inequality", SIDE_REWRITE, 0, 0 },
    { "sqrt_rationalized", SIDE_REWRITE, 0, 0 },
    { "pi_factored", SIDE_REWRITE, 0, 0 },
    { "reorder_sum", SIDE_REWRITE, 0, 0 },
    { "reorder_product", SIDE_REWRITE, 0, 0 },
    { "surd_inside", SIDE_REWRITE, 0, 0 },
    { "left_right", SIDE_REWRITE, 0, 0 },
    { "x_prefix", SIDE_REWRITE, 0, 0 },
    { "degree_sign", SIDE_REWRITE, 0, 0 },
    { "choice_letter", SIDE_REWRITE, 0, 0 },
    { "reorder_list", SIDE_REWRITE, 0, 0 },
    { "thousands", SIDE_REWRITE, 0, 0 },
    { "plus_sign", SIDE_REWRITE, 0, 0 },
    { "n_point_0", SIDE_REWRITE, 0, 0 },
    { "spacing", SIDE_REWRITE, 0, 0 },
    { "text_case", SIDE_REWRITE, 0, 0 },
    { "boxed_completion", SIDE_REWRITE, 0, 0 },
    { "final_answer_phrase", SIDE_REWRITE, 0, 0 },
    { "numerator_plus_one", SIDE_PERTURB, 0, 0 },
    { "first_constant_plus_one", SIDE_PERTURB, 0, 0 },
    { "last_constant_plus_one", SIDE_PERTURB, 0, 0 },
    { "swap_tuple", SIDE_PERTURB, 0, 0 },
    { "flip_interval_left", SIDE_PERTURB, 0, 0 },
    { "flip_interval_right", SIDE_PERTURB, 0, 0 },
    { "sign_flip", SIDE_PERTURB, 0, 0 },
    { "truncated_decimal", SIDE_PERTURB, 0, 0 },
    { "choice_change", SIDE_PERTURB, 0, 0 },
    { "drop_element", SIDE_PERTURB, 0, 0 },
    { "text_change", SIDE_PERTURB, 0, 0 },
    { "inequality_strictness", SIDE_PERTURB, 0, 0 },
    { "pi_dropped", SIDE_PERTURB, 0, 0 },
};
#define NCATS ((int)(sizeof k_cats / sizeof k_cats[0]))

static category *cat(const char *name)
{
    for (int k = 0; k < NCATS; k++)
        if (strcmp(k_cats[k].name, name) == 0)
            return &k_cats[k];
    fail_msg("unknown category %s", name);
    return NULL;
}

static int g_shown;

/* Judges one generated case; `as_completion` scores `text` as a completion. */
static void judge(const char *name, const char *answer, const char *text, int as_completion)
{
    category *c = cat(name);
    int eq = 0;
    if (as_completion) {
        vf_math_result r;
        vf_math_score(&r, text, strlen(text), answer, strlen(answer));
        eq = r.reward == 1.0;
    } else {
        vf_math_equal(&eq, answer, strlen(answer), text, strlen(text));
    }
    c->total++;
    if (eq == (c->side == SIDE_REWRITE))
        c->right++;
    else if (g_shown++ < 40)
        print_message("  miss %-24s %s  vs  %s\n", name, answer, text);
}

/* -- string helpers */

static void replace_all(char *out, size_t cap, const char *s, const char *from, const char *to)
{
    size_t w = 0, fl = strlen(from), tl = strlen(to);
    while (*s && w + 1 < cap) {
        if (strncmp(s, from, fl) == 0 && w + tl + 1 < cap) {
            memcpy(out + w, to, tl);
            w += tl;
            s += fl;
        } else {
            out[w++] = *s++;
        }
    }
    out[w] = '\0';
}

static int is_int(const char *s)
{
    if (*s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

/* [-]\frac{p}{q}, \dfrac{p}{q}, \frac pq, \frac p{q}, \frac{p}q with integer p, q. */
static int simple_frac(const char *s, int *neg, long *p, long *q)
{
    *neg = 0;
    if (*s == '-') {
        *neg = 1;
        s++;
    }
    if (strncmp(s, "\\dfrac", 6) == 0)
        s += 6;
    else if (strncmp(s, "\\frac", 5) == 0)
        s += 5;
    else
        return 0;
    long v[2];
    for (int k = 0; k < 2; k++) {
        while (*s == ' ')
            s++;
        if (*s == '{') {
            char *e;
            v[k] = strtol(s + 1, &e, 10);
            if (e == s + 1 || *e != '}')
                return 0;
            s = e + 1;
        } else if (isdigit((unsigned char)*s)) {
            v[k] = *s - '0';
            s++;
        } else {
            return 0;
        }
    }
    if (*s || v[1] == 0)
        return 0;
    *p = v[0];
    *q = v[1];
    return 1;
}

/* Splits s at depth-0 commas; returns the number of parts (spans in st/ln). */
static int split_top(const char *s, char sep, int *st, int *ln, int cap)
{
    int depth = 0, n = 0, start = 0;
    int len = (int)strlen(s);
    for (int i = 0; i <= len; i++) {
        char c = s[i];
        if (c == '{' || c == '(' || c == '[')
            depth++;
        else if (c == '}' || c == ')' || c == ']')
            depth--;
        if ((c == sep && depth == 0) || c == '\0') {
            if (n < cap) {
                st[n] = start;
                ln[n] = i - start;
            }
            n++;
            start = i + 1;
        }
    }
    return n;
}

static int has_top_sum(const char *s)
{
    int depth = 0;
    for (int i = 0; s[i]; i++) {
        char c = s[i];
        if (c == '{' || c == '(' || c == '[')
            depth++;
        else if (c == '}' || c == ')' || c == ']')
            depth--;
        else if ((c == '+' || c == '-') && depth == 0 && i > 0)
            return 1;
    }
    return 0;
}

static int is_structured(const char *a)
{
    return strstr(a, "\\text") || strstr(a, "\\mbox") || strstr(a, "\\begin") ||
           strchr(a, '=') || strstr(a, "\\in") || strstr(a, "\\cup") || strstr(a, "\\{") ||
           strstr(a, "\\pm") || a[0] == '(' || a[0] == '[' || strncmp(a, "\\left", 5) == 0;
}

static int count_top_commas(const char *a)
{
    int st[64], ln[64];
    return split_top(a, ',', st, ln, 64) - 1;
}

/* "10,\!080", "1{,}000" or "58,500": one number with thousands separators. */
static int is_thousands(const char *a)
{
    if (strstr(a, ",\\!") != NULL || strstr(a, "{,}") != NULL)
        return 1;
    int st[64], ln[64];
    int n = split_top(a, ',', st, ln, 64);
    if (n < 2 || n > 64)
        return 0;
    for (int k = 1; k < n; k++)
        if (ln[k] != 3 || !isdigit((unsigned char)a[st[k]]) ||
            !isdigit((unsigned char)a[st[k] + 1]) || !isdigit((unsigned char)a[st[k] + 2]))
            return 0;
    return 1;
}

/* Writes the exact decimal of p/q when q has only factors 2 and 5. */
static int exact_decimal(char *out, size_t cap, int neg, long p, long q)
{
    long d = q;
    int twos = 0, fives = 0;
    while (d % 2 == 0) { d /= 2; twos++; }
    while (d % 5 == 0) { d /= 5; fives++; }
    if (d != 1 || q == 1)
        return 0;
    int digits = twos > fives ? twos : fives;
    if (digits > 15)
        return 0;
    long scale = 1;
    for (int k = 0; k < digits; k++)
        scale *= 10;
    long v = p * (scale / q);
    snprintf(out, cap, "%s%ld.%0*ld", neg ? "-" : "", v / scale, digits, v % scale);
    return 1;
}

/* Adds one to the first (or last) run of digits. */
static int bump_digits(char *out, size_t cap, const char *a, int last)
{
    int start = -1, end = -1;
    for (int i = 0; a[i]; i++) {
        if (isdigit((unsigned char)a[i]) && (i == 0 || !isdigit((unsigned char)a[i - 1]))) {
            int j = i;
            while (isdigit((unsigned char)a[j]))
                j++;
            /* skip the digits of a base subscript and the power of a unit ("cm}^2") */
            if (i > 0 && a[i - 1] == '_')
                continue;
            if (i > 1 && a[i - 1] == '^' && a[i - 2] == '}')
                continue;
            if (j - i > 15)
                continue;
            start = i;
            end = j;
            if (!last)
                break;
        }
    }
    if (start < 0)
        return 0;
    long long v = strtoll(a + start, NULL, 10);
    snprintf(out, cap, "%.*s%lld%s", start, a, v + 1, a + end);
    return 1;
}

static void gen_answer(const char *a)
{
    char t[S], u[S];
    int neg;
    long p, q;
    int structured = is_structured(a);
    int commas = count_top_commas(a);
    int textual = strstr(a, "\\text") != NULL && !strstr(a, "\\text{ ");

    /* ---- rewritings */
    if (strstr(a, "\\frac") && !strstr(a, "\\dfrac")) {
        replace_all(t, S, a, "\\frac", "\\dfrac");
        judge("dfrac", a, t, 0);
    }
    if (simple_frac(a, &neg, &p, &q)) {
        snprintf(t, S, "%s%ld/%ld", neg ? "-" : "", p, q);
        judge("p_over_q", a, t, 0);
        snprintf(t, S, "%s\\frac{%ld}{%ld}", neg ? "-" : "", 3 * p, 3 * q);
        judge("scaled_fraction", a, t, 0);
        if (p > q && p % q != 0) {
            snprintf(t, S, "%s%ld\\frac{%ld}{%ld}", neg ? "-" : "", p / q, p % q, q);
            judge("mixed_number", a, t, 0);
        }
        if (exact_decimal(t, S, neg, p, q))
            judge("exact_decimal", a, t, 0);
    }
    if (is_int(a)) {
        long long v = strtoll(a, NULL, 10);
        snprintf(t, S, "%s.0", a);
        judge("n_point_0", a, t, 0);
        if (v >= 0) {
            snprintf(t, S, "+%s", a);
            judge("plus_sign", a, t, 0);
        }
        if (v >= 1000 || v <= -1000) {
            char digits[32];
            snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
            int n = (int)strlen(digits), w = 0;
            if (v < 0)
                t[w++] = '-';
            for (int k = 0; k < n; k++) {
                if (k > 0 && (n - k) % 3 == 0)
                    t[w++] = ',';
                t[w++] = digits[k];
            }
            t[w] = '\0';
            judge("thousands", a, t, 0);
            replace_all(u, S, t, ",", "{,}");
            judge("thousands", a, u, 0);
        }
        snprintf(t, S, "%s^\\circ", a);
        judge("degree_sign", a, t, 0);
        snprintf(t, S, "%s^{\\circ}", a);
        judge("degree_sign", a, t, 0);
    }
    if (strstr(a, "^\\circ")) {
        replace_all(t, S, a, "^\\circ", "");
        judge("degree_sign", a, t, 0);
        replace_all(t, S, a, "^\\circ", "^{\\circ}");
        judge("degree_sign", a, t, 0);
    }
    if (!structured && commas == 0 && has_top_sum(a)) {
        /* reverse the terms of a sum, carrying their signs */
        int depth = 0, n = 0, starts[64], signs[64], ends[64];
        int len = (int)strlen(a), i = 0;
        int sign = 1;
        if (a[0] == '-') {
            sign = -1;
            i = 1;
        }
        starts[0] = i;
        signs[0] = sign;
        for (; i <= len; i++) {
            char c = a[i];
            if (c == '{' || c == '(' || c == '[')
                depth++;
            else if (c == '}' || c == ')' || c == ']')
                depth--;
            if (c == '\0' || (depth == 0 && (c == '+' || c == '-') && i > starts[n] &&
                              a[i - 1] != '^' && a[i - 1] != '_')) {
                ends[n] = i;
                n++;
                if (c == '\0' || n >= 63)
                    break;
                starts[n] = i + 1;
                signs[n] = c == '+' ? 1 : -1;
            }
        }
        int w = 0;
        for (int k = n - 1; k >= 0 && w < S - 100; k--) {
            int s0 = starts[k], e0 = ends[k];
            while (a[s0] == ' ')
                s0++;
            while (e0 > s0 && a[e0 - 1] == ' ')
                e0--;
            w += snprintf(t + w, (size_t)(S - w), "%s%.*s", k == n - 1
                          ? (signs[k] < 0 ? "-" : "") : (signs[k] < 0 ? " - " : " + "),
                          e0 - s0, a + s0);
        }
        judge("reorder_sum", a, t, 0);
    }
    if (!structured && commas == 0 && !has_top_sum(a)) {
        /* N<rest> -> <rest> \cdot N; (A)(B) -> (B)(A) */
        int i = a[0] == '-' ? 1 : 0, j = i;
        while (isdigit((unsigned char)a[j]))
            j++;
        int k = j;
        while (a[k] == ' ')
            k++;
        if (j > i && a[k] && (a[k] == '\\' || isalpha((unsigned char)a[k])) &&
            strncmp(a + k, "\\frac", 5) != 0 && strncmp(a + k, "\\circ", 5) != 0 &&
            strncmp(a + k, "\\mbox", 5) != 0) {
            snprintf(t, S, "%s%s \\cdot %.*s", i ? "-" : "", a + k, j - i, a + i);
            judge("reorder_product", a, t, 0);
        }
    }
    if (a[0] == '(' && !strstr(a, "\\cup")) {
        int depth = 0, cut = -1;
        for (int i = 0; a[i]; i++) {
            if (a[i] == '(')
                depth++;
            else if (a[i] == ')' && --depth == 0) {
                cut = i + 1;
                break;
            }
        }
        if (cut > 0 && a[cut] == '(' && a[strlen(a) - 1] == ')') {
            snprintf(t, S, "%s%.*s", a + cut, cut, a);
            judge("reorder_product", a, t, 0);
        }
    }
    {
        /* k\sqrt{m} -> \sqrt{k^2 m} */
        long k = 0, m = 0;
        char tail;
        if ((sscanf(a, "%ld\\sqrt{%ld}%c", &k, &m, &tail) == 2 ||
             sscanf(a, "%ld \\sqrt{%ld}%c", &k, &m, &tail) == 2 ||
             sscanf(a, "%ld\\sqrt%1ld%c", &k, &m, &tail) == 2) && k > 0 && m > 0) {
            snprintf(t, S, "\\sqrt{%ld}", k * k * m);
            judge("surd_inside", a, t, 0);
        }
    }
    if ((a[0] == '(' || a[0] == '[') && !strstr(a, "\\cup")) {
        size_t n = strlen(a);
        snprintf(t, S, "\\left%c%.*s\\right%c", a[0], (int)(n - 2), a + 1, a[n - 1]);
        judge("left_right", a, t, 0);
    } else if (!structured && commas == 0 && !textual) {
        snprintf(t, S, "\\left( %s \\right)", a);
        judge("left_right", a, t, 0);
    }
    if (!strchr(a, '=') && !strstr(a, "\\in") && !textual && !strstr(a, "\\text{(") &&
        (commas == 0 || is_thousands(a))) {
        snprintf(t, S, "x = %s", a);
        judge("x_prefix", a, t, 0);
    }
    {
        char letter = 0;
        if (sscanf(a, "\\text{(%c)}", &letter) == 1 && isupper((unsigned char)letter)) {
            snprintf(t, S, "(%c)", letter);
            judge("choice_letter", a, t, 0);
            snprintf(t, S, "%c", letter);
            judge("choice_letter", a, t, 0);
            snprintf(t, S, "\\text{%c}", letter);
            judge("choice_letter", a, t, 0);
            snprintf(t, S, "\\text{(%c)}", letter + 1 <= 'Z' ? letter + 1 : 'A');
            judge("choice_change", a, t, 0);
            snprintf(t, S, "%c", letter + 1 <= 'Z' ? letter + 1 : 'A');
            judge("choice_change", a, t, 0);
        }
    }
    if (commas >= 1 && !is_thousands(a) && a[0] != '(' && a[0] != '[' &&
        strncmp(a, "\\left", 5) != 0) {
        int st[64], ln[64];
        int n = split_top(a, ',', st, ln, 64);
        int w = 0;
        for (int k = n - 1; k >= 0; k--)
            w += snprintf(t + w, (size_t)(S - w), "%.*s%s", ln[k], a + st[k], k ? ", " : "");
        judge("reorder_list", a, t, 0);
        w = 0;
        for (int k = 0; k < n - 1; k++)
            w += snprintf(t + w, (size_t)(S - w), "%.*s%s", ln[k], a + st[k], k < n - 2 ? "," : "");
        judge("drop_element", a, t, 0);
    }
    if (strncmp(a, "\\{", 2) == 0) {
        /* \{a,b,c\} -> \{c,b,a\} */
        size_t n = strlen(a);
        char inner[S];
        snprintf(inner, S, "%.*s", (int)(n - 4), a + 2);
        int st[64], ln[64];
        int m = split_top(inner, ',', st, ln, 64);
        int w = snprintf(t, S, "\\{");
        for (int k = m - 1; k >= 0; k--)
            w += snprintf(t + w, (size_t)(S - w), "%.*s%s", ln[k], inner + st[k], k ? "," : "");
        snprintf(t + w, (size_t)(S - w), "\\}");
        judge("reorder_list", a, t, 0);
    }
    if (strchr(a, ',') && !is_thousands(a)) {
        replace_all(t, S, a, ",", ",\\, ");
        judge("spacing", a, t, 0);
    }
    if (strchr(a, ' ') && !strstr(a, "\\frac ") && !strstr(a, "\\text") && !strstr(a, "\\mbox")) {
        /* drop the spaces that do not end a command name ("\cot x" keeps its) */
        int w = 0;
        for (int i = 0; a[i] && w < S - 1; i++)
            if (a[i] != ' ' || (i > 0 && isalpha((unsigned char)a[i - 1]) &&
                                isalpha((unsigned char)a[i + 1])))
                t[w++] = a[i];
        t[w] = '\0';
        judge("spacing", a, t, 0);
    }
    if (strchr(a, '.') && !structured && commas == 0) {
        snprintf(t, S, "%s0", a);
        judge("trailing_zero", a, t, 0);
        /* a terminating decimal as a reduced fraction */
        const char *dot = strchr(a, '.');
        int ok = 1, frac = 0;
        long long num = 0, den = 1;
        for (const char *c = a[0] == '-' ? a + 1 : a; *c; c++) {
            if (c == dot)
                continue;
            if (!isdigit((unsigned char)*c) || frac > 12) {
                ok = 0;
                break;
            }
            num = num * 10 + (*c - '0');
            if (c > dot) {
                frac++;
                den *= 10;
            }
        }
        if (ok && frac > 0) {
            long long g = num, h = den;
            while (h) {
                long long r = g % h;
                g = h;
                h = r;
            }
            snprintf(t, S, "%s\\frac{%lld}{%lld}", a[0] == '-' ? "-" : "", num / g, den / g);
            judge("decimal_to_fraction", a, t, 0);
            snprintf(t, S, "%s\\frac{%lld}{%lld}", a[0] == '-' ? "-" : "", num / g + 1, den / g);
            judge("numerator_plus_one", a, t, 0);
            /* d.ddd \times 10^{k}: move the point behind the first nonzero digit */
            char mant[64];
            int m = 0, exp10 = 0, seen = 0;
            long long v = num;
            char digs[32];
            snprintf(digs, sizeof digs, "%lld", v);
            for (int i = 0; digs[i] && m < 60; i++) {
                mant[m++] = digs[i];
                if (!seen) {
                    seen = 1;
                    if (digs[i + 1])
                        mant[m++] = '.';
                }
            }
            mant[m] = '\0';
            exp10 = (int)strlen(digs) - 1 - frac;
            snprintf(t, S, "%s%s \\times 10^{%d}", a[0] == '-' ? "-" : "", mant, exp10);
            judge("scientific_notation", a, t, 0);
        }
    }
    if (textual && !strstr(a, "\\text{(")) {
        char w[256];
        if (sscanf(a, "\\text{%255[A-Za-z]}", w) == 1) {
            for (char *c = w; *c; c++)
                *c = (char)toupper((unsigned char)*c);
            judge("text_case", a, w, 0);
            for (char *c = w; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            snprintf(t, S, "\\textbf{%s}", w);
            judge("text_case", a, t, 0);
            w[0] = w[0] == 'z' ? 'a' : (char)(w[0] + 1);
            snprintf(t, S, "\\text{%s}", w);
            judge("text_change", a, t, 0);
        }
    }
    snprintf(t, S, "Adding these up, we get the result.\n\nThe answer is $\\boxed{%s}$.", a);
    judge("boxed_completion", a, t, 1);
    snprintf(t, S, "<think>It might be \\boxed{0}.</think>So it is \\boxed{%s}", a);
    judge("boxed_completion", a, t, 1);
    if (!strchr(a, '$')) {
        snprintf(t, S, "Step 1: work.\nFinal Answer: The final answer is $%s$. I hope it is correct.", a);
        judge("final_answer_phrase", a, t, 1);
    }

    {
        /* (a, \infty) -> x > a, [a, \infty) -> x \ge a, (-\infty, b] -> x \le b */
        char lo[256], hi[256], l = 0, r = 0;
        int n1 = 0;
        if (sscanf(a, "%c%255[^,], \\infty%c%n", &l, lo, &r, &n1) == 3 ||
            sscanf(a, "%c%255[^,],\\infty%c%n", &l, lo, &r, &n1) == 3) {
            if ((l == '(' || l == '[') && r == ')' && a[n1] == '\0') {
                snprintf(t, S, "x %s %s", l == '(' ? ">" : "\\ge", lo);
                judge("interval_as_inequality", a, t, 0);
                snprintf(t, S, "x %s %s", l == '(' ? "\\ge" : ">", lo);
                judge("inequality_strictness", a, t, 0);
            }
        } else if (sscanf(a, "(-\\infty, %255[^])]%c%n", hi, &r, &n1) == 2 && a[n1] == '\0') {
            snprintf(t, S, "x %s %s", r == ']' ? "\\le" : "<", hi);
            judge("interval_as_inequality", a, t, 0);
            snprintf(t, S, "x %s %s", r == ']' ? "<" : "\\le", hi);
            judge("inequality_strictness", a, t, 0);
        }
    }
    {
        /* \frac{\sqrt{n}}{m} -> \frac{1}{m/n \sqrt{n}} style: \frac{n}{m\sqrt{n}} */
        long n = 0, m = 0;
        char tail;
        if (sscanf(a, "\\frac{\\sqrt{%ld}}{%ld}%c", &n, &m, &tail) == 2 && n > 0 && m > 0) {
            snprintf(t, S, "\\frac{%ld}{%ld\\sqrt{%ld}}", n, m, n);
            judge("sqrt_rationalized", a, t, 0);
        }
    }
    if (strstr(a, "\\pi") && !structured && commas == 0 && !has_top_sum(a) &&
        !strstr(a, "{\\pi}") && !strstr(a, "/\\pi")) {
        /* k\pi -> \pi (k); \frac{k\pi}{m} -> \pi (\frac{k(1)}{m}); dropping \pi changes it */
        replace_all(u, S, a, "\\pi", "(1)");
        snprintf(t, S, "\\pi \\cdot \\left(%.2000s\\right)", u);
        judge("pi_factored", a, t, 0);
        judge("pi_dropped", a, u, 0);
    }

    /* ---- perturbations */
    if (simple_frac(a, &neg, &p, &q)) {
        snprintf(t, S, "%s\\frac{%ld}{%ld}", neg ? "-" : "", p + 1, q);
        judge("numerator_plus_one", a, t, 0);
        if (!exact_decimal(u, S, neg, p, q)) {
            double v = (double)p / (double)q;
            snprintf(t, S, "%s%.4f", neg ? "-" : "", v - 0.00005 * (v > 0));
            judge("truncated_decimal", a, t, 0);
        }
    }
    {
        long k = 1, m = 0;
        char tail;
        if (sscanf(a, "\\sqrt{%ld}%c", &m, &tail) == 1 ||
            sscanf(a, "%ld\\sqrt{%ld}%c", &k, &m, &tail) == 2 ||
            sscanf(a, "%ld \\sqrt{%ld}%c", &k, &m, &tail) == 2) {
            snprintf(t, S, "%.4f", (double)(long long)((double)k * sqrt((double)m) * 1e4) / 1e4);
            judge("truncated_decimal", a, t, 0);
        }
    }
    if (!textual && !strstr(a, "\\text{(") && bump_digits(t, S, a, 0))
        judge("first_constant_plus_one", a, t, 0);
    if (!textual && !strstr(a, "\\text{(") && bump_digits(u, S, a, 1) && strcmp(u, t) != 0)
        judge("last_constant_plus_one", a, u, 0);
    {
        /* swap the first two entries of a tuple / interval / vector */
        const char *open = NULL;
        if (a[0] == '(' || a[0] == '[')
            open = a + 1;
        else if (strncmp(a, "\\left(", 6) == 0 || strncmp(a, "\\left[", 6) == 0)
            open = a + 6;
        if (open) {
            int depth = 0, i = 0, c1 = -1, c2 = -1;
            for (; open[i]; i++) {
                char c = open[i];
                if (c == '{' || c == '(' || c == '[')
                    depth++;
                else if ((c == '}' || c == ')' || c == ']') && depth-- == 0)
                    break;
                else if (c == ',' && depth == 0) {
                    if (c1 < 0)
                        c1 = i;
                    else if (c2 < 0)
                        c2 = i;
                }
            }
            int end = c2 >= 0 ? c2 : i;
            if (end >= 6 && strncmp(open + end - 6, "\\right", 6) == 0)
                end -= 6;
            if (c1 > 0 && !(c1 == end - c1 - 1 && strncmp(open, open + c1 + 1, (size_t)c1) == 0)) {
                int pre = (int)(open - a);
                snprintf(t, S, "%.*s%.*s,%.*s%s", pre, a, end - c1 - 1, open + c1 + 1, c1, open,
                         open + end);
                judge("swap_tuple", a, t, 0);
            }
            if (c1 > 0 && c2 < 0) {
                /* two entries: an interval reading exists; flip each end */
                snprintf(t, S, "%s", a);
                char *l = strchr(t, a[0] == '\\' ? a[5] : a[0]);
                *l = *l == '(' ? '[' : '(';
                judge("flip_interval_left", a, t, 0);
                snprintf(t, S, "%s", a);
                char *r = t + strlen(t) - 1;
                *r = *r == ')' ? ']' : ')';
                judge("flip_interval_right", a, t, 0);
            }
        }
        if (strstr(a, "\\begin{pmatrix}")) {
            const char *b = strstr(a, "\\begin{pmatrix}") + 15;
            const char *r1 = strstr(b, "\\\\");
            const char *r2 = r1 ? strstr(r1 + 2, "\\\\") : NULL;
            if (!r2 && r1)
                r2 = strstr(r1 + 2, "\\end");
            if (r1 && r2) {
                snprintf(t, S, "%.*s%.*s\\\\%.*s%s", (int)(b - a), a, (int)(r2 - r1 - 2), r1 + 2,
                         (int)(r1 - b), b, r2);
                char x1[S], x2[S];
                snprintf(x1, S, "%.*s", (int)(r1 - b), b);
                snprintf(x2, S, "%.*s", (int)(r2 - r1 - 2), r1 + 2);
                if (strcmp(x1, x2) != 0)
                    judge("swap_tuple", a, t, 0);
            }
        }
    }
    if (!textual && !strstr(a, "\\text{(") && strcmp(a, "0") != 0 && commas == 0 &&
        a[0] != '(' && a[0] != '[' && strncmp(a, "\\left", 5) != 0 &&
        strncmp(a, "\\begin", 6) != 0 && strncmp(a, "\\{", 2) != 0 && !strchr(a, '=') &&
        !strstr(a, "\\in")) {
        if (a[0] == '-')
            snprintf(t, S, "%s", a + 1);
        else if (strncmp(a, "\\$", 2) == 0)
            snprintf(t, S, "-%s", a + 2);
        else
            snprintf(t, S, "-%s", a);
        judge("sign_flip", a, t, 0);
    }
}

static void test_math500_rewrites__floor(void **state)
{
    (void)state;
    static dataset d;
    if (load_math500(&d) < 0) {
        print_message("MATH-500 not found under %s (set ENVSRV_DATA); skipping\n", data_dir());
        skip();
    }
    for (int k = 0; k < d.n; k++)
        gen_answer(d.r[k].answer);
    int tot[2] = { 0, 0 }, right[2] = { 0, 0 };
    print_message("%-26s %6s %6s %7s\n", "category", "cases", "right", "rate");
    for (int k = 0; k < NCATS; k++) {
        category *c = &k_cats[k];
        tot[c->side] += c->total;
        right[c->side] += c->right;
        print_message("%-26s %6d %6d %6.1f%%  (%s)\n", c->name, c->total, c->right,
                      c->total ? 100.0 * c->right / c->total : 100.0,
                      c->side == SIDE_REWRITE ? "must be equal" : "must differ");
    }
    double rw = 100.0 * right[SIDE_REWRITE] / (tot[SIDE_REWRITE] ? tot[SIDE_REWRITE] : 1);
    double pt = 100.0 * right[SIDE_PERTURB] / (tot[SIDE_PERTURB] ? tot[SIDE_PERTURB] : 1);
    print_message("rewritings judged equal:     %d/%d (%.2f%%)\n", right[SIDE_REWRITE],
                  tot[SIDE_REWRITE], rw);
    print_message("perturbations judged unequal: %d/%d (%.2f%%)\n", right[SIDE_PERTURB],
                  tot[SIDE_PERTURB], pt);
    assert_true(tot[SIDE_REWRITE] >= 1000);
    assert_true(tot[SIDE_PERTURB] >= 500);
    assert_true(rw >= 97.0);
    assert_true(pt >= 97.0);
    free_dataset(&d);
}

/* The math environment's own sample problems: each solution's last \boxed must
 * equal its answer field, and answers must be unambiguous (parsable). */
static void test_math500_sample_env__boxed_matches(void **state)
{
    (void)state;
    static dataset d;
    const char *src = getenv("ENVSRV_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/envs/data/math/test.jsonl", src && *src ? src : ".");
    if (load_jsonl(&d, path) < 0) {
        print_message("%s not found (set ENVSRV_SRC); skipping\n", path);
        skip();
    }
    assert_true(d.n >= 30);
    for (int k = 0; k < d.n; k++) {
        vf_math_result r;
        int rc = vf_math_score(&r, d.r[k].solution, strlen(d.r[k].solution), d.r[k].answer,
                               strlen(d.r[k].answer));
        if (rc != 0 || r.reward != 1.0)
            print_error("  sample %d: '%s' vs '%s': %s\n", k, r.got, d.r[k].answer, r.reason);
        assert_int_equal(rc, 0);
        assert_true(r.reward == 1.0);
    }
    free_dataset(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_math500_solutions__all_equal),
        cmocka_unit_test(test_math500_rewrites__floor),
        cmocka_unit_test(test_math500_sample_env__boxed_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
