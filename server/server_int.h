/*
 * Internals shared by the files of server/ (not part of the public API; see
 * server.h for that). Names carry a double underscore: srv__.
 *
 *   http.c      libmicrohttpd glue: body collection, limits, auth, responses,
 *               and the daemon's life (srv_start, srv_stop)
 *   router.c    the routing table and path matching
 *   api_*.c     handlers: request in, status + JSON body out
 *   episodes.c  the episode store
 *   metrics.c   Prometheus counters (C11 atomics)
 */
#ifndef ENVSRV_SERVER_INT_H
#define ENVSRV_SERVER_INT_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lua/lenv.h"
#include "server/server.h"

#define SRV__MAX_PARAMS 4           /* path parameters in one route */
#define SRV__MAX_PARAM_LEN 1024     /* bytes of one decoded path parameter */

typedef struct srv__metrics srv__metrics;

/* The server object. Everything here is set at start and read-only while the
 * daemon runs, except what is atomic or behind the store's own lock. */
struct srv_server {
    struct MHD_Daemon *daemon;  /* owned; NULL once stopped */
    unsigned port;
    unsigned threads;
    size_t max_body;
    char *api_key;              /* owned; NULL when none */
    size_t api_key_len;
    lenv_env **envs;            /* owned array of borrowed envs */
    size_t n_envs;
    srv_episodes *episodes;     /* owned */
    srv__metrics *metrics;      /* owned */
    atomic_long in_flight;      /* requests between first callback and completion */
    atomic_int draining;        /* set by srv_stop: completions signal `drained` */
    void *drain_sync;           /* owned: mutex + condvar, see server.c */
};

/* One HTTP request as the handlers see it. Created by http.c on the first
 * callback of a request and freed by it in the completion callback. */
typedef struct srv__request {
    const char *method;         /* borrowed from libmicrohttpd, valid for the request */
    const char *path;           /* borrowed, without the query string */
    char *body;                 /* owned; NUL-terminated (the NUL is not in body_len) */
    size_t body_len;
    size_t body_cap;
    char *params[SRV__MAX_PARAMS]; /* owned, percent-decoded path parameters */
    size_t n_params;
    int route;                  /* index in the routing table, or SRV__ROUTE_UNMATCHED */
    srv_server *srv;            /* borrowed */
    /* The query parameter `key`, decoded, through the transport so that
     * handlers need not know it. Returns a string valid for the request, or
     * NULL when absent. */
    const char *(*query)(const struct srv__request *req, const char *key);
    void *conn;                 /* the transport's connection, for the accessors */
    char *scratch[4];           /* owned: decoded query values handed out by `query` */
    size_t n_scratch;
} srv__request;

/* What a handler answers. The body is either owned (freed with free()) or
 * static; http.c hands it to libmicrohttpd without copying. */
typedef struct srv__response {
    int status;
    char *body;                 /* owned unless body_static */
    size_t body_len;
    int body_static;
    const char *content_type;   /* static; NULL means application/json */
    char allow[32];             /* "GET, POST" for 405, else "" */
    int www_authenticate;       /* 401: add WWW-Authenticate: Bearer */
} srv__response;

typedef void (*srv__handler)(srv__response *resp, srv__request *req);

/* ---- router.c ---------------------------------------------------------------- */

#define SRV__ROUTE_UNMATCHED (-1)

typedef struct srv__route {
    const char *method;
    const char *pattern;        /* "/v1/envs/{env}/items/{id}"; also the metrics label */
    srv__handler handler;
} srv__route;

extern const srv__route srv__routes[];
extern const size_t srv__n_routes;

/*
 * Matches req->method and req->path against the table. On a match sets
 * req->route and req->params and returns the handler. Otherwise returns NULL
 * with resp filled: 404 not_found, or 405 method_not_allowed with Allow (and
 * 404/400 for a path parameter that is too long or decodes to a NUL byte).
 */
srv__handler srv__route_match(srv__request *req, srv__response *resp);

/* ---- responses (api_common.c) ------------------------------------------------ */

/* Sets a JSON body from `body`, whose reference is stolen. An encoding
 * failure becomes a 500 internal error. */
void srv__reply_json(srv__response *resp, int status, json_t *body);

/* {"error": {"code", "message"}} with the message printf-formatted. */
void srv__reply_error(srv__response *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Maps an lenv_error to its status and code (see docs/api.md); LENV_ESCRIPT
 * adds "source" and "line" and counts a Lua error for env `env_index`. */
void srv__reply_lenv_error(srv__response *resp, srv_server *srv, size_t env_index,
                           const lenv_error *err);

/*
 * Parses req->body as a JSON object. Returns a new reference, or NULL with
 * resp filled (400 bad_json with Jansson's line and column, 400 bad_request
 * when it is not an object). An empty body gives {} when empty_ok is set.
 */
json_t *srv__parse_object(srv__response *resp, const srv__request *req, int empty_ok);

/* The env named by path parameter `param`, or NULL with 404 unknown_env set. */
lenv_env *srv__find_env(size_t *index, srv__response *resp, const srv__request *req, size_t param);

/* A JSON type name for messages: "a number", "an object", "null" ... */
const char *srv__json_kind(const json_t *v);

/* Resolves {"item_id": "..."} or {"item": {...}} in `body`: *item is a
 * borrowed reference (from the env or from body), *item_id the id shown in
 * answers (borrowed, may be NULL for an inline item without "id"). Returns 0
 * or -1 with resp filled. */
int srv__resolve_item(const json_t **item, const char **item_id, srv__response *resp,
                      srv_server *srv, size_t env_index, const json_t *body);

/* ---- handlers (api_*.c) -------------------------------------------------------- */

void srv__api_health(srv__response *resp, srv__request *req);
void srv__api_envs_list(srv__response *resp, srv__request *req);
void srv__api_env_get(srv__response *resp, srv__request *req);
void srv__api_item_get(srv__response *resp, srv__request *req);
void srv__api_sample(srv__response *resp, srv__request *req);
void srv__api_score(srv__response *resp, srv__request *req);
void srv__api_episode_create(srv__response *resp, srv__request *req);
void srv__api_episode_step(srv__response *resp, srv__request *req);
void srv__api_metrics(srv__response *resp, srv__request *req);

/* ---- metrics.c ------------------------------------------------------------------ */

/* Counters for n_routes routes (plus "unmatched") and the given envs (names
 * borrowed, must outlive the metrics). NULL only when out of memory. */
srv__metrics *srv__metrics_new(lenv_env *const *envs, size_t n_envs);
void srv__metrics_free(srv__metrics *m);

/* One finished request: route index (or SRV__ROUTE_UNMATCHED), HTTP status,
 * duration in nanoseconds. Lock-free. */
void srv__metrics_request(srv__metrics *m, int route, int status, uint64_t duration_ns);

/* n completions of env `env_index` scored, their rewards summing to reward_sum. */
void srv__metrics_scored(srv__metrics *m, size_t env_index, size_t n, double reward_sum);

/* A Lua failure in env `env_index`. */
void srv__metrics_lua_error(srv__metrics *m, size_t env_index);

/* The Prometheus text exposition. Returns a malloc'd NUL-terminated string
 * the caller frees (length in *len), or NULL when out of memory. */
char *srv__metrics_render(size_t *len, srv__metrics *m, size_t episodes_open, long in_flight);

/* Monotonic nanoseconds. */
uint64_t srv__now_ns(void);

#endif
