/*
 * `envsrv eval|rollout --backend openai`: driven through an external
 * OpenAI-compatible server -- envsrv itself, started with --model
 * stories260K -- eval gives the same rewards and completions as eval with the
 * local model, and rollout the same groups (token ids included when a local
 * copy of the model is given; "tokens_unknown" otherwise). A tiny fake server
 * in this process (libmicrohttpd) answers 500s, garbage, the wrong number of
 * choices, and a listening socket that never answers trips --timeout: each
 * is a clear error and exit status 1. The same fake server proves that
 * --retries outlasts a server that is busy for a moment (503 with
 * Retry-After), and that --concurrency really keeps requests in flight at
 * once, while the report keeps item order. Skipped without $ENVSRV_BIN or
 * data.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "tests/support/support.h"

static char g_model[4096], g_tok[4096], g_dir[64], g_env[128], g_url[64];
static tsup_server g_srv;
static int g_up;

static void need_server(void);

static int setup(void **state)
{
    (void)state;
    tsup_stories260k(g_model, sizeof g_model, g_tok, sizeof g_tok);
    if (!tsup_bin() || access(g_model, R_OK) != 0)
        return 0;
    tsup_mkdtemp(g_dir);
    tsup_write_story_env(g_env, sizeof g_env, g_dir);
    const char *const args[] = { "--env", "gsm8k", "--no-journal", "--model", g_model, "--tokenizer", g_tok,
                                 "--model-name", "stories", NULL };
    g_up = tsup_server_start(&g_srv, args) == 0;
    snprintf(g_url, sizeof g_url, "http://127.0.0.1:%u/v1", g_srv.port);
    return 0;
}

/* The server stops cleanly after everything above (under ASan: without a
 * leak). A test of its own, since a failing group teardown is not counted. */
static void test_openai_backend__server_exits_cleanly(void **state)
{
    (void)state;
    need_server();
    tsup_server_stop_in_test(&g_srv, &g_up);
}

static int teardown(void **state)
{
    (void)state;
    tsup_server_teardown(&g_srv, &g_up);
    if (g_dir[0])
        tsup_rmdir(g_dir);
    return 0;
}

static void need_server(void)
{
    if (!g_up) {
        print_message("skipped: ENVSRV_BIN unset or %s not found (set ENVSRV_DATA)\n", g_model);
        skip();
    }
}

static void run_expect(int status, const char *const *args)
{
    char *out = NULL, *err = NULL;
    int rc = tsup_run(&out, &err, args);
    if (rc != status)
        fail_msg("exit %d (want %d): %s", rc, status, err);
    free(out);
    free(err);
}

static void test_openai_backend_eval__same_rewards_as_local(void **state)
{
    (void)state;
    need_server();
    char r1[128], r2[128];
    snprintf(r1, sizeof r1, "%s/local.json", g_dir);
    snprintf(r2, sizeof r2, "%s/remote.json", g_dir);
    const char *const local[] = { "eval", "--env", g_env, "--model", g_model, "--tokenizer", g_tok, "--limit", "3",
                                  "--samples", "2", "--temperature", "0.8", "--seed", "3", "--max-tokens", "30",
                                  "--report", r1, NULL };
    /* Three requests in flight at once: the report keeps item order. */
    const char *const remote[] = { "eval", "--env", g_env, "--backend", "openai", "--base-url", g_url,
                                   "--model-name", "stories", "--limit", "3", "--samples", "2", "--temperature",
                                   "0.8", "--seed", "3", "--max-tokens", "30", "--concurrency", "3", "--report",
                                   r2, NULL };
    run_expect(0, local);
    run_expect(0, remote);
    json_t *a = json_load_file(r1, 0, NULL), *b = json_load_file(r2, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(json_number_value(json_object_get(a, "mean_reward")) > 0);
    assert_true(json_number_value(json_object_get(a, "mean_reward")) ==
                json_number_value(json_object_get(b, "mean_reward")));
    json_t *ra = json_object_get(a, "results"), *rb = json_object_get(b, "results");
    assert_int_equal(json_array_size(ra), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(ra, i), *y = json_array_get(rb, i);
        assert_true(json_equal(json_object_get(x, "rewards"), json_object_get(y, "rewards")));
        assert_true(json_equal(json_object_get(x, "completions"), json_object_get(y, "completions")));
    }
    json_t *m = json_object_get(b, "model");
    assert_string_equal(json_string_value(json_object_get(m, "backend")), "openai");
    assert_string_equal(json_string_value(json_object_get(m, "base_url")), g_url);
    json_decref(a);
    json_decref(b);
    unlink(r1);
    unlink(r2);
}

/* The first line of a file, parsed. */
static json_t *first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char line[1 << 18];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_openai_backend_rollout__tokens_when_known(void **state)
{
    (void)state;
    need_server();
    char o1[128], o2[128], o3[128];
    snprintf(o1, sizeof o1, "%s/local.jsonl", g_dir);
    snprintf(o2, sizeof o2, "%s/remote.jsonl", g_dir);
    snprintf(o3, sizeof o3, "%s/text.jsonl", g_dir);
    const char *const local[] = { "rollout", "--env", "gsm8k", "--model", g_model, "--tokenizer", g_tok, "--groups",
                                  "1", "--group-size", "3", "--max-tokens", "12", "--seed", "9", "-o", o1, NULL };
    const char *const remote[] = { "rollout", "--env", "gsm8k", "--backend", "openai", "--base-url", g_url,
                                   "--model", g_model, "--tokenizer", g_tok, "--groups", "1", "--group-size", "3",
                                   "--max-tokens", "12", "--seed", "9", "-o", o2, NULL };
    const char *const text[] = { "rollout", "--env", "gsm8k", "--backend", "openai", "--base-url", g_url,
                                 "--groups", "1", "--group-size", "3", "--max-tokens", "12", "--seed", "9", "-o", o3,
                                 NULL };
    run_expect(0, local);
    run_expect(0, remote);
    run_expect(0, text);
    json_t *a = first_line(o1), *b = first_line(o2), *c = first_line(o3);
    static const char *const same[] = { "item_id", "tokens", "masks", "scores", "inference_logprobs", "completions" };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (!json_equal(json_object_get(a, same[i]), json_object_get(b, same[i])))
            fail_msg("'%s' differs between the local and the openai backend", same[i]);
    /* Without a local copy of the model: texts and logprobs as given. */
    assert_true(json_is_true(json_object_get(c, "tokens_unknown")));
    assert_null(json_object_get(c, "tokens"));
    assert_true(json_equal(json_object_get(a, "completions"), json_object_get(c, "completions")));
    assert_true(json_equal(json_object_get(a, "scores"), json_object_get(c, "scores")));
    json_t *la = json_array_get(json_object_get(a, "inference_logprobs"), 0);
    json_t *lc = json_array_get(json_object_get(c, "inference_logprobs"), 0);
    size_t n_prompt = json_array_size(la) - json_array_size(lc);
    for (size_t i = 0; i < json_array_size(lc); i++)
        assert_true(json_number_value(json_array_get(lc, i)) == json_number_value(json_array_get(la, n_prompt + i)));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    unlink(o1);
    unlink(o2);
    unlink(o3);
}

/* ---- a fake server -------------------------------------------------------------- */

/* What the fake server counts (its connections have threads of their own). */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int flaky_calls;        /* requests to /flaky/ */
    int in_flight;          /* requests to /barrier/ being answered */
    int barrier;            /* /barrier/ answers once this many are in flight */
} fake = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };

static const char fake_choice[] =
    "{\"choices\": [{\"index\": 0, \"text\": \"The answer is 4\", \"finish_reason\": \"stop\", "
    "\"logprobs\": {\"tokens\": [\"The\", \" answer\"], \"token_logprobs\": [-0.5, -0.25]}}]}";

/* One of fake's counters, read under its lock. */
static int fake_read(const int *counter)
{
    pthread_mutex_lock(&fake.mu);
    int v = *counter;
    pthread_mutex_unlock(&fake.mu);
    return v;
}

/* /barrier/: waits (at most 30 s, a failure guard only) until fake.barrier
 * requests are in flight together. Whether it was reached. */
static int wait_at_barrier(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&fake.mu);
    fake.in_flight++;
    pthread_cond_broadcast(&fake.cv);
    int rc = 0;
    while (fake.in_flight < fake.barrier && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&fake.cv, &fake.mu, &until);
    int reached = fake.in_flight >= fake.barrier;
    pthread_mutex_unlock(&fake.mu);
    return reached;
}

/* Answers by the first path segment: /500/..., /garbage/..., /count/...,
 * /nolp/..., /flaky/... (503 twice, then a choice), /barrier/... */
static enum MHD_Result fake_answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                   const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    static int marker;
    if (!*con_cls) {
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;   /* the body is not needed */
        return MHD_YES;
    }
    unsigned status = 200;
    const char *body = "{}";
    if (!strncmp(url, "/500/", 5)) {
        status = 500;
        body = "{\"error\": {\"message\": \"the GPU caught fire\", \"type\": \"server_error\"}}";
    } else if (!strncmp(url, "/garbage/", 9)) {
        body = "<html>this is not JSON</html>";
    } else if (!strncmp(url, "/count/", 7)) {
        body = "{\"choices\": []}";
    } else if (!strncmp(url, "/nolp/", 6)) {
        body = "{\"choices\": [{\"index\": 0, \"text\": \"hi\", \"finish_reason\": \"stop\", \"logprobs\": null}]}";
    } else if (!strncmp(url, "/flaky/", 7)) {
        pthread_mutex_lock(&fake.mu);
        int call = ++fake.flaky_calls;
        pthread_mutex_unlock(&fake.mu);
        status = call <= 2 ? 503 : 200;
        body = call <= 2 ? "{\"error\": {\"message\": \"warming up\"}}" : fake_choice;
    } else if (!strncmp(url, "/barrier/", 9)) {
        int reached = wait_at_barrier();
        status = reached ? 200 : 500;
        body = reached ? fake_choice : "{\"error\": {\"message\": \"requests came one at a time\"}}";
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (status == 503)
        MHD_add_response_header(r, "Retry-After", "0");
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static void expect_failure(const char *base, const char *timeout, const char *needle)
{
    const char *const args[] = { "eval", "--env", g_env, "--backend", "openai", "--base-url", base, "--limit", "1",
                                 "--max-tokens", "4", "--timeout", timeout, "--retries", "0", NULL };
    tsup_run_fails(1, needle, args);
}

/* The fake server on a free loopback port, a thread per connection. */
static struct MHD_Daemon *fake_start(unsigned *port)
{
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                                MHD_USE_ERROR_LOG,
                                            0, NULL, NULL, fake_answer, NULL, MHD_OPTION_END);
    assert_non_null(d);
    *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return d;
}

/* A server that answers 503 (Retry-After: 0) twice: three tries get
 * through, two do not, and the error says how many were made. */
static void test_openai_backend_retries__outlast_a_busy_server(void **state)
{
    (void)state;
    need_server();
    unsigned port;
    struct MHD_Daemon *d = fake_start(&port);
    char base[128], report[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%u/flaky", port);
    snprintf(report, sizeof report, "%s/flaky.json", g_dir);
    const char *const ok[] = { "eval", "--env", g_env, "--backend", "openai", "--base-url", base, "--limit", "1",
                               "--max-tokens", "4", "--retries", "2", "--report", report, NULL };
    run_expect(0, ok);
    assert_int_equal(fake_read(&fake.flaky_calls), 3);
    json_t *r = json_load_file(report, 0, NULL);
    assert_non_null(r);
    json_t *first = json_array_get(json_object_get(r, "results"), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(first, "completions"), 0)),
                        "The answer is 4");
    json_decref(r);
    unlink(report);

    pthread_mutex_lock(&fake.mu);
    fake.flaky_calls = 0;
    pthread_mutex_unlock(&fake.mu);
    const char *const few[] = { "eval", "--env", g_env, "--backend", "openai", "--base-url", base, "--limit", "1",
                                "--max-tokens", "4", "--retries", "1", NULL };
    char *out = NULL, *err = NULL;
    int rc = tsup_run(&out, &err, few);
    if (rc != 1 || !strstr(err, "answered HTTP 503: warming up (gave up after 2 tries)"))
        fail_msg("exit %d, stderr: %s", rc, err);
    assert_int_equal(fake_read(&fake.flaky_calls), 2);
    free(out);
    free(err);
    MHD_stop_daemon(d);
}

/* --concurrency 3: the fake server answers only once three requests are in
 * flight together, so requests sent one at a time would fail. */
static void test_openai_backend_concurrency__requests_in_flight_together(void **state)
{
    (void)state;
    need_server();
    unsigned port;
    struct MHD_Daemon *d = fake_start(&port);
    pthread_mutex_lock(&fake.mu);
    fake.in_flight = 0;
    fake.barrier = 3;
    pthread_mutex_unlock(&fake.mu);
    char base[128], report[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%u/barrier", port);
    snprintf(report, sizeof report, "%s/barrier.json", g_dir);
    const char *const args[] = { "eval", "--env", g_env, "--backend", "openai", "--base-url", base, "--limit", "3",
                                 "--max-tokens", "4", "--concurrency", "3", "--retries", "0", "--report", report,
                                 NULL };
    run_expect(0, args);
    assert_int_equal(fake_read(&fake.in_flight), 3);
    json_t *r = json_load_file(report, 0, NULL);
    assert_non_null(r);
    assert_int_equal(json_array_size(json_object_get(r, "results")), 3);
    json_decref(r);
    unlink(report);
    MHD_stop_daemon(d);
}

static void test_openai_backend_errors__clear(void **state)
{
    (void)state;
    need_server();
    unsigned port;
    struct MHD_Daemon *d = fake_start(&port);
    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%u/500", port);
    expect_failure(base, "30", "answered HTTP 500: the GPU caught fire");
    snprintf(base, sizeof base, "http://127.0.0.1:%u/garbage", port);
    expect_failure(base, "30", "not a JSON object: <html>");
    snprintf(base, sizeof base, "http://127.0.0.1:%u/count", port);
    expect_failure(base, "30", "answered 0 choices for n = 1");
    snprintf(base, sizeof base, "http://127.0.0.1:%u/nolp", port);
    expect_failure(base, "30", "lacks 'text' or 'logprobs.token_logprobs'");
    MHD_stop_daemon(d);

    /* A server that accepts connections and never answers: the kernel
     * completes the handshake from the listen backlog, nothing reads. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(base, sizeof base, "http://127.0.0.1:%u", ntohs(sa.sin_port));
    expect_failure(base, "0.3", "no answer in time");
    close(fd);

    /* Nothing listening, and arguments that do not fit together. */
    expect_failure("http://127.0.0.1:1", "30", "127.0.0.1:1/v1/completions: ");
    const char *const nourl[] = { "eval", "--env", g_env, "--backend", "openai", NULL };
    run_expect(2, nourl);
    const char *const badurl[] = { "eval", "--env", g_env, "--backend", "openai", "--base-url", "ftp://x", NULL };
    run_expect(1, badurl);
    const char *const stray[] = { "eval", "--env", g_env, "--model", g_model, "--tokenizer", g_tok, "--api-key", "k",
                                  NULL };
    run_expect(2, stray);
    const char *const stray_retries[] = { "eval", "--env", g_env, "--model", g_model, "--tokenizer", g_tok,
                                           "--retries", "2", NULL };
    run_expect(2, stray_retries);
    const char *const bad_concurrency[] = { "eval", "--env", g_env, "--backend", "openai", "--base-url", g_url,
                                            "--concurrency", "0", NULL };
    run_expect(2, bad_concurrency);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_backend_eval__same_rewards_as_local),
        cmocka_unit_test(test_openai_backend_rollout__tokens_when_known),
        cmocka_unit_test(test_openai_backend_errors__clear),
        cmocka_unit_test(test_openai_backend_retries__outlast_a_busy_server),
        cmocka_unit_test(test_openai_backend_concurrency__requests_in_flight_together),
        cmocka_unit_test(test_openai_backend__server_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
