/*
 * lenv internals shared by the files of lua/ (not part of the public API; see
 * lenv.h for that). Names carry a double underscore: lenv__.
 *
 *   runtime.c  sandboxed lua_State: allocator cap, instruction hook, allow-list,
 *              read-only base, seeding, protected calls, error capture
 *   module.c   the `envsrv` table Lua code sees (verify, json)
 *   convert.c  JSON <-> Lua values, bounded in depth
 *   dataset.c  files (embedded or on disk), JSONL, data overrides, hashing
 *   lenv.c     the pool, lenv_open/lenv_free, accessors, sampling
 *   lenv_def.c the definition table: checks, function refs, fields
 *   lenv_data.c datasets: split files, joins, the dataset hash, the id index
 *   lenv_call.c calls into env code for an item: views, scoring, episodes
 *   generate.c procedural environments: item ids, generate(), lenv_item_get
 *   challenge.c beacon-seeded challenges (HMAC-SHA256)
 *   curriculum.c adaptive difficulty per environment
 *   gitsrc.c   environments from git: spec parsing, the cache, fetching with a
 *              timeout, revisions, checkouts
 *   gitlock.c  lock files
 *   module_git.c envsrv.git: a unified diff applied to a commit's tree
 */
#ifndef ENVSRV_LENV_INT_H
#define ENVSRV_LENV_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include <git2.h>
#include <jansson.h>
#include <lua.h>
#include <lauxlib.h>

#include "lua/lenv.h"

/* JSON <-> Lua conversions stop at this nesting depth (cycles end here too). */
#define LENV__MAX_DEPTH 64

/* The instruction hook fires every LENV__HOOK_CHUNK VM instructions. */
#define LENV__HOOK_CHUNK 1000

/* ---- runtime.c -------------------------------------------------------------- */

/* One sandboxed Lua state holding one environment definition. Owned by the
 * env's pool; used by one thread at a time. */
typedef struct lenv__state {
    lua_State *L;           /* owned; lua_close()d by lenv__state_close */
    size_t mem_used;        /* bytes currently allocated by L */
    size_t mem_limit;       /* allocations past this are refused */
    int mem_refused;        /* set when the cap refused an allocation */
    uint64_t chunks_budget; /* hook chunks per call */
    uint64_t chunks_left;   /* chunks left in the current call */
    uint64_t instruction_limit;
    int frozen;             /* globals are read-only once the definition ran */
    int ref_env;            /* registry ref of the definition's _ENV */
    int ref_randomseed;     /* registry ref of the real math.randomseed */
    int ref_def;            /* registry ref of the definition table */
    int ref_prompt, ref_answer, ref_metadata, ref_reward, ref_reset, ref_step;
    int ref_generate;       /* generate(seed, difficulty) of procedural envs, else LUA_NOREF */
    /* Tools (tools.c): a list in the definition gives ref_tools (name -> the
     * tool's table) and tool_docs (owned: the OpenAI-format list); a function
     * gives ref_tools_fn. LUA_NOREF / NULL when the definition has none. */
    int ref_tools, ref_tools_fn;
    json_t *tool_docs;
    /* The env's git cache settings (envsrv.git); borrowed from the env. */
    const struct lenv__gitcfg *git;
    /* Where errors point: the env file as shown to users ("envs/gsm8k.lua")
     * and Lua's short form of its chunk name (what prefixes its messages). */
    char source[256];
    char short_src[LUA_IDSIZE];
    /* Filled while an error propagates (message handler / lenv__raise). */
    int raise_code;         /* LENV_E* for the error being raised */
    int raise_line;         /* > 0: the line to report instead of the stack's */
    int err_line;
    char err_msg[512];
} lenv__state;

/* Creates the sandboxed state, runs the definition chunk `src` (text only) in
 * its own _ENV and keeps the returned table as st->ref_def. `display` is the
 * file name shown in errors ("envs/gsm8k.lua" or the user's path).
 * Returns 0 or LENV_E* with err filled; on failure st is closed. */
int lenv__state_open(lenv__state *st, const char *src, size_t len, const char *display,
                     size_t mem_limit, uint64_t instruction_limit, lenv_error *err);

/* Closes st->L (NULL is fine) and clears the refs. */
void lenv__state_close(lenv__state *st);

/* Runs fn(ctx) in protected mode with the message handler installed. Lua
 * errors, limits and lenv__raise()s become LENV_E* codes with err filled.
 * The stack is empty afterwards and the state is usable again. */
int lenv__state_pcall(lenv__state *st, lua_CFunction fn, void *ctx, lenv_error *err);

/* The state a lua_State belongs to (any thread of it). */
lenv__state *lenv__state_of(lua_State *L);

/* Starts one call into env code: refills the instruction budget and seeds
 * math.random with `seed`. Call inside lenv__state_pcall only. [-0, +0, e] */
void lenv__arm(lua_State *L, uint64_t seed);

/* Raises an error with an lenv code. line > 0 names a line of the env file;
 * code LENV_ESCRIPT blames the env file, anything else blames the caller
 * (source "" and line 0). Never returns. [-0, +1, v] */
int lenv__raise(lua_State *L, int code, int line, const char *fmt, ...)
    __attribute__((noreturn));

/* Pushes a read-only proxy of the table at idx: reads and pairs() go to the
 * table, writes raise "attempt to modify read-only table 'NAME'". [-0, +1, m] */
void lenv__push_readonly(lua_State *L, int idx, const char *name);

/* Fills err (which may be NULL) and returns code. */
int lenv__fail(lenv_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 64-bit hash of bytes, chained through `h`. Stable across machines. */
uint64_t lenv__hash64(uint64_t h, const void *data, size_t len);

/* ---- tools.c ----------------------------------------------------------------- */

/* Reads the definition's `tools` field (the table at index def): a list of
 * {name, description, parameters, run} or a function(item). Fills the tool
 * fields of st; raises LENV_EINVALID on a malformed declaration. [-0, +0, e] */
void lenv__tools_load(lua_State *L, lenv__state *st, int def);

/* The tool list of an item view: a new JSON array (OpenAI format), or NULL
 * when the definition declares no tools. Runs tools(item) for the function
 * form; `it` is the stack index of the item. [-0, +0, e] */
json_t *lenv__tools_view(lua_State *L, lenv__state *st, int it);

/* The tool calls of one step. When the definition has runnable tools and
 * `action` holds tool calls (or a broken one), runs each call: validates its
 * arguments against the tool's schema, runs tool.run(args, state) under its
 * own instruction budget, and appends one `tool` message per call to
 * `observation` (errors, schema violations and unknown tools are tool
 * messages that say so, never failures) and a record per call to `calls`
 * (info). Returns 1 when it took the action as tool calls, 0 when the env's
 * step() should see it. `state` is the stack index of the state table;
 * `turn` numbers the tool_call_ids. [-0, +0, e] */
int lenv__tools_run(lua_State *L, lenv__state *st, int state, const char *action, size_t len,
                    uint64_t seed, long turn, json_t *observation, json_t *calls);

/* ---- module.c --------------------------------------------------------------- */

/* Pushes the `envsrv` table (read-only, with read-only subtables). [-0, +1, m] */
void lenv__push_module(lua_State *L);

/* Registers the metatables module.c needs. Call once per state. [-0, +0, m] */
void lenv__module_init(lua_State *L);

/* module_sandbox.c: envsrv.sandbox (run, nonce) and envsrv.code (extract). */
extern const luaL_Reg lenv__sandbox_funcs[], lenv__code_funcs[];
/* module_git.c: envsrv.git (apply). */
extern const luaL_Reg lenv__git_funcs[];

/* ---- convert.c -------------------------------------------------------------- */

/* The value JSON null becomes inside arrays (envsrv.json.null); null members
 * of objects are left out (the field reads as nil). [-0, +1, -] */
void lenv__push_null(lua_State *L);
int lenv__is_null(lua_State *L, int idx);

/* Pushes v as a Lua value: object -> table with string keys, array -> table
 * 1..n, integer -> integer, real -> float. Raises an error past
 * LENV__MAX_DEPTH. [-0, +1, e] */
void lenv__push_json(lua_State *L, const json_t *v);

/* Nesting depth of v (a scalar is 0), counted up to limit+1 at most. */
int lenv__json_depth(const json_t *v, int limit);

/* Flags for lenv__to_json. */
#define LENV__EMPTY_ARRAY 1u /* an empty table at the top converts to [] (default {}) */

/* Converts the Lua value at idx to JSON: nil and envsrv.json.null -> null,
 * booleans, integers, finite floats, UTF-8 strings, tables whose keys are
 * exactly 1..n -> arrays, other tables (string or integer keys) -> objects.
 * Returns a new reference, or NULL with a message in err (cycles end at the
 * depth limit). Raises nothing and never calls Lua code. */
json_t *lenv__to_json(lua_State *L, int idx, unsigned flags, char *err, size_t errcap);

/* 1 when s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
int lenv__utf8_valid(const char *s, size_t n);

/* The length (2 to 4) of the well-formed UTF-8 sequence at s, whose first
 * byte is >= 0x80 (n >= 1 bytes left), or 0: no overlong forms, surrogates
 * or code points above U+10FFFF. */
size_t lenv__utf8_seq(const unsigned char *s, size_t n);

/* ---- dataset.c -------------------------------------------------------------- */

/* The embedded file named `name` (relative to envs/), or NULL. Borrowed. */
const lenv_embedded_file *lenv__embedded_find(const char *name);

/* Reads a whole file. *data is a new NUL-terminated buffer the caller frees.
 * Returns 0 or LENV_EIO ("cannot read 'PATH': No such file or directory"). */
int lenv__read_file(char **data, size_t *len, const char *path, lenv_error *err);

/* Parses JSONL: one object per non-blank line. *out is a new array (caller
 * json_decref()s). Errors are LENV_EIO "data file 'NAME' line N: ...". */
int lenv__parse_jsonl(json_t **out, const char *data, size_t len, const char *name,
                      lenv_error *err);

/* A split file to load: name and where its bytes come from. */
typedef struct lenv__split_file {
    char *split;                    /* owned */
    char *path;                     /* owned: the name shown in errors */
    const lenv_embedded_file *file; /* borrowed; NULL means read `path` from disk */
} lenv__split_file;

/* Expands --data overrides into split files (a directory gives one split per
 * file that fits `pattern`, sorted; the pattern has one '*', which names the
 * split; NULL means "*.jsonl"). *out is a new array of *n_out entries; free it
 * with lenv__split_files_free. Duplicate split names are LENV_EINVALID. */
int lenv__expand_sources(lenv__split_file **out, size_t *n_out, const lenv_data_source *src,
                         size_t n, const char *pattern, lenv_error *err);
void lenv__split_files_free(lenv__split_file *files, size_t n);

/* SHA-256 of the bytes; writes 32 bytes. Returns 0 or -1 (libcrypto failure). */
typedef struct lenv__sha256 lenv__sha256;
lenv__sha256 *lenv__sha256_new(void);
int lenv__sha256_add(lenv__sha256 *h, const void *data, size_t len);
/* Finishes and frees h; writes 16 hex digits (the first 8 bytes) and a NUL. */
int lenv__sha256_hex16(lenv__sha256 *h, char out[17]);
void lenv__sha256_free(lenv__sha256 *h);

/* ---- lenv.c --------------------------------------------------------------------- */

/* Longest env and split name (definition field 'name', built-in names). */
#define LENV__MAX_NAME 64

/* The pool: acquire blocks until a state is idle; release gives it back. */
lenv__state *lenv__acquire(lenv_env *env);
void lenv__release(lenv_env *env, lenv__state *st);

/* 1 when env is procedural (its definition has generate()); then *min and
 * *max (either may be NULL) are its difficulty levels. */
int lenv__levels(const lenv_env *env, int *min, int *max);

/* The env's curriculum slot (owned by env; NULL for dataset envs). */
typedef struct lenv__curriculum lenv__curriculum;
lenv__curriculum **lenv__curriculum_slot(lenv_env *env);

/* ---- lenv_def.c ------------------------------------------------------------------ */

/* What a definition says, filled by lenv__def_impl. Owned by its caller (on
 * the stack of lenv_open); the strings and JSON values are owned by it until
 * lenv_open takes them, and lenv__def_clear frees what is left. */
typedef struct lenv__def {
    lenv__state *st;        /* borrowed: the state whose definition is read */
    int first;              /* extract the fields below (only from the first state) */
    char *name, *description, *default_split, *id_field;
    char *files_pattern, *join_dir, *join_key; /* data_format; NULL when absent */
    json_t *params;
    json_t *dataset;        /* object split -> relative path */
    int long_running;
    int multi_turn;
    lenv_limits limits;
    int generated, level_min, level_max;
} lenv__def;

/* Validates the definition table of c->st and takes refs to its functions;
 * with c->first, also fills c. Run through lenv__state_pcall with the
 * lenv__def as its context. [-1, +0, e] */
int lenv__def_impl(lua_State *L);

/* Frees what c owns and zeroes it. */
void lenv__def_clear(lenv__def *c);

/* 1 when s is a valid env or split name: [a-z0-9_.-]+, at most LENV__MAX_NAME. */
int lenv__valid_name(const char *s);

/* ---- lenv_data.c ----------------------------------------------------------------- */

/* Loads env's dataset: the --data overrides of opts, or else the definition's
 * own splits (def->dataset, beside env->source; among the built-in files when
 * `embedded`). Fills env->splits, n_splits, by_id and dataset_hash (owned by
 * env, freed by lenv_free even after a failure). Returns 0 or LENV_E*. */
int lenv__load_data(lenv_env *env, const lenv_options *opts, const lenv__def *def, int embedded,
                    lenv_error *err);

/* ---- lenv_call.c ----------------------------------------------------------------- */

/* Item views of n items (lenv_item_view for each), as one new JSON array. */
int lenv__views(json_t **out, lenv_env *env, const json_t *const *items, size_t n,
                int include_answer, lenv_error *err);

/* json_object_set_new / json_array_append_new that raise ENOMEM instead of
 * failing quietly. They take v (a new reference, NULL allowed) in every case. [-0, +0, e] */
void lenv__set_new(lua_State *L, json_t *obj, const char *key, json_t *v);
void lenv__append_new(lua_State *L, json_t *arr, json_t *v);

/* ---- generate.c --------------------------------------------------------------- */

/* Longest generated item id ("d" + level + "-s" + 19 digits) plus the NUL. */
#define LENV__GEN_ID_MAX 32

/* Parses a generated item id "d<level>-s<seed>" strictly (see generate.c).
 * Returns 1 and fills *level and *seed, or 0 when id is not of that form. */
int lenv__gen_id_parse(const char *id, int *level, uint64_t *seed);
void lenv__gen_id_format(char out[LENV__GEN_ID_MAX], int level, uint64_t seed);

/* Runs generate() for each (levels[i], seeds[i]) in one pool state: *out is a
 * new array of n items, each with its "id". Levels must be in range. */
int lenv__generate(json_t **out, lenv_env *env, const int *levels, const uint64_t *seeds,
                   size_t n, lenv_error *err);

/* ---- curriculum.c ------------------------------------------------------------- */

/* A curriculum for levels min..max with the default options, or NULL (out of
 * memory). Freed by lenv__curriculum_free (NULL is fine). */
lenv__curriculum *lenv__curriculum_new(int min, int max);
void lenv__curriculum_free(lenv__curriculum *c);

/* ---- gitsrc.c ------------------------------------------------------------------- */

/* An env's git settings: the cache folder (owned; resolved from the options or
 * the environment) and the fetch timeout. */
typedef struct lenv__gitcfg {
    char *cache_dir;
    unsigned timeout_ms;
} lenv__gitcfg;

/* Fills cfg from opts (NULL: defaults). Returns 0 or LENV_ENOMEM. A missing
 * $HOME is not an error here: cache_dir stays NULL and every use of the
 * cache says so. */
int lenv__gitcfg_init(lenv__gitcfg *cfg, const lenv_git_options *opts, lenv_error *err);
void lenv__gitcfg_clear(lenv__gitcfg *cfg);

/* The start of lenv_open for git specs. When opts->name_or_path is a git spec,
 * parses and resolves it: *ref is new (the caller frees it with
 * lenv__git_ref_free) and *path the checked-out file to load (borrowed from
 * *ref). Otherwise *ref is NULL and *path is opts->name_or_path; with a lock
 * that is refused. Returns 0 or LENV_E* with err filled. */
int lenv__git_prepare(lenv_git_ref **ref, const char **path, const lenv_options *opts,
                      lenv_error *err);
void lenv__git_ref_free(lenv_git_ref *ref);

/* A git env's own dataset paths (`dataset`, an object split -> path) must stay
 * inside its checkout: relative, without ".." (a leading "./" is fine).
 * Returns 0 (always, for ref == NULL) or LENV_EINVALID. */
int lenv__git_check_dataset(const lenv_git_ref *ref, const json_t *dataset, lenv_error *err);

/* The end of lenv_open for git envs: checks the definition's name against the
 * lock and appends "+git.<commit12>.<sha12>" to version (cap bytes). */
int lenv__git_finish(char *version, size_t cap, const lenv_git_ref *ref, const char *name,
                     lenv_error *err);

/* Opens the cached repository of url (creating, repairing or fetching it as
 * needed) and resolves rev (a tag, branch, commit id or "HEAD") to *commit.
 * *repo is new (git_repository_free). warning gets "" or why a possibly stale
 * cached copy was used. Errors as lenv_git_resolve. */
int lenv__git_open_rev(git_repository **repo, git_oid *commit, char *warning, size_t wcap,
                       const lenv__gitcfg *cfg, const char *url, const char *rev, lenv_error *err);

/* Opens (creating it when absent) the cache's bare repository for content that
 * has no URL (envsrv.git's inline repositories). *repo is new. */
int lenv__git_open_inline(git_repository **repo, const lenv__gitcfg *cfg, lenv_error *err);

/* Ensures git_libgit2_init() ran once in this process. */
void lenv__git_init(void);

/* The last libgit2 error's message, or `fallback`. Borrowed. */
const char *lenv__git_errmsg(const char *fallback);

/* SHA-256 of bytes as 64 hex digits and a NUL. Returns 0 or -1. */
int lenv__sha256_full(char out[65], const void *data, size_t len);

/* 1 when a path inside a repository is safe to write under a work folder:
 * relative, no empty, "." or ".." component, no ".git" component (any case),
 * no backslash or control character, valid UTF-8. */
int lenv__git_path_safe(const char *path);

/* ---- gitlock.c -------------------------------------------------------------------- */

typedef struct lenv__lock_entry {
    char *name, *url, *path, *rev, *commit, *file_sha256; /* owned by the lock */
    char *spec;                                           /* git+URL@COMMIT#PATH */
} lenv__lock_entry;

/* The entry for (url, path), or NULL. Borrowed from lock. */
const lenv__lock_entry *lenv__lock_find(const lenv_lock *lock, const char *url, const char *path);

/* The file the lock was read from (for messages). Borrowed. */
const char *lenv__lock_file(const lenv_lock *lock);

/* ---- the env, shared by lenv.c, lenv_data.c and lenv_call.c ---------------------- */

/* One split of a dataset env. Owned by the env. */
typedef struct lenv__split {
    char *name;    /* owned */
    json_t *items; /* owned: array of records, each with its "id" */
} lenv__split;

/* An open environment (opaque in lenv.h). Built by lenv_open, with its
 * dataset filled in by lenv__load_data; read-only afterwards except for the
 * pool's free list (under mu) and the curriculum (which has its own lock). */
struct lenv_env {
    char *name;           /* owned */
    char *description;    /* owned */
    char *source;         /* owned: the file as shown in errors */
    char *default_split;  /* owned; NULL when the definition names none */
    char version[64];     /* 16 hex, then "+git.<commit12>.<sha12>" for git envs */
    char dataset_hash[17];
    uint64_t seed;        /* the version as a number: the root of every call's seed */
    int multi_turn;
    int long_running;     /* the definition's long_running: its calls may take seconds */
    lenv_limits limits;
    json_t *params;       /* owned: object */
    lenv__split *splits;  /* owned; sorted by name */
    size_t n_splits;
    json_t *by_id;        /* owned: id -> record (references into splits) */
    int generated;        /* procedural: items come from generate(), levels below */
    int level_min, level_max;
    lenv__curriculum *curriculum; /* owned; procedural envs only */
    lenv_git_ref *git_ref;  /* owned; where a git env came from, else NULL */
    lenv__gitcfg git;       /* owned: envsrv.git's cache settings */

    lenv__state *states;  /* owned: n_states of them */
    size_t n_states;
    size_t *free_states;  /* owned: stack of indexes of idle states */
    size_t n_free;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync_ready;
};

#endif
