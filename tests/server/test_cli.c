/*
 * The command line of the real binary: --help, --version, list, the start-up
 * banner, and exit status 2 (bad arguments) or 1 (an env that fails to load)
 * with a message on stderr.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/support.h"

#define NEED_BIN()                                                                 \
    do {                                                                           \
        if (!tsup_bin()) {                                                         \
            print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n"); \
            skip();                                                                \
        }                                                                          \
    } while (0)

/* Runs the binary; checks the exit status and that `needle` is in the stream
 * named by `where` ("out" or "err"). */
static void expect_run(const char *const *args, int status, const char *where, const char *needle)
{
    char *out = NULL, *err = NULL;
    int st = tsup_run(&out, &err, args);
    const char *hay = strcmp(where, "out") == 0 ? out : err;
    if (st != status || !strstr(hay, needle)) {
        print_error("envsrv %s%s ...: expected status %d and '%s' on std%s\n  got %d\n  stdout: %.400s\n"
                    "  stderr: %.400s\n", args[0] ? args[0] : "", args[0] && args[1] ? args[1] : "", status,
                    needle, where, st, out, err);
        free(out);
        free(err);
        fail();
    }
    free(out);
    free(err);
}

static void test_cli_help__usage_on_stdout(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const a[] = { "--help", NULL };
    expect_run(a, 0, "out", "usage: envsrv");
    expect_run(a, 0, "out", "--max-episodes");
    static const char *const b[] = { "--port", "9", "-h", NULL };
    expect_run(b, 0, "out", "--episode-ttl");
}

static void test_cli_version__names_libraries(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const a[] = { "--version", NULL };
    expect_run(a, 0, "out", "envsrv 0.1.0\n");
    expect_run(a, 0, "out", "Lua 5.4");
    expect_run(a, 0, "out", "libmicrohttpd 0.9");
    expect_run(a, 0, "out", "Jansson 2.");
}

static void test_cli_list__builtins_with_descriptions(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const a[] = { "list", NULL };
    expect_run(a, 0, "out", "gsm8k");
    expect_run(a, 0, "out", "Grade-school");
    static const char *const b[] = { "list", "extra", NULL };
    expect_run(b, 2, "err", "takes no arguments");
}

static void test_cli_args__bad_values_exit_2(void **state)
{
    (void)state;
    NEED_BIN();
    static const struct {
        const char *args[5];
        const char *needle;
    } cases[] = {
        { { "--port", "70000", NULL }, "--port" },
        { { "--port", "abc", NULL }, "--port" },
        { { "--port", "-1", NULL }, "--port" },
        { { "--port", NULL }, "needs a value" },
        { { "--threads", "0", NULL }, "--threads" },
        { { "--threads", "2x", NULL }, "--threads" },
        { { "--max-body", "12X", NULL }, "--max-body" },
        { { "--max-body", "0", NULL }, "--max-body" },
        { { "--max-body", "99999999999G", NULL }, "--max-body" },
        { { "--max-episodes", "0", NULL }, "--max-episodes" },
        { { "--episode-ttl", "soon", NULL }, "--episode-ttl" },
        { { "--bogus", NULL }, "unknown option '--bogus'" },
        { { "serve", NULL }, "unexpected argument 'serve'" },
        { { "--env", NULL }, "needs a value" },
        { { "--env=", NULL }, "--env" },
        { { "--data", "gsm8k", NULL }, "NAME=PATH" },
        { { "--data", "=x", NULL }, "NAME=PATH" },
        { { "--data", "gsm8k:=x", NULL }, "NAME=PATH" },
        { { "--data", "other=/tmp", NULL }, "no --env named 'other'" },
        { { "--env", "gsm8k", "--env", "gsm8k", NULL }, "two --env are named 'gsm8k'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_run(cases[i].args, 2, "err", cases[i].needle);
}

static void test_cli_env__load_failure_exit_1(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const a[] = { "--env", "gsm9k", NULL };
    expect_run(a, 1, "err", "gsm9k");
    static const char *const b[] = { "--env", "/nonexistent/dir/x.lua", NULL };
    expect_run(b, 1, "err", "x.lua");
    static const char *const c[] = { "--data", "gsm8k=/nonexistent/data", NULL };
    expect_run(c, 1, "err", "/nonexistent/data");
    /* A port that cannot be bound: a host that is not an address here. */
    static const char *const d[] = { "--host", "203.0.113.7", "--port", "0", NULL };
    expect_run(d, 1, "err", "cannot listen on 203.0.113.7");
}

static void test_cli_start__banner_and_option_forms(void **state)
{
    (void)state;
    NEED_BIN();
    static const char *const args[] = { "--env=gsm8k", "--threads=2", "--max-body", "16M",
                                        "--max-episodes", "5", "--episode-ttl=60", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    int st = 0;
    json_t *j = tsup_call(&st, s.port, "GET", "/health", NULL);
    assert_int_equal(st, 200);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);
    /* After the first line: the envs and a curl command with a real item id. */
    assert_non_null(strstr(s.out, "env gsm8k version "));
    assert_non_null(strstr(s.out, "2 worker threads"));
    const char *curl = strstr(s.out, "curl -s http://127.0.0.1:");
    assert_non_null(curl);
    assert_non_null(strstr(curl, "/v1/envs/gsm8k/score -d '{\"item_id\":\"test-"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_help__usage_on_stdout),
        cmocka_unit_test(test_cli_version__names_libraries),
        cmocka_unit_test(test_cli_list__builtins_with_descriptions),
        cmocka_unit_test(test_cli_args__bad_values_exit_2),
        cmocka_unit_test(test_cli_env__load_failure_exit_1),
        cmocka_unit_test(test_cli_start__banner_and_option_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
