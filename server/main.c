/*
 * envsrv's command line and lifecycle: parse arguments, load environments,
 * start the server, print where it listens, wait for SIGINT/SIGTERM, shut down
 * cleanly. The only file that prints to the terminal or calls exit().
 *
 * Exit status: 0 after a clean shutdown (or --help/--version/list), 1 when an
 * environment or the server fails to start, 2 for bad arguments.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <lua.h>
#include <microhttpd.h>

#include "inference/inference.h"
#include "lua/lenv.h"
#include "sandbox/sandbox.h"
#include "server/server_int.h"

#define MAX_ENVS 64
#define MAX_DATA 256
#define MAX_THREADS 1024

static const char usage[] =
    "usage: envsrv [options]         serve environments over HTTP\n"
    "       envsrv list              list the built-in environments\n"
    "       envsrv generate --model PATH --prompt TEXT ...   sample from a model (see generate --help)\n"
    "       envsrv eval --env NAME --model PATH ...          score a model on an env (see eval --help)\n"
    "       envsrv rollout --env NAME --model PATH ...       write scored groups as JSONL (rollout --help)\n"
    "       envsrv lock --env git+URL@REV#PATH ... -o envsrv.lock   pin git envs to commits\n"
    "       envsrv --help | --version\n"
    "\n"
    "options:\n"
    "  --env NAME|PATH.lua       environment to serve (repeatable; default gsm8k)\n"
    "  --env git+URL@REV#PATH    an env file in a git repository at a tag, branch or commit\n"
    "                            (https://, http://, ssh://, file://; see docs/lua-envs.md)\n"
    "  --cache-dir DIR           git cache (default ~/.cache/envsrv/git)\n"
    "  --git-timeout SECONDS     longest a git fetch may take (default 60)\n"
    "  --lock FILE               load git envs at the commits FILE pins, refuse any other\n"
    "                            env; with no --env, serve every env FILE lists\n"
    "  --data NAME=PATH          serve PATH (a .jsonl file or a folder of them) as the\n"
    "  --data NAME:SPLIT=PATH    dataset of env NAME, or as its split SPLIT (repeatable)\n"
    "  --host ADDR               address to bind (default 127.0.0.1)\n"
    "  --port N                  port (default 8000; 0 picks a free one)\n"
    "  --threads N               worker threads (default: online cores)\n"
    "  --api-key KEY             require 'Authorization: Bearer KEY' (default $ENVSRV_API_KEY)\n"
    "  --max-body BYTES          largest request body, e.g. 16M, 1G (default 16M)\n"
    "  --max-episodes N          open episodes at most (default 10000)\n"
    "  --episode-ttl SECONDS     idle time before an episode expires (default 600)\n"
    "  --sandbox MODE            best-effort (default: the strongest isolation the host\n"
    "                            allows) or strict (refuse to start without every layer)\n"
    "  --sandbox-workers N       threads running sandboxed code (default: online cores)\n"
    "  --sandbox-queue N         runs waiting for a worker before 503 (default 1024)\n"
    "  --sandbox-limits LIST     maxima a run may ask for, e.g. cpu_ms=10000,wall_ms=30000,\n"
    "                            memory_mb=1024,output_bytes=8M (these are the defaults)\n"
    "  --max-queue N             trajectory buffer: sequences queued before 503 (default 16384)\n"
    "  --sync MODE               async (default) or sequential: a batch holds only groups of\n"
    "                            the current policy version (POST /v1/policy)\n"
    "  --max-staleness K         async: drop groups more than K policy versions old\n"
    "  --drop-flat-groups        drop groups whose scores are all equal (counted in /status)\n"
    "  --vocab-size N            reject token ids of N or more (default 2^31)\n"
    "  --journal DIR             journal accepted groups in DIR (default ./.envsrv)\n"
    "  --no-journal              keep the trajectory buffer in memory only\n"
    "  --journal-compact BYTES   compact the journal past this many dead bytes (default 64M)\n"
    "  --model PATH              load a model for the generation routes (rollouts, /v1/completions,\n"
    "                            /v1/chat/completions): a HuggingFace folder, a .gguf file or a\n"
    "                            llama2.c checkpoint\n"
    "  --tokenizer PATH          its tokenizer (default: the model's own; tokenizer.bin beside a\n"
    "                            llama2.c checkpoint)\n"
    "  --chat-template FILE      a ChatML or Llama-3 Jinja template, a tokenizer_config.json, a\n"
    "                            .lua file returning function(messages) -> string, or 'plain'\n"
    "                            (default: the model's own)\n"
    "  --model-name NAME         the model's name in OpenAI answers (default: the path's last part)\n"
    "  --gen-threads N           CPU threads of one generation (default 1)\n"
    "  --rollout-workers N       with --model: N threads feed the trajectory buffer themselves,\n"
    "                            as Atropos environments would (they start once a trainer\n"
    "                            has registered and asked for its first batch)\n"
    "  --rollout-settings env=NAME,split=S,group_size=8,max_tokens=256,temperature=1.0,seed=0\n"
    "                            what they roll out (defaults shown; env: the first served,\n"
    "                            split: train, else the env's first)\n"
    "  --curriculum target=0.5,window=256\n"
    "                            adaptive difficulty of procedural (gen-*) envs; its state\n"
    "                            is kept in the journal folder across restarts\n"
    "\n"
    "The API is described in docs/api.md. Stop the server with Ctrl-C (SIGINT) or SIGTERM.\n";

typedef struct data_arg {
    char *env;                 /* owned copy of NAME */
    lenv_data_source src;      /* split and path point into argv or `env`'s buffer */
    int used;
} data_arg;

typedef struct config {
    const char *envs[MAX_ENVS];
    size_t n_envs;
    data_arg data[MAX_DATA];
    size_t n_data;
    const char *curriculum;  /* --curriculum spec, NULL for the defaults */
    const char *model, *tokenizer, *chat_template, *model_name;  /* --model and friends */
    lenv_git_options git;    /* --cache-dir, --git-timeout, --lock */
    const char *lock_path;
    int rollout_settings;    /* --rollout-settings was given */
    srv_options srv;
} config;

static void bad_args(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void bad_args(const char *fmt, ...)
{
    va_list ap;
    fputs("envsrv: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'envsrv --help'.\n", stderr);
    exit(2);
}

/* An unsigned decimal in [min, max]; anything else is a usage error. */
static unsigned long long parse_uint(const char *opt, const char *s, unsigned long long min,
                                     unsigned long long max)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)s[0]))
        bad_args("%s: '%s' is not a number", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        bad_args("%s: '%s' is not a number from %llu to %llu", opt, s, min, max);
    return v;
}

/* A byte count with an optional K, M or G suffix (powers of 1024). */
static size_t parse_size(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)s[0]))
        bad_args("%s: '%s' is not a size (e.g. 65536, 512K, 16M, 1G)", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    default: break;
    }
    if (shift && (*end == 'B' || *end == 'b'))
        end++;
    if (errno || *end || v == 0 || v > (SIZE_MAX >> 1) >> shift)
        bad_args("%s: '%s' is not a size (e.g. 65536, 512K, 16M, 1G)", opt, s);
    return (size_t)(v << shift);
}

/* NAME=PATH or NAME:SPLIT=PATH. */
static void parse_data(data_arg *d, const char *s)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || !eq[1])
        bad_args("--data: '%s' is not NAME=PATH or NAME:SPLIT=PATH", s);
    d->env = strndup(s, (size_t)(eq - s));
    if (!d->env) {
        fputs("envsrv: out of memory\n", stderr);
        exit(1);
    }
    char *colon = strchr(d->env, ':');
    d->src.split = NULL;
    if (colon) {
        *colon = '\0';
        d->src.split = colon + 1;
        if (!d->env[0] || !colon[1])
            bad_args("--data: '%s' is not NAME=PATH or NAME:SPLIT=PATH", s);
    }
    d->src.path = eq + 1;
}

/* --sandbox-limits cpu_ms=N,wall_ms=N,memory_mb=N,output_bytes=SIZE: any
 * subset, each within the sandbox's own caps (sandbox/sandbox.h). */
static void parse_sandbox_limits(sbx_limits *max, const char *s)
{
    char buf[256];
    if (strlen(s) >= sizeof buf)
        bad_args("--sandbox-limits: '%.40s...' is too long", s);
    strcpy(buf, s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            bad_args("--sandbox-limits: '%s' is not NAME=VALUE", tok);
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(tok, "cpu_ms") == 0)
            max->cpu_ms = (uint32_t)parse_uint("--sandbox-limits cpu_ms", v, 1, SBX_MAX_CPU_MS);
        else if (strcmp(tok, "wall_ms") == 0)
            max->wall_ms = (uint32_t)parse_uint("--sandbox-limits wall_ms", v, 1, SBX_MAX_WALL_MS);
        else if (strcmp(tok, "memory_mb") == 0)
            max->memory_mb = (uint32_t)parse_uint("--sandbox-limits memory_mb", v, 16, SBX_MAX_MEMORY_MB);
        else if (strcmp(tok, "output_bytes") == 0) {
            size_t n = parse_size("--sandbox-limits output_bytes", v);
            if (n > SBX_MAX_OUTPUT)
                bad_args("--sandbox-limits: output_bytes=%s is over the sandbox's cap of %u", v,
                         SBX_MAX_OUTPUT);
            max->output_bytes = (uint32_t)n;
        } else
            bad_args("--sandbox-limits: unknown limit '%s' (known: cpu_ms, wall_ms, memory_mb, "
                     "output_bytes)", tok);
    }
}

/* --rollout-settings env=NAME,split=S,group_size=N,max_tokens=N,temperature=T,seed=S:
 * any subset. The strings point into a buffer that lives as long as the
 * program. */
static void parse_rollout_settings(srv_rollout_options *o, const char *s)
{
    static char buf[512];
    if (strlen(s) >= sizeof buf)
        bad_args("--rollout-settings: '%.40s...' is too long", s);
    strcpy(buf, s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || !eq[1])
            bad_args("--rollout-settings: '%s' is not NAME=VALUE", tok);
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(tok, "env") == 0)
            o->env = v;
        else if (strcmp(tok, "split") == 0)
            o->split = v;
        else if (strcmp(tok, "group_size") == 0)
            o->group_size = (int)parse_uint("--rollout-settings group_size", v, 1, SRV_GEN_MAX_SAMPLES);
        else if (strcmp(tok, "max_tokens") == 0)
            o->max_tokens = (int)parse_uint("--rollout-settings max_tokens", v, 1, 1 << 20);
        else if (strcmp(tok, "seed") == 0)
            o->seed = parse_uint("--rollout-settings seed", v, 0, UINT64_MAX);
        else if (strcmp(tok, "temperature") == 0) {
            char *end = NULL;
            errno = 0;
            double t = strtod(v, &end);
            if (errno || end == v || *end || !(t >= 0 && t <= 100))
                bad_args("--rollout-settings: temperature=%s is not a number from 0 to 100", v);
            o->temperature = (float)t;
        } else
            bad_args("--rollout-settings: unknown setting '%s' (known: env, split, group_size, "
                     "max_tokens, temperature, seed)", tok);
    }
}

/* The sandbox tier and layers this host allows, for --version. */
static void print_sandbox_probe(void)
{
    sbx_probe_info info;
    sbx_probe(&info);
    printf("sandbox: %s (cgroup v%d%s)\n", sbx_tier_name(info.tier), info.cgroup_version,
           info.as_root ? ", as root" : "");
    for (unsigned bit = 1; bit & SBX_LAYERS_ALL; bit <<= 1)
        printf("  %-4s %s\n", (info.layers & bit) ? "yes" : "no", sbx_layer_name(bit));
    if (info.message[0])
        printf("  %s\n", info.message);
}

/* Where a procedural env's curriculum state lives between runs: beside the
 * trajectory journal. 0, or -1 when there is no such place (--no-journal). */
static int curriculum_path(char *out, size_t outlen, const lenv_env *env, const config *cfg)
{
    if (cfg->srv.buffer.no_journal)
        return -1;
    const char *dir = cfg->srv.buffer.journal_dir ? cfg->srv.buffer.journal_dir : SRV_DEFAULT_JOURNAL_DIR;
    int n = snprintf(out, outlen, "%s/curriculum-%s.json", dir, lenv_name(env));
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* Configures (--curriculum) and restores the curriculum of a procedural env.
 * A saved state that cannot be read is reported and replaced by a fresh one,
 * never fatal; a bad --curriculum is (returns -1). */
static int setup_curriculum(lenv_env *env, const config *cfg)
{
    if (!lenv_is_generated(env, NULL, NULL))
        return 0;
    lenv_error err = { 0 };
    if (cfg->curriculum) {
        lenv_curriculum_options co;
        if (lenv_curriculum_parse(&co, cfg->curriculum, &err) != 0 ||
            lenv_curriculum_configure(env, &co, &err) != 0) {
            fprintf(stderr, "envsrv: --curriculum: %s\n", err.message);
            return -1;
        }
    }
    char path[1024];
    if (curriculum_path(path, sizeof path, env, cfg) != 0)
        return 0;
    int rc = lenv_curriculum_load(env, path, &err);
    if (rc != 0 && rc != LENV_ENOTFOUND)
        fprintf(stderr, "envsrv: warning: %s: starting a fresh curriculum: %s\n", path, err.message);
    if (rc == 0 && cfg->curriculum) {
        /* The saved state brings its own options. When --curriculum asks for
         * others, the counts were gathered for another target or window:
         * start over with the new options, and say so. */
        lenv_curriculum_options co;
        lenv_curriculum_parse(&co, cfg->curriculum, &err);
        json_t *st = lenv_curriculum_state(env);
        int same = st && json_number_value(json_object_get(st, "target")) == co.target &&
                   (size_t)json_integer_value(json_object_get(st, "window")) == co.window;
        json_decref(st);
        if (!same) {
            fprintf(stderr, "envsrv: %s: --curriculum differs from the saved state; starting afresh\n",
                    lenv_name(env));
            lenv_curriculum_configure(env, &co, &err);
        }
    }
    return 0;
}

static void save_curriculum(lenv_env *env, const config *cfg)
{
    char path[1024];
    if (!lenv_is_generated(env, NULL, NULL) || curriculum_path(path, sizeof path, env, cfg) != 0)
        return;
    const char *dir = cfg->srv.buffer.journal_dir ? cfg->srv.buffer.journal_dir : SRV_DEFAULT_JOURNAL_DIR;
    mkdir(dir, 0755);   /* may exist; a failure shows in the save below */
    lenv_error err = { 0 };
    if (lenv_curriculum_save(env, path, &err) != 0)
        fprintf(stderr, "envsrv: warning: cannot save the curriculum of %s: %s\n", lenv_name(env),
                err.message);
}

static void parse_args(config *cfg, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
            printf("envsrv %s\n%s\nlibmicrohttpd %s\nJansson %s\n", SRV_VERSION, LUA_RELEASE,
                   MHD_get_version(), JANSSON_VERSION);
            print_sandbox_probe();
            exit(0);
        }
        if (strcmp(arg, "--drop-flat-groups") == 0) {
            cfg->srv.buffer.drop_flat_groups = 1;
            continue;
        }
        if (strcmp(arg, "--no-journal") == 0) {
            cfg->srv.buffer.no_journal = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            bad_args("unexpected argument '%s'", arg);
        /* --opt VALUE or --opt=VALUE */
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof name)
            bad_args("unknown option '%s'", arg);
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        static const char *const known[] = { "--env", "--data", "--host", "--port", "--threads",
                                             "--api-key", "--max-body", "--max-episodes",
                                             "--episode-ttl", "--sandbox", "--sandbox-workers",
                                             "--sandbox-queue", "--sandbox-limits",
                                             "--max-queue", "--sync", "--max-staleness",
                                             "--vocab-size", "--journal", "--journal-compact",
                                             "--curriculum", "--model", "--tokenizer",
                                             "--chat-template", "--model-name", "--gen-threads",
                                             "--rollout-workers", "--rollout-settings",
                                             "--cache-dir", "--git-timeout", "--lock" };
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            ok |= strcmp(name, known[k]) == 0;
        if (!ok)
            bad_args("unknown option '%s'", name);
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            bad_args("%s needs a value", name);

        if (strcmp(name, "--env") == 0) {
            if (!value[0])
                bad_args("--env needs a name or a path");
            if (cfg->n_envs == MAX_ENVS)
                bad_args("too many --env (at most %d)", MAX_ENVS);
            cfg->envs[cfg->n_envs++] = value;
        } else if (strcmp(name, "--data") == 0) {
            if (cfg->n_data == MAX_DATA)
                bad_args("too many --data (at most %d)", MAX_DATA);
            parse_data(&cfg->data[cfg->n_data++], value);
        } else if (strcmp(name, "--host") == 0) {
            if (!value[0])
                bad_args("--host needs an address");
            cfg->srv.host = value;
        } else if (strcmp(name, "--port") == 0) {
            cfg->srv.port = (unsigned)parse_uint(name, value, 0, 65535);
        } else if (strcmp(name, "--threads") == 0) {
            cfg->srv.threads = (unsigned)parse_uint(name, value, 1, MAX_THREADS);
        } else if (strcmp(name, "--api-key") == 0) {
            cfg->srv.api_key = value;
        } else if (strcmp(name, "--max-body") == 0) {
            cfg->srv.max_body = parse_size(name, value);
        } else if (strcmp(name, "--max-episodes") == 0) {
            cfg->srv.max_episodes = (size_t)parse_uint(name, value, 1, 100000000);
        } else if (strcmp(name, "--episode-ttl") == 0) {
            cfg->srv.episode_ttl_s = (unsigned)parse_uint(name, value, 1, 30u * 24 * 3600);
        } else if (strcmp(name, "--sandbox") == 0) {
            if (strcmp(value, "strict") != 0 && strcmp(value, "best-effort") != 0)
                bad_args("--sandbox: '%s' is not strict or best-effort", value);
            cfg->srv.sandbox.strict = strcmp(value, "strict") == 0;
        } else if (strcmp(name, "--sandbox-workers") == 0) {
            cfg->srv.sandbox.workers = (unsigned)parse_uint(name, value, 1, MAX_THREADS);
        } else if (strcmp(name, "--sandbox-queue") == 0) {
            cfg->srv.sandbox.queue = (size_t)parse_uint(name, value, 1, 1000000);
        } else if (strcmp(name, "--sandbox-limits") == 0) {
            parse_sandbox_limits(&cfg->srv.sandbox.max, value);
        } else if (strcmp(name, "--max-queue") == 0) {
            cfg->srv.buffer.max_queue = (size_t)parse_uint(name, value, 1, 1000000000);
        } else if (strcmp(name, "--sync") == 0) {
            if (strcmp(value, "sequential") != 0 && strcmp(value, "async") != 0)
                bad_args("--sync: '%s' is not sequential or async", value);
            cfg->srv.buffer.sync_sequential = strcmp(value, "sequential") == 0;
        } else if (strcmp(name, "--max-staleness") == 0) {
            cfg->srv.buffer.has_max_staleness = 1;
            cfg->srv.buffer.max_staleness = (unsigned)parse_uint(name, value, 0, 1000000000);
        } else if (strcmp(name, "--vocab-size") == 0) {
            cfg->srv.buffer.vocab_size = (long long)parse_uint(name, value, 1, 2147483648ULL);
        } else if (strcmp(name, "--journal") == 0) {
            if (!value[0])
                bad_args("--journal needs a directory");
            cfg->srv.buffer.journal_dir = value;
        } else if (strcmp(name, "--journal-compact") == 0) {
            cfg->srv.buffer.journal_compact = parse_size(name, value);
        } else if (strcmp(name, "--model") == 0) {
            cfg->model = value;
        } else if (strcmp(name, "--tokenizer") == 0) {
            cfg->tokenizer = value;
        } else if (strcmp(name, "--chat-template") == 0) {
            cfg->chat_template = value;
        } else if (strcmp(name, "--model-name") == 0) {
            if (!value[0])
                bad_args("--model-name needs a name");
            cfg->model_name = value;
        } else if (strcmp(name, "--gen-threads") == 0) {
            cfg->srv.gen_threads = (int)parse_uint(name, value, 1, INF_MAX_THREADS);
        } else if (strcmp(name, "--rollout-workers") == 0) {
            cfg->srv.rollouts.workers = (int)parse_uint(name, value, 1, 64);
        } else if (strcmp(name, "--rollout-settings") == 0) {
            if (cfg->rollout_settings)
                bad_args("--rollout-settings given twice: put every setting in one list");
            parse_rollout_settings(&cfg->srv.rollouts, value);
            cfg->rollout_settings = 1;
        } else if (strcmp(name, "--cache-dir") == 0) {
            if (!value[0])
                bad_args("--cache-dir needs a directory");
            cfg->git.cache_dir = value;
        } else if (strcmp(name, "--git-timeout") == 0) {
            cfg->git.timeout_ms = (unsigned)parse_uint(name, value, 1, 3600) * 1000u;
        } else if (strcmp(name, "--lock") == 0) {
            if (!value[0])
                bad_args("--lock needs a file");
            cfg->lock_path = value;
        } else if (strcmp(name, "--curriculum") == 0) {
            lenv_curriculum_options co;
            lenv_error err = { 0 };
            if (lenv_curriculum_parse(&co, value, &err) != 0)
                bad_args("--curriculum: %s", err.message);
            cfg->curriculum = value;
        }
    }
}

/* The name a --data NAME is matched against before loading: the argument for
 * a built-in, the file's stem for a path ("./x/capitals.lua" -> "capitals"). */
static void env_key(char *out, size_t outlen, const char *arg)
{
    const char *base = strrchr(arg, '/');
    base = base ? base + 1 : arg;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".lua") == 0)
        len -= 4;
    snprintf(out, outlen, "%.*s", (int)len, base);
}

/* Opens env `arg` with every --data whose NAME is `key` (marking them used). */
static int open_env(lenv_env **out, config *cfg, const char *arg, const char *key, size_t n_states,
                    lenv_error *err)
{
    lenv_data_source src[MAX_DATA];
    size_t n = 0;
    for (size_t d = 0; d < cfg->n_data; d++) {
        if (strcmp(cfg->data[d].env, key) == 0) {
            src[n++] = cfg->data[d].src;
            cfg->data[d].used = 1;
        }
    }
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = arg;
    o.data = n ? src : NULL;
    o.n_data = n;
    o.n_states = n_states;
    o.git = &cfg->git;
    int rc = lenv_open(out, &o, err);
    const lenv_git_ref *git = rc == 0 ? lenv_git_source(*out) : NULL;
    if (git && git->warning[0])
        fprintf(stderr, "envsrv: warning: %s\n", git->warning);
    return rc;
}

/* The served model's default name: the last part of its path, without a
 * trailing slash ("models/Qwen2.5-0.5B/" -> "Qwen2.5-0.5B"). */
static void default_model_name(char *out, size_t outlen, const char *path)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(out, outlen, "%.*s", (int)(len - start), path + start);
}

static int cmd_list(void)
{
    int rc = 0;
    for (size_t i = 0; i < lenv_builtin_count(); i++) {
        const char *name = lenv_builtin_name(i);
        lenv_options o = LENV_OPTIONS_INIT;
        o.name_or_path = name;
        o.n_states = 1;
        lenv_env *env = NULL;
        lenv_error err = { 0 };
        if (lenv_open(&env, &o, &err) != 0) {
            fprintf(stderr, "envsrv: %s: %s\n", name, err.message);
            rc = 1;
            continue;
        }
        printf("%-18s %s\n", lenv_name(env), lenv_description(env));
        lenv_free(env);
    }
    return rc;
}

/* Prints a curl command that scores one real item of `env`, so a first-time
 * user can paste it. Best effort: nothing is printed if the env has no items. */
static void print_example(lenv_env *env, const char *base_url, const char *api_key)
{
    json_t *items = NULL, *view = NULL, *body = NULL;
    char *text = NULL;
    lenv_error err = { 0 };
    json_t *item = NULL;
    if (lenv_sample(&items, env, NULL, 1, 0, &err) != 0)
        goto done;
    const char *id = json_string_value(json_object_get(json_array_get(items, 0), "id"));
    if (!id || lenv_item_get(&item, env, id, &err) != 0 ||
        lenv_item_view(&view, env, item, 1, &err) != 0)
        goto done;
    /* A completion that ends with the reference answer, GSM8K-style. */
    char completion[256] = "... #### 42";
    const char *answer = json_string_value(json_object_get(view, "answer"));
    if (answer) {
        const char *hashes = strstr(answer, "####");
        const char *last = hashes;
        while (hashes && (hashes = strstr(hashes + 4, "####")))
            last = hashes;
        const char *final = last ? last + 4 : answer;
        while (*final == ' ')
            final++;
        if (strlen(final) < 100)
            snprintf(completion, sizeof completion, "... #### %s", final);
    }
    body = json_pack("{s:s, s:[s]}", "item_id", id, "completions", completion);
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text || strchr(text, '\''))
        goto done;
    printf("try:\n  curl -s%s%s %s/v1/envs/%s/score -d '%s'\n", api_key ? " -H 'Authorization: Bearer " : "",
           api_key ? "$ENVSRV_API_KEY'" : "", base_url, lenv_name(env), text);
done:
    free(text);
    json_decref(body);
    json_decref(view);
    json_decref(item);
    json_decref(items);
}

int main(int argc, char **argv)
{
    int status = 1;
    config cfg;
    memset(&cfg, 0, sizeof cfg);
    srv_options defaults = SRV_OPTIONS_INIT;
    cfg.srv = defaults;
    lenv_env *envs[MAX_ENVS] = { 0 };
    size_t n_open = 0;
    srv_server *srv = NULL;
    inf_bundle *model = NULL;
    lenv_chat_template *model_template = NULL;
    char model_name[256];
    lenv_lock *lock = NULL;

    if (argc >= 2 && strcmp(argv[1], "generate") == 0)
        return srv_cmd_generate(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "eval") == 0)
        return srv_cmd_eval(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "rollout") == 0)
        return srv_cmd_rollout(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "lock") == 0)
        return srv_cmd_lock(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "list") == 0) {
        if (argc > 2)
            bad_args("'list' takes no arguments");
        return cmd_list();
    }
    parse_args(&cfg, argc, argv);
    if ((cfg.tokenizer || cfg.chat_template || cfg.model_name || cfg.srv.gen_threads ||
         cfg.srv.rollouts.workers) && !cfg.model)
        bad_args("--tokenizer, --chat-template, --model-name, --gen-threads and --rollout-workers "
                 "need --model");
    if (cfg.rollout_settings && !cfg.srv.rollouts.workers)
        bad_args("--rollout-settings goes with --rollout-workers N");
    if (cfg.lock_path) {
        lenv_error err = { 0 };
        if (lenv_lock_load(&lock, cfg.lock_path, &err) != 0) {
            fprintf(stderr, "envsrv: %s\n", err.message);
            return 1;
        }
        cfg.git.lock = lock;
        if (cfg.n_envs == 0 && lenv_lock_count(lock) > MAX_ENVS)
            bad_args("--lock %s: more than %d envs", cfg.lock_path, MAX_ENVS);
        if (cfg.n_envs == 0)
            for (size_t i = 0; i < lenv_lock_count(lock); i++)
                cfg.envs[cfg.n_envs++] = lenv_lock_spec(lock, i);
    }
    if (cfg.n_envs == 0)
        cfg.envs[cfg.n_envs++] = "gsm8k";
    if (!cfg.srv.api_key) {
        const char *k = getenv("ENVSRV_API_KEY");
        cfg.srv.api_key = k && k[0] ? k : NULL;
    }
    if (!cfg.srv.threads)
        cfg.srv.threads = srv_default_threads();

    /* The sandbox first, before any env is opened (the Lua side's lazy
     * initialisation then finds it done) and before any thread exists. */
    {
        srv_sandbox_options *sb = &cfg.srv.sandbox;
        sbx_options so = SBX_OPTIONS_INIT;
        so.mode = sb->strict ? SBX_MODE_STRICT : SBX_MODE_BEST_EFFORT;
        if (sbx_init(&sb->probe, &so, sb->init_error, sizeof sb->init_error) != 0) {
            if (sb->strict) {
                fprintf(stderr, "envsrv: %s\n", sb->init_error);
                goto done;
            }
            /* Best effort and no tier at all: serve envs, refuse runs. */
            fprintf(stderr, "envsrv: warning: sandbox unavailable, code runs are refused: %s\n",
                    sb->init_error);
        } else {
            sb->ready = 1;
        }
    }

    /* Load every environment, one Lua state per worker thread. */
    for (size_t i = 0; i < cfg.n_envs; i++) {
        char key[256];
        env_key(key, sizeof key, cfg.envs[i]);
        lenv_error err = { 0 };
        if (open_env(&envs[i], &cfg, cfg.envs[i], key, cfg.srv.threads, &err) != 0) {
            fprintf(stderr, "envsrv: %s\n", err.message);
            goto done;
        }
        n_open++;
    }
    /* A --data NAME may name an env by its definition's name rather than its
     * file's stem; reopen such envs with their data. */
    for (size_t d = 0; d < cfg.n_data; d++) {
        if (cfg.data[d].used)
            continue;
        for (size_t i = 0; i < n_open; i++) {
            if (strcmp(lenv_name(envs[i]), cfg.data[d].env) != 0)
                continue;
            lenv_env *again = NULL;
            lenv_error err = { 0 };
            if (open_env(&again, &cfg, cfg.envs[i], cfg.data[d].env, cfg.srv.threads, &err) != 0) {
                fprintf(stderr, "envsrv: %s\n", err.message);
                goto done;
            }
            lenv_free(envs[i]);
            envs[i] = again;
        }
        if (!cfg.data[d].used) {
            fprintf(stderr, "envsrv: --data %s=...: no --env named '%s'\nTry 'envsrv --help'.\n",
                    cfg.data[d].env, cfg.data[d].env);
            status = 2;
            goto done;
        }
    }
    for (size_t i = 0; i < n_open; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(lenv_name(envs[i]), lenv_name(envs[j])) == 0) {
                fprintf(stderr, "envsrv: two --env are named '%s' ('%s' and '%s')\nTry 'envsrv --help'.\n",
                        lenv_name(envs[i]), cfg.envs[j], cfg.envs[i]);
                status = 2;
                goto done;
            }
        }
    }

    for (size_t i = 0; i < n_open; i++)
        if (setup_curriculum(envs[i], &cfg) != 0) {
            status = 2;
            goto done;
        }

    /* The model, loaded once for every generation request. */
    if (cfg.model) {
        char err[512];
        if (srv__model_load(&model, &model_template, cfg.model, cfg.tokenizer, cfg.chat_template, err,
                            sizeof err) != 0) {
            fprintf(stderr, "envsrv: --model: %s\n", err);
            goto done;
        }
        default_model_name(model_name, sizeof model_name, cfg.model);
        cfg.srv.model = model;
        cfg.srv.model_name = cfg.model_name ? cfg.model_name : model_name;
    }

    /* Block the shutdown signals before any thread exists, so every thread
     * inherits the mask and only sigwait() below ever sees them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    cfg.srv.envs = envs;
    cfg.srv.n_envs = n_open;
    char errbuf[512];
    if (srv_start(&srv, &cfg.srv, errbuf, sizeof errbuf) != 0) {
        fprintf(stderr, "envsrv: %s\n", errbuf);
        goto done;
    }
    const char *host = cfg.srv.host ? cfg.srv.host : "127.0.0.1";
    char base_url[300];
    snprintf(base_url, sizeof base_url, strchr(host, ':') ? "http://[%s]:%u" : "http://%s:%u", host,
             srv_port(srv));
    /* The first line is a contract: scripts and tests read the port from it. */
    printf("envsrv listening on %s\n", base_url);
    fflush(stdout);
    for (size_t i = 0; i < n_open; i++)
        printf("env %s version %s: %s\n", lenv_name(envs[i]), lenv_version(envs[i]),
               lenv_description(envs[i]));
    printf("%u worker threads%s\n", srv_threads(srv), cfg.srv.api_key ? ", API key required" : "");
    if (model)
        printf("model %s (%s, sha256 %.16s, chat template %s) from %s\n", cfg.srv.model_name,
               inf_bundle_format_name(model), inf_bundle_sha256(model), inf_bundle_template_name(model),
               cfg.model);
    if (cfg.srv.rollouts.workers) {
        const srv_rollout_options *ro = &cfg.srv.rollouts;
        printf("rollout workers: %d feeding the trajectory buffer (env %s, split %s, group_size %d, "
               "max_tokens %d, temperature %g, seed %llu) once a trainer registers\n",
               ro->workers, ro->env ? ro->env : lenv_name(envs[0]), ro->split ? ro->split : "train or the first",
               ro->group_size, ro->max_tokens, (double)ro->temperature, (unsigned long long)ro->seed);
    }
    printf("sandbox: %s (%s)\n",
           cfg.srv.sandbox.ready ? sbx_tier_name(sbx_current_tier()) : "unavailable",
           cfg.srv.sandbox.strict ? "strict" : "best-effort");
    print_example(envs[0], base_url, cfg.srv.api_key);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0)
        ;
    srv_free(srv);
    srv = NULL;
    for (size_t i = 0; i < n_open; i++)
        save_curriculum(envs[i], &cfg);
    status = 0;
done:
    srv_free(srv);
    inf_bundle_free(model);
    lenv_chat_template_free(model_template);
    for (size_t i = 0; i < n_open; i++)
        lenv_free(envs[i]);
    for (size_t d = 0; d < cfg.n_data; d++)
        free(cfg.data[d].env);
    lenv_lock_free(lock);
    return status;
}
