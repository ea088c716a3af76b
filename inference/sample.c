/*
 * Sampling: temperature, top-k, top-p, min-p over one row of logits, with a
 * counter-based random stream, and temperature-1 log-probabilities.
 *
 * The random stream. Draw `step` of sample `sample` under seed `seed` is
 *
 *     u = (H(H(H(seed) ^ sample) ^ step) >> 11) * 2^-53        in [0, 1)
 *
 * where H is SplitMix64's finaliser (add the golden-ratio constant
 * 0x9E3779B97F4A7C15, then xor-shift-multiply by 0xBF58476D1CE4E5B9 and
 * 0x94D049BB133111EB). A draw is a pure function of its three keys: no state
 * is carried between steps, so a sample's tokens do not depend on which other
 * samples share its batch, on thread scheduling, or on the order of work.
 *
 * The filters, in order (each on the temperature-scaled distribution p):
 *   1. min_p: keep tokens with p >= min_p * max(p);
 *   2. top_k: keep the k most probable (ties: lower id first);
 *   3. top_p: keep the shortest most-probable-first prefix whose mass is at
 *      least top_p of what is left.
 * The kept tokens are walked most probable first (lower id on ties) when a
 * top-k/top-p sort happened, else in id order, and the first whose running
 * mass exceeds u * (kept mass) is the token.
 */
#include <math.h>
#include <stdlib.h>

#include "inference/inference_int.h"

static uint64_t splitmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double inf_rng_uniform(uint64_t seed, uint64_t sample, uint64_t step)
{
    uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ sample) ^ step);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

double inf__logsumexp(const float *logits, int n)
{
    float max = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > max)
            max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)logits[i] - (double)max);
    return (double)max + log(sum);
}

void inf_logprobs(float *out, const float *logits, int n)
{
    double lse = inf__logsumexp(logits, n);
    for (int i = 0; i < n; i++)
        out[i] = (float)((double)logits[i] - lse);
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* 0 for p in (1/2, 1], 1 for (1/4, 1/2], ..., 63 for everything smaller. */
static int bucket_of(double p)
{
    int e;
    frexp(p, &e); /* p = f * 2^e, f in [0.5, 1) */
    int b = -e;   /* p in [2^(e-1), 2^e) */
    if (p == ldexp(1.0, e - 1))
        b++;      /* exactly a power of two: (2^-(b+1), 2^-b] puts it one bucket up */
    b = b < 0 ? 0 : b;
    return b > 63 ? 63 : b;
}

/* Most probable first; lower id on ties. */
static int by_prob_desc(const void *a, const void *b, void *payload)
{
    const double *p = payload;
    int ia = *(const int *)a, ib = *(const int *)b;
    if (p[ia] > p[ib])
        return -1;
    if (p[ia] < p[ib])
        return 1;
    return (ia > ib) - (ia < ib);
}

int inf_sample_token(const float *logits, int n, const inf_gen_options *opts, uint64_t sample,
                     uint64_t step, double *work_p, int *work_idx)
{
    return inf__sample_token(logits, n, opts, sample, step, work_p, work_idx, NULL);
}

int inf__sample_token(const float *logits, int n, const inf_gen_options *opts, uint64_t sample,
                      uint64_t step, double *work_p, int *work_idx, double *lse)
{
    if (lse)
        *lse = NAN;
    if (opts->temperature <= 0.0f || opts->top_k == 1)
        return argmax(logits, n);

    /* p unnormalised, max(p) == 1 */
    double max = logits[argmax(logits, n)];
    double inv_t = 1.0 / (double)opts->temperature;
    double *p = work_p;
    int *idx = work_idx;
    double min_keep = opts->min_p > 0.0f ? (double)opts->min_p : 0.0;
    int m = 0, n_ordered = 0;     /* terms that are not NaN */
    for (int i = 0; i < n; i++) {
        p[i] = exp(((double)logits[i] - max) * inv_t);
        n_ordered += p[i] >= 0.0;
        if (p[i] > 0.0 && p[i] >= min_keep)
            idx[m++] = i;
    }
    /* the argmax always survives: p == 1 >= min_p */
    bool sort_k = opts->top_k > 0 && opts->top_k < m;
    bool sort_p = opts->top_p < 1.0f;
    if (sort_k || sort_p) {
        /*
         * Sort only what can matter. Bucket the candidates by binary exponent
         * (bucket b holds p in (2^-(b+1), 2^-b]) and keep the fewest most
         * probable buckets that hold top_k tokens (with top_k) or the top_p
         * mass (top_p alone). Every token left out is less probable than every
         * token kept, so the sorted kept tokens are exactly the first ones of
         * the full sorted order and the result is the same as sorting all.
         */
        double bucket_mass[64] = {0}, want = 0.0;
        int bucket_count[64] = {0};
        for (int i = 0; i < m; i++) {
            int b = bucket_of(p[idx[i]]);
            bucket_mass[b] += p[idx[i]];
            bucket_count[b]++;
        }
        if (!sort_k) {
            for (int b = 0; b < 64; b++)
                want += bucket_mass[b];
            want *= (double)opts->top_p;
        }
        int last = 63;
        double mass_so_far = 0.0;
        int count_so_far = 0;
        for (int b = 0; b < 64; b++) {
            mass_so_far += bucket_mass[b];
            count_so_far += bucket_count[b];
            if (sort_k ? count_so_far >= opts->top_k : mass_so_far >= want) {
                last = b;
                break;
            }
        }
        int kept = 0;
        for (int i = 0; i < m; i++)
            if (bucket_of(p[idx[i]]) <= last)
                idx[kept++] = idx[i];
        m = kept;
        qsort_r(idx, (size_t)m, sizeof *idx, by_prob_desc, p);
        if (sort_k) {
            m = opts->top_k;
            for (int i = 0; i < m; i++)
                want += p[idx[i]];
            want *= (double)opts->top_p;
        }
        if (sort_p) {
            double cum = 0.0;
            int keep = m;
            for (int i = 0; i < m; i++) {
                cum += p[idx[i]];
                if (cum >= want) {
                    keep = i + 1;
                    break;
                }
            }
            m = keep;
        }
    }
    double mass = 0.0;
    for (int i = 0; i < m; i++)
        mass += p[idx[i]];
    /* At temperature 1 with nothing cut, the kept p are inf__logsumexp's
     * terms (exp(l - max), ids in order; the zeros left out add nothing;
     * with a NaN its sum would differ), so its result is this sum's log plus
     * max, bit for bit: no second pass over the vocabulary. */
    if (lse && inv_t == 1.0 && n_ordered == n && !sort_k && !sort_p && min_keep == 0.0)
        *lse = max + log(mass);
    double r = inf_rng_uniform(opts->seed, sample, step) * mass;
    double cum = 0.0;
    for (int i = 0; i < m; i++) {
        cum += p[idx[i]];
        if (r < cum)
            return idx[i];
    }
    return idx[m - 1];
}
