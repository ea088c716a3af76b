/*
 * envsrv.git: a unified diff applied with libgit2 to a commit's tree, for
 * SWE-style environments (envs/patch.lua).
 *
 *   envsrv.git.apply{repo = ..., commit = ..., diff = ...} -> result
 *
 * The repository comes through the git cache (gitsrc.c), and the diff is
 * applied to the commit's tree in memory (git_apply_to_tree): nothing on the
 * host is written but new objects in the cache. The patched tree comes back
 * as a tar archive that the env hands to envsrv.sandbox.run and unpacks in
 * the sandbox's /work, where the tests run. Paths in the diff are checked
 * first: an absolute path, a ".." or ".git" component, a symlink or a
 * submodule is refused, so a diff cannot reach outside the repository.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

/* The patched tree must fit the sandbox's /work comfortably. */
#define MAX_ARCHIVE_BYTES (48u << 20)
#define MAX_ARCHIVE_FILES 20000
#define MAX_DIFF_BYTES (4u << 20)
#define MAX_INLINE_FILES 1000

/* ---- tar (ustar) ------------------------------------------------------------------ */

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

static int buf_grow(buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static void octal(char *field, size_t width, unsigned long long v)
{
    snprintf(field, width, "%0*llo", (int)width - 1, v);
}

/* Appends one entry: type '0' (file, `data`) or '2' (symlink to `data`).
 * Returns 0, or -1 when the name does not fit ustar or out of memory. */
static int tar_add(buf *b, const char *path, char type, unsigned mode, const char *data, size_t len)
{
    char h[512];
    memset(h, 0, sizeof h);
    size_t plen = strlen(path);
    if (plen <= 100) {
        memcpy(h, path, plen);
    } else {
        /* Split at a '/' into prefix (<= 155) and name (<= 100). */
        const char *cut = NULL;
        for (const char *s = path; (s = strchr(s, '/')) != NULL; s++)
            if ((size_t)(s - path) <= 155 && plen - (size_t)(s - path) - 1 <= 100)
                cut = s;
        if (cut == NULL)
            return -1;
        memcpy(h + 345, path, (size_t)(cut - path));
        memcpy(h, cut + 1, plen - (size_t)(cut - path) - 1);
    }
    if (type == '2' && (len == 0 || len >= 100))
        return -1;
    octal(h + 100, 8, mode);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    octal(h + 124, 12, type == '0' ? len : 0);
    octal(h + 136, 12, 0);
    h[156] = type;
    if (type == '2')
        memcpy(h + 157, data, len);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof h; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    size_t body = type == '0' ? (len + 511) / 512 * 512 : 0;
    if (buf_grow(b, 512 + body) != 0)
        return -1;
    memcpy(b->data + b->len, h, 512);
    b->len += 512;
    if (body) {
        memcpy(b->data + b->len, data, len);
        memset(b->data + b->len + len, 0, body - len);
        b->len += body;
    }
    return 0;
}

/* ---- the work, in C ------------------------------------------------------------------ */

typedef struct apply_job {
    /* inputs, borrowed from the Lua stack */
    const char *url;            /* NULL for an inline repository */
    const char *rev;
    const char **paths;         /* inline files (owned array, borrowed strings) */
    const char **contents;
    size_t *lens;
    size_t n_inline;
    const char *diff;
    size_t diff_len;
    /* outputs */
    char commit[GIT_OID_HEXSZ + 1];
    buf archive;                /* owned */
    size_t files;
    char **changed;             /* owned */
    size_t n_changed;
    char reason[512];           /* the diff was refused: why */
    char error[512];            /* the call failed: why */
} apply_job;

static void job_free(apply_job *j)
{
    free(j->paths);
    free(j->contents);
    free(j->lens);
    free(j->archive.data);
    for (size_t i = 0; i < j->n_changed; i++)
        free(j->changed[i]);
    free(j->changed);
}

/* Builds the inline repository's one commit (a fixed author and time, so the
 * same files give the same commit id on every machine). */
static int build_inline(git_oid *commit, git_repository *repo, apply_job *j)
{
    git_index *index = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    git_oid tree_id;
    int rc = -1;
    if (git_index_new(&index) != 0)
        goto fail;
    for (size_t i = 0; i < j->n_inline; i++) {
        if (!lenv__git_path_safe(j->paths[i])) {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: repo.files: '%.200s' is not a "
                     "relative path inside the repository", j->paths[i]);
            goto done;
        }
        git_index_entry e;
        memset(&e, 0, sizeof e);
        e.mode = GIT_FILEMODE_BLOB;
        e.path = j->paths[i];
        e.file_size = (uint32_t)j->lens[i];
        if (git_blob_create_from_buffer(&e.id, repo, j->contents[i], j->lens[i]) != 0 ||
            git_index_add(index, &e) != 0)
            goto fail;
    }
    if (git_index_write_tree_to(&tree_id, index, repo) != 0 ||
        git_tree_lookup(&tree, repo, &tree_id) != 0 ||
        git_signature_new(&sig, "envsrv", "envsrv@localhost", 0, 0) != 0 ||
        git_commit_create(commit, repo, NULL, sig, sig, NULL, "envsrv inline repository\n", tree,
                          0, NULL) != 0)
        goto fail;
    rc = 0;
    goto done;
fail:
    snprintf(j->error, sizeof j->error, "envsrv.git.apply: cannot build the inline repository: %s",
             lenv__git_errmsg("unknown error"));
done:
    git_signature_free(sig);
    git_tree_free(tree);
    git_index_free(index);
    return rc;
}

/* Checks every file the diff touches. Returns 0, or -1 with j->reason. */
static int check_diff(apply_job *j, git_diff *diff)
{
    size_t n = git_diff_num_deltas(diff);
    if (n == 0) {
        snprintf(j->reason, sizeof j->reason, "the diff changes no file");
        return -1;
    }
    if ((j->changed = calloc(n, sizeof *j->changed)) == NULL) {
        snprintf(j->error, sizeof j->error, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const git_diff_delta *d = git_diff_get_delta(diff, i);
        const char *paths[2] = { d->old_file.path, d->new_file.path };
        for (int k = 0; k < 2; k++) {
            if (paths[k] && !lenv__git_path_safe(paths[k])) {
                snprintf(j->reason, sizeof j->reason, "the diff touches '%.300s', which is "
                         "outside the repository", paths[k]);
                return -1;
            }
        }
        if (d->new_file.mode == GIT_FILEMODE_LINK || d->new_file.mode == GIT_FILEMODE_COMMIT) {
            snprintf(j->reason, sizeof j->reason, "the diff makes '%.300s' a %s, which is not "
                     "allowed", d->new_file.path,
                     d->new_file.mode == GIT_FILEMODE_LINK ? "symlink" : "submodule");
            return -1;
        }
        const char *p = d->status == GIT_DELTA_DELETED ? d->old_file.path : d->new_file.path;
        if ((j->changed[j->n_changed] = strdup(p ? p : "")) == NULL) {
            snprintf(j->error, sizeof j->error, "out of memory");
            return -1;
        }
        j->n_changed++;
    }
    return 0;
}

/* The patched index as a tar archive. */
static int archive_index(apply_job *j, git_repository *repo, git_index *index)
{
    size_t n = git_index_entrycount(index);
    for (size_t i = 0; i < n; i++) {
        const git_index_entry *e = git_index_get_byindex(index, i);
        char type;
        unsigned mode;
        if (e->mode == GIT_FILEMODE_BLOB || e->mode == GIT_FILEMODE_BLOB_EXECUTABLE) {
            type = '0';
            mode = e->mode == GIT_FILEMODE_BLOB ? 0644 : 0755;
        } else if (e->mode == GIT_FILEMODE_LINK) {
            type = '2';
            mode = 0777;
        } else {
            continue;   /* submodules have no content here */
        }
        if (!lenv__git_path_safe(e->path))
            continue;
        if (++j->files > MAX_ARCHIVE_FILES) {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: the repository has more than "
                     "%d files", MAX_ARCHIVE_FILES);
            return -1;
        }
        git_blob *blob = NULL;
        if (git_blob_lookup(&blob, repo, &e->id) != 0) {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: missing object for '%.200s'",
                     e->path);
            return -1;
        }
        size_t len = (size_t)git_blob_rawsize(blob);
        int r = j->archive.len + len + 1024 > MAX_ARCHIVE_BYTES ? -2
                : tar_add(&j->archive, e->path, type, mode, git_blob_rawcontent(blob), len);
        git_blob_free(blob);
        if (r == -2) {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: the repository is larger "
                     "than %u MiB", MAX_ARCHIVE_BYTES >> 20);
            return -1;
        }
        if (r != 0 && type == '0') {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: cannot archive '%.200s' "
                     "(path too long, or out of memory)", e->path);
            return -1;
        }
    }
    if (buf_grow(&j->archive, 1024) != 0) {
        snprintf(j->error, sizeof j->error, "out of memory");
        return -1;
    }
    memset(j->archive.data + j->archive.len, 0, 1024);
    j->archive.len += 1024;
    return 0;
}

/* Returns 0 (archive or reason filled) or -1 (error filled). */
static int run_job(apply_job *j, const lenv__gitcfg *cfg)
{
    git_repository *repo = NULL;
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    git_diff *diff = NULL;
    git_index *index = NULL;
    git_oid oid;
    lenv_error err;
    int rc = -1;
    char warning[512];
    if (j->url) {
        if (lenv__git_open_rev(&repo, &oid, warning, sizeof warning, cfg, j->url, j->rev,
                               &err) != LENV_OK) {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: %.480s", err.message);
            goto done;
        }
    } else {
        if (lenv__git_open_inline(&repo, cfg, &err) != LENV_OK) {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: %.480s", err.message);
            goto done;
        }
        if (build_inline(&oid, repo, j) != 0)
            goto done;
        char built[GIT_OID_HEXSZ + 1];
        git_oid_tostr(built, sizeof built, &oid);
        if (j->rev && strcmp(j->rev, built) != 0) {
            snprintf(j->error, sizeof j->error, "envsrv.git.apply: the inline repository's "
                     "commit is %s, not %.64s", built, j->rev);
            goto done;
        }
    }
    git_oid_tostr(j->commit, sizeof j->commit, &oid);
    if (git_commit_lookup(&commit, repo, &oid) != 0 || git_commit_tree(&tree, commit) != 0) {
        snprintf(j->error, sizeof j->error, "envsrv.git.apply: cannot read commit %s: %s",
                 j->commit, lenv__git_errmsg("missing object"));
        goto done;
    }
    if (git_diff_from_buffer(&diff, j->diff, j->diff_len) != 0) {
        snprintf(j->reason, sizeof j->reason, "the diff does not parse: %s",
                 lenv__git_errmsg("malformed patch"));
        rc = 0;
        goto done;
    }
    if (check_diff(j, diff) != 0) {
        rc = j->error[0] ? -1 : 0;
        goto done;
    }
    if (git_apply_to_tree(&index, repo, tree, diff, NULL) != 0) {
        snprintf(j->reason, sizeof j->reason, "the diff does not apply to commit %.12s: %s",
                 j->commit, lenv__git_errmsg("conflict"));
        rc = 0;
        goto done;
    }
    rc = archive_index(j, repo, index);
done:
    git_index_free(index);
    git_diff_free(diff);
    git_tree_free(tree);
    git_commit_free(commit);
    git_repository_free(repo);
    return rc;
}

/* ---- the Lua side ----------------------------------------------------------------------- */

static const char *const apply_fields[] = { "repo", "commit", "diff", NULL };

/* Reads repo = "URL or path" | {files = {path = content}} into j. A local
 * path becomes a file:// URL of its real path, so it shares the cache with
 * git+file:// specs. Raises on a malformed request. */
static void read_repo(lua_State *L, int req, apply_job *j, char *urlbuf, size_t cap)
{
    int t = lua_getfield(L, req, "repo");
    if (t == LUA_TSTRING) {
        const char *r = lua_tostring(L, -1);
        int has_scheme = strstr(r, "://") != NULL;
        if (has_scheme) {
            snprintf(urlbuf, cap, "%s", r);
        } else {
            char real[PATH_MAX];
            if (realpath(r, real) == NULL)
                luaL_error(L, "envsrv.git.apply: repository '%s' not found", r);
            snprintf(urlbuf, cap, "file://%s", real);
        }
        j->url = urlbuf;
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE || lua_getfield(L, -1, "files") != LUA_TTABLE)
        luaL_error(L, "envsrv.git.apply: repo must be a URL, a path, or {files = {path = "
                      "content}}");
    int files = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, files)) {
        lua_pop(L, 1);
        n++;
    }
    if (n == 0 || n > MAX_INLINE_FILES)
        luaL_error(L, "envsrv.git.apply: repo.files must have 1 to %d files", MAX_INLINE_FILES);
    j->paths = calloc(n, sizeof *j->paths);
    j->contents = calloc(n, sizeof *j->contents);
    j->lens = calloc(n, sizeof *j->lens);
    if (!j->paths || !j->contents || !j->lens)
        luaL_error(L, "envsrv.git.apply: out of memory");
    lua_pushnil(L);
    while (lua_next(L, files)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "envsrv.git.apply: repo.files must map paths to strings");
        /* Strings stay anchored by the files table, which stays on the stack. */
        j->paths[j->n_inline] = lua_tostring(L, -2);
        j->contents[j->n_inline] = lua_tolstring(L, -1, &j->lens[j->n_inline]);
        j->n_inline++;
        lua_pop(L, 1);
    }
    /* Leave repo and repo.files on the stack: they anchor the strings. */
}

#define JOB_META "envsrv.git.job"

static int job_gc(lua_State *L)
{
    apply_job *j = luaL_checkudata(L, 1, JOB_META);
    job_free(j);
    memset(j, 0, sizeof *j);
    return 0;
}

/* envsrv.git.apply{repo, commit, diff} -> table [-0, +1, e]
 *
 * On success {ok = true, commit = hex, archive = tar bytes, files = n,
 * changed = {paths}}; when the diff is refused {ok = false, reason = "...",
 * commit = hex}. A repository or commit that cannot be had raises. */
static int l_git_apply(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int known = 0;
        for (int i = 0; k && apply_fields[i]; i++)
            known |= strcmp(k, apply_fields[i]) == 0;
        if (!known)
            return luaL_error(L, "envsrv.git.apply: unknown field '%s' (repo, commit, diff)",
                              k ? k : luaL_typename(L, -1));
    }
    lenv__state *st = lenv__state_of(L);
    if (st->git == NULL)
        return luaL_error(L, "envsrv.git.apply: no git cache in this state");
    /* C memory hangs off a userdata so an error raised below frees it. */
    apply_job *j = lua_newuserdatauv(L, sizeof *j, 0);
    memset(j, 0, sizeof *j);
    if (luaL_newmetatable(L, JOB_META)) {
        lua_pushcfunction(L, job_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    int ud = lua_gettop(L);
    char url[PATH_MAX + 16];
    read_repo(L, 1, j, url, sizeof url);
    int t = lua_getfield(L, 1, "commit");
    if (t == LUA_TSTRING)
        j->rev = lua_tostring(L, -1);
    else if (t != LUA_TNIL)
        return luaL_error(L, "envsrv.git.apply: commit must be a string");
    else if (j->url)
        return luaL_error(L, "envsrv.git.apply: commit is required for a repository URL");
    if (lua_getfield(L, 1, "diff") != LUA_TSTRING)
        return luaL_error(L, "envsrv.git.apply: diff must be a string");
    j->diff = lua_tolstring(L, -1, &j->diff_len);
    if (j->diff_len > MAX_DIFF_BYTES) {
        lua_createtable(L, 0, 2);
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "ok");
        lua_pushfstring(L, "the diff is larger than %d bytes", (int)MAX_DIFF_BYTES);
        lua_setfield(L, -2, "reason");
        return 1;
    }
    if (run_job(j, st->git) != 0) {
        lua_pushstring(L, j->error);
        job_free(j);
        memset(j, 0, sizeof *j);
        return lua_error(L);
    }
    lua_createtable(L, 0, 5);
    lua_pushboolean(L, j->reason[0] == '\0');
    lua_setfield(L, -2, "ok");
    lua_pushstring(L, j->commit);
    lua_setfield(L, -2, "commit");
    if (j->reason[0]) {
        lua_pushstring(L, j->reason);
        lua_setfield(L, -2, "reason");
    } else {
        lua_pushlstring(L, j->archive.data, j->archive.len);
        lua_setfield(L, -2, "archive");
        lua_pushinteger(L, (lua_Integer)j->files);
        lua_setfield(L, -2, "files");
        lua_createtable(L, (int)j->n_changed, 0);
        for (size_t i = 0; i < j->n_changed; i++) {
            lua_pushstring(L, j->changed[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "changed");
    }
    /* Free the archive now rather than at the next collection. */
    job_free(j);
    memset(j, 0, sizeof *j);
    (void)ud;
    return 1;
}

const luaL_Reg lenv__git_funcs[] = {
    {"apply", l_git_apply},
    {NULL, NULL},
};
