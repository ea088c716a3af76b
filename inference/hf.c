/*
 * HuggingFace model directories: config.json plus model.safetensors, or
 * shards listed in model.safetensors.index.json. LlamaForCausalLM,
 * Qwen2ForCausalLM and Qwen3ForCausalLM, with f32, f16 or bf16 tensors.
 * Matrices stay in the mapped files in their stored dtype; only the small
 * vectors (norms, biases) are converted to float32 at load time.
 *
 * HF checkpoints use the "half" RoPE layout (rotate_half: dimension i pairs
 * with i + head_dim/2). The writer (inf_model_save_hf) turns an interleaved
 * model (llama2.c) into that layout by permuting the rows of q and k the way
 * transformers' convert_llama_weights_to_hf.py does, so a converted llama2.c
 * model is an ordinary HF Llama checkpoint: nothing in config.json flags it.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "inference/inference_int.h"

/* config.json and the index are small; anything larger is refused unread. */
#define HF_MAX_JSON (64u << 20)

typedef enum hf_arch { HF_LLAMA, HF_QWEN2, HF_QWEN3 } hf_arch;

static const char *const arch_names[] = {"LlamaForCausalLM", "Qwen2ForCausalLM",
                                         "Qwen3ForCausalLM"};
static const char *const model_types[] = {"llama", "qwen2", "qwen3"};

/* Loads the JSON object at dir/name. On success *out is a new reference the
 * caller json_decref()s. INF_EIO when the file is missing or unreadable. */
static int load_json(json_t **out, const char *dir, const char *name, inf_error *err)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    if (stat(path, &st) != 0)
        return inf__fail(err, INF_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (st.st_size > (off_t)HF_MAX_JSON)
        return inf__fail(err, INF_EINVALID, "%s: %lld bytes is too large for a JSON file", path,
                         (long long)st.st_size);
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return inf__fail(err, INF_EINVALID, "%s: bad JSON at line %d: %s", path, je.line,
                         je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return inf__fail(err, INF_EINVALID, "%s: not a JSON object", path);
    }
    *out = j;
    return 0;
}

/* Integer field `key` of config.json into *v; `def` when absent and not
 * `required`. */
static int cfg_int(int *v, const json_t *cfg, const char *key, int def, bool required,
                   inf_error *err)
{
    json_t *j = json_object_get(cfg, key);
    if (!j || json_is_null(j)) {
        if (required)
            return inf__fail(err, INF_EINVALID, "config.json: '%s' is missing", key);
        *v = def;
        return 0;
    }
    if (!json_is_integer(j) || json_integer_value(j) < -1 ||
        json_integer_value(j) > (json_int_t)INT32_MAX)
        return inf__fail(err, INF_EINVALID, "config.json: '%s' must be an integer", key);
    *v = (int)json_integer_value(j);
    return 0;
}

static int cfg_num(float *v, const json_t *cfg, const char *key, double def, inf_error *err)
{
    json_t *j = json_object_get(cfg, key);
    if (!j || json_is_null(j)) {
        *v = (float)def;
        return 0;
    }
    if (!json_is_number(j))
        return inf__fail(err, INF_EINVALID, "config.json: '%s' must be a number", key);
    *v = (float)json_number_value(j);
    return 0;
}

static bool cfg_bool(const json_t *cfg, const char *key, bool def)
{
    json_t *j = json_object_get(cfg, key);
    return json_is_boolean(j) ? json_is_true(j) : def;
}

/* config.json -> *c and the architecture. */
static int parse_config(inf_config *c, hf_arch *arch, const json_t *cfg, inf_error *err)
{
    memset(c, 0, sizeof *c);
    const char *name = NULL;
    json_t *archs = json_object_get(cfg, "architectures");
    if (json_is_array(archs) && json_is_string(json_array_get(archs, 0)))
        name = json_string_value(json_array_get(archs, 0));
    const char *mt = json_string_value(json_object_get(cfg, "model_type"));
    int found = -1;
    for (int i = 0; i < 3; i++)
        if ((name && !strcmp(name, arch_names[i])) || (!name && mt && !strcmp(mt, model_types[i])))
            found = i;
    if (found < 0)
        return inf__fail(err, INF_EINVALID,
                         "config.json: unsupported architecture '%s' (supported: "
                         "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
                         name ? name : mt ? mt : "(none)");
    *arch = (hf_arch)found;
    int rc;
    if ((rc = cfg_int(&c->dim, cfg, "hidden_size", 0, true, err)) ||
        (rc = cfg_int(&c->hidden_dim, cfg, "intermediate_size", 0, true, err)) ||
        (rc = cfg_int(&c->n_layers, cfg, "num_hidden_layers", 0, true, err)) ||
        (rc = cfg_int(&c->n_heads, cfg, "num_attention_heads", 0, true, err)) ||
        (rc = cfg_int(&c->vocab_size, cfg, "vocab_size", 0, true, err)) ||
        (rc = cfg_int(&c->n_kv_heads, cfg, "num_key_value_heads", c->n_heads, false, err)) ||
        (rc = cfg_int(&c->seq_len, cfg, "max_position_embeddings", 2048, false, err)) ||
        (rc = cfg_int(&c->bos_id, cfg, "bos_token_id", -1, false, err)) ||
        (rc = cfg_num(&c->norm_eps, cfg, "rms_norm_eps", 1e-6, err)) ||
        (rc = cfg_num(&c->rope_theta, cfg, "rope_theta", 10000.0, err)))
        return rc;
    if (c->n_heads <= 0)
        return inf__fail(err, INF_EINVALID, "config.json: num_attention_heads must be positive");
    if ((rc = cfg_int(&c->head_dim, cfg, "head_dim", c->dim / c->n_heads, false, err)))
        return rc;
    c->rope_style = INF_ROPE_HALF;
    /* LlamaConfig, Qwen2Config and Qwen3Config all default to untied */
    c->tied_embeddings = cfg_bool(cfg, "tie_word_embeddings", false);
    bool attn_bias = cfg_bool(cfg, "attention_bias", false);
    if (*arch == HF_QWEN2) {
        c->qkv_bias = true;     /* Qwen2Attention: q/k/v always biased, o never */
        if (cfg_bool(cfg, "use_sliding_window", false))
            return inf__fail(err, INF_EINVALID,
                             "config.json: use_sliding_window is not supported");
    } else if (attn_bias) {
        return inf__fail(err, INF_EINVALID,
                         "config.json: attention_bias (a bias on o_proj too) is not supported "
                         "for %s",
                         arch_names[*arch]);
    }
    if (cfg_bool(cfg, "mlp_bias", false))
        return inf__fail(err, INF_EINVALID, "config.json: mlp_bias is not supported");
    c->qk_norm = *arch == HF_QWEN3;
    json_t *hact = json_object_get(cfg, "hidden_act");
    if (hact && (!json_is_string(hact) || strcmp(json_string_value(hact), "silu")))
        return inf__fail(err, INF_EINVALID, "config.json: hidden_act must be \"silu\"");

    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        const char *t = json_string_value(json_object_get(rs, "rope_type"));
        if (!t)
            t = json_string_value(json_object_get(rs, "type"));
        if (!json_is_object(rs) || !t || (strcmp(t, "llama3") && strcmp(t, "default")))
            return inf__fail(err, INF_EINVALID,
                             "config.json: rope_scaling type '%s' is not supported (llama3 is)",
                             t ? t : "?");
        if (!strcmp(t, "llama3")) {
            inf_rope_scaling *s = &c->rope_scaling;
            s->type = INF_ROPE_SCALING_LLAMA3;
            if ((rc = cfg_num(&s->factor, rs, "factor", 8.0, err)) ||
                (rc = cfg_num(&s->low_freq_factor, rs, "low_freq_factor", 1.0, err)) ||
                (rc = cfg_num(&s->high_freq_factor, rs, "high_freq_factor", 4.0, err)) ||
                (rc = cfg_int(&s->original_max_pos, rs, "original_max_position_embeddings", 8192,
                              false, err)))
                return rc;
        }
    }
    json_t *eos = json_object_get(cfg, "eos_token_id");
    if (json_is_integer(eos)) {
        c->eos_ids[c->n_eos++] = (int)json_integer_value(eos);
    } else if (json_is_array(eos)) {
        size_t i;
        json_t *e;
        json_array_foreach(eos, i, e) {
            if (!json_is_integer(e))
                return inf__fail(err, INF_EINVALID, "config.json: eos_token_id[%zu] is not an "
                                                    "integer", i);
            if (c->n_eos < INF_MAX_EOS)
                c->eos_ids[c->n_eos++] = (int)json_integer_value(e);
        }
    } else if (eos && !json_is_null(eos)) {
        return inf__fail(err, INF_EINVALID, "config.json: eos_token_id must be an integer or a "
                                            "list");
    }
    return inf__config_check(c, "config.json", err);
}

/* The open shards of one model. */
typedef struct hf_files {
    inf__st *f[INF__MAX_MAPS];
    int n;
} hf_files;

static const inf__st_tensor *find(const hf_files *fs, const char *name)
{
    for (int i = 0; i < fs->n; i++) {
        const inf__st_tensor *t = inf__st_find(fs->f[i], name);
        if (t)
            return t;
    }
    return NULL;
}

/* Tensor `name` with shape (rows, cols) (cols 0: a vector of rows). */
static int get_tensor(const inf__st_tensor **out, const hf_files *fs, const char *name,
                      int64_t rows, int64_t cols, inf_error *err)
{
    const inf__st_tensor *t = find(fs, name);
    if (!t)
        return inf__fail(err, INF_EINVALID, "model: tensor '%s' is missing", name);
    int want_dims = cols ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != rows || (cols && t->shape[1] != cols))
        return inf__fail(err, INF_EINVALID,
                         "model: tensor '%s' has shape [%lld%s%lld], expected [%lld%s%lld]", name,
                         (long long)t->shape[0], t->n_dims > 1 ? ", " : "",
                         t->n_dims > 1 ? (long long)t->shape[1] : 0LL, (long long)rows,
                         cols ? ", " : "", (long long)cols);
    if (t->type == INF__ST_OTHER)
        return inf__fail(err, INF_EINVALID,
                         "model: tensor '%s' is %s; supported dtypes are F32, F16 and BF16", name,
                         t->dtype_name);
    *out = t;
    return 0;
}

static inf_dtype st_to_dtype(int type)
{
    return type == INF__ST_F16 ? INF_DTYPE_F16 : type == INF__ST_BF16 ? INF_DTYPE_BF16
                                                                      : INF_DTYPE_F32;
}

static int get_mat(inf_mat *out, const hf_files *fs, const char *name, int rows, int cols,
                   inf_error *err)
{
    const inf__st_tensor *t;
    int rc = get_tensor(&t, fs, name, rows, cols, err);
    if (rc)
        return rc;
    out->data = t->data;
    out->type = st_to_dtype(t->type);
    return 0;
}

/* Vector `name` (n,) converted to float32 at *arena, which advances. */
static int get_vec(const float **out, float **arena, const hf_files *fs, const char *name, int n,
                   inf_error *err)
{
    const inf__st_tensor *t;
    int rc = get_tensor(&t, fs, name, n, 0, err);
    if (rc)
        return rc;
    inf_dtype_to_f32(*arena, st_to_dtype(t->type), t->data, (size_t)n);
    *out = *arena;
    *arena += n;
    return 0;
}

/* Opens model.safetensors, or every shard that model.safetensors.index.json
 * names. */
static int open_files(hf_files *fs, const char *dir, inf_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        int rc = inf__st_open(&fs->f[0], path, err);
        if (rc == 0)
            fs->n = 1;
        return rc;
    }
    json_t *idx;
    int rc = load_json(&idx, dir, "model.safetensors.index.json", err);
    if (rc)
        return rc;
    json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm)) {
        rc = inf__fail(err, INF_EINVALID, "model.safetensors.index.json: 'weight_map' is not an "
                                          "object");
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *file = json_string_value(v);
        if (!file || !*file || strchr(file, '/') || file[0] == '.') {
            rc = inf__fail(err, INF_EINVALID,
                           "model.safetensors.index.json: '%s' maps to a bad file name", key);
            goto done;
        }
        bool seen = false;
        for (int i = 0; i < fs->n && !seen; i++) {
            const char *p = strrchr(fs->f[i]->path, '/');
            seen = !strcmp(p ? p + 1 : fs->f[i]->path, file);
        }
        if (seen)
            continue;
        if (fs->n == INF__MAX_MAPS) {
            rc = inf__fail(err, INF_ELIMIT, "model.safetensors.index.json: more than %d shards",
                           INF__MAX_MAPS);
            goto done;
        }
        snprintf(path, sizeof path, "%s/%s", dir, file);
        if ((rc = inf__st_open(&fs->f[fs->n], path, err)))
            goto done;
        fs->n++;
        /* the tensor must be in the file the index names */
        if (!inf__st_find(fs->f[fs->n - 1], key)) {
            rc = inf__fail(err, INF_EINVALID, "%s: lacks tensor '%s' that the index puts there",
                           path, key);
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(idx);
    return rc;
}

int inf_model_load_hf(inf_model **out, const char *dir, inf_error *err)
{
    *out = NULL;
    json_t *cfg = NULL;
    hf_files fs = {0};
    inf_layer *layers = NULL;
    inf_model *m = NULL;
    inf_config c;
    hf_arch arch;
    int rc = load_json(&cfg, dir, "config.json", err);
    if (rc)
        goto done;
    if ((rc = parse_config(&c, &arch, cfg, err)))
        goto done;
    if ((rc = open_files(&fs, dir, err)))
        goto done;
    m = calloc(1, sizeof *m);
    layers = calloc((size_t)c.n_layers, sizeof *layers);
    int hd = c.head_dim, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
    size_t per_layer = 2 * (size_t)c.dim + (c.qkv_bias ? (size_t)(q_dim + 2 * kv_dim) : 0) +
                       (c.qk_norm ? 2 * (size_t)hd : 0);
    size_t n_vec = (size_t)c.n_layers * per_layer + (size_t)c.dim;
    if (m)
        m->owned = malloc(n_vec * sizeof(float));
    if (!m || !layers || !m->owned) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    float *arena = m->owned;
    inf_weights w = {0};
    char name[256];
    if ((rc = get_mat(&w.tok_embeddings, &fs, "model.embed_tokens.weight", c.vocab_size, c.dim,
                      err)))
        goto done;
    for (int l = 0; l < c.n_layers; l++) {
        inf_layer *L = &layers[l];
#define MAT(field, hfname, rows, cols)                                                      \
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, hfname);                   \
    if ((rc = get_mat(&L->field, &fs, name, rows, cols, err)))                              \
        goto done;
#define VEC(field, hfname, suffix, n)                                                       \
    snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, hfname, suffix);               \
    if ((rc = get_vec(&L->field, &arena, &fs, name, n, err)))                               \
        goto done;
        VEC(attn_norm, "input_layernorm", "weight", c.dim)
        MAT(wq, "self_attn.q_proj", q_dim, c.dim)
        MAT(wk, "self_attn.k_proj", kv_dim, c.dim)
        MAT(wv, "self_attn.v_proj", kv_dim, c.dim)
        if (c.qkv_bias) {
            VEC(bq, "self_attn.q_proj", "bias", q_dim)
            VEC(bk, "self_attn.k_proj", "bias", kv_dim)
            VEC(bv, "self_attn.v_proj", "bias", kv_dim)
        }
        if (c.qk_norm) {
            VEC(q_norm, "self_attn.q_norm", "weight", hd)
            VEC(k_norm, "self_attn.k_norm", "weight", hd)
        }
        MAT(wo, "self_attn.o_proj", c.dim, q_dim)
        VEC(ffn_norm, "post_attention_layernorm", "weight", c.dim)
        MAT(w1, "mlp.gate_proj", c.hidden_dim, c.dim)
        MAT(w2, "mlp.down_proj", c.dim, c.hidden_dim)
        MAT(w3, "mlp.up_proj", c.hidden_dim, c.dim)
#undef MAT
#undef VEC
    }
    if ((rc = get_vec(&w.final_norm, &arena, &fs, "model.norm.weight", c.dim, err)))
        goto done;
    if (c.tied_embeddings)
        w.classifier = w.tok_embeddings;
    else if ((rc = get_mat(&w.classifier, &fs, "lm_head.weight", c.vocab_size, c.dim, err)))
        goto done;
    w.layers = layers;
    if ((rc = inf__model_init(m, &c, &w, err)))
        goto done;
    /* the model keeps the mappings its weights point into */
    for (int i = 0; i < fs.n; i++) {
        m->maps[i] = fs.f[i]->map;
        m->map_lens[i] = fs.f[i]->size;
        fs.f[i]->map = NULL;
    }
    m->n_maps = fs.n;
    *out = m;
    m = NULL;
    rc = 0;
done:
    for (int i = 0; i < fs.n; i++)
        inf__st_close(fs.f[i]);
    json_decref(cfg);
    free(layers);
    inf_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The writer */

/* One tensor to write: a matrix (rows, cols) or a vector (rows,) (cols 0). */
typedef inf__out_tensor out_tensor;

static int write_shard(const char *path, const out_tensor *ts, int n, int shard, inf_dtype dtype,
                       inf_error *err)
{
    int rc;
    FILE *f = NULL;
    char *hdr = NULL;
    float *row = NULL, *vrow = NULL;
    void *conv = NULL;
    json_t *h = json_object();
    uint64_t off = 0;
    int max_cols = 1;
    const char *dname = dtype == INF_DTYPE_F32 ? "F32" : dtype == INF_DTYPE_F16 ? "F16" : "BF16";
    size_t esz = dtype == INF_DTYPE_F32 ? 4 : 2;
    for (int i = 0; i < n; i++) {
        const out_tensor *t = &ts[i];
        if (t->shard != shard)
            continue;
        uint64_t bytes = (uint64_t)t->rows * (uint64_t)(t->cols ? t->cols : 1) * esz;
        json_t *shape = t->cols ? json_pack("[ii]", t->rows, t->cols) : json_pack("[i]", t->rows);
        json_object_set_new(h, t->name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", dname, "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
        if (t->cols > max_cols)
            max_cols = t->cols;
        if (t->rows > max_cols)
            max_cols = t->rows;
    }
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    hdr = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    row = malloc((size_t)max_cols * sizeof(float));
    vrow = malloc((size_t)max_cols * sizeof(float));
    conv = malloc((size_t)max_cols * 4);
    if (!hdr || !row || !vrow || !conv) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    f = fopen(path, "wb");
    if (!f) {
        rc = inf__fail(err, INF_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(hdr, 1, hlen, f);
    for (size_t i = hlen; i < padded; i++)
        fputc(' ', f);
    /* data in the order of the offsets: the sorted key order above is not the
     * order offsets were assigned in, so walk ts again */
    for (int i = 0; i < n; i++) {
        const out_tensor *t = &ts[i];
        if (t->shard != shard)
            continue;
        if (!t->cols) {
            for (int r = 0; r < t->rows; r++)
                vrow[r] = t->vec[inf__out_tensor_src_row(t, r)];
            inf_dtype_from_f32(conv, dtype, vrow, (size_t)t->rows);
            fwrite(conv, esz, (size_t)t->rows, f);
            continue;
        }
        size_t rb = inf_dtype_row_bytes(t->mat.type, (size_t)t->cols);
        for (int r = 0; r < t->rows; r++) {
            inf_dtype_to_f32(row, t->mat.type,
                             (const unsigned char *)t->mat.data + (size_t)inf__out_tensor_src_row(t, r) * rb,
                             (size_t)t->cols);
            inf_dtype_from_f32(conv, dtype, row, (size_t)t->cols);
            fwrite(conv, esz, (size_t)t->cols, f);
        }
    }
    if (ferror(f) || fclose(f) != 0) {
        f = NULL;
        rc = inf__fail(err, INF_EIO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f)
        fclose(f);
    json_decref(h);
    free(hdr);
    free(row);
    free(vrow);
    free(conv);
    return rc;
}

static int write_json(const char *dir, const char *name, json_t *j, inf_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!j || json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9)))
        return inf__fail(err, INF_EIO, "%s: cannot write", path);
    return 0;
}

int inf_model_save_hf(const inf_model *m, const char *dir, inf_dtype dtype, size_t shard_bytes,
                      inf_error *err)
{
    const inf_config *c = &m->config;
    if (dtype != INF_DTYPE_F32 && dtype != INF_DTYPE_F16 && dtype != INF_DTYPE_BF16)
        return inf__fail(err, INF_EINVALID, "save_hf: dtype %s is not one of f32, f16, bf16",
                         inf_dtype_name(dtype));
    if (c->qk_norm && c->qkv_bias)
        return inf__fail(err, INF_EINVALID,
                         "save_hf: q/k/v bias with q/k norm has no HF architecture here");
    hf_arch arch = c->qk_norm ? HF_QWEN3 : c->qkv_bias ? HF_QWEN2 : HF_LLAMA;
    int rc;
    json_t *cfg = NULL, *idx = NULL;
    int hd = c->head_dim, perm = c->rope_style == INF_ROPE_INTERLEAVED ? hd : 0;
    bool tied = m->w.classifier.data == m->w.tok_embeddings.data &&
                m->w.classifier.type == m->w.tok_embeddings.type;
    out_tensor *ts = calloc(INF__MAX_OUT_TENSORS(c->n_layers), sizeof *ts);
    if (!ts)
        return inf__fail(err, INF_ENOMEM, "save_hf: out of memory");
    int n = inf__model_out_tensors(ts, m, INF__NAMES_HF, perm, true);

    /* shards: consecutive tensors up to shard_bytes each (0: one file) */
    size_t esz = dtype == INF_DTYPE_F32 ? 4 : 2, used = 0;
    int n_shards = 1;
    for (int i = 0; i < n; i++) {
        size_t b = (size_t)ts[i].rows * (size_t)(ts[i].cols ? ts[i].cols : 1) * esz;
        if (shard_bytes && used && used + b > shard_bytes) {
            n_shards++;
            used = 0;
        }
        used += b;
        ts[i].shard = n_shards - 1;
    }
    if (n_shards > INF__MAX_MAPS) {
        rc = inf__fail(err, INF_ELIMIT, "save_hf: %d shards is more than %d", n_shards,
                       INF__MAX_MAPS);
        goto done;
    }
    char file[64], path[4096];
    if (n_shards > 1) {
        idx = json_object();
        json_t *wm = json_object();
        json_object_set_new(idx, "weight_map", wm);
        for (int i = 0; i < n; i++) {
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", ts[i].shard + 1,
                     n_shards);
            json_object_set_new(wm, ts[i].name, json_string(file));
        }
        if ((rc = write_json(dir, "model.safetensors.index.json", idx, err)))
            goto done;
    }
    for (int s = 0; s < n_shards; s++) {
        if (n_shards > 1)
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        else
            snprintf(file, sizeof file, "model.safetensors");
        snprintf(path, sizeof path, "%s/%s", dir, file);
        if ((rc = write_shard(path, ts, n, s, dtype, err)))
            goto done;
    }

    cfg = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:b, "
                    "s:s, s:s}",
                    "architectures", arch_names[arch], "model_type", model_types[arch],
                    "hidden_size", c->dim, "intermediate_size", c->hidden_dim,
                    "num_hidden_layers", c->n_layers, "num_attention_heads", c->n_heads,
                    "num_key_value_heads", c->n_kv_heads, "head_dim", hd, "vocab_size",
                    c->vocab_size, "max_position_embeddings", c->seq_len, "rms_norm_eps",
                    (double)c->norm_eps, "rope_theta", (double)c->rope_theta,
                    "tie_word_embeddings", tied, "attention_bias",
                    arch == HF_QWEN2 ? 1 : 0, "hidden_act", "silu", "torch_dtype",
                    dtype == INF_DTYPE_F32 ? "float32" : dtype == INF_DTYPE_F16 ? "float16"
                                                                                 : "bfloat16");
    if (!cfg) {
        rc = inf__fail(err, INF_ENOMEM, "save_hf: out of memory");
        goto done;
    }
    json_object_set_new(cfg, "bos_token_id", c->bos_id >= 0 ? json_integer(c->bos_id)
                                                            : json_null());
    if (c->n_eos == 1) {
        json_object_set_new(cfg, "eos_token_id", json_integer(c->eos_ids[0]));
    } else if (c->n_eos > 1) {
        json_t *a = json_array();
        for (int i = 0; i < c->n_eos; i++)
            json_array_append_new(a, json_integer(c->eos_ids[i]));
        json_object_set_new(cfg, "eos_token_id", a);
    }
    if (c->rope_scaling.type == INF_ROPE_SCALING_LLAMA3) {
        const inf_rope_scaling *r = &c->rope_scaling;
        json_object_set_new(cfg, "rope_scaling",
                            json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor",
                                      (double)r->factor, "low_freq_factor",
                                      (double)r->low_freq_factor, "high_freq_factor",
                                      (double)r->high_freq_factor,
                                      "original_max_position_embeddings", r->original_max_pos));
    }
    rc = write_json(dir, "config.json", cfg, err);
done:
    json_decref(cfg);
    json_decref(idx);
    free(ts);
    return rc;
}
