/*
 * inference internals shared between the files of inference/. Not for other
 * modules: they use inference.h.
 */
#ifndef ENVSRV_INFERENCE_INT_H
#define ENVSRV_INFERENCE_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "inference/inference.h"

/* Fills err (may be NULL) and returns `code`. */
int inf__fail(inf_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Most mapped files one model may own (safetensors shards). */
#define INF__MAX_MAPS 256

struct inf__gguf;

struct inf_model {
    inf_config config;
    inf_weights w;              /* points into the maps, `owned` or the caller's arrays */
    inf_layer *layers;          /* (n_layers,) owned copy that w.layers points to */
    float *rope_inv_freq;       /* (head_dim/2,) owned; theta^(-2i/head_dim), scaled */
    void *map;                  /* mmap'ed file, or NULL */
    size_t map_len;
    void *maps[INF__MAX_MAPS];  /* more mmap'ed files (shards), owned */
    size_t map_lens[INF__MAX_MAPS];
    int n_maps;
    float *owned;               /* f32 copies of vectors converted at load, or NULL; owned */
    struct inf__gguf *gguf;     /* the GGUF file the weights point into, or NULL; owned */
};

/* Q8_0 blocks: 32 weights as {uint16 f16 scale, int8 q[32]}. */
#define INF__Q8_BLOCK 32
#define INF__Q8_BYTES 34

/* Exact scalar conversions; f32 -> half types round to nearest even. */
float inf__f16_to_f32(uint16_t h);
uint16_t inf__f32_to_f16(float f);
float inf__bf16_to_f32(uint16_t h);
uint16_t inf__f32_to_bf16(float f);

/* Validates `c` (every field in range, consistent). Returns 0 or INF_EINVALID
 * with a message naming the field; `what` names the source ("stories.bin"). */
int inf__config_check(const inf_config *c, const char *what, inf_error *err);

/* Fills m->config, m->w and m->layers (copied from `layers`) and the RoPE
 * table. `m` is zeroed by the caller; on failure it may hold allocations that
 * inf_model_free releases. */
int inf__model_init(inf_model *m, const inf_config *c, const inf_weights *w, inf_error *err);

/* One tensor as a writer stores it (hf.c, gguf_model.c): its name in the
 * file format and where the model holds it. Borrowed from the model. */
typedef struct inf__out_tensor {
    char name[96];
    inf_mat mat;            /* matrices */
    const float *vec;       /* vectors */
    int rows, cols;         /* cols 0: a vector */
    int permute_hd;         /* > 0: reorder the rows of each head of this size (a RoPE
                               layout change, for q and k) */
    bool to_half;           /* with permute_hd: interleaved -> half order, else the reverse */
    /* the writer's own bookkeeping */
    inf_dtype type;         /* GGUF: the type stored */
    uint64_t offset, bytes; /* GGUF: where its data goes */
    int shard;              /* HF: which safetensors file */
} inf__out_tensor;

typedef enum inf__tensor_names { INF__NAMES_HF, INF__NAMES_GGUF } inf__tensor_names;

/* Tensors a model can have: embeddings, final norm, classifier, and at most
 * 12 a layer (q/k/v biases and q/k norms are never both present). */
#define INF__MAX_OUT_TENSORS(n_layers) (3 + (size_t)(n_layers) * 12)

/* Fills ts (INF__MAX_OUT_TENSORS entries) with m's tensors named the way
 * `names` says, in the order the writers store them; q and k (and their
 * biases and norms) get permute_hd and to_half. A classifier tied to the
 * embeddings is not listed. Returns the count. */
int inf__model_out_tensors(inf__out_tensor *ts, const inf_model *m, inf__tensor_names names,
                           int permute_hd, bool to_half);

/* The source row of destination row r of t (the RoPE layout permutation). */
int inf__out_tensor_src_row(const inf__out_tensor *t, int r);

/*
 * The operations a backend implements. Activations are float32 and row-major;
 * a batch of B vectors of width n is (B, n). The forward pass (forward.c)
 * calls only these, so a CUDA table can replace the CPU one without touching
 * the model code. Each operation computes every output element with the same
 * arithmetic in the same order whatever B is, so a sequence's results do not
 * depend on what else is in its batch.
 */
typedef struct inf__ops {
    const char *name;
    /* W (d,n) of any inf_dtype @ X (B,n) f32 -> out (B,d) f32, batch row k of
     * out at out + k*ldo; bias (d,) added when not NULL; scratch (4n,) floats.
     * Each out element is one dot product in a fixed order whatever B and
     * the CPU path (see forward_cpu.c), so the rows of W can also be split
     * between threads (pass the slice's W, bias and out) without changing
     * any result. */
    void (*matmul)(float *out, size_t ldo, const float *x, inf_mat w, const float *bias, int b,
                   int n, int d, float *scratch);
    /* out (n,) = x (n,) / rms(x) * weight (n,); out may alias x */
    void (*rmsnorm)(float *out, const float *x, const float *weight, int n, float eps);
    /* rotates v (n_heads, head_dim) in place for position pos; inv_freq (head_dim/2,) */
    void (*rope)(float *v, int n_heads, int head_dim, int pos, const float *inv_freq,
                 inf_rope_style style);
    /* x (n,) -> softmax(x) in place */
    void (*softmax)(float *x, int n);
    /* one query head over positions 0..n_pos-1: q (head_dim,), keys/values at
     * k + t*stride, v + t*stride (head_dim,) each; att (n_pos,) scratch;
     * out (head_dim,) = sum_t softmax(q.k_t / sqrt(head_dim))_t v_t */
    void (*attention)(float *out, float *att, const float *q, const float *k, const float *v,
                      int n_pos, int head_dim, size_t stride);
    /* hb (n,) = silu(hb) * up (n,) */
    void (*swiglu)(float *hb, const float *up, int n);
    /* x (n,) += y (n,) */
    void (*add)(float *x, const float *y, int n);
} inf__ops;

extern const inf__ops inf__ops_cpu;

/* CPU feature bits the CPU kernels must not use, for tests that compare the
 * paths (which give the same bits): 1 AVX + F16C (and so everything below),
 * 2 FMA, 4 AVX-512F. 0 by default; change it only while no forward pass
 * runs. */
#define INF__CPU_AVX    1
#define INF__CPU_FMA    2
#define INF__CPU_AVX512 4
extern int inf__cpu_disabled;

/* Prompt positions a prefill pass runs at once (inf_generate): enough rows
 * that each weight row, read and converted once, feeds many dot products.
 * Measured on the Qwen2.5-0.5B-shaped bf16 model (bench/infer_bench.c), a
 * 128-token prompt: 16/32/64/96/128 rows gave 122/155/187/169/182 tokens/s
 * on 1 thread and 199/254/284/290/309 on 2. */
#define INF__PREFILL_ROWS 128

/* Like inf_state_new, with activation buffers for `n_rows` rows a pass
 * (n_seqs <= n_rows <= INF_MAX_SAMPLES) apart from the KV caches of n_seqs
 * sequences: a prefill state holds one sequence and many prompt rows. */
int inf__state_new(inf_state **out, const inf_model *m, int n_seqs, int n_rows, int max_len,
                   inf_error *err);

/*
 * Runs one step for `b` sequences of `s` (b <= n_seqs) at the same position
 * `pos`: seqs (b,) which sequences, tokens (b,) their input tokens. Logits go
 * to inf__state_logits(s, i) for batch row i. The caller has checked ranges.
 */
void inf__forward_batch(inf_state *s, const int *seqs, const int *tokens, int b, int pos);

/*
 * Runs tokens (n,) at positions pos..pos+n-1 of sequence `seq` (positions
 * before pos must have been run), in passes of up to the state's n_rows
 * positions. Logits of the last token only go to inf__state_logits(s, 0).
 * The cache and those logits are bit-identical to running the tokens one at
 * a time with inf__forward_batch. The caller has checked ranges
 * (pos + n <= max_len).
 */
void inf__forward_prompt(inf_state *s, int seq, const int *tokens, int n, int pos);

/* Logits (vocab_size,) of row i of the last forward pass. Borrowed. */
const float *inf__state_logits(const inf_state *s, int i);

/* Keys (values when `values`) of sequence `seq` at layer `layer`: max_len
 * positions of (n_kv_heads * head_dim,) floats each. Borrowed, for tests. */
const float *inf__state_cache(const inf_state *s, bool values, int seq, int layer);

/* Copies positions [0, n_pos) of sequence `src_seq` of `src` into sequence
 * `dst_seq` of `dst` (same model). */
void inf__state_copy_kv(inf_state *dst, int dst_seq, const inf_state *src, int src_seq, int n_pos);

/* log(sum(exp(logits))) over n, in double. */
double inf__logsumexp(const float *logits, int n);

/* inf_sample_token, also giving *lse = inf__logsumexp(logits, n) (the same
 * bits) when the sampling already summed its terms (temperature 1, no
 * top_k, top_p or min_p), NAN otherwise. lse may be NULL. */
int inf__sample_token(const float *logits, int n, const inf_gen_options *opts, uint64_t sample,
                      uint64_t step, double *work_p, int *work_idx, double *lse);

/* ------------------------------------------------------------------------ */
/* GGUF (gguf.c) */

/* GGUF metadata value types. */
enum {
    INF__GGUF_U8 = 0, INF__GGUF_I8, INF__GGUF_U16, INF__GGUF_I16, INF__GGUF_U32, INF__GGUF_I32,
    INF__GGUF_F32, INF__GGUF_BOOL, INF__GGUF_STRING, INF__GGUF_ARRAY, INF__GGUF_U64,
    INF__GGUF_I64, INF__GGUF_F64, INF__GGUF_NTYPES
};

/* GGUF tensor types this project reads (ggml_type numbers). */
#define INF__GGML_F32   0
#define INF__GGML_F16   1
#define INF__GGML_Q8_0  8
#define INF__GGML_BF16  30

/* One metadata entry; all offsets were bounds-checked by inf__gguf_open. */
typedef struct inf__gguf_kv {
    const char *key;            /* not NUL-terminated: key_len bytes, in the map */
    size_t key_len;
    uint32_t type;              /* INF__GGUF_* */
    uint32_t elem_type;         /* arrays: type of the elements */
    uint64_t count;             /* arrays: number of elements; else 1 */
    size_t offset;              /* file offset of the value (arrays: of the first element) */
} inf__gguf_kv;

typedef struct inf__gguf_tensor {
    const char *name;           /* name_len bytes in the map */
    size_t name_len;
    uint32_t n_dims;
    uint64_t dims[4];           /* ggml order: dims[0] is the contiguous one */
    uint32_t type;              /* INF__GGML_* or another ggml type */
    uint64_t n_bytes;           /* 0 for types this reader does not know */
    const void *data;           /* in the map */
} inf__gguf_tensor;

typedef struct inf__gguf {
    const unsigned char *map;   /* the whole file, mapped read-only; owned */
    size_t size;
    uint32_t version;
    inf__gguf_kv *kv;           /* (n_kv,) owned */
    uint64_t n_kv;
    inf__gguf_tensor *tensors;  /* (n_tensors,) owned */
    uint64_t n_tensors;
    char path[512];
} inf__gguf;

/* Maps and parses `path` (GGUF v2/v3), checking every length and offset
 * against the file. On success *out is new; free with inf__gguf_close. */
int inf__gguf_open(inf__gguf **out, const char *path, inf_error *err);
void inf__gguf_close(inf__gguf *g);

/* The entry named `key`, or NULL. Borrowed from g. */
const inf__gguf_kv *inf__gguf_find(const inf__gguf *g, const char *key);

/* Reads a scalar of any integer type as int64 (bool as 0/1). Returns 0, or
 * INF_EINVALID when the entry is not an integer or does not fit. */
int inf__gguf_int(int64_t *out, const inf__gguf *g, const inf__gguf_kv *kv, inf_error *err);
/* Reads a string scalar: *s points into the map, *len bytes. */
int inf__gguf_str(const char **s, size_t *len, const inf__gguf *g, const inf__gguf_kv *kv,
                  inf_error *err);

/* ------------------------------------------------------------------------ */
/* safetensors (safetensors.c) */

enum { INF__ST_F32 = 0, INF__ST_F16, INF__ST_BF16, INF__ST_OTHER };

typedef struct inf__st_tensor {
    char *name;                 /* owned */
    int type;                   /* INF__ST_* */
    char dtype_name[12];        /* as in the header: "BF16" */
    int n_dims;
    int64_t shape[4];           /* row-major: shape[n_dims-1] is contiguous */
    const void *data;           /* in the map; n_bytes == product(shape) * element size */
    uint64_t n_bytes;
} inf__st_tensor;

typedef struct inf__st {
    void *map;                  /* the whole file, read-only; owned (see inf__st_close) */
    size_t size;
    inf__st_tensor *tensors;    /* (n_tensors,) owned */
    size_t n_tensors;
    char path[512];
} inf__st;

/* Maps and parses one .safetensors file, checking every offset. On success
 * *out is new; free with inf__st_close (a caller that keeps the map sets
 * f->map = NULL first and munmaps it later). */
int inf__st_open(inf__st **out, const char *path, inf_error *err);
void inf__st_close(inf__st *f);

/* The tensor named `name`, or NULL. Borrowed from f. */
const inf__st_tensor *inf__st_find(const inf__st *f, const char *name);

/* ------------------------------------------------------------------------ */
/* Tokenizers */

typedef enum inf__tok_kind {
    INF__TOK_SPM = 0,       /* SentencePiece BPE by scores (llama2.c, GGUF "llama") */
    INF__TOK_BPE            /* byte-level BPE with merges (GGUF "gpt2") */
} inf__tok_kind;

/* GGUF token types (llama.cpp's llama_token_type). */
#define INF__TT_NORMAL       1
#define INF__TT_UNKNOWN      2
#define INF__TT_CONTROL      3
#define INF__TT_USER_DEFINED 4
#define INF__TT_UNUSED       5
#define INF__TT_BYTE         6

/* Byte-level BPE pre-tokenizers (the regex that splits text into words). */
typedef enum inf__pre_kind {
    INF__PRE_GPT2 = 0,      /* GPT-2's regex */
    INF__PRE_FALCON,        /* Falcon: punctuation runs, GPT-2, then [0-9]{3} groups */
    INF__PRE_LLAMA3,        /* Llama 3's regex (\p{N}{1,3}) */
    INF__PRE_QWEN2          /* Qwen2's: Llama 3's with single digits */
} inf__pre_kind;

typedef int (*inf__encode_fn)(int **ids, size_t *n, size_t *cap, const inf_tokenizer *t,
                              const char *text, size_t len, inf_error *err);

struct inf_tokenizer {
    inf__tok_kind kind;
    inf__encode_fn encode;      /* the algorithm, set by the loader */
    int vocab_size;
    char **pieces;              /* (vocab_size,) owned, NUL-terminated vocabulary strings */
    uint32_t *piece_lens;       /* (vocab_size,) */
    float *scores;              /* (vocab_size,) SPM merge priorities */
    uint8_t *types;             /* (vocab_size,) INF__TT_* */
    int bos, eos, unk;          /* -1 when none */
    bool add_space_prefix;      /* SPM: prepend " " to non-empty text */
    inf__pre_kind pre;          /* BPE: the pre-tokenizer's split rules */
    int byte_ids[256];          /* SPM: id of <0xXX>, or -1; BPE: id of the byte's unicode char */
    /* lookup: open-addressing hash of piece -> id */
    int32_t *hash;              /* (hash_cap,) -1 empty */
    size_t hash_cap;
    /* BPE merges: open-addressing hash of (left id, right id) -> rank */
    uint64_t *merge_keys;       /* (merge_cap,) */
    int32_t *merge_ranks;       /* (merge_cap,) -1 empty */
    size_t merge_cap;
    /* HF tokenizer.json extras */
    bool nfc;                   /* normalizer NFC: encode normalizes text to NFC first */
    bool spm_merges_only;       /* SPM: a -INFINITY score marks a token no merge makes */
    int *added;                 /* (n_added,) added-token ids, longest text first; owned */
    int n_added;                /* CONTROL ones match with INF_TOK_SPECIAL, others always */
    uint8_t added_first[32];    /* bitmap of the first bytes of added tokens */
    /* decoded bytes of each id (byte tokens -> the byte, "▁" -> " ", BPE
     * unicode bytes -> raw bytes); pieces for inf_tokenizer_piece */
    char **decoded;             /* (vocab_size,) owned */
    uint32_t *decoded_lens;
};

/* Allocates the per-token arrays of a tokenizer with `n` entries (zeroed,
 * ids -1). Returns NULL on allocation failure. */
inf_tokenizer *inf__tok_alloc(int n);

/* Builds the piece hash; call after all pieces are set. Returns 0 or INF_ENOMEM. */
int inf__tok_build_index(inf_tokenizer *t, inf_error *err);

/* id of the `len` bytes at `s`, or -1. */
int inf__tok_lookup(const inf_tokenizer *t, const char *s, size_t len);

/* Encoders. Append to the growable array ids/n/cap. */
int inf__spm_encode(int **ids, size_t *n, size_t *cap, const inf_tokenizer *t, const char *text,
                    size_t len, inf_error *err);
int inf__bpe_encode(int **ids, size_t *n, size_t *cap, const inf_tokenizer *t, const char *text,
                    size_t len, inf_error *err);
/* Fills t->decoded for every id. */
int inf__spm_build_decoded(inf_tokenizer *t, inf_error *err);
int inf__bpe_build_decoded(inf_tokenizer *t, inf_error *err);

/* SPM: records <0xXX> byte tokens (only of type BYTE when `typed`). */
void inf__spm_find_byte_ids(inf_tokenizer *t, bool typed);

/* BPE: fills byte_ids and sizes the merge table for n merges (`what` names
 * the source in errors); then inf__bpe_merge_add records merge (l, r) with
 * `rank` (lower merges first; the first rank of a pair wins; pairs of
 * non-tokens are ignored). */
int inf__bpe_merges_alloc(inf_tokenizer *t, uint64_t n, const char *what, inf_error *err);
void inf__bpe_merge_add(inf_tokenizer *t, const char *l, size_t ll, const char *r, size_t rl,
                        int32_t rank);

/* BPE pre-tokenizer alone, for tests: the byte offset where each word of
 * text ends. On success *ends is a new array of *n_words the caller frees. */
int inf__bpe_split(size_t **ends, size_t *n_words, const inf_tokenizer *t, const char *text,
                   size_t len, inf_error *err);

/* BPE: fills byte_ids and the merge table from `n` merge strings "left right"
 * walked from a GGUF string array. */
int inf__bpe_init(inf_tokenizer *t, const inf__gguf *g, const inf__gguf_kv *merges,
                  inf_error *err);

/* Code point classes (unicode_tab.c, generated by gen_unicode.py). */
#define INF__UC_UNASSIGNED 0
#define INF__UC_LETTER     1
#define INF__UC_NUMBER     2
#define INF__UC_PUNCT      3
#define INF__UC_OTHER      4
#define INF__UC_SPACE      8    /* flag: Unicode White_Space */
extern const uint32_t inf__unicode_ranges[][2];
extern const size_t inf__unicode_n_ranges;

/* Canonical normalization tables (unicode_nfc_tab.c, generated by
 * gen_unicode_nfc.py; sorted for binary search). */
typedef struct inf__nfc_ccc_range {
    uint32_t lo, hi;
    uint8_t ccc;                /* canonical combining class of [lo, hi], non-zero */
} inf__nfc_ccc_range;
typedef struct inf__nfc_decomp {
    uint32_t cp;
    uint16_t at, len;           /* full decomposition: inf__nfc_decomp_pool[at .. at+len) */
} inf__nfc_decomp;
typedef struct inf__nfc_comp {
    uint32_t first, second, composite;
} inf__nfc_comp;
extern const char inf__nfc_unicode_version[];
extern const inf__nfc_ccc_range inf__nfc_ccc[];
extern const size_t inf__nfc_n_ccc;
extern const inf__nfc_decomp inf__nfc_decomps[];
extern const size_t inf__nfc_n_decomps;
extern const uint32_t inf__nfc_decomp_pool[];
extern const inf__nfc_comp inf__nfc_comps[];
extern const size_t inf__nfc_n_comps;

/*
 * Unicode canonical normalization of UTF-8 text (unicode_nfc.c): NFD
 * (canonical decomposition, Hangul included, then canonical ordering) and,
 * with `compose`, NFC (NFD then canonical composition). Bytes that are not
 * valid UTF-8 pass through unchanged and block composition like a starter.
 * On success *out is a new NUL-terminated string of *out_len bytes that the
 * caller must free(). Returns 0 or INF_ENOMEM / INF_ELIMIT.
 */
int inf__unicode_normalize(char **out, size_t *out_len, const char *text, size_t len,
                           bool compose, inf_error *err);

/* A max-heap of candidate merges of adjacent symbols, ordered by priority
 * (higher first), then by left symbol (lower first): the order both BPE
 * variants merge in. `size` is the merged length, to spot stale entries. */
typedef struct inf__bigram {
    float priority;
    int left, right;
    size_t size;
} inf__bigram;

typedef struct inf__heap {
    inf__bigram *v;     /* owned */
    size_t n, cap;
} inf__heap;

int inf__heap_push(inf__heap *h, inf__bigram b, inf_error *err);
/* Removes the top into *out; returns false when empty. */
bool inf__heap_pop(inf__heap *h, inf__bigram *out);

/* Appends one id to a growable array. Returns 0 or INF_ENOMEM. */
int inf__ids_push(int **ids, size_t *n, size_t *cap, int id, inf_error *err);

#endif
