/*
 * srv__json_parse (server/json_parse.c) against its reference, Jansson's
 * json_loadb: on every line of the shared data sets and on /score bodies built
 * like bench/make_bodies.py's, on a table of tricky inputs, on 200,000
 * deterministic mutants of those, and on hostile nesting. For every input and
 * flag combination both must accept or both reject, and accepted values must
 * be equal with the same types all the way down (integer vs real, the bits of
 * every real, object keys in the same order). Error positions are checked on
 * their own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"
#include "tests/support/json_same.h"
#include "tests/support/support.h"

/* The flag combinations the server uses, and the other two. */
static const size_t flag_sets[] = { JSON_ALLOW_NUL | JSON_DECODE_ANY, JSON_DECODE_ANY, 0, JSON_ALLOW_NUL };
#define N_FLAG_SETS (sizeof flag_sets / sizeof flag_sets[0])

/* Parses with both; returns 1 when they agree (also filling *accepted), else
 * 0 with a description in why. */
static int agree(const char *buf, size_t len, size_t flags, int *accepted, char *why, size_t why_size)
{
    json_error_t je, me;
    json_t *ref = json_loadb(buf, len, flags, &je);
    json_t *got = srv__json_parse(buf, len, flags, &me);
    int ok = 1;
    if (!ref != !got) {
        snprintf(why, why_size, "jansson %s (%s), ours %s (%s)", ref ? "accepts" : "rejects",
                 ref ? "-" : je.text, got ? "accepts" : "rejects", got ? "-" : me.text);
        ok = 0;
    } else if (ref && (!json_equal(ref, got) || !tsup_json_same(ref, got))) {
        snprintf(why, why_size, "values differ");
        ok = 0;
    } else if (!ref && (me.line < 1 || me.column < 1 || me.position < 0 || (size_t)me.position > len ||
                        me.text[0] == '\0')) {
        snprintf(why, why_size, "error without text or position: '%s' line %d column %d", me.text,
                 me.line, me.column);
        ok = 0;
    }
    if (accepted)
        *accepted = ref != NULL;
    json_decref(ref);
    json_decref(got);
    return ok;
}

static void print_input(const char *buf, size_t len)
{
    char line[256];
    size_t n = 0;
    for (size_t i = 0; i < len && n + 8 < sizeof line; i++) {
        unsigned char c = (unsigned char)buf[i];
        n += (size_t)snprintf(line + n, sizeof line - n, c >= 0x20 && c < 0x7F && c != '\\' ? "%c" : "\\x%02X", c);
    }
    print_error("input (%zu bytes): %s%s\n", len, line, n + 8 >= sizeof line ? "..." : "");
}

/* Fails the test unless both parsers agree on buf under every flag set.
 * Returns whether Jansson accepted it with the server's flags. */
static int expect_agree(const char *buf, size_t len)
{
    int accepted_server_flags = 0;
    for (size_t f = 0; f < N_FLAG_SETS; f++) {
        char why[512];
        int accepted;
        if (!agree(buf, len, flag_sets[f], &accepted, why, sizeof why)) {
            print_input(buf, len);
            fail_msg("flags 0x%zx: %s", flag_sets[f], why);
        }
        if (f == 0)
            accepted_server_flags = accepted;
    }
    return accepted_server_flags;
}

/* ---- real data ------------------------------------------------------------------ */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static size_t g_files, g_lines;

/* Every line of a .jsonl file (and of the BFCL .json files, which are JSON
 * lines too) must be accepted by both, equal; a whole .json file must agree. */
static int visit_data_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    size_t plen = strlen(path);
    int jsonl = plen > 6 && strcmp(path + plen - 6, ".jsonl") == 0;
    int json = plen > 5 && strcmp(path + plen - 5, ".json") == 0;
    if (type != FTW_F || (!jsonl && !json) || strstr(path, "/models/"))
        return 0;
    size_t len;
    char *buf = read_file(path, &len);
    g_files++;
    expect_agree(buf, len);
    for (char *line = buf, *next; line < buf + len; line = next) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        next = nl ? nl + 1 : buf + len;
        size_t n = (size_t)((nl ? nl : buf + len) - line);
        if (n == 0 || (n == 1 && line[0] == '\r'))
            continue;
        int accepted = expect_agree(line, n);
        if (jsonl && !accepted) {
            print_input(line, n);
            fail_msg("%s: a line Jansson rejects", path);
        }
        g_lines++;
    }
    free(buf);
    return 0;
}

static void test_json_parse_differential__data_files(void **state)
{
    const char *dir = tsup_data_dir();
    struct stat st;
    if (stat(dir, &st) != 0) {
        print_message("shared data folder %s not found (set ENVSRV_DATA); skipping\n", dir);
        skip();
    }
    g_files = g_lines = 0;
    assert_int_equal(nftw(dir, visit_data_file, 16, FTW_PHYS), 0);
    print_message("%zu files, %zu lines: both parsers agree\n", g_files, g_lines);
    assert_true(g_lines > 0);
}

/* The /score bodies bench/make_bodies.py writes for GSM8K: k completions of
 * one item (its reference solution, the same with the final number changed,
 * and the "\boxed{N}" phrasing), compact, ASCII-only; built here with Jansson,
 * also without JSON_ENSURE_ASCII so raw UTF-8 goes through the fast scanner. */
static json_t *gsm8k_body(const json_t *record, size_t index, size_t k)
{
    const char *answer = json_string_value(json_object_get(record, "answer"));
    assert_non_null(answer);
    const char *hashes = strstr(answer, "####");
    size_t head_len = hashes ? (size_t)(hashes - answer) : strlen(answer);
    const char *final = hashes ? hashes + 4 : "";
    while (*final == ' ')
        final++;
    char *head = strndup(answer, head_len), *flat = strndup(answer, head_len);
    assert_non_null(head);
    assert_non_null(flat);
    for (char *c = flat; *c; c++)
        if (*c == '\n')
            *c = ' ';
    char *forms[3];
    assert_true(asprintf(&forms[0], "%s", answer) >= 0);
    assert_true(asprintf(&forms[1], "%s#### %lld", head, strtoll(final, NULL, 10) + 1) >= 0);
    assert_true(asprintf(&forms[2], "%s The answer is \\boxed{%s}.", flat, final) >= 0);
    json_t *completions = json_array();
    for (size_t i = 0; i < k; i++)
        assert_int_equal(json_array_append_new(completions, json_string(forms[i % 3])), 0);
    char id[32];
    snprintf(id, sizeof id, "test-%zu", index);
    json_t *body = json_pack("{s:s, s:o}", "item_id", id, "completions", completions);
    assert_non_null(body);
    for (int i = 0; i < 3; i++)
        free(forms[i]);
    free(head);
    free(flat);
    return body;
}

static void test_json_parse_differential__score_bodies(void **state)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/gsm8k/test.jsonl", tsup_data_dir());
    json_error_t je;
    FILE *f = fopen(path, "r");
    if (!f) {
        print_message("%s not found (set ENVSRV_DATA); skipping\n", path);
        skip();
    }
    char *line = NULL;
    size_t cap = 0, n_bodies = 0;
    ssize_t n;
    for (size_t index = 0; (n = getline(&line, &cap, f)) > 0 && index < 400; index++) {
        json_t *record = json_loadb(line, (size_t)n, 0, &je);
        assert_non_null(record);
        static const size_t ks[] = { 1, 8, 64 };
        for (size_t i = 0; i < 3; i++) {
            json_t *body = gsm8k_body(record, index, ks[i]);
            static const size_t dump_flags[] = { JSON_COMPACT | JSON_ENSURE_ASCII, JSON_INDENT(2) };
            for (size_t d = 0; d < 2; d++) {
                char *text = json_dumps(body, dump_flags[d]);
                assert_non_null(text);
                assert_true(expect_agree(text, strlen(text)));
                free(text);
                n_bodies++;
            }
            json_decref(body);
        }
        json_decref(record);
    }
    free(line);
    fclose(f);
    print_message("%zu bodies: both parsers agree\n", n_bodies);
    assert_true(n_bodies > 0);
}

/* ---- tricky inputs ------------------------------------------------------------ */

/* Sized strings: the inputs hold NULs. */
#define S(lit) { lit, sizeof(lit) - 1 }
static const struct {
    const char *text;
    size_t len;
} tricky[] = {
    /* top level and whitespace */
    S(""), S(" "), S("\t\r\n "), S("{}"), S("[]"), S(" { } "), S("\n[\n]\n"), S("1"), S(" 1 "),
    S("\"x\""), S("true"), S("null"), S("\f1"), S("\v[]"), S("[]\f"), S("\xC2\xA0[]"), S("[] []"),
    S("{}{}"), S("[]x"), S("[] \0"), S("\0"), S("[\0]"), S("[1\0]"), S("1\0"), S("[1\0\0]"),
    S("[1 \0]"), S("true\0"), S("[false\0]"), S("{\"a\":null\0}"), S("1.5\0"), S("1e5\0"),
    S("-0\0"), S("\"a\"\0"), S("[]\0"), S("[1\0,2]"), S("tr\0ue"), S("true\0x"), S("1\0\n"), S("{\"a\"\0:1}"), S("[1]]"),
    S("]"), S("}"), S("{"), S("["), S(","), S(":"),
    /* literals */
    S("tru"), S("t"), S("true1"), S("truex"), S("[true1]"), S("[truex]"), S("True"), S("NULL"),
    S("nul"), S("nulll"), S("fals"), S("falsefalse"), S("[true,false,null]"), S("nan"), S("NaN"),
    S("Infinity"), S("-Infinity"),
    /* numbers */
    S("0"), S("-0"), S("-0.0"), S("0.0"), S("1.0"), S("01"), S("-01"), S("00"), S("-"), S("-a"),
    S("+1"), S(".5"), S("-.5"), S("1."), S("1.e5"), S("1e"), S("1e+"), S("1e-"), S("1E5"),
    S("1e+5"), S("1e-5"), S("1e05"), S("0e0"), S("0x10"), S("1.5e3.2"), S("1e400"), S("-1e400"),
    S("1e-400"), S("-1e-400"), S("1e308"), S("1.7976931348623157e308"), S("1.7976931348623159e308"),
    S("4.9e-324"), S("2.4703282292062327e-324"), S("1e99999999999999999999"),
    S("1e-99999999999999999999"), S("123456789012345678"), S("999999999999999999"),
    S("9223372036854775807"), S("9223372036854775808"), S("-9223372036854775808"),
    S("-9223372036854775809"), S("99999999999999999999999"), S("-99999999999999999999999"),
    S("12345678901234567890123456789.0"), S("0.1"), S("0.30000000000000004"),
    S("3.141592653589793238462643383279502884197169399375105820974944"), S("[1,-2,3.5,-4e2]"),
    S("1 2"), S("[1 2]"), S("[1,,2]"), S("[1,]"), S("[,1]"), S("[-]"), S("{\"a\":-}"),
    /* strings and escapes */
    S("\"\""), S("\"abc"), S("\""), S("\"\\"), S("\"\\\""), S("\"\\\"\""),
    S("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), S("\"\\a\""), S("\"\\x41\""), S("\"\\'\""), S("\"\\0\""),
    S("\"\\U0041\""), S("\"\\u0041\""), S("\"\\u00e9\\u00E9\""), S("\"\\u20ac\""), S("\"\\u004\""),
    S("\"\\u00g1\""), S("\"\\u\""), S("\"\\u12"), S("\"\\u0000\""), S("\"a\\u0000b\""),
    S("\"\\ud83d\\ude00\""), S("\"\\uD83D\\uDE00\""), S("\"\\ud800\""), S("\"\\udc00\""),
    S("\"\\udbff\\udfff\""), S("\"\\udc00\\ud800\""), S("\"\\ud800\\ud800\""), S("\"\\ud800\\u0041\""),
    S("\"\\ud800x\""), S("\"\\ud800\\n\""), S("\"\\ud800\\u\""), S("\"\\ud800\\"), S("\"\\ud800"),
    S("\"\\ufffe\\uffff\""), S("\"a\0b\""), S("\"\x01\""), S("\"\x1f\""), S("\"\t\""), S("\"\n\""),
    S("\"\x7f\""), S("\"\x80\""), S("\"\xbf\""), S("\"\xc0\x80\""), S("\"\xc1\xbf\""),
    S("\"\xc2\x80\""), S("\"\xdf\xbf\""), S("\"\xc2\""), S("\"\xc2"), S("\"\xe0\x80\x80\""),
    S("\"\xe0\xa0\x80\""), S("\"\xed\x9f\xbf\""), S("\"\xed\xa0\x80\""), S("\"\xed\xbf\xbf\""),
    S("\"\xee\x80\x80\""), S("\"\xef\xbf\xbf\""), S("\"\xe2\x82\""), S("\"\xe2\x82\xac\""),
    S("\"\xf0\x8f\xbf\xbf\""), S("\"\xf0\x90\x80\x80\""), S("\"\xf4\x8f\xbf\xbf\""),
    S("\"\xf4\x90\x80\x80\""), S("\"\xf5\x80\x80\x80\""), S("\"\xf8\x88\x80\x80\x80\""),
    S("\"\xff\""), S("\"\xfe\""), S("\"\xf0\x9f\x98\""), S("\"\xf0\x9f\x98\x80\""),
    S("\"plain ascii text that is longer than sixteen bytes\""),
    S("\"0123456\\\"\""), S("\"01234567\\\"\""), S("\"012345678\\n\""), S("\"0123456\x80\""),
    S("\"0123456\xc3\xa9 after\""), S("\"0123456\x1f\""), S("\"\xe2\x82\xac\xe2\x82\xac\""),
    /* objects */
    S("{\"a\":1}"), S("{\"a\" : 1 , \"b\" : [ ] }"), S("{\"a\":1,\"b\":2,\"a\":3}"),
    S("{\"a\":{\"x\":1},\"a\":[2]}"), S("{\"a\":[1,{\"a\":2}],\"a\":{}}"), S("{\"\":0}"),
    S("{\"a\\u0000b\":1}"), S("{\"\\u0000\":1}"), S("{\"a\\nb\":1}"), S("{\"\\u00e9\":1}"),
    S("{\"\xc3\xa9\":1}"), S("{\"a\"}"), S("{\"a\":}"), S("{\"a\" 1}"), S("{\"a\":1,}"),
    S("{,}"), S("{1:2}"), S("{a:1}"), S("{'a':1}"), S("{\"a\":1 \"b\":2}"), S("{\"a\":1]"),
    S("[1}"), S("{\"a\":[}"), S("{\"a\":1,\"b\"}"), S("{\"k\\ud800\":1}"),
    S("{\"a\":\"x\",\"b\":\"y\\n\",\"c\":\"z\"}"), S("[\"a\\n\",\"b\\n\",{\"k\\t\":\"v\\t\"}]"),
};

static void test_json_parse_differential__tricky_table(void **state)
{
    size_t n = sizeof tricky / sizeof tricky[0], accepted = 0;
    for (size_t i = 0; i < n; i++)
        accepted += (size_t)expect_agree(tricky[i].text, tricky[i].len);
    print_message("%zu inputs x %zu flag sets: both parsers agree (%zu accepted)\n", n,
                  (size_t)N_FLAG_SETS, accepted);
    /* Both directions are exercised. */
    assert_true(accepted > 40 && accepted < n - 40);
}

/* A few outcomes pinned down, so the table's coverage of what matters does
 * not rest on Jansson alone. */
static void test_json_parse_values__types(void **state)
{
    json_error_t e;
    json_t *v = srv__json_parse("[-0,1.0,1e2,9223372036854775807,1e-400]", 39,
                                JSON_DECODE_ANY, &e);
    assert_non_null(v);
    assert_true(json_is_integer(json_array_get(v, 0)));
    assert_int_equal(json_integer_value(json_array_get(v, 0)), 0);
    assert_true(json_is_real(json_array_get(v, 1)));
    assert_true(json_is_real(json_array_get(v, 2)));
    assert_int_equal(json_integer_value(json_array_get(v, 3)), INT64_MAX);
    assert_true(json_is_real(json_array_get(v, 4)));
    json_decref(v);

    v = srv__json_parse("{\"a\":1,\"b\":2,\"a\":3}", 19, 0, &e);
    assert_non_null(v);
    assert_int_equal(json_object_size(v), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 3);
    json_decref(v);

    v = srv__json_parse("\"a\\u0000b\"", 10, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
    assert_non_null(v);
    assert_int_equal(json_string_length(v), 3);
    assert_memory_equal(json_string_value(v), "a\0b", 3);
    json_decref(v);

    /* json_equal alone already tells 1 from 1.0 (it compares types first). */
    json_t *i = json_integer(1), *r = json_real(1.0);
    assert_false(json_equal(i, r));
    json_decref(i);
    json_decref(r);

    assert_null(srv__json_parse("9223372036854775808", 19, JSON_DECODE_ANY, &e));
    assert_string_equal(e.text, "too big integer");
    assert_int_equal(json_error_code(&e), json_error_numeric_overflow);
    assert_null(srv__json_parse("1e400", 5, JSON_DECODE_ANY, &e));
    assert_string_equal(e.text, "real number overflow");
    assert_null(srv__json_parse("{\"a\\u0000\":1}", 13, JSON_ALLOW_NUL, &e));
    assert_int_equal(json_error_code(&e), json_error_null_byte_in_key);
    assert_null(srv__json_parse("", 0, JSON_DECODE_ANY, &e));
    assert_int_equal(json_error_code(&e), json_error_premature_end_of_input);
}

/* ---- mutation fuzz --------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: fixed seed, so every run tries the same inputs. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

#define MUTANT_MAX 1024

/* Byte strings worth splicing in: JSON's structural bytes, NUL, broken and
 * surrogate UTF-8, escapes, digits and exponents. */
static const struct {
    const char *text;
    size_t len;
} specials[] = {
    S("\""), S("\\"), S("{"), S("}"), S("["), S("]"), S(","), S(":"), S("\0"), S("\x80"),
    S("\xC0"), S("\xED\xA0\x80"), S("\xF0\x9F\x98\x80"), S("\xC3\xA9"), S("0"), S("9"), S("-"),
    S("."), S("e"), S("E+"), S("\\u"), S("\\ud83d"), S("\\ude00"), S("\\u0000"), S("\\n"),
    S(" "), S("\n"), S("\x1F"), S("true"), S("null"), S("{\"a\":"), S("[["), S("\"k\":"),
    S("99999999999999999999"), S("1e999"),
};

static size_t mutate(char *out, const char *seed, size_t len, const char *other, size_t other_len)
{
    size_t n = len < MUTANT_MAX ? len : MUTANT_MAX;
    memcpy(out, seed, n);
    int rounds = 1 + (int)(rng() % 4);
    for (int r = 0; r < rounds; r++) {
        size_t at = n ? (size_t)(rng() % (n + 1)) : 0;
        switch (rng() % 7) {
        case 0: /* flip a bit */
            if (at < n)
                out[at] ^= (char)(1u << (rng() % 8));
            break;
        case 1: /* set a byte */
            if (at < n)
                out[at] = (char)rng();
            break;
        case 2: { /* delete a run */
            size_t k = 1 + (size_t)(rng() % 4);
            if (at + k <= n) {
                memmove(out + at, out + at + k, n - at - k);
                n -= k;
            }
            break;
        }
        case 3: /* truncate */
            n = at;
            break;
        case 4:
        case 5: { /* insert a special */
            size_t s = (size_t)(rng() % (sizeof specials / sizeof specials[0]));
            size_t k = specials[s].len;
            if (n + k <= MUTANT_MAX) {
                memmove(out + at + k, out + at, n - at);
                memcpy(out + at, specials[s].text, k);
                n += k;
            }
            break;
        }
        default: { /* splice a piece of another seed */
            size_t from = other_len ? (size_t)(rng() % other_len) : 0;
            size_t k = (size_t)(rng() % 16);
            if (from + k > other_len)
                k = other_len - from;
            if (n + k <= MUTANT_MAX) {
                memmove(out + at + k, out + at, n - at);
                memcpy(out + at, other + from, k);
                n += k;
            }
            break;
        }
        }
    }
    return n;
}

static void test_json_parse_differential__mutants(void **state)
{
    /* Seeds: the tricky table plus a few real bodies. */
    static const char *const bodies[] = {
        "{\"item_id\":\"test-0\",\"completions\":[\"Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a "
        "day.\\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the farmer\\u2019s market.\\n#### 18\"]}",
        "{\"item\":{\"id\":\"x\",\"question\":\"2+2?\",\"answer\":\"4\"},\"completions\":[\"The answer "
        "is \\\\boxed{4}.\",\"5\"],\"n\":2,\"temperature\":0.7,\"seed\":-12,\"stream\":false,\"stop\":null}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"},"
        "{\"role\":\"assistant\",\"content\":\"ok\\t\\\"quoted\\\"\"}],\"max_tokens\":1e3}",
    };
    size_t n_tricky = sizeof tricky / sizeof tricky[0], n_seeds = n_tricky + 3;
    char buf[MUTANT_MAX];
    size_t mutants = 0, accepted = 0;
    rng_state = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 200000; i++) {
        size_t s = (size_t)(rng() % n_seeds), o = (size_t)(rng() % n_seeds);
        const char *seed = s < n_tricky ? tricky[s].text : bodies[s - n_tricky];
        size_t seed_len = s < n_tricky ? tricky[s].len : strlen(seed);
        const char *other = o < n_tricky ? tricky[o].text : bodies[o - n_tricky];
        size_t other_len = o < n_tricky ? tricky[o].len : strlen(other);
        size_t n = mutate(buf, seed, seed_len, other, other_len);
        size_t flags = flag_sets[rng() % N_FLAG_SETS];
        char why[512];
        int ok_accepted;
        if (!agree(buf, n, flags, &ok_accepted, why, sizeof why)) {
            print_input(buf, n);
            fail_msg("mutant %d, flags 0x%zx: %s", i, flags, why);
        }
        mutants++;
        accepted += (size_t)ok_accepted;
    }
    print_message("%zu mutants: both parsers agree (%zu accepted)\n", mutants, accepted);
    assert_true(accepted > 1000 && accepted < mutants - 1000);
}

/* ---- nesting -------------------------------------------------------------------- */

/* `levels` copies of `open`, then `leaf`, then `levels` copies of `close`
 * when `closed`. */
static char *nested(size_t *len, const char *open, const char *leaf, const char *close,
                    size_t levels, int closed)
{
    size_t olen = strlen(open), llen = strlen(leaf), clen = strlen(close);
    char *buf = malloc(levels * (olen + clen) + llen);
    assert_non_null(buf);
    size_t n = 0;
    for (size_t i = 0; i < levels; i++, n += olen)
        memcpy(buf + n, open, olen);
    memcpy(buf + n, leaf, llen);
    n += llen;
    for (size_t i = 0; closed && i < levels; i++, n += clen)
        memcpy(buf + n, close, clen);
    *len = n;
    return buf;
}

static void test_json_parse_differential__deep_nesting(void **state)
{
    static const size_t levels[] = { 1, 1023, 1024, 1025, 2047, 2048, 2049, 1000000 };
    static const struct {
        const char *open, *close;
        size_t per_level; /* containers opened per copy of `open` */
    } kinds[] = { { "[", "]", 1 }, { "{\"a\":", "}", 1 }, { "[{\"a\":", "}]", 2 } };
    /* Jansson counts every value towards the limit, the innermost one too:
     * a scalar leaf and an empty array leaf are one level each. */
    static const char *const leaves[] = { "1", "[]", "{}", "\"s\"" };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
            for (int closed = 0; closed < 2; closed++) {
                size_t len;
                const char *leaf = leaves[(k + l) % 4];
                char *buf = nested(&len, kinds[k].open, leaf, kinds[k].close, levels[l], closed);
                int accepted = 0;
                char why[512];
                for (size_t f = 0; f < N_FLAG_SETS; f++) {
                    if (!agree(buf, len, flag_sets[f], &accepted, why, sizeof why))
                        fail_msg("%s x %zu (%s), flags 0x%zx: %s", kinds[k].open, levels[l],
                                 closed ? "closed" : "open", flag_sets[f], why);
                }
                size_t depth = levels[l] * kinds[k].per_level + 1;
                if (accepted != (closed && depth <= JSON_PARSER_MAX_DEPTH))
                    fail_msg("%s x %zu then %s (%s): accepted %d", kinds[k].open, levels[l], leaf,
                             closed ? "closed" : "open", accepted);
                free(buf);
            }
        }
    }
}

/* ---- error positions ------------------------------------------------------------ */

static void test_json_parse_errors__position(void **state)
{
    static const struct {
        const char *text;
        int line, column;
        const char *says;
    } cases[] = {
        { "{\"a\": tru}", 1, 7, "literal" },
        { "[1,\n  x]", 2, 3, "'x'" },
        { "{\"a\":1,}", 1, 8, "object key" },
        { "[1 2]", 1, 4, "',' or ']'" },
        { "{\n\"k\": \"caf\xc3\xa9 \x01\"}", 2, 12, "control character 0x01" },
        { "[\"\xe2\x82\xac\", \"\xc0\x80\"]", 1, 8, "invalid UTF-8 byte 0xC0" },
        { "\"ab\\qc\"", 1, 4, "invalid escape" },
        { "[\"\\ud800x\"]", 1, 3, "\\uD800" },
        { "[1] x", 1, 5, "end of input expected" },
        { "{\"a\": [1, 2", 1, 12, "end of input" },
        { "[01]", 1, 2, "leading zero" },
        { "[1.]", 1, 4, "decimal point" },
        { "\n\n[99999999999999999999]", 3, 2, "too big integer" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t e;
        json_t *v = srv__json_parse(cases[i].text, strlen(cases[i].text), JSON_DECODE_ANY, &e);
        assert_null(v);
        if (e.line != cases[i].line || e.column != cases[i].column || !strstr(e.text, cases[i].says))
            fail_msg("%s: got '%s' at line %d column %d, want '%s' at line %d column %d",
                     cases[i].text, e.text, e.line, e.column, cases[i].says, cases[i].line,
                     cases[i].column);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_parse_values__types),
        cmocka_unit_test(test_json_parse_differential__tricky_table),
        cmocka_unit_test(test_json_parse_differential__deep_nesting),
        cmocka_unit_test(test_json_parse_errors__position),
        cmocka_unit_test(test_json_parse_differential__mutants),
        cmocka_unit_test(test_json_parse_differential__score_bodies),
        cmocka_unit_test(test_json_parse_differential__data_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
