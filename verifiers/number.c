/*
 * number.c — one number, read exactly.
 *
 * A number's value is kept as a decimal (significant digits and a power of
 * ten) and written out as a reduced rational: "1200", "-3", "1/2", "-7/4".
 * Two numbers are equal exactly when their canonical strings are equal, so
 * "0.50", ".5", "1/2", "\frac{2}{4}" and "5e-1" all read "1/2", while "0.33"
 * reads "33/100" and is not "1/3".
 *
 * Nearly every number a model writes has at most 19 significant digits and a
 * small exponent; those are done with 64-bit (and, for a/b, 128-bit) integers
 * without touching the heap. Everything else goes through GMP rationals. Both
 * paths produce the same canonical string; the tests check the boundary.
 *
 * Choices, each documented where it is made below:
 *   - Thousands groups are ',' or "{,}" followed by exactly three digits, after
 *     a first group of one to three digits that does not start with '0'. So
 *     "12,345,678" is one number, but "1,2", "1,20", "1,2345" and "0,5" are
 *     not grouped: the comma ends the number ("1,2" reads 1; a scanner then
 *     finds 2 on its own). "1 200" is two numbers.
 *   - Percent is a decoration: "25%" is 25, as GSM8K references write it.
 *   - "(-5)" is -5: one pair of parentheses around the whole text is dropped.
 *     Parentheses are never accounting negatives: "(5)" is 5.
 *   - Mixed numbers ("1 1/2", "2\frac{1}{2}") are not read as one value.
 */
#include <stdint.h>
#include <string.h>

#include <gmp.h>

#include "verifiers/verifiers_int.h"

/* 10^0 .. 10^19; 10^19 < 2^64. */
static const uint64_t pow10_u64[20] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
    100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
    1000000000000ULL, 10000000000000ULL, 100000000000000ULL,
    1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
    1000000000000000000ULL, 10000000000000000000ULL
};

/* A decimal number: value = digits * 10^exp10. */
typedef struct decimal {
    uint64_t mant;      /* the digits as an integer; exact while ndig <= 19 */
    long exp10;
    int ndig;           /* significant digits kept (leading zeros dropped) */
    int zeros;          /* trailing zeros held back: pushed only if a non-zero digit follows */
    int bad;            /* more than VF__NUM_MAX_DIGITS digits or a huge exponent */
    char digits[VF__NUM_MAX_DIGITS + 1]; /* NUL-terminated when handed to GMP */
} decimal;

__extension__ typedef unsigned __int128 u128;

static void dec_init(decimal *d)
{
    d->mant = 0;
    d->exp10 = 0;
    d->ndig = 0;
    d->zeros = 0;
    d->bad = 0;
}

static void dec_push_digit(decimal *d, char c)
{
    if (d->ndig >= VF__NUM_MAX_DIGITS) {
        d->bad = 1;             /* keep consuming so the caller skips it whole */
        return;
    }
    d->digits[d->ndig++] = c;
    if (d->ndig <= 19)
        d->mant = d->mant * 10 + (uint64_t)(c - '0');
}

/* Trailing zeros are held back and become a power of ten at the end
 * (dec_finish), so "5e221" and the 222 digits it stands for are the same
 * short decimal: a canonical value always parses back to itself. */
static void dec_push(decimal *d, char c)
{
    if (c == '0') {
        if (d->ndig > 0)
            d->zeros++;
        /* else a leading zero, which changes nothing */
        return;
    }
    for (; d->zeros > 0; d->zeros--)
        dec_push_digit(d, '0');
    dec_push_digit(d, c);
}

static void dec_finish(decimal *d)
{
    d->exp10 += d->zeros;
    d->zeros = 0;
}

/* Exactly three digits at s[q..q+2] and no fourth one after them. */
static int three_digits(const char *s, size_t q, size_t hi)
{
    return q + 3 <= hi && vf__num_is_digit((unsigned char)s[q]) &&
           vf__num_is_digit((unsigned char)s[q + 1]) &&
           vf__num_is_digit((unsigned char)s[q + 2]) &&
           (q + 3 == hi || !vf__num_is_digit((unsigned char)s[q + 3]));
}

/*
 * Reads [digits[,ddd]*][.digits][e[+-]digits] at s[pos]. Returns the index
 * after it, or pos when there are no digits at all. `allow_exp` is off for
 * denominators ("1/2e3" is not a thing people write).
 */
static size_t dec_read(decimal *d, const char *s, size_t pos, size_t hi, int allow_exp)
{
    size_t p = pos;
    int any = 0;

    dec_init(d);
    while (p < hi && vf__num_is_digit((unsigned char)s[p]))
        dec_push(d, s[p++]);
    size_t first_group = p - pos;
    any = first_group > 0;
    /* Thousands groups: only after a first group of 1-3 digits that does not
     * start with '0' ("0,5" is a European decimal or a list, not 5 hundred). */
    if (first_group >= 1 && first_group <= 3 && s[pos] != '0') {
        for (;;) {
            size_t q;
            if (p < hi && s[p] == ',')
                q = p + 1;
            else if (p + 3 <= hi && s[p] == '{' && s[p + 1] == ',' && s[p + 2] == '}')
                q = p + 3;
            else
                break;
            if (!three_digits(s, q, hi))
                break;          /* the separator is punctuation: the number ends */
            dec_push(d, s[q]);
            dec_push(d, s[q + 1]);
            dec_push(d, s[q + 2]);
            p = q + 3;
        }
    }
    if (p + 1 < hi && s[p] == '.' && vf__num_is_digit((unsigned char)s[p + 1])) {
        p++;
        while (p < hi && vf__num_is_digit((unsigned char)s[p])) {
            dec_push(d, s[p++]);
            d->exp10--;
        }
        any = 1;
    }
    if (!any)
        return pos;
    dec_finish(d);
    if (allow_exp && p < hi && (s[p] == 'e' || s[p] == 'E')) {
        size_t q = p + 1;
        int eneg = 0;
        if (q < hi && (s[q] == '+' || s[q] == '-')) {
            eneg = s[q] == '-';
            q++;
        }
        /* "3eggs" has no exponent: 'e' counts only when digits follow. */
        if (q < hi && vf__num_is_digit((unsigned char)s[q])) {
            long e = 0;
            while (q < hi && vf__num_is_digit((unsigned char)s[q])) {
                if (e <= 1000000)   /* stop growing; anything this big is bad */
                    e = e * 10 + (s[q] - '0');
                q++;
            }
            if (e > VF__NUM_MAX_EXP)
                d->bad = 1;
            d->exp10 += eneg ? -e : e;
            p = q;
        }
    }
    /* Thousands of fraction digits ("0.000...01") make a huge denominator even
     * with few significant digits: bound the scale too. */
    if (d->exp10 > VF__NUM_MAX_EXP || d->exp10 < -(long)(VF__NUM_MAX_EXP + VF__NUM_MAX_DIGITS))
        d->bad = 1;
    return p;
}

/* The decimal as a reduced num/den in 64 bits, when it fits. */
static int dec_small(const decimal *d, uint64_t *num, uint64_t *den)
{
    if (d->ndig == 0) {
        *num = 0;
        *den = 1;
        return 1;
    }
    if (d->ndig > 19)
        return 0;
    if (d->exp10 >= 0) {
        if (d->ndig + d->exp10 > 19)
            return 0;
        *num = d->mant * pow10_u64[d->exp10];
        *den = 1;
        return 1;
    }
    if (-d->exp10 > 19)
        return 0;
    uint64_t a = d->mant, b = pow10_u64[-d->exp10];
    while (b) {                 /* gcd; b is a power of ten, so this is short */
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    *num = d->mant / a;
    *den = pow10_u64[-d->exp10] / a;
    return 1;
}

static u128 gcd128(u128 a, u128 b)
{
    while (b) {
        u128 t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Writes v in decimal at p; returns the length. */
static size_t put_u128(char *p, u128 v)
{
    char tmp[40];
    size_t n = 0;
    /* 128-bit division is a library call; nearly every value fits in 64 bits. */
    while (v > UINT64_MAX) {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    }
    uint64_t w = (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + (int)(w % 10));
        w /= 10;
    } while (w);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* Writes the canonical form of (neg ? -1 : 1) * num/den, reduced by the caller. */
static int emit_small(char *out, size_t cap, int neg, u128 num, u128 den)
{
    char buf[84];
    size_t n = 0;
    if (num != 0 && neg)
        buf[n++] = '-';
    n += put_u128(buf + n, num);
    if (num != 0 && den != 1) {
        buf[n++] = '/';
        n += put_u128(buf + n, den);
    }
    if (n + 1 > cap)
        return VF__NUM_BAD;
    memcpy(out, buf, n);
    out[n] = '\0';
    return VF__NUM_OK;
}

/* q = the decimal, exactly. */
static void dec_to_mpq(mpq_t q, decimal *d)
{
    d->digits[d->ndig] = '\0';
    mpz_set_str(mpq_numref(q), d->ndig ? d->digits : "0", 10);
    mpz_set_ui(mpq_denref(q), 1);
    if (d->exp10 > 0) {
        mpz_t p;
        mpz_init(p);
        mpz_ui_pow_ui(p, 10, (unsigned long)d->exp10);
        mpz_mul(mpq_numref(q), mpq_numref(q), p);
        mpz_clear(p);
    } else if (d->exp10 < 0) {
        mpz_ui_pow_ui(mpq_denref(q), 10, (unsigned long)-d->exp10);
    }
    mpq_canonicalize(q);
}

/* Slow path: value = a (or a / b when b is given), through GMP. */
static int emit_big(char *out, size_t cap, int neg, decimal *a, decimal *b)
{
    int rc = VF__NUM_BAD;
    /* Anything whose digits do not fit here cannot fit in VF_VALUE_MAX. */
    char buf[VF_VALUE_MAX + 8];
    mpq_t qa, qb;

    mpq_init(qa);
    mpq_init(qb);
    dec_to_mpq(qa, a);
    if (b) {
        dec_to_mpq(qb, b);
        if (mpq_sgn(qb) == 0)
            goto done;
        mpq_div(qa, qa, qb);
    }
    if (neg)
        mpq_neg(qa, qa);
    if (mpz_sizeinbase(mpq_numref(qa), 10) + mpz_sizeinbase(mpq_denref(qa), 10) + 3 > sizeof buf)
        goto done;
    mpq_get_str(buf, 10, qa);
    size_t n = strlen(buf);
    if (n + 1 > cap)
        goto done;
    memcpy(out, buf, n + 1);
    rc = VF__NUM_OK;
done:
    mpq_clear(qa);
    mpq_clear(qb);
    return rc;
}

/* value = a / b (b NULL: value = a). */
static int emit_value(char *out, size_t cap, int neg, decimal *a, decimal *b)
{
    uint64_t na, da, nb, db;
    if (a->bad || (b && b->bad))
        return VF__NUM_BAD;
    if (b && b->ndig == 0)
        return VF__NUM_BAD;         /* division by zero is not a number */
    if (!dec_small(a, &na, &da))
        return emit_big(out, cap, neg, a, b);
    if (!b)
        return emit_small(out, cap, neg, na, da);
    if (!dec_small(b, &nb, &db))
        return emit_big(out, cap, neg, a, b);
    /* (na/da) / (nb/db) = na*db / (da*nb); every factor < 2^64. */
    u128 num = (u128)na * db, den = (u128)da * nb;
    u128 g = gcd128(num, den);
    return emit_small(out, cap, neg, num / g, den / g);
}

/* Length of a LaTeX fraction command at s[pos], or 0. */
static size_t frac_command(const char *s, size_t pos, size_t hi)
{
    static const char *const names[] = { "\\frac", "\\dfrac", "\\tfrac", "\\cfrac" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i]);
        /* "\fraction" is not "\frac" followed by "tion". */
        if (hi - pos >= n && memcmp(s + pos, names[i], n) == 0 &&
            !(pos + n < hi && ((s[pos + n] | 0x20) >= 'a' && (s[pos + n] | 0x20) <= 'z')))
            return n;
    }
    return 0;
}

static size_t skip_spaces(const char *s, size_t p, size_t hi)
{
    while (p < hi && (s[p] == ' ' || s[p] == '\t'))
        p++;
    return p;
}

/*
 * One argument of \frac: "{[sign]number}" or a single digit ("\frac12").
 * Returns the index after it, or 0 when it is not a number argument.
 */
static size_t frac_arg(decimal *d, int *neg, const char *s, size_t p, size_t hi)
{
    p = skip_spaces(s, p, hi);
    *neg = 0;
    if (p < hi && vf__num_is_digit((unsigned char)s[p])) {
        dec_init(d);
        dec_push(d, s[p]);
        return p + 1;
    }
    if (p >= hi || s[p] != '{')
        return 0;
    p = skip_spaces(s, p + 1, hi);
    if (p < hi && (s[p] == '-' || s[p] == '+')) {
        *neg = s[p] == '-';
        p++;
    } else if (hi - p >= 3 && memcmp(s + p, "\xe2\x88\x92", 3) == 0) { /* U+2212 */
        *neg = 1;
        p += 3;
    }
    size_t q = dec_read(d, s, p, hi, 1);
    if (q == p)
        return 0;
    q = skip_spaces(s, q, hi);
    if (q >= hi || s[q] != '}')
        return 0;
    return q + 1;
}

int vf__num_core_start(const char *s, size_t pos, size_t hi)
{
    unsigned char c = (unsigned char)s[pos];
    if (vf__num_is_digit(c))
        return 1;
    if (c == '.')
        return pos + 1 < hi && vf__num_is_digit((unsigned char)s[pos + 1]);
    if (c == '\\')
        return frac_command(s, pos, hi) != 0;
    return 0;
}

int vf__num_core(char *out, size_t cap, const char *s, size_t pos, size_t hi, int neg,
                 size_t *end)
{
    decimal a, b;

    if (pos >= hi)
        return VF__NUM_NONE;
    if (s[pos] == '\\') {
        size_t n = frac_command(s, pos, hi);
        int na, nb;
        if (!n)
            return VF__NUM_NONE;
        size_t p = frac_arg(&a, &na, s, pos + n, hi);
        if (!p)
            return VF__NUM_NONE;
        p = frac_arg(&b, &nb, s, p, hi);
        if (!p)
            return VF__NUM_NONE;
        *end = p;
        return emit_value(out, cap, neg ^ na ^ nb, &a, &b);
    }
    size_t p = dec_read(&a, s, pos, hi, 1);
    if (p == pos)
        return VF__NUM_NONE;
    if (p + 1 < hi && s[p] == '/' &&
        (vf__num_is_digit((unsigned char)s[p + 1]) ||
         (s[p + 1] == '.' && p + 2 < hi && vf__num_is_digit((unsigned char)s[p + 2])))) {
        size_t q = dec_read(&b, s, p + 1, hi, 0);
        *end = q;
        return emit_value(out, cap, neg, &a, &b);
    }
    *end = p;
    return emit_value(out, cap, neg, &a, NULL);
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * What may follow a whole number: spaces, '%' or "\%", then any words or
 * LaTeX ("dollars", "\text{ cm}", "$", ".") with no digits in them, except
 * a unit's power ("cm^2", "m^{3}"). "18 - 20", "1 1/2", "1,2" and "5 \times
 * 10^3" are not one number.
 */
static int tail_ok(const char *s, size_t p, size_t hi)
{
    for (; p < hi; p++) {
        if (!vf__num_is_digit((unsigned char)s[p]))
            continue;
        /* A digit: fine only right after '^' or "^{" that follows a non-digit. */
        size_t q = p;
        if (q > 0 && s[q - 1] == '{')
            q--;
        if (q == 0 || s[q - 1] != '^' || q < 2 || vf__num_is_digit((unsigned char)s[q - 2]))
            return 0;
        while (p + 1 < hi && vf__num_is_digit((unsigned char)s[p + 1]))
            p++;
    }
    return 1;
}

int vf_number_parse(char *out, size_t cap, const char *text, size_t len)
{
    size_t lo = 0, hi = len, p, end;
    int neg = 0, have_sign = 0, have_cur = 0;

    if (!out || cap == 0)
        return -1;
    out[0] = '\0';
    if (!text)
        return -1;
    while (lo < hi && is_space((unsigned char)text[lo]))
        lo++;
    while (hi > lo && is_space((unsigned char)text[hi - 1]))
        hi--;
    /* "(-5)" is -5: drop one pair of parentheses around everything. */
    if (hi - lo >= 2 && text[lo] == '(' && text[hi - 1] == ')') {
        lo++;
        hi--;
        while (lo < hi && is_space((unsigned char)text[lo]))
            lo++;
        while (hi > lo && is_space((unsigned char)text[hi - 1]))
            hi--;
    }
    /* A sign and a currency mark, in either order: "-$5", "$-5", "\$18". */
    p = lo;
    for (int i = 0; i < 2; i++) {
        if (!have_sign && p < hi && (text[p] == '-' || text[p] == '+')) {
            neg = text[p] == '-';
            have_sign = 1;
            p++;
        } else if (!have_sign && hi - p >= 3 && memcmp(text + p, "\xe2\x88\x92", 3) == 0) {
            neg = 1;
            have_sign = 1;
            p += 3;
        } else if (!have_cur && p < hi && text[p] == '$') {
            have_cur = 1;
            p = skip_spaces(text, p + 1, hi);
        } else if (!have_cur && hi - p >= 2 && text[p] == '\\' && text[p + 1] == '$') {
            have_cur = 1;
            p = skip_spaces(text, p + 2, hi);
        } else {
            break;
        }
    }
    if (p >= hi || !vf__num_core_start(text, p, hi))
        return -1;
    if (vf__num_core(out, cap, text, p, hi, neg, &end) != VF__NUM_OK) {
        out[0] = '\0';
        return -1;
    }
    if (!tail_ok(text, end, hi)) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}
