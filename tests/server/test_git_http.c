/*
 * Git environments and the patch environment through the real binary:
 * `--env git+file://...` serves an env from a repository the test makes with
 * libgit2, with the commit in env_version and in describe; `envsrv lock`
 * writes a lock and `--lock` serves exactly it and refuses anything else;
 * bad specs stop the server with a clear message. The patch env scores over
 * HTTP: the reference patch passes, a wrong patch fails, a malformed diff and
 * a diff reaching outside the repository are rejected with the reason, and a
 * repository given by path or file:// URL works like the inline ones.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/gitrepo.h"
#include "tests/support/support.h"

static char root[64], repo[128], url[160], cache[128], c1[41], c2[41];

static const char ENV_FILE[] =
    "return {\n"
    "  name = 'capitals',\n"
    "  description = 'capitals from git',\n"
    "  dataset = { test = 'capitals.jsonl' },\n"
    "  id_field = 'id',\n"
    "  prompt = function(item) return {{role = 'user', content = 'Capital of ' .. item.country .. '?'}} end,\n"
    "  reward = function(item, c) return c:find(item.capital, 1, true) and 1.0 or 0.0 end,\n"
    "}\n";

static int setup(void **state)
{
    (void)state;
    tsup_mkdtemp(root);
    snprintf(repo, sizeof repo, "%s/repo", root);
    snprintf(url, sizeof url, "file://%s", repo);
    snprintf(cache, sizeof cache, "%s/cache", root);
    tsup_git_init(repo);
    const char *const f1[] = { "envs/capitals.lua", ENV_FILE, "envs/capitals.jsonl",
                               "{\"id\": \"fr\", \"country\": \"France\", \"capital\": \"Paris\"}\n", NULL };
    tsup_git_commit(c1, repo, "main", f1, "one");
    tsup_git_tag(repo, "v1", c1);
    const char *const f2[] = { "envs/capitals.jsonl",
                               "{\"id\": \"fr\", \"country\": \"France\", \"capital\": \"Paris\"}\n"
                               "{\"id\": \"pe\", \"country\": \"Peru\", \"capital\": \"Lima\"}\n", NULL };
    tsup_git_commit(c2, repo, "main", f2, "two");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tsup_rmtree(root);
    return 0;
}

#define NEED_BIN()                                                              \
    do {                                                                        \
        if (!tsup_bin()) {                                                      \
            print_message("ENVSRV_BIN is not set to a built envsrv; skipping\n"); \
            skip();                                                             \
        }                                                                       \
    } while (0)

static void test_git_http_serve__env_version_names_the_commit(void **state)
{
    (void)state;
    NEED_BIN();
    char spec[512];
    snprintf(spec, sizeof spec, "git+%s@v1#envs/capitals.lua", url);
    const char *const args[] = { "--env", spec, "--cache-dir", cache, "--no-journal", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    int status = 0;
    json_t *j = tsup_call(&status, s.port, "GET", "/v1/envs/capitals", NULL);
    assert_int_equal(status, 200);
    const char *version = json_string_value(json_object_get(j, "version"));
    char want[32];
    snprintf(want, sizeof want, "+git.%.12s.", c1);
    assert_non_null(strstr(version, want));
    json_t *git = json_object_get(j, "git");
    assert_string_equal(json_string_value(json_object_get(git, "commit")), c1);
    assert_string_equal(json_string_value(json_object_get(git, "rev")), "v1");
    assert_string_equal(json_string_value(json_object_get(git, "path")), "envs/capitals.lua");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "splits"), "test")), 1);
    char version_copy[64];
    snprintf(version_copy, sizeof version_copy, "%s", version);
    json_decref(j);

    j = tsup_call(&status, s.port, "POST", "/v1/envs/capitals/score",
                  "{\"item_id\": \"fr\", \"completions\": [\"It is Paris.\", \"Lyon\"]}");
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "env_version")), version_copy);
    assert_true(json_number_value(json_array_get(json_object_get(j, "rewards"), 0)) == 1.0);
    assert_true(json_number_value(json_array_get(json_object_get(j, "rewards"), 1)) == 0.0);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);
}

static void test_git_http_lock__serves_the_locked_commit_only(void **state)
{
    (void)state;
    NEED_BIN();
    char spec[512], lockfile[160];
    snprintf(spec, sizeof spec, "git+%s@main#envs/capitals.lua", url);
    snprintf(lockfile, sizeof lockfile, "%s/envsrv.lock", root);
    char *out = NULL, *err = NULL;
    const char *const lock_args[] = { "lock", "--env", spec, "--cache-dir", cache, "-o", lockfile, NULL };
    assert_int_equal(tsup_run(&out, &err, lock_args), 0);
    assert_non_null(strstr(out, c2));
    free(out);
    free(err);
    json_t *lock = json_load_file(lockfile, 0, NULL);
    assert_non_null(lock);
    json_t *entry = json_object_get(json_object_get(lock, "envs"), "capitals");
    assert_string_equal(json_string_value(json_object_get(entry, "commit")), c2);
    assert_string_equal(json_string_value(json_object_get(entry, "url")), url);
    assert_int_equal(strlen(json_string_value(json_object_get(entry, "file_sha256"))), 64);
    json_decref(lock);

    /* The branch moves on; the lock keeps serving c2. */
    char c3[41];
    const char *const f3[] = { "envs/capitals.jsonl",
                               "{\"id\": \"jp\", \"country\": \"Japan\", \"capital\": \"Tokyo\"}\n", NULL };
    tsup_git_commit(c3, repo, "main", f3, "three");
    const char *const args[] = { "--lock", lockfile, "--cache-dir", cache, "--no-journal", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    int status = 0;
    json_t *j = tsup_call(&status, s.port, "GET", "/v1/envs/capitals", NULL);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "git"), "commit")), c2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "splits"), "test")), 2);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);

    /* The same spec with --lock still gives c2. */
    const char *const same[] = { "--lock", lockfile, "--env", spec, "--cache-dir", cache,
                                 "--no-journal", NULL };
    assert_int_equal(tsup_server_start(&s, same), 0);
    j = tsup_call(&status, s.port, "GET", "/v1/envs/capitals", NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "git"), "commit")), c2);
    json_decref(j);
    assert_int_equal(tsup_server_stop(&s), 0);

    /* Anything the lock does not list is refused. */
    const char *const other[] = { "--lock", lockfile, "--env", "gsm8k", "--cache-dir", cache, NULL };
    assert_int_equal(tsup_run(&out, &err, other), 1);
    assert_non_null(strstr(err, "environment 'gsm8k' is not in the lock file"));
    free(out);
    free(err);
}

static void test_git_http_errors__clear_messages(void **state)
{
    (void)state;
    NEED_BIN();
    char unknown[512], missing[512], nothere[512];
    snprintf(unknown, sizeof unknown, "git+%s@no-such-tag#envs/capitals.lua", url);
    snprintf(missing, sizeof missing, "git+%s@v1#envs/nope.lua", url);
    snprintf(nothere, sizeof nothere, "git+file://%s/absent@v1#e.lua", root);
    static const char *says[] = { "bad git URL", "unknown revision 'no-such-tag'",
                                  "'envs/nope.lua' is not in the tree", "has no copy" };
    const char *specs[] = { "git+ftp://host/repo#e.lua", unknown, missing, nothere };
    for (size_t i = 0; i < 4; i++) {
        const char *const args[] = { "--env", specs[i], "--cache-dir", cache, "--no-journal", NULL };
        char *out = NULL, *err = NULL;
        assert_int_equal(tsup_run(&out, &err, args), 1);
        if (!strstr(err, says[i]))
            fail_msg("%s: stderr '%s' does not say '%s'", specs[i], err, says[i]);
        free(out);
        free(err);
    }
    const char *const bad_lock[] = { "lock", "--env", "gsm8k", "-o", "x.lock", NULL };
    char *out = NULL, *err = NULL;
    assert_int_equal(tsup_run(&out, &err, bad_lock), 2);
    assert_non_null(strstr(err, "is not a git environment"));
    free(out);
    free(err);
}

static void test_git_http_eval__report_names_the_commit(void **state)
{
    (void)state;
    NEED_BIN();
    char model[4096], tok[4096], spec[512], report[160], lockfile[160];
    tsup_stories260k(model, sizeof model, tok, sizeof tok);
    if (access(model, R_OK) != 0) {
        print_message("skipped: %s not found (set ENVSRV_DATA to the shared data folder)\n", model);
        skip();
    }
    snprintf(spec, sizeof spec, "git+%s@v1#envs/capitals.lua", url);
    snprintf(report, sizeof report, "%s/report.json", root);
    snprintf(lockfile, sizeof lockfile, "%s/eval.lock", root);
    char *out = NULL, *err = NULL;
    const char *const lock_args[] = { "lock", "--env", spec, "--cache-dir", cache, "-o", lockfile, NULL };
    assert_int_equal(tsup_run(&out, &err, lock_args), 0);
    free(out);
    free(err);
    const char *const args[] = { "eval", "--env", spec, "--cache-dir", cache, "--lock", lockfile,
                                 "--git-timeout", "5", "--model", model, "--tokenizer", tok,
                                 "--limit", "1", "--max-tokens", "4", "--report", report, NULL };
    assert_int_equal(tsup_run(&out, &err, args), 0);
    free(out);
    free(err);
    json_t *r = json_load_file(report, 0, NULL);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "env_git"), "commit")), c1);
    char want[32];
    snprintf(want, sizeof want, "+git.%.12s.", c1);
    assert_non_null(strstr(json_string_value(json_object_get(r, "env_version")), want));
    json_decref(r);
    /* A spec the lock does not list is refused by eval too. */
    const char *const refused[] = { "eval", "--env", "gsm8k", "--lock", lockfile, "--model", model,
                                    "--tokenizer", tok, "--limit", "1", NULL };
    assert_int_equal(tsup_run(&out, &err, refused), 1);
    assert_non_null(strstr(err, "not in the lock file"));
    free(out);
    free(err);
}

/* ---- the patch env ---------------------------------------------------------------- */

static json_t *score(unsigned port, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    int status = 0;
    json_t *j = tsup_call(&status, port, "POST", "/v1/envs/patch/score", text);
    free(text);
    if (status != 200)
        fail_msg("score: status %d: %s", status, json_dumps(j, 0));
    return j;
}

static double reward_at(json_t *j, size_t i)
{
    return json_number_value(json_array_get(json_object_get(j, "rewards"), i));
}

static const char *detail_at(json_t *j, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(j, "details"), i), key));
}

static void test_git_http_patch__sample_task(void **state)
{
    (void)state;
    NEED_BIN();
    const char *const args[] = { "--env", "patch", "--cache-dir", cache, "--sandbox-workers", "2",
                                 "--no-journal", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    int status = 0;
    json_t *view = tsup_call(&status, s.port, "GET", "/v1/envs/patch/items/calc-add?include_answer=1", NULL);
    assert_int_equal(status, 200);
    const char *answer = json_string_value(json_object_get(view, "answer"));
    assert_non_null(answer);
    assert_non_null(strstr(answer, "+    return a + b"));
    /* A wrong fix of the same line. */
    char wrong[2048];
    const char *at = strstr(answer, "+    return a + b");
    snprintf(wrong, sizeof wrong, "%.*s+    return a * b%s", (int)(at - answer), answer,
             at + strlen("+    return a + b"));
    const char *malformed = "```diff\ndiff --git a/src/calc.py b/src/calc.py\n--- a/src/calc.py\n"
                            "+++ b/src/calc.py\n@@ -1,3 +1,3 @@\n garbage\n```";
    const char *outside = "```diff\ndiff --git a/../outside.txt b/../outside.txt\nnew file mode 100644\n"
                          "--- /dev/null\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+pwned\n```";
    const char *gitdir = "```diff\n--- /dev/null\n+++ b/.git/hooks/post-checkout\n@@ -0,0 +1 @@\n+x\n```";
    const char *stale = "```diff\n--- a/src/calc.py\n+++ b/src/calc.py\n@@ -1,3 +1,3 @@\n"
                        " def plus(a, b):\n     \"\"\"Return a + b.\"\"\"\n-    return a - b\n"
                        "+    return a + b\n```";
    const char *test_edit = "```diff\n--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n"
                            "@@ -1,2 +1,2 @@\n-import sys\n+import sys, os\n sys.path.insert(0, 'tests')\n```";
    json_t *body = json_pack("{s:s, s:[s, s, s, s, s, s, s, s]}", "item_id", "calc-add", "completions",
                             answer, wrong, "I could not find the bug.", malformed, outside, gitdir,
                             stale, test_edit);
    json_t *j = score(s.port, body);
    json_decref(body);
    assert_true(reward_at(j, 0) == 1.0);
    assert_string_equal(detail_at(j, 0, "status"), "passed");
    assert_true(reward_at(j, 1) == 0.0);
    assert_string_equal(detail_at(j, 1, "status"), "failed");
    for (size_t i = 2; i < 8; i++) {
        assert_true(reward_at(j, i) == 0.0);
        assert_string_equal(detail_at(j, i, "status"), "rejected");
    }
    assert_non_null(strstr(detail_at(j, 2, "reason"), "no unified diff"));
    assert_non_null(strstr(detail_at(j, 3, "reason"), "does not parse"));
    assert_non_null(strstr(detail_at(j, 4, "reason"), "outside the repository"));
    assert_non_null(strstr(detail_at(j, 5, "reason"), "outside the repository"));
    assert_non_null(strstr(detail_at(j, 6, "reason"), "does not apply"));
    assert_non_null(strstr(detail_at(j, 7, "reason"), "changes the test file"));
    json_decref(j);
    json_decref(view);

    /* Every sample task's reference patch passes; the unpatched code fails. */
    static const char *const ids[] = { "calc-add", "words-reverse", "clamp-range" };
    for (size_t i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/envs/patch/items/%s?include_answer=1", ids[i]);
        view = tsup_call(&status, s.port, "GET", path, NULL);
        assert_int_equal(status, 200);
        body = json_pack("{s:s, s:[O]}", "item_id", ids[i], "completions", json_object_get(view, "answer"));
        j = score(s.port, body);
        if (reward_at(j, 0) != 1.0)
            fail_msg("%s: the reference patch scored %g", ids[i], reward_at(j, 0));
        json_decref(j);
        json_decref(body);
        json_decref(view);
    }
    assert_int_equal(tsup_server_stop(&s), 0);
}

static void test_git_http_patch__repository_by_path_and_url(void **state)
{
    (void)state;
    NEED_BIN();
    char dir[128], commit[41], file_url[192];
    snprintf(dir, sizeof dir, "%s/patchrepo", root);
    snprintf(file_url, sizeof file_url, "file://%s", dir);
    tsup_git_init(dir);
    const char *const files[] = {
        "lib/ops.sh", "double() { echo $(( $1 + $1 + 1 )); }\nsquare() { echo $(( $1 + $1 )); }\n",
        "run_tests.sh",
        ". lib/ops.sh\n"
        "fail=0\n"
        "if [ \"$(double 4)\" = 8 ]; then echo PASS test_double; else echo FAIL test_double; fail=1; fi\n"
        "if [ \"$(square 3)\" = 9 ]; then echo PASS test_square; else echo FAIL test_square; fail=1; fi\n"
        "exit $fail\n",
        NULL };
    tsup_git_commit(commit, dir, "main", files, "ops");
    const char *fix_double = "```diff\n--- a/lib/ops.sh\n+++ b/lib/ops.sh\n@@ -1,2 +1,2 @@\n"
                             "-double() { echo $(( $1 + $1 + 1 )); }\n+double() { echo $(( $1 * 2 )); }\n"
                             " square() { echo $(( $1 + $1 )); }\n```";
    const char *fix_both = "```diff\n--- a/lib/ops.sh\n+++ b/lib/ops.sh\n@@ -1,2 +1,2 @@\n"
                           "-double() { echo $(( $1 + $1 + 1 )); }\n-square() { echo $(( $1 + $1 )); }\n"
                           "+double() { echo $(( $1 * 2 )); }\n+square() { echo $(( $1 * $1 )); }\n```";
    const char *const args[] = { "--env", "patch", "--cache-dir", cache, "--sandbox-workers", "1",
                                 "--no-journal", NULL };
    tsup_server s;
    assert_int_equal(tsup_server_start(&s, args), 0);
    for (int form = 0; form < 2; form++) {
        json_t *item = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s, s], s:s}", "id", "ops",
                                 "repo", form == 0 ? dir : file_url, "commit", form == 0 ? commit : "main",
                                 "issue", "double and square are wrong", "test_command",
                                 "bash run_tests.sh", "tests", "test_double", "test_square",
                                 "reward_mode", "fraction");
        json_t *body = json_pack("{s:o, s:[s, s, s]}", "item", item, "completions", fix_double,
                                 fix_both, "```diff\n--- a/lib/ops.sh\n+++ b/lib/ops.sh\n@@ -9 +9 @@\n-x\n+y\n```");
        json_t *j = score(s.port, body);
        json_decref(body);
        assert_true(reward_at(j, 0) == 0.5);
        assert_true(reward_at(j, 1) == 1.0);
        assert_true(reward_at(j, 2) == 0.0);
        assert_string_equal(detail_at(j, 0, "commit"), commit);
        assert_string_equal(detail_at(j, 2, "status"), "rejected");
        json_decref(j);
    }
    /* A commit the repository does not have is the item's fault: an error. */
    json_t *item = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", "ops", "repo", dir, "commit",
                             "no-such-branch", "issue", "x", "test_command", "true");
    json_t *body = json_pack("{s:o, s:[s]}", "item", item, "completions", fix_both);
    char *text = json_dumps(body, JSON_COMPACT);
    int status = 0;
    json_t *j = tsup_call(&status, s.port, "POST", "/v1/envs/patch/score", text);
    assert_true(status >= 400);
    free(text);
    text = json_dumps(j, 0);
    assert_non_null(strstr(text, "unknown revision"));
    free(text);
    json_decref(j);
    json_decref(body);
    assert_int_equal(tsup_server_stop(&s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_git_http_serve__env_version_names_the_commit),
        cmocka_unit_test(test_git_http_lock__serves_the_locked_commit_only),
        cmocka_unit_test(test_git_http_errors__clear_messages),
        cmocka_unit_test(test_git_http_eval__report_names_the_commit),
        cmocka_unit_test(test_git_http_patch__sample_task),
        cmocka_unit_test(test_git_http_patch__repository_by_path_and_url),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
