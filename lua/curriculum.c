/*
 * Curriculum: the adaptive difficulty of a procedural environment. Scored
 * results move the level that new items are sampled from toward the level a
 * solver solves at the target rate, as RL Swarm's proposer does. The rule is
 * in lenv.h; here it is one step at a time with a margin, and only after
 * enough fresh results at the current level, so that noise in a window of a
 * few hundred results does not make the level flap between two neighbours.
 *
 * State: per level, a ring of the last `window` rewards (clamped to [0, 1]).
 * The estimate of a level is the mean of its ring, recomputed when needed
 * (at most 65536 additions) so that a saved and reloaded state gives exactly
 * the same estimates as the one that was saved.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

#define MAX_WINDOW 65536
#define FORMAT "envsrv-curriculum-1"

struct lenv__curriculum {
    pthread_mutex_t mu;
    int min, max;
    lenv_curriculum_options opts;
    double *ring;     /* owned: (levels, window) rewards */
    size_t *count;    /* owned: (levels,) results held, up to window */
    size_t *head;     /* owned: (levels,) next slot to write */
    int level;        /* the current level */
    size_t since_move; /* results at `level` since it became current */
};

static size_t n_levels(const lenv__curriculum *c) { return (size_t)(c->max - c->min + 1); }

/* Allocates the per-level arrays for opts.window; 0 or -1 (out of memory),
 * leaving c unchanged on failure. */
static int alloc_rings(lenv__curriculum *c, size_t window)
{
    size_t n = n_levels(c);
    double *ring = calloc(n * window, sizeof *ring);
    size_t *count = calloc(n, sizeof *count), *head = calloc(n, sizeof *head);
    if (ring == NULL || count == NULL || head == NULL) {
        free(ring);
        free(count);
        free(head);
        return -1;
    }
    free(c->ring);
    free(c->count);
    free(c->head);
    c->ring = ring;
    c->count = count;
    c->head = head;
    c->opts.window = window;
    c->level = c->min;
    c->since_move = 0;
    return 0;
}

lenv__curriculum *lenv__curriculum_new(int min, int max)
{
    lenv__curriculum *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->min = min;
    c->max = max;
    c->opts = (lenv_curriculum_options)LENV_CURRICULUM_OPTIONS_INIT;
    if (alloc_rings(c, c->opts.window) != 0 || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->ring);
        free(c->count);
        free(c->head);
        free(c);
        return NULL;
    }
    return c;
}

void lenv__curriculum_free(lenv__curriculum *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c->ring);
    free(c->count);
    free(c->head);
    free(c);
}

/* Mean reward of level index i (0-based), or -1 when it has no results. */
static double estimate(const lenv__curriculum *c, size_t i)
{
    if (c->count[i] == 0)
        return -1;
    double sum = 0;
    for (size_t k = 0; k < c->count[i]; k++)
        sum += c->ring[i * c->opts.window + k];
    return sum / (double)c->count[i];
}

/* Fresh results a level needs before the curriculum trusts its estimate. */
static size_t min_results(const lenv__curriculum *c)
{
    size_t m = c->opts.window / 8;
    if (m < 8)
        m = 8;
    return m > c->opts.window ? c->opts.window : m;
}

static void push_result(lenv__curriculum *c, size_t i, double r)
{
    size_t w = c->opts.window;
    c->ring[i * w + c->head[i]] = r;
    c->head[i] = (c->head[i] + 1) % w;
    if (c->count[i] < w)
        c->count[i]++;
}

/* The move rule of lenv.h, after a result at the current level. */
static void maybe_move(lenv__curriculum *c)
{
    size_t need = min_results(c), cur = (size_t)(c->level - c->min);
    if (c->since_move < need)
        return;
    double t = c->opts.target, r = estimate(c, cur);
    int step = 0;
    if (r > t + LENV_CURRICULUM_MARGIN && c->level < c->max)
        step = 1;
    else if (r < t - LENV_CURRICULUM_MARGIN && c->level > c->min)
        step = -1;
    if (step == 0)
        return;
    size_t next = (size_t)((int)cur + step);
    /* A neighbour we know is no closer to the target: staying is better. */
    if (c->count[next] >= need && fabs(estimate(c, next) - t) >= fabs(r - t))
        return;
    c->level += step;
    c->since_move = 0;
}

static lenv__curriculum *get(lenv_env *env, lenv_error *err)
{
    lenv__curriculum *c = *lenv__curriculum_slot(env);
    if (c == NULL)
        lenv__fail(err, LENV_EINVALID, "environment '%s' is not procedural; it has no curriculum",
                   lenv_name(env));
    return c;
}

int lenv_curriculum_parse(lenv_curriculum_options *out, const char *spec, lenv_error *err)
{
    lenv_curriculum_options o = *out;
    const char *p = spec ? spec : "";
    while (*p) {
        const char *end = strchr(p, ','); /* a trailing comma leaves an empty last item */
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64], *eq, *rest;
        if (len == 0 || len >= sizeof item)
            return lenv__fail(err, LENV_EINVALID, "curriculum options are key=value pairs "
                              "separated by commas: target=0.5,window=256");
        memcpy(item, p, len);
        item[len] = '\0';
        if ((eq = strchr(item, '=')) == NULL)
            return lenv__fail(err, LENV_EINVALID, "curriculum option '%s' has no '='", item);
        *eq++ = '\0';
        errno = 0;
        if (strcmp(item, "target") == 0) {
            double v = strtod(eq, &rest);
            if (*eq == '\0' || *rest != '\0' || errno || !(v > 0 && v < 1))
                return lenv__fail(err, LENV_EINVALID, "curriculum target must be a number "
                                  "between 0 and 1 (exclusive), got '%s'", eq);
            o.target = v;
        } else if (strcmp(item, "window") == 0) {
            unsigned long v = strtoul(eq, &rest, 10);
            if (*eq < '0' || *eq > '9' || *rest != '\0' || errno || v < 1 || v > MAX_WINDOW)
                return lenv__fail(err, LENV_EINVALID, "curriculum window must be an integer "
                                  "from 1 to %d, got '%s'", MAX_WINDOW, eq);
            o.window = v;
        } else {
            return lenv__fail(err, LENV_EINVALID, "unknown curriculum option '%s' (target, "
                              "window)", item);
        }
        if (end == NULL)
            break;
        p = end + 1;
        if (*p == '\0')
            return lenv__fail(err, LENV_EINVALID, "curriculum options end with a comma");
    }
    *out = o;
    return LENV_OK;
}

int lenv_curriculum_configure(lenv_env *env, const lenv_curriculum_options *opts,
                              lenv_error *err)
{
    lenv__curriculum *c = get(env, err);
    if (c == NULL)
        return LENV_EINVALID;
    if (!(opts->target > 0 && opts->target < 1) || opts->window < 1 || opts->window > MAX_WINDOW)
        return lenv__fail(err, LENV_EINVALID, "curriculum target must be in (0, 1) and window "
                          "in 1..%d", MAX_WINDOW);
    pthread_mutex_lock(&c->mu);
    int rc = alloc_rings(c, opts->window);
    if (rc == 0)
        c->opts.target = opts->target;
    pthread_mutex_unlock(&c->mu);
    return rc == 0 ? LENV_OK : lenv__fail(err, LENV_ENOMEM, "out of memory");
}

int lenv_curriculum_record(lenv_env *env, const char *id, double reward, lenv_error *err)
{
    lenv__curriculum *c = get(env, err);
    int level;
    uint64_t seed;
    if (c == NULL)
        return LENV_EINVALID;
    if (!lenv__gen_id_parse(id, &level, &seed) || level < c->min || level > c->max)
        return lenv__fail(err, LENV_ENOTFOUND, "'%.64s' is not an item id of environment '%s'",
                          id ? id : "", lenv_name(env));
    if (!isfinite(reward))
        return lenv__fail(err, LENV_EINVALID, "rewards must be finite numbers");
    double r = reward < 0 ? 0 : reward > 1 ? 1 : reward;
    pthread_mutex_lock(&c->mu);
    push_result(c, (size_t)(level - c->min), r);
    if (level == c->level) {
        c->since_move++;
        maybe_move(c);
    }
    pthread_mutex_unlock(&c->mu);
    return LENV_OK;
}

int lenv_curriculum_level(lenv_env *env)
{
    lenv__curriculum *c = *lenv__curriculum_slot(env);
    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->mu);
    int level = c->level;
    pthread_mutex_unlock(&c->mu);
    return level;
}

/* The state as lenv_curriculum_state shows it (full = 0) or as saved (full =
 * 1: every window, oldest first). Call with c->mu held. */
static json_t *state_json(lenv__curriculum *c, const char *name, int full)
{
    json_t *levels = full ? json_object() : json_array();
    json_t *s = json_pack("{s:f, s:I, s:i}", "target", c->opts.target, "window",
                          (json_int_t)c->opts.window, "level", c->level);
    if (s == NULL || levels == NULL || json_object_set(s, "levels", levels) != 0)
        goto fail;
    for (size_t i = 0; i < n_levels(c); i++) {
        json_t *e;
        if (full) {
            char key[16];
            size_t w = c->opts.window, start = (c->head[i] + w - c->count[i]) % w;
            snprintf(key, sizeof key, "%d", c->min + (int)i);
            if ((e = json_array()) == NULL || json_object_set_new(levels, key, e) != 0)
                goto fail;
            for (size_t k = 0; k < c->count[i]; k++)
                if (json_array_append_new(e, json_real(c->ring[i * w + (start + k) % w])) != 0)
                    goto fail;
        } else {
            double r = estimate(c, i);
            e = json_pack("{s:i, s:I, s:o}", "level", c->min + (int)i, "n",
                          (json_int_t)c->count[i], "solve_rate", r < 0 ? json_null() : json_real(r));
            if (json_array_append_new(levels, e) != 0)
                goto fail;
        }
    }
    if (full) {
        json_t *head = json_pack("{s:s, s:s, s:i, s:i, s:I}", "format", FORMAT, "env", name,
                                 "min", c->min, "max", c->max, "since_move",
                                 (json_int_t)c->since_move);
        int bad = head == NULL || json_object_update(s, head) != 0;
        json_decref(head);
        if (bad)
            goto fail;
    }
    json_decref(levels);
    return s;
fail:
    json_decref(levels);
    json_decref(s);
    return NULL;
}

json_t *lenv_curriculum_state(lenv_env *env)
{
    lenv__curriculum *c = *lenv__curriculum_slot(env);
    if (c == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    json_t *s = state_json(c, lenv_name(env), 0);
    pthread_mutex_unlock(&c->mu);
    return s;
}

int lenv_curriculum_save(lenv_env *env, const char *path, lenv_error *err)
{
    lenv__curriculum *c = get(env, err);
    char *tmp = NULL;
    int rc = LENV_OK;
    if (c == NULL)
        return LENV_EINVALID;
    pthread_mutex_lock(&c->mu);
    json_t *s = state_json(c, lenv_name(env), 1);
    pthread_mutex_unlock(&c->mu);
    if (s == NULL || asprintf(&tmp, "%s.tmp", path) < 0) {
        tmp = NULL;
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    if (json_dump_file(s, tmp, JSON_COMPACT) != 0 || rename(tmp, path) != 0) {
        rc = lenv__fail(err, LENV_EIO, "cannot write the curriculum to '%.200s': %s", path,
                        strerror(errno));
        remove(tmp);
    }
done:
    free(tmp);
    json_decref(s);
    return rc;
}

/* A number member in [lo, hi], or NAN. */
static double num_in(const json_t *o, const char *key, double lo, double hi)
{
    const json_t *v = json_object_get(o, key);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    return d >= lo && d <= hi ? d : NAN;
}

int lenv_curriculum_load(lenv_env *env, const char *path, lenv_error *err)
{
    lenv__curriculum *c = get(env, err), fresh;
    json_error_t jerr;
    int rc = LENV_OK;
    if (c == NULL)
        return LENV_EINVALID;
    json_t *s = json_load_file(path, 0, &jerr);
    if (s == NULL) {
        FILE *f = fopen(path, "r");
        if (f == NULL && errno == ENOENT)
            return lenv__fail(err, LENV_ENOTFOUND, "no saved curriculum at '%.200s'", path);
        if (f)
            fclose(f);
        return lenv__fail(err, LENV_EIO, "curriculum file '%.200s': %s (line %d)", path,
                          jerr.text, jerr.line);
    }
    memset(&fresh, 0, sizeof fresh);
    fresh.min = c->min;
    fresh.max = c->max;
    double target = num_in(s, "target", 0, 1), window = num_in(s, "window", 1, MAX_WINDOW);
    double level = num_in(s, "level", c->min, c->max), since = num_in(s, "since_move", 0, 1e12);
    const json_t *levels = json_object_get(s, "levels");
    if (strcmp(json_string_value(json_object_get(s, "format")) ? json_string_value(
                   json_object_get(s, "format")) : "", FORMAT) != 0 ||
        !json_is_string(json_object_get(s, "env")) ||
        strcmp(json_string_value(json_object_get(s, "env")), lenv_name(env)) != 0 ||
        json_integer_value(json_object_get(s, "min")) != c->min ||
        json_integer_value(json_object_get(s, "max")) != c->max) {
        rc = lenv__fail(err, LENV_EIO, "curriculum file '%.200s' is not a %s state of "
                        "environment '%s' (levels %d..%d)", path, FORMAT, lenv_name(env), c->min,
                        c->max);
        goto done;
    }
    if (isnan(target) || target <= 0 || target >= 1 || isnan(window) || window != floor(window) ||
        isnan(level) || level != floor(level) || isnan(since) || !json_is_object(levels)) {
        rc = lenv__fail(err, LENV_EIO, "curriculum file '%.200s': bad target, window, level, "
                        "since_move or levels", path);
        goto done;
    }
    if (alloc_rings(&fresh, (size_t)window) != 0) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    fresh.opts.target = target;
    const char *key;
    json_t *arr;
    json_object_foreach((json_t *)levels, key, arr) {
        char *end;
        long lv = strtol(key, &end, 10);
        if (*key == '\0' || *end != '\0' || lv < c->min || lv > c->max || !json_is_array(arr) ||
            json_array_size(arr) > (size_t)window) {
            rc = lenv__fail(err, LENV_EIO, "curriculum file '%.200s': bad level '%.16s'", path, key);
            goto done;
        }
        size_t i = (size_t)(lv - c->min), k;
        json_t *r;
        fresh.count[i] = fresh.head[i] = 0;
        json_array_foreach(arr, k, r) {
            double v = json_is_number(r) ? json_number_value(r) : -1;
            if (!(v >= 0 && v <= 1)) {
                rc = lenv__fail(err, LENV_EIO, "curriculum file '%.200s': level %ld result %zu "
                                "must be a number in [0, 1]", path, lv, k);
                goto done;
            }
            push_result(&fresh, i, v);
        }
    }
    fresh.level = (int)level;
    fresh.since_move = (size_t)since;
    pthread_mutex_lock(&c->mu);
    double *ring = c->ring;
    size_t *count = c->count, *head = c->head;
    c->ring = fresh.ring;
    c->count = fresh.count;
    c->head = fresh.head;
    c->opts = fresh.opts;
    c->level = fresh.level;
    c->since_move = fresh.since_move;
    pthread_mutex_unlock(&c->mu);
    fresh.ring = ring;
    fresh.count = count;
    fresh.head = head;
done:
    free(fresh.ring);
    free(fresh.count);
    free(fresh.head);
    json_decref(s);
    return rc;
}
