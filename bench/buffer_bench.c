/*
 * buffer_bench — the trajectory buffer in process (server/buffer.c), the way
 * the HTTP handlers drive it: producer threads parse a /scored_data body of
 * one GRPO group (8 sequences x 512 tokens, 128 of them prompt) and push it
 * (the group's text goes to the journal as it came, as in the handler)
 * while a trainer thread pulls batches of 64 sequences.
 *
 *   build/bench/buffer_bench [ignored]
 *
 * Figures, for the journal on (every push fdatasync'ed before it returns,
 * shared by concurrent pushes: group commit) and off:
 *   buffer ingest journal=fsync: N groups/s (P producers, G groups per push)
 *   buffer ingest journal=off:   N groups/s ...
 *   buffer batch: p50 X us, p99 Y us (64 sequences, journal on)
 * The journal lives in a fresh directory under the current one (a real disk,
 * unlike a tmpfs /tmp) and is removed afterwards. The floor the issue sets is
 * 1,000 groups/s with the journal on.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "server/server_int.h"

#define SEQS 8
#define TOKENS 512
#define PROMPT 128
#define GROUPS_PER_RUN 4000
#define BATCH_SIZE 64

typedef struct run {
    srv__buffer *buf;
    const char *body;         /* a JSON array of groups_per_push groups */
    size_t body_len;
    size_t groups_per_push;
    const char *raw[64];      /* the text of each group inside body */
    size_t raw_lens[64];
    atomic_long pushed;       /* groups */
    long target;
    atomic_int failed;
    atomic_int producers_left;
    double *lat_us;           /* batch latencies */
    size_t n_lat, cap_lat;
} run;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A /scored_data_list body of `groups` groups (tokens, masks, scores); the
 * text of group i is raw[i], raw_lens[i], as the HTTP handler passes it. */
static char *make_body(size_t groups, size_t *len, const char **raw, size_t *raw_lens)
{
    json_t *arr = json_array();
    unsigned seed = 7;
    for (size_t g = 0; g < groups; g++) {
        json_t *tokens = json_array(), *masks = json_array(), *scores = json_array();
        for (int s = 0; s < SEQS; s++) {
            json_t *t = json_array(), *m = json_array();
            for (int k = 0; k < TOKENS; k++) {
                int id = (int)(rand_r(&seed) % 150000);
                json_array_append_new(t, json_integer(id));
                json_array_append_new(m, json_integer(k < PROMPT ? -100 : id));
            }
            json_array_append_new(tokens, t);
            json_array_append_new(masks, m);
            json_array_append_new(scores, json_real(s % 2 ? 0.0 : 1.0));
        }
        json_array_append_new(arr, json_pack("{s:o, s:o, s:o}", "tokens", tokens, "masks", masks, "scores", scores));
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    *len = strlen(text);
    /* Compact encoding: group i starts after "[" and i commas, and each
     * group's own encoding has the same length as within the array. */
    size_t off = 1;
    for (size_t g = 0; g < groups; g++) {
        char *one = json_dumps(json_array_get(arr, g), JSON_COMPACT);
        raw[g] = text + off;
        raw_lens[g] = strlen(one);
        off += raw_lens[g] + 1;
        free(one);
    }
    json_decref(arr);
    return text;
}

static void *producer(void *arg)
{
    run *r = arg;
    char err[512];
    while (atomic_load(&r->pushed) < r->target && !atomic_load(&r->failed)) {
        json_error_t jerr;
        json_t *groups = json_loadb(r->body, r->body_len, 0, &jerr);
        size_t accepted = 0;
        int rc = groups ? srv__buffer_push(&accepted, NULL, r->buf, groups, r->raw, r->raw_lens, err, sizeof err) : -1;
        json_decref(groups);
        if (rc == SRV__BUF_EFULL)
            continue; /* the trainer is behind: back off as an HTTP client would */
        if (rc != 0) {
            fprintf(stderr, "buffer_bench: push failed: %s\n", groups ? err : jerr.text);
            atomic_store(&r->failed, 1);
            break;
        }
        atomic_fetch_add(&r->pushed, (long)accepted);
    }
    atomic_fetch_sub(&r->producers_left, 1);
    return NULL;
}

static void *trainer(void *arg)
{
    run *r = arg;
    char err[512];
    for (;;) {
        int last = atomic_load(&r->producers_left) == 0;
        double t0 = now_s();
        json_t *batch = NULL;
        if (srv__buffer_batch(&batch, r->buf, err, sizeof err) != 0) {
            fprintf(stderr, "buffer_bench: batch failed: %s\n", err);
            atomic_store(&r->failed, 1);
            return NULL;
        }
        double dt = now_s() - t0;
        if (batch) {
            if (r->n_lat < r->cap_lat)
                r->lat_us[r->n_lat++] = dt * 1e6;
            json_decref(batch);
        } else if (last) {
            return NULL;
        } else {
            sched_yield();
        }
    }
}

static void rm_journal(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/journal", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/journal.tmp", dir);
    unlink(p);
    rmdir(dir);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One configuration; returns groups/s (0 on failure) and fills latencies. */
static double measure(int journal, int producers, size_t per_push, double *p50, double *p99)
{
    char dir[] = "./.envsrv-bench-XXXXXX";
    double rate = 0;
    run r;
    memset(&r, 0, sizeof r);
    char err[512];
    if (journal && !mkdtemp(dir)) {
        perror("buffer_bench: mkdtemp");
        return 0;
    }
    srv_buffer_options o = { 0 };
    o.max_queue = 4096;
    o.no_journal = !journal;
    o.journal_dir = dir;
    if (srv__buffer_new(&r.buf, &o, err, sizeof err) != 0) {
        fprintf(stderr, "buffer_bench: %s\n", err);
        goto done;
    }
    json_t *cfg = json_pack("{s:i, s:i}", "batch_size", BATCH_SIZE, "max_token_len", 1024), *uuid = NULL;
    if (srv__buffer_register(&uuid, r.buf, cfg, err, sizeof err) != 0) {
        fprintf(stderr, "buffer_bench: %s\n", err);
        json_decref(cfg);
        goto done;
    }
    json_decref(cfg);
    json_decref(uuid);
    r.body = make_body(per_push, &r.body_len, r.raw, r.raw_lens);
    r.groups_per_push = per_push;
    r.target = GROUPS_PER_RUN;
    r.cap_lat = GROUPS_PER_RUN;
    r.lat_us = malloc(r.cap_lat * sizeof *r.lat_us);
    atomic_store(&r.producers_left, producers);
    pthread_t th[64], tr;
    double t0 = now_s();
    pthread_create(&tr, NULL, trainer, &r);
    for (int i = 0; i < producers; i++)
        pthread_create(&th[i], NULL, producer, &r);
    for (int i = 0; i < producers; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    pthread_join(tr, NULL);
    if (!atomic_load(&r.failed))
        rate = (double)atomic_load(&r.pushed) / dt;
    if (r.n_lat) {
        qsort(r.lat_us, r.n_lat, sizeof *r.lat_us, cmp_double);
        *p50 = r.lat_us[r.n_lat / 2];
        *p99 = r.lat_us[(r.n_lat * 99) / 100];
    }
done:
    srv__buffer_free(r.buf);
    free((char *)r.body);
    free(r.lat_us);
    if (journal)
        rm_journal(dir);
    return rate;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    static const struct { int producers; size_t per_push; } cfgs[] = { { 2, 1 }, { 8, 1 }, { 2, 8 } };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        for (int journal = 1; journal >= 0; journal--) {
            double p50 = 0, p99 = 0;
            double rate = measure(journal, cfgs[c].producers, cfgs[c].per_push, &p50, &p99);
            if (rate == 0)
                return 1;
            printf("buffer ingest journal=%-5s %8.0f groups/s (%dx%d tokens, %d producers, %zu group%s per push)\n",
                   journal ? "fsync:" : "off:", rate, SEQS, TOKENS, cfgs[c].producers, cfgs[c].per_push,
                   cfgs[c].per_push > 1 ? "s" : "");
            if (journal && c == 0)
                printf("buffer batch: p50 %.0f us, p99 %.0f us (%d sequences, journal on)\n", p50, p99, BATCH_SIZE);
            fflush(stdout);
        }
    }
    return 0;
}
