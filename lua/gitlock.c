/*
 * Lock files: which commit of which repository each git environment comes
 * from, so that CI years later loads exactly what a result was made with.
 *
 *   {"version": 1,
 *    "envs": {"capitals": {"url": "https://host/org/repo", "path": "envs/capitals.lua",
 *                          "rev": "v1", "commit": "<40 hex>", "file_sha256": "<64 hex>"}}}
 *
 * `envsrv lock` writes one (lenv_lock_write); `--lock` reads it
 * (lenv_lock_load) and lenv_git_resolve refuses anything it does not list.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/lenv_int.h"

#define MAX_LOCK_BYTES (4u << 20)
#define MAX_LOCK_ENVS 1024

struct lenv_lock {
    char *file;                  /* owned: where it was read from */
    lenv__lock_entry *entries;   /* owned */
    size_t n;
};

static void entry_clear(lenv__lock_entry *e)
{
    free(e->name);
    free(e->url);
    free(e->path);
    free(e->rev);
    free(e->commit);
    free(e->file_sha256);
    free(e->spec);
}

void lenv_lock_free(lenv_lock *lock)
{
    if (lock == NULL)
        return;
    for (size_t i = 0; i < lock->n; i++)
        entry_clear(&lock->entries[i]);
    free(lock->entries);
    free(lock->file);
    free(lock);
}

static int all_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Reads one entry; returns NULL or what is wrong with it. */
static const char *read_entry(lenv__lock_entry *e, const char *name, json_t *v)
{
    const char *url = json_string_value(json_object_get(v, "url"));
    const char *path = json_string_value(json_object_get(v, "path"));
    const char *rev = json_string_value(json_object_get(v, "rev"));
    const char *commit = json_string_value(json_object_get(v, "commit"));
    const char *sha = json_string_value(json_object_get(v, "file_sha256"));
    if (!json_is_object(v) || !url || !path || !commit || !sha)
        return "needs string fields url, path, commit and file_sha256";
    if (!all_hex(commit, 40))
        return "commit must be 40 lowercase hex digits";
    if (!all_hex(sha, 64))
        return "file_sha256 must be 64 lowercase hex digits";
    char *spec = NULL;
    if (asprintf(&spec, "git+%s@%s#%s", url, commit, path) < 0)
        return "out of memory";
    /* The spec must parse back to the same URL and path. */
    lenv_git_ref ref;
    int ok = lenv_git_parse(&ref, spec, NULL) == LENV_OK && strcmp(ref.url, url) == 0 &&
             strcmp(ref.path, path) == 0;
    lenv_git_ref_clear(&ref);
    if (!ok) {
        free(spec);
        return "url and path do not make a valid git+URL@COMMIT#PATH spec";
    }
    e->spec = spec;
    e->name = strdup(name);
    e->url = strdup(url);
    e->path = strdup(path);
    e->rev = strdup(rev ? rev : commit);
    e->commit = strdup(commit);
    e->file_sha256 = strdup(sha);
    if (!e->name || !e->url || !e->path || !e->rev || !e->commit || !e->file_sha256)
        return "out of memory";
    return NULL;
}

int lenv_lock_load(lenv_lock **out, const char *path, lenv_error *err)
{
    char *data = NULL;
    size_t len = 0;
    json_t *root = NULL;
    lenv_lock *lock = NULL;
    json_error_t jerr;
    int rc = lenv__read_file(&data, &len, path, err);
    *out = NULL;
    if (rc != LENV_OK)
        return LENV_EIO;
    if (len > MAX_LOCK_BYTES) {
        rc = lenv__fail(err, LENV_EIO, "lock file %s: larger than %u bytes", path, MAX_LOCK_BYTES);
        goto done;
    }
    if ((root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        rc = lenv__fail(err, LENV_EIO, "lock file %s: %s at line %d", path, jerr.text, jerr.line);
        goto done;
    }
    json_t *envs = json_object_get(root, "envs");
    if (json_integer_value(json_object_get(root, "version")) != 1 || !json_is_object(envs)) {
        rc = lenv__fail(err, LENV_EIO, "lock file %s: not an envsrv lock (needs \"version\": 1 "
                        "and an \"envs\" object)", path);
        goto done;
    }
    size_t n = json_object_size(envs);
    if (n > MAX_LOCK_ENVS) {
        rc = lenv__fail(err, LENV_EIO, "lock file %s: more than %d envs", path, MAX_LOCK_ENVS);
        goto done;
    }
    if ((lock = calloc(1, sizeof *lock)) == NULL ||
        (lock->entries = calloc(n ? n : 1, sizeof *lock->entries)) == NULL ||
        (lock->file = strdup(path)) == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    const char *name;
    json_t *v;
    json_object_foreach(envs, name, v) {
        const char *why = read_entry(&lock->entries[lock->n], name, v);
        lock->n++;
        if (why) {
            rc = lenv__fail(err, LENV_EIO, "lock file %s: env '%s': %s", path, name, why);
            goto done;
        }
        for (size_t i = 0; i + 1 < lock->n; i++)
            if (strcmp(lock->entries[i].url, lock->entries[lock->n - 1].url) == 0 &&
                strcmp(lock->entries[i].path, lock->entries[lock->n - 1].path) == 0) {
                rc = lenv__fail(err, LENV_EIO, "lock file %s: envs '%s' and '%s' name the same "
                                "file", path, lock->entries[i].name, name);
                goto done;
            }
    }
    *out = lock;
    lock = NULL;
    rc = LENV_OK;
done:
    lenv_lock_free(lock);
    json_decref(root);
    free(data);
    return rc;
}

size_t lenv_lock_count(const lenv_lock *lock)
{
    return lock ? lock->n : 0;
}

const char *lenv_lock_spec(const lenv_lock *lock, size_t i)
{
    return lock && i < lock->n ? lock->entries[i].spec : NULL;
}

const lenv__lock_entry *lenv__lock_find(const lenv_lock *lock, const char *url, const char *path)
{
    for (size_t i = 0; lock && i < lock->n; i++)
        if (strcmp(lock->entries[i].url, url) == 0 && strcmp(lock->entries[i].path, path) == 0)
            return &lock->entries[i];
    return NULL;
}

const char *lenv__lock_file(const lenv_lock *lock)
{
    return lock->file;
}

int lenv_lock_write(const char *path, lenv_env *const *envs, size_t n, lenv_error *err)
{
    json_t *root = json_pack("{s:i, s:{}}", "version", 1, "envs");
    char *tmp = NULL;
    int rc = LENV_OK;
    if (root == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    json_t *all = json_object_get(root, "envs");
    for (size_t i = 0; i < n; i++) {
        const char *name = lenv_name(envs[i]);
        json_t *entry = lenv_git_json(envs[i]);
        if (entry == NULL) {
            rc = lenv__fail(err, LENV_EINVALID, "environment '%s' does not come from git: only "
                            "git+URL@REV#PATH environments can be locked", name);
            goto done;
        }
        if (json_object_get(all, name)) {
            json_decref(entry);
            rc = lenv__fail(err, LENV_EINVALID, "two environments are named '%s'", name);
            goto done;
        }
        if (json_object_set_new(all, name, entry) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    }
    if (asprintf(&tmp, "%s.tmp-%ld", path, (long)getpid()) < 0) {
        tmp = NULL;
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
        rc = lenv__fail(err, LENV_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        rc = lenv__fail(err, LENV_EIO, "cannot write '%s': %s", path, strerror(errno));
        unlink(tmp);
    }
done:
    free(tmp);
    json_decref(root);
    return rc;
}
