/*
 * The episode store: a chained hash map from 128-bit random hex ids to open
 * episodes, with a cap and an idle timeout.
 *
 * One mutex guards the map. It is held only for lookups, inserts and removals,
 * never while an environment's Lua code runs: a step first acquires its
 * episode (setting `busy` under the lock), runs without the lock, then
 * releases it. A busy episode is never expired or swept, so the step's
 * pointers stay valid.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "server/server_int.h"

/* Buckets: the cap rounded up to a power of two, within these bounds, so
 * chains stay short at the cap without a huge table for a huge cap. */
#define MIN_BUCKETS 64
#define MAX_BUCKETS (1u << 20)

struct srv_episodes {
    pthread_mutex_t lock;
    srv_episode **buckets;   /* owned array of owned chains */
    size_t n_buckets;        /* a power of two */
    size_t count;
    size_t max_open;
    uint64_t ttl_ms;
};

uint64_t srv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* FNV-1a over the id: ids are random, so any mixing hash spreads them. */
static size_t bucket_of(const srv_episodes *st, const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h & (st->n_buckets - 1));
}

static int is_expired(const srv_episodes *st, const srv_episode *ep, uint64_t now_ms)
{
    (void)st;
    return !ep->busy && now_ms >= ep->last_used_ms && now_ms - ep->last_used_ms >= ep->ttl_ms;
}

static void episode_free(srv_episode *ep)
{
    if (!ep)
        return;
    json_decref(ep->item);
    json_decref(ep->state);
    free(ep);
}

srv_episodes *srv_episodes_new(size_t max_open, uint64_t ttl_ms)
{
    srv_episodes *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    size_t n = MIN_BUCKETS;
    while (n < max_open && n < MAX_BUCKETS)
        n <<= 1;
    st->buckets = calloc(n, sizeof *st->buckets);
    if (!st->buckets) {
        free(st);
        return NULL;
    }
    st->n_buckets = n;
    st->max_open = max_open;
    st->ttl_ms = ttl_ms;
    pthread_mutex_init(&st->lock, NULL);
    return st;
}

void srv_episodes_free(srv_episodes *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_buckets; i++) {
        srv_episode *ep = st->buckets[i];
        while (ep) {
            srv_episode *next = ep->next;
            episode_free(ep);
            ep = next;
        }
    }
    free(st->buckets);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* Unlinks and frees every expired, idle episode. Lock held. */
static size_t sweep_locked(srv_episodes *st, uint64_t now_ms)
{
    size_t removed = 0;
    for (size_t i = 0; i < st->n_buckets; i++) {
        srv_episode **link = &st->buckets[i];
        while (*link) {
            srv_episode *ep = *link;
            if (is_expired(st, ep, now_ms)) {
                *link = ep->next;
                episode_free(ep);
                st->count--;
                removed++;
            } else {
                link = &ep->next;
            }
        }
    }
    return removed;
}

size_t srv_episodes_sweep(srv_episodes *st, uint64_t now_ms)
{
    pthread_mutex_lock(&st->lock);
    size_t removed = sweep_locked(st, now_ms);
    pthread_mutex_unlock(&st->lock);
    return removed;
}

size_t srv_episodes_count(srv_episodes *st)
{
    pthread_mutex_lock(&st->lock);
    size_t n = st->count;
    pthread_mutex_unlock(&st->lock);
    return n;
}

/* 128 random bits as 32 lowercase hex digits. getrandom() on Linux never
 * returns short for 16 bytes once the pool is initialised; EINTR is retried. */
static int new_id(char out[SRV_EPISODE_ID_LEN + 1])
{
    unsigned char raw[SRV_EPISODE_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[SRV_EPISODE_ID_LEN] = '\0';
    return 0;
}

static srv_episode *find_locked(srv_episodes *st, const char *id, srv_episode ***link_out)
{
    srv_episode **link = &st->buckets[bucket_of(st, id)];
    while (*link) {
        if (strcmp((*link)->id, id) == 0) {
            if (link_out)
                *link_out = link;
            return *link;
        }
        link = &(*link)->next;
    }
    return NULL;
}

int srv_episodes_create(char id_out[SRV_EPISODE_ID_LEN + 1], srv_episodes *st, lenv_env *env,
                        json_t *item, json_t *state, uint64_t ttl_ms, uint64_t now_ms)
{
    int rc = SRV_EP_NOMEM;
    srv_episode *ep = calloc(1, sizeof *ep);
    if (!ep)
        goto done;
    ep->env = env;
    ep->item = item;
    ep->state = state;
    item = NULL;
    state = NULL;
    ep->created_ms = now_ms;
    ep->last_used_ms = now_ms;
    ep->ttl_ms = ttl_ms == 0 || ttl_ms > st->ttl_ms ? st->ttl_ms : ttl_ms;

    pthread_mutex_lock(&st->lock);
    if (st->count >= st->max_open)
        sweep_locked(st, now_ms);
    if (st->count >= st->max_open) {
        pthread_mutex_unlock(&st->lock);
        rc = SRV_EP_FULL;
        goto done;
    }
    /* A collision of 128 random bits is practically impossible, but a
     * duplicate id would silently shadow an episode, so draw again. */
    do {
        if (new_id(ep->id) != 0) {
            pthread_mutex_unlock(&st->lock);
            rc = SRV_EP_NOMEM;
            goto done;
        }
    } while (find_locked(st, ep->id, NULL));
    size_t b = bucket_of(st, ep->id);
    ep->next = st->buckets[b];
    st->buckets[b] = ep;
    st->count++;
    memcpy(id_out, ep->id, SRV_EPISODE_ID_LEN + 1);
    ep = NULL;
    pthread_mutex_unlock(&st->lock);
    rc = 0;
done:
    episode_free(ep);
    json_decref(item);
    json_decref(state);
    return rc;
}

int srv_episodes_acquire(srv_episode **out, srv_episodes *st, const char *id, uint64_t now_ms)
{
    *out = NULL;
    pthread_mutex_lock(&st->lock);
    srv_episode **link = NULL;
    srv_episode *ep = find_locked(st, id, &link);
    int rc;
    if (!ep) {
        rc = SRV_EP_UNKNOWN;
    } else if (ep->busy) {
        rc = SRV_EP_BUSY;
    } else if (is_expired(st, ep, now_ms)) {
        *link = ep->next;
        st->count--;
        episode_free(ep);
        rc = SRV_EP_UNKNOWN;
    } else {
        ep->busy = 1;
        *out = ep;
        rc = 0;
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void srv_episodes_release(srv_episodes *st, srv_episode *ep, int finished, uint64_t now_ms)
{
    if (!ep)
        return;
    pthread_mutex_lock(&st->lock);
    if (finished) {
        srv_episode **link = NULL;
        srv_episode *found = find_locked(st, ep->id, &link);
        /* A busy episode is never swept, so it must still be in the map. */
        if (found == ep) {
            *link = ep->next;
            st->count--;
            episode_free(ep);
        }
    } else {
        ep->busy = 0;
        ep->last_used_ms = now_ms;
    }
    pthread_mutex_unlock(&st->lock);
}
