/*
 * Integration tests of the Atropos-compatible trajectory buffer over HTTP
 * (docs/trajectory.md): the trainer/env protocol, packing with mixed group
 * sizes and min_batch_allocation, gzip bodies, every validation error,
 * backpressure, policy versions and drop counting.
 *
 * Each test starts its own server (the buffer is global state) with
 * --no-journal unless it tests the journal; tests/server/test_buffer_journal.c
 * covers restarts and crashes. Every server must exit 0 on SIGTERM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "tests/support/support.h"

#define NEED_BIN()                                                                 \
    do {                                                                           \
        if (!tsup_bin()) {                                                         \
            print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n"); \
            skip();                                                                \
        }                                                                          \
    } while (0)

static void start(tsup_server *s, const char *const *extra)
{
    const char *args[32] = { "--threads", "2", "--no-journal" };
    size_t n = 3;
    for (size_t i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    assert_int_equal(tsup_server_start(s, args), 0);
}

static void stop(tsup_server *s)
{
    assert_int_equal(tsup_server_stop(s), 0);
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

/* Expects an error answer and that its message holds every NULL-terminated
 * fragment given. */
static void expect_error(unsigned port, const char *path, const char *body, int status, const char *code, ...)
{
    int st = 0;
    json_t *j = tsup_call(&st, port, "POST", path, body);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    int ok = st == status && strcmp(tsup_error_code(j), code) == 0 && m;
    va_list ap;
    va_start(ap, code);
    for (const char *frag; ok && (frag = va_arg(ap, const char *));)
        ok = strstr(m, frag) != NULL;
    va_end(ap);
    if (!ok) {
        char *dump = json_dumps(j, 0);
        print_error("POST %s %.200s\n  expected %d %s, got %d: %s\n", path, body, status, code, st, dump ? dump : "?");
        free(dump);
        json_decref(j);
        fail();
    }
    json_decref(j);
}

static void register_trainer(unsigned port, int batch_size, int max_len)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"wandb_group\":\"grp\",\"wandb_project\":\"proj\",\"batch_size\":%d,\"max_token_len\":%d,"
             "\"checkpoint_dir\":\"ckpt\",\"save_checkpoint_interval\":5,\"starting_step\":0,\"num_steps\":50}",
             batch_size, max_len);
    json_t *j = call_ok(port, "POST", "/register", body);
    assert_true(json_is_integer(json_object_get(j, "uuid")) && json_integer_value(json_object_get(j, "uuid")) >= 0);
    json_decref(j);
}

/* Registers an env (starting the trainer first with a /batch if needed);
 * returns its env_id. */
static long long register_env(unsigned port, const char *name, int group_size, const char *min_alloc)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"max_token_length\":64,\"desired_name\":\"%s\",\"weight\":1.0,\"group_size\":%d,"
             "\"min_batch_allocation\":%s}",
             name, group_size, min_alloc);
    json_t *j = call_ok(port, "POST", "/register-env", body);
    if (strcmp(json_string_value(json_object_get(j, "status")), "success") != 0) {
        json_decref(j);
        json_decref(call_ok(port, "GET", "/batch", NULL));
        j = call_ok(port, "POST", "/register-env", body);
    }
    assert_string_equal(json_string_value(json_object_get(j, "status")), "success");
    long long id = json_integer_value(json_object_get(j, "env_id"));
    json_decref(j);
    return id;
}

/* A group of n sequences; the first token of each is `tag` so tests can tell
 * groups apart, scores alternate 1, 0 unless flat. */
static char *group_json(int n, int tag, long long env_id, int flat)
{
    json_t *tokens = json_array(), *masks = json_array(), *scores = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(tokens, json_pack("[i,i,i,i]", tag, 7, 8, 9 + i));
        json_array_append_new(masks, json_pack("[i,i,i,i]", -100, -100, 8, 9 + i));
        json_array_append_new(scores, json_real(flat ? 0.5 : (i % 2 ? 0.0 : 1.0)));
    }
    json_t *g = json_pack("{s:o, s:o, s:o}", "tokens", tokens, "masks", masks, "scores", scores);
    if (env_id >= 0)
        json_object_set_new(g, "env_id", json_integer(env_id));
    char *s = json_dumps(g, JSON_COMPACT);
    json_decref(g);
    return s;
}

static void push(unsigned port, int n, int tag, long long env_id)
{
    char *body = group_json(n, tag, env_id, 0);
    json_t *j = call_ok(port, "POST", "/scored_data", body);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "received");
    json_decref(j);
    free(body);
}

/* GET /batch; returns the batch array (new reference) or NULL for null. */
static json_t *get_batch(unsigned port)
{
    json_t *j = call_ok(port, "GET", "/batch", NULL);
    json_t *b = json_object_get(j, "batch");
    assert_non_null(b);
    json_t *out = json_is_null(b) ? NULL : json_incref(b);
    json_decref(j);
    return out;
}

static size_t batch_sequences(const json_t *batch)
{
    size_t n = 0, i;
    json_t *g;
    json_array_foreach(batch, i, g)
        n += json_array_size(json_object_get(g, "tokens"));
    return n;
}

static int group_tag(const json_t *g)
{
    return (int)json_integer_value(json_array_get(json_array_get(json_object_get(g, "tokens"), 0), 0));
}

static json_int_t status_field(unsigned port, const char *a, const char *b)
{
    json_t *j = call_ok(port, "GET", "/status", NULL);
    json_t *v = json_object_get(j, a);
    if (b)
        v = json_object_get(v, b);
    json_int_t r = json_integer_value(v);
    json_decref(j);
    return r;
}

/* ---- the protocol ---------------------------------------------------------------- */

static void test_buffer_protocol__trainer_and_env(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    start(&s, NULL);
    unsigned p = s.port;

    /* Before /register: Atropos's "not set" answers. */
    json_t *j = call_ok(p, "GET", "/info", NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "batch_size")), -1);
    json_decref(j);
    j = call_ok(p, "GET", "/wandb_info", NULL);
    assert_true(json_is_null(json_object_get(j, "group")));
    json_decref(j);
    int st;
    j = tsup_call(&st, p, "GET", "/batch", NULL);
    assert_int_equal(st, 409);
    assert_string_equal(tsup_error_code(j), "not_registered");
    json_decref(j);

    register_trainer(p, 4, 32);
    j = call_ok(p, "GET", "/info", NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "batch_size")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "max_token_len")), 32);
    json_decref(j);
    j = call_ok(p, "GET", "/wandb_info", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "group")), "grp");
    assert_string_equal(json_string_value(json_object_get(j, "project")), "proj");
    json_decref(j);

    /* An env must wait for the trainer's first /batch. */
    const char *env_body = "{\"max_token_length\":64,\"desired_name\":\"math\",\"weight\":2.0,\"group_size\":2}";
    j = call_ok(p, "POST", "/register-env", env_body);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "wait for trainer to start");
    json_decref(j);
    assert_null(get_batch(p));
    j = call_ok(p, "POST", "/register-env", env_body);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "success");
    assert_int_equal(json_integer_value(json_object_get(j, "env_id")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "wandb_name")), "math_0");
    assert_string_equal(json_string_value(json_object_get(j, "checkpoint_dir")), "ckpt");
    assert_int_equal(json_integer_value(json_object_get(j, "starting_step")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "checkpoint_interval")), 5);
    assert_int_equal(json_integer_value(json_object_get(j, "num_steps")), 50);
    json_decref(j);
    j = call_ok(p, "POST", "/register-env", env_body);
    assert_string_equal(json_string_value(json_object_get(j, "wandb_name")), "math_1");
    json_decref(j);

    /* Latest example is Atropos's empty shape before any data. */
    j = call_ok(p, "GET", "/latest_example", NULL);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 0);
    json_decref(j);

    /* Oldest first: tags 1, 2, then 3, 4; the step counts batches handed out. */
    for (int t = 1; t <= 5; t++)
        push(p, 2, t, 0);
    j = call_ok(p, "GET", "/latest_example", NULL);
    assert_int_equal(group_tag(j), 5);
    assert_true(json_is_null(json_object_get(j, "advantages")));
    json_decref(j);
    assert_int_equal(status_field(p, "queue_size", NULL), 5);
    for (int b = 0; b < 2; b++) {
        json_t *batch = get_batch(p);
        assert_non_null(batch);
        assert_int_equal(batch_sequences(batch), 4);
        assert_int_equal(group_tag(json_array_get(batch, 0)), 2 * b + 1);
        assert_int_equal(group_tag(json_array_get(batch, 1)), 2 * b + 2);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(batch, 0), "policy_version")), 0);
        json_decref(batch);
        assert_int_equal(status_field(p, "current_step", NULL), b + 1);
    }
    assert_null(get_batch(p));
    assert_int_equal(status_field(p, "current_step", NULL), 2);

    /* status-env: by query parameter and by JSON body (old clients). */
    j = call_ok(p, "GET", "/status-env?env_id=0", NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "current_step")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "queue_size")), 1);
    assert_true(json_real_value(json_object_get(j, "env_weight")) > 0.49 &&
                json_real_value(json_object_get(j, "env_weight")) < 0.51);
    json_decref(j);
    j = call_ok(p, "GET", "/status-env", "{\"env_id\": 1}");
    assert_int_equal(json_integer_value(json_object_get(j, "self_queue_size")), 0);
    json_decref(j);
    j = tsup_call(&st, p, "GET", "/status-env?env_id=9", NULL);
    assert_int_equal(st, 404);
    json_decref(j);

    j = call_ok(p, "POST", "/disconnect-env", "{\"env_id\": 1}");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "success");
    json_decref(j);
    j = call_ok(p, "GET", "/status-env?env_id=0", NULL);
    assert_true(json_real_value(json_object_get(j, "env_weight")) > 0.99);
    json_decref(j);
    expect_error(p, "/disconnect-env", "{\"env_id\": 7}", 404, "unknown_env", "7", NULL);

    /* /reset_data: plain text, and everything is forgotten. */
    tsup_response r;
    tsup_request(&r, p, "GET", "/reset_data", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Reset successful");
    tsup_response_free(&r);
    assert_int_equal(status_field(p, "queue_size", NULL), 0);
    assert_int_equal(status_field(p, "dropped", "reset"), 1);
    j = call_ok(p, "GET", "/info", NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "batch_size")), -1);
    json_decref(j);
    stop(&s);
}

static void test_buffer_packing__mixed_group_sizes(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    start(&s, NULL);
    unsigned p = s.port;
    register_trainer(p, 8, 32);
    /* Sizes 4, 2, 4, 2, 2: packs of 4 (the largest size) are [1], [3],
     * [2,4] and a batch of 8 takes the two oldest packs. */
    push(p, 4, 1, -1);
    push(p, 2, 2, -1);
    push(p, 4, 3, -1);
    push(p, 2, 4, -1);
    push(p, 2, 5, -1);
    json_t *batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(batch_sequences(batch), 8);
    assert_int_equal(json_array_size(batch), 2);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 1);
    assert_int_equal(group_tag(json_array_get(batch, 1)), 3);
    json_decref(batch);
    /* Left: 2, 4, 5 (six sequences): one pack [2,4] and a lone 5: no batch. */
    assert_null(get_batch(p));
    push(p, 2, 6, -1);
    batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(json_array_size(batch), 4);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 2);
    json_decref(batch);

    /* A batch size that is not a multiple of the largest group: oldest
     * groups that fit, exactly batch_size sequences. (As in Atropos, only
     * the first /register sets the run up; /reset_data starts over.) */
    tsup_response r;
    tsup_request(&r, p, "GET", "/reset_data", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    tsup_response_free(&r);
    register_trainer(p, 5, 32);
    push(p, 3, 7, -1);
    push(p, 3, 8, -1);
    push(p, 2, 9, -1);
    batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(batch_sequences(batch), 5);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 7);
    assert_int_equal(group_tag(json_array_get(batch, 1)), 9);
    json_decref(batch);
    stop(&s);
}

/* Atropos's mixed-size groups: a group of another size than its env's
 * group_size waits until buffered groups of that env add up to group_size. */
static void test_buffer_packing__mixed_size_buffer(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    start(&s, NULL);
    unsigned p = s.port;
    register_trainer(p, 8, 32);
    long long env = register_env(p, "m", 4, "null");
    const int sizes[] = { 2, 3, 2, 1 };
    const long long expect_buffered[] = { 2, 5, 3, 0 };
    for (int i = 0; i < 4; i++) {
        char *body = group_json(sizes[i], i + 1, env, 0);
        json_t *j = call_ok(p, "POST", "/scored_data", body);
        free(body);
        assert_string_equal(json_string_value(json_object_get(j, "status")), "buffered");
        assert_int_equal(json_integer_value(json_object_get(j, "buffer_size")), expect_buffered[i]);
        json_decref(j);
        /* 2 + 2 leave the buffer with the third push, 3 + 1 with the fourth. */
        assert_int_equal(status_field(p, "buffered_groups", NULL), i == 0 ? 1 : i == 1 ? 2 : i == 2 ? 1 : 0);
    }
    json_t *batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(batch_sequences(batch), 8);
    assert_int_equal(json_array_size(batch), 4);
    json_decref(batch);
    /* A group of the env's own size goes straight to the queue. */
    push(p, 4, 9, env);
    assert_int_equal(status_field(p, "queue_size", NULL), 1);
    stop(&s);
}

static void test_buffer_packing__min_batch_allocation(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    start(&s, NULL);
    unsigned p = s.port;
    register_trainer(p, 8, 32);
    long long a = register_env(p, "a", 2, "null");
    long long b = register_env(p, "b", 2, "0.5");
    /* Env a floods the queue; env b is guaranteed half of every batch. */
    for (int t = 1; t <= 6; t++)
        push(p, 2, t, a);
    assert_null(get_batch(p)); /* b has nothing yet: wait, as Atropos does */
    push(p, 2, 100, b);
    assert_null(get_batch(p)); /* 2 of b's 4 sequences */
    push(p, 2, 101, b);
    json_t *batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(batch_sequences(batch), 8);
    size_t from_b = 0, i;
    json_t *g;
    json_array_foreach(batch, i, g)
        from_b += json_integer_value(json_object_get(g, "env_id")) == b;
    assert_int_equal(from_b, 2);
    /* The rest is env a's oldest. */
    assert_int_equal(group_tag(json_array_get(batch, 0)), 1);
    assert_int_equal(group_tag(json_array_get(batch, 1)), 2);
    json_decref(batch);
    /* Once b disconnects its minimum no longer holds the batch back. */
    json_decref(call_ok(p, "POST", "/disconnect-env", "{\"env_id\": 1}"));
    batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 3);
    json_decref(batch);
    stop(&s);
}

/* ---- gzip -------------------------------------------------------------------------- */

static unsigned char *gzip(size_t *out_len, const void *data, size_t len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

static void test_buffer_gzip__bodies(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    static const char *const extra[] = { "--max-body", "64K", NULL };
    start(&s, extra);
    unsigned p = s.port;
    register_trainer(p, 4, 32);
    const char *gz = "Content-Encoding: gzip\r\nContent-Type: application/json\r\n";

    char *g1 = group_json(2, 1, -1, 0), *g2 = group_json(2, 2, -1, 0);
    char list[4096];
    snprintf(list, sizeof list, "[%s,%s]", g1, g2);
    size_t zlen;
    unsigned char *z = gzip(&zlen, list, strlen(list));
    tsup_response r;
    tsup_request(&r, p, "POST", "/scored_data_list", gz, z, zlen);
    assert_int_equal(r.status, 200);
    json_t *j = tsup_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "groups_processed")), 2);
    json_decref(j);
    tsup_response_free(&r);
    free(z);
    json_t *batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(group_tag(json_array_get(batch, 1)), 2);
    json_decref(batch);

    /* Corrupt gzip: 400 bad_gzip. */
    tsup_request(&r, p, "POST", "/scored_data", gz, "not gzip at all", 15);
    assert_int_equal(r.status, 400);
    j = tsup_json(&r);
    assert_string_equal(tsup_error_code(j), "bad_gzip");
    json_decref(j);
    tsup_response_free(&r);

    /* A zip bomb: 8 MiB of spaces is a few KiB compressed, and inflates past
     * 16 x --max-body (1 MiB): 413, nothing allocated beyond the cap. */
    size_t big = 8u << 20;
    char *spaces = malloc(big);
    assert_non_null(spaces);
    memset(spaces, ' ', big);
    z = gzip(&zlen, spaces, big);
    free(spaces);
    assert_true(zlen < 64 * 1024);
    tsup_request(&r, p, "POST", "/scored_data", gz, z, zlen);
    assert_int_equal(r.status, 413);
    tsup_response_free(&r);
    free(z);

    /* Other encodings are refused by name. */
    tsup_request(&r, p, "POST", "/scored_data", "Content-Encoding: br\r\n", g1, strlen(g1));
    assert_int_equal(r.status, 415);
    tsup_response_free(&r);
    free(g1);
    free(g2);
    stop(&s);
}

/* ---- validation ------------------------------------------------------------------------ */

static void test_buffer_validation__every_error(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    static const char *const extra[] = { "--vocab-size", "1000", NULL };
    start(&s, extra);
    unsigned p = s.port;
    register_trainer(p, 4, 6);
    long long env = register_env(p, "e", 2, "null");
    assert_int_equal(env, 0);
    const char *sd = "/scored_data";

    expect_error(p, sd, "[1]", 400, "bad_request", "object", NULL);
    expect_error(p, sd, "{\"tokens\": [[1", 400, "bad_json", NULL);
    expect_error(p, sd, "{\"masks\":[[1]],\"scores\":[1]}", 422, "invalid_field", "group 0", "'tokens'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1]],\"scores\":[1]}", 422, "invalid_field", "'masks'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1]],\"masks\":[[1]]}", 422, "invalid_field", "'scores'", NULL);
    expect_error(p, sd, "{\"tokens\":[],\"masks\":[],\"scores\":[]}", 422, "invalid_field", "'tokens'", "empty",
                 NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1]],\"scores\":[1,0]}", 422, "invalid_field", "'masks'",
                 "2 sequences", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1]}", 422, "invalid_field",
                 "'scores'", "2 numbers", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2,3]],\"masks\":[[1],[2]],\"scores\":[1,0]}", 422, "invalid_field",
                 "sequence 1", "'masks' has 1 entries but 'tokens' has 2", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2,1000]],\"masks\":[[1],[2,5]],\"scores\":[1,0]}", 422,
                 "invalid_field", "sequence 1", "'tokens' entry 1", "0 to 999", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[-1]],\"masks\":[[1],[2]],\"scores\":[1,0]}", 422, "invalid_field",
                 "'tokens' entry 0", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[\"a\"]],\"masks\":[[1],[2]],\"scores\":[1,0]}", 422, "invalid_field",
                 "a string", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[-5]],\"scores\":[1,0]}", 422, "invalid_field",
                 "sequence 1", "'masks' entry 0", "-100", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[1,2,3,4,5,6,7]],\"masks\":[[1],[1,2,3,4,5,6,7]],\"scores\":[1,0]}", 422,
                 "invalid_field", "sequence 1", "7 tokens", "max_token_len 6", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,\"x\"]}", 422, "invalid_field",
                 "sequence 1", "'scores'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"advantages\":[[1]]}", 422,
                 "invalid_field", "'advantages'", "2 rows", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2,3]],\"masks\":[[1],[2,3]],\"scores\":[1,0],\"ref_logprobs\":[[0.1],[0.2]]}",
                 422, "invalid_field", "sequence 1", "'ref_logprobs' has 1 entries but 'tokens' has 2", NULL);
    expect_error(p, sd,
                 "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"inference_logprobs\":[[0.1],[\"x\"]]}",
                 422, "invalid_field", "sequence 1", "'inference_logprobs' entry 0", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"messages\":[[]]}", 422,
                 "invalid_field", "'messages'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"overrides\":{}}", 422,
                 "invalid_field", "'overrides'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"generation_params\":[1]}", 422,
                 "invalid_field", "'generation_params'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"group_overrides\":3}", 422,
                 "invalid_field", "'group_overrides'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"env_id\":5}", 422,
                 "invalid_field", "'env_id'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"policy_version\":\"v1\"}",
                 422, "invalid_field", "'policy_version'", NULL);
    /* In a list the message names the group's index, and nothing is queued. */
    expect_error(p, "/scored_data_list",
                 "[{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0]},"
                 "{\"tokens\":[[1],[2]],\"masks\":[[1],[2,2]],\"scores\":[1,0]}]",
                 422, "invalid_field", "group 1, sequence 1", NULL);
    expect_error(p, "/scored_data_list", "{}", 400, "bad_request", "array", NULL);
    assert_int_equal(status_field(p, "queue_size", NULL), 0);
    assert_true(status_field(p, "rejected", "invalid") >= 20);

    /* Registration errors. */
    expect_error(p, "/register", "{\"batch_size\":0,\"max_token_len\":5}", 422, "invalid_field", "'batch_size'", NULL);
    expect_error(p, "/register", "{\"batch_size\":4}", 422, "invalid_field", "'max_token_len'", NULL);
    expect_error(p, "/register", "{\"batch_size\":4,\"max_token_len\":5,\"wandb_group\":3}", 422, "invalid_field",
                 "'wandb_group'", NULL);
    expect_error(p, "/register-env", "{\"max_token_length\":5,\"desired_name\":\"x\",\"group_size\":2}", 422,
                 "invalid_field", "'weight'", NULL);
    expect_error(p, "/register-env", "{\"max_token_length\":5,\"desired_name\":\"x\",\"weight\":1}", 422,
                 "invalid_field", "'group_size'", NULL);
    expect_error(p, "/register-env", "{\"max_token_length\":5,\"desired_name\":\"x\",\"weight\":1,\"group_size\":2,"
                 "\"min_batch_allocation\":2}", 422, "invalid_field", "'min_batch_allocation'", NULL);
    expect_error(p, sd, "{\"tokens\":[[1],[2]],\"masks\":[[1],[2]],\"scores\":[1,0],\"messages\":[[{\"role\":\"user\"}],[]]}",
                 422, "invalid_field", "sequence 0", "'messages' entry 0", "'content'", NULL);
    expect_error(p, "/v1/policy", "{\"version\":-1}", 422, "invalid_field", "'version'", NULL);
    expect_error(p, "/v1/policy", "{}", 400, "bad_request", "'version'", NULL);
    stop(&s);
}

/* ---- bounds and drops --------------------------------------------------------------------- */

static void test_buffer_backpressure__full_queue(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    static const char *const extra[] = { "--max-queue", "4", NULL };
    start(&s, extra);
    unsigned p = s.port;
    register_trainer(p, 4, 32);
    push(p, 2, 1, -1);
    push(p, 2, 2, -1);
    char *g = group_json(2, 3, -1, 0);
    tsup_response r;
    tsup_request(&r, p, "POST", "/scored_data", NULL, g, strlen(g));
    assert_int_equal(r.status, 503);
    char ra[32];
    assert_int_equal(tsup_header(ra, sizeof ra, &r, "Retry-After"), 0);
    assert_string_equal(ra, "1");
    tsup_response_free(&r);
    assert_int_equal(status_field(p, "rejected", "full"), 1);
    assert_int_equal(status_field(p, "queue_sequences", NULL), 4);
    /* A group larger than the whole queue can never fit: 422, not 503. */
    char *big = group_json(6, 9, -1, 0);
    expect_error(p, "/scored_data", big, 422, "invalid_field", "--max-queue", NULL);
    free(big);
    /* The trainer drains; the retried group is taken (not lost). */
    json_t *batch = get_batch(p);
    assert_non_null(batch);
    json_decref(batch);
    json_decref(call_ok(p, "POST", "/scored_data", g));
    free(g);
    assert_int_equal(status_field(p, "queue_sequences", NULL), 2);
    stop(&s);
}

static void test_buffer_drops__flat_groups(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    start(&s, NULL);
    unsigned p = s.port;
    register_trainer(p, 2, 32);
    /* Without --drop-flat-groups a flat group is kept. */
    char *flat = group_json(2, 1, -1, 1);
    json_decref(call_ok(p, "POST", "/scored_data", flat));
    assert_int_equal(status_field(p, "queue_size", NULL), 1);
    stop(&s);

    static const char *const extra[] = { "--drop-flat-groups", NULL };
    start(&s, extra);
    p = s.port;
    register_trainer(p, 2, 32);
    json_t *j = call_ok(p, "POST", "/scored_data", flat);
    assert_int_equal(json_integer_value(json_object_get(j, "groups_accepted")), 0);
    json_decref(j);
    push(p, 2, 2, -1);
    assert_int_equal(status_field(p, "queue_size", NULL), 1);
    assert_int_equal(status_field(p, "dropped", "flat"), 1);
    free(flat);
    stop(&s);
}

static void test_buffer_policy__sequential(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    static const char *const extra[] = { "--sync", "sequential", NULL };
    start(&s, extra);
    unsigned p = s.port;
    register_trainer(p, 2, 32);
    push(p, 2, 1, -1);                       /* stamped with version 0 */
    json_decref(call_ok(p, "POST", "/v1/policy", "{\"version\": 1}"));
    push(p, 2, 2, -1);                       /* version 1 */
    json_decref(call_ok(p, "POST", "/scored_data",
                        "{\"tokens\":[[3,1],[3,2]],\"masks\":[[-100,1],[-100,2]],\"scores\":[1,0],"
                        "\"policy_version\":2}"));
    json_t *j = call_ok(p, "GET", "/status", NULL);
    json_t *v = json_object_get(j, "versions");
    assert_int_equal(json_integer_value(json_object_get(v, "0")), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "1")), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "2")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "sync")), "sequential");
    json_decref(j);
    /* Only version 1 goes out; version 0 is dropped as stale, 2 waits. */
    json_t *batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 2);
    json_decref(batch);
    assert_int_equal(status_field(p, "dropped", "stale"), 1);
    assert_null(get_batch(p));
    json_decref(call_ok(p, "POST", "/v1/policy", "{\"version\": 2}"));
    batch = get_batch(p);
    assert_non_null(batch);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 3);
    json_decref(batch);
    stop(&s);
}

static void test_buffer_policy__async_staleness(void **state)
{
    (void)state;
    NEED_BIN();
    tsup_server s;
    static const char *const extra[] = { "--sync", "async", "--max-staleness", "1", NULL };
    start(&s, extra);
    unsigned p = s.port;
    register_trainer(p, 2, 32);
    push(p, 2, 1, -1); /* v0 */
    json_decref(call_ok(p, "POST", "/v1/policy", "{\"version\": 1}"));
    push(p, 2, 2, -1); /* v1 */
    json_decref(call_ok(p, "POST", "/v1/policy", "{\"version\": 2}"));
    push(p, 2, 3, -1); /* v2 */
    /* v0 is 2 versions old: dropped; v1 (1 old) and v2 go out, oldest first. */
    json_t *batch = get_batch(p);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 2);
    json_decref(batch);
    batch = get_batch(p);
    assert_int_equal(group_tag(json_array_get(batch, 0)), 3);
    json_decref(batch);
    assert_int_equal(status_field(p, "dropped", "stale"), 1);
    assert_int_equal(status_field(p, "current_step", NULL), 2);
    stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffer_protocol__trainer_and_env),
        cmocka_unit_test(test_buffer_packing__mixed_group_sizes),
        cmocka_unit_test(test_buffer_packing__mixed_size_buffer),
        cmocka_unit_test(test_buffer_packing__min_batch_allocation),
        cmocka_unit_test(test_buffer_gzip__bodies),
        cmocka_unit_test(test_buffer_validation__every_error),
        cmocka_unit_test(test_buffer_backpressure__full_queue),
        cmocka_unit_test(test_buffer_drops__flat_groups),
        cmocka_unit_test(test_buffer_policy__sequential),
        cmocka_unit_test(test_buffer_policy__async_staleness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
