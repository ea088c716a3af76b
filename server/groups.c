/*
 * Many groups at once, for `envsrv eval` and `envsrv rollout`: workers run
 * srv__rollout_group for the items of a list, up to `concurrency` at a time,
 * and the calling thread receives the finished groups in item order. An
 * external inference server (--backend openai) batches concurrent requests,
 * so one request at a time would leave it mostly idle; with the local
 * engine, scoring one group (a sandboxed program, say) overlaps generating
 * the next.
 *
 * The order of the output never depends on timing: the report and the JSONL
 * file are the same at any concurrency. Workers stay at most a window of
 * items ahead of the consumer, so memory stays bounded on long runs.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

#define GROUPS_MAX_THREADS 256
#define GROUPS_AHEAD       4        /* items in flight or waiting, per worker */

typedef struct runner {
    srv__sampler *sampler;          /* borrowed */
    lenv_env *env;                  /* borrowed */
    const json_t *items;            /* borrowed: objects with "id" */
    const inf_gen_options *opts;    /* borrowed */
    srv__group_done *slots;         /* (n) owned */
    size_t n, next, consumed, window;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* a slot finished, or the consumer moved on */
} runner;

static void *worker_main(void *arg)
{
    runner *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && r->next < r->n && r->next >= r->consumed + r->window)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stop || r->next >= r->n)
            break;
        srv__group_done *d = &r->slots[r->next++];
        pthread_mutex_unlock(&r->mu);
        d->rc = srv__rollout_group(&d->group, &d->st, r->sampler, r->env, d->item_id, r->opts, &d->lerr,
                                   d->err, sizeof d->err);
        pthread_mutex_lock(&r->mu);
        d->done = 1;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Hands the slots to `consume` in order. Returns its first non-zero. */
static int consume_in_order(runner *r, srv__group_consume consume, void *ctx)
{
    int rc = 0;
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        pthread_mutex_lock(&r->mu);
        while (!r->slots[i].done)
            pthread_cond_wait(&r->cv, &r->mu);
        pthread_mutex_unlock(&r->mu);
        rc = consume(&r->slots[i], ctx);
        json_decref(r->slots[i].group);
        r->slots[i].group = NULL;
        pthread_mutex_lock(&r->mu);
        r->consumed = i + 1;
        if (rc != 0)
            r->stop = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

int srv__run_groups(srv__sampler *sampler, lenv_env *env, const json_t *items, const inf_gen_options *opts,
                    int concurrency, srv__group_consume consume, void *ctx, char *err, size_t errlen)
{
    runner r = { sampler, env, items, opts, NULL, json_array_size(items), 0, 0, 0, 0,
                 PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };
    int nt = concurrency < 1 ? 1 : concurrency > GROUPS_MAX_THREADS ? GROUPS_MAX_THREADS : concurrency;
    if ((size_t)nt > r.n)
        nt = r.n ? (int)r.n : 1;
    r.window = (size_t)nt * GROUPS_AHEAD;
    r.slots = calloc(r.n ? r.n : 1, sizeof *r.slots);
    pthread_t *threads = calloc((size_t)nt, sizeof *threads);
    if (!r.slots || !threads) {
        free(r.slots);
        free(threads);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r.n; i++) {
        r.slots[i].index = i;
        r.slots[i].item_id = json_string_value(json_object_get(json_array_get(items, i), "id"));
    }
    int started = 0, rc = 0;
    for (; started < nt; started++)
        if (pthread_create(&threads[started], NULL, worker_main, &r) != 0)
            break;
    if (started == 0) {
        snprintf(err, errlen, "cannot start a worker thread");
        rc = -1;
    } else {
        rc = consume_in_order(&r, consume, ctx);
    }
    pthread_mutex_lock(&r.mu);
    r.stop = 1;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    for (size_t i = 0; i < r.n; i++)
        json_decref(r.slots[i].group);
    free(r.slots);
    free(threads);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    return rc;
}
