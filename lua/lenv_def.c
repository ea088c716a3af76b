/*
 * Environment definitions: the table an env file returns. lenv__def_impl
 * checks its fields (names, kinds, required ones, the reset/step/reward
 * combinations), takes registry refs to its functions in each pool state, and
 * from the first state reads what lenv_open keeps: name, description,
 * limits, levels, params, data_format and the dataset's split paths. See
 * docs/lua-envs.md for the format.
 */
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

int lenv__valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LENV__MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

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

void lenv__def_clear(lenv__def *c)
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
static void read_data_format(lua_State *L, int t, lenv__def *c)
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
static void read_levels(lua_State *L, int def, lenv__def *c)
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
int lenv__def_impl(lua_State *L)
{
    lenv__def *c = lua_touserdata(L, 1);
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
    if (!lenv__valid_name(lua_tostring(L, -1)))
        return lenv__raise(L, LENV_EINVALID, 0, "definition field 'name' must match [a-z0-9_.-]+ "
                           "(at most %d characters), got '%s'", LENV__MAX_NAME, lua_tostring(L, -1));
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
    if (c->default_split && !lenv__valid_name(c->default_split))
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
            if (lua_type(L, -2) != LUA_TSTRING || !lenv__valid_name(lua_tostring(L, -2)))
                return lenv__raise(L, LENV_EINVALID, 0, "definition field 'dataset' must map split "
                                   "names ([a-z0-9_.-]+) to file paths");
            if (lua_type(L, -1) != LUA_TSTRING)
                return lenv__raise(L, LENV_EINVALID, 0, "dataset split '%s' must be a file path "
                                   "(string), got %s", lua_tostring(L, -2), luaL_typename(L, -1));
            json_t *p = json_string(lua_tostring(L, -1));
            if (p == NULL)
                return lenv__raise(L, LENV_EINVALID, 0, "dataset split '%s' has a path that is "
                                   "not UTF-8", lua_tostring(L, -2));
            lenv__set_new(L, c->dataset, lua_tostring(L, -2), p);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return 0;
}
