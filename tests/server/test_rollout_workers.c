/*
 * Built-in rollout workers (`envsrv --model ... --rollout-workers 1`) with
 * the real stories260K model: the server feeds its own trajectory buffer as
 * an Atropos environment would. Nothing is queued before a trainer has
 * registered and asked for a batch; then the trainer's batches hold groups
 * byte-identical to what POST /v1/envs/gsm8k/rollouts gives for the same
 * item and seed; a small --max-queue holds the workers back (backpressure:
 * nothing dropped) and they go on when the trainer takes a batch; after
 * /reset_data they register again with the next trainer; the server
 * exits cleanly while a worker waits on the full queue. Bad settings are
 * refused at start. Skipped without $ENVSRV_BIN or the shared data.
 *
 * The workers run on their own schedule, so the tests wait for a condition
 * (a batch, a full queue) by polling the API with a deadline, as a trainer
 * does; what they then check does not depend on timing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/support.h"

#define GROUP 2
#define MAX_QUEUE 8         /* sequences: four groups */
#define BATCH 4             /* sequences: two groups */

static char g_model[4096], g_tok[4096];
static tsup_server g_srv;
static int g_up;

static int setup(void **state)
{
    (void)state;
    tsup_stories260k(g_model, sizeof g_model, g_tok, sizeof g_tok);
    if (!tsup_bin() || access(g_model, R_OK) != 0)
        return 0;
    const char *const args[] = { "--env", "gsm8k", "--no-journal", "--model", g_model, "--tokenizer", g_tok,
                                 "--max-queue", "8", "--rollout-workers", "1", "--rollout-settings",
                                 "group_size=2,max_tokens=12,seed=7", NULL };
    g_up = tsup_server_start(&g_srv, args) == 0;
    return 0;
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

static json_t *call(int want, const char *method, const char *path, const char *body)
{
    int status = 0;
    json_t *j = tsup_call(&status, g_srv.port, method, path, body);
    if (status != want)
        fail_msg("%s %s: status %d (want %d)", method, path, status, want);
    assert_non_null(j);
    return j;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A short pause between two polls of a condition (not a synchronisation:
 * the caller checks the condition itself, up to a deadline). */
static void poll_pause(void)
{
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
}

static long long queued_sequences(void)
{
    json_t *st = call(200, "GET", "/status", NULL);
    long long n = json_integer_value(json_object_get(st, "queue_sequences"));
    json_decref(st);
    return n;
}

/* Polls until the queue holds `want` sequences (deadline TSUP_TIMEOUT_S). */
static void wait_for_queue(long long want)
{
    double end = now_s() + TSUP_TIMEOUT_S;
    long long n;
    while ((n = queued_sequences()) != want) {
        if (n > want)
            fail_msg("the queue holds %lld sequences, over --max-queue %lld", n, want);
        if (now_s() > end)
            fail_msg("the rollout workers queued %lld sequences in %d s, want %lld", n, TSUP_TIMEOUT_S, want);
        poll_pause();
    }
}

/* GET /batch until one comes (deadline TSUP_TIMEOUT_S); a new reference. */
static json_t *next_batch(void)
{
    double end = now_s() + TSUP_TIMEOUT_S;
    for (;;) {
        json_t *j = call(200, "GET", "/batch", NULL);
        json_t *b = json_object_get(j, "batch");
        if (json_is_array(b)) {
            json_incref(b);
            json_decref(j);
            return b;
        }
        json_decref(j);
        if (now_s() > end)
            fail_msg("no batch from the rollout workers in %d s", TSUP_TIMEOUT_S);
        poll_pause();
    }
}

static void test_rollout_workers__wait_for_the_trainer(void **state)
{
    (void)state;
    need_server();
    /* No trainer yet: the workers cannot register, so nothing is queued. */
    assert_int_equal(queued_sequences(), 0);
    json_t *r = call(200, "POST", "/register",
                     "{\"wandb_group\": \"g\", \"wandb_project\": \"p\", \"batch_size\": 4, \"max_token_len\": 512, "
                     "\"checkpoint_dir\": \"ck\", \"save_checkpoint_interval\": 0, \"starting_step\": 0, "
                     "\"num_steps\": 100}");
    json_decref(r);
    /* The trainer's first /batch starts it; the workers then fill the queue
     * to --max-queue and wait there (backpressure), dropping nothing. */
    json_t *b = call(200, "GET", "/batch", NULL);
    json_decref(b);
    wait_for_queue(MAX_QUEUE);
    json_t *st = call(200, "GET", "/status", NULL);
    json_t *dropped = json_object_get(st, "dropped");
    assert_int_equal(json_integer_value(json_object_get(dropped, "stale")), 0);
    assert_int_equal(json_integer_value(json_object_get(dropped, "flat")), 0);
    assert_int_equal(json_integer_value(json_object_get(dropped, "reset")), 0);
    json_decref(st);
}

/* Each group of a batch, regenerated through POST /v1/envs/gsm8k/rollouts
 * with its item and seed, is the same group. */
static void check_batch(json_t *batch)
{
    size_t seqs = 0;
    for (size_t i = 0; i < json_array_size(batch); i++) {
        json_t *g = json_array_get(batch, i);
        seqs += json_array_size(json_object_get(g, "tokens"));
        assert_int_equal(json_integer_value(json_object_get(g, "env_id")), 0);
        json_t *gp = json_object_get(g, "generation_params");
        assert_int_equal(json_integer_value(json_object_get(gp, "n")), GROUP);
        assert_int_equal(json_integer_value(json_object_get(gp, "max_tokens")), 12);
        char body[256];
        snprintf(body, sizeof body,
                 "{\"item_ids\": [\"%s\"], \"group_size\": 2, \"max_tokens\": 12, \"temperature\": 1.0, "
                 "\"seed\": %lld}",
                 json_string_value(json_object_get(g, "item_id")),
                 (long long)json_integer_value(json_object_get(gp, "seed")));
        json_t *again = call(200, "POST", "/v1/envs/gsm8k/rollouts", body);
        json_t *h = json_array_get(json_object_get(again, "groups"), 0);
        static const char *const same[] = { "item_id", "tokens", "masks", "scores", "inference_logprobs",
                                            "completions", "finish_reasons", "env_version" };
        for (size_t f = 0; f < sizeof same / sizeof same[0]; f++)
            if (!json_equal(json_object_get(g, same[f]), json_object_get(h, same[f])))
                fail_msg("field '%s' of the group for %s differs from the rollouts route's", same[f],
                         json_string_value(json_object_get(g, "item_id")));
        json_decref(again);
    }
    assert_int_equal(seqs, BATCH);
}

static void test_rollout_workers__batches_are_real_groups(void **state)
{
    (void)state;
    need_server();
    /* From the full queue of the test above: a batch, then the workers
     * refill the queue (they were waiting, not finished), and another. */
    json_t *seen_items = json_array();
    for (int round = 0; round < 2; round++) {
        json_t *batch = next_batch();
        check_batch(batch);
        for (size_t i = 0; i < json_array_size(batch); i++) {
            json_t *seed = json_object_get(json_object_get(json_array_get(batch, i), "generation_params"), "seed");
            json_array_append(seen_items, seed);
        }
        json_decref(batch);
        wait_for_queue(MAX_QUEUE);
    }
    /* Seeds are 7 + the group's draw number: the first four groups, in order. */
    assert_int_equal(json_array_size(seen_items), 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(json_integer_value(json_array_get(seen_items, i)), 7 + (json_int_t)i);
    json_decref(seen_items);
    /* /metrics counts them: the 2 batches taken and the 4 groups queued since. */
    tsup_response m;
    tsup_request(&m, g_srv.port, "GET", "/metrics", NULL, NULL, 0);
    assert_int_equal(m.status, 200);
    assert_non_null(strstr(m.body, "envsrv_rollout_groups_total{result=\"queued\"} 8\n"));
    assert_non_null(strstr(m.body, "envsrv_rollout_groups_total{result=\"failed\"} 0\n"));
    tsup_response_free(&m);
}

/* /reset_data forgets the trainer and the envs: the workers register again
 * once a new trainer has started, and its batches are real groups too. */
static void test_rollout_workers__after_a_reset(void **state)
{
    (void)state;
    need_server();
    tsup_response reset;
    tsup_request(&reset, g_srv.port, "GET", "/reset_data", NULL, NULL, 0);
    assert_int_equal(reset.status, 200);    /* plain text, as Atropos answers */
    tsup_response_free(&reset);
    assert_int_equal(queued_sequences(), 0);
    json_t *r;
    r = call(200, "POST", "/register",
             "{\"wandb_group\": \"g\", \"wandb_project\": \"p\", \"batch_size\": 4, \"max_token_len\": 512, "
             "\"checkpoint_dir\": \"ck\", \"save_checkpoint_interval\": 0, \"starting_step\": 0, "
             "\"num_steps\": 100}");
    json_decref(r);
    r = call(200, "GET", "/batch", NULL);
    json_decref(r);
    wait_for_queue(MAX_QUEUE);
    json_t *batch = next_batch();
    check_batch(batch);
    json_decref(batch);
}

/* The workers are waiting on the full queue: SIGTERM still ends the server
 * at once with status 0 (under ASan, without a leak). */
static void test_rollout_workers__server_exits_cleanly(void **state)
{
    (void)state;
    need_server();
    tsup_server_stop_in_test(&g_srv, &g_up);
}

static void test_rollout_workers__bad_settings(void **state)
{
    (void)state;
    if (!tsup_bin() || access(g_model, R_OK) != 0) {
        print_message("skipped: ENVSRV_BIN unset or %s not found\n", g_model);
        skip();
    }
    const char *const no_model[] = { "--env", "gsm8k", "--rollout-workers", "1", NULL };
    tsup_run_fails(2, "need --model", no_model);
    const char *const no_workers[] = { "--env", "gsm8k", "--model", g_model, "--tokenizer", g_tok,
                                       "--rollout-settings", "group_size=2", NULL };
    tsup_run_fails(2, "goes with --rollout-workers", no_workers);
    const char *const bad_key[] = { "--env", "gsm8k", "--model", g_model, "--tokenizer", g_tok,
                                    "--rollout-workers", "1", "--rollout-settings", "colour=red", NULL };
    tsup_run_fails(2, "unknown setting 'colour'", bad_key);
    const char *const bad_env[] = { "--env", "gsm8k", "--no-journal", "--port", "0", "--model", g_model,
                                    "--tokenizer", g_tok, "--rollout-workers", "1", "--rollout-settings",
                                    "env=wordle", NULL };
    tsup_run_fails(1, "'wordle' is not an env this server hosts", bad_env);
    const char *const bad_split[] = { "--env", "gsm8k", "--no-journal", "--port", "0", "--model", g_model,
                                      "--tokenizer", g_tok, "--rollout-workers", "1", "--rollout-settings",
                                      "split=nope", NULL };
    tsup_run_fails(1, "no split 'nope' with items", bad_split);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollout_workers__wait_for_the_trainer),
        cmocka_unit_test(test_rollout_workers__batches_are_real_groups),
        cmocka_unit_test(test_rollout_workers__after_a_reset),
        cmocka_unit_test(test_rollout_workers__server_exits_cleanly),
        cmocka_unit_test(test_rollout_workers__bad_settings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
