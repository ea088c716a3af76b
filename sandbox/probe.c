/*
 * Start-up: what the kernel allows (sbx_probe), which tier to use and whether
 * that is enough (sbx_init), and the names of statuses, layers and tiers.
 *
 * Layers are probed by doing them, not by reading sysctls: a throwaway child
 * is cloned into the same namespaces a run uses, builds the same root and
 * loads the same seccomp filter. Whatever fails there would fail every run.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

sbx__state sbx__g;

static const char *const status_names[] = {
    [SBX_OK] = "OK",
    [SBX_RUNTIME_ERROR] = "RUNTIME_ERROR",
    [SBX_TIME_LIMIT_EXCEEDED] = "TIME_LIMIT_EXCEEDED",
    [SBX_MEMORY_LIMIT_EXCEEDED] = "MEMORY_LIMIT_EXCEEDED",
    [SBX_OUTPUT_LIMIT_EXCEEDED] = "OUTPUT_LIMIT_EXCEEDED",
    [SBX_SIGNALED] = "SIGNALED",
    [SBX_SYSCALL_VIOLATION] = "SYSCALL_VIOLATION",
    [SBX_COMPILE_ERROR] = "COMPILE_ERROR",
    [SBX_EXEC_ERROR] = "EXEC_ERROR",
    [SBX_INTERNAL_ERROR] = "INTERNAL_ERROR",
};

const char *sbx_status_name(sbx_status status)
{
    if ((unsigned)status < sizeof status_names / sizeof status_names[0])
        return status_names[status];
    return "INTERNAL_ERROR";
}

const char *sbx_layer_name(unsigned layer)
{
    switch (layer) {
    case SBX_LAYER_USERNS: return "user namespace";
    case SBX_LAYER_PIDNS: return "PID namespace";
    case SBX_LAYER_MOUNTNS: return "mount namespace";
    case SBX_LAYER_NETNS: return "network namespace";
    case SBX_LAYER_IPCUTS: return "IPC/UTS namespaces";
    case SBX_LAYER_SECCOMP: return "seccomp filter";
    case SBX_LAYER_CGROUP_MEM: return "cgroup memory controller";
    case SBX_LAYER_CGROUP_PIDS: return "cgroup pids controller";
    case SBX_LAYER_CGROUP_CPU: return "cgroup CPU accounting";
    default: return "unknown layer";
    }
}

const char *sbx_tier_name(sbx_tier tier)
{
    switch (tier) {
    case SBX_TIER_CGROUP: return "namespaces+seccomp+cgroup";
    case SBX_TIER_RLIMITS: return "namespaces+seccomp+rlimits";
    default: return "none";
    }
}

sbx_tier sbx_current_tier(void)
{
    return sbx__g.ready ? sbx__g.tier : SBX_TIER_NONE;
}

/* ---- helpers shared with run.c ---------------------------------------------------- */

ssize_t sbx__write_nosig(int fd, const void *buf, size_t len)
{
    /* SIGPIPE from write() is sent to the writing thread: block it, and if
     * this write raised it, consume it before unblocking. */
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    ssize_t w = write(fd, buf, len);
    int e = errno;
    if (w < 0 && e == EPIPE && !was_pending) {
        struct timespec zero = { 0, 0 };
        (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return w;
}

static int write_proc(pid_t pid, const char *name, const char *value)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = strlen(value);
    ssize_t w = write(fd, value, n);
    int e = errno;
    close(fd);
    errno = e;
    return w == (ssize_t)n ? 0 : -1;
}

int sbx__write_id_maps(pid_t pid, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    char map[64];
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    if (write_proc(pid, "uid_map", map) < 0) {
        snprintf(err, errlen, "cannot write the sandbox's uid_map: %s", strerror(errno));
        return -1;
    }
    /* Unprivileged writers must deny setgroups before a gid_map. Root keeps it
     * allowed so that the child can drop root's supplementary groups. */
    if (geteuid() != 0 && write_proc(pid, "setgroups", "deny") < 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot write the sandbox's setgroups: %s", strerror(errno));
        return -1;
    }
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    if (write_proc(pid, "gid_map", map) < 0) {
        snprintf(err, errlen, "cannot write the sandbox's gid_map: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- probing ---------------------------------------------------------------------- */

static void outside_ids(uid_t *uid, gid_t *gid)
{
    if (geteuid() == 0) {
        *uid = SBX__ROOT_OUTSIDE_ID;
        *gid = SBX__ROOT_OUTSIDE_ID;
    } else {
        *uid = geteuid();
        *gid = getegid();
    }
}

/* Which single namespace flag fails on its own (with a user namespace where
 * the others need one)? For the message only. */
static unsigned failing_ns_layer(void)
{
    static const struct {
        unsigned long flag;
        unsigned layer;
    } ns[] = {
        { CLONE_NEWUSER, SBX_LAYER_USERNS },
        { CLONE_NEWUSER | CLONE_NEWPID, SBX_LAYER_PIDNS },
        { CLONE_NEWUSER | CLONE_NEWNS, SBX_LAYER_MOUNTNS },
        { CLONE_NEWUSER | CLONE_NEWNET, SBX_LAYER_NETNS },
        { CLONE_NEWUSER | CLONE_NEWIPC | CLONE_NEWUTS, SBX_LAYER_IPCUTS },
    };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        pid_t pid = sbx__clone(ns[i].flag);
        if (pid == 0)
            _exit(0);
        if (pid < 0)
            return ns[i].layer;
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    return SBX_LAYER_USERNS;
}

/* Clones a probe child into a run's namespaces. Returns 0 when it built the
 * root and loaded the filter (filter may be NULL: namespaces only). */
static int probe_confinement(const struct sock_fprog *filter, unsigned *failed, char *why,
                             size_t whylen)
{
    int rc = -1, sync[2] = { -1, -1 }, stat[2] = { -1, -1 };
    pid_t pid = -1;
    *failed = 0;
    if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(stat, O_CLOEXEC) < 0) {
        snprintf(why, whylen, "probe: pipe: %s", strerror(errno));
        goto done;
    }
    pid = sbx__clone(SBX__CLONE_FLAGS);
    if (pid == 0)
        sbx__child_probe(stat[1], sync[0], filter);
    if (pid < 0) {
        int e = errno;
        *failed = failing_ns_layer();
        snprintf(why, whylen, "%s unavailable: clone: %s", sbx_layer_name(*failed), strerror(e));
        goto done;
    }
    close(sync[0]);
    close(stat[1]);
    sync[0] = stat[1] = -1;
    uid_t uid;
    gid_t gid;
    outside_ids(&uid, &gid);
    char err[200];
    if (sbx__write_id_maps(pid, uid, gid, err, sizeof err) < 0) {
        *failed = SBX_LAYER_USERNS;
        snprintf(why, whylen, "user namespace unusable: %s", err);
        goto done;
    }
    if (sbx__write_nosig(sync[1], "g", 1) != 1) {
        snprintf(why, whylen, "probe: the probe child died before starting");
        goto done;
    }
    sbx__msg m;
    ssize_t n = read(stat[0], &m, sizeof m);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
    if (n == (ssize_t)sizeof m && m.kind == SBX__MSG_SETUP_ERROR) {
        m.what[sizeof m.what - 1] = '\0';
        bool seccomp = strstr(m.what, "seccomp") != NULL;
        *failed = seccomp ? SBX_LAYER_SECCOMP : SBX_LAYER_MOUNTNS;
        snprintf(why, whylen, "%s unusable: %s: %s", sbx_layer_name(*failed), m.what,
                 strerror(m.err));
        goto done;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        *failed = SBX_LAYER_MOUNTNS;
        snprintf(why, whylen, "the probe sandbox died (status %d) while building its root", st);
        goto done;
    }
    rc = 0;
done:
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; i < 2; i++) {
        if (sync[i] >= 0)
            close(sync[i]);
        if (stat[i] >= 0)
            close(stat[i]);
    }
    return rc;
}

/* Probes into `out` and, when filter_out is not NULL, hands over the
 * compiled filter and the cgroup base. */
static int probe(sbx_probe_info *out, struct sock_fprog *filter_out, sbx__cg_base *cg_out)
{
    memset(out, 0, sizeof *out);
    out->as_root = geteuid() == 0;
    char why[200] = "";
    struct sock_filter *insns = NULL;
    unsigned short ninsns = 0;
    bool have_filter = sbx__seccomp_build(&insns, &ninsns, why, sizeof why) == 0;
    struct sock_fprog prog = { ninsns, insns };

    unsigned failed = 0;
    char why_ns[256] = "";
    if (probe_confinement(have_filter ? &prog : NULL, &failed, why_ns, sizeof why_ns) == 0) {
        out->layers |= SBX_LAYERS_CONFINE & ~(have_filter ? 0u : (unsigned)SBX_LAYER_SECCOMP);
    } else if (failed == SBX_LAYER_SECCOMP) {
        out->layers |= SBX_LAYERS_CONFINE & ~(unsigned)SBX_LAYER_SECCOMP;
        have_filter = false;
    }
    if (!out->message[0] && why_ns[0])
        snprintf(out->message, sizeof out->message, "%s", why_ns);
    if (!out->message[0] && !have_filter)
        snprintf(out->message, sizeof out->message, "seccomp filter unavailable: %s", why);

    sbx__cg_base cg;
    unsigned cg_layers = 0;
    char why_cg[256] = "";
    (void)sbx__cg_probe(&cg, &cg_layers, why_cg, sizeof why_cg);
    out->layers |= cg_layers;
    out->cgroup_version = cg.version;
    if (!out->message[0] && why_cg[0])
        snprintf(out->message, sizeof out->message, "%s", why_cg);

    if ((out->layers & SBX_LAYERS_CONFINE) != SBX_LAYERS_CONFINE)
        out->tier = SBX_TIER_NONE;
    else if ((out->layers & SBX_LAYERS_CGROUP) == SBX_LAYERS_CGROUP)
        out->tier = SBX_TIER_CGROUP;
    else
        out->tier = SBX_TIER_RLIMITS;

    if (filter_out && have_filter) {
        *filter_out = prog;
        insns = NULL;
    }
    if (cg_out)
        *cg_out = cg;
    free(insns);
    return 0;
}

int sbx_probe(sbx_probe_info *out)
{
    return probe(out, NULL, NULL);
}

int sbx_init(sbx_probe_info *info, const sbx_options *opts, char *err, size_t errlen)
{
    static const sbx_options defaults = SBX_OPTIONS_INIT;
    char scratch[256];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    if (!opts)
        opts = &defaults;
    if (opts->mode != SBX_MODE_BEST_EFFORT && opts->mode != SBX_MODE_STRICT) {
        snprintf(err, errlen, "unknown sandbox mode %d", (int)opts->mode);
        return SBX_EINVALID;
    }
    if (opts->mode == SBX_MODE_STRICT && opts->no_cgroup) {
        snprintf(err, errlen, "--sandbox strict needs cgroups; no_cgroup contradicts it");
        return SBX_EINVALID;
    }
    free(sbx__g.filter.filter);
    memset(&sbx__g, 0, sizeof sbx__g);
    sbx__warm_reset();
    sbx__netns_drop_all();
    if (sbx__lang_init(opts->python3, opts->lua, err, errlen) < 0)
        return SBX_EINVALID;

    sbx_probe_info pi;
    struct sock_fprog filter = { 0, NULL };
    probe(&pi, &filter, &sbx__g.cg);
    if (info)
        *info = pi;
    if (pi.tier == SBX_TIER_NONE) {
        snprintf(err, errlen, "cannot sandbox untrusted code on this host: %s", pi.message);
        free(filter.filter);
        return SBX_EUNAVAIL;
    }
    if (opts->mode == SBX_MODE_STRICT && (pi.layers & SBX_LAYERS_ALL) != SBX_LAYERS_ALL) {
        snprintf(err, errlen, "--sandbox strict: %s", pi.message);
        free(filter.filter);
        return SBX_EUNAVAIL;
    }
    if (opts->no_cgroup && pi.tier == SBX_TIER_CGROUP)
        pi.tier = SBX_TIER_RLIMITS;
    if (pi.tier == SBX_TIER_CGROUP)
        sbx__cg_sweep(&sbx__g.cg);
    sbx__g.filter = filter;
    sbx__g.tier = pi.tier;
    sbx__g.layers = pi.layers & (pi.tier == SBX_TIER_CGROUP ? SBX_LAYERS_ALL : SBX_LAYERS_CONFINE);
    outside_ids(&sbx__g.outside_uid, &sbx__g.outside_gid);
    if (geteuid() == 0) {
        int fd = sbx__netns_acquire();
        sbx__g.netns_pool = fd >= 0;
        sbx__netns_release(fd);
    }
    sbx__g.no_warm = opts->no_warm;
    sbx__g.ready = 1;
    return 0;
}
