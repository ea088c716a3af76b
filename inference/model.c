/*
 * The in-memory model description: validation of a config, the RoPE table,
 * and the model object every loader fills.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "inference/inference_int.h"

int inf__fail(inf_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int inf__config_check(const inf_config *c, const char *what, inf_error *err)
{
#define RANGE(field, lo, hi)                                                                  \
    do {                                                                                      \
        if (c->field < (lo) || c->field > (hi))                                               \
            return inf__fail(err, INF_EINVALID, "%s: %s = %d is out of range [%d, %d]", what, \
                             #field, c->field, (int)(lo), (int)(hi));                         \
    } while (0)
    RANGE(dim, 1, INF_MAX_DIM);
    RANGE(hidden_dim, 1, 4 * INF_MAX_DIM);
    RANGE(n_layers, 1, INF_MAX_LAYERS);
    RANGE(n_heads, 1, INF_MAX_HEADS);
    RANGE(n_kv_heads, 1, c->n_heads);
    RANGE(head_dim, 2, INF_MAX_DIM);
    RANGE(vocab_size, 1, INF_MAX_VOCAB);
    RANGE(seq_len, 1, INF_MAX_SEQ_LEN);
    RANGE(n_eos, 0, INF_MAX_EOS);
#undef RANGE
    if (c->n_heads % c->n_kv_heads != 0)
        return inf__fail(err, INF_EINVALID, "%s: n_heads %d is not a multiple of n_kv_heads %d",
                         what, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return inf__fail(err, INF_EINVALID, "%s: head_dim %d is odd (RoPE rotates pairs)", what,
                         c->head_dim);
    if ((long long)c->n_heads * c->head_dim > INF_MAX_DIM)
        return inf__fail(err, INF_EINVALID, "%s: n_heads * head_dim = %lld is too large", what,
                         (long long)c->n_heads * c->head_dim);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return inf__fail(err, INF_EINVALID, "%s: norm_eps %g is not in (0, 1)", what,
                         (double)c->norm_eps);
    if (!(c->rope_theta > 1.0f && c->rope_theta < 1e12f))
        return inf__fail(err, INF_EINVALID, "%s: rope_theta %g is not in (1, 1e12)", what,
                         (double)c->rope_theta);
    if (c->rope_style != INF_ROPE_INTERLEAVED && c->rope_style != INF_ROPE_HALF)
        return inf__fail(err, INF_EINVALID, "%s: unknown rope_style %d", what, (int)c->rope_style);
    const inf_rope_scaling *rs = &c->rope_scaling;
    if (rs->type == INF_ROPE_SCALING_LLAMA3) {
        if (!(rs->factor >= 1.0f && rs->low_freq_factor > 0.0f &&
              rs->high_freq_factor > rs->low_freq_factor && rs->original_max_pos > 0))
            return inf__fail(err, INF_EINVALID,
                             "%s: llama3 rope scaling needs factor >= 1, 0 < low_freq_factor < "
                             "high_freq_factor and original_max_pos > 0",
                             what);
    } else if (rs->type != INF_ROPE_SCALING_NONE) {
        return inf__fail(err, INF_EINVALID, "%s: unknown rope scaling type %d", what,
                         (int)rs->type);
    }
    if (c->bos_id < -1 || c->bos_id >= c->vocab_size)
        return inf__fail(err, INF_EINVALID, "%s: bos_id %d is outside the vocabulary", what,
                         c->bos_id);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < 0 || c->eos_ids[i] >= c->vocab_size)
            return inf__fail(err, INF_EINVALID, "%s: eos id %d is outside the vocabulary", what,
                             c->eos_ids[i]);
    return 0;
}

/* theta^(-2j/head_dim) for j < head_dim/2, computed in float exactly as
 * llama2.c's run.c does (1.0f / powf(theta, 2j / (float)head_dim)), then the
 * Llama 3 frequency scaling when configured. */
static void rope_table(float *inv_freq, const inf_config *c)
{
    int half = c->head_dim / 2;
    for (int j = 0; j < half; j++)
        inv_freq[j] = 1.0f / powf(c->rope_theta, (float)(2 * j) / (float)c->head_dim);
    const inf_rope_scaling *rs = &c->rope_scaling;
    if (rs->type != INF_ROPE_SCALING_LLAMA3)
        return;
    double old_ctx = rs->original_max_pos;
    double low_wavelen = old_ctx / rs->low_freq_factor;
    double high_wavelen = old_ctx / rs->high_freq_factor;
    for (int j = 0; j < half; j++) {
        double f = inv_freq[j];
        double wavelen = 2.0 * M_PI / f;
        if (wavelen < high_wavelen)
            continue;
        if (wavelen > low_wavelen) {
            inv_freq[j] = (float)(f / rs->factor);
        } else {
            double smooth = (old_ctx / wavelen - rs->low_freq_factor) /
                            (rs->high_freq_factor - rs->low_freq_factor);
            inv_freq[j] = (float)((1.0 - smooth) * f / rs->factor + smooth * f);
        }
    }
}

/* A matrix with rows of `cols` must have a known dtype that can hold them. */
static int mat_check(inf_mat w, const char *name, int layer, int cols, inf_error *err)
{
    if (w.type != INF_DTYPE_F32 && w.type != INF_DTYPE_F16 && w.type != INF_DTYPE_BF16 &&
        w.type != INF_DTYPE_Q8_0)
        return inf__fail(err, INF_EINVALID, "model: %s has unknown dtype %d", name, (int)w.type);
    if (inf_dtype_row_bytes(w.type, (size_t)cols) == 0) {
        char where[32] = "";
        if (layer >= 0)
            snprintf(where, sizeof where, " of layer %d", layer);
        return inf__fail(err, INF_EINVALID,
                         "model: %s%s is q8_0 but its rows of %d are not a multiple of 32", name,
                         where, cols);
    }
    return 0;
}

int inf__model_init(inf_model *m, const inf_config *c, const inf_weights *w, inf_error *err)
{
    int rc = inf__config_check(c, "model", err);
    if (rc)
        return rc;
    if (!w || !w->tok_embeddings.data || !w->layers || !w->final_norm || !w->classifier.data)
        return inf__fail(err, INF_EINVALID, "model: embeddings, layers, final norm and "
                                            "classifier weights are all required");
    int q_dim = c->n_heads * c->head_dim;
    if ((rc = mat_check(w->tok_embeddings, "token embeddings", -1, c->dim, err)) ||
        (rc = mat_check(w->classifier, "classifier", -1, c->dim, err)))
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        const inf_layer *L = &w->layers[l];
        if (!L->attn_norm || !L->wq.data || !L->wk.data || !L->wv.data || !L->wo.data ||
            !L->ffn_norm || !L->w1.data || !L->w2.data || !L->w3.data)
            return inf__fail(err, INF_EINVALID, "model: layer %d lacks a required weight", l);
        if ((rc = mat_check(L->wq, "wq", l, c->dim, err)) ||
            (rc = mat_check(L->wk, "wk", l, c->dim, err)) ||
            (rc = mat_check(L->wv, "wv", l, c->dim, err)) ||
            (rc = mat_check(L->wo, "wo", l, q_dim, err)) ||
            (rc = mat_check(L->w1, "w1", l, c->dim, err)) ||
            (rc = mat_check(L->w2, "w2", l, c->hidden_dim, err)) ||
            (rc = mat_check(L->w3, "w3", l, c->dim, err)))
            return rc;
        if (c->qkv_bias && (!L->bq || !L->bk || !L->bv))
            return inf__fail(err, INF_EINVALID, "model: layer %d lacks its q/k/v bias", l);
        if (c->qk_norm && (!L->q_norm || !L->k_norm))
            return inf__fail(err, INF_EINVALID, "model: layer %d lacks its q/k norm", l);
    }
    m->config = *c;
    m->layers = malloc((size_t)c->n_layers * sizeof *m->layers);
    m->rope_inv_freq = malloc((size_t)(c->head_dim / 2) * sizeof *m->rope_inv_freq);
    if (!m->layers || !m->rope_inv_freq)
        return inf__fail(err, INF_ENOMEM, "model: out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        m->layers[l] = w->layers[l];
        if (!c->qkv_bias)
            m->layers[l].bq = m->layers[l].bk = m->layers[l].bv = NULL;
        if (!c->qk_norm)
            m->layers[l].q_norm = m->layers[l].k_norm = NULL;
    }
    m->w = *w;
    m->w.layers = m->layers;
    rope_table(m->rope_inv_freq, c);
    return 0;
}

int inf_model_create(inf_model **out, const inf_config *config, const inf_weights *weights,
                     inf_error *err)
{
    *out = NULL;
    inf_model *m = calloc(1, sizeof *m);
    if (!m)
        return inf__fail(err, INF_ENOMEM, "model: out of memory");
    int rc = inf__model_init(m, config, weights, err);
    if (rc) {
        inf_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

const inf_config *inf_model_config(const inf_model *m)
{
    return &m->config;
}

void inf_model_free(inf_model *m)
{
    if (!m)
        return;
    if (m->map)
        munmap(m->map, m->map_len);
    for (int i = 0; i < m->n_maps; i++)
        munmap(m->maps[i], m->map_lens[i]);
    free(m->owned);
    inf__gguf_close(m->gguf);
    free(m->layers);
    free(m->rope_inv_freq);
    free(m);
}

/* ---- the tensor list the writers store ------------------------------------------------ */

/* Per-layer tensor roles, with their HF and GGUF names. */
typedef enum { ROLE_NORM_ATTN, ROLE_Q, ROLE_K, ROLE_V, ROLE_BQ, ROLE_BK, ROLE_BV, ROLE_QN, ROLE_KN,
               ROLE_O, ROLE_NORM_FFN, ROLE_GATE, ROLE_DOWN, ROLE_UP, N_ROLES } layer_role;

static const char *const layer_names[N_ROLES][2] = {
    [ROLE_NORM_ATTN] = { "input_layernorm.weight", "attn_norm.weight" },
    [ROLE_Q] = { "self_attn.q_proj.weight", "attn_q.weight" },
    [ROLE_K] = { "self_attn.k_proj.weight", "attn_k.weight" },
    [ROLE_V] = { "self_attn.v_proj.weight", "attn_v.weight" },
    [ROLE_BQ] = { "self_attn.q_proj.bias", "attn_q.bias" },
    [ROLE_BK] = { "self_attn.k_proj.bias", "attn_k.bias" },
    [ROLE_BV] = { "self_attn.v_proj.bias", "attn_v.bias" },
    [ROLE_QN] = { "self_attn.q_norm.weight", "attn_q_norm.weight" },
    [ROLE_KN] = { "self_attn.k_norm.weight", "attn_k_norm.weight" },
    [ROLE_O] = { "self_attn.o_proj.weight", "attn_output.weight" },
    [ROLE_NORM_FFN] = { "post_attention_layernorm.weight", "ffn_norm.weight" },
    [ROLE_GATE] = { "mlp.gate_proj.weight", "ffn_gate.weight" },
    [ROLE_DOWN] = { "mlp.down_proj.weight", "ffn_down.weight" },
    [ROLE_UP] = { "mlp.up_proj.weight", "ffn_up.weight" },
};

static void out_mat(inf__out_tensor *t, const char *name, inf_mat w, int rows, int cols, int perm,
                    bool to_half)
{
    *t = (inf__out_tensor){ .mat = w, .rows = rows, .cols = cols, .permute_hd = perm,
                            .to_half = to_half };
    snprintf(t->name, sizeof t->name, "%s", name);
}

static void out_vec(inf__out_tensor *t, const char *name, const float *v, int rows, int perm,
                    bool to_half)
{
    *t = (inf__out_tensor){ .vec = v, .rows = rows, .permute_hd = perm, .to_half = to_half };
    snprintf(t->name, sizeof t->name, "%s", name);
}

static int out_layer(inf__out_tensor *ts, const inf_model *m, int l, inf__tensor_names names, int perm,
                     bool to_half)
{
    const inf_config *c = &m->config;
    const inf_layer *L = &m->w.layers[l];
    int hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd, n = 0;
    char nm[N_ROLES][96];
    for (int r = 0; r < N_ROLES; r++)
        snprintf(nm[r], sizeof nm[r], names == INF__NAMES_HF ? "model.layers.%d.%s" : "blk.%d.%s", l,
                 layer_names[r][names == INF__NAMES_HF ? 0 : 1]);
    out_vec(&ts[n++], nm[ROLE_NORM_ATTN], L->attn_norm, c->dim, 0, to_half);
    out_mat(&ts[n++], nm[ROLE_Q], L->wq, q_dim, c->dim, perm, to_half);
    out_mat(&ts[n++], nm[ROLE_K], L->wk, kv_dim, c->dim, perm, to_half);
    out_mat(&ts[n++], nm[ROLE_V], L->wv, kv_dim, c->dim, 0, to_half);
    if (c->qkv_bias) {
        out_vec(&ts[n++], nm[ROLE_BQ], L->bq, q_dim, perm, to_half);
        out_vec(&ts[n++], nm[ROLE_BK], L->bk, kv_dim, perm, to_half);
        out_vec(&ts[n++], nm[ROLE_BV], L->bv, kv_dim, 0, to_half);
    }
    if (c->qk_norm) {
        out_vec(&ts[n++], nm[ROLE_QN], L->q_norm, hd, perm, to_half);
        out_vec(&ts[n++], nm[ROLE_KN], L->k_norm, hd, perm, to_half);
    }
    out_mat(&ts[n++], nm[ROLE_O], L->wo, c->dim, q_dim, 0, to_half);
    out_vec(&ts[n++], nm[ROLE_NORM_FFN], L->ffn_norm, c->dim, 0, to_half);
    out_mat(&ts[n++], nm[ROLE_GATE], L->w1, c->hidden_dim, c->dim, 0, to_half);
    out_mat(&ts[n++], nm[ROLE_DOWN], L->w2, c->dim, c->hidden_dim, 0, to_half);
    out_mat(&ts[n++], nm[ROLE_UP], L->w3, c->hidden_dim, c->dim, 0, to_half);
    return n;
}

int inf__model_out_tensors(inf__out_tensor *ts, const inf_model *m, inf__tensor_names names,
                           int permute_hd, bool to_half)
{
    const inf_config *c = &m->config;
    bool hf = names == INF__NAMES_HF;
    int n = 0;
    out_mat(&ts[n++], hf ? "model.embed_tokens.weight" : "token_embd.weight", m->w.tok_embeddings,
            c->vocab_size, c->dim, 0, to_half);
    for (int l = 0; l < c->n_layers; l++)
        n += out_layer(ts + n, m, l, names, permute_hd, to_half);
    out_vec(&ts[n++], hf ? "model.norm.weight" : "output_norm.weight", m->w.final_norm, c->dim, 0,
            to_half);
    bool tied = m->w.classifier.data == m->w.tok_embeddings.data &&
                m->w.classifier.type == m->w.tok_embeddings.type;
    if (!tied)
        out_mat(&ts[n++], hf ? "lm_head.weight" : "output.weight", m->w.classifier, c->vocab_size,
                c->dim, 0, to_half);
    return n;
}

int inf__out_tensor_src_row(const inf__out_tensor *t, int r)
{
    if (t->permute_hd <= 0)
        return r;
    int hd = t->permute_hd, half = hd / 2, h = r / hd, j = r % hd;
    if (t->to_half)     /* half row j < half is interleaved 2j, j >= half is 2(j-half)+1 */
        return h * hd + (j < half ? 2 * j : 2 * (j - half) + 1);
    return h * hd + (j % 2 == 0 ? j / 2 : half + j / 2);  /* interleaved 2i+p is half p*half+i */
}
