/*
 * Tests for the `code_io` environment (envs/code_io.lua): stdin/stdout
 * programs in Python, C and C++ judged on test cases in the sandbox. The
 * sample problems' own solutions pass and wrong ones fail; whitespace and
 * float tolerance; fraction mode; compile errors, unsupported languages,
 * runaway programs and programs that try to print their way to a pass.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv.h"

static lenv_env *open_io(void)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = "code_io";
    o.n_states = 1;
    int rc = lenv_open(&env, &o, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_open(code_io): %d %s", rc, err.message);
    return env;
}

static const json_t *find_item(lenv_env *env, const char *id)
{
    const json_t *item = NULL;
    lenv_error err;
    if (lenv_item_find(&item, env, id, &err) != LENV_OK)
        fail_msg("%s", err.message);
    return item;
}

/* Scores one completion and expects success; returns the reward and copies
 * details.status into status. */
static double score(lenv_env *env, const json_t *item, const char *completion, char *status,
                    size_t cap)
{
    const char *cs[1] = { completion };
    size_t lens[1] = { strlen(completion) };
    json_t *out = NULL;
    lenv_error err;
    int rc = lenv_score(&out, env, item, cs, lens, 1, &err);
    if (rc != LENV_OK)
        fail_msg("lenv_score: %d %s", rc, err.message);
    json_t *d = json_array_get(json_object_get(out, "details"), 0);
    snprintf(status, cap, "%s", json_string_value(json_object_get(d, "status")));
    double r = json_number_value(json_array_get(json_object_get(out, "rewards"), 0));
    json_decref(out);
    return r;
}

static void test_code_env_io_samples__pass_and_fail(void **state)
{
    (void)state;
    lenv_env *env = open_io();
    json_t *desc = lenv_describe(env, 0);
    size_t n = (size_t)json_integer_value(json_object_get(json_object_get(desc, "splits"), "test"));
    json_decref(desc);
    assert_true(n >= 8);
    for (size_t i = 0; i < n; i++) {
        char id[32], status[64], c[4096];
        snprintf(id, sizeof id, "test-%zu", i);
        const json_t *item = find_item(env, id);
        snprintf(c, sizeof c, "```python\n%s```",
                 json_string_value(json_object_get(item, "solution")));
        if (score(env, item, c, status, sizeof status) != 1.0)
            fail_msg("%s: the solution failed: %s", id, status);
        assert_true(score(env, item, "```python\nprint(0)\n```", status, sizeof status) == 0.0);
        assert_string_equal(status, "wrong_answer");
    }
    lenv_free(env);
}

static void test_code_env_io_languages__c_cpp(void **state)
{
    (void)state;
    lenv_env *env = open_io();
    const json_t *item = find_item(env, "test-0");   /* a + b, up to 2e18 */
    char status[64];
    assert_true(score(env, item,
                      "In C:\n```c\n#include <stdio.h>\nint main(void) {\n  long long a, b;\n"
                      "  if (scanf(\"%lld %lld\", &a, &b) != 2) return 1;\n"
                      "  printf(\"%lld\\n\", a + b);\n  return 0;\n}\n```\n",
                      status, sizeof status) == 1.0);
    assert_true(score(env, item,
                      "```cpp\n#include <iostream>\nint main() {\n  long long a, b;\n"
                      "  std::cin >> a >> b;\n  std::cout << a + b << std::endl;\n}\n```",
                      status, sizeof status) == 1.0);
    /* int overflows on the 10^18 test. */
    assert_true(score(env, item,
                      "```c\n#include <stdio.h>\nint main(void) {\n  int a, b;\n"
                      "  scanf(\"%d %d\", &a, &b);\n  printf(\"%d\\n\", a + b);\n}\n```",
                      status, sizeof status) == 0.0);
    assert_string_equal(status, "wrong_answer");
    assert_true(score(env, item, "```c\nint main(void) { return syntax error; }\n```", status,
                      sizeof status) == 0.0);
    assert_string_equal(status, "compile_error");
    assert_true(score(env, item, "```rust\nfn main() {}\n```", status, sizeof status) == 0.0);
    assert_string_equal(status, "unsupported_language");
    /* A crash is the sandbox's word. */
    assert_true(score(env, item, "```c\n#include <stdlib.h>\nint main(void) { abort(); }\n```",
                      status, sizeof status) == 0.0);
    assert_string_equal(status, "signaled");
    lenv_free(env);
}

static void test_code_env_io_compare__whitespace_and_floats(void **state)
{
    (void)state;
    lenv_env *env = open_io();
    char status[64];
    json_t *item = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s, s:f}]}", "statement", "s", "tests",
                             "input", "", "output", "1 2\n3\n", "input", "x", "output",
                             "3.14159265 2\n", "float_tolerance", 1e-6);
    /* Test 1 is exact tokens; test 2 accepts 1e-6 relative. */
    assert_true(score(env, item,
                      "import sys\nif sys.stdin.read():\n    print('3.1415927', ' 2.0000000001')\n"
                      "else:\n    print('  1\\n\\n2   3  ')\n",
                      status, sizeof status) == 1.0);
    assert_true(score(env, item,
                      "import sys\nif sys.stdin.read():\n    print('3.1416 2')\nelse:\n"
                      "    print('1 2 3')\n",
                      status, sizeof status) == 0.0);
    assert_string_equal(status, "wrong_answer");
    /* Without tolerance, 1.0 is not 1. */
    assert_true(score(env, item, "import sys\nif not sys.stdin.read():\n    print('1.0 2 3')\n",
                      status, sizeof status) == 0.0);
    /* Missing and extra tokens. */
    assert_true(score(env, item, "print('1 2')\n", status, sizeof status) == 0.0);
    assert_true(score(env, item, "print('1 2 3 4')\n", status, sizeof status) == 0.0);
    /* Fraction mode: the first test only. */
    json_object_set_new(item, "reward_mode", json_string("fraction"));
    assert_true(score(env, item, "print('1 2 3')\n", status, sizeof status) == 0.5);
    json_decref(item);
    lenv_free(env);
}

static void test_code_env_io_cheats__rejected(void **state)
{
    (void)state;
    lenv_env *env = open_io();
    json_t *item = json_deep_copy(find_item(env, "test-0"));
    json_object_set_new(item, "time_limit_s", json_real(0.5));
    static const char *const cheats[] = {
        "print('PASSED')\n",
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        "print('{\"status\": \"passed\"}')\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "while True:\n    pass\n",
        "import time\ntime.sleep(60)\n",
        "print('x' * 10000000)\n",
        "print(open('/etc/shadow').read())\n",
    };
    for (size_t i = 0; i < sizeof cheats / sizeof cheats[0]; i++) {
        char status[64];
        double r = score(env, item, cheats[i], status, sizeof status);
        if (r != 0.0)
            fail_msg("cheat %zu passed (%s)", i, cheats[i]);
        print_message("cheat %zu -> %s\n", i, status);
    }
    char status[64];
    score(env, item, "while True:\n    pass\n", status, sizeof status);
    assert_string_equal(status, "time_limit_exceeded");
    json_decref(item);
    lenv_free(env);
}

static void test_code_env_io_items__bad(void **state)
{
    (void)state;
    lenv_env *env = open_io();
    json_t *items[] = {
        json_pack("{s:s}", "statement", "no tests"),
        json_pack("{s:s, s:[{s:s}]}", "statement", "s", "tests", "input", "1"),
        json_pack("{s:s, s:[{s:s, s:s}], s:i}", "statement", "s", "tests", "input", "",
                  "output", "", "time_limit_s", 1000),
    };
    static const char *const msgs[] = { "no tests", "tests[1]", "time_limit_s" };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        const char *c = "print(1)";
        size_t len = strlen(c);
        json_t *out = NULL;
        lenv_error err;
        int rc = lenv_score(&out, env, items[i], &c, &len, 1, &err);
        if (rc != LENV_ESCRIPT || !strstr(err.message, msgs[i]))
            fail_msg("item %zu: rc %d '%s'", i, rc, err.message);
        json_decref(items[i]);
    }
    lenv_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_env_io_samples__pass_and_fail),
        cmocka_unit_test(test_code_env_io_languages__c_cpp),
        cmocka_unit_test(test_code_env_io_compare__whitespace_and_floats),
        cmocka_unit_test(test_code_env_io_cheats__rejected),
        cmocka_unit_test(test_code_env_io_items__bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
