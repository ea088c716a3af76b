/*
 * Generation: one prompt x n samples.
 *
 * The prompt is run once in a one-sequence state, INF__PREFILL_ROWS positions
 * a forward pass (bit-identical to one at a time); its KV cache is then
 * copied into every sample's sequence and the logits of its last position
 * give every sample's first token. The samples are split into n_threads contiguous
 * groups; each thread owns a state for its group and advances its live
 * samples together, one batched step per position, until each one ends
 * (eos, a stop string, max_tokens or the context). Threads share nothing but
 * the read-only model and prompt logits, and every kernel computes a row the
 * same way whatever the batch, so the results are bit-identical for any
 * n_threads and any group size.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "inference/inference_int.h"

/* Token and logprob arrays are allocated up front for max_tokens; this caps
 * them at 1 GiB whatever a caller asks. */
#define MAX_RESULT_TOKENS (1ull << 27)

const char *inf_finish_name(inf_finish f)
{
    switch (f) {
    case INF_FINISH_STOP: return "stop";
    case INF_FINISH_EOS: return "eos";
    case INF_FINISH_LENGTH: break;
    }
    return "length";
}

/* What all workers share (read-only while they run). */
typedef struct gen_job {
    const inf_model *m;
    const inf_tokenizer *tok;
    const inf_gen_options *opts;
    const inf_state *prefill;   /* KV of the prompt, sequence 0 */
    const float *first_logits;  /* (vocab,) logits after the prompt */
    int last_prompt_token;
    int n_prompt;
    int max_new;                /* max_tokens capped by the context */
    int max_len;                /* positions a state needs */
    int row_threads;            /* row-parallel threads per worker's state */
    size_t *stop_lens;          /* (n_stop,) */
    size_t max_stop_len;
    inf_sample *samples;        /* (n_samples,) results */
} gen_job;

/* One thread's share: samples [first, first + count). */
typedef struct gen_worker {
    const gen_job *job;
    int first, count;
    size_t *text_caps;          /* (count,) */
    int rc;
    inf_error err;
} gen_worker;

static int text_append(inf_sample *s, size_t *cap, const char *p, size_t n, inf_error *err)
{
    if (s->text_len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < s->text_len + n + 1)
            nc *= 2;
        char *t = realloc(s->text, nc);
        if (!t)
            return inf__fail(err, INF_ENOMEM, "generate: out of memory");
        s->text = t;
        *cap = nc;
    }
    memcpy(s->text + s->text_len, p, n);
    s->text_len += n;
    s->text[s->text_len] = '\0';
    return 0;
}

/* ids (k,) and logprobs (k,) of the k largest logits, largest first, lower
 * id first on ties: one pass keeping a sorted list (k <= 20, so inserting
 * costs little next to the vocabulary-sized pass). */
static void top_logprobs(int *ids, float *lps, int k, const float *logits, int n, double lse)
{
    int have = 0;
    for (int i = 0; i < n; i++) {
        float v = logits[i];
        if (have == k && !(v > logits[ids[k - 1]]))
            continue;   /* equal values keep the lower id, which came first */
        int at = have < k ? have++ : k - 1;
        while (at > 0 && v > logits[ids[at - 1]]) {
            ids[at] = ids[at - 1];
            at--;
        }
        ids[at] = i;
    }
    for (int r = 0; r < k; r++)
        lps[r] = (float)((double)logits[ids[r]] - lse);
}

/*
 * Picks sample `j`'s token for step `step` from `logits`, records it with its
 * logprob, and decides whether the sample is finished. Returns 1 when it is,
 * 0 when it goes on, negative on error.
 */
static int take_step(gen_worker *w, int j, int step, const float *logits, double *work_p,
                     int *work_idx)
{
    const gen_job *job = w->job;
    const inf_gen_options *o = job->opts;
    const inf_config *c = &job->m->config;
    inf_sample *s = &job->samples[j];
    double lse;
    int tok = inf__sample_token(logits, c->vocab_size, o, o->first_sample + (uint64_t)j,
                                (uint64_t)step, work_p, work_idx, &lse);
    if (isnan(lse))
        lse = inf__logsumexp(logits, c->vocab_size);
    int prev = s->n_tokens ? s->tokens[s->n_tokens - 1] : job->last_prompt_token;
    s->tokens[s->n_tokens] = tok;
    s->logprobs[s->n_tokens] = (float)((double)logits[tok] - lse);
    if (s->n_top)
        top_logprobs(s->top_ids + s->n_tokens * (size_t)s->n_top,
                     s->top_logprobs + s->n_tokens * (size_t)s->n_top, s->n_top, logits,
                     c->vocab_size, lse);
    s->n_tokens++;

    if (!o->ignore_eos)
        for (int e = 0; e < c->n_eos; e++)
            if (tok == c->eos_ids[e]) {
                s->finish = INF_FINISH_EOS;
                return 1;
            }
    if (job->tok) {
        size_t n, old = s->text_len;
        const char *p = inf_tokenizer_piece(job->tok, prev, tok, &n);
        if (!p)
            n = 0; /* the model's vocabulary is larger than the tokenizer's */
        int rc = text_append(s, &w->text_caps[j - w->first], p ? p : "", n, &w->err);
        if (rc)
            return rc;
        /* A new match must end in the new bytes: search from where it could start. */
        size_t from = old > job->max_stop_len ? old - job->max_stop_len : 0;
        size_t best_at = SIZE_MAX;
        for (size_t k = 0; k < o->n_stop; k++) {
            size_t sl = job->stop_lens[k];
            if (s->text_len - from < sl)
                continue;
            const char *hit = memmem(s->text + from, s->text_len - from, o->stop[k], sl);
            if (hit && (size_t)(hit - s->text) < best_at) {
                best_at = (size_t)(hit - s->text);
                s->stop_index = (int)k;
            }
        }
        if (best_at != SIZE_MAX) {
            s->text_len = best_at;
            s->text[best_at] = '\0';
            s->finish = INF_FINISH_STOP;
            return 1;
        }
    }
    if ((int)s->n_tokens >= job->max_new) {
        s->finish = INF_FINISH_LENGTH;
        return 1;
    }
    return 0;
}

static bool canceled(const inf_gen_options *o)
{
    return o->cancel && atomic_load(o->cancel) != 0;
}

static void *worker_run(void *arg)
{
    gen_worker *w = arg;
    const gen_job *job = w->job;
    const inf_config *c = &job->m->config;
    inf_state *st = NULL;
    double *work_p = malloc((size_t)c->vocab_size * sizeof *work_p);
    int *work_idx = malloc((size_t)c->vocab_size * sizeof *work_idx);
    int *live = malloc((size_t)w->count * sizeof *live);    /* local sequence indices */
    int *tokens = malloc((size_t)w->count * sizeof *tokens);
    int rc = 0;
    if (!work_p || !work_idx || !live || !tokens) {
        rc = inf__fail(&w->err, INF_ENOMEM, "generate: out of memory");
        goto done;
    }
    int n_live = 0;
    for (int i = 0; i < w->count; i++) {
        int r = take_step(w, w->first + i, 0, job->first_logits, work_p, work_idx);
        if (r < 0) {
            rc = r;
            goto done;
        }
        if (r == 0)
            live[n_live++] = i;
    }
    if (n_live == 0)
        goto done;
    if ((rc = inf_state_new(&st, job->m, w->count, job->max_len, &w->err)) != 0 ||
        (rc = inf_state_set_threads(st, job->row_threads, &w->err)) != 0)
        goto done;
    for (int i = 0; i < w->count; i++)
        inf__state_copy_kv(st, i, job->prefill, 0, job->n_prompt);

    for (int step = 1, pos = job->n_prompt; n_live > 0; step++, pos++) {
        if (canceled(job->opts)) {
            rc = inf__fail(&w->err, INF_ECANCELED, "generate: canceled");
            goto done;
        }
        for (int r = 0; r < n_live; r++) {
            const inf_sample *s = &job->samples[w->first + live[r]];
            tokens[r] = s->tokens[s->n_tokens - 1];
        }
        inf__forward_batch(st, live, tokens, n_live, pos);
        int kept = 0;
        for (int r = 0; r < n_live; r++) {
            int done_now = take_step(w, w->first + live[r], step, inf__state_logits(st, r),
                                     work_p, work_idx);
            if (done_now < 0) {
                rc = done_now;
                goto done;
            }
            if (!done_now)
                live[kept++] = live[r];
        }
        n_live = kept;
    }
done:
    w->rc = rc;
    inf_state_free(st);
    free(work_p);
    free(work_idx);
    free(live);
    free(tokens);
    return NULL;
}

static int check_options(const inf_model *m, const inf_tokenizer *tok, const int *prompt,
                         size_t n_prompt, const inf_gen_options *o, inf_error *err)
{
    const inf_config *c = &m->config;
    if (o->n_samples < 1 || o->n_samples > INF_MAX_SAMPLES)
        return inf__fail(err, INF_ELIMIT, "generate: n_samples %d is outside [1, %d]",
                         o->n_samples, INF_MAX_SAMPLES);
    if (o->max_tokens < 1)
        return inf__fail(err, INF_EINVALID, "generate: max_tokens %d must be at least 1",
                         o->max_tokens);
    if (!(o->temperature >= 0.0f && o->temperature <= 1e6f))
        return inf__fail(err, INF_EINVALID, "generate: temperature %g is not in [0, 1e6]",
                         (double)o->temperature);
    if (!(o->top_p > 0.0f && o->top_p <= 1.0f))
        return inf__fail(err, INF_EINVALID, "generate: top_p %g is not in (0, 1]",
                         (double)o->top_p);
    if (o->top_k < 0)
        return inf__fail(err, INF_EINVALID, "generate: top_k %d is negative", o->top_k);
    if (!(o->min_p >= 0.0f && o->min_p <= 1.0f))
        return inf__fail(err, INF_EINVALID, "generate: min_p %g is not in [0, 1]",
                         (double)o->min_p);
    if (o->n_threads < 1 || o->n_threads > INF_MAX_THREADS)
        return inf__fail(err, INF_EINVALID, "generate: n_threads %d is outside [1, %d]",
                         o->n_threads, INF_MAX_THREADS);
    if (o->top_logprobs < 0 || o->top_logprobs > INF_MAX_TOP_LOGPROBS)
        return inf__fail(err, INF_EINVALID, "generate: top_logprobs %d is outside [0, %d]",
                         o->top_logprobs, INF_MAX_TOP_LOGPROBS);
    if (o->n_stop > INF_MAX_STOPS)
        return inf__fail(err, INF_ELIMIT, "generate: %zu stop strings, at most %d", o->n_stop,
                         INF_MAX_STOPS);
    if (o->n_stop > 0 && (!o->stop || !tok))
        return inf__fail(err, INF_EINVALID, "generate: stop strings need a tokenizer");
    for (size_t k = 0; k < o->n_stop; k++)
        if (!o->stop[k] || !o->stop[k][0])
            return inf__fail(err, INF_EINVALID, "generate: stop string %zu is empty", k);
    if (n_prompt < 1 || !prompt)
        return inf__fail(err, INF_EINVALID, "generate: the prompt has no tokens");
    if (n_prompt >= (size_t)c->seq_len)
        return inf__fail(err, INF_ELIMIT,
                         "generate: a prompt of %zu tokens leaves no room in the context of %d",
                         n_prompt, c->seq_len);
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return inf__fail(err, INF_EINVALID,
                             "generate: prompt token %d at index %zu is outside the vocabulary "
                             "of %d",
                             prompt[i], i, c->vocab_size);
    return 0;
}

void inf_result_free(inf_result *r)
{
    if (!r || !r->samples)
        return;
    for (size_t i = 0; i < r->n_samples; i++) {
        free(r->samples[i].tokens);
        free(r->samples[i].logprobs);
        free(r->samples[i].text);
        free(r->samples[i].top_ids);
        free(r->samples[i].top_logprobs);
    }
    free(r->samples);
    memset(r, 0, sizeof *r);
}

int inf_generate(inf_result *out, const inf_model *m, const inf_tokenizer *tok, const int *prompt,
                 size_t n_prompt, const inf_gen_options *opts, inf_error *err)
{
    inf_gen_options defaults = INF_GEN_OPTIONS_INIT;
    const inf_gen_options *o = opts ? opts : &defaults;
    const inf_config *c = &m->config;
    int rc;
    inf_state *pre = NULL;
    float *first_logits = NULL;
    gen_worker *workers = NULL;
    pthread_t *threads = NULL;
    size_t *stop_lens = NULL;
    inf_result res = {0};
    memset(out, 0, sizeof *out);

    if ((rc = check_options(m, tok, prompt, n_prompt, o, err)) != 0)
        return rc;
    int np = (int)n_prompt;
    int max_new = o->max_tokens < c->seq_len - np ? o->max_tokens : c->seq_len - np;
    int n = o->n_samples;
    /* Each top logprob costs what a token does (an id and a float). */
    int n_top = o->top_logprobs < c->vocab_size ? o->top_logprobs : c->vocab_size;
    if ((uint64_t)n * (uint64_t)max_new * (uint64_t)(1 + n_top) > MAX_RESULT_TOKENS)
        return inf__fail(err, INF_ELIMIT,
                         "generate: %d samples x %d tokens%s is over the limit of %llu tokens", n,
                         max_new, n_top ? " with their top logprobs" : "",
                         (unsigned long long)MAX_RESULT_TOKENS);

    rc = INF_ENOMEM;
    res.n_samples = (size_t)n;
    res.prompt_tokens = n_prompt;
    res.samples = calloc((size_t)n, sizeof *res.samples);
    stop_lens = calloc(o->n_stop + 1, sizeof *stop_lens);
    first_logits = malloc((size_t)c->vocab_size * sizeof *first_logits);
    if (!res.samples || !stop_lens || !first_logits) {
        inf__fail(err, rc, "generate: out of memory");
        goto done;
    }
    for (int j = 0; j < n; j++) {
        res.samples[j].tokens = malloc((size_t)max_new * sizeof(int));
        res.samples[j].logprobs = malloc((size_t)max_new * sizeof(float));
        res.samples[j].stop_index = -1;
        if (tok)
            res.samples[j].text = calloc(1, 1);
        if (n_top) {
            res.samples[j].n_top = n_top;
            res.samples[j].top_ids = malloc((size_t)max_new * (size_t)n_top * sizeof(int));
            res.samples[j].top_logprobs = malloc((size_t)max_new * (size_t)n_top * sizeof(float));
        }
        if (!res.samples[j].tokens || !res.samples[j].logprobs || (tok && !res.samples[j].text) ||
            (n_top && (!res.samples[j].top_ids || !res.samples[j].top_logprobs))) {
            inf__fail(err, rc, "generate: out of memory for %d samples of %d tokens", n, max_new);
            goto done;
        }
    }
    size_t max_stop = 0;
    for (size_t k = 0; k < o->n_stop; k++) {
        stop_lens[k] = strlen(o->stop[k]);
        if (stop_lens[k] > max_stop)
            max_stop = stop_lens[k];
    }

    if (canceled(o)) {
        rc = inf__fail(err, INF_ECANCELED, "generate: canceled");
        goto done;
    }
    /* prefill: the prompt once, many positions a pass */
    int max_len = np + max_new - 1;
    int rows = np < INF__PREFILL_ROWS ? np : INF__PREFILL_ROWS;
    if ((rc = inf__state_new(&pre, m, 1, rows, max_len, err)) != 0 ||
        (rc = inf_state_set_threads(pre, o->n_threads, err)) != 0)
        goto done;
    inf__forward_prompt(pre, 0, prompt, np, 0);
    memcpy(first_logits, inf__state_logits(pre, 0), (size_t)c->vocab_size * sizeof(float));

    gen_job job = {
        .m = m, .tok = tok, .opts = o, .prefill = pre, .first_logits = first_logits,
        .last_prompt_token = prompt[np - 1], .n_prompt = np, .max_new = max_new,
        .max_len = max_len, .stop_lens = stop_lens, .max_stop_len = max_stop,
        .samples = res.samples,
    };
    /* threads split the samples; when there are fewer samples than threads,
     * each group's matmuls are split by rows over the spare threads */
    int nt = o->n_threads < n ? o->n_threads : n;
    job.row_threads = o->n_threads / nt;
    workers = calloc((size_t)nt, sizeof *workers);
    threads = calloc((size_t)nt, sizeof *threads);
    if (!workers || !threads) {
        rc = inf__fail(err, INF_ENOMEM, "generate: out of memory");
        goto done;
    }
    for (int t = 0, first = 0; t < nt; t++) {
        int count = n / nt + (t < n % nt ? 1 : 0);
        workers[t].job = &job;
        workers[t].first = first;
        workers[t].count = count;
        workers[t].text_caps = calloc((size_t)count, sizeof(size_t));
        if (!workers[t].text_caps) {
            rc = inf__fail(err, INF_ENOMEM, "generate: out of memory");
            goto done;
        }
        first += count;
    }
    int started = 0;
    for (int t = 1; t < nt; t++) {
        if (pthread_create(&threads[t], NULL, worker_run, &workers[t]) != 0) {
            workers[t].rc = inf__fail(&workers[t].err, INF_ENOMEM,
                                      "generate: cannot start worker thread %d", t);
            break;
        }
        started = t;
    }
    worker_run(&workers[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(threads[t], NULL);
    rc = 0;
    for (int t = 0; t < nt; t++)
        if (workers[t].rc && !rc) {
            rc = workers[t].rc;
            if (err)
                *err = workers[t].err;
        }
    if (rc)
        goto done;
    *out = res;
    res.samples = NULL;
done:
    inf_result_free(&res);
    if (workers)
        for (int t = 0; t < nt; t++)
            free(workers[t].text_caps);
    free(workers);
    free(threads);
    free(stop_lens);
    free(first_logits);
    inf_state_free(pre);
    return rc;
}
