/*
 * Tests for sandbox/: the names and the language table, probing and
 * start-up modes, request validation, each language end to end, limits and
 * the status words they produce, the result's fields, concurrent runs, and a
 * real HumanEval problem with its tests ($ENVSRV_DATA; skipped when absent).
 * The hostile programs are in test_attacks.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

/* ---- helpers ------------------------------------------------------------------------ */

static bool inited, usable;

/* Initialises once (best effort); skips the test when no tier is available. */
static void need_sandbox(void)
{
    if (!inited) {
        char err[256];
        inited = true;
        usable = sbx_init(NULL, NULL, err, sizeof err) == 0;
        if (!usable)
            fprintf(stderr, "sandbox unavailable: %s\n", err);
    }
    if (!usable)
        skip();
}

/* Runs `code` in `lang` with default limits changed by `lim` (may be NULL). */
static void run_code(sbx_result *res, const char *lang, const char *code, const sbx_limits *lim)
{
    sbx_request req = SBX_REQUEST_INIT;
    req.language = lang;
    req.code = code;
    req.code_len = strlen(code);
    if (lim)
        req.limits = *lim;
    char err[256] = "";
    int rc = sbx_run(res, &req, err, sizeof err);
    if (rc != 0)
        fail_msg("sbx_run(%s) returned %d: %s", lang, rc, err);
}

static void expect(const sbx_result *r, sbx_status want)
{
    if (r->status != want)
        fail_msg("status %s, want %s (exit %d, signal %d, '%s')\nstdout: %.400s\n"
                 "stderr: %.800s\ncompile: %.400s",
                 sbx_status_name(r->status), sbx_status_name(want), r->exit_code, r->signal,
                 r->message, r->out.data, r->err.data, r->compile.data);
}

/* ---- names and tables -------------------------------------------------------------- */

static void test_sandbox_status__names(void **state)
{
    (void)state;
    static const char *const want[] = { "OK", "RUNTIME_ERROR", "TIME_LIMIT_EXCEEDED",
                                        "MEMORY_LIMIT_EXCEEDED", "OUTPUT_LIMIT_EXCEEDED",
                                        "SIGNALED", "SYSCALL_VIOLATION", "COMPILE_ERROR",
                                        "EXEC_ERROR", "INTERNAL_ERROR" };
    for (int i = 0; i < 10; i++)
        assert_string_equal(sbx_status_name((sbx_status)i), want[i]);
    assert_string_equal(sbx_status_name((sbx_status)99), "INTERNAL_ERROR");
    assert_string_equal(sbx_status_name((sbx_status)-1), "INTERNAL_ERROR");
}

static void test_sandbox_tier__names(void **state)
{
    (void)state;
    assert_string_equal(sbx_tier_name(SBX_TIER_CGROUP), "namespaces+seccomp+cgroup");
    assert_string_equal(sbx_tier_name(SBX_TIER_RLIMITS), "namespaces+seccomp+rlimits");
    assert_string_equal(sbx_tier_name(SBX_TIER_NONE), "none");
    assert_string_equal(sbx_tier_name((sbx_tier)42), "none");
    for (unsigned bit = 1; bit <= SBX_LAYER_CGROUP_CPU; bit <<= 1)
        assert_string_not_equal(sbx_layer_name(bit), "unknown layer");
    assert_string_equal(sbx_layer_name(0), "unknown layer");
    assert_string_equal(sbx_layer_name(3), "unknown layer");
}

static void test_sandbox_languages__table(void **state)
{
    (void)state;
    size_t n = 0;
    const sbx_language *langs = sbx_languages(&n);
    assert_int_equal(n, 5);
    const char *names[] = { "python3", "c", "cpp", "bash", "lua" };
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(langs[i].name, names[i]);
        assert_ptr_equal(sbx_language_find(names[i]), &langs[i]);
        assert_non_null(langs[i].run);
        assert_true(langs[i].run[0][0] == '/' || strncmp(langs[i].run[0], "./", 2) == 0);
        assert_null(strchr(langs[i].main_file, '/'));
    }
    assert_non_null(sbx_language_find("c")->compile);
    assert_null(sbx_language_find("python3")->compile);
    assert_null(sbx_language_find("python"));
    assert_null(sbx_language_find(NULL));
}

static void test_sandbox_result_free__null_and_zeroed(void **state)
{
    (void)state;
    sbx_result_free(NULL);
    sbx_result r;
    memset(&r, 0, sizeof r);
    sbx_result_free(&r);
    sbx_result_free(&r);
}

/* Must run before anything calls sbx_init. */
static void test_sandbox_run__not_initialised(void **state)
{
    (void)state;
    assert_false(inited);
    sbx_request req = SBX_REQUEST_INIT;
    req.language = "python3";
    sbx_result res;
    char err[256] = "";
    assert_int_equal(sbx_run(&res, &req, err, sizeof err), SBX_EINVALID);
    assert_non_null(strstr(err, "sbx_init"));
    assert_int_equal(sbx_current_tier(), SBX_TIER_NONE);
    sbx_result_free(&res);
}

/* ---- probe and init ---------------------------------------------------------------- */

static void test_sandbox_probe__layers_and_tier(void **state)
{
    (void)state;
    sbx_probe_info pi;
    assert_int_equal(sbx_probe(&pi), 0);
    if ((pi.layers & SBX_LAYERS_CONFINE) != SBX_LAYERS_CONFINE) {
        assert_int_equal(pi.tier, SBX_TIER_NONE);
        assert_true(pi.message[0] != '\0');
        skip();
    }
    assert_true(pi.tier == SBX_TIER_CGROUP || pi.tier == SBX_TIER_RLIMITS);
    if ((pi.layers & SBX_LAYERS_ALL) == SBX_LAYERS_ALL) {
        assert_int_equal(pi.tier, SBX_TIER_CGROUP);
        assert_string_equal(pi.message, "");
        assert_true(pi.cgroup_version == 1 || pi.cgroup_version == 2);
    } else {
        assert_int_equal(pi.tier, SBX_TIER_RLIMITS);
        assert_non_null(strstr(pi.message, "cgroup"));
    }
    assert_int_equal(pi.as_root, geteuid() == 0);
}

static void test_sandbox_init__modes(void **state)
{
    (void)state;
    char err[256] = "";
    sbx_options bad = SBX_OPTIONS_INIT;
    bad.mode = (sbx_mode)7;
    assert_int_equal(sbx_init(NULL, &bad, err, sizeof err), SBX_EINVALID);
    assert_non_null(strstr(err, "mode"));
    sbx_options rel = SBX_OPTIONS_INIT;
    rel.python3 = "python3";   /* from PATH: refused */
    assert_int_equal(sbx_init(NULL, &rel, err, sizeof err), SBX_EINVALID);
    assert_non_null(strstr(err, "absolute"));

    sbx_options strict = SBX_OPTIONS_INIT;
    strict.mode = SBX_MODE_STRICT;
    sbx_probe_info pi;
    int rc = sbx_init(&pi, &strict, err, sizeof err);
    if ((pi.layers & SBX_LAYERS_ALL) == SBX_LAYERS_ALL) {
        assert_int_equal(rc, 0);
        assert_int_equal(sbx_current_tier(), SBX_TIER_CGROUP);
    } else {
        /* Strict refuses and names what is missing. */
        assert_int_equal(rc, SBX_EUNAVAIL);
        assert_true(strstr(err, "strict") || strstr(err, "cannot sandbox"));
        assert_int_equal(sbx_current_tier(), SBX_TIER_NONE);
    }
    inited = false;
    need_sandbox();
    assert_int_not_equal(sbx_current_tier(), SBX_TIER_NONE);
}

/* sbx_init removes run cgroups that a dead server left behind. */
static void test_sandbox_init__sweeps_stale_cgroups(void **state)
{
    (void)state;
    need_sandbox();
    if (sbx_current_tier() != SBX_TIER_CGROUP)
        skip();
    char own[512] = "", line[512];
    FILE *f = fopen("/proc/self/cgroup", "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, ":pids:"))
            snprintf(own, sizeof own, "%s", strstr(line, ":pids:") + 6);
    fclose(f);
    own[strcspn(own, "\n")] = '\0';
    if (!own[0])
        skip();   /* pids controller not on v1 here */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    assert_true(dead > 0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    char dir[1024];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup/pids%s/envsrv-sbx.%d.7",
             strcmp(own, "/") == 0 ? "" : own, (int)dead);
    if (mkdir(dir, 0755) < 0)
        skip();
    char err[256];
    assert_int_equal(sbx_init(NULL, NULL, err, sizeof err), 0);
    int gone = access(dir, F_OK) < 0;
    if (!gone)
        rmdir(dir);
    assert_true(gone);
}

/* ---- validation ---------------------------------------------------------------------- */

static void expect_invalid(const sbx_request *req, const char *needle)
{
    sbx_result res;
    char err[256] = "";
    assert_int_equal(sbx_run(&res, req, err, sizeof err), SBX_EINVALID);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
    assert_null(res.out.data);
    sbx_result_free(&res);
}

static void test_sandbox_run__invalid_requests(void **state)
{
    (void)state;
    need_sandbox();
    static const char *const argv_rel[] = { "python3", NULL };
    static const char *const argv_ok[] = { "/bin/true", NULL };
    sbx_request r = SBX_REQUEST_INIT;
    expect_invalid(&r, "neither");
    r.language = "cobol";
    expect_invalid(&r, "unknown language 'cobol'");
    r.language = "python3";
    r.argv = argv_ok;
    expect_invalid(&r, "not both");
    r.language = NULL;
    r.argv = argv_rel;
    expect_invalid(&r, "absolute");
    r.argv = argv_ok;
    r.code = "x";
    r.code_len = 1;
    expect_invalid(&r, "code needs a language");

    const char *bad_names[] = { "", ".", "..", "../x", "a/b", "/etc/passwd", NULL };
    for (int i = 0; i < 7; i++) {
        sbx_file f = { bad_names[i], "x", 1, false };
        sbx_request q = SBX_REQUEST_INIT;
        q.language = "python3";
        q.files = &f;
        q.nfiles = 1;
        expect_invalid(&q, "bad file name");
    }
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    sbx_file lf = { longname, "x", 1, false };
    sbx_request q = SBX_REQUEST_INIT;
    q.language = "python3";
    q.files = &lf;
    q.nfiles = 1;
    expect_invalid(&q, "bad file name");
    sbx_file dup[2] = { { "a.txt", "1", 1, false }, { "a.txt", "2", 1, false } };
    q.files = dup;
    q.nfiles = 2;
    expect_invalid(&q, "given twice");
    sbx_file clash = { "main.py", "x", 1, false };
    q.files = &clash;
    q.nfiles = 1;
    expect_invalid(&q, "clashes");
    q.nfiles = SBX_MAX_FILES + 1;
    expect_invalid(&q, "too many files");

    sbx_request l = SBX_REQUEST_INIT;
    l.language = "python3";
    l.limits.cpu_ms = SBX_MAX_CPU_MS + 1;
    expect_invalid(&l, "cpu_ms");
    l.limits.cpu_ms = 0;
    l.limits.memory_mb = 8;
    expect_invalid(&l, "memory_mb");
    l.limits.memory_mb = SBX_MAX_MEMORY_MB + 1;
    expect_invalid(&l, "memory_mb");
    l.limits.memory_mb = 0;
    l.limits.tmpfs_mb = SBX_MAX_TMPFS_MB + 1;
    expect_invalid(&l, "tmpfs_mb");
    l.limits.tmpfs_mb = 0;
    l.stdin_len = 5;
    expect_invalid(&l, "stdin");
    l.stdin_len = 0;
    l.code_len = 3;
    expect_invalid(&l, "code_len");

    /* Code larger than /work. */
    size_t big = 3u << 20;
    char *code = malloc(big);
    assert_non_null(code);
    memset(code, '#', big);
    sbx_request b = SBX_REQUEST_INIT;
    b.language = "python3";
    b.code = code;
    b.code_len = big;
    b.limits.tmpfs_mb = 2;
    expect_invalid(&b, "do not fit");
    free(code);

    /* No error buffer, no request: still no crash. */
    sbx_result res;
    assert_int_equal(sbx_run(&res, NULL, NULL, 0), SBX_EINVALID);
    sbx_result_free(&res);
}

/* ---- languages -------------------------------------------------------------------------- */

static void test_sandbox_run__python_ok(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    run_code(&r, "python3", "import os\nprint('hello', os.getcwd())\n", NULL);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "hello /work\n");
    assert_int_equal(r.out.len, 12);
    assert_int_equal(r.out.total, 12);
    assert_false(r.out.truncated);
    assert_int_equal(r.err.len, 0);
    assert_non_null(r.err.data);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.signal, 0);
    assert_int_equal(r.compile_exit_code, -1);
    assert_true(r.memory_kb > 1000);
    assert_true(r.wall_ms < 5000);
    assert_string_equal(r.tier, sbx_tier_name(sbx_current_tier()));
    assert_string_equal(r.message, "");
    sbx_result_free(&r);
}

static void test_sandbox_run__python_exit_code_and_stderr(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    run_code(&r, "python3", "import sys\nsys.stderr.write('bad\\n')\nsys.exit(3)\n", NULL);
    expect(&r, SBX_RUNTIME_ERROR);
    assert_int_equal(r.exit_code, 3);
    assert_string_equal(r.err.data, "bad\n");
    sbx_result_free(&r);
    run_code(&r, "python3", "raise ValueError('boom')\n", NULL);
    expect(&r, SBX_RUNTIME_ERROR);
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err.data, "ValueError: boom"));
    sbx_result_free(&r);
}

static void test_sandbox_run__python_files_and_stdin(void **state)
{
    (void)state;
    need_sandbox();
    sbx_file files[2] = { { "helper.py", "def twice(x):\n    return 2 * x\n", 31, false },
                          { "data.bin", "\0\1\2", 3, false } };
    const char *code = "import sys, helper\nn = int(sys.stdin.read())\n"
                       "print(helper.twice(n), len(open('data.bin', 'rb').read()))\n";
    sbx_request req = SBX_REQUEST_INIT;
    req.language = "python3";
    req.code = code;
    req.code_len = strlen(code);
    req.stdin_data = "21";
    req.stdin_len = 2;
    req.files = files;
    req.nfiles = 2;
    sbx_result r;
    char err[256];
    assert_int_equal(sbx_run(&r, &req, err, sizeof err), 0);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "42 3\n");
    sbx_result_free(&r);
}

/* What Python tests need: threads, subprocess, unittest, /tmp, no /proc. */
static void test_sandbox_run__python_threads_subprocess_unittest(void **state)
{
    (void)state;
    need_sandbox();
    const char *code =
        "import subprocess, tempfile, threading, unittest\n"
        "out = []\nts = [threading.Thread(target=out.append, args=(i,)) for i in range(8)]\n"
        "[t.start() for t in ts]\n[t.join() for t in ts]\n"
        "class T(unittest.TestCase):\n"
        "    def test_threads(self):\n        self.assertEqual(sorted(out), list(range(8)))\n"
        "    def test_subprocess(self):\n"
        "        self.assertEqual(subprocess.check_output(['echo', 'hi']), b'hi\\n')\n"
        "    def test_tmp(self):\n"
        "        with tempfile.NamedTemporaryFile() as f:\n            f.write(b'x')\n"
        "unittest.main()\n";
    sbx_result r;
    run_code(&r, "python3", code, NULL);
    expect(&r, SBX_OK);
    assert_non_null(strstr(r.err.data, "Ran 3 tests"));
    sbx_result_free(&r);
}

static void test_sandbox_run__c_program(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    run_code(&r, "c",
             "#include <math.h>\n#include <stdio.h>\n"
             "int main(void) { char s[64]; if (!fgets(s, sizeof s, stdin)) s[0] = 0;\n"
             "  printf(\"%.0f [%s]\\n\", sqrt(49.0), s); return 0; }\n",
             NULL);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "7 []\n");
    assert_int_equal(r.compile_exit_code, 0);
    assert_true(r.compile_ms > 0);
    sbx_result_free(&r);
}

static void test_sandbox_run__c_compile_error(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    run_code(&r, "c", "int main(void) { return undefined_thing; }\n", NULL);
    expect(&r, SBX_COMPILE_ERROR);
    assert_int_equal(r.compile_exit_code, 1);
    assert_non_null(strstr(r.compile.data, "undefined_thing"));
    assert_int_equal(r.out.len, 0);
    assert_int_equal(r.wall_ms, 0);
    sbx_result_free(&r);
}

static void test_sandbox_run__cpp_program(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    run_code(&r, "cpp",
             "#include <iostream>\n#include <vector>\n#include <thread>\n"
             "int main() { std::vector<int> v{3, 4}; int s = 0;\n"
             "  std::thread t([&] { for (int x : v) s += x; }); t.join();\n"
             "  std::cout << s << std::endl; return 5; }\n",
             NULL);
    expect(&r, SBX_RUNTIME_ERROR);
    assert_int_equal(r.exit_code, 5);
    assert_string_equal(r.out.data, "7\n");
    sbx_result_free(&r);
}

static void test_sandbox_run__bash(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    run_code(&r, "bash", "echo \"$HOME $PWD $HOSTNAME $(id -u)\"\n", NULL);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "/work /work sandbox 0\n");
    sbx_result_free(&r);
}

static void test_sandbox_run__lua(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    if (!sbx_language_find("lua")->available) {
        /* Not installed here: the run still ends cleanly, as EXEC_ERROR. */
        run_code(&r, "lua", "print(1 + 1)\n", NULL);
        expect(&r, SBX_EXEC_ERROR);
        assert_non_null(strstr(r.message, "cannot execute"));
        sbx_result_free(&r);
        skip();
    }
    run_code(&r, "lua", "print(1 + 1)\n", NULL);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "2\n");
    sbx_result_free(&r);
}

static void test_sandbox_run__argv(void **state)
{
    (void)state;
    need_sandbox();
    static const char *const argv[] = { "/bin/sh", "-c", "cat in.txt; echo \" $0\"", "zero",
                                        NULL };
    sbx_file f = { "in.txt", "file", 4, false };
    sbx_request req = SBX_REQUEST_INIT;
    req.argv = argv;
    req.files = &f;
    req.nfiles = 1;
    sbx_result r;
    char err[256];
    assert_int_equal(sbx_run(&r, &req, err, sizeof err), 0);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "file zero\n");
    sbx_result_free(&r);
}

/* A file marked executable (a program built earlier) runs; unmarked, it cannot. */
static void test_sandbox_run__executable_file(void **state)
{
    (void)state;
    need_sandbox();
    static const char *const argv[] = { "/work/prog.sh", NULL };
    static const char script[] = "#!/bin/sh\necho exe \"$0\"\n";
    sbx_file f = { "prog.sh", script, sizeof script - 1, true };
    sbx_request req = SBX_REQUEST_INIT;
    req.argv = argv;
    req.files = &f;
    req.nfiles = 1;
    sbx_result r;
    char err[256];
    assert_int_equal(sbx_run(&r, &req, err, sizeof err), 0);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "exe /work/prog.sh\n");
    sbx_result_free(&r);
    f.executable = false;
    assert_int_equal(sbx_run(&r, &req, err, sizeof err), 0);
    expect(&r, SBX_EXEC_ERROR);
    assert_non_null(strstr(r.message, "Permission denied"));
    sbx_result_free(&r);
}

static void test_sandbox_run__exec_error(void **state)
{
    (void)state;
    need_sandbox();
    static const char *const argv[] = { "/usr/bin/does-not-exist", NULL };
    static const char *const host_only[] = { "/work/../etc/shadow", NULL };
    sbx_request req = SBX_REQUEST_INIT;
    req.argv = argv;
    sbx_result r;
    char err[256];
    assert_int_equal(sbx_run(&r, &req, err, sizeof err), 0);
    expect(&r, SBX_EXEC_ERROR);
    assert_non_null(strstr(r.message, "cannot execute /usr/bin/does-not-exist"));
    sbx_result_free(&r);
    req.argv = host_only;
    assert_int_equal(sbx_run(&r, &req, err, sizeof err), 0);
    expect(&r, SBX_EXEC_ERROR);
    sbx_result_free(&r);
}

/* ---- limits ---------------------------------------------------------------------------- */

static void test_sandbox_run__output_cap(void **state)
{
    (void)state;
    need_sandbox();
    sbx_limits lim = SBX_LIMITS_INIT;
    lim.output_bytes = 10;
    sbx_result r;
    run_code(&r, "python3", "print('0123456789' * 10)\n", &lim);
    expect(&r, SBX_OUTPUT_LIMIT_EXCEEDED);
    assert_int_equal(r.out.len, 10);
    assert_memory_equal(r.out.data, "0123456789", 10);
    assert_int_equal(r.out.data[10], '\0');
    assert_true(r.out.truncated);
    assert_true(r.out.total > 10);
    sbx_result_free(&r);
    run_code(&r, "python3", "print('012345678', end='')\n", &lim);
    expect(&r, SBX_OK);
    assert_false(r.out.truncated);
    sbx_result_free(&r);
}

static void test_sandbox_run__cpu_limit(void **state)
{
    (void)state;
    need_sandbox();
    sbx_limits lim = SBX_LIMITS_INIT;
    lim.cpu_ms = 300;
    lim.wall_ms = 10000;
    sbx_result r;
    run_code(&r, "python3", "while True:\n    pass\n", &lim);
    expect(&r, SBX_TIME_LIMIT_EXCEEDED);
    assert_true(r.cpu_ms >= 300);
    assert_true(r.wall_ms < 10000);
    /* SIGKILL from the cgroup CPU check, SIGXCPU from RLIMIT_CPU without one. */
    assert_true(r.signal == SIGKILL || r.signal == SIGXCPU);
    assert_int_equal(r.exit_code, -1);
    sbx_result_free(&r);
}

static void test_sandbox_run__wall_limit(void **state)
{
    (void)state;
    need_sandbox();
    sbx_limits lim = SBX_LIMITS_INIT;
    lim.wall_ms = 300;
    sbx_result r;
    run_code(&r, "bash", "sleep 30\n", &lim);
    expect(&r, SBX_TIME_LIMIT_EXCEEDED);
    assert_true(r.wall_ms >= 300);
    assert_true(r.wall_ms < 3000);
    assert_true(r.cpu_ms < 300);
    assert_non_null(strstr(r.message, "wall-clock"));
    sbx_result_free(&r);
}

static void test_sandbox_run__memory_limit(void **state)
{
    (void)state;
    need_sandbox();
    sbx_limits lim = SBX_LIMITS_INIT;
    lim.memory_mb = 64;
    sbx_result r;
    run_code(&r, "python3", "x = bytearray(32 * 2**20)\nprint(len(x))\n", &lim);
    expect(&r, SBX_OK);
    assert_true(r.memory_kb >= 32 * 1024);
    sbx_result_free(&r);
    run_code(&r, "python3", "x = bytearray(100 * 2**20)\nfor i in range(0, len(x), 4096):\n"
                            "    x[i] = 1\n", &lim);
    if (sbx_current_tier() == SBX_TIER_CGROUP)
        expect(&r, SBX_MEMORY_LIMIT_EXCEEDED);
    else
        assert_true(r.status == SBX_MEMORY_LIMIT_EXCEEDED || r.status == SBX_RUNTIME_ERROR);
    sbx_result_free(&r);
    if (sbx_current_tier() != SBX_TIER_CGROUP)
        return;
    /* Memory held in tmpfs files, not by any process, counts too. */
    lim.memory_mb = 32;
    lim.file_bytes = 100u << 20;
    run_code(&r, "python3",
             "f = open('big', 'wb')\nfor i in range(60):\n    f.write(b'x' * 2**20)\n"
             "    f.flush()\nprint('done')\n",
             &lim);
    expect(&r, SBX_MEMORY_LIMIT_EXCEEDED);
    sbx_result_free(&r);
}

static void test_sandbox_run__process_limit(void **state)
{
    (void)state;
    need_sandbox();
    sbx_limits lim = SBX_LIMITS_INIT;
    lim.processes = 4;
    sbx_result r;
    run_code(&r, "python3",
             "import subprocess\nps = []\ntry:\n    for i in range(20):\n"
             "        ps.append(subprocess.Popen(['sleep', '5']))\nexcept OSError:\n    pass\n"
             "print(len(ps))\n",
             &lim);
    expect(&r, SBX_OK);
    /* The program itself is one of the 4. */
    assert_string_equal(r.out.data, "3\n");
    sbx_result_free(&r);
}

static void test_sandbox_run__tmpfs_cap(void **state)
{
    (void)state;
    need_sandbox();
    sbx_limits lim = SBX_LIMITS_INIT;
    lim.tmpfs_mb = 2;
    sbx_result r;
    run_code(&r, "python3",
             "import os\nfor d in ('/work', '/tmp'):\n    try:\n"
             "        open(d + '/f', 'wb').write(b'x' * 3 * 2**20)\n"
             "        print(d, 'wrote')\n    except OSError as e:\n        print(d, e.errno)\n",
             &lim);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "/work 28\n/tmp 28\n");
    sbx_result_free(&r);
}

/* The rlimits tier (no cgroups): limits still hold, per process. */
static void test_sandbox_run__rlimits_tier(void **state)
{
    (void)state;
    need_sandbox();
    char err[256];
    sbx_options opts = SBX_OPTIONS_INIT;
    opts.no_cgroup = true;
    assert_int_equal(sbx_init(NULL, &opts, err, sizeof err), 0);
    assert_int_equal(sbx_current_tier(), SBX_TIER_RLIMITS);
    opts.mode = SBX_MODE_STRICT;
    assert_int_equal(sbx_init(NULL, &opts, err, sizeof err), SBX_EINVALID);
    opts.mode = SBX_MODE_BEST_EFFORT;
    assert_int_equal(sbx_init(NULL, &opts, err, sizeof err), 0);

    sbx_result r;
    run_code(&r, "python3", "print('hi')\n", NULL);
    expect(&r, SBX_OK);
    assert_string_equal(r.tier, "namespaces+seccomp+rlimits");
    assert_true(r.memory_kb > 1000);
    sbx_result_free(&r);

    sbx_limits lim = SBX_LIMITS_INIT;
    lim.cpu_ms = 500;
    lim.wall_ms = 10000;
    run_code(&r, "python3", "while True:\n    pass\n", &lim);
    expect(&r, SBX_TIME_LIMIT_EXCEEDED);
    assert_true(r.cpu_ms >= 500);
    sbx_result_free(&r);

    lim = (sbx_limits)SBX_LIMITS_INIT;
    lim.memory_mb = 64;
    run_code(&r, "python3", "x = bytearray(100 * 2**20)\n", &lim);
    expect(&r, SBX_RUNTIME_ERROR);
    assert_non_null(strstr(r.err.data, "MemoryError"));
    sbx_result_free(&r);

    lim = (sbx_limits)SBX_LIMITS_INIT;
    lim.processes = 4;
    run_code(&r, "python3",
             "import os\nn = 0\ntry:\n    for i in range(20):\n        if os.fork() == 0:\n"
             "            os.read(os.open('/dev/zero', 0), 1)\n            os._exit(0)\n"
             "        n += 1\nexcept OSError:\n    pass\nprint(n)\n",
             &lim);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "3\n");
    sbx_result_free(&r);

    assert_int_equal(sbx_init(NULL, NULL, err, sizeof err), 0);
}

/* ---- concurrency -------------------------------------------------------------------------- */

typedef struct conc {
    int id;
    int ok;
} conc;

static void *conc_worker(void *arg)
{
    conc *c = arg;
    for (int k = 0; k < 3; k++) {
        char code[128], want[32];
        snprintf(code, sizeof code, "import sys\nprint(%d * 1000 + %d)\n", c->id, k);
        snprintf(want, sizeof want, "%d\n", c->id * 1000 + k);
        sbx_request req = SBX_REQUEST_INIT;
        req.language = k == 1 ? "bash" : "python3";
        if (k == 1)
            snprintf(code, sizeof code, "echo %d\n", c->id * 1000 + k);
        req.code = code;
        req.code_len = strlen(code);
        sbx_result r;
        char err[256];
        int rc = sbx_run(&r, &req, err, sizeof err);
        if (rc == 0 && r.status == SBX_OK && strcmp(r.out.data, want) == 0 &&
            !strstr(r.message, "not removed"))
            c->ok++;
        else
            fprintf(stderr, "concurrent run %d.%d: rc %d (%s), status %s (%s), stdout '%s' "
                    "stderr '%.300s'\n", c->id, k, rc, rc ? err : "", sbx_status_name(r.status),
                    r.message, r.out.data ? r.out.data : "", r.err.data ? r.err.data : "");
        sbx_result_free(&r);
    }
    return NULL;
}

static void test_sandbox_run__concurrent(void **state)
{
    (void)state;
    need_sandbox();
    pthread_t th[8];
    conc cs[8];
    for (int i = 0; i < 8; i++) {
        cs[i] = (conc){ i + 1, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &cs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(cs[i].ok, 3);
    }
}

/* ---- HumanEval ------------------------------------------------------------------------------- */

static void test_sandbox_run__humaneval_record0(void **state)
{
    (void)state;
    need_sandbox();
    const char *data = getenv("ENVSRV_DATA");
    if (!data || !*data)
        skip();
    char path[1024];
    snprintf(path, sizeof path, "%s/humaneval/HumanEval.jsonl", data);
    FILE *f = fopen(path, "r");
    if (!f)
        skip();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    assert_true(n > 0);
    json_error_t jerr;
    json_t *rec = json_loads(line, 0, &jerr);
    free(line);
    assert_non_null(rec);
    const char *prompt = json_string_value(json_object_get(rec, "prompt"));
    const char *solution = json_string_value(json_object_get(rec, "canonical_solution"));
    const char *test = json_string_value(json_object_get(rec, "test"));
    const char *entry = json_string_value(json_object_get(rec, "entry_point"));
    assert_non_null(prompt);
    assert_non_null(solution);
    assert_non_null(test);
    assert_non_null(entry);
    size_t len = strlen(prompt) + strlen(solution) + strlen(test) + strlen(entry) + 64;
    char *code = malloc(len);
    assert_non_null(code);
    snprintf(code, len, "%s%s\n%s\ncheck(%s)\nprint('passed')\n", prompt, solution, test, entry);
    sbx_result r;
    run_code(&r, "python3", code, NULL);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "passed\n");
    sbx_result_free(&r);
    /* A wrong solution fails its tests: RUNTIME_ERROR, not a sandbox failure. */
    snprintf(code, len, "%s    return None\n%s\ncheck(%s)\n", prompt, test, entry);
    run_code(&r, "python3", code, NULL);
    expect(&r, SBX_RUNTIME_ERROR);
    sbx_result_free(&r);
    free(code);
    json_decref(rec);
}

/* ---- warm Python ----------------------------------------------------------------------- */

static void run_py(sbx_result *res, const char *code, bool warm, const sbx_limits *lim)
{
    static const sbx_file files[1] = { { "helper.py", "def twice(x):\n    return 2 * x\n", 31,
                                         false } };
    sbx_request req = SBX_REQUEST_INIT;
    req.language = "python3";
    req.code = code;
    req.code_len = strlen(code);
    req.stdin_data = "21";
    req.stdin_len = 2;
    req.files = files;
    req.nfiles = 1;
    req.warm = warm;
    if (lim)
        req.limits = *lim;
    char err[256] = "";
    if (sbx_run(res, &req, err, sizeof err) != 0)
        fail_msg("sbx_run (warm %d): %s", warm, err);
    assert_int_equal(res->warm, warm);
}

/* Warm and cold runs of one program give the same result. */
static void test_sandbox_warm__same_result_as_cold(void **state)
{
    (void)state;
    need_sandbox();
    const char *codes[] = {
        "import sys, helper\nprint(helper.twice(int(sys.stdin.read())), sys.argv, __name__)\n"
        "sys.stderr.write('err\\n')\nsys.exit(3)\n",
        "import atexit, threading, time\natexit.register(lambda: print('atexit'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.01), print('thread'))).start()\n",
        "raise KeyError('k')\n",
        "def f(:\n",
        "import sys\nsys.exit('bye')\n",
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        sbx_result cold, warm;
        run_py(&cold, codes[i], false, NULL);
        run_py(&warm, codes[i], true, NULL);
        if (cold.status != warm.status || cold.exit_code != warm.exit_code ||
            cold.signal != warm.signal || strcmp(cold.out.data, warm.out.data) != 0)
            fail_msg("program %zu: cold %s %d '%s', warm %s %d '%s'\nwarm stderr: %s", i,
                     sbx_status_name(cold.status), cold.exit_code, cold.out.data,
                     sbx_status_name(warm.status), warm.exit_code, warm.out.data, warm.err.data);
        /* The last line of stderr (the error itself) is the same; tracebacks
         * of warm runs have one more frame, the driver's. */
        size_t n = cold.err.len;
        while (n > 0 && cold.err.data[n - 1] == '\n')
            n--;
        size_t start = n;
        while (start > 0 && cold.err.data[start - 1] != '\n')
            start--;
        if (n > start && !memmem(warm.err.data, warm.err.len, cold.err.data + start, n - start))
            fail_msg("program %zu: cold stderr %s\nwarm stderr %s", i, cold.err.data,
                     warm.err.data);
        sbx_result_free(&cold);
        sbx_result_free(&warm);
    }
    sbx_warm_release();
}

/* Without cgroups the rlimits hold for warm runs too. */
static void test_sandbox_warm__rlimits_tier(void **state)
{
    (void)state;
    need_sandbox();
    char err[256];
    sbx_options opts = SBX_OPTIONS_INIT;
    opts.no_cgroup = true;
    assert_int_equal(sbx_init(NULL, &opts, err, sizeof err), 0);
    sbx_result r;
    sbx_limits lim = SBX_LIMITS_INIT;
    lim.cpu_ms = 500;
    lim.wall_ms = 10000;
    run_py(&r, "while True:\n    pass\n", true, &lim);
    expect(&r, SBX_TIME_LIMIT_EXCEEDED);
    sbx_result_free(&r);

    lim = (sbx_limits)SBX_LIMITS_INIT;
    lim.memory_mb = 64;
    run_py(&r, "x = bytearray(100 * 2**20)\n", true, &lim);
    expect(&r, SBX_RUNTIME_ERROR);
    assert_non_null(strstr(r.err.data, "MemoryError"));
    sbx_result_free(&r);

    /* 3 as cold; 2 if the zygote had not yet reaped the run init's parent. */
    lim = (sbx_limits)SBX_LIMITS_INIT;
    lim.processes = 4;
    run_py(&r,
           "import os\nn = 0\ntry:\n    for i in range(20):\n        if os.fork() == 0:\n"
           "            os.read(os.open('/dev/zero', 0), 1)\n            os._exit(0)\n"
           "        n += 1\nexcept OSError:\n    pass\nprint(n)\n",
           true, &lim);
    expect(&r, SBX_OK);
    assert_true(strcmp(r.out.data, "3\n") == 0 || strcmp(r.out.data, "2\n") == 0);
    sbx_result_free(&r);
    sbx_warm_release();
    assert_int_equal(sbx_init(NULL, NULL, err, sizeof err), 0);
}

/* A zygote that cannot start: the run is done cold, never with less. */
static void test_sandbox_warm__falls_back_cold(void **state)
{
    (void)state;
    need_sandbox();
    char err[256];
    sbx_options opts = SBX_OPTIONS_INIT;
    opts.python3 = "/bin/true";     /* starts, but never says "ready" */
    assert_int_equal(sbx_init(NULL, &opts, err, sizeof err), 0);
    uint64_t started = sbx_warm_started();
    sbx_request req = SBX_REQUEST_INIT;
    req.language = "python3";
    req.code = "x";
    req.code_len = 1;
    req.warm = true;
    sbx_result r;
    int rc = sbx_run(&r, &req, err, sizeof err);
    sbx_options def = SBX_OPTIONS_INIT;
    def.python3 = "/usr/bin/python3";
    char err2[256];
    assert_int_equal(sbx_init(NULL, &def, err2, sizeof err2), 0);
    if (rc != 0)
        fail_msg("sbx_run: %s", err);
    expect(&r, SBX_OK);             /* /bin/true -B -E -s main.py, cold */
    assert_false(r.warm);
    assert_true(sbx_warm_started() > started);
    sbx_result_free(&r);
    /* sbx_init forgets the failure: the next warm request is warm. */
    run_py(&r, "print(1)\n", true, NULL);
    expect(&r, SBX_OK);
    sbx_result_free(&r);
    sbx_warm_release();
}


/* A zygote that died between runs is restarted by the next warm run. */
static void test_sandbox_warm__restarted_after_death(void **state)
{
    (void)state;
    need_sandbox();
    sbx_result r;
    run_py(&r, "print(1)\n", true, NULL);
    expect(&r, SBX_OK);
    sbx_result_free(&r);
    /* Our only child now is the zygote's sandbox init. */
    char path[64], buf[64] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)syscall(SYS_gettid));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    char *end;
    long pid = strtol(buf, &end, 10);
    assert_true(pid > 0);
    assert_true(*end == ' ' || *end == '\0');
    assert_true(end[*end == ' '] == '\0' || end[*end == ' '] == '\n');  /* one child only */
    uint64_t started = sbx_warm_started();
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    run_py(&r, "print(2)\n", true, NULL);
    expect(&r, SBX_OK);
    assert_string_equal(r.out.data, "2\n");
    assert_int_equal(sbx_warm_started(), started + 1);
    sbx_result_free(&r);
    sbx_warm_release();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sandbox_run__not_initialised),
        cmocka_unit_test(test_sandbox_status__names),
        cmocka_unit_test(test_sandbox_tier__names),
        cmocka_unit_test(test_sandbox_languages__table),
        cmocka_unit_test(test_sandbox_result_free__null_and_zeroed),
        cmocka_unit_test(test_sandbox_probe__layers_and_tier),
        cmocka_unit_test(test_sandbox_init__modes),
        cmocka_unit_test(test_sandbox_init__sweeps_stale_cgroups),
        cmocka_unit_test(test_sandbox_run__invalid_requests),
        cmocka_unit_test(test_sandbox_run__python_ok),
        cmocka_unit_test(test_sandbox_run__python_exit_code_and_stderr),
        cmocka_unit_test(test_sandbox_run__python_files_and_stdin),
        cmocka_unit_test(test_sandbox_run__python_threads_subprocess_unittest),
        cmocka_unit_test(test_sandbox_run__c_program),
        cmocka_unit_test(test_sandbox_run__c_compile_error),
        cmocka_unit_test(test_sandbox_run__cpp_program),
        cmocka_unit_test(test_sandbox_run__bash),
        cmocka_unit_test(test_sandbox_run__lua),
        cmocka_unit_test(test_sandbox_run__argv),
        cmocka_unit_test(test_sandbox_run__executable_file),
        cmocka_unit_test(test_sandbox_run__exec_error),
        cmocka_unit_test(test_sandbox_run__output_cap),
        cmocka_unit_test(test_sandbox_run__cpu_limit),
        cmocka_unit_test(test_sandbox_run__wall_limit),
        cmocka_unit_test(test_sandbox_run__memory_limit),
        cmocka_unit_test(test_sandbox_run__process_limit),
        cmocka_unit_test(test_sandbox_run__tmpfs_cap),
        cmocka_unit_test(test_sandbox_run__rlimits_tier),
        cmocka_unit_test(test_sandbox_run__concurrent),
        cmocka_unit_test(test_sandbox_run__humaneval_record0),
        cmocka_unit_test(test_sandbox_warm__same_result_as_cold),
        cmocka_unit_test(test_sandbox_warm__rlimits_tier),
        cmocka_unit_test(test_sandbox_warm__falls_back_cold),
        cmocka_unit_test(test_sandbox_warm__restarted_after_death),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
