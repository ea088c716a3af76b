/*
 * The calls into env code for one item: item views (prompt, metadata, tools,
 * answer), scoring (reward, or a one-step episode for multi-turn envs) and
 * episodes (reset, step, with lenv's own bookkeeping of turns and characters
 * in the state). The checks here turn what env code returns into JSON or a
 * script error that points at the function that returned it.
 *
 * Every call into Lua runs inside lenv__state_pcall: the C function given to
 * it does the work with lua_call and may raise at any point, so whatever C
 * memory it builds hangs off its context struct, which the caller frees.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

/* ---- helpers ----------------------------------------------------------------- */

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

/* json_object_set_new and json_array_append_new that raise ENOMEM instead of
 * failing quietly; lenv_def.c and tools.c use them too. */
void lenv__set_new(lua_State *L, json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
}

void lenv__append_new(lua_State *L, json_t *arr, json_t *v)
{
    if (v == NULL || json_array_append_new(arr, v) != 0)
        lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
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
        lenv__append_new(L, c->out, v);
        lenv__set_new(L, v, "id", json_string(item_id(item)));
        lenv__push_json(L, item);
        int it = lua_gettop(L);

        lenv__arm(L, seed);
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_prompt);
        lua_pushvalue(L, it);
        lua_call(L, 1, 1);
        lenv__set_new(L, v, "prompt", check_messages(L, -1, st->ref_prompt, "prompt()", 0));
        lua_settop(L, it);

        if (st->ref_metadata != LUA_NOREF) {
            lenv__arm(L, seed);
            lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_metadata);
            lua_pushvalue(L, it);
            lua_call(L, 1, 1);
            lenv__set_new(L, v, "metadata", check_object(L, -1, st->ref_metadata, "metadata() result"));
            lua_settop(L, it);
        } else {
            lenv__set_new(L, v, "metadata", json_object());
        }

        lenv__arm(L, seed);
        json_t *tools = lenv__tools_view(L, st, it);
        if (tools)
            lenv__set_new(L, v, "tools", tools);
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
            lenv__set_new(L, v, "answer", a);
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
        lenv__append_new(L, c->rewards, json_real(r));
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
        lenv__set_new(L, c->result, "observation", json_array());
        lenv__set_new(L, c->result, "reward", json_real(r));
        lenv__set_new(L, c->result, "done", json_true());
        lenv__set_new(L, c->result, "info",
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
    lenv__set_new(L, c->result, "observation", obs);
    lenv__set_new(L, c->result, "info", info);
    const char *end = NULL;
    if (chars > lim->max_chars) {
        /* The action alone is past the limit: the env never sees it. */
        lenv__set_new(L, c->result, "reward", json_real(0));
        end = "max_chars";
    } else {
        json_t *calls = json_array();
        lenv__set_new(L, info, "tool_calls", calls);
        if (lenv__tools_run(L, st, state, c->action, c->action_len, c->seed, (long)turns, obs,
                            calls)) {
            lenv__set_new(L, c->result, "reward", json_real(0));
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
        lenv__set_new(L, info, "limit", json_string(end));
    lenv__set_new(L, c->result, "done", json_boolean(end != NULL));
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
    lenv__set_new(L, c->result, "observation",
            check_messages(L, -1, st->ref_step, "step() field 'observation'", 1));
    lua_getfield(L, res, "reward");
    lenv__set_new(L, c->result, "reward", json_real(check_reward(L, -1, st->ref_step,
                                                           "step() field 'reward'")));
    int t = lua_getfield(L, res, "done");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        RAISE_AT(L, st->ref_step, "step() field 'done' must be a boolean, got %s",
                 luaL_typename(L, -1));
    lenv__set_new(L, c->result, "done", json_boolean(lua_toboolean(L, -1)));
    lua_getfield(L, res, "info");
    lenv__set_new(L, c->result, "info", check_object(L, -1, st->ref_step, "step() field 'info'"));
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
