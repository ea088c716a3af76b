/*
 * Built-in rollout workers: with `--model` and `--rollout-workers N`, the
 * server feeds its own trajectory buffer, so an Atropos trainer that talks
 * to envsrv needs no separate environment process. Each worker does what an
 * Atropos environment does over HTTP, through the same buffer functions the
 * HTTP routes call (buffer.c): it waits for the trainer, registers as an
 * env, then generates and scores groups (srv__rollout_group, as `envsrv
 * rollout` does) and pushes them, waiting while the queue is full
 * (backpressure: a full queue makes the worker wait, it never drops).
 *
 * What a group holds depends only on (model, env, item, options, seed): the
 * k-th group drawn is item k of a seeded shuffle of the split (reshuffled
 * each pass), sampled with seed rollout_seed + k. With one worker the groups
 * reach the buffer in that order; with more, generation still takes turns
 * on the model (the sampler's lock) while scoring overlaps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server_int.h"

#define WAIT_TRAINER_MS 200     /* between registration attempts */
#define WAIT_FULL_MS    100     /* between pushes to a full queue */
#define WAIT_ERROR_MS   1000    /* after a failure that may pass */

struct srv__producers {
    srv_server *srv;                /* borrowed */
    lenv_env *env;                  /* borrowed: the server's */
    srv_rollout_options o;          /* copied; strings borrowed from the caller */
    inf_gen_options gen;
    int max_token_length;           /* the model's context */
    char *split;                    /* owned: the split drawn from; NULL for a procedural env */
    size_t pass_len;                /* items per pass: the split's size */
    pthread_t *threads;             /* (o.workers,) owned */
    int n_started;
    pthread_mutex_t mu;             /* guards everything below */
    pthread_cond_t wake;            /* stop was set */
    int stop;
    atomic_int cancel;              /* set with stop: a generation under way ends early */
    json_t *items;                  /* owned: this pass's shuffle of the split */
    size_t next_in_pass;
    uint64_t pass, drawn;           /* passes begun; groups drawn so far */
};

/* Sleeps up to ms, less when stopping. Returns whether to stop. */
static int wait_or_stop(srv__producers *p, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (!p->stop && pthread_cond_timedwait(&p->wake, &p->mu, &until) != ETIMEDOUT)
        ;
    int stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static int stopping(srv__producers *p)
{
    pthread_mutex_lock(&p->mu);
    int stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

/* The next item to roll out, as a new string, and its draw number k; NULL
 * with err on failure. */
static char *next_item(uint64_t *k, srv__producers *p, char *err, size_t errlen)
{
    char *id = NULL;
    pthread_mutex_lock(&p->mu);
    if (!p->items || p->next_in_pass >= json_array_size(p->items)) {
        json_decref(p->items);
        p->items = NULL;
        lenv_error lerr = { 0 };
        /* Every item of the split once per pass, in a new order each pass. */
        if (lenv_sample(&p->items, p->env, p->split, p->pass_len, p->o.seed + p->pass, &lerr) != 0)
            snprintf(err, errlen, "cannot draw items: %.300s", lerr.message);
        else if (json_array_size(p->items) == 0)
            snprintf(err, errlen, "the split has no items");
        p->next_in_pass = 0;
        p->pass++;
    }
    if (p->items && p->next_in_pass < json_array_size(p->items)) {
        const char *s = json_string_value(json_object_get(json_array_get(p->items, p->next_in_pass++), "id"));
        id = s ? strdup(s) : NULL;
        if (!id)
            snprintf(err, errlen, "out of memory");
        *k = p->drawn++;
    }
    pthread_mutex_unlock(&p->mu);
    return id;
}

/* Registers with the buffer as Atropos environments do. Returns the env id,
 * -1 while the trainer has not started, or -2 with err. */
static long long register_env(srv__producers *p, char *err, size_t errlen)
{
    char name[128];
    snprintf(name, sizeof name, "envsrv-%s", lenv_name(p->env));
    json_t *req = json_pack("{s:i, s:s, s:f, s:i}", "max_token_length", p->max_token_length, "desired_name", name,
                            "weight", 1.0, "group_size", p->o.group_size);
    json_t *ans = NULL;
    long long id = -2;
    if (!req)
        snprintf(err, errlen, "out of memory");
    else if (srv__buffer_register_env(&ans, p->srv->buffer, req, err, errlen) == 0)
        id = json_is_integer(json_object_get(ans, "env_id")) ? json_integer_value(json_object_get(ans, "env_id"))
                                                               : -1;
    json_decref(req);
    json_decref(ans);
    return id;
}

/* Pushes one group, waiting while the queue is full. Returns 0 when it was
 * taken, 1 when the env must register again (the trainer reset the buffer),
 * -1 with err when it was refused, 2 when stopping. */
static int push_group(srv__producers *p, json_t *group, long long env_id, char *err, size_t errlen)
{
    json_t *arr = json_array();
    if (!arr || json_array_append(arr, group) != 0) {
        json_decref(arr);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc;
    for (;;) {
        size_t accepted = 0;
        rc = srv__buffer_push(&accepted, NULL, p->srv->buffer, arr, NULL, NULL, err, errlen);
        if (rc != SRV__BUF_EFULL)
            break;
        if (wait_or_stop(p, WAIT_FULL_MS)) {
            json_decref(arr);
            return 2;
        }
    }
    json_decref(arr);
    if (rc == 0)
        return 0;
    json_t *st = NULL;
    char why[256];
    int gone = rc == SRV__BUF_ESTATE ||
               srv__buffer_status_env(&st, p->srv->buffer, env_id, why, sizeof why) == SRV__BUF_ENOTFOUND;
    json_decref(st);
    return gone ? 1 : -1;
}

/* One group: generate, score, push. Returns what push_group does, or -1
 * with err naming the item. */
static int one_group(srv__producers *p, long long env_id, char *err, size_t errlen)
{
    uint64_t k = 0;
    char why[512] = "";
    char *id = next_item(&k, p, why, sizeof why);
    if (!id) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    inf_gen_options gen = p->gen;
    gen.seed = p->o.seed + k;
    json_t *group = NULL;
    srv__group_stats st;
    lenv_error lerr = { 0 };
    int rc = srv__rollout_group(&group, &st, p->srv->sampler, p->env, id, &gen, &lerr, why, sizeof why);
    if (rc == 0 && json_object_set_new(group, "env_id", json_integer(env_id)) != 0)
        snprintf(why, sizeof why, "out of memory");
    else if (rc == 0)
        rc = push_group(p, group, env_id, why, sizeof why);
    else
        rc = -1;
    if (rc == -1)
        snprintf(err, errlen, "item %s: %s", id, why);
    json_decref(group);
    free(id);
    return rc;
}

static void *worker_main(void *arg)
{
    srv__producers *p = arg;
    long long env_id = -1;
    char err[768];
    while (!stopping(p)) {
        err[0] = '\0';
        if (env_id < 0) {
            env_id = register_env(p, err, sizeof err);
            if (env_id == -2)
                fprintf(stderr, "envsrv: rollouts: cannot register with the buffer: %s\n", err);
            if (env_id < 0 && wait_or_stop(p, env_id == -1 ? WAIT_TRAINER_MS : WAIT_ERROR_MS))
                break;
            continue;
        }
        int rc = one_group(p, env_id, err, sizeof err);
        if (rc == -1 && stopping(p))
            break;      /* the group was canceled by the stop */
        if (rc == 0 || rc == -1 || rc == 1)
            srv__metrics_rollout(p->srv->metrics, rc == 0);
        if (rc == 1) {
            fprintf(stderr, "envsrv: rollouts: the trainer reset the buffer, so a group was not "
                            "queued; registering again\n");
            env_id = -1;
        } else if (rc == -1) {
            /* Never silent: the group was not queued, and the reason is here. */
            fprintf(stderr, "envsrv: rollouts: group not queued: %s\n", err);
            if (wait_or_stop(p, WAIT_ERROR_MS))
                break;
        }
    }
    return NULL;
}

/* Items a pass of a procedural env draws (its items have no end). */
#define GENERATED_PASS 1024

/* The split to draw from: `want`, else "train", else the env's first; its
 * size is a pass. 0, or -1 with err. */
static int choose_split(srv__producers *p, lenv_env *env, const char *want, char *err, size_t errlen)
{
    int lo, hi;
    if (lenv_is_generated(env, &lo, &hi)) {
        if (want) {
            snprintf(err, errlen, "--rollout-settings: env '%s' is procedural and has no splits", lenv_name(env));
            return -1;
        }
        p->pass_len = GENERATED_PASS;
        return 0;
    }
    json_t *desc = lenv_describe(env, 0);
    json_t *splits = json_object_get(desc, "splits");
    const char *name = want;
    if (!name)
        name = json_object_get(splits, "train") ? "train" : json_object_iter_key(json_object_iter(splits));
    json_t *size = name ? json_object_get(splits, name) : NULL;
    if (!json_is_integer(size) || json_integer_value(size) <= 0) {
        snprintf(err, errlen, "--rollout-settings: env '%s' has no %s%.64s%s with items", lenv_name(env),
                 want ? "split '" : "dataset", want ? want : "", want ? "'" : "");
        json_decref(desc);
        return -1;
    }
    p->pass_len = (size_t)json_integer_value(size);
    if (p->pass_len > LENV_MAX_SAMPLE)
        p->pass_len = LENV_MAX_SAMPLE;
    p->split = strdup(name);
    json_decref(desc);
    if (!p->split) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int srv__producers_start(srv__producers **out, srv_server *srv, const srv_rollout_options *o,
                         const inf_bundle *model, char *err, size_t errlen)
{
    *out = NULL;
    if (o->workers <= 0)
        return 0;
    if (!model || !srv->sampler || !srv->buffer) {
        snprintf(err, errlen, "--rollout-workers needs --model");
        return -1;
    }
    lenv_env *env = NULL;
    for (size_t i = 0; i < srv->n_envs && !env; i++)
        if (!o->env || strcmp(lenv_name(srv->envs[i]), o->env) == 0)
            env = srv->envs[i];
    if (!env) {
        snprintf(err, errlen, "--rollout-settings: '%s' is not an env this server hosts", o->env);
        return -1;
    }
    srv__producers *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)o->workers, sizeof *p->threads))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (choose_split(p, env, o->split, err, errlen) != 0) {
        free(p->threads);
        free(p);
        return -1;
    }
    p->srv = srv;
    p->env = env;
    p->o = *o;
    inf_gen_options gen = INF_GEN_OPTIONS_INIT;
    gen.n_samples = o->group_size;
    gen.max_tokens = o->max_tokens;
    gen.temperature = o->temperature;
    p->gen = gen;
    atomic_init(&p->cancel, 0);
    p->gen.cancel = &p->cancel;
    p->max_token_length = inf_model_config(inf_bundle_model(model))->seq_len;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (; p->n_started < o->workers; p->n_started++)
        if (pthread_create(&p->threads[p->n_started], NULL, worker_main, p) != 0) {
            snprintf(err, errlen, "cannot start rollout worker %d", p->n_started);
            srv__producers_stop(p);
            return -1;
        }
    *out = p;
    return 0;
}

void srv__producers_stop(srv__producers *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    /* A group being generated stops at its next step rather than run to
     * max_tokens: shutting down should not wait for a whole group. */
    atomic_store(&p->cancel, 1);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
    json_decref(p->items);
    free(p->split);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}
