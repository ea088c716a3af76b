/*
 * SentencePiece-style BPE (llama2.c tokenizer.bin, GGUF "llama" vocabularies).
 *
 * Encoding, as llama.cpp's llm_tokenizer_spm and llama2.c's encode() do it:
 * prepend a space (the "dummy prefix") to non-empty text, split it into UTF-8
 * characters, then repeatedly merge the adjacent pair whose concatenation is
 * the vocabulary piece with the highest score (the leftmost pair on ties).
 * What is left and not in the vocabulary falls back to <0xXX> byte tokens.
 * Vocabulary pieces are stored with U+2581 "▁" already turned into " ", so
 * the text needs no rewriting.
 */
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "inference/inference_int.h"

/* llama2.c's tokenizer.bin is small; anything over this is not one. */
#define LLAMA2C_TOK_MAX_BYTES (256u << 20)

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xXX>" piece, or -1. */
static int byte_piece(const char *p, size_t len)
{
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
        return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

int inf__spm_build_decoded(inf_tokenizer *t, inf_error *err)
{
    for (int id = 0; id < t->vocab_size; id++) {
        const char *src = t->pieces[id];
        size_t n = t->piece_lens[id];
        char byte;
        int b = byte_piece(src, n);
        if (t->types[id] == INF__TT_CONTROL || t->types[id] == INF__TT_UNUSED) {
            n = 0;
        } else if (b >= 0 && (t->types[id] == INF__TT_BYTE || t->byte_ids[b] == id)) {
            byte = (char)b;
            src = &byte;
            n = 1;
        }
        t->decoded[id] = malloc(n + 1);
        if (!t->decoded[id])
            return inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
        memcpy(t->decoded[id], src, n);
        t->decoded[id][n] = '\0';
        t->decoded_lens[id] = (uint32_t)n;
    }
    return 0;
}

void inf__spm_find_byte_ids(inf_tokenizer *t, bool typed)
{
    for (int id = 0; id < t->vocab_size; id++) {
        if (typed && t->types[id] != INF__TT_BYTE)
            continue;
        int b = byte_piece(t->pieces[id], t->piece_lens[id]);
        if (b >= 0 && t->byte_ids[b] < 0)
            t->byte_ids[b] = id;
    }
}

int inf_tokenizer_load_llama2c(inf_tokenizer **out, const char *path, int vocab_size,
                               inf_error *err)
{
    int rc = INF_EIO;
    FILE *f = NULL;
    unsigned char *buf = NULL;
    inf_tokenizer *t = NULL;
    *out = NULL;

    if (vocab_size < 3 || vocab_size > INF_MAX_VOCAB) {
        rc = inf__fail(err, INF_EINVALID, "%s: vocab_size %d is out of range [3, %d]", path,
                       vocab_size, INF_MAX_VOCAB);
        goto done;
    }
    f = fopen(path, "rb");
    if (!f) {
        rc = inf__fail(err, INF_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = inf__fail(err, INF_EIO, "%s: cannot seek", path);
        goto done;
    }
    long size = ftell(f);
    if (size < 0 || (unsigned long)size > LLAMA2C_TOK_MAX_BYTES) {
        rc = inf__fail(err, INF_EINVALID, "%s: %ld bytes is not a llama2.c tokenizer", path,
                       size);
        goto done;
    }
    rewind(f);
    buf = malloc((size_t)size + 1);
    if (!buf) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        rc = inf__fail(err, INF_EIO, "%s: read error", path);
        goto done;
    }
    t = inf__tok_alloc(vocab_size);
    if (!t) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t at = 0, end = (size_t)size;
    int32_t max_len;
    if (end < 4) {
        rc = inf__fail(err, INF_EINVALID, "%s: truncated: no max_token_length", path);
        goto done;
    }
    memcpy(&max_len, buf, 4);
    at = 4;
    if (max_len < 1 || max_len > 65536) {
        rc = inf__fail(err, INF_EINVALID, "%s: max_token_length %d is out of range [1, 65536]",
                       path, max_len);
        goto done;
    }
    for (int id = 0; id < vocab_size; id++) {
        float score;
        int32_t len;
        if (end - at < 8) {
            rc = inf__fail(err, INF_EINVALID, "%s: truncated at token %d of %d", path, id,
                           vocab_size);
            goto done;
        }
        memcpy(&score, buf + at, 4);
        memcpy(&len, buf + at + 4, 4);
        at += 8;
        if (len < 0 || len > max_len || (size_t)len > end - at) {
            rc = inf__fail(err, INF_EINVALID,
                           "%s: token %d has length %d (max_token_length %d, %zu bytes left)",
                           path, id, len, max_len, end - at);
            goto done;
        }
        t->pieces[id] = malloc((size_t)len + 1);
        if (!t->pieces[id]) {
            rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(t->pieces[id], buf + at, (size_t)len);
        t->pieces[id][len] = '\0';
        t->piece_lens[id] = (uint32_t)len;
        t->scores[id] = score;
        at += (size_t)len;
    }
    if (at != end) {
        rc = inf__fail(err, INF_EINVALID, "%s: %zu bytes after the last of %d tokens", path,
                       end - at, vocab_size);
        goto done;
    }
    t->kind = INF__TOK_SPM;
    t->encode = inf__spm_encode;
    t->unk = 0;
    t->bos = 1;
    t->eos = 2;
    t->types[0] = INF__TT_UNKNOWN;
    t->types[1] = INF__TT_CONTROL;
    t->types[2] = INF__TT_CONTROL;
    t->add_space_prefix = true;
    inf__spm_find_byte_ids(t, false);
    for (int b = 0; b < 256; b++)
        if (t->byte_ids[b] >= 0)
            t->types[t->byte_ids[b]] = INF__TT_BYTE;
    if ((rc = inf__tok_build_index(t, err)) != 0 || (rc = inf__spm_build_decoded(t, err)) != 0)
        goto done;
    *out = t;
    t = NULL;
    rc = 0;
done:
    if (f)
        fclose(f);
    free(buf);
    inf_tokenizer_free(t);
    return rc;
}

/* Length of the UTF-8 sequence a lead byte announces (1 for stray bytes). */
static size_t utf8_len(unsigned char c)
{
    static const unsigned char lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

typedef struct sym {
    size_t start, len;  /* len 0: merged into its left neighbour */
    int prev, next;     /* linked list of live symbols; -1 at the ends */
} sym;

/* Queues the merge of symbol i with its right neighbour when the pair is a piece. */
static int try_pair(inf__heap *h, const sym *s, int i, const inf_tokenizer *t, const char *buf,
                    inf_error *err)
{
    if (i < 0 || s[i].next < 0)
        return 0;
    int j = s[i].next;
    int id = inf__tok_lookup(t, buf + s[i].start, s[i].len + s[j].len);
    if (id < 0 || (t->spm_merges_only && t->scores[id] == -INFINITY))
        return 0;
    inf__bigram b = {t->scores[id], i, j, s[i].len + s[j].len};
    return inf__heap_push(h, b, err);
}

int inf__spm_encode(int **ids, size_t *n, size_t *cap, const inf_tokenizer *t, const char *text,
                    size_t len, inf_error *err)
{
    if (len == 0)
        return 0;
    int rc = 0;
    inf__heap heap = {0};
    size_t pre = t->add_space_prefix ? 1 : 0;
    char *buf = malloc(len + pre + 1);
    sym *s = malloc((len + pre) * sizeof *s);
    if (!buf || !s) {
        rc = inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    if (pre)
        buf[0] = ' ';
    memcpy(buf + pre, text, len);
    size_t total = len + pre;
    int ns = 0;
    for (size_t at = 0; at < total; ns++) {
        size_t l = utf8_len((unsigned char)buf[at]);
        if (l > total - at)
            l = total - at;
        s[ns].start = at;
        s[ns].len = l;
        s[ns].prev = ns - 1;
        s[ns].next = at + l < total ? ns + 1 : -1;
        at += l;
    }
    for (int i = 0; i < ns; i++)
        if ((rc = try_pair(&heap, s, i, t, buf, err)) != 0)
            goto done;
    /* Best-scoring pair first (leftmost on ties); entries made stale by an
     * earlier merge no longer match their symbols and are dropped. */
    inf__bigram top;
    while (inf__heap_pop(&heap, &top)) {
        sym *l = &s[top.left], *r = &s[top.right];
        if (l->len == 0 || r->len == 0 || l->next != top.right || l->len + r->len != top.size)
            continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = top.left;
        if ((rc = try_pair(&heap, s, l->prev, t, buf, err)) != 0 ||
            (rc = try_pair(&heap, s, top.left, t, buf, err)) != 0)
            goto done;
    }
    for (int i = 0; i >= 0 && ns > 0; i = s[i].next) {
        int id = inf__tok_lookup(t, buf + s[i].start, s[i].len);
        if (id >= 0) {
            if ((rc = inf__ids_push(ids, n, cap, id, err)) != 0)
                goto done;
            continue;
        }
        for (size_t k = 0; k < s[i].len; k++) {
            int b = t->byte_ids[(unsigned char)buf[s[i].start + k]];
            if (b < 0)
                b = t->unk;
            if (b < 0) {
                rc = inf__fail(err, INF_EINVALID,
                               "tokenizer: byte 0x%02x at offset %zu has no token",
                               (unsigned char)buf[s[i].start + k], s[i].start + k - pre);
                goto done;
            }
            if ((rc = inf__ids_push(ids, n, cap, b, err)) != 0)
                goto done;
        }
    }
done:
    free(heap.v);
    free(buf);
    free(s);
    return rc;
}
