/*
 * The CPU backend: the operations table of inference_int.h in plain C.
 *
 * Arithmetic follows llama2.c's run.c (float accumulation, expf, sqrtf) so
 * that stories260K reproduces its published greedy text. Every output element
 * is computed by the same code in the same order whatever the batch size, so
 * batching never changes a sequence's results.
 */
#include <math.h>
#include <string.h>

#include "inference/inference_int.h"

/* w (n,) . x (n,) with eight float accumulators in a fixed order (lanes the
 * compiler can keep in one vector register; the order never depends on B). */
static float dot(const float *w, const float *x, int n)
{
    float acc[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += w[j + k] * x[j + k];
    for (; j < n; j++)
        acc[0] += w[j] * x[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* W (d,n) @ X (B,n) -> out (B,d). Rows outside, batch inside: each weight row
 * is fetched once per step for the whole batch and stays in L1 while the B
 * dots use it. (A register-blocked 4-sequence dot measured slower with the
 * baseline SSE2 code gcc emits here, so the simple loop stays.) */
static void cpu_matmul(float *out, const float *x, const float *w, const float *bias, int b,
                       int n, int d)
{
    size_t N = (size_t)n, D = (size_t)d;
    for (size_t i = 0; i < D; i++) {
        const float *row = w + i * N;
        for (int k = 0; k < b; k++) {
            float v = dot(row, x + (size_t)k * N, n);
            out[(size_t)k * D + i] = bias ? v + bias[i] : v;
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
static void cpu_attention(float *out, float *att, const float *q, const float *k, const float *v,
                          int n_pos, int head_dim, size_t stride)
{
    float scale = sqrtf((float)head_dim);
    for (int t = 0; t < n_pos; t++) {
        const float *kt = k + (size_t)t * stride;
        float score = 0.0f;
        for (int i = 0; i < head_dim; i++)
            score += q[i] * kt[i];
        att[t] = score / scale;
    }
    cpu_softmax(att, n_pos);
    memset(out, 0, (size_t)head_dim * sizeof *out);
    for (int t = 0; t < n_pos; t++) {
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
