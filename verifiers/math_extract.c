/*
 * MATH answers: finding the final answer in a completion or a solution.
 *
 * Precedence, as MATH solutions and instruction-tuned models write answers: the
 * last \boxed{...} (or \fbox), else the text after a final-answer phrase, else a
 * $...$ (or \(..\), \[..\]) that ends the text. Everything is a linear scan, so
 * a megabyte completion costs a megabyte of memchr, not more.
 */
#include <ctype.h>
#include <string.h>

#include "verifiers/math_int.h"

/* Last occurrence of `needle` in hay[0..len), or NULL. */
static const char *memrmem(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0 || len < n)
        return NULL;
    for (size_t i = len - n + 1; i-- > 0;)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

/* Case-insensitive last occurrence. */
static const char *memrcasemem(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0 || len < n)
        return NULL;
    for (size_t i = len - n + 1; i-- > 0;)
        if (tolower((unsigned char)hay[i]) == needle[0] && strncasecmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

static int copy_out(char *out, size_t cap, const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0 || n >= cap || n > VF__MATH_MAX_INPUT) {
        out[0] = '\0';
        return -1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* The argument of the \boxed at `at` (which points at the backslash) in
 * s[0..len). Returns 0 and the span, or -1 when it is unbalanced or empty. */
static int boxed_arg(const char *s, size_t len, size_t at, size_t *start, size_t *n)
{
    size_t i = at + 1;
    while (i < len && isalpha((unsigned char)s[i]))
        i++;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i >= len)
        return -1;
    if (s[i] != '{') {
        /* "\boxed 5": one token up to a space or a dollar */
        size_t j = i;
        while (j < len && !isspace((unsigned char)s[j]) && s[j] != '$')
            j++;
        *start = i;
        *n = j - i;
        return j > i ? 0 : -1;
    }
    int depth = 0;
    for (size_t j = i; j < len; j++) {
        if (s[j] == '\\' && j + 1 < len) {
            j++; /* \{ and \} do not count */
            continue;
        }
        if (s[j] == '{') {
            depth++;
        } else if (s[j] == '}' && --depth == 0) {
            *start = i + 1;
            *n = j - (i + 1);
            return 0;
        }
    }
    return -1;
}

/* A math span starting at s[i] ("$..$", "$$..$$", "\(..\)", "\[..\]"): sets its
 * content span and end; 0 when there is one. */
static int math_span(const char *s, size_t len, size_t i, size_t *cs, size_t *cn, size_t *end)
{
    const char *close;
    size_t open_n;
    if (s[i] == '$') {
        open_n = (i + 1 < len && s[i + 1] == '$') ? 2 : 1;
        close = open_n == 2 ? "$$" : "$";
    } else if (s[i] == '\\' && i + 1 < len && (s[i + 1] == '(' || s[i + 1] == '[')) {
        open_n = 2;
        close = s[i + 1] == '(' ? "\\)" : "\\]";
    } else {
        return -1;
    }
    size_t cl = strlen(close);
    for (size_t j = i + open_n; j + cl <= len; j++) {
        if (memcmp(s + j, close, cl) == 0 && !(cl == 1 && j > 0 && s[j - 1] == '\\')) {
            *cs = i + open_n;
            *cn = j - *cs;
            *end = j + cl;
            return 0;
        }
    }
    return -1;
}

/* The text after a final-answer phrase, up to the end of its line: its first
 * math span if it has one, else the line without markdown and trailing period. */
static int from_phrase(char *out, size_t cap, const char *s, size_t len)
{
    static const char *const phrases[] = { "final answer is", "final answer:", "the answer is",
                                           "answer:", "answer is", NULL };
    const char *best = NULL;
    size_t best_n = 0;
    for (int k = 0; phrases[k]; k++) {
        const char *h = memrcasemem(s, len, phrases[k]);
        if (h && (!best || h > best)) {
            best = h;
            best_n = strlen(phrases[k]);
        }
    }
    if (!best)
        return -1;
    size_t i = (size_t)(best - s) + best_n;
    size_t e = i;
    while (e < len && s[e] != '\n')
        e++;
    while (i < e && (isspace((unsigned char)s[i]) || s[i] == ':' || s[i] == '*'))
        i++;
    for (size_t j = i; j < e; j++) {
        size_t cs, cn, end;
        if ((s[j] == '$' || s[j] == '\\') && math_span(s, e, j, &cs, &cn, &end) == 0)
            return copy_out(out, cap, s + cs, cn);
    }
    while (e > i && (isspace((unsigned char)s[e - 1]) || s[e - 1] == '.' || s[e - 1] == '*'))
        e--;
    return copy_out(out, cap, s + i, e - i);
}

/* The last math span, when nothing but spaces and punctuation follows it. */
static int trailing_math(char *out, size_t cap, const char *s, size_t len)
{
    size_t e = len;
    while (e > 0 && (isspace((unsigned char)s[e - 1]) || s[e - 1] == '.' || s[e - 1] == '!'))
        e--;
    if (e == 0)
        return -1;
    size_t cs = 0, cn = 0, end = 0;
    const char *close = NULL;
    if (e >= 2 && (memcmp(s + e - 2, "\\)", 2) == 0 || memcmp(s + e - 2, "\\]", 2) == 0)) {
        close = s[e - 1] == ')' ? "\\(" : "\\[";
        const char *o = memrmem(s, e - 2, close);
        if (!o)
            return -1;
        cs = (size_t)(o - s) + 2;
        cn = e - 2 - cs;
    } else if (s[e - 1] == '$') {
        size_t k = (e >= 2 && s[e - 2] == '$') ? 2 : 1;
        const char *o = memrmem(s, e - k, k == 2 ? "$$" : "$");
        if (!o)
            return -1;
        cs = (size_t)(o - s) + k;
        cn = e - k - cs;
    } else {
        return -1;
    }
    (void)end;
    return copy_out(out, cap, s + cs, cn);
}

int vf_math_extract(char *out, size_t cap, const char *completion, size_t len)
{
    if (!out || cap == 0)
        return -1;
    out[0] = '\0';
    if (!completion)
        return -1;
    const char *s = completion;
    size_t n = len;
    /* <think> ... </think> is the model's scratchpad: only what follows the
     * last closing tag counts; after an unclosed <think> nothing counts. */
    const char *close = memrmem(s, n, "</think>");
    if (close) {
        n -= (size_t)(close + 8 - s);
        s = close + 8;
    }
    const char *open = memrmem(s, n, "<think>");
    if (open)
        n = (size_t)(open - s);

    /* The last \boxed or \fbox whose braces balance. */
    size_t lim = n;
    for (;;) {
        const char *b1 = memrmem(s, lim, "\\boxed");
        const char *b2 = memrmem(s, lim, "\\fbox");
        const char *b = !b1 ? b2 : !b2 ? b1 : (b1 > b2 ? b1 : b2);
        if (!b)
            break;
        size_t st, ln;
        if (boxed_arg(s, n, (size_t)(b - s), &st, &ln) == 0) {
            /* \boxed{\boxed{5}}: unwrap */
            if (copy_out(out, cap, s + st, ln) == 0) {
                if (strncmp(out, "\\boxed", 6) == 0 || strncmp(out, "\\fbox", 5) == 0) {
                    size_t st2, ln2;
                    if (boxed_arg(s + st, ln, 0, &st2, &ln2) == 0)
                        return copy_out(out, cap, s + st + st2, ln2);
                }
                return 0;
            }
            return -1;
        }
        lim = (size_t)(b - s);
    }
    if (from_phrase(out, cap, s, n) == 0)
        return 0;
    return trailing_math(out, cap, s, n);
}
