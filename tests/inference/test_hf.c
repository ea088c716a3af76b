/*
 * HuggingFace directories (config.json + safetensors): stories260K converted
 * by inf_model_save_hf gives llama2.c's greedy tokens through
 * inf_model_load_hf (f32, one file and sharded; bf16 close), and every kind
 * of malformed file gives a clear error. The corrupt files are made from a
 * valid tiny model written by the test itself, so those cases need no data.
 * (tests/inference/test_reference.c checks the loaded tiny Llama/Qwen2/Qwen3
 * models against its double-precision reference.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "inference/inference.h"

static char data_dir[4096], model_path[4200];

static bool data_ok(void)
{
    const char *data = getenv("ENVSRV_DATA");
    snprintf(data_dir, sizeof data_dir, "%s/models/stories260K",
             data && *data ? data : "../shared/data");
    snprintf(model_path, sizeof model_path, "%s/stories260K.bin", data_dir);
    return access(model_path, R_OK) == 0;
}

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

/* Greedy tokens from BOS. */
static int *greedy(const inf_model *m, int steps)
{
    int bos = 1;
    inf_gen_options o = INF_GEN_OPTIONS_INIT;
    o.temperature = 0.0f;
    o.max_tokens = steps;
    o.ignore_eos = true;
    inf_result r;
    inf_error err = {0};
    if (inf_generate(&r, m, NULL, &bos, 1, &o, &err))
        fail_msg("%s", err.message);
    assert_int_equal(r.samples[0].n_tokens, (size_t)steps);
    int *t = malloc((size_t)steps * sizeof *t);
    assert_non_null(t);
    memcpy(t, r.samples[0].tokens, (size_t)steps * sizeof *t);
    inf_result_free(&r);
    return t;
}

/*
 * stories260K -> HF Llama (q/k rows permuted to the half RoPE layout, as
 * transformers' converter does) -> inf_model_load_hf: the same 256 greedy
 * tokens as the llama2.c checkpoint. The permutation is honest: only the
 * order of the terms in each attention score's dot product changes, so the
 * logits agree to rounding and the argmax path is the same.
 */
static void test_inference_hf__stories260k_converted(void **state)
{
    if (!data_ok()) {
        fprintf(stderr, "skipping: %s not found (set ENVSRV_DATA)\n", model_path);
        skip();
    }
    inf_model *m, *hf;
    inf_error err = {0};
    if (inf_model_load_llama2c(&m, model_path, &err))
        fail_msg("%s", err.message);
    int *want = greedy(m, 256);
    for (int sharded = 0; sharded < 2; sharded++) {
        char dir[] = "/tmp/inf_hf_XXXXXX";
        assert_non_null(mkdtemp(dir));
        if (inf_model_save_hf(m, dir, INF_DTYPE_F32, sharded ? 200000 : 0, &err) ||
            inf_model_load_hf(&hf, dir, &err))
            fail_msg("%s", err.message);
        char idx[512];
        snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
        assert_int_equal(access(idx, R_OK) == 0, sharded);
        const inf_config *a = inf_model_config(m), *b = inf_model_config(hf);
        assert_int_equal(b->rope_style, INF_ROPE_HALF);
        assert_int_equal(a->dim, b->dim);
        assert_int_equal(a->n_kv_heads, b->n_kv_heads);
        assert_int_equal(a->vocab_size, b->vocab_size);
        assert_true(b->tied_embeddings || !a->tied_embeddings);
        int *got = greedy(hf, 256);
        assert_memory_equal(got, want, 256 * sizeof(int));
        free(got);
        inf_model_free(hf);
        rm_dir(dir);
    }
    /* bf16 (every tensor rounded): the first logits stay close */
    char dir[] = "/tmp/inf_hf_XXXXXX";
    assert_non_null(mkdtemp(dir));
    if (inf_model_save_hf(m, dir, INF_DTYPE_BF16, 0, &err) || inf_model_load_hf(&hf, dir, &err))
        fail_msg("%s", err.message);
    inf_state *s1, *s2;
    assert_int_equal(inf_state_new(&s1, m, 1, 8, NULL), 0);
    assert_int_equal(inf_state_new(&s2, hf, 1, 8, NULL), 0);
    const float *l1 = inf_forward(s1, 0, 1, 0, NULL), *l2 = inf_forward(s2, 0, 1, 0, NULL);
    double top = 0, diff = 0;
    for (int i = 0; i < 512; i++) {
        top = fmax(top, fabs(l1[i]));
        diff = fmax(diff, fabs((double)l1[i] - l2[i]));
    }
    if (!(diff < 0.05 * top) || diff == 0)
        fail_msg("bf16 logits differ by %g (largest logit %g)", diff, top);
    inf_state_free(s1);
    inf_state_free(s2);
    inf_model_free(hf);
    rm_dir(dir);
    free(want);
    inf_model_free(m);
}

/* ---- malformed files --------------------------------------------------- */

/* A valid tiny Qwen2-style model (bias, GQA) written to dir as f32. */
static void write_valid(const char *dir)
{
    static float arena[40000];
    uint64_t r = 9;
    for (size_t i = 0; i < sizeof arena / sizeof arena[0]; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        arena[i] = (float)((double)(r >> 40) / (double)(1 << 24)) - 0.5f;
    }
    inf_config c = {.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                    .head_dim = 4, .vocab_size = 40, .seq_len = 32, .norm_eps = 1e-6f,
                    .rope_theta = 10000.0f, .rope_style = INF_ROPE_HALF, .qkv_bias = true,
                    .bos_id = -1, .n_eos = 1, .eos_ids = {3}};
    inf_layer layers[2];
    for (int l = 0; l < 2; l++)
        layers[l] = (inf_layer){.attn_norm = arena, .wq = INF_MAT_F32(arena),
                                .wk = INF_MAT_F32(arena + 100), .wv = INF_MAT_F32(arena + 200),
                                .bq = arena + 300, .bk = arena + 400, .bv = arena + 500,
                                .wo = INF_MAT_F32(arena + 600), .ffn_norm = arena + 900,
                                .w1 = INF_MAT_F32(arena + 1000), .w2 = INF_MAT_F32(arena + 2000),
                                .w3 = INF_MAT_F32(arena + 3000)};
    inf_weights w = {.tok_embeddings = INF_MAT_F32(arena + 5000), .layers = layers,
                     .final_norm = arena + 7000, .classifier = INF_MAT_F32(arena + 8000)};
    inf_model *m;
    inf_error err = {0};
    if (inf_model_create(&m, &c, &w, &err) || inf_model_save_hf(m, dir, INF_DTYPE_F32, 0, &err))
        fail_msg("%s", err.message);
    inf_model_free(m);
}

static void path_of(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_bytes(const char *dir, const char *name, const void *p, size_t n)
{
    char path[512];
    path_of(path, sizeof path, dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* model.safetensors as (header object, data bytes). */
typedef struct st_file {
    json_t *hdr;
    unsigned char *data;
    size_t len;
} st_file;

static void st_read(st_file *s, const char *dir)
{
    char path[512];
    path_of(path, sizeof path, dir, "model.safetensors");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char l8[8];
    assert_int_equal(fread(l8, 1, 8, f), 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | l8[i];
    char *h = malloc(hl);
    assert_non_null(h);
    assert_int_equal(fread(h, 1, hl, f), hl);
    s->hdr = json_loadb(h, hl, 0, NULL);
    assert_non_null(s->hdr);
    free(h);
    long at = ftell(f);
    fseek(f, 0, SEEK_END);
    s->len = (size_t)(ftell(f) - at);
    fseek(f, at, SEEK_SET);
    s->data = malloc(s->len);
    assert_int_equal(fread(s->data, 1, s->len, f), s->len);
    fclose(f);
}

static void st_write(st_file *s, const char *dir)
{
    char *h = json_dumps(s->hdr, JSON_COMPACT);
    size_t hl = strlen(h);
    unsigned char *buf = malloc(8 + hl + s->len);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, h, hl);
    memcpy(buf + 8 + hl, s->data, s->len);
    write_bytes(dir, "model.safetensors", buf, 8 + hl + s->len);
    free(buf);
    free(h);
    json_decref(s->hdr);
    free(s->data);
}

static json_t *tensor_entry(st_file *s, const char *name)
{
    json_t *t = json_object_get(s->hdr, name);
    assert_non_null(t);
    return t;
}

static json_t *cfg_read(const char *dir)
{
    char path[512];
    path_of(path, sizeof path, dir, "config.json");
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    return j;
}

static void cfg_write(json_t *j, const char *dir)
{
    char path[512];
    path_of(path, sizeof path, dir, "config.json");
    assert_int_equal(json_dump_file(j, path, 0), 0);
    json_decref(j);
}

#define QW "model.layers.0.self_attn.q_proj.weight"

/* Breaks the valid directory in way `which`. */
static void corrupt(const char *dir, int which)
{
    st_file s;
    json_t *c;
    char path[512];
    switch (which) {
    case 0: write_bytes(dir, "model.safetensors", "\x01\x00\x00", 3); break;
    case 1: {
        unsigned char b[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};
        write_bytes(dir, "model.safetensors", b, sizeof b);
        break;
    }
    case 2: {
        unsigned char b[16] = {6, 0, 0, 0, 0, 0, 0, 0, 'n', 'o', 't', ' ', 'j', 's'};
        write_bytes(dir, "model.safetensors", b, sizeof b);
        break;
    }
    case 3: st_read(&s, dir); s.len -= 100; st_write(&s, dir); break;
    case 4: st_read(&s, dir); json_object_del(s.hdr, "model.layers.1.mlp.up_proj.weight");
        st_write(&s, dir); break;
    case 5: st_read(&s, dir);
        json_object_set_new(tensor_entry(&s, QW), "shape", json_pack("[ii]", 4, 64));
        st_write(&s, dir); break;
    case 6: st_read(&s, dir);
        json_object_set_new(tensor_entry(&s, QW), "dtype", json_string("I32"));
        st_write(&s, dir); break;
    case 7: st_read(&s, dir);
        json_object_set_new(tensor_entry(&s, QW), "dtype", json_string("Q9"));
        st_write(&s, dir); break;
    case 8: st_read(&s, dir);
        json_object_set_new(tensor_entry(&s, QW), "data_offsets", json_pack("[ii]", 10, 5));
        st_write(&s, dir); break;
    case 9: st_read(&s, dir);
        json_object_set_new(tensor_entry(&s, QW), "shape", json_pack("[ii]", -16, 16));
        st_write(&s, dir); break;
    case 10: st_read(&s, dir);
        json_object_set_new(tensor_entry(&s, QW), "dtype", json_string("F16"));
        st_write(&s, dir); break;
    case 11: path_of(path, sizeof path, dir, "config.json"); unlink(path); break;
    case 12: write_bytes(dir, "config.json", "{\"hidden_size\": 16,", 19); break;
    case 13: c = cfg_read(dir);
        json_object_set_new(c, "architectures", json_pack("[s]", "MistralForCausalLM"));
        cfg_write(c, dir); break;
    case 14: c = cfg_read(dir); json_object_del(c, "hidden_size"); cfg_write(c, dir); break;
    case 15: c = cfg_read(dir);
        json_object_set_new(c, "rope_scaling", json_pack("{s:s,s:f}", "rope_type", "yarn",
                                                         "factor", 4.0));
        cfg_write(c, dir); break;
    case 16: c = cfg_read(dir); json_object_set_new(c, "num_key_value_heads", json_integer(3));
        cfg_write(c, dir); break;
    case 17: c = cfg_read(dir); json_object_set_new(c, "hidden_size", json_string("big"));
        cfg_write(c, dir); break;
    case 18: c = cfg_read(dir); json_object_set_new(c, "vocab_size", json_integer(41));
        cfg_write(c, dir); break;
    case 19:
        write_bytes(dir, "model.safetensors.index.json",
                    "{\"weight_map\": {\"lm_head.weight\": \"../evil.safetensors\"}}", 57);
        break;
    case 20:
        write_bytes(dir, "model.safetensors.index.json",
                    "{\"weight_map\": {\"lm_head.weight\": \"gone.safetensors\"}}", 54);
        break;
    case 21: write_bytes(dir, "model.safetensors.index.json", "{\"weight_map\": 7}", 17);
        break;
    case 22: c = cfg_read(dir); json_object_set_new(c, "attention_bias", json_true());
        json_object_set_new(c, "architectures", json_pack("[s]", "LlamaForCausalLM"));
        cfg_write(c, dir); break;
    case 23: c = cfg_read(dir); json_object_set_new(c, "num_hidden_layers", json_integer(3));
        cfg_write(c, dir); break;
    }
}

static void test_inference_hf__malformed(void **state)
{
    static const struct {
        int code;
        const char *needle;
    } cases[] = {
        {INF_EINVALID, "not a safetensors file"},
        {INF_EINVALID, "header length"},
        {INF_EINVALID, "not a JSON object"},
        {INF_EINVALID, "data_offsets are outside"},
        {INF_EINVALID, "'model.layers.1.mlp.up_proj.weight' is missing"},
        {INF_EINVALID, "has shape [4, 64], expected [16, 16]"},
        {INF_EINVALID, "is I32; supported dtypes are F32, F16 and BF16"},
        {INF_EINVALID, "unknown dtype 'Q9'"},
        {INF_EINVALID, "data_offsets are outside"},
        {INF_EINVALID, "shape[0] is not a size"},
        {INF_EINVALID, "1024 bytes for 256 elements of F16 (need 512)"},
        {INF_EIO, "config.json: cannot open"},
        {INF_EINVALID, "bad JSON"},
        {INF_EINVALID, "unsupported architecture 'MistralForCausalLM'"},
        {INF_EINVALID, "'hidden_size' is missing"},
        {INF_EINVALID, "rope_scaling type 'yarn' is not supported"},
        {INF_EINVALID, "not a multiple of n_kv_heads"},
        {INF_EINVALID, "'hidden_size' must be an integer"},
        {INF_EINVALID, "'model.embed_tokens.weight' has shape [40, 16], expected [41, 16]"},
        {INF_EINVALID, "bad file name"},
        {INF_EIO, "gone.safetensors: cannot open"},
        {INF_EINVALID, "'weight_map' is not an object"},
        {INF_EINVALID, "attention_bias"},
        {INF_EINVALID, "'model.layers.2.input_layernorm.weight' is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[] = "/tmp/inf_hf_XXXXXX";
        assert_non_null(mkdtemp(dir));
        write_valid(dir);
        corrupt(dir, (int)i);
        inf_model *m = NULL;
        inf_error err = {0};
        int rc = inf_model_load_hf(&m, dir, &err);
        assert_null(m);
        if (rc != cases[i].code || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu: rc %d, \"%s\" lacks \"%s\"", i, rc, err.message,
                     cases[i].needle);
        rm_dir(dir);
    }
    /* and the untouched directory loads */
    char dir[] = "/tmp/inf_hf_XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_valid(dir);
    inf_model *m = NULL;
    inf_error err = {0};
    if (inf_model_load_hf(&m, dir, &err))
        fail_msg("%s", err.message);
    assert_int_equal(inf_model_config(m)->eos_ids[0], 3);
    assert_false(inf_model_config(m)->tied_embeddings);
    inf_model_free(m);
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_hf__stories260k_converted),
        cmocka_unit_test(test_inference_hf__malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
