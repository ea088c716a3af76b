/*
 * Throwaway git repositories for tests, made with libgit2. See gitrepo.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "tests/support/gitrepo.h"

static void check(int rc, const char *what)
{
    if (rc < 0) {
        const git_error *e = git_error_last();
        fail_msg("%s: %s", what, e && e->message ? e->message : "libgit2 error");
    }
}

void tsup_git_init(const char *dir)
{
    git_libgit2_init();
    git_repository *repo = NULL;
    git_repository_init_options o;
    git_repository_init_options_init(&o, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    o.flags = GIT_REPOSITORY_INIT_MKPATH;
    o.initial_head = "main";
    check(git_repository_init_ext(&repo, dir, &o), "git init");
    git_repository_free(repo);
}

void tsup_git_commit(char out[41], const char *dir, const char *branch, const char *const *files,
                     const char *message)
{
    git_libgit2_init();
    git_repository *repo = NULL;
    git_index *index = NULL;
    git_commit *parent = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    git_oid tree_id, commit_id;
    char refname[256];
    snprintf(refname, sizeof refname, "refs/heads/%s", branch);
    check(git_repository_open(&repo, dir), "open repository");
    check(git_index_new(&index), "new index");
    /* The parent: the branch's tip, else HEAD's commit (a new branch). */
    git_reference *ref = NULL;
    git_object *obj = NULL;
    if (git_reference_lookup(&ref, repo, refname) == 0 ||
        git_repository_head(&ref, repo) == 0) {
        check(git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT), "peel");
        parent = (git_commit *)obj;
        git_tree *ptree = NULL;
        check(git_commit_tree(&ptree, parent), "parent tree");
        check(git_index_read_tree(index, ptree), "read tree");
        git_tree_free(ptree);
        git_reference_free(ref);
    }
    for (size_t i = 0; files[i]; i += 2) {
        if (files[i + 1] == NULL) {
            check(git_index_remove_bypath(index, files[i]), "remove");
            continue;
        }
        git_index_entry e;
        memset(&e, 0, sizeof e);
        e.mode = GIT_FILEMODE_BLOB;
        e.path = files[i];
        check(git_blob_create_from_buffer(&e.id, repo, files[i + 1], strlen(files[i + 1])), "blob");
        check(git_index_add(index, &e), "index add");
    }
    check(git_index_write_tree_to(&tree_id, index, repo), "write tree");
    check(git_tree_lookup(&tree, repo, &tree_id), "tree");
    check(git_signature_new(&sig, "envsrv tests", "tests@envsrv", 1700000000, 0), "signature");
    const git_commit *parents[1] = { parent };
    check(git_commit_create(&commit_id, repo, refname, sig, sig, NULL, message, tree,
                            parent ? 1 : 0, parents), "commit");
    git_oid_tostr(out, 41, &commit_id);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(parent);
    git_index_free(index);
    git_repository_free(repo);
}

void tsup_git_tag(const char *dir, const char *name, const char *hex)
{
    git_libgit2_init();
    git_repository *repo = NULL;
    git_object *target = NULL;
    git_oid id, tag_id;
    check(git_repository_open(&repo, dir), "open repository");
    check(git_oid_fromstr(&id, hex), "oid");
    check(git_object_lookup(&target, repo, &id, GIT_OBJECT_COMMIT), "lookup");
    check(git_tag_create_lightweight(&tag_id, repo, name, target, 0), "tag");
    git_object_free(target);
    git_repository_free(repo);
}

static int unlock_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D)
        chmod(path, (sb->st_mode & 07777) | S_IRWXU);
    return 0;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void tsup_rmtree(const char *dir)
{
    nftw(dir, unlock_one, 16, FTW_PHYS);
    nftw(dir, remove_one, 16, FTW_PHYS | FTW_DEPTH);
}
