/*
 * The llama2.c checkpoint loader (legacy float32 "version 0" format written
 * by llama2.c's export.py --version 0 and by its original model.py):
 *
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *   float token_embedding_table  (vocab, dim)
 *   float rms_att_weight         (layer, dim)
 *   float wq                     (layer, dim, dim)        rows: n_heads*head_dim
 *   float wk                     (layer, kv_dim, dim)
 *   float wv                     (layer, kv_dim, dim)
 *   float wo                     (layer, dim, dim)
 *   float rms_ffn_weight         (layer, dim)
 *   float w1                     (layer, hidden_dim, dim)
 *   float w2                     (layer, dim, hidden_dim)
 *   float w3                     (layer, hidden_dim, dim)
 *   float rms_final_weight       (dim,)
 *   float freq_cis_real, imag    (seq_len, head_dim/2) each; unused (RoPE is recomputed)
 *   float wcls                   (vocab, dim), only when vocab_size < 0 in the header
 *
 * The file is mapped read-only and the weights point into the mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inference/inference_int.h"

/* The header values are checked against these before any size is computed
 * from them, so every product below fits in 64 bits. */
static int check_header(inf_config *c, bool *shared, const int32_t h[7], const char *path,
                        inf_error *err)
{
    static const char *const names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t max[7] = {INF_MAX_DIM,   4 * INF_MAX_DIM, INF_MAX_LAYERS, INF_MAX_HEADS,
                                   INF_MAX_HEADS, INF_MAX_VOCAB,   INF_MAX_SEQ_LEN};
    for (int i = 0; i < 7; i++) {
        int64_t v = h[i];
        if (i == 5 && v < 0)
            v = -v;
        if (v < 1 || v > max[i])
            return inf__fail(err, INF_EINVALID,
                             "%s: not a llama2.c checkpoint: header %s = %d is out of range "
                             "[1, %d]",
                             path, names[i], h[i], max[i]);
    }
    memset(c, 0, sizeof *c);
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    *shared = h[5] > 0;
    c->vocab_size = h[5] > 0 ? h[5] : -h[5];
    c->seq_len = h[6];
    if (c->dim % c->n_heads != 0)
        return inf__fail(err, INF_EINVALID, "%s: dim %d is not a multiple of n_heads %d", path,
                         c->dim, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_style = INF_ROPE_INTERLEAVED;
    c->tied_embeddings = *shared;
    c->bos_id = c->vocab_size > 1 ? 1 : -1;
    c->n_eos = 0;
    if (c->vocab_size > 2) {
        c->eos_ids[c->n_eos++] = 1;    /* run.c stops at BOS: it separates stories */
        c->eos_ids[c->n_eos++] = 2;
    }
    return inf__config_check(c, path, err);
}

int inf_model_load_llama2c(inf_model **out, const char *path, inf_error *err)
{
    int rc = INF_EIO;
    int fd = -1;
    inf_model *m = NULL;
    *out = NULL;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = inf__fail(err, INF_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = inf__fail(err, INF_EIO, "%s: not a regular file", path);
        goto done;
    }
    int32_t h[7];
    if ((size_t)st.st_size < sizeof h) {
        rc = inf__fail(err, INF_EINVALID,
                       "%s: truncated: %lld bytes is shorter than the 28-byte header", path,
                       (long long)st.st_size);
        goto done;
    }
    if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
        rc = inf__fail(err, INF_EIO, "%s: cannot read the header", path);
        goto done;
    }
    inf_config c;
    bool shared = false;
    rc = check_header(&c, &shared, h, path, err);
    if (rc)
        goto done;

    uint64_t dim = (uint64_t)c.dim, hid = (uint64_t)c.hidden_dim, L = (uint64_t)c.n_layers;
    uint64_t kv_dim = (uint64_t)c.n_kv_heads * (uint64_t)c.head_dim;
    uint64_t vocab = (uint64_t)c.vocab_size;
    uint64_t n_floats = vocab * dim                 /* embeddings */
                        + L * dim                   /* rms_att */
                        + L * dim * dim * 2         /* wq, wo */
                        + L * dim * kv_dim * 2      /* wk, wv */
                        + L * dim                   /* rms_ffn */
                        + L * dim * hid * 3         /* w1, w2, w3 */
                        + dim                       /* rms_final */
                        + (uint64_t)c.seq_len * (uint64_t)c.head_dim /* freq_cis real+imag */
                        + (shared ? 0 : vocab * dim);
    uint64_t want = sizeof h + n_floats * sizeof(float);
    if ((uint64_t)st.st_size != want) {
        rc = inf__fail(err, INF_EINVALID,
                       "%s: file is %lld bytes but its header (dim %d, hidden_dim %d, n_layers "
                       "%d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d) needs %llu",
                       path, (long long)st.st_size, h[0], h[1], h[2], h[3], h[4], h[5], h[6],
                       (unsigned long long)want);
        goto done;
    }

    m = calloc(1, sizeof *m);
    if (!m) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    m->map = mmap(NULL, (size_t)want, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        rc = inf__fail(err, INF_EIO, "%s: cannot map %llu bytes: %s", path,
                       (unsigned long long)want, strerror(errno));
        goto done;
    }
    m->map_len = (size_t)want;

    /* Walk the weights in file order. */
    const float *p = (const float *)((const char *)m->map + sizeof h);
    inf_layer *layers = calloc(L, sizeof *layers);
    if (!layers) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    inf_weights w = {0};
    w.tok_embeddings = INF_MAT_F32(p);
    p += vocab * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].attn_norm = p + l * dim;
    p += L * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].wq = INF_MAT_F32(p + l * dim * dim);
    p += L * dim * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].wk = INF_MAT_F32(p + l * kv_dim * dim);
    p += L * kv_dim * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].wv = INF_MAT_F32(p + l * kv_dim * dim);
    p += L * kv_dim * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].wo = INF_MAT_F32(p + l * dim * dim);
    p += L * dim * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].ffn_norm = p + l * dim;
    p += L * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].w1 = INF_MAT_F32(p + l * hid * dim);
    p += L * hid * dim;
    for (uint64_t l = 0; l < L; l++)
        layers[l].w2 = INF_MAT_F32(p + l * dim * hid);
    p += L * dim * hid;
    for (uint64_t l = 0; l < L; l++)
        layers[l].w3 = INF_MAT_F32(p + l * hid * dim);
    p += L * hid * dim;
    w.final_norm = p;
    p += dim;
    p += (uint64_t)c.seq_len * (uint64_t)c.head_dim;
    w.classifier = shared ? w.tok_embeddings : INF_MAT_F32(p);
    w.layers = layers;
    rc = inf__model_init(m, &c, &w, err);
    free(layers);
    if (rc)
        goto done;
    *out = m;
    m = NULL;
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    inf_model_free(m);
    return rc;
}
