/*
 * The JSON parser for request bodies: builds the same Jansson values as
 * json_loadb(buf, len, flags, err), several times faster.
 *
 * Jansson reads its input one character at a time through a UTF-8 checking
 * stream and copies every string byte into a growing buffer; on /score bodies
 * (one long completion) that is about 9 ns per byte. Here a string is scanned
 * eight bytes at a time until a byte that needs attention ('"', '\\', a
 * control character or non-ASCII), a string without escapes is handed to
 * json_stringn_nocheck straight from the input, and one with escapes is
 * decoded once into a scratch buffer sized up front. Containers are kept on an
 * explicit stack, so hostile nesting costs no C stack.
 *
 * What is accepted is exactly what Jansson 2.14 accepts (the differential
 * tests in tests/server/test_json_parse.c and the fuzzer
 * tests/fuzz/fuzz_json_parse.c hold us to it), including its choices beyond
 * RFC 8259: a nesting limit of JSON_PARSER_MAX_DEPTH, no NUL inside object
 * keys even with JSON_ALLOW_NUL, the last of duplicate keys wins, integers are
 * json_int_t (out of range is an error, never a real), and a real that
 * overflows is an error while one that underflows is 0.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* Open containers kept without allocating; deeper bodies use the heap. */
#define JP_INLINE_DEPTH 32
/* Number texts up to this long are converted from a stack copy. */
#define JP_NUMBER_STACK 64

typedef struct jp {
    const unsigned char *start, *p, *end; /* borrowed: the input */
    size_t flags;                         /* JSON_DECODE_ANY | JSON_ALLOW_NUL */
    json_error_t *err;                    /* borrowed; may be NULL */
    char *sbuf;      /* owned: decoded string values that had escapes */
    char *kbuf;      /* owned: decoded object keys that had escapes */
    const char *key; /* the pending object key: into the input or kbuf */
    size_t klen;
    json_t **stack;  /* open containers, innermost last: inline or owned heap */
    size_t depth, cap;
    json_t *inline_stack[JP_INLINE_DEPTH];
} jp;

/* Fills j->err for a problem at byte `at`. Line and column are 1-based and
 * count characters, as Jansson's do; a problem at the end of the input points
 * just past its last character. Always returns -1. */
__attribute__((format(printf, 4, 5)))
static int jp_fail(jp *j, const unsigned char *at, enum json_error_code code, const char *fmt, ...)
{
    json_error_t *e = j->err;
    if (!e)
        return -1;
    size_t line = 1;
    const unsigned char *line_start = j->start;
    for (const unsigned char *q = j->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            line_start = q + 1;
        }
    }
    size_t column = 1;
    for (const unsigned char *q = line_start; q < at; q++)
        column += (*q & 0xC0) != 0x80;
    va_list ap;
    va_start(ap, fmt);
    /* Jansson keeps the error code in the text's last byte (json_error_code). */
    vsnprintf(e->text, JSON_ERROR_TEXT_LENGTH - 1, fmt, ap);
    va_end(ap);
    e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)code;
    snprintf(e->source, sizeof e->source, "<buffer>");
    e->line = line > INT_MAX ? INT_MAX : (int)line;
    e->column = column > INT_MAX ? INT_MAX : (int)column;
    size_t pos = (size_t)(at - j->start);
    e->position = pos > INT_MAX ? INT_MAX : (int)pos;
    return -1;
}

/* "'x'" for a printable byte, "byte 0x01" otherwise, for error messages. */
static const char *jp_show(char out[16], const unsigned char *at, const unsigned char *end)
{
    if (at >= end)
        snprintf(out, 16, "end of input");
    else if (*at >= 0x20 && *at < 0x7F)
        snprintf(out, 16, "'%c'", *at);
    else
        snprintf(out, 16, "byte 0x%02X", *at);
    return out;
}

static int jp_unexpected(jp *j, const char *what)
{
    char shown[16];
    if (j->p >= j->end)
        return jp_fail(j, j->p, json_error_premature_end_of_input, "unexpected end of input, %s",
                       what);
    return jp_fail(j, j->p, json_error_invalid_syntax, "unexpected %s, %s",
                   jp_show(shown, j->p, j->end), what);
}

static void jp_skip_ws(jp *j)
{
    const unsigned char *p = j->p, *end = j->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    j->p = p;
}

/* ---- strings ------------------------------------------------------------------ */

static int jp_is_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The first byte at or after p that is not plain (or end). Eight bytes at a
 * time: each term below has a byte's high bit set where that byte is special
 * (the classic has-zero-byte tricks; a borrow can only mark bytes above a
 * true match, so on little-endian the lowest mark is exact). */
static const unsigned char *jp_skip_plain(const unsigned char *p, const unsigned char *end)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t quote = v ^ (ones * '"'), bslash = v ^ (ones * '\\');
        uint64_t mark = ((v - ones * 0x20) & ~v)              /* < 0x20 */
                        | ((quote - ones) & ~quote)           /* '"' */
                        | ((bslash - ones) & ~bslash) | v;    /* '\\', >= 0x80 */
        mark &= highs;
        if (mark) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return p + (__builtin_ctzll(mark) >> 3);
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && jp_is_plain(*p))
        p++;
    return p;
}

static int jp_is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* The length of the well-formed UTF-8 sequence at p (whose lead byte is
 * >= 0x80), or 0: no overlong forms, no surrogates, nothing above U+10FFFF,
 * as Jansson's utf8_check_full. */
static size_t jp_utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF)
        return avail >= 2 && jp_is_cont(p[1]) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || !jp_is_cont(p[1]) || !jp_is_cont(p[2]))
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
            return 0; /* overlong; UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || !jp_is_cont(p[1]) || !jp_is_cont(p[2]) || !jp_is_cont(p[3]))
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
            return 0; /* overlong; above U+10FFFF */
        return 4;
    }
    return 0;
}

/* The four hex digits at p as a number, or -1. */
static long jp_hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static char *jp_put_utf8(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        *out++ = (char)cp;
    } else if (cp < 0x800) {
        *out++ = (char)(0xC0 | (cp >> 6));
        *out++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *out++ = (char)(0xE0 | (cp >> 12));
        *out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *out++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *out++ = (char)(0xF0 | (cp >> 18));
        *out++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *out++ = (char)(0x80 | (cp & 0x3F));
    }
    return out;
}

/* Decodes the escape at j->p (a backslash) to *out and moves past it.
 * Returns 0 or -1 with the error set. */
static int jp_escape(jp *j, char **out)
{
    const unsigned char *p = j->p, *end = j->end;
    if (end - p < 2)
        return jp_fail(j, end, json_error_premature_end_of_input, "unexpected end of input in string");
    static const char simple_from[] = "\"\\/bfnrt", simple_to[] = "\"\\/\b\f\n\r\t";
    const char *s = p[1] ? strchr(simple_from, p[1]) : NULL;
    if (s) {
        *(*out)++ = simple_to[s - simple_from];
        j->p = p + 2;
        return 0;
    }
    if (p[1] != 'u') {
        char shown[16];
        return jp_fail(j, p, json_error_invalid_syntax, "invalid escape: backslash then %s",
                       jp_show(shown, p + 1, end));
    }
    long cp = jp_hex4(p + 2, end);
    if (cp < 0)
        return jp_fail(j, p, json_error_invalid_syntax, "invalid \\u escape: four hex digits expected");
    size_t used = 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return jp_fail(j, p, json_error_invalid_syntax,
                       "invalid Unicode '\\u%04lX': low surrogate without a high one", cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = end - p >= 8 && p[6] == '\\' && p[7] == 'u' ? jp_hex4(p + 8, end) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return jp_fail(j, p, json_error_invalid_syntax,
                           "invalid Unicode '\\u%04lX': high surrogate without a low one", cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        used = 12;
    }
    if (cp == 0 && !(j->flags & JSON_ALLOW_NUL))
        return jp_fail(j, p, json_error_null_character, "\\u0000 is not allowed without JSON_ALLOW_NUL");
    *out = jp_put_utf8(*out, (unsigned long)cp);
    j->p = p + used;
    return 0;
}

/*
 * Scans the string whose opening quote is at j->p and moves past its closing
 * quote. *text and *len get its decoded bytes: borrowed from the input when
 * it has no escapes, else from *scratch (owned by j, allocated at the first
 * escape with room for the rest of the input: a decoded string is never
 * longer than its source, so it never needs to grow). Returns 0 or -1.
 */
static int jp_string(jp *j, char **scratch, const char **text, size_t *len)
{
    const unsigned char *begin = ++j->p, *end = j->end;
    const unsigned char *copied = begin; /* input before this is in the scratch */
    char *out = NULL;                    /* the scratch's end; NULL until an escape */
    for (;;) {
        const unsigned char *p = jp_skip_plain(j->p, end);
        j->p = p;
        if (p >= end)
            return jp_fail(j, end, json_error_premature_end_of_input,
                           "unexpected end of input in string");
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c >= 0x80) {
            size_t n = jp_utf8_len(p, end);
            if (n == 0)
                return jp_fail(j, p, json_error_invalid_utf8, "invalid UTF-8 byte 0x%02X in string", c);
            j->p = p + n;
            continue;
        }
        if (c < 0x20)
            return jp_fail(j, p, json_error_invalid_syntax, "control character 0x%02X in string", c);
        /* A backslash. */
        if (!out) {
            if (!*scratch && !(*scratch = malloc((size_t)(end - begin))))
                return jp_fail(j, p, json_error_out_of_memory, "out of memory");
            out = *scratch;
        }
        memcpy(out, copied, (size_t)(p - copied));
        out += p - copied;
        if (jp_escape(j, &out) != 0)
            return -1;
        copied = j->p;
    }
    if (out) {
        memcpy(out, copied, (size_t)(j->p - copied));
        out += j->p - copied;
        *text = *scratch;
        *len = (size_t)(out - *scratch);
    } else {
        *text = (const char *)begin;
        *len = (size_t)(j->p - begin);
    }
    j->p++;
    return 0;
}

/* The object key at j->p, then its ':': sets j->key and j->klen. */
static int jp_key(jp *j)
{
    if (j->p >= j->end || *j->p != '"')
        return jp_unexpected(j, "expected a string as object key");
    const unsigned char *at = j->p;
    if (jp_string(j, &j->kbuf, &j->key, &j->klen) != 0)
        return -1;
    if (memchr(j->key, '\0', j->klen))
        return jp_fail(j, at, json_error_null_byte_in_key, "NUL byte in object key not supported");
    jp_skip_ws(j);
    if (j->p >= j->end || *j->p != ':')
        return jp_unexpected(j, "expected ':' after object key");
    j->p++;
    jp_skip_ws(j);
    return 0;
}

/* ---- numbers and literals ----------------------------------------------------- */

static int jp_is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static locale_t jp_c_locale;
static pthread_once_t jp_c_locale_once = PTHREAD_ONCE_INIT;

static void jp_c_locale_init(void)
{
    jp_c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* strtod that always reads '.' as the decimal point, as Jansson's does
 * whatever the process locale. */
static double jp_strtod(const char *s)
{
    pthread_once(&jp_c_locale_once, jp_c_locale_init);
    return jp_c_locale ? strtod_l(s, NULL, jp_c_locale) : strtod(s, NULL);
}

/* Converts the number text s[0..n) (already checked against the grammar). */
static json_t *jp_convert(jp *j, const char *s, size_t n, int real, const unsigned char *at)
{
    size_t digits = n - (s[0] == '-');
    if (!real && digits <= 18) {
        /* Fits json_int_t (long long) whatever the digits. */
        long long v = 0;
        for (size_t i = s[0] == '-'; i < n; i++)
            v = v * 10 + (s[i] - '0');
        json_t *out = json_integer(s[0] == '-' ? -v : v);
        if (!out)
            jp_fail(j, at, json_error_out_of_memory, "out of memory");
        return out;
    }
    char stack[JP_NUMBER_STACK];
    char *copy = n < sizeof stack ? stack : malloc(n + 1);
    if (!copy) {
        jp_fail(j, at, json_error_out_of_memory, "out of memory");
        return NULL;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    json_t *out = NULL;
    errno = 0;
    if (!real) {
        long long v = strtoll(copy, NULL, 10);
        if (errno == ERANGE)
            jp_fail(j, at, json_error_numeric_overflow, "too big %sinteger",
                    s[0] == '-' ? "negative " : "");
        else if (!(out = json_integer(v)))
            jp_fail(j, at, json_error_out_of_memory, "out of memory");
    } else {
        double v = jp_strtod(copy);
        /* Underflow (ERANGE with a tiny or zero result) is accepted, as by Jansson. */
        if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL))
            jp_fail(j, at, json_error_numeric_overflow, "real number overflow");
        else if (!(out = json_real(v)))
            jp_fail(j, at, json_error_out_of_memory, "out of memory");
    }
    if (copy != stack)
        free(copy);
    return out;
}

/* The number at j->p: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. An
 * integer unless it has a fraction or an exponent, as in Jansson. */
static json_t *jp_number(jp *j)
{
    const unsigned char *s = j->p, *p = s, *end = j->end;
    int real = 0;
    if (*p == '-')
        p++;
    if (!jp_is_digit(p, end)) {
        j->p = p;
        jp_unexpected(j, "expected a digit");
        return NULL;
    }
    if (*p == '0') {
        p++;
        if (jp_is_digit(p, end)) {
            jp_fail(j, s, json_error_invalid_syntax, "invalid number: leading zero");
            return NULL;
        }
    } else {
        while (jp_is_digit(p, end))
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (!jp_is_digit(p, end)) {
            j->p = p;
            jp_unexpected(j, "expected a digit after the decimal point");
            return NULL;
        }
        while (jp_is_digit(p, end))
            p++;
        real = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!jp_is_digit(p, end)) {
            j->p = p;
            jp_unexpected(j, "expected a digit in the exponent");
            return NULL;
        }
        while (jp_is_digit(p, end))
            p++;
        real = 1;
    }
    j->p = p;
    return jp_convert(j, (const char *)s, (size_t)(p - s), real, s);
}

/* true, false or null at j->p. */
static json_t *jp_literal(jp *j)
{
    static const char *const words[] = { "true", "false", "null" };
    size_t avail = (size_t)(j->end - j->p);
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if (avail >= n && memcmp(j->p, words[i], n) == 0) {
            j->p += n;
            json_t *v = i == 0 ? json_true() : i == 1 ? json_false() : json_null();
            return v;
        }
    }
    jp_fail(j, j->p, json_error_invalid_syntax, "invalid literal (true, false or null expected)");
    return NULL;
}

/* ---- structure ------------------------------------------------------------------ */

/*
 * Jansson drops one NUL byte that directly follows a number or a literal:
 * its lexer reads one character past those tokens and puts it back, and its
 * input stream marks an empty one-character buffer with a NUL, so a NUL put
 * back looks like nothing and is lost. "[1\0]" and "true\0" are therefore
 * valid to json_loadb (but not "[1 \0]", "[1\0\0]" or "\"s\"\0"), and so
 * they are here.
 */
static void jp_skip_quirk_nul(jp *j)
{
    if (j->p < j->end && *j->p == '\0')
        j->p++;
}

/* Adds v to the innermost open container under the pending key, or makes it
 * the root. Takes v's reference, also on failure. */
static int jp_attach(jp *j, json_t **root, json_t *v, const unsigned char *at)
{
    int rc;
    if (j->depth == 0) {
        *root = v;
        return 0;
    }
    json_t *top = j->stack[j->depth - 1];
    if (json_is_array(top))
        rc = json_array_append_new(top, v);
    else
        rc = json_object_setn_new_nocheck(top, j->key, j->klen, v);
    return rc == 0 ? 0 : jp_fail(j, at, json_error_out_of_memory, "out of memory");
}

static int jp_push(jp *j, json_t *container)
{
    if (j->depth == j->cap) {
        size_t cap = j->cap * 4 > JSON_PARSER_MAX_DEPTH ? JSON_PARSER_MAX_DEPTH : j->cap * 4;
        json_t **grown = malloc(cap * sizeof *grown);
        if (!grown)
            return jp_fail(j, j->p, json_error_out_of_memory, "out of memory");
        memcpy(grown, j->stack, j->depth * sizeof *grown);
        if (j->stack != j->inline_stack)
            free(j->stack);
        j->stack = grown;
        j->cap = cap;
    }
    j->stack[j->depth++] = container;
    return 0;
}

/* Parses one value at j->p (whitespace skipped) and attaches it. A container
 * is attached empty and left open on the stack; *opened says so. */
static int jp_value(jp *j, json_t **root, int *opened)
{
    const unsigned char *at = j->p;
    json_t *v;
    *opened = 0;
    if (at >= j->end)
        return jp_unexpected(j, "expected a value");
    /* Jansson counts every value, scalars included, towards its depth limit:
     * 2048 nested arrays may hold only empty arrays. */
    if (j->depth == JSON_PARSER_MAX_DEPTH)
        return jp_fail(j, at, json_error_stack_overflow, "maximum nesting depth %d exceeded",
                       JSON_PARSER_MAX_DEPTH);
    switch (*at) {
    case '{':
    case '[':
        v = *at == '{' ? json_object() : json_array();
        if (!v)
            return jp_fail(j, at, json_error_out_of_memory, "out of memory");
        j->p++;
        *opened = 1;
        break;
    case '"': {
        const char *text;
        size_t len;
        if (jp_string(j, &j->sbuf, &text, &len) != 0)
            return -1;
        if (!(v = json_stringn_nocheck(text, len)))
            return jp_fail(j, at, json_error_out_of_memory, "out of memory");
        break;
    }
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        if (!(v = jp_number(j)))
            return -1;
        jp_skip_quirk_nul(j);
        break;
    case 't': case 'f': case 'n':
        if (!(v = jp_literal(j)))
            return -1;
        jp_skip_quirk_nul(j);
        break;
    default:
        return jp_unexpected(j, "expected a value");
    }
    if (jp_attach(j, root, v, at) != 0)
        return -1;
    return *opened ? jp_push(j, v) : 0;
}

/* After a container opened or a ',' inside one: 1 when the next thing is a
 * value to parse (its key read, for an object), 0 when the container closed
 * at once (only right after opening), -1 on error. */
static int jp_next_member(jp *j, int just_opened)
{
    json_t *top = j->stack[j->depth - 1];
    int object = json_is_object(top);
    jp_skip_ws(j);
    if (just_opened && j->p < j->end && *j->p == (object ? '}' : ']')) {
        j->p++;
        j->depth--;
        return 0;
    }
    if (object && jp_key(j) != 0)
        return -1;
    return 1;
}

/* After a value inside the innermost container: moves past ',' (then the
 * next key) and returns 1, or past the closing bracket and returns 0. */
static int jp_after_member(jp *j)
{
    int object = json_is_object(j->stack[j->depth - 1]);
    jp_skip_ws(j);
    if (j->p < j->end && *j->p == ',') {
        j->p++;
        return jp_next_member(j, 0);
    }
    if (j->p < j->end && *j->p == (object ? '}' : ']')) {
        j->p++;
        j->depth--;
        return 0;
    }
    return jp_unexpected(j, object ? "expected ',' or '}'" : "expected ',' or ']'");
}

static json_t *jp_document(jp *j)
{
    json_t *root = NULL;
    jp_skip_ws(j);
    if (!(j->flags & JSON_DECODE_ANY) && (j->p >= j->end || (*j->p != '{' && *j->p != '[')))
        goto fail_expected_container;
    for (;;) {
        int opened, more;
        if (jp_value(j, &root, &opened) != 0)
            goto fail;
        more = opened ? jp_next_member(j, 1) : 0;
        /* Close containers until one wants another member (or none is open). */
        while (more == 0 && j->depth > 0)
            more = jp_after_member(j);
        if (more < 0)
            goto fail;
        if (j->depth == 0 && more == 0)
            break;
    }
    jp_skip_ws(j);
    if (j->p < j->end) {
        char shown[16];
        jp_fail(j, j->p, json_error_end_of_input_expected, "end of input expected, got %s",
                jp_show(shown, j->p, j->end));
        goto fail;
    }
    return root;
fail_expected_container:
    jp_unexpected(j, "expected '[' or '{'");
fail:
    json_decref(root);
    return NULL;
}

json_t *srv__json_parse(const char *buf, size_t len, size_t flags, json_error_t *err)
{
    assert(buf || len == 0);
    assert((flags & ~(size_t)(JSON_DECODE_ANY | JSON_ALLOW_NUL)) == 0);
    jp j = { .start = (const unsigned char *)buf, .p = (const unsigned char *)buf,
             .end = (const unsigned char *)buf + len, .flags = flags, .err = err,
             .cap = JP_INLINE_DEPTH };
    j.stack = j.inline_stack;
    if (err) {
        err->text[0] = '\0';
        err->line = err->column = err->position = 0;
    }
    json_t *root = jp_document(&j);
    if (j.stack != j.inline_stack)
        free(j.stack);
    free(j.sbuf);
    free(j.kbuf);
    return root;
}
