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

#include "inference/inference.h"
#include "lua/lenv.h"
#include "server/server.h"

#define SRV__MAX_PARAMS 4           /* path parameters in one route */
#define SRV__MAX_PARAM_LEN 1024     /* bytes of one decoded path parameter */

typedef struct srv__metrics srv__metrics;
typedef struct srv__pool srv__pool;
typedef struct srv__buffer srv__buffer;
typedef struct srv__sampler srv__sampler;
typedef struct srv__producers srv__producers;

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
    srv__pool *pool;            /* owned: runs the SRV__ROUTE_POOL routes */
    srv_sandbox_options sandbox; /* copied from srv_options, limits defaulted */
    srv__buffer *buffer;        /* owned: the trajectory buffer (buffer.c) */
    srv__sampler *sampler;      /* owned; NULL without --model */
    srv__pool *gen_pool;        /* owned: one worker running the SRV__ROUTE_GEN routes */
    srv__producers *producers;  /* owned: rollout workers feeding the buffer, or NULL */
    char *model_name;           /* owned */
    long long started;          /* Unix time of srv_start, for /v1/models */
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
    /* Request header `name` (case-insensitive), borrowed for the request, or
     * NULL when absent. */
    const char *(*header)(const struct srv__request *req, const char *name);
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
    unsigned retry_after_s;     /* 503: add Retry-After when non-zero */
} srv__response;

typedef void (*srv__handler)(srv__response *resp, srv__request *req);

/* ---- router.c ---------------------------------------------------------------- */

#define SRV__ROUTE_UNMATCHED (-1)

/* Route flags. SRV__ROUTE_POOL: the handler may take long (it runs
 * untrusted code), so http.c suspends the connection and runs it on the
 * worker pool instead of on an HTTP thread; a full queue is a 503. */
#define SRV__ROUTE_INLINE 0
#define SRV__ROUTE_POOL   1
/* SRV__ROUTE_POOL_IF_LONG: on the pool when the env of the request (path
 * parameter 0, or for episode steps any hosted env) is long-running
 * (lenv_is_long_running: it runs code), inline otherwise, so fast envs keep
 * the short path. */
#define SRV__ROUTE_POOL_IF_LONG 2
/* SRV__ROUTE_GEN: generation, on the server's one generation worker (the
 * model runs one request at a time; a full queue is a 503). */
#define SRV__ROUTE_GEN 4

typedef struct srv__route {
    const char *method;
    const char *pattern;        /* "/v1/envs/{env}/items/{id}"; also the metrics label */
    srv__handler handler;
    int flags;                  /* SRV__ROUTE_* */
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
 * resp filled (400 bad_json with the parser's line and column, 400 bad_request
 * when it is not an object). An empty body gives {} when empty_ok is set.
 */
json_t *srv__parse_object(srv__response *resp, const srv__request *req, int empty_ok);

/*
 * Parses buf[0..len) as JSON (json_parse.c): accepts and rejects exactly what
 * json_loadb(buf, len, flags, err) does and builds equal values of the same
 * types (integer and real as Jansson decides), several times faster; used for
 * every request body. flags: any of JSON_DECODE_ANY and JSON_ALLOW_NUL, no
 * others. Nesting deeper than JSON_PARSER_MAX_DEPTH is an error, never a deep
 * C stack. Returns a new reference the caller must json_decref(), or NULL with
 * *err (when err is not NULL) holding a one-line message, the 1-based line and
 * column (in characters) of the offending byte and its byte offset.
 */
json_t *srv__json_parse(const char *buf, size_t len, size_t flags, json_error_t *err);

/* The env named by path parameter `param`, or NULL with 404 unknown_env set. */
lenv_env *srv__find_env(size_t *index, srv__response *resp, const srv__request *req, size_t param);

/* A JSON type name for messages: "a number", "an object", "null" ... */
const char *srv__json_kind(const json_t *v);

/* Resolves {"item_id": "..."} or {"item": {...}} in `body`: *item is a new
 * reference the caller must json_decref() (a stored record, a generated item
 * of a procedural env, or the inline object), *item_id the id shown in
 * answers (borrowed from body, may be NULL for an inline item without "id").
 * Returns 0 or -1 with resp filled. */
int srv__resolve_item(json_t **item, const char **item_id, srv__response *resp,
                      srv_server *srv, size_t env_index, const json_t *body);

/* ---- handlers (api_*.c) -------------------------------------------------------- */

void srv__api_health(srv__response *resp, srv__request *req);
void srv__api_envs_list(srv__response *resp, srv__request *req);
void srv__api_env_get(srv__response *resp, srv__request *req);
void srv__api_item_get(srv__response *resp, srv__request *req);
void srv__api_sample(srv__response *resp, srv__request *req);
void srv__api_challenge(srv__response *resp, srv__request *req);
void srv__api_score(srv__response *resp, srv__request *req);
void srv__api_episode_create(srv__response *resp, srv__request *req);
void srv__api_episode_step(srv__response *resp, srv__request *req);
void srv__api_metrics(srv__response *resp, srv__request *req);
void srv__api_sandbox_info(srv__response *resp, srv__request *req);
void srv__api_sandbox_run(srv__response *resp, srv__request *req);
void srv__api_rollouts(srv__response *resp, srv__request *req);
void srv__api_completions(srv__response *resp, srv__request *req);
void srv__api_chat_completions(srv__response *resp, srv__request *req);
void srv__api_models(srv__response *resp, srv__request *req);

/* Sampling parameters of a generation request: options plus storage for the
 * stop strings (borrowed from the request body). */
typedef struct srv__gen_params {
    inf_gen_options opts;
    const char *stops[INF_MAX_STOPS];
} srv__gen_params;

/*
 * Reads temperature, top_p, top_k, min_p, seed, stop (a string or an array
 * of strings), the sample count `n_key` (1..SRV_GEN_MAX_SAMPLES; NULL: none)
 * and the token budget `max_key` (1..max_tokens_cap) from `body` over the
 * defaults already in p->opts. Returns 0, or -1 with *param naming the field
 * at fault and a one-line message in msg. (api_generate.c)
 */
int srv__parse_gen_params(srv__gen_params *p, const json_t *body, const char *n_key, const char *max_key,
                          int max_tokens_cap, const char **param, char *msg, size_t msglen);

/* ---- workers.c: the worker pool -------------------------------------------------- */

/* One job: a node the submitter owns (embedded in its request) and keeps
 * alive until `fn` has run. `fn` runs exactly once: on a worker with
 * cancelled = 0, or, for a job still queued at srv__pool_stop, on the thread
 * calling it with cancelled = 1. */
typedef struct srv__job srv__job;
typedef void (*srv__job_fn)(srv__job *job, int cancelled);
struct srv__job {
    srv__job_fn fn;
    srv__job *next;             /* the queue's link */
};

/* Starts `workers` threads (0 is taken as 1) over a FIFO of at most
 * queue_max waiting jobs. Returns a pool to free with srv__pool_free, or NULL
 * with a one-line reason in errbuf. */
srv__pool *srv__pool_new(unsigned workers, size_t queue_max, char *errbuf, size_t errlen);

/* Queues `job` (borrowed until its fn has run). Returns 0, -1 when the
 * queue is full, or -2 when the pool is stopping; fn is then never called. */
int srv__pool_submit(srv__pool *p, srv__job *job);

/* Jobs waiting, jobs running and worker threads, read under the lock. */
void srv__pool_stats(size_t *queued, unsigned *running, unsigned *workers, srv__pool *p);

/* Cancels the queued jobs (their fn runs with cancelled = 1, on this
 * thread), waits for the running ones and joins the workers. Later submits
 * fail. Calling it twice is harmless; NULL does nothing. */
void srv__pool_stop(srv__pool *p);

/* srv__pool_stop()s if needed and frees the pool; NULL does nothing. */
void srv__pool_free(srv__pool *p);

/* The Atropos-compatible trajectory routes (api_atropos.c, docs/trajectory.md). */
void srv__api_register(srv__response *resp, srv__request *req);
void srv__api_register_env(srv__response *resp, srv__request *req);
void srv__api_disconnect_env(srv__response *resp, srv__request *req);
void srv__api_scored_data(srv__response *resp, srv__request *req);
void srv__api_scored_data_list(srv__response *resp, srv__request *req);
void srv__api_batch(srv__response *resp, srv__request *req);
void srv__api_status(srv__response *resp, srv__request *req);
void srv__api_status_env(srv__response *resp, srv__request *req);
void srv__api_info(srv__response *resp, srv__request *req);
void srv__api_wandb_info(srv__response *resp, srv__request *req);
void srv__api_latest_example(srv__response *resp, srv__request *req);
void srv__api_reset_data(srv__response *resp, srv__request *req);
void srv__api_policy(srv__response *resp, srv__request *req);

/* ---- buffer.c: the trajectory buffer ------------------------------------------
 *
 * Scored GRPO groups from environment workers, queued oldest-first, validated,
 * bounded, stamped with a policy version and journaled (journal.c); the
 * trainer takes fixed-size batches. One module for every producer: the HTTP
 * routes above and in-process callers (built-in environments, bench/) use the
 * same functions. Thread-safe: one mutex for the state; fsyncs run outside it
 * and are shared between concurrent callers (group commit).
 *
 * Every function returns 0 or one of the codes below with a one-line message
 * in err (errlen bytes) that can be shown to a user as it is.
 */
#define SRV__BUF_EINVALID  (-1)   /* bad input: 422 */
#define SRV__BUF_EFULL     (-2)   /* the queue is at --max-queue: 503 + Retry-After */
#define SRV__BUF_EIO       (-3)   /* the journal could not be written: 500 */
#define SRV__BUF_ENOTFOUND (-4)   /* unknown env_id: 404 */
#define SRV__BUF_ESTATE    (-5)   /* no trainer registered yet: 409 */
#define SRV__BUF_ENOMEM    (-6)

/* Opens the buffer and rebuilds its state from the journal, if any. *out is
 * a new buffer the caller frees with srv__buffer_free (NULL is fine). */
int srv__buffer_new(srv__buffer **out, const srv_buffer_options *opts, char *err, size_t errlen);
void srv__buffer_free(srv__buffer *b);

/* POST /register: *out is a new reference {"uuid"}. `cfg` is borrowed. */
int srv__buffer_register(json_t **out, srv__buffer *b, const json_t *cfg, char *err, size_t errlen);

/* POST /register-env: *out is a new reference (Atropos's answer). */
int srv__buffer_register_env(json_t **out, srv__buffer *b, const json_t *req, char *err, size_t errlen);

/* POST /disconnect-env. */
int srv__buffer_disconnect_env(srv__buffer *b, long long env_id, char *err, size_t errlen);

/*
 * Validates every group of the array `groups`, then queues all of them or
 * none, and returns once they are durable in the journal. The groups are
 * taken by reference (the buffer adds "policy_version" and the optional
 * fields as null); the caller keeps its reference to the array and must not
 * change the groups afterwards. *accepted counts the groups queued (flat
 * groups dropped under --drop-flat-groups are not). `raw`, when not NULL,
 * holds the JSON text each group was parsed from (raw_lens[i] bytes,
 * borrowed): the journal then stores it as it is instead of encoding the
 * group again, which is a third of the cost of a push. As in Atropos, a
 * group whose size differs from its env's group_size waits in that env's
 * buffer until buffered groups add up to group_size; *buffer_size (when not
 * NULL) is then the sequences waiting there, else -1.
 */
int srv__buffer_push(size_t *accepted, long long *buffer_size, srv__buffer *b, json_t *groups,
                     const char *const *raw, const size_t *raw_lens, char *err, size_t errlen);

/* GET /batch: *out is a new reference to an array of groups holding exactly
 * batch_size sequences, or NULL when no batch can be formed yet. */
int srv__buffer_batch(json_t **out, srv__buffer *b, char *err, size_t errlen);

/* POST /v1/policy: announces the trainer's current policy version. */
int srv__buffer_set_policy(json_t **out, srv__buffer *b, long long version, char *err, size_t errlen);

/* GET /status, /info, /wandb_info, /latest_example: new references (NULL
 * only when out of memory). */
json_t *srv__buffer_status(srv__buffer *b);
json_t *srv__buffer_info(srv__buffer *b);
json_t *srv__buffer_wandb_info(srv__buffer *b);
json_t *srv__buffer_latest(srv__buffer *b);

/* GET /status-env: *out is a new reference. */
int srv__buffer_status_env(json_t **out, srv__buffer *b, long long env_id, char *err, size_t errlen);

/* GET /reset_data: forgets the trainer, the envs, the queue and the step. */
int srv__buffer_reset(srv__buffer *b, char *err, size_t errlen);

/* ---- buffer_check.c: validation of scored groups ------------------------------- */

#define SRV__BUFFER_MAX_ENVS 256    /* environments registered at once (until /reset_data) */

/* What validation needs from the buffer's state, read once under its lock. */
typedef struct srv__group_limits {
    long long max_token_len;  /* 0: no trainer yet, no limit */
    long long vocab;          /* token ids must be under this */
    size_t n_envs;            /* registered envs: valid env_id values are 0..n_envs-1 */
    long long env_max[SRV__BUFFER_MAX_ENVS]; /* max_token_length of each env, 0: none */
} srv__group_limits;

/* Checks group number `gi` against the Atropos ScoredData schema and `lim`;
 * *env_id gets its env_id (-1 when none). Returns 0, or -1 with `err` saying
 * which group, sequence and field is wrong. */
int srv__group_check(long long *env_id, const json_t *g, size_t gi, const srv__group_limits *lim, char *err,
                     size_t errlen);

/* 1 when all the (already checked) group's scores are equal. */
int srv__group_is_flat(const json_t *g);

/* ---- journal.c: the buffer's write-ahead log -------------------------------------
 *
 * One file DIR/journal of framed records (magic, length, CRC-32, payload).
 * Appends are serialized by the caller; srv__journal_sync makes everything up
 * to a ticket durable, one fdatasync serving every thread waiting at the time.
 */
typedef struct srv__journal srv__journal;

/* Called once per intact record while opening, in file order. */
typedef int (*srv__journal_replay_fn)(void *payload, const char *rec, size_t len, char *err,
                                      size_t errlen);

/* Opens DIR/journal when it exists (replaying it, dropping a torn tail) and
 * otherwise creates it at the first append. *out must be srv__journal_free'd. */
int srv__journal_open(srv__journal **out, const char *dir, srv__journal_replay_fn fn, void *payload,
                      char *err, size_t errlen);
void srv__journal_free(srv__journal *j);

/* Appends n records in one write; *ticket is what srv__journal_sync waits for. */
int srv__journal_append(uint64_t *ticket, srv__journal *j, char *const *recs, const size_t *lens,
                        size_t n, char *err, size_t errlen);

/* Returns once everything appended up to `ticket` is on disk. */
int srv__journal_sync(srv__journal *j, uint64_t ticket, char *err, size_t errlen);

/* Replaces the file with `recs` (a snapshot of the live state), atomically. */
int srv__journal_rewrite(srv__journal *j, char *const *recs, const size_t *lens, size_t n, char *err,
                         size_t errlen);

/* Bytes in the journal file now. */
uint64_t srv__journal_size(srv__journal *j);

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

/* A group of the built-in rollout workers: queued in the buffer, or not. */
void srv__metrics_rollout(srv__metrics *m, int queued);

/* The Prometheus text exposition. Returns a malloc'd NUL-terminated string
 * the caller frees (length in *len), or NULL when out of memory. */
char *srv__metrics_render(size_t *len, srv__metrics *m, size_t episodes_open, long in_flight);

/* Monotonic nanoseconds. */
uint64_t srv__now_ns(void);


/* ---- sampler.c: generation for rollouts ------------------------------------------
 *
 * Shared by `envsrv eval`, `envsrv rollout` and the server's generation
 * routes, so that a group is generated, scored and written one way.
 */

/* Results of generation besides 0. */
#define SRV__GEN_EINVALID (-1)  /* bad input: the prompt cannot be encoded, bad options */
#define SRV__GEN_ETOOLONG (-2)  /* the prompt leaves no room in the model's context */
#define SRV__GEN_EENV     (-3)  /* the environment failed (unknown item, Lua error): see lenv_error */
#define SRV__GEN_ENOMEM   (-4)
#define SRV__GEN_EREMOTE  (-5)  /* an external server failed or answered garbage */

/* The built-in engine over `b` (borrowed; it must outlive the sampler) with
 * n_threads threads per generation. Generations are serialised by a mutex,
 * so one sampler may be shared by every HTTP worker. 0, or -1 with errbuf. */
int srv__sampler_local(srv__sampler **out, const inf_bundle *b, int n_threads, char *err, size_t errlen);
void srv__sampler_free(srv__sampler *s);

/* A prompt's completions. Everything is owned; free with srv__completions_free. */
typedef struct srv__completions {
    inf_result res;             /* the samples; tokens empty when !tokens_known */
    int *prompt;                /* (n_prompt,) prompt ids; NULL when !tokens_known */
    size_t n_prompt;
    int tokens_known;           /* 0: a remote server gave text and logprobs only */
} srv__completions;

void srv__completions_free(srv__completions *c);

/* ---- producer.c: built-in rollout workers feeding the buffer ------------------------ */

/* Starts o->workers threads (none when 0) that register with srv's buffer
 * once a trainer has started, then generate, score and push groups of o->env
 * until srv__producers_stop. Needs srv's sampler and buffer. *out is NULL
 * when there are no workers. 0, or -1 with err. */
int srv__producers_start(srv__producers **out, srv_server *srv, const srv_rollout_options *o,
                         const inf_bundle *model, char *err, size_t errlen);

/* Stops the workers (a group being generated is canceled at its next
 * step; nothing is pushed after this returns), joins them and frees p.
 * NULL is fine. */
void srv__producers_stop(srv__producers *p);

/* ---- json_dump.c: replies' JSON text ------------------------------------------------ */

/*
 * The text json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) gives, byte for
 * byte, written faster.
 * Returns a new NUL-terminated string (free() it; *len, when not NULL, gets
 * its length), or NULL when out of memory, for NULL, or for a value nested
 * deeper than 4096 levels.
 */
char *srv__json_dump(const json_t *v, size_t *len);

/* ---- openai_client.c: an external OpenAI-compatible server ---------------------- */
typedef struct srv__remote srv__remote;

typedef struct srv__remote_options {
    const char *base_url;       /* "http://host:port" or ".../v1" */
    const char *api_key;        /* NULL or "": no Authorization header */
    const char *model_name;     /* the request's "model"; NULL leaves it out */
    long timeout_ms;            /* per request; 0 means 600 s */
    int retries;                /* more tries after a transient failure (no
                                 * connection, timeout, 408/409/429/5xx) */
    /* A local copy of the served model's files (borrowed, may be NULL): its
     * chat template renders prompts and its tokenizer gives prompt ids, and
     * token ids are asked for, so groups carry tokens. */
    const inf_bundle *bundle;
    const char *chat_template;  /* without a bundle: as inf_chat_template_load_any; NULL: plain */
    inf_render_fn render;       /* without a bundle: overrides chat_template (a Lua template) */
    void *render_payload;
} srv__remote_options;

/* 0 with *out new (free with srv__remote_free), or -1 with err. */
int srv__remote_new(srv__remote **out, const srv__remote_options *o, char *err, size_t errlen);
void srv__remote_free(srv__remote *r);

/* The completions URL requests go to. Borrowed from r. */
const char *srv__remote_url(const srv__remote *r);

/* As srv__sampler_generate, over POST /v1/completions. */
int srv__remote_generate(srv__completions *out, srv__remote *r, const json_t *messages,
                         const inf_gen_options *opts, char *err, size_t errlen);

/* A sampler over `remote`, whose ownership it takes in every case. */
int srv__sampler_remote(srv__sampler **out, srv__remote *remote, char *err, size_t errlen);

/* The bundle of a local sampler (borrowed), NULL for a remote one. */
const inf_bundle *srv__sampler_bundle(const srv__sampler *s);

/* inf_generate on the local sampler's model, under its lock and with its
 * thread count (opts->n_threads is replaced). Returns as inf_generate. */
int srv__sampler_generate_ids(inf_result *res, srv__sampler *s, const int *ids, size_t n,
                              const inf_gen_options *opts, inf_error *err);


/* Generates opts->n_samples completions of the prompt `messages` (a JSON
 * array of {role, content}, borrowed). Returns 0 or a SRV__GEN_* code with
 * a one-line message in err; *out is empty on failure. */
int srv__sampler_generate(srv__completions *out, srv__sampler *s, const json_t *messages,
                          const inf_gen_options *opts, char *err, size_t errlen);

/* A JSON messages array as inf_chat_messages whose strings are borrowed from
 * `messages` (a missing role is "user", missing content ""). *out is a new
 * array the caller free()s. 0, or -1 when out of memory. */
int srv__messages_from_json(inf_chat_message **out, size_t *n, const json_t *messages);

/* What one group came to, for eval's summary. */
typedef struct srv__group_stats {
    size_t n;                   /* completions scored */
    size_t new_tokens;
    double reward_sum, reward_best;
    int prompt_too_long;        /* the failure was SRV__GEN_ETOOLONG */
} srv__group_stats;

/*
 * Generates, scores and packs one group for item `item_id` of `env`: *out is
 * a new object in the trajectory format (env, env_version, item_id, tokens,
 * masks with -100 on prompt positions, scores, inference_logprobs,
 * completions, finish_reasons, generation_params, model_sha256) that POST
 * /scored_data accepts as it is. Returns 0 or a SRV__GEN_* code with a
 * message in err (and lerr filled for SRV__GEN_EENV).
 */
int srv__rollout_group(json_t **out, srv__group_stats *st, srv__sampler *s, lenv_env *env,
                       const char *item_id, const inf_gen_options *opts, lenv_error *lerr, char *err,
                       size_t errlen);

/* ---- groups.c: many groups at once, handed over in item order --------------------- */

/* One item's group as srv__run_groups hands it to the consumer. */
typedef struct srv__group_done {
    size_t index;               /* in the item list */
    const char *item_id;        /* borrowed from the item list */
    int rc;                     /* srv__rollout_group's */
    json_t *group;              /* its group, or NULL; the runner frees it after the
                                 * consumer (which may take it: set NULL) */
    srv__group_stats st;
    lenv_error lerr;
    char err[512];              /* the failure, when rc != 0 */
    int done;                   /* the runner's: the worker has finished it */
} srv__group_done;

/* Takes one finished group; 0 goes on, anything else stops the run. */
typedef int (*srv__group_consume)(srv__group_done *d, void *ctx);

/*
 * Runs srv__rollout_group for every item of `items` (an array of objects
 * with "id", as lenv_sample gives) on up to `concurrency` threads, and calls
 * `consume` on the calling thread for each group in item order, whatever
 * order they finish in. The sampler and env must allow concurrent calls
 * (the env with a Lua state per thread for real parallelism). Returns 0,
 * consume's first non-zero (then no further item starts and those in flight
 * are waited for), or -1 with err.
 */
int srv__run_groups(srv__sampler *sampler, lenv_env *env, const json_t *items, const inf_gen_options *opts,
                    int concurrency, srv__group_consume consume, void *ctx, char *err, size_t errlen);


/* inf_render_fn over a Lua chat template (payload: an lenv_chat_template). */
int srv__render_lua(char **text, size_t *len, const inf_chat_message *msgs, size_t n, void *payload,
                    inf_error *err);

/* Whether a --chat-template argument names a Lua template (ends in .lua). */
int srv__is_lua_template(const char *path);

/*
 * --model, --tokenizer and --chat-template as every command reads them: the
 * bundle (when `model` is not NULL) and, for a .lua template, the Lua
 * template attached to it as its renderer. *bundle and *lua are new or NULL;
 * free the bundle first, then the template. 0, or -1 with err.
 */
int srv__model_load(inf_bundle **bundle, lenv_chat_template **lua, const char *model, const char *tokenizer,
                    const char *chat_template, char *err, size_t errlen);

#endif
