# The trusted driver of a warm Python sandbox: sandbox/warm.c starts it inside
# a sandbox of its own and embeds this file's text (sandbox/zygote.inc is made
# from it by the Makefile). It imports what programs commonly use once, then
# forks one child per run; each child builds the same isolation as a cold run
# before the program's first line runs. Never runs untrusted code itself.
#
#   zygote (Z)     waits for "R" + 5 fds (ctl, stdin, stdout, stderr, payload)
#   -> A           new mount, PID, IPC and UTS namespaces; forks B and exits
#   -> B           PID 1 of the run: "hello" to the server (which reads B's
#                  host pid from the socket credentials, moves B into the run
#                  cgroup, and says "go") while B mounts fresh tmpfs /work
#                  and /tmp and writes the files; after "go" B forks C,
#                  reaps, and reports C's wait status
#   -> C           stdio, rlimits, no capabilities, no_new_privs, seccomp,
#                  then the program as __main__, ended by the interpreter's
#                  normal exit (threads joined, atexit run, stdio flushed)
#
# Z only ever holds file descriptors of a run, never its code or data: the
# payload memfd is read by B alone, so no run can find another's secrets in
# the zygote's memory.
import atexit, builtins, ctypes, gc, importlib, importlib.machinery, io, mmap, os, resource
import signal, socket, struct, sys, threading, types

# What HumanEval/MBPP programs and envs/code.lua's harness import; importing
# them is most of a cold start.
PRELOAD = ('math', 'cmath', 're', 'itertools', 'collections', 'functools', 'heapq',
           'string', 'typing', 'hashlib', 'bisect', 'random', 'operator', 'copy',
           'decimal', 'fractions', 'statistics', 'json', 'datetime', 'time', 'array',
           'enum', 'dataclasses', 'traceback', 'select', 'marshal', 'textwrap',
           'numbers', 'abc', 'contextlib', 'struct', 'ast', 'queue', 'threading')

MSG = struct.Struct('<4i2Q96s')      # sbx__msg of sandbox_int.h
MSG_SETUP_ERROR, MSG_EXITED, MSG_HELLO = 1, 4, 5
PAYLOAD = struct.Struct('<4sIQQQQ64s64s')
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = 0x20000, 0x4000000, 0x8000000, 0x20000000
MS_NOSUID, MS_NODEV = 2, 4
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 4, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
# SECBIT_NOROOT | _LOCKED, NO_SETUID_FIXUP | _LOCKED, KEEP_CAPS_LOCKED,
# NO_CAP_AMBIENT_RAISE | _LOCKED: as child.c's drop_privileges.
SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
libc.syscall.restype = L
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]


class SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


class CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                ('inheritable', ctypes.c_uint32)]


def fail(ctl, what):
    """Reports a setup failure to the server and ends this process."""
    err = ctypes.get_errno()
    try:
        ctl.send(MSG.pack(MSG_SETUP_ERROR, err, 0, 0, 0, 0, ('warm ' + what).encode()[:95]))
    finally:
        os._exit(1)


def check(ctl, r, what):
    if r < 0:
        fail(ctl, what)


def default_signals():
    for s in range(1, signal.NSIG):
        try:
            signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass


def write_files(ctl, payload_fd, header):
    size = os.fstat(payload_fd).st_size
    with mmap.mmap(payload_fd, size, prot=mmap.PROT_READ) as m:
        off = PAYLOAD.size
        for _ in range(header[1]):
            namelen, mode, length = struct.unpack_from('<IIQ', m, off)
            off += 16
            name = bytes(m[off:off + namelen])
            off += namelen
            if b'/' in name or name in (b'', b'.', b'..') or off + length > size:
                fail(ctl, 'bad payload')
            try:
                fd = os.open(b'/work/' + name,
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                view = memoryview(m)[off:off + length]
                done = 0
                while done < length:
                    done += os.write(fd, view[done:])
                view.release()
                os.close(fd)
            except OSError as e:
                ctypes.set_errno(e.errno or 0)
                fail(ctl, 'write ' + name.decode(errors='replace'))
            off += length


def run_init(ctl, fds, header):
    """B: PID 1 of the run's namespace. Returns only in C."""
    _, sin, sout, serr, payload = fds
    # Hello first: moving us into the run's cgroup can wait for an RCU grace
    # period in the kernel (cgroup v1), which the rest of our setup overlaps.
    # Nothing of the run starts before "go", which comes after the move.
    ctl.send(MSG.pack(MSG_HELLO, 0, 0, 0, 0, 0, b''))
    os.setsid()            # runs cannot signal the zygote's process group
    default_signals()      # as PID 1: ignores every signal from inside
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for path, opts in ((b'/work', header[6]), (b'/tmp', header[7])):
        check(ctl, libc.mount(b'tmpfs', path, b'tmpfs', MS_NOSUID | MS_NODEV,
                              opts.rstrip(b'\0')), 'mount tmpfs')
    os.chdir('/work')      # the new /work, not the zygote's below it
    write_files(ctl, payload, header)
    os.close(payload)
    if ctl.recv(16) != b'g':
        os._exit(1)
    try:
        pid = os.fork()
    except OSError:
        fail(ctl, 'fork')
    if pid == 0:
        return
    for fd in (sin, sout, serr):
        os.close(fd)
    cpu_us = rss = 0
    while True:
        try:
            w, status, ru = os.wait4(-1, WALL)
        except InterruptedError:
            continue
        except ChildProcessError:
            fail(ctl, 'wait for the program')
        cpu_us += int((ru.ru_utime + ru.ru_stime) * 1e6)
        rss = max(rss, ru.ru_maxrss)
        if w == pid:
            ctl.send(MSG.pack(MSG_EXITED, 0, status, 0, cpu_us, rss, b''))
            os._exit(0)


def drop_privileges(ctl, nr, prog):
    check(ctl, libc.prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0), 'securebits')
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() != 22:
            fail(ctl, 'drop capabilities')
    if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 and \
            ctypes.get_errno() != 22:
        fail(ctl, 'clear ambient capabilities')
    hdr, data = CapHeader(0x20080522, 0), (CapData * 2)()
    check(ctl, libc.syscall(L(nr['capset']), ctypes.byref(hdr), ctypes.byref(data)), 'capset')
    check(ctl, libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 'no_new_privs')
    check(ctl, libc.syscall(L(nr['seccomp']), L(1), L(0), ctypes.byref(prog)), 'seccomp')


def program_setup(ctl, fds, header, nr, prog, handlers, stdio):
    """C: the program's process, set up like child.c's exec_child."""
    _, sin, sout, serr, _ = fds
    for i, fd in enumerate((sin, sout, serr)):
        os.dup2(fd, i)
    # Every other fd closes, ctl's when setup is done. Through its object:
    # a socket object closes its fd number when it is freed, whatever that
    # number has become meanwhile.
    os.closerange(3, ctl.fileno())
    os.closerange(ctl.fileno() + 1, 1 << 16)
    for s, h in handlers.items():
        signal.signal(s, h)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    cpu_s, as_bytes, fsize, nproc = header[2:6]
    try:
        for res, v in ((resource.RLIMIT_CPU, (cpu_s, cpu_s + 1)),
                       (resource.RLIMIT_AS, (as_bytes, as_bytes)),
                       (resource.RLIMIT_FSIZE, (fsize, fsize)),
                       (resource.RLIMIT_NPROC, (nproc, nproc)),
                       (resource.RLIMIT_NOFILE, (256, 256)), (resource.RLIMIT_CORE, (0, 0)),
                       (resource.RLIMIT_MEMLOCK, (0, 0)), (resource.RLIMIT_MSGQUEUE, (0, 0))):
            resource.setrlimit(res, v)
    except (OSError, ValueError) as e:
        ctypes.set_errno(getattr(e, 'errno', 0) or 0)
        fail(ctl, 'setrlimit')
    drop_privileges(ctl, nr, prog)
    ctl.close()
    # Fresh standard streams on the run's pipes, made as the interpreter makes
    # its own at start-up.
    enc, errs = stdio
    sys.stdin = sys.__stdin__ = io.open(0, 'r', encoding=enc, errors=errs, closefd=False)
    sys.stdout = sys.__stdout__ = io.open(1, 'w', encoding=enc, errors=errs, closefd=False)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.open(2, 'wb', closefd=False), encoding=enc,
                                                   errors='backslashreplace', line_buffering=True)


def exit_code(e):
    """The exit status a SystemExit gives, printing what Python would print."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xff
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def finish(code):
    """Python's exit without its teardown: tearing down every module of the
    zygote would touch (and so copy) most of its pages for nothing."""
    try:
        threading._shutdown()       # joins non-daemon threads, as at exit
    except BaseException:
        pass
    atexit._run_exitfuncs()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            code = code or 120      # what Python exits with when flushing fails
    os._exit(code)


def run_program():
    """The program as `python3 -B -E -s main.py` in /work would run it."""
    sys.argv = ['main.py']
    sys.orig_argv = sys.orig_argv[:-1] + ['main.py']
    sys.path[0] = '/work'
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    main = types.ModuleType('__main__')
    main.__file__ = '/work/main.py'
    main.__cached__ = None
    main.__builtins__ = builtins
    main.__loader__ = importlib.machinery.SourceFileLoader('__main__', '/work/main.py')
    sys.modules['__main__'] = main
    try:
        with open('/work/main.py', 'rb') as f:
            code = compile(f.read(), '/work/main.py', 'exec', dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit as e:
        finish(exit_code(e))
    except BaseException as e:
        sys.excepthook(type(e), e, e.__traceback__.tb_next if e.__traceback__ else None)
        if isinstance(e, KeyboardInterrupt):
            finish_signal = signal.SIGINT
            try:
                sys.stdout.flush()
            finally:
                signal.signal(finish_signal, signal.SIG_DFL)
                os.kill(os.getpid(), finish_signal)
        finish(1)
    finish(0)


def serve():
    """Z's loop. Returns (in C only) the run's fds and settings."""
    ctl = socket.socket(fileno=0)
    init = ctl.recv(1 << 16)
    magic, nr_capset, nr_seccomp, nfilt = struct.unpack_from('<4s3i', init)
    if magic != b'SBXI' or len(init) != 16 + 8 * nfilt:
        sys.exit('zygote: bad init message')
    nr = {'capset': nr_capset, 'seccomp': nr_seccomp}
    filt = ctypes.create_string_buffer(init[16:], len(init) - 16)
    prog = SockFprog(nfilt, ctypes.addressof(filt))
    for name in PRELOAD:
        importlib.import_module(name)
    handlers = {s: signal.getsignal(s) for s in signal.Signals
                if s not in (signal.SIGKILL, signal.SIGSTOP)}
    stdio = (sys.stdout.encoding, sys.stdout.errors)
    # Objects of the zygote are never freed by a run: keep the collector off
    # their pages so that a run copies fewer of them.
    gc.collect()
    gc.freeze()
    ctl.send(b'ready')
    null = os.open('/dev/null', os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    while True:
        msg, anc, flags, _ = ctl.recvmsg(16, socket.CMSG_SPACE(5 * 4))
        if not msg:
            os._exit(0)
        fds = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack('%di' % (len(data) // 4), data[:len(data) // 4 * 4])
        if msg != b'R' or len(fds) != 5 or flags & socket.MSG_CTRUNC:
            os._exit(3)    # not our server: the server restarts the zygote
        pid = os.fork()
        if pid == 0:
            break
        for fd in fds:
            os.close(fd)
        os.waitpid(pid, 0)
    # A: only system calls and a fork between here and os._exit.
    ctl.close()
    run_ctl = socket.socket(fileno=fds[0])
    header = PAYLOAD.unpack_from(os.pread(fds[4], PAYLOAD.size, 0))
    if header[0] != b'SBXW':
        fail(run_ctl, 'bad payload')
    check(run_ctl, libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS),
          'unshare')
    if os.fork() != 0:
        os._exit(0)
    run_init(run_ctl, fds, header)
    program_setup(run_ctl, fds, header, nr, prog, handlers, stdio)


serve()
run_program()
