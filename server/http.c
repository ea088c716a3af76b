/*
 * The libmicrohttpd glue, and nothing else: it collects a size-capped body
 * into an srv__request, checks the bearer token, hands the request to the
 * router, sends what the handler answered, records metrics, and frees all
 * per-request memory in one place (on_completed). It also owns the daemon's
 * life: srv_start binds and starts it, srv_stop drains and stops it.
 *
 * Threads: libmicrohttpd runs a pool of `threads` event loops (epoll where
 * available, else poll), each accepting from the shared listening socket and
 * running handlers to completion on its own thread. There is no thread per
 * request and no lock on the request path; environments keep one Lua state
 * per thread, so handlers do not wait for each other.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server/server_int.h"

/* A request as this file tracks it: the handlers' view plus transport state. */
typedef struct http_req {
    srv__request req;
    srv__handler handler;    /* NULL once an early answer (401/404/405/413) is queued */
    uint64_t start_ns;
    int status;              /* what was queued; 0 before that */
    int too_large;           /* a chunked body went over --max-body */
    size_t discarded;        /* bytes dropped since then */
    /* A SRV__ROUTE_POOL request: the connection is suspended while `job`
     * runs `pool_handler` on the worker pool into `deferred`; `deferred_ready`
     * (set before the resume) tells the call after the resume to send it. */
    srv__job job;
    srv__handler pool_handler;
    srv__response deferred;
    atomic_int deferred_ready;
} http_req;

/* Bytes of an over-limit chunked body read and dropped before the connection
 * is cut instead of answered. */
#define DISCARD_LIMIT (1u << 20)

/* Largest body buffer allocated up front from Content-Length. */
#define PREALLOC_MAX (1u << 20)

/* srv_stop waits on this for in-flight requests to finish. */
typedef struct drain_sync {
    pthread_mutex_t lock;
    pthread_cond_t done;
} drain_sync;

unsigned srv_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

unsigned srv_port(const srv_server *srv)
{
    return srv->port;
}

unsigned srv_threads(const srv_server *srv)
{
    return srv->threads;
}

/* ---- accessors handed to handlers -------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Query values arrive raw (see no_unescape); decode into request-owned memory. */
static const char *req_query(const srv__request *creq, const char *key)
{
    srv__request *req = (srv__request *)creq;
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
    if (!raw)
        return NULL;
    if (!strchr(raw, '%') && !strchr(raw, '+'))
        return raw;
    if (req->n_scratch == sizeof req->scratch / sizeof req->scratch[0])
        return raw;
    size_t len = strlen(raw);
    char *out = malloc(len + 1);
    if (!out)
        return raw;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (raw[i] == '%' && i + 2 < len && (hi = hexval(raw[i + 1])) >= 0 &&
            (lo = hexval(raw[i + 2])) >= 0 && (hi | lo) != 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = raw[i] == '+' ? ' ' : raw[i];
        }
    }
    out[o] = '\0';
    req->scratch[req->n_scratch++] = out;
    return out;
}

static const char *req_header(const srv__request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

/* ---- answers ------------------------------------------------------------------ */

/* Queues resp on conn; the body goes to libmicrohttpd without a copy. */
static enum MHD_Result send_response(struct MHD_Connection *conn, http_req *hr, srv__response *resp)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        resp->body_len, resp->body, resp->body_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE);
    if (!r) {
        if (!resp->body_static)
            free(resp->body);
        return MHD_NO;
    }
    enum MHD_Result ok = MHD_add_response_header(
        r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type ? resp->content_type : "application/json");
    if (ok == MHD_YES && resp->allow[0])
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow);
    if (ok == MHD_YES && resp->retry_after_s) {
        char secs[16];
        snprintf(secs, sizeof secs, "%u", resp->retry_after_s);
        ok = MHD_add_response_header(r, "Retry-After", secs);
    }
    if (ok == MHD_YES && resp->www_authenticate)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"envsrv\"");
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r); /* the queue holds its own reference */
    if (ok == MHD_YES)
        hr->status = resp->status;
    return ok;
}

/* Compares the presented token with the key in time that depends only on
 * the key's length, so response timing does not reveal a matching prefix. */
static int token_matches(const char *token, size_t token_len, const char *key, size_t key_len)
{
    volatile unsigned char diff = token_len != key_len;
    for (size_t i = 0; i < key_len; i++) {
        unsigned char t = i < token_len ? (unsigned char)token[i] : 0;
        diff |= t ^ (unsigned char)key[i];
    }
    return diff == 0;
}

static int authorized(struct MHD_Connection *conn, const srv_server *srv)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    size_t len = strlen(h);
    while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    return token_matches(h, len, srv->api_key, srv->api_key_len);
}

/* ---- the request callbacks ------------------------------------------------------ */

/* An answer decided before the body is read (401, 404, 405, 413). Any body
 * still on the wire is discarded by libmicrohttpd. */
static enum MHD_Result answer_early(struct MHD_Connection *conn, http_req *hr, srv__response *resp)
{
    hr->handler = NULL;
    return send_response(conn, hr, resp);
}

/* ---- slow routes on the worker pool ------------------------------------------ */

/* Runs on a pool worker (or, cancelled, on the thread stopping the pool).
 * After MHD_resume_connection the request may be completed and freed at any
 * moment by an HTTP thread, so nothing touches `hr` after it. */
static void pool_job(srv__job *job, int cancelled)
{
    http_req *hr = (http_req *)((char *)job - offsetof(http_req, job));
    if (cancelled) {
        srv__reply_error(&hr->deferred, 503, "shutting_down", "the server is shutting down");
        hr->deferred.retry_after_s = 1;
    } else {
        hr->pool_handler(&hr->deferred, &hr->req);
        if (!hr->deferred.body)
            srv__reply_error(&hr->deferred, 500, "internal", "handler gave no answer");
    }
    atomic_store(&hr->deferred_ready, 1);
    MHD_resume_connection(hr->req.conn);
}

/* Whether this request runs on the worker pool (see the SRV__ROUTE_* flags). */
static int wants_pool(const srv_server *srv, const srv__request *req)
{
    int flags = srv__routes[req->route].flags;
    if (flags & SRV__ROUTE_POOL)
        return 1;
    if (flags & SRV__ROUTE_GEN)   /* without a model the handler answers 409 at once */
        return srv->gen_pool != NULL;
    if (!(flags & SRV__ROUTE_POOL_IF_LONG))
        return 0;
    /* /v1/envs/{env}/...: that env. /v1/episodes/{id}/step names no env, so
     * any long-running hosted env sends it to the pool. */
    int by_env = req->n_params > 0 && strncmp(srv__routes[req->route].pattern, "/v1/envs/{env}", 14) == 0;
    for (size_t i = 0; i < srv->n_envs; i++)
        if (lenv_is_long_running(srv->envs[i]) &&
            (!by_env || strcmp(lenv_name(srv->envs[i]), req->params[0]) == 0))
            return 1;
    return 0;
}

/* Suspends the connection and queues its handler on the pool, so the HTTP
 * thread goes back to other connections. Suspending comes first: a worker
 * may finish and resume before this function returns, and resuming a
 * connection that is not yet suspended would be lost. A full queue (or a
 * stopping pool) answers 503 through the same suspend/resume path. */
static enum MHD_Result run_on_pool(struct MHD_Connection *conn, http_req *hr, srv__handler handler)
{
    hr->pool_handler = handler;
    hr->job.fn = pool_job;
    int gen = (srv__routes[hr->req.route].flags & SRV__ROUTE_GEN) != 0;
    MHD_suspend_connection(conn);
    int rc = srv__pool_submit(gen ? hr->req.srv->gen_pool : hr->req.srv->pool, &hr->job);
    if (rc != 0) {
        if (rc == -2)
            srv__reply_error(&hr->deferred, 503, "shutting_down", "the server is shutting down");
        else
            srv__reply_error(&hr->deferred, 503, "queue_full",
                             "too many requests are waiting for a %s; retry later",
                             gen ? "turn on the model" : "sandbox worker");
        hr->deferred.retry_after_s = 1;
        atomic_store(&hr->deferred_ready, 1);
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    srv_server *srv = cls;
    http_req *hr = *con_cls;
    srv__response resp = { 0 };

    if (hr && atomic_exchange(&hr->deferred_ready, 0)) {
        /* Resumed after a pool job: send what it answered (once). */
        resp = hr->deferred;
        memset(&hr->deferred, 0, sizeof hr->deferred);
        return send_response(conn, hr, &resp);
    }

    if (!hr) {
        /* First call: headers are in, the body (if any) is not. */
        hr = calloc(1, sizeof *hr);
        if (!hr)
            return MHD_NO;
        hr->start_ns = srv__now_ns();
        hr->req.method = method;
        hr->req.path = url;
        hr->req.srv = srv;
        hr->req.conn = conn;
        hr->req.query = req_query;
        hr->req.header = req_header;
        hr->req.route = SRV__ROUTE_UNMATCHED;
        *con_cls = hr;
        atomic_fetch_add(&srv->in_flight, 1);

        /* Route first so that even a 401 is counted under its route's
         * pattern; the key is checked before any other answer is given. */
        hr->handler = srv__route_match(&hr->req, &resp);
        if (atomic_load(&srv->draining)) {
            if (!resp.body_static)
                free(resp.body);
            memset(&resp, 0, sizeof resp);
            srv__reply_error(&resp, 503, "shutting_down", "the server is shutting down");
            return answer_early(conn, hr, &resp);
        }
        if (srv->api_key && !authorized(conn, srv)) {
            if (!resp.body_static)
                free(resp.body);
            memset(&resp, 0, sizeof resp);
            resp.www_authenticate = 1;
            srv__reply_error(&resp, 401, "unauthorized",
                             "missing or wrong API key; send 'Authorization: Bearer KEY'");
            return answer_early(conn, hr, &resp);
        }
        if (!hr->handler)
            return answer_early(conn, hr, &resp);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            /* libmicrohttpd has already rejected a malformed Content-Length. */
            unsigned long long n = strtoull(cl, NULL, 10);
            if (n > srv->max_body) {
                srv__reply_error(&resp, 413, "body_too_large",
                                 "request body of %llu bytes is over the limit of %zu bytes", n,
                                 srv->max_body);
                return answer_early(conn, hr, &resp);
            }
            if (n > 0) {
                /* Sized from the header, but a client may claim a large body
                 * and never send it: beyond PREALLOC_MAX, grow as data comes. */
                size_t cap = (size_t)n + 1 < PREALLOC_MAX ? (size_t)n + 1 : PREALLOC_MAX;
                hr->req.body = malloc(cap);
                if (!hr->req.body)
                    return MHD_NO;
                hr->req.body_cap = cap;
            }
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t chunk = *upload_data_size;
        *upload_data_size = 0;
        if (!hr->handler)
            return MHD_YES; /* already answered; drop the rest */
        if (hr->too_large || chunk > srv->max_body - hr->req.body_len) {
            /* A chunked body has no Content-Length to check up front, and
             * libmicrohttpd cannot queue an answer mid-body. Read and drop
             * the rest so the client gets its 413 at the end, but only up to
             * DISCARD_LIMIT: past that, cut the connection. */
            hr->too_large = 1;
            hr->discarded += chunk;
            return hr->discarded > DISCARD_LIMIT ? MHD_NO : MHD_YES;
        }
        if (hr->req.body_len + chunk + 1 > hr->req.body_cap) {
            size_t cap = hr->req.body_cap ? hr->req.body_cap : 4096;
            while (cap < hr->req.body_len + chunk + 1)
                cap *= 2;
            char *p = realloc(hr->req.body, cap);
            if (!p)
                return MHD_NO;
            hr->req.body = p;
            hr->req.body_cap = cap;
        }
        memcpy(hr->req.body + hr->req.body_len, upload_data, chunk);
        hr->req.body_len += chunk;
        return MHD_YES;
    }

    if (!hr->handler)
        return MHD_YES; /* the early answer is already queued */
    if (hr->too_large) {
        hr->handler = NULL;
        srv__reply_error(&resp, 413, "body_too_large", "request body is over the limit of %zu bytes",
                         srv->max_body);
        return send_response(conn, hr, &resp);
    }
    if (hr->req.body)
        hr->req.body[hr->req.body_len] = '\0';
    srv__handler handler = hr->handler;
    hr->handler = NULL;
    if (hr->req.route >= 0 && wants_pool(srv, &hr->req))
        return run_on_pool(conn, hr, handler);
    handler(&resp, &hr->req);
    if (!resp.body) /* a handler must always answer; this is our bug, not the client's */
        srv__reply_error(&resp, 500, "internal", "handler gave no answer");
    return send_response(conn, hr, &resp);
}

/* The one place per-request memory is freed, however the request ended. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    srv_server *srv = cls;
    http_req *hr = *con_cls;
    if (!hr)
        return;
    *con_cls = NULL;
    if (hr->status)
        srv__metrics_request(srv->metrics, hr->req.route, hr->status, srv__now_ns() - hr->start_ns);
    free(hr->req.body);
    for (size_t i = 0; i < hr->req.n_params; i++)
        free(hr->req.params[i]);
    for (size_t i = 0; i < hr->req.n_scratch; i++)
        free(hr->req.scratch[i]);
    free(hr);
    if (atomic_fetch_sub(&srv->in_flight, 1) == 1 && atomic_load(&srv->draining)) {
        drain_sync *ds = srv->drain_sync;
        pthread_mutex_lock(&ds->lock);
        pthread_cond_broadcast(&ds->done);
        pthread_mutex_unlock(&ds->lock);
    }
}

/* Paths and query strings are left encoded: the router decodes each path
 * parameter on its own, so "%2F" inside an id does not split a segment. */
static size_t no_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("envsrv: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ---- the daemon ------------------------------------------------------------------ */

/* Binds and listens on host:port; returns the socket or -1 with errbuf set.
 * Binding here (rather than in libmicrohttpd) gives precise errors and the
 * real port for --port 0. */
static int listen_on(unsigned *bound_port, int *is_v6, const char *host, unsigned port, char *errbuf,
                     size_t errlen)
{
    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%u", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(errbuf, errlen, "cannot resolve host '%s': %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            getsockname(fd, (struct sockaddr *)&ss, &sl);
            *is_v6 = ss.ss_family == AF_INET6;
            *bound_port = ntohs(*is_v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
            break;
        }
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(errbuf, errlen, "cannot listen on %s:%u: %s", host, port, strerror(saved));
    return fd;
}

int srv_start(srv_server **out, const srv_options *opts, char *errbuf, size_t errlen)
{
    int rc = -1, fd = -1;
    *out = NULL;
    srv_server *srv = calloc(1, sizeof *srv);
    drain_sync *ds = calloc(1, sizeof *ds);
    if (!srv || !ds) {
        snprintf(errbuf, errlen, "out of memory");
        free(ds);
        goto done;
    }
    pthread_mutex_init(&ds->lock, NULL);
    pthread_cond_init(&ds->done, NULL);
    srv->drain_sync = ds;
    srv->threads = opts->threads ? opts->threads : srv_default_threads();
    srv->max_body = opts->max_body ? opts->max_body : SRV_DEFAULT_MAX_BODY;
    if (opts->api_key && opts->api_key[0]) {
        srv->api_key = strdup(opts->api_key);
        srv->api_key_len = strlen(opts->api_key);
    }
    srv->envs = calloc(opts->n_envs ? opts->n_envs : 1, sizeof *srv->envs);
    srv->episodes = srv_episodes_new(opts->max_episodes ? opts->max_episodes : SRV_DEFAULT_MAX_EPISODES,
                                     (uint64_t)(opts->episode_ttl_s ? opts->episode_ttl_s
                                                                    : SRV_DEFAULT_EPISODE_TTL) * 1000u);
    srv->metrics = srv__metrics_new(opts->envs, opts->n_envs);
    if (srv->metrics && srv__buffer_new(&srv->buffer, &opts->buffer, errbuf, errlen) != 0)
        goto done;
    if ((opts->api_key && opts->api_key[0] && !srv->api_key) || !srv->envs || !srv->episodes ||
        !srv->metrics) {
        snprintf(errbuf, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < opts->n_envs; i++)
        srv->envs[i] = opts->envs[i];
    srv->n_envs = opts->n_envs;

    const char *host = opts->host ? opts->host : "127.0.0.1";
    int is_v6 = 0;
    fd = listen_on(&srv->port, &is_v6, host, opts->port, errbuf, errlen);
    if (fd < 0)
        goto done;

    /* The sandbox settings, with the maxima defaulted, and the pool for the
     * SRV__ROUTE_POOL routes. */
    srv->sandbox = opts->sandbox;
    sbx_limits *mx = &srv->sandbox.max;
    mx->cpu_ms = mx->cpu_ms ? mx->cpu_ms : SRV_DEFAULT_SANDBOX_CPU_MS;
    mx->wall_ms = mx->wall_ms ? mx->wall_ms : SRV_DEFAULT_SANDBOX_WALL_MS;
    mx->memory_mb = mx->memory_mb ? mx->memory_mb : SRV_DEFAULT_SANDBOX_MEMORY_MB;
    mx->output_bytes = mx->output_bytes ? mx->output_bytes : SRV_DEFAULT_SANDBOX_OUTPUT;
    srv->sandbox.workers = srv->sandbox.workers ? srv->sandbox.workers : srv_default_threads();
    srv->sandbox.queue = srv->sandbox.queue ? srv->sandbox.queue : SRV_DEFAULT_SANDBOX_QUEUE;
    srv->pool = srv__pool_new(srv->sandbox.workers, srv->sandbox.queue, errbuf, errlen);
    if (!srv->pool)
        goto done;
    /* The model: one generation worker, so requests take turns on it in
     * arrival order and never hold a sandbox worker while they wait. */
    srv->started = (long long)time(NULL);
    srv->model_name = strdup(opts->model_name ? opts->model_name : "envsrv");
    if (!srv->model_name) {
        snprintf(errbuf, errlen, "out of memory");
        goto done;
    }
    if (opts->model && (srv__sampler_local(&srv->sampler, opts->model, opts->gen_threads, errbuf, errlen) != 0 ||
                        !(srv->gen_pool = srv__pool_new(1, SRV_GEN_QUEUE, errbuf, errlen))))
        goto done;

    /* MHD_ALLOW_SUSPEND_RESUME: pool routes suspend their connection. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_TURBO |
                     MHD_ALLOW_SUSPEND_RESUME;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    if (is_v6)
        flags |= MHD_USE_IPv6;
    /* The thread pool option only when there is a pool: libmicrohttpd warns
     * about a pool of 1, which is its plain single internal thread. */
    struct MHD_OptionItem pool[] = {
        { MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)srv->threads, NULL },
        { MHD_OPTION_END, 0, NULL },
    };
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->port, NULL, NULL, on_request, srv,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, so it gets every message */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SRV_CONNECTION_TIMEOUT,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
        MHD_OPTION_ARRAY, srv->threads > 1 ? pool : pool + 1,
        MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(errbuf, errlen, "cannot start the HTTP server on %s:%u (see the libmicrohttpd message above)",
                 host, srv->port);
        goto done;
    }
    fd = -1; /* the daemon owns it now */
    if (srv__producers_start(&srv->producers, srv, &opts->rollouts, opts->model, errbuf, errlen) != 0)
        goto done;
    *out = srv;
    srv = NULL;
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    srv_free(srv);
    return rc;
}

void srv_stop(srv_server *srv)
{
    if (!srv || !srv->daemon)
        return;
    /* Take no new work, then wait for requests already started to be
     * answered before tearing the threads down. MHD_quiesce_daemon is not
     * used: with a thread pool on epoll it races with the pool threads, which
     * remove the listening socket from their epoll sets themselves, and
     * libmicrohttpd aborts the process when it loses that race ("Failed to
     * remove listen FD from epoll set", seen in a CI run). Instead, requests
     * that arrive while draining are answered 503 at once (on_request). */
    atomic_store(&srv->draining, 1);
    /* Rollout workers first: a group being generated is canceled, and
     * nothing pushes into the buffer after this. */
    srv__producers_stop(srv->producers);
    srv->producers = NULL;
    /* Queued pool jobs are answered 503 and running ones finish (and resume
     * their connections) before the drain below, which they are part of; a
     * pool route arriving later is answered 503 at once. */
    srv__pool_stop(srv->pool);
    srv__pool_stop(srv->gen_pool);
    drain_sync *ds = srv->drain_sync;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SRV_SHUTDOWN_GRACE_MS / 1000;
    pthread_mutex_lock(&ds->lock);
    while (atomic_load(&srv->in_flight) > 0) {
        if (pthread_cond_timedwait(&ds->done, &ds->lock, &deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&ds->lock);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
}

void srv_free(srv_server *srv)
{
    if (!srv)
        return;
    srv_stop(srv);
    srv_episodes_free(srv->episodes);
    srv__metrics_free(srv->metrics);
    srv__buffer_free(srv->buffer);
    srv__pool_free(srv->pool);
    srv__pool_free(srv->gen_pool);
    srv__sampler_free(srv->sampler);
    free(srv->model_name);
    free(srv->envs);
    free(srv->api_key);
    if (srv->drain_sync) {
        drain_sync *ds = srv->drain_sync;
        pthread_mutex_destroy(&ds->lock);
        pthread_cond_destroy(&ds->done);
        free(ds);
    }
    free(srv);
}
