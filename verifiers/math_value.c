/*
 * MATH answers: values and equivalence, and the public vf_math_* entry points.
 *
 * Two ways to get a value out of an expression tree:
 *   - exact: a GMP rational, for everything built from literals with + - * /,
 *     integer powers, perfect roots, factorials and binomials. Every
 *     intermediate is capped (EXACT_MAX_BITS), so 10^{10^{10}} stops being exact
 *     instead of eating memory; it is then compared numerically.
 *   - numeric: a long double complex, for pi, e, i, functions and variables. Variables
 *     take seeded values (a hash of the name and the point number), so the
 *     identity test is the same on every run and machine.
 * Both sides exact: compare exactly. One side exact and written with a decimal
 * point, the other not exact: unequal, since a terminating decimal is rational and
 * "3.6055" is only an approximation of \sqrt{13} -- unless the decimal is short
 * and the other side is that very number, as \sin(\pi/6) is 0.5 (decimal_is_value).
 * Otherwise: numeric with a tight relative tolerance at NPOINTS points.
 */
#include <complex.h>
#include <ctype.h>
#include <float.h>
#include <gmp.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verifiers/math_int.h"

#define EXACT_MAX_BITS 20000
#define NPOINTS 4
#define REL_TOL 1e-12L
#define ABS_TOL 1e-15L
#define MAX_ELEMS 64
/* A decimal answer of at most this many significant digits equals an inexact
 * expression (functions, pi, logs) whose value agrees with it to DECIMAL_TOL:
 * long double carries about 19 digits, so such an expression matches the
 * decimal in at least four digits past its last one, which an approximation
 * like 3.6055 for \sqrt{13} or 1.41421356237 for \sqrt2 never does, while
 * \sin(\pi/6) = 0.5 and \tan(\pi/4) = 1.0 do. Longer decimals stay unequal. */
#define DECIMAL_MAX_DIGITS 12
#define DECIMAL_TOL 1e-16L

typedef long double _Complex cld;

/* ----------------------------------------------------------------- exact */

static int too_big(const mpq_t q)
{
    return mpz_sizeinbase(mpq_numref(q), 2) + mpz_sizeinbase(mpq_denref(q), 2) > EXACT_MAX_BITS;
}

/* The literal at node `m` as a rational. Returns 1, or 0 when it is not one. */
static int ex_literal(const vf__mtree *t, const vf__mnode *m, mpq_t out)
{
    if (m->aux == 1) {
        mpq_set_si(out, (long)m->val, 1);
        return 1;
    }
    char buf[VF__MATH_MAX_INPUT + 2];
    size_t w = 0, frac = 0;
    int seen_dot = 0;
    for (uint32_t k = 0; k < m->len && w + 1 < sizeof buf; k++) {
        char c = t->text[m->start + k];
        if (c == '.') {
            seen_dot = 1;
            continue;
        }
        buf[w++] = c;
        if (seen_dot)
            frac++;
    }
    if (w == 0)
        return 0;
    buf[w] = '\0';
    if (m->aux >= 2) {
        if (mpz_set_str(mpq_numref(out), buf, (int)m->aux) != 0)
            return 0;
        mpz_set_ui(mpq_denref(out), 1);
        return 1;
    }
    if (mpz_set_str(mpq_numref(out), buf, 10) != 0)
        return 0;
    mpz_ui_pow_ui(mpq_denref(out), 10, frac);
    if (m->flags & VF__MF_REPEAT) {
        /* 0.1\overline{6}: (016 - 01) / (10^1 * (10^1 - 1)) */
        mpz_t all;
        mpz_init_set(all, mpq_numref(out));
        for (uint32_t k = 0; k < m->rep_len; k++) {
            mpz_mul_ui(all, all, 10);
            mpz_add_ui(all, all, (unsigned long)(t->text[m->rep_start + k] - '0'));
        }
        mpz_sub(mpq_numref(out), all, mpq_numref(out));
        mpz_t nines;
        mpz_init(nines);
        mpz_ui_pow_ui(nines, 10, m->rep_len);
        mpz_sub_ui(nines, nines, 1);
        mpz_mul(mpq_denref(out), mpq_denref(out), nines);
        mpz_clear(nines);
        mpz_clear(all);
    }
    mpq_canonicalize(out);
    return 1;
}

/* Exact root: out = q^(1/n) when that is rational. */
static int ex_root(mpq_t out, const mpq_t q, unsigned long n)
{
    int neg = mpq_sgn(q) < 0;
    if (neg && n % 2 == 0)
        return 0;
    mpz_t a, b;
    mpz_inits(a, b, NULL);
    mpz_abs(a, mpq_numref(q));
    int ok = mpz_root(a, a, n) && mpz_root(b, mpq_denref(q), n);
    if (ok) {
        mpz_set(mpq_numref(out), a);
        mpz_set(mpq_denref(out), b);
        if (neg)
            mpq_neg(out, out);
    }
    mpz_clears(a, b, NULL);
    return ok;
}

static int is_small_int(const mpq_t q, long lo, long hi, long *v)
{
    if (mpz_cmp_ui(mpq_denref(q), 1) != 0 || !mpz_fits_slong_p(mpq_numref(q)))
        return 0;
    long x = mpz_get_si(mpq_numref(q));
    if (x < lo || x > hi)
        return 0;
    *v = x;
    return 1;
}

/* Exact value of node i. Returns 1 (out set) or 0 (not an exact rational, or
 * undefined, or too big). */
static int ex_eval(const vf__mtree *t, int i, mpq_t out)
{
    const vf__mnode *m = &t->nodes[i];
    int ok = 0;
    mpq_t y;
    switch (m->kind) {
    case VF__M_NUM:
        return ex_literal(t, m, out);
    case VF__M_NEG:
        if (!ex_eval(t, m->a, out))
            return 0;
        mpq_neg(out, out);
        return 1;
    case VF__M_ADD: case VF__M_SUB: case VF__M_MUL: case VF__M_DIV:
    case VF__M_POW: case VF__M_BINOM:
        break;
    case VF__M_ROOT: {
        long n = 2;
        if (m->b >= 0) {
            mpq_init(y);
            int k = ex_eval(t, m->b, y) && is_small_int(y, 2, 64, &n);
            mpq_clear(y);
            if (!k)
                return 0;
        }
        if (!ex_eval(t, m->a, out))
            return 0;
        return ex_root(out, out, (unsigned long)n);
    }
    case VF__M_FACT: {
        long n;
        if (!ex_eval(t, m->a, out) || !is_small_int(out, 0, 2000, &n))
            return 0;
        mpz_fac_ui(mpq_numref(out), (unsigned long)n);
        mpz_set_ui(mpq_denref(out), 1);
        return 1;
    }
    case VF__M_FUNC:
        if (m->aux != VF__F_ABS && m->aux != VF__F_FLOOR && m->aux != VF__F_CEIL)
            return 0;
        if (!ex_eval(t, m->a, out))
            return 0;
        if (m->aux == VF__F_ABS) {
            mpq_abs(out, out);
        } else {
            if (m->aux == VF__F_FLOOR)
                mpz_fdiv_q(mpq_numref(out), mpq_numref(out), mpq_denref(out));
            else
                mpz_cdiv_q(mpq_numref(out), mpq_numref(out), mpq_denref(out));
            mpz_set_ui(mpq_denref(out), 1);
        }
        return 1;
    default:
        return 0;
    }
    /* binary */
    mpq_init(y);
    if (!ex_eval(t, m->a, out) || !ex_eval(t, m->b, y))
        goto done;
    switch (m->kind) {
    case VF__M_ADD: mpq_add(out, out, y); break;
    case VF__M_SUB: mpq_sub(out, out, y); break;
    case VF__M_MUL: mpq_mul(out, out, y); break;
    case VF__M_DIV:
        if (mpq_sgn(y) == 0)
            goto done;
        mpq_div(out, out, y);
        break;
    case VF__M_POW: {
        /* rational exponent p/q: an exact q-th root, then an integer power */
        long q = 1, pw;
        if (mpz_cmp_ui(mpq_denref(y), 1) != 0) {
            if (!mpz_fits_slong_p(mpq_denref(y)) || mpz_get_si(mpq_denref(y)) > 64)
                goto done;
            q = mpz_get_si(mpq_denref(y));
            if (!ex_root(out, out, (unsigned long)q))
                goto done;
            mpz_set_ui(mpq_denref(y), 1);
        }
        if (!is_small_int(y, -100000, 100000, &pw))
            goto done;
        size_t bits = mpz_sizeinbase(mpq_numref(out), 2) + mpz_sizeinbase(mpq_denref(out), 2);
        if (bits * (size_t)labs(pw) > EXACT_MAX_BITS)
            goto done;
        if (pw < 0) {
            if (mpq_sgn(out) == 0)
                goto done;
            mpq_inv(out, out);
            pw = -pw;
        }
        mpz_pow_ui(mpq_numref(out), mpq_numref(out), (unsigned long)pw);
        mpz_pow_ui(mpq_denref(out), mpq_denref(out), (unsigned long)pw);
        break;
    }
    case VF__M_BINOM: {
        long n, k;
        if (!is_small_int(out, -5000, 5000, &n) || !is_small_int(y, -5000, 5000, &k))
            goto done;
        if (k < 0) {
            mpq_set_ui(out, 0, 1);
            break;
        }
        mpz_bin_ui(mpq_numref(out), mpq_numref(out), (unsigned long)k);
        mpz_set_ui(mpq_denref(out), 1);
        break;
    }
    default:
        goto done;
    }
    ok = !too_big(out);
done:
    mpq_clear(y);
    return ok;
}

/* --------------------------------------------------------------- numeric */

static const long double k_pi = 3.141592653589793238462643383279502884L;
static const long double k_e = 2.718281828459045235360287471352662498L;

/* Seeded value of a variable at a point: in [0.6, 2.6), away from 0 and 1 where
 * identities like x^2 = x hold by accident. */
static long double var_value(uint32_t hash, int point)
{
    uint64_t z = ((uint64_t)hash << 8) ^ (uint64_t)(point + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return 0.6L + (long double)(z >> 11) / (long double)(1ull << 53) * 2.0L;
}

static int finite_c(cld z)
{
    return isfinite(creall(z)) && isfinite(cimagl(z));
}

static cld ipow(cld b, long n)
{
    cld r = 1.0L;
    int neg = n < 0;
    unsigned long u = neg ? (unsigned long)(-n) : (unsigned long)n;
    while (u) {
        if (u & 1)
            r *= b;
        b *= b;
        u >>= 1;
    }
    return neg ? 1.0L / r : r;
}

static int nu_eval(const vf__mtree *t, int i, int point, cld *out);

static int nu_real_int(const vf__mtree *t, int i, int point, long lo, long hi, long *v)
{
    cld z;
    if (nu_eval(t, i, point, &z) < 0 || cimagl(z) != 0.0L)
        return -1;
    long double r = creall(z);
    if (r != floorl(r) || r < lo || r > hi)
        return -1;
    *v = (long)r;
    return 0;
}

/* Numeric value of node i at a point. Returns 0, or -1 when undefined there. */
static int nu_eval(const vf__mtree *t, int i, int point, cld *out)
{
    const vf__mnode *m = &t->nodes[i];
    cld a = 0, b = 0;
    switch (m->kind) {
    case VF__M_NUM:
        if (isnan(m->val)) {
            mpq_t q;
            mpq_init(q);
            int ok = ex_literal(t, m, q);
            *out = ok ? (long double)mpq_get_d(q) : 0;
            mpq_clear(q);
            return ok ? 0 : -1;
        }
        *out = m->val;
        return 0;
    case VF__M_VAR: *out = var_value(m->hash, point); return 0;
    case VF__M_PI: *out = k_pi; return 0;
    case VF__M_E: *out = k_e; return 0;
    case VF__M_I: *out = I; return 0;
    case VF__M_NEG:
        if (nu_eval(t, m->a, point, &a) < 0)
            return -1;
        *out = -a;
        return 0;
    case VF__M_ADD: case VF__M_SUB: case VF__M_MUL: case VF__M_DIV:
        if (nu_eval(t, m->a, point, &a) < 0 || nu_eval(t, m->b, point, &b) < 0)
            return -1;
        if (m->kind == VF__M_ADD)
            *out = a + b;
        else if (m->kind == VF__M_SUB)
            *out = a - b;
        else if (m->kind == VF__M_MUL)
            *out = a * b;
        else {
            if (b == 0)
                return -1;
            *out = a / b;
        }
        break;
    case VF__M_POW:
        if (nu_eval(t, m->a, point, &a) < 0 || nu_eval(t, m->b, point, &b) < 0)
            return -1;
        if (cimagl(b) == 0 && creall(b) == floorl(creall(b)) && fabsl(creall(b)) <= 4096) {
            if (a == 0 && creall(b) < 0)
                return -1;
            *out = ipow(a, (long)creall(b));
        } else if (cimagl(a) == 0 && creall(a) > 0 && cimagl(b) == 0) {
            *out = powl(creall(a), creall(b));
        } else {
            if (a == 0)
                return -1;
            *out = cpowl(a, b);
        }
        break;
    case VF__M_ROOT: {
        long n = 2;
        if (m->b >= 0 && nu_real_int(t, m->b, point, 2, 64, &n) < 0)
            return -1;
        if (nu_eval(t, m->a, point, &a) < 0)
            return -1;
        if (n == 2)
            *out = csqrtl(a);
        else if (cimagl(a) == 0 && (creall(a) >= 0 || n % 2 == 1))
            *out = creall(a) >= 0 ? powl(creall(a), 1.0L / n) : -powl(-creall(a), 1.0L / n);
        else
            *out = cpowl(a, 1.0L / n);
        break;
    }
    case VF__M_LOG:
        if (nu_eval(t, m->a, point, &a) < 0 || a == 0)
            return -1;
        if (m->b >= 0) {
            if (nu_eval(t, m->b, point, &b) < 0 || b == 0 || b == 1)
                return -1;
            *out = clogl(a) / clogl(b);
        } else {
            *out = clogl(a);
        }
        break;
    case VF__M_FACT: {
        if (nu_eval(t, m->a, point, &a) < 0 || cimagl(a) != 0)
            return -1;
        long double x = creall(a);
        if (x < 0 && x == floorl(x))
            return -1;
        *out = tgammal(x + 1.0L);
        break;
    }
    case VF__M_BINOM: {
        long k;
        if (nu_eval(t, m->a, point, &a) < 0 || nu_real_int(t, m->b, point, -1000, 1000, &k) < 0)
            return -1;
        cld r = 1.0L;
        for (long j = 0; j < k; j++)
            r = r * (a - (long double)j) / (long double)(j + 1);
        *out = k < 0 ? 0 : r;
        break;
    }
    case VF__M_FUNC:
        if (nu_eval(t, m->a, point, &a) < 0)
            return -1;
        switch (m->aux) {
        case VF__F_SIN: *out = csinl(a); break;
        case VF__F_COS: *out = ccosl(a); break;
        case VF__F_TAN: *out = ctanl(a); break;
        case VF__F_COT: b = ctanl(a); if (b == 0) return -1; *out = 1.0L / b; break;
        case VF__F_SEC: b = ccosl(a); if (b == 0) return -1; *out = 1.0L / b; break;
        case VF__F_CSC: b = csinl(a); if (b == 0) return -1; *out = 1.0L / b; break;
        case VF__F_ASIN: *out = casinl(a); break;
        case VF__F_ACOS: *out = cacosl(a); break;
        case VF__F_ATAN: *out = catanl(a); break;
        case VF__F_SINH: *out = csinhl(a); break;
        case VF__F_COSH: *out = ccoshl(a); break;
        case VF__F_TANH: *out = ctanhl(a); break;
        case VF__F_EXP: *out = cexpl(a); break;
        case VF__F_ABS: *out = cabsl(a); break;
        case VF__F_FLOOR: *out = floorl(creall(a)); break;
        case VF__F_CEIL: *out = ceill(creall(a)); break;
        default: return -1;
        }
        break;
    default:
        return -1; /* infinity and structures have no numeric value */
    }
    return finite_c(*out) ? 0 : -1;
}

static int close_c(cld a, cld b)
{
    long double scale = fmaxl(cabsl(a), cabsl(b));
    return cabsl(a - b) <= REL_TOL * scale + ABS_TOL;
}

/* ---------------------------------------------------------- scalar equality */

/* One element of a solution list: node `i`, or when sign != 0 the value a + sign*b
 * of the \pm node `i`. */
typedef struct elem {
    const vf__mtree *t;
    int i;
    int sign;
} elem;

static int any_kind(const vf__mtree *t, int i, int kind)
{
    if (i < 0)
        return 0;
    const vf__mnode *m = &t->nodes[i];
    if (m->kind == kind)
        return 1;
    return any_kind(t, m->a, kind) || any_kind(t, m->b, kind);
}

static int has_decimal(const vf__mtree *t, int i)
{
    if (i < 0)
        return 0;
    const vf__mnode *m = &t->nodes[i];
    if (m->kind == VF__M_NUM && (m->flags & VF__MF_DECIMAL))
        return 1;
    return has_decimal(t, m->a) || has_decimal(t, m->b);
}

static int elem_has(const elem *e, int kind)
{
    return any_kind(e->t, e->i, kind);
}

static int elem_exact(const elem *e, mpq_t out)
{
    if (e->sign == 0)
        return ex_eval(e->t, e->i, out);
    const vf__mnode *m = &e->t->nodes[e->i];
    mpq_t y;
    mpq_init(y);
    int ok = ex_eval(e->t, m->a, out) && ex_eval(e->t, m->b, y);
    if (ok) {
        if (e->sign > 0)
            mpq_add(out, out, y);
        else
            mpq_sub(out, out, y);
    }
    mpq_clear(y);
    return ok;
}

static int elem_num(const elem *e, int point, cld *out)
{
    if (e->sign == 0)
        return nu_eval(e->t, e->i, point, out);
    const vf__mnode *m = &e->t->nodes[e->i];
    cld a, b;
    if (nu_eval(e->t, m->a, point, &a) < 0 || nu_eval(e->t, m->b, point, &b) < 0)
        return -1;
    *out = e->sign > 0 ? a + b : a - b;
    return 0;
}

/* +1 / -1 for (minus) infinity, 0 otherwise. */
static int inf_sign(const vf__mtree *t, int i)
{
    const vf__mnode *m = &t->nodes[i];
    if (m->kind == VF__M_INF)
        return 1;
    if (m->kind == VF__M_NEG)
        return -inf_sign(t, m->a);
    return 0;
}

/* Whether the exact decimal q (from a literal like "0.5") is the value of the
 * inexact element e, by the rule at DECIMAL_MAX_DIGITS. */
static int decimal_is_value(const mpq_t q, const elem *e)
{
    /* q = m / 10^k with k minimal: a terminating decimal, or not one at all. */
    mpz_t m, p;
    mpz_inits(m, p, NULL);
    int k = 0, ok = 0;
    for (; k <= 40; k++) {
        mpz_ui_pow_ui(p, 10, (unsigned long)k);
        mpz_mul(m, mpq_numref(q), p);
        if (mpz_divisible_p(m, mpq_denref(q))) {
            mpz_divexact(m, m, mpq_denref(q));
            ok = 1;
            break;
        }
    }
    int e10 = -k;
    while (ok && mpz_sgn(m) != 0 && mpz_divisible_ui_p(m, 10)) {
        mpz_divexact_ui(m, m, 10);
        e10++;
    }
    char text[64];
    ok = ok && mpz_sizeinbase(m, 10) <= DECIMAL_MAX_DIGITS + 1;
    if (ok) {
        char *digits = mpz_get_str(NULL, 10, m);
        ok = digits && strlen(digits) - (digits[0] == '-') <= DECIMAL_MAX_DIGITS;
        if (ok)
            snprintf(text, sizeof text, "%se%d", digits, e10);
        free(digits);
    }
    mpz_clears(m, p, NULL);
    cld v;
    if (!ok || elem_num(e, 0, &v) < 0)
        return 0;
    long double d = strtold(text, NULL);    /* correctly rounded */
    long double err = cabsl(v - d);
    return d == 0 ? err <= DECIMAL_TOL : err <= DECIMAL_TOL * fabsl(d);
}

static int scalar_equal(const elem *x, const elem *y)
{
    if (x->sign == 0 && y->sign == 0) {
        int sx = inf_sign(x->t, x->i), sy = inf_sign(y->t, y->i);
        if (sx || sy)
            return sx == sy;
    }
    int vars = elem_has(x, VF__M_VAR) || elem_has(y, VF__M_VAR);
    if (!vars) {
        mpq_t qx, qy;
        mpq_inits(qx, qy, NULL);
        int ex = elem_exact(x, qx), ey = elem_exact(y, qy);
        int verdict = -1;
        if (ex && ey)
            verdict = mpq_equal(qx, qy) != 0;
        else if (ex && !ey && has_decimal(x->t, x->i))
            verdict = decimal_is_value(qx, y);
        else if (ey && !ex && has_decimal(y->t, y->i))
            verdict = decimal_is_value(qy, x);
        mpq_clears(qx, qy, NULL);
        if (verdict >= 0)
            return verdict;
        cld a, b;
        if (elem_num(x, 0, &a) < 0 || elem_num(y, 0, &b) < 0)
            return 0;
        return close_c(a, b);
    }
    int compared = 0;
    for (int pt = 0; pt < NPOINTS; pt++) {
        cld a, b;
        int ra = elem_num(x, pt, &a), rb = elem_num(y, pt, &b);
        if (ra < 0 && rb < 0)
            continue;
        if (ra < 0 || rb < 0 || !close_c(a, b))
            return 0;
        compared++;
    }
    return compared >= 2;
}

/* ------------------------------------------------------- structural equality */

static int node_equal(const vf__mtree *x, int i, const vf__mtree *y, int j);

/* "x = 5" and "y = 2x + 3" are answers of the form name = value: the value. */
static int strip_eq(const vf__mtree *t, int i)
{
    while (i >= 0 && t->nodes[i].kind == VF__M_EQ && t->nodes[t->nodes[i].a].kind == VF__M_VAR)
        i = t->nodes[i].b;
    return i;
}

static int is_unordered(int kind)
{
    return kind == VF__M_LIST || kind == VF__M_SET || kind == VF__M_PM;
}

/* The elements of a solution list / set / \pm, \pm expanded. Returns the count,
 * or -1 when there are too many. */
static int collect(const vf__mtree *t, int i, elem *out, int n)
{
    const vf__mnode *m = &t->nodes[i];
    if (m->kind == VF__M_LIST || m->kind == VF__M_SET) {
        for (int c = m->a; c >= 0; c = t->nodes[c].next) {
            n = collect(t, strip_eq(t, c), out, n);
            if (n < 0)
                return -1;
        }
        return n;
    }
    if (n + 2 > MAX_ELEMS)
        return -1;
    if (m->kind == VF__M_PM) {
        out[n++] = (elem){ t, i, +1 };
        out[n++] = (elem){ t, i, -1 };
        return n;
    }
    out[n++] = (elem){ t, i, 0 };
    return n;
}

static int elem_equal(const elem *x, const elem *y)
{
    if (x->sign == 0 && y->sign == 0)
        return node_equal(x->t, x->i, y->t, y->i);
    const vf__mnode *mx = &x->t->nodes[x->i], *my = &y->t->nodes[y->i];
    if ((x->sign == 0 && mx->kind >= VF__M_EQ) || (y->sign == 0 && my->kind >= VF__M_EQ))
        return 0;
    return scalar_equal(x, y);
}

static int unordered_equal(const vf__mtree *x, int i, const vf__mtree *y, int j)
{
    elem ex[MAX_ELEMS], ey[MAX_ELEMS];
    int nx = collect(x, i, ex, 0), ny = collect(y, j, ey, 0);
    if (nx < 0 || ny < 0 || nx != ny)
        return 0;
    char used[MAX_ELEMS] = { 0 };
    for (int a = 0; a < nx; a++) {
        int found = 0;
        for (int b = 0; b < ny && !found; b++) {
            if (!used[b] && elem_equal(&ex[a], &ey[b])) {
                used[b] = 1;
                found = 1;
            }
        }
        if (!found)
            return 0;
    }
    return 1;
}

static int count_children(const vf__mtree *t, int i)
{
    int n = 0;
    for (int c = t->nodes[i].a; c >= 0; c = t->nodes[c].next)
        n++;
    return n;
}

static int ordered_children_equal(const vf__mtree *x, int ci, const vf__mtree *y, int cj)
{
    for (; ci >= 0 && cj >= 0; ci = x->nodes[ci].next, cj = y->nodes[cj].next)
        if (!node_equal(x, ci, y, cj))
            return 0;
    return ci < 0 && cj < 0;
}

/* A matrix with one row or one column as its cells in order; -1 otherwise. */
static int matrix_cells(const vf__mtree *t, int i, int *cells, int cap)
{
    int rows = count_children(t, i), n = 0;
    for (int r = t->nodes[i].a; r >= 0; r = t->nodes[r].next) {
        int cols = count_children(t, r);
        if (rows > 1 && cols != 1)
            return -1;
        for (int c = t->nodes[r].a; c >= 0; c = t->nodes[c].next) {
            if (n >= cap)
                return -1;
            cells[n++] = c;
        }
    }
    return n;
}

static int matrix_vs_tuple(const vf__mtree *x, int i, const vf__mtree *y, int j)
{
    int cells[MAX_ELEMS];
    int n = matrix_cells(x, i, cells, MAX_ELEMS);
    if (n < 0 || n != count_children(y, j))
        return 0;
    int k = 0;
    for (int c = y->nodes[j].a; c >= 0; c = y->nodes[c].next, k++)
        if (!node_equal(x, cells[k], y, c))
            return 0;
    return 1;
}

/* Intervals, where a 2-tuple "(a, b)" reads as the open interval. An interval
 * keeps its ends in a / b; a tuple keeps them as its first two children. */
static int interval_equal(const vf__mtree *x, int i, const vf__mtree *y, int j)
{
    const vf__mnode *a = &x->nodes[i], *b = &y->nodes[j];
    int fa = a->kind == VF__M_INTERVAL ? (a->flags & (VF__MF_LO_CLOSED | VF__MF_HI_CLOSED)) : 0;
    int fb = b->kind == VF__M_INTERVAL ? (b->flags & (VF__MF_LO_CLOSED | VF__MF_HI_CLOSED)) : 0;
    if (fa != fb)
        return 0;
    int alo = a->a, blo = b->a;
    if (alo < 0 || blo < 0)
        return 0;
    int ahi = a->kind == VF__M_INTERVAL ? a->b : x->nodes[alo].next;
    int bhi = b->kind == VF__M_INTERVAL ? b->b : y->nodes[blo].next;
    if (ahi < 0 || bhi < 0)
        return 0;
    if (a->kind == VF__M_TUPLE && x->nodes[ahi].next >= 0)
        return 0;
    if (b->kind == VF__M_TUPLE && y->nodes[bhi].next >= 0)
        return 0;
    return node_equal(x, alo, y, blo) && node_equal(x, ahi, y, bhi);
}

/* One direction of equation_equal: is lhs - rhs of y a constant multiple of x's,
 * with a ratio that is not vanishingly small? */
static int equation_dir(const vf__mtree *x, int i, const vf__mtree *y, int j)
{
    const vf__mnode *a = &x->nodes[i], *b = &y->nodes[j];
    if (a->a < 0 || b->a < 0 || x->nodes[a->a].kind >= VF__M_PM || x->nodes[a->b].kind >= VF__M_PM ||
        y->nodes[b->a].kind >= VF__M_PM || y->nodes[b->b].kind >= VF__M_PM)
        return 0;
    cld dx[NPOINTS], dy[NPOINTS];
    int okp[NPOINTS];
    for (int pt = 0; pt < NPOINTS; pt++) {
        cld l, r;
        okp[pt] = 0;
        if (nu_eval(x, a->a, pt, &l) < 0 || nu_eval(x, a->b, pt, &r) < 0)
            continue;
        dx[pt] = l - r;
        if (nu_eval(y, b->a, pt, &l) < 0 || nu_eval(y, b->b, pt, &r) < 0)
            return 0;
        dy[pt] = l - r;
        okp[pt] = 1;
    }
    cld ratio = 0;
    int have = 0, compared = 0;
    for (int pt = 0; pt < NPOINTS; pt++) {
        if (!okp[pt])
            continue;
        if (!have && cabsl(dx[pt]) > 1e-9L) {
            ratio = dy[pt] / dx[pt];
            have = 1;
        }
    }
    if (have && cabsl(ratio) < 1e-12L)
        return 0;
    for (int pt = 0; pt < NPOINTS; pt++) {
        if (!okp[pt])
            continue;
        if (!close_c(dy[pt], ratio * dx[pt]))
            return 0;
        compared++;
    }
    return compared >= 2;
}

/* Equations: equal when lhs - rhs of one is a nonzero constant multiple of the
 * other's ("2x + 2y = 4" is "x + y = 2"). Checked both ways round, so that a
 * huge constant on one side cannot swamp the other's variables in one
 * direction only (found by the fuzzer: "5!! = x" vs "2 = 0 x"). */
static int equation_equal(const vf__mtree *x, int i, const vf__mtree *y, int j)
{
    return equation_dir(x, i, y, j) && equation_dir(y, j, x, i);
}

static int node_equal(const vf__mtree *x, int i, const vf__mtree *y, int j)
{
    /* "y = 2x + 3" and "2x - y + 3 = 0" are the same line: compare equations as
     * equations first, then by their values ("x = 5" and "y = 5" both say 5). */
    if (i >= 0 && j >= 0 && x->nodes[i].kind == VF__M_EQ && y->nodes[j].kind == VF__M_EQ &&
        equation_equal(x, i, y, j))
        return 1;
    i = strip_eq(x, i);
    j = strip_eq(y, j);
    if (i < 0 || j < 0)
        return 0;
    int kx = x->nodes[i].kind, ky = y->nodes[j].kind;
    if (is_unordered(kx) || is_unordered(ky))
        return unordered_equal(x, i, y, j);
    if (kx == VF__M_EQ || ky == VF__M_EQ)
        return kx == ky && equation_equal(x, i, y, j);
    if (kx == VF__M_TUPLE && ky == VF__M_TUPLE)
        return ordered_children_equal(x, x->nodes[i].a, y, y->nodes[j].a);
    if ((kx == VF__M_INTERVAL || kx == VF__M_TUPLE) && (ky == VF__M_INTERVAL || ky == VF__M_TUPLE))
        return interval_equal(x, i, y, j);
    if (kx == VF__M_UNION && ky == VF__M_UNION) {
        /* parts in any order */
        int n = count_children(x, i);
        if (n != count_children(y, j) || n > MAX_ELEMS)
            return 0;
        char used[MAX_ELEMS] = { 0 };
        for (int c = x->nodes[i].a; c >= 0; c = x->nodes[c].next) {
            int k = 0, found = 0;
            for (int d = y->nodes[j].a; d >= 0 && !found; d = y->nodes[d].next, k++) {
                if (!used[k] && node_equal(x, c, y, d)) {
                    used[k] = 1;
                    found = 1;
                }
            }
            if (!found)
                return 0;
        }
        return 1;
    }
    if (kx == VF__M_MATRIX && ky == VF__M_MATRIX) {
        if (count_children(x, i) != count_children(y, j))
            return 0;
        for (int r = x->nodes[i].a, s = y->nodes[j].a; r >= 0 && s >= 0;
             r = x->nodes[r].next, s = y->nodes[s].next)
            if (!ordered_children_equal(x, x->nodes[r].a, y, y->nodes[s].a))
                return 0;
        return 1;
    }
    if (kx == VF__M_MATRIX && ky == VF__M_TUPLE)
        return matrix_vs_tuple(x, i, y, j);
    if (ky == VF__M_MATRIX && kx == VF__M_TUPLE)
        return matrix_vs_tuple(y, j, x, i);
    if (kx >= VF__M_PM || ky >= VF__M_PM)
        return 0;
    elem a = { x, i, 0 }, b = { y, j, 0 };
    return scalar_equal(&a, &b);
}

int vf__math_tree_equal(const vf__mtree *x, const vf__mtree *y)
{
    if (x->kind != y->kind || x->kind == VF__ANS_NONE)
        return 0;
    if (x->kind == VF__ANS_TEXT || x->kind == VF__ANS_CHOICE)
        return strcmp(x->word, y->word) == 0;
    return node_equal(x, x->root, y, y->root);
}

/* ----------------------------------------------------------------- render */

typedef struct rbuf {
    char *p;
    size_t n, cap;
} rbuf;

static void r_puts(rbuf *b, const char *s, size_t n)
{
    for (size_t k = 0; k < n && b->n + 1 < b->cap; k++)
        b->p[b->n++] = s[k];
    b->p[b->n] = '\0';
}

static void r_str(rbuf *b, const char *s)
{
    r_puts(b, s, strlen(s));
}

static void render(rbuf *b, const vf__mtree *t, int i, int depth)
{
    static const char *const fn[] = { "sin", "cos", "tan", "cot", "sec", "csc", "asin",
        "acos", "atan", "sinh", "cosh", "tanh", "exp", "abs", "floor", "ceil" };
    if (i < 0 || depth > 2 * VF__MATH_MAX_DEPTH + 8 || b->n + 1 >= b->cap) {
        r_str(b, "?");
        return;
    }
    const vf__mnode *m = &t->nodes[i];
    const char *op = NULL;
    switch (m->kind) {
    case VF__M_NUM:
        if (m->aux == 1) {
            r_str(b, m->val == 10.0L ? "10" : "0");
        } else {
            r_puts(b, t->text + m->start, m->len);
            if (m->flags & VF__MF_REPEAT) {
                r_str(b, "(");
                r_puts(b, t->text + m->rep_start, m->rep_len);
                r_str(b, ")...");
            }
            if (m->aux >= 2) {
                char base[8];
                base[0] = '_';
                base[1] = (char)('0' + m->aux / 10);
                base[2] = (char)('0' + m->aux % 10);
                base[3] = '\0';
                r_str(b, base);
            }
        }
        return;
    case VF__M_VAR:
        r_puts(b, t->text + m->start, m->len);
        return;
    case VF__M_PI: r_str(b, "pi"); return;
    case VF__M_E: r_str(b, "e"); return;
    case VF__M_I: r_str(b, "i"); return;
    case VF__M_INF: r_str(b, "oo"); return;
    case VF__M_ADD: op = "+"; break;
    case VF__M_SUB: op = "-"; break;
    case VF__M_MUL: op = "*"; break;
    case VF__M_DIV: op = "/"; break;
    case VF__M_POW: op = "^"; break;
    case VF__M_PM: op = "+-"; break;
    case VF__M_EQ: op = "="; break;
    case VF__M_NEG: r_str(b, "-("); render(b, t, m->a, depth + 1); r_str(b, ")"); return;
    case VF__M_FACT: r_str(b, "("); render(b, t, m->a, depth + 1); r_str(b, ")!"); return;
    case VF__M_FUNC:
        r_str(b, m->aux < sizeof fn / sizeof fn[0] ? fn[m->aux] : "f");
        r_str(b, "(");
        render(b, t, m->a, depth + 1);
        r_str(b, ")");
        return;
    case VF__M_LOG: case VF__M_ROOT: case VF__M_BINOM:
        r_str(b, m->kind == VF__M_LOG ? "log(" : m->kind == VF__M_ROOT ? "root(" : "binom(");
        render(b, t, m->a, depth + 1);
        if (m->b >= 0) {
            r_str(b, ",");
            render(b, t, m->b, depth + 1);
        }
        r_str(b, ")");
        return;
    case VF__M_INTERVAL:
        r_str(b, (m->flags & VF__MF_LO_CLOSED) ? "[" : "(");
        render(b, t, m->a, depth + 1);
        r_str(b, ",");
        render(b, t, m->b, depth + 1);
        r_str(b, (m->flags & VF__MF_HI_CLOSED) ? "]" : ")");
        return;
    default: {
        const char *open = "list(", *sep = ",";
        if (m->kind == VF__M_SET) open = "{";
        else if (m->kind == VF__M_TUPLE) open = "(";
        else if (m->kind == VF__M_UNION) { open = "union("; }
        else if (m->kind == VF__M_MATRIX) { open = "matrix("; sep = ";"; }
        else if (m->kind == VF__M_ROW) open = "";
        r_str(b, open);
        for (int c = m->a; c >= 0; c = t->nodes[c].next) {
            render(b, t, c, depth + 1);
            if (t->nodes[c].next >= 0)
                r_str(b, sep);
        }
        r_str(b, m->kind == VF__M_SET ? "}" : m->kind == VF__M_ROW ? "" : ")");
        return;
    }
    }
    r_str(b, "(");
    render(b, t, m->a, depth + 1);
    r_str(b, op);
    render(b, t, m->b, depth + 1);
    r_str(b, ")");
}

void vf__math_render(char *out, size_t cap, const vf__mtree *t)
{
    if (cap == 0)
        return;
    rbuf b = { out, 0, cap };
    out[0] = '\0';
    switch (t->kind) {
    case VF__ANS_TEXT: r_str(&b, "text:"); r_str(&b, t->word); break;
    case VF__ANS_CHOICE: r_str(&b, "choice:"); r_str(&b, t->word); break;
    case VF__ANS_EXPR: render(&b, t, t->root, 0); break;
    default: r_str(&b, t->text); break;
    }
}

/* -------------------------------------------------------------- public API */

/* A bare answer, or the last \boxed{} of a text that has one. Writes the
 * answer span into *s / *n (borrowed from `text` or copied into `buf`). */
static void answer_of(const char **s, size_t *n, char *buf, size_t cap, const char *text,
                      size_t len)
{
    *s = text;
    *n = len;
    if ((memmem(text, len, "\\boxed", 6) || memmem(text, len, "\\fbox", 5)) &&
        vf_math_extract(buf, cap, text, len) == 0) {
        *s = buf;
        *n = strlen(buf);
    }
}

typedef struct pair {
    vf__mtree x, y;
    char bufx[VF_MATH_TEXT_MAX], bufy[VF_MATH_TEXT_MAX];
} pair;

/* Compares answer texts. Sets *equal, and *same when both clean to the same text
 * (then equal without parsing b; pr->y is not filled). Returns 0, or -1 (a
 * unparsable) / -2 (b unparsable). */
static int compare_answers(pair *pr, int *equal, int *same, const char *a, size_t alen,
                           const char *b, size_t blen)
{
    *equal = 0;
    *same = 0;
    int rx = vf__math_parse(&pr->x, a, alen);
    int ry;
    if (pr->x.text_len > 0) {
        char tmp[VF_MATH_TEXT_MAX];
        int n = vf__math_clean(tmp, sizeof tmp, b, blen);
        if (n > 0 && (size_t)n == pr->x.text_len && memcmp(tmp, pr->x.text, (size_t)n) == 0) {
            *equal = 1;
            *same = 1;
            return rx < 0 ? -1 : 0;
        }
    }
    ry = vf__math_parse(&pr->y, b, blen);
    if (rx < 0)
        return -1;
    if (ry < 0)
        return -2;
    *equal = vf__math_tree_equal(&pr->x, &pr->y);
    return 0;
}

int vf_math_equal(int *equal, const char *a, size_t alen, const char *b, size_t blen)
{
    int rc = -1;
    *equal = 0;
    if (!a || !b)
        return -1;
    pair *pr = malloc(sizeof *pr);
    if (!pr)
        return -1;
    const char *sa, *sb;
    size_t na, nb;
    answer_of(&sa, &na, pr->bufx, sizeof pr->bufx, a, alen);
    answer_of(&sb, &nb, pr->bufy, sizeof pr->bufy, b, blen);
    int same;
    int r = compare_answers(pr, equal, &same, sa, na, sb, nb);
    rc = r < 0 ? -1 : 0;
    free(pr);
    return rc;
}

int vf_math_score(vf_math_result *out, const char *completion, size_t clen,
                  const char *reference, size_t rlen)
{
    int rc = -1;
    out->reward = 0.0;
    out->got[0] = out->got_norm[0] = out->want_norm[0] = '\0';
    out->reason = "unparsable_reference";
    if (!reference || !completion)
        return -1;
    pair *pr = malloc(sizeof *pr);
    if (!pr)
        return -1;
    const char *ref;
    size_t refn;
    answer_of(&ref, &refn, pr->bufy, sizeof pr->bufy, reference, rlen);
    if (vf_math_extract(out->got, sizeof out->got, completion, clen) < 0) {
        /* still report whether the reference itself is usable */
        if (vf__math_parse(&pr->y, ref, refn) < 0 && pr->y.text_len == 0)
            goto done;
        vf__math_render(out->want_norm, sizeof out->want_norm, &pr->y);
        out->reason = pr->y.kind == VF__ANS_NONE ? "unparsable_reference" : "no_answer";
        rc = pr->y.kind == VF__ANS_NONE ? -1 : 0;
        goto done;
    }
    int equal = 0, same = 0;
    /* y is the reference: compare_answers parses its second argument into y. */
    int r = compare_answers(pr, &equal, &same, out->got, strlen(out->got), ref, refn);
    vf__math_render(out->got_norm, sizeof out->got_norm, &pr->x);
    if (same)
        memcpy(out->want_norm, out->got_norm, sizeof out->want_norm);
    else
        vf__math_render(out->want_norm, sizeof out->want_norm, &pr->y);
    if (equal) {
        out->reward = 1.0;
        out->reason = "equal";
        rc = 0;
    } else if (r == -2 || (!same && pr->y.kind == VF__ANS_NONE)) {
        out->reason = "unparsable_reference";
    } else if (r == -1) {
        out->reason = "unparsable_answer";
        rc = 0;
    } else {
        out->reason = "not_equal";
        rc = 0;
    }
done:
    free(pr);
    return rc;
}
