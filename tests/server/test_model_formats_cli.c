/*
 * One loader for every entry point: stories260K converted by the test to a
 * HuggingFace folder (inf_model_save_hf + inf_tokenizer_save_hf) gives
 * `envsrv generate` output byte-identical to the llama2.c checkpoint's, and
 * the same eval results and rollout groups; --chat-template takes a Jinja
 * file or a Lua function; missing, garbage and unsupported paths give clear
 * errors. Skipped
 * when $ENVSRV_BIN or the shared data is absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inference/inference.h"
#include "tests/support/support.h"

static char g_model[4096], g_tok[4096], g_dir[64], g_hf[128], g_gguf[128];

/* Converts stories260K into g_hf once per test program. */
static int setup(void **state)
{
    (void)state;
    tsup_stories260k(g_model, sizeof g_model, g_tok, sizeof g_tok);
    if (!tsup_bin() || access(g_model, R_OK) != 0)
        return 0;
    tsup_mkdtemp(g_dir);
    snprintf(g_hf, sizeof g_hf, "%s/hf", g_dir);
    assert_int_equal(mkdir(g_hf, 0755), 0);
    inf_model *m = NULL;
    inf_tokenizer *t = NULL;
    inf_error err = { 0 };
    if (inf_model_load_llama2c(&m, g_model, &err) || inf_tokenizer_load_llama2c(&t, g_tok, 512, &err) ||
        inf_model_save_hf(m, g_hf, INF_DTYPE_F32, 0, &err) || inf_tokenizer_save_hf(t, g_hf, &err) ||
        (snprintf(g_gguf, sizeof g_gguf, "%s/stories.gguf", g_dir), inf_model_save_gguf(m, g_gguf, INF_DTYPE_F32, &err)))
        fail_msg("%s", err.message);
    inf_model_free(m);
    inf_tokenizer_free(t);
    char story[256];
    tsup_write_story_env(story, sizeof story, g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_hf[0]) {
        tsup_rmdir(g_hf);
        tsup_rmdir(g_dir);
    }
    return 0;
}

static void need_model(void)
{
    if (!tsup_bin()) {
        print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n");
        skip();
    }
    if (!g_hf[0]) {
        print_message("skipped: %s not found (set ENVSRV_DATA to the shared data folder)\n", g_model);
        skip();
    }
}

/* Runs envsrv, expects `status`, returns stdout (caller frees). */
static char *run_ok(int status, const char *const *args)
{
    char *out = NULL, *err = NULL;
    int rc = tsup_run(&out, &err, args);
    if (rc != status)
        fail_msg("exit %d (want %d): %s", rc, status, err);
    free(err);
    return out;
}

static void test_model_formats_cli_generate__hf_matches_llama2c(void **state)
{
    (void)state;
    need_model();
    const char *const l2c[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt",
                                "Once upon a time", "--temperature", "0", "--max-tokens", "200", NULL };
    const char *const hf[] = { "generate", "--model", g_hf, "--prompt", "Once upon a time",
                               "--temperature", "0", "--max-tokens", "200", NULL };
    char *a = run_ok(0, l2c), *b = run_ok(0, hf);
    assert_true(strlen(a) > 200);
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* Sampling with a seed: the same samples through both formats. */
    const char *const l2c_s[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt", "Lily",
                                  "--n", "3", "--seed", "11", "--max-tokens", "30", NULL };
    const char *const hf_s[] = { "generate", "--model", g_hf, "--prompt", "Lily", "--n", "3", "--seed", "11",
                                 "--max-tokens", "30", NULL };
    a = run_ok(0, l2c_s);
    b = run_ok(0, hf_s);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* A GGUF file (weights only, as inf_model_save_gguf writes it) with the
 * llama2.c tokenizer given: the same text; without a tokenizer, an error. */
static void test_model_formats_cli_generate__gguf(void **state)
{
    (void)state;
    need_model();
    const char *const l2c[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt", "The cat",
                                "--temperature", "0", "--max-tokens", "100", NULL };
    const char *const gguf[] = { "generate", "--model", g_gguf, "--tokenizer", g_tok, "--prompt", "The cat",
                                 "--temperature", "0", "--max-tokens", "100", NULL };
    char *a = run_ok(0, l2c), *b = run_ok(0, gguf);
    assert_string_equal(a, b);
    free(a);
    free(b);
    const char *const notok[] = { "generate", "--model", g_gguf, "--prompt", "x", NULL };
    tsup_run_fails(1, "pass --tokenizer FILE", notok);
}

static void test_model_formats_cli_eval__hf_same_results(void **state)
{
    (void)state;
    need_model();
    char env[128], r1[128], r2[128];
    snprintf(env, sizeof env, "%s/story.lua", g_dir);
    snprintf(r1, sizeof r1, "%s/r1.json", g_dir);
    snprintf(r2, sizeof r2, "%s/r2.json", g_dir);
    const char *const l2c[] = { "eval", "--env", env, "--model", g_model, "--tokenizer", g_tok, "--limit", "3",
                                "--max-tokens", "24", "--report", r1, NULL };
    const char *const hf[] = { "eval", "--env", env, "--model", g_hf, "--limit", "3", "--max-tokens", "24",
                               "--report", r2, NULL };
    free(run_ok(0, l2c));
    free(run_ok(0, hf));
    json_t *a = json_load_file(r1, 0, NULL), *b = json_load_file(r2, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(json_number_value(json_object_get(a, "mean_reward")) > 0);
    assert_true(json_equal(json_object_get(a, "results"), json_object_get(b, "results")));
    json_t *ma = json_object_get(a, "model"), *mb = json_object_get(b, "model");
    assert_string_equal(json_string_value(json_object_get(ma, "format")), "llama2c");
    assert_string_equal(json_string_value(json_object_get(mb, "format")), "hf");
    assert_string_equal(json_string_value(json_object_get(mb, "chat_template")), "plain");
    assert_int_equal(json_string_length(json_object_get(mb, "sha256")), 64);
    assert_string_not_equal(json_string_value(json_object_get(ma, "sha256")),
                            json_string_value(json_object_get(mb, "sha256")));
    assert_true(json_number_value(json_object_get(b, "tokens_per_second")) > 0);
    json_decref(a);
    json_decref(b);
    unlink(r1);
    unlink(r2);
}

static void test_model_formats_cli_rollout__hf_same_groups(void **state)
{
    (void)state;
    need_model();
    char o1[128], o2[128];
    snprintf(o1, sizeof o1, "%s/a.jsonl", g_dir);
    snprintf(o2, sizeof o2, "%s/b.jsonl", g_dir);
    const char *const l2c[] = { "rollout", "--env", "gsm8k", "--model", g_model, "--tokenizer", g_tok, "--groups",
                                "2", "--group-size", "3", "--max-tokens", "10", "--seed", "3", "-o", o1, NULL };
    const char *const hf[] = { "rollout", "--env", "gsm8k", "--model", g_hf, "--groups", "2", "--group-size", "3",
                               "--max-tokens", "10", "--seed", "3", "-o", o2, NULL };
    free(run_ok(0, l2c));
    free(run_ok(0, hf));
    FILE *fa = fopen(o1, "r"), *fb = fopen(o2, "r");
    assert_non_null(fa);
    assert_non_null(fb);
    char la[1 << 16], lb[1 << 16];
    size_t lines = 0;
    while (fgets(la, sizeof la, fa)) {
        assert_non_null(fgets(lb, sizeof lb, fb));
        json_t *a = json_loads(la, 0, NULL), *b = json_loads(lb, 0, NULL);
        assert_non_null(a);
        assert_non_null(b);
        /* Everything but the model's hash is the same. */
        assert_true(json_equal(json_object_get(a, "tokens"), json_object_get(b, "tokens")));
        assert_true(json_equal(json_object_get(a, "completions"), json_object_get(b, "completions")));
        assert_true(json_equal(json_object_get(a, "scores"), json_object_get(b, "scores")));
        assert_int_equal(json_array_size(json_object_get(a, "finish_reasons")), 3);
        json_decref(a);
        json_decref(b);
        lines++;
    }
    assert_int_equal(lines, 2);
    fclose(fa);
    fclose(fb);
    unlink(o1);
    unlink(o2);
}

static void test_model_formats_cli_chat_template__file_and_errors(void **state)
{
    (void)state;
    need_model();
    char env[128], report[128], chatml[128], unknown[128];
    snprintf(env, sizeof env, "%s/story.lua", g_dir);
    snprintf(report, sizeof report, "%s/r.json", g_dir);
    snprintf(chatml, sizeof chatml, "%s/chatml.jinja", g_dir);
    snprintf(unknown, sizeof unknown, "%s/unknown.jinja", g_dir);
    tsup_write_file(g_dir, "chatml.jinja",
                    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
    tsup_write_file(g_dir, "unknown.jinja", "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}");
    const char *const ok[] = { "eval", "--env", env, "--model", g_hf, "--chat-template", chatml, "--limit", "1",
                               "--max-tokens", "4", "--report", report, NULL };
    free(run_ok(0, ok));
    json_t *r = json_load_file(report, 0, NULL);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "model"), "chat_template")),
                        "chatml");
    json_decref(r);
    unlink(report);
    unlink(chatml);

    const char *const bad_tpl[] = { "eval", "--env", env, "--model", g_hf, "--chat-template", unknown, NULL };
    tsup_run_fails(1, "pass --chat-template FILE", bad_tpl);
    unlink(unknown);
    const char *const gone_tpl[] = { "rollout", "--env", env, "--model", g_hf, "--chat-template", "/nonexistent.j2",
                                     "--groups", "1", "--group-size", "1", "-o", "/dev/null", NULL };
    tsup_run_fails(1, "chat template '/nonexistent.j2': cannot open", gone_tpl);
    const char *const missing[] = { "eval", "--env", env, "--model", "/nonexistent/model", NULL };
    tsup_run_fails(1, "model '/nonexistent/model': cannot open", missing);
    const char *const no_config[] = { "generate", "--model", g_dir, "--prompt", "x", NULL };
    tsup_run_fails(1, "without config.json", no_config);
    const char *const garbage[] = { "generate", "--model", env, "--tokenizer", g_tok, "--prompt", "x", NULL };
    tsup_run_fails(1, "envsrv generate: ", garbage);
    const char *const no_tok[] = { "generate", "--model", g_model, "--prompt", "x", NULL };
    tsup_run_fails(1, "pass --tokenizer", no_tok);
}

/* A Lua template's text is what the model is prompted with (encoded with
 * its special tokens, nothing added); a failing or non-function template is
 * a clear error. */
static void test_model_formats_cli_chat_template__lua(void **state)
{
    (void)state;
    need_model();
    char env[128], out[128], lua[128], bad[128], nofn[128], one[128];
    snprintf(env, sizeof env, "%s/story.lua", g_dir);
    snprintf(out, sizeof out, "%s/lua.jsonl", g_dir);
    snprintf(lua, sizeof lua, "%s/tpl.lua", g_dir);
    snprintf(bad, sizeof bad, "%s/bad.lua", g_dir);
    snprintf(nofn, sizeof nofn, "%s/nofn.lua", g_dir);
    snprintf(one, sizeof one, "%s/one.jsonl", g_dir);
    tsup_write_file(g_dir, "tpl.lua",
                    "return function(messages)\n"
                    "  local s = \"\"\n"
                    "  for _, m in ipairs(messages) do s = s .. \"[\" .. m.role .. \"] \" .. m.content .. \"\\n\" end\n"
                    "  return s .. \"[assistant]\"\n"
                    "end\n");
    tsup_write_file(g_dir, "bad.lua", "return function(messages)\n  error(\"no template here\")\nend\n");
    tsup_write_file(g_dir, "nofn.lua", "return 42\n");
    tsup_write_file(g_dir, "one.jsonl", "{\"start\": \"Once upon a time\"}\n");
    const char *const args[] = { "rollout", "--env", env, "--data", one, "--model", g_hf, "--chat-template", lua,
                                 "--groups", "1", "--group-size", "1", "--max-tokens", "4", "-o", out, NULL };
    free(run_ok(0, args));
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[1 << 16];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    json_t *g = json_loads(line, 0, NULL);
    assert_non_null(g);
    json_t *tokens = json_array_get(json_object_get(g, "tokens"), 0), *masks = json_array_get(json_object_get(g, "masks"), 0);

    inf_tokenizer *t = NULL;
    inf_error err = { 0 };
    int *ids = NULL;
    size_t n = 0;
    const char *text = "[user] Once upon a time\n[assistant]";
    if (inf_tokenizer_load_hf(&t, g_hf, &err) ||
        inf_tokenizer_encode(&ids, &n, t, text, strlen(text), INF_TOK_SPECIAL, &err))
        fail_msg("%s", err.message);
    assert_int_not_equal(ids[0], 1);   /* no BOS added */
    assert_true(json_array_size(tokens) > n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(json_integer_value(json_array_get(tokens, i)), ids[i]);
        assert_int_equal(json_integer_value(json_array_get(masks, i)), -100);
    }
    assert_int_not_equal(json_integer_value(json_array_get(masks, n)), -100);
    free(ids);
    inf_tokenizer_free(t);
    json_decref(g);

    const char *const failing[] = { "eval", "--env", env, "--model", g_hf, "--limit", "1", "--chat-template", bad,
                                    NULL };
    tsup_run_fails(1, "bad.lua:2: no template here", failing);
    const char *const notfn[] = { "eval", "--env", env, "--model", g_hf, "--chat-template", nofn, NULL };
    tsup_run_fails(1, "must return function(messages) -> string", notfn);
    unlink(out);
    unlink(lua);
    unlink(bad);
    unlink(nofn);
    unlink(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_formats_cli_generate__hf_matches_llama2c),
        cmocka_unit_test(test_model_formats_cli_generate__gguf),
        cmocka_unit_test(test_model_formats_cli_eval__hf_same_results),
        cmocka_unit_test(test_model_formats_cli_rollout__hf_same_groups),
        cmocka_unit_test(test_model_formats_cli_chat_template__file_and_errors),
        cmocka_unit_test(test_model_formats_cli_chat_template__lua),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
