/*
 * lenv — environments: Lua 5.4 definitions, their datasets, and the Lua
 * runtime that runs them.
 *
 * An environment is a Lua file that returns a definition table (see
 * docs/lua-envs.md). lenv loads it (from the built-in set embedded in the
 * binary, or from a user's file), loads its dataset splits (JSONL) once into
 * memory, and keeps a pool of Lua states (one per server worker thread) that
 * each hold the definition. All calls into Lua go through the pool, so an
 * lenv_env is safe to use from many threads at once; no Lua state is ever
 * shared by two threads at the same time.
 *
 * Used by server/ (every /v1/envs route) and by main.c (`envsrv list`).
 *
 * Lua code runs sandboxed: base library without dofile/loadfile/load, string,
 * table, math (math.random seeded per call, deterministically), utf8,
 * coroutine; no io, os, package, debug. An instruction budget stops runaway
 * loops and a capped allocator stops memory bombs; both become LENV_ESCRIPT
 * errors, as do Lua runtime errors and wrong return types. Nothing in here
 * prints; every failure is returned in an lenv_error.
 *
 * Rewards are deterministic: the same (env version, item, completion) gives
 * the same reward whichever pool state runs it.
 */
#ifndef ENVSRV_LENV_H
#define ENVSRV_LENV_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* Error codes. The server maps them to HTTP statuses (in parentheses). */
#define LENV_OK         0
#define LENV_EINVALID  (-1) /* bad input from the caller: wrong types, bad values (422) */
#define LENV_ENOTFOUND (-2) /* unknown environment, split or item (404) */
#define LENV_ELIMIT    (-3) /* a size or count limit was exceeded (413/422) */
#define LENV_ESCRIPT   (-4) /* the environment's Lua code failed: error, limit, bad return (500) */
#define LENV_EIO       (-5) /* a file could not be read or parsed (loading only) */
#define LENV_ENOMEM    (-6) /* out of memory (500) */

/* A failure, as a caller can show it to a user. For LENV_ESCRIPT errors raised
 * by Lua code, `source` and `line` name where ("envs/gsm8k.lua", 12); otherwise
 * source is "" and line is 0. `message` is one line. */
typedef struct lenv_error {
    int code;
    char message[512];
    char source[256];
    int line;
} lenv_error;

/* One file compiled into the binary by envs/embed.sh. `name` is relative to
 * envs/ ("gsm8k.lua", "data/gsm8k/sample.jsonl"). The table ends with a zero
 * entry. `data` is NUL-terminated (the NUL is not counted in `len`). */
typedef struct lenv_embedded_file {
    const char *name;
    const unsigned char *data;
    size_t len;
} lenv_embedded_file;
extern const lenv_embedded_file lenv_embedded_files[];

/* A `--data` override: serve the JSONL file at `path` as split `split`.
 * split == NULL means "infer": a directory gives one split per *.jsonl file
 * (named by the file's stem); a file's split is "train" when its name contains
 * "train", "test" when it contains "test", else the file's stem. */
typedef struct lenv_data_source {
    const char *split;  /* borrowed; may be NULL */
    const char *path;   /* borrowed */
} lenv_data_source;

typedef struct lenv_options {
    /* A built-in name ("gsm8k"), a path to a .lua file ("./my_env.lua"), or
     * a git spec "git+URL@REV#PATH" (see "environments from git
     * repositories" below). Otherwise anything containing '/' or ending in
     * ".lua" is a path. Borrowed. */
    const char *name_or_path;
    /* Overrides of the definition's dataset; NULL/0 for none. Borrowed. When
     * given, they replace the definition's own splits entirely. */
    const lenv_data_source *data;
    size_t n_data;
    size_t n_states;            /* Lua states in the pool; 0 means 1 */
    uint64_t instruction_limit; /* VM instructions per call; 0 means the default */
    size_t memory_limit;        /* bytes per Lua state; 0 means the default */
    /* Where git environments ("git+URL@REV#PATH") and envsrv.git come from:
     * the cache, the fetch timeout and the lock. NULL means the defaults.
     * Borrowed; copied by lenv_open. */
    const struct lenv_git_options *git;
} lenv_options;

#define LENV_DEFAULT_INSTRUCTIONS 50000000ULL   /* about 0.2-0.5 s of Lua */
#define LENV_DEFAULT_MEMORY       (256u << 20)  /* per Lua state */
#define LENV_MAX_COMPLETIONS      4096          /* per lenv_score call */
#define LENV_MAX_SAMPLE           100000        /* items per lenv_sample call */

#define LENV_OPTIONS_INIT { NULL, NULL, 0, 0, 0, 0, NULL }

typedef struct lenv_env lenv_env;

/*
 * Loads an environment: runs its definition in opts->n_states fresh Lua states,
 * validates the definition, loads its dataset, and computes its version hash.
 * On success *out is a new environment the caller must lenv_free(). On failure
 * returns a LENV_E* code with `err` filled ("unknown environment 'gsm9k'",
 * "envs/x.lua:3: ...", "data file 'x.jsonl' line 12: ...") and *out is NULL.
 */
int lenv_open(lenv_env **out, const lenv_options *opts, lenv_error *err);

/* Frees everything; lenv_free(NULL) does nothing. No call may be in flight. */
void lenv_free(lenv_env *env);

/* Borrowed from env; valid until lenv_free(env). */
const char *lenv_name(const lenv_env *env);
const char *lenv_description(const lenv_env *env);
/* 16 hex digits: a hash of the definition source and every dataset file.
 * An environment loaded from git adds where it came from:
 * "<16 hex>+git.<first 12 of the commit>.<first 12 of the file's SHA-256>". */
const char *lenv_version(const lenv_env *env);
/* 16 hex digits: a hash of the dataset files alone. */
const char *lenv_dataset_hash(const lenv_env *env);
int lenv_is_multi_turn(const lenv_env *env);
/* 1 when the definition sets long_running = true: its calls may take seconds
 * (it runs code in the sandbox), so the server runs them on its worker pool
 * instead of an HTTP thread. */
int lenv_is_long_running(const lenv_env *env);

/*
 * Describes the environment: {"name", "description", "version", "dataset_hash",
 * "multi_turn", "splits": {"test": 1319, ...}, "limits": {"max_turns",
 * "max_chars", "idle_timeout_s"}} plus "tools" (OpenAI format) when the
 * definition declares a list of tools, and, when with_params is set,
 * "params" (the definition's `params` table, {} when absent).
 * Returns a new reference (caller json_decref()s), NULL only on out-of-memory.
 */
json_t *lenv_describe(const lenv_env *env, int with_params);

/*
 * Finds an item by id ("test-17", or the record's own id when the definition
 * names an `id_field`). *item is borrowed from env, valid until lenv_free(env).
 * Returns 0, or LENV_ENOTFOUND with err filled ("unknown item 'test-9999' in
 * environment 'gsm8k'"). Procedural envs store no items: for them it is
 * always LENV_ENOTFOUND (use lenv_item_get, which serves both kinds).
 */
int lenv_item_find(const json_t **item, const lenv_env *env, const char *id, lenv_error *err);

/*
 * The public view of an item: {"id", "prompt": [messages], "metadata": {...}}
 * plus "tools" (OpenAI format) when the definition declares tools, and
 * "answer" when include_answer is set. Runs the definition's prompt(),
 * metadata() and answer() functions. `item` is a record from this env or an
 * inline item given by a caller (any JSON object). *out is a new reference.
 */
int lenv_item_view(json_t **out, lenv_env *env, const json_t *item, int include_answer,
                   lenv_error *err);

/*
 * Picks n distinct items of `split` (NULL means the definition's default split,
 * else "test" when present, else the first) with a seeded shuffle: the same
 * (split, n, seed) gives the same items in the same order on every machine.
 * n larger than the split is LENV_EINVALID. *out is a new JSON array of item
 * views (as lenv_item_view without the answer).
 */
int lenv_sample(json_t **out, lenv_env *env, const char *split, size_t n, uint64_t seed,
                lenv_error *err);

/*
 * Scores n completions of one item with the definition's reward(item,
 * completion) (single-turn), or by replaying each completion as the one
 * action of an episode (multi-turn envs: reset, then step(action)).
 * *out is a new object {"rewards": [n numbers], "details": [n objects]}.
 * A Lua failure on any completion fails the whole call with LENV_ESCRIPT.
 * n above LENV_MAX_COMPLETIONS is LENV_ELIMIT.
 */
int lenv_score(json_t **out, lenv_env *env, const json_t *item, const char *const *completions,
               const size_t *lens, size_t n, lenv_error *err);

/*
 * Episodes. State lives in JSON between calls (not in a Lua state), so any
 * pool state can run any step and episodes survive nothing but their JSON.
 *
 * lenv_reset: starts an episode on `item`. *observation is a new array of
 * messages; *state is a new JSON value to pass to the next lenv_step.
 * For single-turn envs, observation is prompt(item) and the state is {}.
 *
 * lenv_step: takes the assistant's `action`. *state is replaced (the old
 * reference is released, the new one is owned by the caller). *result is a
 * new object {"observation": [messages], "reward": number, "done": bool,
 * "info": {...}}. For single-turn envs it is reward(item, action) with done
 * true and an empty observation.
 *
 * Multi-turn bookkeeping lives in the state under the reserved key
 * "_envsrv" (turns, characters, done), which env code never sees. When the
 * definition declares tools with `run` functions and the action holds tool
 * calls, lenv_step runs them instead of the env's step(): the observation is
 * one {"role": "tool", "tool_call_id", "name", "content"} message per call,
 * reward 0, done false, info {"tool_calls": [{name, arguments, ok, error?,
 * violations?}]}; failures are tool messages whose content starts "error: ".
 * An action without tool calls goes to step(), which decides the reward and
 * done. A step after the episode is done is LENV_EINVALID.
 */
int lenv_reset(json_t **observation, json_t **state, lenv_env *env, const json_t *item,
               lenv_error *err);
int lenv_step(json_t **result, json_t **state, lenv_env *env, const json_t *item,
              const char *action, size_t action_len, lenv_error *err);

/*
 * Episode limits of a multi-turn environment: its definition's `limits`
 * table, with these defaults. lenv_step ends an episode that reaches
 * max_turns steps or max_chars characters (actions plus observation
 * contents, counted in UTF-8 characters), with done = true and info.limit =
 * "max_turns" | "max_chars". idle_timeout_s is the server's to enforce: how
 * long an open episode may wait for its next step.
 */
typedef struct lenv_limits {
    size_t max_turns;
    size_t max_chars;
    unsigned idle_timeout_s;
} lenv_limits;
#define LENV_DEFAULT_MAX_TURNS   32
#define LENV_DEFAULT_MAX_CHARS   200000
#define LENV_DEFAULT_IDLE_TIMEOUT 600
#define LENV_MAX_TRANSCRIPT      4096   /* messages per lenv_replay call */

/* Fills *out with env's limits (the defaults for single-turn envs). */
void lenv_get_limits(lenv_limits *out, const lenv_env *env);

/*
 * Replays a transcript: a fresh episode on `item` (lenv_reset), then one
 * lenv_step per assistant message of `messages` (a JSON array of {role,
 * content[, tool_calls]}), in order, until the episode is done. Other roles
 * are skipped: the environment produces them itself, so a trainer that ran
 * the dialogue gets the rewards envsrv would have given. An assistant
 * message's action is its content followed by its OpenAI `tool_calls`
 * written as <tool_call> blocks. The same (env version, item, transcript)
 * always gives the same result.
 *
 * *out is a new object {"rewards": [per step], "total": sum, "done": bool,
 * "reason": "done" | "max_turns" | "max_chars" | "incomplete" (the
 * transcript ended first), "steps": n, "infos": [per step], "ignored": number
 * of assistant messages after the end}. Errors: LENV_EINVALID for a
 * malformed transcript (named by index), LENV_ELIMIT past
 * LENV_MAX_TRANSCRIPT messages, and whatever lenv_reset/lenv_step return.
 */
int lenv_replay(json_t **out, lenv_env *env, const json_t *item, const json_t *messages,
                lenv_error *err);

/* ---- procedural environments (generate.c, challenge.c, curriculum.c) ----------
 *
 * A definition with `generate = function(seed, difficulty) -> item` and
 * `levels = {min = 1, max = N}` instead of a dataset is procedural: its items
 * are a pure function of (env name, difficulty, seed), so nothing is stored.
 * Item ids are "d<difficulty>-s<seed>": decimal, no sign, no leading zeros,
 * difficulty in [min, max], seed in [0, 2^63 - 1] ("d3-s12345"). Any other id
 * is LENV_ENOTFOUND. See docs/lua-envs.md, "Procedural environments".
 */

/* 1 when env is procedural; then *min and *max (either may be NULL) are its
 * difficulty levels. */
int lenv_is_generated(const lenv_env *env, int *min, int *max);

/*
 * The item with this id, for both kinds of env: a stored record (dataset envs,
 * as lenv_item_find) or the generated item (procedural envs; the same JSON,
 * byte for byte, on every call, state, thread and machine). *item is a new
 * reference the caller json_decref()s. Returns 0, LENV_ENOTFOUND (unknown or
 * malformed id), or LENV_ESCRIPT (generate() failed).
 */
int lenv_item_get(json_t **item, lenv_env *env, const char *id, lenv_error *err);

/*
 * lenv_sample for procedural envs at a chosen difficulty: n item views with
 * seeds drawn from `seed` (the same (level, n, seed) gives the same items on
 * every machine). lenv_sample on a procedural env samples at the curriculum's
 * current level (lenv_curriculum_level) and takes no split (split must be
 * NULL). A level out of range is LENV_EINVALID; a dataset env LENV_EINVALID.
 */
int lenv_sample_level(json_t **out, lenv_env *env, int level, size_t n, uint64_t seed,
                      lenv_error *err);

/*
 * Beacon-seeded challenge (docs/challenges.md): `count` items derived from a
 * public random value. beacon_hex is 2 to 512 hex digits (even count, any
 * case); count is 1 to LENV_MAX_CHALLENGE. Item i has
 *   mac = HMAC-SHA256(key = beacon bytes, msg = "envsrv-challenge-v1|" + env
 *         name + "|" + decimal i)
 *   seed = mac[0..7] big-endian, top bit cleared;
 *   difficulty = min + mac[8] mod (max - min + 1)
 * *out is a new array of item views (no answers) with ids "d<difficulty>-s<seed>".
 * A dataset env or a bad beacon/count is LENV_EINVALID.
 */
#define LENV_MAX_CHALLENGE 1000
int lenv_challenge(json_t **out, lenv_env *env, const char *beacon_hex, size_t count,
                   lenv_error *err);

/*
 * Curriculum (adaptive difficulty) of a procedural env. Each scored item's
 * reward (clamped to [0, 1]) joins a sliding window of the last `window`
 * rewards of its level; the mean is that level's solve-rate estimate. The
 * current level moves one step at a time toward the level whose estimate is
 * closest to `target`: up when the current level's estimate is above target +
 * LENV_CURRICULUM_MARGIN, down when below target - margin, and only after
 * window/8 (at least 8) new results at the current level since the last move.
 * A move to a level with estimates requires that level to be closer to the
 * target than the current one. All calls are thread-safe. Dataset envs have
 * no curriculum: calls return LENV_EINVALID (level: 0).
 */
typedef struct lenv_curriculum_options {
    double target;  /* solve rate to aim for, in (0, 1); default 0.5 */
    size_t window;  /* results kept per level, 1 to 65536; default 256 */
} lenv_curriculum_options;
#define LENV_CURRICULUM_OPTIONS_INIT { 0.5, 256 }
#define LENV_CURRICULUM_MARGIN 0.05

/* Parses "target=0.5,window=256" (either or both, any order) into *out,
 * which keeps its values for keys not given. */
int lenv_curriculum_parse(lenv_curriculum_options *out, const char *spec, lenv_error *err);
/* Sets the options and clears every count (the level goes back to min). */
int lenv_curriculum_configure(lenv_env *env, const lenv_curriculum_options *opts,
                              lenv_error *err);
/* Records a reward of the item `id`; an id that is not a generated id of
 * this env is LENV_ENOTFOUND (the caller may ignore it), a non-finite reward
 * LENV_EINVALID. */
int lenv_curriculum_record(lenv_env *env, const char *id, double reward, lenv_error *err);
/* The level new items should come from (min before any result). */
int lenv_curriculum_level(lenv_env *env);
/* {"target", "window", "level", "levels": [{"level", "n", "solve_rate"}...]};
 * a new reference, NULL for dataset envs or out of memory. */
json_t *lenv_curriculum_state(lenv_env *env);
/* Writes the state, with every window, to `path` (via a temporary file and
 * rename, so a crash never leaves half a file). */
int lenv_curriculum_save(lenv_env *env, const char *path, lenv_error *err);
/* Restores a saved state. A missing file is LENV_ENOTFOUND (start fresh); a
 * file for another env or other levels, or a malformed one, LENV_EIO, and the
 * state is unchanged. */
int lenv_curriculum_load(lenv_env *env, const char *path, lenv_error *err);

/* The built-in environments, for `envsrv list`: the number of them, and the
 * name of the i-th (borrowed, static). A built-in file envs/gen_<family>.lua
 * is listed, and opened, as gen-<family>. */
size_t lenv_builtin_count(void);
const char *lenv_builtin_name(size_t i);


/* ---- chat templates in Lua (chat_template.c) ---------------------------------
 *
 * `--chat-template FILE.lua`: the file returns function(messages) -> string,
 * run in the environment sandbox. For models whose Jinja template envsrv
 * does not render itself.
 */
typedef struct lenv_chat_template lenv_chat_template;

/* Loads and checks the file. On success *out is new; free with
 * lenv_chat_template_free (NULL is fine). LENV_EIO, LENV_ESCRIPT (the file
 * fails to run) or LENV_EINVALID (it returns no function), err filled. */
int lenv_chat_template_open(lenv_chat_template **out, const char *path, lenv_error *err);
void lenv_chat_template_free(lenv_chat_template *t);

/* Renders `messages` (a JSON array of {role, content}, borrowed). *text is a
 * new NUL-terminated string of *len bytes the caller free()s. Thread-safe
 * (calls are serialised). LENV_ESCRIPT when the function fails or returns a
 * non-string. */
int lenv_chat_template_render(char **text, size_t *len, lenv_chat_template *t, const json_t *messages,
                              lenv_error *err);
/* ---- environments from git repositories (gitsrc.c, gitlock.c) ----------------
 *
 * An environment spec "git+URL@REV#PATH" names the Lua file PATH in the tree
 * of commit REV (a tag, a branch, a full or abbreviated commit id; "HEAD", the
 * remote's default branch, when "@REV" is left out) of the repository at URL
 * (https://, http://, ssh:// where libgit2 was built with it, file://). REV is
 * what follows the last '@' of the URL's path. Repositories are fetched with
 * libgit2 into a cache:
 *
 *   <cache>/repos/<16 hex of SHA-256(URL)>.git   one bare repository per URL
 *   <cache>/trees/<commit>/                      a commit's files, read-only
 *
 * and the env is loaded from <cache>/trees/<commit>/PATH, so datasets named
 * relative to it come from the same commit. A full commit id or a tag already
 * in the cache is used without the network; a branch is fetched, and when the
 * remote cannot be reached the cached branch is used with a warning (it may
 * be stale). Fetches run in a child process that is killed at the timeout,
 * so an unresponsive remote is an error, never a hang. A cache that libgit2
 * cannot read (or that misses objects its refs name) is removed and fetched
 * again.
 */
typedef struct lenv_lock lenv_lock;

typedef struct lenv_git_options {
    /* NULL: $XDG_CACHE_HOME/envsrv/git, else $HOME/.cache/envsrv/git. */
    const char *cache_dir;
    /* Most milliseconds one fetch may take; 0: LENV_GIT_DEFAULT_TIMEOUT_MS. */
    unsigned timeout_ms;
    /* With a lock, a git env must be one of its entries (same URL and path)
     * and is loaded at the locked commit with the file hash checked;
     * anything else, built-in and local envs included, is refused. Borrowed. */
    const lenv_lock *lock;
} lenv_git_options;

#define LENV_GIT_OPTIONS_INIT { NULL, 0, NULL }
#define LENV_GIT_DEFAULT_TIMEOUT_MS 60000u

/* Where a git environment came from. Strings are owned by the struct. */
typedef struct lenv_git_ref {
    char *url;              /* without "git+" */
    char *rev;              /* as asked ("HEAD" when none was given) */
    char *path;             /* the env file in the tree */
    char commit[41];        /* the resolved commit (hex), "" before resolving */
    char file_sha256[65];   /* SHA-256 of the env file (hex), "" before resolving */
    char *file;             /* the checked-out file on disk; NULL before resolving */
    char *locked_name;      /* the env's name in the lock used, else NULL */
    char warning[512];      /* "" or why a cached copy was used without fetching */
} lenv_git_ref;

/* 1 when spec starts with "git+". */
int lenv_is_git_spec(const char *spec);

/* Parses a "git+URL[@REV]#PATH" spec into ref->url, rev and path (nothing is
 * fetched). Returns 0 or LENV_EINVALID with err naming what is wrong. The
 * caller lenv_git_ref_clear()s *ref either way. */
int lenv_git_parse(lenv_git_ref *ref, const char *spec, lenv_error *err);

/* Fetches (as needed) and checks out a parsed ref: fills commit, file_sha256,
 * file and warning. With opts->lock the ref must be locked (then rev is
 * ignored for the locked commit). Errors: LENV_EINVALID (not in the lock),
 * LENV_ENOTFOUND (unknown revision, no such file in the tree), LENV_EIO
 * (fetch failed or timed out, with a hint when the cache has no copy; cache
 * not writable; hash mismatch with the lock). */
int lenv_git_resolve(lenv_git_ref *ref, const lenv_git_options *opts, lenv_error *err);

/* Frees the strings and zeroes ref; NULL and zeroed refs are fine. */
void lenv_git_ref_clear(lenv_git_ref *ref);

/* Where env came from, or NULL for built-in and local envs. Borrowed from
 * env; valid until lenv_free(env). */
const lenv_git_ref *lenv_git_source(const lenv_env *env);

/* {"url", "rev", "path", "commit", "file_sha256"} of a git env; NULL for other
 * envs and on out-of-memory. A new reference. */
json_t *lenv_git_json(const lenv_env *env);

/*
 * Lock files (envsrv.lock): JSON
 *   {"version": 1, "envs": {"<env name>": {"url", "path", "rev", "commit",
 *                                          "file_sha256"}}}
 * written by `envsrv lock` and read by `--lock`.
 */

/* Reads a lock file. *out is new (lenv_lock_free()). LENV_EIO for an
 * unreadable or malformed file, naming the file and what is wrong. */
int lenv_lock_load(lenv_lock **out, const char *path, lenv_error *err);
void lenv_lock_free(lenv_lock *lock);
/* Number of entries, and the i-th as a spec "git+URL@COMMIT#PATH" (borrowed
 * from lock), for loading every locked env. */
size_t lenv_lock_count(const lenv_lock *lock);
const char *lenv_lock_spec(const lenv_lock *lock, size_t i);
/* Writes a lock of the n git envs (any other env is LENV_EINVALID) to path,
 * through a temporary file and a rename. */
int lenv_lock_write(const char *path, lenv_env *const *envs, size_t n, lenv_error *err);

#endif
