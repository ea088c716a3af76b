/*
 * The forward pass: a Llama-family decoder step for a batch of rows, written
 * against the operations table (inference_int.h) so a CUDA table can run the
 * same code. Reads top to bottom like the model. A batch is either several
 * sequences at one position (decode) or consecutive positions of one
 * sequence (prompt prefill); both are one pass over the weights.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "inference/inference_int.h"

/* Spins before a pool thread sleeps: the next matmul usually comes within
 * microseconds, far sooner than a futex wake-up. */
#define POOL_SPIN 4000
#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* One matmul split into chunks of rows that threads claim one at a time. */
typedef struct mm_job {
    float *out;
    size_t ldo;
    const float *x;
    inf_mat w;
    const float *bias;
    int b, n, d;
    int chunk_rows, n_chunks;
} mm_job;

/*
 * Row-parallel workers of one state (threads 1..n_threads-1; the caller
 * works too). Chunks are claimed dynamically, so a thread the OS deschedules
 * holds up at most one chunk; each output row is still computed by exactly
 * one thread with the same code as without threads, so results never depend
 * on the thread count or the schedule.
 */
typedef struct pool {
    int n_threads;
    pthread_t *th;              /* (n_threads,) [0] unused */
    float **scratch;            /* (n_threads,) four weight rows each; [0] is the state's */
    const inf__ops *ops;
    pthread_mutex_t mu;         /* guards everything below; gen is also read unlocked */
    pthread_cond_t start, done;
    mm_job job;
    unsigned gen;               /* bumped for every job */
    int next_chunk, done_chunks;
    int stop;
    int n_started;
} pool;

typedef struct pool_arg {
    pool *p;
    int t;
} pool_arg;

/* Claims and runs chunks of job `gen` until none are left. Claims and
 * completions go through the mutex (a few dozen per matmul: cheap). */
static void run_chunks(pool *p, unsigned gen, float *scratch)
{
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->gen != gen || p->next_chunk >= p->job.n_chunks) {
            pthread_mutex_unlock(&p->mu);
            return;
        }
        int k = p->next_chunk++;
        mm_job j = p->job;
        pthread_mutex_unlock(&p->mu);
        int r0 = k * j.chunk_rows, r1 = r0 + j.chunk_rows < j.d ? r0 + j.chunk_rows : j.d;
        size_t rb = inf_dtype_row_bytes(j.w.type, (size_t)j.n);
        inf_mat w = {(const unsigned char *)j.w.data + (size_t)r0 * rb, j.w.type};
        p->ops->matmul(j.out + r0, j.ldo, j.x, w, j.bias ? j.bias + r0 : NULL, j.b, j.n, r1 - r0,
                       scratch);
        pthread_mutex_lock(&p->mu);
        if (__atomic_add_fetch(&p->done_chunks, 1, __ATOMIC_ACQ_REL) == j.n_chunks)
            pthread_cond_broadcast(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

static void *pool_main(void *arg)
{
    pool_arg *a = arg;
    pool *p = a->p;
    int t = a->t;
    free(a);
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen && spins < POOL_SPIN &&
               !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
            CPU_RELAX();
            spins++;
        }
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->stop)
            pthread_cond_wait(&p->start, &p->mu);
        unsigned g = p->gen;
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            return NULL;
        seen = g;
        run_chunks(p, g, p->scratch[t]);
    }
}

static void pool_free(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t <= p->n_started; t++)
        pthread_join(p->th[t], NULL);
    for (int t = 1; t < p->n_threads; t++)
        free(p->scratch[t]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p->scratch);
    free(p);
}

/* A KV cache larger than this is refused rather than attempted. */
#define INF_MAX_STATE_BYTES (64ull << 30)

/*
 * Rows are the activations of one pass: a decode step has one row per
 * sequence, a prompt pass one row per position, so the two counts are
 * separate (a prefill state holds one sequence but many rows).
 */
struct inf_state {
    const inf_model *m;         /* borrowed */
    const inf__ops *ops;
    int n_seqs;
    int n_rows;                 /* rows a pass may have, >= n_seqs */
    int max_len;
    float *key_cache;           /* (n_seqs, n_layers, max_len, kv_dim) */
    float *value_cache;         /* (n_seqs, n_layers, max_len, kv_dim) */
    float *x;                   /* (n_rows, dim) residual stream of the batch */
    float *xb;                  /* (n_rows, max(dim, q_dim)) normed input / attention output */
    float *xb2;                 /* (n_rows, dim) */
    float *q;                   /* (n_rows, q_dim) */
    float *k;                   /* (n_rows, kv_dim) */
    float *v;                   /* (n_rows, kv_dim) */
    float *hb;                  /* (n_rows, hidden_dim) */
    float *hb2;                 /* (n_rows, hidden_dim) */
    float *att;                 /* (max_len,) attention scores of one head */
    float *wrow;                /* (4, max(dim, q_dim, hidden_dim)) weight rows as f32 */
    size_t wrow_len;
    pool *pool;                 /* row-parallel threads, or NULL */
    float *logits;              /* (n_seqs, vocab_size): a decode step has a row per
                                   sequence, a prompt pass only its last row */
};

int inf_state_new(inf_state **out, const inf_model *m, int n_seqs, int max_len, inf_error *err)
{
    return inf__state_new(out, m, n_seqs, n_seqs, max_len, err);
}

int inf__state_new(inf_state **out, const inf_model *m, int n_seqs, int n_rows, int max_len,
                   inf_error *err)
{
    *out = NULL;
    const inf_config *c = &m->config;
    if (n_seqs < 1 || n_seqs > INF_MAX_SAMPLES)
        return inf__fail(err, INF_ELIMIT, "state: %d sequences is outside [1, %d]", n_seqs,
                         INF_MAX_SAMPLES);
    if (n_rows < n_seqs || n_rows > INF_MAX_SAMPLES)
        return inf__fail(err, INF_ELIMIT, "state: %d rows a pass is outside [%d, %d]", n_rows,
                         n_seqs, INF_MAX_SAMPLES);
    if (max_len < 1 || max_len > c->seq_len)
        return inf__fail(err, INF_ELIMIT, "state: %d positions is outside the context [1, %d]",
                         max_len, c->seq_len);
    size_t S = (size_t)n_seqs, R = (size_t)n_rows;
    size_t q_dim = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t wide = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim;
    size_t cache = S * (size_t)c->n_layers * (size_t)max_len * kv_dim;
    unsigned long long bytes =
        (2ull * cache +
         R * (3 * (size_t)c->dim + wide + q_dim + 2 * kv_dim + 2 * (size_t)c->hidden_dim) +
         S * (size_t)c->vocab_size) *
        sizeof(float);
    if (bytes > INF_MAX_STATE_BYTES)
        return inf__fail(err, INF_ELIMIT,
                         "state: %d sequences x %d positions need %llu MiB, over the %llu MiB "
                         "limit",
                         n_seqs, max_len, bytes >> 20, INF_MAX_STATE_BYTES >> 20);
    inf_state *s = calloc(1, sizeof *s);
    if (!s)
        return inf__fail(err, INF_ENOMEM, "state: out of memory");
    s->m = m;
    s->ops = &inf__ops_cpu;
    s->n_seqs = n_seqs;
    s->n_rows = n_rows;
    s->max_len = max_len;
    s->key_cache = calloc(cache, sizeof(float));
    s->value_cache = calloc(cache, sizeof(float));
    s->x = calloc(R * (size_t)c->dim, sizeof(float));
    s->xb = calloc(R * wide, sizeof(float));
    s->xb2 = calloc(R * (size_t)c->dim, sizeof(float));
    s->q = calloc(R * q_dim, sizeof(float));
    s->k = calloc(R * kv_dim, sizeof(float));
    s->v = calloc(R * kv_dim, sizeof(float));
    s->hb = calloc(R * (size_t)c->hidden_dim, sizeof(float));
    s->hb2 = calloc(R * (size_t)c->hidden_dim, sizeof(float));
    s->att = calloc((size_t)max_len, sizeof(float));
    size_t widest = wide > (size_t)c->hidden_dim ? wide : (size_t)c->hidden_dim;
    s->wrow = calloc(4 * widest, sizeof(float));    /* the batched kernel converts 4 rows */
    s->wrow_len = 4 * widest;
    s->logits = calloc(S * (size_t)c->vocab_size, sizeof(float));
    if (!s->key_cache || !s->value_cache || !s->x || !s->xb || !s->xb2 || !s->q || !s->k ||
        !s->v || !s->hb || !s->hb2 || !s->att || !s->wrow || !s->logits) {
        inf_state_free(s);
        return inf__fail(err, INF_ENOMEM, "state: out of memory for %llu MiB", bytes >> 20);
    }
    *out = s;
    return 0;
}

int inf_state_set_threads(inf_state *s, int n_threads, inf_error *err)
{
    if (n_threads < 1 || n_threads > INF_MAX_THREADS)
        return inf__fail(err, INF_EINVALID, "state: n_threads %d is outside [1, %d]", n_threads,
                         INF_MAX_THREADS);
    pool_free(s->pool);
    s->pool = NULL;
    if (n_threads == 1)
        return 0;
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return inf__fail(err, INF_ENOMEM, "state: out of memory");
    p->n_threads = n_threads;
    p->ops = s->ops;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc((size_t)n_threads, sizeof *p->th);
    p->scratch = calloc((size_t)n_threads, sizeof *p->scratch);
    int rc = 0;
    if (!p->th || !p->scratch) {
        rc = inf__fail(err, INF_ENOMEM, "state: out of memory");
        goto done;
    }
    p->scratch[0] = s->wrow;
    for (int t = 1; t < n_threads; t++)
        if (!(p->scratch[t] = calloc(s->wrow_len, sizeof(float)))) {
            rc = inf__fail(err, INF_ENOMEM, "state: out of memory");
            goto done;
        }
    for (int t = 1; t < n_threads; t++) {
        pool_arg *a = malloc(sizeof *a);
        if (!a || (a->p = p, a->t = t, pthread_create(&p->th[t], NULL, pool_main, a) != 0)) {
            free(a);
            rc = inf__fail(err, INF_ENOMEM, "state: cannot start thread %d", t);
            goto done;
        }
        p->n_started = t;
    }
done:
    if (rc) {
        pool_free(p);
        return rc;
    }
    s->pool = p;
    return 0;
}

/* out (B,d) = W @ X (+ bias), split by rows over the state's pool. */
static void matmul(inf_state *s, float *out, const float *x, inf_mat w, const float *bias, int b,
                   int n, int d)
{
    pool *p = s->pool;
    /* chunks of at least 16 rows, about 8 per thread */
    int chunk = (d + 8 * (p ? p->n_threads : 1) - 1) / (8 * (p ? p->n_threads : 1));
    if (chunk < 16)
        chunk = 16;
    if (!p || d <= chunk) {
        s->ops->matmul(out, (size_t)d, x, w, bias, b, n, d, s->wrow);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->job = (mm_job){out, (size_t)d, x, w, bias, b, n, d, chunk, (d + chunk - 1) / chunk};
    p->next_chunk = 0;
    __atomic_store_n(&p->done_chunks, 0, __ATOMIC_RELEASE);
    unsigned gen = p->gen + 1;
    __atomic_store_n(&p->gen, gen, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, gen, s->wrow);
    int spins = 0;
    while (__atomic_load_n(&p->done_chunks, __ATOMIC_ACQUIRE) != p->job.n_chunks &&
           spins < POOL_SPIN) {
        CPU_RELAX();
        spins++;
    }
    pthread_mutex_lock(&p->mu);
    while (p->done_chunks != p->job.n_chunks)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void inf_state_free(inf_state *s)
{
    if (!s)
        return;
    pool_free(s->pool);
    free(s->key_cache);
    free(s->value_cache);
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->hb);
    free(s->hb2);
    free(s->att);
    free(s->wrow);
    free(s->logits);
    free(s);
}

/* Start of (seq, layer, pos) in a cache. */
static float *cache_at(const inf_state *s, float *cache, int seq, int layer, int pos)
{
    const inf_config *c = &s->m->config;
    size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    return cache + (((size_t)seq * (size_t)c->n_layers + (size_t)layer) * (size_t)s->max_len +
                    (size_t)pos) * kv_dim;
}

/*
 * The rows of one pass. Row i is token tokens[i] of sequence seqs[i] (or of
 * `seq` for every row when seqs is NULL) at position pos + i * pos_step.
 * Only the last n_logits rows get logits, into logits rows 0..n_logits-1.
 */
typedef struct pass {
    const int *tokens;          /* (b,) */
    const int *seqs;            /* (b,) or NULL */
    int seq;
    int b;
    int pos;
    int pos_step;               /* 0: every row at pos (decode); 1: a prompt chunk */
    int n_logits;               /* 1..b */
} pass;

static int row_seq(const pass *p, int i)
{
    return p->seqs ? p->seqs[i] : p->seq;
}

static int row_pos(const pass *p, int i)
{
    return p->pos + i * p->pos_step;
}

/*
 * One pass over the weights for all rows. Rows are independent except
 * through the KV cache: row i writes its k/v at its position, then attends
 * over positions 0..its own, so in a prompt chunk (rows in position order)
 * row i sees what rows before it wrote in this very layer. Every kernel gives
 * a row the same bits whatever else is in the pass, so a chunk of a prompt
 * leaves exactly the logits and cache that running its tokens one at a time
 * would.
 */
static void forward_pass(inf_state *s, const pass *p)
{
    const inf_model *m = s->m;
    const inf_config *c = &m->config;
    const inf__ops *op = s->ops;
    int b = p->b;
    int dim = c->dim, hd = c->head_dim, hidden = c->hidden_dim;
    int q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int kv_mul = c->n_heads / c->n_kv_heads;
    float eps = c->norm_eps;

    /* token embeddings */
    size_t emb_row = inf_dtype_row_bytes(m->w.tok_embeddings.type, (size_t)dim);
    for (int i = 0; i < b; i++)
        inf_dtype_to_f32(s->x + (size_t)i * dim, m->w.tok_embeddings.type,
                         (const unsigned char *)m->w.tok_embeddings.data +
                             (size_t)p->tokens[i] * emb_row,
                         (size_t)dim);

    for (int l = 0; l < c->n_layers; l++) {
        const inf_layer *L = &m->w.layers[l];

        /* attention: pre-norm, q/k/v projections */
        for (int i = 0; i < b; i++)
            op->rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->attn_norm, dim, eps);
        matmul(s, s->q, s->xb, L->wq, L->bq, b, dim, q_dim);
        matmul(s, s->k, s->xb, L->wk, L->bk, b, dim, kv_dim);
        matmul(s, s->v, s->xb, L->wv, L->bv, b, dim, kv_dim);

        /* in row order: a row's k/v are in the cache before later rows attend */
        for (int i = 0; i < b; i++) {
            int pos = row_pos(p, i);
            float *q = s->q + (size_t)i * q_dim;
            float *k = s->k + (size_t)i * kv_dim;
            /* Qwen3: RMSNorm over each head of q and k */
            if (L->q_norm) {
                for (int h = 0; h < c->n_heads; h++)
                    op->rmsnorm(q + (size_t)h * hd, q + (size_t)h * hd, L->q_norm, hd, eps);
                for (int h = 0; h < c->n_kv_heads; h++)
                    op->rmsnorm(k + (size_t)h * hd, k + (size_t)h * hd, L->k_norm, hd, eps);
            }
            /* RoPE on q and k */
            op->rope(q, c->n_heads, hd, pos, m->rope_inv_freq, c->rope_style);
            op->rope(k, c->n_kv_heads, hd, pos, m->rope_inv_freq, c->rope_style);
            /* append k, v to this sequence's cache */
            float *kc = cache_at(s, s->key_cache, row_seq(p, i), l, 0);
            float *vc = cache_at(s, s->value_cache, row_seq(p, i), l, 0);
            memcpy(kc + (size_t)pos * kv_dim, k, (size_t)kv_dim * sizeof(float));
            memcpy(vc + (size_t)pos * kv_dim, s->v + (size_t)i * kv_dim,
                   (size_t)kv_dim * sizeof(float));
            /* grouped-query attention over positions 0..pos */
            for (int h = 0; h < c->n_heads; h++) {
                size_t kv_off = (size_t)(h / kv_mul) * hd;
                op->attention(s->xb + (size_t)i * q_dim + (size_t)h * hd, s->att,
                              q + (size_t)h * hd, kc + kv_off, vc + kv_off, pos + 1, hd,
                              (size_t)kv_dim);
            }
        }
        /* output projection and residual */
        matmul(s, s->xb2, s->xb, L->wo, NULL, b, q_dim, dim);
        for (int i = 0; i < b; i++)
            op->add(s->x + (size_t)i * dim, s->xb2 + (size_t)i * dim, dim);

        /* SwiGLU FFN: pre-norm, w2(silu(w1 x) * w3 x), residual */
        for (int i = 0; i < b; i++)
            op->rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->ffn_norm, dim, eps);
        matmul(s, s->hb, s->xb, L->w1, NULL, b, dim, hidden);
        matmul(s, s->hb2, s->xb, L->w3, NULL, b, dim, hidden);
        for (int i = 0; i < b; i++)
            op->swiglu(s->hb + (size_t)i * hidden, s->hb2 + (size_t)i * hidden, hidden);
        matmul(s, s->xb, s->hb, L->w2, NULL, b, hidden, dim);
        for (int i = 0; i < b; i++)
            op->add(s->x + (size_t)i * dim, s->xb + (size_t)i * dim, dim);
    }

    /* final norm and classifier, for the rows that want logits: in a prompt
     * only the last position's are used, and the classifier (vocab x dim) is
     * the largest matmul of the model */
    float *x = s->x + (size_t)(b - p->n_logits) * dim;
    for (int i = 0; i < p->n_logits; i++)
        op->rmsnorm(x + (size_t)i * dim, x + (size_t)i * dim, m->w.final_norm, dim, eps);
    matmul(s, s->logits, x, m->w.classifier, NULL, p->n_logits, dim, c->vocab_size);
}

void inf__forward_batch(inf_state *s, const int *seqs, const int *tokens, int b, int pos)
{
    assert(b >= 1 && b <= s->n_seqs);
    pass p = {.tokens = tokens, .seqs = seqs, .b = b, .pos = pos, .pos_step = 0, .n_logits = b};
    forward_pass(s, &p);
}

void inf__forward_prompt(inf_state *s, int seq, const int *tokens, int n, int pos)
{
    assert(n >= 1 && seq >= 0 && seq < s->n_seqs && pos >= 0 && pos + n <= s->max_len);
    for (int done = 0; done < n;) {
        int b = n - done < s->n_rows ? n - done : s->n_rows;
        pass p = {.tokens = tokens + done, .seq = seq, .b = b, .pos = pos + done,
                  .pos_step = 1, .n_logits = 1};
        forward_pass(s, &p);
        done += b;
    }
}

const float *inf__state_logits(const inf_state *s, int i)
{
    return s->logits + (size_t)i * (size_t)s->m->config.vocab_size;
}

void inf__state_copy_kv(inf_state *dst, int dst_seq, const inf_state *src, int src_seq, int n_pos)
{
    const inf_config *c = &dst->m->config;
    size_t row = (size_t)n_pos * (size_t)c->n_kv_heads * (size_t)c->head_dim * sizeof(float);
    for (int l = 0; l < c->n_layers; l++) {
        memcpy(cache_at(dst, dst->key_cache, dst_seq, l, 0),
               cache_at(src, src->key_cache, src_seq, l, 0), row);
        memcpy(cache_at(dst, dst->value_cache, dst_seq, l, 0),
               cache_at(src, src->value_cache, src_seq, l, 0), row);
    }
}

const float *inf__state_cache(const inf_state *s, bool values, int seq, int layer)
{
    return cache_at(s, values ? s->value_cache : s->key_cache, seq, layer, 0);
}

const float *inf_forward(inf_state *s, int seq, int token, int pos, inf_error *err)
{
    if (seq < 0 || seq >= s->n_seqs) {
        inf__fail(err, INF_EINVALID, "forward: sequence %d is outside [0, %d)", seq, s->n_seqs);
        return NULL;
    }
    if (token < 0 || token >= s->m->config.vocab_size) {
        inf__fail(err, INF_EINVALID, "forward: token %d is outside the vocabulary of %d", token,
                  s->m->config.vocab_size);
        return NULL;
    }
    if (pos < 0 || pos >= s->max_len) {
        inf__fail(err, INF_ELIMIT, "forward: position %d is outside the context [0, %d)", pos,
                  s->max_len);
        return NULL;
    }
    inf__forward_batch(s, &seq, &token, 1, pos);
    return inf__state_logits(s, 0);
}
