/*
 * sandbox — runs untrusted programs (model-written code, its tests) and says
 * what happened.
 *
 * Used by lua/ (`envsrv.sandbox.run`), server/ (`POST /v1/sandbox/run`,
 * `GET /v1/sandbox`, `envsrv --version`), tests and benchmarks.
 *
 * Every run gets a fresh process tree in new user, PID, mount, IPC, UTS and
 * network namespaces; a private root made of read-only bind mounts of /usr,
 * /lib, /lib64, /bin, /sbin plus size-capped tmpfs /work and /tmp; a fixed
 * minimal environment; no capabilities and no_new_privs; rlimits; a seccomp
 * filter that kills the process on dangerous system calls; a per-run cgroup
 * (memory, pids, CPU accounting) when the host has one; a wall-clock limit
 * that kills the whole tree; and stdout/stderr captured with byte caps.
 * docs/sandbox.md describes the layers, the tiers and the measured costs.
 *
 * Call sbx_init() once at start-up (before starting threads); afterwards
 * sbx_run() is thread-safe and may run concurrently from any number of
 * threads. The sandbox reaps only the processes it starts: a caller that
 * calls wait(-1) or sets SIGCHLD to SIG_IGN would steal its results.
 */
#ifndef ENVSRV_SANDBOX_H
#define ENVSRV_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes besides 0. */
#define SBX_EINTERNAL -1   /* the sandbox itself failed (fork, mount, cgroup ...) */
#define SBX_EINVALID  -2   /* the request or the options were wrong */
#define SBX_EUNAVAIL  -3   /* a required isolation layer is missing on this host */

/* How a run ended. Only INTERNAL_ERROR means "the sandbox failed": callers must
 * never score it as a wrong answer. */
typedef enum sbx_status {
    SBX_OK = 0,                     /* exit code 0 */
    SBX_RUNTIME_ERROR,              /* exit code != 0 */
    SBX_TIME_LIMIT_EXCEEDED,        /* CPU or wall-clock limit; the tree was killed */
    SBX_MEMORY_LIMIT_EXCEEDED,      /* killed by the cgroup OOM killer, or hit the rlimit */
    SBX_OUTPUT_LIMIT_EXCEEDED,      /* stdout+stderr over the cap, or RLIMIT_FSIZE */
    SBX_SIGNALED,                   /* killed by another signal (SIGSEGV, SIGABRT ...) */
    SBX_SYSCALL_VIOLATION,          /* killed by the seccomp filter (SIGSYS) */
    SBX_COMPILE_ERROR,              /* the compiler rejected the code; see compile_output */
    SBX_EXEC_ERROR,                 /* the program or compiler could not be started */
    SBX_INTERNAL_ERROR              /* the sandbox failed; see message */
} sbx_status;

/* "OK", "RUNTIME_ERROR", ... as in the enum. Returns a static string. */
const char *sbx_status_name(sbx_status status);

/* Resource limits of one run. A field of 0 means "the default" (SBX_LIMITS_INIT);
 * values above the SBX_MAX_* caps are an invalid request. */
typedef struct sbx_limits {
    uint32_t cpu_ms;        /* CPU time of the whole process tree */
    uint32_t wall_ms;       /* wall clock, from start to the last process gone */
    uint32_t memory_mb;     /* memory of the whole tree (cgroup), or per process (rlimit) */
    uint32_t output_bytes;  /* stdout and stderr each keep at most this much */
    uint32_t processes;     /* tasks (processes and threads) the program may run at once */
    uint32_t file_bytes;    /* largest file the program may write (RLIMIT_FSIZE) */
    uint32_t tmpfs_mb;      /* size of /work and of /tmp, each */
} sbx_limits;

#define SBX_LIMITS_INIT { 2000, 5000, 256, 1u << 20, 64, 16u << 20, 64 }
#define SBX_MAX_CPU_MS      600000u
#define SBX_MAX_WALL_MS     600000u
#define SBX_MAX_MEMORY_MB   16384u
#define SBX_MAX_OUTPUT      (256u << 20)
#define SBX_MAX_PROCESSES   4096u
#define SBX_MAX_TMPFS_MB    4096u

/* One extra file written into /work before the program starts. */
typedef struct sbx_file {
    const char *name;       /* plain file name: no '/', not "." or "..", < 128 bytes */
    const char *content;    /* `len` bytes, any content */
    size_t len;
    bool executable;        /* mode 0755 instead of 0644 (a program compiled earlier) */
} sbx_file;

#define SBX_MAX_FILES 64

/*
 * What to run. Either `language` (a name from the language table: the code is
 * written to /work/<main file> and compiled and/or run as the table says) or
 * `argv` (a NULL-terminated argv whose [0] is an absolute path inside the
 * sandbox, e.g. "/usr/bin/python3"; `code` must then be NULL). All pointers
 * are borrowed for the duration of sbx_run().
 */
typedef struct sbx_request {
    const char *language;
    const char *const *argv;
    const char *code;           /* code_len bytes */
    size_t code_len;
    const char *stdin_data;     /* stdin_len bytes fed to the program's stdin */
    size_t stdin_len;
    const sbx_file *files;      /* nfiles extra files in /work */
    size_t nfiles;
    sbx_limits limits;
    /* Use a warm interpreter where the language has one (python3: a zygote
     * that forks each run with the same isolation as a cold run; see
     * docs/sandbox.md). Falls back to a cold run, never to less isolation,
     * when none can be started. Ignored for other languages and argv. */
    bool warm;
} sbx_request;

#define SBX_REQUEST_INIT { NULL, NULL, NULL, 0, NULL, 0, NULL, 0, SBX_LIMITS_INIT, false }

/* Captured bytes of one stream. `data` is owned by the result (freed by
 * sbx_result_free) and NUL-terminated for convenience, but may hold any bytes,
 * NULs and invalid UTF-8 included: use `len`. */
typedef struct sbx_output {
    char *data;
    size_t len;             /* bytes kept, <= limits.output_bytes */
    uint64_t total;         /* bytes the program wrote before it ended or was killed */
    bool truncated;         /* total > len */
} sbx_output;

typedef struct sbx_result {
    sbx_status status;
    int exit_code;          /* when the program exited; -1 when it was killed */
    int signal;             /* the signal that killed it, or 0 */
    uint64_t cpu_ms;        /* user+system CPU of the whole tree: the run step, or the
                             * compile step for COMPILE_ERROR */
    uint64_t wall_ms;       /* run step only (0 when it did not start) */
    uint64_t memory_kb;     /* peak memory: the cgroup's, else the largest process's RSS
                             * (like cpu_ms, of the compile step for COMPILE_ERROR) */
    sbx_output out;         /* stdout */
    sbx_output err;         /* stderr */
    sbx_output compile;     /* compiler stdout+stderr (compiled languages) */
    int compile_exit_code;  /* -1 when there was no compile step or it was killed */
    uint64_t compile_ms;    /* wall time of the compile step */
    const char *tier;       /* static: the tier the run used (sbx_tier_name) */
    bool warm;              /* it ran in a warm interpreter (request.warm) */
    char message[256];      /* why, for EXEC_ERROR / INTERNAL_ERROR / limits; else "" */
} sbx_result;

/* Frees the buffers of a result and zeroes it; NULL and zeroed results are fine. */
void sbx_result_free(sbx_result *res);

/* ---- isolation layers and tiers -------------------------------------------- */

enum {
    SBX_LAYER_USERNS      = 1 << 0,
    SBX_LAYER_PIDNS       = 1 << 1,
    SBX_LAYER_MOUNTNS     = 1 << 2,
    SBX_LAYER_NETNS       = 1 << 3,
    SBX_LAYER_IPCUTS      = 1 << 4,   /* IPC and UTS namespaces */
    SBX_LAYER_SECCOMP     = 1 << 5,
    SBX_LAYER_CGROUP_MEM  = 1 << 6,   /* per-run memory cgroup (v1 or v2) */
    SBX_LAYER_CGROUP_PIDS = 1 << 7,
    SBX_LAYER_CGROUP_CPU  = 1 << 8,   /* per-run CPU accounting (cpuacct or cpu.stat) */
};
#define SBX_LAYERS_CONFINE (SBX_LAYER_USERNS | SBX_LAYER_PIDNS | SBX_LAYER_MOUNTNS | \
                            SBX_LAYER_NETNS | SBX_LAYER_IPCUTS | SBX_LAYER_SECCOMP)
#define SBX_LAYERS_CGROUP  (SBX_LAYER_CGROUP_MEM | SBX_LAYER_CGROUP_PIDS | SBX_LAYER_CGROUP_CPU)
#define SBX_LAYERS_ALL     (SBX_LAYERS_CONFINE | SBX_LAYERS_CGROUP)

/* Name of one layer bit: "user namespace", "cgroup memory" ... Static string. */
const char *sbx_layer_name(unsigned layer);

/*
 * Tiers, strongest first. Confinement (namespaces + seccomp) is never
 * optional: without it there is no tier and nothing runs. Only resource
 * accounting degrades, from per-run cgroups to per-process rlimits.
 */
typedef enum sbx_tier {
    SBX_TIER_NONE = 0,      /* "none": cannot run untrusted code here */
    SBX_TIER_RLIMITS,       /* "namespaces+seccomp+rlimits" */
    SBX_TIER_CGROUP         /* "namespaces+seccomp+cgroup" */
} sbx_tier;

const char *sbx_tier_name(sbx_tier tier);

typedef enum sbx_mode {
    SBX_MODE_BEST_EFFORT = 0,   /* strongest tier available; fail only if none */
    SBX_MODE_STRICT             /* every layer in SBX_LAYERS_ALL, or fail */
} sbx_mode;

/* What the host allows. */
typedef struct sbx_probe_info {
    unsigned layers;            /* SBX_LAYER_* bits that work */
    sbx_tier tier;              /* strongest tier those layers give */
    int cgroup_version;         /* 1, 2, or 0 when no usable cgroup */
    bool as_root;               /* running as real root: runs use uid 65534 outside */
    char message[256];          /* names the first missing layer and why; "" when none */
} sbx_probe_info;

/* Probes the kernel by trying each layer (a throwaway child, a throwaway
 * cgroup). Safe to call at any time; takes a few milliseconds. Returns 0. */
int sbx_probe(sbx_probe_info *out);

/* Start-up options. Paths are copied. */
typedef struct sbx_options {
    sbx_mode mode;
    const char *python3;        /* interpreter path; NULL: /usr/bin/python3 (never PATH) */
    const char *lua;            /* NULL: /usr/bin/lua5.4 */
    bool no_cgroup;             /* use the rlimits tier even where cgroups work (tests,
                                 * benchmarks); invalid with SBX_MODE_STRICT */
    bool no_warm;               /* run warm requests cold (benchmarks, comparisons) */
} sbx_options;

#define SBX_OPTIONS_INIT { SBX_MODE_BEST_EFFORT, NULL, NULL, false, false }

/*
 * Probes, picks the tier (see sbx_mode), compiles the seccomp filter and fixes
 * the language table. Must be called before sbx_run(), once, before threads
 * call sbx_run(); calling it again re-initialises (not while runs are going).
 * `info` (may be NULL) receives what the probe found. Returns 0, or
 * SBX_EUNAVAIL with a message naming the missing layer ("--sandbox strict:
 * cgroup memory controller unavailable: ..."), or SBX_EINVALID on bad options.
 */
int sbx_init(sbx_probe_info *info, const sbx_options *opts, char *err, size_t errlen);

/* The tier chosen by sbx_init (SBX_TIER_NONE before it). */
sbx_tier sbx_current_tier(void);

/*
 * Runs one request and fills `out` (which the caller later frees with
 * sbx_result_free; its previous content is not freed). Returns 0 when `out`
 * holds a result of the program, whatever its status; SBX_EINVALID for a bad
 * request (unknown language, bad file name, limits over the caps) with `out`
 * left empty; SBX_EINTERNAL when the sandbox failed (out->status is then
 * SBX_INTERNAL_ERROR and out->message says why). `err` gets the same message.
 */
int sbx_run(sbx_result *out, const sbx_request *req, char *err, size_t errlen);

/*
 * Stops the calling thread's warm interpreter, if it has one (a later warm
 * run on this thread starts a new one). A thread's warm interpreter is also
 * stopped when the thread exits; call this where a thread ends its sandbox
 * work early, or before checking that no child processes are left.
 */
void sbx_warm_release(void);

/* Warm interpreters started since the process began, over all threads (a
 * figure for tests and metrics: a zygote restarted after a run would show). */
uint64_t sbx_warm_started(void);

/* ---- languages -------------------------------------------------------------- */

/* One row of the language table. */
typedef struct sbx_language {
    const char *name;           /* "python3", "c", "cpp", "bash", "lua" */
    const char *main_file;      /* the code goes to /work/<main_file> */
    const char *const *compile; /* compiler argv (absolute path), or NULL */
    const char *const *run;     /* program argv (absolute path or ./ in /work) */
    bool available;             /* the interpreter/compiler exists on this host */
} sbx_language;

/* The table: `*count` rows, borrowed and valid until the next sbx_init. */
const sbx_language *sbx_languages(size_t *count);

/* The row named `name`, or NULL. Borrowed like sbx_languages(). */
const sbx_language *sbx_language_find(const char *name);

#endif
