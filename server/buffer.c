/*
 * The trajectory buffer: Atropos's central queue of scored groups, with the
 * bound, the journal, the policy versions and the validation Atropos lacks
 * (docs/trajectory.md).
 *
 * State lives behind one mutex and is changed by "records": each change is
 * first made as a JSON record, applied to memory by the same apply_*()
 * function replay uses, and appended to the journal under the lock (so the
 * journal's order is the state's order). The fdatasync that makes it durable
 * runs after the lock is released and is shared between threads
 * (srv__journal_sync). Records:
 *
 *   {"t":"trainer","cfg":{...},"uuid":..,"step":S}   POST /register
 *   {"t":"env","desired_name":..,...}                POST /register-env (id = order)
 *   {"t":"disc","env_id":N}                          POST /disconnect-env
 *   {"t":"start"}                                    the trainer's first /batch
 *   {"t":"g","seq":N,"v":V,"env":E,"n":n,"g":{...}}  one accepted group
 *   {"t":"batch","step":S,"seqs":[...]}              a batch handed out
 *   {"t":"drop","reason":R,"seqs":[...]}             groups dropped at batch time
 *   {"t":"policy","v":V}                             POST /v1/policy
 *   {"t":"reset"}                                    GET /reset_data
 *   {"t":"snap",...}                                 compaction: the state minus the queue
 *
 * Batches follow Atropos's packing: the largest group size G in the queue is
 * the pack size; groups of one size (and one env, when some env asks for a
 * min_batch_allocation) are gathered oldest-first into packs of G sequences,
 * and a batch is batch_size/G packs, the oldest first, after each env's
 * minimum. When batch_size is not a multiple of G, groups are taken
 * oldest-first while they fit. Unlike Atropos, the oldest batch is served
 * first and the step counts batches handed out.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/server_int.h"

#define TOKEN_ID_LIMIT 2147483648LL  /* ids below 2^31 when --vocab-size is not given */

/* One queued group. */
typedef struct entry {
    uint64_t seq;            /* journal id, increasing in queue order */
    long long version;       /* policy version that produced it */
    long long env_id;        /* -1 when the producer gave none */
    size_t n;                /* sequences */
    size_t bytes;            /* size of its journal record */
    int pending;             /* in its env's mixed-size buffer, not yet in the queue */
    json_t *group;           /* owned reference */
} entry;

/* One registered environment (Atropos's app.state.envs[i]). */
typedef struct env_reg {
    char *desired_name;      /* owned */
    char *real_name;         /* owned: desired_name + "_" + count of that name */
    long long max_token_length;
    double weight;
    long long group_size;
    double min_alloc;        /* < 0 when none */
    int connected;
} env_reg;

struct srv__buffer {
    pthread_mutex_t lock;
    srv_buffer_options o;    /* journal_dir borrowed from the caller's options, used only in new() */
    srv__journal *journal;   /* owned; NULL with --no-journal */
    json_t *trainer;         /* owned: the /register fields, NULL before one */
    char uuid[37];
    long long step;
    long long version;
    int started;             /* the trainer has asked for its first batch */
    env_reg *envs;           /* owned array */
    size_t n_envs, cap_envs;
    entry *q;                /* owned array, oldest first */
    size_t qlen, qcap;
    size_t queue_seqs;
    uint64_t next_seq;
    json_t *latest;          /* owned: the last group accepted */
    uint64_t dropped_stale, dropped_flat, dropped_reset;
    uint64_t rejected_invalid, rejected_full;
    uint64_t live_bytes, dead_bytes;
};

/* ---- state changes shared by live calls and replay ---------------------------- */

static void entry_free(entry *e)
{
    json_decref(e->group);
    e->group = NULL;
}

static void clear_queue(srv__buffer *b)
{
    for (size_t i = 0; i < b->qlen; i++)
        entry_free(&b->q[i]);
    b->qlen = 0;
    b->queue_seqs = 0;
    b->live_bytes = 0;
}

static void clear_envs(srv__buffer *b)
{
    for (size_t i = 0; i < b->n_envs; i++) {
        free(b->envs[i].desired_name);
        free(b->envs[i].real_name);
    }
    b->n_envs = 0;
}

static int push_entry(srv__buffer *b, const entry *e)
{
    if (b->qlen == b->qcap) {
        size_t cap = b->qcap ? b->qcap * 2 : 256;
        entry *q = realloc(b->q, cap * sizeof *q);
        if (!q)
            return -1;
        b->q = q;
        b->qcap = cap;
    }
    b->q[b->qlen++] = *e;
    b->queue_seqs += e->n;
    b->live_bytes += e->bytes;
    return 0;
}

/* Removes the entries whose seq is in `seqs` (sorted or not) from the queue. */
static size_t remove_seqs(srv__buffer *b, const json_t *seqs)
{
    size_t removed = 0, w = 0;
    size_t n = json_array_size(seqs);
    for (size_t r = 0; r < b->qlen; r++) {
        entry *e = &b->q[r];
        int hit = 0;
        /* The queue is sorted by seq: binary search each wanted seq would
         * be faster, but records name a batch's worth at most. */
        for (size_t i = 0; i < n && !hit; i++)
            hit = (uint64_t)json_integer_value(json_array_get(seqs, i)) == e->seq;
        if (hit) {
            b->queue_seqs -= e->n;
            b->live_bytes -= e->bytes;
            b->dead_bytes += e->bytes;
            entry_free(e);
            removed++;
        } else {
            b->q[w++] = *e;
        }
    }
    b->qlen = w;
    return removed;
}

static int add_env(srv__buffer *b, const json_t *rec)
{
    if (b->n_envs == b->cap_envs) {
        size_t cap = b->cap_envs ? b->cap_envs * 2 : 8;
        env_reg *p = realloc(b->envs, cap * sizeof *p);
        if (!p)
            return -1;
        b->envs = p;
        b->cap_envs = cap;
    }
    env_reg *e = &b->envs[b->n_envs];
    memset(e, 0, sizeof *e);
    e->desired_name = strdup(json_string_value(json_object_get(rec, "desired_name")) ?: "");
    e->real_name = strdup(json_string_value(json_object_get(rec, "real_name")) ?: "");
    if (!e->desired_name || !e->real_name) {
        free(e->desired_name);
        free(e->real_name);
        return -1;
    }
    e->max_token_length = json_integer_value(json_object_get(rec, "max_token_length"));
    e->weight = json_number_value(json_object_get(rec, "weight"));
    e->group_size = json_integer_value(json_object_get(rec, "group_size"));
    json_t *ma = json_object_get(rec, "min_batch_allocation");
    e->min_alloc = json_is_number(ma) ? json_number_value(ma) : -1.0;
    e->connected = 1;
    b->n_envs++;
    return 0;
}

static void count_drops(srv__buffer *b, const char *reason, uint64_t n)
{
    if (strcmp(reason, "stale") == 0)
        b->dropped_stale += n;
    else if (strcmp(reason, "reset") == 0)
        b->dropped_reset += n;
    else
        b->dropped_flat += n;
}

/* Applies one record (already parsed) to memory. Group records are handled by
 * the caller, which owns the group reference. */
static int apply(srv__buffer *b, const json_t *rec)
{
    const char *t = json_string_value(json_object_get(rec, "t"));
    if (!t)
        return -1;
    if (strcmp(t, "trainer") == 0) {
        json_decref(b->trainer);
        b->trainer = json_deep_copy(json_object_get(rec, "cfg"));
        snprintf(b->uuid, sizeof b->uuid, "%s", json_string_value(json_object_get(rec, "uuid")) ?: "");
        b->step = json_integer_value(json_object_get(rec, "step"));
        b->started = 0;
        return b->trainer ? 0 : -1;
    }
    if (strcmp(t, "env") == 0)
        return add_env(b, rec);
    if (strcmp(t, "disc") == 0) {
        long long id = json_integer_value(json_object_get(rec, "env_id"));
        if (id >= 0 && (size_t)id < b->n_envs)
            b->envs[id].connected = 0;
        return 0;
    }
    if (strcmp(t, "start") == 0) {
        b->started = 1;
        return 0;
    }
    if (strcmp(t, "batch") == 0) {
        remove_seqs(b, json_object_get(rec, "seqs"));
        b->step = json_integer_value(json_object_get(rec, "step"));
        return 0;
    }
    if (strcmp(t, "drop") == 0) {
        size_t n = remove_seqs(b, json_object_get(rec, "seqs"));
        count_drops(b, json_string_value(json_object_get(rec, "reason")) ?: "stale", n);
        return 0;
    }
    if (strcmp(t, "rel") == 0) {
        /* Mixed-size groups whose sizes now add up to their env's
         * group_size leave the env's buffer for the queue. */
        json_t *seqs = json_object_get(rec, "seqs");
        for (size_t i = 0; i < b->qlen; i++)
            for (size_t k = 0; k < json_array_size(seqs); k++)
                if ((uint64_t)json_integer_value(json_array_get(seqs, k)) == b->q[i].seq)
                    b->q[i].pending = 0;
        return 0;
    }
    if (strcmp(t, "policy") == 0) {
        b->version = json_integer_value(json_object_get(rec, "v"));
        return 0;
    }
    if (strcmp(t, "reset") == 0) {
        b->dropped_reset += b->qlen;
        b->dead_bytes += b->live_bytes;
        clear_queue(b);
        clear_envs(b);
        json_decref(b->trainer);
        b->trainer = NULL;
        b->uuid[0] = '\0';
        b->step = 0;
        b->started = 0;
        json_decref(b->latest);
        b->latest = NULL;
        return 0;
    }
    if (strcmp(t, "snap") == 0) {
        clear_queue(b);
        clear_envs(b);
        json_decref(b->trainer);
        b->trainer = NULL;
        json_t *tr = json_object_get(rec, "trainer");
        if (json_is_object(tr) && !(b->trainer = json_deep_copy(tr)))
            return -1;
        snprintf(b->uuid, sizeof b->uuid, "%s", json_string_value(json_object_get(rec, "uuid")) ?: "");
        b->step = json_integer_value(json_object_get(rec, "step"));
        b->version = json_integer_value(json_object_get(rec, "version"));
        b->started = json_is_true(json_object_get(rec, "started"));
        b->next_seq = (uint64_t)json_integer_value(json_object_get(rec, "next_seq"));
        json_t *d = json_object_get(rec, "dropped");
        b->dropped_stale = (uint64_t)json_integer_value(json_object_get(d, "stale"));
        b->dropped_flat = (uint64_t)json_integer_value(json_object_get(d, "flat"));
        b->dropped_reset = (uint64_t)json_integer_value(json_object_get(d, "reset"));
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(rec, "envs"), i, e) {
            if (add_env(b, e) != 0)
                return -1;
            b->envs[i].connected = json_is_true(json_object_get(e, "connected"));
        }
        return 0;
    }
    return -1;
}

/* Fields Atropos's batch items always carry (null when the producer gave none). */
static const char *const optional_fields[] = { "advantages", "ref_logprobs", "messages", "generation_params",
                                               "inference_logprobs", "overrides", "group_overrides", "images",
                                               "env_id" };

/* Gives a group every optional field (null when absent) and its version.
 * Done on push and again on replay, since the journal may hold the text the
 * producer sent rather than the normalized group. */
static int normalize(json_t *g, long long version)
{
    for (size_t f = 0; f < sizeof optional_fields / sizeof optional_fields[0]; f++)
        if (!json_object_get(g, optional_fields[f]) && json_object_set_new(g, optional_fields[f], json_null()))
            return -1;
    return json_object_set_new(g, "policy_version", json_integer(version));
}

/* Replay callback: one journal record. */
static int replay_record(void *payload, const char *rec, size_t len, char *err, size_t errlen)
{
    srv__buffer *b = payload;
    json_error_t jerr;
    json_t *r = json_loadb(rec, len, JSON_ALLOW_NUL, &jerr);
    if (!r) {
        snprintf(err, errlen, "journal record is not JSON (%s); the journal is damaged", jerr.text);
        return -1;
    }
    int rc = 0;
    const char *t = json_string_value(json_object_get(r, "t"));
    if (t && strcmp(t, "g") == 0) {
        entry e = { 0 };
        e.seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
        e.version = json_integer_value(json_object_get(r, "v"));
        e.env_id = json_integer_value(json_object_get(r, "env"));
        e.n = (size_t)json_integer_value(json_object_get(r, "n"));
        e.pending = json_is_true(json_object_get(r, "p"));
        e.bytes = len;
        e.group = json_incref(json_object_get(r, "g"));
        if (e.group && normalize(e.group, e.version) != 0) {
            json_decref(e.group);
            e.group = NULL;
        }
        if (!e.group || push_entry(b, &e) != 0) {
            json_decref(e.group);
            rc = -1;
        } else {
            if (e.seq >= b->next_seq)
                b->next_seq = e.seq + 1;
            json_decref(b->latest);
            b->latest = json_incref(e.group);
        }
    } else {
        rc = apply(b, r);
        if (t && (strcmp(t, "batch") == 0 || strcmp(t, "drop") == 0))
            b->dead_bytes += len;
    }
    if (rc != 0)
        snprintf(err, errlen, "journal record of type '%s' could not be applied", t ? t : "?");
    json_decref(r);
    return rc;
}

/* ---- journaling -------------------------------------------------------------------- */

/* Applies a record and appends it (lock held). *ticket is 0 without a journal. */
static int commit_locked(uint64_t *ticket, srv__buffer *b, json_t *rec, char *err, size_t errlen)
{
    *ticket = 0;
    if (apply(b, rec) != 0) {
        snprintf(err, errlen, "out of memory");
        return SRV__BUF_ENOMEM;
    }
    if (!b->journal)
        return 0;
    char *text = srv__json_dump(rec, NULL);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return SRV__BUF_ENOMEM;
    }
    size_t len = strlen(text);
    int rc = srv__journal_append(ticket, b->journal, &text, &len, 1, err, errlen) == 0 ? 0 : SRV__BUF_EIO;
    free(text);
    return rc;
}

static int sync_ticket(srv__buffer *b, uint64_t ticket, char *err, size_t errlen)
{
    if (!b->journal || ticket == 0)
        return 0;
    return srv__journal_sync(b->journal, ticket, err, errlen) == 0 ? 0 : SRV__BUF_EIO;
}

static char *group_record(size_t *len, const entry *e, const char *gtext, size_t glen)
{
    char head[160];
    int h = snprintf(head, sizeof head,
                     "{\"t\":\"g\",\"seq\":%" PRIu64 ",\"v\":%lld,\"env\":%lld,\"n\":%zu,\"p\":%s,\"g\":", e->seq,
                     e->version, e->env_id, e->n, e->pending ? "true" : "false");
    char *r = malloc((size_t)h + glen + 2);
    if (!r)
        return NULL;
    memcpy(r, head, (size_t)h);
    memcpy(r + h, gtext, glen);
    r[h + glen] = '}';
    r[h + glen + 1] = '\0';
    *len = (size_t)h + glen + 1;
    return r;
}

/* Rewrites the journal as a snapshot when dead records outweigh live ones
 * (lock held). A failure is logged and leaves the old journal in place,
 * which is still correct, only larger. */
static void maybe_compact(srv__buffer *b)
{
    size_t threshold = b->o.journal_compact ? b->o.journal_compact : SRV_DEFAULT_JOURNAL_COMPACT;
    if (!b->journal || b->dead_bytes < threshold || b->dead_bytes < b->live_bytes)
        return;
    char err[256] = "out of memory";
    size_t n = 0, nrec = b->qlen + 1;
    char **recs = calloc(nrec, sizeof *recs);
    size_t *lens = calloc(nrec, sizeof *lens);
    json_t *envs = json_array();
    json_t *snap = NULL;
    if (!recs || !lens || !envs)
        goto done;
    for (size_t i = 0; i < b->n_envs; i++) {
        const env_reg *e = &b->envs[i];
        json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:I, s:o, s:b}", "desired_name", e->desired_name,
                              "real_name", e->real_name, "max_token_length", (json_int_t)e->max_token_length,
                              "weight", e->weight, "group_size", (json_int_t)e->group_size,
                              "min_batch_allocation", e->min_alloc >= 0 ? json_real(e->min_alloc) : json_null(),
                              "connected", e->connected);
        if (!o || json_array_append_new(envs, o) != 0)
            goto done;
    }
    snap = json_pack("{s:s, s:O?, s:s, s:I, s:I, s:b, s:I, s:{s:I, s:I, s:I}, s:O}", "t", "snap", "trainer",
                     b->trainer, "uuid", b->uuid, "step", (json_int_t)b->step, "version",
                     (json_int_t)b->version, "started", b->started, "next_seq", (json_int_t)b->next_seq,
                     "dropped", "stale", (json_int_t)b->dropped_stale, "flat", (json_int_t)b->dropped_flat,
                     "reset", (json_int_t)b->dropped_reset, "envs", envs);
    if (!snap || !(recs[0] = srv__json_dump(snap, NULL)))
        goto done;
    lens[0] = strlen(recs[0]);
    n = 1;
    uint64_t live = 0;
    for (size_t i = 0; i < b->qlen; i++, n++) {
        char *g = srv__json_dump(b->q[i].group, NULL);
        if (!g)
            goto done;
        recs[n] = group_record(&lens[n], &b->q[i], g, strlen(g));
        free(g);
        if (!recs[n])
            goto done;
        b->q[i].bytes = lens[n];
        live += lens[n];
    }
    if (srv__journal_rewrite(b->journal, recs, lens, n, err, sizeof err) != 0)
        goto done;
    b->live_bytes = live;
    b->dead_bytes = 0;
    err[0] = '\0';
done:
    if (err[0])
        fprintf(stderr, "envsrv: buffer: journal compaction failed: %s\n", err);
    for (size_t i = 0; i < nrec && recs; i++)
        free(recs[i]);
    free(recs);
    free(lens);
    json_decref(envs);
    json_decref(snap);
}

/* ---- life ------------------------------------------------------------------------------ */

int srv__buffer_new(srv__buffer **out, const srv_buffer_options *opts, char *err, size_t errlen)
{
    *out = NULL;
    srv__buffer *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&b->lock, NULL);
    b->o = *opts;
    b->o.journal_dir = NULL;
    if (!b->o.max_queue)
        b->o.max_queue = SRV_DEFAULT_MAX_QUEUE;
    if (!opts->no_journal) {
        const char *dir = opts->journal_dir ? opts->journal_dir : SRV_DEFAULT_JOURNAL_DIR;
        if (srv__journal_open(&b->journal, dir, replay_record, b, err, errlen) != 0) {
            srv__buffer_free(b);
            return -1;
        }
    }
    *out = b;
    return 0;
}

void srv__buffer_free(srv__buffer *b)
{
    if (!b)
        return;
    clear_queue(b);
    clear_envs(b);
    free(b->q);
    free(b->envs);
    json_decref(b->trainer);
    json_decref(b->latest);
    srv__journal_free(b->journal);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* ---- registration ------------------------------------------------------------------------ */

/* Reads an optional integer field into *v; 0, or SRV__BUF_EINVALID with err. */
static int opt_int(long long *v, const json_t *o, const char *key, int required, long long min,
                   char *err, size_t errlen)
{
    json_t *f = json_object_get(o, key);
    if (!f || json_is_null(f)) {
        if (required) {
            snprintf(err, errlen, "missing field '%s'", key);
            return SRV__BUF_EINVALID;
        }
        return 0;
    }
    if (!json_is_integer(f) || json_integer_value(f) < min) {
        snprintf(err, errlen, "field '%s' must be an integer of at least %lld, got %s", key, min,
                 json_is_integer(f) ? "a smaller one" : srv__json_kind(f));
        return SRV__BUF_EINVALID;
    }
    *v = json_integer_value(f);
    return 0;
}

static int opt_str(const char **v, const json_t *o, const char *key, int required, char *err, size_t errlen)
{
    json_t *f = json_object_get(o, key);
    if (!f || json_is_null(f)) {
        if (required) {
            snprintf(err, errlen, "missing field '%s'", key);
            return SRV__BUF_EINVALID;
        }
        return 0;
    }
    if (!json_is_string(f)) {
        snprintf(err, errlen, "field '%s' must be a string, got %s", key, srv__json_kind(f));
        return SRV__BUF_EINVALID;
    }
    *v = json_string_value(f);
    return 0;
}

/* Atropos answers uuid.uuid4().int, a 128-bit integer; JSON integers that
 * every client parses exactly stop at 63 bits, so this is a random 63-bit one. */
static json_int_t new_uuid(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = srv__now_ns() * 0x9E3779B97F4A7C15ull; /* getrandom does not fail for 8 bytes once seeded */
    return (json_int_t)(r >> 1);
}

int srv__buffer_register(json_t **out, srv__buffer *b, const json_t *cfg, char *err, size_t errlen)
{
    *out = NULL;
    long long batch_size = 0, max_token_len = 0, interval = 0, starting = 0, num_steps = 0;
    const char *group = "", *project = "", *ckpt = "";
    int rc;
    if ((rc = opt_int(&batch_size, cfg, "batch_size", 1, 1, err, errlen)) ||
        (rc = opt_int(&max_token_len, cfg, "max_token_len", 1, 1, err, errlen)) ||
        (rc = opt_int(&interval, cfg, "save_checkpoint_interval", 0, 0, err, errlen)) ||
        (rc = opt_int(&starting, cfg, "starting_step", 0, 0, err, errlen)) ||
        (rc = opt_int(&num_steps, cfg, "num_steps", 0, 0, err, errlen)) ||
        (rc = opt_str(&group, cfg, "wandb_group", 0, err, errlen)) ||
        (rc = opt_str(&project, cfg, "wandb_project", 0, err, errlen)) ||
        (rc = opt_str(&ckpt, cfg, "checkpoint_dir", 0, err, errlen)))
        return rc;
    json_int_t uuid = new_uuid();
    char uuid_text[32];
    snprintf(uuid_text, sizeof uuid_text, "%lld", (long long)uuid);
    pthread_mutex_lock(&b->lock);
    int first = b->trainer == NULL;
    pthread_mutex_unlock(&b->lock);
    if (!first) {
        /* Atropos: the first registration sets the run up; later ones (a
         * restarted trainer, a second trainer) only get an id. */
        *out = json_pack("{s:I}", "uuid", uuid);
        return *out ? 0 : SRV__BUF_ENOMEM;
    }
    json_t *rec = json_pack("{s:s, s:{s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I}, s:s, s:I}", "t", "trainer", "cfg",
                            "wandb_group", group, "wandb_project", project, "batch_size", (json_int_t)batch_size,
                            "max_token_len", (json_int_t)max_token_len, "checkpoint_dir", ckpt,
                            "save_checkpoint_interval", (json_int_t)interval, "starting_step",
                            (json_int_t)starting, "num_steps", (json_int_t)num_steps, "uuid", uuid_text, "step",
                            (json_int_t)starting);
    if (!rec) {
        snprintf(err, errlen, "out of memory");
        return SRV__BUF_ENOMEM;
    }
    uint64_t ticket;
    pthread_mutex_lock(&b->lock);
    rc = commit_locked(&ticket, b, rec, err, errlen);
    pthread_mutex_unlock(&b->lock);
    json_decref(rec);
    if (!rc)
        rc = sync_ticket(b, ticket, err, errlen);
    if (!rc && !(*out = json_pack("{s:I}", "uuid", uuid)))
        rc = SRV__BUF_ENOMEM;
    return rc;
}

int srv__buffer_register_env(json_t **out, srv__buffer *b, const json_t *req, char *err, size_t errlen)
{
    *out = NULL;
    long long max_len = 0, group_size = 0;
    const char *name = NULL;
    int rc;
    if ((rc = opt_int(&max_len, req, "max_token_length", 1, 1, err, errlen)) ||
        (rc = opt_str(&name, req, "desired_name", 1, err, errlen)) ||
        (rc = opt_int(&group_size, req, "group_size", 1, 1, err, errlen)))
        return rc;
    json_t *w = json_object_get(req, "weight");
    if (!w) {
        snprintf(err, errlen, "missing field 'weight'");
        return SRV__BUF_EINVALID;
    }
    if (!json_is_number(w) || !(json_number_value(w) >= 0) || !isfinite(json_number_value(w))) {
        snprintf(err, errlen, "field 'weight' must be a non-negative number, got %s",
                 json_is_number(w) ? "a negative one" : srv__json_kind(w));
        return SRV__BUF_EINVALID;
    }
    json_t *ma = json_object_get(req, "min_batch_allocation");
    if (ma && !json_is_null(ma) &&
        (!json_is_number(ma) || !(json_number_value(ma) >= 0 && json_number_value(ma) <= 1))) {
        snprintf(err, errlen, "field 'min_batch_allocation' must be a number from 0 to 1 or null");
        return SRV__BUF_EINVALID;
    }
    pthread_mutex_lock(&b->lock);
    if (b->n_envs == SRV__BUFFER_MAX_ENVS) {
        pthread_mutex_unlock(&b->lock);
        snprintf(err, errlen, "too many environments registered (at most %d; /reset_data clears them)", SRV__BUFFER_MAX_ENVS);
        return SRV__BUF_EINVALID;
    }
    if (!b->trainer || !b->started) {
        /* Atropos's answer: the env polls until the trainer's first /batch. */
        pthread_mutex_unlock(&b->lock);
        *out = json_pack("{s:s}", "status", "wait for trainer to start");
        return *out ? 0 : SRV__BUF_ENOMEM;
    }
    size_t same = 0;
    for (size_t i = 0; i < b->n_envs; i++)
        same += strcmp(b->envs[i].desired_name, name) == 0;
    char real[512];
    snprintf(real, sizeof real, "%.400s_%zu", name, same);
    size_t id = b->n_envs;
    json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:O, s:I, s:O}", "t", "env", "desired_name", name, "real_name",
                            real, "max_token_length", (json_int_t)max_len, "weight", w, "group_size",
                            (json_int_t)group_size, "min_batch_allocation", ma ? ma : json_null());
    uint64_t ticket = 0;
    rc = rec ? commit_locked(&ticket, b, rec, err, errlen) : SRV__BUF_ENOMEM;
    if (!rc)
        *out = json_pack("{s:s, s:I, s:s, s:O, s:I, s:O, s:O}", "status", "success", "env_id", (json_int_t)id,
                         "wandb_name", real, "checkpoint_dir", json_object_get(b->trainer, "checkpoint_dir"),
                         "starting_step", (json_int_t)b->step, "checkpoint_interval",
                         json_object_get(b->trainer, "save_checkpoint_interval"), "num_steps",
                         json_object_get(b->trainer, "num_steps"));
    pthread_mutex_unlock(&b->lock);
    json_decref(rec);
    if (!rc)
        rc = sync_ticket(b, ticket, err, errlen);
    if (!rc && !*out)
        rc = SRV__BUF_ENOMEM;
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int srv__buffer_disconnect_env(srv__buffer *b, long long env_id, char *err, size_t errlen)
{
    int rc;
    uint64_t ticket = 0;
    pthread_mutex_lock(&b->lock);
    if (env_id < 0 || (size_t)env_id >= b->n_envs) {
        snprintf(err, errlen, "unknown env_id %lld (%zu registered)", env_id, b->n_envs);
        rc = SRV__BUF_ENOTFOUND;
    } else {
        json_t *rec = json_pack("{s:s, s:I}", "t", "disc", "env_id", (json_int_t)env_id);
        rc = rec ? commit_locked(&ticket, b, rec, err, errlen) : SRV__BUF_ENOMEM;
        json_decref(rec);
    }
    pthread_mutex_unlock(&b->lock);
    return rc ? rc : sync_ticket(b, ticket, err, errlen);
}

/* ---- producing ---------------------------------------------------------------------------- */

/*
 * Finds buffered groups of env `env_id` whose sizes add up to its group_size,
 * preferring the oldest (Atropos's find_groups_summing_to_target: first in
 * arrival order while they fit, else the earliest subset that sums exactly),
 * and releases them into the queue with a "rel" record (lock held).
 */
static int release_pending(uint64_t *ticket, srv__buffer *b, long long env_id, char *err, size_t errlen)
{
    *ticket = 0;
    size_t target = (size_t)b->envs[env_id].group_size, m = 0;
    size_t *idx = malloc((b->qlen ? b->qlen : 1) * sizeof *idx);
    unsigned char *reach = NULL, *take = NULL;
    json_t *seqs = NULL, *rec = NULL;
    int rc = SRV__BUF_ENOMEM;
    if (!idx)
        goto done;
    for (size_t i = 0; i < b->qlen; i++)
        if (b->q[i].pending && b->q[i].env_id == env_id)
            idx[m++] = i;
    take = calloc(m ? m : 1, 1);
    if (!take)
        goto done;
    size_t sum = 0;
    for (size_t k = 0; k < m && sum < target; k++) {
        if (sum + b->q[idx[k]].n <= target) {
            take[k] = 1;
            sum += b->q[idx[k]].n;
        }
    }
    if (sum != target) {
        /* reach[k][s]: groups k..m-1 can make s exactly. */
        memset(take, 0, m ? m : 1);
        reach = calloc((m + 1) * (target + 1), 1);
        if (!reach)
            goto done;
        reach[m * (target + 1)] = 1;
        for (size_t k = m; k-- > 0;) {
            size_t sz = b->q[idx[k]].n;
            for (size_t t = 0; t <= target; t++)
                reach[k * (target + 1) + t] =
                    reach[(k + 1) * (target + 1) + t] || (sz <= t && reach[(k + 1) * (target + 1) + t - sz]);
        }
        if (!reach[target]) {
            rc = 0; /* nothing adds up yet: keep waiting */
            goto done;
        }
        size_t left = target;
        for (size_t k = 0; k < m && left > 0; k++) {
            size_t sz = b->q[idx[k]].n;
            if (sz <= left && reach[(k + 1) * (target + 1) + left - sz]) {
                take[k] = 1;
                left -= sz;
            }
        }
    }
    seqs = json_array();
    if (!seqs)
        goto done;
    for (size_t k = 0; k < m; k++)
        if (take[k] && json_array_append_new(seqs, json_integer((json_int_t)b->q[idx[k]].seq)))
            goto done;
    rec = json_pack("{s:s, s:O}", "t", "rel", "seqs", seqs);
    rc = rec ? commit_locked(ticket, b, rec, err, errlen) : SRV__BUF_ENOMEM;
    for (size_t k = 0; !rc && k < m; k++) {
        if (take[k]) {
            json_decref(b->latest);
            b->latest = json_incref(b->q[idx[k]].group);
        }
    }
done:
    if (rc == SRV__BUF_ENOMEM)
        snprintf(err, errlen, "out of memory");
    free(idx);
    free(take);
    free(reach);
    json_decref(seqs);
    json_decref(rec);
    return rc;
}

int srv__buffer_push(size_t *accepted, long long *buffer_size, srv__buffer *b, json_t *groups,
                     const char *const *raw, const size_t *raw_lens, char *err, size_t errlen)
{
    int rc = 0;
    *accepted = 0;
    if (buffer_size)
        *buffer_size = -1;
    size_t n = json_array_size(groups);
    entry *es = calloc(n ? n : 1, sizeof *es);
    char **texts = calloc(n ? n : 1, sizeof *texts);
    char **recs = calloc(n ? n : 1, sizeof *recs);
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    int *keep = calloc(n ? n : 1, sizeof *keep);
    if (!es || !texts || !recs || !lens || !keep) {
        snprintf(err, errlen, "out of memory");
        rc = SRV__BUF_ENOMEM;
        goto done;
    }
    srv__group_limits lim = { 0 };
    long long version;
    pthread_mutex_lock(&b->lock);
    lim.max_token_len = b->trainer ? json_integer_value(json_object_get(b->trainer, "max_token_len")) : 0;
    lim.vocab = b->o.vocab_size > 0 ? b->o.vocab_size : TOKEN_ID_LIMIT;
    lim.n_envs = b->n_envs;
    for (size_t i = 0; i < b->n_envs && i < SRV__BUFFER_MAX_ENVS; i++)
        lim.env_max[i] = b->envs[i].max_token_length;
    version = b->version;
    pthread_mutex_unlock(&b->lock);

    /* Validation and encoding, the expensive part, outside the lock. */
    size_t total = 0, flat = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *g = json_array_get(groups, i);
        if (srv__group_check(&es[i].env_id, g, i, &lim, err, errlen) != 0) {
            rc = SRV__BUF_EINVALID;
            goto done;
        }
        es[i].n = json_array_size(json_object_get(g, "tokens"));
        json_t *pv = json_object_get(g, "policy_version");
        es[i].version = json_is_integer(pv) ? json_integer_value(pv) : version;
        keep[i] = !(b->o.drop_flat_groups && srv__group_is_flat(g));
        if (!keep[i]) {
            flat++;
            continue;
        }
        total += es[i].n;
    }
    if (total > b->o.max_queue) {
        snprintf(err, errlen, "the groups hold %zu sequences, more than the whole queue (--max-queue %zu)", total,
                 b->o.max_queue);
        rc = SRV__BUF_EINVALID;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        json_t *g = json_array_get(groups, i);
        if (normalize(g, es[i].version) != 0 ||
            (b->journal && !raw && !(texts[i] = srv__json_dump(g, NULL))))
            rc = SRV__BUF_ENOMEM;
        if (rc) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
    }

    uint64_t ticket = 0;
    pthread_mutex_lock(&b->lock);
    if (flat) {
        b->dropped_flat += flat;
        fprintf(stderr, "envsrv: buffer: dropped %zu flat group(s) (all scores equal; --drop-flat-groups)\n", flat);
    }
    if (total > 0 && b->queue_seqs + total > b->o.max_queue) {
        b->rejected_full++;
        pthread_mutex_unlock(&b->lock);
        snprintf(err, errlen, "the queue is full (%zu of %zu sequences); retry later", b->queue_seqs, b->o.max_queue);
        rc = SRV__BUF_EFULL;
        goto done;
    }
    size_t nrec = 0;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        /* Atropos: a group of another size than its env's group_size waits
         * in the env's buffer until buffered groups add up to group_size. */
        long long eid = es[i].env_id;
        es[i].pending = eid >= 0 && (size_t)eid < b->n_envs && b->envs[eid].group_size > 0 &&
                        (long long)es[i].n != b->envs[eid].group_size;
        es[i].seq = b->next_seq + nrec;
        if (b->journal) {
            recs[nrec] = raw ? group_record(&lens[nrec], &es[i], raw[i], raw_lens[i])
                             : group_record(&lens[nrec], &es[i], texts[i], strlen(texts[i]));
            if (!recs[nrec]) {
                pthread_mutex_unlock(&b->lock);
                snprintf(err, errlen, "out of memory");
                rc = SRV__BUF_ENOMEM;
                goto done;
            }
            es[i].bytes = lens[nrec];
        }
        nrec++;
    }
    if (b->journal && nrec && srv__journal_append(&ticket, b->journal, recs, lens, nrec, err, errlen) != 0) {
        pthread_mutex_unlock(&b->lock);
        rc = SRV__BUF_EIO;
        goto done;
    }
    b->next_seq += nrec;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        es[i].group = json_incref(json_array_get(groups, i));
        if (push_entry(b, &es[i]) != 0) {
            /* Journaled but not queued: only a restart would bring it back, so
             * say so rather than pretend it was accepted. */
            json_decref(es[i].group);
            pthread_mutex_unlock(&b->lock);
            snprintf(err, errlen, "out of memory queueing group %zu", i);
            rc = SRV__BUF_ENOMEM;
            goto done;
        }
        if (!es[i].pending) {
            json_decref(b->latest);
            b->latest = json_incref(es[i].group);
        }
        (*accepted)++;
    }
    for (size_t i = 0; i < n; i++) {
        if (!keep[i] || !es[i].pending)
            continue;
        uint64_t t2 = 0;
        if ((rc = release_pending(&t2, b, es[i].env_id, err, errlen)) != 0) {
            pthread_mutex_unlock(&b->lock);
            goto done;
        }
        if (t2)
            ticket = t2;
        if (buffer_size) {
            *buffer_size = 0;
            for (size_t k = 0; k < b->qlen; k++)
                if (b->q[k].pending && b->q[k].env_id == es[i].env_id)
                    *buffer_size += (long long)b->q[k].n;
        }
    }
    pthread_mutex_unlock(&b->lock);
    rc = sync_ticket(b, ticket, err, errlen);
done:
    if (rc == SRV__BUF_EINVALID) {
        pthread_mutex_lock(&b->lock);
        b->rejected_invalid++;
        pthread_mutex_unlock(&b->lock);
    }
    for (size_t i = 0; i < n && texts && recs; i++) {
        free(texts[i]);
        free(recs[i]);
    }
    free(es);
    free(texts);
    free(recs);
    free(lens);
    free(keep);
    return rc;
}

/* ---- consuming ---------------------------------------------------------------------------- */

/* Whether entry e may go into a batch now; sets *stale when it never will. */
static int eligible(const srv__buffer *b, const entry *e, int *stale)
{
    *stale = 0;
    if (e->pending)
        return 0;
    if (b->o.sync_sequential) {
        *stale = e->version < b->version;
        return e->version == b->version;
    }
    if (b->o.has_max_staleness && b->version - e->version > (long long)b->o.max_staleness) {
        *stale = 1;
        return 0;
    }
    return 1;
}

/* A pack: `count` queue indices of one size (and env) totalling G sequences. */
typedef struct pack {
    size_t first;            /* index into the pick list */
    size_t count;
    long long env;
    int taken;
} pack;

/* Picks the queue indices of one batch into idx (at most qlen entries);
 * returns how many, 0 when no batch can be formed. */
static size_t form_batch(size_t *idx, srv__buffer *b, size_t bs)
{
    size_t G = 0, n_pick = 0;
    int min_active = 0;
    size_t need[SRV__BUFFER_MAX_ENVS] = { 0 };
    for (size_t i = 0; i < b->n_envs && i < SRV__BUFFER_MAX_ENVS; i++) {
        if (b->envs[i].connected && b->envs[i].min_alloc > 0) {
            need[i] = (size_t)ceil(b->envs[i].min_alloc * (double)bs);
            min_active = 1;
        }
    }
    int stale;
    for (size_t i = 0; i < b->qlen; i++)
        if (eligible(b, &b->q[i], &stale) && b->q[i].n > G)
            G = b->q[i].n;
    if (G == 0 || G > bs)
        return 0;

    if (bs % G != 0) {
        /* Oldest-first while groups fit, after each env's minimum. */
        size_t sum = 0;
        char *used = calloc(b->qlen, 1);
        if (!used)
            return 0;
        for (size_t pass = 0; pass < 2; pass++) {
            size_t got[SRV__BUFFER_MAX_ENVS] = { 0 };
            for (size_t i = 0; i < b->qlen && sum < bs; i++) {
                const entry *e = &b->q[i];
                if (used[i] || !eligible(b, e, &stale) || sum + e->n > bs)
                    continue;
                if (pass == 0 && !(e->env_id >= 0 && e->env_id < SRV__BUFFER_MAX_ENVS && got[e->env_id] < need[e->env_id]))
                    continue;
                if (e->env_id >= 0 && e->env_id < SRV__BUFFER_MAX_ENVS)
                    got[e->env_id] += e->n;
                used[i] = 1;
                sum += e->n;
            }
        }
        for (size_t i = 0; i < b->qlen; i++)
            if (used[i])
                idx[n_pick++] = i;
        free(used);
        return sum == bs ? n_pick : 0;
    }

    /* Packing: buckets keyed by (env when minimums apply, size). Pack members
     * go to `members` in completion order. */
    size_t *members = malloc(b->qlen * sizeof *members);
    pack *packs = malloc((b->qlen + 1) * sizeof *packs);
    size_t *bucket = malloc(b->qlen * sizeof *bucket); /* scratch: open bucket members per key */
    size_t n_packs = 0, n_members = 0, picked = 0;
    if (!members || !packs || !bucket)
        goto done;
    /* Open buckets: a small linear list of (env, size, count, start). */
    typedef struct open_bucket { long long env; size_t size, count, start; } open_bucket;
    open_bucket *ob = malloc(b->qlen * sizeof *ob);
    size_t n_ob = 0, bucket_used = 0;
    if (!ob)
        goto done;
    for (size_t i = 0; i < b->qlen; i++) {
        const entry *e = &b->q[i];
        if (!eligible(b, e, &stale) || G % e->n != 0)
            continue;
        long long key = min_active ? e->env_id : -2;
        size_t k = 0;
        while (k < n_ob && !(ob[k].env == key && ob[k].size == e->n))
            k++;
        if (k == n_ob) {
            ob[n_ob].env = key;
            ob[n_ob].size = e->n;
            ob[n_ob].count = 0;
            ob[n_ob].start = bucket_used;
            bucket_used += G / e->n;
            n_ob++;
        }
        bucket[ob[k].start + ob[k].count++] = i;
        if (ob[k].count * e->n == G) {
            packs[n_packs].first = n_members;
            packs[n_packs].count = ob[k].count;
            packs[n_packs].env = e->env_id;
            packs[n_packs].taken = 0;
            memcpy(members + n_members, bucket + ob[k].start, ob[k].count * sizeof *members);
            n_members += ob[k].count;
            n_packs++;
            ob[k].count = 0;
        }
    }
    free(ob);
    size_t want = bs / G, taken = 0;
    for (size_t env = 0; env < b->n_envs && env < SRV__BUFFER_MAX_ENVS; env++) {
        size_t got = 0;
        for (size_t p = 0; p < n_packs && got < need[env]; p++) {
            if (packs[p].env == (long long)env && !packs[p].taken) {
                packs[p].taken = 1;
                got += G;
                taken++;
            }
        }
        if (got < need[env])
            goto done; /* Atropos waits until every minimum can be met */
    }
    for (size_t p = 0; p < n_packs && taken < want; p++) {
        if (!packs[p].taken) {
            packs[p].taken = 1;
            taken++;
        }
    }
    if (taken != want)
        goto done;
    for (size_t p = 0; p < n_packs; p++)
        if (packs[p].taken)
            for (size_t m = 0; m < packs[p].count; m++)
                idx[picked++] = members[packs[p].first + m];
done:
    free(members);
    free(packs);
    free(bucket);
    return picked;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int srv__buffer_batch(json_t **out, srv__buffer *b, char *err, size_t errlen)
{
    *out = NULL;
    int rc = 0;
    uint64_t ticket = 0, t2 = 0;
    json_t *batch = NULL, *seqs = NULL, *rec = NULL, *drops = NULL;
    size_t *idx = NULL;
    pthread_mutex_lock(&b->lock);
    if (!b->trainer) {
        snprintf(err, errlen, "no trainer is registered; POST /register first");
        rc = SRV__BUF_ESTATE;
        goto done;
    }
    if (!b->started) {
        json_t *st = json_pack("{s:s}", "t", "start");
        rc = st ? commit_locked(&ticket, b, st, err, errlen) : SRV__BUF_ENOMEM;
        json_decref(st);
        if (rc)
            goto done;
    }
    /* Stale groups leave first, counted and journaled. */
    drops = json_array();
    if (!drops)
        goto oom;
    int stale;
    for (size_t i = 0; i < b->qlen; i++)
        if (!eligible(b, &b->q[i], &stale) && stale && json_array_append_new(drops, json_integer((json_int_t)b->q[i].seq)))
            goto oom;
    if (json_array_size(drops)) {
        size_t nd = json_array_size(drops);
        rec = json_pack("{s:s, s:s, s:O}", "t", "drop", "reason", "stale", "seqs", drops);
        if (!rec || (rc = commit_locked(&t2, b, rec, err, errlen)))
            goto done;
        ticket = t2 ? t2 : ticket;
        fprintf(stderr, "envsrv: buffer: dropped %zu stale group(s) (policy version %lld, %s)\n", nd, b->version,
                b->o.sync_sequential ? "--sync sequential" : "--max-staleness");
        json_decref(rec);
        rec = NULL;
    }
    size_t bs = (size_t)json_integer_value(json_object_get(b->trainer, "batch_size"));
    idx = malloc((b->qlen ? b->qlen : 1) * sizeof *idx);
    if (!idx)
        goto oom;
    size_t n = form_batch(idx, b, bs);
    if (n == 0)
        goto done;
    qsort(idx, n, sizeof *idx, cmp_size);
    batch = json_array();
    seqs = json_array();
    if (!batch || !seqs)
        goto oom;
    for (size_t i = 0; i < n; i++)
        if (json_array_append(batch, b->q[idx[i]].group) || json_array_append_new(seqs, json_integer((json_int_t)b->q[idx[i]].seq)))
            goto oom;
    rec = json_pack("{s:s, s:I, s:O}", "t", "batch", "step", (json_int_t)(b->step + 1), "seqs", seqs);
    if (!rec)
        goto oom;
    if ((rc = commit_locked(&t2, b, rec, err, errlen)))
        goto done;
    ticket = t2 ? t2 : ticket;
    b->dead_bytes += 64 + 12 * n; /* the batch record itself */
    maybe_compact(b);
    *out = batch;
    batch = NULL;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
    rc = SRV__BUF_ENOMEM;
done:
    pthread_mutex_unlock(&b->lock);
    json_decref(batch);
    json_decref(seqs);
    json_decref(rec);
    json_decref(drops);
    free(idx);
    if (!rc)
        rc = sync_ticket(b, ticket, err, errlen);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int srv__buffer_set_policy(json_t **out, srv__buffer *b, long long version, char *err, size_t errlen)
{
    *out = NULL;
    uint64_t ticket = 0;
    json_t *rec = json_pack("{s:s, s:I}", "t", "policy", "v", (json_int_t)version);
    pthread_mutex_lock(&b->lock);
    long long previous = b->version;
    int rc = rec ? commit_locked(&ticket, b, rec, err, errlen) : SRV__BUF_ENOMEM;
    pthread_mutex_unlock(&b->lock);
    json_decref(rec);
    if (!rc)
        rc = sync_ticket(b, ticket, err, errlen);
    if (!rc && !(*out = json_pack("{s:I, s:I}", "version", (json_int_t)version, "previous", (json_int_t)previous)))
        rc = SRV__BUF_ENOMEM;
    return rc;
}

/* ---- reading --------------------------------------------------------------------------------- */

json_t *srv__buffer_status(srv__buffer *b)
{
    pthread_mutex_lock(&b->lock);
    json_t *versions = json_object();
    size_t queued = 0, buffered = 0;
    for (size_t i = 0; i < b->qlen; i++) {
        if (b->q[i].pending)
            buffered++;
        else
            queued++;
    }
    for (size_t i = 0; versions && i < b->qlen; i++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", b->q[i].version);
        json_t *v = json_object_get(versions, key);
        if (v)
            json_integer_set(v, json_integer_value(v) + (json_int_t)b->q[i].n);
        else
            json_object_set_new(versions, key, json_integer((json_int_t)b->q[i].n));
    }
    json_t *s = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:o, s:{s:I, s:I, s:I}, s:{s:I, s:I}, s:{s:b, s:I}}",
        "current_step", (json_int_t)b->step, "queue_size", (json_int_t)queued, "buffered_groups",
        (json_int_t)buffered, "queue_sequences", (json_int_t)b->queue_seqs,
        "max_queue", (json_int_t)b->o.max_queue, "policy_version", (json_int_t)b->version, "sync",
        b->o.sync_sequential ? "sequential" : "async", "max_staleness",
        b->o.has_max_staleness ? json_integer(b->o.max_staleness) : json_null(), "versions", versions, "dropped",
        "stale", (json_int_t)b->dropped_stale, "flat", (json_int_t)b->dropped_flat, "reset",
        (json_int_t)b->dropped_reset, "rejected", "invalid", (json_int_t)b->rejected_invalid, "full",
        (json_int_t)b->rejected_full, "journal", "enabled", b->journal != NULL, "bytes",
        (json_int_t)(b->journal ? srv__journal_size(b->journal) : 0));
    pthread_mutex_unlock(&b->lock);
    return s;
}

int srv__buffer_status_env(json_t **out, srv__buffer *b, long long env_id, char *err, size_t errlen)
{
    *out = NULL;
    pthread_mutex_lock(&b->lock);
    if (env_id < 0 || (size_t)env_id >= b->n_envs) {
        snprintf(err, errlen, "unknown env_id %lld (%zu registered)", env_id, b->n_envs);
        pthread_mutex_unlock(&b->lock);
        return SRV__BUF_ENOTFOUND;
    }
    /* Atropos's /status-env, computed the same way: the env's weight share,
     * and the queue as this env sees it (its own sequences plus what other
     * envs hold beyond their minimum allocations), in groups of its size. */
    double total = 0, total_min = 0;
    for (size_t i = 0; i < b->n_envs; i++) {
        if (!b->envs[i].connected)
            continue;
        total += (double)b->envs[i].max_token_length * (b->envs[i].weight > 0 ? b->envs[i].weight : 0);
        if (b->envs[i].min_alloc >= 0)
            total_min += b->envs[i].min_alloc;
    }
    const env_reg *e = &b->envs[env_id];
    double w = total > 0 ? (double)e->max_token_length * e->weight / total : 0;
    if (w < 0.01)
        w = 0.01;
    size_t env_gs = e->group_size > 0 ? (size_t)e->group_size : 1, max_gs = 1, own = 0;
    size_t *others = calloc(b->n_envs + 1, sizeof *others); /* index n_envs: groups without env_id */
    if (!others) {
        pthread_mutex_unlock(&b->lock);
        snprintf(err, errlen, "out of memory");
        return SRV__BUF_ENOMEM;
    }
    for (size_t i = 0; i < b->qlen; i++) {
        const entry *q = &b->q[i];
        if (q->pending)
            continue;
        if (q->n > max_gs)
            max_gs = q->n;
        if (q->env_id == env_id) {
            if (q->n > env_gs)
                env_gs = q->n;
            own += q->n;
        } else {
            others[q->env_id >= 0 && (size_t)q->env_id < b->n_envs ? (size_t)q->env_id : b->n_envs] += q->n;
        }
    }
    long long bs = b->trainer ? json_integer_value(json_object_get(b->trainer, "batch_size")) : 0;
    size_t available = 0;
    for (size_t k = 0; max_gs > 1 && k <= b->n_envs; k++) {
        if (!others[k])
            continue;
        size_t packed = (others[k] + max_gs - 1) / max_gs * max_gs, min_seqs = 0;
        if (k < b->n_envs && b->envs[k].connected && b->envs[k].min_alloc >= 0)
            min_seqs = (size_t)((double)bs * b->envs[k].min_alloc);
        available += packed > min_seqs ? packed - min_seqs : 0;
    }
    free(others);
    *out = json_pack("{s:I, s:I, s:f, s:I, s:I, s:f}", "current_step", (json_int_t)b->step, "queue_size",
                     (json_int_t)((own + available) / env_gs), "unallocated_fraction",
                     1.0 - (total_min < 1.0 ? total_min : 1.0), "self_queue_size", (json_int_t)(own / env_gs),
                     "max_group_size", (json_int_t)max_gs, "env_weight", w);
    pthread_mutex_unlock(&b->lock);
    return *out ? 0 : SRV__BUF_ENOMEM;
}

json_t *srv__buffer_info(srv__buffer *b)
{
    pthread_mutex_lock(&b->lock);
    json_t *r = b->trainer ? json_pack("{s:O, s:O}", "batch_size", json_object_get(b->trainer, "batch_size"),
                                       "max_token_len", json_object_get(b->trainer, "max_token_len"))
                           : json_pack("{s:i, s:i}", "batch_size", -1, "max_token_len", -1);
    pthread_mutex_unlock(&b->lock);
    return r;
}

json_t *srv__buffer_wandb_info(srv__buffer *b)
{
    pthread_mutex_lock(&b->lock);
    /* zmq_port: Atropos's log sidecar, which envsrv does not run. */
    json_t *r = b->trainer ? json_pack("{s:O, s:O, s:n}", "group", json_object_get(b->trainer, "wandb_group"),
                                       "project", json_object_get(b->trainer, "wandb_project"), "zmq_port")
                           : json_pack("{s:n, s:n, s:n}", "group", "project", "zmq_port");
    pthread_mutex_unlock(&b->lock);
    return r;
}

json_t *srv__buffer_latest(srv__buffer *b)
{
    pthread_mutex_lock(&b->lock);
    json_t *r = b->latest ? json_incref(b->latest)
                          : json_pack("{s:[], s:[], s:[], s:[], s:[], s:[], s:[], s:[], s:[]}", "tokens", "masks",
                                      "scores", "advantages", "ref_logprobs", "generation_params",
                                      "inference_logprobs", "messages", "images");
    pthread_mutex_unlock(&b->lock);
    return r;
}

int srv__buffer_reset(srv__buffer *b, char *err, size_t errlen)
{
    uint64_t ticket = 0;
    json_t *rec = json_pack("{s:s}", "t", "reset");
    pthread_mutex_lock(&b->lock);
    size_t dropped = b->qlen;
    int rc = rec ? commit_locked(&ticket, b, rec, err, errlen) : SRV__BUF_ENOMEM;
    if (!rc && dropped)
        fprintf(stderr, "envsrv: buffer: /reset_data dropped %zu queued group(s)\n", dropped);
    if (!rc)
        maybe_compact(b);
    pthread_mutex_unlock(&b->lock);
    json_decref(rec);
    return rc ? rc : sync_ticket(b, ticket, err, errlen);
}
