/*
 * MATH answers: cleaning (answer text -> the text the parser reads).
 *
 * Cleaning works on the string because it is where people and models vary most
 * without changing the value: \left/\right, \dfrac, spacing commands, degree
 * signs, dollars and percent signs, unicode operators, text commands and
 * thousands separators. What is left is plain LaTeX for math_parse.c.
 */
#include <ctype.h>
#include <string.h>

#include "verifiers/math_int.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int over;
} sbuf;

static void sb_putc(sbuf *b, char c)
{
    if (b->n + 1 < b->cap)
        b->p[b->n++] = c;
    else
        b->over = 1;
}

static void sb_puts(sbuf *b, const char *s)
{
    while (*s)
        sb_putc(b, *s++);
}

/* Does `in[i..]` start with the command `cmd` (which includes the backslash)
 * and not continue with a letter? */
static int at_cmd(const char *in, size_t len, size_t i, const char *cmd)
{
    size_t k = strlen(cmd);
    if (i + k > len || memcmp(in + i, cmd, k) != 0)
        return 0;
    return i + k == len || !isalpha((unsigned char)in[i + k]);
}

static size_t skip_spaces(const char *in, size_t len, size_t i)
{
    while (i < len && isspace((unsigned char)in[i]))
        i++;
    return i;
}

/* Length of a degree sign at in[i] ("^\circ", "^{\circ}", "\circ", "\degree",
 * U+00B0), 0 when there is none. */
static size_t degree_len(const char *in, size_t len, size_t i)
{
    size_t j = i;
    if (in[j] == '^') {
        j = skip_spaces(in, len, j + 1);
        if (j < len && in[j] == '{') {
            size_t k = skip_spaces(in, len, j + 1);
            if (at_cmd(in, len, k, "\\circ")) {
                k = skip_spaces(in, len, k + 5);
                if (k < len && in[k] == '}')
                    return k + 1 - i;
            }
            return 0;
        }
        if (at_cmd(in, len, j, "\\circ"))
            return j + 5 - i;
        return 0;
    }
    if (at_cmd(in, len, i, "\\circ"))
        return 5;
    if (at_cmd(in, len, i, "\\degree"))
        return 7;
    if (i + 1 < len && (unsigned char)in[i] == 0xC2 && (unsigned char)in[i + 1] == 0xB0)
        return 2;
    return 0;
}

/* Commands deleted outright: spacing and display hints. */
static const char *const k_drop[] = {
    "\\!", "\\,", "\\;", "\\:", "\\ ", "\\quad", "\\qquad", "\\displaystyle",
    "\\textstyle", "\\limits", "\\%", "\\$", "\\enspace", "\\thinspace", NULL
};

/* Commands whose braced argument is text. */
static const char *const k_textcmd[] = {
    "\\text", "\\textbf", "\\textit", "\\textrm", "\\mbox", "\\mathrm", "\\mathbf",
    "\\mathit", "\\textnormal", "\\mathsf", "\\rm", NULL
};

static const char *const k_rename[][2] = {
    { "\\dfrac", "\\frac" }, { "\\tfrac", "\\frac" }, { "\\cfrac", "\\frac" },
    { "\\dbinom", "\\binom" }, { "\\tbinom", "\\binom" }, { "\\lbrace", "\\{" },
    { "\\rbrace", "\\}" }, { "\\lvert", "|" }, { "\\rvert", "|" }, { "\\vert", "|" },
    { "\\mid", "|" }, { "\\le", "\\leq" }, { "\\ge", "\\geq" },
    { NULL, NULL }
};

/* Drops the commas of "1,234,567" / "$1,234.50" when the whole answer is one
 * such number. A comma list like "3, 5, 7" or a point "(100,200)" does not have
 * that shape, so it is left alone. */
static void fold_thousands(char *s, size_t *len)
{
    size_t i = 0, n = *len, groups = 0, lead = 0;
    /* "{58,500}": a group around the number */
    if (n > 2 && s[0] == '{' && s[n - 1] == '}') {
        i = 1;
        n--;
    }
    /* "x = 58,500" */
    if (n > i + 2 && isalpha((unsigned char)s[i])) {
        size_t k = i + 1;
        while (k < n && s[k] == ' ')
            k++;
        if (k < n && s[k] == '=') {
            k++;
            while (k < n && s[k] == ' ')
                k++;
            i = k;
        }
    }
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && isdigit((unsigned char)s[i])) {
        i++;
        lead++;
    }
    if (lead == 0 || lead > 3)
        return;
    while (i < n && s[i] == ',') {
        size_t k = i + 1;
        while (k < n && s[k] == ' ')
            k++;
        if (k + 3 > n || !isdigit((unsigned char)s[k]) || !isdigit((unsigned char)s[k + 1]) ||
            !isdigit((unsigned char)s[k + 2]))
            return;
        i = k + 3;
        groups++;
        if (i < n && isdigit((unsigned char)s[i]))
            return;
    }
    if (groups == 0)
        return;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i != n)
        return;
    size_t w = 0;
    for (size_t r = 0; r < *len; r++)
        if (s[r] != ',' && !(s[r] == ' ' && r > 0 && s[r - 1] == ','))
            s[w++] = s[r];
    s[w] = '\0';
    *len = w;
}

int vf__math_clean(char *out, size_t cap, const char *in, size_t len)
{
    sbuf b = { out, 0, cap, 0 };
    if (cap == 0)
        return -1;
    out[0] = '\0';
    if (len > VF__MATH_MAX_INPUT)
        return -1;
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        size_t d = degree_len(in, len, i);
        if (d) {
            i += d;
            continue;
        }
        if (c == '\\') {
            int done = 0;
            for (int k = 0; k_drop[k]; k++) {
                size_t kl = strlen(k_drop[k]);
                if ((isalpha((unsigned char)k_drop[k][1]) && at_cmd(in, len, i, k_drop[k])) ||
                    (!isalpha((unsigned char)k_drop[k][1]) && i + kl <= len &&
                     memcmp(in + i, k_drop[k], kl) == 0)) {
                    sb_putc(&b, ' ');
                    i += kl;
                    done = 1;
                    break;
                }
            }
            if (done)
                continue;
            if (at_cmd(in, len, i, "\\left") || at_cmd(in, len, i, "\\right")) {
                i += in[i + 1] == 'l' ? 5 : 6;
                i = skip_spaces(in, len, i);
                if (i < len && in[i] == '.')
                    i++; /* \left. is an invisible delimiter */
                continue;
            }
            for (int k = 0; k_rename[k][0]; k++) {
                if (at_cmd(in, len, i, k_rename[k][0]) ||
                    (!isalpha((unsigned char)k_rename[k][0][1]) &&
                     strncmp(in + i, k_rename[k][0], strlen(k_rename[k][0])) == 0)) {
                    sb_puts(&b, k_rename[k][1]);
                    i += strlen(k_rename[k][0]);
                    done = 1;
                    break;
                }
            }
            if (done)
                continue;
            for (int k = 0; k_textcmd[k]; k++) {
                if (at_cmd(in, len, i, k_textcmd[k])) {
                    size_t j = skip_spaces(in, len, i + strlen(k_textcmd[k]));
                    /* \mathrm{e}, \mathrm{i}, \mathrm{x}: one letter is math. */
                    if (k_textcmd[k][1] == 'm' && k_textcmd[k][2] == 'a' && j + 2 < len &&
                        in[j] == '{' && isalpha((unsigned char)in[j + 1]) && in[j + 2] == '}') {
                        sb_putc(&b, in[j + 1]);
                        i = j + 3;
                    } else {
                        sb_puts(&b, "\\text");
                        i += strlen(k_textcmd[k]);
                    }
                    done = 1;
                    break;
                }
            }
            if (done)
                continue;
            /* "\\" outside a matrix and any other command: copy the backslash
             * and the name so the parser sees it whole. */
            sb_putc(&b, '\\');
            i++;
            if (i < len && !isalpha((unsigned char)in[i])) {
                sb_putc(&b, in[i]);
                i++;
            } else {
                while (i < len && isalpha((unsigned char)in[i]))
                    sb_putc(&b, in[i++]);
            }
            continue;
        }
        if (c == '$' || c == '%' || c == '~') {
            sb_putc(&b, ' '); /* $ delimits math, ~ is a space, % a percent sign */
            i++;
            continue;
        }
        if (c == '{' && i + 2 < len && in[i + 1] == ',' && in[i + 2] == '}') {
            i += 3; /* 1{,}000 */
            continue;
        }
        if (c == ',' && i + 2 < len && in[i + 1] == '\\' && in[i + 2] == '!' && b.n > 0 &&
            isdigit((unsigned char)b.p[b.n - 1])) {
            /* "10,\!080": ",\!" is how LaTeX writes a thousands separator */
            size_t j = skip_spaces(in, len, i + 3);
            if (j + 3 <= len && isdigit((unsigned char)in[j]) &&
                isdigit((unsigned char)in[j + 1]) && isdigit((unsigned char)in[j + 2]) &&
                (j + 3 == len || !isdigit((unsigned char)in[j + 3]))) {
                i = j;
                continue;
            }
        }
        if (c == 0xE2 && i + 2 < len && (unsigned char)in[i + 1] == 0x88) {
            unsigned char c3 = (unsigned char)in[i + 2];
            if (c3 == 0x92) { sb_putc(&b, '-'); i += 3; continue; }
            if (c3 == 0x9E) { sb_puts(&b, "\\infty "); i += 3; continue; }
            if (c3 == 0x9A) { sb_puts(&b, "\\sqrt "); i += 3; continue; }
        }
        if (c == 0xCF && i + 1 < len && (unsigned char)in[i + 1] == 0x80) {
            sb_puts(&b, "\\pi ");
            i += 2;
            continue;
        }
        if (c == 0xC3 && i + 1 < len && (unsigned char)in[i + 1] == 0x97) {
            sb_puts(&b, "\\times ");
            i += 2;
            continue;
        }
        if (c == 0xC2 && i + 1 < len && (unsigned char)in[i + 1] == 0xB7) {
            sb_puts(&b, "\\cdot ");
            i += 2;
            continue;
        }
        if (isspace(c)) {
            if (b.n > 0 && b.p[b.n - 1] != ' ')
                sb_putc(&b, ' ');
            i++;
            continue;
        }
        sb_putc(&b, (char)c);
        i++;
    }
    if (b.over)
        return -1;
    /* Collapse the spaces the deletions left, and trim. */
    size_t w = 0;
    for (size_t r = 0; r < b.n; r++) {
        if (out[r] == ' ' && (w == 0 || out[w - 1] == ' '))
            continue;
        out[w++] = out[r];
    }
    /* Trailing punctuation of a sentence: "5.", "x = 3;" */
    while (w > 0 && (out[w - 1] == ' ' || out[w - 1] == '.' || out[w - 1] == ',' ||
                     out[w - 1] == ';' || out[w - 1] == ':')) {
        if (out[w - 1] == '.' && w >= 2 && out[w - 2] == '\\')
            break;
        w--;
    }
    out[w] = '\0';
    fold_thousands(out, &w);
    return (int)w;
}

