/*
 * Private declarations shared by the files of sandbox/. Not for other modules.
 *
 *   probe.c    sbx_probe, sbx_init, the global state below
 *   netns.c    the pool of reusable network namespaces
 *   lang.c     the language table
 *   seccomp.c  the deny list, compiled once to classic BPF
 *   cgroup.c   per-run cgroups (v1 and v2): create, limit, attach, read, remove
 *   child.c    what runs inside the new namespaces: root, init, exec
 *   run.c      sbx_run: the parent side (pipes, clone, poll, kill, result)
 *   warm.c     warm Python: a zygote per thread that forks sandboxed runs
 *   zygote.py  the zygote's driver (embedded in warm.c)
 */
#ifndef ENVSRV_SANDBOX_INT_H
#define ENVSRV_SANDBOX_INT_H

#include <linux/filter.h>
#include <sched.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/sandbox.h"

#define SBX__PATH_MAX 512

/* Limits of the compile step (compiled languages); not user-configurable so
 * that a request cannot make gcc itself a denial-of-service. */
#define SBX__COMPILE_CPU_MS   20000u
#define SBX__COMPILE_WALL_MS  30000u
#define SBX__COMPILE_MEM_MB   1024u
#define SBX__COMPILE_OUTPUT   (64u << 10)

/* Uid/gid the sandbox's uid 0 maps to outside when the server runs as real
 * root: unprivileged, so that RLIMIT_NPROC is enforced and no host file that
 * is not world-readable can be read. */
#define SBX__ROOT_OUTSIDE_ID 65534

/* ---- cgroup.c ------------------------------------------------------------ */

typedef struct sbx__cg_base {
    int version;                        /* 1, 2, or 0: none */
    char v2[SBX__PATH_MAX];             /* v2: the parent directory of run cgroups */
    char mem[SBX__PATH_MAX];            /* v1: parent directories, "" when missing */
    char pids[SBX__PATH_MAX];
    char cpu[SBX__PATH_MAX];
} sbx__cg_base;

/* One run's cgroup directories; "" where not created. */
typedef struct sbx__cg {
    int version;
    char v2[SBX__PATH_MAX];
    char mem[SBX__PATH_MAX];
    char pids[SBX__PATH_MAX];
    char cpu[SBX__PATH_MAX];
} sbx__cg;

typedef struct sbx__cg_stats {
    uint64_t cpu_us;        /* UINT64_MAX when unknown */
    uint64_t peak_bytes;    /* 0 when unknown */
    uint64_t oom_kills;
} sbx__cg_stats;

/* Finds usable cgroup parents for this process (a writable place to create
 * run cgroups). Sets *layers to the SBX_LAYER_CGROUP_* bits that work. Returns
 * 0, or -1 with `why` naming what is missing. */
int sbx__cg_probe(sbx__cg_base *out, unsigned *layers, char *why, size_t whylen);

/* Creates the run cgroups named `name` under `base` (layers: which to use).
 * Returns 0 or -1 with err; on failure nothing is left behind. */
int sbx__cg_create(sbx__cg *out, const sbx__cg_base *base, unsigned layers, const char *name,
                   char *err, size_t errlen);
/* Sets the memory cap (bytes, swap included where possible) and task cap. */
int sbx__cg_set_limits(const sbx__cg *cg, uint64_t mem_bytes, uint32_t pids, char *err,
                       size_t errlen);
/* Resets the peak memory figure (v1; v2 where the kernel allows). */
void sbx__cg_reset_peak(const sbx__cg *cg);
/* Moves process `pid` into every run cgroup. */
int sbx__cg_attach(const sbx__cg *cg, pid_t pid, char *err, size_t errlen);
void sbx__cg_read(const sbx__cg *cg, sbx__cg_stats *out);
/* Removes the run cgroups (the tree must be dead). Returns 0 or -1. */
int sbx__cg_destroy(sbx__cg *cg);
/* Removes run cgroups left behind by servers that are gone (sbx_init). */
void sbx__cg_sweep(const sbx__cg_base *base);

/* ---- seccomp.c ----------------------------------------------------------- */

/* Builds the filter as classic BPF. On success *out is malloc'd (the caller
 * frees it) and *len is the instruction count. Returns 0 or -1 with err. */
int sbx__seccomp_build(struct sock_filter **out, unsigned short *len, char *err, size_t errlen);

/* ---- lang.c -------------------------------------------------------------- */

/* Fixes interpreter paths and availability; paths are copied. Returns 0 or -1. */
int sbx__lang_init(const char *python3, const char *lua, char *err, size_t errlen);

/* ---- netns.c ------------------------------------------------------------- */

/* A network namespace with only lo (up) for one run, as an fd: the caller
 * gives it back with sbx__netns_release once the run's tree is gone.
 * Needs real root. Returns -1 with errno on failure. */
int sbx__netns_acquire(void);
void sbx__netns_release(int fd);
void sbx__netns_drop_all(void);
/* sbx__clone with the child in network namespace `netns_fd` instead of a new
 * one. Returns 0 in the child, the pid in the parent, -1 when the clone
 * failed, or -pid when the calling thread could not return to its own
 * namespace (the child exists and must be killed). */
pid_t sbx__clone_in_netns(int netns_fd, unsigned long flags);

/* ---- probe.c: global state, written by sbx_init only ------------------------ */

typedef struct sbx__state {
    int ready;
    sbx_tier tier;
    unsigned layers;            /* layers in use */
    uid_t outside_uid;
    gid_t outside_gid;
    bool netns_pool;            /* runs reuse pooled network namespaces (root) */
    bool no_warm;               /* sbx_options.no_warm */
    sbx__cg_base cg;
    struct sock_fprog filter;   /* owns filter.filter */
} sbx__state;

extern sbx__state sbx__g;

/* ---- child.c ------------------------------------------------------------- */

/* Everything the cloned child needs, prepared by the parent so that the child
 * never allocates (it is a copy of a possibly multi-threaded process, where
 * malloc's locks may be held by threads that do not exist in the copy). */
typedef struct sbx__plan {
    /* fds in the parent's numbering; the child renumbers them */
    int sync_r;                 /* "go" bytes from the parent; EOF means abort */
    int status_w;               /* sbx__msg records to the parent */
    int stdin_r, stdout_w, stderr_w, compile_w;
    const char *main_file;      /* NULL when there is no code file */
    const char *code;
    size_t code_len;
    const sbx_file *files;
    size_t nfiles;
    const char *const *compile_argv;    /* NULL: no compile step */
    const char *const *run_argv;
    const char *const *envp;
    char work_opts[64];         /* tmpfs options for /work and /tmp */
    char tmp_opts[64];
    /* rlimits of the program and of the compiler */
    uint64_t run_cpu_s, run_as_bytes, run_fsize, run_nproc;
    uint64_t cc_cpu_s, cc_as_bytes, cc_nproc;
    const struct sock_fprog *filter;
    /* The warm zygote (warm.c): exec'd with the capabilities of the
     * sandbox's user namespace, no seccomp filter and no run limits, because
     * it builds each run's namespaces itself. Runs only our own driver. */
    bool zygote;
} sbx__plan;

enum {
    SBX__MSG_SETUP_ERROR = 1,   /* what + err: the sandbox could not be built */
    SBX__MSG_EXEC_ERROR,        /* what + err: execve failed (phase says which) */
    SBX__MSG_COMPILED,          /* status: the compiler's wait status */
    SBX__MSG_EXITED,            /* status, rusage: the program's wait status */
    SBX__MSG_HELLO              /* warm run's init, waiting for "go" (warm.c) */
};

/* One record on the status pipe; smaller than PIPE_BUF so writes are atomic. */
typedef struct sbx__msg {
    int32_t kind;
    int32_t err;                /* errno */
    int32_t status;             /* wait status */
    int32_t phase;              /* 0: run, 1: compile */
    uint64_t cpu_us;            /* user+system of the program and what it reaped */
    uint64_t maxrss_kb;
    char what[96];
} sbx__msg;

/* The child's entry point after clone(); never returns. */
void sbx__child_main(const sbx__plan *plan) __attribute__((noreturn));

/* Probe child: builds a throwaway root like a real run would and loads the
 * filter, then exits 0; on failure writes an sbx__msg to fd and exits 1. */
void sbx__child_probe(int status_w, int sync_r, const struct sock_fprog *filter)
    __attribute__((noreturn));

/* Clone flags of every run. */
#define SBX__CLONE_FLAGS (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | \
                          CLONE_NEWIPC | CLONE_NEWUTS)

/* fork()-like clone with namespace flags, without glibc's atfork handlers. */
pid_t sbx__clone(unsigned long flags);

/* The fixed environment of every program (run.c). */
extern const char *const sbx__child_env[];

/* ---- warm.c -------------------------------------------------------------- */

/* Whether runs of `language` can use a warm interpreter (python3). */
bool sbx__warm_eligible(const char *language);

/*
 * Hands one run to the calling thread's warm zygote (started on first use,
 * restarted when it died). The zygote gets the child ends of the run's pipes
 * (closed here in any case) and a payload with the plan's files and limits.
 * Returns 0 when the run's init is waiting for "go": *pid is its pid (in our
 * PID namespace; not our child), *pidfd polls and kills it, *ctl is the
 * socket for "go" and its status records. Returns 1 when no warm interpreter
 * can be had: nothing of the run was started and the caller runs it cold.
 */
int sbx__warm_launch(pid_t *pid, int *pidfd, int *ctl, const sbx__plan *plan, int stdin_r,
                     int stdout_w, int stderr_w);

/* Stops every thread's zygote at its next use (sbx_init re-initialises). */
void sbx__warm_reset(void);

/* Stops the calling thread's zygote now, if it has one: its run's init died
 * without a word, so the zygote is dying or suspect; the next warm run
 * starts a new one. */
void sbx__warm_discard(void);

/* Writes the uid/gid maps of a child in a new user namespace. */
int sbx__write_id_maps(pid_t pid, uid_t uid, gid_t gid, char *err, size_t errlen);

/* write() that never raises SIGPIPE in the process (EPIPE is returned). */
ssize_t sbx__write_nosig(int fd, const void *buf, size_t len);

#endif
