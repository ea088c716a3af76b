/*
 * inference/ against llama2.c's stories260K checkpoint and its tokenizer:
 * greedy output equal byte for byte to llama2.c's published text, tokenizer
 * round trips, sampling determinism, logprobs, stop strings and finish
 * reasons, and clear errors for corrupt checkpoint and tokenizer files.
 * Skips, saying so, when $ENVSRV_DATA/models/stories260K is absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "inference/inference.h"

static char model_path[4200], tok_path[4200], dir[4000];

static int data_ok(void)
{
    const char *data = getenv("ENVSRV_DATA");
    const char *src = getenv("ENVSRV_SRC");
    if (data && *data)
        snprintf(dir, sizeof dir, "%s/models/stories260K", data);
    else if (src && *src)
        snprintf(dir, sizeof dir, "%s/../shared/data/models/stories260K", src);
    else
        snprintf(dir, sizeof dir, "../shared/data/models/stories260K");
    snprintf(model_path, sizeof model_path, "%s/stories260K.bin", dir);
    snprintf(tok_path, sizeof tok_path, "%s/tok512.bin", dir);
    return access(model_path, R_OK) == 0 && access(tok_path, R_OK) == 0;
}

#define NEED_DATA()                                                                        \
    do {                                                                                   \
        if (!data_ok()) {                                                                  \
            fprintf(stderr, "skipping: %s not found (set ENVSRV_DATA)\n", model_path);     \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

typedef struct fixture {
    inf_model *m;
    inf_tokenizer *t;
} fixture;

static void load(fixture *f)
{
    inf_error err = {0};
    int rc = inf_model_load_llama2c(&f->m, model_path, &err);
    if (rc)
        fail_msg("%s", err.message);
    rc = inf_tokenizer_load_llama2c(&f->t, tok_path, inf_model_config(f->m)->vocab_size, &err);
    if (rc)
        fail_msg("%s", err.message);
}

static void unload(fixture *f)
{
    inf_tokenizer_free(f->t);
    inf_model_free(f->m);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/*
 * llama2.c's `run model -t 0 -n STEPS` output, rebuilt from our tokens the way
 * run.c's generate() prints it: starting from BOS, each next token's piece
 * (decode(): the space after BOS dropped, <0xXX> as the raw byte) through
 * safe_printf() (single unprintable bytes skipped), stopping at BOS; test_all.py
 * drops the final "\n".
 */
static char *run_c_text(const fixture *f, int steps)
{
    int bos = 1;
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.temperature = 0.0f;
    o.max_tokens = steps;
    o.ignore_eos = true;
    inf_result r;
    inf_error err = {0};
    if (inf_generate(&r, f->m, f->t, &bos, 1, &o, &err))
        fail_msg("%s", err.message);
    assert_int_equal(r.n_samples, 1);
    assert_int_equal(r.samples[0].n_tokens, (size_t)steps);
    char *out = calloc(1, 16 * (size_t)steps + 1);
    size_t at = 0;
    int prev = bos;
    for (size_t i = 0; i < r.samples[0].n_tokens; i++) {
        int tok = r.samples[0].tokens[i];
        if (tok == bos)
            break;
        size_t n;
        const char *p = inf_tokenizer_piece(f->t, prev, tok, &n);
        assert_non_null(p);
        if (!(n == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0])))) {
            memcpy(out + at, p, n);
            at += n;
        }
        prev = tok;
    }
    out[at] = '\0';
    inf_result_free(&r);
    return out;
}

static void check_greedy(int steps, const char *expected_name)
{
    NEED_DATA();
    fixture f;
    load(&f);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, expected_name);
    size_t len;
    char *want = read_file(path, &len);
    char *got = run_c_text(&f, steps);
    assert_string_equal(got, want);
    assert_int_equal(strlen(got), len);
    free(want);
    free(got);
    unload(&f);
}

static void test_inference_stories260k__greedy_n200(void **state)
{
    check_greedy(200, "expected_greedy_t0_n200.txt");
}

static void test_inference_stories260k__greedy_n256(void **state)
{
    check_greedy(256, "expected_greedy_t0_n256.txt");
}

/* The sample's own text (inf_generate's decoding) equals run.c's printout. */
static void test_inference_stories260k__generate_text(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    int bos = 1;
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.temperature = 0.0f;
    o.max_tokens = 200;
    inf_result r;
    inf_error err = {0};
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/expected_greedy_t0_n200.txt", dir);
    size_t len;
    char *want = read_file(path, &len);
    assert_string_equal(r.samples[0].text, want);
    assert_int_equal(r.samples[0].text_len, len);
    assert_int_equal(r.samples[0].finish, INF_FINISH_LENGTH);
    assert_int_equal(r.prompt_tokens, 1);
    free(want);
    inf_result_free(&r);
    unload(&f);
}

static void test_inference_stories260k__tokenizer_roundtrip(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "Lily's mom said, \"Lily, let's go to the park.\"\nThe end.",
        "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd!", /* bytes outside the 512 pieces */
        "  two  spaces",
        "x",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int *ids;
        size_t n;
        inf_error err = {0};
        assert_int_equal(inf_tokenizer_encode(&ids, &n, f.t, texts[i], strlen(texts[i]),
                                              INF_TOK_BOS, &err),
                         0);
        assert_true(n >= 2);
        assert_int_equal(ids[0], 1);
        char *text;
        size_t len;
        assert_int_equal(inf_tokenizer_decode(&text, &len, f.t, ids, n, &err), 0);
        assert_string_equal(text, texts[i]);
        free(text);
        free(ids);
    }
    /* Merges by score: " the" is one piece (id 265 in tok512.bin). */
    int *ids;
    size_t n;
    assert_int_equal(inf_tokenizer_encode(&ids, &n, f.t, "the", 3, 0, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 265);
    free(ids);
    /* Empty text: no dummy prefix, only the flags' tokens. */
    assert_int_equal(inf_tokenizer_encode(&ids, &n, f.t, "", 0, INF_TOK_BOS | INF_TOK_EOS, NULL),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    free(ids);
    /* Byte fallback: "你" is not a piece: <0xE4> <0xBD> <0xA0> = ids 3 + byte. */
    assert_int_equal(inf_tokenizer_encode(&ids, &n, f.t, "\xe4\xbd\xa0", 3, 0, NULL), 0);
    assert_int_equal(n, 4); /* the dummy-prefix space " " (410), then three bytes */
    assert_int_equal(ids[0], 410);
    assert_int_equal(ids[1], 3 + 0xe4);
    assert_int_equal(ids[2], 3 + 0xbd);
    assert_int_equal(ids[3], 3 + 0xa0);
    free(ids);
    unload(&f);
}

static void gen(inf_result *r, const fixture *f, const inf_gen_options *o)
{
    static const int prompt[] = {1, 403, 407, 261, 378}; /* BOS "Once upon a time" */
    inf_error err = {0};
    if (inf_generate(r, f->m, f->t, prompt, 5, o, &err))
        fail_msg("%s", err.message);
}

static void test_inference_stories260k__sampling_determinism(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.n_samples = 4;
    o.max_tokens = 40;
    o.seed = 42;
    o.temperature = 1.0f;
    o.ignore_eos = true;
    inf_result a, b;
    gen(&a, &f, &o);
    gen(&b, &f, &o);
    for (int j = 0; j < 4; j++) {
        assert_int_equal(a.samples[j].n_tokens, 40);
        assert_memory_equal(a.samples[j].tokens, b.samples[j].tokens, 40 * sizeof(int));
        assert_memory_equal(a.samples[j].logprobs, b.samples[j].logprobs, 40 * sizeof(float));
        assert_string_equal(a.samples[j].text, b.samples[j].text);
        for (int i = 0; i < 40; i++)
            assert_true(a.samples[j].logprobs[i] <= 0.0f);
    }
    /* Different sample index, different stream. */
    assert_memory_not_equal(a.samples[0].tokens, a.samples[1].tokens, 40 * sizeof(int));
    /* A different seed changes samples. */
    inf_result c;
    o.seed = 43;
    gen(&c, &f, &o);
    assert_memory_not_equal(a.samples[0].tokens, c.samples[0].tokens, 40 * sizeof(int));
    inf_result_free(&a);
    inf_result_free(&b);
    inf_result_free(&c);
    unload(&f);
}

static void test_inference_stories260k__top_k1_is_greedy(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.max_tokens = 60;
    o.ignore_eos = true;
    o.temperature = 0.0f;
    inf_result greedy, k1, tiny_p;
    gen(&greedy, &f, &o);
    o.temperature = 1.5f;
    o.top_k = 1;
    o.seed = 7;
    o.n_samples = 3;
    gen(&k1, &f, &o);
    /* top_p so small only the most probable token survives is greedy too */
    o.top_k = 0;
    o.top_p = 1e-6f;
    gen(&tiny_p, &f, &o);
    for (int j = 0; j < 3; j++) {
        assert_memory_equal(greedy.samples[0].tokens, k1.samples[j].tokens, 60 * sizeof(int));
        assert_memory_equal(greedy.samples[0].logprobs, k1.samples[j].logprobs,
                            60 * sizeof(float));
        assert_memory_equal(greedy.samples[0].tokens, tiny_p.samples[j].tokens,
                            60 * sizeof(int));
    }
    inf_result_free(&greedy);
    inf_result_free(&k1);
    inf_result_free(&tiny_p);
    unload(&f);
}

static void test_inference_stories260k__logprobs(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    const inf_config *c = inf_model_config(f.m);
    inf_state *s;
    inf_error err = {0};
    assert_int_equal(inf_state_new(&s, f.m, 1, 8, &err), 0);
    static const int toks[] = {1, 403, 407, 261, 378};
    float *lp = malloc((size_t)c->vocab_size * sizeof *lp);
    for (int pos = 0; pos < 5; pos++) {
        const float *logits = inf_forward(s, 0, toks[pos], pos, &err);
        assert_non_null(logits);
        inf_logprobs(lp, logits, c->vocab_size);
        double sum = 0.0;
        for (int i = 0; i < c->vocab_size; i++) {
            assert_true(lp[i] <= 0.0f);
            sum += exp((double)lp[i]);
        }
        assert_true(fabs(log(sum)) < 1e-5);
    }
    /* The logprobs generate reports are those of the temperature-1 distribution,
     * whatever the sampling temperature. */
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.max_tokens = 1;
    o.temperature = 0.3f;
    o.top_k = 5;
    inf_result r;
    assert_int_equal(inf_generate(&r, f.m, f.t, toks, 5, &o, &err), 0);
    assert_true(fabsf(r.samples[0].logprobs[0] - lp[r.samples[0].tokens[0]]) < 1e-6f);
    inf_result_free(&r);
    /* out-of-range calls are errors, not crashes */
    assert_null(inf_forward(s, 0, c->vocab_size, 5, &err));
    assert_int_equal(err.code, INF_EINVALID);
    assert_null(inf_forward(s, 0, 1, 8, &err));
    assert_int_equal(err.code, INF_ELIMIT);
    assert_null(inf_forward(s, 1, 1, 5, &err));
    free(lp);
    inf_state_free(s);
    unload(&f);
}

/* Reference for the top logprobs: ids of the k largest logits (n,), largest
 * first, lower id first on ties, by repeated scans (slow and obvious). */
static void top_by_scan(int *ids, const float *logits, int n, int k)
{
    for (int r = 0; r < k; r++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int q = 0; q < r; q++)
                taken |= ids[q] == i;
            if (!taken && (best < 0 || logits[i] > logits[best]))
                best = i;
        }
        ids[r] = best;
    }
}

/* top_logprobs: at every step, the k most likely tokens of the temperature-1
 * distribution with the bits inf_logprobs gives, recomputed one token at a
 * time; asking for them changes no sampled token or logprob. Then the other
 * per-call options of the same request: a set cancel flag, a clear one. */
static void test_inference_stories260k__top_logprobs(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    const inf_config *c = inf_model_config(f.m);
    enum { K = 6, STEPS = 30 };
    static const int prompt[] = {1, 403, 407, 261, 378};
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.n_samples = 2;
    o.max_tokens = STEPS;
    o.seed = 3;
    o.ignore_eos = true;
    inf_result plain, top;
    gen(&plain, &f, &o);
    o.top_logprobs = K;
    gen(&top, &f, &o);
    float *lp = malloc((size_t)c->vocab_size * sizeof *lp);
    assert_non_null(lp);
    for (int j = 0; j < 2; j++) {
        const inf_sample *s = &top.samples[j];
        assert_int_equal(s->n_top, K);
        assert_int_equal(s->n_tokens, STEPS);
        assert_memory_equal(s->tokens, plain.samples[j].tokens, STEPS * sizeof(int));
        assert_memory_equal(s->logprobs, plain.samples[j].logprobs, STEPS * sizeof(float));
        assert_null(plain.samples[j].top_ids);
        inf_state *st;
        inf_error err = {0};
        assert_int_equal(inf_state_new(&st, f.m, 1, 5 + STEPS, &err), 0);
        const float *logits = NULL;
        for (int pos = 0; pos < 5; pos++)
            logits = inf_forward(st, 0, prompt[pos], pos, &err);
        for (int i = 0; i < STEPS; i++) {
            assert_non_null(logits);
            inf_logprobs(lp, logits, c->vocab_size);
            int want[K];
            top_by_scan(want, logits, c->vocab_size, K);
            assert_memory_equal(s->top_ids + i * K, want, sizeof want);
            for (int r = 0; r < K; r++)
                assert_memory_equal(&s->top_logprobs[i * K + r], &lp[want[r]], sizeof(float));
            assert_true(s->top_logprobs[i * K] >= s->logprobs[i]);
            logits = inf_forward(st, 0, s->tokens[i], 5 + i, &err);
        }
        inf_state_free(st);
    }
    /* A cancel flag already set ends the call before any forward pass; a
     * clear one changes nothing. */
    inf_result_free(&top);
    atomic_int cancel;
    atomic_init(&cancel, 1);
    o.top_logprobs = 0;
    o.cancel = &cancel;
    inf_error cerr = {0};
    assert_int_equal(inf_generate(&top, f.m, f.t, prompt, 5, &o, &cerr), INF_ECANCELED);
    assert_null(top.samples);
    atomic_store(&cancel, 0);
    gen(&top, &f, &o);
    for (int j = 0; j < 2; j++)
        assert_memory_equal(top.samples[j].tokens, plain.samples[j].tokens, STEPS * sizeof(int));
    o.cancel = NULL;
    /* More than 20 is refused. */
    inf_result_free(&top);
    o.top_logprobs = INF_MAX_TOP_LOGPROBS + 1;
    inf_error err = {0};
    assert_int_equal(inf_generate(&top, f.m, f.t, prompt, 5, &o, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "top_logprobs"));
    free(lp);
    inf_result_free(&plain);
    unload(&f);
}

static void test_inference_stories260k__stop_and_finish(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    int bos = 1;
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.temperature = 0.0f;
    o.max_tokens = 100;
    const char *stops[] = {"zzz", "Lily"};
    o.stop = stops;
    o.n_stop = 2;
    inf_result r;
    inf_error err = {0};
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), 0);
    assert_int_equal(r.samples[0].finish, INF_FINISH_STOP);
    assert_int_equal(r.samples[0].stop_index, 1);
    assert_string_equal(r.samples[0].text, "Once upon a time, there was a little girl named ");
    assert_string_equal(inf_finish_name(r.samples[0].finish), "stop");
    inf_result_free(&r);

    o.n_stop = 0;
    o.max_tokens = 5;
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), 0);
    assert_int_equal(r.samples[0].finish, INF_FINISH_LENGTH);
    assert_int_equal(r.samples[0].n_tokens, 5);
    inf_result_free(&r);

    /* Greedy from BOS ends its story with BOS (an eos token for llama2.c
     * checkpoints) before the 512-token context is full. */
    o.max_tokens = 10000;
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), 0);
    inf_sample *s = &r.samples[0];
    if (s->finish == INF_FINISH_EOS) {
        int last = s->tokens[s->n_tokens - 1];
        assert_true(last == 1 || last == 2);
    } else {
        assert_int_equal(s->finish, INF_FINISH_LENGTH);
        assert_int_equal(s->n_tokens, 511); /* capped by the context */
    }
    inf_result_free(&r);
    unload(&f);
}

static void test_inference_stories260k__bad_options(void **state)
{
    NEED_DATA();
    fixture f;
    load(&f);
    int bos = 1, bad = 512;
    inf_result r;
    inf_error err = {0};
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.top_p = 0.0f;
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "top_p"));
    o = (inf_gen_options)INF_GEN_OPTIONS_INIT;
    o.n_samples = 0;
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), INF_ELIMIT);
    o = (inf_gen_options)INF_GEN_OPTIONS_INIT;
    o.temperature = NAN;
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), INF_EINVALID);
    o = (inf_gen_options)INF_GEN_OPTIONS_INIT;
    assert_int_equal(inf_generate(&r, f.m, f.t, &bad, 1, &o, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "vocabulary"));
    const char *empty[] = {""};
    o.stop = empty;
    o.n_stop = 1;
    assert_int_equal(inf_generate(&r, f.m, f.t, &bos, 1, &o, &err), INF_EINVALID);
    o.n_stop = 0;
    int *long_prompt = calloc(600, sizeof *long_prompt);
    assert_int_equal(inf_generate(&r, f.m, f.t, long_prompt, 512, &o, &err), INF_ELIMIT);
    assert_non_null(strstr(err.message, "context"));
    free(long_prompt);
    assert_null(r.samples);
    unload(&f);
}

/* Writes `len` bytes of `data` with `header` (7 int32, or NULL) over the start
 * to a temporary file; returns its path in `path`. */
static void write_variant(char *path, const char *data, size_t len, const int32_t *header,
                          size_t header_len)
{
    strcpy(path, "/tmp/envsrv-inf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    if (header && len >= header_len)
        assert_int_equal(write(fd, header, header_len), (ssize_t)header_len);
    size_t from = header && len >= header_len ? header_len : 0;
    assert_int_equal(write(fd, data + from, len - from), (ssize_t)(len - from));
    close(fd);
}

static void expect_model_error(const char *data, size_t len, const int32_t *header,
                               const char *needle)
{
    char path[64];
    write_variant(path, data, len, header, header ? 28 : 0);
    inf_model *m = NULL;
    inf_error err = {0};
    int rc = inf_model_load_llama2c(&m, path, &err);
    unlink(path);
    assert_int_equal(rc, INF_EINVALID);
    assert_null(m);
    if (!strstr(err.message, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err.message, needle);
}

static void test_inference_stories260k__corrupt_checkpoints(void **state)
{
    NEED_DATA();
    size_t len;
    char *data = read_file(model_path, &len);
    int32_t h[7];
    memcpy(h, data, sizeof h);

    expect_model_error(data, 10, NULL, "truncated");
    expect_model_error(data, len - 4, NULL, "needs");
    expect_model_error(data, 1000, NULL, "needs");
    char *longer = calloc(1, len + 4);
    memcpy(longer, data, len);
    expect_model_error(longer, len + 4, NULL, "needs");
    free(longer);

    static const struct {
        int field;
        int32_t value;
        const char *needle;
    } bad[] = {
        {0, 0, "dim"},          {0, 1 << 30, "dim"},      {1, -5, "hidden_dim"},
        {2, 0, "n_layers"},     {2, 100000, "n_layers"},  {3, 7, "multiple"},
        {4, 16, "n_kv_heads"},  {4, 3, "multiple"},       {5, 0, "vocab_size"},
        {5, INT32_MIN, "vocab_size"}, {6, -1, "seq_len"}, {6, 1 << 28, "seq_len"},
        {5, -512, "needs"}, /* unshared classifier: the file lacks it */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t hh[7];
        memcpy(hh, h, sizeof hh);
        hh[bad[i].field] = bad[i].value;
        expect_model_error(data, len, hh, bad[i].needle);
    }
    free(data);

    inf_model *m = NULL;
    inf_error err = {0};
    assert_int_equal(inf_model_load_llama2c(&m, "/nonexistent/model.bin", &err), INF_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/model.bin"));
    inf_model_free(NULL);
}

static void test_inference_stories260k__corrupt_tokenizers(void **state)
{
    NEED_DATA();
    size_t len;
    char *data = read_file(tok_path, &len);
    char path[64];
    inf_tokenizer *t = NULL;
    inf_error err = {0};

    write_variant(path, data, len - 3, NULL, 0);
    assert_int_equal(inf_tokenizer_load_llama2c(&t, path, 512, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "length"));
    unlink(path);

    write_variant(path, data, len, NULL, 0);
    assert_int_equal(inf_tokenizer_load_llama2c(&t, path, 500, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "after the last"));
    assert_int_equal(inf_tokenizer_load_llama2c(&t, path, 600, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "truncated"));
    assert_int_equal(inf_tokenizer_load_llama2c(&t, path, -1, &err), INF_EINVALID);
    unlink(path);

    int32_t huge = 1 << 30;
    char *copy = malloc(len);
    memcpy(copy, data, len);
    memcpy(copy + 4 + 8 + 5 + 4, &huge, 4); /* token 1's length */
    write_variant(path, copy, len, NULL, 0);
    assert_int_equal(inf_tokenizer_load_llama2c(&t, path, 512, &err), INF_EINVALID);
    unlink(path);
    assert_null(t);
    inf_tokenizer_free(NULL);
    free(copy);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_stories260k__greedy_n200),
        cmocka_unit_test(test_inference_stories260k__greedy_n256),
        cmocka_unit_test(test_inference_stories260k__generate_text),
        cmocka_unit_test(test_inference_stories260k__tokenizer_roundtrip),
        cmocka_unit_test(test_inference_stories260k__sampling_determinism),
        cmocka_unit_test(test_inference_stories260k__top_k1_is_greedy),
        cmocka_unit_test(test_inference_stories260k__logprobs),
        cmocka_unit_test(test_inference_stories260k__top_logprobs),
        cmocka_unit_test(test_inference_stories260k__stop_and_finish),
        cmocka_unit_test(test_inference_stories260k__bad_options),
        cmocka_unit_test(test_inference_stories260k__corrupt_checkpoints),
        cmocka_unit_test(test_inference_stories260k__corrupt_tokenizers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
