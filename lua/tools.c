/*
 * Tools that environments declare and that run inside an episode.
 *
 * A definition's `tools` is either a list of
 *     { name = "add", description = "...", parameters = <JSON Schema>, run = function(args, state) }
 * or a function(item) that returns the list for one item (OpenAI format,
 * nothing to run: BFCL-style envs, where the tools differ per item and are
 * only described). The same declarations give the tool list of item views
 * and of describe, in the OpenAI format {"type": "function", "function":
 * {"name", "description", "parameters"}}.
 *
 * In a multi-turn episode, when the assistant's action holds tool calls,
 * lenv_call.c hands it here instead of to the env's step(): each call is checked
 * against its tool's schema and run, and becomes one `tool` message. What a
 * model gets wrong — an unknown tool, arguments that break the schema, a
 * Lua error in the tool, a tool that runs past its instruction budget,
 * broken JSON — is told to the model as a tool message starting "error: ",
 * because those are the model's mistakes to learn from, not the server's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"
#include "verifiers/verifiers.h"

#define MAX_TOOLS 128
#define MAX_TOOL_NAME 64
#define MAX_VIOLATIONS 8

static int valid_tool_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_TOOL_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* One declared tool at the top of the stack: checks its fields and appends
 * its OpenAI doc to st->tool_docs. [-0, +0, e] */
static void load_one(lua_State *L, lenv__state *st, int i, int index)
{
    int tool = lua_gettop(L);
    if (!lua_istable(L, tool))
        lenv__raise(L, LENV_EINVALID, 0, "tools[%d] must be a table {name, description, "
                    "parameters, run}, got %s", i, luaL_typename(L, tool));
    lua_pushnil(L);
    while (lua_next(L, tool)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "name") && strcmp(k, "description") && strcmp(k, "parameters") &&
            strcmp(k, "run"))
            lenv__raise(L, LENV_EINVALID, 0, "tools[%d]: unknown field '%s' (name, description, "
                        "parameters, run)", i, k);
        lua_pop(L, 1);
    }
    if (lua_getfield(L, tool, "name") != LUA_TSTRING || !valid_tool_name(lua_tostring(L, -1)))
        lenv__raise(L, LENV_EINVALID, 0, "tools[%d].name must match [A-Za-z0-9_.-]+ (at most %d "
                    "characters)", i, MAX_TOOL_NAME);
    const char *name = lua_tostring(L, -1);
    if (lua_getfield(L, index, name) != LUA_TNIL)
        lenv__raise(L, LENV_EINVALID, 0, "tools[%d]: a tool named '%s' is declared twice", i, name);
    lua_pop(L, 1);
    int t = lua_getfield(L, tool, "description");
    if (t != LUA_TNIL && t != LUA_TSTRING)
        lenv__raise(L, LENV_EINVALID, 0, "tools[%d].description must be a string", i);
    const char *desc = t == LUA_TSTRING ? lua_tostring(L, -1) : "";
    t = lua_getfield(L, tool, "run");
    if (t != LUA_TNIL && t != LUA_TFUNCTION)
        lenv__raise(L, LENV_EINVALID, 0, "tools[%d].run must be a function", i);
    lua_pop(L, 1);

    json_t *doc = json_pack("{s:s, s:{s:s, s:s}}", "type", "function", "function", "name", name,
                            "description", desc);
    lenv__append_new(L, st->tool_docs, doc);
    json_t *params;
    char err[160];
    if (lua_getfield(L, tool, "parameters") == LUA_TNIL) {
        params = json_pack("{s:s, s:{}}", "type", "object", "properties");
    } else {
        if (!lua_istable(L, -1))
            lenv__raise(L, LENV_EINVALID, 0, "tools[%d].parameters must be a JSON Schema table", i);
        params = lenv__to_json(L, -1, 0, err, sizeof err);
        if (params == NULL)
            lenv__raise(L, LENV_EINVALID, 0, "tools[%d].parameters is not JSON: %s", i, err);
        if (!json_is_object(params)) {
            json_decref(params);
            lenv__raise(L, LENV_EINVALID, 0, "tools[%d].parameters must be a table with string "
                        "keys (a JSON Schema)", i);
        }
    }
    lenv__set_new(L, json_object_get(doc, "function"), "parameters", params);
    lua_pop(L, 1);

    lua_pushinteger(L, i);
    lua_setfield(L, index, name);   /* index[name] = i */
    lua_pushvalue(L, tool);
    lua_rawseti(L, index, i);       /* index[i] = the tool */
    lua_pop(L, 2);                  /* description, name */
}

void lenv__tools_load(lua_State *L, lenv__state *st, int def)
{
    int t = lua_getfield(L, def, "tools");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t == LUA_TFUNCTION) {
        st->ref_tools_fn = luaL_ref(L, LUA_REGISTRYINDEX);
        return;
    }
    if (t != LUA_TTABLE)
        lenv__raise(L, LENV_EINVALID, 0, "definition field 'tools' must be a list of tools or a "
                    "function(item), got %s", luaL_typename(L, -1));
    int list = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    if (n == 0 || n > MAX_TOOLS)
        lenv__raise(L, LENV_EINVALID, 0, "definition field 'tools' must list 1 to %d tools",
                    MAX_TOOLS);
    json_decref(st->tool_docs);
    if ((st->tool_docs = json_array()) == NULL)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    lua_newtable(L);
    int index = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        load_one(L, st, (int)i, index);
        lua_settop(L, index);
    }
    st->ref_tools = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
}

json_t *lenv__tools_view(lua_State *L, lenv__state *st, int it)
{
    if (st->tool_docs)
        return json_deep_copy(st->tool_docs);
    if (st->ref_tools_fn == LUA_NOREF)
        return NULL;
    char err[160];
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_tools_fn);
    lua_pushvalue(L, it);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1))
        lenv__raise(L, LENV_ESCRIPT, 0, "tools(item) must return a list of tools, got %s",
                    luaL_typename(L, -1));
    json_t *docs = lenv__to_json(L, -1, LENV__EMPTY_ARRAY, err, sizeof err);
    if (docs == NULL)
        lenv__raise(L, LENV_ESCRIPT, 0, "tools(item) returned a value that is not JSON: %s", err);
    if (!json_is_array(docs)) {
        json_decref(docs);
        lenv__raise(L, LENV_ESCRIPT, 0, "tools(item) must return a list (a table with keys 1..n)");
    }
    lua_pop(L, 1);
    return docs;
}

/* ---- running calls ---------------------------------------------------------- */

/* "error: ..." as the content of a tool message, and the record's error. */
static void tool_error(lua_State *L, json_t *msg, json_t *rec, const char *text)
{
    char content[600];
    snprintf(content, sizeof content, "error: %s", text);
    lenv__set_new(L, msg, "content", json_string(content));
    lenv__set_new(L, rec, "ok", json_false());
    lenv__set_new(L, rec, "error", json_string(text));
}

/* A Lua error message without the "envs/x.lua:12: " in front: the model
 * needs what went wrong, not where in the env file. */
static const char *strip_position(const lenv__state *st, const char *msg)
{
    size_t n = strlen(st->short_src);
    if (n && strncmp(msg, st->short_src, n) == 0 && msg[n] == ':') {
        const char *p = msg + n + 1;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p == ':' && p[1] == ' ')
            return p + 2;
    }
    return msg;
}

/* The arguments' schema violations as one line, or "" when they fit. */
static void check_args(lua_State *L, const json_t *schema, const json_t *args, json_t *rec,
                       char *line, size_t cap)
{
    json_t *viol = json_array();
    lenv__set_new(L, rec, "violations", viol); /* held by rec from here on */
    int n = vf_schema_validate(viol, args, schema, MAX_VIOLATIONS);
    if (n < 0)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    line[0] = '\0';
    if (n == 0) {
        json_object_del(rec, "violations");
        return;
    }
    size_t used = (size_t)snprintf(line, cap, "invalid arguments:");
    size_t i;
    json_t *v;
    json_array_foreach(viol, i, v) {
        if (used >= cap)
            break;
        used += (size_t)snprintf(line + used, cap - used, "%s %s: %s", i ? ";" : "",
                                 json_string_value(json_object_get(v, "path")),
                                 json_string_value(json_object_get(v, "message")));
    }
}

/* Runs one call (record `rec`: {name, arguments}); fills msg and rec. */
static void run_one(lua_State *L, lenv__state *st, int index, int state, json_t *rec,
                    json_t *msg, uint64_t seed)
{
    const char *name = json_string_value(json_object_get(rec, "name"));
    const json_t *args = json_object_get(rec, "arguments");
    char line[512];
    if (lua_getfield(L, index, name) != LUA_TNUMBER) {
        lua_pop(L, 1);
        char known[300] = "";
        size_t used = 0;
        size_t i;
        json_t *d;
        json_array_foreach(st->tool_docs, i, d)
            if (used < sizeof known)
                used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                         json_string_value(json_object_get(json_object_get(d, "function"), "name")));
        snprintf(line, sizeof line, "unknown tool '%.64s' (tools: %s)", name, known);
        tool_error(L, msg, rec, line);
        return;
    }
    lua_Integer i = lua_tointeger(L, -1);
    lua_pop(L, 1);
    const json_t *schema = json_object_get(json_object_get(json_array_get(st->tool_docs, (size_t)i - 1),
                                                           "function"), "parameters");
    check_args(L, schema, args, rec, line, sizeof line);
    if (line[0]) {
        tool_error(L, msg, rec, line);
        return;
    }
    if (lenv__json_depth(args, LENV__MAX_DEPTH) > LENV__MAX_DEPTH - 2) {
        tool_error(L, msg, rec, "arguments are nested too deeply");
        return;
    }
    lua_rawgeti(L, index, i);
    if (lua_getfield(L, -1, "run") != LUA_TFUNCTION) {
        lua_pop(L, 2);
        snprintf(line, sizeof line, "tool '%.64s' is only described, it cannot be run here", name);
        tool_error(L, msg, rec, line);
        return;
    }
    lua_remove(L, -2);
    lenv__push_json(L, args);
    lua_pushvalue(L, state);
    /* Each call gets the whole per-call budget, so that one tool cannot
     * starve the next; a tool that runs past it fails alone. */
    lenv__arm(L, seed);
    int status = lua_pcall(L, 2, 1, 0);
    if (status != LUA_OK) {
        const char *e = lua_tostring(L, -1);
        if (status == LUA_ERRMEM)
            e = "memory limit exceeded";
        else if (e == NULL)
            e = "the tool raised an error that is not a string";
        snprintf(line, sizeof line, "%s", strip_position(st, e));
        lua_pop(L, 1);
        st->raise_code = LENV_ESCRIPT;
        st->raise_line = 0;
        st->mem_refused = 0;
        lenv__arm(L, seed); /* the hook may have been left firing every instruction */
        tool_error(L, msg, rec, line);
        return;
    }
    json_t *content;
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        content = lenv__utf8_valid(s, n) ? json_stringn(s, n) : NULL;
        if (content == NULL) {
            lua_pop(L, 1);
            tool_error(L, msg, rec, "the tool returned text that is not UTF-8");
            return;
        }
    } else {
        char err[160];
        json_t *v = lenv__to_json(L, -1, 0, err, sizeof err);
        if (v == NULL) {
            lua_pop(L, 1);
            snprintf(line, sizeof line, "the tool returned a value that is not JSON: %s", err);
            tool_error(L, msg, rec, line);
            return;
        }
        char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        json_decref(v);
        content = text ? json_string(text) : NULL;
        free(text);
    }
    lua_pop(L, 1);
    lenv__set_new(L, msg, "content", content);
    lenv__set_new(L, rec, "ok", json_true());
}

int lenv__tools_run(lua_State *L, lenv__state *st, int state, const char *action, size_t len,
                    uint64_t seed, long turn, json_t *observation, json_t *calls)
{
    if (st->ref_tools == LUA_NOREF)
        return 0;
    json_t *parsed = NULL;
    char reason[VF_TOOL_REASON_MAX];
    int rc = vf_tool_calls_parse(&parsed, action, len, reason, sizeof reason);
    if (rc == -2)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    char id[48];
    if (rc != 0) {
        json_t *msg = json_object(), *rec = json_object();
        lenv__append_new(L, observation, msg);
        lenv__append_new(L, calls, rec);
        snprintf(id, sizeof id, "call_%ld_0", turn);
        lenv__set_new(L, msg, "role", json_string("tool"));
        lenv__set_new(L, msg, "tool_call_id", json_string(id));
        char line[VF_TOOL_REASON_MAX + 40];
        snprintf(line, sizeof line, "could not read the tool call: %s", reason);
        tool_error(L, msg, rec, line);
        return 1;
    }
    size_t n = json_array_size(parsed);
    /* The records take the parsed calls over, so nothing leaks if we raise. */
    int moved = json_array_extend(calls, parsed);
    json_decref(parsed);
    if (moved != 0)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    if (n == 0)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_tools);
    int index = lua_gettop(L);
    size_t first = json_array_size(calls) - n;
    for (size_t k = 0; k < n; k++) {
        json_t *rec = json_array_get(calls, first + k);
        json_t *msg = json_object();
        lenv__append_new(L, observation, msg);
        snprintf(id, sizeof id, "call_%ld_%zu", turn, k);
        lenv__set_new(L, msg, "role", json_string("tool"));
        lenv__set_new(L, msg, "tool_call_id", json_string(id));
        lenv__set_new(L, msg, "name", json_string(json_string_value(json_object_get(rec, "name"))));
        uint64_t kk = (uint64_t)k;
        run_one(L, st, index, state, rec, msg, lenv__hash64(seed, &kk, sizeof kk));
    }
    lua_settop(L, index - 1);
    lenv__arm(L, seed);
    return 1;
}
