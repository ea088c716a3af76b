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
 * Models: llama2.c checkpoints, which carry no chat template: the prompt
 * messages are rendered as plain text ("role: content" lines, then
 * "assistant:"), a stated convention rather than a model's own template.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "inference/inference.h"
#include "lua/lenv.h"
#include "server/server.h"

static const char eval_usage[] =
    "usage: envsrv eval --env NAME --model PATH [options]\n"
    "\n"
    "  --env NAME|PATH.lua   environment to score on\n"
    "  --data PATH           serve PATH as the env's dataset (a .jsonl file or a folder)\n"
    "  --split NAME          split to take items from (default: the env's default)\n"
    "  --limit K             items to score (default 10); chosen by a seeded shuffle\n"
    "  --samples N           samples per item (default 1): pass@1 and pass@N\n"
    "  --model PATH          a llama2.c checkpoint (.bin)\n"
    "  --tokenizer PATH      its tokenizer.bin (default: tokenizer.bin beside the model)\n"
    "  --max-tokens N        new tokens per sample (default 256)\n"
    "  --temperature T       default 0 (greedy) for 1 sample, 1.0 for more\n"
    "  --seed S              item choice and sampling seed (default 0)\n"
    "  --threads N           CPU threads (default 1)\n"
    "  --min-score X         exit 1 when the mean reward is under X\n"
    "  --report PATH         write the JSON report there\n"
    "  --cache-dir DIR, --git-timeout SECONDS, --lock FILE   for git+URL@REV#PATH envs, as\n"
    "                        for the server (the report's env_git names the commit)\n";

typedef struct eval_args {
    const char *env, *data, *split, *model, *tokenizer, *report;
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
    if (!a->env || !a->model) {
        fprintf(stderr, "envsrv eval: --env and --model are required\n%s", eval_usage);
        return -1;
    }
    if (!a->temperature_set)
        a->opts.temperature = a->opts.n_samples > 1 ? 1.0f : 0.0f;
    return 0;
}

/* SHA-256 of a file as 64 hex digits. Returns 0, or -1 (unreadable). */
static int file_sha256(char out[65], const char *path)
{
    int rc = -1;
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], md[32];
    unsigned int mdlen = 0;
    if (!f || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto done;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (EVP_DigestUpdate(ctx, buf, n) != 1)
            goto done;
    if (ferror(f) || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        goto done;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    rc = 0;
done:
    EVP_MD_CTX_free(ctx);
    if (f)
        fclose(f);
    return rc;
}

/* The prompt messages as plain text: "role: content" lines, then
 * "assistant:" (llama2.c checkpoints have no chat template). New string. */
static char *render_messages(const json_t *messages)
{
    size_t cap = 64, len = 0, i;
    json_t *m;
    json_array_foreach(messages, i, m)
        cap += strlen(json_string_value(json_object_get(m, "role")) ?: "") +
               json_string_length(json_object_get(m, "content")) + 4;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        len += (size_t)snprintf(s + len, cap - len, "%s: %s\n", role ? role : "user", content ? content : "");
    }
    snprintf(s + len, cap - len, "assistant:");
    return s;
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
    inf_model *model = NULL;
    inf_tokenizer *tok = NULL;
    json_t *items = NULL, *results = json_array(), *report = NULL;
    lenv_error lerr = { 0 };
    inf_error ierr = { 0 };
    char tok_path[4096], model_hash[65];
    if (!a.tokenizer) {
        const char *slash = strrchr(a.model, '/');
        snprintf(tok_path, sizeof tok_path, "%.*s%stokenizer.bin", slash ? (int)(slash - a.model) : 0,
                 a.model, slash ? "/" : "");
        a.tokenizer = tok_path;
    }
    lenv_data_source src = { NULL, a.data };
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = a.env;
    o.data = a.data ? &src : NULL;
    o.n_data = a.data ? 1 : 0;
    o.git = &a.git.opts;
    if (lenv_open(&env, &o, &lerr) != 0) {
        fprintf(stderr, "envsrv eval: %s\n", lerr.message);
        goto done;
    }
    if (file_sha256(model_hash, a.model) != 0) {
        fprintf(stderr, "envsrv eval: cannot read model '%s'\n", a.model);
        goto done;
    }
    if (inf_model_load_llama2c(&model, a.model, &ierr) != 0 ||
        inf_tokenizer_load_llama2c(&tok, a.tokenizer, inf_model_config(model)->vocab_size, &ierr) != 0) {
        fprintf(stderr, "envsrv eval: %s\n", ierr.message);
        goto done;
    }
    /* K items of the split, by a seeded shuffle; fewer when the split is smaller. */
    json_t *desc = lenv_describe(env, 0);
    json_t *splits = json_object_get(desc, "splits");
    size_t split_n = 0;
    if (a.split)
        split_n = (size_t)json_integer_value(json_object_get(splits, a.split));
    else {
        const char *key;
        json_t *v;
        json_object_foreach(splits, key, v)
            if (strcmp(key, "test") == 0 || split_n == 0)
                split_n = (size_t)json_integer_value(v);
    }
    json_decref(desc);
    size_t k = split_n && a.limit > split_n ? split_n : a.limit;
    if (lenv_sample(&items, env, a.split, k, a.opts.seed, &lerr) != 0) {
        fprintf(stderr, "envsrv eval: %s\n", lerr.message);
        goto done;
    }
    double sum = 0, pass1 = 0, passk = 0;
    size_t new_tokens = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t idx;
    json_t *view;
    json_array_foreach(items, idx, view) {
        const char *id = json_string_value(json_object_get(view, "id"));
        json_t *item = NULL, *scored = NULL;
        char *prompt = render_messages(json_object_get(view, "prompt"));
        int *ids = NULL;
        size_t n_ids = 0;
        inf_result res = { 0 };
        int ok = prompt && lenv_item_get(&item, env, id, &lerr) == 0 &&
                 inf_tokenizer_encode(&ids, &n_ids, tok, prompt, strlen(prompt), INF_TOK_BOS, &ierr) == 0;
        /* A prompt longer than the model's context cannot be sampled: it
         * scores 0 and says so, rather than ending the whole evaluation. */
        int too_long = ok && n_ids + 1 > (size_t)inf_model_config(model)->seq_len;
        if (ok && !too_long)
            ok = inf_generate(&res, model, tok, ids, n_ids, &a.opts, &ierr) == 0;
        json_t *rewards = NULL;
        if (ok && !too_long) {
            const char **t = malloc(res.n_samples * sizeof *t);
            size_t *l = malloc(res.n_samples * sizeof *l);
            ok = t && l;
            for (size_t s = 0; ok && s < res.n_samples; s++) {
                t[s] = res.samples[s].text;
                l[s] = res.samples[s].text_len;
                new_tokens += res.samples[s].n_tokens;
            }
            ok = ok && lenv_score(&scored, env, item, t, l, res.n_samples, &lerr) == 0;
            free(t);
            free(l);
            rewards = scored ? json_incref(json_object_get(scored, "rewards")) : NULL;
        } else if (ok) {
            rewards = json_array();
            for (int s = 0; s < a.opts.n_samples; s++)
                json_array_append_new(rewards, json_real(0.0));
        }
        if (!ok || !rewards) {
            fprintf(stderr, "envsrv eval: item %s: %s\n", id ? id : "?",
                    lerr.message[0] ? lerr.message : ierr.message[0] ? ierr.message : "out of memory");
            json_decref(item);
            json_decref(scored);
            json_decref(rewards);
            inf_result_free(&res);
            free(ids);
            free(prompt);
            goto done;
        }
        double item_sum = 0, best = 0;
        size_t n_r = json_array_size(rewards);
        for (size_t s = 0; s < n_r; s++) {
            double r = json_number_value(json_array_get(rewards, s));
            item_sum += r;
            if (s == 0 || r > best)
                best = r;
        }
        sum += n_r ? item_sum / (double)n_r : 0;
        pass1 += n_r ? item_sum / (double)n_r : 0;   /* expected reward of one sample */
        passk += best >= 1.0 ? 1.0 : 0.0;
        json_t *completions = json_array();
        for (size_t s = 0; s < res.n_samples; s++)
            json_array_append_new(completions, json_stringn(res.samples[s].text, res.samples[s].text_len));
        json_array_append_new(results, json_pack("{s:s, s:o, s:o, s:b}", "id", id, "rewards", rewards,
                                                 "completions", completions, "prompt_too_long", too_long));
        if (isatty(STDERR_FILENO))
            fprintf(stderr, "\reval %s: %zu/%zu items", lenv_name(env), idx + 1, json_array_size(items));
        json_decref(item);
        json_decref(scored);
        inf_result_free(&res);
        free(ids);
        free(prompt);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (isatty(STDERR_FILENO))
        fputc('\n', stderr);
    size_t n_items = json_array_size(items);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double mean = n_items ? sum / (double)n_items : 0;
    report = json_pack("{s:s, s:s, s:s, s:s?, s:{s:s, s:s}, s:{s:i, s:i, s:f, s:I}, s:I, s:f, s:f, s:f, "
                       "s:I, s:f, s:o}",
                       "env", lenv_name(env), "env_version", lenv_version(env),
                       "dataset_hash", lenv_dataset_hash(env), "split", a.split,
                       "model", "path", a.model, "sha256", model_hash,
                       "sampler", "samples", a.opts.n_samples, "max_tokens", a.opts.max_tokens,
                       "temperature", (double)a.opts.temperature, "seed", (json_int_t)a.opts.seed,
                       "items", (json_int_t)n_items, "mean_reward", mean,
                       "pass@1", n_items ? pass1 / (double)n_items : 0,
                       "pass@k", n_items ? passk / (double)n_items : 0,
                       "new_tokens", (json_int_t)new_tokens,
                       "tokens_per_second", secs > 0 ? (double)new_tokens / secs : 0.0,
                       "results", results);
    results = NULL;
    if (!report || (lenv_git_source(env) && json_object_set_new(report, "env_git", lenv_git_json(env)))) {
        fprintf(stderr, "envsrv eval: out of memory\n");
        goto done;
    }
    printf("env %s (version %s), model %s (sha256 %.16s)\n", lenv_name(env), lenv_version(env), a.model,
           model_hash);
    printf("items %zu, samples %d: mean reward %.4f, pass@1 %.4f, pass@%d %.4f, %.0f tokens/s\n", n_items,
           a.opts.n_samples, mean, n_items ? pass1 / (double)n_items : 0, a.opts.n_samples,
           n_items ? passk / (double)n_items : 0, secs > 0 ? (double)new_tokens / secs : 0.0);
    if (a.report && json_dump_file(report, a.report, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
        fprintf(stderr, "envsrv eval: cannot write the report to '%s'\n", a.report);
        goto done;
    }
    if (a.has_min_score && mean < a.min_score) {
        printf("FAIL: mean reward %.4f is under --min-score %g\n", mean, a.min_score);
        status = 1;
        goto done;
    }
    status = 0;
done:
    json_decref(report);
    json_decref(results);
    json_decref(items);
    inf_tokenizer_free(tok);
    inf_model_free(model);
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
    "positions), scores, inference_logprobs, plus the item id, completions and\n"
    "what produced them. Options as for `envsrv eval` (--data, --split, --tokenizer,\n"
    "--max-tokens, --temperature (default 1.0), --seed, --threads).\n";

/* One group as a JSON line: new object, NULL when out of memory. */
static json_t *rollout_group(const lenv_env *env, const char *id, const int *prompt, size_t n_prompt,
                             const inf_result *res, const json_t *rewards, const inf_gen_options *opts)
{
    json_t *tokens = json_array(), *masks = json_array(), *lps = json_array(), *texts = json_array();
    for (size_t s = 0; s < res->n_samples; s++) {
        const inf_sample *smp = &res->samples[s];
        json_t *t = json_array(), *m = json_array(), *l = json_array();
        for (size_t i = 0; i < n_prompt; i++) {
            json_array_append_new(t, json_integer(prompt[i]));
            json_array_append_new(m, json_integer(-100));
            json_array_append_new(l, json_real(0.0));
        }
        for (size_t i = 0; i < smp->n_tokens; i++) {
            json_array_append_new(t, json_integer(smp->tokens[i]));
            json_array_append_new(m, json_integer(smp->tokens[i]));
            json_array_append_new(l, json_real(smp->logprobs[i]));
        }
        json_array_append_new(tokens, t);
        json_array_append_new(masks, m);
        json_array_append_new(lps, l);
        json_array_append_new(texts, json_stringn(smp->text, smp->text_len));
    }
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:O, s:o, s:o, s:{s:f, s:I, s:i}}", "env", lenv_name(env),
                     "env_version", lenv_version(env), "item_id", id, "tokens", tokens, "masks", masks,
                     "scores", rewards, "inference_logprobs", lps, "completions", texts,
                     "generation_params", "temperature", (double)opts->temperature, "seed",
                     (json_int_t)opts->seed, "max_tokens", opts->max_tokens);
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
    inf_model *model = NULL;
    inf_tokenizer *tok = NULL;
    json_t *items = NULL;
    FILE *out = NULL;
    lenv_error lerr = { 0 };
    inf_error ierr = { 0 };
    char tok_path[4096];
    if (!a.tokenizer) {
        const char *slash = strrchr(a.model, '/');
        snprintf(tok_path, sizeof tok_path, "%.*s%stokenizer.bin", slash ? (int)(slash - a.model) : 0,
                 a.model, slash ? "/" : "");
        a.tokenizer = tok_path;
    }
    lenv_data_source src = { NULL, a.data };
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = a.env;
    o.data = a.data ? &src : NULL;
    o.n_data = a.data ? 1 : 0;
    o.git = &a.git.opts;
    if (lenv_open(&env, &o, &lerr) != 0 || lenv_sample(&items, env, a.split, groups, a.opts.seed, &lerr) != 0) {
        fprintf(stderr, "envsrv rollout: %s\n", lerr.message);
        goto done;
    }
    if (inf_model_load_llama2c(&model, a.model, &ierr) != 0 ||
        inf_tokenizer_load_llama2c(&tok, a.tokenizer, inf_model_config(model)->vocab_size, &ierr) != 0) {
        fprintf(stderr, "envsrv rollout: %s\n", ierr.message);
        goto done;
    }
    out = fopen(outpath, "w");
    if (!out) {
        fprintf(stderr, "envsrv rollout: cannot write '%s': %s\n", outpath, strerror(errno));
        goto done;
    }
    size_t idx, written = 0;
    json_t *view;
    json_array_foreach(items, idx, view) {
        const char *id = json_string_value(json_object_get(view, "id"));
        json_t *item = NULL, *scored = NULL, *line = NULL;
        char *prompt = render_messages(json_object_get(view, "prompt"));
        int *ids = NULL;
        size_t n_ids = 0;
        inf_result res = { 0 };
        const char **t = NULL;
        size_t *l = NULL;
        int ok = prompt && lenv_item_get(&item, env, id, &lerr) == 0 &&
                 inf_tokenizer_encode(&ids, &n_ids, tok, prompt, strlen(prompt), INF_TOK_BOS, &ierr) == 0 &&
                 inf_generate(&res, model, tok, ids, n_ids, &a.opts, &ierr) == 0;
        if (ok) {
            t = malloc(res.n_samples * sizeof *t);
            l = malloc(res.n_samples * sizeof *l);
            ok = t && l;
            for (size_t s = 0; ok && s < res.n_samples; s++) {
                t[s] = res.samples[s].text;
                l[s] = res.samples[s].text_len;
            }
        }
        ok = ok && lenv_score(&scored, env, item, t, l, res.n_samples, &lerr) == 0;
        if (ok)
            line = rollout_group(env, id, ids, n_ids, &res, json_object_get(scored, "rewards"), &a.opts);
        ok = ok && line && json_dumpf(line, out, JSON_COMPACT) == 0 && fputc('\n', out) != EOF;
        if (!ok)
            fprintf(stderr, "envsrv rollout: item %s: %s\n", id ? id : "?",
                    lerr.message[0] ? lerr.message : ierr.message[0] ? ierr.message : "out of memory or disk");
        written += ok;
        free(t);
        free(l);
        json_decref(line);
        json_decref(item);
        json_decref(scored);
        inf_result_free(&res);
        free(ids);
        free(prompt);
        if (!ok)
            goto done;
    }
    if (fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "envsrv rollout: cannot write '%s': %s\n", outpath, strerror(errno));
        goto done;
    }
    out = NULL;
    printf("wrote %zu groups of %d to %s (env %s version %s)\n", written, group_size, outpath, lenv_name(env),
           lenv_version(env));
    status = 0;
done:
    if (out)
        fclose(out);
    json_decref(items);
    inf_tokenizer_free(tok);
    inf_model_free(model);
    lenv_free(env);
    lenv_lock_free(a.git.lock);
    return status;
}
