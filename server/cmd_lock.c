/*
 * `envsrv lock`: pins git environments to commits.
 *
 *   envsrv lock --env git+https://host/org/repo@v1#envs/capitals.lua \
 *               [--env ...] [--cache-dir DIR] [--git-timeout SECONDS] -o envsrv.lock
 *
 * Each env is fetched, resolved and loaded (its definition and dataset must
 * load), then the lock file (lenv.h, "Lock files") records its name, URL,
 * path, revision, commit and file hash. `envsrv --lock envsrv.lock` then loads
 * exactly those commits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv.h"
#include "server/server.h"

#define MAX_LOCK_ENVS 64

static const char lock_usage[] =
    "usage: envsrv lock --env git+URL@REV#PATH [--env ...] -o FILE [options]\n"
    "\n"
    "Resolves each git environment to a commit, loads it, and writes a lock file\n"
    "(env name -> url, path, rev, commit, file_sha256) for `envsrv --lock FILE`.\n"
    "\n"
    "  --env git+URL@REV#PATH   a git environment (repeatable)\n"
    "  -o, --output FILE        the lock file to write\n"
    "  --cache-dir DIR          git cache (default ~/.cache/envsrv/git)\n"
    "  --git-timeout SECONDS    longest a git fetch may take (default 60)\n";

static int lock_bad_args(const char *msg, const char *arg)
{
    fprintf(stderr, "envsrv lock: %s%s%s\n%s", msg, arg ? " " : "", arg ? arg : "", lock_usage);
    return 2;
}

int srv_cmd_lock(int argc, char **argv)
{
    const char *specs[MAX_LOCK_ENVS];
    size_t n_specs = 0;
    const char *output = NULL;
    lenv_git_options git = LENV_GIT_OPTIONS_INIT;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(lock_usage, stdout);
            return 0;
        }
        if (i + 1 >= argc)
            return lock_bad_args("missing value for", opt);
        const char *v = argv[++i];
        if (strcmp(opt, "--env") == 0) {
            if (n_specs == MAX_LOCK_ENVS)
                return lock_bad_args("too many --env", NULL);
            specs[n_specs++] = v;
        } else if (strcmp(opt, "-o") == 0 || strcmp(opt, "--output") == 0) {
            output = v;
        } else if (strcmp(opt, "--cache-dir") == 0 || strcmp(opt, "--git-timeout") == 0) {
            srv_git_args g = { git, NULL };
            if (srv_git_option(&g, "envsrv lock", opt, v) != 1)
                return 2;
            git = g.opts;
        } else {
            return lock_bad_args("unknown option", opt);
        }
    }
    if (n_specs == 0 || output == NULL)
        return lock_bad_args("--env and -o are required", NULL);

    lenv_env *envs[MAX_LOCK_ENVS] = { 0 };
    size_t n_open = 0;
    int status = 1;
    for (size_t i = 0; i < n_specs; i++) {
        lenv_error err = { 0 };
        if (!lenv_is_git_spec(specs[i])) {
            fprintf(stderr, "envsrv lock: '%s' is not a git environment (git+URL@REV#PATH)\n",
                    specs[i]);
            status = 2;
            goto done;
        }
        lenv_options o = LENV_OPTIONS_INIT;
        o.name_or_path = specs[i];
        o.git = &git;
        if (lenv_open(&envs[n_open], &o, &err) != 0) {
            fprintf(stderr, "envsrv lock: %s\n", err.message);
            goto done;
        }
        const lenv_git_ref *ref = lenv_git_source(envs[n_open]);
        if (ref->warning[0])
            fprintf(stderr, "envsrv lock: warning: %s\n", ref->warning);
        printf("%s: %s@%s#%s -> commit %s, file sha256 %s\n", lenv_name(envs[n_open]), ref->url,
               ref->rev, ref->path, ref->commit, ref->file_sha256);
        n_open++;
    }
    lenv_error err = { 0 };
    if (lenv_lock_write(output, envs, n_open, &err) != 0) {
        fprintf(stderr, "envsrv lock: %s\n", err.message);
        goto done;
    }
    printf("wrote %s (%zu env%s)\n", output, n_open, n_open == 1 ? "" : "s");
    status = 0;
done:
    for (size_t i = 0; i < n_open; i++)
        lenv_free(envs[i]);
    return status;
}

int srv_git_option(srv_git_args *g, const char *prog, const char *opt, const char *value)
{
    if (strcmp(opt, "--cache-dir") == 0) {
        g->opts.cache_dir = value;
        return 1;
    }
    if (strcmp(opt, "--git-timeout") == 0) {
        char *end;
        long s = strtol(value, &end, 10);
        if (!value[0] || *end || s < 1 || s > 3600) {
            fprintf(stderr, "%s: --git-timeout needs seconds from 1 to 3600, not '%s'\n", prog, value);
            return -1;
        }
        g->opts.timeout_ms = (unsigned)s * 1000u;
        return 1;
    }
    if (strcmp(opt, "--lock") == 0) {
        lenv_error err = { 0 };
        lenv_lock_free(g->lock);
        g->lock = NULL;
        g->opts.lock = NULL;
        if (lenv_lock_load(&g->lock, value, &err) != 0) {
            fprintf(stderr, "%s: %s\n", prog, err.message);
            return -1;
        }
        g->opts.lock = g->lock;
        return 1;
    }
    return 0;
}
