/*
 * srv__json_dump (server/json_dump.c) writes exactly what Jansson's
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes: on every line of the shared datasets
 * (GSM8K, MATH-500, HumanEval, MBPP, BFCL; skipped, saying so, without
 * them) and on generated values that reach every escape, every byte, reals
 * of every magnitude and sign, the integer limits and nesting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* Fails with both texts when the dumps differ. */
static void same_dump(const json_t *v, const char *what)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t len = 0;
    char *got = srv__json_dump(v, &len);
    assert_non_null(want);
    if (!got || len != strlen(want) || strcmp(got, want) != 0)
        fail_msg("%s: json_dumps gave\n%.400s\nsrv__json_dump gave\n%.400s", what, want,
                 got ? got : "(NULL)");
    free(want);
    free(got);
}

/* Every line of every .jsonl file under dir (recursively). Returns lines seen. */
static size_t dump_jsonl_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t l = strlen(e->d_name);
        if (l > 6 && strcmp(e->d_name + l - 6, ".jsonl") == 0) {
            FILE *f = fopen(path, "r");
            char *line = NULL;
            size_t cap = 0;
            ssize_t got;
            while (f && (got = getline(&line, &cap, f)) > 0) {
                json_t *v = json_loadb(line, (size_t)got, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
                if (v) {
                    same_dump(v, path);
                    n++;
                }
                json_decref(v);
            }
            free(line);
            if (f)
                fclose(f);
        } else {
            n += dump_jsonl_tree(path);
        }
    }
    closedir(d);
    return n;
}

static void test_json_dump__shared_datasets(void **state)
{
    (void)state;
    const char *data = getenv("ENVSRV_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", data && *data ? data : "../shared/data");
    size_t n = 0;
    static const char *const sets[] = { "gsm8k", "math500", "humaneval", "mbpp", "bfcl" };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/%s", dir, sets[i]);
        n += dump_jsonl_tree(sub);
    }
    if (n == 0) {
        print_message("skipped: no .jsonl files under %s (set ENVSRV_DATA)\n", dir);
        skip();
    }
    assert_true(n > 10000);   /* GSM8K alone has 8,792 lines */
}

/* xorshift64*: deterministic values for the generated cases. */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

/* A string of n bytes: every byte below 0x80 (NUL included), and valid
 * multi-byte UTF-8 (Jansson refuses invalid UTF-8 in strings). */
static json_t *random_string(size_t n)
{
    char buf[256];
    size_t len = 0;
    static const char *const multi[] = { "\xc3\xa9", "\xe2\x80\x99", "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
                                         "\xef\xbf\xbd" };
    while (len < n && len + 4 < sizeof buf) {
        uint64_t r = next();
        if (r % 5 == 0) {
            const char *m = multi[(r >> 8) % 5];
            memcpy(buf + len, m, strlen(m));
            len += strlen(m);
        } else {
            buf[len++] = (char)((r >> 16) % 0x80);
        }
    }
    return json_stringn(buf, len);
}

static json_t *random_real(void)
{
    static const double special[] = { 0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1e-5, 1e-7, 1e16, 1e17, 1e20, 1e21,
                                      1e300, -1e-300, 5e-324, DBL_MAX, DBL_MIN, 123456789012345678.0,
                                      3.141592653589793, 2.5e-10 };
    uint64_t r = next();
    if (r % 3 == 0)
        return json_real(special[(r >> 8) % (sizeof special / sizeof special[0])]);
    double d;
    do {
        uint64_t bits = next();
        memcpy(&d, &bits, sizeof d);
    } while (!isfinite(d));
    return json_real(d);
}

static json_t *random_value(int depth)
{
    uint64_t r = next() % (depth > 5 ? 6 : 9);
    switch (r) {
    case 0: return json_true();
    case 1: return json_false();
    case 2: return json_null();
    case 3: {
        static const json_int_t ints[] = { 0, -1, 1, INT64_MAX, INT64_MIN, 1000000007 };
        uint64_t k = next();
        return json_integer(k % 2 ? (json_int_t)k : ints[(k >> 8) % 6]);
    }
    case 4: return random_real();
    case 5: return random_string(next() % 40);
    case 6:
    case 7: {
        json_t *a = json_array();
        for (uint64_t i = next() % 5; i > 0; i--)
            json_array_append_new(a, random_value(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (uint64_t i = next() % 5; i > 0; i--) {
            json_t *k = random_string(next() % 12);    /* NULs in keys too */
            json_object_setn_new(o, json_string_value(k), json_string_length(k), random_value(depth + 1));
            json_decref(k);
        }
        return o;
    }
    }
}

static void test_json_dump__generated_values(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        json_t *v = random_value(0);
        char what[32];
        snprintf(what, sizeof what, "generated value %d", i);
        same_dump(v, what);
        json_decref(v);
    }
    /* Every byte below 0x80 alone, escaped or not. */
    for (int c = 0; c < 0x80; c++) {
        char b = (char)c;
        json_t *s = json_stringn(&b, 1);
        same_dump(s, "one byte");
        json_decref(s);
    }
}

static void test_json_dump__depth_limit(void **state)
{
    (void)state;
    json_t *root = json_array(), *at = root;
    for (int i = 0; i < 5000; i++) {
        json_t *inner = json_array();
        json_array_append_new(at, inner);
        at = inner;
    }
    assert_null(srv__json_dump(root, NULL));    /* refused, not a stack overflow */
    json_decref(root);
    assert_null(srv__json_dump(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_dump__shared_datasets),
        cmocka_unit_test(test_json_dump__generated_values),
        cmocka_unit_test(test_json_dump__depth_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
