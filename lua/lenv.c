/*
 * Environments: loading and validating definitions, the pool of Lua states,
 * datasets and items, and the calls into env code (prompt, answer, metadata,
 * reward, reset, step). See lenv.h for the contracts and docs/lua-envs.md for
 * the definition format.
 *
 * Every call into Lua runs inside lenv__state_pcall: the C function given to
 * it does the work with lua_call and may raise at any point, so whatever C
 * memory it builds hangs off its context struct, which the caller frees.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

#define MAX_STATES 1024
#define MAX_NAME 64
#define MAX_BUILTINS 64

typedef struct split {
    char *name;    /* owned */
    json_t *items; /* owned: array of records, each with its "id" */
} split;

struct lenv_env {
    char *name;           /* owned */
    char *description;    /* owned */
    char *source;         /* owned: the file as shown in errors */
    char *default_split;  /* owned; NULL when the definition names none */
    char version[64];     /* 16 hex, then "+git.<commit12>.<sha12>" for git envs */
    char dataset_hash[17];
    uint64_t seed;        /* the version as a number: the root of every call's seed */
    int multi_turn;
    int long_running;     /* the definition's long_running: its calls may take seconds */
    lenv_limits limits;
    json_t *params;       /* owned: object */
    split *splits;        /* owned; sorted by name */
    size_t n_splits;
    json_t *by_id;        /* owned: id -> record (references into splits) */
    int generated;        /* procedural: items come from generate(), levels below */
    int level_min, level_max;
    lenv__curriculum *curriculum; /* owned; procedural envs only */
    lenv_git_ref *git_ref;  /* owned; where a git env came from, else NULL */
    lenv__gitcfg git;       /* owned: envsrv.git's cache settings */

    lenv__state *states;  /* owned: n_states of them */
    size_t n_states;
    size_t *free_states;  /* owned: stack of indexes of idle states */
    size_t n_free;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync_ready;
};

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

/* ---- small helpers ----------------------------------------------------------- */

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static const char *item_id(const json_t *item)
{
    const char *id = json_string_value(json_object_get(item, "id"));
    return id ? id : "inline";
}

static uint64_t item_seed(const lenv_env *env, const json_t *item)
{
    const char *id = item_id(item);
    return lenv__hash64(env->seed, id, strlen(id));
}

/* Line where the function in registry slot `ref` is defined (for errors about
 * what it returned). [-0, +0, -] */
static int fn_line(lua_State *L, int ref)
{
    lua_Debug ar;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (!lua_isfunction(L, -1) || !lua_getinfo(L, ">S", &ar)) {
        lua_pop(L, 1);
        return 0;
    }
    return ar.linedefined > 0 ? ar.linedefined : 0;
}

/* Raises ESCRIPT "what must ..." pointing at the function in `ref`. */
#define RAISE_AT(L, ref, ...) lenv__raise((L), LENV_ESCRIPT, fn_line((L), (ref)), __VA_ARGS__)

/* A list of messages from the value at idx (nil allowed when allow_nil):
 * returns a new JSON array or raises. [-0, +0, e] */
static json_t *check_messages(lua_State *L, int idx, int ref, const char *what, int allow_nil)
{
    char err[160];
    if (allow_nil && lua_isnil(L, idx))
        return json_array();
    if (!lua_istable(L, idx))
        RAISE_AT(L, ref, "%s must return a list of messages, got %s", what, luaL_typename(L, idx));
    json_t *msgs = lenv__to_json(L, idx, LENV__EMPTY_ARRAY, err, sizeof err);
    if (msgs == NULL)
        RAISE_AT(L, ref, "%s returned messages that are not JSON: %s", what, err);
    if (!json_is_array(msgs)) {
        json_decref(msgs);
        RAISE_AT(L, ref, "%s must return a list of messages (a table with keys 1..n)", what);
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role"))) {
            json_decref(msgs);
            RAISE_AT(L, ref, "%s message %d must be a table with a string 'role'", what,
                     (int)i + 1);
        }
    }
    return msgs;
}

/* A table with string keys (or nil: {}) from the value at idx. [-0, +0, e] */
static json_t *check_object(lua_State *L, int idx, int ref, const char *what)
{
    char err[160];
    if (lua_isnil(L, idx))
        return json_object();
    if (!lua_istable(L, idx))
        RAISE_AT(L, ref, "%s must be a table, got %s", what, luaL_typename(L, idx));
    json_t *obj = lenv__to_json(L, idx, 0, err, sizeof err);
    if (obj == NULL)
        RAISE_AT(L, ref, "%s is not JSON: %s", what, err);
    if (!json_is_object(obj)) {
        json_decref(obj);
        RAISE_AT(L, ref, "%s must be a table with string keys, got a list", what);
    }
    return obj;
}

/* A finite reward from the value at idx, or raises. [-0, +0, e] */
static double check_reward(lua_State *L, int idx, int ref, const char *what)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        RAISE_AT(L, ref, "%s must return a number, got %s", what, luaL_typename(L, idx));
    double r = lua_tonumber(L, idx);
    if (!isfinite(r))
        RAISE_AT(L, ref, "%s returned %s; rewards must be finite numbers", what,
                 isnan(r) ? "nan" : "inf");
    return r;
}

/* json_object_set_new that raises ENOMEM instead of failing quietly. */
static void set_new(lua_State *L, json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
}

static void append_new(lua_State *L, json_t *arr, json_t *v)
{
    if (v == NULL || json_array_append_new(arr, v) != 0)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
}

/* ---- definitions ------------------------------------------------------------- */

enum { F_STRING, F_VERSION, F_TABLE, F_FUNCTION, F_TOOLS, F_BOOLEAN };

static const struct {
    const char *name;
    int kind;
    int required;
} def_fields[] = {
    {"name", F_STRING, 1},
    {"description", F_STRING, 0},
    {"version", F_VERSION, 0},
    {"dataset", F_TABLE, 0},
    {"default_split", F_STRING, 0},
    {"id_field", F_STRING, 0},
    {"data_format", F_TABLE, 0},
    {"tools", F_TOOLS, 0},
    {"limits", F_TABLE, 0},
    {"params", F_TABLE, 0},
    {"prompt", F_FUNCTION, 1},
    {"answer", F_FUNCTION, 0},
    {"metadata", F_FUNCTION, 0},
    {"reward", F_FUNCTION, 0},
    {"reset", F_FUNCTION, 0},
    {"step", F_FUNCTION, 0},
    {"generate", F_FUNCTION, 0},
    {"levels", F_TABLE, 0},
    {"long_running", F_BOOLEAN, 0},
    {NULL, 0, 0},
};

/* What the first state's definition says; owned by the caller of def_impl. */
typedef struct def_ctx {
    lenv__state *st;
    int first;              /* extract the fields below (only from the first state) */
    char *name, *description, *default_split, *id_field;
    char *files_pattern, *join_dir, *join_key; /* data_format; NULL when absent */
    json_t *params;
    json_t *dataset;        /* object split -> relative path */
    int long_running;
    int multi_turn;
    lenv_limits limits;
    int generated, level_min, level_max;
} def_ctx;

static void def_ctx_clear(def_ctx *c)
{
    free(c->name);
    free(c->description);
    free(c->default_split);
    free(c->id_field);
    free(c->files_pattern);
    free(c->join_dir);
    free(c->join_key);
    json_decref(c->params);
    json_decref(c->dataset);
    memset(c, 0, sizeof *c);
}

static char *dup_field(lua_State *L, int def, const char *field)
{
    lua_getfield(L, def, field);
    char *s = NULL;
    if (!lua_isnil(L, -1) && (s = strdup(lua_tostring(L, -1))) == NULL)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    lua_pop(L, 1);
    return s;
}

/* data_format = { files = "BFCL_v4_*.json", join = "possible_answer",
 * join_key = "id" }: which files of a --data folder are splits, and a folder
 * of partner files whose records are merged into the split's records by key.
 * [-0, +0, e] */
static void read_data_format(lua_State *L, int t, def_ctx *c)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "files") != 0 && strcmp(k, "join") != 0 && strcmp(k, "join_key") != 0)
            lenv__raise(L, LENV_EINVALID, 0, "data_format: unknown field '%s' (files, join, "
                        "join_key)", k);
        if (lua_type(L, -1) != LUA_TSTRING)
            lenv__raise(L, LENV_EINVALID, 0, "data_format.%s must be a string", k);
        lua_pop(L, 1);
    }
    c->files_pattern = dup_field(L, t, "files");
    c->join_dir = dup_field(L, t, "join");
    c->join_key = dup_field(L, t, "join_key");
    const char *p = c->files_pattern;
    if (p && (strchr(p, '*') == NULL || strchr(strchr(p, '*') + 1, '*') || strchr(p, '/')))
        lenv__raise(L, LENV_EINVALID, 0, "data_format.files must be a file name with one '*' "
                    "(the split name), got '%s'", p);
    if (c->join_dir && (c->join_dir[0] == '\0' || c->join_dir[0] == '/' || strstr(c->join_dir, "..")))
        lenv__raise(L, LENV_EINVALID, 0, "data_format.join must be a relative folder name, got "
                    "'%s'", c->join_dir);
    if (c->join_key && c->join_dir == NULL)
        lenv__raise(L, LENV_EINVALID, 0, "data_format.join_key needs data_format.join");
}

/* limits = { max_turns = 10, max_chars = 20000, idle_timeout = 300 }: each a
 * positive integer. [-0, +0, e] */
static void read_limits(lua_State *L, int t, lenv_limits *out)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        int known = strcmp(k, "max_turns") == 0 || strcmp(k, "max_chars") == 0 ||
                    strcmp(k, "idle_timeout") == 0;
        if (!known)
            lenv__raise(L, LENV_EINVALID, 0, "limits: unknown field '%s' (max_turns, max_chars, "
                        "idle_timeout)", k);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 1000000000)
            lenv__raise(L, LENV_EINVALID, 0, "limits.%s must be an integer from 1 to 1000000000", k);
        lua_Integer v = lua_tointeger(L, -1);
        if (strcmp(k, "max_turns") == 0)
            out->max_turns = (size_t)v;
        else if (strcmp(k, "max_chars") == 0)
            out->max_chars = (size_t)v;
        else
            out->idle_timeout_s = (unsigned)v;
        lua_pop(L, 1);
    }
}

/* Procedural definitions: levels = {min = 1, max = N} (default {1, 1}),
 * integers 0 <= min <= max <= 1000, and no dataset. [-0, +0, e] */
static void read_levels(lua_State *L, int def, def_ctx *c)
{
    c->generated = 1;
    c->level_min = c->level_max = 1;
    if (lua_getfield(L, def, "dataset") != LUA_TNIL)
        lenv__raise(L, LENV_EINVALID, 0, "a definition has either 'dataset' or 'generate', not "
                    "both");
    lua_pop(L, 1);
    if (lua_getfield(L, def, "levels") == LUA_TTABLE) {
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "min") != 0 && strcmp(k, "max") != 0)
                lenv__raise(L, LENV_EINVALID, 0, "levels: unknown field '%s' (min, max)", k);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 1000)
                lenv__raise(L, LENV_EINVALID, 0, "levels.%s must be an integer from 0 to 1000", k);
            *(strcmp(k, "min") == 0 ? &c->level_min : &c->level_max) = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        if (c->level_min > c->level_max)
            lenv__raise(L, LENV_EINVALID, 0, "levels.min (%d) is above levels.max (%d)",
                        c->level_min, c->level_max);
    }
    lua_pop(L, 1);
}

/* Validates the definition table and takes refs to its functions. [-1, +0, e] */
static int def_impl(lua_State *L)
{
    def_ctx *c = lua_touserdata(L, 1);
    lenv__state *st = c->st;
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_def);
    int def = lua_gettop(L);

    lua_pushnil(L);
    while (lua_next(L, def)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return lenv__raise(L, LENV_EINVALID, 0, "definition keys must be names, got a %s key",
                               luaL_typename(L, -1));
        const char *k = lua_tostring(L, -1);
        size_t i = 0;
        while (def_fields[i].name && strcmp(def_fields[i].name, k) != 0)
            i++;
        if (def_fields[i].name == NULL)
            return lenv__raise(L, LENV_EINVALID, 0, "unknown definition field '%s'", k);
    }
    for (size_t i = 0; def_fields[i].name; i++) {
        int t = lua_getfield(L, def, def_fields[i].name);
        int want = def_fields[i].kind == F_FUNCTION ? LUA_TFUNCTION
                   : def_fields[i].kind == F_TABLE || def_fields[i].kind == F_TOOLS ? LUA_TTABLE
                   : def_fields[i].kind == F_BOOLEAN                               ? LUA_TBOOLEAN
                                                    : LUA_TSTRING;
        int ok = t == want || (def_fields[i].kind == F_VERSION && t == LUA_TNUMBER) ||
                 (def_fields[i].kind == F_TOOLS && t == LUA_TFUNCTION);
        if (t == LUA_TNIL && def_fields[i].required)
            return lenv__raise(L, LENV_EINVALID, 0, "definition field '%s' is required",
                               def_fields[i].name);
        if (t != LUA_TNIL && !ok)
            return lenv__raise(L, LENV_EINVALID, 0, "definition field '%s' must be a %s, got %s",
                               def_fields[i].name, lua_typename(L, want), luaL_typename(L, -1));
        lua_pop(L, 1);
    }

    lua_getfield(L, def, "name");
    if (!valid_name(lua_tostring(L, -1)))
        return lenv__raise(L, LENV_EINVALID, 0, "definition field 'name' must match [a-z0-9_.-]+ "
                           "(at most %d characters), got '%s'", MAX_NAME, lua_tostring(L, -1));
    lua_pop(L, 1);
    int has_reset = lua_getfield(L, def, "reset") == LUA_TFUNCTION;
    int has_step = lua_getfield(L, def, "step") == LUA_TFUNCTION;
    int has_reward = lua_getfield(L, def, "reward") == LUA_TFUNCTION;
    lua_pop(L, 3);
    if (has_reset != has_step)
        return lenv__raise(L, LENV_EINVALID, 0, "definition must have both 'reset' and 'step' "
                           "(multi-turn) or neither");
    if (!has_reward && !has_reset)
        return lenv__raise(L, LENV_EINVALID, 0, "definition must have 'reward' (single-turn) or "
                           "'reset' and 'step' (multi-turn)");

    int *refs[] = {&st->ref_prompt, &st->ref_answer, &st->ref_metadata,
                   &st->ref_reward, &st->ref_reset, &st->ref_step};
    const char *names[] = {"prompt", "answer", "metadata", "reward", "reset", "step"};
    for (size_t i = 0; i < 6; i++) {
        lua_getfield(L, def, names[i]);
        if (lua_isnil(L, -1))
            lua_pop(L, 1);
        else
            *refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lenv__tools_load(L, st, def);
    if (lua_getfield(L, def, "generate") == LUA_TFUNCTION)
        st->ref_generate = luaL_ref(L, LUA_REGISTRYINDEX);
    else
        lua_pop(L, 1);
    if (!c->first)
        return 0;
    if (st->ref_generate != LUA_NOREF)
        read_levels(L, def, c);
    else if (lua_getfield(L, def, "levels") != LUA_TNIL)
        return lenv__raise(L, LENV_EINVALID, 0, "definition field 'levels' needs 'generate'");
    else
        lua_pop(L, 1);

    c->multi_turn = has_reset;
    c->long_running = lua_getfield(L, def, "long_running") == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 1);
    c->limits = (lenv_limits){LENV_DEFAULT_MAX_TURNS, LENV_DEFAULT_MAX_CHARS,
                              LENV_DEFAULT_IDLE_TIMEOUT};
    if (lua_getfield(L, def, "limits") == LUA_TTABLE)
        read_limits(L, lua_gettop(L), &c->limits);
    lua_pop(L, 1);
    c->name = dup_field(L, def, "name");
    c->description = dup_field(L, def, "description");
    c->default_split = dup_field(L, def, "default_split");
    c->id_field = dup_field(L, def, "id_field");
    if (c->default_split && !valid_name(c->default_split))
        return lenv__raise(L, LENV_EINVALID, 0, "definition field 'default_split' must match "
                           "[a-z0-9_.-]+, got '%s'", c->default_split);

    if (lua_getfield(L, def, "data_format") == LUA_TTABLE)
        read_data_format(L, lua_gettop(L), c);
    lua_pop(L, 1);

    char err[160];
    if (lua_getfield(L, def, "params") == LUA_TNIL) {
        c->params = json_object();
    } else {
        c->params = lenv__to_json(L, -1, 0, err, sizeof err);
        if (c->params == NULL)
            return lenv__raise(L, LENV_EINVALID, 0, "definition field 'params' is not JSON: %s", err);
        if (!json_is_object(c->params))
            return lenv__raise(L, LENV_EINVALID, 0, "definition field 'params' must be a table "
                               "with string keys");
    }
    lua_pop(L, 1);

    if ((c->dataset = json_object()) == NULL || c->params == NULL)
        return lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    if (lua_getfield(L, def, "dataset") == LUA_TTABLE) {
        int ds = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, ds)) {
            if (lua_type(L, -2) != LUA_TSTRING || !valid_name(lua_tostring(L, -2)))
                return lenv__raise(L, LENV_EINVALID, 0, "definition field 'dataset' must map split "
                                   "names ([a-z0-9_.-]+) to file paths");
            if (lua_type(L, -1) != LUA_TSTRING)
                return lenv__raise(L, LENV_EINVALID, 0, "dataset split '%s' must be a file path "
                                   "(string), got %s", lua_tostring(L, -2), luaL_typename(L, -1));
            json_t *p = json_string(lua_tostring(L, -1));
            if (p == NULL)
                return lenv__raise(L, LENV_EINVALID, 0, "dataset split '%s' has a path that is "
                                   "not UTF-8", lua_tostring(L, -2));
            set_new(L, c->dataset, lua_tostring(L, -2), p);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return 0;
}

/* ---- datasets ------------------------------------------------------------------ */

static int cmp_split_file(const void *a, const void *b)
{
    return strcmp(((const lenv__split_file *)a)->split, ((const lenv__split_file *)b)->split);
}

/* The definition's own splits: paths relative to the env file, resolved in
 * the embedded set for built-in envs and on disk otherwise. */
static int definition_files(lenv__split_file **out, size_t *n_out, const json_t *dataset,
                            const char *env_file, int embedded, lenv_error *err)
{
    size_t n = json_object_size(dataset), i = 0;
    lenv__split_file *files = calloc(n ? n : 1, sizeof *files);
    if (files == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    const char *slash = strrchr(env_file, '/');
    int dirlen = slash ? (int)(slash - env_file) : 0;
    const char *split_name;
    json_t *p;
    json_object_foreach((json_t *)dataset, split_name, p) {
        const char *rel = json_string_value(p);
        while (rel[0] == '.' && rel[1] == '/')
            rel += 2;
        char *path = NULL;
        int r;
        if (rel[0] == '/' || dirlen == 0)
            r = asprintf(&path, "%s", rel);
        else
            r = asprintf(&path, "%.*s/%s", dirlen, env_file, rel);
        files[i].split = strdup(split_name);
        files[i].path = r < 0 ? NULL : path;
        i++;
        if (files[i - 1].split == NULL || files[i - 1].path == NULL) {
            lenv__split_files_free(files, i);
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
        }
        if (embedded) {
            files[i - 1].file = lenv__embedded_find(files[i - 1].path);
            if (files[i - 1].file == NULL) {
                int rc = lenv__fail(err, LENV_EIO, "envs/%s: dataset file '%s' of split '%s' is not "
                                    "among the built-in files", env_file, rel, split_name);
                lenv__split_files_free(files, i);
                return rc;
            }
        }
    }
    *out = files;
    *n_out = n;
    return LENV_OK;
}

static int add_le64(lenv__sha256 *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return lenv__sha256_add(h, b, 8);
}

/* Gives each record its "id" and indexes it. */
static int index_split(lenv_env *env, split *sp, const char *file, const char *id_field,
                       lenv_error *err)
{
    size_t i;
    json_t *rec;
    json_array_foreach(sp->items, i, rec) {
        char buf[64];
        const char *id = buf;
        if (id_field) {
            json_t *v = json_object_get(rec, id_field);
            if (json_is_string(v))
                id = json_string_value(v);
            else if (json_is_integer(v))
                snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            else
                return lenv__fail(err, LENV_EIO, "data file '%s' record %zu: field '%s' (the "
                                  "id_field) must be a string or an integer", file, i, id_field);
        } else {
            snprintf(buf, sizeof buf, "%s-%zu", sp->name, i);
        }
        if (json_object_get(env->by_id, id))
            return lenv__fail(err, LENV_EIO, "data file '%s' record %zu: duplicate item id '%s'",
                              file, i, id);
        json_t *idv = json_string(id);
        if (idv == NULL || json_object_set(env->by_id, id, rec) != 0 ||
            json_object_set_new(rec, "id", idv) != 0)
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
    }
    return LENV_OK;
}

/* data_format's join: partner records live in `dir` beside each split file,
 * in a file of the same name, and pair up by the value of `key`. */
typedef struct join_spec {
    const char *dir;
    const char *key;
} join_spec;

/* The text of a key value (string or integer) in buf; NULL when neither. */
static const char *key_text(const json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* Reads the partner file of split file `f` and merges its records into
 * `items` by key: members of the partner are added where the record lacks
 * them. Every record must find its partner. The partner's bytes are hashed
 * into h. */
static int join_split(json_t *items, const lenv__split_file *f, const char *shown,
                      const join_spec *join, lenv__sha256 *h, lenv_error *err)
{
    int rc = LENV_OK;
    char *path = NULL, *owned = NULL;
    json_t *partners = NULL, *by_key = json_object();
    const char *slash = strrchr(f->path, '/');
    int dirlen = slash ? (int)(slash - f->path) : 0;
    const char *base = slash ? slash + 1 : f->path;
    if (by_key == NULL ||
        (dirlen ? asprintf(&path, "%.*s/%s/%s", dirlen, f->path, join->dir, base)
                : asprintf(&path, "%s/%s", join->dir, base)) < 0) {
        path = NULL;
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    const char *data;
    size_t len;
    char shown_join[320];
    if (f->file) {
        const lenv_embedded_file *e = lenv__embedded_find(path);
        if (e == NULL) {
            rc = lenv__fail(err, LENV_EIO, "%s: no partner file 'envs/%s' (data_format.join)",
                            shown, path);
            goto done;
        }
        data = (const char *)e->data;
        len = e->len;
        snprintf(shown_join, sizeof shown_join, "envs/%s", path);
    } else {
        if ((rc = lenv__read_file(&owned, &len, path, err)) != LENV_OK)
            goto done;
        data = owned;
        snprintf(shown_join, sizeof shown_join, "%s", path);
    }
    if (add_le64(h, len) != 0 || lenv__sha256_add(h, data, len) != 0) {
        rc = lenv__fail(err, LENV_ENOMEM, "cannot hash '%s'", shown_join);
        goto done;
    }
    if ((rc = lenv__parse_jsonl(&partners, data, len, shown_join, err)) != LENV_OK)
        goto done;
    size_t i;
    json_t *rec;
    char buf[64];
    json_array_foreach(partners, i, rec) {
        const char *k = key_text(json_object_get(rec, join->key), buf, sizeof buf);
        if (k == NULL) {
            rc = lenv__fail(err, LENV_EIO, "data file '%s' record %zu: no '%s' (the join key)",
                            shown_join, i, join->key);
            goto done;
        }
        if (json_object_set(by_key, k, rec) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    }
    json_array_foreach(items, i, rec) {
        const char *k = key_text(json_object_get(rec, join->key), buf, sizeof buf);
        json_t *partner = k ? json_object_get(by_key, k) : NULL;
        if (partner == NULL) {
            rc = lenv__fail(err, LENV_EIO, "data file '%s' record %zu: no record with %s '%.64s' "
                            "in '%s'", shown, i, join->key, k ? k : "?", shown_join);
            goto done;
        }
        if (json_object_update_missing(rec, partner) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    }
done:
    json_decref(by_key);
    json_decref(partners);
    free(owned);
    free(path);
    return rc;
}

static int load_dataset(lenv_env *env, lenv__split_file *files, size_t n, const char *id_field,
                        const join_spec *join, lenv_error *err)
{
    int rc = LENV_OK;
    char *owned = NULL;
    lenv__sha256 *h = lenv__sha256_new();
    if (h == NULL || (env->by_id = json_object()) == NULL ||
        (env->splits = calloc(n ? n : 1, sizeof *env->splits)) == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    qsort(files, n, sizeof *files, cmp_split_file);
    for (size_t i = 0; i < n; i++) {
        const char *data;
        size_t len;
        const char *shown = files[i].path;
        char shown_buf[300];
        if (files[i].file) {
            data = (const char *)files[i].file->data;
            len = files[i].file->len;
            snprintf(shown_buf, sizeof shown_buf, "envs/%s", files[i].path);
            shown = shown_buf;
        } else {
            if ((rc = lenv__read_file(&owned, &len, files[i].path, err)) != LENV_OK)
                goto done;
            data = owned;
        }
        split *sp = &env->splits[env->n_splits];
        if ((sp->name = strdup(files[i].split)) == NULL) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
        env->n_splits++;
        if (lenv__sha256_add(h, sp->name, strlen(sp->name) + 1) != 0 || add_le64(h, len) != 0 ||
            lenv__sha256_add(h, data, len) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "cannot hash '%s'", shown);
            goto done;
        }
        if ((rc = lenv__parse_jsonl(&sp->items, data, len, shown, err)) != LENV_OK)
            goto done;
        if (join && (rc = join_split(sp->items, &files[i], shown, join, h, err)) != LENV_OK)
            goto done;
        if ((rc = index_split(env, sp, shown, id_field, err)) != LENV_OK)
            goto done;
        free(owned);
        owned = NULL;
    }
    if (lenv__sha256_hex16(h, env->dataset_hash) != 0)
        rc = lenv__fail(err, LENV_ENOMEM, "cannot hash the dataset");
    h = NULL;
done:
    lenv__sha256_free(h);
    free(owned);
    return rc;
}

/* ---- open / free ------------------------------------------------------------------ */

/* Built-in names: embedded *.lua files at the top of envs/, without ".lua". */
static char builtin_names[MAX_BUILTINS][MAX_NAME + 1];
static size_t builtin_n;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static void builtin_scan(void)
{
    for (const lenv_embedded_file *f = lenv_embedded_files; f->name; f++) {
        size_t len = strlen(f->name);
        if (strchr(f->name, '/') || len <= 4 || len - 4 > MAX_NAME ||
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
    lenv__split_file *files = NULL;
    size_t n_files = 0;
    def_ctx def = {0};
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
        char fname[MAX_NAME + 8];
        if (!valid_name(name)) {
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
    if ((rc = lenv__state_pcall(def.st, def_impl, &def, err)) != LENV_OK)
        goto done_def_error;

    if (opts->n_data > 0) {
        if (opts->data == NULL) {
            rc = lenv__fail(err, LENV_EINVALID, "n_data is %zu but data is NULL", opts->n_data);
            goto done;
        }
        rc = lenv__expand_sources(&files, &n_files, opts->data, opts->n_data, def.files_pattern,
                                  err);
    } else {
        rc = lenv__git_check_dataset(env->git_ref, def.dataset, err);
        if (rc == LENV_OK)
            rc = definition_files(&files, &n_files, def.dataset,
                                  embedded ? env->source + 5 : env->source, embedded, err);
        if (rc == LENV_OK && def.default_split && !json_object_get(def.dataset, def.default_split)) {
            rc = lenv__fail(err, LENV_EINVALID, "%s: default_split '%s' is not one of the dataset's "
                            "splits", env->source, def.default_split);
            goto done;
        }
    }
    if (rc != LENV_OK)
        goto done;
    join_spec join = {def.join_dir, def.join_key ? def.join_key : def.id_field ? def.id_field : "id"};
    if ((rc = load_dataset(env, files, n_files, def.id_field, def.join_dir ? &join : NULL,
                           err)) != LENV_OK)
        goto done;

    for (size_t i = 1; i < n_states; i++) {
        def_ctx more = {.st = &env->states[i]};
        if ((rc = lenv__state_open(&env->states[i], src, src_len, env->source, mem, instr, err)) != 0)
            goto done;
        env->n_states++;
        env->states[i].git = &env->git;
        if ((rc = lenv__state_pcall(more.st, def_impl, &more, err)) != LENV_OK)
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
    def_ctx_clear(&def);
    lenv__split_files_free(files, n_files);
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

/* Caller-side checks of an item before it is pushed into Lua. */
static int check_item(const json_t *item, lenv_error *err)
{
    if (!json_is_object(item))
        return lenv__fail(err, LENV_EINVALID, "an item must be a JSON object");
    if (lenv__json_depth(item, LENV__MAX_DEPTH) > LENV__MAX_DEPTH)
        return lenv__fail(err, LENV_EINVALID, "item is nested deeper than %d levels",
                          LENV__MAX_DEPTH);
    return LENV_OK;
}

/* ---- item views ----------------------------------------------------------------------- */

typedef struct view_ctx {
    lenv_env *env;
    lenv__state *st;
    const json_t *const *items;
    size_t n;
    int include_answer;
    json_t *out; /* owned by the caller: array of views */
} view_ctx;

/* [-1, +0, e] */
static int view_impl(lua_State *L)
{
    view_ctx *c = lua_touserdata(L, 1);
    lenv__state *st = c->st;
    for (size_t i = 0; i < c->n; i++) {
        const json_t *item = c->items[i];
        uint64_t seed = item_seed(c->env, item);
        json_t *v = json_object();
        append_new(L, c->out, v);
        set_new(L, v, "id", json_string(item_id(item)));
        lenv__push_json(L, item);
        int it = lua_gettop(L);

        lenv__arm(L, seed);
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_prompt);
        lua_pushvalue(L, it);
        lua_call(L, 1, 1);
        set_new(L, v, "prompt", check_messages(L, -1, st->ref_prompt, "prompt()", 0));
        lua_settop(L, it);

        if (st->ref_metadata != LUA_NOREF) {
            lenv__arm(L, seed);
            lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_metadata);
            lua_pushvalue(L, it);
            lua_call(L, 1, 1);
            set_new(L, v, "metadata", check_object(L, -1, st->ref_metadata, "metadata() result"));
            lua_settop(L, it);
        } else {
            set_new(L, v, "metadata", json_object());
        }

        lenv__arm(L, seed);
        json_t *tools = lenv__tools_view(L, st, it);
        if (tools)
            set_new(L, v, "tools", tools);
        lua_settop(L, it);

        if (c->include_answer && st->ref_answer != LUA_NOREF) {
            char err[160];
            lenv__arm(L, seed);
            lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_answer);
            lua_pushvalue(L, it);
            lua_call(L, 1, 1);
            json_t *a = lenv__to_json(L, -1, 0, err, sizeof err);
            if (a == NULL)
                RAISE_AT(L, st->ref_answer, "answer() returned a value that is not JSON: %s", err);
            set_new(L, v, "answer", a);
        }
        lua_settop(L, 1);
    }
    return 0;
}

int lenv__views(json_t **out, lenv_env *env, const json_t *const *items, size_t n,
                int include_answer, lenv_error *err)
{
    view_ctx c = {env, NULL, items, n, include_answer, json_array()};
    if (c.out == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    c.st = lenv__acquire(env);
    int rc = lenv__state_pcall(c.st, view_impl, &c, err);
    lenv__release(env, c.st);
    if (rc != LENV_OK) {
        json_decref(c.out);
        return rc;
    }
    *out = c.out;
    return LENV_OK;
}

int lenv_item_view(json_t **out, lenv_env *env, const json_t *item, int include_answer,
                   lenv_error *err)
{
    json_t *arr = NULL;
    *out = NULL;
    int rc = check_item(item, err);
    if (rc == LENV_OK)
        rc = lenv__views(&arr, env, &item, 1, include_answer, err);
    if (rc != LENV_OK)
        return rc;
    *out = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return LENV_OK;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static const split *find_split(const lenv_env *env, const char *name)
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
    const split *sp = NULL;
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

/* ---- scoring ---------------------------------------------------------------------------------- */

typedef struct score_ctx {
    lenv_env *env;
    lenv__state *st;
    const json_t *item;
    const char *const *completions;
    const size_t *lens;
    size_t n;
    json_t *rewards; /* owned by the caller */
    json_t *details; /* owned by the caller */
} score_ctx;

/* One episode of a multi-turn env with `action` as its only step, on the item
 * at `it`: leaves step()'s result table at the top. [-0, +1, e] */
static void replay_episode(lua_State *L, lenv__state *st, int it, uint64_t item_seed_,
                           const char *action, size_t len)
{
    lua_newtable(L);
    int state = lua_gettop(L);
    lenv__arm(L, item_seed_);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_reset);
    lua_pushvalue(L, it);
    lua_pushvalue(L, state);
    lua_call(L, 2, 0);
    lenv__arm(L, lenv__hash64(item_seed_, action, len));
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_step);
    lua_pushvalue(L, it);
    lua_pushvalue(L, state);
    lua_pushlstring(L, action, len);
    lua_call(L, 3, 1);
    lua_remove(L, state);
    if (!lua_istable(L, -1))
        RAISE_AT(L, st->ref_step, "step() must return a table {observation, reward, done, info}, "
                 "got %s", luaL_typename(L, -1));
}

/* [-1, +0, e] */
static int score_impl(lua_State *L)
{
    score_ctx *c = lua_touserdata(L, 1);
    lenv__state *st = c->st;
    uint64_t base = item_seed(c->env, c->item);
    lenv__push_json(L, c->item);
    const int it = 2;
    int use_reward = st->ref_reward != LUA_NOREF;
    if (use_reward)
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_reward);
    else
        lua_pushnil(L);
    const int fn = 3;
    for (size_t i = 0; i < c->n; i++) {
        const char *text = c->completions[i];
        size_t len = c->lens ? c->lens[i] : strlen(text);
        double r;
        json_t *d;
        if (use_reward) {
            lenv__arm(L, lenv__hash64(base, text, len));
            lua_pushvalue(L, fn);
            lua_pushvalue(L, it);
            lua_pushlstring(L, text, len);
            lua_call(L, 2, 2);
            r = check_reward(L, fn + 1, st->ref_reward, "reward()");
            d = check_object(L, fn + 2, st->ref_reward, "reward()'s second result (details)");
        } else {
            replay_episode(L, st, it, base, text, len);
            int res = lua_gettop(L);
            lua_getfield(L, res, "reward");
            r = check_reward(L, -1, st->ref_step, "step() field 'reward'");
            lua_getfield(L, res, "info");
            d = check_object(L, -1, st->ref_step, "step() field 'info'");
        }
        if (json_array_append_new(c->details, d) != 0)
            lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
        append_new(L, c->rewards, json_real(r));
        lua_settop(L, fn);
    }
    return 0;
}

int lenv_score(json_t **out, lenv_env *env, const json_t *item, const char *const *completions,
               const size_t *lens, size_t n, lenv_error *err)
{
    *out = NULL;
    if (n > LENV_MAX_COMPLETIONS)
        return lenv__fail(err, LENV_ELIMIT, "at most %d completions per call, got %zu",
                          LENV_MAX_COMPLETIONS, n);
    if (n > 0 && completions == NULL)
        return lenv__fail(err, LENV_EINVALID, "no completions given");
    int rc = check_item(item, err);
    if (rc != LENV_OK)
        return rc;
    score_ctx c = {env, NULL, item, completions, lens, n, json_array(), json_array()};
    json_t *res = json_object();
    if (c.rewards == NULL || c.details == NULL || res == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    c.st = lenv__acquire(env);
    rc = lenv__state_pcall(c.st, score_impl, &c, err);
    lenv__release(env, c.st);
    if (rc != LENV_OK)
        goto done;
    if (json_object_set(res, "rewards", c.rewards) != 0 ||
        json_object_set(res, "details", c.details) != 0) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    *out = res;
    res = NULL;
done:
    json_decref(res);
    json_decref(c.rewards);
    json_decref(c.details);
    return rc;
}

/* ---- episodes ------------------------------------------------------------------------------------ */

typedef struct episode_ctx {
    lenv_env *env;
    lenv__state *st;
    const json_t *item;
    const json_t *state_in; /* borrowed; NULL for reset */
    uint64_t seed;
    const char *action;
    size_t action_len;
    json_t *result;         /* owned by the caller: observation (reset) or result (step) */
    json_t *state_out;      /* owned by the caller */
    json_t *env_state;      /* owned by the caller: state_in without "_envsrv" */
} episode_ctx;

/* The reserved state member that holds lenv's own episode bookkeeping. */
#define BOOK "_envsrv"

/* Characters (UTF-8 code points) of the contents of a list of messages. */
static size_t content_chars(const json_t *msgs)
{
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const json_t *c = json_object_get(m, "content");
        const char *s = json_string_value(c);
        for (size_t k = 0; s && k < json_string_length(c); k++)
            n += ((unsigned char)s[k] & 0xC0) != 0x80;
    }
    return n;
}

static size_t text_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t k = 0; k < len; k++)
        n += ((unsigned char)s[k] & 0xC0) != 0x80;
    return n;
}

/* The state after a call: the Lua table at `state` as JSON, with the
 * bookkeeping put back. [-0, +0, e] */
static json_t *state_with_book(lua_State *L, int state, int ref, const char *when, size_t turns,
                               size_t chars, const char *end)
{
    char err[160];
    json_t *out = lenv__to_json(L, state, 0, err, sizeof err);
    if (out == NULL)
        RAISE_AT(L, ref, "the episode state is not JSON after %s: %s", when, err);
    if (!json_is_object(out)) { /* an empty table converts to {} already */
        json_decref(out);
        RAISE_AT(L, ref, "the episode state must keep string keys after %s", when);
    }
    json_t *book = json_pack("{s:I, s:I}", "turns", (json_int_t)turns, "chars", (json_int_t)chars);
    if (book && end)
        json_object_set_new(book, "end", json_string(end));
    if (book == NULL || json_object_set_new(out, BOOK, book) != 0) {
        json_decref(out);
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    }
    return out;
}

/* [-1, +0, e] */
static int reset_impl(lua_State *L)
{
    episode_ctx *c = lua_touserdata(L, 1);
    lenv__state *st = c->st;
    lenv__push_json(L, c->item);
    int it = lua_gettop(L);
    lua_newtable(L);
    int state = lua_gettop(L);
    lenv__arm(L, c->seed);
    if (c->env->multi_turn) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_reset);
        lua_pushvalue(L, it);
        lua_pushvalue(L, state);
        lua_call(L, 2, 1);
        c->result = check_messages(L, -1, st->ref_reset, "reset()", 0);
        c->state_out = state_with_book(L, state, st->ref_reset, "reset()", 0,
                                       content_chars(c->result), NULL);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_prompt);
        lua_pushvalue(L, it);
        lua_call(L, 1, 1);
        c->result = check_messages(L, -1, st->ref_prompt, "prompt()", 0);
        if ((c->state_out = json_object()) == NULL)
            lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    }
    return 0;
}

static void step_call(lua_State *L, episode_ctx *c, int it, int state);

/* [-1, +0, e] */
static int step_impl(lua_State *L)
{
    episode_ctx *c = lua_touserdata(L, 1);
    lenv__state *st = c->st;
    if (c->result == NULL && (c->result = json_object()) == NULL)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    lenv__push_json(L, c->item);
    int it = lua_gettop(L);
    lenv__arm(L, c->seed);
    if (!c->env->multi_turn) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_reward);
        lua_pushvalue(L, it);
        lua_pushlstring(L, c->action, c->action_len);
        lua_call(L, 2, 2);
        double r = check_reward(L, it + 1, st->ref_reward, "reward()");
        set_new(L, c->result, "observation", json_array());
        set_new(L, c->result, "reward", json_real(r));
        set_new(L, c->result, "done", json_true());
        set_new(L, c->result, "info",
                check_object(L, it + 2, st->ref_reward, "reward()'s second result (details)"));
        if ((c->state_out = json_object()) == NULL)
            lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
        return 0;
    }
    const json_t *book = json_object_get(c->state_in, BOOK);
    json_int_t t0 = json_integer_value(json_object_get(book, "turns"));
    json_int_t c0 = json_integer_value(json_object_get(book, "chars"));
    size_t turns = (size_t)(t0 > 0 ? t0 : 0) + 1;
    size_t chars = (size_t)(c0 > 0 ? c0 : 0) + text_chars(c->action, c->action_len);
    const lenv_limits *lim = &c->env->limits;
    lenv__push_json(L, c->env_state);
    int state = lua_gettop(L);

    json_t *obs = json_array(), *info = json_object();
    set_new(L, c->result, "observation", obs);
    set_new(L, c->result, "info", info);
    const char *end = NULL;
    if (chars > lim->max_chars) {
        /* The action alone is past the limit: the env never sees it. */
        set_new(L, c->result, "reward", json_real(0));
        end = "max_chars";
    } else {
        json_t *calls = json_array();
        set_new(L, info, "tool_calls", calls);
        if (lenv__tools_run(L, st, state, c->action, c->action_len, c->seed, (long)turns, obs,
                            calls)) {
            set_new(L, c->result, "reward", json_real(0));
        } else {
            json_object_del(info, "tool_calls");
            step_call(L, c, it, state);
            obs = json_object_get(c->result, "observation");
            info = json_object_get(c->result, "info");
            if (json_is_true(json_object_get(c->result, "done")))
                end = "done";
        }
        chars += content_chars(obs);
        if (end == NULL && turns >= lim->max_turns)
            end = "max_turns";
        else if (end == NULL && chars > lim->max_chars)
            end = "max_chars";
    }
    if (end && strcmp(end, "done") != 0)
        set_new(L, info, "limit", json_string(end));
    set_new(L, c->result, "done", json_boolean(end != NULL));
    c->state_out = state_with_book(L, state, st->ref_step, "step()", turns, chars, end);
    return 0;
}

/* The env's step() on the action: fills result's observation, reward, done
 * and info. [-0, +0, e] */
static void step_call(lua_State *L, episode_ctx *c, int it, int state)
{
    lenv__state *st = c->st;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_step);
    lua_pushvalue(L, it);
    lua_pushvalue(L, state);
    lua_pushlstring(L, c->action, c->action_len);
    lua_call(L, 3, 1);
    int res = lua_gettop(L);
    if (!lua_istable(L, res))
        RAISE_AT(L, st->ref_step, "step() must return a table {observation, reward, done, info}, "
                 "got %s", luaL_typename(L, res));
    lua_getfield(L, res, "observation");
    set_new(L, c->result, "observation",
            check_messages(L, -1, st->ref_step, "step() field 'observation'", 1));
    lua_getfield(L, res, "reward");
    set_new(L, c->result, "reward", json_real(check_reward(L, -1, st->ref_step,
                                                           "step() field 'reward'")));
    int t = lua_getfield(L, res, "done");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        RAISE_AT(L, st->ref_step, "step() field 'done' must be a boolean, got %s",
                 luaL_typename(L, -1));
    set_new(L, c->result, "done", json_boolean(lua_toboolean(L, -1)));
    lua_getfield(L, res, "info");
    set_new(L, c->result, "info", check_object(L, -1, st->ref_step, "step() field 'info'"));
    lua_settop(L, top);
}

int lenv_reset(json_t **observation, json_t **state, lenv_env *env, const json_t *item,
               lenv_error *err)
{
    *observation = NULL;
    *state = NULL;
    int rc = check_item(item, err);
    if (rc != LENV_OK)
        return rc;
    episode_ctx c = {.env = env, .item = item, .seed = item_seed(env, item)};
    c.st = lenv__acquire(env);
    rc = lenv__state_pcall(c.st, reset_impl, &c, err);
    lenv__release(env, c.st);
    if (rc != LENV_OK) {
        json_decref(c.result);
        json_decref(c.state_out);
        return rc;
    }
    *observation = c.result;
    *state = c.state_out;
    return LENV_OK;
}

int lenv_step(json_t **result, json_t **state, lenv_env *env, const json_t *item,
              const char *action, size_t action_len, lenv_error *err)
{
    *result = NULL;
    int rc = check_item(item, err);
    if (rc != LENV_OK)
        return rc;
    if (action == NULL)
        return lenv__fail(err, LENV_EINVALID, "no action given");
    const json_t *st_in = *state;
    if (env->multi_turn) {
        if (!json_is_object(st_in) && !json_is_array(st_in))
            return lenv__fail(err, LENV_EINVALID, "the episode state must be a JSON object");
        if (lenv__json_depth(st_in, LENV__MAX_DEPTH) > LENV__MAX_DEPTH)
            return lenv__fail(err, LENV_EINVALID, "the episode state is nested deeper than %d "
                              "levels", LENV__MAX_DEPTH);
        const char *end = json_string_value(json_object_get(json_object_get(st_in, BOOK), "end"));
        if (end)
            return lenv__fail(err, LENV_EINVALID, "the episode is over (%s)", end);
    }
    /* The seed covers the state too, so two steps with the same action in one
     * episode draw different numbers, and replays draw the same ones. */
    uint64_t seed = lenv__hash64(item_seed(env, item), action, action_len);
    if (env->multi_turn) {
        char *dump = json_dumps(st_in, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (dump == NULL)
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
        seed = lenv__hash64(seed, dump, strlen(dump));
        free(dump);
    }
    episode_ctx c = {.env = env, .item = item, .state_in = st_in, .seed = seed,
                     .action = action, .action_len = action_len};
    if (env->multi_turn) {
        /* The env sees its own state only; the bookkeeping is lenv's. */
        c.env_state = json_is_object(st_in) ? json_copy((json_t *)st_in) : json_object();
        if ((c.result = json_object()) == NULL || c.env_state == NULL) {
            json_decref(c.result);
            json_decref(c.env_state);
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
        }
        json_object_del(c.env_state, BOOK);
    }
    c.st = lenv__acquire(env);
    rc = lenv__state_pcall(c.st, step_impl, &c, err);
    lenv__release(env, c.st);
    json_decref(c.env_state);
    if (rc != LENV_OK) {
        json_decref(c.result);
        json_decref(c.state_out);
        return rc;
    }
    json_decref(*state);
    *state = c.state_out;
    *result = c.result;
    return LENV_OK;
}
