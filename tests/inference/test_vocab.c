/*
 * Tokenizers from GGUF vocabularies against llama.cpp's test vectors
 * ($ENVSRV_DATA/models/llama.cpp-vocab/ggml-vocab-NAME.gguf with .inp and
 * .out): each .inp case (cases end with "\n__ggml_vocab_test__\n") encoded
 * with add_special=false, parse_special=false must give line i of .out.
 * Also: decode(encode(text)) == text, and corrupt GGUF files give errors.
 * Skips, saying so, when the data is absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "inference/inference.h"

static char vocab_dir[4000];

static int data_ok(void)
{
    const char *data = getenv("ENVSRV_DATA");
    const char *src = getenv("ENVSRV_SRC");
    if (data && *data)
        snprintf(vocab_dir, sizeof vocab_dir, "%s/models/llama.cpp-vocab", data);
    else if (src && *src)
        snprintf(vocab_dir, sizeof vocab_dir, "%s/../shared/data/models/llama.cpp-vocab", src);
    else
        snprintf(vocab_dir, sizeof vocab_dir, "../shared/data/models/llama.cpp-vocab");
    char p[4200];
    snprintf(p, sizeof p, "%s/ggml-vocab-gpt-2.gguf", vocab_dir);
    return access(p, R_OK) == 0;
}

#define NEED_DATA()                                                                        \
    do {                                                                                   \
        if (!data_ok()) {                                                                  \
            fprintf(stderr, "skipping: %s not found (set ENVSRV_DATA)\n", vocab_dir);      \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

#define SEP "\n__ggml_vocab_test__\n"

/* Runs every case of vocab `name`; returns the number that match and sets
 * *total. Prints each mismatch. */
static int run_vocab(const char *name, int *total, int *roundtrip_ok)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", vocab_dir, name);
    inf_tokenizer *t = NULL;
    inf_error err = {0};
    if (inf_tokenizer_load_gguf(&t, path, &err))
        fail_msg("%s", err.message);
    size_t in_len, out_len;
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.inp", vocab_dir, name);
    char *inp = slurp(path, &in_len);
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.out", vocab_dir, name);
    char *out = slurp(path, &out_len);
    int pass = 0, n = 0;
    *roundtrip_ok = 0;
    char *c = inp, *line = out;
    for (char *sep; (sep = strstr(c, SEP)) != NULL; c = sep + strlen(SEP), n++) {
        size_t len = (size_t)(sep - c);
        char *eol = strchr(line, '\n');
        assert_non_null(eol);
        *eol = '\0';
        int *ids;
        size_t n_ids;
        assert_int_equal(inf_tokenizer_encode(&ids, &n_ids, t, c, len, 0, &err), 0);
        /* expected ids */
        int want[4096];
        size_t n_want = 0;
        for (char *p = line, *e; n_want < 4096; p = e) {
            long v = strtol(p, &e, 10);
            if (e == p)
                break;
            want[n_want++] = (int)v;
        }
        if (n_ids == n_want && memcmp(ids, want, n_ids * sizeof(int)) == 0) {
            pass++;
        } else {
            fprintf(stderr, "  %s case %d \"%.*s\":\n    want%s\n    got ", name, n,
                    (int)(len > 60 ? 60 : len), c, line);
            for (size_t i = 0; i < n_ids; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        free(ids);
        /* decode(encode(text, BOS)) == text */
        assert_int_equal(inf_tokenizer_encode(&ids, &n_ids, t, c, len, INF_TOK_BOS, &err), 0);
        char *text;
        size_t text_len;
        assert_int_equal(inf_tokenizer_decode(&text, &text_len, t, ids, n_ids, &err), 0);
        if (text_len == len && memcmp(text, c, len) == 0)
            (*roundtrip_ok)++;
        free(text);
        free(ids);
        line = eol + 1;
    }
    free(inp);
    free(out);
    inf_tokenizer_free(t);
    *total = n;
    printf("  vocab %-8s %d/%d cases match llama.cpp, %d/%d round-trip\n", name, pass, n,
           *roundtrip_ok, n);
    return pass;
}

static void test_inference_vocab__gpt2(void **state)
{
    NEED_DATA();
    int total, rt;
    int pass = run_vocab("gpt-2", &total, &rt);
    assert_int_equal(total, 46);
    assert_int_equal(pass, total);
    assert_int_equal(rt, total);
}

static void test_inference_vocab__phi3(void **state)
{
    NEED_DATA();
    int total, rt;
    int pass = run_vocab("phi-3", &total, &rt);
    assert_int_equal(total, 46);
    assert_int_equal(pass, total);
    assert_int_equal(rt, total);
}

/* Falcon: byte-level BPE with its own pre-tokenizer (punctuation runs cut
 * out first, then GPT-2's split, then 3-digit groups). */
static void test_inference_vocab__falcon(void **state)
{
    NEED_DATA();
    int total, rt;
    int pass = run_vocab("falcon", &total, &rt);
    assert_int_equal(total, 46);
    assert_int_equal(pass, total);
    assert_int_equal(rt, total);
}

static void test_inference_vocab__bert_unsupported(void **state)
{
    NEED_DATA();
    char path[4200];
    snprintf(path, sizeof path, "%s/ggml-vocab-bert-bge.gguf", vocab_dir);
    inf_tokenizer *t = NULL;
    inf_error err = {0};
    assert_int_equal(inf_tokenizer_load_gguf(&t, path, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "'bert' is not supported"));
    assert_null(t);
}

/* Long inputs (a 64 KiB word without spaces, 256 KiB of mixed text) encode
 * in a blink (merges go through a heap, not a rescan per merge) and round-trip. */
static void test_inference_vocab__long_text(void **state)
{
    NEED_DATA();
    static const char *const names[] = {"gpt-2", "phi-3", "falcon"};
    size_t cap = 256 * 1024;
    char *text = malloc(cap + 1);
    static const char chunk[] = "The quick brown fox, 12345 caf\xc3\xa9 \xf0\x9f\xa6\x99 jumps!\n\t ";
    for (size_t i = 0; i < cap; i++)
        text[i] = chunk[i % (sizeof chunk - 1)];
    text[cap] = '\0';
    char *word = malloc(64 * 1024);
    for (size_t i = 0; i < 64 * 1024; i++)
        word[i] = "abcdefgh"[i % 8];
    for (size_t v = 0; v < 3; v++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", vocab_dir, names[v]);
        inf_tokenizer *t;
        inf_error err = {0};
        assert_int_equal(inf_tokenizer_load_gguf(&t, path, &err), 0);
        const char *inputs[2] = {text, word};
        size_t lens[2] = {cap, 64 * 1024};
        for (int k = 0; k < 2; k++) {
            int *ids;
            size_t n;
            assert_int_equal(inf_tokenizer_encode(&ids, &n, t, inputs[k], lens[k], 0, &err), 0);
            assert_true(n > 0 && n < lens[k]);
            char *back;
            size_t back_len;
            assert_int_equal(inf_tokenizer_decode(&back, &back_len, t, ids, n, &err), 0);
            /* SPM keeps the dummy-prefix space when there is no BOS before it */
            size_t skip = back_len == lens[k] + 1 && back[0] == ' ' ? 1 : 0;
            assert_int_equal(back_len - skip, lens[k]);
            assert_memory_equal(back + skip, inputs[k], lens[k]);
            free(back);
            free(ids);
        }
        inf_tokenizer_free(t);
    }
    free(word);
    free(text);
}

/* Every prefix of a real GGUF file, and a few poisoned counts, fail cleanly. */
static void test_inference_vocab__corrupt_gguf(void **state)
{
    NEED_DATA();
    char path[4200];
    snprintf(path, sizeof path, "%s/ggml-vocab-phi-3.gguf", vocab_dir);
    size_t len;
    char *data = slurp(path, &len);
    char tmp[] = "/tmp/envsrv-gguf-XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    int failures = 0, tries = 0;
    /* prefixes: dense through the header and first keys, then sparse */
    for (size_t cut = 0; cut < len; cut += cut < 2048 ? 7 : 9973) {
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(pwrite(fd, data, cut, 0), (ssize_t)cut);
        inf_tokenizer *t = NULL;
        inf_error err = {0};
        int rc = inf_tokenizer_load_gguf(&t, tmp, &err);
        tries++;
        if (rc == INF_EINVALID && t == NULL && err.message[0])
            failures++;
        inf_tokenizer_free(t);
    }
    assert_int_equal(failures, tries);

    /* huge counts and lengths */
    static const struct {
        size_t off;
        uint64_t value;
        const char *needle;
    } poison[] = {
        {8, 1ull << 40, "absurd"},          /* tensor count */
        {16, 1ull << 19, "truncated"},      /* metadata count: more than the file holds */
        {24, 1ull << 62, "absurd"},         /* first key's length */
    };
    for (size_t i = 0; i < sizeof poison / sizeof poison[0]; i++) {
        char *copy = malloc(len);
        memcpy(copy, data, len);
        memcpy(copy + poison[i].off, &poison[i].value, 8);
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(pwrite(fd, copy, len, 0), (ssize_t)len);
        inf_tokenizer *t = NULL;
        inf_error err = {0};
        assert_int_equal(inf_tokenizer_load_gguf(&t, tmp, &err), INF_EINVALID);
        if (!strstr(err.message, poison[i].needle))
            fail_msg("poison %zu: \"%s\" lacks \"%s\"", i, err.message, poison[i].needle);
        free(copy);
    }
    /* bad magic, bad version */
    char *copy = malloc(len);
    memcpy(copy, data, len);
    copy[0] = 'X';
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(pwrite(fd, copy, len, 0), (ssize_t)len);
    inf_tokenizer *t = NULL;
    inf_error err = {0};
    assert_int_equal(inf_tokenizer_load_gguf(&t, tmp, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "magic"));
    copy[0] = 'G';
    copy[4] = 9;
    assert_int_equal(pwrite(fd, copy, len, 0), (ssize_t)len);
    assert_int_equal(inf_tokenizer_load_gguf(&t, tmp, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "version"));
    free(copy);
    close(fd);
    unlink(tmp);
    free(data);
    assert_int_equal(inf_tokenizer_load_gguf(&t, "/nonexistent.gguf", &err), INF_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_vocab__gpt2),
        cmocka_unit_test(test_inference_vocab__phi3),
        cmocka_unit_test(test_inference_vocab__falcon),
        cmocka_unit_test(test_inference_vocab__bert_unsupported),
        cmocka_unit_test(test_inference_vocab__long_text),
        cmocka_unit_test(test_inference_vocab__corrupt_gguf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
