/*
 * Weight storage types: row sizes, names, and exact conversions between
 * float32 and f16 / bf16 / Q8_0. The matmul kernels (forward_cpu.c) read the
 * stored types directly; these conversions serve embedding lookups, writers
 * and tests, and the batched matmul's one-row scratch.
 */
#include <math.h>
#include <string.h>

#include "inference/inference_int.h"

size_t inf_dtype_row_bytes(inf_dtype type, size_t cols)
{
    switch (type) {
    case INF_DTYPE_F32: return cols * 4;
    case INF_DTYPE_F16:
    case INF_DTYPE_BF16: return cols * 2;
    case INF_DTYPE_Q8_0: return cols % INF__Q8_BLOCK ? 0 : cols / INF__Q8_BLOCK * INF__Q8_BYTES;
    }
    return 0;
}

const char *inf_dtype_name(inf_dtype type)
{
    switch (type) {
    case INF_DTYPE_F32: return "f32";
    case INF_DTYPE_F16: return "f16";
    case INF_DTYPE_BF16: return "bf16";
    case INF_DTYPE_Q8_0: return "q8_0";
    }
    return "unknown";
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float inf__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    if (exp == 0x1f)        /* inf / nan */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {         /* zero / subnormal: man * 2^-24, exact in float */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t inf__f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u)   /* inf / nan */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
    if (a >= 0x477ff000u)   /* rounds to >= 65536: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {  /* below 2^-14: subnormal half, round to nearest even */
        float v = bits_f32(a) * 0x1p24f;      /* exact scaling */
        float r = nearbyintf(v);              /* default rounding mode: nearest even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t man = a & 0x7fffffu, exp = (a >> 23) - 112;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;                /* may carry into the exponent: still correct */
    return (uint16_t)(sign | h);
}

float inf__bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t inf__f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);     /* quiet nan */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

int inf_dtype_from_f32(void *dst, inf_dtype type, const float *src, size_t n)
{
    unsigned char *o = dst;
    switch (type) {
    case INF_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return 0;
    case INF_DTYPE_F16:
    case INF_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = type == INF_DTYPE_F16 ? inf__f32_to_f16(src[i]) : inf__f32_to_bf16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        return 0;
    case INF_DTYPE_Q8_0:
        if (n % INF__Q8_BLOCK)
            return INF_EINVALID;
        for (size_t b = 0; b < n / INF__Q8_BLOCK; b++) {
            const float *x = src + b * INF__Q8_BLOCK;
            unsigned char *blk = o + b * INF__Q8_BYTES;
            float amax = 0.0f;
            for (int i = 0; i < INF__Q8_BLOCK; i++)
                amax = fmaxf(amax, fabsf(x[i]));
            float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            uint16_t dh = inf__f32_to_f16(d);
            memcpy(blk, &dh, 2);
            for (int i = 0; i < INF__Q8_BLOCK; i++)
                blk[2 + i] = (unsigned char)(int8_t)roundf(x[i] * id);
        }
        return 0;
    }
    return INF_EINVALID;
}

void inf_dtype_to_f32(float *dst, inf_dtype type, const void *src, size_t n)
{
    const unsigned char *p = src;
    switch (type) {
    case INF_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return;
    case INF_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = inf__f16_to_f32(h);
        }
        return;
    case INF_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bits_f32((uint32_t)h << 16);
        }
        return;
    case INF_DTYPE_Q8_0:
        for (size_t b = 0; b < n / INF__Q8_BLOCK; b++) {
            const unsigned char *blk = p + b * INF__Q8_BYTES;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            float d = inf__f16_to_f32(dh);
            /* d has 11 significant bits and q 8: the product is exact in float */
            for (int i = 0; i < INF__Q8_BLOCK; i++)
                dst[b * INF__Q8_BLOCK + i] = d * (float)(int8_t)blk[2 + i];
        }
        return;
    }
}
