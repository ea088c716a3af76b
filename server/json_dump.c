/*
 * JSON text of a Jansson value, byte for byte what json_dumps(v,
 * JSON_COMPACT | JSON_ENCODE_ANY) writes, at a fraction of the cost: Jansson's dumper decodes
 * every string one code point at a time and hands each fragment to a
 * callback, which made writing replies a tenth of the server's CPU on small
 * /score requests. Here plain runs of a string are copied whole and the
 * output grows in one buffer.
 *
 * Jansson's rules, kept exactly (tests/server/test_json_dump.c compares
 * the two on real data and on generated values):
 *   - no whitespace; object members in insertion order;
 *   - strings: '"' and '\\' escaped with a backslash, \b \f \n \r \t for
 *     those controls, \u00XX (upper-case hex) for the other bytes below 0x20,
 *     everything else (UTF-8 included) as it is;
 *   - integers as "%lld"; reals as "%.17g", with ".0" added when that looks
 *     like an integer, and the exponent without '+' or leading zeros.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

#define DUMP_MAX_DEPTH 4096     /* deeper values are refused, never a stack overflow */

typedef struct out {
    char *p;        /* owned */
    size_t len, cap;
    int failed;
} out;

static int reserve(out *o, size_t more)
{
    if (o->failed)
        return -1;
    if (o->len + more + 1 <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more + 1)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (!p) {
        o->failed = 1;
        return -1;
    }
    o->p = p;
    o->cap = cap;
    return 0;
}

static void put(out *o, const char *s, size_t n)
{
    if (reserve(o, n) == 0) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    }
}

static void put_char(out *o, char c)
{
    if (reserve(o, 1) == 0)
        o->p[o->len++] = c;
}

/* Bytes that need an escape: '"', '\\' and the controls below 0x20. */
static int needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

static void put_string(out *o, const char *s, size_t n)
{
    put_char(o, '"');
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && !needs_escape((unsigned char)s[run]))
            run++;
        put(o, s + i, run - i);
        if (run == n)
            break;
        unsigned char c = (unsigned char)s[run];
        char esc[8];
        switch (c) {
        case '"': put(o, "\\\"", 2); break;
        case '\\': put(o, "\\\\", 2); break;
        case '\b': put(o, "\\b", 2); break;
        case '\f': put(o, "\\f", 2); break;
        case '\n': put(o, "\\n", 2); break;
        case '\r': put(o, "\\r", 2); break;
        case '\t': put(o, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", c);
            put(o, esc, 6);
        }
        i = run + 1;
    }
    put_char(o, '"');
}

/* A real as Jansson writes it (its jsonp_dtostr at the default precision). */
static void put_real(out *o, double d)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.17g", d);
    if (n < 0 || (size_t)n >= sizeof buf - 3) {
        o->failed = 1;
        return;
    }
    size_t len = (size_t)n;
    /* A locale may write ',' for the decimal point; JSON wants '.'. */
    for (size_t i = 0; i < len; i++)
        if (buf[i] == ',')
            buf[i] = '.';
    if (!memchr(buf, '.', len) && !memchr(buf, 'e', len)) {
        memcpy(buf + len, ".0", 3);
        len += 2;
    }
    /* Jansson's own steps: drop a '+' and leading zeros from the exponent. */
    char *e = memchr(buf, 'e', len);
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)(buf + len - end) + 1);
            len -= (size_t)(end - start);
        }
    }
    put(o, buf, len);
}

static void put_value(out *o, const json_t *v, int depth)
{
    char buf[32];
    if (depth > DUMP_MAX_DEPTH) {
        o->failed = 1;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *m;
        int first = 1;
        put_char(o, '{');
        json_object_keylen_foreach((json_t *)v, key, key_len, m) {
            if (!first)
                put_char(o, ',');
            first = 0;
            put_string(o, key, key_len);
            put_char(o, ':');
            put_value(o, m, depth + 1);
        }
        put_char(o, '}');
        break;
    }
    case JSON_ARRAY:
        put_char(o, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                put_char(o, ',');
            put_value(o, json_array_get(v, i), depth + 1);
        }
        put_char(o, ']');
        break;
    case JSON_STRING:
        put_string(o, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: {
        int n = snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(o, buf, (size_t)n);
        break;
    }
    case JSON_REAL:
        put_real(o, json_real_value(v));
        break;
    case JSON_TRUE:
        put(o, "true", 4);
        break;
    case JSON_FALSE:
        put(o, "false", 5);
        break;
    case JSON_NULL:
        put(o, "null", 4);
        break;
    }
}

char *srv__json_dump(const json_t *v, size_t *len)
{
    out o = { NULL, 0, 0, 0 };
    if (!v)
        return NULL;
    put_value(&o, v, 0);
    if (o.failed || reserve(&o, 0) < 0) {
        free(o.p);
        return NULL;
    }
    o.p[o.len] = '\0';
    if (len)
        *len = o.len;
    return o.p;
}
