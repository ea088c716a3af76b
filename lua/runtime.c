/*
 * The sandboxed Lua state an environment runs in.
 *
 * Each state holds exactly one definition. Its globals are layered:
 *
 *     _ENV (the definition's globals; read-only once the chunk has run)
 *       --__index--> base (read-only): the allowed base functions and
 *                    read-only proxies of string, table, math, utf8,
 *                    coroutine and envsrv
 *
 * so nothing a call does to globals or library tables can leak into the next
 * call, which might run on another pool state and must give the same answer.
 * Two guards keep calls bounded: a count hook that raises an error once the
 * per-call instruction budget is spent, and an allocator that refuses to grow
 * past the per-state memory cap (Lua turns that into a memory error).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "lua/lenv_int.h"

/* ---- errors ----------------------------------------------------------------- */

int lenv__fail(lenv_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        memset(err, 0, sizeof *err);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

lenv__state *lenv__state_of(lua_State *L)
{
    return *(lenv__state **)lua_getextraspace(L);
}

int lenv__raise(lua_State *L, int code, int line, const char *fmt, ...)
{
    lenv__state *st = lenv__state_of(L);
    va_list ap;
    st->raise_code = code;
    st->raise_line = line;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_error(L);
    __builtin_unreachable(); /* lua_error longjmps; it is not declared noreturn */
}

/* ---- hashing ---------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t load_le64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

/* Not cryptographic: it only has to spread seeds well, be fast on completions
 * of a few kilobytes, and read bytes little-endian so every machine agrees. */
uint64_t lenv__hash64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    h ^= 0x9e3779b97f4a7c15ULL * (len + 1);
    while (len >= 8) {
        h = mix64(h ^ load_le64(p));
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    for (size_t i = 0; i < len; i++)
        tail |= (uint64_t)p[i] << (8 * i);
    return mix64(h ^ tail ^ 0xff51afd7ed558ccdULL);
}

/* ---- allocator and instruction hook ---------------------------------------- */

/* Lua's allocator contract: nsize 0 frees; when ptr is NULL, osize is a type
 * tag, not a size. Shrinking never fails (Lua relies on that). */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lenv__state *st = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        st->mem_used -= old;
        free(ptr);
        return NULL;
    }
    if (nsize > old && (nsize - old > st->mem_limit || st->mem_used > st->mem_limit - (nsize - old))) {
        st->mem_refused = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p == NULL)
        return NULL;
    st->mem_used = st->mem_used - old + nsize;
    return p;
}

/* Runs every LENV__HOOK_CHUNK instructions of any thread of the state. Once
 * the budget is spent it fails at every instruction, so env code that wraps a
 * loop in pcall() cannot swallow the limit and carry on. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
    lenv__state *st = lenv__state_of(L);
    if (st->chunks_left > 1) {
        st->chunks_left--;
        /* A coroutine that tripped the limit in an earlier call still hooks
         * every instruction: put it back to chunks. */
        if (lua_gethookcount(L) != LENV__HOOK_CHUNK)
            lua_sethook(L, count_hook, LUA_MASKCOUNT, LENV__HOOK_CHUNK);
        return;
    }
    st->chunks_left = 0;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    st->raise_code = LENV_ESCRIPT;
    st->raise_line = 0;
    lua_getinfo(L, "Sl", ar);
    lua_pushfstring(L, "%s:%d: instruction limit exceeded (%I instructions per call)",
                    ar->short_src, ar->currentline, (lua_Integer)st->instruction_limit);
    lua_error(L);
}

void lenv__arm(lua_State *L, uint64_t seed)
{
    lenv__state *st = lenv__state_of(L);
    st->chunks_left = st->chunks_budget;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, LENV__HOOK_CHUNK);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_randomseed);
    lua_pushinteger(L, (lua_Integer)seed);
    lua_call(L, 1, 0);
}

/* ---- the sandbox, as data ---------------------------------------------------- */

/* Libraries an environment gets. Left out, on purpose:
 *   io       files and io.popen: rewards must not depend on (or touch) the disk
 *   os       os.time/os.clock (a clock breaks determinism), os.exit, os.execute,
 *            os.getenv, os.remove
 *   package  require/package.loadlib load Lua and C code from disk
 *   debug    reaches other functions' locals, upvalues and the registry, and
 *            can remove the instruction hook */
static const luaL_Reg sandbox_libs[] = {
    {LUA_GNAME, luaopen_base},
    {LUA_STRLIBNAME, luaopen_string},
    {LUA_TABLIBNAME, luaopen_table},
    {LUA_MATHLIBNAME, luaopen_math},
    {LUA_UTF8LIBNAME, luaopen_utf8},
    {LUA_COLIBNAME, luaopen_coroutine},
    {NULL, NULL},
};

/* Base functions copied into the base table. Anything not listed (in this Lua
 * or a later one) stays out. Left out:
 *   dofile, loadfile   read code from disk
 *   load               compiles new code, including binary chunks that can
 *                      crash the VM, and could escape _ENV
 *   print, warn        write to the server's stdout/stderr
 *   collectgarbage     lets a call stop the collector for the calls after it
 *   rawset             would write into the read-only tables behind their
 *                      guards */
static const char *const base_allowed[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawget", "rawlen", "select", "setmetatable", "tonumber", "tostring", "type",
    "xpcall", "_VERSION", NULL,
};

/* Library fields removed before the proxies are made. */
static const struct {
    const char *lib;
    const char *field;
} lib_denied[] = {
    /* Bytecode dumps are useless without load() and reveal function internals. */
    {LUA_STRLIBNAME, "dump"},
    {NULL, NULL},
};

/* __newindex of read-only proxies. [-3, +0, e] */
static int readonly_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify read-only table '%s'",
                      lua_tostring(L, lua_upvalueindex(1)));
}

/* next() over a table, for readonly_pairs. [-2, +2|1, e] */
static int table_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

/* __pairs of read-only proxies: iterate the real table. [-1, +3, -] */
static int readonly_pairs(lua_State *L)
{
    lua_pushcfunction(L, table_next);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushnil(L);
    return 3;
}

void lenv__push_readonly(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);                /* proxy */
    lua_createtable(L, 0, 4);       /* its metatable */
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_pushcclosure(L, readonly_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, readonly_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);          /* getmetatable() answers false; setmetatable() refuses */
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* __newindex of _ENV: globals may be defined while the chunk runs; after that
 * an assignment is almost always a missing `local`, and would carry state
 * from one call into the next. [-3, +0, e] */
static int env_newindex(lua_State *L)
{
    lenv__state *st = lenv__state_of(L);
    if (st->frozen)
        return luaL_error(L, "assignment to global '%s' outside the definition chunk "
                             "(globals are read-only during calls; use a local)",
                          lua_isstring(L, 2) ? lua_tostring(L, 2) : luaL_typename(L, 2));
    lua_rawset(L, 1);
    return 0;
}

/* math.randomseed without arguments seeds from the clock; envs get a seed. [-1|2, +0, e] */
static int sandbox_randomseed(lua_State *L)
{
    luaL_checkinteger(L, 1);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, 0);
    return 0;
}

/* Builds the base table and the definition's _ENV; leaves _ENV on the stack.
 * [-0, +1, e] */
static void build_sandbox(lua_State *L, lenv__state *st)
{
    for (const luaL_Reg *lib = sandbox_libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    for (size_t i = 0; lib_denied[i].lib; i++) {
        lua_getfield(L, g, lib_denied[i].lib);
        lua_pushnil(L);
        lua_setfield(L, -2, lib_denied[i].field);
        lua_pop(L, 1);
    }

    /* math.randomseed: keep the real one for lenv__arm, give envs the checked one. */
    lua_getfield(L, g, LUA_MATHLIBNAME);
    lua_getfield(L, -1, "randomseed");
    lua_pushvalue(L, -1);
    st->ref_randomseed = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushcclosure(L, sandbox_randomseed, 1);
    lua_setfield(L, -2, "randomseed");
    lua_pop(L, 1);

    /* Strings index the real string table through their metatable; lock it so
     * getmetatable("").__index cannot reach (and change) it. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_newtable(L); /* base */
    int base = lua_gettop(L);
    for (size_t i = 0; base_allowed[i]; i++) {
        lua_getfield(L, g, base_allowed[i]);
        lua_setfield(L, base, base_allowed[i]);
    }
    for (const luaL_Reg *lib = sandbox_libs + 1; lib->func; lib++) {
        lua_getfield(L, g, lib->name);
        lenv__push_readonly(L, -1, lib->name);
        lua_setfield(L, base, lib->name);
        lua_pop(L, 1);
    }
    lenv__module_init(L);
    lenv__push_module(L);
    lua_setfield(L, base, "envsrv");

    lua_newtable(L); /* _ENV */
    int env = lua_gettop(L);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, env_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, env);

    lua_replace(L, g); /* leave only _ENV */
    lua_settop(L, g);
}

/* Moves the globals the chunk defined out of _ENV into a table behind it, so
 * that _ENV stays empty and every later assignment reaches env_newindex
 * (a raw field could otherwise be reassigned without it). [-0, +0, e] */
static void freeze_env(lua_State *L, lenv__state *st)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_env);
    int env = lua_gettop(L);
    lua_newtable(L);
    int defs = env + 1;
    lua_pushnil(L);
    while (lua_next(L, env)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, defs);
    }
    /* Clear _ENV; setting existing fields to nil during traversal is allowed. */
    lua_pushnil(L);
    while (lua_next(L, env)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, env);
    }
    /* defs inherits the base: setmetatable(defs, getmetatable(_ENV) without the guard). */
    lua_createtable(L, 0, 1);
    lua_getmetatable(L, env);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "__index");
    lua_pop(L, 1);
    lua_setmetatable(L, defs);
    lua_getmetatable(L, env);
    lua_pushvalue(L, defs);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    /* _G must keep answering for the env's own globals. */
    lua_pushvalue(L, env);
    lua_setfield(L, defs, "_G");
    st->frozen = 1;
    lua_settop(L, env - 1);
}

/* ---- errors from Lua ----------------------------------------------------------- */

/* Copies msg into st->err_msg as one line. */
static void set_err_msg(lenv__state *st, const char *msg)
{
    size_t i = 0;
    for (; msg[i] && i + 1 < sizeof st->err_msg; i++)
        st->err_msg[i] = (msg[i] == '\n' || msg[i] == '\r' || msg[i] == '\t') ? ' ' : msg[i];
    st->err_msg[i] = '\0';
}

/* If msg starts with "<short_src>:<line>: ", returns the line and sets *rest. */
static int parse_position(const lenv__state *st, const char *msg, const char **rest)
{
    size_t n = strlen(st->short_src);
    if (n == 0 || strncmp(msg, st->short_src, n) != 0 || msg[n] != ':')
        return 0;
    const char *p = msg + n + 1;
    int line = 0;
    while (*p >= '0' && *p <= '9' && line < 10000000)
        line = line * 10 + (*p++ - '0');
    if (line == 0 || p[0] != ':' || p[1] != ' ')
        return 0;
    *rest = p + 2;
    return line;
}

/* Message handler of every protected call (lua.c's msghandler, made to record
 * data instead of a traceback): fills st->err_msg and st->err_line.
 * Must not fail, so it allocates nothing. [-1, +1, -] */
static int msghandler(lua_State *L)
{
    lenv__state *st = lenv__state_of(L);
    const char *msg = lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER
                          ? lua_tostring(L, 1) : NULL;
    char buf[96];
    if (msg == NULL) {
        snprintf(buf, sizeof buf, "error object is a %s value", luaL_typename(L, 1));
        msg = buf;
    }
    const char *rest = msg;
    int line = parse_position(st, msg, &rest);
    if (st->raise_line > 0)
        line = st->raise_line;
    if (line == 0 && st->raise_code == LENV_ESCRIPT) {
        /* No position in the message (an error raised by a C function such as
         * envsrv.verify.*): use the innermost Lua function on the stack. */
        lua_Debug ar;
        for (int level = 1; lua_getstack(L, level, &ar); level++) {
            if (lua_getinfo(L, "l", &ar) && ar.currentline > 0) {
                line = ar.currentline;
                break;
            }
        }
    }
    st->err_line = line;
    set_err_msg(st, rest);
    return 1;
}

static int status_error(lenv__state *st, int status, lenv_error *err)
{
    int code = st->raise_code;
    const char *msg = st->err_msg;
    int line = st->err_line;
    if (status == LUA_ERRMEM) {
        code = st->mem_refused ? LENV_ESCRIPT : LENV_ENOMEM;
        line = 0;
        msg = st->mem_refused ? "memory limit exceeded" : "out of memory";
    } else if (status == LUA_ERRERR) {
        code = LENV_ESCRIPT;
        line = 0;
        msg = "error while handling an error";
    }
    if (err == NULL)
        return code;
    memset(err, 0, sizeof *err);
    err->code = code;
    if (code == LENV_ESCRIPT || code == LENV_ENOMEM) {
        snprintf(err->source, sizeof err->source, "%s", st->source);
        err->line = line;
        if (status == LUA_ERRMEM && st->mem_refused)
            snprintf(err->message, sizeof err->message,
                     "%.200s: memory limit exceeded (%zu bytes per Lua state)", st->source,
                     st->mem_limit);
        else if (line > 0)
            snprintf(err->message, sizeof err->message, "%.200s:%d: %.290s", st->source, line, msg);
        else
            snprintf(err->message, sizeof err->message, "%.200s: %.300s", st->source, msg);
    } else {
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

int lenv__state_pcall(lenv__state *st, lua_CFunction fn, void *ctx, lenv_error *err)
{
    lua_State *L = st->L;
    lua_settop(L, 0);
    st->raise_code = LENV_ESCRIPT;
    st->raise_line = 0;
    st->err_line = 0;
    st->err_msg[0] = '\0';
    st->mem_refused = 0;
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ctx);
    int status = lua_pcall(L, 1, 0, 1);
    int rc = LENV_OK;
    if (status != LUA_OK)
        rc = status_error(st, status, err);
    lua_settop(L, 0);
    if (status == LUA_ERRMEM || status == LUA_ERRERR)
        lua_gc(L, LUA_GCCOLLECT);
    return rc;
}

/* ---- opening a state -------------------------------------------------------- */

typedef struct open_args {
    lenv__state *st;
    const char *src;
    size_t len;
    const char *chunkname;
} open_args;

/* The short source name Lua puts in messages (luaO_chunkid for "@name"). */
static void chunk_short_src(char *out, const char *name)
{
    size_t n = strlen(name);
    if (n + 1 <= LUA_IDSIZE) {
        memcpy(out, name, n + 1);
    } else {
        size_t keep = LUA_IDSIZE - 4; /* "..." + the last bytes + NUL */
        memcpy(out, "...", 3);
        memcpy(out + 3, name + n - keep, keep);
        out[LUA_IDSIZE - 1] = '\0';
    }
}

/* [-1, +0, e] */
static int open_impl(lua_State *L)
{
    open_args *a = lua_touserdata(L, 1);
    lenv__state *st = a->st;
    build_sandbox(L, st);
    lua_pushvalue(L, -1);
    st->ref_env = luaL_ref(L, LUA_REGISTRYINDEX);
    /* "t": text only; binary chunks are not verified by Lua and can crash it. */
    if (luaL_loadbufferx(L, a->src, a->len, a->chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, -2);
    if (lua_setupvalue(L, -2, 1) == NULL)
        lua_pop(L, 1);
    lenv__arm(L, lenv__hash64(0, a->src, a->len));
    lua_call(L, 0, 1);
    if (!lua_istable(L, -1))
        return lenv__raise(L, LENV_EINVALID, 0,
                           "the file must return a definition table, got %s",
                           luaL_typename(L, -1));
    st->ref_def = luaL_ref(L, LUA_REGISTRYINDEX);
    freeze_env(L, st);
    return 0;
}

int lenv__state_open(lenv__state *st, const char *src, size_t len, const char *display,
                     size_t mem_limit, uint64_t instruction_limit, lenv_error *err)
{
    char chunkname[sizeof st->source + 1];
    memset(st, 0, sizeof *st);
    st->ref_env = st->ref_randomseed = st->ref_def = LUA_NOREF;
    st->ref_prompt = st->ref_answer = st->ref_metadata = LUA_NOREF;
    st->ref_reward = st->ref_reset = st->ref_step = LUA_NOREF;
    st->ref_tools = st->ref_tools_fn = LUA_NOREF;
    st->ref_generate = LUA_NOREF;
    st->tool_docs = NULL;
    st->mem_limit = mem_limit;
    st->instruction_limit = instruction_limit;
    st->chunks_budget = (instruction_limit + LENV__HOOK_CHUNK - 1) / LENV__HOOK_CHUNK;
    if (st->chunks_budget == 0)
        st->chunks_budget = 1;
    snprintf(st->source, sizeof st->source, "%s", display);
    snprintf(chunkname, sizeof chunkname, "@%s", st->source);
    chunk_short_src(st->short_src, st->source);

    st->L = lua_newstate(capped_alloc, st);
    if (st->L == NULL)
        return lenv__fail(err, LENV_ENOMEM, "%s: cannot create a Lua state (memory limit %zu bytes)",
                          display, mem_limit);
    *(lenv__state **)lua_getextraspace(st->L) = st;
    lua_sethook(st->L, count_hook, LUA_MASKCOUNT, LENV__HOOK_CHUNK);

    open_args a = {st, src, len, chunkname};
    int rc = lenv__state_pcall(st, open_impl, &a, err);
    if (rc != LENV_OK) {
        if (err && rc != LENV_ESCRIPT && rc != LENV_ENOMEM) {
            /* Definition-shape errors still name the file. */
            char msg[sizeof err->message];
            snprintf(msg, sizeof msg, "%s", err->message);
            snprintf(err->message, sizeof err->message, "%.200s: %.300s", st->source, msg);
            snprintf(err->source, sizeof err->source, "%s", st->source);
        }
        lenv__state_close(st);
    }
    return rc;
}

void lenv__state_close(lenv__state *st)
{
    if (st == NULL)
        return;
    json_decref(st->tool_docs);
    st->tool_docs = NULL;
    if (st->L == NULL)
        return;
    lua_close(st->L);
    st->L = NULL;
}
