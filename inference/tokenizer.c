/*
 * What every tokenizer shares: the vocabulary arrays, the piece -> id hash,
 * encode/decode dispatch, and freeing. The algorithms live in
 * tokenizer_sp.c (SentencePiece BPE) and tokenizer_bpe.c (byte-level BPE).
 */
#include <stdlib.h>
#include <string.h>

#include "inference/inference_int.h"

inf_tokenizer *inf__tok_alloc(int n)
{
    inf_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->vocab_size = n;
    t->bos = t->eos = t->unk = -1;
    for (int i = 0; i < 256; i++)
        t->byte_ids[i] = -1;
    t->pieces = calloc((size_t)n, sizeof *t->pieces);
    t->piece_lens = calloc((size_t)n, sizeof *t->piece_lens);
    t->scores = calloc((size_t)n, sizeof *t->scores);
    t->types = calloc((size_t)n, sizeof *t->types);
    t->decoded = calloc((size_t)n, sizeof *t->decoded);
    t->decoded_lens = calloc((size_t)n, sizeof *t->decoded_lens);
    if (!t->pieces || !t->piece_lens || !t->scores || !t->types || !t->decoded ||
        !t->decoded_lens) {
        inf_tokenizer_free(t);
        return NULL;
    }
    memset(t->types, INF__TT_NORMAL, (size_t)n);
    return t;
}

void inf_tokenizer_free(inf_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->vocab_size; i++) {
        if (t->pieces)
            free(t->pieces[i]);
        if (t->decoded)
            free(t->decoded[i]);
    }
    free(t->pieces);
    free(t->piece_lens);
    free(t->scores);
    free(t->types);
    free(t->decoded);
    free(t->decoded_lens);
    free(t->hash);
    free(t->merge_keys);
    free(t->merge_ranks);
    free(t->added);
    free(t);
}

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int inf__tok_build_index(inf_tokenizer *t, inf_error *err)
{
    size_t cap = 16;
    while (cap < (size_t)t->vocab_size * 2)
        cap *= 2;
    t->hash = malloc(cap * sizeof *t->hash);
    if (!t->hash)
        return inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
    memset(t->hash, 0xff, cap * sizeof *t->hash);
    t->hash_cap = cap;
    for (int id = 0; id < t->vocab_size; id++) {
        size_t slot = fnv1a(t->pieces[id], t->piece_lens[id]) & (cap - 1);
        for (;;) {
            int32_t other = t->hash[slot];
            if (other < 0) {
                t->hash[slot] = id;
                break;
            }
            /* Duplicate pieces: the first id wins, as in llama.cpp's map. */
            if (t->piece_lens[other] == t->piece_lens[id] &&
                memcmp(t->pieces[other], t->pieces[id], t->piece_lens[id]) == 0)
                break;
            slot = (slot + 1) & (cap - 1);
        }
    }
    return 0;
}

int inf__tok_lookup(const inf_tokenizer *t, const char *s, size_t len)
{
    size_t cap = t->hash_cap;
    size_t slot = fnv1a(s, len) & (cap - 1);
    for (;;) {
        int32_t id = t->hash[slot];
        if (id < 0)
            return -1;
        if (t->piece_lens[id] == len && memcmp(t->pieces[id], s, len) == 0)
            return id;
        slot = (slot + 1) & (cap - 1);
    }
}

int inf__ids_push(int **ids, size_t *n, size_t *cap, int id, inf_error *err)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int *p = realloc(*ids, nc * sizeof *p);
        if (!p)
            return inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
        *ids = p;
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

static bool bigram_before(const inf__bigram *a, const inf__bigram *b)
{
    return a->priority > b->priority || (a->priority == b->priority && a->left < b->left);
}

int inf__heap_push(inf__heap *h, inf__bigram b, inf_error *err)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        inf__bigram *v = realloc(h->v, nc * sizeof *v);
        if (!v)
            return inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
        h->v = v;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0 && bigram_before(&b, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = b;
    return 0;
}

bool inf__heap_pop(inf__heap *h, inf__bigram *out)
{
    if (h->n == 0)
        return false;
    *out = h->v[0];
    inf__bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!bigram_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return true;
}

int inf_tokenizer_vocab_size(const inf_tokenizer *t)
{
    return t->vocab_size;
}

int inf_tokenizer_bos(const inf_tokenizer *t)
{
    return t->bos;
}

int inf_tokenizer_eos(const inf_tokenizer *t)
{
    return t->eos;
}

int inf_tokenizer_encode(int **ids, size_t *n_ids, const inf_tokenizer *t, const char *text,
                         size_t len, unsigned flags, inf_error *err)
{
    int *out = NULL;
    char *normalized = NULL;
    size_t n = 0, cap = 0;
    int rc;
    *ids = NULL;
    *n_ids = 0;
    if ((rc = inf__ids_push(&out, &n, &cap, 0, err)) != 0) /* reserve, never NULL */
        goto done;
    n = 0;
    if ((flags & INF_TOK_BOS) && t->bos >= 0 &&
        (rc = inf__ids_push(&out, &n, &cap, t->bos, err)) != 0)
        goto done;
    /* NFC first, then the added tokens. HF cuts non-"normalized" added
     * tokens out of the raw text before normalizing the rest; the two differ
     * only where a combining mark follows an added token whose last
     * character composes with it, which special tokens (ASCII ending in '>'
     * or '|') never do. */
    if (t->nfc) {
        if ((rc = inf__unicode_normalize(&normalized, &len, text, len, true, err)) != 0)
            goto done;
        text = normalized;
    }
    /* added tokens cut the text into segments encoded on their own */
    size_t seg = 0;
    for (size_t at = 0; at < len && t->n_added;) {
        int id = -1;
        unsigned char c0 = (unsigned char)text[at];
        if (t->added_first[c0 >> 3] & (1u << (c0 & 7)))
            for (int k = 0; k < t->n_added && id < 0; k++) {
                int a = t->added[k];
                if ((t->types[a] != INF__TT_CONTROL || (flags & INF_TOK_SPECIAL)) &&
                    t->piece_lens[a] <= len - at &&
                    memcmp(text + at, t->pieces[a], t->piece_lens[a]) == 0)
                    id = a;
            }
        if (id < 0) {
            at++;
            continue;
        }
        if (at > seg && (rc = t->encode(&out, &n, &cap, t, text + seg, at - seg, err)) != 0)
            goto done;
        if ((rc = inf__ids_push(&out, &n, &cap, id, err)) != 0)
            goto done;
        at += t->piece_lens[id];
        seg = at;
    }
    rc = t->encode(&out, &n, &cap, t, text + seg, len - seg, err);
    if (rc)
        goto done;
    if ((flags & INF_TOK_EOS) && t->eos >= 0 &&
        (rc = inf__ids_push(&out, &n, &cap, t->eos, err)) != 0)
        goto done;
    *ids = out;
    *n_ids = n;
    out = NULL;
done:
    free(out);
    free(normalized);
    return rc;
}

const char *inf_tokenizer_piece(const inf_tokenizer *t, int prev, int id, size_t *len)
{
    if (id < 0 || id >= t->vocab_size) {
        *len = 0;
        return NULL;
    }
    const char *p = t->decoded[id];
    size_t n = t->decoded_lens[id];
    /* SentencePiece: the dummy-prefix space of the first piece after BOS is
     * not part of the text (llama2.c run.c's decode, llama.cpp's detokenizer). */
    if (t->kind == INF__TOK_SPM && t->add_space_prefix && prev >= 0 && prev == t->bos && n > 0 &&
        p[0] == ' ') {
        p++;
        n--;
    }
    *len = n;
    return p;
}

int inf_tokenizer_decode(char **text, size_t *len, const inf_tokenizer *t, const int *ids,
                         size_t n, inf_error *err)
{
    *text = NULL;
    *len = 0;
    size_t total = 0, piece_len;
    for (size_t i = 0; i < n; i++) {
        if (!inf_tokenizer_piece(t, i ? ids[i - 1] : -1, ids[i], &piece_len))
            return inf__fail(err, INF_EINVALID, "decode: token %d at index %zu is outside the "
                                                "vocabulary of %d",
                             ids[i], i, t->vocab_size);
        total += piece_len;
    }
    char *out = malloc(total + 1);
    if (!out)
        return inf__fail(err, INF_ENOMEM, "decode: out of memory");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = inf_tokenizer_piece(t, i ? ids[i - 1] : -1, ids[i], &piece_len);
        memcpy(out + at, p, piece_len);
        at += piece_len;
    }
    out[at] = '\0';
    *text = out;
    *len = at;
    return 0;
}

/* ---- GGUF vocabularies --------------------------------------------------- */

/* An array entry of `key` with exactly `n` elements of an accepted type, or
 * NULL (and *rc set when it exists but is wrong). */
static const inf__gguf_kv *gguf_array(const inf__gguf *g, const char *key, uint64_t n,
                                      uint32_t t1, uint32_t t2, int *rc, inf_error *err)
{
    const inf__gguf_kv *kv = inf__gguf_find(g, key);
    if (!kv)
        return NULL;
    if (kv->type != INF__GGUF_ARRAY || (kv->elem_type != t1 && kv->elem_type != t2) ||
        (n && kv->count != n)) {
        *rc = inf__fail(err, INF_EINVALID,
                        "%s: %s is not an array of the expected type and length %llu", g->path,
                        key, (unsigned long long)n);
        return NULL;
    }
    return kv;
}

/* Optional token id `key`: -1 when absent; an error when out of range. */
static int gguf_token_id(int *out, const inf__gguf *g, const char *key, int n, inf_error *err)
{
    const inf__gguf_kv *kv = inf__gguf_find(g, key);
    *out = -1;
    if (!kv)
        return 0;
    int64_t v;
    int rc = inf__gguf_int(&v, g, kv, err);
    if (rc)
        return rc;
    if (v < 0 || v >= n)
        return inf__fail(err, INF_EINVALID, "%s: %s = %lld is outside the vocabulary of %d",
                         g->path, key, (long long)v, n);
    *out = (int)v;
    return 0;
}

/* Copies a vocabulary piece, turning SentencePiece's U+2581 into ' ' when
 * `spm` (so SPM text needs no rewriting before the merges). */
static char *copy_piece(const char *s, size_t len, bool spm, uint32_t *out_len)
{
    char *p = malloc(len + 1);
    if (!p)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (spm && i + 2 < len && (unsigned char)s[i] == 0xE2 &&
            (unsigned char)s[i + 1] == 0x96 && (unsigned char)s[i + 2] == 0x81) {
            p[o++] = ' ';
            i += 2;
        } else {
            p[o++] = s[i];
        }
    }
    p[o] = '\0';
    *out_len = (uint32_t)o;
    return p;
}

int inf_tokenizer_load_gguf(inf_tokenizer **out, const char *path, inf_error *err)
{
    inf__gguf *g = NULL;
    inf_tokenizer *t = NULL;
    int rc;
    *out = NULL;
    if ((rc = inf__gguf_open(&g, path, err)) != 0)
        return rc;
    const char *model;
    size_t model_len;
    const inf__gguf_kv *kv = inf__gguf_find(g, "tokenizer.ggml.model");
    if (!kv) {
        rc = inf__fail(err, INF_EINVALID, "%s: no tokenizer.ggml.model", path);
        goto done;
    }
    if ((rc = inf__gguf_str(&model, &model_len, g, kv, err)) != 0)
        goto done;
    bool spm = model_len == 5 && memcmp(model, "llama", 5) == 0;
    bool bpe = model_len == 4 && memcmp(model, "gpt2", 4) == 0;
    if (!spm && !bpe) {
        rc = inf__fail(err, INF_EINVALID, "%s: tokenizer model '%.*s' is not supported "
                                          "(llama, gpt2)",
                       path, (int)(model_len > 40 ? 40 : model_len), model);
        goto done;
    }
    const inf__gguf_kv *tokens = gguf_array(g, "tokenizer.ggml.tokens", 0, INF__GGUF_STRING,
                                            INF__GGUF_STRING, &rc, err);
    if (rc)
        goto done;
    if (!tokens || tokens->count < 1 || tokens->count > INF_MAX_VOCAB) {
        rc = inf__fail(err, INF_EINVALID, "%s: tokenizer.ggml.tokens is missing or has an absurd "
                                          "length", path);
        goto done;
    }
    int n = (int)tokens->count;
    const inf__gguf_kv *types = gguf_array(g, "tokenizer.ggml.token_type", (uint64_t)n,
                                           INF__GGUF_I32, INF__GGUF_U32, &rc, err);
    if (rc)
        goto done;
    const inf__gguf_kv *scores = gguf_array(g, "tokenizer.ggml.scores", (uint64_t)n,
                                            INF__GGUF_F32, INF__GGUF_F32, &rc, err);
    if (rc)
        goto done;
    const inf__gguf_kv *merges = gguf_array(g, "tokenizer.ggml.merges", 0, INF__GGUF_STRING,
                                            INF__GGUF_STRING, &rc, err);
    if (rc)
        goto done;
    if (bpe && !merges) {
        rc = inf__fail(err, INF_EINVALID, "%s: a gpt2 tokenizer needs tokenizer.ggml.merges",
                       path);
        goto done;
    }
    bool falcon = false;
    const inf__gguf_kv *pre = inf__gguf_find(g, "tokenizer.ggml.pre");
    if (bpe && pre) {
        const char *ps;
        size_t pl;
        if ((rc = inf__gguf_str(&ps, &pl, g, pre, err)) != 0)
            goto done;
        falcon = pl == 6 && memcmp(ps, "falcon", 6) == 0;
        if (!falcon && !(pl == 5 && memcmp(ps, "gpt-2", 5) == 0)) {
            rc = inf__fail(err, INF_EINVALID,
                           "%s: pre-tokenizer '%.*s' is not supported (gpt-2, falcon)", path,
                           (int)(pl > 40 ? 40 : pl), ps);
            goto done;
        }
    }
    t = inf__tok_alloc(n);
    if (!t) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory for %d tokens", path, n);
        goto done;
    }
    size_t at = tokens->offset;
    for (int id = 0; id < n; id++) {
        uint64_t len;
        memcpy(&len, g->map + at, 8); /* bounds checked by inf__gguf_open */
        t->pieces[id] = copy_piece((const char *)g->map + at + 8, (size_t)len, spm,
                                   &t->piece_lens[id]);
        if (!t->pieces[id]) {
            rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        at += 8 + (size_t)len;
        if (types) {
            int32_t v;
            memcpy(&v, g->map + types->offset + 4 * (size_t)id, 4);
            t->types[id] = v >= 1 && v <= 6 ? (uint8_t)v : INF__TT_NORMAL;
        }
        if (scores)
            memcpy(&t->scores[id], g->map + scores->offset + 4 * (size_t)id, 4);
    }
    if ((rc = gguf_token_id(&t->bos, g, "tokenizer.ggml.bos_token_id", n, err)) != 0 ||
        (rc = gguf_token_id(&t->eos, g, "tokenizer.ggml.eos_token_id", n, err)) != 0 ||
        (rc = gguf_token_id(&t->unk, g, "tokenizer.ggml.unknown_token_id", n, err)) != 0)
        goto done;
    t->add_space_prefix = spm;
    const inf__gguf_kv *asp = inf__gguf_find(g, "tokenizer.ggml.add_space_prefix");
    if (asp) {
        int64_t v;
        if ((rc = inf__gguf_int(&v, g, asp, err)) != 0)
            goto done;
        t->add_space_prefix = v != 0;
    }
    if ((rc = inf__tok_build_index(t, err)) != 0)
        goto done;
    if (spm) {
        t->kind = INF__TOK_SPM;
        t->encode = inf__spm_encode;
        inf__spm_find_byte_ids(t, types != NULL);
        rc = inf__spm_build_decoded(t, err);
    } else {
        t->kind = INF__TOK_BPE;
        t->encode = inf__bpe_encode;
        t->pre = falcon ? INF__PRE_FALCON : INF__PRE_GPT2;
        if ((rc = inf__bpe_init(t, g, merges, err)) == 0)
            rc = inf__bpe_build_decoded(t, err);
    }
    if (rc)
        goto done;
    *out = t;
    t = NULL;
done:
    inf_tokenizer_free(t);
    inf__gguf_close(g);
    return rc;
}
