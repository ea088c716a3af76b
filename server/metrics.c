/*
 * Prometheus metrics, text exposition format 0.0.4.
 *
 * Every counter is a C11 atomic updated with relaxed ordering: a scrape may
 * see a request counted in envsrv_requests_total a moment before its duration
 * lands in the histogram, which Prometheus tolerates, and the hot path takes
 * no lock. Labels are bounded: routes are the table's patterns (plus
 * "unmatched"), statuses are 100..599, envs are fixed at start.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server_int.h"

#define MIN_STATUS 100
#define N_STATUS 500   /* 100..599; anything else is counted as 500 */

/* Upper bounds of the duration histogram, in seconds. */
static const double bucket_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
#define N_BUCKETS (sizeof bucket_bounds / sizeof bucket_bounds[0])

typedef struct route_stats {
    atomic_uint_fast64_t by_status[N_STATUS];
    atomic_uint_fast64_t buckets[N_BUCKETS + 1]; /* non-cumulative; last is +Inf */
    atomic_uint_fast64_t sum_ns;
    atomic_uint_fast64_t count;
} route_stats;

typedef struct env_stats {
    const char *name;               /* borrowed from the env */
    atomic_uint_fast64_t scored;
    atomic_uint_fast64_t reward_bits; /* a double's bits, updated by CAS */
    atomic_uint_fast64_t lua_errors;
} env_stats;

struct srv__metrics {
    route_stats *routes;   /* owned; srv__n_routes + 1 entries, the last "unmatched" */
    size_t n_routes;
    env_stats *envs;       /* owned */
    size_t n_envs;
    atomic_uint_fast64_t rollouts[2]; /* built-in rollout workers' groups: failed, queued */
};

uint64_t srv__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

srv__metrics *srv__metrics_new(lenv_env *const *envs, size_t n_envs)
{
    srv__metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->n_routes = srv__n_routes + 1;
    m->routes = calloc(m->n_routes, sizeof *m->routes);
    m->envs = calloc(n_envs ? n_envs : 1, sizeof *m->envs);
    if (!m->routes || !m->envs) {
        srv__metrics_free(m);
        return NULL;
    }
    /* calloc'd memory is a valid zero for atomic integer types on every
     * platform we build for; atomic_init would be the pedantic spelling. */
    for (size_t i = 0; i < n_envs; i++)
        m->envs[i].name = lenv_name(envs[i]);
    m->n_envs = n_envs;
    return m;
}

void srv__metrics_free(srv__metrics *m)
{
    if (!m)
        return;
    free(m->routes);
    free(m->envs);
    free(m);
}

void srv__metrics_request(srv__metrics *m, int route, int status, uint64_t duration_ns)
{
    size_t r = (route >= 0 && (size_t)route < srv__n_routes) ? (size_t)route : m->n_routes - 1;
    route_stats *rs = &m->routes[r];
    if (status < MIN_STATUS || status >= MIN_STATUS + N_STATUS)
        status = 500;
    atomic_fetch_add_explicit(&rs->by_status[status - MIN_STATUS], 1, memory_order_relaxed);
    double secs = (double)duration_ns / 1e9;
    size_t b = 0;
    while (b < N_BUCKETS && secs > bucket_bounds[b])
        b++;
    atomic_fetch_add_explicit(&rs->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rs->sum_ns, duration_ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&rs->count, 1, memory_order_relaxed);
}

void srv__metrics_rollout(srv__metrics *m, int queued)
{
    atomic_fetch_add_explicit(&m->rollouts[queued ? 1 : 0], 1, memory_order_relaxed);
}

void srv__metrics_scored(srv__metrics *m, size_t env_index, size_t n, double reward_sum)
{
    if (env_index >= m->n_envs)
        return;
    env_stats *es = &m->envs[env_index];
    atomic_fetch_add_explicit(&es->scored, n, memory_order_relaxed);
    if (!isfinite(reward_sum))
        return; /* one NaN would poison the sum forever */
    uint64_t old = atomic_load_explicit(&es->reward_bits, memory_order_relaxed);
    for (;;) {
        double cur;
        memcpy(&cur, &old, sizeof cur);
        double next = cur + reward_sum;
        uint64_t bits;
        memcpy(&bits, &next, sizeof bits);
        if (atomic_compare_exchange_weak_explicit(&es->reward_bits, &old, bits,
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }
}

void srv__metrics_lua_error(srv__metrics *m, size_t env_index)
{
    if (env_index < m->n_envs)
        atomic_fetch_add_explicit(&m->envs[env_index].lua_errors, 1, memory_order_relaxed);
}

/* A growing text buffer; `failed` sticks after the first allocation failure. */
typedef struct sbuf {
    char *data;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_printf(sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *sb, const char *fmt, ...)
{
    if (sb->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->data ? sb->data + sb->len : NULL, sb->data ? sb->cap - sb->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->failed = 1;
            return;
        }
        if (sb->data && (size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t cap = sb->cap ? sb->cap : 4096;
        while (cap - sb->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(sb->data, cap);
        if (!p) {
            sb->failed = 1;
            return;
        }
        sb->data = p;
        sb->cap = cap;
    }
}

/* A label value with \, " and newline escaped, as the format requires.
 * Env names come from Lua definitions, so they may hold anything. */
static void sb_label(sbuf *sb, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            sb_printf(sb, "\\\\");
        else if (*s == '"')
            sb_printf(sb, "\\\"");
        else if (*s == '\n')
            sb_printf(sb, "\\n");
        else
            sb_printf(sb, "%c", *s);
    }
}

static const char *route_label(size_t r)
{
    return r < srv__n_routes ? srv__routes[r].pattern : "unmatched";
}

static double load_double(atomic_uint_fast64_t *bits)
{
    uint64_t b = atomic_load_explicit(bits, memory_order_relaxed);
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

char *srv__metrics_render(size_t *len, srv__metrics *m, size_t episodes_open, long in_flight)
{
    sbuf sb = { 0 };
    sb_printf(&sb, "# HELP envsrv_requests_total HTTP requests answered, by route pattern and status.\n"
                   "# TYPE envsrv_requests_total counter\n");
    for (size_t r = 0; r < m->n_routes; r++) {
        for (size_t s = 0; s < N_STATUS; s++) {
            uint64_t v = atomic_load_explicit(&m->routes[r].by_status[s], memory_order_relaxed);
            if (v)
                sb_printf(&sb, "envsrv_requests_total{route=\"%s\",status=\"%zu\"} %llu\n",
                          route_label(r), s + MIN_STATUS, (unsigned long long)v);
        }
    }

    sb_printf(&sb, "# HELP envsrv_request_duration_seconds Time from the request's headers to its answer.\n"
                   "# TYPE envsrv_request_duration_seconds histogram\n");
    for (size_t r = 0; r < m->n_routes; r++) {
        route_stats *rs = &m->routes[r];
        uint64_t count = atomic_load_explicit(&rs->count, memory_order_relaxed);
        if (!count)
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load_explicit(&rs->buckets[b], memory_order_relaxed);
            if (b < N_BUCKETS)
                sb_printf(&sb, "envsrv_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                          route_label(r), bucket_bounds[b], (unsigned long long)cum);
            else
                sb_printf(&sb, "envsrv_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                          route_label(r), (unsigned long long)cum);
        }
        double sum = (double)atomic_load_explicit(&rs->sum_ns, memory_order_relaxed) / 1e9;
        sb_printf(&sb, "envsrv_request_duration_seconds_sum{route=\"%s\"} %.9f\n", route_label(r), sum);
        /* _count is the +Inf bucket, so both come from the same loads. */
        sb_printf(&sb, "envsrv_request_duration_seconds_count{route=\"%s\"} %llu\n", route_label(r),
                  (unsigned long long)cum);
    }

    static const struct {
        const char *name, *type, *help;
    } env_families[] = {
        { "envsrv_completions_scored_total", "counter", "Completions scored by /score." },
        { "envsrv_reward_sum", "gauge", "Sum of the rewards given by /score (a gauge: rewards may be negative)." },
        { "envsrv_reward_mean", "gauge", "Mean reward given by /score since start." },
        { "envsrv_lua_errors_total", "counter", "Failures of the environment's Lua code." },
    };
    for (size_t f = 0; f < sizeof env_families / sizeof env_families[0]; f++) {
        sb_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", env_families[f].name, env_families[f].help,
                  env_families[f].name, env_families[f].type);
        for (size_t e = 0; e < m->n_envs; e++) {
            env_stats *es = &m->envs[e];
            uint64_t scored = atomic_load_explicit(&es->scored, memory_order_relaxed);
            double rsum = load_double(&es->reward_bits);
            sb_printf(&sb, "%s{env=\"", env_families[f].name);
            sb_label(&sb, es->name);
            switch (f) {
            case 0: sb_printf(&sb, "\"} %llu\n", (unsigned long long)scored); break;
            case 1: sb_printf(&sb, "\"} %.17g\n", rsum); break;
            case 2: sb_printf(&sb, "\"} %.17g\n", scored ? rsum / (double)scored : 0.0); break;
            default:
                sb_printf(&sb, "\"} %llu\n", (unsigned long long)atomic_load_explicit(
                                                 &es->lua_errors, memory_order_relaxed));
            }
        }
    }

    sb_printf(&sb, "# HELP envsrv_rollout_groups_total Groups the built-in rollout workers made: "
                   "queued in the trajectory buffer, or failed (not made, or refused; each is on stderr).\n"
                   "# TYPE envsrv_rollout_groups_total counter\n"
                   "envsrv_rollout_groups_total{result=\"queued\"} %llu\n"
                   "envsrv_rollout_groups_total{result=\"failed\"} %llu\n",
              (unsigned long long)atomic_load_explicit(&m->rollouts[1], memory_order_relaxed),
              (unsigned long long)atomic_load_explicit(&m->rollouts[0], memory_order_relaxed));
    sb_printf(&sb, "# HELP envsrv_episodes_open Episodes currently open.\n"
                   "# TYPE envsrv_episodes_open gauge\n"
                   "envsrv_episodes_open %zu\n", episodes_open);
    sb_printf(&sb, "# HELP envsrv_requests_in_flight Requests being received or handled, this scrape included.\n"
                   "# TYPE envsrv_requests_in_flight gauge\n"
                   "envsrv_requests_in_flight %ld\n", in_flight);
    if (sb.failed || !sb.data) {
        free(sb.data);
        return NULL;
    }
    *len = sb.len;
    return sb.data;
}
