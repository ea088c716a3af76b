/*
 * Tests for the Lua sandbox and definition loading (lua/runtime.c,
 * lua/lenv_call.c, lua/module.c, lua/convert.c) with hostile or broken env code:
 * syntax and runtime errors, bad return values, runaway loops, memory bombs,
 * forbidden libraries, tampering with shared tables, deep recursion, bad
 * definitions and data, seeded randomness across pool states, multi-turn
 * episodes and the envsrv module. Each env is written into a temp directory.
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

static char tmpdir[64];
static int env_counter;

/* Writes `text` to tmpdir/name. */
static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Writes an env file and opens it with the given limits. Returns the code;
 * *env is the env on success. `path_out` (optional) gets the file's path. */
static int try_open(lenv_env **env, const char *lua, size_t n_states, uint64_t instr, size_t mem,
                    lenv_error *err, char *path_out)
{
    char name[64], path[256];
    snprintf(name, sizeof name, "env%d.lua", env_counter++);
    write_file(name, lua);
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (path_out)
        strcpy(path_out, path);
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = path;
    o.n_states = n_states;
    o.instruction_limit = instr;
    o.memory_limit = mem;
    *env = NULL;
    return lenv_open(env, &o, err);
}

static lenv_env *must_open(const char *lua, size_t n_states, uint64_t instr, size_t mem)
{
    lenv_env *env;
    lenv_error err;
    int rc = try_open(&env, lua, n_states, instr, mem, &err, NULL);
    if (rc != LENV_OK)
        fail_msg("open: %d %s", rc, err.message);
    return env;
}

/* A definition whose reward body is `body` (a Lua expression list or block
 * ending in return). The reward function starts on line 6. */
static lenv_env *reward_env(const char *body, uint64_t instr, size_t mem)
{
    char lua[4096];
    snprintf(lua, sizeof lua,
             "return {\n"
             "  name = 't',\n"
             "  dataset = { test = 'items.jsonl' },\n"
             "  prompt = function(item) return { { role = 'user', content = item.q } } end,\n"
             "  reward =\n"
             "  function(item, c)\n"
             "%s\n"
             "  end,\n"
             "}\n",
             body);
    return must_open(lua, 1, instr, mem);
}

static const json_t *item0(lenv_env *env)
{
    const json_t *item;
    lenv_error err;
    if (lenv_item_find(&item, env, "test-0", &err) != LENV_OK)
        fail_msg("%s", err.message);
    return item;
}

/* Scores one completion; returns the code, the reward in *r and the details. */
static int score(lenv_env *env, const char *completion, double *r, json_t **details,
                 lenv_error *err)
{
    json_t *out = NULL;
    int rc = lenv_score(&out, env, item0(env), &completion, NULL, 1, err);
    if (rc == LENV_OK) {
        if (r)
            *r = json_real_value(json_array_get(json_object_get(out, "rewards"), 0));
        if (details)
            *details = json_incref(json_array_get(json_object_get(out, "details"), 0));
    }
    json_decref(out);
    return rc;
}

static void expect_script_error(lenv_env *env, const char *completion, const char *fragment,
                                int line)
{
    lenv_error err;
    int rc = score(env, completion, NULL, NULL, &err);
    if (rc != LENV_ESCRIPT)
        fail_msg("'%s': want LENV_ESCRIPT, got %d (%s)", completion, rc, rc ? err.message : "ok");
    if (strstr(err.message, fragment) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", completion, err.message, fragment);
    assert_non_null(strstr(err.source, "/env"));
    if (line >= 0 && err.line != line)
        fail_msg("'%s': line %d, want %d (%s)", completion, err.line, line, err.message);
}

static void expect_works(lenv_env *env)
{
    lenv_error err;
    double r = -1;
    int rc = score(env, "ok", &r, NULL, &err);
    if (rc != LENV_OK)
        fail_msg("state no longer usable: %s", err.message);
    assert_true(r == 1.0);
}

static int group_setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/lenv_sandbox_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    write_file("items.jsonl", "{\"q\": \"first\", \"n\": 1}\n{\"q\": \"second\", \"n\": 2}\n"
                              "{\"q\": \"third\", \"n\": 3, \"nested\": {\"a\": [1, 2.5, null]}}\n");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- errors in env code ------------------------------------------------------------ */

static void test_sandbox_load__syntax_error(void **state)
{
    (void)state;
    lenv_env *env;
    lenv_error err;
    char path[256];
    int rc = try_open(&env, "return {\n  name = 'x',\n  prompt = function() end\n  reward = 1,\n}\n",
                      1, 0, 0, &err, path);
    assert_int_equal(rc, LENV_ESCRIPT);
    assert_null(env);
    assert_string_equal(err.source, path);
    assert_int_equal(err.line, 4);
    char want[300];
    snprintf(want, sizeof want, "%s:4: ", path);
    assert_true(strncmp(err.message, want, strlen(want)) == 0);

    rc = try_open(&env, "error('at load time')\n", 1, 0, 0, &err, NULL);
    assert_int_equal(rc, LENV_ESCRIPT);
    assert_int_equal(err.line, 1);
    assert_non_null(strstr(err.message, "at load time"));

    /* Binary chunks are refused. */
    rc = try_open(&env, "\x1bLua\x54", 1, 0, 0, &err, NULL);
    assert_int_equal(rc, LENV_ESCRIPT);
    assert_non_null(strstr(err.message, "binary"));
}

static void test_sandbox_reward__runtime_error(void **state)
{
    (void)state;
    lenv_env *env = reward_env("    if c == 'ok' then return 1 end\n"
                               "    if c == 'boom' then error('boom') end\n"
                               "    if c == 'table' then error({}) end\n"
                               "    local x = nil\n"
                               "    return x.field\n",
                               0, 0);
    expect_script_error(env, "boom", "boom", 8);
    expect_script_error(env, "index", "attempt to index a nil value", 11);
    expect_script_error(env, "table", "error object is a table value", -1);
    expect_works(env);
    lenv_free(env);
}

static void test_sandbox_reward__bad_returns(void **state)
{
    (void)state;
    lenv_env *env = reward_env("    if c == 'ok' then return 1 end\n"
                               "    if c == 'string' then return 'one' end\n"
                               "    if c == 'nan' then return 0/0 end\n"
                               "    if c == 'inf' then return math.huge end\n"
                               "    if c == 'details' then return 1, 'x' end\n"
                               "    if c == 'list' then return 1, {1, 2} end\n"
                               "    if c == 'utf8' then return 1, { s = '\\xff\\xfe' } end\n"
                               "    if c == 'func' then return 1, { f = print or type } end\n",
                               0, 0);
    /* The reward function is defined on line 6. */
    expect_script_error(env, "string", "reward() must return a number, got string", 6);
    expect_script_error(env, "nan", "nan", 6);
    expect_script_error(env, "inf", "inf", 6);
    expect_script_error(env, "nothing", "reward() must return a number, got nil", 6);
    expect_script_error(env, "details", "must be a table, got string", 6);
    expect_script_error(env, "list", "got a list", 6);
    expect_script_error(env, "utf8", "not valid UTF-8", 6);
    expect_script_error(env, "func", "function value cannot be converted", 6);
    expect_works(env);

    /* Integers are fine rewards; an empty details table is {}. */
    json_t *d = NULL;
    double r = 0;
    lenv_error err;
    assert_int_equal(score(env, "ok", &r, &d, &err), LENV_OK);
    assert_true(r == 1.0);
    assert_true(json_is_object(d) && json_object_size(d) == 0);
    json_decref(d);
    lenv_free(env);
}

/* ---- limits -------------------------------------------------------------------------- */

static void test_sandbox_limits__infinite_loop(void **state)
{
    (void)state;
    lenv_env *env = reward_env("    if c == 'ok' then return 1 end\n"
                               "    if c == 'loop' then while true do end end\n"
                               "    if c == 'swallow' then\n"
                               "      while true do pcall(function() while true do end end) end\n"
                               "    end\n"
                               "    if c == 'co' then\n"
                               "      local co = coroutine.wrap(function() while true do end end)\n"
                               "      co()\n"
                               "    end\n",
                               1000000, 0);
    expect_script_error(env, "loop", "instruction limit exceeded", 8);
    expect_works(env);
    expect_script_error(env, "swallow", "instruction limit exceeded", -1);
    expect_works(env);
    expect_script_error(env, "co", "instruction limit exceeded", -1);
    expect_works(env);
    expect_works(env);
    lenv_free(env);
}

static void test_sandbox_limits__memory_bomb(void **state)
{
    (void)state;
    lenv_env *env = reward_env("    if c == 'ok' then return 1 end\n"
                               "    if c == 'rep' then return #string.rep('x', 1 << 30) end\n"
                               "    if c == 'table' then\n"
                               "      local t = {}\n"
                               "      for i = 1, 1e9 do t[i] = i end\n"
                               "    end\n"
                               "    if c == 'concat' then\n"
                               "      local s = 'x'\n"
                               "      while true do s = s .. s end\n"
                               "    end\n"
                               "    if c == 'caught' then\n"
                               "      local ok = pcall(string.rep, 'x', 1 << 30)\n"
                               "      return ok and 0 or 1\n"
                               "    end\n",
                               0, 32u << 20);
    expect_script_error(env, "rep", "memory limit exceeded", -1);
    expect_works(env);
    expect_script_error(env, "table", "memory limit exceeded", -1);
    expect_works(env);
    expect_script_error(env, "concat", "memory limit exceeded", -1);
    expect_works(env);
    /* A memory error caught by the env's own pcall is just a Lua error. */
    double r = 0;
    lenv_error err;
    assert_int_equal(score(env, "caught", &r, NULL, &err), LENV_OK);
    assert_true(r == 1.0);
    lenv_free(env);

    /* A cap too small for the definition itself fails the open. */
    lenv_env *tiny;
    int rc = try_open(&tiny, "return { name = 'x', prompt = function() end, reward = function() "
                             "return 0 end }", 1, 0, 4096, &err, NULL);
    assert_int_not_equal(rc, LENV_OK);
    assert_null(tiny);
}

static void test_sandbox_limits__deep_recursion(void **state)
{
    (void)state;
    lenv_env *env = reward_env("    if c == 'ok' then return 1 end\n"
                               "    local function f(n) return f(n + 1) + 1 end\n"
                               "    if c == 'lua' then return f(1) end\n"
                               "    local t = {}\n"
                               "    setmetatable(t, { __index = function(t, k) return t[k] end })\n"
                               "    if c == 'meta' then return t.x end\n"
                               "    local function g(n) return string.gsub('a', 'a', function() return g(n) end) end\n"
                               "    if c == 'cfunc' then return g(1) end\n",
                               0, 0);
    expect_script_error(env, "lua", "stack overflow", -1);
    expect_works(env);
    expect_script_error(env, "meta", "overflow", -1);
    expect_works(env);
    expect_script_error(env, "cfunc", "overflow", -1);
    expect_works(env);
    lenv_free(env);
}

/* ---- what env code cannot reach ------------------------------------------------------- */

static void test_sandbox_globals__forbidden(void **state)
{
    (void)state;
    lenv_env *env = reward_env("    if c == 'ok' then return 1 end\n"
                               "    local tries = {\n"
                               "      os = function() return os.time() end,\n"
                               "      io = function() return io.open('/etc/passwd') end,\n"
                               "      require = function() return require('os') end,\n"
                               "      dofile = function() return dofile('/etc/passwd') end,\n"
                               "      loadfile = function() return loadfile('/etc/passwd') end,\n"
                               "      load = function() return load('return 1')() end,\n"
                               "      dump = function() return string.dump(print) end,\n"
                               "      debug = function() return debug.getinfo(1) end,\n"
                               "      package = function() return package.loaded end,\n"
                               "      collect = function() return collectgarbage('stop') end,\n"
                               "      print = function() print('hello') end,\n"
                               "      rawset = function() rawset(string, 'len', nil) end,\n"
                               "      strmeta = function() return getmetatable('').__index end,\n"
                               "      seed = function() math.randomseed() end,\n"
                               "    }\n"
                               "    return tries[c]()\n",
                               0, 0);
    const char *names[] = {"os", "io", "require", "dofile", "loadfile", "load", "dump", "debug",
                           "package", "collect", "print", "rawset", "strmeta", "seed"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        expect_script_error(env, names[i], "", -1);
    expect_script_error(env, "os", "global 'os'", 9);
    expect_script_error(env, "dump", "field 'dump'", 15);
    expect_script_error(env, "seed", "number expected", -1);
    expect_works(env);
    lenv_free(env);
}

static void test_sandbox_globals__tampering_does_not_leak(void **state)
{
    (void)state;
    const char *tamper = "    if c == 'ok' then return #string.rep('x', 1) end\n"
                         "    if c == 'len' then string.len = nil end\n"
                         "    if c == 'global' then _G.x = 1 end\n"
                         "    if c == 'plain' then y = 1 end\n"
                         "    if c == 'redefine' then helper = nil end\n"
                         "    if c == 'meta' then setmetatable(string, {}) end\n"
                         "    if c == 'envsrv' then envsrv.verify = nil end\n"
                         "    if c == 'read' then return (x == nil and y == nil) and 1 or 0 end\n"
                         "    return helper()\n";
    char lua[4096];
    snprintf(lua, sizeof lua,
             "function helper() return string.len('a') end\n" /* a global defined at load */
             "return {\n  name = 't',\n  dataset = { test = 'items.jsonl' },\n"
             "  prompt = function(item) return { { role = 'user', content = 'x' } } end,\n"
             "  reward = function(item, c)\n%s  end,\n}\n",
             tamper);
    lenv_env *env = must_open(lua, 1, 0, 0);
    lenv_env *other = must_open(lua, 1, 0, 0);
    expect_script_error(env, "len", "read-only table 'string'", 8);
    expect_script_error(env, "global", "assignment to global 'x'", 9);
    expect_script_error(env, "plain", "assignment to global 'y'", 10);
    expect_script_error(env, "redefine", "assignment to global 'helper'", 11);
    expect_script_error(env, "meta", "protected metatable", 12);
    expect_script_error(env, "envsrv", "read-only table 'envsrv'", 13);
    /* Nothing changed: not in this env, not in the other one. */
    double r = 0;
    lenv_error err;
    assert_int_equal(score(env, "read", &r, NULL, &err), LENV_OK);
    assert_true(r == 1.0);
    assert_int_equal(score(env, "helper", &r, NULL, &err), LENV_OK);
    assert_true(r == 1.0);
    expect_works(env);
    expect_works(other);
    lenv_free(env);
    lenv_free(other);
}

/* ---- definitions and data ---------------------------------------------------------------- */

static void expect_open_error(const char *lua, int code, const char *fragment)
{
    lenv_env *env;
    lenv_error err;
    char path[256], want[300];
    int rc = try_open(&env, lua, 1, 0, 0, &err, path);
    if (rc != code)
        fail_msg("want %d, got %d (%s) for:\n%s", code, rc, rc ? err.message : "ok", lua);
    assert_null(env);
    snprintf(want, sizeof want, "%s: %s", path, fragment);
    if (strstr(err.message, fragment) == NULL || strncmp(err.message, path, strlen(path)) != 0)
        fail_msg("message '%s' lacks '%s'", err.message, want);
}

static void test_sandbox_definition__invalid(void **state)
{
    (void)state;
    expect_open_error("return { name = 'x', reward = function() return 0 end }", LENV_EINVALID,
                      "definition field 'prompt' is required");
    expect_open_error("return { name = 'x', prompt = function() end, reward = 'x' }", LENV_EINVALID,
                      "definition field 'reward' must be a function, got string");
    expect_open_error("return { name = 'x', prompt = function() end }", LENV_EINVALID,
                      "must have 'reward'");
    expect_open_error("return { name = 'x', prompt = function() end, reset = function() end }",
                      LENV_EINVALID, "both 'reset' and 'step'");
    expect_open_error("return { name = 'Bad Name', prompt = function() end, reward = function() end }",
                      LENV_EINVALID, "must match [a-z0-9_.-]+");
    expect_open_error("return { prompt = function() end, reward = function() end }", LENV_EINVALID,
                      "definition field 'name' is required");
    expect_open_error("return { name = 'x', prompt = function() end, rewrd = function() end }",
                      LENV_EINVALID, "unknown definition field 'rewrd'");
    expect_open_error("return { name = 'x', prompt = function() end, reward = function() end, "
                      "dataset = 'items.jsonl' }", LENV_EINVALID,
                      "definition field 'dataset' must be a table, got string");
    expect_open_error("return { name = 'x', prompt = function() end, reward = function() end, "
                      "params = { f = print or type } }", LENV_EINVALID, "'params' is not JSON");
    expect_open_error("return { name = 'x', prompt = function() end, reward = function() end, "
                      "dataset = { test = 'items.jsonl' }, default_split = 'dev' }", LENV_EINVALID,
                      "default_split 'dev'");
    expect_open_error("return 42", LENV_EINVALID, "must return a definition table, got number");
    lenv_env *env;
    lenv_error err;
    assert_int_equal(try_open(&env, "return { name = 'x', prompt = function() end, reward = "
                              "function() end, dataset = { test = 'missing.jsonl' } }",
                              1, 0, 0, &err, NULL), LENV_EIO);
    assert_non_null(strstr(err.message, "cannot read '"));
    assert_non_null(strstr(err.message, "/missing.jsonl': No such file"));
}

static void test_sandbox_data__duplicates_and_bad_lines(void **state)
{
    (void)state;
    write_file("dup.jsonl", "{\"key\": \"a\"}\n{\"key\": \"b\"}\n{\"key\": \"a\"}\n");
    write_file("dup2.jsonl", "{\"key\": \"b\"}\n");
    write_file("bad.jsonl", "{\"key\": \"a\"}\n\n[1, 2]\n");
    write_file("broken.jsonl", "{\"key\": \"a\"}\n{\"key\": }\n");
    write_file("noid.jsonl", "{\"key\": \"a\"}\n{\"other\": 1}\n");
    const char *head = "return { name = 'x', prompt = function() end, reward = function() end, ";
    char lua[512];
    lenv_env *env;
    lenv_error err;

    snprintf(lua, sizeof lua, "%s id_field = 'key', dataset = { test = 'dup.jsonl' } }", head);
    assert_int_equal(try_open(&env, lua, 1, 0, 0, &err, NULL), LENV_EIO);
    assert_non_null(strstr(err.message, "record 2: duplicate item id 'a'"));

    snprintf(lua, sizeof lua, "%s id_field = 'key', dataset = { test = 'dup2.jsonl', "
             "train = 'items.jsonl' } }", head);
    assert_int_equal(try_open(&env, lua, 1, 0, 0, &err, NULL), LENV_EIO);
    assert_non_null(strstr(err.message, "(the id_field) must be a string"));

    snprintf(lua, sizeof lua, "%s id_field = 'key', dataset = { a = 'dup2.jsonl', b = 'dup2.jsonl' } }",
             head);
    assert_int_equal(try_open(&env, lua, 1, 0, 0, &err, NULL), LENV_EIO);
    assert_non_null(strstr(err.message, "duplicate item id 'b'"));

    snprintf(lua, sizeof lua, "%s dataset = { test = 'bad.jsonl' } }", head);
    assert_int_equal(try_open(&env, lua, 1, 0, 0, &err, NULL), LENV_EIO);
    assert_non_null(strstr(err.message, "line 3: a record must be a JSON object"));

    snprintf(lua, sizeof lua, "%s dataset = { test = 'broken.jsonl' } }", head);
    assert_int_equal(try_open(&env, lua, 1, 0, 0, &err, NULL), LENV_EIO);
    assert_non_null(strstr(err.message, "broken.jsonl' line 2: "));
    assert_non_null(strstr(err.message, "at column"));

    snprintf(lua, sizeof lua, "%s id_field = 'key', dataset = { test = 'noid.jsonl' } }", head);
    assert_int_equal(try_open(&env, lua, 1, 0, 0, &err, NULL), LENV_EIO);
    assert_non_null(strstr(err.message, "record 1: field 'key'"));

    /* With an id_field, records are found by their own ids. */
    snprintf(lua, sizeof lua, "%s id_field = 'key', dataset = { test = 'dup2.jsonl' } }", head);
    env = must_open(lua, 1, 0, 0);
    const json_t *item;
    assert_int_equal(lenv_item_find(&item, env, "b", &err), LENV_OK);
    assert_int_equal(lenv_item_find(&item, env, "test-0", &err), LENV_ENOTFOUND);
    lenv_free(env);
}

/* ---- determinism ---------------------------------------------------------------------------- */

static const char *random_env =
    "return {\n  name = 'r',\n  dataset = { test = 'items.jsonl' },\n"
    "  prompt = function(item) return { { role = 'user', content = tostring(math.random(1000000)) } } end,\n"
    "  reward = function(item, c)\n"
    "    for i = 1, #c do math.random() end\n"
    "    return math.random(), { a = math.random(1 << 40) }\n"
    "  end,\n}\n";

typedef struct rworker {
    lenv_env *env;
    double want;
    int ok;
} rworker;

static void *random_worker(void *arg)
{
    rworker *w = arg;
    w->ok = 1;
    for (int i = 0; i < 100; i++) {
        double r = -1;
        lenv_error err;
        if (score(w->env, "same text", &r, NULL, &err) != LENV_OK || r != w->want)
            w->ok = 0;
    }
    return NULL;
}

static void test_sandbox_random__same_in_every_state(void **state)
{
    (void)state;
    lenv_env *a = must_open(random_env, 4, 0, 0);
    lenv_env *b = must_open(random_env, 1, 0, 0);
    double ra, rb, other;
    json_t *da, *db;
    lenv_error err;
    assert_int_equal(score(a, "same text", &ra, &da, &err), LENV_OK);
    /* Advance b's generator with other calls first: every call is reseeded. */
    assert_int_equal(score(b, "different", &other, NULL, &err), LENV_OK);
    assert_int_equal(score(b, "same text", &rb, &db, &err), LENV_OK);
    assert_true(ra == rb);
    assert_true(ra != other);
    assert_true(json_equal(da, db));
    json_decref(da);
    json_decref(db);

    /* Prompts too. */
    json_t *va, *vb;
    assert_int_equal(lenv_item_view(&va, a, item0(a), 0, &err), LENV_OK);
    assert_int_equal(lenv_item_view(&vb, b, item0(b), 0, &err), LENV_OK);
    assert_true(json_equal(json_object_get(va, "prompt"), json_object_get(vb, "prompt")));
    json_decref(va);
    json_decref(vb);

    /* Four threads over four states all see the same number. */
    rworker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (rworker){a, ra, 0};
        assert_int_equal(pthread_create(&t[i], NULL, random_worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(w[i].ok);
    }
    lenv_free(a);
    lenv_free(b);
}

/* ---- multi-turn ------------------------------------------------------------------------------- */

static const char *count_env =
    "-- Count to item.n, one number per turn.\n"
    "return {\n  name = 'count',\n  dataset = { test = 'items.jsonl' },\n"
    "  prompt = function(item) return { { role = 'user', content = 'Count to ' .. item.n } } end,\n"
    "  reset = function(item, state)\n"
    "    state.next = 1\n"
    "    state.said = {}\n"
    "    return { { role = 'user', content = 'Say 1' } }\n"
    "  end,\n"
    "  step = function(item, state, action)\n"
    "    if tonumber(action) ~= state.next then\n"
    "      return { reward = 0, done = true, info = { wrong = action } }\n"
    "    end\n"
    "    state.said[#state.said + 1] = action\n"
    "    state.next = state.next + 1\n"
    "    if state.next > item.n then\n"
    "      return { reward = 1, done = true, info = { turns = #state.said } }\n"
    "    end\n"
    "    return { observation = { { role = 'user', content = 'Say ' .. state.next } }, reward = 0 }\n"
    "  end,\n}\n";

static void test_sandbox_multi_turn__count_to_three(void **state)
{
    (void)state;
    lenv_env *env = must_open(count_env, 2, 0, 0);
    assert_true(lenv_is_multi_turn(env));
    const json_t *item;
    lenv_error err;
    assert_int_equal(lenv_item_find(&item, env, "test-2", &err), LENV_OK); /* n = 3 */

    json_t *obs = NULL, *st = NULL, *res = NULL;
    assert_int_equal(lenv_reset(&obs, &st, env, item, &err), LENV_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(obs, 0), "content")),
                        "Say 1");
    assert_int_equal(json_integer_value(json_object_get(st, "next")), 1);
    /* An empty Lua table in the state converts to {}. */
    assert_true(json_is_object(json_object_get(st, "said")));
    json_decref(obs);

    const char *actions[] = {"1", "2", "3"};
    for (int i = 0; i < 3; i++) {
        /* The state goes through text between steps, as a server would keep it. */
        char *text = json_dumps(st, JSON_COMPACT);
        json_decref(st);
        st = json_loads(text, 0, NULL);
        free(text);
        assert_int_equal(lenv_step(&res, &st, env, item, actions[i], 1, &err), LENV_OK);
        int last = i == 2;
        assert_true(json_is_boolean(json_object_get(res, "done")));
        assert_int_equal(json_is_true(json_object_get(res, "done")), last);
        assert_true(json_real_value(json_object_get(res, "reward")) == (last ? 1.0 : 0.0));
        assert_int_equal(json_array_size(json_object_get(res, "observation")), last ? 0 : 1);
        assert_int_equal(json_integer_value(json_object_get(st, "next")), i + 2);
        assert_int_equal(json_array_size(json_object_get(st, "said")), (size_t)i + 1);
        if (last)
            assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "info"),
                                                                "turns")), 3);
        json_decref(res);
    }
    json_decref(st);

    /* A wrong answer ends the episode. */
    assert_int_equal(lenv_reset(&obs, &st, env, item, &err), LENV_OK);
    assert_int_equal(lenv_step(&res, &st, env, item, "7", 1, &err), LENV_OK);
    assert_true(json_is_true(json_object_get(res, "done")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "info"), "wrong")),
                        "7");
    json_decref(res);
    json_decref(obs);
    json_decref(st);

    /* A bad state from the caller is the caller's fault. */
    st = json_string("nope");
    assert_int_equal(lenv_step(&res, &st, env, item, "1", 1, &err), LENV_EINVALID);
    json_decref(st);

    /* Scoring replays one step: "1" is right but the episode is not done. */
    const json_t *one;
    assert_int_equal(lenv_item_find(&one, env, "test-0", &err), LENV_OK); /* n = 1 */
    const char *c[2] = {"1", "2"};
    json_t *out = NULL;
    assert_int_equal(lenv_score(&out, env, one, c, NULL, 2, &err), LENV_OK);
    assert_true(json_real_value(json_array_get(json_object_get(out, "rewards"), 0)) == 1.0);
    assert_true(json_real_value(json_array_get(json_object_get(out, "rewards"), 1)) == 0.0);
    json_decref(out);
    json_t *d = lenv_describe(env, 0);
    assert_true(json_is_true(json_object_get(d, "multi_turn")));
    json_decref(d);
    lenv_free(env);
}

/* ---- the envsrv module ------------------------------------------------------------------------- */

static void test_sandbox_module__json_and_verify(void **state)
{
    (void)state;
    lenv_env *env = reward_env(
        "    local json, v = envsrv.json, envsrv.verify\n"
        "    if c == 'ok' then return 1 end\n"
        "    if c == 'roundtrip' then\n"
        "      local t = json.decode('{\"a\": [1, 2.5, null, \"x\"], \"b\": {\"c\": true}, \"n\": null}')\n"
        "      assert(math.type(t.a[1]) == 'integer' and t.a[2] == 2.5 and t.a[3] == json.null)\n"
        "      assert(#t.a == 4 and t.n == nil and t.b.c == true)\n"
        "      return 1, { enc = json.encode(t.a), empty = json.encode({}), item = json.encode(item.nested),\n"
        "               sorted = json.encode({ b = 1, a = 2, [3] = 'x', ab = {} }) }\n"
        "    end\n"
        "    if c == 'bad' then return json.decode('{\"a\": }') end\n"
        "    if c == 'cycle' then local t = {}; t.t = t; return json.encode(t) end\n"
        "    if c == 'verify' then\n"
        "      assert(v.number('1,200.50') == '2401/2')\n"
        "      assert(v.number('twelve') == nil)\n"
        "      local n, src = v.extract_number('so it is \\\\boxed{0.5}')\n"
        "      assert(n == '1/2' and src == 'boxed', tostring(n) .. ' ' .. src)\n"
        "      assert(v.numbers_equal('0.5', '1/2') and not v.numbers_equal('0.33', '1/3'))\n"
        "      local r, d = v.gsm8k('#### 18', 'steps\\n#### 18')\n"
        "      assert(r == 1 and d.source == 'hashes' and d.expected == '18')\n"
        "      return r\n"
        "    end\n"
        "    if c == 'badarg' then return v.gsm8k() end\n",
        0, 0);
    json_t *d = NULL;
    double r = 0;
    lenv_error err;
    const json_t *item;
    assert_int_equal(lenv_item_find(&item, env, "test-2", &err), LENV_OK);
    const char *rt = "roundtrip";
    json_t *out = NULL;
    int rc = lenv_score(&out, env, item, &rt, NULL, 1, &err);
    if (rc != LENV_OK)
        fail_msg("%s", err.message);
    d = json_array_get(json_object_get(out, "details"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "enc")), "[1,2.5,null,\"x\"]");
    assert_string_equal(json_string_value(json_object_get(d, "empty")), "{}");
    assert_string_equal(json_string_value(json_object_get(d, "item")), "{\"a\":[1,2.5,null]}");
    assert_string_equal(json_string_value(json_object_get(d, "sorted")),
                        "{\"3\":\"x\",\"a\":2,\"ab\":{},\"b\":1}");
    json_decref(out);
    assert_int_equal(score(env, "verify", &r, NULL, &err), LENV_OK);
    assert_true(r == 1.0);
    expect_script_error(env, "bad", "envsrv.json.decode: ", 16);
    expect_script_error(env, "cycle", "nested deeper than 64", 17);
    expect_script_error(env, "badarg", "bad argument #1 to 'gsm8k'", 28);
    expect_works(env);
    lenv_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sandbox_load__syntax_error),
        cmocka_unit_test(test_sandbox_reward__runtime_error),
        cmocka_unit_test(test_sandbox_reward__bad_returns),
        cmocka_unit_test(test_sandbox_limits__infinite_loop),
        cmocka_unit_test(test_sandbox_limits__memory_bomb),
        cmocka_unit_test(test_sandbox_limits__deep_recursion),
        cmocka_unit_test(test_sandbox_globals__forbidden),
        cmocka_unit_test(test_sandbox_globals__tampering_does_not_leak),
        cmocka_unit_test(test_sandbox_definition__invalid),
        cmocka_unit_test(test_sandbox_data__duplicates_and_bad_lines),
        cmocka_unit_test(test_sandbox_random__same_in_every_state),
        cmocka_unit_test(test_sandbox_multi_turn__count_to_three),
        cmocka_unit_test(test_sandbox_module__json_and_verify),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
