/*
 * Per-run cgroups: a memory cap for the whole process tree (rlimits cap only
 * one process each), a task cap the kernel enforces even for root, and exact
 * CPU and peak-memory figures for the tree.
 *
 * Run cgroups are created as children of the cgroup this process is in, one
 * directory per run ("envsrv-sbx.<pid>.<seq>"), and removed when the run is
 * over. cgroup v2 is used when our cgroup delegates memory and pids to its
 * children (cgroup.subtree_control); otherwise the v1 memory, pids and
 * cpuacct hierarchies, each where it is mounted and writable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

/* ---- small file helpers ------------------------------------------------------ */

static int write_file(const char *dir, const char *name, const char *value)
{
    char path[SBX__PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = strlen(value);
    ssize_t w = write(fd, value, n);
    int e = errno;
    close(fd);
    if (w != (ssize_t)n) {
        errno = w < 0 ? e : EIO;
        return -1;
    }
    return 0;
}

/* Reads a small file into buf (NUL-terminated). Returns bytes or -1. */
static ssize_t read_file(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[SBX__PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

static int read_u64(const char *dir, const char *name, uint64_t *out)
{
    char buf[64];
    if (read_file(dir, name, buf, sizeof buf) <= 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return -1;
    *out = v;
    return 0;
}

/* Value of "key N" in a flat keyed file (memory.events, cpu.stat,
 * memory.oom_control). */
static int read_keyed(const char *dir, const char *name, const char *key, uint64_t *out)
{
    char buf[4096];
    if (read_file(dir, name, buf, sizeof buf) <= 0)
        return -1;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            *out = strtoull(line + klen + 1, NULL, 10);
            return 0;
        }
    }
    return -1;
}

/* ---- finding the hierarchies -------------------------------------------------- */

/* Our cgroup path in the hierarchy whose /proc/self/cgroup controller list
 * contains `ctrl` (v1), or the "0::" line when ctrl is NULL (v2). */
static int own_path(const char *ctrl, char *out, size_t cap)
{
    char buf[4096];
    if (read_file("/proc/self", "cgroup", buf, sizeof buf) <= 0)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        bool match = false;
        if (!ctrl) {
            match = ctrls[0] == '\0' && strncmp(line, "0:", 2) == 0;
        } else {
            size_t n = strlen(ctrl);
            for (const char *p = ctrls; *p;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                if (len == n && strncmp(p, ctrl, n) == 0)
                    match = true;
                p += len + (comma ? 1 : 0);
            }
        }
        if (match) {
            snprintf(out, cap, "%s", path);
            return 0;
        }
    }
    return -1;
}

/* Mount point of the hierarchy with controller `ctrl` (v1), or of cgroup2
 * (ctrl NULL), from /proc/self/mountinfo. */
static int mount_point(const char *ctrl, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -1;
    char line[2048];
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        char fstype[64], source[256], opts[1024], mnt[SBX__PATH_MAX];
        if (sscanf(sep + 3, "%63s %255s %1023s", fstype, source, opts) != 3)
            continue;
        if (sscanf(line, "%*s %*s %*s %*s %511s", mnt) != 1)
            continue;
        bool match;
        if (!ctrl) {
            match = strcmp(fstype, "cgroup2") == 0;
        } else {
            match = false;
            if (strcmp(fstype, "cgroup") == 0) {
                size_t n = strlen(ctrl);
                char *save = NULL;
                for (char *tok = strtok_r(opts, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                    if (strlen(tok) == n && strcmp(tok, ctrl) == 0)
                        match = true;
            }
        }
        if (match) {
            snprintf(out, cap, "%s", mnt);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* Can we create and remove a child cgroup in dir? */
static int try_mkdir(const char *dir)
{
    char path[SBX__PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/envsrv-sbx.probe.%d", dir, (int)getpid());
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -1;
    return rmdir(path);
}

static int v1_base(const char *ctrl, char *out, size_t cap)
{
    char mnt[SBX__PATH_MAX], own[SBX__PATH_MAX];
    if (mount_point(ctrl, mnt, sizeof mnt) < 0 || own_path(ctrl, own, sizeof own) < 0)
        return -1;
    /* Inside a container the mount may show only our own subtree: prefer
     * mount + own path, fall back to the mount itself. */
    char path[2 * SBX__PATH_MAX + 2];
    snprintf(path, sizeof path, "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own);
    if (strlen(path) < cap && access(path, W_OK) == 0 && try_mkdir(path) == 0) {
        snprintf(out, cap, "%s", path);
        return 0;
    }
    if (access(mnt, W_OK) == 0 && try_mkdir(mnt) == 0) {
        snprintf(out, cap, "%s", mnt);
        return 0;
    }
    return -1;
}

static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

static int v2_base(char *out, size_t cap)
{
    char mnt[SBX__PATH_MAX], own[SBX__PATH_MAX], path[2 * SBX__PATH_MAX + 2], buf[512];
    if (mount_point(NULL, mnt, sizeof mnt) < 0 || own_path(NULL, own, sizeof own) < 0)
        return -1;
    snprintf(path, sizeof path, "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own);
    if (strlen(path) >= cap || read_file(path, "cgroup.controllers", buf, sizeof buf) < 0)
        return -1;
    if (!has_word(buf, "memory") || !has_word(buf, "pids"))
        return -1;
    if (read_file(path, "cgroup.subtree_control", buf, sizeof buf) < 0)
        return -1;
    /* Enabling controllers for children fails (EBUSY) while our cgroup holds
     * processes itself ("no internal processes"), as it does in a container
     * or a systemd service with Delegate=yes. The usual remedy: move this
     * process into a leaf of its own, envsrv-server, and try again; run
     * cgroups then become its siblings. */
    if (!has_word(buf, "memory") || !has_word(buf, "pids")) {
        if (write_file(path, "cgroup.subtree_control", "+memory +pids") < 0) {
            if (errno != EBUSY)
                return -1;
            char leaf[3 * SBX__PATH_MAX], pid[32];
            snprintf(leaf, sizeof leaf, "%s/envsrv-server", path);
            snprintf(pid, sizeof pid, "%d", (int)getpid());
            if ((mkdir(leaf, 0755) < 0 && errno != EEXIST) ||
                write_file(leaf, "cgroup.procs", pid) < 0 ||
                write_file(path, "cgroup.subtree_control", "+memory +pids") < 0)
                return -1;
        }
    }
    if (try_mkdir(path) < 0)
        return -1;
    snprintf(out, cap, "%s", path);
    return 0;
}

int sbx__cg_probe(sbx__cg_base *out, unsigned *layers, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    *layers = 0;
    if (v2_base(out->v2, sizeof out->v2) == 0) {
        out->version = 2;
        *layers = SBX_LAYERS_CGROUP;
        return 0;
    }
    if (v1_base("memory", out->mem, sizeof out->mem) == 0)
        *layers |= SBX_LAYER_CGROUP_MEM;
    if (v1_base("pids", out->pids, sizeof out->pids) == 0)
        *layers |= SBX_LAYER_CGROUP_PIDS;
    if (v1_base("cpuacct", out->cpu, sizeof out->cpu) == 0)
        *layers |= SBX_LAYER_CGROUP_CPU;
    if (*layers)
        out->version = 1;
    if (*layers != SBX_LAYERS_CGROUP) {
        const char *missing = !(*layers & SBX_LAYER_CGROUP_MEM)    ? "memory"
                              : !(*layers & SBX_LAYER_CGROUP_PIDS) ? "pids"
                                                                   : "cpuacct";
        snprintf(why, whylen, "no writable cgroup %s controller (v2 without memory+pids "
                 "delegated, v1 '%s' not mounted or not writable)", missing, missing);
        return -1;
    }
    return 0;
}

/* ---- per-run cgroups ----------------------------------------------------------- */

/* Run cgroups that could not be removed yet (still populated when the run
 * ended, which should not happen once init is reaped): retried before each
 * new run instead of being forgotten. */
#define GRAVEYARD_MAX 64
static pthread_mutex_t graveyard_lock = PTHREAD_MUTEX_INITIALIZER;
static char graveyard[GRAVEYARD_MAX][SBX__PATH_MAX];
static int graveyard_n;

static void bury(const char *dir)
{
    pthread_mutex_lock(&graveyard_lock);
    if (graveyard_n < GRAVEYARD_MAX)
        snprintf(graveyard[graveyard_n++], SBX__PATH_MAX, "%s", dir);
    pthread_mutex_unlock(&graveyard_lock);
}

static void retry_graveyard(void)
{
    pthread_mutex_lock(&graveyard_lock);
    for (int i = 0; i < graveyard_n;) {
        if (rmdir(graveyard[i]) == 0 || errno == ENOENT) {
            memmove(graveyard[i], graveyard[--graveyard_n], SBX__PATH_MAX);
            continue;
        }
        i++;
    }
    pthread_mutex_unlock(&graveyard_lock);
}

static int mk(char *dst, size_t cap, const char *base, const char *name)
{
    if (!base[0])
        return 0;
    int n = snprintf(dst, cap, "%s/%s", base, name);
    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        dst[0] = '\0';
        return -1;
    }
    if (mkdir(dst, 0755) < 0) {
        dst[0] = '\0';
        return -1;
    }
    return 0;
}

int sbx__cg_create(sbx__cg *out, const sbx__cg_base *base, unsigned layers, const char *name,
                   char *err, size_t errlen)
{
    retry_graveyard();
    memset(out, 0, sizeof *out);
    out->version = base->version;
    int r = 0;
    if (base->version == 2) {
        r = mk(out->v2, sizeof out->v2, base->v2, name);
    } else if (base->version == 1) {
        if (layers & SBX_LAYER_CGROUP_MEM)
            r |= mk(out->mem, sizeof out->mem, base->mem, name);
        if (!r && (layers & SBX_LAYER_CGROUP_PIDS))
            r |= mk(out->pids, sizeof out->pids, base->pids, name);
        if (!r && (layers & SBX_LAYER_CGROUP_CPU))
            r |= mk(out->cpu, sizeof out->cpu, base->cpu, name);
    }
    if (r) {
        snprintf(err, errlen, "cannot create run cgroup '%s': %s", name, strerror(errno));
        sbx__cg_destroy(out);
        return -1;
    }
    return 0;
}

int sbx__cg_set_limits(const sbx__cg *cg, uint64_t mem_bytes, uint32_t pids, char *err,
                       size_t errlen)
{
    char mem[32], tasks[32];
    snprintf(mem, sizeof mem, "%" PRIu64, mem_bytes);
    snprintf(tasks, sizeof tasks, "%" PRIu32, pids);
    const char *what = NULL;
    if (cg->version == 2) {
        if (write_file(cg->v2, "memory.max", mem) < 0)
            what = "memory.max";
        /* No swap: a swapping program would escape the cap's purpose. Absent
         * when the kernel has no swap accounting; that is fine. */
        (void)write_file(cg->v2, "memory.swap.max", "0");
        if (!what && write_file(cg->v2, "pids.max", tasks) < 0)
            what = "pids.max";
    } else {
        /* v1 refuses memsw below limit_in_bytes, and limit above memsw: when
         * lowering, set the plain limit first; when raising, memsw first. */
        if (cg->mem[0]) {
            uint64_t cur = 0;
            bool raising = read_u64(cg->mem, "memory.limit_in_bytes", &cur) == 0 && mem_bytes > cur;
            if (raising)
                (void)write_file(cg->mem, "memory.memsw.limit_in_bytes", mem);
            if (write_file(cg->mem, "memory.limit_in_bytes", mem) < 0)
                what = "memory.limit_in_bytes";
            if (!raising)
                (void)write_file(cg->mem, "memory.memsw.limit_in_bytes", mem);
        }
        if (!what && cg->pids[0] && write_file(cg->pids, "pids.max", tasks) < 0)
            what = "pids.max";
    }
    if (what) {
        snprintf(err, errlen, "cannot set cgroup %s: %s", what, strerror(errno));
        return -1;
    }
    return 0;
}

void sbx__cg_reset_peak(const sbx__cg *cg)
{
    if (cg->version == 1 && cg->mem[0])
        (void)write_file(cg->mem, "memory.max_usage_in_bytes", "0");
    else if (cg->version == 2)
        (void)write_file(cg->v2, "memory.peak", "0");   /* Linux >= 6.12; else ignored */
}

int sbx__cg_attach(const sbx__cg *cg, pid_t pid, char *err, size_t errlen)
{
    char p[32];
    snprintf(p, sizeof p, "%d", (int)pid);
    const char *dirs[] = { cg->v2, cg->mem, cg->pids, cg->cpu };
    for (size_t i = 0; i < 4; i++) {
        if (dirs[i][0] && write_file(dirs[i], "cgroup.procs", p) < 0) {
            snprintf(err, errlen, "cannot move the sandbox into cgroup %s: %s", dirs[i],
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

void sbx__cg_read(const sbx__cg *cg, sbx__cg_stats *out)
{
    out->cpu_us = UINT64_MAX;
    out->peak_bytes = 0;
    out->oom_kills = 0;
    uint64_t v;
    if (cg->version == 2) {
        if (read_keyed(cg->v2, "cpu.stat", "usage_usec", &v) == 0)
            out->cpu_us = v;
        if (read_u64(cg->v2, "memory.peak", &v) == 0)
            out->peak_bytes = v;
        if (read_keyed(cg->v2, "memory.events", "oom_kill", &v) == 0)
            out->oom_kills = v;
        return;
    }
    if (cg->cpu[0] && read_u64(cg->cpu, "cpuacct.usage", &v) == 0)
        out->cpu_us = v / 1000;
    if (cg->mem[0]) {
        if (read_u64(cg->mem, "memory.max_usage_in_bytes", &v) == 0)
            out->peak_bytes = v;
        if (read_keyed(cg->mem, "memory.oom_control", "oom_kill", &v) == 0)
            out->oom_kills = v;
    }
}

int sbx__cg_destroy(sbx__cg *cg)
{
    int rc = 0;
    char *dirs[] = { cg->v2, cg->mem, cg->pids, cg->cpu };
    for (size_t i = 0; i < 4; i++) {
        if (!dirs[i][0])
            continue;
        /* The tree is dead, but a task may still be finishing its exit; a few
         * retries cover that window without sleeping on the common path. */
        int r = -1;
        for (int tries = 0; tries < 100 && (r = rmdir(dirs[i])) < 0 && errno == EBUSY; tries++)
            usleep(1000);
        if (r < 0 && errno != ENOENT) {
            rc = -1;
            bury(dirs[i]);
        }
        dirs[i][0] = '\0';
    }
    return rc;
}

/* Removes run cgroups that a server which no longer runs left behind (one
 * killed with SIGKILL mid-run): "envsrv-sbx.<pid>.<n>" whose pid is gone. */
static void sweep_dir(const char *dir)
{
    if (!dir[0])
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "envsrv-sbx.", 11) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + 11, &end, 10);
        if (end == e->d_name + 11 || *end != '.' || pid <= 0)
            continue;
        if (pid == (long)getpid() || (kill((pid_t)pid, 0) < 0 && errno == ESRCH)) {
            char path[SBX__PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            (void)rmdir(path);   /* still populated: leave it */
        }
    }
    closedir(d);
}

void sbx__cg_sweep(const sbx__cg_base *base)
{
    retry_graveyard();
    sweep_dir(base->v2);
    sweep_dir(base->mem);
    sweep_dir(base->pids);
    sweep_dir(base->cpu);
}
