/*
 * HuggingFace tokenizer.json: llama.cpp's gpt-2 (byte-level) and phi-3
 * (SentencePiece) vectors through tokenizers converted to tokenizer.json
 * from their GGUF vocabularies; stories260K's tok512.bin converted and
 * compared id for id with the original, and the converted model + tokenizer
 * giving llama2.c's greedy text; the Llama 3 and Qwen2 split rules on
 * hand-checked cases; special tokens, NFC refusal and malformed files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "inference/inference.h"
#include "inference/inference_int.h"

static char data[4000];

static bool have(const char *rel)
{
    const char *d = getenv("ENVSRV_DATA");
    snprintf(data, sizeof data, "%s", d && *d ? d : "../shared/data");
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", data, rel);
    return access(p, R_OK) == 0;
}

#define NEED(rel)                                                                          \
    do {                                                                                   \
        if (!have(rel)) {                                                                  \
            fprintf(stderr, "skipping: %s/%s not found (set ENVSRV_DATA)\n", data, rel);   \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

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

/* Converts a tokenizer to tokenizer.json in a new temp dir and loads it. */
static inf_tokenizer *via_hf(const inf_tokenizer *t, char *dir)
{
    inf_tokenizer *h = NULL;
    inf_error err = {0};
    assert_non_null(mkdtemp(dir));
    if (inf_tokenizer_save_hf(t, dir, &err) || inf_tokenizer_load_hf(&h, dir, &err))
        fail_msg("%s", err.message);
    return h;
}

#define SEP "\n__ggml_vocab_test__\n"

/* llama.cpp's vectors for ggml-vocab-NAME.gguf through the tokenizer.json
 * conversion: every case gives the expected ids and round-trips. */
static void check_vectors(const char *name)
{
    char rel[200], path[4400];
    snprintf(rel, sizeof rel, "models/llama.cpp-vocab/ggml-vocab-%s.gguf", name);
    NEED(rel);
    snprintf(path, sizeof path, "%s/%s", data, rel);
    inf_tokenizer *g = NULL;
    inf_error err = {0};
    if (inf_tokenizer_load_gguf(&g, path, &err))
        fail_msg("%s", err.message);
    char dir[] = "/tmp/inf_tok_XXXXXX";
    inf_tokenizer *t = via_hf(g, dir);
    assert_int_equal(inf_tokenizer_vocab_size(t), inf_tokenizer_vocab_size(g));
    size_t in_len, out_len;
    snprintf(path, sizeof path, "%s/%s.inp", data, rel);
    char *inp = slurp(path, &in_len);
    snprintf(path, sizeof path, "%s/%s.out", data, rel);
    char *out = slurp(path, &out_len);
    int pass = 0, n = 0;
    char *c = inp, *line = out;
    for (char *sep; (sep = strstr(c, SEP)) != NULL; c = sep + strlen(SEP), n++) {
        size_t len = (size_t)(sep - c);
        char *eol = strchr(line, '\n');
        assert_non_null(eol);
        *eol = '\0';
        int *ids;
        size_t n_ids;
        assert_int_equal(inf_tokenizer_encode(&ids, &n_ids, t, c, len, 0, &err), 0);
        int want[4096];
        size_t n_want = 0;
        for (char *p = line, *e; n_want < 4096; p = e) {
            long v = strtol(p, &e, 10);
            if (e == p)
                break;
            want[n_want++] = (int)v;
        }
        if (n_ids == n_want && memcmp(ids, want, n_ids * sizeof(int)) == 0)
            pass++;
        else
            fprintf(stderr, "  %s case %d \"%.*s\" differs\n", name, n, (int)(len > 60 ? 60 : len),
                    c);
        free(ids);
        /* decode(encode(text, BOS)) == text (BOS: SentencePiece's dummy space
         * is dropped after it) */
        assert_int_equal(inf_tokenizer_encode(&ids, &n_ids, t, c, len, INF_TOK_BOS, &err), 0);
        char *text;
        size_t text_len;
        assert_int_equal(inf_tokenizer_decode(&text, &text_len, t, ids, n_ids, &err), 0);
        if (!(text_len == len && memcmp(text, c, len) == 0))
            fail_msg("%s case %d does not round-trip", name, n);
        free(text);
        free(ids);
        line = eol + 1;
    }
    if (pass != n || n < 40)
        fail_msg("%s via tokenizer.json: %d of %d cases", name, pass, n);
    free(inp);
    free(out);
    inf_tokenizer_free(t);
    inf_tokenizer_free(g);
    rm_dir(dir);
}

static void test_inference_tokenizer_hf__gpt2_vectors(void **state)
{
    check_vectors("gpt-2");
}

static void test_inference_tokenizer_hf__phi3_vectors(void **state)
{
    check_vectors("phi-3");
}

/* stories260K: tok512.bin -> tokenizer.json gives the same ids; and the
 * converted model + tokenizer give llama2.c's greedy text from a prompt. */
static void test_inference_tokenizer_hf__stories260k(void **state)
{
    NEED("models/stories260K/stories260K.bin");
    char path[4400];
    inf_error err = {0};
    inf_model *m = NULL, *hm = NULL;
    inf_tokenizer *t = NULL;
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", data);
    if (inf_model_load_llama2c(&m, path, &err))
        fail_msg("%s", err.message);
    snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", data);
    if (inf_tokenizer_load_llama2c(&t, path, 512, &err))
        fail_msg("%s", err.message);
    char dir[] = "/tmp/inf_tok_XXXXXX";
    inf_tokenizer *h = via_hf(t, dir);
    assert_int_equal(inf_tokenizer_bos(h), 1);
    assert_int_equal(inf_tokenizer_eos(h), 2);
    static const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "  two spaces, tabs\tand\nnewlines\n\n",
        "unknown bytes \xe4\xbd\xa0\xe5\xa5\xbd and \xff stray",
        "",
        "a",
        "The quick brown fox jumped over the lazy dog's bone!!! 12345",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int *a, *b;
        size_t na, nb;
        size_t len = strlen(texts[i]);
        assert_int_equal(inf_tokenizer_encode(&a, &na, t, texts[i], len, INF_TOK_BOS, &err), 0);
        assert_int_equal(inf_tokenizer_encode(&b, &nb, h, texts[i], len, INF_TOK_BOS, &err), 0);
        if (na != nb || memcmp(a, b, na * sizeof(int)))
            fail_msg("text %zu encodes differently through tokenizer.json", i);
        char *x, *y;
        size_t xl, yl;
        assert_int_equal(inf_tokenizer_decode(&x, &xl, t, a, na, &err), 0);
        assert_int_equal(inf_tokenizer_decode(&y, &yl, h, b, nb, &err), 0);
        assert_int_equal(xl, yl);
        assert_memory_equal(x, y, xl);
        free(x);
        free(y);
        free(a);
        free(b);
    }
    /* the model too, then generate from a text prompt through both */
    if (inf_model_save_hf(m, dir, INF_DTYPE_F32, 0, &err) || inf_model_load_hf(&hm, dir, &err))
        fail_msg("%s", err.message);
    const char *prompt = "Once upon a time";
    char *texts_out[2];
    for (int k = 0; k < 2; k++) {
        int *ids;
        size_t n;
        const inf_tokenizer *tk = k ? h : t;
        assert_int_equal(inf_tokenizer_encode(&ids, &n, tk, prompt, strlen(prompt), INF_TOK_BOS,
                                              &err),
                         0);
        inf_gen_options o = INF_GEN_OPTIONS_INIT;
        o.temperature = 0.0f;
        o.max_tokens = 120;
        inf_result r;
        if (inf_generate(&r, k ? hm : m, tk, ids, n, &o, &err))
            fail_msg("%s", err.message);
        texts_out[k] = strdup(r.samples[0].text);
        inf_result_free(&r);
        free(ids);
    }
    assert_true(strlen(texts_out[0]) > 100);
    assert_string_equal(texts_out[0], texts_out[1]);
    free(texts_out[0]);
    free(texts_out[1]);
    inf_model_free(hm);
    inf_model_free(m);
    inf_tokenizer_free(h);
    inf_tokenizer_free(t);
    rm_dir(dir);
}

/* ---- hand-written tokenizer.json files ---------------------------------- */

/* GPT-2's bytes_to_unicode, written independently: printable Latin-1 maps to
 * itself, the rest to U+0100 + n in byte order. */
static uint32_t b2u(int b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int i = 0; i < b; i++)
        if (!((i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF)))
            n++;
    return 256u + (uint32_t)n;
}

/* A byte-level tokenizer.json: 256 byte tokens, "<|im_start|>" (256,
 * special), "<x>" (257, not special); pre-tokenizer per `pre` (JSON text),
 * normalizer `norm` (JSON text). */
static void write_bl(const char *dir, const char *pre, const char *norm, const char *extra_merge)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"added_tokens\": [{\"id\": 256, \"content\": \"<|im_start|>\", \"special\": "
               "true}, {\"id\": 257, \"content\": \"<x>\", \"special\": false}],\n"
               "\"normalizer\": %s, \"pre_tokenizer\": %s,\n"
               "\"model\": {\"type\": \"BPE\", \"merges\": [%s], \"vocab\": {",
            norm, pre, extra_merge);
    for (int b = 0; b < 256; b++) {
        uint32_t cp = b2u(b);
        char u[8];
        int n = 0;
        if (cp < 0x80) {
            u[n++] = (char)cp;
        } else {
            u[n++] = (char)(0xC0 | (cp >> 6));
            u[n++] = (char)(0x80 | (cp & 0x3F));
        }
        u[n] = '\0';
        if (cp == '"' || cp == '\\')
            fprintf(f, "\"\\%s\": %d, ", u, b);
        else
            fprintf(f, "\"%s\": %d, ", u, b);
    }
    fprintf(f, "\"<|im_start|>\": 256, \"<x>\": 257, \"\\u0120w\": 258}}}\n");
    fclose(f);
}

#define SPLIT_PRE(re)                                                                      \
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "     \
    "{\"Regex\": \"" re "\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": " \
    "\"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": " \
    "false}]}"
#define LLAMA3_RE                                                                          \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "   \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define QWEN2_RE                                                                           \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "        \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define GPT2_PRE "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"

/* The words of `text` joined with '|'. */
static void split_str(char *out, const inf_tokenizer *t, const char *text)
{
    size_t *ends, n;
    assert_int_equal(inf__bpe_split(&ends, &n, t, text, strlen(text), NULL), 0);
    size_t at = 0, o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[o++] = '|';
        memcpy(out + o, text + at, ends[i] - at);
        o += ends[i] - at;
        at = ends[i];
    }
    out[o] = '\0';
    free(ends);
}

static inf_tokenizer *load_bl(char *dir, const char *pre, const char *norm)
{
    assert_non_null(mkdtemp(dir));
    write_bl(dir, pre, norm, "\"\\u0120 w\"");
    inf_tokenizer *t = NULL;
    inf_error err = {0};
    if (inf_tokenizer_load_hf(&t, dir, &err))
        fail_msg("%s", err.message);
    return t;
}

/* The same text's ids through a tokenizer, as a fresh array. */
static int *ids_of(const inf_tokenizer *t, const char *text, size_t *n)
{
    int *ids;
    inf_error err = {0};
    if (inf_tokenizer_encode(&ids, n, t, text, strlen(text), INF_TOK_BOS, &err))
        fail_msg("%s", err.message);
    return ids;
}

/* SentencePiece style with NFC: stories260K's tokenizer.json with its
 * normalizer made Sequence [NFC, Prepend, Replace] encodes decomposed text
 * as llama2.c's tokenizer encodes the precomposed text, and keeps NFC
 * through a save and load. */
static void test_inference_tokenizer_hf__spm_nfc(void **state)
{
    NEED("models/stories260K/tok512.bin");
    char path[4400];
    inf_error err = {0};
    inf_tokenizer *t = NULL, *h = NULL, *h2 = NULL;
    snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", data);
    if (inf_tokenizer_load_llama2c(&t, path, 512, &err))
        fail_msg("%s", err.message);
    char dir[] = "/tmp/inf_tok_XXXXXX", dir2[] = "/tmp/inf_tok_XXXXXX";
    inf_tokenizer_free(via_hf(t, dir));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    assert_non_null(root);
    json_t *norms = json_object_get(json_object_get(root, "normalizer"), "normalizers");
    assert_int_equal(json_array_size(norms), 2);
    json_array_insert_new(norms, 0, json_pack("{s:s}", "type", "NFC"));
    assert_int_equal(json_dump_file(root, path, 0), 0);
    json_decref(root);
    if (inf_tokenizer_load_hf(&h, dir, &err))
        fail_msg("%s", err.message);
    assert_non_null(mkdtemp(dir2));
    if (inf_tokenizer_save_hf(h, dir2, &err) || inf_tokenizer_load_hf(&h2, dir2, &err))
        fail_msg("%s", err.message);
    static const char *const pairs[][2] = {
        {"Lily said caf\xc3\xa9 and \xc3\x85ngstr\xc3\xb6m", "Lily said cafe\xcc\x81 and "
                                                         "\xe2\x84\xabngstro\xcc\x88m"},
        {"\xed\x95\x9c bear", "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab bear"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        size_t nw, n1, n2, nr;
        int *want = ids_of(t, pairs[i][0], &nw), *a = ids_of(h, pairs[i][1], &n1);
        int *b = ids_of(h2, pairs[i][1], &n2), *raw = ids_of(t, pairs[i][1], &nr);
        assert_int_equal(n1, nw);
        assert_memory_equal(a, want, nw * sizeof *want);
        assert_int_equal(n2, nw);
        assert_memory_equal(b, want, nw * sizeof *want);
        assert_true(nr != nw || memcmp(raw, want, nw * sizeof *want) != 0);
        free(want);
        free(a);
        free(b);
        free(raw);
    }
    inf_tokenizer_free(t);
    inf_tokenizer_free(h);
    inf_tokenizer_free(h2);
    rm_dir(dir);
    rm_dir(dir2);
}

/* Splits worked out by hand from the three regexes. */
static void test_inference_tokenizer_hf__split_rules(void **state)
{
    static const struct {
        const char *text, *gpt2, *llama3, *qwen2;
    } cases[] = {
        {"Hello world", "Hello| world", "Hello| world", "Hello| world"},
        {"I'M 12345 ok", "I|'|M| 12345| ok", "I|'M| |123|45| ok", "I|'M| |1|2|3|4|5| ok"},
        {"a\n\nb", "a|\n|\n|b", "a|\n\n|b", "a|\n\n|b"},
        {"x  y", "x| | y", "x| | y", "x| | y"},
        {"$hello", "$|hello", "$hello", "$hello"},
        {"!!\n\nok", "!!|\n|\n|ok", "!!\n\n|ok", "!!\n\n|ok"},
        {"it's 3.14", "it|'s| 3|.|14", "it|'s| |3|.|14", "it|'s| |3|.|1|4"},
    };
    char d1[] = "/tmp/inf_tok_XXXXXX", d2[] = "/tmp/inf_tok_XXXXXX", d3[] = "/tmp/inf_tok_XXXXXX";
    inf_tokenizer *g = load_bl(d1, GPT2_PRE, "null");
    inf_tokenizer *l = load_bl(d2, SPLIT_PRE(LLAMA3_RE), "null");
    inf_tokenizer *q = load_bl(d3, SPLIT_PRE(QWEN2_RE), "{\"type\": \"NFC\"}");
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        split_str(got, g, cases[i].text);
        if (strcmp(got, cases[i].gpt2))
            fail_msg("gpt-2 case %zu: \"%s\"", i, got);
        split_str(got, l, cases[i].text);
        if (strcmp(got, cases[i].llama3))
            fail_msg("llama3 case %zu: \"%s\"", i, got);
        split_str(got, q, cases[i].text);
        if (strcmp(got, cases[i].qwen2))
            fail_msg("qwen2 case %zu: \"%s\"", i, got);
    }
    /* the merge "Ġ w" applies inside a word only; bytes are byte tokens */
    int *ids;
    size_t n;
    inf_error err = {0};
    assert_int_equal(inf_tokenizer_encode(&ids, &n, l, "a w", 3, 0, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 'a');
    assert_int_equal(ids[1], 258);
    free(ids);
    /* special tokens only with INF_TOK_SPECIAL; non-special added always */
    const char *s = "<|im_start|>hi<x>";
    assert_int_equal(inf_tokenizer_encode(&ids, &n, l, s, strlen(s), 0, &err), 0);
    assert_int_equal(n, strlen("<|im_start|>hi") + 1);
    assert_int_equal(ids[n - 1], 257);
    free(ids);
    assert_int_equal(inf_tokenizer_encode(&ids, &n, l, s, strlen(s), INF_TOK_SPECIAL, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 'h');
    assert_int_equal(ids[3], 257);
    char *text;
    size_t tl;
    assert_int_equal(inf_tokenizer_decode(&text, &tl, l, ids, n, &err), 0);
    assert_string_equal(text, "hi<x>");     /* special tokens decode as "" */
    free(text);
    free(ids);
    /* NFC: decomposed text encodes as its precomposed form ("é" is one
     * byte-level symbol pair either way, the merges do the rest); a
     * tokenizer without the normalizer keeps the combining mark */
    static const char *const nfc_pairs[][2] = {
        {"caf\xc3\xa9 \xe4\xbd\xa0", "cafe\xcc\x81 \xe4\xbd\xa0"},
        {"\xed\x95\x9c", "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab"},     /* 한 as jamo */
        {"\xe1\xba\xad", "a\xcc\x82\xcc\xa3"},     /* marks out of canonical order */
        {"\xc3\x85", "\xe2\x84\xab"},                /* the Angstrom sign, a singleton */
    };
    char d4[] = "/tmp/inf_tok_XXXXXX";
    inf_tokenizer *qs = load_bl(d4, SPLIT_PRE(QWEN2_RE),
                                "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}");
    for (size_t i = 0; i < sizeof nfc_pairs / sizeof nfc_pairs[0]; i++) {
        int *want, *enc, *raw, *raw_pre;
        size_t nw, ng, nr, np;
        const char *pre = nfc_pairs[i][0], *dec = nfc_pairs[i][1];
        assert_int_equal(inf_tokenizer_encode(&want, &nw, q, pre, strlen(pre), 0, &err), 0);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(inf_tokenizer_encode(&enc, &ng, k ? qs : q, dec, strlen(dec), 0,
                                                  &err), 0);
            assert_int_equal(ng, nw);
            assert_memory_equal(enc, want, nw * sizeof *want);
            free(enc);
        }
        assert_int_equal(inf_tokenizer_encode(&raw, &nr, l, dec, strlen(dec), 0, &err), 0);
        assert_int_equal(inf_tokenizer_encode(&raw_pre, &np, l, pre, strlen(pre), 0, &err), 0);
        assert_true(nr != np || memcmp(raw, raw_pre, np * sizeof *raw) != 0);
        free(raw);
        free(raw_pre);
        free(want);
    }
    inf_tokenizer_free(qs);
    rm_dir(d4);
    inf_tokenizer_free(g);
    inf_tokenizer_free(l);
    inf_tokenizer_free(q);
    rm_dir(d1);
    rm_dir(d2);
    rm_dir(d3);
}

static void test_inference_tokenizer_hf__malformed(void **state)
{
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"model\": ", "bad JSON"},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model type 'WordPiece'"},
        {"{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
         "{\"a\": 0}, \"merges\": []}}",
         "normalizer 'NFKC'"},
        {"{\"pre_tokenizer\": " SPLIT_PRE("\\\\w+") ", \"model\": {\"type\": \"BPE\", "
         "\"vocab\": {\"a\": 0}, \"merges\": []}}",
         "split regex"},
        {"{\"pre_tokenizer\": " GPT2_PRE ", \"model\": {\"type\": \"BPE\", \"vocab\": "
         "{\"a\": 0}, \"merges\": [\"ab\"]}}",
         "merges[0]"},
        {"{\"pre_tokenizer\": " GPT2_PRE ", \"model\": {\"type\": \"BPE\", \"vocab\": "
         "{\"a\": -4}, \"merges\": []}}",
         "vocab id"},
        {"{\"pre_tokenizer\": " GPT2_PRE ", \"added_tokens\": [{\"id\": 99999999, "
         "\"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
         "\"merges\": []}}",
         "added_tokens[0]"},
        {"{\"pre_tokenizer\": " GPT2_PRE ", \"model\": {\"type\": \"BPE\", \"vocab\": "
         "{\"a\": 0, \"b\": 0}, \"merges\": []}}",
         "appears twice"},
        {"{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", "
         "\"prepend\": \"\\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
         "\"content\": \"\\u2581\"}]}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
         "\"merges\": []}}",
         "byte_fallback"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         "no pre_tokenizer"},
        {"{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", "
         "\"vocab\": {\"a\": 0}, \"merges\": []}}",
         "pre_tokenizer 'Whitespace'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[] = "/tmp/inf_tok_XXXXXX", path[512];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(cases[i].json, f);
        fclose(f);
        inf_tokenizer *t = NULL;
        inf_error err = {0};
        int rc = inf_tokenizer_load_hf(&t, dir, &err);
        assert_null(t);
        if (rc != INF_EINVALID || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu: rc %d \"%s\" lacks \"%s\"", i, rc, err.message, cases[i].needle);
        rm_dir(dir);
    }
    inf_tokenizer *t = NULL;
    inf_error err = {0};
    assert_int_equal(inf_tokenizer_load_hf(&t, "/nonexistent/tokenizer.json", &err), INF_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_tokenizer_hf__gpt2_vectors),
        cmocka_unit_test(test_inference_tokenizer_hf__phi3_vectors),
        cmocka_unit_test(test_inference_tokenizer_hf__stories260k),
        cmocka_unit_test(test_inference_tokenizer_hf__spm_nfc),
        cmocka_unit_test(test_inference_tokenizer_hf__split_rules),
        cmocka_unit_test(test_inference_tokenizer_hf__malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
