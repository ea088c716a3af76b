/*
 * srv — the HTTP front of envsrv: a libmicrohttpd server that serves the REST
 * API of docs/api.md over the environments it is given.
 *
 * Used by server/main.c (start, report the port, stop) and by the unit tests
 * (tests/server/test_episodes.c drives the episode store with a fake clock).
 *
 * Layers, as in h2o: http.c is the libmicrohttpd glue (size-capped bodies, the
 * bearer token, metrics, freeing per-request memory in one place); router.c
 * holds the one routing table; api_*.c are the handlers, which take a request
 * and return a status and a JSON body and know nothing about libmicrohttpd.
 * Internals shared by those files are in server_int.h (srv__ names).
 */
#ifndef ENVSRV_SERVER_H
#define ENVSRV_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "inference/inference.h"
#include "lua/lenv.h"
#include "sandbox/sandbox.h"

#define SRV_VERSION "0.1.0"

#define SRV_DEFAULT_PORT         8000
#define SRV_DEFAULT_MAX_BODY     (16u << 20)  /* bytes of request body */
#define SRV_DEFAULT_MAX_EPISODES 10000
#define SRV_DEFAULT_EPISODE_TTL  600          /* seconds idle before an episode expires */
#define SRV_CONNECTION_TIMEOUT   30           /* seconds of silence before a connection is dropped */
#define SRV_SHUTDOWN_GRACE_MS    10000        /* how long srv_stop waits for in-flight requests */

/* The trajectory buffer (Atropos-compatible, docs/trajectory.md). All zero
 * means the defaults below. */
#define SRV_DEFAULT_MAX_QUEUE       16384      /* sequences queued before 503 */
#define SRV_DEFAULT_JOURNAL_DIR     ".envsrv"
#define SRV_DEFAULT_JOURNAL_COMPACT (64u << 20) /* bytes of dead records before compaction */

typedef struct srv_buffer_options {
    size_t max_queue;          /* sequences; 0 means SRV_DEFAULT_MAX_QUEUE */
    int sync_sequential;       /* --sync sequential: a batch holds only the current version */
    int has_max_staleness;     /* async: drop groups more than max_staleness versions old */
    unsigned max_staleness;
    int drop_flat_groups;      /* drop groups whose scores are all equal */
    const char *journal_dir;   /* borrowed; NULL means SRV_DEFAULT_JOURNAL_DIR */
    int no_journal;            /* keep everything in memory only */
    size_t journal_compact;    /* 0 means SRV_DEFAULT_JOURNAL_COMPACT */
    long long vocab_size;      /* token ids must be below it; 0 means below 2^31 */
} srv_buffer_options;

/* The sandbox API (POST /v1/sandbox/run, GET /v1/sandbox) and the worker
 * pool that runs it. main.c calls sbx_init() and copies what it found here;
 * limits of a run are clamped to the maxima (0 means the defaults below). */
#define SRV_DEFAULT_SANDBOX_QUEUE     1024      /* runs waiting for a worker before 503 */
#define SRV_DEFAULT_SANDBOX_CPU_MS    10000
#define SRV_DEFAULT_SANDBOX_WALL_MS   30000
#define SRV_DEFAULT_SANDBOX_MEMORY_MB 1024
#define SRV_DEFAULT_SANDBOX_OUTPUT    (8u << 20)

typedef struct srv_sandbox_options {
    int ready;                 /* sbx_init succeeded: runs are possible */
    int strict;                /* --sandbox strict (reported by GET /v1/sandbox) */
    unsigned workers;          /* pool threads; 0 means the number of online cores */
    size_t queue;              /* 0 means SRV_DEFAULT_SANDBOX_QUEUE */
    sbx_limits max;            /* cpu_ms, wall_ms, memory_mb, output_bytes; 0 means default */
    sbx_probe_info probe;      /* what sbx_init found */
    char init_error[256];      /* why not ready ("" when ready) */
} srv_sandbox_options;

/* Built-in rollout workers (--rollout-workers): with a model, the server
 * feeds its own trajectory buffer as an Atropos environment would. */
typedef struct srv_rollout_options {
    int workers;             /* threads; 0 means none */
    const char *env;         /* borrowed; NULL means the first env served */
    const char *split;       /* borrowed; NULL means "train", else the env's first */
    int group_size;          /* completions per group */
    int max_tokens;          /* new tokens per completion */
    float temperature;
    uint64_t seed;           /* group k of the run samples with seed + k */
} srv_rollout_options;

typedef struct srv_options {
    const char *host;        /* address to bind, borrowed; NULL means "127.0.0.1" */
    unsigned port;           /* 0 binds an ephemeral port (see srv_port) */
    unsigned threads;        /* worker threads; 0 means the number of online cores */
    const char *api_key;     /* borrowed; NULL or "" means no key is required */
    size_t max_body;         /* 0 means SRV_DEFAULT_MAX_BODY */
    size_t max_episodes;     /* 0 means SRV_DEFAULT_MAX_EPISODES */
    unsigned episode_ttl_s;  /* 0 means SRV_DEFAULT_EPISODE_TTL */
    /* The environments to serve, borrowed: they must outlive the server and
     * have distinct lenv_name()s. Each needs a pool of at least `threads`
     * states so that no worker waits for another's Lua state. */
    lenv_env *const *envs;
    size_t n_envs;
    srv_buffer_options buffer; /* the trajectory buffer; all zero means defaults */
    srv_sandbox_options sandbox; /* the sandbox API; all zero means "not initialised" */
    /* The built-in sampler (--model): borrowed, must outlive the server;
     * NULL serves no model (the generation routes answer 409). */
    const inf_bundle *model;
    const char *model_name;  /* borrowed; the "model" of OpenAI answers; NULL means "envsrv" */
    int gen_threads;         /* CPU threads of one generation; 0 means 1 */
    srv_rollout_options rollouts; /* all zero means no rollout workers */
} srv_options;

/* Generation requests (POST /v1/envs/{env}/rollouts, /v1/completions,
 * /v1/chat/completions) run one at a time on their own worker thread; these
 * cap one request so that it cannot hold the model for long. */
#define SRV_GEN_QUEUE        64     /* requests waiting for the model before 503 */
#define SRV_GEN_MAX_SAMPLES  64     /* group_size, n */
#define SRV_GEN_MAX_ITEMS    64     /* item_ids / n_items of one rollouts request */

#define SRV_ROLLOUT_OPTIONS_INIT { 0, NULL, NULL, 8, 256, 1.0f, 0 }
#define SRV_OPTIONS_INIT                                                                       \
    { NULL, SRV_DEFAULT_PORT, 0, NULL, 0, 0, 0, NULL, 0, { 0 }, { 0 }, NULL, NULL, 0,           \
      SRV_ROLLOUT_OPTIONS_INIT }

typedef struct srv_server srv_server;

/*
 * Binds and starts serving on background threads. On success *out is a new
 * server the caller must srv_free() and 0 is returned. On failure returns -1
 * with a one-line reason in errbuf ("cannot bind 127.0.0.1:80: Permission
 * denied") and *out is NULL.
 */
int srv_start(srv_server **out, const srv_options *opts, char *errbuf, size_t errlen);

/* The port actually bound (useful with port 0). */
unsigned srv_port(const srv_server *srv);

/* The number of worker threads in use (opts->threads or the core count). */
unsigned srv_threads(const srv_server *srv);

/*
 * Stops accepting connections, lets requests already being handled finish
 * and answer (up to SRV_SHUTDOWN_GRACE_MS), then stops every thread. Calling
 * it twice is harmless. After it returns no handler runs any more, so the
 * caller may free the environments.
 */
void srv_stop(srv_server *srv);

/* srv_stop()s if needed and frees everything; srv_free(NULL) does nothing. */
void srv_free(srv_server *srv);

/* The default thread count: online cores, at least 1. */
unsigned srv_default_threads(void);

/* ---- the episode store (episodes.c) ------------------------------------------
 *
 * A hash map id -> episode with a cap and an idle timeout. Every function that
 * needs the time takes `now_ms` (a monotonic clock in milliseconds) so tests
 * can drive expiry with a fake clock. Thread-safe: one mutex, held only for the
 * map operations, never while Lua runs.
 */

#define SRV_EPISODE_ID_LEN 32   /* hex digits of a 128-bit random id */

/* One open episode. Fields are owned by the store; a handler may use env, item
 * and state only between srv_episodes_acquire and srv_episodes_release. */
typedef struct srv_episode {
    char id[SRV_EPISODE_ID_LEN + 1];
    lenv_env *env;           /* borrowed: the server's env */
    json_t *item;            /* owned reference */
    json_t *state;           /* owned reference; lenv_step replaces it */
    uint64_t created_ms;
    uint64_t last_used_ms;
    uint64_t ttl_ms;         /* idle time before it expires */
    int busy;                /* a step is running: no other step, no expiry */
    struct srv_episode *next; /* hash chain */
} srv_episode;

typedef struct srv_episodes srv_episodes;

/* Results of the store's operations besides 0. */
#define SRV_EP_UNKNOWN (-1)  /* no such id, or it expired */
#define SRV_EP_BUSY    (-2)  /* a step is already running on it */
#define SRV_EP_FULL    (-3)  /* the cap is reached and nothing has expired */
#define SRV_EP_NOMEM   (-4)

/* A new store holding at most max_open episodes, each expiring ttl_ms after
 * its last use. Returns NULL only when out of memory; free with
 * srv_episodes_free (NULL is fine), which releases every episode. */
srv_episodes *srv_episodes_new(size_t max_open, uint64_t ttl_ms);
void srv_episodes_free(srv_episodes *st);

/*
 * Adds an episode. Takes over the caller's references to `item` and `state`
 * in every case (on failure they are released). On success id_out holds the
 * new id (NUL-terminated). It expires after ttl_ms idle (0, or more than the
 * store's own ttl, means the store's ttl: an env may shorten it, not extend
 * it). When the store is full, expired episodes are swept first; if it is
 * still full, returns SRV_EP_FULL.
 */
int srv_episodes_create(char id_out[SRV_EPISODE_ID_LEN + 1], srv_episodes *st, lenv_env *env,
                        json_t *item, json_t *state, uint64_t ttl_ms, uint64_t now_ms);

/*
 * Locks episode `id` for one step: *out is the episode (owned by the store,
 * valid until srv_episodes_release). Returns 0, SRV_EP_UNKNOWN (unknown or
 * expired; an expired one is removed) or SRV_EP_BUSY.
 */
int srv_episodes_acquire(srv_episode **out, srv_episodes *st, const char *id, uint64_t now_ms);

/* Unlocks an acquired episode and marks it used at now_ms; when `finished`
 * is set the episode is removed and freed instead. */
void srv_episodes_release(srv_episodes *st, srv_episode *ep, int finished, uint64_t now_ms);

/* Removes every expired episode that is not busy; returns how many. */
size_t srv_episodes_sweep(srv_episodes *st, uint64_t now_ms);

/* Episodes currently held (expired ones not yet swept included). */
size_t srv_episodes_count(srv_episodes *st);

/* A monotonic clock in milliseconds, for callers of the functions above. */
uint64_t srv_now_ms(void);

/* `envsrv generate ...` (argv as main received it): loads a model, samples
 * completions of a prompt, prints them. Returns the process exit status:
 * 0, 1 for a model/tokenizer/generation error, 2 for bad arguments.
 * server/cmd_generate.c. */
int srv_cmd_generate(int argc, char **argv);

/* `envsrv eval ...`: scores a model on an environment's items, prints mean
 * reward and pass@k, writes a JSON report. Returns the exit status: 0, 1 when
 * the score is under --min-score or on an error, 2 for bad arguments.
 * server/cmd_eval.c. */
int srv_cmd_eval(int argc, char **argv);

/* `envsrv rollout ...`: writes scored groups (trajectory format) as JSON
 * lines. Returns the exit status: 0, 1 on an error, 2 for bad arguments. */
int srv_cmd_rollout(int argc, char **argv);

/* `envsrv lock --env git+URL@REV#PATH ... -o FILE`: resolves each git env to
 * a commit, loads it (so a broken env is caught now), and writes the lock
 * file that `--lock FILE` reads. Returns the exit status: 0, 1 on an error,
 * 2 for bad arguments. server/cmd_lock.c. */
int srv_cmd_lock(int argc, char **argv);

/* The git options that `envsrv eval` and `rollout` share with the server:
 * --cache-dir DIR, --git-timeout SECONDS, --lock FILE (loaded when seen). */
typedef struct srv_git_args {
    lenv_git_options opts;  /* opts.lock points at `lock` */
    lenv_lock *lock;        /* owned: lenv_lock_free() it */
} srv_git_args;

/* Takes `opt value` when opt is one of the git options: returns 1 when taken,
 * 0 when opt is not a git option, -1 (after printing why, prefixed by
 * `prog`) for a bad value or an unreadable lock file. server/cmd_lock.c. */
int srv_git_option(srv_git_args *g, const char *prog, const char *opt, const char *value);

#endif
