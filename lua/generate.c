/*
 * Procedural environments: item ids, the calls into a definition's
 * generate(seed, difficulty), lenv_item_get and lenv_sample_level.
 *
 * An item is a pure function of (env name, difficulty, seed). To keep it so,
 * generate() runs with math.random seeded from exactly those three (not from
 * the env version, so that editing a family's prompt wording does not change
 * its problems), and the table it returns is converted to JSON with object
 * keys sorted: Lua's table order depends on a per-state hash seed, so without
 * sorting two pool states would write the same item in different orders.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

/* ---- ids ------------------------------------------------------------------------ */

/* Reads a decimal number without sign or leading zeros from *p, up to `max`.
 * Returns 1 and advances *p, or 0. */
static int read_decimal(const char **p, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return 1;
}

/* Grammar: id = "d" level "-s" seed; level = 0..1000 and seed = 0..2^63-1,
 * both decimal without sign or leading zeros ("0" itself is fine). */
int lenv__gen_id_parse(const char *id, int *level, uint64_t *seed)
{
    uint64_t lv, sd;
    if (id == NULL || id[0] != 'd')
        return 0;
    const char *p = id + 1;
    if (!read_decimal(&p, 1000, &lv) || p[0] != '-' || p[1] != 's')
        return 0;
    p += 2;
    if (!read_decimal(&p, INT64_MAX, &sd) || *p != '\0')
        return 0;
    *level = (int)lv;
    *seed = sd;
    return 1;
}

void lenv__gen_id_format(char out[LENV__GEN_ID_MAX], int level, uint64_t seed)
{
    snprintf(out, LENV__GEN_ID_MAX, "d%d-s%" PRIu64, level, seed);
}

/* ---- canonical JSON ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A copy of v whose objects have their keys in byte order, or NULL (out of
 * memory). Arrays and scalars keep their order. Depth is bounded by the
 * conversion that made v (LENV__MAX_DEPTH). */
static json_t *sorted_copy(json_t *v)
{
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (a == NULL || json_array_append_new(a, sorted_copy(e)) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    if (!json_is_object(v))
        return json_incref(v);
    size_t n = json_object_size(v), i = 0;
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    json_t *o = json_object();
    const char *k;
    json_t *e;
    if (keys == NULL || o == NULL)
        goto fail;
    json_object_foreach(v, k, e)
        keys[i++] = k;
    qsort(keys, n, sizeof *keys, cmp_str);
    for (i = 0; i < n; i++)
        if (json_object_set_new(o, keys[i], sorted_copy(json_object_get(v, keys[i]))) != 0)
            goto fail;
    free(keys);
    return o;
fail:
    free(keys);
    json_decref(o);
    return NULL;
}

/* ---- generate() ----------------------------------------------------------------- */

typedef struct gen_ctx {
    lenv_env *env;
    lenv__state *st;
    const int *levels;
    const uint64_t *seeds;
    size_t n;
    json_t *out; /* owned by the caller: array of items */
} gen_ctx;

/* math.random's seed for one item: a hash of the env name and the id text
 * (which spells the difficulty and the seed), so it is the same everywhere. */
static uint64_t gen_seed(const char *name, const char *id)
{
    uint64_t h = lenv__hash64(0, "envsrv-gen-v1|", 14);
    h = lenv__hash64(h, name, strlen(name) + 1);
    return lenv__hash64(h, id, strlen(id));
}

/* [-1, +0, e] */
static int gen_impl(lua_State *L)
{
    gen_ctx *c = lua_touserdata(L, 1);
    lenv__state *st = c->st;
    const char *name = lenv_name(c->env);
    for (size_t i = 0; i < c->n; i++) {
        char id[LENV__GEN_ID_MAX], err[160];
        lenv__gen_id_format(id, c->levels[i], c->seeds[i]);
        lenv__arm(L, gen_seed(name, id));
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_generate);
        lua_pushinteger(L, (lua_Integer)c->seeds[i]);
        lua_pushinteger(L, c->levels[i]);
        lua_call(L, 2, 1);
        if (!lua_istable(L, -1))
            lenv__raise(L, LENV_ESCRIPT, 0, "generate() must return a table, got %s (item %s)",
                        luaL_typename(L, -1), id);
        json_t *raw = lenv__to_json(L, -1, 0, err, sizeof err);
        if (raw == NULL || !json_is_object(raw)) {
            json_decref(raw);
            lenv__raise(L, LENV_ESCRIPT, 0, "generate() must return a table with string "
                        "keys that converts to JSON (item %s)%s%s", id,
                        raw ? "" : ": ", raw ? "" : err);
        }
        /* The id is lenv's, whatever generate() put there. */
        json_t *item = json_object_set_new(raw, "id", json_string(id)) == 0 ? sorted_copy(raw)
                                                                             : NULL;
        json_decref(raw);
        if (item == NULL || json_array_append_new(c->out, item) != 0)
            lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
        lua_settop(L, 1);
    }
    return 0;
}

int lenv__generate(json_t **out, lenv_env *env, const int *levels, const uint64_t *seeds,
                   size_t n, lenv_error *err)
{
    gen_ctx c = {env, NULL, levels, seeds, n, json_array()};
    *out = NULL;
    if (c.out == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    c.st = lenv__acquire(env);
    int rc = lenv__state_pcall(c.st, gen_impl, &c, err);
    lenv__release(env, c.st);
    if (rc != LENV_OK) {
        json_decref(c.out);
        return rc;
    }
    *out = c.out;
    return LENV_OK;
}

/* ---- public ----------------------------------------------------------------------- */

int lenv_item_get(json_t **item, lenv_env *env, const char *id, lenv_error *err)
{
    int lo, hi, level;
    uint64_t seed;
    *item = NULL;
    if (!lenv__levels(env, &lo, &hi)) {
        const json_t *rec;
        int rc = lenv_item_find(&rec, env, id, err);
        if (rc == LENV_OK)
            *item = json_incref((json_t *)rec);
        return rc;
    }
    if (!lenv__gen_id_parse(id, &level, &seed))
        return lenv__fail(err, LENV_ENOTFOUND, "unknown item '%.64s' in environment '%s' (ids "
                          "are d<difficulty>-s<seed>, e.g. 'd%d-s42')", id ? id : "",
                          lenv_name(env), lo);
    if (level < lo || level > hi)
        return lenv__fail(err, LENV_ENOTFOUND, "unknown item '%.64s' in environment '%s': "
                          "difficulty %d is outside %d..%d", id, lenv_name(env), level, lo, hi);
    json_t *arr;
    int rc = lenv__generate(&arr, env, &level, &seed, 1, err);
    if (rc != LENV_OK)
        return rc;
    *item = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return LENV_OK;
}

int lenv_sample_level(json_t **out, lenv_env *env, int level, size_t n, uint64_t seed,
                      lenv_error *err)
{
    int lo, hi, rc;
    *out = NULL;
    if (!lenv__levels(env, &lo, &hi))
        return lenv__fail(err, LENV_EINVALID, "environment '%s' is not procedural; it has no "
                          "difficulty levels", lenv_name(env));
    if (level < lo || level > hi)
        return lenv__fail(err, LENV_EINVALID, "difficulty %d is outside %d..%d of environment "
                          "'%s'", level, lo, hi, lenv_name(env));
    if (n > LENV_MAX_SAMPLE)
        return lenv__fail(err, LENV_ELIMIT, "cannot sample more than %d items at once, asked for %zu",
                          LENV_MAX_SAMPLE, n);
    int *levels = malloc((n ? n : 1) * sizeof *levels);
    uint64_t *seeds = malloc((n ? n : 1) * sizeof *seeds);
    json_t *items = NULL;
    if (levels == NULL || seeds == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    /* Item seeds, reproducible in any language: s = seed + level *
     * 0x9e3779b97f4a7c15 (mod 2^64); then per item splitmix64(s) >> 1 (the
     * same mixer as lenv_sample's shuffle), so ids fit in 63 bits. */
    uint64_t s = seed + (uint64_t)level * 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        seeds[i] = (z ^ (z >> 31)) >> 1;
        levels[i] = level;
    }
    if ((rc = lenv__generate(&items, env, levels, seeds, n, err)) != LENV_OK)
        goto done;
    const json_t **list = malloc((n ? n : 1) * sizeof *list);
    if (list == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        list[i] = json_array_get(items, i);
    rc = lenv__views(out, env, list, n, 0, err);
    free(list);
done:
    json_decref(items);
    free(levels);
    free(seeds);
    return rc;
}
