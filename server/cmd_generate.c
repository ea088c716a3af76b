/*
 * `envsrv generate`: the plain way to try a model — load it, encode a prompt,
 * sample completions with the built-in CPU engine (inference/), print them.
 *
 *   envsrv generate --model stories260K.bin --tokenizer tok512.bin \
 *                   --prompt "Once upon a time" --temperature 0 --max-tokens 100
 *
 * Models: anything inf_bundle_load reads (a HuggingFace folder, a GGUF file,
 * a llama2.c checkpoint with its tokenizer.bin); the prompt is raw text
 * encoded after BOS, with no chat template. Output: the
 * prompt's completion (n = 1), or each sample under a header line (n > 1);
 * statistics go to stderr so stdout stays the text alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "inference/inference.h"
#include "server/server.h"

static const char generate_usage[] =
    "usage: envsrv generate --model PATH [--tokenizer PATH] --prompt TEXT [options]\n"
    "\n"
    "  --model PATH          a HuggingFace folder, a .gguf file or a llama2.c checkpoint\n"
    "  --tokenizer PATH      tokenizer.json, .gguf or tokenizer.bin (default: the model's own;\n"
    "                        tokenizer.bin beside a llama2.c checkpoint)\n"
    "  --prompt TEXT         the text to continue (may be empty: start from BOS)\n"
    "  --max-tokens N        new tokens per sample (default 256)\n"
    "  --temperature T       0 is greedy (default 1.0)\n"
    "  --top-p P             nucleus sampling, (0, 1] (default 1: off)\n"
    "  --top-k K             0 is off (default)\n"
    "  --min-p P             [0, 1], 0 is off (default)\n"
    "  --seed S              sampling seed (default 0); the same seed gives the same text\n"
    "  --n N                 samples of the prompt (default 1)\n"
    "  --threads N           CPU threads (default 1); results do not depend on it\n";

typedef struct gen_args {
    const char *model, *tokenizer, *prompt;
    inf_gen_options opts;
} gen_args;

/* Parses a number option; returns 0, or -1 with a message on stderr. */
static int parse_num(double *out, const char *opt, const char *s, double min, double max)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "envsrv generate: %s: '%s' is not a number from %g to %g\n", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_generate_args(gen_args *a, int argc, char **argv)
{
    inf_gen_options defaults = INF_GEN_OPTIONS_INIT;
    a->opts = defaults;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0) {
            fputs(generate_usage, stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "envsrv generate: %s needs a value\n%s", opt, generate_usage);
            return -1;
        }
        const char *v = argv[++i];
        double d = 0;
        int rc = 0;
        if (strcmp(opt, "--model") == 0)
            a->model = v;
        else if (strcmp(opt, "--tokenizer") == 0)
            a->tokenizer = v;
        else if (strcmp(opt, "--prompt") == 0)
            a->prompt = v;
        else if (strcmp(opt, "--max-tokens") == 0 && !(rc = parse_num(&d, opt, v, 1, 1 << 20)))
            a->opts.max_tokens = (int)d;
        else if (strcmp(opt, "--temperature") == 0 && !(rc = parse_num(&d, opt, v, 0, 100)))
            a->opts.temperature = (float)d;
        else if (strcmp(opt, "--top-p") == 0 && !(rc = parse_num(&d, opt, v, 1e-6, 1)))
            a->opts.top_p = (float)d;
        else if (strcmp(opt, "--top-k") == 0 && !(rc = parse_num(&d, opt, v, 0, 1 << 24)))
            a->opts.top_k = (int)d;
        else if (strcmp(opt, "--min-p") == 0 && !(rc = parse_num(&d, opt, v, 0, 1)))
            a->opts.min_p = (float)d;
        else if (strcmp(opt, "--seed") == 0 && !(rc = parse_num(&d, opt, v, 0, 9007199254740992.0)))
            a->opts.seed = (uint64_t)d;
        else if (strcmp(opt, "--n") == 0 && !(rc = parse_num(&d, opt, v, 1, INF_MAX_SAMPLES)))
            a->opts.n_samples = (int)d;
        else if (strcmp(opt, "--threads") == 0 && !(rc = parse_num(&d, opt, v, 1, INF_MAX_THREADS)))
            a->opts.n_threads = (int)d;
        else if (rc == 0) {
            fprintf(stderr, "envsrv generate: unknown option '%s'\n%s", opt, generate_usage);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (!a->model || !a->prompt) {
        fprintf(stderr, "envsrv generate: --model and --prompt are required\n%s", generate_usage);
        return -1;
    }
    return 0;
}

int srv_cmd_generate(int argc, char **argv)
{
    gen_args a = { 0 };
    if (parse_generate_args(&a, argc, argv) != 0)
        return 2;
    int status = 1;
    inf_bundle *bundle = NULL;
    int *ids = NULL;
    size_t n_ids = 0;
    inf_result res = { 0 };
    inf_error err = { 0 };
    if (inf_bundle_load(&bundle, a.model, a.tokenizer, NULL, &err) != 0 ||
        inf_bundle_encode_text(&ids, &n_ids, bundle, a.prompt, strlen(a.prompt), &err) != 0)
        goto fail;
    if (n_ids == 0) {
        fprintf(stderr, "envsrv generate: the prompt is empty and the tokenizer has no BOS token to "
                        "start from\n");
        goto done;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (inf_generate(&res, inf_bundle_model(bundle), inf_bundle_tokenizer(bundle), ids, n_ids, &a.opts,
                     &err) != 0)
        goto fail;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    size_t total = 0;
    for (size_t i = 0; i < res.n_samples; i++) {
        const inf_sample *s = &res.samples[i];
        total += s->n_tokens;
        if (res.n_samples > 1)
            printf("--- sample %zu (%zu tokens, %s)\n", i, s->n_tokens, inf_finish_name(s->finish));
        fwrite(a.prompt, 1, strlen(a.prompt), stdout);
        fwrite(s->text, 1, s->text_len, stdout);
        putchar('\n');
    }
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "envsrv generate: %zu prompt tokens, %zu new tokens in %.3f s (%.0f tokens/s)\n",
            res.prompt_tokens, total, secs, secs > 0 ? (double)total / secs : 0.0);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "envsrv generate: %s\n", err.message);
done:
    inf_result_free(&res);
    free(ids);
    inf_bundle_free(bundle);
    return status;
}
