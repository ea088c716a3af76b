/*
 * The worker pool: a fixed set of threads taking jobs from one bounded FIFO
 * queue. Routes flagged SRV__ROUTE_POOL (sandbox runs) run here, so that an
 * HTTP thread only suspends the connection and goes back to serving others.
 *
 * One mutex guards the queue; workers sleep on `ready`. The queue is a linked
 * list of caller-allocated nodes (srv__job, embedded in the request), so
 * submitting never allocates and the queue bound is the only limit.
 *
 * Shutdown (srv__pool_stop) cancels what is still queued -- each job's
 * function runs once with `cancelled` set, on the calling thread, so that it
 * can answer -- lets the running jobs finish, and joins every worker.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

struct srv__pool {
    pthread_mutex_t lock;
    pthread_cond_t ready;        /* a job was queued, or stopping was set */
    srv__job *head, *tail;       /* the FIFO; nodes borrowed from submitters */
    size_t queued;
    size_t queue_max;
    unsigned running;            /* jobs being run by workers now */
    int stopping;
    pthread_t *threads;          /* owned, n_threads of them */
    unsigned n_threads;
};

static void *worker_main(void *arg)
{
    srv__pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->ready, &p->lock);
        if (!p->head)
            break; /* stopping and nothing left for us */
        srv__job *job = p->head;
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        p->running++;
        pthread_mutex_unlock(&p->lock);
        /* The job may free itself (it belongs to the request): read nothing
         * from it afterwards. */
        job->fn(job, 0);
        pthread_mutex_lock(&p->lock);
        p->running--;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

srv__pool *srv__pool_new(unsigned workers, size_t queue_max, char *errbuf, size_t errlen)
{
    if (workers == 0)
        workers = 1;
    srv__pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc(workers, sizeof *p->threads))) {
        snprintf(errbuf, errlen, "out of memory");
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->ready, NULL);
    p->queue_max = queue_max;
    for (unsigned i = 0; i < workers; i++) {
        int e = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (e != 0) {
            snprintf(errbuf, errlen, "cannot start sandbox worker thread %u of %u: %s", i + 1, workers,
                     strerror(e));
            srv__pool_free(p);
            return NULL;
        }
        p->n_threads++;
    }
    return p;
}

int srv__pool_submit(srv__pool *p, srv__job *job)
{
    int rc = -1;
    job->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        rc = -2;
        goto done;
    }
    if (p->queued >= p->queue_max)
        goto done;
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->queued++;
    pthread_cond_signal(&p->ready);
    rc = 0;
done:
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void srv__pool_stats(size_t *queued, unsigned *running, unsigned *workers, srv__pool *p)
{
    pthread_mutex_lock(&p->lock);
    *queued = p->queued;
    *running = p->running;
    *workers = p->n_threads;
    pthread_mutex_unlock(&p->lock);
}

void srv__pool_stop(srv__pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    p->stopping = 1;
    srv__job *cancelled = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->ready);
    pthread_mutex_unlock(&p->lock);
    /* Answer the cancelled jobs outside the lock, oldest first. */
    while (cancelled) {
        srv__job *next = cancelled->next;
        cancelled->fn(cancelled, 1);
        cancelled = next;
    }
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
}

void srv__pool_free(srv__pool *p)
{
    if (!p)
        return;
    srv__pool_stop(p);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->ready);
    free(p->threads);
    free(p);
}
