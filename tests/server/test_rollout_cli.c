/*
 * `envsrv rollout` end to end with the real stories260K checkpoint: groups in
 * the trajectory format (tokens, masks with -100 on the prompt, scores,
 * inference_logprobs), the same file for the same seed, and every line
 * accepted as-is by the server's Atropos-compatible /scored_data and served
 * back by /batch. Skipped when $ENVSRV_BIN or the shared data is absent.
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

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 22);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 22) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_rollout_cli__groups_feed_the_buffer(void **state)
{
    (void)state;
    if (!tsup_bin()) {
        print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n");
        skip();
    }
    char model[4096], tok[4096];
    tsup_stories260k(model, sizeof model, tok, sizeof tok);
    if (access(model, R_OK) != 0) {
        print_message("skipped: %s not found (set ENVSRV_DATA to the shared data folder)\n", model);
        skip();
    }
    char dir[64], a_path[128], b_path[128];
    tsup_mkdtemp(dir);
    snprintf(a_path, sizeof a_path, "%s/a.jsonl", dir);
    snprintf(b_path, sizeof b_path, "%s/b.jsonl", dir);
    const char *const a[] = { "rollout", "--env", "gsm8k", "--model", model, "--tokenizer", tok, "--groups", "3",
                              "--group-size", "4", "--max-tokens", "12", "--seed", "5", "-o", a_path, NULL };
    const char *const b[] = { "rollout", "--env", "gsm8k", "--model", model, "--tokenizer", tok, "--groups", "3",
                              "--group-size", "4", "--max-tokens", "12", "--seed", "5", "--threads", "2",
                              "--concurrency", "3", "-o", b_path, NULL };
    char *out = NULL, *err = NULL;
    assert_int_equal(tsup_run(&out, &err, a), 0);
    free(out);
    free(err);
    assert_int_equal(tsup_run(&out, &err, b), 0);
    free(out);
    free(err);
    char *fa = slurp(a_path), *fb = slurp(b_path);
    /* Same seed, same groups in the same order, whatever the threads and
     * the groups in flight at once. */
    assert_string_equal(fa, fb);

    /* Structure of every group. */
    size_t lines = 0;
    for (char *line = strtok(fb, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *g = json_loads(line, 0, NULL);
        assert_non_null(g);
        json_t *tokens = json_object_get(g, "tokens"), *masks = json_object_get(g, "masks");
        json_t *lps = json_object_get(g, "inference_logprobs"), *scores = json_object_get(g, "scores");
        assert_int_equal(json_array_size(tokens), 4);
        assert_int_equal(json_array_size(scores), 4);
        for (size_t s = 0; s < 4; s++) {
            json_t *t = json_array_get(tokens, s), *m = json_array_get(masks, s), *l = json_array_get(lps, s);
            assert_int_equal(json_array_size(t), json_array_size(m));
            assert_int_equal(json_array_size(t), json_array_size(l));
            assert_int_equal(json_integer_value(json_array_get(m, 0)), -100);   /* BOS is prompt */
            json_t *last = json_array_get(m, json_array_size(m) - 1);
            assert_int_equal(json_integer_value(last), json_integer_value(json_array_get(t, json_array_size(t) - 1)));
            assert_true(json_number_value(json_array_get(l, json_array_size(l) - 1)) <= 0.0);
        }
        json_decref(g);
        lines++;
    }
    assert_int_equal(lines, 3);
    free(fb);

    /* The lines go into the trajectory buffer unchanged. */
    static const char *const sargs[] = { "--no-journal", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, sargs), 0);
    int status = 0;
    json_t *j = tsup_call(&status, s.port, "POST", "/register",
                          "{\"wandb_group\": \"g\", \"wandb_project\": \"p\", \"batch_size\": 4, "
                          "\"max_token_len\": 4096, \"checkpoint_dir\": \"/tmp/ck\", "
                          "\"save_checkpoint_interval\": 10, \"starting_step\": 0, \"num_steps\": 10}");
    assert_int_equal(status, 200);
    json_decref(j);
    j = tsup_call(&status, s.port, "POST", "/register-env",
                  "{\"max_token_length\": 4096, \"desired_name\": \"gsm8k\", \"weight\": 1.0, "
                  "\"group_size\": 4, \"min_batch_allocation\": null}");
    assert_int_equal(status, 200);
    json_decref(j);
    for (char *line = strtok(fa, "\n"); line; line = strtok(NULL, "\n")) {
        j = tsup_call(&status, s.port, "POST", "/scored_data", line);
        assert_int_equal(status, 200);
        json_decref(j);
    }
    j = tsup_call(&status, s.port, "GET", "/batch", NULL);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(j, "batch")), 1);   /* one group of 4 = batch_size */
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);
    free(fa);
    unlink(a_path);
    unlink(b_path);
    tsup_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollout_cli__groups_feed_the_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
