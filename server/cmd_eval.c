/*
 * `envsrv eval` and `envsrv rollout`. eval scores a checkpoint on an
 * environment, for CI. For each of
 * the first K items of a split (a seeded, reproducible choice), the model
 * generates N samples of the item's prompt with the built-in CPU engine, the
 * environment scores them, and the command reports mean reward, pass@1 and
 * pass@N, writes a JSON report naming exactly what produced it (env version
 * and dataset hash, the model file's SHA-256, sampler settings), and exits 1
 * when the mean reward is under --min-score so a CI job can gate on it.
 *
 *   envsrv eval --env gsm8k --model stories260K.bin --tokenizer tok512.bin \
 *               --limit 20 --samples 4 --min-score 0.1 --report report.json
 *
 * Models: whatever inf_bundle_load reads (a llama2.c checkpoint, a
 * HuggingFace folder, a GGUF file). Prompts go through the model's chat
 * template, or for models without one (llama2.c checkpoints, base models)
 * the plain "role: content" convention of inf_render_plain. Items are
 * generated and scored by srv__rollout_group (sampler.c), the function the
 * server's rollout route uses too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "inference/inference.h"
#include "lua/lenv.h"
#include "server/server_int.h"

static const char eval_usage[] =
    "usage: envsrv eval --env NAME --model PATH [options]\n"
    "\n"
    "  --env NAME|PATH.lua   environment to score on\n"
    "  --data PATH           serve PATH as the env's dataset (a .jsonl file or a folder)\n"
    "  --split NAME          split to take items from (default: the env's default)\n"
    "  --limit K             items to score (default 10); chosen by a seeded shuffle\n"
    "  --samples N           samples per item (default 1): pass@1 and pass@N\n"
    "  --model PATH          a HuggingFace folder, a .gguf file or a llama2.c checkpoint\n"
    "  --tokenizer PATH      tokenizer.json, .gguf or tokenizer.bin (default: the model's own;\n"
    "                        tokenizer.bin beside a llama2.c checkpoint)\n"
    "  --chat-template FILE  a ChatML or Llama-3 Jinja template, a tokenizer_config.json, a\n"
    "                        .lua file returning function(messages) -> string, or 'plain'\n"
    "                        (default: the model's own; plain when it has none)\n"
    "  --backend NAME        local (default: the built-in engine) or openai: an external\n"
    "                        OpenAI-compatible server's /v1/completions\n"
    "  --base-url URL        openai: the server, e.g. http://127.0.0.1:8001/v1\n"
    "  --api-key KEY         openai: bearer token (default $OPENAI_API_KEY)\n"
    "  --model-name NAME     openai: the request's \"model\"\n"
    "  --timeout SECONDS     openai: per request (default 600)\n"
    "  --retries N           openai: tries again after no connection, a timeout or a\n"
    "                        408/409/429/5xx answer, up to N times (default 3), waiting\n"
    "                        the server's Retry-After or 0.5 s, 1 s, 2 s ... (at most 8 s)\n"
    "  --concurrency N       groups in flight at once (default 16 with openai, so the\n"
    "                        server can batch them; 1 with the local engine, where more\n"
    "                        overlaps scoring with generation); results keep item order\n"
    "                        (with openai, --model is optional: a local copy of the served\n"
    "                        model's files gives its chat template, tokenizer and token ids)\n"
    "  --max-tokens N        new tokens per sample (default 256)\n"
    "  --temperature T       default 0 (greedy) for 1 sample, 1.0 for more\n"
    "  --seed S              item choice and sampling seed (default 0)\n"
    "  --threads N           CPU threads (default 1)\n"
    "  --min-score X         exit 1 when the mean reward is under X\n"
    "  --report PATH         write the JSON report there\n"
    "  --cache-dir DIR, --git-timeout SECONDS, --lock FILE   for git+URL@REV#PATH envs, as\n"
    "                        for the server (the report's env_git names the commit)\n";

typedef struct eval_args {
    const char *env, *data, *split, *model, *tokenizer, *chat_template, *report;
    const char *base_url, *api_key, *model_name;   /* --backend openai */
    int openai;
    double timeout_s;
    int retries, concurrency;     /* -1: the default */
    size_t limit;
    double min_score;
    int has_min_score, temperature_set;
    inf_gen_options opts;
    srv_git_args git;     /* --cache-dir, --git-timeout, --lock */
} eval_args;

static int eval_num(double *out, const char *opt, const char *s, double min, double max)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "envsrv eval: %s: '%s' is not a number from %g to %g\n", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_eval_args(eval_args *a, int argc, char **argv)
{
    inf_gen_options defaults = INF_GEN_OPTIONS_INIT;
    a->opts = defaults;
    a->limit = 10;
    a->retries = a->concurrency = -1;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0) {
            fputs(eval_usage, stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "envsrv eval: %s needs a value\n%s", opt, eval_usage);
            return -1;
        }
        const char *v = argv[++i];
        double d = 0;
        int git = srv_git_option(&a->git, "envsrv eval", opt, v);
        if (git < 0) return -1;
        if (git > 0) continue;
        if (strcmp(opt, "--env") == 0) a->env = v;
        else if (strcmp(opt, "--data") == 0) a->data = v;
        else if (strcmp(opt, "--split") == 0) a->split = v;
        else if (strcmp(opt, "--model") == 0) a->model = v;
        else if (strcmp(opt, "--tokenizer") == 0) a->tokenizer = v;
        else if (strcmp(opt, "--chat-template") == 0) a->chat_template = v;
        else if (strcmp(opt, "--base-url") == 0) a->base_url = v;
        else if (strcmp(opt, "--api-key") == 0) a->api_key = v;
        else if (strcmp(opt, "--model-name") == 0) a->model_name = v;
        else if (strcmp(opt, "--backend") == 0) {
            if (strcmp(v, "local") != 0 && strcmp(v, "openai") != 0) {
                fprintf(stderr, "envsrv eval: --backend: '%s' is not local or openai\n", v);
                return -1;
            }
            a->openai = strcmp(v, "openai") == 0;
        } else if (strcmp(opt, "--timeout") == 0) {
            if (eval_num(&a->timeout_s, opt, v, 0.001, 86400) != 0) return -1;
        }
        else if (strcmp(opt, "--retries") == 0) {
            if (eval_num(&d, opt, v, 0, 100) != 0) return -1;
            a->retries = (int)d;
        } else if (strcmp(opt, "--concurrency") == 0) {
            if (eval_num(&d, opt, v, 1, 256) != 0) return -1;
            a->concurrency = (int)d;
        }
        else if (strcmp(opt, "--report") == 0) a->report = v;
        else if (strcmp(opt, "--limit") == 0) {
            if (eval_num(&d, opt, v, 1, LENV_MAX_SAMPLE) != 0) return -1;
            a->limit = (size_t)d;
        } else if (strcmp(opt, "--samples") == 0) {
            if (eval_num(&d, opt, v, 1, INF_MAX_SAMPLES) != 0) return -1;
            a->opts.n_samples = (int)d;
        } else if (strcmp(opt, "--max-tokens") == 0) {
            if (eval_num(&d, opt, v, 1, 1 << 20) != 0) return -1;
            a->opts.max_tokens = (int)d;
        } else if (strcmp(opt, "--temperature") == 0) {
            if (eval_num(&d, opt, v, 0, 100) != 0) return -1;
            a->opts.temperature = (float)d;
            a->temperature_set = 1;
        } else if (strcmp(opt, "--seed") == 0) {
            if (eval_num(&d, opt, v, 0, 9007199254740992.0) != 0) return -1;
            a->opts.seed = (uint64_t)d;
        } else if (strcmp(opt, "--threads") == 0) {
            if (eval_num(&d, opt, v, 1, INF_MAX_THREADS) != 0) return -1;
            a->opts.n_threads = (int)d;
        } else if (strcmp(opt, "--min-score") == 0) {
            if (eval_num(&a->min_score, opt, v, -1e9, 1e9) != 0) return -1;
            a->has_min_score = 1;
        } else {
            fprintf(stderr, "envsrv eval: unknown option '%s'\n%s", opt, eval_usage);
            return -1;
        }
    }
    if (!a->env || (!a->model && !a->openai)) {
        fprintf(stderr, "envsrv eval: --env and --model (or --backend openai) are required\n%s", eval_usage);
        return -1;
    }
    if (a->openai != (a->base_url != NULL)) {
        fprintf(stderr, "envsrv eval: --base-url goes with --backend openai, and it needs one\n");
        return -1;
    }
    if (!a->openai && (a->api_key || a->model_name || a->timeout_s > 0 || a->retries >= 0)) {
        fprintf(stderr, "envsrv eval: --api-key, --model-name, --timeout and --retries are for --backend openai\n");
        return -1;
    }
    if (a->retries < 0)
        a->retries = 3;
    if (a->concurrency < 0)
        a->concurrency = a->openai ? 16 : 1;
    if (a->openai && !a->api_key) {
        const char *k = getenv("OPENAI_API_KEY");
        a->api_key = k && k[0] ? k : NULL;
    }
    if (!a->temperature_set)
        a->opts.temperature = a->opts.n_samples > 1 ? 1.0f : 0.0f;
    return 0;
}

/* Opens the env of `a` (with --data), with a Lua state for each group in
 * flight. Returns 0, or -1 with the reason on stderr. */
static int open_eval_env(lenv_env **env, const eval_args *a, const char *cmd)
{
    lenv_error lerr = { 0 };
    lenv_data_source src = { NULL, a->data };
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = a->env;
    o.n_states = (size_t)a->concurrency;
    o.data = a->data ? &src : NULL;
    o.n_data = a->data ? 1 : 0;
    o.git = &a->git.opts;
    if (lenv_open(env, &o, &lerr) != 0) {
        fprintf(stderr, "envsrv %s: %s\n", cmd, lerr.message);
        return -1;
    }
    return 0;
}

/* Loads the model of `a` (optional with --backend openai) and a sampler:
 * the built-in engine or the OpenAI client. 0, or -1 with the reason on stderr. */
static int open_eval_sampler(inf_bundle **bundle, lenv_chat_template **lua, srv__sampler **sampler,
                             const eval_args *a, const char *cmd)
{
    char err[512];
    if (srv__model_load(bundle, lua, a->model, a->tokenizer, a->chat_template, err, sizeof err) != 0) {
        fprintf(stderr, "envsrv %s: %s\n", cmd, err);
        return -1;
    }
    if (a->openai) {
        srv__remote_options ro = { a->base_url, a->api_key, a->model_name, (long)(a->timeout_s * 1000), a->retries,
                                   *bundle,
                                   a->model || *lua ? NULL : a->chat_template, *lua ? srv__render_lua : NULL, *lua };
        srv__remote *remote = NULL;
        if (srv__remote_new(&remote, &ro, err, sizeof err) != 0 ||
            srv__sampler_remote(sampler, remote, err, sizeof err) != 0) {
            fprintf(stderr, "envsrv %s: %s\n", cmd, err);
            return -1;
        }
        return 0;
    }
    if (srv__sampler_local(sampler, *bundle, a->opts.n_threads, err, sizeof err) != 0) {
        fprintf(stderr, "envsrv %s: %s\n", cmd, err);
        return -1;
    }
    return 0;
}

/* Items in the split eval draws from (--split, else "test", else the first). */
static size_t split_size(const lenv_env *env, const char *split)
{
    json_t *desc = lenv_describe(env, 0);
    json_t *splits = json_object_get(desc, "splits");
    size_t n = 0;
    if (split)
        n = (size_t)json_integer_value(json_object_get(splits, split));
    else {
        const char *key;
        json_t *v;
        json_object_foreach(splits, key, v)
            if (strcmp(key, "test") == 0 || n == 0)
                n = (size_t)json_integer_value(v);
    }
    json_decref(desc);
    return n;
}

/* What produced the completions, for the report: the model's path, format,
 * hash and template, and for --backend openai the server and model name. */
static json_t *model_json(const eval_args *a, const inf_bundle *b)
{
    json_t *m = b ? json_pack("{s:s, s:s, s:s, s:s}", "path", a->model, "sha256", inf_bundle_sha256(b), "format",
                              inf_bundle_format_name(b), "chat_template", inf_bundle_template_name(b))
                  : json_object();
    if (m && a->chat_template)
        json_object_set_new(m, "chat_template_file", json_string(a->chat_template));
    if (m && a->openai)
        json_object_update_new(m, json_pack("{s:s, s:s, s:s?}", "backend", "openai", "base_url", a->base_url,
                                            "name", a->model_name));
    else if (m)
        json_object_set_new(m, "backend", json_string("local"));
    return m;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The progress line on a terminal: items, tokens/s, time left at the pace so far. */
static void eval_progress(const char *env, size_t done, size_t total, size_t tokens, double secs)
{
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    size_t filled = total ? done * WIDTH / total : WIDTH;
    for (size_t i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    double eta = done ? secs / (double)done * (double)(total - done) : 0;
    fprintf(stderr, "\reval %s [%s] %zu/%zu items, %.0f tokens/s, ETA %.0f s   ", env, bar, done, total,
            secs > 0 ? (double)tokens / secs : 0.0, eta);
}

/* What eval adds up over the items, in item order. */
typedef struct eval_tally {
    const eval_args *a;
    lenv_env *env;
    json_t *results;            /* borrowed: entries are appended */
    int tty;
    size_t n_items;
    double sum, passk;          /* expected reward of one sample; items with a reward of 1 */
    size_t new_tokens;
    struct timespec t0;
} eval_tally;

/* srv__group_consume for eval: one item's entry of the report. */
static int eval_take(srv__group_done *d, void *ctx)
{
    eval_tally *t = ctx;
    const char *id = d->item_id;
    json_t *entry = NULL;
    srv__group_stats st = d->st;
    if (d->rc == 0) {
        json_t *g = d->group;
        entry = json_pack("{s:s, s:O, s:O, s:O, s:b}", "id", id, "rewards", json_object_get(g, "scores"),
                          "completions", json_object_get(g, "completions"), "finish_reasons",
                          json_object_get(g, "finish_reasons"), "prompt_too_long", 0);
    } else if (st.prompt_too_long) {
        /* A prompt longer than the model's context cannot be sampled: it
         * scores 0 and says so, rather than ending the whole evaluation. */
        json_t *zeros = json_array();
        for (int s = 0; zeros && s < t->a->opts.n_samples; s++)
            json_array_append_new(zeros, json_real(0.0));
        entry = json_pack("{s:s, s:o, s:[], s:[], s:b}", "id", id, "rewards", zeros, "completions",
                          "finish_reasons", "prompt_too_long", 1);
        st.n = (size_t)t->a->opts.n_samples;
    } else {
        if (t->tty)
            fputc('\n', stderr);
        fprintf(stderr, "envsrv eval: item %s: %s\n", id ? id : "?", d->err);
        return -1;
    }
    if (!entry || json_array_append_new(t->results, entry) != 0) {
        fprintf(stderr, "envsrv eval: out of memory\n");
        return -1;
    }
    t->sum += st.n ? st.reward_sum / (double)st.n : 0;
    t->passk += st.n && st.reward_best >= 1.0 ? 1.0 : 0.0;
    t->new_tokens += st.new_tokens;
    if (t->tty)
        eval_progress(lenv_name(t->env), d->index + 1, t->n_items, t->new_tokens, seconds_since(&t->t0));
    return 0;
}

int srv_cmd_eval(int argc, char **argv)
{
    eval_args a = { 0 };
    if (parse_eval_args(&a, argc, argv) != 0) {
        lenv_lock_free(a.git.lock);
        return 2;
    }
    int status = 1;
    lenv_env *env = NULL;
    inf_bundle *bundle = NULL;
    lenv_chat_template *lua = NULL;
    srv__sampler *sampler = NULL;
    json_t *items = NULL, *results = json_array(), *report = NULL;
    lenv_error lerr = { 0 };
    int tty = isatty(STDERR_FILENO);
    if (!results || open_eval_env(&env, &a, "eval") != 0 || open_eval_sampler(&bundle, &lua, &sampler, &a, "eval") != 0)
        goto done;
    /* K items of the split, by a seeded shuffle; fewer when the split is smaller. */
    size_t split_n = split_size(env, a.split);
    size_t k = split_n && a.limit > split_n ? split_n : a.limit;
    if (lenv_sample(&items, env, a.split, k, a.opts.seed, &lerr) != 0) {
        fprintf(stderr, "envsrv eval: %s\n", lerr.message);
        goto done;
    }
    size_t n_items = json_array_size(items);
    eval_tally tally = { &a, env, results, tty, n_items, 0, 0, 0, { 0, 0 } };
    clock_gettime(CLOCK_MONOTONIC, &tally.t0);
    char err[512] = "";
    int rrc = srv__run_groups(sampler, env, items, &a.opts, a.concurrency, eval_take, &tally, err, sizeof err);
    if (rrc != 0) {
        if (rrc < 0)
            fprintf(stderr, "envsrv eval: %s\n", err);
        goto done;
    }
    double sum = tally.sum, passk = tally.passk;
    size_t new_tokens = tally.new_tokens;
    struct timespec t0 = tally.t0;
    double secs = seconds_since(&t0);
    if (tty)
        fputc('\n', stderr);
    double mean = n_items ? sum / (double)n_items : 0;
    double tps = secs > 0 ? (double)new_tokens / secs : 0.0;
    report = json_pack("{s:s, s:s, s:s, s:s?, s:o, s:{s:i, s:i, s:f, s:f, s:i, s:f, s:I}, "
                       "s:I, s:f, s:f, s:f, s:I, s:f, s:f, s:o}",
                       "env", lenv_name(env), "env_version", lenv_version(env),
                       "dataset_hash", lenv_dataset_hash(env), "split", a.split,
                       "model", model_json(&a, bundle),
                       "sampler", "samples", a.opts.n_samples, "max_tokens", a.opts.max_tokens,
                       "temperature", (double)a.opts.temperature, "top_p", (double)a.opts.top_p,
                       "top_k", a.opts.top_k, "min_p", (double)a.opts.min_p, "seed", (json_int_t)a.opts.seed,
                       "items", (json_int_t)n_items, "mean_reward", mean,
                       "pass@1", mean, "pass@k", n_items ? passk / (double)n_items : 0,
                       "new_tokens", (json_int_t)new_tokens, "tokens_per_second", tps, "seconds", secs,
                       "results", results);
    results = NULL;
    if (!report || (lenv_git_source(env) && json_object_set_new(report, "env_git", lenv_git_json(env)))) {
        fprintf(stderr, "envsrv eval: out of memory\n");
        goto done;
    }
    if (a.openai)
        printf("env %s (version %s), model %s at %s\n", lenv_name(env), lenv_version(env),
               a.model_name ? a.model_name : "(unnamed)", a.base_url);
    else
        printf("env %s (version %s), model %s (%s, sha256 %.16s, chat template %s)\n", lenv_name(env),
               lenv_version(env), a.model, inf_bundle_format_name(bundle), inf_bundle_sha256(bundle),
               inf_bundle_template_name(bundle));
    printf("items %zu, samples %d: mean reward %.4f, pass@1 %.4f, pass@%d %.4f, %zu tokens in %.1f s "
           "(%.0f tokens/s)\n", n_items, a.opts.n_samples, mean, mean, a.opts.n_samples,
           n_items ? passk / (double)n_items : 0, new_tokens, secs, tps);
    if (a.report && json_dump_file(report, a.report, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
        fprintf(stderr, "envsrv eval: cannot write the report to '%s'\n", a.report);
        goto done;
    }
    if (a.has_min_score && mean < a.min_score) {
        printf("FAIL: mean reward %.4f is under --min-score %g\n", mean, a.min_score);
        goto done;
    }
    status = 0;
done:
    json_decref(report);
    json_decref(results);
    json_decref(items);
    srv__sampler_free(sampler);
    inf_bundle_free(bundle);
    lenv_chat_template_free(lua);
    lenv_free(env);
    lenv_lock_free(a.git.lock);
    return status;
}

/* ---- envsrv rollout ------------------------------------------------------------ */

static const char rollout_usage[] =
    "usage: envsrv rollout --env NAME --model PATH --groups G --group-size N -o OUT.jsonl [options]\n"
    "\n"
    "Writes G scored groups (N completions of one item each) as JSON lines in the\n"
    "trajectory format of POST /scored_data: tokens, masks (-100 on prompt\n"
    "positions), scores, inference_logprobs, plus the item id, completions, finish\n"
    "reasons and what produced them. Options as for `envsrv eval` (--data, --split,\n"
    "--tokenizer, --chat-template, --backend openai --base-url URL, --retries,\n"
    "--concurrency, --max-tokens, --temperature (default 1.0), --seed, --threads).\n"
    "Lines keep the order of the items at any --concurrency.\n";

typedef struct rollout_out {
    FILE *f;                    /* borrowed */
    size_t written;
} rollout_out;

/* srv__group_consume for rollout: one JSON line per group, in item order. */
static int rollout_take(srv__group_done *d, void *ctx)
{
    rollout_out *o = ctx;
    if (d->rc != 0) {
        fprintf(stderr, "envsrv rollout: item %s: %s\n", d->item_id ? d->item_id : "?", d->err);
        return -1;
    }
    if (json_dumpf(d->group, o->f, JSON_COMPACT) != 0 || fputc('\n', o->f) == EOF) {
        fprintf(stderr, "envsrv rollout: item %s: out of memory or disk\n", d->item_id ? d->item_id : "?");
        return -1;
    }
    o->written++;
    return 0;
}

int srv_cmd_rollout(int argc, char **argv)
{
    /* The eval parser reads the shared options; --groups, --group-size and -o
     * are taken out first. */
    const char *outpath = NULL;
    size_t groups = 0;
    int group_size = 0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    if (!rest)
        return 1;
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0) {
            fputs(rollout_usage, stdout);
            free(rest);
            exit(0);
        }
        if (i >= 2 && i + 1 < argc &&
            (strcmp(opt, "--groups") == 0 || strcmp(opt, "--group-size") == 0 || strcmp(opt, "-o") == 0)) {
            const char *v = argv[++i];
            double d = 0;
            if (strcmp(opt, "-o") == 0)
                outpath = v;
            else if (eval_num(&d, opt, v, 1, strcmp(opt, "--groups") == 0 ? LENV_MAX_SAMPLE : INF_MAX_SAMPLES) != 0) {
                free(rest);
                return 2;
            } else if (strcmp(opt, "--groups") == 0)
                groups = (size_t)d;
            else
                group_size = (int)d;
            continue;
        }
        rest[n_rest++] = argv[i];
    }
    eval_args a = { 0 };
    int prc = parse_eval_args(&a, n_rest, rest);
    free(rest);
    if (prc != 0 || !groups || !group_size || !outpath) {
        if (prc == 0)
            fprintf(stderr, "envsrv rollout: --groups, --group-size and -o are required\n%s",
                    rollout_usage);
        lenv_lock_free(a.git.lock);
        return 2;
    }
    a.opts.n_samples = group_size;
    if (!a.temperature_set)
        a.opts.temperature = 1.0f;

    int status = 1;
    lenv_env *env = NULL;
    inf_bundle *bundle = NULL;
    lenv_chat_template *lua = NULL;
    srv__sampler *sampler = NULL;
    json_t *items = NULL;
    FILE *out = NULL;
    lenv_error lerr = { 0 };
    if (open_eval_env(&env, &a, "rollout") != 0)
        goto done;
    if (lenv_sample(&items, env, a.split, groups, a.opts.seed, &lerr) != 0) {
        fprintf(stderr, "envsrv rollout: %s\n", lerr.message);
        goto done;
    }
    if (open_eval_sampler(&bundle, &lua, &sampler, &a, "rollout") != 0)
        goto done;
    out = fopen(outpath, "w");
    if (!out) {
        fprintf(stderr, "envsrv rollout: cannot write '%s': %s\n", outpath, strerror(errno));
        goto done;
    }
    rollout_out ro = { out, 0 };
    char err[512] = "";
    int rrc = srv__run_groups(sampler, env, items, &a.opts, a.concurrency, rollout_take, &ro, err, sizeof err);
    if (rrc != 0) {
        if (rrc < 0)
            fprintf(stderr, "envsrv rollout: %s\n", err);
        goto done;
    }
    size_t written = ro.written;
    if (fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "envsrv rollout: cannot write '%s': %s\n", outpath, strerror(errno));
        goto done;
    }
    out = NULL;
    printf("wrote %zu groups of %d to %s (env %s version %s, model %s%.*s)\n", written, group_size, outpath,
           lenv_name(env), lenv_version(env), a.openai ? "at " : "sha256 ", a.openai ? (int)strlen(a.base_url) : 16,
           a.openai ? a.base_url : inf_bundle_sha256(bundle));
    status = 0;
done:
    if (out)
        fclose(out);
    json_decref(items);
    srv__sampler_free(sampler);
    inf_bundle_free(bundle);
    lenv_chat_template_free(lua);
    lenv_free(env);
    lenv_lock_free(a.git.lock);
    return status;
}
