/*
 * The trajectory buffer's durability, against the real binary: restart
 * recovery, compaction, a torn last record, SIGKILL at random moments while a
 * producer pushes (every acknowledged group is delivered exactly once,
 * nothing is invented), and the Atropos protocol spoken by a small
 * stdlib-only Python client (tests/server/atropos_client.py).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/support.h"

#define NEED_BIN()                                                                 \
    do {                                                                           \
        if (!tsup_bin()) {                                                         \
            print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n"); \
            skip();                                                                \
        }                                                                          \
    } while (0)

/* Kill points in the crash test, and groups pushed at most per round. */
#define CRASH_ROUNDS 24
#define CRASH_MAX_GROUPS 400

static void start_journal(tsup_server *s, const char *dir, const char *compact)
{
    const char *args[] = { "--threads", "4", "--journal", dir, "--journal-compact", compact ? compact : "64M", NULL };
    assert_int_equal(tsup_server_start(s, args), 0);
}

static json_t *call_ok(unsigned port, const char *method, const char *path, const char *body)
{
    int st = 0;
    json_t *j = tsup_call(&st, port, method, path, body);
    if (st != 200) {
        char *dump = json_dumps(j, 0);
        print_error("%s %s: expected 200, got %d: %s\n", method, path, st, dump ? dump : "?");
        free(dump);
        json_decref(j);
        fail();
    }
    return j;
}

/* A 2-sequence group whose first token is `id` + 1. */
static int group_body(char *out, size_t len, int id)
{
    return snprintf(out, len,
                    "{\"tokens\":[[%d,5,6],[%d,5,7]],\"masks\":[[-100,5,6],[-100,5,7]],\"scores\":[1.0,0.0]}",
                    id + 1, id + 1);
}

static int group_id(const json_t *g)
{
    return (int)json_integer_value(json_array_get(json_array_get(json_object_get(g, "tokens"), 0), 0)) - 1;
}

/* Pulls batches until null; counts each group id delivered into seen[]. */
static void drain(unsigned port, int *seen, int max_id)
{
    for (;;) {
        json_t *j = call_ok(port, "GET", "/batch", NULL);
        json_t *b = json_object_get(j, "batch");
        if (json_is_null(b)) {
            json_decref(j);
            return;
        }
        size_t i;
        json_t *g;
        json_array_foreach(b, i, g) {
            int id = group_id(g);
            assert_true(id >= 0 && id < max_id);
            seen[id]++;
        }
        json_decref(j);
    }
}

static void register_trainer(unsigned port, int batch_size)
{
    char body[256];
    snprintf(body, sizeof body, "{\"wandb_group\":\"g\",\"wandb_project\":\"p\",\"batch_size\":%d,"
             "\"max_token_len\":64,\"checkpoint_dir\":\"c\",\"save_checkpoint_interval\":1,"
             "\"starting_step\":0,\"num_steps\":10}", batch_size);
    json_decref(call_ok(port, "POST", "/register", body));
}

static void push_id(unsigned port, int id)
{
    char body[256];
    group_body(body, sizeof body, id);
    json_decref(call_ok(port, "POST", "/scored_data", body));
}

/* ---- restart -------------------------------------------------------------------------- */

static void test_buffer_journal_restart__state_comes_back(void **state)
{
    (void)state;
    NEED_BIN();
    char dir[64];
    tsup_mkdtemp(dir);
    tsup_server s;
    start_journal(&s, dir, NULL);
    register_trainer(s.port, 4);
    json_decref(call_ok(s.port, "GET", "/batch", NULL)); /* starts the trainer */
    json_decref(call_ok(s.port, "POST", "/register-env",
                        "{\"max_token_length\":64,\"desired_name\":\"e\",\"weight\":1,\"group_size\":2}"));
    json_decref(call_ok(s.port, "POST", "/v1/policy", "{\"version\": 3}"));
    for (int i = 0; i < 5; i++)
        push_id(s.port, i);
    json_decref(call_ok(s.port, "GET", "/batch", NULL)); /* groups 0 and 1 */
    /* A list whose text has spaces, and brackets, commas and escaped quotes
     * inside strings: the journal keeps each group's own text. */
    json_decref(call_ok(s.port, "POST", "/scored_data_list",
                        " [ {\"tokens\": [[6,5],[6,6]], \"masks\": [[-100,5],[-100,6]], \"scores\": [1, 0],\n"
                        "     \"messages\": [[{\"role\": \"user\", \"content\": \"a \\\"]\\\" , {[\"}], []]} ,\n"
                        "   {\"tokens\": [[7,5],[7,6]], \"masks\": [[-100,5],[-100,6]], \"scores\": [0, 1]} ] "));
    assert_int_equal(tsup_server_stop(&s), 0);

    start_journal(&s, dir, NULL);
    json_t *st = call_ok(s.port, "GET", "/status", NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "current_step")), 1);
    assert_int_equal(json_integer_value(json_object_get(st, "queue_size")), 5);
    assert_int_equal(json_integer_value(json_object_get(st, "policy_version")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "versions"), "3")), 10);
    json_decref(st);
    json_t *info = call_ok(s.port, "GET", "/info", NULL);
    assert_int_equal(json_integer_value(json_object_get(info, "batch_size")), 4);
    json_decref(info);
    /* The env registration survived, and the trainer counts as started. */
    json_t *e = call_ok(s.port, "GET", "/status-env?env_id=0", NULL);
    json_decref(e);
    e = call_ok(s.port, "POST", "/register-env",
                "{\"max_token_length\":64,\"desired_name\":\"e\",\"weight\":1,\"group_size\":2}");
    assert_string_equal(json_string_value(json_object_get(e, "wandb_name")), "e_1");
    json_decref(e);
    json_t *latest = call_ok(s.port, "GET", "/latest_example", NULL);
    assert_int_equal(group_id(latest), 6);
    json_decref(latest);
    /* Batches 2+3 and 4+5; then 6 alone waits for a partner. */
    json_t *b1 = call_ok(s.port, "GET", "/batch", NULL), *b2 = call_ok(s.port, "GET", "/batch", NULL);
    json_t *g5 = json_array_get(json_object_get(b2, "batch"), 1);
    assert_int_equal(group_id(json_array_get(json_object_get(b1, "batch"), 0)), 2);
    assert_int_equal(group_id(g5), 5);
    json_t *msg = json_array_get(json_array_get(json_object_get(g5, "messages"), 0), 0);
    assert_string_equal(json_string_value(json_object_get(msg, "content")), "a \"]\" , {[");
    assert_int_equal(json_integer_value(json_object_get(g5, "policy_version")), 3);
    assert_true(json_is_null(json_object_get(g5, "advantages")));
    json_decref(b1);
    json_decref(b2);
    int seen[7] = { 0 };
    drain(s.port, seen, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(seen[i], 0);
    assert_int_equal(tsup_server_stop(&s), 0);
    tsup_rmdir(dir);
}

static void test_buffer_journal_compaction__shrinks_and_keeps_state(void **state)
{
    (void)state;
    NEED_BIN();
    char dir[64];
    tsup_mkdtemp(dir);
    tsup_server s;
    start_journal(&s, dir, "4K");
    register_trainer(s.port, 2);
    int seen[200] = { 0 };
    for (int i = 0; i < 200; i++) {
        push_id(s.port, i);
        if (i % 2 == 1 && i < 190)
            drain(s.port, seen, 200);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/journal", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    /* 200 group records are well over 20 KB; compaction keeps a few. */
    assert_true(sb.st_size < 8 * 1024);
    assert_int_equal(tsup_server_stop(&s), 0);

    start_journal(&s, dir, "4K");
    json_t *st = call_ok(s.port, "GET", "/status", NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "current_step")), 190);
    assert_int_equal(json_integer_value(json_object_get(st, "queue_size")), 10);
    json_decref(st);
    drain(s.port, seen, 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(tsup_server_stop(&s), 0);
    tsup_rmdir(dir);
}

static void test_buffer_journal_torn__last_record_dropped(void **state)
{
    (void)state;
    NEED_BIN();
    char dir[64];
    tsup_mkdtemp(dir);
    tsup_server s;
    start_journal(&s, dir, NULL);
    register_trainer(s.port, 2);
    push_id(s.port, 0);
    push_id(s.port, 1);
    assert_int_equal(tsup_server_stop(&s), 0);

    /* Cut the last record in half, as a crash mid-write would. */
    char path[128];
    snprintf(path, sizeof path, "%s/journal", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size - 20), 0);
    start_journal(&s, dir, NULL);
    json_t *st = call_ok(s.port, "GET", "/status", NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "queue_size")), 1);
    json_decref(st);
    /* The journal goes on after the cut: a new group is durable too. */
    push_id(s.port, 2);
    assert_int_equal(tsup_server_stop(&s), 0);
    start_journal(&s, dir, NULL);
    int seen[3] = { 0 };
    drain(s.port, seen, 3);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 0);
    assert_int_equal(seen[2], 1);
    assert_int_equal(tsup_server_stop(&s), 0);
    tsup_rmdir(dir);
}

static void test_buffer_journal_restart__mixed_size_buffer(void **state)
{
    (void)state;
    NEED_BIN();
    char dir[64];
    tsup_mkdtemp(dir);
    tsup_server s;
    start_journal(&s, dir, NULL);
    register_trainer(s.port, 4);
    json_decref(call_ok(s.port, "GET", "/batch", NULL));
    json_decref(call_ok(s.port, "POST", "/register-env",
                        "{\"max_token_length\":64,\"desired_name\":\"e\",\"weight\":1,\"group_size\":4}"));
    /* Two sequences where the env promised four: buffered, and journaled. */
    json_t *j = call_ok(s.port, "POST", "/scored_data",
                        "{\"tokens\":[[1,5],[1,6]],\"masks\":[[-100,5],[-100,6]],\"scores\":[1,0],\"env_id\":0}");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "buffered");
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);

    start_journal(&s, dir, NULL);
    j = call_ok(s.port, "GET", "/status", NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "buffered_groups")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "queue_size")), 0);
    json_decref(j);
    json_decref(call_ok(s.port, "POST", "/scored_data",
                        "{\"tokens\":[[2,5],[2,6]],\"masks\":[[-100,5],[-100,6]],\"scores\":[1,0],\"env_id\":0}"));
    assert_int_equal(tsup_server_stop(&s), 0);
    /* The release survives a restart too. */
    start_journal(&s, dir, NULL);
    int seen[2] = { 0 };
    drain(s.port, seen, 2);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(tsup_server_stop(&s), 0);
    tsup_rmdir(dir);
}

/* ---- SIGKILL -------------------------------------------------------------------------------- */

/* The producer thread: pushes groups 0..n-1 until one fails (the server was
 * killed) and records each acknowledged id. Uses raw sockets, not cmocka. */
typedef struct producer {
    unsigned port;
    int first_id, n;
    int acked[CRASH_MAX_GROUPS];  /* ids that got a 200 */
    int n_acked;
    int n_sent;                   /* ids whose request was started */
    pthread_mutex_t lock;
    pthread_cond_t progress;
    int done;
} producer;

/* One POST /scored_data; returns the HTTP status or -1 on a transport error. */
static int raw_post(unsigned port, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = { 0 };
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[1024];
    int len = snprintf(req, sizeof req,
                       "POST /scored_data HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       strlen(body), body);
    int status = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && send(fd, req, (size_t)len, MSG_NOSIGNAL) == len) {
        char resp[64];
        size_t got = 0;
        ssize_t r;
        while (got < sizeof resp - 1 && (r = recv(fd, resp + got, sizeof resp - 1 - got, 0)) > 0)
            got += (size_t)r;
        resp[got] = '\0';
        if (got >= 12 && strncmp(resp, "HTTP/1.1 ", 9) == 0)
            status = atoi(resp + 9);
    }
    close(fd);
    return status;
}

static void *produce(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < p->n; i++) {
        char body[256];
        group_body(body, sizeof body, p->first_id + i);
        pthread_mutex_lock(&p->lock);
        p->n_sent = i + 1;
        pthread_mutex_unlock(&p->lock);
        int st = raw_post(p->port, body);
        if (st != 200)
            break;
        pthread_mutex_lock(&p->lock);
        p->acked[p->n_acked++] = p->first_id + i;
        pthread_cond_broadcast(&p->progress);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    p->done = 1;
    pthread_cond_broadcast(&p->progress);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void test_buffer_journal_crash__sigkill_exactly_once(void **state)
{
    (void)state;
    NEED_BIN();
    char dir[64];
    tsup_mkdtemp(dir);
    /* Fixed seed: a failure reproduces with the same kill points. */
    unsigned seed = 12345;
    int total = CRASH_ROUNDS * CRASH_MAX_GROUPS;
    int *seen = calloc((size_t)total, sizeof *seen);
    int *acked = calloc((size_t)total, sizeof *acked);
    assert_non_null(seen);
    assert_non_null(acked);
    int sent_max = 0;
    tsup_server s;
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        start_journal(&s, dir, round % 2 ? "16K" : "64M");
        if (round == 0)
            register_trainer(s.port, 2);
        /* The trainer also consumes before the kill, so batches handed out
         * before the crash must not come back after it. */
        drain(s.port, seen, total);
        static producer p;
        memset(&p, 0, sizeof p);
        pthread_mutex_init(&p.lock, NULL);
        pthread_cond_init(&p.progress, NULL);
        p.port = s.port;
        p.first_id = round * CRASH_MAX_GROUPS;
        p.n = CRASH_MAX_GROUPS;
        int kill_after = 5 + (int)(rand_r(&seed) % (CRASH_MAX_GROUPS - 50));
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, produce, &p), 0);
        pthread_mutex_lock(&p.lock);
        while (!p.done && p.n_acked < kill_after)
            pthread_cond_wait(&p.progress, &p.lock);
        pthread_mutex_unlock(&p.lock);
        if (round % 3 == 0)
            drain(s.port, seen, total);
        /* Land the kill at a random point of the request in flight. */
        struct timespec jitter = { 0, (long)(rand_r(&seed) % 2000) * 1000 };
        nanosleep(&jitter, NULL);
        kill(s.pid, SIGKILL);
        assert_int_equal(tsup_server_stop(&s), 128 + SIGKILL);
        pthread_join(th, NULL);
        for (int i = 0; i < p.n_acked; i++)
            acked[p.acked[i]] = 1;
        if (p.first_id + p.n_sent > sent_max)
            sent_max = p.first_id + p.n_sent;
        pthread_mutex_destroy(&p.lock);
        pthread_cond_destroy(&p.progress);
    }
    start_journal(&s, dir, NULL);
    drain(s.port, seen, total);
    assert_int_equal(tsup_server_stop(&s), 0);
    int delivered = 0, n_acked = 0;
    for (int i = 0; i < total; i++) {
        if (acked[i] && seen[i] != 1)
            fail_msg("group %d got a 200 but was delivered %d times", i, seen[i]);
        if (seen[i] > 1)
            fail_msg("group %d was delivered %d times", i, seen[i]);
        if (seen[i] && !acked[i] && i >= sent_max)
            fail_msg("group %d was never sent but was delivered", i);
        delivered += seen[i];
        n_acked += acked[i];
    }
    print_message("crash test: %d rounds, %d groups acknowledged, %d delivered\n", CRASH_ROUNDS, n_acked, delivered);
    assert_true(n_acked > CRASH_ROUNDS * 5);
    free(seen);
    free(acked);
    tsup_rmdir(dir);
}

/* ---- the Python client ------------------------------------------------------------------------ */

static void test_buffer_atropos__python_client(void **state)
{
    (void)state;
    NEED_BIN();
    const char *py = "/usr/bin/python3";
    if (access(py, X_OK) != 0) {
        print_message("%s is not available; skipping\n", py);
        skip();
    }
    const char *src = getenv("ENVSRV_SRC");
    char script[512];
    snprintf(script, sizeof script, "%s/tests/server/atropos_client.py", src && src[0] ? src : ".");
    assert_int_equal(access(script, R_OK), 0);
    tsup_server s;
    const char *args[] = { "--threads", "2", "--no-journal", NULL };
    assert_int_equal(tsup_server_start(&s, args), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(py, py, script, port, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    /* The script bounds its own run with socket timeouts. */
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(tsup_server_stop(&s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffer_journal_restart__state_comes_back),
        cmocka_unit_test(test_buffer_journal_restart__mixed_size_buffer),
        cmocka_unit_test(test_buffer_journal_compaction__shrinks_and_keeps_state),
        cmocka_unit_test(test_buffer_journal_torn__last_record_dropped),
        cmocka_unit_test(test_buffer_journal_crash__sigkill_exactly_once),
        cmocka_unit_test(test_buffer_atropos__python_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
