/*
 * What runs inside the new namespaces.
 *
 * The parent clones a child with new user, PID, mount, network, IPC and UTS
 * namespaces (sbx__clone). That child is PID 1 of its namespace: it waits for
 * the parent to write its uid/gid maps and move it into the run cgroups,
 * builds a fresh root, pivots into it, and becomes a tiny init that starts
 * the compiler (if any) and the program, reaps orphans, and reports the
 * program's wait status on the status pipe. When the program exits, init
 * exits, and the kernel kills everything left in the PID namespace: a
 * background process that sleeps forever dies with the run, and the parent's
 * wall-clock limit needs to kill only init.
 *
 * Code here runs in a copy of a possibly multi-threaded process, so it only
 * makes system calls and touches memory prepared by the parent: no malloc,
 * no stdio, no locks (see sbx__plan).
 *
 * The new root, all in a tmpfs that nobody outside this mount namespace sees:
 *   /usr /lib /lib64 /bin /sbin  read-only bind mounts (or the host's symlinks
 *                                 into /usr, on merged-/usr systems)
 *   /etc           passwd, group, hosts, and a read-only ld.so.cache
 *   /dev           null zero full random urandom (bind mounts of the host's)
 *   /work          tmpfs, size-capped: the code and extra files; the cwd
 *   /tmp           tmpfs, size-capped
 * No /proc, no /sys: nothing about other processes or the host to read.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

/* The new root is assembled on the host's /tmp mount point, which this
 * private mount namespace may cover freely; it never touches the host's /tmp. */
#define STAGE "/tmp"

/* Fixed fd numbers inside the child (see renumber_fds). */
enum { FD_SYNC = 3, FD_STATUS, FD_STDIN, FD_STDOUT, FD_STDERR, FD_COMPILE, FD_FIRST_FREE };

pid_t sbx__clone(unsigned long flags)
{
    /* x86-64 and arm64 agree on (flags, stack, parent_tid, child_tid, tls) up to
     * the last two; both are unused here. A NULL stack means "share the
     * current stack, copy-on-write", as fork() does. */
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

/* ---- reporting ------------------------------------------------------------------ */

static void copy_str(char *dst, size_t cap, const char *a, const char *b)
{
    size_t n = 0;
    for (; a && *a && n + 1 < cap; a++)
        dst[n++] = *a;
    for (; b && *b && n + 1 < cap; b++)
        dst[n++] = *b;
    dst[n] = '\0';
}

static void send_msg(int fd, int kind, int phase, int err, const char *what, const char *arg)
{
    sbx__msg m;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    m.phase = phase;
    m.err = err;
    copy_str(m.what, sizeof m.what, what, arg);
    ssize_t r = write(fd, &m, sizeof m);
    (void)r;
}

static __attribute__((noreturn)) void setup_fail(const char *what, const char *arg)
{
    send_msg(FD_STATUS, SBX__MSG_SETUP_ERROR, 0, errno, what, arg);
    _exit(1);
}

/* ---- small helpers ---------------------------------------------------------------- */

static int close_from(int first)
{
    if (syscall(SYS_close_range, (unsigned)first, ~0u, 0u) == 0)
        return 0;
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = first; fd < max; fd++)
        close(fd);
    return 0;
}

/* Gives the plan's fds the fixed numbers above and closes everything else:
 * the copy holds every fd of the parent, including other runs' pipes, which
 * must not stay open here (their readers would never see EOF). */
static void renumber_fds(const sbx__plan *p)
{
    int want[] = { p->sync_r, p->status_w, p->stdin_r, p->stdout_w, p->stderr_w, p->compile_w };
    int tmp[6];
    for (int i = 0; i < 6; i++) {
        tmp[i] = -1;
        /* Above the targets, so the dup2 below never overwrites a source. */
        if (want[i] >= 0 && (tmp[i] = fcntl(want[i], F_DUPFD, FD_FIRST_FREE)) < 0)
            _exit(1);
    }
    for (int i = 0; i < 6; i++) {
        if (tmp[i] >= 0 && dup2(tmp[i], FD_SYNC + i) < 0)
            _exit(1);
        if (tmp[i] < 0)
            close(FD_SYNC + i);
    }
    close_from(FD_FIRST_FREE);
}

static void reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < 65; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int put_file(const char *path, const char *content, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    int r = write_all(fd, content, len);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

/* Mount flags that a bind mount inherited from a more privileged mount
 * namespace has locked: a remount inside a user namespace must keep them. */
static unsigned long locked_flags(const char *path)
{
    struct statvfs sv;
    unsigned long f = 0;
    if (statvfs(path, &sv) < 0)
        return 0;
    if (sv.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* struct mount_attr of <linux/mount.h>, which clashes with <sys/mount.h> in
 * glibc 2.36. */
struct sbx_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define SBX_MOUNT_ATTR_RDONLY 0x1
#define SBX_MOUNT_ATTR_NOSUID 0x2
#define SBX_MOUNT_ATTR_NODEV  0x4
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

/* Read-only bind mount of src's whole tree. mount_setattr(AT_RECURSIVE)
 * makes mounts below src read-only too; the remount fallback (kernels before
 * 5.12) covers only the top one. */
static int bind_ro(const char *src, const char *dst, unsigned long extra)
{
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    struct sbx_mount_attr attr = { SBX_MOUNT_ATTR_RDONLY | SBX_MOUNT_ATTR_NOSUID |
                                       (extra & MS_NODEV ? SBX_MOUNT_ATTR_NODEV : 0),
                                   0, 0, 0 };
    if (syscall(SYS_mount_setattr, AT_FDCWD, dst, AT_RECURSIVE, &attr, sizeof attr) == 0)
        return 0;
    return mount(NULL, dst, NULL,
                 MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | extra | locked_flags(dst), NULL);
}

/* ---- the root --------------------------------------------------------------------- */

static const char *const root_dirs[][2] = {
    { "/usr", STAGE "/usr" }, { "/lib", STAGE "/lib" }, { "/lib64", STAGE "/lib64" },
    { "/lib32", STAGE "/lib32" }, { "/bin", STAGE "/bin" }, { "/sbin", STAGE "/sbin" },
};

static const char *const dev_nodes[][2] = {
    { "/dev/null", STAGE "/dev/null" },     { "/dev/zero", STAGE "/dev/zero" },
    { "/dev/full", STAGE "/dev/full" },     { "/dev/random", STAGE "/dev/random" },
    { "/dev/urandom", STAGE "/dev/urandom" },
};

static const char etc_passwd[] = "sandbox:x:0:0:sandbox:/work:/bin/sh\n"
                                 "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
static const char etc_group[] = "sandbox:x:0:\nnogroup:x:65534:\n";
static const char etc_hosts[] = "127.0.0.1 localhost sandbox\n::1 localhost\n";

/* Become uid/gid 0 of the new user namespace. The map does not change our
 * credentials: as the host's root we are still kuid 0 (unmapped here) until
 * we switch. setgroups() drops the host's supplementary groups where the
 * parent allowed it (real root); unprivileged parents must deny it, and the
 * user's own groups then stay, as with any user namespace. */
static int become_ns_root(void)
{
    /* Raw system calls: glibc's wrappers broadcast credential changes to
     * every thread it knows of, and in this copy of a multi-threaded parent
     * those threads do not exist, so the wrapper would wait forever. */
    if (syscall(SYS_setgroups, 0, NULL) < 0 && errno != EPERM)
        return -1;
    if (syscall(SYS_setresgid, 0, 0, 0) < 0)
        return -1;
    return (int)syscall(SYS_setresuid, 0, 0, 0);
}

/* Builds the root in STAGE, pivots into it and enters /work. On failure,
 * returns -1 with *what (and errno) saying which step. */
static int build_root(const sbx__plan *p, const char **what, const char **arg)
{
    char path[SBX__PATH_MAX];
    *arg = NULL;
#define STEP(desc, a, expr)                                                                     \
    do {                                                                                        \
        if ((expr) < 0) {                                                                       \
            *what = desc;                                                                       \
            *arg = a;                                                                           \
            return -1;                                                                          \
        }                                                                                       \
    } while (0)

    STEP("switch to the namespace's root", NULL, become_ns_root());
    /* Nothing mounted here may propagate back to the host. */
    STEP("make mounts private", NULL, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    STEP("mount root tmpfs", NULL,
         mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=512,mode=0755"));
    for (size_t i = 0; i < sizeof root_dirs / sizeof root_dirs[0]; i++) {
        struct stat st;
        if (lstat(root_dirs[i][0], &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            char target[256];
            ssize_t n = readlink(root_dirs[i][0], target, sizeof target - 1);
            STEP("readlink", root_dirs[i][0], n < 0 ? -1 : 0);
            target[n] = '\0';
            STEP("symlink", root_dirs[i][1], symlink(target, root_dirs[i][1]));
        } else if (S_ISDIR(st.st_mode)) {
            STEP("mkdir", root_dirs[i][1], mkdir(root_dirs[i][1], 0755));
            STEP("bind mount", root_dirs[i][0], bind_ro(root_dirs[i][0], root_dirs[i][1], MS_NODEV));
        }
    }

    STEP("mkdir", "/etc", mkdir(STAGE "/etc", 0755));
    STEP("write", "/etc/passwd", put_file(STAGE "/etc/passwd", etc_passwd, sizeof etc_passwd - 1, 0644));
    STEP("write", "/etc/group", put_file(STAGE "/etc/group", etc_group, sizeof etc_group - 1, 0644));
    STEP("write", "/etc/hosts", put_file(STAGE "/etc/hosts", etc_hosts, sizeof etc_hosts - 1, 0644));
    /* The dynamic loader works without its cache, but slower. */
    if (access("/etc/ld.so.cache", R_OK) == 0) {
        STEP("write", "/etc/ld.so.cache", put_file(STAGE "/etc/ld.so.cache", "", 0, 0644));
        STEP("bind mount", "/etc/ld.so.cache",
             bind_ro("/etc/ld.so.cache", STAGE "/etc/ld.so.cache", MS_NODEV));
    }

    STEP("mkdir", "/dev", mkdir(STAGE "/dev", 0755));
    for (size_t i = 0; i < sizeof dev_nodes / sizeof dev_nodes[0]; i++) {
        /* mknod needs CAP_MKNOD in the initial namespace; bind mounts of the
         * host's nodes do not, and keep working on the host's superblock. */
        STEP("create", dev_nodes[i][1], put_file(dev_nodes[i][1], "", 0, 0666));
        STEP("bind mount", dev_nodes[i][0],
             mount(dev_nodes[i][0], dev_nodes[i][1], NULL, MS_BIND, NULL));
        STEP("remount", dev_nodes[i][0],
             mount(NULL, dev_nodes[i][1], NULL,
                   MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC | locked_flags(dev_nodes[i][1]),
                   NULL));
    }
    STEP("symlink", "/dev/fd", symlink("/proc/self/fd", STAGE "/dev/fd"));

    STEP("mkdir", "/work", mkdir(STAGE "/work", 0755));
    STEP("mount /work tmpfs", NULL,
         mount("tmpfs", STAGE "/work", "tmpfs", MS_NOSUID | MS_NODEV, p->work_opts));
    STEP("mkdir", "/tmp", mkdir(STAGE "/tmp", 0755));
    STEP("mount /tmp tmpfs", NULL,
         mount("tmpfs", STAGE "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, p->tmp_opts));

    if (p->main_file) {
        copy_str(path, sizeof path, STAGE "/work/", p->main_file);
        STEP("write", p->main_file, put_file(path, p->code, p->code_len, 0644));
    }
    for (size_t i = 0; i < p->nfiles; i++) {
        copy_str(path, sizeof path, STAGE "/work/", p->files[i].name);
        STEP("write", p->files[i].name, put_file(path, p->files[i].content, p->files[i].len,
                                                 p->files[i].executable ? 0755 : 0644));
    }

    /* pivot_root(".", ".") stacks the old root under the new one; detaching
     * it leaves no path back to the host's tree. */
    STEP("chdir", STAGE, chdir(STAGE));
    STEP("pivot_root", NULL, (int)syscall(SYS_pivot_root, ".", "."));
    STEP("detach old root", NULL, umount2(".", MNT_DETACH));
    STEP("chdir", "/", chdir("/"));
    STEP("remount / read-only", NULL,
         mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL));
    STEP("chdir", "/work", chdir("/work"));
    STEP("sethostname", NULL, sethostname("sandbox", 7));

    /* The network namespace has only lo, down: bring it up so programs that
     * talk to themselves over 127.0.0.1 work. Nothing else is reachable. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        memcpy(ifr.ifr_name, "lo", 3);
        ifr.ifr_flags = IFF_UP | IFF_RUNNING;
        (void)ioctl(s, SIOCSIFFLAGS, &ifr);
        close(s);
    }
    return 0;
#undef STEP
}

/* ---- dropping privileges and exec ---------------------------------------------- */

static int drop_privileges(const struct sock_fprog *filter)
{
    /* We are uid 0 of our own user namespace, with every capability in it.
     * Lock "root has no special powers" so that exec does not give them back,
     * empty the bounding and ambient sets, then the current sets. */
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                     SECBIT_NO_CAP_AMBIENT_RAISE |
                                     SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) < 0)
        return -1;
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    if (filter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) < 0)
        return -1;
    return 0;
}

static void set_limit(int res, uint64_t soft, uint64_t hard)
{
    struct rlimit rl = { (rlim_t)soft, (rlim_t)hard };
    (void)setrlimit(res, &rl);
}

enum { PHASE_RUN = 0, PHASE_COMPILE = 1 };

/* The compiler's or the program's process: stdio, limits, privileges, exec.
 * Failures before execve are reported as an errno on fd 3 (close-on-exec, so
 * a successful exec reports nothing). */
static __attribute__((noreturn)) void exec_child(const sbx__plan *p, int phase, int exec_w)
{
    int e = fcntl(exec_w, F_DUPFD_CLOEXEC, 32);
    if (e < 0)
        _exit(127);
    int ok = 1;
    if (phase == PHASE_RUN) {
        ok &= dup2(FD_STDIN, 0) == 0;
        ok &= dup2(FD_STDOUT, 1) == 1;
        ok &= dup2(FD_STDERR, 2) == 2;
    } else {
        int nul = open("/dev/null", O_RDONLY);
        ok &= nul >= 0 && dup2(nul, 0) == 0;
        ok &= dup2(FD_COMPILE, 1) == 1;
        ok &= dup2(FD_COMPILE, 2) == 2;
    }
    ok &= dup3(e, 3, O_CLOEXEC) == 3;
    close_from(4);
    int err = errno;
    if (ok) {
        reset_signals();
        if (p->zygote) {
            /* Each run's process sets its own limits and drops its own
             * privileges (zygote.py); the zygote keeps what it needs to
             * build the runs' namespaces. */
            set_limit(RLIMIT_CORE, 0, 0);
            execve(p->run_argv[0], (char *const *)p->run_argv, (char *const *)p->envp);
            err = errno;
            ssize_t w = write(3, &err, sizeof err);
            (void)w;
            _exit(127);
        }
        if (phase == PHASE_RUN) {
            set_limit(RLIMIT_CPU, p->run_cpu_s, p->run_cpu_s + 1);
            set_limit(RLIMIT_AS, p->run_as_bytes, p->run_as_bytes);
            set_limit(RLIMIT_FSIZE, p->run_fsize, p->run_fsize);
            set_limit(RLIMIT_NPROC, p->run_nproc, p->run_nproc);
        } else {
            set_limit(RLIMIT_CPU, p->cc_cpu_s, p->cc_cpu_s + 1);
            set_limit(RLIMIT_AS, p->cc_as_bytes, p->cc_as_bytes);
            set_limit(RLIMIT_FSIZE, 256u << 20, 256u << 20);
            set_limit(RLIMIT_NPROC, p->cc_nproc, p->cc_nproc);
        }
        set_limit(RLIMIT_NOFILE, 256, 256);
        set_limit(RLIMIT_CORE, 0, 0);
        set_limit(RLIMIT_MEMLOCK, 0, 0);
        set_limit(RLIMIT_MSGQUEUE, 0, 0);
        if (drop_privileges(p->filter) == 0) {
            const char *const *argv = phase == PHASE_RUN ? p->run_argv : p->compile_argv;
            execve(argv[0], (char *const *)argv, (char *const *)p->envp);
        }
        err = errno;
    }
    ssize_t r = write(3, &err, sizeof err);
    (void)r;
    _exit(127);
}

/* Starts the program or the compiler. Returns its pid, or -1 after reporting
 * an exec error (the child is then reaped). */
static pid_t spawn(const sbx__plan *p, int phase, int *status)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        setup_fail("pipe", NULL);
    pid_t pid = sbx__clone(0);
    if (pid < 0)
        setup_fail("fork", NULL);
    if (pid == 0)
        exec_child(p, phase, pfd[1]);
    close(pfd[1]);
    int err = 0;
    ssize_t n;
    do
        n = read(pfd[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    close(pfd[0]);
    if (n == (ssize_t)sizeof err) {
        const char *const *argv = phase == PHASE_RUN ? p->run_argv : p->compile_argv;
        send_msg(FD_STATUS, SBX__MSG_EXEC_ERROR, phase, err, "cannot execute ", argv[0]);
        while (waitpid(pid, status, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    return pid;
}

static uint64_t tv_us(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* Reaps everything until `pid` exits; returns its status. CPU time and peak
 * RSS of every reaped process (orphans reparent to us) go into cpu_us and rss_kb. */
static int reap_until(pid_t pid, uint64_t *cpu_us, uint64_t *rss_kb)
{
    for (;;) {
        int st;
        struct rusage ru;
        pid_t w = wait4(-1, &st, __WALL, &ru);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        *cpu_us += tv_us(ru.ru_utime) + tv_us(ru.ru_stime);
        if ((uint64_t)ru.ru_maxrss > *rss_kb)
            *rss_kb = (uint64_t)ru.ru_maxrss;
        if (w == pid)
            return st;
    }
}

void sbx__child_main(const sbx__plan *p)
{
    /* If the server dies, so does the run. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    renumber_fds(p);
    reset_signals();
    /* Our process group was the server's: kill(0, ...) in the program would
     * reach every process of the server's group that runs under the same
     * outside uid, which is every other run. A session of our own stops it. */
    (void)setsid();
    char go;
    if (read(FD_SYNC, &go, 1) != 1)
        _exit(1);
    /* Our stdio are the server's: replace them. */
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
        setup_fail("open /dev/null", NULL);
    close(nul);

    const char *what, *arg;
    if (build_root(p, &what, &arg) < 0)
        setup_fail(what, arg);
    /* The parent moves us into the run cgroups while we build the root (the
     * move can cost an RCU grace period); nothing runs before it is done. */
    if (read(FD_SYNC, &go, 1) != 1)
        _exit(1);
    /* Keep the program (same uid as us) from reading our memory. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    int st = 0;
    uint64_t cpu = 0, rss = 0;
    if (p->compile_argv) {
        pid_t cc = spawn(p, PHASE_COMPILE, &st);
        if (cc < 0)
            _exit(0);
        st = reap_until(cc, &cpu, &rss);
        if (st < 0)
            setup_fail("wait for the compiler", NULL);
        sbx__msg m;
        memset(&m, 0, sizeof m);
        m.kind = SBX__MSG_COMPILED;
        m.phase = PHASE_COMPILE;
        m.status = st;
        if (write(FD_STATUS, &m, sizeof m) != (ssize_t)sizeof m)
            _exit(1);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(0);
        /* The parent switches the cgroup to the program's limits, then says go. */
        if (read(FD_SYNC, &go, 1) != 1)
            _exit(1);
        cpu = rss = 0;
    }
    close(FD_COMPILE);
    pid_t prog = spawn(p, PHASE_RUN, &st);
    /* Only the program may hold the output pipes: EOF on them then means the
     * program's tree is gone. */
    close(FD_STDIN);
    close(FD_STDOUT);
    close(FD_STDERR);
    if (prog < 0)
        _exit(0);
    st = reap_until(prog, &cpu, &rss);
    if (st < 0)
        setup_fail("wait for the program", NULL);
    sbx__msg m;
    memset(&m, 0, sizeof m);
    m.kind = SBX__MSG_EXITED;
    m.status = st;
    m.cpu_us = cpu;
    m.maxrss_kb = rss;
    ssize_t r = write(FD_STATUS, &m, sizeof m);
    (void)r;
    _exit(0);
}

void sbx__child_probe(int status_w, int sync_r, const struct sock_fprog *filter)
{
    sbx__plan p;
    memset(&p, 0, sizeof p);
    p.sync_r = sync_r;
    p.status_w = status_w;
    p.stdin_r = p.stdout_w = p.stderr_w = p.compile_w = -1;
    memcpy(p.work_opts, "size=1m,mode=0755", 18);
    memcpy(p.tmp_opts, "size=1m,mode=1777", 18);
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    renumber_fds(&p);
    char go;
    if (read(FD_SYNC, &go, 1) != 1)
        _exit(1);
    const char *what, *arg;
    if (build_root(&p, &what, &arg) < 0)
        setup_fail(what, arg);
    if (drop_privileges(filter) < 0)
        setup_fail("drop privileges / load the seccomp filter", NULL);
    _exit(0);
}
