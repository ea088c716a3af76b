/*
 * Environments: the pool of Lua states, built-in names, lenv_open and
 * lenv_free, the accessors, and sampling items from a split. The definition
 * is checked in lenv_def.c, the dataset loaded in lenv_data.c, and the calls
 * into env code for an item (views, scoring, episodes) are in lenv_call.c.
 * See lenv.h for the contracts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

#define MAX_STATES 1024
#define MAX_BUILTINS 64

/* ---- the pool ---------------------------------------------------------------- */

lenv__state *lenv__acquire(lenv_env *env)
{
    pthread_mutex_lock(&env->mu);
    while (env->n_free == 0)
        pthread_cond_wait(&env->cv, &env->mu);
    lenv__state *st = &env->states[env->free_states[--env->n_free]];
    pthread_mutex_unlock(&env->mu);
    return st;
}

void lenv__release(lenv_env *env, lenv__state *st)
{
    pthread_mutex_lock(&env->mu);
    env->free_states[env->n_free++] = (size_t)(st - env->states);
    pthread_cond_signal(&env->cv);
    pthread_mutex_unlock(&env->mu);
}

/* ---- open / free ------------------------------------------------------------------ */

/* Built-in names: embedded *.lua files at the top of envs/, without ".lua". */
static char builtin_names[MAX_BUILTINS][LENV__MAX_NAME + 1];
static size_t builtin_n;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static void builtin_scan(void)
{
    for (const lenv_embedded_file *f = lenv_embedded_files; f->name; f++) {
        size_t len = strlen(f->name);
        if (strchr(f->name, '/') || len <= 4 || len - 4 > LENV__MAX_NAME ||
            strcmp(f->name + len - 4, ".lua") != 0 || builtin_n == MAX_BUILTINS)
            continue;
        memcpy(builtin_names[builtin_n], f->name, len - 4);
        builtin_names[builtin_n][len - 4] = '\0';
        /* Procedural families live in gen_<family>.lua and are named gen-<family>. */
        if (strncmp(f->name, "gen_", 4) == 0)
            builtin_names[builtin_n][3] = '-';
        builtin_n++;
    }
}

size_t lenv_builtin_count(void)
{
    pthread_once(&builtin_once, builtin_scan);
    return builtin_n;
}

const char *lenv_builtin_name(size_t i)
{
    pthread_once(&builtin_once, builtin_scan);
    return i < builtin_n ? builtin_names[i] : NULL;
}

static int unknown_env(lenv_error *err, const char *name)
{
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < lenv_builtin_count() && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                 lenv_builtin_name(i));
    return lenv__fail(err, LENV_ENOTFOUND, "unknown environment '%.64s' (built-in: %s)", name,
                      used ? list : "none");
}

void lenv_free(lenv_env *env)
{
    if (env == NULL)
        return;
    for (size_t i = 0; i < env->n_states; i++)
        lenv__state_close(&env->states[i]);
    free(env->states);
    free(env->free_states);
    if (env->sync_ready) {
        pthread_mutex_destroy(&env->mu);
        pthread_cond_destroy(&env->cv);
    }
    for (size_t i = 0; i < env->n_splits; i++) {
        free(env->splits[i].name);
        json_decref(env->splits[i].items);
    }
    free(env->splits);
    lenv__curriculum_free(env->curriculum);
    lenv__git_ref_free(env->git_ref);
    lenv__gitcfg_clear(&env->git);
    json_decref(env->by_id);
    json_decref(env->params);
    free(env->name);
    free(env->description);
    free(env->source);
    free(env->default_split);
    free(env);
}

int lenv_open(lenv_env **out, const lenv_options *opts, lenv_error *err)
{
    int rc = LENV_OK;
    lenv_env *env = NULL;
    char *file_src = NULL, *display = NULL;
    const char *src;
    size_t src_len;
    int embedded = 0;
    lenv__def def = {0};
    lenv__sha256 *h = NULL;
    lenv_git_ref *git_ref = NULL;

    if (err)
        memset(err, 0, sizeof *err);
    *out = NULL;
    if (opts == NULL || opts->name_or_path == NULL || opts->name_or_path[0] == '\0')
        return lenv__fail(err, LENV_EINVALID, "no environment name or path given");
    size_t n_states = opts->n_states ? opts->n_states : 1;
    if (n_states > MAX_STATES)
        return lenv__fail(err, LENV_EINVALID, "at most %d Lua states per environment, asked for %zu",
                          MAX_STATES, n_states);
    uint64_t instr = opts->instruction_limit ? opts->instruction_limit : LENV_DEFAULT_INSTRUCTIONS;
    size_t mem = opts->memory_limit ? opts->memory_limit : LENV_DEFAULT_MEMORY;

    const char *name;
    if ((rc = lenv__git_prepare(&git_ref, &name, opts, err)) != LENV_OK)
        return rc;
    size_t nlen = strlen(name);
    if (strchr(name, '/') == NULL && !(nlen > 4 && strcmp(name + nlen - 4, ".lua") == 0)) {
        char fname[LENV__MAX_NAME + 8];
        if (!lenv__valid_name(name)) {
            rc = unknown_env(err, name);
            goto done;
        }
        snprintf(fname, sizeof fname, "%s.lua", name);
        if (strncmp(fname, "gen-", 4) == 0)
            fname[3] = '_';
        const lenv_embedded_file *f = lenv__embedded_find(fname);
        if (f == NULL) {
            rc = unknown_env(err, name);
            goto done;
        }
        src = (const char *)f->data;
        src_len = f->len;
        embedded = 1;
        if (asprintf(&display, "envs/%s", fname) < 0) {
            display = NULL;
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    } else {
        if ((rc = lenv__read_file(&file_src, &src_len, name, err)) != LENV_OK)
            goto done;
        src = file_src;
        if ((display = strdup(name)) == NULL) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    }

    if ((env = calloc(1, sizeof *env)) == NULL ||
        (env->states = calloc(n_states, sizeof *env->states)) == NULL ||
        (env->free_states = calloc(n_states, sizeof *env->free_states)) == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    env->source = display;
    display = NULL;
    env->git_ref = git_ref;
    git_ref = NULL;
    if ((rc = lenv__gitcfg_init(&env->git, opts->git, err)) != LENV_OK)
        goto done;

    /* The first state validates the definition and tells us its dataset. */
    if ((rc = lenv__state_open(&env->states[0], src, src_len, env->source, mem, instr, err)) != 0)
        goto done;
    env->n_states = 1;
    env->states[0].git = &env->git;
    def.st = &env->states[0];
    def.first = 1;
    if ((rc = lenv__state_pcall(def.st, lenv__def_impl, &def, err)) != LENV_OK)
        goto done_def_error;

    if ((rc = lenv__load_data(env, opts, &def, embedded, err)) != LENV_OK)
        goto done;

    for (size_t i = 1; i < n_states; i++) {
        lenv__def more = {.st = &env->states[i]};
        if ((rc = lenv__state_open(&env->states[i], src, src_len, env->source, mem, instr, err)) != 0)
            goto done;
        env->n_states++;
        env->states[i].git = &env->git;
        if ((rc = lenv__state_pcall(more.st, lenv__def_impl, &more, err)) != LENV_OK)
            goto done_def_error;
    }

    /* version = SHA-256 of the definition source and the dataset hash. */
    if ((h = lenv__sha256_new()) == NULL || lenv__sha256_add(h, "envsrv-env-1\n", 13) != 0 ||
        lenv__sha256_add(h, src, src_len) != 0 ||
        lenv__sha256_add(h, env->dataset_hash, 16) != 0 || lenv__sha256_hex16(h, env->version)) {
        h = NULL;
        rc = lenv__fail(err, LENV_ENOMEM, "cannot hash the environment");
        goto done;
    }
    h = NULL;
    env->seed = strtoull(env->version, NULL, 16);
    if ((rc = lenv__git_finish(env->version, sizeof env->version, env->git_ref, def.name, err)) != 0)
        goto done;

    env->name = def.name;
    env->description = def.description ? def.description : strdup("");
    env->default_split = def.default_split;
    env->params = def.params;
    env->multi_turn = def.multi_turn;
    env->long_running = def.long_running;
    env->limits = def.limits;
    env->generated = def.generated;
    env->level_min = def.level_min;
    env->level_max = def.level_max;
    if (env->generated &&
        (env->curriculum = lenv__curriculum_new(env->level_min, env->level_max)) == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    def.name = def.description = def.default_split = NULL;
    def.params = NULL;
    if (env->description == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_states; i++)
        env->free_states[i] = n_states - 1 - i;
    env->n_free = n_states;
    if (pthread_mutex_init(&env->mu, NULL) != 0) {
        rc = lenv__fail(err, LENV_ENOMEM, "cannot create a mutex");
        goto done;
    }
    if (pthread_cond_init(&env->cv, NULL) != 0) {
        pthread_mutex_destroy(&env->mu);
        rc = lenv__fail(err, LENV_ENOMEM, "cannot create a condition variable");
        goto done;
    }
    env->sync_ready = 1;
    *out = env;
    env = NULL;
    goto done;

done_def_error:
    /* Definition-shape errors (EINVALID) come back without the file name. */
    if (err && rc == LENV_EINVALID && err->source[0] == '\0') {
        char msg[sizeof err->message];
        snprintf(msg, sizeof msg, "%s", err->message);
        snprintf(err->message, sizeof err->message, "%.200s: %.300s", env->source, msg);
        snprintf(err->source, sizeof err->source, "%s", env->source);
    }
done:
    lenv__sha256_free(h);
    lenv__def_clear(&def);
    lenv_free(env);
    lenv__git_ref_free(git_ref);
    free(display);
    free(file_src);
    return rc;
}

/* ---- accessors --------------------------------------------------------------------- */

const char *lenv_name(const lenv_env *env) { return env->name; }
const char *lenv_description(const lenv_env *env) { return env->description; }
const char *lenv_version(const lenv_env *env) { return env->version; }
const char *lenv_dataset_hash(const lenv_env *env) { return env->dataset_hash; }
const lenv_git_ref *lenv_git_source(const lenv_env *env) { return env->git_ref; }
int lenv_is_multi_turn(const lenv_env *env) { return env->multi_turn; }
int lenv_is_long_running(const lenv_env *env) { return env->long_running; }
void lenv_get_limits(lenv_limits *out, const lenv_env *env) { *out = env->limits; }

json_t *lenv_describe(const lenv_env *env, int with_params)
{
    json_t *splits = json_object();
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:b}", "name", env->name, "description",
                          env->description, "version", env->version, "dataset_hash",
                          env->dataset_hash, "multi_turn", env->multi_turn);
    if (splits == NULL || d == NULL)
        goto fail;
    for (size_t i = 0; i < env->n_splits; i++)
        if (json_object_set_new(splits, env->splits[i].name,
                                json_integer((json_int_t)json_array_size(env->splits[i].items))))
            goto fail;
    if (json_object_set_new(d, "splits", splits) != 0) {
        splits = NULL;
        goto fail;
    }
    splits = NULL;
    if (json_object_set_new(d, "limits", json_pack("{s:I, s:I, s:I}", "max_turns",
                            (json_int_t)env->limits.max_turns, "max_chars",
                            (json_int_t)env->limits.max_chars, "idle_timeout_s",
                            (json_int_t)env->limits.idle_timeout_s)) != 0)
        goto fail;
    if (env->states[0].tool_docs &&
        json_object_set_new(d, "tools", json_deep_copy(env->states[0].tool_docs)) != 0)
        goto fail;
    if (with_params && json_object_set_new(d, "params", json_deep_copy(env->params)) != 0)
        goto fail;
    if (env->git_ref && json_object_set_new(d, "git", lenv_git_json(env)) != 0)
        goto fail;
    if (env->generated &&
        (json_object_set_new(d, "generated", json_true()) != 0 ||
         json_object_set_new(d, "levels", json_pack("{s:i, s:i}", "min", env->level_min, "max",
                                                    env->level_max)) != 0 ||
         json_object_set_new(d, "curriculum",
                             lenv_curriculum_state((lenv_env *)env)) != 0))
        goto fail;
    return d;
fail:
    json_decref(splits);
    json_decref(d);
    return NULL;
}

int lenv__levels(const lenv_env *env, int *min, int *max)
{
    if (min)
        *min = env->level_min;
    if (max)
        *max = env->level_max;
    return env->generated;
}

int lenv_is_generated(const lenv_env *env, int *min, int *max)
{
    return lenv__levels(env, min, max);
}

lenv__curriculum **lenv__curriculum_slot(lenv_env *env) { return &env->curriculum; }

int lenv_item_find(const json_t **item, const lenv_env *env, const char *id, lenv_error *err)
{
    *item = NULL;
    if (env->generated)
        return lenv__fail(err, LENV_ENOTFOUND, "environment '%s' is procedural and stores no "
                          "items; use lenv_item_get for '%.64s'", env->name, id ? id : "");
    *item = id ? json_object_get(env->by_id, id) : NULL;
    if (*item == NULL)
        return lenv__fail(err, LENV_ENOTFOUND, "unknown item '%.200s' in environment '%s'",
                          id ? id : "", env->name);
    return LENV_OK;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static const lenv__split *find_split(const lenv_env *env, const char *name)
{
    for (size_t i = 0; i < env->n_splits; i++)
        if (strcmp(env->splits[i].name, name) == 0)
            return &env->splits[i];
    return NULL;
}

/* splitmix64: state += 0x9e3779b97f4a7c15, then the output mix of mix64(). */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int lenv_sample(json_t **out, lenv_env *env, const char *split_name, size_t n, uint64_t seed,
                lenv_error *err)
{
    *out = NULL;
    const lenv__split *sp = NULL;
    if (env->generated) {
        if (split_name)
            return lenv__fail(err, LENV_ENOTFOUND, "environment '%s' is procedural and has no "
                              "splits (asked for '%.64s')", env->name, split_name);
        return lenv_sample_level(out, env, lenv_curriculum_level(env), n, seed, err);
    }
    if (split_name) {
        sp = find_split(env, split_name);
    } else {
        if (env->default_split)
            sp = find_split(env, env->default_split);
        if (sp == NULL)
            sp = find_split(env, "test");
        if (sp == NULL && env->n_splits > 0)
            sp = &env->splits[0];
    }
    if (sp == NULL) {
        char list[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < env->n_splits && used < sizeof list; i++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                     env->splits[i].name);
        if (split_name)
            return lenv__fail(err, LENV_ENOTFOUND, "unknown split '%.64s' in environment '%s' "
                              "(splits: %s)", split_name, env->name, used ? list : "none");
        return lenv__fail(err, LENV_ENOTFOUND, "environment '%s' has no dataset", env->name);
    }
    size_t total = json_array_size(sp->items);
    if (n > LENV_MAX_SAMPLE)
        return lenv__fail(err, LENV_ELIMIT, "cannot sample more than %d items at once, asked for %zu",
                          LENV_MAX_SAMPLE, n);
    if (n > total)
        return lenv__fail(err, LENV_EINVALID, "cannot sample %zu items from split '%s', which has %zu",
                          n, sp->name, total);

    /* Partial Fisher-Yates, reproducible in any language:
     *   idx = [0, 1, ..., total-1]; s = seed (uint64)
     *   for i in 0 .. n-1:
     *       s = s + 0x9e3779b97f4a7c15 (mod 2^64); z = s
     *       z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9 (mod 2^64)
     *       z = (z ^ (z >> 27)) * 0x94d049bb133111eb (mod 2^64)
     *       z = z ^ (z >> 31)
     *       j = i + z % (total - i); swap(idx[i], idx[j])
     *   the sample is idx[0 .. n-1], in that order.
     * (The modulo's bias is below 2^-40 for any split that fits in memory.) */
    size_t *idx = malloc((total ? total : 1) * sizeof *idx);
    const json_t **items = malloc((n ? n : 1) * sizeof *items);
    int rc = LENV_OK;
    if (idx == NULL || items == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < total; i++)
        idx[i] = i;
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        size_t j = i + (size_t)(splitmix64(&s) % (uint64_t)(total - i));
        size_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        items[i] = json_array_get(sp->items, idx[i]);
    }
    rc = lenv__views(out, env, (const json_t *const *)items, n, 0, err);
done:
    free(idx);
    free(items);
    return rc;
}
