/*
 * Unicode canonical normalization (NFD, NFC) of UTF-8 text, for tokenizers
 * whose tokenizer.json asks for normalizer NFC (Qwen2 and others), following
 * UAX #15: full canonical decomposition (tables, plus Hangul syllables by
 * arithmetic), canonical ordering of combining marks by their class, then
 * canonical composition of primary composites (composition exclusions and
 * singletons are left out of the table by gen_unicode_nfc.py), Hangul L+V and
 * LV+T included. The tables follow Python's unicodedata of the same Unicode
 * version as unicode_tab.c; tests compare against unicodedata.normalize.
 */
#include <stdlib.h>
#include <string.h>

#include "inference/inference_int.h"

/* Hangul syllables: S = SBase + (L * VCount + V) * TCount + T */
#define H_SBASE 0xAC00u
#define H_LBASE 0x1100u
#define H_VBASE 0x1161u
#define H_TBASE 0x11A7u
#define H_LCOUNT 19u
#define H_VCOUNT 21u
#define H_TCOUNT 28u
#define H_NCOUNT (H_VCOUNT * H_TCOUNT)
#define H_SCOUNT (H_LCOUNT * H_NCOUNT)

/* Bytes that are not UTF-8 travel as RAW_BYTE + byte: above every code point,
 * class 0, no decomposition, no composition. */
#define RAW_BYTE 0x110000u

/* Decodes one code point at s[0..n); sets *len. Invalid sequences (overlong,
 * surrogates, truncated, stray continuation bytes) give RAW_BYTE + s[0] and
 * *len = 1. */
static uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
    unsigned char c = s[0];
    size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    *len = 1;
    if (need == 1)
        return c;
    if (need == 0 || need > n)
        return RAW_BYTE + c;
    uint32_t cp = c & (0x7Fu >> need);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return RAW_BYTE + c;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return RAW_BYTE + c;
    *len = need;
    return cp;
}

/* Writes cp (or a raw byte) at out; returns the bytes written (1..4). */
static size_t utf8_encode(char *out, uint32_t cp)
{
    if (cp >= RAW_BYTE) {
        out[0] = (char)(cp - RAW_BYTE);
        return 1;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Canonical combining class of cp (0 for starters and raw bytes). */
static unsigned ccc_of(uint32_t cp)
{
    size_t lo = 0, hi = inf__nfc_n_ccc;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < inf__nfc_ccc[mid].lo)
            hi = mid;
        else if (cp > inf__nfc_ccc[mid].hi)
            lo = mid + 1;
        else
            return inf__nfc_ccc[mid].ccc;
    }
    return 0;
}

/* cp's full canonical decomposition, or NULL when it has none (Hangul aside). */
static const inf__nfc_decomp *decomp_of(uint32_t cp)
{
    size_t lo = 0, hi = inf__nfc_n_decomps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < inf__nfc_decomps[mid].cp)
            hi = mid;
        else if (cp > inf__nfc_decomps[mid].cp)
            lo = mid + 1;
        else
            return &inf__nfc_decomps[mid];
    }
    return NULL;
}

/* The primary composite of (a, b), or 0 when there is none. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 &&
        b > H_TBASE && b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    size_t lo = 0, hi = inf__nfc_n_comps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const inf__nfc_comp *c = &inf__nfc_comps[mid];
        if (a < c->first || (a == c->first && b < c->second))
            hi = mid;
        else if (a > c->first || b > c->second)
            lo = mid + 1;
        else
            return c->composite;
    }
    return 0;
}

/* Appends cp's full canonical decomposition to cps[*n..]; returns the count
 * appended (at most 4, what the tables and Hangul need). */
static size_t decompose_into(uint32_t *cps, size_t n, uint32_t cp)
{
    if (cp >= H_SBASE && cp < H_SBASE + H_SCOUNT) {
        uint32_t s = cp - H_SBASE, t = s % H_TCOUNT;
        cps[n] = H_LBASE + s / H_NCOUNT;
        cps[n + 1] = H_VBASE + (s % H_NCOUNT) / H_TCOUNT;
        if (!t)
            return 2;
        cps[n + 2] = H_TBASE + t;
        return 3;
    }
    const inf__nfc_decomp *d = decomp_of(cp);
    if (!d) {
        cps[n] = cp;
        return 1;
    }
    memcpy(cps + n, inf__nfc_decomp_pool + d->at, d->len * sizeof *cps);
    return d->len;
}

/* Canonical ordering: a stable sort by class of every run of non-starters
 * (insertion sort; runs are short). ccc (n,) holds each one's class. */
static void canonical_order(uint32_t *cps, unsigned char *ccc, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        unsigned c = ccc[i];
        if (c == 0)
            continue;
        uint32_t cp = cps[i];
        size_t j = i;
        while (j > 0 && ccc[j - 1] > c) {
            cps[j] = cps[j - 1];
            ccc[j] = ccc[j - 1];
            j--;
        }
        cps[j] = cp;
        ccc[j] = (unsigned char)c;
    }
}

/*
 * Canonical composition in place (UAX #15's algorithm): each character
 * combines with the last starter when nothing between them blocks it (a
 * character of class 0, or of a class >= its own). Returns the new length.
 */
static size_t canonical_compose(uint32_t *cps, const unsigned char *ccc, size_t n)
{
    if (n == 0)
        return 0;
    size_t starter = 0, kept = 1;
    /* 256: a leading non-starter has no starter to combine with */
    unsigned last = ccc[0] == 0 ? 0 : 256;
    bool have_starter = ccc[0] == 0;
    for (size_t i = 1; i < n; i++) {
        unsigned c = ccc[i];
        /* last == 0: the last character kept is the starter itself */
        uint32_t composite = have_starter && (last < c || last == 0)
                                 ? compose_pair(cps[starter], cps[i])
                                 : 0;
        if (composite) {
            cps[starter] = composite;
            continue;
        }
        if (c == 0) {
            starter = kept;
            have_starter = true;
        }
        last = c;
        cps[kept++] = cps[i];
    }
    return kept;
}

int inf__unicode_normalize(char **out, size_t *out_len, const char *text, size_t len,
                           bool compose, inf_error *err)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t *cps = NULL;
    unsigned char *ccc = NULL;
    char *buf = NULL;
    int rc;
    *out = NULL;
    *out_len = 0;
    /* Text below U+0300 (lead bytes < CC) is its own NFC: no combining
     * marks, and what decomposes recomposes. Below U+00C0 (lead bytes < C3)
     * nothing decomposes either: its own NFD. */
    unsigned char first_lead = compose ? 0xCC : 0xC3;
    size_t i = 0;
    while (i < len && s[i] < first_lead)
        i++;
    if (i == len) {
        if (!(buf = malloc(len + 1)))
            return inf__fail(err, INF_ENOMEM, "normalize: out of memory");
        memcpy(buf, text, len);
        buf[len] = '\0';
        *out = buf;
        *out_len = len;
        return 0;
    }
    /* A code point of k >= 2 bytes decomposes to at most 2k code points
     * (U+0344: 2 bytes -> 2; U+1D160: 4 -> 3; Hangul: 3 -> 3), so 2*len
     * bound them; each takes at most 4 bytes back. */
    if (len > SIZE_MAX / 8 / sizeof *cps)
        return inf__fail(err, INF_ELIMIT, "normalize: %zu bytes of text is too long", len);
    cps = malloc(2 * len * sizeof *cps);
    ccc = malloc(2 * len);
    if (!cps || !ccc) {
        rc = inf__fail(err, INF_ENOMEM, "normalize: out of memory");
        goto done;
    }
    size_t n = 0;
    for (i = 0; i < len;) {
        size_t l;
        uint32_t cp = utf8_decode(s + i, len - i, &l);
        n += decompose_into(cps, n, cp);
        i += l;
    }
    for (size_t k = 0; k < n; k++)
        ccc[k] = (unsigned char)ccc_of(cps[k]);
    canonical_order(cps, ccc, n);
    if (compose)
        n = canonical_compose(cps, ccc, n);
    if (!(buf = malloc(4 * n + 1))) {
        rc = inf__fail(err, INF_ENOMEM, "normalize: out of memory");
        goto done;
    }
    size_t bl = 0;
    for (size_t k = 0; k < n; k++)
        bl += utf8_encode(buf + bl, cps[k]);
    buf[bl] = '\0';
    *out = buf;
    *out_len = bl;
    buf = NULL;
    rc = 0;
done:
    free(cps);
    free(ccc);
    free(buf);
    return rc;
}
