/*
 * envsrv.sandbox and envsrv.code: running untrusted programs from environment
 * code (sandbox/sandbox.h), and pulling the program out of a completion.
 *
 *   envsrv.sandbox.run(req)        one sandboxed run; the same request and
 *                                  result as POST /v1/sandbox/run
 *   envsrv.sandbox.nonce()         32 random hex digits (harness secrets)
 *   envsrv.code.extract(text)      the last fenced code block, or the text
 *
 * The sandbox must be initialised once per process before its first run. The
 * server does that at start-up with the user's --sandbox mode; everything else
 * (tests, benchmarks, `envsrv eval`) gets a lazy best-effort sbx_init on the
 * first envsrv.sandbox.run, which is a no-op when the sandbox already has a
 * tier. A failed lazy init is remembered: every later run raises its message.
 *
 * A run blocks in C for up to its wall limit; the Lua instruction hook cannot
 * interrupt it, which is fine because the sandbox enforces its own wall clock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lua/lenv_int.h"
#include "sandbox/sandbox.h"

/* ---- lazy initialisation ------------------------------------------------------ */

static pthread_once_t sandbox_once = PTHREAD_ONCE_INIT;
static int sandbox_init_rc;             /* written once, inside sandbox_once */
static char sandbox_init_err[256];

static void sandbox_init_once(void)
{
    /* The server (or a test) initialised it already, maybe in strict mode:
     * never override that choice. */
    if (sbx_current_tier() != SBX_TIER_NONE)
        return;
    sbx_options opts = SBX_OPTIONS_INIT;
    sandbox_init_rc = sbx_init(NULL, &opts, sandbox_init_err, sizeof sandbox_init_err);
}

/* ---- limits --------------------------------------------------------------------- */

/* The most an environment may ask for. Environments choose their limits per
 * run; these caps keep one reward call from holding a worker for minutes or
 * the host's memory. A request over a cap is clamped, not refused, so that an
 * env written for a larger server still runs here. */
static const sbx_limits max_limits = {
    .cpu_ms = 60000,
    .wall_ms = 120000,
    .memory_mb = 4096,
    .output_bytes = 64u << 20,
    .processes = 256,
    .file_bytes = 256u << 20,
    .tmpfs_mb = 512,
};

/* ---- the request ------------------------------------------------------------------ */

/* Most argv entries a request may give (the sandbox copies them). */
#define MAX_ARGV 64

/* C memory of one run, in a userdata so that a Lua error raised while the
 * request is read (or while the result is pushed) frees it through __gc. */
typedef struct run_scratch {
    sbx_file files[SBX_MAX_FILES];
    const char *argv[MAX_ARGV + 1];
    sbx_result res;
    int have_res;
} run_scratch;

#define SCRATCH_META "envsrv.sandbox.scratch"

/* [-1, +0, -] */
static int scratch_gc(lua_State *L)
{
    run_scratch *s = luaL_checkudata(L, 1, SCRATCH_META);
    if (s->have_res)
        sbx_result_free(&s->res);
    s->have_res = 0;
    return 0;
}

/* [-0, +1, m] */
static run_scratch *push_scratch(lua_State *L)
{
    run_scratch *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    if (luaL_newmetatable(L, SCRATCH_META)) {
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    return s;
}

/* Tables whose strings the request borrows must be plain: their values are
 * read raw (lua_next) and must stay anchored by the table during the run, so
 * no metamethod may compute them on the fly. */
static void check_plain(lua_State *L, int idx, const char *what)
{
    if (lua_type(L, idx) != LUA_TTABLE || lua_getmetatable(L, idx))
        luaL_error(L, "envsrv.sandbox.run: %s must be a plain table", what);
}

/* Reads one limit field of the table at idx into *out (absent: unchanged). */
static void read_limit(lua_State *L, int idx, const char *name, uint32_t cap, uint32_t *out)
{
    int t = lua_getfield(L, idx, name);
    if (t != LUA_TNIL) {
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 0)
            luaL_error(L, "envsrv.sandbox.run: limits.%s must be a non-negative integer", name);
        /* 0 keeps the sandbox default, like the HTTP API. */
        if (v > 0)
            *out = v > (lua_Integer)cap ? cap : (uint32_t)v;
    }
    lua_pop(L, 1);
}

static const char *const limit_names[] = {
    "cpu_ms", "wall_ms", "memory_mb", "output_bytes", "processes", "file_bytes", "tmpfs_mb", NULL,
};

static void read_limits(lua_State *L, int idx, sbx_limits *lim)
{
    check_plain(L, idx, "limits");
    /* Unknown names are errors: a typo ("wall") must not silently give the
     * default limit. */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int known = 0;
        for (int i = 0; k && limit_names[i]; i++)
            known |= strcmp(k, limit_names[i]) == 0;
        if (!known)
            luaL_error(L, "envsrv.sandbox.run: unknown limit '%s' (cpu_ms, wall_ms, memory_mb, "
                          "output_bytes, processes, file_bytes, tmpfs_mb)",
                       k ? k : luaL_typename(L, -1));
    }
    read_limit(L, idx, "cpu_ms", max_limits.cpu_ms, &lim->cpu_ms);
    read_limit(L, idx, "wall_ms", max_limits.wall_ms, &lim->wall_ms);
    read_limit(L, idx, "memory_mb", max_limits.memory_mb, &lim->memory_mb);
    read_limit(L, idx, "output_bytes", max_limits.output_bytes, &lim->output_bytes);
    read_limit(L, idx, "processes", max_limits.processes, &lim->processes);
    read_limit(L, idx, "file_bytes", max_limits.file_bytes, &lim->file_bytes);
    read_limit(L, idx, "tmpfs_mb", max_limits.tmpfs_mb, &lim->tmpfs_mb);
}

/* files = { name = "content" | { content = "...", executable = true } }.
 * The strings stay anchored in the request table for the whole call. */
static size_t read_files(lua_State *L, int idx, sbx_file *files)
{
    check_plain(L, idx, "files");
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "envsrv.sandbox.run: files must map names (strings) to contents");
        if (n == SBX_MAX_FILES)
            luaL_error(L, "envsrv.sandbox.run: more than %d files", SBX_MAX_FILES);
        sbx_file *f = &files[n++];
        f->name = lua_tostring(L, -2);
        if (lua_type(L, -1) == LUA_TSTRING) {
            f->content = lua_tolstring(L, -1, &f->len);
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            check_plain(L, lua_gettop(L), "a files entry");
            if (lua_getfield(L, -1, "content") != LUA_TSTRING)
                luaL_error(L, "envsrv.sandbox.run: files['%s'].content must be a string", f->name);
            /* A plain table (no __index): the string stays anchored by it,
             * and the files table holds it. */
            f->content = lua_tolstring(L, -1, &f->len);
            lua_pop(L, 1);
            lua_getfield(L, -1, "executable");
            f->executable = lua_toboolean(L, -1);
            lua_pop(L, 1);
        } else {
            luaL_error(L, "envsrv.sandbox.run: files['%s'] must be a string or "
                          "{content=, executable=}, got %s", f->name, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    return n;
}

static const char *const request_fields[] = {
    "language", "argv", "code", "stdin", "files", "limits", "warm", NULL,
};

/* Fills req from the request table at idx. Raises on bad input. */
static void read_request(lua_State *L, int idx, run_scratch *s, sbx_request *req)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int known = 0;
        for (int i = 0; k && request_fields[i]; i++)
            known |= strcmp(k, request_fields[i]) == 0;
        if (!known)
            luaL_error(L, "envsrv.sandbox.run: unknown request field '%s' (language, argv, "
                          "code, stdin, files, limits, warm)", k ? k : luaL_typename(L, -1));
    }

    /* Each field's value stays on the stack until the run is over, so that
     * the strings the request borrows stay anchored even when a metamethod
     * made them. */
    int t = lua_getfield(L, idx, "language");
    if (t != LUA_TNIL) {
        if (t != LUA_TSTRING)
            luaL_error(L, "envsrv.sandbox.run: language must be a string");
        const char *lang = lua_tostring(L, -1);
        /* The HTTP API says "python"; the sandbox's table says "python3". */
        req->language = strcmp(lang, "python") == 0 ? "python3" : lang;
    }

    t = lua_getfield(L, idx, "argv");
    if (t != LUA_TNIL) {
        check_plain(L, lua_gettop(L), "argv");
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        if (n < 1 || n > MAX_ARGV)
            luaL_error(L, "envsrv.sandbox.run: argv must have 1 to %d entries", MAX_ARGV);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                luaL_error(L, "envsrv.sandbox.run: argv[%d] must be a string", (int)i);
            s->argv[i - 1] = lua_tostring(L, -1);   /* anchored by the argv table */
            lua_pop(L, 1);
        }
        s->argv[n] = NULL;
        req->argv = s->argv;
    }
    if ((req->language == NULL) == (req->argv == NULL))
        luaL_error(L, "envsrv.sandbox.run: give exactly one of language and argv");

    t = lua_getfield(L, idx, "code");
    if (t == LUA_TSTRING)
        req->code = lua_tolstring(L, -1, &req->code_len);
    else if (t != LUA_TNIL)
        luaL_error(L, "envsrv.sandbox.run: code must be a string");
    if (req->language && req->code == NULL)
        luaL_error(L, "envsrv.sandbox.run: code is required with language");
    if (req->argv && req->code)
        luaL_error(L, "envsrv.sandbox.run: code goes with language, not argv (use files)");

    t = lua_getfield(L, idx, "stdin");
    if (t == LUA_TSTRING)
        req->stdin_data = lua_tolstring(L, -1, &req->stdin_len);
    else if (t != LUA_TNIL)
        luaL_error(L, "envsrv.sandbox.run: stdin must be a string");

    if (lua_getfield(L, idx, "files") != LUA_TNIL) {
        req->nfiles = read_files(L, lua_gettop(L), s->files);
        req->files = s->files;
    }

    if (lua_getfield(L, idx, "limits") != LUA_TNIL)
        read_limits(L, lua_gettop(L), &req->limits);

    /* Warm by default: the same isolation, a fraction of the start-up. */
    t = lua_getfield(L, idx, "warm");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "envsrv.sandbox.run: warm must be a boolean");
    req->warm = t == LUA_TNIL || lua_toboolean(L, -1);
}

/* ---- the result ------------------------------------------------------------------- */

static void set_int(lua_State *L, const char *name, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, name);
}

/* Sets t[prefix], t[prefix_truncated] and t[prefix_bytes] from one stream. */
static void set_output(lua_State *L, const char *prefix, const sbx_output *o)
{
    char name[64];
    lua_pushlstring(L, o->data ? o->data : "", o->data ? o->len : 0);
    lua_setfield(L, -2, prefix);
    snprintf(name, sizeof name, "%s_truncated", prefix);
    lua_pushboolean(L, o->truncated);
    lua_setfield(L, -2, name);
    snprintf(name, sizeof name, "%s_bytes", prefix);
    set_int(L, name, (lua_Integer)o->total);
}

/* envsrv.sandbox.run(req) -> table [-1, +1, e]
 *
 * req = {language = "python"|"python3"|"c"|"cpp"|"bash"|"lua", code = "...",
 *        -- or argv = {"/usr/bin/python3", "main.py"} (absolute argv[0]), no code
 *        stdin = "...", files = {name = "content" | {content=, executable=}},
 *        limits = {cpu_ms, wall_ms, memory_mb, output_bytes, processes,
 *                  file_bytes, tmpfs_mb},   -- 0 or absent: the default
 *        warm = true|false}   -- default true: a warm interpreter where the
 *                             -- language has one (python), same isolation
 * Limits above lenv's caps are clamped. The result: {status = "OK" | ... |
 * "INTERNAL_ERROR", exit_code, signal, stdout, stderr, stdout_truncated,
 * stderr_truncated, stdout_bytes, stderr_bytes, cpu_ms, wall_ms, memory_kb,
 * tier, warm (whether it ran warm), message, and for compiled languages compile_output,
 * compile_output_truncated, compile_output_bytes, compile_exit_code,
 * compile_ms}. A bad request (unknown language, bad file name) raises an
 * error. INTERNAL_ERROR and EXEC_ERROR are results, not errors: the env must
 * fail the call on them (never score them as a wrong answer). */
static int l_sandbox_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    run_scratch *s = push_scratch(L);   /* index 2 */
    sbx_request req = SBX_REQUEST_INIT;
    read_request(L, 1, s, &req);

    pthread_once(&sandbox_once, sandbox_init_once);
    if (sbx_current_tier() == SBX_TIER_NONE)
        return luaL_error(L, "envsrv.sandbox.run: the sandbox is unavailable: %s",
                          sandbox_init_err[0] ? sandbox_init_err : "not initialised");

    char err[256] = "";
    s->have_res = 1;
    int rc = sbx_run(&s->res, &req, err, sizeof err);
    if (rc == SBX_EINVALID) {
        /* Not filled; nothing to free. */
        s->have_res = 0;
        return luaL_error(L, "envsrv.sandbox.run: %s", err);
    }
    /* rc == SBX_EINTERNAL comes with status INTERNAL_ERROR: a result. */
    const sbx_result *r = &s->res;
    lua_createtable(L, 0, 24);
    lua_pushstring(L, sbx_status_name(r->status));
    lua_setfield(L, -2, "status");
    set_int(L, "exit_code", r->exit_code);
    set_int(L, "signal", r->signal);
    set_output(L, "stdout", &r->out);
    set_output(L, "stderr", &r->err);
    set_int(L, "cpu_ms", (lua_Integer)r->cpu_ms);
    set_int(L, "wall_ms", (lua_Integer)r->wall_ms);
    set_int(L, "memory_kb", (lua_Integer)r->memory_kb);
    lua_pushstring(L, r->tier ? r->tier : sbx_tier_name(sbx_current_tier()));
    lua_setfield(L, -2, "tier");
    lua_pushboolean(L, r->warm);
    lua_setfield(L, -2, "warm");
    lua_pushstring(L, r->message[0] ? r->message : err);
    lua_setfield(L, -2, "message");
    if (r->compile.data || r->compile_exit_code != -1) {
        set_output(L, "compile_output", &r->compile);
        set_int(L, "compile_exit_code", r->compile_exit_code);
        set_int(L, "compile_ms", (lua_Integer)r->compile_ms);
    }
    /* Free the buffers now rather than at the next collection: outputs can be
     * large, and a state may run many programs between collections. */
    sbx_result_free(&s->res);
    s->have_res = 0;
    return 1;
}

/* envsrv.sandbox.nonce() -> string [-0, +1, e]
 * 32 hex digits from the kernel's random source: a secret that a harness can
 * hand to its trusted half only. Rewards must not depend on its value. */
static int l_sandbox_nonce(lua_State *L)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return luaL_error(L, "envsrv.sandbox.nonce: getrandom failed: %s", strerror(errno));
        got += (size_t)n;
    }
    char hex[33];
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    lua_pushlstring(L, hex, 32);
    return 1;
}

const luaL_Reg lenv__sandbox_funcs[] = {
    {"run", l_sandbox_run},
    {"nonce", l_sandbox_nonce},
    {NULL, NULL},
};

/* ---- envsrv.code -------------------------------------------------------------------- */

/* One line of s[0..n) starting at `at`: [at, end) without the newline;
 * returns the start of the next line. */
static size_t line_end(const char *s, size_t n, size_t at, size_t *end)
{
    const char *nl = memchr(s + at, '\n', n - at);
    *end = nl ? (size_t)(nl - s) : n;
    return nl ? *end + 1 : n;
}

/* A fence line: up to 3 spaces, then 3 or more backticks. Returns the number
 * of backticks (0 when not a fence) and the info string's bounds. */
static size_t fence(const char *s, size_t at, size_t end, size_t *info, size_t *info_end)
{
    size_t i = at;
    while (i < end && i - at < 3 && s[i] == ' ')
        i++;
    size_t ticks = 0;
    while (i + ticks < end && s[i + ticks] == '`')
        ticks++;
    if (ticks < 3)
        return 0;
    i += ticks;
    while (i < end && (s[i] == ' ' || s[i] == '\t'))
        i++;
    *info = i;
    while (i < end && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '`')
        i++;
    *info_end = i;
    return ticks;
}

/* envsrv.code.extract(completion) -> string, string|nil [-1, +2, e]
 * The content of the last fenced code block (``` or longer fences, CommonMark
 * style: a closing fence has at least as many backticks and nothing else) and
 * its language tag in lower case ("python", "py", "cpp"; nil when the fence
 * has none). A block left open at the end (a truncated completion) counts and
 * runs to the end. Without any fence: the whole completion and nil. */
static int l_code_extract(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    size_t best = 0, best_end = 0, tag = 0, tag_end = 0;
    int found = 0;
    size_t at = 0;
    while (at < n) {
        size_t end, info, info_end;
        size_t next = line_end(s, n, at, &end);
        size_t ticks = fence(s, at, end, &info, &info_end);
        if (ticks == 0) {
            at = next;
            continue;
        }
        /* An opening fence: the block runs to the matching closing fence. */
        size_t body = next, body_end = n, after = n;
        for (size_t p = next; p < n;) {
            size_t e2, i2, ie2;
            size_t nx = line_end(s, n, p, &e2);
            size_t t2 = fence(s, p, e2, &i2, &ie2);
            if (t2 >= ticks) {
                size_t q = p;
                while (q < e2 && (s[q] == ' ' || s[q] == '`' || s[q] == '\t' || s[q] == '\r'))
                    q++;
                if (q == e2) {
                    body_end = p;
                    after = nx;
                    break;
                }
            }
            p = nx;
        }
        found = 1;
        best = body;
        best_end = body_end;
        tag = info;
        tag_end = info_end;
        at = after;
    }
    if (!found) {
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        return 2;
    }
    lua_pushlstring(L, s + best, best_end - best);
    if (tag_end > tag && tag_end - tag < 32) {
        char lang[32];
        size_t k;
        for (k = 0; k < tag_end - tag; k++) {
            char c = s[tag + k];
            lang[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        lua_pushlstring(L, lang, k);
    } else {
        lua_pushnil(L);
    }
    return 2;
}

const luaL_Reg lenv__code_funcs[] = {
    {"extract", l_code_extract},
    {NULL, NULL},
};
