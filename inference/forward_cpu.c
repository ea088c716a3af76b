/*
 * The CPU backend: the operations table of inference_int.h in plain C.
 *
 * Arithmetic follows llama2.c's run.c (float accumulation, expf, sqrtf) so
 * that stories260K reproduces its published greedy text. Every output element
 * is computed by the same code in the same order whatever the batch size, so
 * batching never changes a sequence's results.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "inference/inference_int.h"

/*
 * Dot products: a weight row w (n,) . x (n,), with w converted exactly to
 * float (f16, bf16 and Q8_0's d*q are all exact in float). Two rules:
 *
 * f32 weights (llama2.c's run.c arithmetic, which stories260K's published
 * greedy text depends on): eight accumulators, a rounded product then a
 * rounded sum,
 *     acc[k] = acc[k] + w[j+k] * x[j+k]   for blocks of 8 (k = 0..7)
 *     acc[0] = acc[0] + w[j] * x[j]       for the tail
 *     ((acc0 + acc4) + (acc1 + acc5)) + ((acc2 + acc6) + (acc3 + acc7))
 *
 * f16 / bf16 / Q8_0 weights: fused multiply-adds (twice the arithmetic rate
 * where batched decode is compute-bound) into two banks of eight that take
 * alternate blocks of 8, so two FMA chains hide the FMA latency:
 *     A[k] = fma(w[j+k], x[j+k], A[k]), B[k] = fma(w[j+8+k], x[j+8+k], B[k])
 *                                         for blocks of 16
 *     A[k] = fma(w[j+k], x[j+k], A[k])   for a last block of 8
 *     A[0] = fma(w[j], x[j], A[0])       for the tail
 *     then acc[k] = A[k] + B[k] and the same tree as above.
 *
 * The plain C versions and the AVX/FMA versions (lanes = accumulators;
 * -std=c11 means the compiler never contracts on its own) give the same bits,
 * so results depend neither on the CPU path nor on the batch: the batched
 * matmul converts rows once into scratch and runs the f32 dot of the same
 * rule on them. The AVX/FMA single stream reads one row at a time (several
 * rows at once measured slower without a software prefetch); the AVX-512
 * one reads four, prefetching the next four (see DEF_DOT4_512).
 */
static float reduce8(const float *acc)
{
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static float reduce16(const float *a, const float *b)
{
    float s[8];
    for (int k = 0; k < 8; k++)
        s[k] = a[k] + b[k];
    return reduce8(s);
}

/* w (n,) f32 . x (n,) by the rule for `fused` */
static float dot_c(const float *w, const float *x, int n, bool fused)
{
    float a[8] = {0}, b[8] = {0};
    int j = 0;
    if (!fused) {
        for (; j + 8 <= n; j += 8)
            for (int k = 0; k < 8; k++)
                a[k] += w[j + k] * x[j + k];
        for (; j < n; j++)
            a[0] += w[j] * x[j];
        return reduce8(a);
    }
    for (; j + 16 <= n; j += 16)
        for (int k = 0; k < 8; k++) {
            a[k] = fmaf(w[j + k], x[j + k], a[k]);
            b[k] = fmaf(w[j + 8 + k], x[j + 8 + k], b[k]);
        }
    if (j + 8 <= n) {
        for (int k = 0; k < 8; k++)
            a[k] = fmaf(w[j + k], x[j + k], a[k]);
        j += 8;
    }
    for (; j < n; j++)
        a[0] = fmaf(w[j], x[j], a[0]);
    return reduce16(a, b);
}

int inf__cpu_disabled;

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86_PATHS 1

#define AVX __attribute__((target("avx,f16c")))
#define FMA __attribute__((target("avx,fma,f16c")))

/* ---- the f32 rule, AVX ---- */

AVX static float finish_avx(__m256 acc, const float *w, const float *x, int j, int n)
{
    float a[8];
    _mm256_storeu_ps(a, acc);
    for (; j < n; j++)
        a[0] += w[j] * x[j];
    return reduce8(a);
}

/* W row f32 (n,) . x (n,) */
AVX static float dot_f32_avx(const float *w, const float *x, int n)
{
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j)));
    return finish_avx(acc, w, x, j, n);
}

/* W row f32 (n,) against four x (n,) at once: out[i] = dot(w, x_i), each
 * with its own accumulator, so every result equals dot_f32_avx's. */
AVX static void dot4_f32_avx(float *out, const float *w, const float *const *x, int n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 wv = _mm256_loadu_ps(w + j);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(wv, _mm256_loadu_ps(x[0] + j)));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(wv, _mm256_loadu_ps(x[1] + j)));
        a2 = _mm256_add_ps(a2, _mm256_mul_ps(wv, _mm256_loadu_ps(x[2] + j)));
        a3 = _mm256_add_ps(a3, _mm256_mul_ps(wv, _mm256_loadu_ps(x[3] + j)));
    }
    out[0] = finish_avx(a0, w, x[0], j, n);
    out[1] = finish_avx(a1, w, x[1], j, n);
    out[2] = finish_avx(a2, w, x[2], j, n);
    out[3] = finish_avx(a3, w, x[3], j, n);
}

/* ---- the fused rule ---- */

/* Eight weights j..j+7 (j % 8 == 0) of a stored row as floats, exactly. */
FMA static inline __m256 f32x8(const unsigned char *row, int j)
{
    return _mm256_loadu_ps((const float *)row + j);
}

FMA static inline __m256 bf16x8(const unsigned char *row, int j)
{
    __m128i h = _mm_loadu_si128((const __m128i *)(row + 2 * (size_t)j));
    __m128i z = _mm_setzero_si128();
    return _mm256_castsi256_ps(_mm256_set_m128i(_mm_unpackhi_epi16(z, h),
                                                _mm_unpacklo_epi16(z, h)));
}

FMA static inline __m256 f16x8(const unsigned char *row, int j)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)j)));
}

/* Q8_0: the eight lie in one block; d * q is exact */
FMA static inline __m256 q8x8(const unsigned char *row, int j)
{
    const unsigned char *blk = row + (size_t)(j / INF__Q8_BLOCK) * INF__Q8_BYTES;
    uint16_t dh;
    memcpy(&dh, blk, 2);
    __m128i q = _mm_loadl_epi64((const __m128i *)(blk + 2 + j % INF__Q8_BLOCK));
    __m128i lo = _mm_cvtepi8_epi32(q), hi = _mm_cvtepi8_epi32(_mm_srli_si128(q, 4));
    return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(dh)),
                         _mm256_cvtepi32_ps(_mm256_set_m128i(hi, lo)));
}

/* Weight k of a stored row as a float (the scalar tails). */
static float weight_at(inf_dtype type, const unsigned char *row, int k)
{
    uint16_t h;
    switch (type) {
    case INF_DTYPE_F32: {
        float f;
        memcpy(&f, row + 4 * (size_t)k, 4);
        return f;
    }
    case INF_DTYPE_BF16: memcpy(&h, row + 2 * (size_t)k, 2); return inf__bf16_to_f32(h);
    case INF_DTYPE_F16: memcpy(&h, row + 2 * (size_t)k, 2); return inf__f16_to_f32(h);
    case INF_DTYPE_Q8_0: {
        const unsigned char *blk = row + (size_t)(k / INF__Q8_BLOCK) * INF__Q8_BYTES;
        memcpy(&h, blk, 2);
        return inf__f16_to_f32(h) * (float)(int8_t)blk[2 + k % INF__Q8_BLOCK];
    }
    }
    return 0.0f;
}

/* A stored row (n,) . x (n,) by the fused rule, read straight from memory:
 * the single-stream kernel. */
#define DEF_DOT_FMA(name, LOAD, TYPE)                                                       \
    FMA static float name(const unsigned char *row, const float *x, int n)                 \
    {                                                                                      \
        __m256 a = _mm256_setzero_ps(), b = a;                                             \
        int j = 0;                                                                         \
        for (; j + 16 <= n; j += 16) {                                                     \
            a = _mm256_fmadd_ps(LOAD(row, j), _mm256_loadu_ps(x + j), a);                  \
            b = _mm256_fmadd_ps(LOAD(row, j + 8), _mm256_loadu_ps(x + j + 8), b);          \
        }                                                                                  \
        if (j + 8 <= n) {                                                                  \
            a = _mm256_fmadd_ps(LOAD(row, j), _mm256_loadu_ps(x + j), a);                  \
            j += 8;                                                                        \
        }                                                                                  \
        float ta[8], tb[8];                                                                \
        _mm256_storeu_ps(ta, a);                                                           \
        _mm256_storeu_ps(tb, b);                                                           \
        for (; j < n; j++)                                                                 \
            ta[0] = fmaf(weight_at(TYPE, row, j), x[j], ta[0]);                            \
        return reduce16(ta, tb);                                                           \
    }
DEF_DOT_FMA(dot_f32_fma, f32x8, INF_DTYPE_F32)
DEF_DOT_FMA(dot_bf16_fma, bf16x8, INF_DTYPE_BF16)
DEF_DOT_FMA(dot_f16_fma, f16x8, INF_DTYPE_F16)
DEF_DOT_FMA(dot_q8_fma, q8x8, INF_DTYPE_Q8_0)
#undef DEF_DOT_FMA

/* A converted row f32 (n,) against four x (n,) at once by the fused rule
 * (each result equals dot_f32_fma's): eight chains, and each load of w
 * serves four sequences. The batched kernel. */
FMA static void dot4_f32_fma(float *out, const float *w, const float *const *x, int n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 wa = _mm256_loadu_ps(w + j), wb = _mm256_loadu_ps(w + j + 8);
        a0 = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x[0] + j), a0);
        b0 = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x[0] + j + 8), b0);
        a1 = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x[1] + j), a1);
        b1 = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x[1] + j + 8), b1);
        a2 = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x[2] + j), a2);
        b2 = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x[2] + j + 8), b2);
        a3 = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x[3] + j), a3);
        b3 = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x[3] + j + 8), b3);
    }
    __m256 as[4] = {a0, a1, a2, a3}, bs[4] = {b0, b1, b2, b3};
    for (int t = 0; t < 4; t++) {
        int jj = j;
        if (jj + 8 <= n) {
            as[t] = _mm256_fmadd_ps(_mm256_loadu_ps(w + jj), _mm256_loadu_ps(x[t] + jj), as[t]);
            jj += 8;
        }
        float ta[8], tb[8];
        _mm256_storeu_ps(ta, as[t]);
        _mm256_storeu_ps(tb, bs[t]);
        for (; jj < n; jj++)
            ta[0] = fmaf(w[jj], x[t][jj], ta[0]);
        out[t] = reduce16(ta, tb);
    }
}

/* The fused rule's final sum of banks a and b (n % 8 == 0: no scalar tail),
 * in registers: t = lanes 0-3 + lanes 4-7, then two horizontal adds give
 * ((t0 + t1) + (t2 + t3)), reduce16's tree exactly. */
FMA static inline float sum_banks(__m256 a, __m256 b)
{
    __m256 s = _mm256_add_ps(a, b);
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    t = _mm_hadd_ps(t, t);
    t = _mm_hadd_ps(t, t);
    return _mm_cvtss_f32(t);
}

/*
 * Two converted rows w0, w1 (n,) against four x (n,) by the fused rule,
 * n % 8 == 0: out[r*4 + s] = dot(w_r, x_s), each equal to dot_f32_fma's. The
 * banks are independent chains, so bank a runs over the whole row first and
 * then bank b: eight accumulators per pass, and each weight load serves four
 * sequences and each x load two rows (0.75 loads per FMA). The batched
 * kernel, compute-bound at group sizes where decode is.
 */
FMA static void dot2x4_f32_fma(float *out, const float *w0, const float *w1,
                               const float *const *x, int n)
{
    int n16 = n / 16 * 16;
    __m256 acc[2][8];
    for (int bank = 0; bank < 2; bank++) {
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
        __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
        for (int j = bank * 8; j < n16; j += 16) {
            __m256 a = _mm256_loadu_ps(w0 + j), b = _mm256_loadu_ps(w1 + j);
            __m256 v = _mm256_loadu_ps(x0 + j);
            c00 = _mm256_fmadd_ps(a, v, c00);
            c10 = _mm256_fmadd_ps(b, v, c10);
            v = _mm256_loadu_ps(x1 + j);
            c01 = _mm256_fmadd_ps(a, v, c01);
            c11 = _mm256_fmadd_ps(b, v, c11);
            v = _mm256_loadu_ps(x2 + j);
            c02 = _mm256_fmadd_ps(a, v, c02);
            c12 = _mm256_fmadd_ps(b, v, c12);
            v = _mm256_loadu_ps(x3 + j);
            c03 = _mm256_fmadd_ps(a, v, c03);
            c13 = _mm256_fmadd_ps(b, v, c13);
        }
        if (bank == 0 && n16 < n) {     /* the last block of 8 belongs to bank a */
            __m256 a = _mm256_loadu_ps(w0 + n16), b = _mm256_loadu_ps(w1 + n16);
            c00 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x0 + n16), c00);
            c10 = _mm256_fmadd_ps(b, _mm256_loadu_ps(x0 + n16), c10);
            c01 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x1 + n16), c01);
            c11 = _mm256_fmadd_ps(b, _mm256_loadu_ps(x1 + n16), c11);
            c02 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x2 + n16), c02);
            c12 = _mm256_fmadd_ps(b, _mm256_loadu_ps(x2 + n16), c12);
            c03 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x3 + n16), c03);
            c13 = _mm256_fmadd_ps(b, _mm256_loadu_ps(x3 + n16), c13);
        }
        acc[bank][0] = c00;
        acc[bank][1] = c01;
        acc[bank][2] = c02;
        acc[bank][3] = c03;
        acc[bank][4] = c10;
        acc[bank][5] = c11;
        acc[bank][6] = c12;
        acc[bank][7] = c13;
    }
    for (int k = 0; k < 8; k++)
        out[k] = sum_banks(acc[0][k], acc[1][k]);
}

/* A stored row (n,) of a half or quantized type -> buf (n,) f32, exactly. */
FMA static void row_to_f32_avx(float *buf, inf_dtype type, const unsigned char *row, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(buf + j, type == INF_DTYPE_BF16  ? bf16x8(row, j)
                                  : type == INF_DTYPE_F16 ? f16x8(row, j)
                                                          : q8x8(row, j));
    for (; j < n; j++)
        buf[j] = weight_at(type, row, j);
}

/*
 * ---- the fused rule with AVX-512 ----
 *
 * One zmm register holds both banks of a dot product: sixteen weights
 * j..j+15 put block j (bank a) in lanes 0-7 and block j+8 (bank b) in lanes
 * 8-15, so one 16-lane FMA chain performs exactly the rule's two 8-lane
 * chains, and a last block of 8 is an FMA masked to lanes 0-7. The final sum
 * adds lanes 0-7 to lanes 8-15 (A + B) and then runs sum_banks's tree: the same
 * bits as the AVX/FMA and plain C paths. Used where n % 8 == 0 (no scalar
 * tail; every real model), other shapes take the AVX/FMA code.
 */
#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

/* Lanes 0-7 + lanes 8-15, then sum_banks's tree: reduce16 of the two banks. */
AVX512 static inline float sum_banks512(__m512 acc)
{
    __m256 lo = _mm512_castps512_ps256(acc);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    return sum_banks(lo, hi);
}

/* Sixteen weights j..j+15 (j % 16 == 0) of a stored row as floats, exactly. */
AVX512 static inline __m512 bf16x16(const unsigned char *row, int j)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)(row + 2 * (size_t)j));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512 static inline __m512 f16x16(const unsigned char *row, int j)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * (size_t)j)));
}

/* Q8_0: j % 16 == 0, so the sixteen lie in one block of 32 */
AVX512 static inline __m512 q8x16(const unsigned char *row, int j)
{
    __m256 lo = q8x8(row, j), hi = q8x8(row, j + 8);
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)),
                                               _mm256_castps_pd(hi), 1));
}

/* The low eight lanes of a zmm (the upper ones are don't-cares under mask 0xff). */
#define LOW8(v) _mm512_castps256_ps512(v)

/*
 * Four consecutive stored rows (row bytes rb) . x (n,), n % 8 == 0:
 * out[r] = dot(row r, x), each by the fused rule. The single-stream kernel.
 * One row's FMA chain is latency-bound below the memory's speed, so four rows
 * run side by side; four streams defeat the hardware prefetcher, though, so
 * the kernel prefetches `next` (the following four rows, 4*rb bytes)
 * linearly as it goes: measured on the 0.99 GB Qwen shapes, 1 thread,
 * 33 GB/s against 24 without the prefetch and 31 for the one-row AVX/FMA
 * kernel (bandwidth 40 GB/s).
 */
#define DEF_DOT4_512(name, LOAD16, LOAD8, WBYTES)                                            \
    AVX512 static void name(float *out, const unsigned char *row, size_t rb,                 \
                            const unsigned char *next, const float *x, int n)                \
    {                                                                                        \
        const unsigned char *r0 = row, *r1 = row + rb, *r2 = row + 2 * rb, *r3 = row + 3 * rb; \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        int j = 0;                                                                           \
        for (; j + 16 <= n; j += 16) {                                                       \
            /* 4 rows' worth of bytes per 16 columns: 4 * 16 * WBYTES */                     \
            const char *pf = (const char *)next + (size_t)j * 4 * (WBYTES);                  \
            for (int line = 0; line < 4 * 16 * (WBYTES); line += 64)                         \
                _mm_prefetch(pf + line, _MM_HINT_T0);                                        \
            __m512 xv = _mm512_loadu_ps(x + j);                                              \
            a0 = _mm512_fmadd_ps(LOAD16(r0, j), xv, a0);                                     \
            a1 = _mm512_fmadd_ps(LOAD16(r1, j), xv, a1);                                     \
            a2 = _mm512_fmadd_ps(LOAD16(r2, j), xv, a2);                                     \
            a3 = _mm512_fmadd_ps(LOAD16(r3, j), xv, a3);                                     \
        }                                                                                    \
        if (j < n) { /* the last block of 8 belongs to bank a */                             \
            __m512 xv = LOW8(_mm256_loadu_ps(x + j));                                        \
            a0 = _mm512_mask3_fmadd_ps(LOW8(LOAD8(r0, j)), xv, a0, 0xff);                    \
            a1 = _mm512_mask3_fmadd_ps(LOW8(LOAD8(r1, j)), xv, a1, 0xff);                    \
            a2 = _mm512_mask3_fmadd_ps(LOW8(LOAD8(r2, j)), xv, a2, 0xff);                    \
            a3 = _mm512_mask3_fmadd_ps(LOW8(LOAD8(r3, j)), xv, a3, 0xff);                    \
        }                                                                                    \
        out[0] = sum_banks512(a0);                                                           \
        out[1] = sum_banks512(a1);                                                           \
        out[2] = sum_banks512(a2);                                                           \
        out[3] = sum_banks512(a3);                                                           \
    }
DEF_DOT4_512(dot4_bf16_512, bf16x16, bf16x8, 2)
DEF_DOT4_512(dot4_f16_512, f16x16, f16x8, 2)
DEF_DOT4_512(dot4_q8_512, q8x16, q8x8, 1)     /* 34 bytes per 32: about 1 */
#undef DEF_DOT4_512

/* Sequences per tile of the batched kernel: 4 rows x 6 sequences = 24
 * accumulators, plus 4 weight registers and one for x, of AVX-512's 32. */
#define TILE_SEQS 6
#define RAW_MAX_TILES 8     /* batches of up to 48 sequences read bf16 rows in place */

/*
 * Four rows w (4, n) against S <= TILE_SEQS sequences x (S, n) (stride ldx),
 * n % 8 == 0, by the fused rule. The rows are converted f32 (row stride ldw
 * floats), or with raw_bf16 the stored bf16 rows (row stride ldw bytes),
 * widened exactly as they are loaded:
 * out[s*ldo + r] = dot(w_r, x_s) (+ bias[r]), each equal to the single-stream
 * kernels' result. Per 16 columns: 4 + S loads for 4*S FMAs, so the kernel
 * runs near the FMA units' rate while the rows and x come from L1/L2.
 */
AVX512 static inline __attribute__((always_inline)) void
tile4_512(float *out, size_t ldo, const void *wv, size_t ldw, const float *x, size_t ldx,
          const float *bias, const int S, int n, const int raw_bf16)
{
    const float *w = wv;
    const unsigned char *wb = wv;
    __m512 acc[4][TILE_SEQS];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 6
        for (int s = 0; s < TILE_SEQS; s++)
            acc[r][s] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 w0, w1, w2, w3;
        if (raw_bf16) {
            w0 = bf16x16(wb, j), w1 = bf16x16(wb + ldw, j);
            w2 = bf16x16(wb + 2 * ldw, j), w3 = bf16x16(wb + 3 * ldw, j);
        } else {
            w0 = _mm512_loadu_ps(w + j), w1 = _mm512_loadu_ps(w + ldw + j);
            w2 = _mm512_loadu_ps(w + 2 * ldw + j), w3 = _mm512_loadu_ps(w + 3 * ldw + j);
        }
#pragma GCC unroll 6
        for (int s = 0; s < S; s++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)s * ldx + j);
            acc[0][s] = _mm512_fmadd_ps(w0, xv, acc[0][s]);
            acc[1][s] = _mm512_fmadd_ps(w1, xv, acc[1][s]);
            acc[2][s] = _mm512_fmadd_ps(w2, xv, acc[2][s]);
            acc[3][s] = _mm512_fmadd_ps(w3, xv, acc[3][s]);
        }
    }
    if (j < n) {    /* the last block of 8 belongs to bank a */
        __m512 w0, w1, w2, w3;
        if (raw_bf16) {
            w0 = LOW8(bf16x8(wb, j)), w1 = LOW8(bf16x8(wb + ldw, j));
            w2 = LOW8(bf16x8(wb + 2 * ldw, j)), w3 = LOW8(bf16x8(wb + 3 * ldw, j));
        } else {
            w0 = LOW8(_mm256_loadu_ps(w + j)), w1 = LOW8(_mm256_loadu_ps(w + ldw + j));
            w2 = LOW8(_mm256_loadu_ps(w + 2 * ldw + j));
            w3 = LOW8(_mm256_loadu_ps(w + 3 * ldw + j));
        }
#pragma GCC unroll 6
        for (int s = 0; s < S; s++) {
            __m512 xv = LOW8(_mm256_loadu_ps(x + (size_t)s * ldx + j));
            acc[0][s] = _mm512_mask3_fmadd_ps(w0, xv, acc[0][s], 0xff);
            acc[1][s] = _mm512_mask3_fmadd_ps(w1, xv, acc[1][s], 0xff);
            acc[2][s] = _mm512_mask3_fmadd_ps(w2, xv, acc[2][s], 0xff);
            acc[3][s] = _mm512_mask3_fmadd_ps(w3, xv, acc[3][s], 0xff);
        }
    }
#pragma GCC unroll 6
    for (int s = 0; s < S; s++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            float v = sum_banks512(acc[r][s]);
            out[(size_t)s * ldo + r] = bias ? v + bias[r] : v;
        }
}

/* A stored row (n,) of a half or quantized type -> buf (n,) f32, exactly,
 * sixteen at a time (n % 8 == 0). */
AVX512 static void row_to_f32_512(float *buf, inf_dtype type, const unsigned char *row, int n)
{
    int j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(buf + j, type == INF_DTYPE_BF16  ? bf16x16(row, j)
                                  : type == INF_DTYPE_F16 ? f16x16(row, j)
                                                          : q8x16(row, j));
    if (j < n)
        _mm256_storeu_ps(buf + j, type == INF_DTYPE_BF16  ? bf16x8(row, j)
                                  : type == INF_DTYPE_F16 ? f16x8(row, j)
                                                          : q8x8(row, j));
}

/* tile4_512 with S (and the weights' form) as constants, so each tile's
 * accumulators live in registers. */
#define DEF_TILE_S(name, RAW)                                                                 \
    AVX512 static void name(float *out, size_t ldo, const void *w, size_t ldw, const float *x, \
                            size_t ldx, const float *bias, int S, int n)                      \
    {                                                                                         \
        switch (S) {                                                                          \
        case 6: tile4_512(out, ldo, w, ldw, x, ldx, bias, 6, n, RAW); break;                  \
        case 5: tile4_512(out, ldo, w, ldw, x, ldx, bias, 5, n, RAW); break;                  \
        case 4: tile4_512(out, ldo, w, ldw, x, ldx, bias, 4, n, RAW); break;                  \
        case 3: tile4_512(out, ldo, w, ldw, x, ldx, bias, 3, n, RAW); break;                  \
        case 2: tile4_512(out, ldo, w, ldw, x, ldx, bias, 2, n, RAW); break;                  \
        default: tile4_512(out, ldo, w, ldw, x, ldx, bias, 1, n, RAW); break;                 \
        }                                                                                     \
    }
DEF_TILE_S(tile4_512_s, 0)
DEF_TILE_S(tile4_bf16_512_s, 1)
#undef DEF_TILE_S
#undef LOW8

/* CPU features, detected once: bit 0 AVX + F16C (with OS support), bit 1 FMA,
 * bit 2 AVX-512F (with the OS saving the zmm and mask registers). */
static int cpu_features = -1;

static int features(void)
{
    int v = __atomic_load_n(&cpu_features, __ATOMIC_RELAXED);
    if (v >= 0)
        return v;
    unsigned a, b, c, d;
    v = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_AVX) && (c & bit_F16C) &&
        (c & bit_OSXSAVE) && (c & bit_SSE4_1)) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        if ((lo & 6u) == 6u)    /* the OS saves the ymm registers */
            v = 1 | ((c & bit_FMA) ? 2 : 0);
        unsigned a7, b7, c7, d7;
        if (v == 3 && (lo & 0xe6u) == 0xe6u && __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7) &&
            (b7 & bit_AVX512F))
            v |= 4;
    }
    __atomic_store_n(&cpu_features, v, __ATOMIC_RELAXED);   /* racing callers agree */
    return v;
}

/* The features the kernels may use: detected, less what a test switched off. */
static int usable(void)
{
    return features() & ~__atomic_load_n(&inf__cpu_disabled, __ATOMIC_RELAXED);
}
#define HAS_AVX() (usable() & 1)
#define HAS_FMA() ((usable() & 3) == 3)
#define HAS_AVX512() (usable() == 7)
#else
#define HAVE_X86_PATHS 0
#endif

/* Row i of W (d,n) as floats into buf (n,), exactly. */
static const float *row_f32(float *buf, inf_mat w, size_t i, int n)
{
    size_t rb = inf_dtype_row_bytes(w.type, (size_t)n);
    const unsigned char *row = (const unsigned char *)w.data + i * rb;
    if (w.type == INF_DTYPE_F32)
        return (const float *)row;
#if HAVE_X86_PATHS
    if (HAS_FMA()) {
        row_to_f32_avx(buf, w.type, row, n);
        return buf;
    }
#endif
    inf_dtype_to_f32(buf, w.type, row, (size_t)n);
    return buf;
}

/* A converted row f32 (n,) . x (n,) by the rule of `fused`. */
static float dot_one(const float *row, const float *x, int n, bool fused)
{
#if HAVE_X86_PATHS
    if (fused && HAS_FMA())
        return dot_f32_fma((const unsigned char *)row, x, n);
    if (!fused && HAS_AVX())
        return dot_f32_avx(row, x, n);
#endif
    return dot_c(row, x, n, fused);
}

/* Row i of W (d,n) . x (n,), read straight from W where a kernel can. */
static float dot_row(inf_mat w, size_t i, const float *x, int n, float *scratch)
{
#if HAVE_X86_PATHS
    const unsigned char *row =
        (const unsigned char *)w.data + i * inf_dtype_row_bytes(w.type, (size_t)n);
    if (w.type == INF_DTYPE_F32 && HAS_AVX())
        return dot_f32_avx((const float *)row, x, n);
    if (HAS_FMA())
        switch (w.type) {
        case INF_DTYPE_BF16: return dot_bf16_fma(row, x, n);
        case INF_DTYPE_F16: return dot_f16_fma(row, x, n);
        case INF_DTYPE_Q8_0: return dot_q8_fma(row, x, n);
        case INF_DTYPE_F32: break;
        }
#endif
    return dot_c(row_f32(scratch, w, i, n), x, n, w.type != INF_DTYPE_F32);
}

#if HAVE_X86_PATHS
/* The AVX-512 single stream over rows [0, D/4*4) of W (d,n), n % 8 == 0, a
 * half or quantized type: out[i] = W[i] . x (+ bias[i]). Returns the rows
 * done; the caller finishes the rest one at a time (the same bits). */
static size_t single_rows_512(float *out, const float *x, inf_mat w, const float *bias, int n,
                              size_t D)
{
    size_t rb = inf_dtype_row_bytes(w.type, (size_t)n);
    const unsigned char *base = w.data;
    float v[4];
    size_t i = 0;
    for (; i + 4 <= D; i += 4) {
        const unsigned char *rows = base + i * rb;
        /* the last group prefetches itself: nothing beyond W */
        const unsigned char *next = i + 8 <= D ? rows + 4 * rb : rows;
        if (w.type == INF_DTYPE_BF16)
            dot4_bf16_512(v, rows, rb, next, x, n);
        else if (w.type == INF_DTYPE_F16)
            dot4_f16_512(v, rows, rb, next, x, n);
        else
            dot4_q8_512(v, rows, rb, next, x, n);
        for (int r = 0; r < 4; r++)
            out[i + r] = bias ? v[r] + bias[i + r] : v[r];
    }
    return i;
}

/* The AVX-512 batch over rows [0, D/4*4) of W (d,n), n % 8 == 0, a half or
 * quantized type: four rows converted into scratch (4n,), then tiles of up
 * to six sequences. Returns the rows done. */
static size_t batch_rows_512(float *out, size_t ldo, const float *x, inf_mat w,
                             const float *bias, int b, int n, size_t D, float *scratch)
{
    size_t N = (size_t)n, rb = inf_dtype_row_bytes(w.type, N);
    /* the fewest tiles, as even as they go (16 = 6+5+5, not 6+6+4): a
     * narrow tile loads more per FMA */
    int tiles = (b + TILE_SEQS - 1) / TILE_SEQS;
    /* bf16 rows widen in registers (a shift) inside each tile: for a decode
     * batch that beats widening them once into scratch and reading that back
     * (32 sequences: 15% more tokens/s on the Qwen shapes); prompt passes of
     * many more rows would widen each row too many times. */
    bool raw = w.type == INF_DTYPE_BF16 && tiles <= RAW_MAX_TILES;
    size_t i = 0;
    for (; i + 4 <= D; i += 4) {
        const unsigned char *rows = (const unsigned char *)w.data + i * rb;
        if (!raw)
            for (size_t r = 0; r < 4; r++)
                row_to_f32_512(scratch + r * N, w.type, rows + r * rb, n);
        for (int t = 0, k = 0; t < tiles; t++) {
            int S = b / tiles + (t < b % tiles ? 1 : 0);
            if (raw)
                tile4_bf16_512_s(out + (size_t)k * ldo + i, ldo, rows, rb, x + (size_t)k * N, N,
                                 bias ? bias + i : NULL, S, n);
            else
                tile4_512_s(out + (size_t)k * ldo + i, ldo, scratch, N, x + (size_t)k * N, N,
                            bias ? bias + i : NULL, S, n);
            k += S;
        }
    }
    return i;
}
#endif

/* W (d,n) @ X (B,n) -> out (B,d) (row stride ldo); scratch (4n,). Rows
 * outside, batch inside: each weight row is read from memory once per step for the whole
 * batch (converted once into scratch when B > 1, then dotted with every
 * sequence from L1), which is what makes a batch of B nearly as cheap as one
 * sequence while decode is memory-bound. */
static void cpu_matmul(float *out, size_t ldo, const float *x, inf_mat w, const float *bias, int b,
                       int n, int d, float *scratch)
{
    size_t N = (size_t)n, D = (size_t)d;
    bool fused = w.type != INF_DTYPE_F32;
    if (b == 1) {
        size_t i = 0;
#if HAVE_X86_PATHS
        if (fused && n % 8 == 0 && HAS_AVX512())
            i = single_rows_512(out, x, w, bias, n, D);
#endif
        for (; i < D; i++) {
            float r = dot_row(w, i, x, n, scratch);
            out[i] = bias ? r + bias[i] : r;
        }
        return;
    }
    const float *xs[4];
    float v[8];
    size_t i = 0;
#if HAVE_X86_PATHS
    /* four rows (scratch holds 4n floats) x up to six sequences at a time */
    if (fused && n % 8 == 0 && HAS_AVX512())
        i = batch_rows_512(out, ldo, x, w, bias, b, n, D, scratch);
    /* two rows x four sequences at a time */
    if (fused && HAS_FMA() && n % 8 == 0 && b >= 4)
        for (; i + 2 <= D; i += 2) {
            const float *r0 = row_f32(scratch, w, i, n), *r1 = row_f32(scratch + N, w, i + 1, n);
            int k = 0;
            for (; k + 4 <= b; k += 4) {
                for (int t = 0; t < 4; t++)
                    xs[t] = x + (size_t)(k + t) * N;
                dot2x4_f32_fma(v, r0, r1, xs, n);
                for (int t = 0; t < 4; t++) {
                    out[(size_t)(k + t) * ldo + i] = bias ? v[t] + bias[i] : v[t];
                    out[(size_t)(k + t) * ldo + i + 1] = bias ? v[4 + t] + bias[i + 1] : v[4 + t];
                }
            }
            for (; k < b; k++) {
                const float *xk = x + (size_t)k * N;
                float p = dot_one(r0, xk, n, true), q = dot_one(r1, xk, n, true);
                out[(size_t)k * ldo + i] = bias ? p + bias[i] : p;
                out[(size_t)k * ldo + i + 1] = bias ? q + bias[i + 1] : q;
            }
        }
#endif
    for (; i < D; i++) {
        float bi = bias ? bias[i] : 0.0f;
        const float *row = row_f32(scratch, w, i, n);
        int k = 0;
#if HAVE_X86_PATHS
        if (fused ? HAS_FMA() : HAS_AVX())
            for (; k + 4 <= b; k += 4) {
                for (int t = 0; t < 4; t++)
                    xs[t] = x + (size_t)(k + t) * N;
                if (fused)
                    dot4_f32_fma(v, row, xs, n);
                else
                    dot4_f32_avx(v, row, xs, n);
                for (int t = 0; t < 4; t++)
                    out[(size_t)(k + t) * ldo + i] = bias ? v[t] + bi : v[t];
            }
#endif
        for (; k < b; k++) {
            float r = dot_one(row, x + (size_t)k * N, n, fused);
            out[(size_t)k * ldo + i] = bias ? r + bi : r;
        }
    }
}

/* out (n,) = weight * (x / sqrt(mean(x^2) + eps)); out may alias x. */
static void cpu_rmsnorm(float *out, const float *x, const float *weight, int n, float eps)
{
    float ss = 0.0f;
    for (int j = 0; j < n; j++)
        ss += x[j] * x[j];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < n; j++)
        out[j] = weight[j] * (ss * x[j]);
}

/* v (n_heads, head_dim) rotated in place by angle pos * inv_freq[j] for pair j. */
static void cpu_rope(float *v, int n_heads, int head_dim, int pos, const float *inv_freq,
                     inf_rope_style style)
{
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *hv = v + (size_t)h * (size_t)head_dim;
        for (int j = 0; j < half; j++) {
            float val = (float)pos * inv_freq[j];
            float fcr = cosf(val), fci = sinf(val);
            int a = style == INF_ROPE_INTERLEAVED ? 2 * j : j;
            int b = style == INF_ROPE_INTERLEAVED ? 2 * j + 1 : j + half;
            float v0 = hv[a], v1 = hv[b];
            hv[a] = v0 * fcr - v1 * fci;
            hv[b] = v0 * fci + v1 * fcr;
        }
    }
}

/* x (n,) -> exp(x - max) / sum, in place. */
static void cpu_softmax(float *x, int n)
{
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

/* out (hd,) = sum_t softmax_t(q . k_t / sqrt(hd)) v_t over t < n_pos. */
/* score (8,) = q . k_t for t = t0..t0+7 (keys at k + t*stride), each one
 * chain over i in order: the bits of one position at a time, with eight
 * independent chains for the FP adder (held in registers, not an array the
 * compiler keeps in memory). */
static void scores8(float *restrict score, const float *restrict q, const float *restrict k,
                    int t0, int head_dim, size_t stride)
{
    const float *k0 = k + (size_t)t0 * stride;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, s5 = 0.0f, s6 = 0.0f,
          s7 = 0.0f;
    for (int i = 0; i < head_dim; i++) {
        float qi = q[i];
        s0 += qi * k0[i];
        s1 += qi * k0[stride + (size_t)i];
        s2 += qi * k0[2 * stride + (size_t)i];
        s3 += qi * k0[3 * stride + (size_t)i];
        s4 += qi * k0[4 * stride + (size_t)i];
        s5 += qi * k0[5 * stride + (size_t)i];
        s6 += qi * k0[6 * stride + (size_t)i];
        s7 += qi * k0[7 * stride + (size_t)i];
    }
    score[0] = s0, score[1] = s1, score[2] = s2, score[3] = s3;
    score[4] = s4, score[5] = s5, score[6] = s6, score[7] = s7;
}

static void cpu_attention(float *restrict out, float *restrict att, const float *restrict q,
                          const float *restrict k, const float *restrict v, int n_pos,
                          int head_dim, size_t stride)
{
    float scale = sqrtf((float)head_dim);
    /* Eight positions at a time, which prompt prefill (many rows over long
     * prefixes) feels; a position's score is the same either way. */
    int t = 0;
    for (; t + 8 <= n_pos; t += 8) {
        scores8(att + t, q, k, t, head_dim, stride);
        for (int j = 0; j < 8; j++)
            att[t + j] /= scale;
    }
    for (; t < n_pos; t++) {
        const float *kt = k + (size_t)t * stride;
        float score = 0.0f;
        for (int i = 0; i < head_dim; i++)
            score += q[i] * kt[i];
        att[t] = score / scale;
    }
    cpu_softmax(att, n_pos);
    /* restrict lets this vectorize over i (a rounded product, then a sum:
     * never contracted under -std=c11, so the same bits as scalar) */
    memset(out, 0, (size_t)head_dim * sizeof *out);
    for (t = 0; t < n_pos; t++) {
        const float *vt = v + (size_t)t * stride;
        float a = att[t];
        for (int i = 0; i < head_dim; i++)
            out[i] += a * vt[i];
    }
}

/* hb (n,) = silu(hb) * up */
static void cpu_swiglu(float *hb, const float *up, int n)
{
    for (int i = 0; i < n; i++) {
        float val = hb[i];
        val *= 1.0f / (1.0f + expf(-val));
        hb[i] = val * up[i];
    }
}

/* x (n,) += y (n,) */
static void cpu_add(float *x, const float *y, int n)
{
    for (int i = 0; i < n; i++)
        x[i] += y[i];
}

const inf__ops inf__ops_cpu = {
    .name = "cpu",
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .softmax = cpu_softmax,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
};
