/*
 * The seccomp filter, written as data: a deny list on top of a default of
 * "allow". Namespaces already take away the host's files, processes and
 * network; the filter removes the kernel interfaces that let code out of
 * namespaces or that attack the kernel itself, which is where sandbox escapes
 * come from in practice. Any listed call kills the whole process (SIGSYS),
 * which sbx_run reports as SYSCALL_VIOLATION.
 *
 * The filter is compiled once (sbx_init) to classic BPF and installed by the
 * child with a plain seccomp() call, so the child, a copy of a multi-threaded
 * process, never calls into libseccomp (which allocates).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

/* Killed outright. Names, not numbers, so libseccomp resolves them per
 * architecture; names unknown to it (or to this kernel) are skipped. */
static const struct {
    const char *name;
    const char *why;
} denied[] = {
    { "ptrace", "inspect or control other processes" },
    { "process_vm_readv", "read another process's memory" },
    { "process_vm_writev", "write another process's memory" },
    { "kcmp", "compare kernel objects of other processes" },
    { "pidfd_getfd", "steal file descriptors of other processes" },
    { "mount", "change the mount table" },
    { "umount2", "change the mount table" },
    { "pivot_root", "change the root" },
    { "chroot", "change the root (a classic escape with an open directory fd)" },
    { "fsopen", "new mount API" },
    { "fsconfig", "new mount API" },
    { "fsmount", "new mount API" },
    { "fspick", "new mount API" },
    { "move_mount", "new mount API" },
    { "open_tree", "new mount API" },
    { "mount_setattr", "new mount API" },
    { "unshare", "new namespaces: the way into most kernel attack surface" },
    { "setns", "join other namespaces" },
    { "bpf", "eBPF programs: large kernel attack surface" },
    { "perf_event_open", "kernel profiling: side channels, history of bugs" },
    { "keyctl", "kernel keyrings are not namespaced" },
    { "add_key", "kernel keyrings are not namespaced" },
    { "request_key", "kernel keyrings are not namespaced" },
    { "kexec_load", "replace the running kernel" },
    { "kexec_file_load", "replace the running kernel" },
    { "init_module", "load kernel modules" },
    { "finit_module", "load kernel modules" },
    { "delete_module", "unload kernel modules" },
    { "reboot", "reboot the host" },
    { "io_uring_setup", "io_uring bypasses seccomp for the operations it performs" },
    { "io_uring_enter", "io_uring bypasses seccomp for the operations it performs" },
    { "io_uring_register", "io_uring bypasses seccomp for the operations it performs" },
    { "userfaultfd", "stalls kernel code paths: a race-exploitation primitive" },
    { "settimeofday", "set the host clock" },
    { "clock_settime", "set the host clock" },
    { "clock_adjtime", "adjust the host clock" },
    { "adjtimex", "adjust the host clock" },
    { "swapon", "host swap" },
    { "swapoff", "host swap" },
    { "acct", "process accounting to a file" },
    { "quotactl", "filesystem quotas" },
    { "quotactl_fd", "filesystem quotas" },
    { "lookup_dcookie", "kernel profiling" },
    { "open_by_handle_at", "opens files by handle, bypassing the mount root (shocker)" },
    { "name_to_handle_at", "companion of open_by_handle_at" },
    { "fanotify_init", "watch whole filesystems" },
    { "syslog", "kernel log" },
    { "vhangup", "hang up terminals" },
    { "uselib", "obsolete loader" },
    { "ioperm", "raw I/O ports" },
    { "iopl", "raw I/O ports" },
    { "sethostname", "no reason to" },
    { "setdomainname", "no reason to" },
    { "nfsservctl", "obsolete" },
    { "vm86", "obsolete" },
    { "vm86old", "obsolete" },
    { "modify_ldt", "old attack surface (x86)" },
    { "move_pages", "NUMA page moving of other processes" },
    { "migrate_pages", "NUMA page moving of other processes" },
};

/* Namespace flags that clone() must not carry: clone is allowed (threads,
 * fork, posix_spawn), but not as a way around the unshare ban. CLONE_NEWTIME
 * is left out: its value is inside CSIGNAL for clone(). */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
    CLONE_NEWCGROUP,
};

int sbx__seccomp_build(struct sock_filter **out, unsigned short *len, char *err, size_t errlen)
{
    int rc = -1, fd = -1, r;
    struct sock_filter *prog = NULL;
    *out = NULL;
    *len = 0;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(err, errlen, "seccomp: cannot create a filter (libseccomp)");
        return -1;
    }
    /* Other architectures' system calls (i386 through int 0x80, x32) would get
     * around a table of x86-64 numbers: kill them. */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r < 0)
        goto fail;
    /* A binary tree instead of a linear scan over the deny list: every system
     * call of the program walks this filter. */
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        int nr = seccomp_syscall_resolve_name(denied[i].name);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue;   /* not on this architecture (vm86 on x86-64 ...) */
        r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, nr, 0);
        if (r < 0)
            goto fail;
    }
    /* clone3 passes its flags in memory, which BPF cannot read. ENOSYS (not
     * EPERM, not kill) makes glibc fall back to clone(), whose flags we check;
     * with EPERM, Python cannot start threads. */
    r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (r < 0)
        goto fail;
    for (size_t i = 0; i < sizeof clone_ns_flags / sizeof clone_ns_flags[0]; i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
        if (r < 0)
            goto fail;
    }
    /* personality(): only querying (0xffffffff). Setting one can disable ASLR
     * (ADDR_NO_RANDOMIZE) or change how the kernel lays out memory; setting
     * the default PER_LINUX is killed too, as libseccomp 2.5 cannot compare
     * one argument twice in a rule and nothing we run calls it. */
    r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(personality), 1,
                         SCMP_A0(SCMP_CMP_NE, 0xffffffffu));
    if (r < 0)
        goto fail;
    /* TIOCSTI pushes bytes into a terminal's input: the classic escape when a
     * sandbox shares a tty. The sandbox has none, but the ioctl stays banned. */
    r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(ioctl), 1,
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
    if (r < 0)
        goto fail;

    /* libseccomp 2.5 exports only to a file descriptor. */
    fd = memfd_create("sbx-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "seccomp: memfd_create: %s", strerror(errno));
        goto done;
    }
    r = seccomp_export_bpf(ctx, fd);
    if (r < 0)
        goto fail;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
        size / (off_t)sizeof(struct sock_filter) > 4096) {
        snprintf(err, errlen, "seccomp: exported filter has a bad size (%lld bytes)",
                 (long long)size);
        goto done;
    }
    prog = malloc((size_t)size);
    if (!prog) {
        snprintf(err, errlen, "seccomp: out of memory");
        goto done;
    }
    if (pread(fd, prog, (size_t)size, 0) != size) {
        snprintf(err, errlen, "seccomp: cannot read back the exported filter");
        goto done;
    }
    *out = prog;
    *len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    prog = NULL;
    rc = 0;
    goto done;
fail:
    snprintf(err, errlen, "seccomp: libseccomp failed building the filter: %s", strerror(-r));
done:
    free(prog);
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}
