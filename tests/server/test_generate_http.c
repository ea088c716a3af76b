/*
 * The server's built-in sampler over HTTP with the real stories260K model
 * (`envsrv --model`): /v1/completions greedy text equals `envsrv generate`'s,
 * n=3 with a seed is reproducible, logprobs are present and <= 0;
 * /v1/chat/completions and /v1/models; POST /v1/envs/{env}/rollouts gives
 * the same groups as `envsrv rollout` and /scored_data takes them; bad
 * bodies and missing models get clear errors in the right shape.
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
static tsup_server g_srv;
static int g_up;

static void need_server(void);

static int setup(void **state)
{
    (void)state;
    tsup_stories260k(g_model, sizeof g_model, g_tok, sizeof g_tok);
    if (!tsup_bin() || access(g_model, R_OK) != 0)
        return 0;
    const char *const args[] = { "--env", "gsm8k", "--no-journal", "--model", g_model, "--tokenizer", g_tok,
                                 "--model-name", "stories", NULL };
    g_up = tsup_server_start(&g_srv, args) == 0;
    return 0;
}

/* The server stops cleanly after everything above (under ASan: without a
 * leak). A test of its own, since a failing group teardown is not counted. */
static void test_generate_http__server_exits_cleanly(void **state)
{
    (void)state;
    need_server();
    tsup_server_stop_in_test(&g_srv, &g_up);
}

static int teardown(void **state)
{
    (void)state;
    return tsup_server_teardown(&g_srv, &g_up);
}

static void need_server(void)
{
    if (!g_up) {
        print_message("skipped: ENVSRV_BIN unset or %s not found (set ENVSRV_DATA)\n", g_model);
        skip();
    }
}

static json_t *post(int want_status, const char *path, const char *body)
{
    int status = 0;
    json_t *j = tsup_call(&status, g_srv.port, "POST", path, body);
    if (status != want_status) {
        char *text = json_dumps(j, 0);
        fail_msg("POST %s %s: status %d (want %d): %s", path, body, status, want_status, text);
    }
    return j;
}

/* OpenAI's error shape, with `param` when given. */
static void expect_openai_error(int status, const char *path, const char *body, const char *param)
{
    json_t *j = post(status, path, body);
    json_t *e = json_object_get(j, "error");
    assert_non_null(json_string_value(json_object_get(e, "message")));
    assert_string_equal(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    if (param)
        assert_string_equal(json_string_value(json_object_get(e, "param")), param);
    json_decref(j);
}

static void test_generate_http_completions__greedy_matches_cli(void **state)
{
    (void)state;
    need_server();
    const char *const args[] = { "generate", "--model", g_model, "--tokenizer", g_tok, "--prompt",
                                 "Once upon a time", "--temperature", "0", "--max-tokens", "120", NULL };
    char *out = NULL, *err = NULL;
    assert_int_equal(tsup_run(&out, &err, args), 0);
    free(err);
    json_t *j = post(200, "/v1/completions",
                     "{\"model\": \"stories\", \"prompt\": \"Once upon a time\", \"max_tokens\": 120, "
                     "\"temperature\": 0, \"logprobs\": 1}");
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "stories");
    assert_int_equal(strncmp(json_string_value(json_object_get(j, "id")), "cmpl-", 5), 0);
    assert_true(json_integer_value(json_object_get(j, "created")) > 0);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    /* generate prints prompt + completion + "\n". */
    char want[8192];
    snprintf(want, sizeof want, "Once upon a time%s\n", json_string_value(json_object_get(c, "text")));
    assert_string_equal(out, want);
    free(out);
    const char *fin = json_string_value(json_object_get(c, "finish_reason"));
    assert_true(strcmp(fin, "stop") == 0 || strcmp(fin, "length") == 0);
    json_t *lp = json_object_get(c, "logprobs");
    json_t *usage = json_object_get(j, "usage");
    size_t n = json_array_size(json_object_get(lp, "token_logprobs"));
    assert_true(n > 0);
    assert_int_equal(n, json_integer_value(json_object_get(usage, "completion_tokens")));
    assert_int_equal(json_array_size(json_object_get(lp, "tokens")), n);
    assert_int_equal(json_array_size(json_object_get(lp, "top_logprobs")), n);
    assert_int_equal(json_array_size(json_object_get(lp, "text_offset")), n);
    /* The first token starts right after the prompt's 16 bytes. */
    assert_int_equal(json_integer_value(json_array_get(json_object_get(lp, "text_offset"), 0)), 16);
    for (size_t i = 0; i < n; i++)
        assert_true(json_number_value(json_array_get(json_object_get(lp, "token_logprobs"), i)) <= 0.0);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")),
                     json_integer_value(json_object_get(usage, "prompt_tokens")) + (json_int_t)n);
    json_decref(j);

    /* logprobs: 3 gives the three likeliest tokens at each step, the greedy
     * choice first among them. */
    j = post(200, "/v1/completions", "{\"prompt\": \"Once upon a time\", \"max_tokens\": 8, \"temperature\": 0, "
                                     "\"logprobs\": 3}");
    lp = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
    assert_int_equal(json_array_size(json_object_get(lp, "top_logprobs")), 8);
    for (size_t i = 0; i < 8; i++) {
        json_t *top = json_array_get(json_object_get(lp, "top_logprobs"), i);
        const char *chosen = json_string_value(json_array_get(json_object_get(lp, "tokens"), i));
        double chosen_lp = json_number_value(json_array_get(json_object_get(lp, "token_logprobs"), i));
        assert_true(json_object_size(top) >= 2 && json_object_size(top) <= 3);  /* pieces may coincide */
        assert_true(json_number_value(json_object_get(top, chosen)) == chosen_lp);
        const char *key;
        json_t *v;
        json_object_foreach(top, key, v)
            assert_true(json_number_value(v) <= chosen_lp);   /* greedy: the likeliest */
    }
    json_decref(j);

    /* vLLM's return_tokens_as_token_ids: logprobs name tokens by id. */
    j = post(200, "/v1/completions", "{\"prompt\": \"Lily\", \"max_tokens\": 10, \"temperature\": 0, "
                                     "\"logprobs\": 0, \"return_tokens_as_token_ids\": true}");
    json_t *toks = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"),
                                   "tokens");
    assert_int_equal(strncmp(json_string_value(json_array_get(toks, 0)), "token_id:", 9), 0);
    json_decref(j);
}

static void test_generate_http_completions__seeded_samples_reproducible(void **state)
{
    (void)state;
    need_server();
    const char *body = "{\"prompt\": \"The dog\", \"n\": 3, \"max_tokens\": 24, \"seed\": 5, \"top_p\": 0.95, "
                       "\"stop\": [\"\\n\"]}";
    json_t *a = post(200, "/v1/completions", body), *b = post(200, "/v1/completions", body);
    json_t *ca = json_object_get(a, "choices"), *cb = json_object_get(b, "choices");
    assert_int_equal(json_array_size(ca), 3);
    assert_true(json_equal(ca, cb));
    assert_true(json_is_null(json_object_get(json_array_get(ca, 0), "logprobs")));
    /* three samples of one stream each: not all the same text */
    const char *t0 = json_string_value(json_object_get(json_array_get(ca, 0), "text"));
    const char *t1 = json_string_value(json_object_get(json_array_get(ca, 1), "text"));
    const char *t2 = json_string_value(json_object_get(json_array_get(ca, 2), "text"));
    assert_false(strcmp(t0, t1) == 0 && strcmp(t1, t2) == 0);
    for (size_t i = 0; i < 3; i++)
        assert_null(strchr(json_string_value(json_object_get(json_array_get(ca, i), "text")), '\n'));
    json_decref(a);
    json_decref(b);
    a = post(200, "/v1/completions", "{\"prompt\": \"The dog\", \"n\": 3, \"max_tokens\": 24, \"seed\": 6, "
                                     "\"top_p\": 0.95, \"stop\": [\"\\n\"]}");
    assert_false(json_equal(json_object_get(a, "choices"), cb));
    json_decref(a);
}

static void test_generate_http_chat__messages_and_logprobs(void **state)
{
    (void)state;
    need_server();
    const char *body = "{\"model\": \"stories\", \"messages\": [{\"role\": \"system\", \"content\": \"Tell a story.\"}, "
                       "{\"role\": \"user\", \"content\": \"Once upon a time\"}], \"n\": 2, \"max_tokens\": 12, "
                       "\"seed\": 1, \"logprobs\": true, \"top_logprobs\": 1}";
    json_t *j = post(200, "/v1/chat/completions", body), *again = post(200, "/v1/chat/completions", body);
    assert_true(json_equal(json_object_get(j, "choices"), json_object_get(again, "choices")));
    json_decref(again);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *choices = json_object_get(j, "choices");
    assert_int_equal(json_array_size(choices), 2);
    size_t total = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *c = json_array_get(choices, i);
        json_t *msg = json_object_get(c, "message");
        assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
        assert_non_null(json_string_value(json_object_get(msg, "content")));
        json_t *content = json_object_get(json_object_get(c, "logprobs"), "content");
        assert_true(json_array_size(content) > 0);
        total += json_array_size(content);
        for (size_t k = 0; k < json_array_size(content); k++) {
            json_t *e = json_array_get(content, k);
            assert_true(json_number_value(json_object_get(e, "logprob")) <= 0.0);
            assert_non_null(json_string_value(json_object_get(e, "token")));
            assert_int_equal(json_array_size(json_object_get(e, "top_logprobs")), 1);
        }
    }
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")), total);
    json_decref(j);

    /* top_logprobs: 4 alternatives per token, likeliest first; greedy picks the first. */
    j = post(200, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"Once\"}], "
                                          "\"max_tokens\": 6, \"temperature\": 0, \"logprobs\": true, "
                                          "\"top_logprobs\": 4}");
    json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"),
                                      "content");
    assert_int_equal(json_array_size(content), 6);
    for (size_t k = 0; k < 6; k++) {
        json_t *e = json_array_get(content, k), *tops = json_object_get(e, "top_logprobs");
        assert_int_equal(json_array_size(tops), 4);
        assert_true(json_equal(json_object_get(json_array_get(tops, 0), "bytes"), json_object_get(e, "bytes")));
        assert_true(json_number_value(json_object_get(json_array_get(tops, 0), "logprob")) ==
                    json_number_value(json_object_get(e, "logprob")));
        for (size_t r = 1; r < 4; r++)
            assert_true(json_number_value(json_object_get(json_array_get(tops, r), "logprob")) <=
                        json_number_value(json_object_get(json_array_get(tops, r - 1), "logprob")));
    }
    json_decref(j);
    j = post(400, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"Once\"}], "
                                          "\"top_logprobs\": 2}");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "param")), "top_logprobs");
    json_decref(j);

    int status = 0;
    j = tsup_call(&status, g_srv.port, "GET", "/v1/models", NULL);
    assert_int_equal(status, 200);
    json_t *m = json_array_get(json_object_get(j, "data"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "stories");
    assert_int_equal(json_integer_value(json_object_get(m, "max_model_len")), 512);
    json_decref(j);
}

static void test_generate_http_openai__bad_bodies(void **state)
{
    (void)state;
    need_server();
    expect_openai_error(400, "/v1/completions", "{not json", NULL);
    expect_openai_error(400, "/v1/completions", "[1, 2]", NULL);
    expect_openai_error(400, "/v1/completions", "{\"max_tokens\": 4}", "prompt");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"n\": 0}", "n");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"n\": 65}", "n");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 513}", "max_tokens");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", "temperature");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"stream\": true}", "stream");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"echo\": true}", "echo");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"logit_bias\": {}}", "logit_bias");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"presence_penalty\": 0.5}", "presence_penalty");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": [1, 99999]}", "prompt");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": {}}", "prompt");
    expect_openai_error(400, "/v1/completions", "{\"prompt\": \"x\", \"stop\": [1]}", "stop");
    expect_openai_error(404, "/v1/completions", "{\"prompt\": \"x\", \"model\": \"gpt-4\"}", "model");
    expect_openai_error(400, "/v1/chat/completions", "{\"messages\": []}", "messages");
    expect_openai_error(400, "/v1/chat/completions", "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
                        "messages");
    expect_openai_error(400, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}",
                        "messages");
    expect_openai_error(400, "/v1/chat/completions",
                        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": 3}", "logprobs");
    /* A prompt longer than the context. */
    char *big = malloc(4096);
    assert_non_null(big);
    int o = snprintf(big, 4096, "{\"prompt\": [1");
    for (int i = 0; i < 520; i++)
        o += snprintf(big + o, 4096 - (size_t)o, ",300");
    snprintf(big + o, 4096 - (size_t)o, "]}");
    expect_openai_error(400, "/v1/completions", big, "prompt");
    free(big);
}

static void test_generate_http_rollouts__same_groups_as_cli(void **state)
{
    (void)state;
    need_server();
    char dir[64], path[128];
    tsup_mkdtemp(dir);
    snprintf(path, sizeof path, "%s/r.jsonl", dir);
    const char *const args[] = { "rollout", "--env", "gsm8k", "--model", g_model, "--tokenizer", g_tok, "--groups",
                                 "2", "--group-size", "3", "--max-tokens", "10", "--seed", "4", "-o", path, NULL };
    char *out = NULL, *err = NULL;
    assert_int_equal(tsup_run(&out, &err, args), 0);
    free(out);
    free(err);
    json_t *j = post(200, "/v1/envs/gsm8k/rollouts",
                     "{\"n_items\": 2, \"group_size\": 3, \"max_tokens\": 10, \"seed\": 4}");
    json_t *groups = json_object_get(j, "groups");
    assert_int_equal(json_array_size(groups), 2);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char line[1 << 18];
    for (size_t i = 0; i < 2; i++) {
        assert_non_null(fgets(line, sizeof line, f));
        json_t *g = json_loads(line, 0, NULL);
        assert_non_null(g);
        assert_true(json_equal(g, json_array_get(groups, i)));
        json_decref(g);
    }
    fclose(f);
    unlink(path);
    tsup_rmdir(dir);

    /* By id, and the group goes to the trajectory buffer as it is. */
    json_t *g0 = json_array_get(groups, 0);
    char body[256];
    snprintf(body, sizeof body, "{\"item_ids\": [\"%s\"], \"group_size\": 2, \"max_tokens\": 6, \"stop\": \"\\n\"}",
             json_string_value(json_object_get(g0, "item_id")));
    json_t *k = post(200, "/v1/envs/gsm8k/rollouts", body);
    json_t *g = json_array_get(json_object_get(k, "groups"), 0);
    assert_int_equal(json_array_size(json_object_get(g, "tokens")), 2);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(g, "masks"), 0), 0)), -100);
    json_decref(post(200, "/register",
                     "{\"wandb_group\": \"g\", \"wandb_project\": \"p\", \"batch_size\": 2, \"max_token_len\": 4096, "
                     "\"checkpoint_dir\": \"/tmp/ck\", \"save_checkpoint_interval\": 10, \"starting_step\": 0, "
                     "\"num_steps\": 10}"));
    json_decref(post(200, "/register-env", "{\"max_token_length\": 4096, \"desired_name\": \"gsm8k\", \"weight\": 1.0, "
                                           "\"group_size\": 2, \"min_batch_allocation\": null}"));
    char *text = json_dumps(g, JSON_COMPACT);
    json_decref(post(200, "/scored_data", text));
    free(text);
    int status = 0;
    json_t *batch = tsup_call(&status, g_srv.port, "GET", "/batch", NULL);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(batch, "batch")), 1);
    json_decref(batch);
    json_decref(k);
    json_decref(j);
}

static void test_generate_http_rollouts__errors(void **state)
{
    (void)state;
    need_server();
    static const struct {
        int status;
        const char *code, *body;
    } cases[] = {
        { 400, "bad_request", "{\"group_size\": 2}" },
        { 400, "bad_request", "{\"n_items\": 1, \"item_ids\": [\"test-1\"]}" },
        { 422, "invalid_field", "{\"n_items\": 1, \"group_size\": 65}" },
        { 422, "invalid_field", "{\"n_items\": 65}" },
        { 422, "invalid_field", "{\"n_items\": 1, \"max_tokens\": 100000}" },
        { 422, "invalid_field", "{\"item_ids\": [7]}" },
        { 422, "invalid_field", "{\"item_ids\": []}" },
        { 422, "invalid_field", "{\"n_items\": 1, \"temperature\": -1}" },
        { 404, "unknown_item", "{\"item_ids\": [\"test-999999\"]}" },
        { 400, "bad_json", "{\"n_items\": " },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status = 0;
        json_t *j = tsup_call(&status, g_srv.port, "POST", "/v1/envs/gsm8k/rollouts", cases[i].body);
        if (status != cases[i].status || strcmp(tsup_error_code(j), cases[i].code) != 0)
            fail_msg("case %zu: %d %s (want %d %s)", i, status, tsup_error_code(j), cases[i].status, cases[i].code);
        json_decref(j);
    }
    int status = 0;
    json_t *j = tsup_call(&status, g_srv.port, "POST", "/v1/envs/nope/rollouts", "{\"n_items\": 1}");
    assert_int_equal(status, 404);
    json_decref(j);
}

static void test_generate_http_no_model__clear_errors(void **state)
{
    (void)state;
    if (!tsup_bin()) {
        print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n");
        skip();
    }
    const char *const args[] = { "--env", "gsm8k", "--no-journal", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    int status = 0;
    json_t *j = tsup_call(&status, s.port, "POST", "/v1/envs/gsm8k/rollouts", "{\"n_items\": 1}");
    assert_int_equal(status, 409);
    assert_string_equal(tsup_error_code(j), "no_model");
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")), "--model"));
    json_decref(j);
    j = tsup_call(&status, s.port, "POST", "/v1/chat/completions", "{\"messages\": []}");
    assert_int_equal(status, 409);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                        "invalid_request_error");
    json_decref(j);
    j = tsup_call(&status, s.port, "GET", "/v1/models", NULL);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);
    /* --model with a path that is not a model: the server does not start. */
    char *out = NULL, *err = NULL;
    const char *const bad[] = { "--model", "/nonexistent/model", "--port", "0", NULL };
    assert_int_equal(tsup_run(&out, &err, bad), 1);
    assert_non_null(strstr(err, "--model: model '/nonexistent/model': cannot open"));
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_http_completions__greedy_matches_cli),
        cmocka_unit_test(test_generate_http_completions__seeded_samples_reproducible),
        cmocka_unit_test(test_generate_http_chat__messages_and_logprobs),
        cmocka_unit_test(test_generate_http_openai__bad_bodies),
        cmocka_unit_test(test_generate_http_rollouts__same_groups_as_cli),
        cmocka_unit_test(test_generate_http_rollouts__errors),
        cmocka_unit_test(test_generate_http_no_model__clear_errors),
        cmocka_unit_test(test_generate_http__server_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
