/*
 * The attack suite of sandbox/: hostile programs in Python, C and shell, each
 * with the status it must end with (and, where it matters, what its output
 * must or must not say). All attacks run first, concurrently on four threads
 * (which also exercises sbx_run's thread safety), in the group setup; each
 * test then checks one result. The last test checks that the host is
 * unchanged: no children left, no run cgroups, no new mounts, no files in
 * the host's /tmp, nothing listening socket got a connection.
 *
 * Every Python attack runs twice, cold and in a warm interpreter (a zygote
 * that forks each run), with the same expectations. The warm sequences below
 * add what only a warm interpreter could get wrong: a run that leaves files,
 * changed modules, threads or processes behind, or attacks the zygote, and a
 * later run on the same zygote that must see none of it.
 *
 * Needs namespaces and seccomp (it runs as root in CI); skips when sbx_init
 * finds no tier. The interpreters are Debian's (/usr/bin/python3, gcc, bash).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

#define C_PRELUDE                                                                             \
    "#define _GNU_SOURCE\n#include <errno.h>\n#include <fcntl.h>\n#include <pthread.h>\n#include <sched.h>\n"       \
    "#include <signal.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"      \
    "#include <time.h>\n#include <unistd.h>\n#include <sys/ioctl.h>\n#include <sys/mman.h>\n"  \
    "#include <sys/mount.h>\n#include <sys/personality.h>\n#include <sys/reboot.h>\n"          \
    "#include <sys/syscall.h>\n#include <sys/stat.h>\n"

#define PY_CTYPES "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"

typedef struct attack {
    const char *name;
    const char *lang;
    const char *code;           /* %PORT% and %SRC% are replaced */
    sbx_status want;
    int want_signal;            /* 0: not checked */
    const char *want_out;       /* stdout must contain this */
    const char *deny;           /* neither stdout nor stderr may contain this */
    size_t stdin_bytes;         /* stdin of this many 'x' */
} attack;

/* What the setup got for attacks[i]. */
typedef struct outcome {
    sbx_result res;
    int rc;
    char err[256];
} outcome;

static attack attacks[] = {
    /* ---- process bombs ---- */
    /* A fork bomb is stopped by whichever limit it meets first: the pids cap
     * leaves the processes spinning until the CPU limit, but on some kernels
     * the memory charged to failing forks (task structs, page tables) reaches
     * the memory cap first (seen in CI). Both contain it: check_attack
     * accepts MEMORY_LIMIT_EXCEEDED for these two. */
    { "fork_bomb_py", "python3",
      "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
      SBX_TIME_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "fork_bomb_c", "c", C_PRELUDE "int main(void) { for (;;) fork(); }\n",
      SBX_TIME_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    /* The script forks nothing once the bomb is going (bash retries a failing
     * fork for up to 31 s): it forks once (b &; calling b in the shell itself
     * would fork each side of the pipe, racing the bomb), then waits 0.3 s with
     * a builtin read on a fifo. (A pipe from <(...) needs /dev/fd, i.e. /proc,
     * which the sandbox does not mount.) */
    { "fork_bomb_sh", "bash",
      "mkfifo w && exec 9<>w\nb() { b | b & }\nb &\nread -t 0.3 -u 9\necho survived\n", SBX_OK, 0,
      "survived", NULL, 0 },
    { "fork_count_c", "c",
      C_PRELUDE "int main(void) { int n = 0; while (n < 10000 && fork() > 0) n++;\n"
                "  printf(\"forks %d\\n\", n); return n < 64 ? 0 : 1; }\n",
      SBX_OK, 0, "forks", NULL, 0 },
    { "thread_bomb_py", "python3",
      "import threading, time\nev = threading.Event()\nn = 0\ntry:\n"
      "    for i in range(100000):\n        threading.Thread(target=ev.wait, daemon=True).start()\n"
      "        n += 1\nexcept RuntimeError:\n    pass\nprint('threads', n)\nev.set()\n"
      "assert n < 64\n",
      SBX_OK, 0, "threads", NULL, 0 },
    { "thread_bomb_c", "c",
      C_PRELUDE "static void *f(void *a) { pause(); return a; }\n"
                "int main(void) { pthread_t t; int n = 0;\n"
                "  while (n < 100000 && pthread_create(&t, NULL, f, NULL) == 0) n++;\n"
                "  printf(\"threads %d\\n\", n); return n < 64 ? 0 : 1; }\n",
      SBX_OK, 0, "threads", NULL, 0 },
    /* ---- memory ---- */
    { "memory_bomb_py", "python3", "a = []\nwhile True:\n    a.append(' ' * 10**6)\n",
      SBX_MEMORY_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "memory_bomb_c", "c",
      C_PRELUDE "int main(void) { for (;;) { char *p = malloc(1 << 20); if (!p) return 3;\n"
                "  memset(p, 1, 1 << 20); } }\n",
      SBX_MEMORY_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "memory_bomb_sh", "bash", "a=xxxxxxxxxxxxxxxx\nwhile :; do a=$a$a; done\n",
      SBX_MEMORY_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "huge_alloc_py", "python3", "x = bytearray(64 * 2**30)\n", SBX_RUNTIME_ERROR, 0, NULL,
      NULL, 0 },
    { "mmap_bomb_c", "c",
      C_PRELUDE "int main(void) { for (;;) { char *p = mmap(0, 1 << 24, PROT_READ|PROT_WRITE,\n"
                "  MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0); if (p == MAP_FAILED) return 3; } }\n",
      SBX_MEMORY_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    /* ---- time ---- */
    { "infinite_loop_py", "python3", "while True:\n    pass\n", SBX_TIME_LIMIT_EXCEEDED, 0, NULL,
      NULL, 0 },
    { "infinite_loop_c", "c", C_PRELUDE "int main(void) { volatile int x = 0; for (;;) x++; }\n",
      SBX_TIME_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "infinite_loop_sh", "bash", "while :; do :; done\n", SBX_TIME_LIMIT_EXCEEDED, 0, NULL,
      NULL, 0 },
    { "sleep_forever_py", "python3", "import time\ntime.sleep(10**6)\n", SBX_TIME_LIMIT_EXCEEDED,
      0, NULL, NULL, 0 },
    { "sleep_forever_c", "c", C_PRELUDE "int main(void) { pause(); }\n", SBX_TIME_LIMIT_EXCEEDED,
      0, NULL, NULL, 0 },
    { "sleep_forever_sh", "bash", "sleep infinity\n", SBX_TIME_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "ignore_signals_py", "python3",
      "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):\n"
      "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n",
      SBX_TIME_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "daemon_py", "python3",
      "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
      "        time.sleep(10**6)\n    os._exit(0)\nprint('parent done')\n",
      SBX_OK, 0, "parent done", NULL, 0 },
    { "background_sleep_sh", "bash", "sleep 100000 &\nsleep 100000 &\necho started\n", SBX_OK, 0,
      "started", NULL, 0 },
    /* ---- output ---- */
    { "stdout_flood_py", "python3", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
      SBX_OUTPUT_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "stderr_flood_py", "python3", "import sys\nwhile True:\n    sys.stderr.write('y' * 65536)\n",
      SBX_OUTPUT_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "stdout_flood_c", "c",
      C_PRELUDE "int main(void) { static char b[1 << 16]; memset(b, 'z', sizeof b);\n"
                "  for (;;) if (write(1, b, sizeof b) < 0) return 1; }\n",
      SBX_OUTPUT_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "yes_sh", "bash", "yes\n", SBX_OUTPUT_LIMIT_EXCEEDED, 0, NULL, NULL, 0 },
    { "binary_output_py", "python3",
      "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 4)\n", SBX_OK, 0, NULL, NULL, 0 },
    { "invalid_utf8_c", "c",
      C_PRELUDE "int main(void) { fwrite(\"a\\xff\\xfe\\0b\\xc3\\x28\", 1, 7, stdout);\n"
                "  fwrite(\"\\xed\\xa0\\x80\", 1, 3, stderr); return 0; }\n",
      SBX_OK, 0, NULL, NULL, 0 },
    /* ---- disk ---- */
    { "fill_work_py", "python3",
      "i = 0\ntry:\n    while True:\n        with open('big%d' % i, 'wb') as f:\n"
      "            f.write(b'x' * 2**20)\n        i += 1\nexcept OSError as e:\n"
      "    print('full', e.errno)\n",
      SBX_OK, 0, "full 28", NULL, 0 },
    { "fill_tmp_sh", "bash",
      "i=0\nwhile head -c 1048576 /dev/zero > /tmp/f$i 2>/dev/null; do i=$((i+1)); done\n"
      "echo full\n",
      SBX_OK, 0, "full", NULL, 0 },
    { "file_size_c", "c",
      C_PRELUDE "int main(void) { static char b[1 << 16]; int fd = open(\"f\", O_CREAT|O_WRONLY, 0644);\n"
                "  for (int i = 0; i < 1024; i++) if (write(fd, b, sizeof b) < 0) return 2; return 0; }\n",
      SBX_OUTPUT_LIMIT_EXCEEDED, SIGXFSZ, NULL, NULL, 0 },
    { "many_files_py", "python3",
      "n = 0\ntry:\n    while True:\n        open('f%d' % n, 'w').close()\n        n += 1\n"
      "except OSError as e:\n    print('stopped', n, e.errno)\n",
      SBX_OK, 0, "stopped", NULL, 0 },
    { "write_usr_c", "c",
      C_PRELUDE "int main(void) { return open(\"/usr/evil\", O_CREAT|O_WRONLY, 0644) < 0 && "
                "errno == EROFS ? 7 : 0; }\n",
      SBX_RUNTIME_ERROR, 0, NULL, NULL, 0 },
    { "write_root_py", "python3", "open('/evil', 'w').write('x')\n", SBX_RUNTIME_ERROR, 0, NULL,
      NULL, 0 },
    { "write_host_tmp_py", "python3",
      "open('/tmp/envsrv-attack-marker', 'w').write('x')\nprint('wrote')\n", SBX_OK, 0, "wrote",
      NULL, 0 },
    /* ---- host files and the server ---- */
    { "read_shadow_py", "python3", "print(open('/etc/shadow').read())\n", SBX_RUNTIME_ERROR, 0,
      NULL, "root:", 0 },
    { "read_passwd_py", "python3", "print(open('/etc/passwd').read())\n", SBX_OK, 0, "sandbox:x:0",
      "root:x:0", 0 },
    { "read_server_files_py", "python3", "print(open('%SRC%/Makefile').read())\n",
      SBX_RUNTIME_ERROR, 0, NULL, "PREFIX", 0 },
    { "list_server_dir_sh", "bash", "ls %SRC% /work/main /root /home\n", SBX_RUNTIME_ERROR, 0, NULL,
      "Makefile", 0 },
    { "proc_environ_py", "python3", "print(open('/proc/1/environ').read())\n", SBX_RUNTIME_ERROR, 0,
      NULL, "SBX_TEST_SECRET", 0 },
    { "environment_py", "python3", "import os\nprint(sorted(os.environ))\n", SBX_OK, 0, "PATH",
      "SBX_TEST_SECRET", 0 },
    { "proc_self_root_py", "python3", "import os\nprint(os.listdir('/proc/self/root/'))\n",
      SBX_RUNTIME_ERROR, 0, NULL, NULL, 0 },
    { "symlink_escape_sh", "bash", "ln -s / r\nln -s ../../../../etc/shadow s\ncat r/etc/shadow s\n",
      SBX_RUNTIME_ERROR, 0, NULL, "root:", 0 },
    { "dev_disk_py", "python3", "import os\nprint(os.listdir('/dev'))\nopen('/dev/vda', 'rb')\n",
      SBX_RUNTIME_ERROR, 0, "null", NULL, 0 },
    { "sys_py", "python3", "import os\nprint(os.listdir('/sys'))\n", SBX_RUNTIME_ERROR, 0, NULL,
      NULL, 0 },
    /* ---- network ---- */
    { "connect_outside_py", "python3",
      "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n", SBX_RUNTIME_ERROR,
      0, NULL, NULL, 0 },
    { "connect_host_loopback_py", "python3",
      "import socket\nsocket.create_connection(('127.0.0.1', %PORT%), timeout=1)\n",
      SBX_RUNTIME_ERROR, 0, NULL, NULL, 0 },
    { "dns_py", "python3", "import socket\nprint(socket.getaddrinfo('example.com', 80))\n",
      SBX_RUNTIME_ERROR, 0, NULL, NULL, 0 },
    { "loopback_inside_py", "python3",
      "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\n"
      "c = socket.create_connection(s.getsockname())\na, _ = s.accept()\nc.sendall(b'ping')\n"
      "print(a.recv(4).decode())\n",
      SBX_OK, 0, "ping", NULL, 0 },
    /* ---- privileged system calls (seccomp) ---- */
    { "ptrace_c", "c", C_PRELUDE "#include <sys/ptrace.h>\nint main(void) { ptrace(PTRACE_TRACEME, 0, 0, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "ptrace_py", "python3", PY_CTYPES "libc.ptrace(0, 0, 0, 0)\n", SBX_SYSCALL_VIOLATION,
      SIGSYS, NULL, NULL, 0 },
    { "mount_c", "c", C_PRELUDE "int main(void) { mount(\"none\", \"/tmp\", \"tmpfs\", 0, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "unshare_py", "python3", PY_CTYPES "libc.unshare(0x10000000)\n", SBX_SYSCALL_VIOLATION,
      SIGSYS, NULL, NULL, 0 },
    { "setns_c", "c", C_PRELUDE "int main(void) { setns(0, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "clone_newuser_c", "c",
      C_PRELUDE "int main(void) { syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "clone3_enosys_c", "c",
      C_PRELUDE "int main(void) { long r = syscall(435, 0, 0);\n"
                "  printf(\"%s\\n\", r < 0 && errno == ENOSYS ? \"ENOSYS\" : \"other\"); return 0; }\n",
      SBX_OK, 0, "ENOSYS", NULL, 0 },
    { "bpf_c", "c", C_PRELUDE "int main(void) { syscall(SYS_bpf, 0, 0, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "perf_event_open_c", "c",
      C_PRELUDE "int main(void) { syscall(SYS_perf_event_open, 0, 0, -1, -1, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "keyctl_py", "python3", PY_CTYPES "libc.syscall(250, 0, 0, 0, 0)\n", SBX_SYSCALL_VIOLATION,
      SIGSYS, NULL, NULL, 0 },
    { "io_uring_c", "c", C_PRELUDE "int main(void) { syscall(425, 8, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "userfaultfd_c", "c", C_PRELUDE "int main(void) { syscall(SYS_userfaultfd, 0); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "personality_c", "c", C_PRELUDE "int main(void) { personality(ADDR_NO_RANDOMIZE); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "init_module_c", "c", C_PRELUDE "int main(void) { syscall(SYS_init_module, 0, 0, \"\"); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "reboot_c", "c", C_PRELUDE "int main(void) { reboot(RB_AUTOBOOT); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "clock_settime_c", "c",
      C_PRELUDE "int main(void) { struct timespec t = {0, 0}; clock_settime(CLOCK_REALTIME, &t); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "chroot_c", "c", C_PRELUDE "int main(void) { mkdir(\"d\", 0755); chroot(\"d\"); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "process_vm_readv_py", "python3", PY_CTYPES "libc.syscall(310, 1, 0, 0, 0, 0, 0)\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "tiocsti_c", "c", C_PRELUDE "int main(void) { char c = 'x'; ioctl(0, TIOCSTI, &c); return 0; }\n",
      SBX_SYSCALL_VIOLATION, SIGSYS, NULL, NULL, 0 },
    { "mount_via_shell_sh", "bash", "mount -t proc proc /tmp\necho rc=$?\n", SBX_OK, 0, "rc=",
      NULL, 0 },
    /* ---- identity and signals ---- */
    { "setuid_py", "python3", "import os\nos.setuid(1000)\n", SBX_RUNTIME_ERROR, 0, NULL, NULL, 0 },
    { "proc_self_status_py", "python3",
      "for l in open('/proc/self/status'):\n    print(l)\n", SBX_RUNTIME_ERROR, 0, NULL, NULL, 0 },
    { "kill_parent_py", "python3",
      "import os, signal\nfor pid in (os.getppid(), 1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
      "    except OSError:\n        pass\nprint('alive', os.getpid())\n",
      SBX_OK, 0, "alive 2", NULL, 0 },
    /* The run's own process group only: before init's setsid() this reached
     * other runs' processes (same uid outside). */
    { "kill_process_group_py", "python3",
      "import os, signal\nprint('before', flush=True)\nos.kill(0, signal.SIGKILL)\n",
      SBX_SIGNALED, SIGKILL, "before", NULL, 0 },
    { "kill_all_sh", "bash", "sleep 1000 &\nkill -9 -1\necho after\n", SBX_OK, 0, "after", NULL, 0 },
    { "segv_py", "python3", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
      SBX_SIGNALED, SIGSEGV, NULL, NULL, 0 },
    { "abort_c", "c", C_PRELUDE "int main(void) { abort(); }\n", SBX_SIGNALED, SIGABRT, NULL, NULL,
      0 },
    { "stack_overflow_c", "c",
      C_PRELUDE "static int f(volatile int n) { volatile char b[4096]; b[0] = (char)n; return f(n + 1) + b[0]; }\n"
                "int main(void) { return f(0); }\n",
      SBX_SIGNALED, SIGSEGV, NULL, NULL, 0 },
    { "recursion_py", "python3", "def f(n):\n    return f(n + 1)\nf(0)\n", SBX_RUNTIME_ERROR, 0,
      NULL, NULL, 0 },
    /* ---- stdin ---- */
    { "stdin_flood_unread_py", "python3", "print('ignored stdin')\n", SBX_OK, 0, "ignored stdin",
      NULL, 8u << 20 },
    { "stdin_flood_read_py", "python3", "import sys\nprint(len(sys.stdin.buffer.read()))\n", SBX_OK,
      0, "8388608", NULL, 8u << 20 },
    { "stdin_close_early_c", "c", C_PRELUDE "int main(void) { close(0); sleep(0); return 0; }\n",
      SBX_OK, 0, NULL, NULL, 4u << 20 },
    /* ---- faking success ---- */
    { "fake_status_records_py", "python3",
      "import os, struct\nrec = struct.pack('iiii', 4, 0, 0, 0) + bytes(112)\n"
      "for fd in range(3, 1024):\n    try:\n        os.write(fd, rec)\n    except OSError:\n"
      "        pass\nprint('OK', flush=True)\nos._exit(3)\n",
      SBX_RUNTIME_ERROR, 0, "OK", NULL, 0 },
    { "fake_unittest_ok_py", "python3",
      "import sys\nsys.stdout.write('Ran 10 tests\\n\\nOK\\n')\nsys.exit(1)\n", SBX_RUNTIME_ERROR, 0,
      NULL, NULL, 0 },
    { "exit_in_atexit_py", "python3",
      "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(5)\n", SBX_OK, 0,
      NULL, NULL, 0 },
};

#define NATTACKS (sizeof attacks / sizeof attacks[0])

/* One run of the setup: attacks[attack], cold or warm. */
typedef struct planned {
    size_t attack;
    bool warm;
} planned;

static planned runs[2 * NATTACKS];
static size_t nruns;
static outcome outcomes[2 * NATTACKS];

/* ---- the setup: run everything ------------------------------------------------------- */

static bool sandbox_ok;
static int host_port;
static int listen_fd = -1;
static char src_dir[512];
static char *mountinfo_before;
static atomic_size_t next_attack;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Replaces %PORT% and %SRC%; returns a malloc'd string. */
static char *expand(const char *code)
{
    char port[16];
    snprintf(port, sizeof port, "%d", host_port);
    size_t cap = strlen(code) * 2 + 1024;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n = 0;
    for (const char *p = code; *p;) {
        const char *rep = NULL;
        if (strncmp(p, "%PORT%", 6) == 0)
            rep = port;
        else if (strncmp(p, "%SRC%", 5) == 0)
            rep = src_dir;
        if (rep) {
            size_t l = strlen(rep);
            memcpy(out + n, rep, l);
            n += l;
            p += p[1] == 'P' ? 6 : 5;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

static void *worker(void *arg)
{
    (void)arg;
    size_t i;
    while ((i = atomic_fetch_add(&next_attack, 1)) < nruns) {
        const attack *a = &attacks[runs[i].attack];
        outcome *o = &outcomes[i];
        char *code = expand(a->code);
        char *in = NULL;
        sbx_request req = SBX_REQUEST_INIT;
        req.language = a->lang;
        req.code = code;
        req.code_len = strlen(code);
        req.limits.cpu_ms = 1000;
        req.limits.wall_ms = 3000;
        req.limits.memory_mb = 128;
        req.limits.output_bytes = 1u << 16;
        req.limits.processes = 32;
        req.limits.file_bytes = 4u << 20;
        req.limits.tmpfs_mb = 8;
        req.warm = runs[i].warm;
        if (a->stdin_bytes) {
            in = malloc(a->stdin_bytes);
            if (in) {
                memset(in, 'x', a->stdin_bytes);
                req.stdin_data = in;
                req.stdin_len = a->stdin_bytes;
            }
        }
        o->rc = sbx_run(&o->res, &req, o->err, sizeof o->err);
        free(in);
        free(code);
    }
    return NULL;
}

static int setup_all(void **state)
{
    (void)state;
    char err[256];
    if (sbx_init(NULL, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "sandbox unavailable, attacks skipped: %s\n", err);
        return 0;
    }
    sandbox_ok = true;
    /* Keep a secret in our environment: it must not reach any program. */
    setenv("SBX_TEST_SECRET", "hunter2", 1);
    const char *src = getenv("ENVSRV_SRC");
    if (!src || !*src || !realpath(src, src_dir))
        if (!getcwd(src_dir, sizeof src_dir))
            snprintf(src_dir, sizeof src_dir, "/");
    /* A listening socket on the host's loopback the sandbox must not reach. */
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(listen_fd, 8) < 0 || getsockname(listen_fd, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    host_port = ntohs(sa.sin_port);
    unlink("/tmp/envsrv-attack-marker");
    mountinfo_before = slurp("/proc/self/mountinfo");

    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&th[i], NULL, worker, NULL) != 0)
            return -1;
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    return 0;
}

static int teardown_all(void **state)
{
    (void)state;
    for (size_t i = 0; i < nruns; i++)
        sbx_result_free(&outcomes[i].res);
    if (listen_fd >= 0)
        close(listen_fd);
    free(mountinfo_before);
    return 0;
}

/* ---- the checks ------------------------------------------------------------------------ */

static bool contains(const sbx_output *o, const char *s)
{
    return o->data && memmem(o->data, o->len, s, strlen(s)) != NULL;
}

static void check_attack(void **state)
{
    if (!sandbox_ok)
        skip();
    const planned *run = *state;
    const attack *a = &attacks[run->attack];
    const outcome *oc = &outcomes[run - runs];
    const sbx_result *r = &oc->res;
    /* A warm request that ran cold would test nothing new. */
    assert_int_equal(r->warm, run->warm);
    if (oc->rc != 0)
        fail_msg("%s: sbx_run returned %d: %s", a->name, oc->rc, oc->err);
    bool memory_ok = strncmp(a->name, "fork_bomb_", 10) == 0 && strcmp(a->lang, "bash") != 0 &&
                     r->status == SBX_MEMORY_LIMIT_EXCEEDED;
    if (r->status != a->want && !memory_ok)
        fail_msg("%s: status %s, want %s (exit %d, signal %d, %s; cpu %llu ms, wall %llu ms, "
                 "mem %llu kB)\nstdout: %.300s\nstderr: %.600s\ncompile: %.300s",
                 a->name, sbx_status_name(r->status), sbx_status_name(a->want), r->exit_code,
                 r->signal, r->message, (unsigned long long)r->cpu_ms,
                 (unsigned long long)r->wall_ms, (unsigned long long)r->memory_kb, r->out.data,
                 r->err.data, r->compile.data);
    if (a->want_signal && r->signal != a->want_signal)
        fail_msg("%s: signal %d, want %d", a->name, r->signal, a->want_signal);
    if (a->want_out && !contains(&r->out, a->want_out))
        fail_msg("%s: stdout lacks '%s': %.300s", a->name, a->want_out, r->out.data);
    if (a->deny && (contains(&r->out, a->deny) || contains(&r->err, a->deny)))
        fail_msg("%s: output contains '%s'", a->name, a->deny);
    assert_string_equal(r->tier, sbx_tier_name(sbx_current_tier()));
    /* The run's cgroups were removed: nothing of the tree was left in them. */
    assert_null(strstr(r->message, "not removed"));
    if (r->status == SBX_OUTPUT_LIMIT_EXCEEDED && r->signal != SIGXFSZ) {
        const sbx_output *o = r->out.truncated ? &r->out : &r->err;
        assert_true(o->truncated);
        assert_int_equal(o->len, 1u << 16);
        assert_true(o->total > o->len);
    }
    if (strcmp(a->name, "binary_output_py") == 0) {
        assert_int_equal(r->out.len, 1024);
        for (size_t i = 0; i < 1024; i++)
            assert_int_equal((unsigned char)r->out.data[i], i % 256);
    }
    if (strcmp(a->name, "invalid_utf8_c") == 0) {
        assert_int_equal(r->out.len, 7);
        assert_memory_equal(r->out.data, "a\xff\xfe\0b\xc3\x28", 7);
        assert_int_equal(r->err.len, 3);
    }
    if (r->status == SBX_TIME_LIMIT_EXCEEDED)
        assert_true(r->wall_ms < 3000 + 1000);
    if (strcmp(a->name, "write_usr_c") == 0)
        assert_int_equal(r->exit_code, 7);
    if (strcmp(a->name, "fake_status_records_py") == 0)
        assert_int_equal(r->exit_code, 3);
}

/* ---- warm sequences: a run, then a later run on the same zygote ---------------------- */

typedef struct sequence {
    const char *name;
    const char *first;          /* the attacker */
    sbx_status first_want;
    int first_signal;           /* 0: not checked */
    const char *second;         /* must print "clean" and exit 0 */
} sequence;

static const sequence sequences[] = {
    { "test_sandbox_attack__warm_files_left_behind",
      "import os\nfor d in ('/work', '/tmp', '/work/sub'):\n    os.makedirs(d, exist_ok=True)\n"
      "    open(d + '/planted.py', 'w').write('x = 1')\nopen('/work/main2.py', 'w').write('')\n"
      "os.symlink('/tmp/planted.py', '/tmp/link')\nprint('planted')\n",
      SBX_OK, 0,
      "import os, sys\nleft = [p for p in ('/work/planted.py', '/tmp/planted.py', '/work/sub',\n"
      "        '/work/main2.py', '/tmp/link') if os.path.lexists(p)]\n"
      "assert not left, left\n"
      "assert sorted(os.listdir('/work')) == ['main.py'], os.listdir('/work')\n"
      "assert os.listdir('/tmp') == [], os.listdir('/tmp')\n"
      "try:\n    import planted\n    sys.exit('imported a module planted by an earlier run')\n"
      "except ImportError:\n    pass\nprint('clean')\n" },
    { "test_sandbox_attack__warm_modules_patched",
      "import builtins, math, sys, os, json, random\nmath.sqrt = lambda x: 42\n"
      "builtins.len = lambda x: -1\nbuiltins.evil = True\njson.dumps = None\n"
      "sys.modules['collections'] = None\nsys.path.insert(0, '/tmp')\nos.environ['EVIL'] = '1'\n"
      "print('patched')\n",
      SBX_OK, 0,
      "import builtins, math, sys, os, json, collections\nassert math.sqrt(16) == 4.0\n"
      "assert len('abc') == 3\nassert not hasattr(builtins, 'evil')\n"
      "assert json.dumps([1]) == '[1]'\nassert '/tmp' not in sys.path\n"
      "assert sys.path[0] == '/work'\nassert 'EVIL' not in os.environ\n"
      "assert collections.Counter('aa')['a'] == 2\nprint('clean')\n" },
    { "test_sandbox_attack__warm_secret_of_earlier_run",
      "SECRET = ''.join(['sekr', 'et-of-run-one'])\nglobals()['keep'] = [SECRET] * 3\n"
      "import sys\nsys.modules['math'].stash = SECRET\nprint('stored')\n",
      SBX_OK, 0,
      "import gc, sys, math\nneedle = ''.join(['sekr', 'et-of-run-', 'one'])\n"
      "assert not hasattr(math, 'stash')\nfound = []\nfor o in gc.get_objects():\n"
      "    try:\n        vs = o.values() if isinstance(o, dict) else o\n"
      "        if isinstance(o, (dict, list, tuple)):\n"
      "            found += [v for v in vs\n"
      "                      if isinstance(v, str) and v is not needle and needle in v]\n"
      "    except Exception:\n        pass\nassert not found, found\nprint('clean')\n" },
    { "test_sandbox_attack__warm_kill_zygote",
      "import os, signal\nfor sig in (signal.SIGTERM, signal.SIGKILL):\n"
      "    for target in (os.getppid(), 1, -1):\n        try:\n            os.kill(target, sig)\n"
      "        except OSError:\n            pass\n"
      "try:\n    os.killpg(os.getpgid(0), signal.SIGKILL)\nexcept OSError:\n    pass\n"
      "print('survived', flush=True)\nos.kill(0, signal.SIGKILL)\n",
      SBX_SIGNALED, SIGKILL,
      "print('clean')\n" },
    { "test_sandbox_attack__warm_ptrace_parent",
      PY_CTYPES "libc.ptrace(16, os.getppid(), 0, 0)\n", SBX_SYSCALL_VIOLATION, SIGSYS,
      "print('clean')\n" },
    { "test_sandbox_attack__warm_threads_and_processes_left",
      "import os, threading, time\n"
      "def later():\n    time.sleep(0.3)\n    open('/tmp/late', 'w').write('x')\n"
      "threading.Thread(target=later, daemon=True).start()\n"
      "threading.Thread(target=lambda: time.sleep(0.05)).start()\n"
      "if os.fork() == 0:\n    os.setsid()\n    time.sleep(0.3)\n"
      "    open('/work/late', 'w').write('x')\n    os._exit(0)\nprint('left')\n",
      SBX_OK, 0,
      "import os, time\ntime.sleep(0.5)\n"
      "assert not os.path.exists('/tmp/late') and not os.path.exists('/work/late')\n"
      "import threading\nassert threading.active_count() == 1, threading.enumerate()\n"
      "print('clean')\n" },
};

#define NSEQUENCES (sizeof sequences / sizeof sequences[0])

static void run_warm(sbx_result *res, const char *code)
{
    char err[256];
    sbx_request req = SBX_REQUEST_INIT;
    req.language = "python3";
    req.code = code;
    req.code_len = strlen(code);
    req.limits.cpu_ms = 2000;
    req.limits.wall_ms = 5000;
    req.limits.memory_mb = 128;
    req.limits.processes = 32;
    req.limits.tmpfs_mb = 8;
    req.warm = true;
    if (sbx_run(res, &req, err, sizeof err) != 0)
        fail_msg("sbx_run: %s", err);
    assert_true(res->warm);
}

/* The attacker, then a check on the same thread's zygote, which must not
 * have been restarted in between (the attacker did not kill it). */
static void check_sequence(void **state)
{
    if (!sandbox_ok)
        skip();
    const sequence *q = *state;
    sbx_result first, second;
    run_warm(&first, "print('warm')\n");   /* the zygote is up */
    sbx_result_free(&first);
    uint64_t started = sbx_warm_started();
    run_warm(&first, q->first);
    if (first.status != q->first_want ||
        (q->first_signal && first.signal != q->first_signal))
        fail_msg("%s: first run %s (signal %d), want %s\nstdout: %.300s\nstderr: %.600s",
                 q->name, sbx_status_name(first.status), first.signal,
                 sbx_status_name(q->first_want), first.out.data, first.err.data);
    run_warm(&second, q->second);
    if (second.status != SBX_OK || !contains(&second.out, "clean"))
        fail_msg("%s: later run %s\nstdout: %.300s\nstderr: %.600s", q->name,
                 sbx_status_name(second.status), second.out.data, second.err.data);
    assert_int_equal(sbx_warm_started(), started);
    sbx_result_free(&first);
    sbx_result_free(&second);
    if (q == &sequences[NSEQUENCES - 1])
        sbx_warm_release();
}

/* After the suite: no children, no run cgroups, no new mounts, no files in
 * the host's /tmp, no connection on the host's listening socket. */
static void test_sandbox_attack__host_unchanged(void **state)
{
    (void)state;
    if (!sandbox_ok)
        skip();
    /* Every init was reaped, and with it its whole PID namespace. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);

    char *now = slurp("/proc/self/mountinfo");
    assert_non_null(now);
    assert_non_null(mountinfo_before);
    assert_string_equal(now, mountinfo_before);
    free(now);

    assert_int_equal(access("/tmp/envsrv-attack-marker", F_OK), -1);

    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    assert_int_equal(accept(listen_fd, (struct sockaddr *)&sa, &sl), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

    /* No run cgroup of ours anywhere under the usual mount points. */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "envsrv-sbx.%d.", (int)getpid());
    const char *roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids",
                            "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/unified" };
    char own[4096] = "";
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *path = strchr(line, ':');
        path = path ? strchr(path + 1, ':') : NULL;
        if (!path)
            continue;
        path[strcspn(path, "\n")] = '\0';
        for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
            char dir[1024];
            snprintf(dir, sizeof dir, "%s%s", roots[i], path + 1);
            DIR *d = opendir(dir);
            struct dirent *e;
            while (d && (e = readdir(d)))
                if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
                    snprintf(own, sizeof own, "%s/%s", dir, e->d_name);
            if (d)
                closedir(d);
        }
    }
    if (f)
        fclose(f);
    if (own[0])
        fail_msg("run cgroup left behind: %s", own);
}

int main(void)
{
    static struct CMUnitTest tests[2 * NATTACKS + NSEQUENCES + 1];
    static char names[2 * NATTACKS][96];
    size_t n = 0;
    for (int warm = 0; warm < 2; warm++)
        for (size_t i = 0; i < NATTACKS; i++) {
            if (warm && strcmp(attacks[i].lang, "python3") != 0)
                continue;
            runs[nruns] = (planned){ i, warm };
            snprintf(names[nruns], sizeof names[nruns], "test_sandbox_attack__%s%s",
                     attacks[i].name, warm ? "__warm" : "");
            tests[n++] = (struct CMUnitTest){ names[nruns], check_attack, NULL, NULL,
                                              &runs[nruns] };
            nruns++;
        }
    for (size_t i = 0; i < NSEQUENCES; i++)
        tests[n++] = (struct CMUnitTest){ sequences[i].name, check_sequence, NULL, NULL,
                                          (void *)&sequences[i] };
    /* Last: the sequences' zygote (this thread's) is stopped by then. */
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_sandbox_attack__host_unchanged);
    return _cmocka_run_group_tests("sandbox_attacks", tests, n, setup_all, teardown_all);
}
