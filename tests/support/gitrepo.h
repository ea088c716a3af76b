/*
 * Test support: throwaway git repositories made with libgit2 (no git
 * program, no network), for the tests of git environments and of the patch
 * environment. Every helper fails the test on error. Include after cmocka.h.
 */
#ifndef ENVSRV_TEST_GITREPO_H
#define ENVSRV_TEST_GITREPO_H

/* Creates a repository (with a work tree) at dir, whose HEAD will be
 * refs/heads/main. */
void tsup_git_init(const char *dir);

/*
 * Commits on `branch` (created at the current HEAD's commit when new; the
 * first commit creates it as the root). `files` is NULL-terminated pairs
 * {path, content, path, content, ..., NULL}: each path is written (content
 * NULL deletes it), every other file of the parent commit is kept. The commit
 * id goes to out (40 hex + NUL). Author and time are fixed, so the ids are
 * the same on every run.
 */
void tsup_git_commit(char out[41], const char *dir, const char *branch, const char *const *files,
                     const char *message);

/* A lightweight tag `name` at commit `hex`. */
void tsup_git_tag(const char *dir, const char *name, const char *hex);

/* rm -rf dir (read-only folders included). */
void tsup_rmtree(const char *dir);

#endif
