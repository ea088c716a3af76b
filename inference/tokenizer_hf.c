/*
 * HuggingFace tokenizer.json: model.type "BPE" in two families.
 *
 *   Byte-level (GPT-2, Llama 3, Qwen2): pre_tokenizer ByteLevel (GPT-2's
 *   regex), or a Sequence of Split {Regex: the Llama 3, Qwen2 or GPT-2
 *   pattern} and ByteLevel {use_regex: false}. Encoded by tokenizer_bpe.c
 *   with the matching hand-written splitter and the merges by rank.
 *
 *   SentencePiece style (HF Llama 2, Mistral, TinyLlama): byte_fallback,
 *   normalizer Prepend "▁" + Replace " " -> "▁" (or pre_tokenizer Metaspace
 *   without split). Encoded by tokenizer_sp.c: each token's score is minus
 *   the rank of the first merge that makes it, and only tokens some merge
 *   makes can be formed, so the highest-scoring adjacent pair is the
 *   lowest-ranked merge. That is HF's merge-rank BPE whenever the merges
 *   list every split of a token (transformers' SentencePiece converter writes
 *   them so); ties between different pairs forming one token go leftmost.
 *
 * added_tokens: special ones become control tokens (matched in text only
 * with INF_TOK_SPECIAL, decoded as ""); the others always match and decode
 * as their text. normalizer NFC (alone, or in a Sequence with the
 * SentencePiece pair) makes encode normalize text to NFC first
 * (unicode_nfc.c). Any other normalizer, pre-tokenizer or model type is
 * refused when loading, by name.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "inference/inference_int.h"

#define HF_TOK_MAX_JSON (256u << 20)

/* The split regexes as tokenizer.json spells them (JSON-decoded). */
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *type_of(const json_t *j)
{
    const char *t = json_string_value(json_object_get(j, "type"));
    return t ? t : "?";
}

/* Byte-level pre-tokenizer -> kind; INF_EINVALID naming what is not supported. */
static int byte_level_kind(inf__pre_kind *kind, const json_t *pre, const char *path,
                           inf_error *err)
{
    const char *ty = type_of(pre);
    if (!strcmp(ty, "ByteLevel")) {
        if (json_is_true(json_object_get(pre, "add_prefix_space")))
            return inf__fail(err, INF_EINVALID,
                             "%s: ByteLevel add_prefix_space is not supported", path);
        if (json_is_false(json_object_get(pre, "use_regex")))
            return inf__fail(err, INF_EINVALID,
                             "%s: ByteLevel without a split regex is not supported", path);
        *kind = INF__PRE_GPT2;
        return 0;
    }
    json_t *seq = json_object_get(pre, "pretokenizers");
    if (strcmp(ty, "Sequence") || json_array_size(seq) != 2)
        return inf__fail(err, INF_EINVALID, "%s: pre_tokenizer '%s' is not supported", path, ty);
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"),
                                                       "Regex"));
    const char *beh = json_string_value(json_object_get(split, "behavior"));
    if (strcmp(type_of(split), "Split") || strcmp(type_of(bl), "ByteLevel") || !re || !beh ||
        strcmp(beh, "Isolated") || json_is_true(json_object_get(split, "invert")) ||
        json_is_true(json_object_get(bl, "add_prefix_space")) ||
        json_is_true(json_object_get(bl, "use_regex")))
        return inf__fail(err, INF_EINVALID,
                         "%s: pre_tokenizer Sequence is supported only as Split (Isolated) + "
                         "ByteLevel",
                         path);
    if (!strcmp(re, RE_LLAMA3))
        *kind = INF__PRE_LLAMA3;
    else if (!strcmp(re, RE_QWEN2))
        *kind = INF__PRE_QWEN2;
    else if (!strcmp(re, RE_GPT2))
        *kind = INF__PRE_GPT2;
    else
        return inf__fail(err, INF_EINVALID,
                         "%s: the pre-tokenizer's split regex is not one of GPT-2's, Llama 3's "
                         "or Qwen2's",
                         path);
    return 0;
}

/* SentencePiece-style normalizer: Prepend "▁" then Replace " " -> "▁". */
static bool is_spm_normalizer(const json_t *n)
{
    json_t *seq = json_object_get(n, "normalizers");
    if (strcmp(type_of(n), "Sequence") || json_array_size(seq) != 2)
        return false;
    json_t *a = json_array_get(seq, 0), *b = json_array_get(seq, 1);
    const char *pre = json_string_value(json_object_get(a, "prepend"));
    const char *pat = json_string_value(json_object_get(json_object_get(b, "pattern"), "String"));
    const char *con = json_string_value(json_object_get(b, "content"));
    return !strcmp(type_of(a), "Prepend") && pre && !strcmp(pre, "\xe2\x96\x81") &&
           !strcmp(type_of(b), "Replace") && pat && !strcmp(pat, " ") && con &&
           !strcmp(con, "\xe2\x96\x81");
}

/*
 * Reads a normalizer: NFC, SentencePiece's pair, or a Sequence of NFC and
 * that pair (NFC commutes with Prepend/Replace "▁": neither U+0020 nor U+2581
 * is part of a canonical composition). Returns false for anything else.
 */
static bool read_normalizer(bool *spm, bool *nfc, const json_t *n)
{
    *spm = *nfc = false;
    if (!strcmp(type_of(n), "NFC"))
        return *nfc = true;
    if (is_spm_normalizer(n))
        return *spm = true;
    json_t *seq = json_object_get(n, "normalizers");
    if (strcmp(type_of(n), "Sequence") || !json_is_array(seq))
        return false;
    /* the Sequence without its NFC entries must be empty or the SPM pair */
    json_t *rest = json_array();
    size_t i;
    json_t *item;
    bool ok = rest != NULL;
    json_array_foreach(seq, i, item) {
        if (!ok)
            break;
        if (!strcmp(type_of(item), "NFC"))
            *nfc = true;
        else
            ok = json_array_append(rest, item) == 0;
    }
    json_t *pair = ok ? json_pack("{s:s, s:O}", "type", "Sequence", "normalizers", rest) : NULL;
    if (ok && json_array_size(rest) > 0)
        ok = pair && (*spm = is_spm_normalizer(pair));
    json_decref(pair);
    json_decref(rest);
    return ok && *nfc;
}

/* Metaspace "▁" that prepends and does not split. */
static bool is_metaspace(const json_t *p)
{
    const char *r = json_string_value(json_object_get(p, "replacement"));
    const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
    return !strcmp(type_of(p), "Metaspace") && r && !strcmp(r, "\xe2\x96\x81") &&
           !json_is_true(json_object_get(p, "split")) &&
           (!scheme || !strcmp(scheme, "first") || !strcmp(scheme, "always"));
}

/* Id of a token named in tokenizer_config.json ("bos_token": "<s>" or
 * {"content": "<s>"}), or -1. */
static int config_token(const inf_tokenizer *t, const json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    const char *s = json_is_string(v) ? json_string_value(v)
                                      : json_string_value(json_object_get(v, "content"));
    return s ? inf__tok_lookup(t, s, strlen(s)) : -1;
}

/* Copies a vocabulary string; SentencePiece-style "▁" becomes ' '. */
static char *dup_piece(const char *s, size_t len, bool spm, uint32_t *out_len)
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

static int cmp_added(const void *a, const void *b, void *arg)
{
    const inf_tokenizer *t = arg;
    int x = *(const int *)a, y = *(const int *)b;
    if (t->piece_lens[x] != t->piece_lens[y])
        return t->piece_lens[x] > t->piece_lens[y] ? -1 : 1;
    return x - y;
}

/* One merge entry: "left right" or ["left", "right"]. */
static int merge_parts(const json_t *m, const char **l, size_t *ll, const char **r, size_t *rl)
{
    if (json_is_array(m) && json_array_size(m) == 2 &&
        json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
        *l = json_string_value(json_array_get(m, 0));
        *ll = json_string_length(json_array_get(m, 0));
        *r = json_string_value(json_array_get(m, 1));
        *rl = json_string_length(json_array_get(m, 1));
        return 0;
    }
    const char *s = json_string_value(m);
    size_t len = json_string_length(m);
    const char *sp = s && len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
    if (!sp)
        return -1;
    *l = s;
    *ll = (size_t)(sp - s);
    *r = sp + 1;
    *rl = len - *ll - 1;
    return 0;
}

int inf_tokenizer_load_hf(inf_tokenizer **out, const char *path, inf_error *err)
{
    *out = NULL;
    int rc;
    json_t *root = NULL, *tcfg = NULL;
    inf_tokenizer *t = NULL;
    char file[4096], dir[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
    }
    if (stat(file, &st) != 0) {
        rc = inf__fail(err, INF_EIO, "%s: cannot open: %s", file, strerror(errno));
        goto done;
    }
    if (st.st_size > (off_t)HF_TOK_MAX_JSON) {
        rc = inf__fail(err, INF_EINVALID, "%s: %lld bytes is too large", file,
                       (long long)st.st_size);
        goto done;
    }
    json_error_t je;
    root = json_load_file(file, 0, &je);
    if (!root) {
        rc = inf__fail(err, INF_EINVALID, "%s: bad JSON at line %d: %s", file, je.line, je.text);
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model) || strcmp(type_of(model), "BPE")) {
        rc = inf__fail(err, INF_EINVALID, "%s: model type '%s' is not supported (BPE)", file,
                       json_is_object(model) ? type_of(model) : "(none)");
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab) || !json_is_array(merges)) {
        rc = inf__fail(err, INF_EINVALID, "%s: model.vocab must be an object and model.merges "
                                          "an array",
                       file);
        goto done;
    }
    if (added && !json_is_array(added) && !json_is_null(added)) {
        rc = inf__fail(err, INF_EINVALID, "%s: added_tokens must be an array", file);
        goto done;
    }
    const char *cfg_unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *v = json_string_value(json_object_get(model, cfg_unsupported[i]));
        if (v && *v) {
            rc = inf__fail(err, INF_EINVALID, "%s: model.%s is not supported", file,
                           cfg_unsupported[i]);
            goto done;
        }
    }

    /* which family */
    json_t *norm = json_object_get(root, "normalizer"), *pre = json_object_get(root,
                                                                                "pre_tokenizer");
    bool spm = false, nfc = false;
    inf__pre_kind kind = INF__PRE_GPT2;
    if (norm && !json_is_null(norm) && !read_normalizer(&spm, &nfc, norm)) {
        rc = inf__fail(err, INF_EINVALID, "%s: normalizer '%s' is not supported (NFC, "
                                          "SentencePiece's Prepend + Replace, or a Sequence "
                                          "of them)",
                       file, type_of(norm));
        goto done;
    }
    if (pre && !json_is_null(pre)) {
        if (is_metaspace(pre) && !spm) {
            spm = true;
        } else if (spm) {
            rc = inf__fail(err, INF_EINVALID, "%s: pre_tokenizer '%s' with a SentencePiece "
                                              "normalizer is not supported",
                           file, type_of(pre));
            goto done;
        } else if ((rc = byte_level_kind(&kind, pre, file, err)) != 0) {
            goto done;
        }
    } else if (!spm) {
        rc = inf__fail(err, INF_EINVALID, "%s: no pre_tokenizer and no SentencePiece normalizer: "
                                          "not a byte-level or SentencePiece-style BPE",
                       file);
        goto done;
    }

    /* vocabulary size: the largest id + 1 */
    long long n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= INF_MAX_VOCAB) {
            rc = inf__fail(err, INF_EINVALID, "%s: vocab id of '%.40s' is not in [0, %d)", file,
                           key, INF_MAX_VOCAB);
            goto done;
        }
        if (json_integer_value(v) + 1 > n)
            n = json_integer_value(v) + 1;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INF_MAX_VOCAB ||
            !json_is_string(json_object_get(v, "content"))) {
            rc = inf__fail(err, INF_EINVALID, "%s: added_tokens[%zu] needs an id in [0, %d) and "
                                              "a content string",
                           file, i, INF_MAX_VOCAB);
            goto done;
        }
        if (json_integer_value(id) + 1 > n)
            n = json_integer_value(id) + 1;
    }
    if (n == 0) {
        rc = inf__fail(err, INF_EINVALID, "%s: the vocabulary is empty", file);
        goto done;
    }
    t = inf__tok_alloc((int)n);
    if (!t) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory for %lld tokens", file, n);
        goto done;
    }
    json_object_foreach(vocab, key, v) {
        int id = (int)json_integer_value(v);
        if (t->pieces[id]) {
            rc = inf__fail(err, INF_EINVALID, "%s: id %d appears twice in the vocabulary", file,
                           id);
            goto done;
        }
        t->pieces[id] = dup_piece(key, strlen(key), spm, &t->piece_lens[id]);
        if (!t->pieces[id]) {
            rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", file);
            goto done;
        }
    }
    t->n_added = 0;
    t->added = malloc((json_array_size(added) + 1) * sizeof *t->added);
    if (!t->added) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", file);
        goto done;
    }
    json_array_foreach(added, i, v) {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        json_t *c = json_object_get(v, "content");
        uint32_t len;
        char *p = dup_piece(json_string_value(c), json_string_length(c), false, &len);
        if (!p) {
            rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", file);
            goto done;
        }
        if (len == 0) {
            free(p);
            rc = inf__fail(err, INF_EINVALID, "%s: added token %d is empty", file, id);
            goto done;
        }
        free(t->pieces[id]);    /* the added token's text wins over a vocab entry */
        t->pieces[id] = p;
        t->piece_lens[id] = len;
        t->types[id] = json_is_true(json_object_get(v, "special")) ? INF__TT_CONTROL
                                                                   : INF__TT_USER_DEFINED;
        t->added[t->n_added++] = id;
        t->added_first[(unsigned char)p[0] >> 3] |= (uint8_t)(1u << ((unsigned char)p[0] & 7));
    }
    qsort_r(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added, t);
    for (int id = 0; id < n; id++)
        if (!t->pieces[id]) {   /* a hole in the ids: never produced */
            t->pieces[id] = strdup("");
            t->types[id] = INF__TT_UNUSED;
            if (!t->pieces[id]) {
                rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", file);
                goto done;
            }
        }
    if ((rc = inf__tok_build_index(t, err)) != 0)
        goto done;

    /* merges */
    size_t n_merges = json_array_size(merges);
    if (spm) {
        for (int id = 0; id < n; id++)
            t->scores[id] = -INFINITY;
    } else if ((rc = inf__bpe_merges_alloc(t, n_merges, file, err)) != 0) {
        goto done;
    }
    char *cat = NULL;
    size_t cat_cap = 0;
    json_array_foreach(merges, i, v) {
        const char *l, *r;
        size_t ll, rl;
        if (merge_parts(v, &l, &ll, &r, &rl)) {
            free(cat);
            rc = inf__fail(err, INF_EINVALID, "%s: merges[%zu] is not \"left right\"", file, i);
            goto done;
        }
        if (!spm) {
            inf__bpe_merge_add(t, l, ll, r, rl, (int32_t)i);
            continue;
        }
        /* SentencePiece style: the merged token's score is -(its first rank) */
        if (ll + rl + 1 > cat_cap) {
            cat_cap = 2 * (ll + rl + 1);
            char *nc = realloc(cat, cat_cap);
            if (!nc) {
                free(cat);
                rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", file);
                goto done;
            }
            cat = nc;
        }
        memcpy(cat, l, ll);
        memcpy(cat + ll, r, rl);
        uint32_t cl;
        char *norm_cat = dup_piece(cat, ll + rl, true, &cl);
        if (!norm_cat) {
            free(cat);
            rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", file);
            goto done;
        }
        int id = inf__tok_lookup(t, norm_cat, cl);
        free(norm_cat);
        if (id >= 0 && t->scores[id] == -INFINITY)
            t->scores[id] = -(float)i;
    }
    free(cat);

    /* BOS / EOS from tokenizer_config.json when there is one */
    json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk))
        t->unk = inf__tok_lookup(t, json_string_value(unk), json_string_length(unk));
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    if (stat(cfg_path, &st) == 0 && st.st_size < (off_t)HF_TOK_MAX_JSON) {
        tcfg = json_load_file(cfg_path, 0, &je);
        if (!tcfg) {
            rc = inf__fail(err, INF_EINVALID, "%s: bad JSON at line %d: %s", cfg_path, je.line,
                           je.text);
            goto done;
        }
        t->bos = config_token(t, tcfg, "bos_token");
        t->eos = config_token(t, tcfg, "eos_token");
    } else if (spm) {
        t->bos = inf__tok_lookup(t, "<s>", 3);
        t->eos = inf__tok_lookup(t, "</s>", 4);
    }
    t->nfc = nfc;
    if (spm) {
        t->kind = INF__TOK_SPM;
        t->encode = inf__spm_encode;
        t->add_space_prefix = true;
        t->spm_merges_only = true;
        if (!json_is_true(json_object_get(model, "byte_fallback"))) {
            rc = inf__fail(err, INF_EINVALID, "%s: a SentencePiece-style BPE needs "
                                              "byte_fallback",
                           file);
            goto done;
        }
        for (int id = 0; id < n; id++)
            if (t->types[id] == INF__TT_NORMAL && t->piece_lens[id] == 6 &&
                !memcmp(t->pieces[id], "<0x", 3))
                t->types[id] = INF__TT_BYTE;
        inf__spm_find_byte_ids(t, true);
        rc = inf__spm_build_decoded(t, err);
    } else {
        t->kind = INF__TOK_BPE;
        t->encode = inf__bpe_encode;
        t->pre = kind;
        rc = inf__bpe_build_decoded(t, err);
    }
    if (rc)
        goto done;
    *out = t;
    t = NULL;
done:
    json_decref(root);
    json_decref(tcfg);
    inf_tokenizer_free(t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The writer */

/* A vocabulary string as tokenizer.json spells it (SPM: ' ' -> "▁"). New. */
static json_t *piece_json(const inf_tokenizer *t, int id)
{
    const char *p = t->pieces[id];
    size_t n = t->piece_lens[id];
    if (t->kind != INF__TOK_SPM || t->types[id] == INF__TT_CONTROL ||
        t->types[id] == INF__TT_USER_DEFINED)
        return json_stringn(p, n);
    char *buf = malloc(3 * n + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(buf + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            buf[o++] = p[i];
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

typedef struct merge_rec {
    float key;      /* sort: higher first */
    int id, left, right;
} merge_rec;

static int cmp_merge(const void *a, const void *b)
{
    const merge_rec *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    if (x->id != y->id)
        return x->id - y->id;
    return x->left - y->left;
}

int inf_tokenizer_save_hf(const inf_tokenizer *t, const char *dir, inf_error *err)
{
    int rc;
    char path[4096];
    json_t *cfg = NULL;
    json_t *root = json_object(), *vocab = json_object(), *merges = json_array(),
           *added = json_array();
    merge_rec *recs = NULL;
    size_t n_recs = 0, cap = 0;
    if (!root || !vocab || !merges || !added) {
        rc = inf__fail(err, INF_ENOMEM, "save tokenizer: out of memory");
        goto done;
    }
    for (int id = 0; id < t->vocab_size; id++) {
        if (t->types[id] == INF__TT_UNUSED && t->piece_lens[id] == 0)
            continue;
        json_t *p = piece_json(t, id);
        if (!p) {
            rc = inf__fail(err, INF_EINVALID, "save tokenizer: token %d is not valid UTF-8 "
                                              "(or out of memory)",
                           id);
            goto done;
        }
        if (t->types[id] == INF__TT_CONTROL || t->types[id] == INF__TT_USER_DEFINED)
            json_array_append_new(added,
                                  json_pack("{s:i, s:O, s:b, s:b, s:b, s:b, s:b}", "id", id,
                                            "content", p, "single_word", 0, "lstrip", 0,
                                            "rstrip", 0, "normalized", 0, "special",
                                            t->types[id] == INF__TT_CONTROL));
        json_object_set_new_nocheck(vocab, json_string_value(p), json_integer(id));
        json_decref(p);
    }
    /* merges: SPM from scores (every split of a token into two tokens, by the
     * merged token's score, then id, then left id); BPE from the rank table */
    if (t->kind == INF__TOK_SPM) {
        for (int id = 0; id < t->vocab_size; id++) {
            if (t->types[id] != INF__TT_NORMAL && t->types[id] != INF__TT_USER_DEFINED)
                continue;
            const char *p = t->pieces[id];
            for (uint32_t k = 1; k < t->piece_lens[id]; k++) {
                int l = inf__tok_lookup(t, p, k), r = inf__tok_lookup(t, p + k,
                                                                      t->piece_lens[id] - k);
                if (l < 0 || r < 0)
                    continue;
                if (n_recs == cap) {
                    cap = cap ? 2 * cap : 1024;
                    merge_rec *nr = realloc(recs, cap * sizeof *nr);
                    if (!nr) {
                        rc = inf__fail(err, INF_ENOMEM, "save tokenizer: out of memory");
                        goto done;
                    }
                    recs = nr;
                }
                recs[n_recs++] = (merge_rec){t->scores[id], id, l, r};
            }
        }
    } else {
        recs = malloc((t->merge_cap ? t->merge_cap : 1) * sizeof *recs);
        if (!recs) {
            rc = inf__fail(err, INF_ENOMEM, "save tokenizer: out of memory");
            goto done;
        }
        for (size_t s = 0; s < t->merge_cap; s++)
            if (t->merge_ranks[s] >= 0)
                recs[n_recs++] = (merge_rec){-(float)t->merge_ranks[s], 0,
                                             (int)(t->merge_keys[s] >> 32),
                                             (int)(uint32_t)t->merge_keys[s]};
    }
    qsort(recs, n_recs, sizeof *recs, cmp_merge);
    for (size_t k = 0; k < n_recs; k++) {
        json_t *l = piece_json(t, recs[k].left), *r = piece_json(t, recs[k].right);
        if (!l || !r) {
            json_decref(l);
            json_decref(r);
            rc = inf__fail(err, INF_ENOMEM, "save tokenizer: out of memory");
            goto done;
        }
        json_array_append_new(merges, json_pack("[O,O]", l, r));
        json_decref(l);
        json_decref(r);
    }
    json_t *model = json_pack("{s:s, s:O, s:O, s:b, s:b}", "type", "BPE", "vocab", vocab,
                              "merges", merges, "byte_fallback", t->kind == INF__TOK_SPM,
                              "fuse_unk", t->kind == INF__TOK_SPM);
    if (t->unk >= 0)
        json_object_set_new(model, "unk_token", piece_json(t, t->unk));
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "model", model);
    json_object_set(root, "added_tokens", added);
    if (t->kind == INF__TOK_SPM) {
        json_t *norms = json_pack("[{s:s, s:s}, {s:s, s:{s:s}, s:s}]", "type", "Prepend",
                                  "prepend", "\xe2\x96\x81", "type", "Replace", "pattern",
                                  "String", " ", "content", "\xe2\x96\x81");
        if (norms && t->nfc)
            json_array_insert_new(norms, 0, json_pack("{s:s}", "type", "NFC"));
        json_object_set_new(root, "normalizer",
                            json_pack("{s:s, s:o}", "type", "Sequence", "normalizers", norms));
        json_object_set_new(root, "pre_tokenizer", json_null());
    } else {
        const char *re = t->pre == INF__PRE_LLAMA3  ? RE_LLAMA3
                         : t->pre == INF__PRE_QWEN2 ? RE_QWEN2
                                                    : RE_GPT2;
        if (t->pre == INF__PRE_FALCON) {
            rc = inf__fail(err, INF_EINVALID, "save tokenizer: Falcon's pre-tokenizer has no "
                                              "tokenizer.json form here");
            goto done;
        }
        json_object_set_new(root, "normalizer", t->nfc ? json_pack("{s:s}", "type", "NFC")
                                                       : json_null());
        json_object_set_new(
            root, "pre_tokenizer",
            json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type",
                      "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex", re,
                      "behavior", "Isolated", "invert", 0, "type", "ByteLevel",
                      "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0));
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (json_dump_file(root, path, JSON_INDENT(1))) {
        rc = inf__fail(err, INF_EIO, "%s: cannot write", path);
        goto done;
    }
    cfg = json_object();
    if (t->bos >= 0)
        json_object_set_new(cfg, "bos_token", piece_json(t, t->bos));
    if (t->eos >= 0)
        json_object_set_new(cfg, "eos_token", piece_json(t, t->eos));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (json_dump_file(cfg, path, JSON_INDENT(1))) {
        rc = inf__fail(err, INF_EIO, "%s: cannot write", path);
        goto done;
    }
    rc = 0;
done:
    json_decref(cfg);
    free(recs);
    json_decref(root);
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    return rc;
}
