/*
 * Tests for lua/: the built-in GSM8K environment end to end (open, describe,
 * items, views, sampling, scoring, episodes), --data overrides, the real
 * GSM8K files (skipped when $ENVSRV_DATA is absent), the pool under threads,
 * the worked example of docs/lua-envs.md, and the arithmetic of the sample
 * data written for this project.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua/lenv.h"

/* ---- helpers ------------------------------------------------------------------ */

static const char *data_dir(void)
{
    const char *d = getenv("ENVSRV_DATA");
    return d && *d ? d : "../shared/data";
}

static const char *src_dir(void)
{
    const char *d = getenv("ENVSRV_SRC");
    return d && *d ? d : ".";
}

static lenv_env *open_env(const char *name, size_t n_states)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = name;
    o.n_states = n_states;
    int rc = lenv_open(&env, &o, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_open(%s): %d %s", name, rc, err.message);
    return env;
}

static int setup_gsm8k(void **state)
{
    *state = open_env("gsm8k", 2);
    return 0;
}

static int teardown_env(void **state)
{
    lenv_free(*state);
    return 0;
}

static const json_t *find(lenv_env *env, const char *id)
{
    const json_t *item = NULL;
    lenv_error err;
    if (lenv_item_find(&item, env, id, &err) != LENV_OK)
        fail_msg("lenv_item_find(%s): %s", id, err.message);
    return item;
}

/* Scores one completion; returns the reward and, if wanted, the details. */
static double score1(lenv_env *env, const json_t *item, const char *completion, json_t **details)
{
    json_t *out = NULL;
    lenv_error err;
    int rc = lenv_score(&out, env, item, &completion, NULL, 1, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_score: %d %s", rc, err.message);
    double r = json_real_value(json_array_get(json_object_get(out, "rewards"), 0));
    if (details)
        *details = json_incref(json_array_get(json_object_get(out, "details"), 0));
    json_decref(out);
    return r;
}

/* ---- open, describe, find -------------------------------------------------------- */

static void test_lenv_open__builtin(void **state)
{
    lenv_env *env = *state;
    assert_string_equal(lenv_name(env), "gsm8k");
    assert_non_null(strstr(lenv_description(env), "math"));
    assert_int_equal(strlen(lenv_version(env)), 16);
    assert_int_equal(strlen(lenv_dataset_hash(env)), 16);
    for (const char *p = lenv_version(env); *p; p++)
        assert_true(isxdigit((unsigned char)*p));
    assert_int_equal(lenv_is_multi_turn(env), 0);
    assert_true(lenv_builtin_count() >= 1);
    int found = 0;
    for (size_t i = 0; i < lenv_builtin_count(); i++)
        found |= strcmp(lenv_builtin_name(i), "gsm8k") == 0;
    assert_true(found);
    assert_null(lenv_builtin_name(lenv_builtin_count()));
}

static void test_lenv_open__same_version_twice(void **state)
{
    lenv_env *again = open_env("gsm8k", 1);
    assert_string_equal(lenv_version(again), lenv_version(*state));
    assert_string_equal(lenv_dataset_hash(again), lenv_dataset_hash(*state));
    lenv_free(again);
    lenv_free(NULL);
}

static void test_lenv_open__unknown_env(void **state)
{
    (void)state;
    const char *names[] = {"gsm9k", "GSM8K", "", "../etc/passwd.lua", "no/such/file.lua"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        lenv_options o = LENV_OPTIONS_INIT;
        lenv_error err;
        lenv_env *env = (lenv_env *)1;
        o.name_or_path = names[i];
        int rc = lenv_open(&env, &o, &err);
        assert_null(env);
        assert_int_not_equal(rc, LENV_OK);
        assert_int_equal(err.code, rc);
        assert_true(strlen(err.message) > 0);
    }
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env;
    o.name_or_path = "gsm9k";
    assert_int_equal(lenv_open(&env, &o, &err), LENV_ENOTFOUND);
    /* The message lists every built-in env, so a user sees what exists. */
    const char *want = "unknown environment 'gsm9k' (built-in: ";
    assert_memory_equal(err.message, want, strlen(want));
    assert_non_null(strstr(err.message, "gsm8k"));
    o.name_or_path = "no/such/file.lua";
    assert_int_equal(lenv_open(&env, &o, &err), LENV_EIO);
    assert_non_null(strstr(err.message, "no/such/file.lua"));
    assert_int_equal(lenv_open(&env, NULL, &err), LENV_EINVALID);
}

static void test_lenv_describe__gsm8k(void **state)
{
    json_t *d = lenv_describe(*state, 1);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "name")), "gsm8k");
    assert_string_equal(json_string_value(json_object_get(d, "version")), lenv_version(*state));
    assert_string_equal(json_string_value(json_object_get(d, "dataset_hash")),
                        lenv_dataset_hash(*state));
    assert_true(json_is_false(json_object_get(d, "multi_turn")));
    json_t *splits = json_object_get(d, "splits");
    assert_true(json_integer_value(json_object_get(splits, "test")) >= 30);
    assert_true(json_integer_value(json_object_get(splits, "train")) >= 5);
    assert_true(json_is_object(json_object_get(d, "params")));
    json_decref(d);
    d = lenv_describe(*state, 0);
    assert_null(json_object_get(d, "params"));
    json_decref(d);
}

static void test_lenv_item_find__ids(void **state)
{
    lenv_env *env = *state;
    const json_t *item = find(env, "test-0");
    assert_string_equal(json_string_value(json_object_get(item, "id")), "test-0");
    assert_non_null(strstr(json_string_value(json_object_get(item, "question")), "Mara"));
    item = find(env, "train-3");
    assert_string_equal(json_string_value(json_object_get(item, "id")), "train-3");

    lenv_error err;
    const json_t *none = (const json_t *)1;
    assert_int_equal(lenv_item_find(&none, env, "test-9999", &err), LENV_ENOTFOUND);
    assert_null(none);
    assert_string_equal(err.message, "unknown item 'test-9999' in environment 'gsm8k'");
    assert_int_equal(lenv_item_find(&none, env, "", &err), LENV_ENOTFOUND);
    assert_int_equal(lenv_item_find(&none, env, NULL, &err), LENV_ENOTFOUND);
}

/* ---- item views ------------------------------------------------------------------------ */

static void test_lenv_item_view__without_answer(void **state)
{
    lenv_env *env = *state;
    const json_t *item = find(env, "test-1");
    json_t *v = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_view(&v, env, item, 0, &err), LENV_OK);
    assert_string_equal(json_string_value(json_object_get(v, "id")), "test-1");
    json_t *prompt = json_object_get(v, "prompt");
    assert_int_equal(json_array_size(prompt), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(prompt, 0), "role")),
                        "system");
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(prompt, 0),
                                                             "content")), "####"));
    json_t *user = json_array_get(prompt, 1);
    assert_string_equal(json_string_value(json_object_get(user, "role")), "user");
    assert_string_equal(json_string_value(json_object_get(user, "content")),
                        json_string_value(json_object_get(item, "question")));
    assert_true(json_is_object(json_object_get(v, "metadata")));
    assert_null(json_object_get(v, "answer"));
    json_decref(v);
}

static void test_lenv_item_view__with_answer(void **state)
{
    lenv_env *env = *state;
    const json_t *item = find(env, "test-1");
    json_t *v = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_view(&v, env, item, 1, &err), LENV_OK);
    assert_string_equal(json_string_value(json_object_get(v, "answer")),
                        json_string_value(json_object_get(item, "answer")));
    json_decref(v);
}

static void test_lenv_item_view__inline(void **state)
{
    lenv_env *env = *state;
    json_t *item = json_pack("{s:s, s:s}", "question", "What is 2+2?", "answer", "#### 4");
    json_t *v = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_view(&v, env, item, 1, &err), LENV_OK);
    assert_string_equal(json_string_value(json_object_get(v, "id")), "inline");
    assert_string_equal(json_string_value(json_object_get(v, "answer")), "#### 4");
    json_decref(v);
    json_object_set_new(item, "id", json_string("mine-1"));
    assert_int_equal(lenv_item_view(&v, env, item, 0, &err), LENV_OK);
    assert_string_equal(json_string_value(json_object_get(v, "id")), "mine-1");
    json_decref(v);
    json_decref(item);

    /* Not an object, or absurdly deep: the caller's fault. */
    json_t *arr = json_array();
    assert_int_equal(lenv_item_view(&v, env, arr, 0, &err), LENV_EINVALID);
    assert_null(v);
    json_t *deep = json_object(), *cur = deep;
    for (int i = 0; i < 100; i++) {
        json_t *next = json_object();
        json_object_set_new(cur, "x", next);
        cur = next;
    }
    assert_int_equal(lenv_item_view(&v, env, deep, 0, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "deeper"));
    json_decref(deep);
    json_decref(arr);
}

/* ---- sampling ----------------------------------------------------------------------------- */

static json_t *sample(lenv_env *env, const char *split, size_t n, uint64_t seed)
{
    json_t *out = NULL;
    lenv_error err;
    int rc = lenv_sample(&out, env, split, n, seed, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_sample: %d %s", rc, err.message);
    return out;
}

static char *ids_of(const json_t *views)
{
    size_t i, used = 0;
    json_t *v;
    char *s = calloc(1, 8192);
    json_array_foreach(views, i, v)
        used += (size_t)snprintf(s + used, 8192 - used, "%s,",
                                 json_string_value(json_object_get(v, "id")));
    return s;
}

/* The algorithm documented in lenv_sample, written again from the comment. */
static void reference_sample(size_t *out, size_t total, size_t n, uint64_t seed)
{
    size_t *idx = malloc(total * sizeof *idx);
    for (size_t i = 0; i < total; i++)
        idx[i] = i;
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s += 0x9e3779b97f4a7c15ULL;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        size_t j = i + (size_t)(z % (total - i));
        size_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        out[i] = idx[i];
    }
    free(idx);
}

static void test_lenv_sample__deterministic(void **state)
{
    lenv_env *env = *state;
    json_t *a = sample(env, NULL, 10, 42), *b = sample(env, "test", 10, 42);
    json_t *c = sample(env, NULL, 10, 43);
    char *ia = ids_of(a), *ib = ids_of(b), *ic = ids_of(c);
    assert_string_equal(ia, ib);
    assert_string_not_equal(ia, ic);
    assert_true(json_equal(a, b));

    /* The documented algorithm gives exactly these items. */
    size_t want[10];
    reference_sample(want, 36, 10, 42);
    for (size_t i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "test-%zu", want[i]);
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, i), "id")), id);
        /* Views carry prompts but never answers. */
        assert_non_null(json_object_get(json_array_get(a, i), "prompt"));
        assert_null(json_object_get(json_array_get(a, i), "answer"));
    }
    free(ia);
    free(ib);
    free(ic);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void test_lenv_sample__whole_split_is_a_permutation(void **state)
{
    lenv_env *env = *state;
    json_t *all = sample(env, "train", 10, 7);
    int seen[10] = {0};
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v) {
        int k = atoi(json_string_value(json_object_get(v, "id")) + strlen("train-"));
        assert_true(k >= 0 && k < 10);
        seen[k]++;
    }
    for (int k = 0; k < 10; k++)
        assert_int_equal(seen[k], 1);
    json_decref(all);
    json_t *none = sample(env, "train", 0, 7);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
}

static void test_lenv_sample__errors(void **state)
{
    lenv_env *env = *state;
    json_t *out = NULL;
    lenv_error err;
    assert_int_equal(lenv_sample(&out, env, "test", 1000, 1, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "cannot sample 1000"));
    assert_int_equal(lenv_sample(&out, env, "dev", 1, 1, &err), LENV_ENOTFOUND);
    assert_string_equal(err.message,
                        "unknown split 'dev' in environment 'gsm8k' (splits: test, train)");
    assert_int_equal(lenv_sample(&out, env, NULL, LENV_MAX_SAMPLE + 1, 1, &err), LENV_ELIMIT);
    assert_null(out);
}

/* ---- scoring -------------------------------------------------------------------------------- */

static void test_lenv_score__correct_incorrect_none(void **state)
{
    lenv_env *env = *state;
    const json_t *item = find(env, "test-0"); /* answer 47 */
    json_t *d = NULL;
    assert_true(score1(env, item, "4*18 = 72, 72 - 25 = 47\n#### 47", &d) == 1.0);
    assert_string_equal(json_string_value(json_object_get(d, "source")), "hashes");
    assert_string_equal(json_string_value(json_object_get(d, "value")), "47");
    assert_string_equal(json_string_value(json_object_get(d, "extracted")), "47");
    assert_string_equal(json_string_value(json_object_get(d, "expected")), "47");
    json_decref(d);

    assert_true(score1(env, item, "The answer is \\boxed{47}.", &d) == 1.0);
    assert_string_equal(json_string_value(json_object_get(d, "source")), "boxed");
    json_decref(d);

    assert_true(score1(env, item, "#### 48", &d) == 0.0);
    assert_string_equal(json_string_value(json_object_get(d, "value")), "48");
    json_decref(d);

    assert_true(score1(env, item, "I do not know.", &d) == 0.0);
    assert_string_equal(json_string_value(json_object_get(d, "source")), "none");
    assert_null(json_object_get(d, "extracted"));
    assert_null(json_object_get(d, "value"));
    json_decref(d);

    assert_true(score1(env, item, "", NULL) == 0.0);
}

static void test_lenv_score__batch_and_limits(void **state)
{
    lenv_env *env = *state;
    const json_t *item = find(env, "test-0");
    const char *c[3] = {"#### 47", "#### 46", "47 cookies"};
    size_t lens[3] = {7, 7, 2}; /* the third is just "47" */
    json_t *out = NULL;
    lenv_error err;
    assert_int_equal(lenv_score(&out, env, item, c, lens, 3, &err), LENV_OK);
    json_t *r = json_object_get(out, "rewards");
    assert_int_equal(json_array_size(r), 3);
    assert_true(json_real_value(json_array_get(r, 0)) == 1.0);
    assert_true(json_real_value(json_array_get(r, 1)) == 0.0);
    assert_true(json_real_value(json_array_get(r, 2)) == 1.0);
    assert_int_equal(json_array_size(json_object_get(out, "details")), 3);
    json_decref(out);

    assert_int_equal(lenv_score(&out, env, item, c, lens, 0, &err), LENV_OK);
    assert_int_equal(json_array_size(json_object_get(out, "rewards")), 0);
    json_decref(out);

    assert_int_equal(lenv_score(&out, env, item, c, NULL, LENV_MAX_COMPLETIONS + 1, &err),
                     LENV_ELIMIT);
    assert_null(out);

    /* A reference with no number is bad data: the env's call fails. */
    json_t *bad = json_pack("{s:s, s:s}", "question", "q", "answer", "no number here");
    assert_int_equal(lenv_score(&out, env, bad, c, NULL, 1, &err), LENV_ESCRIPT);
    assert_string_equal(err.source, "envs/gsm8k.lua");
    assert_true(err.line > 0);
    assert_non_null(strstr(err.message, "reference answer has no number"));
    json_decref(bad);
}

static void test_lenv_episode__single_turn(void **state)
{
    lenv_env *env = *state;
    const json_t *item = find(env, "test-0");
    json_t *obs = NULL, *st = NULL, *res = NULL;
    lenv_error err;
    assert_int_equal(lenv_reset(&obs, &st, env, item, &err), LENV_OK);
    assert_int_equal(json_array_size(obs), 2);
    assert_true(json_is_object(st));
    assert_int_equal(lenv_step(&res, &st, env, item, "#### 47", 7, &err), LENV_OK);
    assert_true(json_real_value(json_object_get(res, "reward")) == 1.0);
    assert_true(json_is_true(json_object_get(res, "done")));
    assert_int_equal(json_array_size(json_object_get(res, "observation")), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "info"), "source")),
                        "hashes");
    json_decref(obs);
    json_decref(st);
    json_decref(res);
}

/* ---- the pool under threads ---------------------------------------------------------------- */

typedef struct worker {
    lenv_env *env;
    const json_t *item;
    int ok;
} worker;

static void *score_worker(void *arg)
{
    worker *w = arg;
    const char *c[2] = {"so #### 47", "so #### 7"};
    w->ok = 1;
    for (int i = 0; i < 200; i++) {
        json_t *out = NULL;
        lenv_error err;
        if (lenv_score(&out, w->env, w->item, c, NULL, 2, &err) != LENV_OK) {
            w->ok = 0;
            break;
        }
        json_t *r = json_object_get(out, "rewards");
        if (json_real_value(json_array_get(r, 0)) != 1.0 || json_real_value(json_array_get(r, 1)) != 0.0)
            w->ok = 0;
        json_decref(out);
    }
    return NULL;
}

static void test_lenv_score__threads_share_the_pool(void **state)
{
    lenv_env *env = *state; /* 2 states, 4 threads: some wait for a state */
    worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){env, find(env, "test-0"), 0};
        assert_int_equal(pthread_create(&t[i], NULL, score_worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(w[i].ok);
    }
}

/* ---- --data overrides and the real GSM8K files ----------------------------------------------- */

static int have_real_data(char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/gsm8k", data_dir());
    char test[600];
    snprintf(test, sizeof test, "%s/test.jsonl", dir);
    return access(test, R_OK) == 0;
}

static void test_lenv_data__real_gsm8k_scores_one(void **state)
{
    (void)state;
    char dir[512];
    if (!have_real_data(dir, sizeof dir)) {
        fprintf(stderr, "skipping: %s/test.jsonl not found (set ENVSRV_DATA)\n", dir);
        skip();
    }
    lenv_data_source src = {NULL, dir};
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = "gsm8k";
    o.data = &src;
    o.n_data = 1;
    if (lenv_open(&env, &o, &err) != LENV_OK)
        fail_msg("open with --data: %s", err.message);
    json_t *d = lenv_describe(env, 0);
    json_t *splits = json_object_get(d, "splits");
    assert_int_equal(json_object_size(splits), 2);
    assert_int_equal(json_integer_value(json_object_get(splits, "train")), 7473);
    assert_int_equal(json_integer_value(json_object_get(splits, "test")), 1319);
    json_decref(d);

    lenv_env *builtin = open_env("gsm8k", 1);
    assert_string_not_equal(lenv_version(env), lenv_version(builtin));
    assert_string_not_equal(lenv_dataset_hash(env), lenv_dataset_hash(builtin));
    lenv_free(builtin);

    /* Every reference answer scores 1 as a completion of its own item. Each
     * call is a group of 64 completions of one item: the reference solution
     * and its final number written as \\boxed{N}, alternating. */
    size_t total = 1319, ones = 0;
    for (size_t i = 0; i < total; i++) {
        char id[32], boxed[128];
        snprintf(id, sizeof id, "test-%zu", i);
        const json_t *item = find(env, id);
        const char *answer = json_string_value(json_object_get(item, "answer"));
        const char *hashes = strstr(answer, "####");
        assert_non_null(hashes);
        snprintf(boxed, sizeof boxed, "So the answer is \\boxed{%s}.", hashes + 5);
        const char *group[64];
        for (size_t j = 0; j < 64; j++)
            group[j] = j % 2 ? boxed : answer;
        json_t *out = NULL;
        if (lenv_score(&out, env, item, group, NULL, 64, &err) != LENV_OK)
            fail_msg("score %s: %s", id, err.message);
        size_t j;
        json_t *r;
        json_array_foreach(json_object_get(out, "rewards"), j, r)
            if (json_real_value(r) != 1.0)
                fail_msg("item %s completion %zu: reference scored %g", id, j, json_real_value(r));
        ones += json_array_size(json_object_get(out, "rewards")) == 64;
        json_decref(out);
    }
    assert_int_equal(ones, total);
    lenv_free(env);
}

static void test_lenv_data__overrides(void **state)
{
    (void)state;
    char dir[] = "/tmp/lenv_data_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p1[128], p2[128], p3[128], sub[128];
    snprintf(p1, sizeof p1, "%s/my_train_set.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/dev.jsonl", dir);
    snprintf(p3, sizeof p3, "%s/bad.jsonl", dir);
    snprintf(sub, sizeof sub, "%s/empty", dir);
    FILE *f = fopen(p1, "w");
    fputs("{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n\n", f);
    fclose(f);
    f = fopen(p2, "w");
    fputs("{\"question\": \"2+2?\", \"answer\": \"#### 4\"}\n{\"question\": \"3+3?\", \"answer\": \"#### 6\"}", f);
    fclose(f);
    f = fopen(p3, "w");
    fputs("{\"question\": \"ok\", \"answer\": \"#### 1\"}\n\n{\"question\": \"x\",, }\n", f);
    fclose(f);
    mkdir(sub, 0700);

    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = "gsm8k";

    /* Inferred names: "train" from the name, else the stem. */
    lenv_data_source two[2] = {{NULL, p1}, {NULL, p2}};
    o.data = two;
    o.n_data = 2;
    assert_int_equal(lenv_open(&env, &o, &err), LENV_OK);
    json_t *d = lenv_describe(env, 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "splits"), "train")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "splits"), "dev")), 2);
    json_decref(d);
    /* The definition's default split (test) is gone: the first split is used. */
    json_t *s = sample(env, NULL, 2, 1);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(s, 0), "id")), "dev-"));
    json_decref(s);
    lenv_free(env);

    /* Explicit split names; the same name twice is refused. */
    lenv_data_source named[2] = {{"test", p2}, {"test", p1}};
    o.data = named;
    o.n_data = 1;
    assert_int_equal(lenv_open(&env, &o, &err), LENV_OK);
    assert_non_null(find(env, "test-1"));
    lenv_free(env);
    o.n_data = 2;
    assert_int_equal(lenv_open(&env, &o, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "split 'test' is given twice"));

    /* A malformed line names the file, the line and the column. */
    lenv_data_source bad = {NULL, p3};
    o.data = &bad;
    o.n_data = 1;
    assert_int_equal(lenv_open(&env, &o, &err), LENV_EIO);
    char want[256];
    snprintf(want, sizeof want, "data file '%s' line 3: ", p3);
    if (strncmp(err.message, want, strlen(want)) != 0 || !strstr(err.message, "at column"))
        fail_msg("got: %s", err.message);

    /* Missing files and directories without JSONL. */
    lenv_data_source missing = {NULL, "/nonexistent/x.jsonl"};
    o.data = &missing;
    assert_int_equal(lenv_open(&env, &o, &err), LENV_EIO);
    lenv_data_source empty = {NULL, sub};
    o.data = &empty;
    assert_int_equal(lenv_open(&env, &o, &err), LENV_EIO);
    assert_non_null(strstr(err.message, "no *.jsonl"));

    unlink(p1);
    unlink(p2);
    unlink(p3);
    rmdir(sub);
    rmdir(dir);
}

/* ---- the worked example of docs/lua-envs.md ---------------------------------------------------- */

static void test_lenv_example__capitals(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/examples/envs/capitals.lua", src_dir());
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "skipping: %s not found (set ENVSRV_SRC)\n", path);
        skip();
    }
    lenv_env *env = open_env(path, 1);
    assert_string_equal(lenv_name(env), "capitals");
    json_t *s = sample(env, NULL, 3, 1);
    assert_int_equal(json_array_size(s), 3);
    json_decref(s);
    const json_t *item = find(env, "france");
    assert_true(score1(env, item, "The capital of France is Paris.", NULL) == 1.0);
    assert_true(score1(env, item, "It is Lyon.", NULL) == 0.0);
    lenv_free(env);
}

/* ---- the sample data's arithmetic ---------------------------------------------------------------- */

/* A tiny exact evaluator for <<expr=result>>: + - * / ( ), decimals, unary
 * minus, over rationals num/den kept in long double-free integers. */
typedef struct rat {
    long long n, d;
} rat;

static long long gcdll(long long a, long long b)
{
    if (a < 0)
        a = -a;
    if (b < 0)
        b = -b;
    while (b) {
        long long t = a % b;
        a = b;
        b = t;
    }
    return a ? a : 1;
}

static rat mk(long long n, long long d)
{
    if (d < 0) {
        n = -n;
        d = -d;
    }
    long long g = gcdll(n, d);
    return (rat){n / g, d / g};
}

static const char *ep;
static int ebad;
static rat e_sum(void);

static void skip_ws(void)
{
    while (*ep == ' ')
        ep++;
}

static rat e_atom(void)
{
    skip_ws();
    if (*ep == '-') {
        ep++;
        rat r = e_atom();
        return mk(-r.n, r.d);
    }
    if (*ep == '(') {
        ep++;
        rat r = e_sum();
        skip_ws();
        if (*ep++ != ')')
            ebad = 1;
        return r;
    }
    if (!isdigit((unsigned char)*ep)) {
        ebad = 1;
        return mk(0, 1);
    }
    long long n = 0, d = 1;
    while (isdigit((unsigned char)*ep) || *ep == ',')
        if (*ep++ != ',')
            n = n * 10 + (ep[-1] - '0');
    if (*ep == '.') {
        ep++;
        while (isdigit((unsigned char)*ep)) {
            n = n * 10 + (*ep++ - '0');
            d *= 10;
        }
    }
    return mk(n, d);
}

static rat e_prod(void)
{
    rat r = e_atom();
    for (;;) {
        skip_ws();
        if (*ep == '*') {
            ep++;
            rat b = e_atom();
            r = mk(r.n * b.n, r.d * b.d);
        } else if (*ep == '/') {
            ep++;
            rat b = e_atom();
            if (b.n == 0) {
                ebad = 1;
                return r;
            }
            r = mk(r.n * b.d, r.d * b.n);
        } else {
            return r;
        }
    }
}

static rat e_sum(void)
{
    rat r = e_prod();
    for (;;) {
        skip_ws();
        if (*ep == '+' || *ep == '-') {
            int minus = *ep++ == '-';
            rat b = e_prod();
            r = mk(r.n * b.d + (minus ? -b.n : b.n) * r.d, r.d * b.d);
        } else {
            return r;
        }
    }
}

static rat eval_text(const char *s, size_t len, int *ok)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)len, s);
    ep = buf;
    ebad = 0;
    rat r = e_sum();
    skip_ws();
    *ok = !ebad && *ep == '\0';
    return r;
}

static void check_sample_file(const char *name, size_t min_records)
{
    const lenv_embedded_file *f = NULL;
    for (const lenv_embedded_file *e = lenv_embedded_files; e->name; e++)
        if (strcmp(e->name, name) == 0)
            f = e;
    if (f == NULL)
        fail_msg("%s is not embedded", name);
    size_t records = 0, annotations = 0;
    const char *p = (const char *)f->data, *end = p + f->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_error_t jerr;
        json_t *rec = json_loadb(p, len, 0, &jerr);
        if (rec == NULL)
            fail_msg("%s line %zu: %s", name, records + 1, jerr.text);
        records++;
        const char *q = json_string_value(json_object_get(rec, "question"));
        const char *a = json_string_value(json_object_get(rec, "answer"));
        assert_non_null(q);
        assert_non_null(a);
        rat last = {0, 0};
        for (const char *s = strstr(a, "<<"); s; s = strstr(s, "<<")) {
            const char *close = strstr(s, ">>");
            const char *eq = memchr(s, '=', close ? (size_t)(close - s) : 0);
            if (!close || !eq)
                fail_msg("%s record %zu: malformed annotation", name, records);
            int ok1, ok2;
            rat lhs = eval_text(s + 2, (size_t)(eq - s - 2), &ok1);
            rat rhs = eval_text(eq + 1, (size_t)(close - eq - 1), &ok2);
            if (!ok1 || !ok2 || lhs.n != rhs.n || lhs.d != rhs.d)
                fail_msg("%s record %zu: <<%.*s>> is wrong (%lld/%lld)", name, records,
                         (int)(close - s - 2), s + 2, lhs.n, lhs.d);
            /* The text right after the annotation repeats the result. */
            int ok3;
            const char *after = close + 2;
            size_t k = 0;
            while (isdigit((unsigned char)after[k]) || after[k] == '.' || after[k] == '-')
                k++;
            while (k > 0 && after[k - 1] == '.')
                k--;
            rat shown = eval_text(after, k, &ok3);
            if (!ok3 || shown.n * rhs.d != rhs.n * shown.d)
                fail_msg("%s record %zu: text after <<%.*s>> does not repeat the result", name,
                         records, (int)(close - s - 2), s + 2);
            last = rhs;
            annotations++;
            s = close;
        }
        const char *h = strstr(a, "\n#### ");
        assert_non_null(h);
        int ok;
        rat fin = eval_text(h + 6, strlen(h + 6), &ok);
        assert_true(ok);
        if (last.d == 0 || fin.n != last.n || fin.d != last.d)
            fail_msg("%s record %zu: #### %s is not the last annotation's result", name, records,
                     h + 6);
        json_decref(rec);
        p += len + (nl != NULL);
    }
    assert_true(records >= min_records);
    assert_true(annotations >= records);
}

static void test_lenv_sample_data__arithmetic(void **state)
{
    (void)state;
    check_sample_file("data/gsm8k/test.jsonl", 30);
    check_sample_file("data/gsm8k/train.jsonl", 5);
    int ok;
    rat r = eval_text("2*(45+30)", 9, &ok);
    assert_true(ok && r.n == 150 && r.d == 1);
    r = eval_text("150-67.2", 8, &ok);
    assert_true(ok && r.n == 414 && r.d == 5);
    eval_text("3+", 2, &ok);
    assert_false(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lenv_open__builtin, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_open__same_version_twice, setup_gsm8k, teardown_env),
        cmocka_unit_test(test_lenv_open__unknown_env),
        cmocka_unit_test_setup_teardown(test_lenv_describe__gsm8k, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_item_find__ids, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_item_view__without_answer, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_item_view__with_answer, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_item_view__inline, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_sample__deterministic, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_sample__whole_split_is_a_permutation, setup_gsm8k,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_sample__errors, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_score__correct_incorrect_none, setup_gsm8k,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_score__batch_and_limits, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_episode__single_turn, setup_gsm8k, teardown_env),
        cmocka_unit_test_setup_teardown(test_lenv_score__threads_share_the_pool, setup_gsm8k,
                                        teardown_env),
        cmocka_unit_test(test_lenv_data__real_gsm8k_scores_one),
        cmocka_unit_test(test_lenv_data__overrides),
        cmocka_unit_test(test_lenv_example__capitals),
        cmocka_unit_test(test_lenv_sample_data__arithmetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
