/*
 * extract.c — finding the final numeric answer in a completion, and GSM8K.
 *
 * A completion is searched in a fixed order of kinds: the last \boxed{...},
 * then a "#### N" line, then a final-answer phrase, then the last number. The
 * first kind that yields a number wins; within a kind the last occurrence
 * wins. Every search is one pass (forward or backward) over the visible text,
 * so a megabyte of "\boxed{" or "answer is " costs a few milliseconds, never a
 * rescan per occurrence.
 *
 * What counts as a number in running text (choices, documented once here):
 *   - A number glued to a word on its left is part of that word: "x2", "H2O",
 *     "mp3", "v1.2" give nothing. A letter on the right is a unit or suffix and
 *     is fine: "18km", "5th" and "3x" read 18, 5 and 3. Non-ASCII bytes (UTF-8)
 *     are neither letters nor glue: "3×4" reads 3 and 4.
 *   - '-' (or '+', or U+2212) right before a number is its sign unless it
 *     follows a letter, digit or closing bracket, where it is an operator:
 *     "16-3" reads 16 and 3, "x = -5" and "(-5)" read -5, "10 -5" reads -5.
 *   - "$" or "\$" before the number (and before or after the sign) is currency.
 *   - A '.' ends a number unless a digit follows: "is 42." reads 42. After
 *     "1.2", ".3" is glued: "1.2.3" reads 1.2 only.
 *   - A power is not a number of its own: "5 cm^2" reads 5, "m^{3}" nothing.
 *   - A comma that does not start a thousands group is punctuation: "1,2"
 *     reads 1 and 2, so its last number is 2.
 * See number.c for how the characters of one number become its value.
 */
#include <string.h>

#include "verifiers/verifiers_int.h"

const char *vf_answer_source_name(vf_answer_source source)
{
    switch (source) {
    case VF_SOURCE_BOXED: return "boxed";
    case VF_SOURCE_HASHES: return "hashes";
    case VF_SOURCE_PHRASE: return "phrase";
    case VF_SOURCE_LAST_NUMBER: return "last_number";
    case VF_SOURCE_NONE: break;
    }
    return "none";
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_alpha(unsigned char c)
{
    c |= 0x20;
    return c >= 'a' && c <= 'z';
}

static int is_word(unsigned char c)
{
    return is_alpha(c) || vf__num_is_digit(c) || c == '_';
}

static void answer_none(vf_number_answer *out)
{
    out->source = VF_SOURCE_NONE;
    out->start = 0;
    out->len = 0;
    out->value[0] = '\0';
}

/* Case-insensitive match of lowercase `lit` at s[p], within hi. */
static int match_ci(const char *s, size_t p, size_t hi, const char *lit)
{
    size_t n = strlen(lit);
    if (hi - p < n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[p + i];
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

/*
 * A number token whose numeric core starts at s[c]: looks left (not before
 * `lo`) for glue, currency and sign, then reads the core. On VF__NUM_OK writes
 * the value into `val` and the token's span [*start, *end); on VF__NUM_BAD
 * sets *end so the caller can skip the token whole.
 */
static int token_at(char *val, const char *s, size_t lo, size_t c, size_t hi, size_t *start,
                    size_t *end)
{
    unsigned char ch = (unsigned char)s[c];
    size_t p = c;
    int neg = 0, have_sign = 0, have_cur = 0;

    if (ch != '\\' && c > lo) {
        unsigned char prev = (unsigned char)s[c - 1];
        if (is_word(prev))
            return VF__NUM_NONE;
        if (prev == '.' && c - 1 > lo && vf__num_is_digit((unsigned char)s[c - 2]))
            return VF__NUM_NONE;
        /* A power is not a number of its own: "cm^2", "10^{3}". */
        if (prev == '^' || (prev == '{' && c - 1 > lo && s[c - 2] == '^'))
            return VF__NUM_NONE;
    }
    for (int i = 0; i < 2; i++) {
        size_t q;
        int minus;
        if (!have_cur && p > lo && s[p - 1] == '$') {
            p--;
            if (p > lo && s[p - 1] == '\\')
                p--;
            have_cur = 1;
            continue;
        }
        if (have_sign)
            break;
        if (p > lo && (s[p - 1] == '-' || s[p - 1] == '+')) {
            q = p - 1;
            minus = s[q] == '-';
        } else if (p - lo >= 3 && memcmp(s + p - 3, "\xe2\x88\x92", 3) == 0) {
            q = p - 3;
            minus = 1;
        } else {
            break;
        }
        if (q > lo) {
            unsigned char b = (unsigned char)s[q - 1];
            if (is_word(b) || b == ')' || b == ']' || b == '}')
                break;          /* a binary operator, not a sign */
        }
        neg = minus;
        have_sign = 1;
        p = q;
    }
    int rc = vf__num_core(val, VF_VALUE_MAX, s, c, hi, neg, end);
    if (rc == VF__NUM_OK)
        *start = p;
    return rc;
}

/* The first number token in [from, hi) (lookbehind bounded by lo). */
static int first_token(char *val, const char *s, size_t lo, size_t from, size_t hi,
                       size_t *start, size_t *end)
{
    size_t p = from;
    while (p < hi) {
        unsigned char c = (unsigned char)s[p];
        if (!(vf__num_is_digit(c) || c == '.' || c == '\\') || !vf__num_core_start(s, p, hi)) {
            p++;
            continue;
        }
        size_t e = p;
        int rc = token_at(val, s, lo, p, hi, start, &e);
        if (rc == VF__NUM_OK) {
            *end = e;
            return 1;
        }
        p = rc == VF__NUM_BAD && e > p ? e : p + 1;
    }
    return 0;
}

/*
 * The last number token in [lo, hi). Numbers never contain whitespace, so the
 * text is cut into whitespace-free chunks from the end: the chunk holding the
 * last digit is scanned forward and its last number kept; when it has none,
 * the previous chunk is tried. Each byte is looked at a bounded number of
 * times, whatever the input.
 */
static int last_token(char *val, const char *s, size_t lo, size_t hi, size_t *start,
                      size_t *end)
{
    char scratch[VF_VALUE_MAX];
    size_t h = hi;

    while (h > lo) {
        size_t d = h;
        while (d > lo && !vf__num_is_digit((unsigned char)s[d - 1]))
            d--;
        if (d == lo)
            return 0;
        size_t cs = d - 1;
        while (cs > lo && !is_space((unsigned char)s[cs - 1]))
            cs--;
        /* Scan the chunk; remember where the last good token's core began. */
        size_t p = cs, best_core = 0, ts = 0;
        int found = 0;
        while (p < h) {
            unsigned char c = (unsigned char)s[p];
            if (!(vf__num_is_digit(c) || c == '.' || c == '\\') || !vf__num_core_start(s, p, h)) {
                p++;
                continue;
            }
            size_t e = p;
            int rc = token_at(scratch, s, lo, p, h, &ts, &e);
            if (rc == VF__NUM_OK) {
                found = 1;
                best_core = p;
                p = e;
            } else {
                p = rc == VF__NUM_BAD && e > p ? e : p + 1;
            }
        }
        if (found)                 /* read it again into `val`: one copy, no buffer juggling */
            return token_at(val, s, lo, best_core, h, start, end) == VF__NUM_OK;
        h = cs;
    }
    return 0;
}

/*
 * The visible part of a completion: after the last "</think>" and before the
 * first "<think>" that follows it. Reasoning models put their answer after
 * their final "</think>"; a completion whose template opened <think> in the
 * prompt has a "</think>" with no opener, and everything before it is
 * reasoning too. An unclosed "<think>" hides everything after it.
 */
static void visible_span(const char *s, size_t len, size_t *lo, size_t *hi)
{
    size_t close_end = 0, open = len;
    const char *p = s, *end = s + len;

    while (p < end && (p = memchr(p, '<', (size_t)(end - p))) != NULL) {
        size_t left = (size_t)(end - p);
        if (left >= 8 && memcmp(p, "</think>", 8) == 0) {
            close_end = (size_t)(p - s) + 8;
            open = len;
            p += 8;
        } else if (left >= 7 && memcmp(p, "<think>", 7) == 0) {
            if (open == len)
                open = (size_t)(p - s);
            p += 7;
        } else {
            p++;
        }
    }
    *lo = close_end;
    *hi = open > close_end ? open : close_end;
}

/* Length of "\boxed{" / "\fbox{" (spaces allowed before the brace) at s[p]. */
static size_t box_open(const char *s, size_t p, size_t hi)
{
    size_t n;
    if (hi - p >= 6 && memcmp(s + p, "\\boxed", 6) == 0)
        n = 6;
    else if (hi - p >= 5 && memcmp(s + p, "\\fbox", 5) == 0)
        n = 5;
    else
        return 0;
    size_t q = p + n;
    while (q < hi && s[q] == ' ')
        q++;
    return q < hi && s[q] == '{' ? q + 1 - p : 0;
}

/* Value of a box's content: the whole content as one number, else what
 * follows its last '=' ("x = 5"), else its last number ("\text{18}"). */
static int box_value(vf_number_answer *out, const char *s, size_t cs, size_t ce)
{
    size_t a = cs, b = ce;
    while (a < b && is_space((unsigned char)s[a]))
        a++;
    while (b > a && is_space((unsigned char)s[b - 1]))
        b--;
    if (vf_number_parse(out->value, VF_VALUE_MAX, s + a, b - a) == 0) {
        out->start = a;
        out->len = b - a;
        return 1;
    }
    const char *eq = memrchr(s + a, '=', b - a);
    if (eq) {
        size_t r = (size_t)(eq - s) + 1;
        while (r < b && is_space((unsigned char)s[r]))
            r++;
        if (vf_number_parse(out->value, VF_VALUE_MAX, s + r, b - r) == 0) {
            out->start = r;
            out->len = b - r;
            return 1;
        }
    }
    size_t ts, te;
    if (last_token(out->value, s, a, b, &ts, &te)) {
        out->start = ts;
        out->len = te - ts;
        return 1;
    }
    return 0;
}

/* Boxes open at once that are tracked: the innermost ones. Outer ones beyond
 * this are only counted as braces. */
#define BOX_STACK 16

/*
 * The last \boxed{...} to close, in one forward pass: a brace depth counter and
 * a small stack of the innermost open boxes. Escaped braces ("\{") do not
 * count. An unterminated box never closes and so is never the answer, but
 * boxes closed inside it still are.
 */
static int boxed_find(vf_number_answer *out, const char *s, size_t lo, size_t hi)
{
    const char *first = memchr(s + lo, '\\', hi - lo);
    size_t open_depth[BOX_STACK], open_start[BOX_STACK];
    size_t depth = 0, cs = 0, ce = 0;
    int nopen = 0, have = 0;

    if (!first)
        return 0;
    for (size_t p = (size_t)(first - s); p < hi; p++) {
        char c = s[p];
        if (c == '\\') {
            size_t n = box_open(s, p, hi);
            if (n) {
                if (nopen == BOX_STACK) {
                    /* Forget the outermost: inner boxes close first. */
                    memmove(open_depth, open_depth + 1, (BOX_STACK - 1) * sizeof open_depth[0]);
                    memmove(open_start, open_start + 1, (BOX_STACK - 1) * sizeof open_start[0]);
                    nopen--;
                }
                open_depth[nopen] = depth;
                open_start[nopen] = p + n;
                nopen++;
                depth++;
                p += n - 1;
            } else if (p + 1 < hi && (s[p + 1] == '{' || s[p + 1] == '}' || s[p + 1] == '\\')) {
                p++;
            }
        } else if (c == '{') {
            depth++;
        } else if (c == '}' && depth > 0) {
            depth--;
            if (nopen > 0 && open_depth[nopen - 1] == depth) {
                nopen--;
                cs = open_start[nopen];
                ce = p;
                have = 1;
            }
        }
    }
    return have && box_value(out, s, cs, ce);
}

/*
 * The last "####" directly followed (after spaces, a sign and/or currency) by a
 * number, as GSM8K writes "#### 72". A markdown heading "#### Step 2" is not an
 * answer. Runs of '#' are skipped whole, so "#######..." is linear.
 */
static int hashes_find(vf_number_answer *out, const char *s, size_t lo, size_t hi)
{
    size_t h = hi;
    while (h > lo) {
        const char *q = memrchr(s + lo, '#', h - lo);
        if (!q)
            return 0;
        size_t last = (size_t)(q - s), run = last;
        while (run > lo && s[run - 1] == '#')
            run--;
        if (last - run + 1 >= 4) {
            size_t p = last + 1, c;
            while (p < hi && (s[p] == ' ' || s[p] == '\t'))
                p++;
            c = p;
            for (int i = 0; i < 3 && c < hi; i++) {
                if (s[c] == '-' || s[c] == '+' || s[c] == '$')
                    c++;
                else if (hi - c >= 2 && s[c] == '\\' && s[c + 1] == '$')
                    c += 2;
                else if (hi - c >= 3 && memcmp(s + c, "\xe2\x88\x92", 3) == 0)
                    c += 3;
                else
                    break;
            }
            size_t ts, te;
            if (c < hi && vf__num_core_start(s, c, hi) &&
                token_at(out->value, s, last + 1, c, hi, &ts, &te) == VF__NUM_OK && ts == p) {
                out->start = ts;
                out->len = te - ts;
                return 1;
            }
        }
        h = run;
    }
    return 0;
}

/*
 * Words that may follow "answer" before its number: "is", ":", "=", "would
 * be" ... Returns the index after them, or 0 when none is there.
 */
static size_t phrase_connector(const char *s, size_t p, size_t hi, int final)
{
    static const char *const verbs[] = { "is", "would be", "will be", "should be",
                                         "must be", "was" };
    while (p < hi && (s[p] == ' ' || s[p] == '\t' || s[p] == '*' || s[p] == '_'))
        p++;
    if (p < hi && (s[p] == ':' || s[p] == '='))
        return p + 1;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        size_t n = strlen(verbs[i]);
        if (match_ci(s, p, hi, verbs[i]) && (p + n == hi || !is_alpha((unsigned char)s[p + n])))
            return p + n;
    }
    return final ? p : 0;   /* "Final answer\n42", "final answer $42" */
}

/*
 * The number of the last final-answer phrase that has one: "answer" (as a
 * word) followed by a connector, then the first number before the end of the
 * line or sentence. Occurrences are tried from the last; each one's window
 * ends where the later (already tried) one began, so the work is linear.
 */
static int phrase_find(vf_number_answer *out, const char *s, size_t lo, size_t hi)
{
    size_t bound = hi;
    for (size_t k = hi; k >= lo + 6; k--) {
        size_t i = k - 6;
        if ((s[i + 5] | 0x20) != 'r' || !match_ci(s, i, hi, "answer"))
            continue;
        if ((i > lo && is_alpha((unsigned char)s[i - 1])) ||
            (i + 6 < hi && is_alpha((unsigned char)s[i + 6])))
            continue;
        size_t j = i;
        while (j > lo && (s[j - 1] == ' ' || s[j - 1] == '*' || s[j - 1] == '_'))
            j--;
        int final = j >= lo + 5 && match_ci(s, j - 5, hi, "final") &&
                    (j - 5 == lo || !is_alpha((unsigned char)s[j - 6]));
        size_t w_end = bound;
        bound = i;
        size_t p = phrase_connector(s, i + 6, w_end, final);
        if (!p)
            continue;
        while (p < w_end && (is_space((unsigned char)s[p]) || s[p] == '*' || s[p] == '_' ||
                             s[p] == ':'))
            p++;
        /* The number must come before the line or the sentence ends. */
        size_t e = p;
        while (e < w_end && s[e] != '\n' &&
               !(s[e] == '.' && (e + 1 == w_end || is_space((unsigned char)s[e + 1]))))
            e++;
        size_t ts, te;
        if (first_token(out->value, s, lo, p, e, &ts, &te)) {
            out->start = ts;
            out->len = te - ts;
            return 1;
        }
    }
    return 0;
}

int vf_number_extract(vf_number_answer *out, const char *completion, size_t len)
{
    size_t lo, hi, ts, te;

    answer_none(out);
    if (!completion || len == 0)
        return 0;
    visible_span(completion, len, &lo, &hi);
    if (lo >= hi)
        return 0;
    if (boxed_find(out, completion, lo, hi)) {
        out->source = VF_SOURCE_BOXED;
        return 0;
    }
    if (hashes_find(out, completion, lo, hi)) {
        out->source = VF_SOURCE_HASHES;
        return 0;
    }
    if (phrase_find(out, completion, lo, hi)) {
        out->source = VF_SOURCE_PHRASE;
        return 0;
    }
    if (last_token(out->value, completion, lo, hi, &ts, &te)) {
        out->source = VF_SOURCE_LAST_NUMBER;
        out->start = ts;
        out->len = te - ts;
        return 0;
    }
    answer_none(out);
    return 0;
}

int vf_gsm8k_reference(vf_number_answer *out, const char *answer, size_t len)
{
    answer_none(out);
    if (!answer || len == 0)
        return -1;
    if (!hashes_find(out, answer, 0, len)) {
        answer_none(out);
        return -1;
    }
    out->source = VF_SOURCE_HASHES;
    return 0;
}

/* Whether "####" occurs in s. (glibc's memmem is byte-at-a-time for short
 * needles; memchr is vectorized.) */
static int has_hashes(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    while (end - p >= 4 && (p = memchr(p, '#', (size_t)(end - p) - 3)) != NULL) {
        if (p[1] == '#' && p[2] == '#' && p[3] == '#')
            return 1;
        p++;
    }
    return 0;
}

int vf_gsm8k_score(vf_gsm8k_result *out, const char *completion, size_t completion_len,
                   const char *reference, size_t reference_len)
{
    int rc = 0;

    out->reward = 0.0;
    answer_none(&out->want);
    vf_number_extract(&out->got, completion, completion_len);
    if (!reference) {
        rc = -1;
    } else if (vf_gsm8k_reference(&out->want, reference, reference_len) == 0) {
        rc = 0;
    } else if (has_hashes(reference, reference_len)) {
        rc = -1;                /* "####" with no number after it */
    } else if (vf_number_parse(out->want.value, VF_VALUE_MAX, reference, reference_len) == 0) {
        /* A bare reference ("42") is its own only number: reported as last_number. */
        out->want.source = VF_SOURCE_LAST_NUMBER;
        out->want.start = 0;
        out->want.len = reference_len;
    } else {
        answer_none(&out->want);
        rc = -1;
    }
    if (rc == 0 && out->got.source != VF_SOURCE_NONE &&
        strcmp(out->got.value, out->want.value) == 0)
        out->reward = 1.0;
    return rc;
}
