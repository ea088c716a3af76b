/*
 * Tests for running code from environments: envsrv.sandbox.run and
 * envsrv.code.extract (lua/module_sandbox.c), and the `code` environment
 * (envs/code.lua): its sample problems, cheating completions that must not
 * pass, statuses, sandbox failures that must become env errors, and with the
 * real data (skipped when $ENVSRV_DATA lacks it) all 164 HumanEval canonical
 * solutions and all 500 MBPP test-split reference solutions, two threads on a
 * pool of two Lua states.
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
#include <time.h>
#include <unistd.h>

#include "lua/lenv.h"
#include "sandbox/sandbox.h"

static char tmpdir[64];

static const char *data_dir(void)
{
    const char *d = getenv("ENVSRV_DATA");
    return d && *d ? d : "../shared/data";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static lenv_env *open_env(const char *name, const lenv_data_source *data, size_t n_data,
                          size_t n_states)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = name;
    o.n_states = n_states;
    o.data = data;
    o.n_data = n_data;
    int rc = lenv_open(&env, &o, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_open(%s): %d %s", name, rc, err.message);
    return env;
}

/* An env from Lua source whose reward(item, c) body is `body`. */
static lenv_env *body_env(const char *body)
{
    static int counter;
    char path[256];
    snprintf(path, sizeof path, "%s/env%d.lua", tmpdir, counter++);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "return {\n"
            "  name = 't',\n"
            "  prompt = function(item) return { { role = 'user', content = 'x' } } end,\n"
            "  reward = function(item, c)\n%s\n  end,\n"
            "}\n",
            body);
    fclose(f);
    return open_env(path, NULL, 0, 1);
}

/* Scores one completion; returns the rc and fills *reward and *details (a
 * new reference or NULL). */
static int score1(lenv_env *env, const json_t *item, const char *completion, double *reward,
                  json_t **details, lenv_error *err)
{
    const char *cs[1] = { completion };
    size_t lens[1] = { strlen(completion) };
    json_t *out = NULL;
    int rc = lenv_score(&out, env, item, cs, lens, 1, err);
    *details = NULL;
    *reward = -1;
    if (rc != LENV_OK)
        return rc;
    *reward = json_number_value(json_array_get(json_object_get(out, "rewards"), 0));
    *details = json_incref(json_array_get(json_object_get(out, "details"), 0));
    json_decref(out);
    return rc;
}

/* Scores and expects success; returns the reward, *status gets details.status. */
static double score_ok(lenv_env *env, const json_t *item, const char *completion, char *status,
                       size_t cap)
{
    double r;
    json_t *d;
    lenv_error err;
    int rc = score1(env, item, completion, &r, &d, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_score: %d %s", rc, err.message);
    if (status) {
        const char *s = json_string_value(json_object_get(d, "status"));
        snprintf(status, cap, "%s", s ? s : "(none)");
    }
    json_decref(d);
    return r;
}

/* The details of scoring one completion on a bare item (the score must
 * succeed). A new reference. */
static json_t *details_of(lenv_env *env, const char *completion)
{
    json_t *item = json_pack("{s:s}", "id", "x");
    double r;
    json_t *d;
    lenv_error err;
    assert_int_equal(score1(env, item, completion, &r, &d, &err), LENV_OK);
    json_decref(item);
    return d;
}

/* ---- envsrv.code.extract ------------------------------------------------------- */

static void test_code_env_extract__blocks(void **state)
{
    (void)state;
    lenv_env *env = body_env("    local code, lang = envsrv.code.extract(c)\n"
                             "    return 0, { code = code, lang = lang }");
    static const struct {
        const char *in, *code, *lang;
    } cases[] = {
        { "no fences at all\n", "no fences at all\n", NULL },
        { "Here:\n```python\nx = 1\n```\nDone.", "x = 1\n", "python" },
        { "```py\na\n```\ntext\n```\nb\n```\n", "b\n", NULL },
        { "```C++\nint main(){}\n```", "int main(){}\n", "c++" },
        { "first\n```python\nfirst()\n```\nthen\n```python\nsecond()\n```", "second()\n", "python" },
        { "truncated\n```python\ndef f():\n    return 1", "def f():\n    return 1", "python" },
        { "````md\n```python\ninner\n```\n````", "```python\ninner\n```\n", "md" },
        { "inline ```code``` only", "inline ```code``` only", NULL },
        { "", "", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *d = details_of(env, cases[i].in);
        const char *code = json_string_value(json_object_get(d, "code"));
        const char *lang = json_string_value(json_object_get(d, "lang"));
        if (strcmp(code, cases[i].code) != 0 ||
            (cases[i].lang ? !lang || strcmp(lang, cases[i].lang) : lang != NULL))
            fail_msg("case %zu: got code '%s' lang '%s'", i, code, lang ? lang : "nil");
        json_decref(d);
    }
    lenv_free(env);
}

/* ---- envsrv.text.clean ------------------------------------------------------- */

static void test_code_env_text__clean(void **state)
{
    (void)state;
    /* The completion is "N|text": text's last N bytes cleaned (N empty: all). */
    lenv_env *env = body_env("    local n, t = c:match('^(%d*)|(.*)$')\n"
                             "    return 0, { out = envsrv.text.clean(t, tonumber(n)) }");
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "|plain ascii", "plain ascii" },
        { "3|hello", "llo" },
        { "0|hello", "" },
        { "|caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80" },
        { "1|caf\xc3\xa9", "?" },                 /* the end cuts a character in two */
        { "|a\xff" "b", "a?b" },
        { "|\xc0\xaf", "??" },                    /* overlong '/' */
        { "|\xed\xa0\x80", "???" },              /* a UTF-16 surrogate */
        { "|\xf4\x90\x80\x80", "????" },        /* above U+10FFFF */
        { "|\xe2\x82", "??" },                    /* truncated at the end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *d = details_of(env, cases[i].in);
        const char *out = json_string_value(json_object_get(d, "out"));
        if (!out || strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, out ? out : "(none)", cases[i].out);
        json_decref(d);
    }
    lenv_free(env);
}

/* ---- envsrv.sandbox.run ------------------------------------------------------- */

static void test_code_env_sandbox__run(void **state)
{
    (void)state;
    /* The completion is a JSON request; details is the result. */
    lenv_env *env = body_env("    return 0, envsrv.sandbox.run(envsrv.json.decode(c))");
    json_t *item = json_pack("{s:s}", "id", "x");
    double r;
    json_t *d;
    lenv_error err;

    assert_int_equal(score1(env, item,
                            "{\"language\": \"python\", \"code\": \"import sys\\n"
                            "print(sys.stdin.read().upper(), open('data.txt').read())\\n"
                            "sys.stderr.write('e' * 100)\\nsys.exit(3)\", \"stdin\": \"abc\","
                            " \"files\": {\"data.txt\": \"file!\"},"
                            " \"limits\": {\"cpu_ms\": 5000}}",
                            &r, &d, &err),
                     LENV_OK);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "RUNTIME_ERROR");
    assert_int_equal(json_integer_value(json_object_get(d, "exit_code")), 3);
    assert_string_equal(json_string_value(json_object_get(d, "stdout")), "ABC file!\n");
    assert_int_equal(strlen(json_string_value(json_object_get(d, "stderr"))), 100);
    assert_true(json_is_false(json_object_get(d, "stderr_truncated")));
    assert_non_null(json_string_value(json_object_get(d, "tier")));
    assert_true(json_is_true(json_object_get(d, "warm")));     /* python: warm by default */
    assert_true(json_is_integer(json_object_get(d, "cpu_ms")));
    assert_true(json_is_integer(json_object_get(d, "memory_kb")));
    json_decref(d);

    /* warm = false asks for a cold run: same result. */
    assert_int_equal(score1(env, item,
                            "{\"language\": \"python\", \"code\": \"print(6 * 7)\","
                            " \"warm\": false}",
                            &r, &d, &err),
                     LENV_OK);
    assert_string_equal(json_string_value(json_object_get(d, "stdout")), "42\n");
    assert_true(json_is_false(json_object_get(d, "warm")));
    json_decref(d);

    /* Output over the cap: kept up to the cap, counted, flagged. */
    assert_int_equal(score1(env, item,
                            "{\"language\": \"python\", \"code\": \"import sys\\n"
                            "sys.stderr.write('e' * 100)\", \"limits\": {\"output_bytes\": 10}}",
                            &r, &d, &err),
                     LENV_OK);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "OUTPUT_LIMIT_EXCEEDED");
    assert_string_equal(json_string_value(json_object_get(d, "stderr")), "eeeeeeeeee");
    assert_true(json_is_true(json_object_get(d, "stderr_truncated")));
    assert_true(json_integer_value(json_object_get(d, "stderr_bytes")) > 10);
    json_decref(d);

    /* Limits over the caps are clamped, not refused; a C program compiles. */
    assert_int_equal(score1(env, item,
                            "{\"language\": \"c\", \"code\": \"#include <stdio.h>\\n"
                            "int main(void){puts(\\\"hi\\\");return 0;}\","
                            " \"limits\": {\"wall_ms\": 99999999, \"memory_mb\": 99999999}}",
                            &r, &d, &err),
                     LENV_OK);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "OK");
    assert_string_equal(json_string_value(json_object_get(d, "stdout")), "hi\n");
    assert_int_equal(json_integer_value(json_object_get(d, "compile_exit_code")), 0);
    json_decref(d);

    /* Bad requests are errors with a message that says what is wrong. */
    static const struct {
        const char *req, *msg;
    } bad[] = {
        { "{\"code\": \"x\"}", "exactly one of language and argv" },
        { "{\"language\": \"cobol\", \"code\": \"x\"}", "cobol" },
        { "{\"language\": \"python\"}", "code is required" },
        { "{\"language\": \"python\", \"code\": \"x\", \"limits\": {\"wall\": 5}}",
          "unknown limit 'wall'" },
        { "{\"language\": \"python\", \"code\": \"x\", \"limits\": {\"cpu_ms\": -1}}",
          "limits.cpu_ms must be a non-negative integer" },
        { "{\"language\": \"python\", \"code\": \"x\", \"files\": {\"../x\": \"y\"}}", "" },
        { "{\"language\": \"python\", \"code\": \"x\", \"files\": {\"a\": 5}}", "files['a']" },
        { "{\"language\": \"python\", \"code\": \"x\", \"stdn\": \"\"}",
          "unknown request field 'stdn'" },
        { "{\"argv\": [\"/usr/bin/true\"], \"code\": \"x\"}", "code goes with language" },
        { "{\"argv\": [], \"language\": \"python\", \"code\": \"x\"}", "argv must have 1" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = score1(env, item, bad[i].req, &r, &d, &err);
        if (rc != LENV_ESCRIPT || !strstr(err.message, bad[i].msg))
            fail_msg("bad request %zu: rc %d '%s'", i, rc, err.message);
    }

    /* argv with an executable file. */
    assert_int_equal(score1(env, item,
                            "{\"argv\": [\"/bin/bash\", \"run.sh\", \"arg\"],"
                            " \"files\": {\"run.sh\": {\"content\": \"echo $1\","
                            " \"executable\": true}}}",
                            &r, &d, &err),
                     LENV_OK);
    assert_string_equal(json_string_value(json_object_get(d, "stdout")), "arg\n");
    json_decref(d);
    json_decref(item);
    lenv_free(env);
}

/* ---- the code env: sample problems ---------------------------------------------- */

static const json_t *find_item(lenv_env *env, const char *id)
{
    const json_t *item = NULL;
    lenv_error err;
    if (lenv_item_find(&item, env, id, &err) != LENV_OK)
        fail_msg("%s", err.message);
    return item;
}

static char *fenced(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 32;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "Here you go:\n```python\n%s%s```\n", a, b);
    return s;
}

static void test_code_env_samples__pass_and_fail(void **state)
{
    (void)state;
    lenv_env *env = open_env("code", NULL, 0, 1);
    json_t *desc = lenv_describe(env, 0);
    size_t n = (size_t)json_integer_value(json_object_get(json_object_get(desc, "splits"), "test"));
    json_decref(desc);
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        char id[32], status[64];
        snprintf(id, sizeof id, "test-%zu", i);
        const json_t *item = find_item(env, id);
        const char *prompt = json_string_value(json_object_get(item, "prompt"));
        const char *sol = json_string_value(json_object_get(item, "canonical_solution"));
        /* Whole function in a fence, and the bare body continuing the prompt. */
        char *whole = fenced(prompt, sol);
        if (score_ok(env, item, whole, status, sizeof status) != 1.0)
            fail_msg("%s: the canonical solution failed: %s", id, status);
        if (score_ok(env, item, sol, status, sizeof status) != 1.0)
            fail_msg("%s: the bare canonical body failed: %s", id, status);
        free(whole);
        assert_true(score_ok(env, item, "    pass\n", status, sizeof status) == 0.0);
        assert_string_equal(status, "failed");
        assert_true(score_ok(env, item, "    return 12345\n", status, sizeof status) == 0.0);
        assert_true(score_ok(env, item, "```python\ndef broken(:\n```", status, sizeof status) ==
                    0.0);
        assert_string_equal(status, "load_error");
    }
    lenv_free(env);
}

/* MBPP format and the fraction mode, with inline items. */
static void test_code_env_mbpp__fraction(void **state)
{
    (void)state;
    lenv_env *env = open_env("code", NULL, 0, 1);
    json_t *item = json_pack(
        "{s:s, s:s, s:s, s:[s,s,s,s], s:s, s:s}", "id", "inline", "text",
        "Write a function to double a number.", "code", "def double(x):\n    return 2 * x\n",
        "test_list", "assert double(1) == 2", "assert double(0) == 0", "assert double(-3) == -6",
        "assert double(5) == 10", "test_setup_code", "", "reward_mode", "fraction");
    char status[64];
    assert_true(score_ok(env, item, "```python\ndef double(x):\n    return 2 * x\n```", status,
                         sizeof status) == 1.0);
    assert_string_equal(status, "passed");
    /* Right for 0 and 1... only: 2 of 4. */
    double r = score_ok(env, item, "def double(x):\n    return x * x + (x == 1)\n", status,
                        sizeof status);
    assert_true(r == 0.5);
    assert_string_equal(status, "failed");
    /* A test that raises counts as one failure, not the whole item. */
    r = score_ok(env, item, "def double(x):\n    if x < 0: raise ValueError('neg')\n    return 2*x\n",
                 status, sizeof status);
    assert_true(r == 0.75);
    assert_string_equal(status, "error");
    json_object_set_new(item, "reward_mode", json_string("all"));
    assert_true(score_ok(env, item, "def double(x):\n    return x * x + (x == 1)\n", status,
                         sizeof status) == 0.0);
    json_decref(item);
    lenv_free(env);
}

/* ---- cheating ------------------------------------------------------------------- */

static void test_code_env_cheats__rejected(void **state)
{
    (void)state;
    lenv_env *env = open_env("code", NULL, 0, 1);
    /* add_digits: the first sample problem. */
    json_t *item = json_deep_copy(find_item(env, "test-0"));
    assert_string_equal(json_string_value(json_object_get(item, "entry_point")), "add_digits");
    json_object_set_new(item, "timeout_s", json_real(2.0));
    static const char *const cheats[] = {
        /* exit before the tests, in every way Python offers */
        "import sys\nsys.exit(0)\n",
        "exit(0)\n",
        "import os\nos._exit(0)\n",
        "raise SystemExit(0)\n",
        "def add_digits(n):\n    raise SystemExit(0)\n",
        "def add_digits(n):\n    import os; os._exit(0)\n",
        /* patch what the tests use */
        "import builtins\nbuiltins.AssertionError = type('X', (BaseException,), {})\n"
        "def add_digits(n): return -1\n",
        "import sys\nsys.exit = lambda *a: None\nimport builtins\nbuiltins.exit = sys.exit\n"
        "def add_digits(n): return -1\n",
        "import builtins\n_real = builtins.__build_class__\ndef check(c): return True\n"
        "builtins.check = check\ndef add_digits(n): return -1\n",
        /* an object that equals everything */
        "class Any:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
        "def add_digits(n): return Any()\n",
        "class Int(int):\n    def __eq__(self, o): return True\ndef add_digits(n): return Int(0)\n",
        /* fake output */
        "print('PASSED')\nprint('{\"load\": \"ok\", \"tests\": [{\"status\": \"passed\"}]}')\n"
        "import sys; sys.stdout.flush()\nimport os; os._exit(0)\n",
        "import os\nos.write(1, b'\\n0 {\"load\": \"ok\", \"tests\": [{\"status\": \"passed\"}]}\\n')\n"
        "os._exit(0)\n",
        "import os, json\nfor fd in range(3, 20):\n    try: os.write(fd, (\"('ok',None)\").encode())\n"
        "    except OSError: pass\ndef add_digits(n): return -1\n",
        /* read the harness and its files, then try to fake its result */
        "src = open('main.py').read() + open('spec.json').read()\nimport sys\n"
        "n = sys.stdin.read()\nprint(n, '{\"load\": \"ok\", \"tests\": [{\"status\": \"passed\"}]}')\n"
        "def add_digits(n): return -1\n",
        /* kill the harness */
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\nos.kill(os.getppid(), signal.SIGINT)\n"
        "def add_digits(n): return -1\n",
        "import os\nos.kill(-1, 9)\n",
        /* hang */
        "while True:\n    pass\n",
        "def add_digits(n):\n    while True: pass\n",
        /* the bare signature from the prompt, or no function at all */
        "    return None\n",
        "x = 1\n",
    };
    for (size_t i = 0; i < sizeof cheats / sizeof cheats[0]; i++) {
        char completion[2048], status[64];
        snprintf(completion, sizeof completion, "```python\n%s```\n", cheats[i]);
        double r = score_ok(env, item, completion, status, sizeof status);
        if (r != 0.0)
            fail_msg("cheat %zu passed (%s):\n%s", i, status, cheats[i]);
        print_message("cheat %2zu -> %s\n", i, status);
    }
    json_decref(item);
    lenv_free(env);
}

static void test_code_env_status__infinite_loop(void **state)
{
    (void)state;
    lenv_env *env = open_env("code", NULL, 0, 1);
    json_t *item = json_deep_copy(find_item(env, "test-0"));
    json_object_set_new(item, "timeout_s", json_real(1.0));
    char status[64];
    double t0 = now_s();
    assert_true(score_ok(env, item, "    while True: pass\n", status, sizeof status) == 0.0);
    assert_string_equal(status, "timeout");
    assert_true(now_s() - t0 < 10);
    /* A loop at import time ends the same way. */
    assert_true(score_ok(env, item, "```python\nwhile True: pass\n```", status, sizeof status) ==
                0.0);
    assert_string_equal(status, "timeout");
    json_decref(item);
    lenv_free(env);
}

/* Bad items are env errors, not wrong answers. */
static void test_code_env_items__bad(void **state)
{
    (void)state;
    lenv_env *env = open_env("code", NULL, 0, 1);
    json_t *items[] = {
        json_pack("{s:s}", "id", "x"),
        json_pack("{s:s, s:s, s:s}", "prompt", "def f():\n", "entry_point", "f; import os",
                  "test", "def check(c): pass"),
        json_pack("{s:s, s:s, s:s}", "prompt", "def f(:\n", "entry_point", "f", "test",
                  "def check(c): pass"),
        json_pack("{s:s, s:[]}", "text", "t", "test_list"),
    };
    static const char *const msgs[] = {
        "neither HumanEval fields", "not a Python name", "the problem's own code failed",
        "test_list is empty",
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        double r;
        json_t *d;
        lenv_error err;
        int rc = score1(env, items[i], "    return 1\n", &r, &d, &err);
        if (rc != LENV_ESCRIPT || !strstr(err.message, msgs[i]))
            fail_msg("item %zu: rc %d '%s'", i, rc, err.message);
        json_decref(items[i]);
    }
    lenv_free(env);
}

/* A sandbox that cannot start the interpreter fails the call (an env error,
 * HTTP 500), never a reward of 0. */
static void test_code_env_sandbox__failure_is_env_error(void **state)
{
    (void)state;
    lenv_env *env = open_env("code", NULL, 0, 1);
    const json_t *item = find_item(env, "test-0");
    char err_s[256];
    sbx_options opts = SBX_OPTIONS_INIT;
    opts.python3 = "/usr/bin/python3-envsrv-missing";
    assert_int_equal(sbx_init(NULL, &opts, err_s, sizeof err_s), 0);
    double r;
    json_t *d;
    lenv_error err;
    int rc = score1(env, item, "    return 1\n", &r, &d, &err);
    /* Put the sandbox back before any assertion can end the test. */
    sbx_options def = SBX_OPTIONS_INIT;
    def.python3 = "/usr/bin/python3";   /* NULL would keep the last path */
    assert_int_equal(sbx_init(NULL, &def, err_s, sizeof err_s), 0);
    if (rc != LENV_ESCRIPT || !strstr(err.message, "sandbox"))
        fail_msg("rc %d '%s' reward %g", rc, err.message, r);
    print_message("sandbox failure -> %s\n", err.message);
    json_decref(d);
    lenv_free(env);
}

/* ---- real data -------------------------------------------------------------------- */

/* Scores every item of a split from 2 threads. Each item gets 3 completions:
 * the reference (must pass) and two wrong ones (must fail; NULL for none). */
typedef struct real_run {
    lenv_env *env;
    const json_t **items;
    size_t n;
    size_t next;
    pthread_mutex_t mu;
    int humaneval;
    size_t good, bad_passed, errors, warm;
} real_run;

static void *real_worker(void *arg)
{
    real_run *rr = arg;
    for (;;) {
        pthread_mutex_lock(&rr->mu);
        size_t i = rr->next++;
        pthread_mutex_unlock(&rr->mu);
        if (i >= rr->n)
            return NULL;
        const json_t *item = rr->items[i];
        char *ref;
        const char *wrong[2];
        size_t nw;
        if (rr->humaneval) {
            const char *prompt = json_string_value(json_object_get(item, "prompt"));
            const char *sol = json_string_value(json_object_get(item, "canonical_solution"));
            ref = fenced(prompt, sol);
            wrong[0] = "    pass\n";
            wrong[1] = "    return 'envsrv: wrong answer'\n";
            nw = 2;
        } else {
            ref = fenced(json_string_value(json_object_get(item, "code")), "\n");
            nw = 0;
        }
        const char *cs[3] = { ref, wrong[0], wrong[1] };
        size_t lens[3] = { strlen(ref), nw ? strlen(wrong[0]) : 0, nw ? strlen(wrong[1]) : 0 };
        json_t *out = NULL;
        lenv_error err;
        int rc = lenv_score(&out, rr->env, item, cs, lens, 1 + nw, &err);
        pthread_mutex_lock(&rr->mu);
        if (rc != LENV_OK) {
            rr->errors++;
            print_message("item %zu: error %s\n", i, err.message);
        } else {
            json_t *rw = json_object_get(out, "rewards");
            json_t *d0 = json_array_get(json_object_get(out, "details"), 0);
            rr->warm += json_is_true(json_object_get(d0, "warm"));
            if (json_number_value(json_array_get(rw, 0)) == 1.0)
                rr->good++;
            else
                print_message("item %zu: reference failed: %s\n", i,
                              json_dumps(json_array_get(json_object_get(out, "details"), 0), 0));
            for (size_t k = 1; k <= nw; k++)
                if (json_number_value(json_array_get(rw, k)) != 0.0)
                    rr->bad_passed++;
        }
        pthread_mutex_unlock(&rr->mu);
        json_decref(out);
        free(ref);
    }
}

static void run_real(real_run *rr)
{
    pthread_t th[2];
    pthread_mutex_init(&rr->mu, NULL);
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&th[t], NULL, real_worker, rr), 0);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    pthread_mutex_destroy(&rr->mu);
}

/* path <- the shared data file `rel`; skips the test, saying so, when it is
 * not there. */
static void need_data_file(char *path, size_t cap, const char *rel)
{
    snprintf(path, cap, "%s/%s", data_dir(), rel);
    if (access(path, R_OK) != 0) {
        print_message("skipped: %s not found (set ENVSRV_DATA to the shared data folder)\n", path);
        skip();
    }
}

static void test_code_env_real__humaneval(void **state)
{
    (void)state;
    char path[512];
    need_data_file(path, sizeof path, "humaneval/HumanEval.jsonl");
    lenv_data_source src = { "test", path };
    lenv_env *env = open_env("code", &src, 1, 2);
    const json_t *items[200];
    size_t n = 0;
    for (; n < 200; n++) {
        char id[32];
        const json_t *it;
        lenv_error err;
        snprintf(id, sizeof id, "test-%zu", n);
        if (lenv_item_find(&it, env, id, &err) != LENV_OK)
            break;
        items[n] = it;
    }
    assert_int_equal(n, 164);
    real_run rr = { .env = env, .items = items, .n = n, .humaneval = 1 };
    double t0 = now_s();
    run_real(&rr);
    print_message("HumanEval: %zu/%zu canonical solutions pass, %zu of %zu wrong bodies pass, "
                  "%zu errors, %.2f s (2 threads)\n",
                  rr.good, n, rr.bad_passed, 2 * n, rr.errors, now_s() - t0);
    assert_int_equal(rr.errors, 0);
    assert_int_equal(rr.good, n);
    assert_int_equal(rr.bad_passed, 0);
    /* The env's default: every run in a warm interpreter. */
    assert_int_equal(rr.warm, n);
    lenv_free(env);
}

static void test_code_env_real__mbpp(void **state)
{
    (void)state;
    char path[512];
    need_data_file(path, sizeof path, "mbpp/mbpp.jsonl");
    lenv_data_source src = { "all", path };
    lenv_env *env = open_env("code", &src, 1, 2);
    const json_t **items = calloc(1000, sizeof *items);
    assert_non_null(items);
    size_t n = 0;
    for (size_t i = 0; i < 1000; i++) {
        char id[32];
        const json_t *it;
        lenv_error err;
        snprintf(id, sizeof id, "all-%zu", i);
        if (lenv_item_find(&it, env, id, &err) != LENV_OK)
            break;
        json_int_t task = json_integer_value(json_object_get(it, "task_id"));
        if (task >= 11 && task <= 510)
            items[n++] = it;
    }
    assert_int_equal(n, 500);
    real_run rr = { .env = env, .items = items, .n = n, .humaneval = 0 };
    double t0 = now_s();
    run_real(&rr);
    print_message("MBPP test split: %zu/%zu reference solutions pass, %zu errors, %.2f s "
                  "(2 threads)\n", rr.good, n, rr.errors, now_s() - t0);
    assert_int_equal(rr.errors, 0);
    assert_int_equal(rr.good, n);
    free(items);
    lenv_free(env);
}

/* MBPP's challenge_test_list as the optional test set: every reference
 * solution with challenge tests passes them (and "all", both sets); a wrong
 * function fails them; bad test_set values and empty sets are item errors. */
static void test_code_env_real__mbpp_challenge(void **state)
{
    (void)state;
    char path[512];
    need_data_file(path, sizeof path, "mbpp/mbpp.jsonl");
    lenv_data_source src = { "all", path };
    lenv_env *env = open_env("code", &src, 1, 1);
    size_t with = 0, without_checked = 0;
    for (size_t i = 0;; i++) {
        char id[32];
        const json_t *it;
        lenv_error err;
        snprintf(id, sizeof id, "all-%zu", i);
        if (lenv_item_find(&it, env, id, &err) != LENV_OK)
            break;
        size_t nch = json_array_size(json_object_get(it, "challenge_test_list"));
        if (nch == 0 && without_checked++ > 0)
            continue;
        json_t *item = json_deep_copy(it);
        assert_non_null(item);
        char *ref = fenced(json_string_value(json_object_get(it, "code")), "\n");
        double r;
        json_t *d;
        static const char *const sets[] = { "challenge", "all" };
        for (size_t k = 0; k < 2; k++) {
            json_object_set_new(item, "test_set", json_string(sets[k]));
            int rc = score1(env, item, ref, &r, &d, &err);
            if (nch == 0) {
                /* An item without challenge tests cannot be judged on them. */
                if (k == 0 && (rc == LENV_OK || !strstr(err.message, "challenge_test_list")))
                    fail_msg("item %zu: empty challenge set gave rc %d '%s'", i, rc, err.message);
                json_decref(d);
                continue;
            }
            if (rc != LENV_OK || r != 1.0)
                fail_msg("item %zu, test_set %s: rc %d reward %g %s %s", i, sets[k], rc, r,
                         err.message, d ? json_dumps(d, 0) : "");
            size_t want = nch + (k == 1 ? json_array_size(json_object_get(it, "test_list")) : 0);
            assert_int_equal(json_integer_value(json_object_get(d, "total")), want);
            json_decref(d);
        }
        if (nch > 0) {
            with++;
            json_object_set_new(item, "test_set", json_string("challenge"));
            assert_int_equal(score1(env, item, "```python\ndef f():\n    pass\n```\n", &r, &d,
                                    &err),
                             LENV_OK);
            assert_true(r == 0.0);
            json_decref(d);
        }
        json_object_set_new(item, "test_set", json_string("hard"));
        assert_int_not_equal(score1(env, item, ref, &r, &d, &err), LENV_OK);
        assert_non_null(strstr(err.message, "test_set"));
        json_decref(item);
        free(ref);
    }
    print_message("MBPP: %zu reference solutions pass their challenge tests\n", with);
    assert_true(with > 0);
    lenv_free(env);
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/envsrv-code-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_env_extract__blocks),
        cmocka_unit_test(test_code_env_text__clean),
        cmocka_unit_test(test_code_env_sandbox__run),
        cmocka_unit_test(test_code_env_samples__pass_and_fail),
        cmocka_unit_test(test_code_env_mbpp__fraction),
        cmocka_unit_test(test_code_env_cheats__rejected),
        cmocka_unit_test(test_code_env_status__infinite_loop),
        cmocka_unit_test(test_code_env_items__bad),
        cmocka_unit_test(test_code_env_sandbox__failure_is_env_error),
        cmocka_unit_test(test_code_env_real__humaneval),
        cmocka_unit_test(test_code_env_real__mbpp),
        cmocka_unit_test(test_code_env_real__mbpp_challenge),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
