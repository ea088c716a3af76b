/*
 * sbx_run: the parent side of one run.
 *
 *   validate the request -> plan (everything the child needs, prepared here)
 *   -> run cgroup -> pipes -> clone into new namespaces -> uid/gid maps,
 *   cgroup attach, "go" -> poll loop: feed stdin, drain stdout/stderr with
 *   caps, read the child's status records, enforce wall clock and tree CPU
 *   -> reap -> figures -> status word.
 *
 * The loop polls a pidfd of the sandbox's init (PID 1 of its namespace):
 * killing it kills the whole tree, and its exit wakes the loop without
 * SIGCHLD, so any number of threads can run sandboxes at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

/* The fixed environment of every program: nothing of the server's. */
const char *const sbx__child_env[] = {
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "HOME=/work",
    "TMPDIR=/tmp",
    "USER=sandbox",
    "LANG=C.UTF-8",
    "LC_ALL=C.UTF-8",
    /* glibc reserves 64 MiB of address space per malloc arena and thread;
     * under an address-space limit that breaks Python threads. */
    "MALLOC_ARENA_MAX=2",
    NULL,
};

#define MAX_ARGV 256

static atomic_uint run_seq;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sbx_result_free(sbx_result *res)
{
    if (!res)
        return;
    free(res->out.data);
    free(res->err.data);
    free(res->compile.data);
    memset(res, 0, sizeof *res);
}

/* ---- validation --------------------------------------------------------------------- */

static int check_limit(uint32_t *v, uint32_t def, uint32_t max, const char *name, char *err,
                       size_t errlen)
{
    if (*v == 0)
        *v = def;
    if (*v > max) {
        snprintf(err, errlen, "limit %s=%u is over the maximum %u", name, *v, max);
        return -1;
    }
    return 0;
}

static int check_limits(sbx_limits *l, char *err, size_t errlen)
{
    static const sbx_limits d = SBX_LIMITS_INIT;
    if (check_limit(&l->cpu_ms, d.cpu_ms, SBX_MAX_CPU_MS, "cpu_ms", err, errlen) < 0 ||
        check_limit(&l->wall_ms, d.wall_ms, SBX_MAX_WALL_MS, "wall_ms", err, errlen) < 0 ||
        check_limit(&l->memory_mb, d.memory_mb, SBX_MAX_MEMORY_MB, "memory_mb", err, errlen) < 0 ||
        check_limit(&l->output_bytes, d.output_bytes, SBX_MAX_OUTPUT, "output_bytes", err,
                    errlen) < 0 ||
        check_limit(&l->processes, d.processes, SBX_MAX_PROCESSES, "processes", err, errlen) < 0 ||
        check_limit(&l->file_bytes, d.file_bytes, UINT32_MAX, "file_bytes", err, errlen) < 0 ||
        check_limit(&l->tmpfs_mb, d.tmpfs_mb, SBX_MAX_TMPFS_MB, "tmpfs_mb", err, errlen) < 0)
        return -1;
    if (l->memory_mb < 16) {
        snprintf(err, errlen, "limit memory_mb=%u is under the minimum 16", l->memory_mb);
        return -1;
    }
    return 0;
}

static int check_name(const char *name, char *err, size_t errlen)
{
    if (!name || !name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strchr(name, '/') || strlen(name) >= 128) {
        snprintf(err, errlen, "bad file name '%.64s': want a plain name without '/', under 128 "
                 "bytes", name ? name : "(null)");
        return -1;
    }
    return 0;
}

/* Fills the request-dependent part of the plan. */
static int make_plan(sbx__plan *p, sbx_limits *lim, const sbx_request *req, char *err,
                     size_t errlen)
{
    memset(p, 0, sizeof *p);
    *lim = req->limits;
    if (check_limits(lim, err, errlen) < 0)
        return -1;
    if (req->language && req->argv) {
        snprintf(err, errlen, "give either a language or an argv, not both");
        return -1;
    }
    if (req->language) {
        const sbx_language *lang = sbx_language_find(req->language);
        if (!lang) {
            snprintf(err, errlen, "unknown language '%.64s'", req->language);
            return -1;
        }
        p->main_file = lang->main_file;
        p->code = req->code ? req->code : "";
        p->code_len = req->code ? req->code_len : 0;
        p->compile_argv = lang->compile;
        p->run_argv = lang->run;
    } else if (req->argv) {
        size_t n = 0;
        while (n <= MAX_ARGV && req->argv[n])
            n++;
        if (n == 0 || n > MAX_ARGV || req->argv[0][0] != '/') {
            snprintf(err, errlen, "argv must have 1 to %d entries and an absolute argv[0]",
                     MAX_ARGV);
            return -1;
        }
        if (req->code) {
            snprintf(err, errlen, "code needs a language; with an argv, pass files");
            return -1;
        }
        p->run_argv = req->argv;
    } else {
        snprintf(err, errlen, "the request names neither a language nor an argv");
        return -1;
    }
    if (req->nfiles > SBX_MAX_FILES || (req->nfiles && !req->files)) {
        snprintf(err, errlen, "too many files (%zu, at most %d)", req->nfiles, SBX_MAX_FILES);
        return -1;
    }
    for (size_t i = 0; i < req->nfiles; i++) {
        if (check_name(req->files[i].name, err, errlen) < 0)
            return -1;
        if ((p->main_file && strcmp(req->files[i].name, p->main_file) == 0) ||
            (req->files[i].len && !req->files[i].content)) {
            snprintf(err, errlen, "file '%.64s' clashes with the code file or has no content",
                     req->files[i].name);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->files[i].name, req->files[j].name) == 0) {
                snprintf(err, errlen, "file '%.64s' given twice", req->files[i].name);
                return -1;
            }
    }
    if (req->stdin_len && !req->stdin_data) {
        snprintf(err, errlen, "stdin_len is %zu but stdin_data is NULL", req->stdin_len);
        return -1;
    }
    if (req->code_len && !req->code) {
        snprintf(err, errlen, "code_len is %zu but code is NULL", req->code_len);
        return -1;
    }
    /* What does not fit in /work is the request's fault, not the sandbox's:
     * say so here rather than fail while building the root. Each file also
     * takes at least a page. */
    uint64_t bytes = (uint64_t)(req->language ? p->code_len : 0) + 4096;
    for (size_t i = 0; i < req->nfiles; i++)
        bytes += (uint64_t)req->files[i].len + 4096;
    if (bytes > (uint64_t)lim->tmpfs_mb << 20) {
        snprintf(err, errlen, "code and files (%llu bytes) do not fit in /work (tmpfs_mb=%u)",
                 (unsigned long long)bytes, lim->tmpfs_mb);
        return -1;
    }
    p->files = req->files;
    p->nfiles = req->nfiles;
    p->envp = sbx__child_env;
    snprintf(p->work_opts, sizeof p->work_opts, "size=%um,nr_inodes=16384,mode=0755",
             lim->tmpfs_mb);
    snprintf(p->tmp_opts, sizeof p->tmp_opts, "size=%um,nr_inodes=16384,mode=1777",
             lim->tmpfs_mb);

    bool cg_mem = sbx__g.layers & SBX_LAYER_CGROUP_MEM;
    uint64_t mb = 1u << 20;
    /* With a cgroup the cap is on the tree's real memory and the address-space
     * limit is only a backstop (threads reserve far more than they use);
     * without one, the address space is the only cap there is. */
    p->run_as_bytes = cg_mem ? (uint64_t)lim->memory_mb * 4 * mb + 512 * mb
                             : (uint64_t)lim->memory_mb * mb;
    /* The cgroup's CPU check (every 20 ms) is the precise one; RLIMIT_CPU
     * (whole seconds, per process) is the backstop, or the only check. */
    p->run_cpu_s = (lim->cpu_ms + 999) / 1000 + (sbx__g.layers & SBX_LAYER_CGROUP_CPU ? 1 : 0);
    p->run_fsize = lim->file_bytes;
    /* Counted per user in the run's own user namespace: init is one of them. */
    p->run_nproc = (uint64_t)lim->processes + 1;
    p->cc_cpu_s = SBX__COMPILE_CPU_MS / 1000;
    p->cc_as_bytes = (uint64_t)SBX__COMPILE_MEM_MB * 4 * mb;
    p->cc_nproc = 64;
    p->filter = &sbx__g.filter;
    return 0;
}

/* ---- output capture ------------------------------------------------------------------ */

typedef struct stream {
    int fd;                 /* -1 once at EOF */
    sbx_output *o;
    size_t cap;             /* bytes kept at most */
    size_t alloc;
} stream;

/* Reads what is available. Returns 0, or -1 when out of memory. Bytes past
 * the cap are counted and dropped, so the writer never blocks on us. */
static int stream_read(stream *s)
{
    char buf[65536];
    for (int rounds = 0; s->fd >= 0 && rounds < 64; rounds++) {
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            close(s->fd);
            s->fd = -1;
            return 0;
        }
        s->o->total += (uint64_t)n;
        size_t room = s->cap - s->o->len;
        size_t keep = (size_t)n < room ? (size_t)n : room;
        if (keep) {
            if (s->o->len + keep + 1 > s->alloc) {
                size_t want = s->alloc ? s->alloc : 4096;
                while (want < s->o->len + keep + 1)
                    want *= 2;
                if (want > s->cap + 1)
                    want = s->cap + 1;
                char *d = realloc(s->o->data, want);
                if (!d)
                    return -1;
                s->o->data = d;
                s->alloc = want;
            }
            memcpy(s->o->data + s->o->len, buf, keep);
            s->o->len += keep;
        }
        if (s->o->total > s->cap)
            s->o->truncated = true;
    }
    return 0;
}

static int stream_finish(stream *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    if (!s->o->data) {
        s->o->data = malloc(1);
        if (!s->o->data)
            return -1;
    }
    s->o->data[s->o->len] = '\0';
    return 0;
}

/* ---- the run ---------------------------------------------------------------------------- */

typedef struct run_state {
    pid_t pid;              /* init of the run: our child, or (warm) not ours */
    bool warm;              /* pid is a warm run's init, polled and killed by pidfd only */
    int pidfd, sync_w, status_r, stdin_w;
    stream out, err, cc;
    size_t stdin_off;
    sbx__cg cg;
    bool have_cg;
    /* what happened */
    bool exited, killed_wall, killed_cpu, killed_output;
    bool got_exit, compiled, compile_ok;
    int init_status;
    sbx__msg exit_msg;
    sbx__msg setup_msg;     /* kind 0 when none */
    uint64_t t0, t_run, t_end, cpu_base_us;
} run_state;

static void kill_tree(run_state *rs)
{
    if (rs->pid <= 0 || rs->exited)
        return;
    /* PID 1 of the namespace: takes everything with it. A warm run's init is
     * not our child, so its pid could be reused once it is gone: the pidfd
     * names it for sure. */
    if (rs->warm)
        (void)syscall(SYS_pidfd_send_signal, rs->pidfd, SIGKILL, NULL, 0);
    else
        kill(rs->pid, SIGKILL);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Reads one status record and reacts to it. */
static int on_status(run_state *rs, const sbx_limits *lim, char *err, size_t errlen)
{
    sbx__msg m;
    ssize_t n;
    do
        n = read(rs->status_r, &m, sizeof m);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        close_fd(&rs->status_r);
        return 0;
    }
    if (n != (ssize_t)sizeof m) {
        snprintf(err, errlen, "sandbox: short status record (%zd bytes)", n);
        return -1;
    }
    m.what[sizeof m.what - 1] = '\0';
    switch (m.kind) {
    case SBX__MSG_SETUP_ERROR:
    case SBX__MSG_EXEC_ERROR:
        rs->setup_msg = m;
        break;
    case SBX__MSG_COMPILED:
        rs->compiled = true;
        rs->init_status = m.status;
        rs->compile_ok = WIFEXITED(m.status) && WEXITSTATUS(m.status) == 0;
        if (rs->compile_ok) {
            /* Switch the cgroup to the program's limits before it starts. */
            if (rs->have_cg) {
                if (sbx__cg_set_limits(&rs->cg, (uint64_t)lim->memory_mb << 20,
                                       lim->processes + 1, err, errlen) < 0)
                    return -1;
                sbx__cg_reset_peak(&rs->cg);
                sbx__cg_stats st;
                sbx__cg_read(&rs->cg, &st);
                rs->cpu_base_us = st.cpu_us == UINT64_MAX ? 0 : st.cpu_us;
            }
            rs->t_run = now_ms();
            if (sbx__write_nosig(rs->sync_w, "g", 1) != 1) {
                snprintf(err, errlen, "sandbox: init died after the compile step");
                return -1;
            }
        }
        break;
    case SBX__MSG_EXITED:
        rs->got_exit = true;
        rs->exit_msg = m;
        break;
    default:
        snprintf(err, errlen, "sandbox: unknown status record %d", (int)m.kind);
        return -1;
    }
    return 0;
}

static void feed_stdin(run_state *rs, const sbx_request *req)
{
    while (rs->stdin_w >= 0 && rs->stdin_off < req->stdin_len) {
        size_t chunk = req->stdin_len - rs->stdin_off;
        if (chunk > 65536)
            chunk = 65536;
        ssize_t w = sbx__write_nosig(rs->stdin_w, req->stdin_data + rs->stdin_off, chunk);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        if (w <= 0) {   /* EPIPE: the program closed stdin; fine */
            close_fd(&rs->stdin_w);
            return;
        }
        rs->stdin_off += (size_t)w;
    }
    close_fd(&rs->stdin_w);
}

/* The poll loop; returns 0 when the tree is gone and every pipe is drained,
 * -1 (with err) on an internal failure (the tree is then killed). */
static int supervise(run_state *rs, const sbx_request *req, const sbx_limits *lim, bool compiles,
                     char *err, size_t errlen)
{
    uint64_t kill_deadline = 0;
    while (!rs->exited || rs->out.fd >= 0 || rs->err.fd >= 0 || rs->cc.fd >= 0 ||
           rs->status_r >= 0) {
        uint64_t now = now_ms();
        bool running = !compiles || rs->t_run;
        uint64_t start = running ? (rs->t_run ? rs->t_run : rs->t0) : rs->t0;
        uint64_t limit = running ? lim->wall_ms : SBX__COMPILE_WALL_MS;
        if (!rs->exited && now >= start + limit) {
            rs->killed_wall = true;
            kill_tree(rs);
        }
        if (rs->have_cg && running && !rs->exited && (sbx__g.layers & SBX_LAYER_CGROUP_CPU)) {
            sbx__cg_stats st;
            sbx__cg_read(&rs->cg, &st);
            if (st.cpu_us != UINT64_MAX && st.cpu_us - rs->cpu_base_us > (uint64_t)lim->cpu_ms * 1000) {
                rs->killed_cpu = true;
                kill_tree(rs);
            }
        }
        if ((rs->killed_wall || rs->killed_cpu || rs->killed_output) && !kill_deadline)
            kill_deadline = now + 5000;
        if (kill_deadline && now >= kill_deadline) {
            /* Cannot happen while the kernel works: a dead namespace holds no
             * pipe ends. Do not hang the caller if it does. */
            snprintf(err, errlen, "sandbox: the process tree did not go away after SIGKILL");
            return -1;
        }

        struct pollfd pf[6];
        int n = 0, i_pid = -1, i_status = -1, i_out = -1, i_err = -1, i_cc = -1, i_in = -1;
        if (!rs->exited) {
            i_pid = n;
            pf[n++] = (struct pollfd){ rs->pidfd, POLLIN, 0 };
        }
        if (rs->status_r >= 0) {
            i_status = n;
            pf[n++] = (struct pollfd){ rs->status_r, POLLIN, 0 };
        }
        if (rs->out.fd >= 0) {
            i_out = n;
            pf[n++] = (struct pollfd){ rs->out.fd, POLLIN, 0 };
        }
        if (rs->err.fd >= 0) {
            i_err = n;
            pf[n++] = (struct pollfd){ rs->err.fd, POLLIN, 0 };
        }
        if (rs->cc.fd >= 0) {
            i_cc = n;
            pf[n++] = (struct pollfd){ rs->cc.fd, POLLIN, 0 };
        }
        if (rs->stdin_w >= 0) {
            i_in = n;
            pf[n++] = (struct pollfd){ rs->stdin_w, POLLOUT, 0 };
        }
        uint64_t wake = kill_deadline ? kill_deadline : start + limit;
        int timeout = wake > now ? (int)(wake - now) : 0;
        if (rs->have_cg && running && timeout > 20)
            timeout = 20;
        int r = poll(pf, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR) {
            snprintf(err, errlen, "sandbox: poll: %s", strerror(errno));
            return -1;
        }
        if (r <= 0)
            continue;
        if (i_status >= 0 && pf[i_status].revents && on_status(rs, lim, err, errlen) < 0)
            return -1;
        if ((i_out >= 0 && pf[i_out].revents && stream_read(&rs->out) < 0) ||
            (i_err >= 0 && pf[i_err].revents && stream_read(&rs->err) < 0) ||
            (i_cc >= 0 && pf[i_cc].revents && stream_read(&rs->cc) < 0)) {
            snprintf(err, errlen, "sandbox: out of memory capturing output");
            return -1;
        }
        if ((rs->out.o->truncated || rs->err.o->truncated) && !rs->killed_output) {
            rs->killed_output = true;
            kill_tree(rs);
        }
        if (i_in >= 0 && pf[i_in].revents)
            feed_stdin(rs, req);
        if (i_pid >= 0 && pf[i_pid].revents) {
            int st;
            pid_t w = rs->pid;
            /* A warm run's init is reaped by the zygote's sandbox init. */
            while (!rs->warm && (w = waitpid(rs->pid, &st, WNOHANG | __WALL)) < 0 &&
                   errno == EINTR)
                ;
            if (w == rs->pid) {
                rs->exited = true;
                rs->t_end = now_ms();
                /* Anything still queued on the status pipe is read before EOF. */
                close_fd(&rs->stdin_w);
            }
        }
    }
    return 0;
}

/* Picks the status word from what happened (see docs/sandbox.md). */
static void classify(sbx_result *out, const run_state *rs, const sbx_limits *lim,
                     const sbx__cg_stats *cgs, bool compiles)
{
    if (rs->setup_msg.kind == SBX__MSG_SETUP_ERROR) {
        out->status = SBX_INTERNAL_ERROR;
        snprintf(out->message, sizeof out->message, "sandbox setup failed: %s: %s",
                 rs->setup_msg.what, strerror(rs->setup_msg.err));
        return;
    }
    if (rs->setup_msg.kind == SBX__MSG_EXEC_ERROR) {
        out->status = SBX_EXEC_ERROR;
        snprintf(out->message, sizeof out->message, "%s: %s", rs->setup_msg.what,
                 strerror(rs->setup_msg.err));
        return;
    }
    if (compiles && !rs->compile_ok) {
        if (rs->compiled && WIFEXITED(rs->init_status)) {
            out->status = SBX_COMPILE_ERROR;
            snprintf(out->message, sizeof out->message, "compiler exited with %d",
                     WEXITSTATUS(rs->init_status));
        } else if (rs->killed_wall || (rs->compiled && WIFSIGNALED(rs->init_status))) {
            out->status = SBX_COMPILE_ERROR;
            snprintf(out->message, sizeof out->message,
                     "compiler killed (limits: %u ms CPU, %u ms wall, %u MiB)",
                     SBX__COMPILE_CPU_MS, SBX__COMPILE_WALL_MS, SBX__COMPILE_MEM_MB);
        } else {
            out->status = SBX_INTERNAL_ERROR;
            snprintf(out->message, sizeof out->message, "sandbox init ended during compile");
        }
        return;
    }
    if (!rs->got_exit && !rs->killed_wall && !rs->killed_cpu && !rs->killed_output) {
        if (cgs->oom_kills > 0) {
            /* The OOM killer may pick init itself when the memory is in
             * tmpfs files rather than in any process. */
            out->status = SBX_MEMORY_LIMIT_EXCEEDED;
            out->signal = SIGKILL;
            snprintf(out->message, sizeof out->message, "memory limit of %u MiB",
                     lim->memory_mb);
            return;
        }
        out->status = SBX_INTERNAL_ERROR;
        snprintf(out->message, sizeof out->message,
                 "sandbox init ended without reporting the program's status (%d)",
                 rs->init_status);
        return;
    }
    /* Without a memory cgroup nothing reports "out of memory": a process the
     * address-space limit starved sees failing allocations (MemoryError,
     * NULL from malloc, SIGSEGV or SIGABRT). A failed run whose peak RSS came
     * within 20% of the cap is taken to have run out of memory. */
    bool near_cap = !(sbx__g.layers & SBX_LAYER_CGROUP_MEM) &&
                    out->memory_kb * 10 >= (uint64_t)lim->memory_mb * 1024 * 8;
    int st = rs->exit_msg.status;
    if (rs->got_exit) {
        if (WIFEXITED(st))
            out->exit_code = WEXITSTATUS(st);
        else if (WIFSIGNALED(st))
            out->signal = WTERMSIG(st);
    }
    if (rs->killed_wall) {
        out->status = SBX_TIME_LIMIT_EXCEEDED;
        snprintf(out->message, sizeof out->message, "wall-clock limit of %u ms", lim->wall_ms);
    } else if (rs->killed_cpu || out->signal == SIGXCPU ||
               (out->cpu_ms > lim->cpu_ms && out->signal == SIGKILL)) {
        out->status = SBX_TIME_LIMIT_EXCEEDED;
        snprintf(out->message, sizeof out->message, "CPU limit of %u ms", lim->cpu_ms);
    } else if (rs->killed_output || out->signal == SIGXFSZ) {
        out->status = SBX_OUTPUT_LIMIT_EXCEEDED;
        snprintf(out->message, sizeof out->message, rs->killed_output
                     ? "output limit of %u bytes per stream" : "file size limit of %u bytes",
                 rs->killed_output ? lim->output_bytes : lim->file_bytes);
    } else if (cgs->oom_kills > 0) {
        out->status = SBX_MEMORY_LIMIT_EXCEEDED;
        snprintf(out->message, sizeof out->message, "memory limit of %u MiB", lim->memory_mb);
    } else if (out->signal == SIGSYS) {
        out->status = SBX_SYSCALL_VIOLATION;
        snprintf(out->message, sizeof out->message, "killed by the seccomp filter");
    } else if (out->signal) {
        out->status = near_cap ? SBX_MEMORY_LIMIT_EXCEEDED : SBX_SIGNALED;
        snprintf(out->message, sizeof out->message, "killed by signal %d (%s)", out->signal,
                 strsignal(out->signal));
    } else if (out->cpu_ms > lim->cpu_ms) {
        out->status = SBX_TIME_LIMIT_EXCEEDED;
        snprintf(out->message, sizeof out->message, "CPU limit of %u ms", lim->cpu_ms);
    } else if (out->exit_code != 0 && near_cap) {
        out->status = SBX_MEMORY_LIMIT_EXCEEDED;
        snprintf(out->message, sizeof out->message,
                 "exit code %d with peak memory near the limit of %u MiB", out->exit_code,
                 lim->memory_mb);
    } else {
        out->status = out->exit_code == 0 ? SBX_OK : SBX_RUNTIME_ERROR;
    }
    if (!out->signal && !rs->got_exit)
        out->exit_code = -1;
    if (out->status != SBX_OK && out->signal == 0 && !rs->got_exit)
        out->signal = SIGKILL;   /* killed by us: the tree got SIGKILL */
}

/* run_plan's answers when a warm run could not be started: run it cold;
 * or its init died without a word (its zygote was killed or is dying):
 * run it again on a new zygote. Nothing of the first try is reported. */
#define RUN_COLD_INSTEAD 1
#define RUN_WARM_AGAIN   2

static void start_result(sbx_result *out)
{
    memset(out, 0, sizeof *out);
    out->exit_code = -1;
    out->compile_exit_code = -1;
    out->tier = sbx_tier_name(sbx_current_tier());
}

/* Starts a warm run: the zygote forks its init, which we move into the run
 * cgroup and tell to go. Returns 0, -1 with err, or RUN_COLD_INSTEAD. */
static int start_warm(run_state *rs, sbx__plan *plan, int *in, int *po, int *pe, char *err,
                      size_t errlen)
{
    int ctl = -1;
    int r = sbx__warm_launch(&rs->pid, &rs->pidfd, &ctl, plan, in[0], po[1], pe[1]);
    in[0] = po[1] = pe[1] = -1;     /* closed by the launch */
    if (r != 0)
        return RUN_COLD_INSTEAD;
    rs->warm = true;
    rs->status_r = ctl;
    rs->stdin_w = in[1];
    rs->out.fd = po[0];
    rs->err.fd = pe[0];
    in[1] = po[0] = pe[0] = -1;
    bool attached = !rs->have_cg || sbx__cg_attach(&rs->cg, rs->pid, err, errlen) == 0;
    rs->t_run = now_ms();
    if (attached && sbx__write_nosig(ctl, "g", 1) == 1)
        return 0;
    /* The init is gone (with its zygote, most likely): try a new zygote.
     * A live init that could not be moved into its cgroup is an error. */
    struct pollfd pf = { rs->pidfd, POLLIN, 0 };
    if (poll(&pf, 1, 0) == 1) {
        sbx__warm_discard();
        return RUN_WARM_AGAIN;
    }
    if (attached)
        snprintf(err, errlen, "sandbox: warm run's init did not take its start");
    return -1;
}

/* One run, cold or warm (the rest of sbx_run's contract). */
static int run_plan(sbx_result *out, const sbx_request *req, sbx__plan plan,
                    const sbx_limits *limits, bool warm, char *err, size_t errlen)
{
    sbx_limits lim = *limits;
    bool compiles = plan.compile_argv != NULL;

    int rc = SBX_EINTERNAL;
    run_state rs;
    memset(&rs, 0, sizeof rs);
    rs.pid = -1;
    rs.pidfd = rs.sync_w = rs.status_r = rs.stdin_w = -1;
    rs.out = (stream){ -1, &out->out, lim.output_bytes, 0 };
    rs.err = (stream){ -1, &out->err, lim.output_bytes, 0 };
    rs.cc = (stream){ -1, &out->compile, SBX__COMPILE_OUTPUT, 0 };
    int sync[2] = { -1, -1 }, stat[2] = { -1, -1 }, in[2] = { -1, -1 }, po[2] = { -1, -1 },
        pe[2] = { -1, -1 }, pc[2] = { -1, -1 };
    sbx__cg_stats cgs = { UINT64_MAX, 0, 0 };
    int netns = -1;

    if (sbx__g.tier == SBX_TIER_CGROUP) {
        char name[64];
        snprintf(name, sizeof name, "envsrv-sbx.%d.%u", (int)getpid(),
                 atomic_fetch_add(&run_seq, 1));
        if (sbx__cg_create(&rs.cg, &sbx__g.cg, sbx__g.layers, name, err, errlen) < 0)
            goto done;
        rs.have_cg = true;
        uint32_t mem = lim.memory_mb, tasks = lim.processes + 1;
        if (compiles) {
            mem = mem > SBX__COMPILE_MEM_MB ? mem : SBX__COMPILE_MEM_MB;
            tasks = tasks > 65 ? tasks : 65;
        }
        if (sbx__cg_set_limits(&rs.cg, (uint64_t)mem << 20, tasks, err, errlen) < 0)
            goto done;
    }

    /* Every fd is close-on-exec and the child renumbers what it needs, so
     * concurrent runs never inherit each other's pipe ends for long. */
    if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(stat, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0 ||
        pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0 ||
        (compiles && pipe2(pc, O_CLOEXEC) < 0)) {
        snprintf(err, errlen, "sandbox: pipe: %s", strerror(errno));
        goto done;
    }
    /* Non-blocking on our ends only: the program's ends stay blocking. */
    int ours[] = { in[1], po[0], pe[0], pc[0] };
    for (size_t i = 0; i < 4; i++)
        if (ours[i] >= 0)
            (void)fcntl(ours[i], F_SETFL, O_NONBLOCK);
    plan.sync_r = sync[0];
    plan.status_w = stat[1];
    plan.stdin_r = in[0];
    plan.stdout_w = po[1];
    plan.stderr_w = pe[1];
    plan.compile_w = pc[1];

    rs.t0 = now_ms();
    if (warm) {
        int r = start_warm(&rs, &plan, in, po, pe, err, errlen);
        if (r == RUN_COLD_INSTEAD || r == RUN_WARM_AGAIN)
            rc = r;
        if (r != 0)
            goto done;
        if (req->stdin_len == 0)
            close_fd(&rs.stdin_w);
        goto supervise;
    }
    if (sbx__g.netns_pool) {
        netns = sbx__netns_acquire();
        if (netns < 0) {
            snprintf(err, errlen, "sandbox: cannot create a network namespace: %s",
                     strerror(errno));
            goto done;
        }
        rs.pid = sbx__clone_in_netns(netns, SBX__CLONE_FLAGS);
    } else {
        rs.pid = sbx__clone(SBX__CLONE_FLAGS);
    }
    if (rs.pid == 0)
        sbx__child_main(&plan);
    if (rs.pid < -1) {
        rs.pid = -rs.pid;   /* killed and reaped below */
        snprintf(err, errlen, "sandbox: cannot return this thread to its network namespace: %s",
                 strerror(errno));
        goto done;
    }
    if (rs.pid < 0) {
        snprintf(err, errlen, "sandbox: clone: %s", strerror(errno));
        goto done;
    }
    close_fd(&sync[0]);
    close_fd(&stat[1]);
    close_fd(&in[0]);
    close_fd(&po[1]);
    close_fd(&pe[1]);
    close_fd(&pc[1]);
    rs.sync_w = sync[1];
    rs.status_r = stat[0];
    rs.stdin_w = in[1];
    rs.out.fd = po[0];
    rs.err.fd = pe[0];
    rs.cc.fd = pc[0];
    sync[1] = stat[0] = in[1] = po[0] = pe[0] = pc[0] = -1;
    if (req->stdin_len == 0)
        close_fd(&rs.stdin_w);

    rs.pidfd = (int)syscall(SYS_pidfd_open, rs.pid, 0);
    if (rs.pidfd < 0) {
        snprintf(err, errlen, "sandbox: pidfd_open: %s", strerror(errno));
        goto done;
    }
    if (sbx__write_id_maps(rs.pid, sbx__g.outside_uid, sbx__g.outside_gid, err, errlen) < 0)
        goto done;
    /* First byte: the maps are written, build the root. Second: the cgroup
     * is joined, start the program. The two overlap. */
    if (sbx__write_nosig(rs.sync_w, "g", 1) != 1) {
        snprintf(err, errlen, "sandbox: init died before starting");
        goto done;
    }
    if (rs.have_cg && sbx__cg_attach(&rs.cg, rs.pid, err, errlen) < 0)
        goto done;
    /* A failure here means init died building the root; its status record
     * says why, and supervise() reads it. */
    (void)sbx__write_nosig(rs.sync_w, "a", 1);
    if (!compiles)
        rs.t_run = rs.t0;
supervise:
    if (supervise(&rs, req, &lim, compiles, err, errlen) < 0)
        goto done;

    if (rs.have_cg)
        sbx__cg_read(&rs.cg, &cgs);
    if (rs.have_cg && cgs.cpu_us != UINT64_MAX)
        out->cpu_ms = (cgs.cpu_us - (cgs.cpu_us >= rs.cpu_base_us ? rs.cpu_base_us : 0)) / 1000;
    else
        out->cpu_ms = rs.exit_msg.cpu_us / 1000;
    if (rs.have_cg && cgs.peak_bytes)
        out->memory_kb = cgs.peak_bytes / 1024;
    else
        out->memory_kb = rs.exit_msg.maxrss_kb;
    if (compiles) {
        out->compile_ms = (rs.t_run ? rs.t_run : rs.t_end) - rs.t0;
        if (rs.compiled && WIFEXITED(rs.init_status))
            out->compile_exit_code = WEXITSTATUS(rs.init_status);
    }
    out->wall_ms = rs.t_run ? rs.t_end - rs.t_run : 0;
    classify(out, &rs, &lim, &cgs, compiles);
    out->warm = rs.warm;
    if (rs.warm && out->status == SBX_INTERNAL_ERROR && !rs.got_exit) {
        sbx__warm_discard();
        rc = RUN_WARM_AGAIN;
        goto done;
    }
    if (stream_finish(&rs.out) < 0 || stream_finish(&rs.err) < 0 || stream_finish(&rs.cc) < 0) {
        snprintf(err, errlen, "sandbox: out of memory");
        goto done;
    }
    if (out->status == SBX_INTERNAL_ERROR) {
        snprintf(err, errlen, "%s", out->message);
        goto done;
    }
    rc = 0;
done:
    if (rs.pid > 0 && !rs.exited && rs.warm) {
        kill_tree(&rs);
        /* Bounded: a dead namespace cannot delay its init's exit for long. */
        struct pollfd pf = { rs.pidfd, POLLIN, 0 };
        while (poll(&pf, 1, 5000) < 0 && errno == EINTR)
            ;
    } else if (rs.pid > 0 && !rs.exited) {
        kill(rs.pid, SIGKILL);
        while (waitpid(rs.pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
    }
    int fds[] = { sync[0], sync[1], stat[0], stat[1], in[0], in[1], po[0], po[1], pe[0], pe[1],
                  pc[0], pc[1], rs.pidfd, rs.sync_w, rs.status_r, rs.stdin_w, rs.out.fd,
                  rs.err.fd, rs.cc.fd };
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    /* The tree is dead: nothing of it is left in the namespace. */
    sbx__netns_release(netns);
    if (rs.have_cg && sbx__cg_destroy(&rs.cg) < 0 && rc == 0) {
        /* The result stands; the directory is retried before later runs
         * (cgroup.c), but say so rather than hide it. */
        snprintf(out->message + strlen(out->message),
                 sizeof out->message - strlen(out->message), "%s(run cgroup not removed)",
                 out->message[0] ? " " : "");
    }
    if (rc != 0) {
        free(out->out.data);
        free(out->err.data);
        free(out->compile.data);
        memset(&out->out, 0, sizeof out->out);
        memset(&out->err, 0, sizeof out->err);
        memset(&out->compile, 0, sizeof out->compile);
        if (rc == SBX_EINTERNAL) {
            out->status = SBX_INTERNAL_ERROR;
            snprintf(out->message, sizeof out->message, "%s", err);
        }
    }
    return rc;
}

int sbx_run(sbx_result *out, const sbx_request *req, char *err, size_t errlen)
{
    char scratch[256];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    start_result(out);
    if (!sbx__g.ready) {
        snprintf(err, errlen, "sandbox not initialised: call sbx_init() first");
        return SBX_EINVALID;
    }
    sbx__plan plan;
    sbx_limits lim;
    if (!req || make_plan(&plan, &lim, req, err, errlen) < 0) {
        if (!req)
            snprintf(err, errlen, "no request");
        return SBX_EINVALID;
    }
    /* Warm first; a second warm try when the first zygote died under the
     * run, then cold. */
    for (int attempt = 0; req->warm && sbx__warm_eligible(req->language) && attempt < 2; attempt++) {
        int rc = run_plan(out, req, plan, &lim, true, err, errlen);
        if (rc != RUN_COLD_INSTEAD && rc != RUN_WARM_AGAIN)
            return rc;
        start_result(out);
        err[0] = '\0';
        if (rc == RUN_COLD_INSTEAD)
            break;
    }
    return run_plan(out, req, plan, &lim, false, err, errlen);
}
