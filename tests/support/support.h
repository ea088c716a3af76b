/*
 * Test support for integration tests: start the real envsrv binary on an
 * ephemeral loopback port, talk HTTP/1.1 to it with a minimal blocking client,
 * and stop it, returning its exit status.
 *
 * Used by tests/server/test_*.c. Include after cmocka.h. Nothing here sleeps
 * to synchronise: start-up waits for the server's "envsrv listening on" line,
 * and every wait has a generous overall timeout so a broken server fails the
 * test instead of hanging it.
 */
#ifndef ENVSRV_TEST_SUPPORT_H
#define ENVSRV_TEST_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/* Seconds any single wait may take before the test fails (start-up under
 * ASan with the full GSM8K train split loaded included). */
#define TSUP_TIMEOUT_S 60

/* $ENVSRV_BIN when it names an executable file, else NULL (tests skip). */
const char *tsup_bin(void);

/* $ENVSRV_DATA, else "../shared/data" relative to $ENVSRV_SRC or the current
 * directory. Borrowed, static. */
const char *tsup_data_dir(void);

/* A running server. */
typedef struct tsup_server {
    pid_t pid;
    int out_fd;             /* read end of the server's stdout */
    unsigned port;
    char out[16384];        /* the server's stdout read so far, NUL-terminated */
    size_t out_len;
} tsup_server;

/*
 * Starts $ENVSRV_BIN with `args` (NULL-terminated, without argv[0]) plus
 * "--port 0" and waits for its first line. Returns 0 when it is listening;
 * -1 when the binary is unavailable (the caller skip()s). A server that exits
 * or says something else first fails the test.
 */
int tsup_server_start(tsup_server *s, const char *const *args);

/* Sends SIGTERM, waits (bounded) for the exit, reads the rest of its stdout
 * into s->out, and returns the exit status (128 + signal number when killed
 * by a signal). */
int tsup_server_stop(tsup_server *s);

/* Skips the current test, saying why, unless `up` (the group's server
 * started). */
#define TSUP_NEED_SERVER(up)                                                       \
    do {                                                                           \
        if (!(up)) {                                                               \
            print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n"); \
            skip();                                                                \
        }                                                                          \
    } while (0)

/* For the last test of a group: stops the group's server and fails the test
 * unless it exited with status 0 (under ASan: without a leak). A test of its
 * own, because cmocka does not count a failing group teardown. Clears *up;
 * skips when the server never started. */
void tsup_server_stop_in_test(tsup_server *s, int *up);

/* For a group teardown: stops the server when a failed test left it up
 * (its status is not checked then). Clears *up; returns 0. */
int tsup_server_teardown(tsup_server *s, int *up);

/* Runs $ENVSRV_BIN with args to completion (bounded) and returns its exit
 * status; *out and *err get its stdout and stderr (malloc'd, caller frees). */
int tsup_run(char **out, char **err, const char *const *args);

/* tsup_run, failing the test unless the exit status is `status` and stderr
 * contains `needle` (the run's stderr is in the failure message). */
void tsup_run_fails(int status, const char *needle, const char *const *args);

/* One HTTP answer. */
typedef struct tsup_response {
    int status;
    char *headers;          /* owned: the header block, lines ending in \r\n */
    char *body;             /* owned, NUL-terminated (the NUL is not in body_len) */
    size_t body_len;
} tsup_response;

void tsup_response_free(tsup_response *r);

/* The value of header `name` (case-insensitive) copied into out; 0 when
 * found, -1 when absent. */
int tsup_header(char *out, size_t outlen, const tsup_response *r, const char *name);

/* The body parsed as JSON (fails the test when it is not). New reference. */
json_t *tsup_json(const tsup_response *r);

/* A connected loopback socket to `port` with TSUP_TIMEOUT_S receive and send
 * timeouts; fails the test on error. */
int tsup_connect(unsigned port);

/* Writes all of buf or fails the test (a closed peer returns -1 instead when
 * allow_reset is set). */
int tsup_send_all(int fd, const void *buf, size_t len, int allow_reset);

/* Sends one request on fd. `headers` is extra header lines, each ending in
 * "\r\n" (or NULL). A body is sent with its Content-Length. keep_alive
 * chooses between "Connection: keep-alive" and "Connection: close". */
void tsup_send_request(int fd, const char *method, const char *path, const char *headers,
                       const void *body, size_t body_len, int keep_alive);

/* Reads one response from fd (by Content-Length, else until close). Returns 0,
 * or -1 when the connection closed before a status line arrived. */
int tsup_read_response(tsup_response *out, int fd);

/* One request on a fresh connection (Connection: close); fails the test when
 * no response arrives. */
void tsup_request(tsup_response *out, unsigned port, const char *method, const char *path,
                  const char *headers, const void *body, size_t body_len);

/* tsup_request with a NUL-terminated body (NULL for none), parsed as JSON;
 * *status gets the HTTP status. Returns a new reference. */
json_t *tsup_call(int *status, unsigned port, const char *method, const char *path, const char *body);

/* The error code of an {"error": {"code": ...}} body, or "" (borrowed from j). */
const char *tsup_error_code(const json_t *j);

/* Writes `text` to dir/name; fails the test on error. */
void tsup_write_file(const char *dir, const char *name, const char *text);

/* Makes a fresh temporary directory (out must hold 64 bytes); tsup_rmdir
 * removes it and its files (one level). */
void tsup_mkdtemp(char *out);
void tsup_rmdir(const char *dir);

/* The paths of the stories260K llama2.c checkpoint and its tok512.bin under
 * tsup_data_dir() (they may not exist: callers check and skip). */
void tsup_stories260k(char *model, size_t model_len, char *tok, size_t tok_len);

/* Writes the "story" env into dir: story.lua (reward: the completion's
 * length in characters over 100, prompts from story.jsonl's "start" field)
 * and story.jsonl with three items; `env` gets dir/story.lua. For tests that
 * generate with stories260K, whose output is never a GSM8K answer. */
void tsup_write_story_env(char *env, size_t env_len, const char *dir);

#endif
