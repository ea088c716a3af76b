/*
 * `envsrv generate` end to end with the real stories260K checkpoint: greedy
 * output equals llama2.c's known output byte for byte (200 and 256 tokens from
 * BOS, printed like run.c with a final newline), sampling is reproducible by
 * seed, and bad input gives a clear error with the right exit status.
 * Skipped when $ENVSRV_BIN or the shared data is absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/support.h"

static char g_model[4096], g_tok[4096];

static void need_model(void)
{
    if (!tsup_bin()) {
        print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n");
        skip();
    }
    tsup_stories260k(g_model, sizeof g_model, g_tok, sizeof g_tok);
    if (access(g_model, R_OK) != 0 || access(g_tok, R_OK) != 0) {
        print_message("skipped: %s not found (set ENVSRV_DATA to the shared data folder)\n", g_model);
        skip();
    }
}

/* The expected file's bytes (malloc'd) and length. */
static char *read_expected(const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K/%s", tsup_data_dir(), name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(4096);
    assert_non_null(buf);
    *len = fread(buf, 1, 4095, f);
    fclose(f);
    return buf;
}

static void check_greedy(const char *max_tokens, const char *expected_file)
{
    const char *const args[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt", "",
                                 "--temperature", "0", "--max-tokens", max_tokens, NULL };
    char *out = NULL, *err = NULL;
    assert_int_equal(tsup_run(&out, &err, args), 0);
    size_t n = 0;
    char *want = read_expected(expected_file, &n);
    /* run.c prints the text and a final newline. */
    assert_int_equal(strlen(out), n + 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], '\n');
    free(want);
    free(out);
    free(err);
}

static void test_generate_cli_greedy__matches_llama2c(void **state)
{
    (void)state;
    need_model();
    check_greedy("200", "expected_greedy_t0_n200.txt");
    check_greedy("256", "expected_greedy_t0_n256.txt");
}

static void test_generate_cli_sampling__reproducible_by_seed(void **state)
{
    (void)state;
    need_model();
    const char *const a[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt",
                              "Once upon a time", "--n", "3", "--max-tokens", "40", "--seed", "7",
                              "--top-p", "0.9", NULL };
    const char *const b[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt",
                              "Once upon a time", "--n", "3", "--max-tokens", "40", "--seed", "7",
                              "--top-p", "0.9", "--threads", "2", NULL };
    const char *const c[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt",
                              "Once upon a time", "--n", "3", "--max-tokens", "40", "--seed", "8",
                              "--top-p", "0.9", NULL };
    char *oa = NULL, *ob = NULL, *oc = NULL, *e = NULL;
    assert_int_equal(tsup_run(&oa, &e, a), 0);
    free(e);
    assert_int_equal(tsup_run(&ob, &e, b), 0);
    free(e);
    assert_int_equal(tsup_run(&oc, &e, c), 0);
    free(e);
    assert_non_null(strstr(oa, "--- sample 2 ("));
    assert_string_equal(oa, ob);          /* threads do not change the text */
    assert_string_not_equal(oa, oc);      /* another seed, other samples */
    free(oa);
    free(ob);
    free(oc);
}

static void test_generate_cli_errors__clear_and_exit_status(void **state)
{
    (void)state;
    need_model();
    char *out = NULL, *err = NULL;
    const char *const missing[] = { "generate", "--model", "/nonexistent/model.bin", "--tokenizer", g_tok,
                                    "--prompt", "hi", NULL };
    assert_int_equal(tsup_run(&out, &err, missing), 1);
    assert_non_null(strstr(err, "envsrv generate: "));
    free(out);
    free(err);
    /* A tokenizer that is not one (the model file itself). */
    const char *const badtok[] = { "generate", "--model", g_model, "--tokenizer", g_model, "--prompt", "hi",
                                   NULL };
    assert_int_equal(tsup_run(&out, &err, badtok), 1);
    free(out);
    free(err);
    const char *const noprompt[] = { "generate", "--model", g_model, NULL };
    assert_int_equal(tsup_run(&out, &err, noprompt), 2);
    assert_non_null(strstr(err, "--prompt"));
    free(out);
    free(err);
    const char *const badtemp[] = { "generate", "--model", g_model, "--prompt", "x", "--temperature", "hot",
                                    NULL };
    assert_int_equal(tsup_run(&out, &err, badtemp), 2);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_cli_greedy__matches_llama2c),
        cmocka_unit_test(test_generate_cli_sampling__reproducible_by_seed),
        cmocka_unit_test(test_generate_cli_errors__clear_and_exit_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
