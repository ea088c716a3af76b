/*
 * Tests for procedural environments (lua/generate.c, lua/challenge.c,
 * lua/curriculum.c and the envs/gen_*.lua families): strict item ids,
 * determinism across calls, pool states, environments and threads; every
 * family's verifier accepts the generator's own solution and rejects perturbed
 * and malformed answers (with 0, never an error); SAT accepts other satisfying
 * assignments; the worked example of docs/challenges.md; and a curriculum
 * that settles where a simulated solver of known skill solves at the target.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/lenv.h"

static const char *src_dir(void)
{
    const char *d = getenv("ENVSRV_SRC");
    return d && *d ? d : ".";
}

static const char *const FAMILIES[] = {
    "gen-arithmetic", "gen-countdown", "gen-sat",    "gen-sort",
    "gen-shortest_path", "gen-base",  "gen-modular", "gen-linear",
    "gen-sudoku",     "gen-cryptarithm", "gen-word_problems", "gen-strings",
};
#define N_FAMILIES (sizeof FAMILIES / sizeof FAMILIES[0])
#define SEEDS_PER_LEVEL 50

/* ---- helpers ------------------------------------------------------------------ */

static lenv_env *open_env(const char *name, size_t n_states)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = name;
    o.n_states = n_states;
    if (lenv_open(&env, &o, &err) != LENV_OK)
        fail_msg("lenv_open(%s): %s", name, err.message);
    return env;
}

static json_t *get_item(lenv_env *env, const char *id)
{
    json_t *item = NULL;
    lenv_error err;
    if (lenv_item_get(&item, env, id, &err) != LENV_OK)
        fail_msg("lenv_item_get(%s, %s): %s", lenv_name(env), id, err.message);
    return item;
}

/* Compact JSON of an item and of its view with the answer: what must never vary. */
static char *item_text(lenv_env *env, const char *id)
{
    json_t *item = get_item(env, id), *view = NULL;
    lenv_error err;
    if (lenv_item_view(&view, env, item, 1, &err) != LENV_OK)
        fail_msg("lenv_item_view(%s): %s", id, err.message);
    json_t *both = json_pack("{s:o, s:o}", "item", item, "view", view);
    char *s = json_dumps(both, JSON_COMPACT);
    json_decref(both);
    assert_non_null(s);
    return s;
}

/* Rewards of completions of one item (fails the test on any error). */
static void score(double *rewards, lenv_env *env, const json_t *item, const char *const *c,
                  size_t n)
{
    json_t *out = NULL;
    lenv_error err;
    if (lenv_score(&out, env, item, c, NULL, n, &err) != LENV_OK)
        fail_msg("lenv_score(%s, %s): %s", lenv_name(env),
                 json_string_value(json_object_get(item, "id")), err.message);
    for (size_t i = 0; i < n; i++)
        rewards[i] = json_number_value(json_array_get(json_object_get(out, "rewards"), i));
    json_decref(out);
}

/* The solution with its last letter or digit changed: a digit goes to the next
 * (9 to 0), a letter to the next in the alphabet (z to a). */
static char *perturb(const char *solution)
{
    char *s = strdup(solution);
    assert_non_null(s);
    for (size_t i = strlen(s); i-- > 0;) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            s[i] = (char)(c == '9' ? '0' : c + 1);
            return s;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            s[i] = (char)(c == 'z' ? 'a' : c == 'Z' ? 'A' : c + 1);
            return s;
        }
    }
    fail_msg("solution '%s' has no letter or digit", solution);
    return s;
}

/* ---- ids, listing, describe -------------------------------------------------------- */

static void test_generators_list__every_family_builtin(void **state)
{
    (void)state;
    for (size_t f = 0; f < N_FAMILIES; f++) {
        int found = 0;
        for (size_t i = 0; i < lenv_builtin_count(); i++)
            found |= strcmp(lenv_builtin_name(i), FAMILIES[f]) == 0;
        if (!found)
            fail_msg("%s is not listed", FAMILIES[f]);
        lenv_env *env = open_env(FAMILIES[f], 1);
        assert_string_equal(lenv_name(env), FAMILIES[f]);
        int lo = -1, hi = -1;
        assert_true(lenv_is_generated(env, &lo, &hi));
        assert_int_equal(lo, 1);
        assert_true(hi >= 4);
        json_t *d = lenv_describe(env, 0);
        assert_true(json_is_true(json_object_get(d, "generated")));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "levels"), "max")), hi);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "curriculum"),
                                                             "level")), lo);
        json_decref(d);
        lenv_free(env);
    }
}

static void test_generators_ids__strict(void **state)
{
    (void)state;
    lenv_env *env = open_env("gen-arithmetic", 1); /* levels 1..8 */
    static const char *const bad[] = {
        "", "d", "d3", "d3-", "d3-s", "d03-s1", "d3-s01", "d-1-s5", "d+3-s5", "d3-s-5",
        "d3-s9223372036854775808", "d3-s99999999999999999999", "d3-s12x", "D3-s1", "d3_s1",
        "d9-s1", "d0-s1", "d1001-s1", "test-0", "d3-s1 ", " d3-s1", "d3-s1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *item = (json_t *)1;
        lenv_error err;
        assert_int_equal(lenv_item_get(&item, env, bad[i], &err), LENV_ENOTFOUND);
        assert_null(item);
        assert_non_null(strstr(err.message, "gen-arithmetic"));
    }
    json_t *item = get_item(env, "d8-s9223372036854775807");
    assert_string_equal(json_string_value(json_object_get(item, "id")), "d8-s9223372036854775807");
    json_decref(item);
    item = get_item(env, "d1-s0");
    json_decref(item);

    /* Procedural envs store nothing: lenv_item_find says where to go instead. */
    const json_t *found = (const json_t *)1;
    lenv_error err;
    assert_int_equal(lenv_item_find(&found, env, "d1-s0", &err), LENV_ENOTFOUND);
    assert_null(found);
    assert_non_null(strstr(err.message, "lenv_item_get"));
    lenv_free(env);

    /* Dataset envs: lenv_item_get gives a new reference to the stored record. */
    env = open_env("gsm8k", 1);
    assert_int_equal(lenv_item_find(&found, env, "test-0", &err), LENV_OK);
    item = get_item(env, "test-0");
    assert_ptr_equal(item, found);
    json_decref(item);
    assert_int_equal(lenv_item_get(&item, env, "d1-s0", &err), LENV_ENOTFOUND);
    assert_int_equal(lenv_is_generated(env, NULL, NULL), 0);
    lenv_free(env);
}

/* Opens a definition written to a temporary file; returns lenv_open's code. */
static int open_source(lenv_env **env, const char *src, lenv_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/envsrv-gen-%d.lua", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(src, f);
    fclose(f);
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = path;
    int rc = lenv_open(env, &o, err);
    unlink(path);
    return rc;
}

static void test_generators_definition__checked(void **state)
{
    (void)state;
#define BODY "prompt = function(i) return {{role='user', content='x'}} end, " \
             "reward = function() return 1 end"
    static const struct { const char *src; const char *msg; } bad[] = {
        {"return {name='g', dataset={test='x.jsonl'}, generate=function() return {} end, " BODY "}",
         "either 'dataset' or 'generate'"},
        {"return {name='g', levels={min=1, max=3}, " BODY "}", "'levels' needs 'generate'"},
        {"return {name='g', levels={min=3, max=1}, generate=function() return {} end, " BODY "}",
         "above levels.max"},
        {"return {name='g', levels={min=1, top=2}, generate=function() return {} end, " BODY "}",
         "unknown field 'top'"},
        {"return {name='g', levels={min=-1}, generate=function() return {} end, " BODY "}",
         "from 0 to 1000"},
        {"return {name='g', levels=5, generate=function() return {} end, " BODY "}",
         "'levels' must be a table"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lenv_env *env = NULL;
        lenv_error err;
        assert_int_equal(open_source(&env, bad[i].src, &err), LENV_EINVALID);
        if (strstr(err.message, bad[i].msg) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err.message, bad[i].msg);
    }
    /* generate() that fails or returns no table: a script error, not a crash. */
    static const char *const broken[] = {
        "return {name='g', generate=function(s, d) return 5 end, " BODY "}",
        "return {name='g', generate=function(s, d) return {1, 2} end, " BODY "}",
        "return {name='g', generate=function(s, d) error('boom') end, " BODY "}",
        "return {name='g', generate=function(s, d) while true do end end, " BODY "}",
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        lenv_env *env = NULL;
        lenv_error err;
        json_t *item = NULL, *items = NULL;
        assert_int_equal(open_source(&env, broken[i], &err), LENV_OK);
        assert_int_equal(lenv_item_get(&item, env, "d1-s1", &err), LENV_ESCRIPT);
        assert_null(item);
        assert_int_equal(lenv_sample(&items, env, NULL, 3, 1, &err), LENV_ESCRIPT);
        assert_null(items);
        lenv_free(env);
    }
#undef BODY
}

/* ---- determinism ----------------------------------------------------------------------- */

typedef struct det_worker {
    lenv_env *env;
    const char *const *ids;
    size_t n;
    char **out; /* n texts, owned by the test */
} det_worker;

static void *det_run(void *p)
{
    det_worker *w = p;
    for (size_t i = 0; i < w->n; i++)
        w->out[i] = item_text(w->env, w->ids[i]);
    return NULL;
}

static void test_generators_items__deterministic(void **state)
{
    (void)state;
    enum { N_IDS = 6, N_THREADS = 4 };
    for (size_t f = 0; f < N_FAMILIES; f++) {
        lenv_env *a = open_env(FAMILIES[f], 3), *b = open_env(FAMILIES[f], 1);
        int lo, hi;
        lenv_is_generated(a, &lo, &hi);
        char ids[N_IDS][40];
        const char *idp[N_IDS];
        for (int i = 0; i < N_IDS; i++) {
            snprintf(ids[i], sizeof ids[i], "d%d-s%d", lo + i % (hi - lo + 1), 1000 + 7919 * i);
            idp[i] = ids[i];
        }
        char *ref[N_IDS];
        for (int i = 0; i < N_IDS; i++) {
            ref[i] = item_text(b, idp[i]);
            char *again = item_text(b, idp[i]);
            assert_string_equal(ref[i], again);
            free(again);
        }
        /* Many threads over a pool of 3 states: every state serves some calls. */
        det_worker w[N_THREADS];
        pthread_t t[N_THREADS];
        char *outs[N_THREADS][N_IDS];
        for (int k = 0; k < N_THREADS; k++) {
            w[k] = (det_worker){a, idp, N_IDS, outs[k]};
            assert_int_equal(pthread_create(&t[k], NULL, det_run, &w[k]), 0);
        }
        for (int k = 0; k < N_THREADS; k++) {
            pthread_join(t[k], NULL);
            for (int i = 0; i < N_IDS; i++) {
                if (strcmp(outs[k][i], ref[i]) != 0)
                    fail_msg("%s %s differs across states:\n%s\n%s", FAMILIES[f], idp[i],
                             outs[k][i], ref[i]);
                free(outs[k][i]);
            }
        }
        /* Two items of different seeds differ (the seed is used). */
        assert_string_not_equal(ref[0], ref[N_IDS - 1]);
        for (int i = 0; i < N_IDS; i++)
            free(ref[i]);
        lenv_free(a);
        lenv_free(b);
    }
}

/* A golden item: generate() is a pure function of (family, difficulty, seed),
 * the same on every machine (the challenge example in docs/challenges.md pins
 * more of them). */
static void test_generators_items__golden(void **state)
{
    (void)state;
    lenv_env *env = open_env("gen-base", 1);
    json_t *item = get_item(env, "d1-s42");
    json_t *again = get_item(env, "d1-s42");
    char *s1 = json_dumps(item, JSON_COMPACT), *s2 = json_dumps(again, JSON_COMPACT);
    assert_string_equal(s1, s2);
    /* Keys come out sorted, whatever order Lua's table had. */
    const char *prev = "";
    const char *key;
    json_t *v;
    json_object_foreach(item, key, v) {
        assert_true(strcmp(prev, key) < 0);
        prev = key;
    }
    free(s1);
    free(s2);
    json_decref(item);
    json_decref(again);
    lenv_free(env);
}

/* ---- verifiers ------------------------------------------------------------------------- */

static const char *const MALFORMED[] = {
    "", "I do not know.", "ANSWER:", "ANSWER: ((((", "ANSWER: \x01\x02 ~~~ \xff\xfe",
    "ANSWER: -", "ANSWER: x=y=z, A=, 1 -1 1", "ANSWER: nil", "ANSWER: 1e400",
};
#define N_MALFORMED (sizeof MALFORMED / sizeof MALFORMED[0])

static void test_generators_reward__own_solution_perturbed_malformed(void **state)
{
    (void)state;
    char *long_digits = malloc(6000);
    assert_non_null(long_digits);
    memcpy(long_digits, "ANSWER: ", 8);
    memset(long_digits + 8, '9', 5990);
    long_digits[5998] = '\0';
    for (size_t f = 0; f < N_FAMILIES; f++) {
        lenv_env *env = open_env(FAMILIES[f], 1);
        int lo, hi;
        lenv_is_generated(env, &lo, &hi);
        size_t scored = 0;
        for (int level = lo; level <= hi; level++) {
            for (int s = 0; s < SEEDS_PER_LEVEL; s++) {
                char id[40];
                snprintf(id, sizeof id, "d%d-s%d", level, s * 104729 + level);
                json_t *item = get_item(env, id);
                const char *sol = json_string_value(json_object_get(item, "solution"));
                if (sol == NULL)
                    fail_msg("%s %s has no solution", FAMILIES[f], id);
                char *bad = perturb(sol), *good = NULL, *worse = NULL;
                assert_true(asprintf(&good, "Let me think.\nANSWER: %s", sol) > 0);
                assert_true(asprintf(&worse, "ANSWER: %s", bad) > 0);
                const char *c[2 + N_MALFORMED + 1] = {good, worse};
                for (size_t m = 0; m < N_MALFORMED; m++)
                    c[2 + m] = MALFORMED[m];
                c[2 + N_MALFORMED] = long_digits;
                double r[2 + N_MALFORMED + 1];
                score(r, env, item, c, 2 + N_MALFORMED + 1);
                if (r[0] != 1.0)
                    fail_msg("%s %s: own solution '%s' scored %g", FAMILIES[f], id, sol, r[0]);
                if (!(r[1] < 1.0 && r[1] >= 0.0))
                    fail_msg("%s %s: perturbed '%s' scored %g", FAMILIES[f], id, bad, r[1]);
                for (size_t m = 2; m < 2 + N_MALFORMED + 1; m++)
                    if (r[m] != 0.0)
                        fail_msg("%s %s: malformed answer %zu scored %g", FAMILIES[f], id, m - 2,
                                 r[m]);
                scored++;
                free(good);
                free(worse);
                free(bad);
                json_decref(item);
            }
        }
        assert_int_equal(scored, (size_t)(hi - lo + 1) * SEEDS_PER_LEVEL);
        lenv_free(env);
    }
    free(long_digits);
}

/* Any satisfying assignment earns 1, not just the planted one: find others by
 * brute force on small instances. */
static void test_generators_sat__alternative_assignments(void **state)
{
    (void)state;
    lenv_env *env = open_env("gen-sat", 1);
    int alternatives = 0;
    for (int s = 0; s < 40; s++) {
        char id[40];
        snprintf(id, sizeof id, "d1-s%d", s);
        json_t *item = get_item(env, id);
        int n = (int)json_integer_value(json_object_get(item, "variables"));
        const json_t *clauses = json_object_get(item, "clauses");
        const char *planted = json_string_value(json_object_get(item, "solution"));
        assert_int_equal(n, 5);
        unsigned planted_mask = 0;
        for (const char *p = planted; *p;) {
            long l = strtol(p, (char **)&p, 10);
            if (l > 0)
                planted_mask |= 1u << (l - 1);
        }
        for (unsigned mask = 0; mask < (1u << n); mask++) {
            size_t i;
            json_t *cl;
            int ok = 1;
            json_array_foreach(clauses, i, cl) {
                int sat = 0;
                for (size_t k = 0; k < json_array_size(cl); k++) {
                    json_int_t l = json_integer_value(json_array_get(cl, k));
                    int v = (int)(l < 0 ? -l : l);
                    sat |= ((mask >> (v - 1)) & 1u) == (l > 0 ? 1u : 0u);
                }
                ok &= sat;
            }
            char text[64] = "ANSWER:";
            for (int v = n; v >= 1; v--) /* any order of literals is fine */
                snprintf(text + strlen(text), sizeof text - strlen(text), " %s%d",
                         (mask >> (v - 1)) & 1u ? "" : "-", v);
            const char *c = text;
            double r;
            score(&r, env, item, &c, 1);
            if (ok) {
                assert_true(r == 1.0);
                alternatives += mask != planted_mask;
            } else {
                assert_true(r < 1.0);
            }
        }
        json_decref(item);
    }
    /* 40 instances of 5 variables have many more satisfying assignments than 40. */
    assert_true(alternatives > 40);
    lenv_free(env);
}

/* Sudoku: every valid completion earns 1, not just the generator's grid. A
 * plain backtracking search lists all completions of 4x4 puzzles. */
typedef struct sudoku {
    int g[16];
    int n_found, n_other;
    char first_other[64];
    const char *mine; /* the generator's grid, 16 digits */
} sudoku;

static int sudoku_ok(const int *g, int cell, int v)
{
    int r = cell / 4, c = cell % 4, br = r / 2 * 2, bc = c / 2 * 2;
    for (int k = 0; k < 4; k++)
        if (g[r * 4 + k] == v || g[k * 4 + c] == v || g[(br + k / 2) * 4 + bc + k % 2] == v)
            return 0;
    return 1;
}

static void sudoku_search(sudoku *s, int cell)
{
    if (cell == 16) {
        char text[17];
        for (int i = 0; i < 16; i++)
            text[i] = (char)('0' + s->g[i]);
        text[16] = '\0';
        s->n_found++;
        if (strcmp(text, s->mine) != 0 && s->n_other++ == 0)
            snprintf(s->first_other, sizeof s->first_other, "%.4s\n%.4s\n%.4s\n%.4s", text,
                     text + 4, text + 8, text + 12);
        return;
    }
    if (s->g[cell] != 0) {
        sudoku_search(s, cell + 1);
        return;
    }
    for (int v = 1; v <= 4; v++) {
        if (sudoku_ok(s->g, cell, v)) {
            s->g[cell] = v;
            sudoku_search(s, cell + 1);
            s->g[cell] = 0;
        }
    }
}

static void test_generators_sudoku__alternative_completions(void **state)
{
    (void)state;
    lenv_env *env = open_env("gen-sudoku", 1);
    int alternatives = 0;
    for (int seed = 0; seed < 60; seed++) {
        char id[40], mine[17] = "", text[96];
        snprintf(id, sizeof id, "d2-s%d", seed);
        json_t *item = get_item(env, id);
        const char *puzzle = json_string_value(json_object_get(item, "puzzle"));
        const char *sol = json_string_value(json_object_get(item, "solution"));
        sudoku s = {.mine = mine};
        for (int i = 0, k = 0; puzzle[i]; i++)
            if (puzzle[i] != '\n')
                s.g[k++] = puzzle[i] - '0';
        for (int i = 0, k = 0; sol[i]; i++)
            if (sol[i] != '\n')
                mine[k++] = sol[i];
        sudoku_search(&s, 0);
        assert_true(s.n_found >= 1); /* the generator's own grid, at least */
        if (s.n_other > 0) {
            snprintf(text, sizeof text, "ANSWER:\n%s", s.first_other);
            const char *c = text;
            double r;
            score(&r, env, item, &c, 1);
            if (r != 1.0)
                fail_msg("%s: valid completion\n%s\nscored %g", id, s.first_other, r);
            alternatives++;
        }
        json_decref(item);
    }
    assert_true(alternatives >= 3);
    lenv_free(env);
}

/* ---- sampling ------------------------------------------------------------------------- */

static void test_generators_sample__levels(void **state)
{
    (void)state;
    lenv_env *env = open_env("gen-sort", 2);
    json_t *a = NULL, *b = NULL, *c = NULL;
    lenv_error err;
    assert_int_equal(lenv_sample_level(&a, env, 3, 5, 77, &err), LENV_OK);
    assert_int_equal(lenv_sample_level(&b, env, 3, 5, 77, &err), LENV_OK);
    assert_true(json_equal(a, b));
    assert_int_equal(json_array_size(a), 5);
    for (size_t i = 0; i < 5; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(a, i), "id"));
        assert_true(strncmp(id, "d3-s", 4) == 0);
        assert_null(json_object_get(json_array_get(a, i), "answer"));
    }
    /* lenv_sample samples at the curriculum's level (the lowest at first). */
    assert_int_equal(lenv_sample(&c, env, NULL, 2, 77, &err), LENV_OK);
    assert_true(strncmp(json_string_value(json_object_get(json_array_get(c, 0), "id")), "d1-s", 4)
                == 0);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    assert_int_equal(lenv_sample(&c, env, "test", 2, 77, &err), LENV_ENOTFOUND);
    assert_int_equal(lenv_sample_level(&c, env, 7, 2, 77, &err), LENV_EINVALID);
    assert_int_equal(lenv_sample_level(&c, env, 0, 2, 77, &err), LENV_EINVALID);
    assert_int_equal(lenv_sample_level(&c, env, 1, LENV_MAX_SAMPLE + 1, 77, &err), LENV_ELIMIT);
    assert_int_equal(lenv_sample_level(&c, env, 1, 0, 77, &err), LENV_OK);
    assert_int_equal(json_array_size(c), 0);
    json_decref(c);
    lenv_free(env);
}

/* ---- challenges (docs/challenges.md) -------------------------------------------------- */

#define DOC_BEACON "8c1ee5a2d4b0f9e3a7c6b5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4"

static void test_generators_challenge__documented_example(void **state)
{
    (void)state;
    static const char *const want_ids[] = {
        "d4-s5619301359662159637", "d3-s1997533192999189535", "d3-s363517679474594721"};
    static const char want_prompt[] =
        "Compute the value of (29 * (30 - 40)) + (26 + 48). Show your work, then give the "
        "final answer on the last line as 'ANSWER: <integer>'.";
    /* The document says the same, byte for byte. */
    char path[512], *doc = NULL;
    size_t doc_len = 0;
    snprintf(path, sizeof path, "%s/docs/challenges.md", src_dir());
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (set ENVSRV_SRC to the source tree)", path);
    doc = calloc(1, 65536);
    assert_non_null(doc);
    doc_len = fread(doc, 1, 65535, f);
    fclose(f);
    assert_true(doc_len > 0);
    assert_non_null(strstr(doc, DOC_BEACON));
    for (size_t i = 0; i < 3; i++) {
        char cell[64];
        snprintf(cell, sizeof cell, "`%s` |", want_ids[i]);
        if (strstr(doc, cell) == NULL)
            fail_msg("docs/challenges.md does not list %s", want_ids[i]);
    }
    char block[512];
    snprintf(block, sizeof block, "```text\n%s\n```", want_prompt);
    assert_non_null(strstr(doc, block));
    assert_non_null(strstr(doc, "reference solution (`?include_answer=1`) is `-216`"));
    free(doc);
    lenv_env *env = open_env("gen-arithmetic", 2);
    json_t *out = NULL, *again = NULL;
    lenv_error err;
    assert_int_equal(lenv_challenge(&out, env, DOC_BEACON, 3, &err), LENV_OK);
    assert_int_equal(json_array_size(out), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(out, i), "id")),
                            want_ids[i]);
    const json_t *msg = json_array_get(json_object_get(json_array_get(out, 0), "prompt"), 0);
    assert_string_equal(json_string_value(json_object_get(msg, "content")), want_prompt);
    json_t *item = get_item(env, want_ids[0]);
    assert_string_equal(json_string_value(json_object_get(item, "solution")), "-216");
    json_decref(item);
    /* Upper-case hex is the same beacon; a longer challenge starts the same. */
    char upper[sizeof DOC_BEACON];
    for (size_t i = 0; i < sizeof DOC_BEACON; i++)
        upper[i] = (char)(DOC_BEACON[i] >= 'a' && DOC_BEACON[i] <= 'f' ? DOC_BEACON[i] - 32
                                                                        : DOC_BEACON[i]);
    assert_int_equal(lenv_challenge(&again, env, upper, 10, &err), LENV_OK);
    for (size_t i = 0; i < 3; i++)
        assert_true(json_equal(json_array_get(out, i), json_array_get(again, i)));
    json_decref(out);
    json_decref(again);
    lenv_free(env);
}

static void test_generators_challenge__bad_input(void **state)
{
    (void)state;
    lenv_env *env = open_env("gen-sat", 1);
    json_t *out = NULL;
    lenv_error err;
    static const char *const bad[] = {"", "a", "abc", "zz", "0x12", "12 34", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lenv_challenge(&out, env, bad[i], 1, &err), LENV_EINVALID);
        assert_null(out);
    }
    char big[1100];
    memset(big, 'a', 514);
    big[514] = '\0';
    assert_int_equal(lenv_challenge(&out, env, big, 1, &err), LENV_EINVALID);
    big[512] = '\0';
    assert_int_equal(lenv_challenge(&out, env, big, 1, &err), LENV_OK);
    json_decref(out);
    assert_int_equal(lenv_challenge(&out, env, "00", 0, &err), LENV_EINVALID);
    assert_int_equal(lenv_challenge(&out, env, "00", LENV_MAX_CHALLENGE + 1, &err), LENV_EINVALID);
    lenv_free(env);
    env = open_env("gsm8k", 1);
    assert_int_equal(lenv_challenge(&out, env, "00", 1, &err), LENV_EINVALID);
    lenv_free(env);
}

/* ---- curriculum ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A solver of known skill: level L (1..8) solved with probability p[L-1]. */
static const double SKILL[8] = {0.97, 0.92, 0.85, 0.72, 0.5, 0.3, 0.15, 0.05};

/* Runs `steps` results through env's curriculum; returns the share of the
 * last quarter of steps spent at `expect`. */
static double simulate(lenv_env *env, int steps, uint64_t seed, int expect)
{
    int at = 0;
    for (int i = 0; i < steps; i++) {
        int level = lenv_curriculum_level(env);
        char id[40];
        snprintf(id, sizeof id, "d%d-s%d", level, i);
        double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0;
        lenv_error err;
        assert_int_equal(lenv_curriculum_record(env, id, u < SKILL[level - 1] ? 1.0 : 0.0, &err),
                         LENV_OK);
        if (i >= steps - steps / 4)
            at += level == expect;
    }
    return (double)at / (steps / 4);
}

static void test_generators_curriculum__converges_to_target(void **state)
{
    (void)state;
    static const struct { double target; int level; } cases[] = {{0.5, 5}, {0.85, 3}, {0.3, 6}};
    for (size_t k = 0; k < 3; k++) {
        lenv_env *env = open_env("gen-arithmetic", 1);
        lenv_curriculum_options o = LENV_CURRICULUM_OPTIONS_INIT;
        lenv_error err;
        o.target = cases[k].target;
        assert_int_equal(lenv_curriculum_configure(env, &o, &err), LENV_OK);
        double share = simulate(env, 20000, 1234 + k, cases[k].level);
        if (share < 0.9)
            fail_msg("target %.2f: %.0f%% of the last steps at level %d (now %d)", o.target,
                     100 * share, cases[k].level, lenv_curriculum_level(env));
        json_t *st = lenv_curriculum_state(env);
        assert_int_equal(json_integer_value(json_object_get(st, "level")), cases[k].level);
        const json_t *lv = json_array_get(json_object_get(st, "levels"), cases[k].level - 1);
        double rate = json_number_value(json_object_get(lv, "solve_rate"));
        assert_true(rate > SKILL[cases[k].level - 1] - 0.12 && rate < SKILL[cases[k].level - 1] + 0.12);
        json_decref(st);
        lenv_free(env);
    }
}

static void test_generators_curriculum__save_load(void **state)
{
    (void)state;
    char path[64], other[64];
    snprintf(path, sizeof path, "/tmp/envsrv-curriculum-%d.json", (int)getpid());
    snprintf(other, sizeof other, "/tmp/envsrv-curriculum-%d-x.json", (int)getpid());
    lenv_env *a = open_env("gen-arithmetic", 1), *b = open_env("gen-arithmetic", 1);
    lenv_error err;
    simulate(a, 3000, 99, 5);
    assert_int_equal(lenv_curriculum_save(a, path, &err), LENV_OK);
    assert_int_equal(lenv_curriculum_load(b, path, &err), LENV_OK);
    json_t *sa = lenv_curriculum_state(a), *sb = lenv_curriculum_state(b);
    assert_true(json_equal(sa, sb));
    json_decref(sa);
    json_decref(sb);
    /* Both go on identically from the restored state. */
    simulate(a, 500, 7, 5);
    simulate(b, 500, 7, 5);
    sa = lenv_curriculum_state(a);
    sb = lenv_curriculum_state(b);
    assert_true(json_equal(sa, sb));
    json_decref(sa);

    /* Missing, malformed and foreign files leave the state as it was. */
    assert_int_equal(lenv_curriculum_load(b, "/tmp/envsrv-no-such-curriculum.json", &err),
                     LENV_ENOTFOUND);
    static const char *const bad[] = {
        "{", "[]", "{\"format\": \"envsrv-curriculum-1\"}",
        "{\"format\":\"envsrv-curriculum-1\",\"env\":\"gen-sat\",\"min\":1,\"max\":8,"
        "\"target\":0.5,\"window\":256,\"level\":1,\"since_move\":0,\"levels\":{}}",
        "{\"format\":\"envsrv-curriculum-1\",\"env\":\"gen-arithmetic\",\"min\":1,\"max\":8,"
        "\"target\":0.5,\"window\":4,\"level\":1,\"since_move\":0,\"levels\":{\"1\":[1,1,1,1,1]}}",
        "{\"format\":\"envsrv-curriculum-1\",\"env\":\"gen-arithmetic\",\"min\":1,\"max\":8,"
        "\"target\":0.5,\"window\":4,\"level\":1,\"since_move\":0,\"levels\":{\"9\":[1]}}",
        "{\"format\":\"envsrv-curriculum-1\",\"env\":\"gen-arithmetic\",\"min\":1,\"max\":8,"
        "\"target\":0.5,\"window\":4,\"level\":1,\"since_move\":0,\"levels\":{\"1\":[2]}}",
        "{\"format\":\"envsrv-curriculum-1\",\"env\":\"gen-arithmetic\",\"min\":1,\"max\":8,"
        "\"target\":1.5,\"window\":4,\"level\":1,\"since_move\":0,\"levels\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(other, "w");
        assert_non_null(f);
        fputs(bad[i], f);
        fclose(f);
        assert_int_equal(lenv_curriculum_load(b, other, &err), LENV_EIO);
        json_t *now = lenv_curriculum_state(b);
        assert_true(json_equal(now, sb));
        json_decref(now);
    }
    json_decref(sb);
    unlink(path);
    unlink(other);
    lenv_free(a);
    lenv_free(b);
}

static void test_generators_curriculum__options_and_ids(void **state)
{
    (void)state;
    lenv_curriculum_options o = LENV_CURRICULUM_OPTIONS_INIT;
    lenv_error err;
    assert_int_equal(lenv_curriculum_parse(&o, "target=0.7,window=64", &err), LENV_OK);
    assert_true(o.target == 0.7 && o.window == 64);
    assert_int_equal(lenv_curriculum_parse(&o, "window=8", &err), LENV_OK);
    assert_true(o.target == 0.7 && o.window == 8);
    static const char *const bad[] = {"target=1", "target=0", "target=x", "window=0",
                                      "window=-3", "window=70000", "speed=1", "target", ",",
                                      "target=0.5,", "target=0.5;window=3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lenv_curriculum_parse(&o, bad[i], &err), LENV_EINVALID);
        assert_true(o.target == 0.7 && o.window == 8);
    }
    lenv_env *env = open_env("gen-sudoku", 1);
    assert_int_equal(lenv_curriculum_record(env, "d9-s1", 1, &err), LENV_ENOTFOUND);
    assert_int_equal(lenv_curriculum_record(env, "test-1", 1, &err), LENV_ENOTFOUND);
    assert_int_equal(lenv_curriculum_record(env, NULL, 1, &err), LENV_ENOTFOUND);
    assert_int_equal(lenv_curriculum_record(env, "d1-s1", 0.0 / 0.0, &err), LENV_EINVALID);
    assert_int_equal(lenv_curriculum_record(env, "d1-s1", 7, &err), LENV_OK); /* clamped */
    json_t *st = lenv_curriculum_state(env);
    assert_true(json_number_value(json_object_get(json_array_get(json_object_get(st, "levels"), 0),
                                                  "solve_rate")) == 1.0);
    assert_true(json_is_null(json_object_get(json_array_get(json_object_get(st, "levels"), 1),
                                             "solve_rate")));
    json_decref(st);
    o.target = 2;
    assert_int_equal(lenv_curriculum_configure(env, &o, &err), LENV_EINVALID);
    lenv_free(env);
    env = open_env("gsm8k", 1);
    assert_int_equal(lenv_curriculum_record(env, "test-0", 1, &err), LENV_EINVALID);
    assert_int_equal(lenv_curriculum_level(env), 0);
    assert_null(lenv_curriculum_state(env));
    lenv_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generators_list__every_family_builtin),
        cmocka_unit_test(test_generators_ids__strict),
        cmocka_unit_test(test_generators_definition__checked),
        cmocka_unit_test(test_generators_items__deterministic),
        cmocka_unit_test(test_generators_items__golden),
        cmocka_unit_test(test_generators_reward__own_solution_perturbed_malformed),
        cmocka_unit_test(test_generators_sat__alternative_assignments),
        cmocka_unit_test(test_generators_sudoku__alternative_completions),
        cmocka_unit_test(test_generators_sample__levels),
        cmocka_unit_test(test_generators_challenge__documented_example),
        cmocka_unit_test(test_generators_challenge__bad_input),
        cmocka_unit_test(test_generators_curriculum__converges_to_target),
        cmocka_unit_test(test_generators_curriculum__save_load),
        cmocka_unit_test(test_generators_curriculum__options_and_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
