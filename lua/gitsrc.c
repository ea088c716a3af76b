/*
 * Environments from git repositories: "git+URL@REV#PATH" specs, the cache of
 * bare repositories and read-only checkouts, fetching with a timeout, and
 * revision resolution. See lenv.h ("environments from git repositories") for
 * the contract and the cache layout.
 *
 * libgit2 1.5 has no socket timeout, so a fetch runs in a forked child that
 * the parent kills at the deadline: an unresponsive remote costs the timeout
 * and nothing else. The child writes only into the bare repository, whose
 * packs and refs libgit2 replaces atomically, so a killed fetch leaves the
 * cache as it was. A file lock per repository serialises fetches of the same
 * URL between threads and processes.
 *
 * The fork may happen on a worker thread of the server (envsrv.git.apply).
 * The child touches only libgit2 and then _exit()s; should it ever block on a
 * lock another thread held at the fork, the deadline kills it and the call
 * fails with a timeout rather than hanging.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lua/lenv_int.h"

#define MAX_SPEC 4096
#define MAX_REV 255

/* ---- small helpers -------------------------------------------------------------- */

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

static void git_init_once(void)
{
    git_libgit2_init();
}

void lenv__git_init(void)
{
    pthread_once(&git_once, git_init_once);
}

const char *lenv__git_errmsg(const char *fallback)
{
    const git_error *e = git_error_last();
    return e && e->message && e->message[0] ? e->message : fallback;
}

int lenv__sha256_full(char out[65], const void *data, size_t len)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int lenv__git_path_safe(const char *path)
{
    if (path == NULL || path[0] == '\0' || path[0] == '/')
        return 0;
    const char *p = path;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.') ||
            (n == 4 && strncasecmp(p, ".git", 4) == 0))
            return 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
                return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return lenv__utf8_valid(path, strlen(path));
}

static int is_hex(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* mkdir -p; returns 0 or -1 with errno set. */
static int mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int unlock_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR)
        chmod(path, (sb->st_mode & 07777) | S_IRWXU);
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* rm -rf, read-only folders included. Returns 0 when path is gone. */
static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    nftw(path, unlock_entry, 16, FTW_PHYS);
    nftw(path, remove_entry, 16, FTW_PHYS | FTW_DEPTH);
    return lstat(path, &st) == 0 ? -1 : 0;
}

/* ---- configuration ------------------------------------------------------------------ */

int lenv__gitcfg_init(lenv__gitcfg *cfg, const lenv_git_options *opts, lenv_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : LENV_GIT_DEFAULT_TIMEOUT_MS;
    int r = 0;
    if (opts && opts->cache_dir && opts->cache_dir[0]) {
        r = asprintf(&cfg->cache_dir, "%s", opts->cache_dir);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0] == '/')
            r = asprintf(&cfg->cache_dir, "%s/envsrv/git", xdg);
        else if (home && home[0] == '/')
            r = asprintf(&cfg->cache_dir, "%s/.cache/envsrv/git", home);
    }
    if (r < 0) {
        cfg->cache_dir = NULL;
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    }
    return LENV_OK;
}

void lenv__gitcfg_clear(lenv__gitcfg *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->cache_dir);
    cfg->cache_dir = NULL;
}

static int need_cache(const lenv__gitcfg *cfg, lenv_error *err)
{
    if (cfg == NULL || cfg->cache_dir == NULL)
        return lenv__fail(err, LENV_EIO, "no git cache folder: give --cache-dir (neither "
                          "$XDG_CACHE_HOME nor $HOME is set)");
    if (mkdirs(cfg->cache_dir, 0755) != 0)
        return lenv__fail(err, LENV_EIO, "cannot create the git cache folder '%s': %s",
                          cfg->cache_dir, strerror(errno));
    return LENV_OK;
}

/* ---- specs ---------------------------------------------------------------------------- */

int lenv_is_git_spec(const char *spec)
{
    return spec != NULL && strncmp(spec, "git+", 4) == 0;
}

void lenv_git_ref_clear(lenv_git_ref *ref)
{
    if (ref == NULL)
        return;
    free(ref->url);
    free(ref->rev);
    free(ref->path);
    free(ref->file);
    free(ref->locked_name);
    memset(ref, 0, sizeof *ref);
}

void lenv__git_ref_free(lenv_git_ref *ref)
{
    lenv_git_ref_clear(ref);
    free(ref);
}

static const char *const url_schemes[] = { "https://", "http://", "ssh://", "file://", NULL };

int lenv_git_parse(lenv_git_ref *ref, const char *spec, lenv_error *err)
{
    memset(ref, 0, sizeof *ref);
    static const char form[] = "expected git+SCHEME://HOST/REPO[@REV]#PATH/TO/ENV.lua with "
                               "SCHEME https, http, ssh or file";
    if (!lenv_is_git_spec(spec))
        return lenv__fail(err, LENV_EINVALID, "not a git environment spec: '%.200s'", spec ? spec : "");
    if (strlen(spec) > MAX_SPEC)
        return lenv__fail(err, LENV_EINVALID, "git environment spec longer than %d bytes", MAX_SPEC);
    for (const char *c = spec; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return lenv__fail(err, LENV_EINVALID, "bad git URL '%.200s': spaces and control "
                              "characters are not allowed", spec);
    const char *body = spec + 4;
    const char *scheme_end = strstr(body, "://");
    int known = 0;
    for (int i = 0; url_schemes[i]; i++)
        known |= strncmp(body, url_schemes[i], strlen(url_schemes[i])) == 0;
    if (!known || scheme_end == NULL)
        return lenv__fail(err, LENV_EINVALID, "bad git URL '%.200s': %s", spec, form);
    const char *hash = strrchr(body, '#');
    if (hash == NULL || hash[1] == '\0')
        return lenv__fail(err, LENV_EINVALID, "bad git environment spec '%.200s': no env file "
                          "(add #path/to/env.lua)", spec);
    const char *path = hash + 1;
    if (!lenv__git_path_safe(path))
        return lenv__fail(err, LENV_EINVALID, "bad git environment spec '%.200s': the env file "
                          "'%s' must be a relative path inside the repository", spec, path);
    /* The URL's path starts at the first '/' after "scheme://" (for file://
     * that is at once); REV follows the last '@' in it. */
    const char *authority = scheme_end + 3;
    const char *url_path = memchr(authority, '/', (size_t)(hash - authority));
    if (url_path == NULL || url_path + 1 >= hash)
        return lenv__fail(err, LENV_EINVALID, "bad git URL '%.200s': no repository path; %s",
                          spec, form);
    const char *at = NULL;
    for (const char *c = url_path; c < hash; c++)
        if (*c == '@')
            at = c;
    const char *url_end = at ? at : hash;
    if (url_end[-1] == '/' && url_end - 1 == url_path)
        return lenv__fail(err, LENV_EINVALID, "bad git URL '%.200s': no repository path; %s",
                          spec, form);
    if (at && (hash - at - 1 == 0 || hash - at - 1 > MAX_REV))
        return lenv__fail(err, LENV_EINVALID, "bad git environment spec '%.200s': empty or "
                          "overlong revision after '@'", spec);
    if (at && (at[1] == '-' || memchr(at + 1, ':', (size_t)(hash - at - 1)) ||
               memchr(at + 1, '~', (size_t)(hash - at - 1)) ||
               memchr(at + 1, '^', (size_t)(hash - at - 1))))
        return lenv__fail(err, LENV_EINVALID, "bad git environment spec '%.200s': the revision "
                          "must be a tag, a branch or a commit id", spec);
    ref->url = strndup(body, (size_t)(url_end - body));
    ref->rev = at ? strndup(at + 1, (size_t)(hash - at - 1)) : strdup("HEAD");
    ref->path = strdup(path);
    if (!ref->url || !ref->rev || !ref->path)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    return LENV_OK;
}

/* ---- the cache's repositories ---------------------------------------------------------- */

/* <cache>/repos/<16 hex of SHA-256(url)>.git */
static int repo_dir(char *out, size_t cap, const lenv__gitcfg *cfg, const char *url)
{
    char h[65];
    if (lenv__sha256_full(h, url, strlen(url)) != 0)
        return -1;
    return snprintf(out, cap, "%s/repos/%.16s.git", cfg->cache_dir, h) >= (int)cap ? -1 : 0;
}

/* Holds an exclusive lock on <dir>.lock until release (fd >= 0). */
static int lock_repo(int *fd, const char *dir, lenv_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s.lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0)
        return lenv__fail(err, LENV_EIO, "cannot create '%s': %s", path, strerror(errno));
    while (flock(*fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(*fd);
            *fd = -1;
            return lenv__fail(err, LENV_EIO, "cannot lock '%s': %s", path, strerror(e));
        }
    }
    return LENV_OK;
}

static void unlock_repo(int fd)
{
    if (fd >= 0)
        close(fd);   /* releases the flock */
}

/* Opens the bare repository at dir, creating it when absent. One that exists
 * but does not open is corrupt: it is removed and created afresh, and
 * *repaired says so. */
static int open_bare(git_repository **out, const char *dir, int *repaired, lenv_error *err)
{
    struct stat st;
    *out = NULL;
    if (stat(dir, &st) == 0) {
        if (git_repository_open_bare(out, dir) == 0)
            return LENV_OK;
        if (remove_tree(dir) != 0)
            return lenv__fail(err, LENV_EIO, "the git cache '%s' is corrupt and cannot be removed",
                              dir);
        if (repaired)
            *repaired = 1;
    }
    if (git_repository_init(out, dir, 1) != 0)
        return lenv__fail(err, LENV_EIO, "cannot create the git cache '%s': %s", dir,
                          lenv__git_errmsg("unknown error"));
    return LENV_OK;
}

int lenv__git_open_inline(git_repository **repo, const lenv__gitcfg *cfg, lenv_error *err)
{
    lenv__git_init();
    int rc = need_cache(cfg, err);
    if (rc != LENV_OK)
        return rc;
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/inline.git", cfg->cache_dir) >= (int)sizeof dir)
        return lenv__fail(err, LENV_EIO, "git cache path too long");
    int fd = -1;
    if ((rc = lock_repo(&fd, dir, err)) != LENV_OK)
        return rc;
    rc = open_bare(repo, dir, NULL, err);
    unlock_repo(fd);
    return rc;
}

/* ---- fetching -------------------------------------------------------------------------- */

/* The fetch itself, in the child: all branches and tags, and the remote's
 * default branch as refs/remotes/origin/HEAD. */
static int fetch_now(const char *dir, const char *url, char *msg, size_t cap)
{
    git_repository *repo = NULL;
    git_remote *remote = NULL;
    git_buf head = { 0 };
    int rc = -1;
    char *specs[] = { "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*" };
    git_strarray refspecs = { specs, 2 };
    git_fetch_options fo;
    git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;   /* the refspec brings every tag */
    if (git_repository_open_bare(&repo, dir) != 0 ||
        git_remote_create_anonymous(&remote, repo, url) != 0 ||
        git_remote_fetch(remote, &refspecs, &fo, NULL) != 0) {
        snprintf(msg, cap, "%s", lenv__git_errmsg("unknown error"));
        goto done;
    }
    if (git_remote_default_branch(&head, remote) == 0 && strncmp(head.ptr, "refs/heads/", 11) == 0) {
        char target[1024];
        git_reference *r = NULL;
        snprintf(target, sizeof target, "refs/remotes/origin/%s", head.ptr + 11);
        if (git_reference_symbolic_create(&r, repo, "refs/remotes/origin/HEAD", target, 1,
                                          "envsrv fetch") == 0)
            git_reference_free(r);
    }
    rc = 0;
done:
    git_buf_dispose(&head);
    git_remote_free(remote);
    git_repository_free(repo);
    return rc;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs fetch_now in a child killed after timeout_ms. Returns 0, or -1 with
 * msg saying why (libgit2's message, or the timeout). */
static int fetch_with_timeout(const char *dir, const char *url, unsigned timeout_ms, char *msg,
                              size_t cap)
{
    int fds[2];
    msg[0] = '\0';
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(msg, cap, "cannot create a pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(msg, cap, "cannot fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* Keep only the pipe (as fd 3) and stdio: descriptors other threads
         * had open (a sandbox run's pipes, client sockets) must not stay open
         * here for as long as the fetch takes. */
        int out = fds[1] == 3 ? 3 : dup2(fds[1], 3);
        if (out != 3)
            _exit(1);
        if (close_range(4, ~0u, 0) != 0)
            for (int fd = 4; fd < 4096; fd++)
                close(fd);
        char m[512] = "";
        int r = fetch_now(dir, url, m, sizeof m);
        if (r != 0) {
            size_t n = strlen(m), off = 0;
            while (off < n) {
                ssize_t w = write(out, m + off, n - off);
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
        }
        _exit(r == 0 ? 0 : 1);
    }
    close(fds[1]);
    size_t len = 0;
    int timed_out = 0;
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        uint64_t t = now_ms();
        if (t >= deadline) {
            timed_out = 1;
            break;
        }
        struct pollfd p = { fds[0], POLLIN, 0 };
        int pr = poll(&p, 1, (int)(deadline - t));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            break;
        if (pr == 0)
            continue;
        char buf[256];
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;   /* EOF: the child is done */
        size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(msg + len, buf, take);
        len += take;
        msg[len] = '\0';
    }
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        snprintf(msg, cap, "timed out after %u ms", timeout_ms);
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (msg[0] == '\0')
        snprintf(msg, cap, "the fetch process failed (status %d)", status);
    return -1;
}

/* ---- revisions --------------------------------------------------------------------------- */

#define RESOLVE_CORRUPT 1   /* a ref names an object the repository lacks */

/* Resolves rev in repo. Returns 0 (found, *is_tag set), GIT_ENOTFOUND, or
 * RESOLVE_CORRUPT. */
static int resolve_local(git_oid *out, int *is_tag, git_repository *repo, const char *rev)
{
    *is_tag = 0;
    if (is_hex(rev, GIT_OID_HEXSZ, GIT_OID_HEXSZ)) {
        git_commit *c = NULL;
        if (git_oid_fromstr(out, rev) == 0 && git_commit_lookup(&c, repo, out) == 0) {
            git_commit_free(c);
            return 0;
        }
        return GIT_ENOTFOUND;
    }
    const char *cands[3];
    int n = 0;
    char tag[MAX_REV + 64], branch[MAX_REV + 64];
    if (strcmp(rev, "HEAD") == 0) {
        cands[n++] = "refs/remotes/origin/HEAD";
    } else {
        snprintf(tag, sizeof tag, "refs/tags/%s", rev);
        snprintf(branch, sizeof branch, "refs/remotes/origin/%s", rev);
        cands[n++] = tag;
        cands[n++] = branch;
    }
    for (int i = 0; i < n; i++) {
        git_reference *ref = NULL;
        if (git_reference_lookup(&ref, repo, cands[i]) != 0)
            continue;
        git_object *obj = NULL;
        int r = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT);
        git_reference_free(ref);
        if (r != 0)
            return RESOLVE_CORRUPT;
        git_oid_cpy(out, git_object_id(obj));
        git_object_free(obj);
        *is_tag = cands[i] == tag;
        return 0;
    }
    if (is_hex(rev, 4, GIT_OID_HEXSZ - 1)) {
        git_oid prefix;
        git_object *obj = NULL;
        if (git_oid_fromstrn(&prefix, rev, strlen(rev)) == 0 &&
            git_object_lookup_prefix(&obj, repo, &prefix, strlen(rev), GIT_OBJECT_COMMIT) == 0) {
            git_oid_cpy(out, git_object_id(obj));
            git_object_free(obj);
            return 0;
        }
    }
    return GIT_ENOTFOUND;
}

/* One try of lenv__git_open_rev with the repository lock held. *corrupt is
 * set when the cache turned out to be damaged after the fetch (the caller
 * removes it and tries once more). */
static int open_rev_locked(git_repository **out, git_oid *commit, char *warning, size_t wcap,
                           int *corrupt, const lenv__gitcfg *cfg, const char *dir,
                           const char *url, const char *rev, lenv_error *err)
{
    git_repository *repo = NULL;
    int repaired = 0, is_tag = 0;
    int rc = open_bare(&repo, dir, &repaired, err);
    if (rc != LENV_OK)
        return rc;
    int found = resolve_local(commit, &is_tag, repo, rev);
    if (found == RESOLVE_CORRUPT) {
        git_repository_free(repo);
        repo = NULL;
        if (remove_tree(dir) != 0 || (rc = open_bare(&repo, dir, NULL, err)) != LENV_OK)
            return rc != LENV_OK ? rc : lenv__fail(err, LENV_EIO, "the git cache '%s' is corrupt "
                                                   "and cannot be removed", dir);
        found = GIT_ENOTFOUND;
    }
    /* A commit id names one tree forever, and tags are meant not to move: a
     * cached one needs no network. */
    if (found == 0 && (is_tag || is_hex(rev, GIT_OID_HEXSZ, GIT_OID_HEXSZ))) {
        *out = repo;
        return LENV_OK;
    }
    git_repository_free(repo);
    repo = NULL;
    char msg[512];
    int fetched = fetch_with_timeout(dir, url, cfg->timeout_ms, msg, sizeof msg) == 0;
    if ((rc = open_bare(&repo, dir, NULL, err)) != LENV_OK)
        return rc;
    if (!fetched) {
        if (found == 0) {
            snprintf(warning, wcap, "cannot fetch '%s' (%s): using the cached '%s' (commit may "
                     "be stale)", url, msg, rev);
            *out = repo;
            return LENV_OK;
        }
        git_repository_free(repo);
        return lenv__fail(err, LENV_EIO, "cannot fetch '%s': %s (the cache %s has no copy of "
                          "revision '%s'; it is needed once, with the network)", url, msg, dir, rev);
    }
    found = resolve_local(commit, &is_tag, repo, rev);
    if (found == RESOLVE_CORRUPT) {
        git_repository_free(repo);
        *corrupt = 1;
        return lenv__fail(err, LENV_EIO, "the git cache '%s' is corrupt", dir);
    }
    if (found != 0) {
        git_repository_free(repo);
        return lenv__fail(err, LENV_ENOTFOUND, "unknown revision '%s' in '%s' (not a branch, a "
                          "tag or a commit of it)", rev, url);
    }
    *out = repo;
    return LENV_OK;
}

int lenv__git_open_rev(git_repository **out, git_oid *commit, char *warning, size_t wcap,
                       const lenv__gitcfg *cfg, const char *url, const char *rev, lenv_error *err)
{
    lenv__git_init();
    *out = NULL;
    if (wcap)
        warning[0] = '\0';
    int rc = need_cache(cfg, err);
    if (rc != LENV_OK)
        return rc;
    char reposdir[PATH_MAX], dir[PATH_MAX];
    snprintf(reposdir, sizeof reposdir, "%s/repos", cfg->cache_dir);
    if (mkdirs(reposdir, 0755) != 0)
        return lenv__fail(err, LENV_EIO, "cannot create '%s': %s", reposdir, strerror(errno));
    if (repo_dir(dir, sizeof dir, cfg, url) != 0)
        return lenv__fail(err, LENV_EIO, "git cache path too long");
    int fd = -1;
    if ((rc = lock_repo(&fd, dir, err)) != LENV_OK)
        return rc;
    for (int attempt = 0; attempt < 2; attempt++) {
        int corrupt = 0;
        rc = open_rev_locked(out, commit, warning, wcap, &corrupt, cfg, dir, url, rev, err);
        if (!corrupt)
            break;
        if (remove_tree(dir) != 0)
            break;
    }
    unlock_repo(fd);
    return rc;
}

/* ---- checkouts ----------------------------------------------------------------------------- */

typedef struct write_ctx {
    git_repository *repo;
    const char *root;
    int failed;
    char msg[512];
} write_ctx;

/* Writes one blob of the tree under ctx->root (regular files only: symlinks
 * and submodules are left out, so nothing in a checkout points outside it). */
static int write_entry(const char *parent, const git_tree_entry *e, void *payload)
{
    write_ctx *ctx = payload;
    git_filemode_t mode = git_tree_entry_filemode(e);
    if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE)
        return mode == GIT_FILEMODE_TREE ? 0 : 1;   /* 1 skips (nothing under a non-tree) */
    char rel[PATH_MAX], path[PATH_MAX];
    snprintf(rel, sizeof rel, "%s%s", parent, git_tree_entry_name(e));
    if (!lenv__git_path_safe(rel))
        return 0;
    if (snprintf(path, sizeof path, "%s/%s", ctx->root, rel) >= (int)sizeof path) {
        snprintf(ctx->msg, sizeof ctx->msg, "path too long: '%.200s'", rel);
        goto fail;
    }
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (mkdirs(path, 0755) != 0) {
        snprintf(ctx->msg, sizeof ctx->msg, "cannot create '%.300s': %s", path, strerror(errno));
        goto fail;
    }
    *slash = '/';
    git_blob *blob = NULL;
    if (git_blob_lookup(&blob, ctx->repo, git_tree_entry_id(e)) != 0) {
        snprintf(ctx->msg, sizeof ctx->msg, "missing object for '%.300s'", rel);
        goto fail;
    }
    const char *data = git_blob_rawcontent(blob);
    size_t len = (size_t)git_blob_rawsize(blob), off = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    while (fd >= 0 && off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    git_blob_free(blob);
    if (fd < 0 || off < len || close(fd) != 0) {
        snprintf(ctx->msg, sizeof ctx->msg, "cannot write '%.300s': %s", path, strerror(errno));
        if (fd >= 0 && off < len)
            close(fd);
        goto fail;
    }
    chmod(path, mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0555 : 0444);
    return 0;
fail:
    ctx->failed = 1;
    return -1;
}

static int seal_dir(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        chmod(path, 0555);
    return 0;
}

/* Materialises the tree of `commit` at <cache>/trees/<commit> (read-only),
 * through a temporary folder and a rename so a reader never sees half a
 * tree. Returns 0, or LENV_EIO with *corrupt set when an object is missing. */
static int checkout_tree(git_repository *repo, const git_commit *commit, const char *final,
                         int *corrupt, lenv_error *err)
{
    git_tree *tree = NULL;
    char tmp[PATH_MAX];
    struct stat st;
    if (stat(final, &st) == 0)
        return LENV_OK;
    if (git_commit_tree(&tree, commit) != 0) {
        *corrupt = 1;
        return lenv__fail(err, LENV_EIO, "cannot read the tree of commit %s: %s",
                          git_oid_tostr_s(git_commit_id(commit)), lenv__git_errmsg("missing object"));
    }
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld-%lx", final, (long)getpid(), (unsigned long)pthread_self());
    remove_tree(tmp);
    write_ctx ctx = { repo, tmp, 0, "" };
    int rc = LENV_OK;
    if (mkdirs(tmp, 0755) != 0) {
        rc = lenv__fail(err, LENV_EIO, "cannot create '%s': %s", tmp, strerror(errno));
        goto done;
    }
    if (git_tree_walk(tree, GIT_TREEWALK_PRE, write_entry, &ctx) != 0 || ctx.failed) {
        if (strncmp(ctx.msg, "missing object", 14) == 0)
            *corrupt = 1;
        rc = lenv__fail(err, LENV_EIO, "cannot check out commit %s: %s",
                        git_oid_tostr_s(git_commit_id(commit)), ctx.msg[0] ? ctx.msg :
                        lenv__git_errmsg("tree walk failed"));
        goto done;
    }
    nftw(tmp, seal_dir, 16, FTW_PHYS | FTW_DEPTH);
    if (rename(tmp, final) != 0 && stat(final, &st) != 0)
        rc = lenv__fail(err, LENV_EIO, "cannot create '%s': %s", final, strerror(errno));
done:
    remove_tree(tmp);   /* gone after the rename; left over after a failure */
    git_tree_free(tree);
    return rc;
}

/* Finds `path` in the commit's tree: a regular file, whose SHA-256 goes to
 * sha. */
static int tree_file_hash(char sha[65], git_repository *repo, const git_commit *commit,
                          const char *path, const char *url, int *corrupt, lenv_error *err)
{
    git_tree *tree = NULL;
    git_tree_entry *e = NULL;
    git_blob *blob = NULL;
    int rc = LENV_OK;
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof hex, git_commit_id(commit));
    if (git_commit_tree(&tree, commit) != 0) {
        *corrupt = 1;
        return lenv__fail(err, LENV_EIO, "cannot read the tree of commit %s", hex);
    }
    if (git_tree_entry_bypath(&e, tree, path) != 0) {
        rc = lenv__fail(err, LENV_ENOTFOUND, "'%s' is not in the tree of '%s' at commit %s",
                        path, url, hex);
        goto done;
    }
    git_filemode_t mode = git_tree_entry_filemode(e);
    if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE) {
        rc = lenv__fail(err, LENV_ENOTFOUND, "'%s' in '%s' at commit %s is not a regular file",
                        path, url, hex);
        goto done;
    }
    if (git_blob_lookup(&blob, repo, git_tree_entry_id(e)) != 0) {
        *corrupt = 1;
        rc = lenv__fail(err, LENV_EIO, "the git cache lacks the object of '%s'", path);
        goto done;
    }
    if (lenv__sha256_full(sha, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob)) != 0)
        rc = lenv__fail(err, LENV_ENOMEM, "cannot hash '%s'", path);
done:
    git_blob_free(blob);
    git_tree_entry_free(e);
    git_tree_free(tree);
    return rc;
}

/* 1 when the file on disk has the expected SHA-256. */
static int file_matches(const char *file, const char *sha)
{
    char *data = NULL;
    size_t len = 0;
    char got[65];
    int ok = lenv__read_file(&data, &len, file, NULL) == LENV_OK &&
             lenv__sha256_full(got, data, len) == 0 && strcmp(got, sha) == 0;
    free(data);
    return ok;
}

int lenv_git_resolve(lenv_git_ref *ref, const lenv_git_options *opts, lenv_error *err)
{
    lenv__gitcfg cfg;
    git_repository *repo = NULL;
    git_commit *commit = NULL;
    const lenv__lock_entry *locked = NULL;
    const char *rev = ref->rev;
    int rc = lenv__gitcfg_init(&cfg, opts, err);
    if (rc != LENV_OK)
        return rc;
    if (opts && opts->lock) {
        locked = lenv__lock_find(opts->lock, ref->url, ref->path);
        if (locked == NULL) {
            rc = lenv__fail(err, LENV_EINVALID, "'%s#%s' is not in the lock file %s (--lock "
                            "admits only the environments it lists)", ref->url, ref->path,
                            lenv__lock_file(opts->lock));
            goto done;
        }
        rev = locked->commit;
        free(ref->locked_name);
        if ((ref->locked_name = strdup(locked->name)) == NULL) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        git_oid oid;
        int corrupt = 0;
        git_commit_free(commit);
        git_repository_free(repo);
        commit = NULL;
        repo = NULL;
        rc = lenv__git_open_rev(&repo, &oid, ref->warning, sizeof ref->warning, &cfg, ref->url,
                                rev, err);
        if (rc != LENV_OK)
            goto done;
        git_oid_tostr(ref->commit, sizeof ref->commit, &oid);
        if (git_commit_lookup(&commit, repo, &oid) != 0) {
            corrupt = 1;
            rc = lenv__fail(err, LENV_EIO, "the git cache lacks commit %s", ref->commit);
        } else {
            rc = tree_file_hash(ref->file_sha256, repo, commit, ref->path, ref->url, &corrupt, err);
        }
        if (rc == LENV_OK) {
            char trees[PATH_MAX], final[PATH_MAX];
            snprintf(trees, sizeof trees, "%s/trees", cfg.cache_dir);
            if (mkdirs(trees, 0755) != 0) {
                rc = lenv__fail(err, LENV_EIO, "cannot create '%s': %s", trees, strerror(errno));
                goto done;
            }
            if (snprintf(final, sizeof final, "%s/%s", trees, ref->commit) >= (int)sizeof final) {
                rc = lenv__fail(err, LENV_EIO, "git cache path too long");
                goto done;
            }
            rc = checkout_tree(repo, commit, final, &corrupt, err);
            free(ref->file);
            ref->file = NULL;
            if (rc == LENV_OK && asprintf(&ref->file, "%s/%s", final, ref->path) < 0) {
                ref->file = NULL;
                rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
                goto done;
            }
            /* A checkout damaged on disk is made again from the repository. */
            if (rc == LENV_OK && !file_matches(ref->file, ref->file_sha256)) {
                remove_tree(final);
                rc = checkout_tree(repo, commit, final, &corrupt, err);
                if (rc == LENV_OK && !file_matches(ref->file, ref->file_sha256))
                    rc = lenv__fail(err, LENV_EIO, "the checkout '%s' does not match commit %s",
                                    final, ref->commit);
            }
        }
        if (rc == LENV_OK || !corrupt)
            break;
        /* Objects missing from the cache: remove the repository, fetch again. */
        char dir[PATH_MAX];
        if (repo_dir(dir, sizeof dir, &cfg, ref->url) != 0 || remove_tree(dir) != 0)
            break;
    }
    if (rc == LENV_OK && locked && strcmp(locked->file_sha256, ref->file_sha256) != 0)
        rc = lenv__fail(err, LENV_EIO, "'%s' at commit %s has SHA-256 %s, but the lock file %s "
                        "says %s", ref->path, ref->commit, ref->file_sha256,
                        lenv__lock_file(opts->lock), locked->file_sha256);
done:
    git_commit_free(commit);
    git_repository_free(repo);
    lenv__gitcfg_clear(&cfg);
    return rc;
}

/* ---- lenv_open's part ------------------------------------------------------------------------ */

int lenv__git_prepare(lenv_git_ref **out, const char **path, const lenv_options *opts,
                      lenv_error *err)
{
    *out = NULL;
    *path = opts->name_or_path;
    const lenv_git_options *go = opts->git;
    if (!lenv_is_git_spec(opts->name_or_path)) {
        if (go && go->lock)
            return lenv__fail(err, LENV_EINVALID, "environment '%s' is not in the lock file %s "
                              "(--lock admits only the git environments it lists)",
                              opts->name_or_path, lenv__lock_file(go->lock));
        return LENV_OK;
    }
    lenv_git_ref *ref = calloc(1, sizeof *ref);
    if (ref == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    int rc = lenv_git_parse(ref, opts->name_or_path, err);
    if (rc == LENV_OK)
        rc = lenv_git_resolve(ref, go, err);
    if (rc != LENV_OK) {
        lenv__git_ref_free(ref);
        return rc;
    }
    *out = ref;
    *path = ref->file;
    return LENV_OK;
}

int lenv__git_finish(char *version, size_t cap, const lenv_git_ref *ref, const char *name,
                     lenv_error *err)
{
    if (ref == NULL)
        return LENV_OK;
    if (ref->locked_name && strcmp(ref->locked_name, name) != 0)
        return lenv__fail(err, LENV_EINVALID, "the lock names '%s#%s' '%s', but its definition "
                          "is named '%s'", ref->url, ref->path, ref->locked_name, name);
    size_t n = strlen(version);
    if (snprintf(version + n, cap - n, "+git.%.12s.%.12s", ref->commit, ref->file_sha256) >=
        (int)(cap - n))
        return lenv__fail(err, LENV_ENOMEM, "version string too long");
    return LENV_OK;
}

int lenv__git_check_dataset(const lenv_git_ref *ref, const json_t *dataset, lenv_error *err)
{
    const char *split;
    json_t *p;
    if (ref == NULL)
        return LENV_OK;
    json_object_foreach((json_t *)dataset, split, p) {
        const char *path = json_string_value(p);
        while (path && path[0] == '.' && path[1] == '/')
            path += 2;
        if (!lenv__git_path_safe(path))
            return lenv__fail(err, LENV_EINVALID, "%s: dataset split '%s' names '%s', outside the "
                              "repository (a git env's datasets are paths inside its commit)",
                              ref->path, split, json_string_value(p));
    }
    return LENV_OK;
}

json_t *lenv_git_json(const lenv_env *env)
{
    const lenv_git_ref *r = lenv_git_source(env);
    if (r == NULL)
        return NULL;
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "url", r->url, "rev", r->rev, "path", r->path,
                     "commit", r->commit, "file_sha256", r->file_sha256);
}
