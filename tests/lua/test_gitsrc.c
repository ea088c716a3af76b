/*
 * Tests for lua/gitsrc.c and lua/gitlock.c: environments loaded from git
 * repositories that the tests make with libgit2 (several commits, a tag, a
 * second branch), by tag, branch, full and short commit id and HEAD; the
 * version following the commit; datasets from the same checkout; offline
 * reuse of the cache; locks that pin and refuse; and every error: bad specs,
 * unknown revisions, missing files, an unreachable remote with an empty
 * cache, a corrupt cache (fetched again) and a remote that never answers
 * (the fetch timeout).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lua/lenv.h"
#include "tests/support/gitrepo.h"
#include "tests/support/support.h"

/* ---- the fixture repository ---------------------------------------------------- */

static const char ENV_V1[] =
    "return {\n"
    "  name = 'capitals',\n"
    "  description = 'capitals, first version',\n"
    "  dataset = { test = 'capitals.jsonl' },\n"
    "  id_field = 'id',\n"
    "  prompt = function(item) return {{role = 'user', content = 'Capital of ' .. item.country .. '?'}} end,\n"
    "  reward = function(item, c) return c:find(item.capital, 1, true) and 1.0 or 0.0 end,\n"
    "}\n";
static const char DATA_V1[] =
    "{\"id\": \"fr\", \"country\": \"France\", \"capital\": \"Paris\"}\n"
    "{\"id\": \"jp\", \"country\": \"Japan\", \"capital\": \"Tokyo\"}\n";
static const char DATA_V2[] =
    "{\"id\": \"fr\", \"country\": \"France\", \"capital\": \"Paris\"}\n"
    "{\"id\": \"jp\", \"country\": \"Japan\", \"capital\": \"Tokyo\"}\n"
    "{\"id\": \"pe\", \"country\": \"Peru\", \"capital\": \"Lima\"}\n";

typedef struct fixture {
    char root[64];
    char repo[128];
    char url[160];      /* file:// URL of repo */
    char c1[41];        /* tag v1: ENV_V1 + DATA_V1 */
    char c2[41];        /* main: description changed, DATA_V2 */
    char c3[41];        /* branch feature: description changed again */
} fixture;

static fixture fx;

static char *env_v(const char *description)
{
    static char buf[1024];
    const char *p = strstr(ENV_V1, "capitals, first version");
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - ENV_V1), ENV_V1, description,
             p + strlen("capitals, first version"));
    return buf;
}

static int setup(void **state)
{
    (void)state;
    tsup_mkdtemp(fx.root);
    snprintf(fx.repo, sizeof fx.repo, "%s/repo", fx.root);
    snprintf(fx.url, sizeof fx.url, "file://%s", fx.repo);
    tsup_git_init(fx.repo);
    const char *const f1[] = { "envs/capitals.lua", ENV_V1, "envs/capitals.jsonl", DATA_V1,
                               "README.md", "capitals\n", NULL };
    tsup_git_commit(fx.c1, fx.repo, "main", f1, "first");
    tsup_git_tag(fx.repo, "v1", fx.c1);
    char v2[1024];
    snprintf(v2, sizeof v2, "%s", env_v("capitals, second version"));
    const char *const f2[] = { "envs/capitals.lua", v2, "envs/capitals.jsonl", DATA_V2, NULL };
    tsup_git_commit(fx.c2, fx.repo, "main", f2, "second");
    char v3[1024];
    snprintf(v3, sizeof v3, "%s", env_v("capitals, feature version"));
    const char *const f3[] = { "envs/capitals.lua", v3, NULL };
    tsup_git_commit(fx.c3, fx.repo, "feature", f3, "feature");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tsup_rmtree(fx.root);
    return 0;
}

/* A fresh cache folder under the fixture's root. */
static void new_cache(char out[128], const char *name)
{
    snprintf(out, 128, "%s/%s", fx.root, name);
    tsup_rmtree(out);
}

static int open_git(lenv_env **env, const char *spec, const char *cache, const lenv_lock *lock,
                    unsigned timeout_ms, lenv_error *err)
{
    lenv_git_options g = LENV_GIT_OPTIONS_INIT;
    g.cache_dir = cache;
    g.lock = lock;
    g.timeout_ms = timeout_ms;
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = spec;
    o.git = &g;
    memset(err, 0, sizeof *err);
    return lenv_open(env, &o, err);
}

static lenv_env *must_open(const char *rev, const char *cache)
{
    char spec[512];
    snprintf(spec, sizeof spec, "git+%s@%s#envs/capitals.lua", fx.url, rev);
    lenv_env *env = NULL;
    lenv_error err;
    if (open_git(&env, spec, cache, NULL, 0, &err) != 0)
        fail_msg("%s: %s", spec, err.message);
    return env;
}

static size_t test_split_size(lenv_env *env)
{
    json_t *d = lenv_describe(env, 0);
    size_t n = (size_t)json_integer_value(json_object_get(json_object_get(d, "splits"), "test"));
    json_decref(d);
    return n;
}

/* ---- specs ---------------------------------------------------------------------- */

static void test_gitsrc_parse__good_specs(void **state)
{
    (void)state;
    static const struct { const char *spec, *url, *rev, *path; } cases[] = {
        { "git+https://host/org/repo@v1.2#envs/x.lua", "https://host/org/repo", "v1.2", "envs/x.lua" },
        { "git+https://host/org/repo#x.lua", "https://host/org/repo", "HEAD", "x.lua" },
        { "git+ssh://git@host/org/repo.git#a/b.lua", "ssh://git@host/org/repo.git", "HEAD", "a/b.lua" },
        { "git+ssh://git@host/org/repo.git@feature/x#a.lua", "ssh://git@host/org/repo.git",
          "feature/x", "a.lua" },
        { "git+file:///tmp/r@0123456789abcdef0123456789abcdef01234567#e.lua", "file:///tmp/r",
          "0123456789abcdef0123456789abcdef01234567", "e.lua" },
        { "git+http://127.0.0.1:8080/r@main#e.lua", "http://127.0.0.1:8080/r", "main", "e.lua" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lenv_git_ref ref;
        lenv_error err = { 0 };
        assert_true(lenv_is_git_spec(cases[i].spec));
        assert_int_equal(lenv_git_parse(&ref, cases[i].spec, &err), LENV_OK);
        assert_string_equal(ref.url, cases[i].url);
        assert_string_equal(ref.rev, cases[i].rev);
        assert_string_equal(ref.path, cases[i].path);
        lenv_git_ref_clear(&ref);
    }
    assert_false(lenv_is_git_spec("gsm8k"));
    assert_false(lenv_is_git_spec("./git+x.lua"));
}

static void test_gitsrc_parse__bad_specs(void **state)
{
    (void)state;
    static const struct { const char *spec, *says; } cases[] = {
        { "git+ftp://host/repo#e.lua", "bad git URL" },
        { "git+host/repo#e.lua", "bad git URL" },
        { "git+https://host#e.lua", "no repository path" },
        { "git+https://host/#e.lua", "no repository path" },
        { "git+https://host/repo@v1", "no env file" },
        { "git+https://host/repo@v1#", "no env file" },
        { "git+https://host/repo@#e.lua", "empty or overlong revision" },
        { "git+https://host/repo@v1#../e.lua", "relative path inside the repository" },
        { "git+https://host/repo@v1#/etc/passwd", "relative path inside the repository" },
        { "git+https://host/repo@v1#.git/config", "relative path inside the repository" },
        { "git+https://host/repo@HEAD~1#e.lua", "tag, a branch or a commit" },
        { "git+https://host/repo@-x#e.lua", "tag, a branch or a commit" },
        { "git+https://host/re po#e.lua", "spaces and control characters" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lenv_git_ref ref;
        lenv_error err = { 0 };
        assert_int_equal(lenv_git_parse(&ref, cases[i].spec, &err), LENV_EINVALID);
        if (!strstr(err.message, cases[i].says))
            fail_msg("%s: '%s' does not say '%s'", cases[i].spec, err.message, cases[i].says);
        lenv_git_ref_clear(&ref);
        /* lenv_open says the same. */
        lenv_env *env = NULL;
        assert_int_equal(open_git(&env, cases[i].spec, fx.root, NULL, 0, &err), LENV_EINVALID);
        assert_null(env);
        assert_non_null(strstr(err.message, cases[i].says));
    }
}

/* ---- revisions and versions ---------------------------------------------------------- */

static void test_gitsrc_rev__tag_branch_commit(void **state)
{
    (void)state;
    char cache[128];
    new_cache(cache, "cache-revs");
    char short_c2[9];
    snprintf(short_c2, sizeof short_c2, "%.8s", fx.c2);
    static const struct { const char *rev; int which; } cases[] = {
        { "v1", 1 }, { "main", 2 }, { "HEAD", 2 }, { "feature", 3 }, { NULL, 1 }, { NULL, 2 },
    };
    const char *commits[] = { NULL, fx.c1, fx.c2, fx.c3 };
    char versions[4][64] = { "" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *rev = cases[i].rev ? cases[i].rev : i == 4 ? fx.c1 : short_c2;
        lenv_env *env = must_open(rev, cache);
        const lenv_git_ref *src = lenv_git_source(env);
        assert_non_null(src);
        assert_string_equal(src->commit, commits[cases[i].which]);
        assert_string_equal(src->rev, rev);
        assert_string_equal(src->path, "envs/capitals.lua");
        assert_int_equal(strlen(src->file_sha256), 64);
        /* env_version names the commit and the file's hash. */
        char suffix[64];
        snprintf(suffix, sizeof suffix, "+git.%.12s.%.12s", src->commit, src->file_sha256);
        const char *v = lenv_version(env);
        assert_int_equal(strlen(v), 16 + strlen(suffix));
        assert_string_equal(v + 16, suffix);
        if (versions[cases[i].which][0])
            assert_string_equal(versions[cases[i].which], v);   /* same commit, same version */
        snprintf(versions[cases[i].which], sizeof versions[0], "%s", v);
        /* The dataset comes from the same checkout. */
        assert_int_equal(test_split_size(env), cases[i].which == 1 ? 2 : 3);
        /* describe names the source. */
        json_t *d = lenv_describe(env, 0);
        assert_string_equal(json_string_value(json_object_get(json_object_get(d, "git"), "commit")),
                            commits[cases[i].which]);
        json_decref(d);
        /* The checkout is read-only. */
        struct stat st;
        assert_int_equal(stat(src->file, &st), 0);
        assert_int_equal(st.st_mode & 0222, 0);
        assert_string_equal(src->warning, "");
        lenv_free(env);
    }
    /* Three commits, three versions. */
    assert_string_not_equal(versions[1], versions[2]);
    assert_string_not_equal(versions[2], versions[3]);
    assert_string_not_equal(versions[1], versions[3]);
    tsup_rmtree(cache);
}

static void test_gitsrc_rev__follows_new_commits(void **state)
{
    (void)state;
    char cache[128], dir[128], url[192], c1[41], c2[41], spec[512];
    new_cache(cache, "cache-follow");
    snprintf(dir, sizeof dir, "%s/follow", fx.root);
    snprintf(url, sizeof url, "file://%s", dir);
    tsup_git_init(dir);
    const char *const f1[] = { "e.lua", ENV_V1, "capitals.jsonl", DATA_V1, NULL };
    tsup_git_commit(c1, dir, "main", f1, "one");
    snprintf(spec, sizeof spec, "git+%s@main#e.lua", url);
    lenv_env *env = NULL;
    lenv_error err;
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), 0);
    assert_string_equal(lenv_git_source(env)->commit, c1);
    char v1[64];
    snprintf(v1, sizeof v1, "%s", lenv_version(env));
    lenv_free(env);
    /* Only the dataset changes: the branch moves, the version follows. */
    const char *const f2[] = { "capitals.jsonl", DATA_V2, NULL };
    tsup_git_commit(c2, dir, "main", f2, "two");
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), 0);
    assert_string_equal(lenv_git_source(env)->commit, c2);
    assert_string_not_equal(lenv_version(env), v1);
    assert_int_equal(test_split_size(env), 3);
    lenv_free(env);
    tsup_rmtree(dir);
    tsup_rmtree(cache);
}

/* ---- offline --------------------------------------------------------------------------- */

static void test_gitsrc_offline__cache_serves_without_the_remote(void **state)
{
    (void)state;
    char cache[128], dir[128], away[128], url[192], c1[41], spec[512];
    new_cache(cache, "cache-offline");
    snprintf(dir, sizeof dir, "%s/offline", fx.root);
    snprintf(away, sizeof away, "%s/offline-away", fx.root);
    snprintf(url, sizeof url, "file://%s", dir);
    tsup_git_init(dir);
    const char *const f1[] = { "e.lua", ENV_V1, "capitals.jsonl", DATA_V1, NULL };
    tsup_git_commit(c1, dir, "main", f1, "one");
    tsup_git_tag(dir, "v1", c1);
    lenv_env *env = NULL;
    lenv_error err;
    /* First start: fetches. */
    snprintf(spec, sizeof spec, "git+%s@main#e.lua", url);
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), 0);
    char version[64];
    snprintf(version, sizeof version, "%s", lenv_version(env));
    lenv_free(env);
    /* The remote goes away. */
    assert_int_equal(rename(dir, away), 0);
    static const char *const revs[] = { "c1", "v1", "main" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(spec, sizeof spec, "git+%s@%s#e.lua", url, i == 0 ? c1 : revs[i]);
        if (open_git(&env, spec, cache, NULL, 0, &err) != 0)
            fail_msg("offline %s: %s", revs[i], err.message);
        assert_string_equal(lenv_version(env), version);
        const char *warning = lenv_git_source(env)->warning;
        if (i < 2)
            assert_string_equal(warning, "");   /* commits and tags need no network */
        else
            assert_non_null(strstr(warning, "may be stale"));   /* a branch is said to be old */
        assert_int_equal(test_split_size(env), 2);
        lenv_free(env);
    }
    /* A revision the cache never saw: a clear error with the hint. */
    snprintf(spec, sizeof spec, "git+%s@other#e.lua", url);
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), LENV_EIO);
    assert_non_null(strstr(err.message, "cannot fetch"));
    assert_non_null(strstr(err.message, "has no copy of revision 'other'"));
    assert_int_equal(rename(away, dir), 0);
    tsup_rmtree(dir);
    tsup_rmtree(cache);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_gitsrc_error__unknown_rev_and_missing_file(void **state)
{
    (void)state;
    char cache[128], spec[512];
    new_cache(cache, "cache-errors");
    lenv_env *env = NULL;
    lenv_error err;
    snprintf(spec, sizeof spec, "git+%s@no-such-branch#envs/capitals.lua", fx.url);
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), LENV_ENOTFOUND);
    assert_non_null(strstr(err.message, "unknown revision 'no-such-branch'"));
    snprintf(spec, sizeof spec, "git+%s@%s#envs/capitals.lua", fx.url,
             "0000000000000000000000000000000000000000");
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), LENV_ENOTFOUND);
    assert_non_null(strstr(err.message, "unknown revision"));
    snprintf(spec, sizeof spec, "git+%s@v1#envs/missing.lua", fx.url);
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), LENV_ENOTFOUND);
    assert_non_null(strstr(err.message, "'envs/missing.lua' is not in the tree"));
    assert_non_null(strstr(err.message, fx.c1));
    /* A folder is not an env file. */
    snprintf(spec, sizeof spec, "git+%s@v1#envs", fx.url);
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), LENV_ENOTFOUND);
    assert_non_null(strstr(err.message, "not a regular file"));
    assert_null(env);
    tsup_rmtree(cache);
}

static void test_gitsrc_error__unreachable_with_empty_cache(void **state)
{
    (void)state;
    char cache[128], spec[512];
    new_cache(cache, "cache-unreachable");
    lenv_env *env = NULL;
    lenv_error err;
    snprintf(spec, sizeof spec, "git+file://%s/no-such-repo@v1#e.lua", fx.root);
    assert_int_equal(open_git(&env, spec, cache, NULL, 0, &err), LENV_EIO);
    assert_non_null(strstr(err.message, "cannot fetch"));
    assert_non_null(strstr(err.message, "has no copy"));
    assert_null(env);
    tsup_rmtree(cache);
}

static void test_gitsrc_error__dataset_outside_the_checkout(void **state)
{
    (void)state;
    char cache[128], dir[128], url[192], c[41], spec[512];
    new_cache(cache, "cache-escape");
    snprintf(dir, sizeof dir, "%s/escape", fx.root);
    snprintf(url, sizeof url, "file://%s", dir);
    tsup_git_init(dir);
    static const char *const paths[] = { "../../../../etc/passwd", "/etc/passwd", "./a/../../x.jsonl" };
    for (size_t i = 0; i < 3; i++) {
        char env[1024];
        snprintf(env, sizeof env, "return { name = 'escape', dataset = { test = '%s' },\n"
                 "  prompt = function(item) return {{role = 'user', content = 'x'}} end,\n"
                 "  reward = function() return 0 end }\n", paths[i]);
        const char *const files[] = { "e.lua", env, NULL };
        tsup_git_commit(c, dir, "main", files, "escape");
        snprintf(spec, sizeof spec, "git+%s@%s#e.lua", url, c);
        lenv_env *e = NULL;
        lenv_error err;
        assert_int_equal(open_git(&e, spec, cache, NULL, 0, &err), LENV_EINVALID);
        assert_non_null(strstr(err.message, "outside the repository"));
        assert_null(e);
    }
    tsup_rmtree(dir);
    tsup_rmtree(cache);
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_gitsrc_error__fetch_timeout(void **state)
{
    (void)state;
    /* A loopback listener that takes connections (the kernel completes them
     * from the backlog) and never answers. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 16), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
    char cache[128], spec[512];
    new_cache(cache, "cache-timeout");
    snprintf(spec, sizeof spec, "git+http://127.0.0.1:%u/org/repo@main#e.lua",
             (unsigned)ntohs(a.sin_port));
    lenv_env *env = NULL;
    lenv_error err;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(open_git(&env, spec, cache, NULL, 300, &err), LENV_EIO);
    long ms = elapsed_ms(&t0);
    assert_non_null(strstr(err.message, "timed out after 300 ms"));
    assert_non_null(strstr(err.message, "has no copy"));
    assert_true(ms >= 300);
    assert_true(ms < 10000);
    assert_null(env);
    close(s);
    tsup_rmtree(cache);
}

/* The one bare repository in cache/repos. */
static void cached_repo(char out[512], const char *cache)
{
    char repos[192];
    snprintf(repos, sizeof repos, "%s/repos", cache);
    DIR *d = opendir(repos);
    assert_non_null(d);
    struct dirent *e;
    out[0] = '\0';
    while ((e = readdir(d)))
        if (strlen(e->d_name) > 4 && strcmp(e->d_name + strlen(e->d_name) - 4, ".git") == 0)
            if (snprintf(out, 512, "%s/%s", repos, e->d_name) >= 512)
                fail_msg("path too long");
    closedir(d);
    assert_true(out[0] != '\0');
}

static void test_gitsrc_error__corrupt_cache_is_fetched_again(void **state)
{
    (void)state;
    char cache[128], repo[512], path[640], trees[192];
    new_cache(cache, "cache-corrupt");
    lenv_env *env = must_open("v1", cache);
    char version[64];
    snprintf(version, sizeof version, "%s", lenv_version(env));
    lenv_free(env);
    cached_repo(repo, cache);
    snprintf(trees, sizeof trees, "%s/trees", cache);

    /* Not a repository any more. */
    tsup_rmtree(repo);
    assert_int_equal(mkdir(repo, 0755), 0);
    tsup_write_file(repo, "garbage", "not a git repository\n");
    tsup_rmtree(trees);
    env = must_open("v1", cache);
    assert_string_equal(lenv_version(env), version);
    lenv_free(env);

    /* Refs that name objects the repository lost. */
    snprintf(path, sizeof path, "%s/objects", repo);
    tsup_rmtree(path);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/objects/pack", repo);
    assert_int_equal(mkdir(path, 0755), 0);
    tsup_rmtree(trees);
    env = must_open("v1", cache);
    assert_string_equal(lenv_version(env), version);
    lenv_free(env);

    /* A checkout whose file was changed on disk is made again. */
    const lenv_git_ref *src;
    env = must_open(fx.c1, cache);
    src = lenv_git_source(env);
    char file[512];
    snprintf(file, sizeof file, "%s", src->file);
    lenv_free(env);
    chmod(file, 0644);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("return {}\n", f);
    fclose(f);
    env = must_open(fx.c1, cache);
    assert_string_equal(lenv_version(env), version);
    lenv_free(env);
    tsup_rmtree(cache);
}

/* ---- locks ------------------------------------------------------------------------------- */

static void test_gitsrc_lock__pins_and_refuses(void **state)
{
    (void)state;
    char cache[128], lockfile[160], spec[512];
    new_cache(cache, "cache-lock");
    snprintf(lockfile, sizeof lockfile, "%s/envsrv.lock", fx.root);
    lenv_env *env = must_open("v1", cache);
    assert_int_equal(lenv_lock_write(lockfile, &env, 1, NULL), 0);
    char version[64];
    snprintf(version, sizeof version, "%s", lenv_version(env));
    lenv_free(env);

    lenv_lock *lock = NULL;
    lenv_error err = { 0 };
    assert_int_equal(lenv_lock_load(&lock, lockfile, &err), 0);
    assert_int_equal(lenv_lock_count(lock), 1);
    char want[512];
    snprintf(want, sizeof want, "git+%s@%s#envs/capitals.lua", fx.url, fx.c1);
    assert_string_equal(lenv_lock_spec(lock, 0), want);

    /* Asking for main gives the locked commit, v1's. */
    snprintf(spec, sizeof spec, "git+%s@main#envs/capitals.lua", fx.url);
    assert_int_equal(open_git(&env, spec, cache, lock, 0, &err), 0);
    assert_string_equal(lenv_git_source(env)->commit, fx.c1);
    assert_string_equal(lenv_version(env), version);
    lenv_free(env);
    /* Anything else is refused. */
    snprintf(spec, sizeof spec, "git+%s@main#envs/other.lua", fx.url);
    assert_int_equal(open_git(&env, spec, cache, lock, 0, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "is not in the lock file"));
    assert_int_equal(open_git(&env, "gsm8k", cache, lock, 0, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "environment 'gsm8k' is not in the lock file"));
    lenv_lock_free(lock);

    /* A lock whose hash does not match the commit's file. */
    json_t *j = json_load_file(lockfile, 0, NULL);
    assert_non_null(j);
    json_t *entry = json_object_get(json_object_get(j, "envs"), "capitals");
    json_object_set_new(entry, "file_sha256", json_string("00000000000000000000000000000000"
                                                          "00000000000000000000000000000000"));
    assert_int_equal(json_dump_file(j, lockfile, 0), 0);
    assert_int_equal(lenv_lock_load(&lock, lockfile, &err), 0);
    snprintf(spec, sizeof spec, "git+%s#envs/capitals.lua", fx.url);
    assert_int_equal(open_git(&env, spec, cache, lock, 0, &err), LENV_EIO);
    assert_non_null(strstr(err.message, "but the lock file"));
    lenv_lock_free(lock);
    json_decref(j);

    /* Malformed lock files. */
    static const char *const bad[] = {
        "{", "[]", "{\"version\": 2, \"envs\": {}}", "{\"version\": 1, \"envs\": {\"x\": 1}}",
        "{\"version\": 1, \"envs\": {\"x\": {\"url\": \"file:///r\", \"path\": \"e.lua\", "
        "\"commit\": \"abc\", \"file_sha256\": \"00\"}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tsup_write_file(fx.root, "bad.lock", bad[i]);
        char path[160];
        snprintf(path, sizeof path, "%s/bad.lock", fx.root);
        assert_int_equal(lenv_lock_load(&lock, path, &err), LENV_EIO);
        assert_null(lock);
        assert_non_null(strstr(err.message, "lock file"));
    }
    /* Only git envs can be locked. */
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = "gsm8k";
    assert_int_equal(lenv_open(&env, &o, &err), 0);
    assert_int_equal(lenv_lock_write(lockfile, &env, 1, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "does not come from git"));
    assert_null(lenv_git_source(env));
    assert_null(lenv_git_json(env));
    lenv_free(env);
    tsup_rmtree(cache);
}

static void test_gitsrc_lock__name_must_match(void **state)
{
    (void)state;
    char cache[128], lockfile[160];
    new_cache(cache, "cache-lockname");
    snprintf(lockfile, sizeof lockfile, "%s/named.lock", fx.root);
    lenv_env *env = must_open("v1", cache);
    assert_int_equal(lenv_lock_write(lockfile, &env, 1, NULL), 0);
    lenv_free(env);
    json_t *j = json_load_file(lockfile, 0, NULL);
    json_t *envs = json_object_get(j, "envs");
    json_object_set(envs, "renamed", json_object_get(envs, "capitals"));
    json_object_del(envs, "capitals");
    assert_int_equal(json_dump_file(j, lockfile, 0), 0);
    json_decref(j);
    lenv_lock *lock = NULL;
    lenv_error err;
    assert_int_equal(lenv_lock_load(&lock, lockfile, &err), 0);
    assert_int_equal(open_git(&env, lenv_lock_spec(lock, 0), cache, lock, 0, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "is named 'capitals'"));
    lenv_lock_free(lock);
    tsup_rmtree(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gitsrc_parse__good_specs),
        cmocka_unit_test(test_gitsrc_parse__bad_specs),
        cmocka_unit_test(test_gitsrc_rev__tag_branch_commit),
        cmocka_unit_test(test_gitsrc_rev__follows_new_commits),
        cmocka_unit_test(test_gitsrc_offline__cache_serves_without_the_remote),
        cmocka_unit_test(test_gitsrc_error__unknown_rev_and_missing_file),
        cmocka_unit_test(test_gitsrc_error__unreachable_with_empty_cache),
        cmocka_unit_test(test_gitsrc_error__dataset_outside_the_checkout),
        cmocka_unit_test(test_gitsrc_error__fetch_timeout),
        cmocka_unit_test(test_gitsrc_error__corrupt_cache_is_fetched_again),
        cmocka_unit_test(test_gitsrc_lock__pins_and_refuses),
        cmocka_unit_test(test_gitsrc_lock__name_must_match),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
