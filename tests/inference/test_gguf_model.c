/*
 * GGUF model files: corrupt and unsupported files written from a valid tiny
 * model give errors that name the problem. (Loading correct files is checked
 * against the reference in test_reference.c.)
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

static float arena[40000];

/* A valid tiny llama GGUF (f32 or Q8_0) at path; returns its bytes. */
static unsigned char *write_valid(const char *path, inf_dtype dtype, size_t *len)
{
    uint64_t r = 5;
    for (size_t i = 0; i < sizeof arena / sizeof arena[0]; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        arena[i] = (float)((double)(r >> 40) / (double)(1 << 24)) - 0.5f;
    }
    inf_config c = {.dim = 32, .hidden_dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                    .head_dim = 8, .vocab_size = 40, .seq_len = 32, .norm_eps = 1e-5f,
                    .rope_theta = 10000.0f, .bos_id = 1, .n_eos = 1, .eos_ids = {2}};
    inf_layer layers[2];
    for (int l = 0; l < 2; l++)
        layers[l] = (inf_layer){.attn_norm = arena, .wq = INF_MAT_F32(arena),
                                .wk = INF_MAT_F32(arena + 1100), .wv = INF_MAT_F32(arena + 1700),
                                .wo = INF_MAT_F32(arena + 2300), .ffn_norm = arena + 3400,
                                .w1 = INF_MAT_F32(arena + 4000), .w2 = INF_MAT_F32(arena + 7000),
                                .w3 = INF_MAT_F32(arena + 10000)};
    inf_weights w = {.tok_embeddings = INF_MAT_F32(arena + 13000), .layers = layers,
                     .final_norm = arena + 15000, .classifier = INF_MAT_F32(arena + 16000)};
    inf_model *m;
    inf_error err = {0};
    if (inf_model_create(&m, &c, &w, &err) || inf_model_save_gguf(m, path, dtype, &err))
        fail_msg("%s", err.message);
    inf_model_free(m);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*len);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void put_file(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* The byte just after the tensor info name `name` (its n_dims field). */
static unsigned char *after_name(unsigned char *b, size_t n, const char *name)
{
    unsigned char *p = memmem(b, n, name, strlen(name));
    assert_non_null(p);
    return p + strlen(name);
}

static void test_inference_gguf_model__malformed(void **state)
{
    static const struct {
        const char *needle;
    } cases[] = {
        {"architecture 'mamba' is not supported"},
        {"tensor 'blk.1.ffn_up.weight' is missing"},
        {"has ggml type 12; supported are F32, F16, BF16 and Q8_0"},
        {"tensor 'blk.0.attn_q.weight' has dims [32, 16], expected [32, 32]"},
        {"lies outside the file"},
        {"metadata 'llama.block_count' is missing"},
        {"not a GGUF file"},
    };
    char path[] = "/tmp/inf_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        unsigned char *b = write_valid(path, INF_DTYPE_F32, &n), *p;
        switch (i) {
        case 0: memcpy(memmem(b, n, "llama", 5), "mamba", 5); break;
        case 1: p = memmem(b, n, "blk.1.ffn_up.weight", 19); p[11] = 'q'; break;
        case 2: p = after_name(b, n, "token_embd.weight"); p[4 + 16] = 12; break;
        case 3: p = after_name(b, n, "blk.0.attn_q.weight"); p[4 + 8] = 16; break;
        case 4: n -= 200; break;
        case 5: p = memmem(b, n, "llama.block_count", 17); p[16] = 'x'; break;
        case 6: b[0] = 'X'; break;
        }
        put_file(path, b, n);
        free(b);
        inf_model *m = NULL;
        inf_error err = {0};
        assert_int_equal(inf_model_load_gguf(&m, path, &err), INF_EINVALID);
        assert_null(m);
        if (!strstr(err.message, cases[i].needle))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, cases[i].needle);
    }
    /* valid files load: f32, and Q8_0 with the same config */
    for (int q = 0; q < 2; q++) {
        size_t n;
        free(write_valid(path, q ? INF_DTYPE_Q8_0 : INF_DTYPE_F32, &n));
        inf_model *m = NULL;
        inf_error err = {0};
        if (inf_model_load_gguf(&m, path, &err))
            fail_msg("%s", err.message);
        const inf_config *c = inf_model_config(m);
        assert_int_equal(c->hidden_dim, 64);
        assert_int_equal(c->rope_style, INF_ROPE_INTERLEAVED);
        assert_false(c->tied_embeddings);
        assert_int_equal(c->eos_ids[0], 2);
        inf_model_free(m);
    }
    /* a model whose rows do not suit Q8_0 cannot be written as Q8_0 */
    inf_config c = {.dim = 16, .hidden_dim = 24, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                    .head_dim = 8, .vocab_size = 8, .seq_len = 8, .norm_eps = 1e-5f,
                    .rope_theta = 10000.0f, .bos_id = -1};
    inf_layer L = {.attn_norm = arena, .wq = INF_MAT_F32(arena), .wk = INF_MAT_F32(arena),
                   .wv = INF_MAT_F32(arena), .wo = INF_MAT_F32(arena), .ffn_norm = arena,
                   .w1 = INF_MAT_F32(arena), .w2 = INF_MAT_F32(arena), .w3 = INF_MAT_F32(arena)};
    inf_weights w = {.tok_embeddings = INF_MAT_F32(arena), .layers = &L, .final_norm = arena,
                     .classifier = INF_MAT_F32(arena)};
    inf_model *m;
    inf_error err = {0};
    assert_int_equal(inf_model_create(&m, &c, &w, NULL), 0);
    assert_int_equal(inf_model_save_gguf(m, path, INF_DTYPE_Q8_0, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "cannot be q8_0"));
    inf_model_free(m);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_gguf_model__malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
