/*
 * inference — the built-in sampler: model loading, tokenizers, the forward
 * pass (CPU; a CUDA backend later implements the same operations table), and
 * sampling with seeds and per-token logprobs.
 *
 * Used by lua/ (envsrv.sample), server/ (rollouts) and main.c (`envsrv eval`,
 * `envsrv generate`); tests and bench/infer_bench.c.
 *
 * A model is one in-memory description (inf_config + inf_weights) that every
 * loader fills: llama2.c checkpoints today (inf_model_load_llama2c), and
 * callers that build weights themselves (inf_model_create; the tests' random
 * models; the safetensors and GGUF weight loaders to come). Tokenizers come
 * from llama2.c tokenizer.bin files or from GGUF vocabularies. A loaded
 * model is read-only: any number of threads may run inf_generate on it at
 * once. docs/inference.md describes the design and the measured figures.
 *
 * Reproducibility: a sample's tokens depend only on (model, prompt, options,
 * seed, sample index), never on how many samples share the request, on
 * n_threads, or on what else runs. Each sample's randomness is a counter-based
 * stream keyed by (seed, sample index, step), see sample.c.
 *
 * Nothing here prints; every failure returns a negative INF_E* code and fills
 * an inf_error with one line a user can read.
 */
#ifndef ENVSRV_INFERENCE_H
#define ENVSRV_INFERENCE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes besides 0. */
#define INF_EINVALID  (-1)  /* bad input: options, token ids, model or tokenizer file contents */
#define INF_EIO       (-2)  /* a file could not be opened, mapped or read */
#define INF_ELIMIT    (-3)  /* a size limit was exceeded (context length, sample count) */
#define INF_ENOMEM    (-4)  /* out of memory */
#define INF_ECANCELED (-5)  /* the caller's cancel flag was set (inf_gen_options.cancel) */

/* A failure, as a caller can show it to a user. `message` is one line. */
typedef struct inf_error {
    int code;
    char message[256];
} inf_error;

/* ------------------------------------------------------------------------ */
/* Model description                                                         */

/* How RoPE pairs the dimensions of a head. */
typedef enum inf_rope_style {
    INF_ROPE_INTERLEAVED = 0,   /* pairs (2i, 2i+1): llama2.c, GGUF llama */
    INF_ROPE_HALF               /* pairs (i, i+head_dim/2): HF Llama/Qwen, NeoX */
} inf_rope_style;

/* RoPE frequency scaling. */
typedef enum inf_rope_scaling_type {
    INF_ROPE_SCALING_NONE = 0,
    INF_ROPE_SCALING_LLAMA3         /* Llama 3.1 "rope_type": "llama3" */
} inf_rope_scaling_type;

typedef struct inf_rope_scaling {
    inf_rope_scaling_type type;
    float factor;                   /* llama3: 8 */
    float low_freq_factor;          /* llama3: 1 */
    float high_freq_factor;         /* llama3: 4 */
    int original_max_pos;           /* llama3: 8192 */
} inf_rope_scaling;

#define INF_MAX_EOS 4

/* The architecture: a decoder-only transformer with RMSNorm, RoPE, grouped
 * query attention and a SwiGLU FFN (Llama, Qwen2, Qwen3, llama2.c). */
typedef struct inf_config {
    int dim;                /* residual stream width */
    int hidden_dim;         /* FFN inner width */
    int n_layers;
    int n_heads;            /* query heads */
    int n_kv_heads;         /* key/value heads; n_heads % n_kv_heads == 0 */
    int head_dim;           /* usually dim / n_heads (Qwen3 differs); even */
    int vocab_size;
    int seq_len;            /* longest context the model supports (KV positions) */
    float norm_eps;         /* RMSNorm epsilon */
    float rope_theta;       /* RoPE base, 10000 for llama2.c */
    inf_rope_style rope_style;
    inf_rope_scaling rope_scaling;
    bool qkv_bias;          /* Qwen2: q/k/v projections carry a bias */
    bool qk_norm;           /* Qwen3: RMSNorm over each q and k head before RoPE */
    bool tied_embeddings;   /* classifier == token embeddings */
    int bos_id;             /* -1 when none */
    int eos_ids[INF_MAX_EOS];   /* tokens that end a sample with finish "eos" */
    int n_eos;
} inf_config;

/* How a weight matrix is stored. Vectors (norms, biases) are always float32;
 * loaders convert them at load time (they are small). */
typedef enum inf_dtype {
    INF_DTYPE_F32 = 0,
    INF_DTYPE_F16,          /* IEEE half */
    INF_DTYPE_BF16,         /* bfloat16: the top 16 bits of a float32 */
    INF_DTYPE_Q8_0          /* ggml Q8_0: blocks of 32 as {f16 scale d, int8 q[32]}, w = d*q;
                               a row's length must be a multiple of 32 */
} inf_dtype;

/* A row-major matrix (rows, cols) of `type`, rows contiguous: row r starts at
 * byte r * inf_dtype_row_bytes(type, cols). Borrowed memory (a mapped file or
 * the caller's array). Kernels read it as is: nothing is expanded to f32. */
typedef struct inf_mat {
    const void *data;
    inf_dtype type;
} inf_mat;

/* A float32 matrix: INF_MAT_F32(ptr). */
#define INF_MAT_F32(p) ((inf_mat){.data = (p), .type = INF_DTYPE_F32})

/* One transformer block's weights, row-major. A matrix (d, n) maps a vector
 * (n,) to (d,). kv_dim = n_kv_heads*head_dim, q_dim = n_heads*head_dim. */
typedef struct inf_layer {
    const float *attn_norm;     /* (dim,) */
    inf_mat wq;                 /* (q_dim, dim) */
    inf_mat wk;                 /* (kv_dim, dim) */
    inf_mat wv;                 /* (kv_dim, dim) */
    const float *bq;            /* (q_dim,)  when qkv_bias, else NULL */
    const float *bk;            /* (kv_dim,) when qkv_bias, else NULL */
    const float *bv;            /* (kv_dim,) when qkv_bias, else NULL */
    const float *q_norm;        /* (head_dim,) when qk_norm, else NULL */
    const float *k_norm;        /* (head_dim,) when qk_norm, else NULL */
    inf_mat wo;                 /* (dim, q_dim) */
    const float *ffn_norm;      /* (dim,) */
    inf_mat w1;                 /* (hidden_dim, dim)  gate */
    inf_mat w2;                 /* (dim, hidden_dim)  down */
    inf_mat w3;                 /* (hidden_dim, dim)  up */
} inf_layer;

typedef struct inf_weights {
    inf_mat tok_embeddings;         /* (vocab_size, dim) */
    const inf_layer *layers;        /* (n_layers,) */
    const float *final_norm;        /* (dim,) */
    inf_mat classifier;             /* (vocab_size, dim); == tok_embeddings when tied */
} inf_weights;

/* Bytes of one row of `cols` elements of `type` (Q8_0: cols/32 blocks of 34
 * bytes; 0 when cols is not a multiple of 32). */
size_t inf_dtype_row_bytes(inf_dtype type, size_t cols);

/* "f32", "f16", "bf16", "q8_0". Static. */
const char *inf_dtype_name(inf_dtype type);

/*
 * Converts `n` floats to `type` into dst (inf_dtype_row_bytes(type, n) bytes):
 * round to nearest even for f16/bf16; Q8_0 as ggml quantizes (d = max|x|/127
 * rounded to f16, q = round(x/d)). For writers and tests. Returns 0, or
 * INF_EINVALID for a Q8_0 length that is not a multiple of 32.
 */
int inf_dtype_from_f32(void *dst, inf_dtype type, const float *src, size_t n);

/* The inverse: `n` elements of `type` at src -> float32 (exact). */
void inf_dtype_to_f32(float *dst, inf_dtype type, const void *src, size_t n);

typedef struct inf_model inf_model;

/* Limits on header values: anything larger is rejected as corrupt before any
 * allocation is sized from it. */
#define INF_MAX_DIM        65536
#define INF_MAX_LAYERS     1024
#define INF_MAX_HEADS      1024
#define INF_MAX_VOCAB      (1 << 22)
#define INF_MAX_SEQ_LEN    (1 << 20)

/*
 * Loads a llama2.c checkpoint (legacy float32 format: a 7 x int32 header dim,
 * hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: separate
 * classifier), seq_len, then the weights in run.c's order). The file is
 * mapped read-only; every header value and the exact file size are checked.
 * BOS is 1; both 1 and 2 end a sample as "eos" (run.c stops at BOS, which
 * separates stories in these checkpoints).
 *
 * On success *out is a new model; the caller frees it with inf_model_free().
 */
int inf_model_load_llama2c(inf_model **out, const char *path, inf_error *err);

/*
 * Loads a HuggingFace model directory: config.json (LlamaForCausalLM,
 * Qwen2ForCausalLM or Qwen3ForCausalLM; rope_theta, llama3 rope_scaling,
 * rms_norm_eps, head_dim, tie_word_embeddings, Qwen2's q/k/v bias, Qwen3's
 * q/k norm) and model.safetensors, or the shards that
 * model.safetensors.index.json lists. Tensors may be F32, F16 or BF16;
 * matrices are used in place from the read-only mappings (never expanded),
 * norms and biases are converted to float32. RoPE is HF's half layout.
 * Missing or misshapen tensors, unsupported architectures or options, bad
 * JSON and out-of-range offsets are INF_EINVALID errors naming the problem.
 *
 * On success *out is a new model; the caller frees it with inf_model_free().
 */
int inf_model_load_hf(inf_model **out, const char *dir, inf_error *err);

/*
 * Writes `m` as a HuggingFace directory `dir` (which must exist):
 * config.json and model.safetensors, or shards of at most about
 * `shard_bytes` each plus model.safetensors.index.json (shard_bytes 0: one
 * file). All tensors are stored as `dtype` (f32, f16 or bf16). The
 * architecture follows the config: q/k norm -> Qwen3, q/k/v bias -> Qwen2,
 * else Llama. An interleaved-RoPE model (llama2.c) has its q/k rows permuted
 * to HF's half layout, as transformers' conversion script does, so loading
 * the result with inf_model_load_hf computes the same function. For tests
 * and conversion tools. Returns 0 or a negative INF_E* code.
 */
int inf_model_save_hf(const inf_model *m, const char *dir, inf_dtype dtype, size_t shard_bytes,
                      inf_error *err);

/*
 * Loads the weights of a GGUF file (general.architecture llama, qwen2 or
 * qwen3; llama.cpp's tensor names and metadata) with F32, F16, BF16 or Q8_0
 * matrices, used in place from the read-only mapping. llama uses the
 * interleaved RoPE order, qwen2/qwen3 the half order, as llama.cpp does.
 * Missing or misshapen tensors and other tensor types (Q4_K, ...) are
 * INF_EINVALID errors naming them. On success *out is a new model; free it
 * with inf_model_free(). The tokenizer comes from inf_tokenizer_load_gguf.
 */
int inf_model_load_gguf(inf_model **out, const char *path, inf_error *err);

/* Writes `m` as a GGUF v3 file (llama, or qwen2 / qwen3 when it has q/k/v
 * bias / q/k norm) with matrices as `dtype` (rows must suit Q8_0) and
 * vectors as F32; q/k rows are permuted when the model's RoPE order differs
 * from the architecture's. No tokenizer. For tests and tools. */
int inf_model_save_gguf(const inf_model *m, const char *path, inf_dtype dtype, inf_error *err);

/*
 * A model over weights the caller owns (tests, future loaders). The config is
 * validated and copied; `weights` (the struct, its layer array and all the
 * arrays it points to) are borrowed and must outlive the model.
 */
int inf_model_create(inf_model **out, const inf_config *config, const inf_weights *weights,
                     inf_error *err);

/* Borrowed from `m`; valid until inf_model_free(m). */
const inf_config *inf_model_config(const inf_model *m);

void inf_model_free(inf_model *m);

/* ------------------------------------------------------------------------ */
/* Forward pass                                                              */

/* KV caches and scratch buffers for up to `n_seqs` sequences of up to
 * `max_len` positions each (max_len <= config.seq_len). */
typedef struct inf_state inf_state;

/* On success *out is new; free with inf_state_free(). The model is borrowed
 * and must outlive the state. One state is used by one thread at a time. */
int inf_state_new(inf_state **out, const inf_model *m, int n_seqs, int max_len, inf_error *err);
void inf_state_free(inf_state *s);

/* Splits every matmul of `s` by rows over n_threads threads (the caller's
 * included; 1: none). Each output is computed by one thread exactly as
 * without threads, so results do not change. Returns 0 or INF_EINVALID /
 * INF_ENOMEM; the threads end with inf_state_free. */
int inf_state_set_threads(inf_state *s, int n_threads, inf_error *err);

/*
 * Runs `token` at position `pos` of sequence `seq` (positions 0..pos-1 of that
 * sequence must have been run before). Returns the logits (vocab_size,),
 * borrowed from `s` and valid until its next forward call, or NULL (with err
 * filled) for a token, position or sequence out of range.
 */
const float *inf_forward(inf_state *s, int seq, int token, int pos, inf_error *err);

/* ------------------------------------------------------------------------ */
/* Tokenizers                                                                */

typedef struct inf_tokenizer inf_tokenizer;

/* Loads a llama2.c tokenizer.bin (int32 max_token_length, then per token: a
 * float32 score, an int32 length and that many bytes) with `vocab_size`
 * entries. SentencePiece-style BPE: BOS 1, EOS 2, byte fallback <0xXX> at ids
 * 3..258. On success *out is new; free with inf_tokenizer_free(). */
int inf_tokenizer_load_llama2c(inf_tokenizer **out, const char *path, int vocab_size,
                               inf_error *err);

/* Loads the tokenizer of a GGUF file: tokenizer.ggml.model "llama"
 * (SentencePiece BPE by scores, byte fallback, add_space_prefix honoured) or
 * "gpt2" (byte-level BPE by merge rank) with tokenizer.ggml.pre "gpt-2" or
 * "falcon". Other models and pre-tokenizers are an INF_EINVALID error naming
 * them. On success *out is new; free with inf_tokenizer_free(). */
int inf_tokenizer_load_gguf(inf_tokenizer **out, const char *path, inf_error *err);

/*
 * Loads a HuggingFace tokenizer.json (`path` is the file or its directory):
 * model BPE, either byte-level (pre_tokenizer ByteLevel, or Split with the
 * GPT-2, Llama 3 or Qwen2 regex + ByteLevel) or SentencePiece style
 * (byte_fallback, Prepend/Replace "▁" normalizer or Metaspace); added_tokens
 * with their special flags; normalizer NFC (alone or in a Sequence with the
 * SentencePiece pair), applied by encode before anything else (Unicode
 * 14.0 tables from Python's unicodedata). BOS/EOS come from
 * tokenizer_config.json beside it when present. Anything else is an
 * INF_EINVALID error naming it. On success *out is new; free with
 * inf_tokenizer_free().
 */
int inf_tokenizer_load_hf(inf_tokenizer **out, const char *path, inf_error *err);

/*
 * Writes `t` as dir/tokenizer.json (+ tokenizer_config.json with BOS/EOS):
 * SentencePiece tokenizers as HF's Llama converter would (merges of every
 * split of a token, by the token's score), byte-level ones with their merges
 * and pre-tokenizer regex (not Falcon's). For conversions and tests.
 */
int inf_tokenizer_save_hf(const inf_tokenizer *t, const char *dir, inf_error *err);

void inf_tokenizer_free(inf_tokenizer *t);

int inf_tokenizer_vocab_size(const inf_tokenizer *t);
int inf_tokenizer_bos(const inf_tokenizer *t);     /* -1 when none */
int inf_tokenizer_eos(const inf_tokenizer *t);     /* -1 when none */

/* Encode flags. */
#define INF_TOK_BOS 1u      /* prepend BOS (when the vocabulary has one) */
#define INF_TOK_EOS 2u      /* append EOS (when the vocabulary has one) */
#define INF_TOK_SPECIAL 4u  /* HF tokenizers: text of special added tokens ("<|im_start|>")
                               becomes those tokens (non-special added tokens always do) */

/*
 * Encodes `len` bytes of `text` (any bytes; invalid UTF-8 falls back to byte
 * tokens where the vocabulary has them). Special-token text such as "<s>" is
 * not parsed (it encodes as ordinary text) unless flags has INF_TOK_SPECIAL
 * and the tokenizer came from tokenizer.json. On success *ids is a new array of
 * *n_ids ids (never NULL, even when empty) the caller free()s.
 */
int inf_tokenizer_encode(int **ids, size_t *n_ids, const inf_tokenizer *t, const char *text,
                         size_t len, unsigned flags, inf_error *err);

/*
 * The bytes token `id` stands for when it follows token `prev` (-1 at the
 * start): byte tokens give their raw byte, SentencePiece "▁" becomes a space,
 * and llama2.c's rule drops the leading space of the first piece after BOS.
 * Control tokens (BOS, EOS) give "". Returns a pointer borrowed from `t`
 * (valid until inf_tokenizer_free) and sets *len; NULL for an id out of range.
 */
const char *inf_tokenizer_piece(const inf_tokenizer *t, int prev, int id, size_t *len);

/* Decodes `n` ids by concatenating their pieces. On success *text is a new
 * NUL-terminated string of *len bytes the caller free()s. */
int inf_tokenizer_decode(char **text, size_t *len, const inf_tokenizer *t, const int *ids,
                         size_t n, inf_error *err);

/* ------------------------------------------------------------------------ */
/* Chat templates                                                            */

typedef enum inf_chat_family {
    INF_CHAT_NONE = 0,
    INF_CHAT_CHATML,        /* <|im_start|>role\ncontent<|im_end|>\n (Qwen) */
    INF_CHAT_LLAMA3         /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
} inf_chat_family;

/* A built-in template, as recognized from a model's Jinja chat_template. */
typedef struct inf_chat_template {
    inf_chat_family family;
    char default_system[128];   /* ChatML: system message when none is given (Qwen2.5), or "" */
    bool llama31_dates;         /* Llama 3.1: a system header with its knowledge/today dates */
} inf_chat_template;

typedef struct inf_chat_message {
    const char *role;       /* "system", "user" or "assistant" */
    const char *content;
} inf_chat_message;

/*
 * Reads `chat_template` from tokenizer_config.json (`path` is the file or its
 * directory) and recognizes its family: "<|im_start|>" -> ChatML,
 * "<|start_header_id|>" -> Llama 3. Anything else (or no template) is
 * INF_EINVALID "unsupported chat template in tokenizer_config.json; pass
 * --chat-template FILE.lua (a Lua function(messages) -> string)".
 */
int inf_chat_template_load(inf_chat_template *out, const char *path, inf_error *err);

/* The same from the Jinja text itself. */
int inf_chat_template_from_string(inf_chat_template *out, const char *jinja, inf_error *err);

/*
 * Renders `n` messages as the template does, plus the assistant header when
 * add_generation_prompt. Llama 3 output starts with "<|begin_of_text|>": encode
 * it with INF_TOK_SPECIAL and without INF_TOK_BOS. On success *text is a new
 * NUL-terminated string of *len bytes the caller free()s.
 */
int inf_chat_render(char **text, size_t *len, const inf_chat_template *tpl,
                    const inf_chat_message *msgs, size_t n, bool add_generation_prompt,
                    inf_error *err);

/* ------------------------------------------------------------------------ */
/* Sampling and generation                                                   */

typedef enum inf_finish {
    INF_FINISH_LENGTH = 0,  /* max_tokens reached, or prompt + output filled the context */
    INF_FINISH_STOP,        /* a stop string appeared */
    INF_FINISH_EOS          /* the model produced an end-of-sequence token */
} inf_finish;

/* "length", "stop", "eos". Static. */
const char *inf_finish_name(inf_finish f);

#define INF_MAX_SAMPLES   4096
#define INF_MAX_STOPS     16
#define INF_MAX_TOP_LOGPROBS 20

typedef struct inf_gen_options {
    int n_samples;          /* samples of the prompt, 1..INF_MAX_SAMPLES */
    int max_tokens;         /* new tokens per sample, >= 1 */
    float temperature;      /* 0: greedy (argmax, lowest id on ties) */
    float top_p;            /* (0, 1]; 1 = off */
    int top_k;              /* 0 = off; 1 = greedy */
    float min_p;            /* [0, 1]; 0 = off */
    uint64_t seed;
    uint64_t first_sample;  /* sample j uses random stream first_sample + j (to split a
                               group over several calls with identical results) */
    const char *const *stop;/* stop strings, borrowed; NULL or n_stop entries */
    size_t n_stop;
    bool ignore_eos;        /* do not end samples at the model's EOS tokens */
    int n_threads;          /* worker threads, >= 1; results do not depend on it */
    int top_logprobs;       /* 0..INF_MAX_TOP_LOGPROBS: also record, at each step, the
                               most likely tokens and their logprobs (as `logprobs`) */
    const atomic_int *cancel; /* borrowed, may be NULL: once non-zero, generation stops
                               before its next forward pass and returns INF_ECANCELED */
} inf_gen_options;

#define INF_GEN_OPTIONS_INIT                                                               \
    { .n_samples = 1, .max_tokens = 256, .temperature = 1.0f, .top_p = 1.0f, .n_threads = 1 }
#define INF_MAX_THREADS 256

/* One sample. Arrays are owned by the inf_result that holds the sample. */
typedef struct inf_sample {
    int *tokens;            /* (n_tokens,) generated ids, the last one included on stop/eos */
    float *logprobs;        /* (n_tokens,) log p(token) under the unmodified temperature-1
                               distribution of the model's logits */
    size_t n_tokens;
    char *text;             /* decoded text, cut before the stop string; NUL-terminated;
                               NULL when inf_generate had no tokenizer */
    size_t text_len;
    inf_finish finish;
    int stop_index;         /* which stop string matched, or -1 */
    /* With opts.top_logprobs = k > 0: (n_tokens * k), step i's k most likely
     * tokens at [i*k, i*k + k), most likely first, lower id first on ties,
     * with their logprobs (as `logprobs`); NULL otherwise. */
    int *top_ids;
    float *top_logprobs;
    int n_top;              /* k: opts.top_logprobs, or the vocabulary size if smaller */
} inf_sample;

typedef struct inf_result {
    inf_sample *samples;    /* (n_samples,) */
    size_t n_samples;
    size_t prompt_tokens;
} inf_result;

/*
 * Generates opts->n_samples continuations of `prompt` (n_prompt >= 1 ids;
 * prompt plus output never exceed config.seq_len).
 * The prompt is run once and its KV cache copied to every sample; samples then
 * advance together in batched steps, split over opts->n_threads threads (spare
 * threads, when there are fewer samples than threads, split each matmul by rows).
 * `tok` (may be NULL) decodes text and is required when stop strings are set.
 * On success *out is filled (free with inf_result_free); on failure *out is
 * left empty.
 */
int inf_generate(inf_result *out, const inf_model *m, const inf_tokenizer *tok, const int *prompt,
                 size_t n_prompt, const inf_gen_options *opts, inf_error *err);

void inf_result_free(inf_result *r);

/* log-softmax of `logits` (n,) at temperature 1, in double precision, rounded
 * to float: out[i] = logits[i] - logsumexp(logits). */
void inf_logprobs(float *out, const float *logits, int n);

/*
 * Picks one token from `logits` (n,) with `opts`' temperature, top_k, top_p and
 * min_p, using the uniform draw of stream (opts->seed, sample, step). Greedy
 * (argmax, lowest id on ties) when temperature is 0 or top_k is 1. `work_p`
 * (n doubles) and `work_idx` (n ints) are the caller's scratch.
 */
int inf_sample_token(const float *logits, int n, const inf_gen_options *opts, uint64_t sample,
                     uint64_t step, double *work_p, int *work_idx);

/* The uniform draw in [0, 1) of stream (seed, sample, step). */
double inf_rng_uniform(uint64_t seed, uint64_t sample, uint64_t step);


/* ------------------------------------------------------------------------ */
/* Model bundles: one loader for every entry point                          */

typedef enum inf_bundle_format {
    INF_BUNDLE_LLAMA2C = 0,     /* a llama2.c checkpoint + tokenizer.bin */
    INF_BUNDLE_HF,              /* a HuggingFace folder: config.json, safetensors, tokenizer.json */
    INF_BUNDLE_GGUF             /* a GGUF file with its vocabulary */
} inf_bundle_format;

/* A model with its tokenizer and chat template. Read-only once loaded: any
 * number of threads may encode with it and run inf_generate on its model. */
typedef struct inf_bundle inf_bundle;

/*
 * Loads what `model_path` names: a folder with config.json (HF weights,
 * tokenizer.json, and tokenizer_config.json's chat_template), a file that
 * starts with "GGUF" (weights, vocabulary, tokenizer.chat_template), or else
 * a llama2.c checkpoint (tokenizer.bin beside it; no chat template).
 * `tokenizer_path` (NULL: as above) may name a tokenizer.json or its folder,
 * a .gguf file or a llama2.c tokenizer.bin. `chat_template_path` (NULL: the
 * model's own) names a Jinja template text file or a tokenizer_config.json,
 * or is "plain". A model with no template uses the plain convention of
 * inf_render_plain; a template envsrv cannot render (only ChatML and Llama 3
 * are) is an INF_EINVALID error saying how to pass one. On success *out is
 * new; free with inf_bundle_free().
 */
int inf_bundle_load(inf_bundle **out, const char *model_path, const char *tokenizer_path,
                    const char *chat_template_path, inf_error *err);

void inf_bundle_free(inf_bundle *b);

/* Borrowed from `b`; valid until inf_bundle_free(b). */
const inf_model *inf_bundle_model(const inf_bundle *b);
const inf_tokenizer *inf_bundle_tokenizer(const inf_bundle *b);

/* The model files' SHA-256 as 64 hex digits, for reports: of the file for
 * llama2.c and GGUF; for an HF folder, of the lines "NAME SHA256\n" of
 * config.json and each *.safetensors in name order. Borrowed from `b`. */
const char *inf_bundle_sha256(const inf_bundle *b);

/* "llama2c", "hf" or "gguf"; "plain", "chatml" or "llama3". Static. */
const char *inf_bundle_format_name(const inf_bundle *b);
const char *inf_bundle_template_name(const inf_bundle *b);

/* A --chat-template argument: "plain" (*has_template false), a
 * tokenizer_config.json, or a Jinja template text file, recognised as ChatML
 * or Llama 3 (anything else is INF_EINVALID saying how to pass one). */
int inf_chat_template_load_any(inf_chat_template *tpl, bool *has_template, const char *path, inf_error *err);

/* The plain convention for models without a chat template: one line
 * "role: content" per message, then "assistant:". *text is a new
 * NUL-terminated string of *len bytes the caller free()s. */
int inf_render_plain(char **text, size_t *len, const inf_chat_message *msgs, size_t n, inf_error *err);

/* Renders messages with the bundle's template (with the assistant header)
 * or the plain convention. *text as for inf_render_plain. */
int inf_bundle_render(char **text, size_t *len, const inf_bundle *b, const inf_chat_message *msgs,
                      size_t n, inf_error *err);

/* Renders and encodes messages as a prompt: a template's text with its
 * special tokens and nothing added, plain text after BOS. *ids is a new
 * array of *n_ids ids the caller free()s. */
int inf_bundle_encode_messages(int **ids, size_t *n_ids, const inf_bundle *b,
                               const inf_chat_message *msgs, size_t n, inf_error *err);

/* Encodes a raw text prompt after BOS (when the vocabulary has one). */
int inf_bundle_encode_text(int **ids, size_t *n_ids, const inf_bundle *b, const char *text, size_t len,
                           inf_error *err);


/* A chat template the caller implements (envsrv: a Lua function, see
 * lua/lenv.h): renders `n` messages followed by the open assistant turn.
 * *text as for inf_render_plain. Must be safe to call from any thread. */
typedef int (*inf_render_fn)(char **text, size_t *len, const inf_chat_message *msgs, size_t n, void *payload,
                             inf_error *err);

/* Makes `b` render prompts with fn(payload) instead of its template (the
 * payload is borrowed and must outlive every render). The text is encoded
 * as a template's: special tokens parsed (tokenizer.json vocabularies),
 * nothing added, so a template that wants BOS writes its text ("<s>",
 * "<|begin_of_text|>"). inf_bundle_template_name then says "custom". */
void inf_bundle_set_renderer(inf_bundle *b, inf_render_fn fn, void *payload);

#endif
