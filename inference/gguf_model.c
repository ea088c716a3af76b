/*
 * Model weights from GGUF files (general.architecture llama, qwen2, qwen3)
 * with F32, F16, BF16 or Q8_0 matrices, used in place from the mapping; norms
 * and biases are converted to float32. And a writer for tests and tools.
 *
 * Tensor names and metadata follow llama.cpp: token_embd, blk.N.attn_norm,
 * attn_q/k/v (+ .bias for qwen2, attn_q_norm/attn_k_norm for qwen3),
 * attn_output, ffn_norm, ffn_gate/down/up, output_norm, output (absent when
 * tied); ARCH.embedding_length, .feed_forward_length, .block_count,
 * .attention.head_count(_kv), .attention.key_length, .context_length,
 * .attention.layer_norm_rms_epsilon, .rope.freq_base. llama.cpp stores llama
 * q/k rows in the interleaved RoPE order (its converter undoes HF's
 * permutation) and qwen2/qwen3 in HF's half order (NeoX RoPE); the loader
 * sets the RoPE style to match and the writer permutes rows when the model
 * in memory uses the other style. A ggml dimension list is innermost first:
 * a matrix (rows, cols) has dims [cols, rows].
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inference/inference_int.h"

static const char *const archs[] = {"llama", "qwen2", "qwen3"};

static int ggml_to_dtype(inf_dtype *out, uint32_t t)
{
    switch (t) {
    case INF__GGML_F32: *out = INF_DTYPE_F32; return 0;
    case INF__GGML_F16: *out = INF_DTYPE_F16; return 0;
    case INF__GGML_BF16: *out = INF_DTYPE_BF16; return 0;
    case INF__GGML_Q8_0: *out = INF_DTYPE_Q8_0; return 0;
    }
    return -1;
}

static const inf__gguf_tensor *find_tensor(const inf__gguf *g, const char *name)
{
    size_t n = strlen(name);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name_len == n && !memcmp(g->tensors[i].name, name, n))
            return &g->tensors[i];
    return NULL;
}

/* Tensor `name` of shape (rows, cols) (cols 0: a vector of rows) in a
 * supported type. */
static int get_tensor(const inf__gguf_tensor **out, inf_dtype *dt, const inf__gguf *g,
                      const char *name, uint64_t rows, uint64_t cols, inf_error *err)
{
    const inf__gguf_tensor *t = find_tensor(g, name);
    if (!t)
        return inf__fail(err, INF_EINVALID, "%s: tensor '%s' is missing", g->path, name);
    bool ok = cols ? (t->n_dims == 2 && t->dims[0] == cols && t->dims[1] == rows)
                   : (t->n_dims == 1 && t->dims[0] == rows);
    if (!ok)
        return inf__fail(err, INF_EINVALID,
                         "%s: tensor '%s' has dims [%llu, %llu], expected [%llu, %llu] "
                         "(innermost first)",
                         g->path, name, (unsigned long long)t->dims[0],
                         (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 1),
                         (unsigned long long)(cols ? cols : rows),
                         (unsigned long long)(cols ? rows : 1));
    if (ggml_to_dtype(dt, t->type))
        return inf__fail(err, INF_EINVALID,
                         "%s: tensor '%s' has ggml type %u; supported are F32, F16, BF16 and "
                         "Q8_0",
                         g->path, name, t->type);
    uint64_t c = cols ? cols : rows, r = cols ? rows : 1;
    if (inf_dtype_row_bytes(*dt, (size_t)c) * r != t->n_bytes || t->n_bytes == 0)
        return inf__fail(err, INF_EINVALID, "%s: tensor '%s' has %llu bytes, not a whole number "
                                            "of %s rows of %llu",
                         g->path, name, (unsigned long long)t->n_bytes, inf_dtype_name(*dt),
                         (unsigned long long)c);
    *out = t;
    return 0;
}

static int get_mat(inf_mat *out, const inf__gguf *g, const char *name, int rows, int cols,
                   inf_error *err)
{
    const inf__gguf_tensor *t;
    inf_dtype dt;
    int rc = get_tensor(&t, &dt, g, name, (uint64_t)rows, (uint64_t)cols, err);
    if (rc)
        return rc;
    out->data = t->data;
    out->type = dt;
    return 0;
}

static int get_vec(const float **out, float **arena, const inf__gguf *g, const char *name, int n,
                   inf_error *err)
{
    const inf__gguf_tensor *t;
    inf_dtype dt;
    int rc = get_tensor(&t, &dt, g, name, (uint64_t)n, 0, err);
    if (rc)
        return rc;
    inf_dtype_to_f32(*arena, dt, t->data, (size_t)n);
    *out = *arena;
    *arena += n;
    return 0;
}

/* Integer metadata ARCH.key; `def` when absent (def < 0: required). */
static int meta_int(int *out, const inf__gguf *g, const char *arch, const char *key, int def,
                    inf_error *err)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    const inf__gguf_kv *kv = inf__gguf_find(g, name);
    if (!kv) {
        if (def < 0)
            return inf__fail(err, INF_EINVALID, "%s: metadata '%s' is missing", g->path, name);
        *out = def;
        return 0;
    }
    int64_t v;
    int rc = inf__gguf_int(&v, g, kv, err);
    if (rc)
        return rc;
    if (v < 0 || v > INT32_MAX)
        return inf__fail(err, INF_EINVALID, "%s: '%s' = %lld is out of range", g->path, name,
                         (long long)v);
    *out = (int)v;
    return 0;
}

static int meta_float(float *out, const inf__gguf *g, const char *arch, const char *key,
                      float def, inf_error *err)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    const inf__gguf_kv *kv = inf__gguf_find(g, name);
    if (!kv) {
        *out = def;
        return 0;
    }
    if (kv->type == INF__GGUF_F32) {
        memcpy(out, g->map + kv->offset, 4);
        return 0;
    }
    if (kv->type == INF__GGUF_F64) {
        double d;
        memcpy(&d, g->map + kv->offset, 8);
        *out = (float)d;
        return 0;
    }
    return inf__fail(err, INF_EINVALID, "%s: '%s' is not a float", g->path, name);
}

int inf_model_load_gguf(inf_model **out, const char *path, inf_error *err)
{
    *out = NULL;
    inf__gguf *g = NULL;
    inf_model *m = NULL;
    inf_layer *layers = NULL;
    int rc = inf__gguf_open(&g, path, err);
    if (rc)
        return rc;
    const char *as;
    size_t al;
    const inf__gguf_kv *akv = inf__gguf_find(g, "general.architecture");
    if (!akv) {
        rc = inf__fail(err, INF_EINVALID, "%s: no general.architecture", path);
        goto done;
    }
    if ((rc = inf__gguf_str(&as, &al, g, akv, err)))
        goto done;
    int ai = -1;
    for (int i = 0; i < 3; i++)
        if (al == strlen(archs[i]) && !memcmp(as, archs[i], al))
            ai = i;
    if (ai < 0) {
        rc = inf__fail(err, INF_EINVALID,
                       "%s: architecture '%.*s' is not supported (llama, qwen2, qwen3)", path,
                       (int)(al > 40 ? 40 : al), as);
        goto done;
    }
    const char *arch = archs[ai];
    if (find_tensor(g, "rope_freqs.weight")) {
        rc = inf__fail(err, INF_EINVALID, "%s: rope_freqs (Llama 3.1 RoPE scaling in GGUF) is "
                                          "not supported",
                       path);
        goto done;
    }
    inf_config c = {0};
    if ((rc = meta_int(&c.dim, g, arch, "embedding_length", -1, err)) ||
        (rc = meta_int(&c.hidden_dim, g, arch, "feed_forward_length", -1, err)) ||
        (rc = meta_int(&c.n_layers, g, arch, "block_count", -1, err)) ||
        (rc = meta_int(&c.n_heads, g, arch, "attention.head_count", -1, err)) ||
        (rc = meta_int(&c.n_kv_heads, g, arch, "attention.head_count_kv", c.n_heads, err)) ||
        (rc = meta_int(&c.seq_len, g, arch, "context_length", 2048, err)) ||
        (rc = meta_float(&c.norm_eps, g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, err)) ||
        (rc = meta_float(&c.rope_theta, g, arch, "rope.freq_base", 10000.0f, err)))
        goto done;
    if (c.n_heads < 1) {
        rc = inf__fail(err, INF_EINVALID, "%s: attention.head_count is 0", path);
        goto done;
    }
    if ((rc = meta_int(&c.head_dim, g, arch, "attention.key_length", c.dim / c.n_heads, err)))
        goto done;
    const inf__gguf_tensor *emb = find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->dims[1] > INF_MAX_VOCAB) {
        rc = inf__fail(err, INF_EINVALID, "%s: tensor 'token_embd.weight' is missing or not a "
                                          "matrix",
                       path);
        goto done;
    }
    if ((rc = meta_int(&c.vocab_size, g, arch, "vocab_size", (int)emb->dims[1], err)))
        goto done;
    c.rope_style = ai == 0 ? INF_ROPE_INTERLEAVED : INF_ROPE_HALF;
    c.qkv_bias = ai == 1;
    c.qk_norm = ai == 2;
    c.tied_embeddings = find_tensor(g, "output.weight") == NULL;
    c.bos_id = -1;
    const inf__gguf_kv *kv;
    int64_t v;
    if ((kv = inf__gguf_find(g, "tokenizer.ggml.bos_token_id"))) {
        if ((rc = inf__gguf_int(&v, g, kv, err)))
            goto done;
        c.bos_id = v >= 0 && v < c.vocab_size ? (int)v : -1;
    }
    if ((kv = inf__gguf_find(g, "tokenizer.ggml.eos_token_id"))) {
        if ((rc = inf__gguf_int(&v, g, kv, err)))
            goto done;
        if (v >= 0 && v < c.vocab_size)
            c.eos_ids[c.n_eos++] = (int)v;
    }
    if ((rc = inf__config_check(&c, path, err)))
        goto done;

    m = calloc(1, sizeof *m);
    layers = calloc((size_t)c.n_layers, sizeof *layers);
    int hd = c.head_dim, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
    size_t per_layer = 2 * (size_t)c.dim + (c.qkv_bias ? (size_t)(q_dim + 2 * kv_dim) : 0) +
                       (c.qk_norm ? 2 * (size_t)hd : 0);
    if (m)
        m->owned = malloc(((size_t)c.n_layers * per_layer + (size_t)c.dim) * sizeof(float));
    if (!m || !layers || !m->owned) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    float *arena = m->owned;
    inf_weights w = {0};
    char name[128];
    if ((rc = get_mat(&w.tok_embeddings, g, "token_embd.weight", c.vocab_size, c.dim, err)))
        goto done;
    for (int l = 0; l < c.n_layers; l++) {
        inf_layer *L = &layers[l];
#define MAT(field, nm, rows, cols)                                                          \
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, nm);                                \
    if ((rc = get_mat(&L->field, g, name, rows, cols, err)))                                \
        goto done;
#define VEC(field, nm, suffix, n)                                                           \
    snprintf(name, sizeof name, "blk.%d.%s.%s", l, nm, suffix);                            \
    if ((rc = get_vec(&L->field, &arena, g, name, n, err)))                                 \
        goto done;
        VEC(attn_norm, "attn_norm", "weight", c.dim)
        MAT(wq, "attn_q", q_dim, c.dim)
        MAT(wk, "attn_k", kv_dim, c.dim)
        MAT(wv, "attn_v", kv_dim, c.dim)
        if (c.qkv_bias) {
            VEC(bq, "attn_q", "bias", q_dim)
            VEC(bk, "attn_k", "bias", kv_dim)
            VEC(bv, "attn_v", "bias", kv_dim)
        }
        if (c.qk_norm) {
            VEC(q_norm, "attn_q_norm", "weight", hd)
            VEC(k_norm, "attn_k_norm", "weight", hd)
        }
        MAT(wo, "attn_output", c.dim, q_dim)
        VEC(ffn_norm, "ffn_norm", "weight", c.dim)
        MAT(w1, "ffn_gate", c.hidden_dim, c.dim)
        MAT(w2, "ffn_down", c.dim, c.hidden_dim)
        MAT(w3, "ffn_up", c.hidden_dim, c.dim)
#undef MAT
#undef VEC
    }
    if ((rc = get_vec(&w.final_norm, &arena, g, "output_norm.weight", c.dim, err)))
        goto done;
    if (c.tied_embeddings)
        w.classifier = w.tok_embeddings;
    else if ((rc = get_mat(&w.classifier, g, "output.weight", c.vocab_size, c.dim, err)))
        goto done;
    w.layers = layers;
    if ((rc = inf__model_init(m, &c, &w, err)))
        goto done;
    m->gguf = g;
    g = NULL;
    *out = m;
    m = NULL;
    rc = 0;
done:
    free(layers);
    inf_model_free(m);
    inf__gguf_close(g);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The writer */

typedef inf__out_tensor wtensor;

static void w_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void w_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void w_str(FILE *f, const char *s)
{
    w_u64(f, strlen(s));
    fwrite(s, 1, strlen(s), f);
}
static void kv_u32(FILE *f, const char *k, uint32_t v)
{
    w_str(f, k);
    w_u32(f, INF__GGUF_U32);
    w_u32(f, v);
}
static void kv_f32(FILE *f, const char *k, float v)
{
    w_str(f, k);
    w_u32(f, INF__GGUF_F32);
    fwrite(&v, 4, 1, f);
}

int inf_model_save_gguf(const inf_model *m, const char *path, inf_dtype dtype, inf_error *err)
{
    const inf_config *c = &m->config;
    if (c->qk_norm && c->qkv_bias)
        return inf__fail(err, INF_EINVALID, "save_gguf: q/k/v bias with q/k norm has no GGUF "
                                            "architecture here");
    if (c->rope_scaling.type != INF_ROPE_SCALING_NONE)
        return inf__fail(err, INF_EINVALID, "save_gguf: RoPE scaling is not written");
    int ai = c->qk_norm ? 2 : c->qkv_bias ? 1 : 0;
    inf_rope_style want = ai == 0 ? INF_ROPE_INTERLEAVED : INF_ROPE_HALF;
    int hd = c->head_dim, q_dim = c->n_heads * hd;
    int perm = c->rope_style != want ? hd : 0;
    bool to_half = want == INF_ROPE_HALF;
    wtensor *ts = calloc(INF__MAX_OUT_TENSORS(c->n_layers), sizeof *ts);
    float *row = malloc(((size_t)c->hidden_dim + (size_t)c->dim + (size_t)q_dim + 64) * 4);
    void *conv = malloc(((size_t)c->hidden_dim + (size_t)c->dim + (size_t)q_dim + 64) * 4);
    FILE *f = NULL;
    int rc, n = 0;
    if (!ts || !row || !conv) {
        rc = inf__fail(err, INF_ENOMEM, "save_gguf: out of memory");
        goto done;
    }
    n = inf__model_out_tensors(ts, m, INF__NAMES_GGUF, perm, to_half);
    for (int i = 0; i < n; i++) {
        ts[i].type = ts[i].cols ? dtype : INF_DTYPE_F32;   /* vectors are written as F32 */
        if (ts[i].cols && !inf_dtype_row_bytes(dtype, (size_t)ts[i].cols)) {
            rc = inf__fail(err, INF_EINVALID, "save_gguf: %s rows of %d cannot be %s", ts[i].name,
                           ts[i].cols, inf_dtype_name(dtype));
            goto done;
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        ts[i].offset = off;
        size_t cols = (size_t)(ts[i].cols ? ts[i].cols : ts[i].rows);
        ts[i].bytes = inf_dtype_row_bytes(ts[i].type, cols) * (uint64_t)(ts[i].cols ? ts[i].rows : 1);
        off += (ts[i].bytes + 31) / 32 * 32;
    }
    f = fopen(path, "wb");
    if (!f) {
        rc = inf__fail(err, INF_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    const char *arch = archs[ai];
    char key[128];
    fwrite("GGUF", 1, 4, f);
    w_u32(f, 3);
    w_u64(f, (uint64_t)n);
    w_u64(f, 13 + (c->bos_id >= 0) + (c->n_eos > 0));
    w_str(f, "general.architecture");
    w_u32(f, INF__GGUF_STRING);
    w_str(f, arch);
    kv_u32(f, "general.alignment", 32);
#define KU(k, v) (snprintf(key, sizeof key, "%s.%s", arch, k), kv_u32(f, key, (uint32_t)(v)))
    KU("embedding_length", c->dim);
    KU("feed_forward_length", c->hidden_dim);
    KU("block_count", c->n_layers);
    KU("attention.head_count", c->n_heads);
    KU("attention.head_count_kv", c->n_kv_heads);
    KU("attention.key_length", hd);
    KU("attention.value_length", hd);
    KU("context_length", c->seq_len);
    KU("vocab_size", c->vocab_size);
#undef KU
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    kv_f32(f, key, c->norm_eps);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    kv_f32(f, key, c->rope_theta);
    if (c->bos_id >= 0)
        kv_u32(f, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_id);
    if (c->n_eos > 0)
        kv_u32(f, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_ids[0]);
    for (int i = 0; i < n; i++) {
        w_str(f, ts[i].name);
        if (ts[i].cols) {
            w_u32(f, 2);
            w_u64(f, (uint64_t)ts[i].cols);
            w_u64(f, (uint64_t)ts[i].rows);
        } else {
            w_u32(f, 1);
            w_u64(f, (uint64_t)ts[i].rows);
        }
        static const uint32_t gt[] = {INF__GGML_F32, INF__GGML_F16, INF__GGML_BF16,
                                      INF__GGML_Q8_0};
        w_u32(f, gt[ts[i].type]);
        w_u64(f, ts[i].offset);
    }
    long at = ftell(f);
    for (long k = at; k % 32; k++)
        fputc(0, f);
    for (int i = 0; i < n; i++) {
        const wtensor *t = &ts[i];
        if (!t->cols) {
            for (int r = 0; r < t->rows; r++)
                row[r] = t->vec[inf__out_tensor_src_row(t, r)];
            fwrite(row, 4, (size_t)t->rows, f);
        } else {
            size_t rb = inf_dtype_row_bytes(t->mat.type, (size_t)t->cols);
            size_t ob = inf_dtype_row_bytes(t->type, (size_t)t->cols);
            for (int r = 0; r < t->rows; r++) {
                inf_dtype_to_f32(row, t->mat.type,
                                 (const unsigned char *)t->mat.data + (size_t)inf__out_tensor_src_row(t, r) * rb,
                                 (size_t)t->cols);
                inf_dtype_from_f32(conv, t->type, row, (size_t)t->cols);
                fwrite(conv, 1, ob, f);
            }
        }
        for (uint64_t k = t->bytes; k % 32; k++)
            fputc(0, f);
    }
    if (ferror(f) || fclose(f) != 0) {
        f = NULL;
        rc = inf__fail(err, INF_EIO, "%s: write failed", path);
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f)
        fclose(f);
    free(ts);
    free(row);
    free(conv);
    return rc;
}
