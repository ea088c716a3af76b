/*
 * Integration-test support: the real binary, a loopback HTTP/1.1 client.
 * See support.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/support.h"

const char *tsup_bin(void)
{
    const char *b = getenv("ENVSRV_BIN");
    if (!b || !b[0] || access(b, X_OK) != 0)
        return NULL;
    return b;
}

const char *tsup_data_dir(void)
{
    static char buf[4096];
    const char *d = getenv("ENVSRV_DATA");
    if (d && d[0])
        return d;
    const char *src = getenv("ENVSRV_SRC");
    snprintf(buf, sizeof buf, "%s/../shared/data", src && src[0] ? src : ".");
    return buf;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is readable or the deadline passes; 1 readable, 0 timeout. */
static int wait_readable(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
}

/* argv = bin, args..., extra... , NULL (malloc'd array of borrowed strings). */
static char **make_argv(const char *bin, const char *const *args, const char *const *extra)
{
    size_t n = 0, m = 0;
    while (args && args[n])
        n++;
    while (extra && extra[m])
        m++;
    char **argv = calloc(n + m + 2, sizeof *argv);
    assert_non_null(argv);
    argv[0] = (char *)bin;
    for (size_t i = 0; i < n; i++)
        argv[1 + i] = (char *)args[i];
    for (size_t i = 0; i < m; i++)
        argv[1 + n + i] = (char *)extra[i];
    return argv;
}

int tsup_server_start(tsup_server *s, const char *const *args)
{
    memset(s, 0, sizeof *s);
    s->pid = -1;
    s->out_fd = -1;
    const char *bin = tsup_bin();
    if (!bin)
        return -1;
    static const char *const port0[] = { "--port", "0", NULL };
    char **argv = make_argv(bin, args, port0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A test that fails half-way longjmps past its stop call; the server
         * must not outlive the test program. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        execv(bin, argv);
        _exit(127);
    }
    free(argv);
    close(p[1]);
    s->pid = pid;
    s->out_fd = p[0];

    /* Read up to the first newline: "envsrv listening on http://HOST:PORT". */
    int64_t deadline = now_ms() + TSUP_TIMEOUT_S * 1000;
    char *nl = NULL;
    while (!nl) {
        if (!wait_readable(s->out_fd, deadline)) {
            kill(pid, SIGKILL);
            fail_msg("envsrv did not print its listening line within %d s", TSUP_TIMEOUT_S);
        }
        ssize_t r = read(s->out_fd, s->out + s->out_len, sizeof s->out - 1 - s->out_len);
        if (r <= 0) {
            int st = 0;
            waitpid(pid, &st, 0);
            s->pid = -1;
            fail_msg("envsrv exited before listening (status %d)",
                     WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
        s->out_len += (size_t)r;
        s->out[s->out_len] = '\0';
        nl = strchr(s->out, '\n');
    }
    static const char prefix[] = "envsrv listening on http://";
    if (strncmp(s->out, prefix, sizeof prefix - 1) != 0) {
        kill(pid, SIGKILL);
        fail_msg("unexpected first line from envsrv: %.*s", (int)(nl - s->out), s->out);
    }
    const char *colon = NULL;
    for (const char *c = s->out; c < nl; c++)
        if (*c == ':')
            colon = c;
    assert_non_null(colon);
    s->port = (unsigned)strtoul(colon + 1, NULL, 10);
    assert_true(s->port > 0 && s->port < 65536);
    return 0;
}

/* Waits (bounded) for pid to exit; returns its status as an exit code. */
static int wait_exit(pid_t pid)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        int64_t deadline = now_ms() + TSUP_TIMEOUT_S * 1000;
        int ready = wait_readable(pfd, deadline);
        close(pfd);
        if (!ready) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("envsrv did not exit within %d s", TSUP_TIMEOUT_S);
        }
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            fail_msg("waitpid: %s", strerror(errno));
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int tsup_server_stop(tsup_server *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int status = wait_exit(s->pid);
    s->pid = -1;
    /* The server has exited, so this read ends at EOF. */
    for (;;) {
        ssize_t r = read(s->out_fd, s->out + s->out_len, sizeof s->out - 1 - s->out_len);
        if (r <= 0)
            break;
        s->out_len += (size_t)r;
        s->out[s->out_len] = '\0';
    }
    close(s->out_fd);
    s->out_fd = -1;
    return status;
}

/* Reads fd to EOF into a malloc'd string (deadline-bounded). */
static char *slurp(int fd, int64_t deadline)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (!wait_readable(fd, deadline))
            fail_msg("envsrv output did not end within %d s", TSUP_TIMEOUT_S);
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    return buf;
}

int tsup_run(char **out, char **err, const char *const *args)
{
    const char *bin = tsup_bin();
    assert_non_null(bin);
    char **argv = make_argv(bin, args, NULL);
    int po[2], pe[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(bin, argv);
        _exit(127);
    }
    free(argv);
    close(po[1]);
    close(pe[1]);
    int64_t deadline = now_ms() + TSUP_TIMEOUT_S * 1000;
    /* Outputs here are small (usage, a list), well under a pipe's buffer, so
     * reading one after the other cannot deadlock. */
    *out = slurp(po[0], deadline);
    *err = slurp(pe[0], deadline);
    close(po[0]);
    close(pe[0]);
    return wait_exit(pid);
}

void tsup_run_fails(int status, const char *needle, const char *const *args)
{
    char *out = NULL, *err = NULL;
    int rc = tsup_run(&out, &err, args);
    if (rc != status || !strstr(err, needle))
        fail_msg("exit %d (want %d), stderr lacks \"%s\": %s", rc, status, needle, err);
    free(out);
    free(err);
}

/* ---- HTTP client ------------------------------------------------------------------ */

void tsup_response_free(tsup_response *r)
{
    if (!r)
        return;
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int tsup_header(char *out, size_t outlen, const tsup_response *r, const char *name)
{
    size_t nlen = strlen(name);
    const char *line = r->headers;
    while (line && *line) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)(eol - v), v);
            return 0;
        }
        line = eol + 2;
    }
    return -1;
}

json_t *tsup_json(const tsup_response *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, JSON_ALLOW_NUL, &e);
    if (!j)
        fail_msg("response body is not JSON (%s): %.200s", e.text, r->body);
    return j;
}

int tsup_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = { .tv_sec = TSUP_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect to 127.0.0.1:%u: %s", port, strerror(errno));
    return fd;
}

int tsup_send_all(int fd, const void *buf, size_t len, int allow_reset)
{
    const char *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (allow_reset && (errno == EPIPE || errno == ECONNRESET))
                return -1;
            fail_msg("send: %s", strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

void tsup_send_request(int fd, const char *method, const char *path, const char *headers,
                       const void *body, size_t body_len, int keep_alive)
{
    size_t cap = strlen(path) + (headers ? strlen(headers) : 0) + 256;
    char *head = malloc(cap);
    assert_non_null(head);
    int n = snprintf(head, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: %s\r\n", method, path,
                     headers ? headers : "", keep_alive ? "keep-alive" : "close");
    if (body)
        n += snprintf(head + n, cap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                      body_len);
    n += snprintf(head + n, cap - (size_t)n, "\r\n");
    tsup_send_all(fd, head, (size_t)n, 0);
    free(head);
    /* A server may answer early (413) and close while we still send. */
    if (body && body_len)
        tsup_send_all(fd, body, body_len, 1);
}

int tsup_read_response(tsup_response *out, int fd)
{
    memset(out, 0, sizeof *out);
    size_t len = 0, cap = 8192;
    char *buf = malloc(cap);
    assert_non_null(buf);
    char *hend = NULL;
    /* Header block. */
    while (!hend) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            fail_msg("no response within %d s", TSUP_TIMEOUT_S);
        if (r <= 0) {
            free(buf);
            return -1;
        }
        len += (size_t)r;
        buf[len] = '\0';
        hend = strstr(buf, "\r\n\r\n");
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1)
        fail_msg("bad status line: %.80s", buf);
    size_t head_len = (size_t)(hend - buf) + 2;
    out->headers = strndup(buf, head_len);
    assert_non_null(out->headers);
    char cl[32];
    long long want = -1;
    if (tsup_header(cl, sizeof cl, out, "Content-Length") == 0)
        want = strtoll(cl, NULL, 10);
    size_t have = len - (head_len + 2);
    size_t bcap = want >= 0 ? (size_t)want + 1 : 8192;
    if (bcap < have + 1)
        bcap = have + 1;
    out->body = malloc(bcap);
    assert_non_null(out->body);
    memcpy(out->body, hend + 4, have);
    free(buf);
    while (want < 0 || have < (size_t)want) {
        if (have + 1 >= bcap) {
            bcap *= 2;
            out->body = realloc(out->body, bcap);
            assert_non_null(out->body);
        }
        size_t room = bcap - 1 - have;
        if (want >= 0 && room > (size_t)want - have)
            room = (size_t)want - have;
        ssize_t r = recv(fd, out->body + have, room, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            fail_msg("response body did not arrive within %d s", TSUP_TIMEOUT_S);
        if (r <= 0) {
            if (want >= 0)
                fail_msg("connection closed after %zu of %lld body bytes", have, want);
            break;
        }
        have += (size_t)r;
    }
    out->body[have] = '\0';
    out->body_len = have;
    return 0;
}

void tsup_request(tsup_response *out, unsigned port, const char *method, const char *path,
                  const char *headers, const void *body, size_t body_len)
{
    int fd = tsup_connect(port);
    tsup_send_request(fd, method, path, headers, body, body_len, 0);
    if (tsup_read_response(out, fd) != 0)
        fail_msg("%s %s: connection closed without a response", method, path);
    close(fd);
}

json_t *tsup_call(int *status, unsigned port, const char *method, const char *path, const char *body)
{
    tsup_response r;
    tsup_request(&r, port, method, path, NULL, body, body ? strlen(body) : 0);
    *status = r.status;
    json_t *j = tsup_json(&r);
    tsup_response_free(&r);
    return j;
}

const char *tsup_error_code(const json_t *j)
{
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    return c ? c : "";
}

void tsup_write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

void tsup_mkdtemp(char *out)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, 64, "%s/envsrv-test-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (!mkdtemp(out))
        fail_msg("mkdtemp: %s", strerror(errno));
}

void tsup_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

void tsup_stories260k(char *model, size_t model_len, char *tok, size_t tok_len)
{
    snprintf(model, model_len, "%s/models/stories260K/stories260K.bin", tsup_data_dir());
    snprintf(tok, tok_len, "%s/models/stories260K/tok512.bin", tsup_data_dir());
}

void tsup_write_story_env(char *env, size_t env_len, const char *dir)
{
    static const char story_env[] =
        "return {\n"
        "  name = \"story\",\n"
        "  description = \"reward: the completion's length in characters, over 100\",\n"
        "  dataset = { test = \"story.jsonl\" },\n"
        "  prompt = function(item) return { { role = \"user\", content = item.start } } end,\n"
        "  reward = function(item, completion) return #completion / 100 end,\n"
        "}\n";
    static const char story_data[] =
        "{\"start\": \"Once upon a time\"}\n{\"start\": \"The cat sat\"}\n{\"start\": \"Lily went\"}\n";
    tsup_write_file(dir, "story.lua", story_env);
    tsup_write_file(dir, "story.jsonl", story_data);
    snprintf(env, env_len, "%s/story.lua", dir);
}

void tsup_server_stop_in_test(tsup_server *s, int *up)
{
    TSUP_NEED_SERVER(*up);
    *up = 0;
    assert_int_equal(tsup_server_stop(s), 0);
}

int tsup_server_teardown(tsup_server *s, int *up)
{
    if (*up) {
        *up = 0;
        (void)tsup_server_stop(s);
    }
    return 0;
}
