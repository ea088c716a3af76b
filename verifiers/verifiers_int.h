/*
 * Private to verifiers/number.c and verifiers/extract.c: reading the numeric
 * core of one number.
 *
 * number.c turns the characters of one number ("1,200", "0.50", "1.5e3",
 * "3/4", "\frac{1}{2}") into its exact canonical value; extract.c decides where
 * numbers are in a completion (signs, currency, glue to words, <think>, \boxed,
 * "####", phrases) and asks number.c for their values.
 */
#ifndef ENVSRV_VERIFIERS_INT_H
#define ENVSRV_VERIFIERS_INT_H

#include <stddef.h>

#include "verifiers/verifiers.h"

/* Bounds that keep every number cheap: more significant digits than this, or a
 * written exponent larger in magnitude than this, make a number "bad". */
#define VF__NUM_MAX_DIGITS 200
#define VF__NUM_MAX_EXP    300

/* Results of vf__num_core. */
#define VF__NUM_NONE 0  /* no number starts here */
#define VF__NUM_OK   1  /* a number; its value was written */
#define VF__NUM_BAD  2  /* looks like a number but is out of bounds or malformed
                           (too many digits, huge exponent, zero denominator,
                           value longer than `cap`); *end says where it stops so
                           a scanner can skip it whole */

static inline int vf__num_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/*
 * Reads the numeric core that starts at s[pos] (a digit, a '.' followed by a
 * digit, or a "\frac"/"\dfrac"/"\tfrac"/"\cfrac" command), reading no further
 * than s[hi-1]: an integer with optional thousands groups ("1,200", "1{,}200"),
 * an optional decimal part, an optional exponent ("1.5e3", "2E-2"), and an
 * optional "/denominator" ("3/4"); or a LaTeX fraction of two such numbers.
 * Signs and currency before the core are the caller's business: `neg` says
 * whether the value is negated.
 *
 * Writes the canonical value ("1200", "-3/4") into `out` (at most `cap` bytes
 * with the NUL) on VF__NUM_OK; `out` is unspecified otherwise. Sets *end to the
 * index after the core on OK and BAD. Does not allocate except through GMP for
 * numbers that do not fit in 64-bit arithmetic.
 */
int vf__num_core(char *out, size_t cap, const char *s, size_t pos, size_t hi, int neg,
                 size_t *end);

/* Whether a numeric core can start at s[pos] (see vf__num_core); cheap. */
int vf__num_core_start(const char *s, size_t pos, size_t hi);

#endif
