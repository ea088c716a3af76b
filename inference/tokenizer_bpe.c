/*
 * Byte-level BPE (GPT-2 style; GGUF tokenizer.ggml.model "gpt2").
 *
 * Encoding, as llama.cpp's llm_tokenizer_bpe does for the "gpt-2" pre-tokenizer:
 *   1. split the text into words with GPT-2's regex
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      implemented by hand over code points (pretokenize below), with the
 *      Unicode classes of unicode_tab.c;
 *   2. write each word's bytes as GPT-2's printable stand-ins (bytes_to_unicode:
 *      ' ' -> 'Ġ', '\n' -> 'Ċ', ...), the alphabet the vocabulary is written in;
 *   3. start from one symbol per byte and repeatedly merge the adjacent pair
 *      with the lowest merge rank (leftmost on ties);
 *   4. each final symbol is a token; one that is not (impossible with a
 *      consistent vocabulary) falls back to its single-byte tokens.
 * Falcon's pre-tokenizer (tokenizer.ggml.pre "falcon") first cuts out runs of
 * [\p{P}$+<=>^~|`] and afterwards splits every word into [0-9]{3} groups, each
 * regex splitting the pieces the previous one left, as llama.cpp's
 * unicode_regex_split does.
 * Bytes that are not valid UTF-8 are kept as one-byte "code points" of class
 * other, so any byte string round-trips.
 */
#include <stdlib.h>
#include <string.h>

#include "inference/inference_int.h"

/* ---- Unicode ------------------------------------------------------------ */

static unsigned uclass(uint32_t cp)
{
    size_t lo = 0, hi = inf__unicode_n_ranges;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (inf__unicode_ranges[mid][0] <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return inf__unicode_ranges[lo][1];
}

/* Decodes one code point at s[0..n); sets *len (1 for invalid bytes, whose
 * value is returned as 0xFFFFFFFF: class other). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *len)
{
    unsigned char c = s[0];
    size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (need == 1) {
        *len = 1;
        return c;
    }
    if (need == 0 || need > n)
        goto invalid;
    uint32_t cp = c & (0x7F >> need);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto invalid;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        goto invalid;
    *len = need;
    return cp;
invalid:
    *len = 1;
    return 0xFFFFFFFFu;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest
 * map to U+0100 upwards in byte order. */
static uint32_t byte_to_cp(unsigned char b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
        return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE)))
            n++;
    return 256 + n;
}

/* ---- pre-tokenizer ------------------------------------------------------ */

typedef struct cpt {
    uint32_t cp;
    unsigned cls;
    size_t off;     /* byte offset in the text */
} cpt;

static bool is_l(const cpt *c, size_t i, size_t n) { return i < n && (c[i].cls & 7) == INF__UC_LETTER; }
static bool is_n(const cpt *c, size_t i, size_t n) { return i < n && (c[i].cls & 7) == INF__UC_NUMBER; }
static bool is_s(const cpt *c, size_t i, size_t n) { return i < n && (c[i].cls & INF__UC_SPACE); }
/* [^\s\p{L}\p{N}] and assigned (llama.cpp's flags != 0) */
static bool is_o(const cpt *c, size_t i, size_t n)
{
    return i < n && !is_s(c, i, n) && !is_l(c, i, n) && !is_n(c, i, n) &&
           c[i].cls != INF__UC_UNASSIGNED;
}

/*
 * GPT-2's regex over code points c[0..n): calls emit for each word as the
 * code point range [start, end). Mirrors llama.cpp's
 * unicode_regex_split_custom_gpt2 branch by branch.
 */
static size_t next_word(const cpt *c, size_t pos, size_t n)
{
    uint32_t cp = c[pos].cp;
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (cp == '\'' && pos + 1 < n) {
        uint32_t a = c[pos + 1].cp;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return pos + 2;
        if (pos + 2 < n) {
            uint32_t b = c[pos + 2].cp;
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return pos + 3;
        }
    }
    size_t p2 = pos + (cp == ' ' ? 1 : 0);
    /* ?\p{L}+ */
    if (is_l(c, p2, n)) {
        while (is_l(c, p2, n))
            p2++;
        return p2;
    }
    /* ?\p{N}+ */
    if (is_n(c, p2, n)) {
        while (is_n(c, p2, n))
            p2++;
        return p2;
    }
    /* ?[^\s\p{L}\p{N}]+ */
    if (is_o(c, p2, n)) {
        while (is_o(c, p2, n))
            p2++;
        return p2;
    }
    size_t ws = 0;
    while (is_s(c, pos + ws, n))
        ws++;
    /* \s+(?!\S) */
    if (ws > 1 && pos + ws < n)
        return pos + ws - 1;
    /* \s+ */
    if (ws > 0)
        return pos + ws;
    return pos + 1; /* an unassigned code point alone */
}

/*
 * The Llama 3 regex (Qwen2's is the same with \p{N} for \p{N}{1,3}):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * over code points c[0..n) from pos; returns the end of the word. Mirrors
 * llama.cpp's unicode_regex_split_custom_llama3 branch by branch;
 * `max_digits` is 3 (Llama 3) or 1 (Qwen2).
 */
static size_t next_word_llama3(const cpt *c, size_t pos, size_t n, int max_digits)
{
    uint32_t cp = c[pos].cp;
#define LOWER(x) ((x) >= 'A' && (x) <= 'Z' ? (x) + 32 : (x))
    if (cp == '\'' && pos + 1 < n) {
        uint32_t a = LOWER(c[pos + 1].cp);
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return pos + 2;
        if (pos + 2 < n) {
            uint32_t b = LOWER(c[pos + 2].cp);
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return pos + 3;
        }
    }
#undef LOWER
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (!(cp == '\r' || cp == '\n' || is_n(c, pos, n)) && (is_l(c, pos, n) || is_l(c, pos + 1, n))) {
        size_t p = pos + 1;
        while (is_l(c, p, n))
            p++;
        return p;
    }
    /* \p{N}{1,max_digits} */
    if (is_n(c, pos, n)) {
        size_t p = pos;
        while (is_n(c, p, n) && p - pos < (size_t)max_digits)
            p++;
        return p;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t p = pos + (cp == ' ' ? 1 : 0);
    if (is_o(c, p, n)) {
        while (is_o(c, p, n))
            p++;
        while (p < n && (c[p].cp == '\r' || c[p].cp == '\n'))
            p++;
        return p;
    }
    size_t ws = 0, last_rn = 0;
    while (is_s(c, pos + ws, n)) {
        if (c[pos + ws].cp == '\r' || c[pos + ws].cp == '\n')
            last_rn = pos + ws + 1;
        ws++;
    }
    /* \s*[\r\n]+ */
    if (last_rn > 0)
        return last_rn;
    /* \s+(?!\S) */
    if (ws > 1 && pos + ws < n)
        return pos + ws - 1;
    /* \s+ */
    if (ws > 0)
        return pos + ws;
    return pos + 1;
}

/* ---- BPE ---------------------------------------------------------------- */

static uint64_t pair_key(int a, int b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static size_t pair_hash(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static int merge_rank(const inf_tokenizer *t, int a, int b)
{
    if (a < 0 || b < 0 || !t->merge_cap)
        return -1;
    uint64_t k = pair_key(a, b);
    for (size_t slot = pair_hash(k, t->merge_cap);; slot = (slot + 1) & (t->merge_cap - 1)) {
        if (t->merge_ranks[slot] < 0)
            return -1;
        if (t->merge_keys[slot] == k)
            return t->merge_ranks[slot];
    }
}

int inf__bpe_merges_alloc(inf_tokenizer *t, uint64_t n, const char *what, inf_error *err)
{
    char buf[8];
    for (int b = 0; b < 256; b++) {
        size_t l = utf8_put(buf, byte_to_cp((unsigned char)b));
        t->byte_ids[b] = inf__tok_lookup(t, buf, l);
    }
    if (n > (uint64_t)INF_MAX_VOCAB * 4)
        return inf__fail(err, INF_EINVALID, "%s: %llu merges is absurd", what,
                         (unsigned long long)n);
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    t->merge_keys = malloc(cap * sizeof *t->merge_keys);
    t->merge_ranks = malloc(cap * sizeof *t->merge_ranks);
    if (!t->merge_keys || !t->merge_ranks)
        return inf__fail(err, INF_ENOMEM, "%s: out of memory for merges", what);
    memset(t->merge_ranks, 0xff, cap * sizeof *t->merge_ranks);
    t->merge_cap = cap;
    return 0;
}

void inf__bpe_merge_add(inf_tokenizer *t, const char *l, size_t ll, const char *r, size_t rl,
                        int32_t rank)
{
    int a = inf__tok_lookup(t, l, ll), b = inf__tok_lookup(t, r, rl);
    if (a < 0 || b < 0)
        return; /* a merge of non-tokens can never apply */
    uint64_t k = pair_key(a, b);
    size_t cap = t->merge_cap;
    for (size_t slot = pair_hash(k, cap);; slot = (slot + 1) & (cap - 1)) {
        if (t->merge_ranks[slot] < 0) {
            t->merge_keys[slot] = k;
            t->merge_ranks[slot] = rank;
            return;
        }
        if (t->merge_keys[slot] == k)
            return; /* the first (lowest) rank wins */
    }
}

int inf__bpe_init(inf_tokenizer *t, const inf__gguf *g, const inf__gguf_kv *merges,
                  inf_error *err)
{
    uint64_t n = merges->count;
    int rc = inf__bpe_merges_alloc(t, n, g->path, err);
    if (rc)
        return rc;
    size_t at = merges->offset;
    for (uint64_t r = 0; r < n; r++) {
        uint64_t len;
        memcpy(&len, g->map + at, 8); /* bounds checked by inf__gguf_open */
        const char *s = (const char *)g->map + at + 8;
        at += 8 + (size_t)len;
        const char *sp = len > 1 ? memchr(s + 1, ' ', (size_t)len - 1) : NULL;
        if (!sp)
            return inf__fail(err, INF_EINVALID, "%s: merge %llu \"%.*s\" has no space", g->path,
                             (unsigned long long)r, (int)(len > 40 ? 40 : len), s);
        inf__bpe_merge_add(t, s, (size_t)(sp - s), sp + 1, (size_t)len - (size_t)(sp - s) - 1,
                           (int32_t)r);
    }
    return 0;
}

int inf__bpe_build_decoded(inf_tokenizer *t, inf_error *err)
{
    int32_t cp_to_byte[512];
    for (int i = 0; i < 512; i++)
        cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++)
        cp_to_byte[byte_to_cp((unsigned char)b)] = b;
    for (int id = 0; id < t->vocab_size; id++) {
        const unsigned char *p = (const unsigned char *)t->pieces[id];
        size_t n = t->piece_lens[id], o = 0;
        char *d = malloc(n + 1);
        if (!d)
            return inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
        if (t->types[id] == INF__TT_CONTROL || t->types[id] == INF__TT_UNUSED) {
            n = 0;
        } else if (t->types[id] == INF__TT_USER_DEFINED) {
            memcpy(d, p, n);
            o = n;
            n = 0;
        }
        for (size_t i = 0; i < n;) {
            size_t l;
            uint32_t cp = utf8_next(p + i, n - i, &l);
            if (cp < 512 && cp_to_byte[cp] >= 0) {
                d[o++] = (char)cp_to_byte[cp];
            } else {
                memcpy(d + o, p + i, l);
                o += l;
            }
            i += l;
        }
        d[o] = '\0';
        t->decoded[id] = d;
        t->decoded_lens[id] = (uint32_t)o;
    }
    return 0;
}

typedef struct bsym {
    size_t start, len;  /* bytes of the mapped word; len 0: merged away */
    int id;             /* token of this span, or -1 */
    int prev, next;
} bsym;

/* Queues the merge of symbol i with its right neighbour when it has a rank.
 * Priority is -rank (ranks < 2^24 are exact in a float). */
static int try_merge(inf__heap *h, const bsym *s, int i, const inf_tokenizer *t, inf_error *err)
{
    if (i < 0 || s[i].next < 0)
        return 0;
    int j = s[i].next;
    int r = merge_rank(t, s[i].id, s[j].id);
    if (r < 0)
        return 0;
    inf__bigram b = {-(float)r, i, j, s[i].len + s[j].len};
    return inf__heap_push(h, b, err);
}

/* BPE over one word given in GPT-2's alphabet: w[0..n), one symbol per
 * stand-in character to start with. */
static int bpe_word(int **ids, size_t *cnt, size_t *cap, const inf_tokenizer *t, const char *w,
                    size_t n, bsym *s, inf__heap *heap, inf_error *err)
{
    int ns = 0, rc;
    heap->n = 0;
    for (size_t at = 0; at < n;) {
        size_t l;
        utf8_next((const unsigned char *)w + at, n - at, &l);
        s[ns].start = at;
        s[ns].len = l;
        s[ns].id = inf__tok_lookup(t, w + at, l);
        s[ns].prev = ns - 1;
        s[ns].next = at + l < n ? ns + 1 : -1;
        ns++;
        at += l;
    }
    for (int i = 0; i < ns; i++)
        if ((rc = try_merge(heap, s, i, t, err)) != 0)
            return rc;
    /* Lowest rank first (leftmost on ties); stale entries are dropped. */
    inf__bigram top;
    while (inf__heap_pop(heap, &top)) {
        bsym *l = &s[top.left], *r = &s[top.right];
        if (l->len == 0 || r->len == 0 || l->next != top.right || l->len + r->len != top.size)
            continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = top.left;
        l->id = inf__tok_lookup(t, w + l->start, l->len);
        if ((rc = try_merge(heap, s, l->prev, t, err)) != 0 ||
            (rc = try_merge(heap, s, top.left, t, err)) != 0)
            return rc;
    }
    for (int i = 0; i >= 0; i = s[i].next) {
        if (s[i].id >= 0) {
            rc = inf__ids_push(ids, cnt, cap, s[i].id, err);
            if (rc)
                return rc;
            continue;
        }
        /* not a token: its stand-in characters one by one */
        for (size_t at = s[i].start; at < s[i].start + s[i].len;) {
            size_t l;
            utf8_next((const unsigned char *)w + at, s[i].start + s[i].len - at, &l);
            int id = inf__tok_lookup(t, w + at, l);
            if (id < 0)
                id = t->unk;
            if (id < 0)
                return inf__fail(err, INF_EINVALID, "tokenizer: no token for a byte of the text");
            rc = inf__ids_push(ids, cnt, cap, id, err);
            if (rc)
                return rc;
            at += l;
        }
    }
    return 0;
}

static bool is_falcon_punct(const cpt *c)
{
    return (c->cls & 7) == INF__UC_PUNCT ||
           (c->cp < 128 && c->cp && strchr("$+<=>^~|`", (int)c->cp) != NULL);
}

static bool is_digit3(const cpt *c)
{
    for (int k = 0; k < 3; k++)
        if (c[k].cp < '0' || c[k].cp > '9')
            return false;
    return true;
}

/* Splits code points c[0..n) into words with t's pre-tokenizer, calling
 * emit(ctx, a, b) for each word [a, b) in order. */
typedef int (*word_fn)(void *ctx, size_t a, size_t b);

static int split_words(const inf_tokenizer *t, const cpt *c, size_t n, word_fn emit, void *ctx)
{
    int rc;
    bool falcon = t->pre == INF__PRE_FALCON;
    for (size_t f0 = 0; f0 < n;) {
        /* Falcon: a run of punctuation, or a run of anything else */
        size_t f1 = n;
        if (falcon) {
            bool p = is_falcon_punct(&c[f0]);
            for (f1 = f0 + 1; f1 < n && is_falcon_punct(&c[f1]) == p; f1++)
                ;
        }
        for (size_t pos = f0; pos < f1;) {
            size_t end = t->pre == INF__PRE_LLAMA3   ? next_word_llama3(c, pos, f1, 3)
                         : t->pre == INF__PRE_QWEN2 ? next_word_llama3(c, pos, f1, 1)
                                                    : next_word(c, pos, f1);
            size_t g = pos;
            /* Falcon: [0-9]{3} groups cut out of the word, left to right */
            for (size_t i = pos; falcon && i + 3 <= end;) {
                if (is_digit3(&c[i])) {
                    if (i > g && (rc = emit(ctx, g, i)) != 0)
                        return rc;
                    if ((rc = emit(ctx, i, i + 3)) != 0)
                        return rc;
                    i += 3;
                    g = i;
                } else {
                    i++;
                }
            }
            if (g < end && (rc = emit(ctx, g, end)) != 0)
                return rc;
            pos = end;
        }
        f0 = f1;
    }
    return 0;
}

/* Code points of `len` bytes of text with their classes; *out is new (free). */
static int to_cpts(cpt **out, size_t *n_out, const char *text, size_t len, inf_error *err)
{
    cpt *c = malloc((len ? len : 1) * sizeof *c);
    if (!c)
        return inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
    size_t n = 0;
    for (size_t at = 0; at < len; n++) {
        size_t l;
        c[n].cp = utf8_next((const unsigned char *)text + at, len - at, &l);
        c[n].cls = c[n].cp == 0xFFFFFFFFu ? INF__UC_OTHER : uclass(c[n].cp);
        c[n].off = at;
        at += l;
    }
    *out = c;
    *n_out = n;
    return 0;
}

typedef struct enc_ctx {
    int **ids;
    size_t *n_ids, *cap;
    const inf_tokenizer *t;
    const char *text;
    size_t len;
    const cpt *c;
    size_t n;
    char *w;
    bsym *s;
    inf__heap *heap;
    inf_error *err;
} enc_ctx;

/* BPE over code points [a, b) of the text. */
static int emit_word(void *ctx, size_t a, size_t b)
{
    enc_ctx *e = ctx;
    size_t b0 = e->c[a].off, b1 = b < e->n ? e->c[b].off : e->len, wl = 0;
    for (size_t k = b0; k < b1; k++)
        wl += utf8_put(e->w + wl, byte_to_cp((unsigned char)e->text[k]));
    return bpe_word(e->ids, e->n_ids, e->cap, e->t, e->w, wl, e->s, e->heap, e->err);
}

int inf__bpe_encode(int **ids, size_t *n_ids, size_t *cap, const inf_tokenizer *t,
                    const char *text, size_t len, inf_error *err)
{
    if (len == 0)
        return 0;
    inf__heap heap = {0};
    cpt *c = NULL;
    size_t n;
    char *w = malloc(len * 2 + 1);          /* a stand-in character is at most 2 bytes */
    bsym *s = malloc(len * sizeof *s);
    int rc = to_cpts(&c, &n, text, len, err);
    if (rc)
        goto done;
    if (!w || !s) {
        rc = inf__fail(err, INF_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    enc_ctx e = {ids, n_ids, cap, t, text, len, c, n, w, s, &heap, err};
    rc = split_words(t, c, n, emit_word, &e);
done:
    free(heap.v);
    free(c);
    free(w);
    free(s);
    return rc;
}

typedef struct ends_ctx {
    size_t *ends, n, cap;
    const cpt *c;
    size_t n_cp, len;
} ends_ctx;

static int record_end(void *ctx, size_t a, size_t b)
{
    ends_ctx *e = ctx;
    if (e->n == e->cap) {
        size_t nc = e->cap ? 2 * e->cap : 16;
        size_t *p = realloc(e->ends, nc * sizeof *p);
        if (!p)
            return INF_ENOMEM;
        e->ends = p;
        e->cap = nc;
    }
    e->ends[e->n++] = b < e->n_cp ? e->c[b].off : e->len;
    return 0;
}

int inf__bpe_split(size_t **ends, size_t *n_words, const inf_tokenizer *t, const char *text,
                   size_t len, inf_error *err)
{
    *ends = NULL;
    *n_words = 0;
    cpt *c;
    size_t n;
    int rc = to_cpts(&c, &n, text, len, err);
    if (rc)
        return rc;
    ends_ctx e = {.c = c, .n_cp = n, .len = len};
    rc = split_words(t, c, n, record_end, &e);
    free(c);
    if (rc) {
        free(e.ends);
        return inf__fail(err, rc, "tokenizer: out of memory");
    }
    *ends = e.ends;
    *n_words = e.n;
    return 0;
}
