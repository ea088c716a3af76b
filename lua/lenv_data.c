/*
 * An environment's dataset: the split files (the definition's own, beside
 * the env file or among the built-in files, or the --data overrides), read as
 * JSONL, joined with partner files when data_format asks, hashed into
 * dataset_hash, and indexed by item id.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

static int cmp_split_file(const void *a, const void *b)
{
    return strcmp(((const lenv__split_file *)a)->split, ((const lenv__split_file *)b)->split);
}

/* The definition's own splits: paths relative to the env file, resolved in
 * the embedded set for built-in envs and on disk otherwise. */
static int definition_files(lenv__split_file **out, size_t *n_out, const json_t *dataset,
                            const char *env_file, int embedded, lenv_error *err)
{
    size_t n = json_object_size(dataset), i = 0;
    lenv__split_file *files = calloc(n ? n : 1, sizeof *files);
    if (files == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    const char *slash = strrchr(env_file, '/');
    int dirlen = slash ? (int)(slash - env_file) : 0;
    const char *split_name;
    json_t *p;
    json_object_foreach((json_t *)dataset, split_name, p) {
        const char *rel = json_string_value(p);
        while (rel[0] == '.' && rel[1] == '/')
            rel += 2;
        char *path = NULL;
        int r;
        if (rel[0] == '/' || dirlen == 0)
            r = asprintf(&path, "%s", rel);
        else
            r = asprintf(&path, "%.*s/%s", dirlen, env_file, rel);
        files[i].split = strdup(split_name);
        files[i].path = r < 0 ? NULL : path;
        i++;
        if (files[i - 1].split == NULL || files[i - 1].path == NULL) {
            lenv__split_files_free(files, i);
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
        }
        if (embedded) {
            files[i - 1].file = lenv__embedded_find(files[i - 1].path);
            if (files[i - 1].file == NULL) {
                int rc = lenv__fail(err, LENV_EIO, "envs/%s: dataset file '%s' of split '%s' is not "
                                    "among the built-in files", env_file, rel, split_name);
                lenv__split_files_free(files, i);
                return rc;
            }
        }
    }
    *out = files;
    *n_out = n;
    return LENV_OK;
}

static int add_le64(lenv__sha256 *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return lenv__sha256_add(h, b, 8);
}

/* Gives each record its "id" and indexes it. */
static int index_split(lenv_env *env, lenv__split *sp, const char *file, const char *id_field,
                       lenv_error *err)
{
    size_t i;
    json_t *rec;
    json_array_foreach(sp->items, i, rec) {
        char buf[64];
        const char *id = buf;
        if (id_field) {
            json_t *v = json_object_get(rec, id_field);
            if (json_is_string(v))
                id = json_string_value(v);
            else if (json_is_integer(v))
                snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            else
                return lenv__fail(err, LENV_EIO, "data file '%s' record %zu: field '%s' (the "
                                  "id_field) must be a string or an integer", file, i, id_field);
        } else {
            snprintf(buf, sizeof buf, "%s-%zu", sp->name, i);
        }
        if (json_object_get(env->by_id, id))
            return lenv__fail(err, LENV_EIO, "data file '%s' record %zu: duplicate item id '%s'",
                              file, i, id);
        json_t *idv = json_string(id);
        if (idv == NULL || json_object_set(env->by_id, id, rec) != 0 ||
            json_object_set_new(rec, "id", idv) != 0)
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
    }
    return LENV_OK;
}

/* data_format's join: partner records live in `dir` beside each split file,
 * in a file of the same name, and pair up by the value of `key`. */
typedef struct join_spec {
    const char *dir;
    const char *key;
} join_spec;

/* The text of a key value (string or integer) in buf; NULL when neither. */
static const char *key_text(const json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* Reads the partner file of split file `f` and merges its records into
 * `items` by key: members of the partner are added where the record lacks
 * them. Every record must find its partner. The partner's bytes are hashed
 * into h. */
static int join_split(json_t *items, const lenv__split_file *f, const char *shown,
                      const join_spec *join, lenv__sha256 *h, lenv_error *err)
{
    int rc = LENV_OK;
    char *path = NULL, *owned = NULL;
    json_t *partners = NULL, *by_key = json_object();
    const char *slash = strrchr(f->path, '/');
    int dirlen = slash ? (int)(slash - f->path) : 0;
    const char *base = slash ? slash + 1 : f->path;
    if (by_key == NULL ||
        (dirlen ? asprintf(&path, "%.*s/%s/%s", dirlen, f->path, join->dir, base)
                : asprintf(&path, "%s/%s", join->dir, base)) < 0) {
        path = NULL;
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    const char *data;
    size_t len;
    char shown_join[320];
    if (f->file) {
        const lenv_embedded_file *e = lenv__embedded_find(path);
        if (e == NULL) {
            rc = lenv__fail(err, LENV_EIO, "%s: no partner file 'envs/%s' (data_format.join)",
                            shown, path);
            goto done;
        }
        data = (const char *)e->data;
        len = e->len;
        snprintf(shown_join, sizeof shown_join, "envs/%s", path);
    } else {
        if ((rc = lenv__read_file(&owned, &len, path, err)) != LENV_OK)
            goto done;
        data = owned;
        snprintf(shown_join, sizeof shown_join, "%s", path);
    }
    if (add_le64(h, len) != 0 || lenv__sha256_add(h, data, len) != 0) {
        rc = lenv__fail(err, LENV_ENOMEM, "cannot hash '%s'", shown_join);
        goto done;
    }
    if ((rc = lenv__parse_jsonl(&partners, data, len, shown_join, err)) != LENV_OK)
        goto done;
    size_t i;
    json_t *rec;
    char buf[64];
    json_array_foreach(partners, i, rec) {
        const char *k = key_text(json_object_get(rec, join->key), buf, sizeof buf);
        if (k == NULL) {
            rc = lenv__fail(err, LENV_EIO, "data file '%s' record %zu: no '%s' (the join key)",
                            shown_join, i, join->key);
            goto done;
        }
        if (json_object_set(by_key, k, rec) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    }
    json_array_foreach(items, i, rec) {
        const char *k = key_text(json_object_get(rec, join->key), buf, sizeof buf);
        json_t *partner = k ? json_object_get(by_key, k) : NULL;
        if (partner == NULL) {
            rc = lenv__fail(err, LENV_EIO, "data file '%s' record %zu: no record with %s '%.64s' "
                            "in '%s'", shown, i, join->key, k ? k : "?", shown_join);
            goto done;
        }
        if (json_object_update_missing(rec, partner) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    }
done:
    json_decref(by_key);
    json_decref(partners);
    free(owned);
    free(path);
    return rc;
}

static int load_dataset(lenv_env *env, lenv__split_file *files, size_t n, const char *id_field,
                        const join_spec *join, lenv_error *err)
{
    int rc = LENV_OK;
    char *owned = NULL;
    lenv__sha256 *h = lenv__sha256_new();
    if (h == NULL || (env->by_id = json_object()) == NULL ||
        (env->splits = calloc(n ? n : 1, sizeof *env->splits)) == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    qsort(files, n, sizeof *files, cmp_split_file);
    for (size_t i = 0; i < n; i++) {
        const char *data;
        size_t len;
        const char *shown = files[i].path;
        char shown_buf[300];
        if (files[i].file) {
            data = (const char *)files[i].file->data;
            len = files[i].file->len;
            snprintf(shown_buf, sizeof shown_buf, "envs/%s", files[i].path);
            shown = shown_buf;
        } else {
            if ((rc = lenv__read_file(&owned, &len, files[i].path, err)) != LENV_OK)
                goto done;
            data = owned;
        }
        lenv__split *sp = &env->splits[env->n_splits];
        if ((sp->name = strdup(files[i].split)) == NULL) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
        env->n_splits++;
        if (lenv__sha256_add(h, sp->name, strlen(sp->name) + 1) != 0 || add_le64(h, len) != 0 ||
            lenv__sha256_add(h, data, len) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "cannot hash '%s'", shown);
            goto done;
        }
        if ((rc = lenv__parse_jsonl(&sp->items, data, len, shown, err)) != LENV_OK)
            goto done;
        if (join && (rc = join_split(sp->items, &files[i], shown, join, h, err)) != LENV_OK)
            goto done;
        if ((rc = index_split(env, sp, shown, id_field, err)) != LENV_OK)
            goto done;
        free(owned);
        owned = NULL;
    }
    if (lenv__sha256_hex16(h, env->dataset_hash) != 0)
        rc = lenv__fail(err, LENV_ENOMEM, "cannot hash the dataset");
    h = NULL;
done:
    lenv__sha256_free(h);
    free(owned);
    return rc;
}

int lenv__load_data(lenv_env *env, const lenv_options *opts, const lenv__def *def, int embedded,
                    lenv_error *err)
{
    int rc;
    lenv__split_file *files = NULL;
    size_t n_files = 0;
    if (opts->n_data > 0) {
        if (opts->data == NULL)
            return lenv__fail(err, LENV_EINVALID, "n_data is %zu but data is NULL", opts->n_data);
        rc = lenv__expand_sources(&files, &n_files, opts->data, opts->n_data, def->files_pattern,
                                  err);
    } else {
        rc = lenv__git_check_dataset(env->git_ref, def->dataset, err);
        if (rc == LENV_OK)
            rc = definition_files(&files, &n_files, def->dataset,
                                  embedded ? env->source + 5 : env->source, embedded, err);
        if (rc == LENV_OK && def->default_split &&
            !json_object_get(def->dataset, def->default_split))
            rc = lenv__fail(err, LENV_EINVALID, "%s: default_split '%s' is not one of the dataset's "
                            "splits", env->source, def->default_split);
    }
    if (rc == LENV_OK) {
        join_spec join = {def->join_dir, def->join_key ? def->join_key
                                         : def->id_field ? def->id_field : "id"};
        rc = load_dataset(env, files, n_files, def->id_field, def->join_dir ? &join : NULL, err);
    }
    lenv__split_files_free(files, n_files);
    return rc;
}
