/*
 * libFuzzer target for the MATH verifier's parser and extractor
 * (verifiers/math_*.c). Not a test_*.c: `make test` does not build it.
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=undefined -I. tests/fuzz/fuzz_math.c verifiers/math_*.c \
 *     -lgmp -lm -o build/fuzz_math
 *   mkdir -p build/corpus_math
 *   ./build/fuzz_math -max_len=1200 -max_total_time=300 -timeout=1 -rss_limit_mb=1024 \
 *     build/corpus_math tests/fuzz/corpus_math
 *
 * New inputs go to the first directory (build/, ignored), so the seed corpus in
 * the repository stays small.
 *
 * The input is split at the first NUL byte (or its middle, when there is none)
 * into two answers; both orders are compared, each half is also used as a
 * completion against the other, and extraction runs on the whole input. Every
 * call must return without crashing, leaking, hanging or tripping UBSan, and
 * equality must be symmetric.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verifiers/verifiers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t cut = nul ? (size_t)(nul - s) : size / 2;
    const char *a = s, *b = s + cut + (nul ? 1 : 0);
    size_t alen = cut, blen = size - cut - (nul ? 1 : 0);

    char out[VF_MATH_TEXT_MAX];
    vf_math_extract(out, sizeof out, s, size);

    int e1 = 0, e2 = 0;
    int r1 = vf_math_equal(&e1, a, alen, b, blen);
    int r2 = vf_math_equal(&e2, b, blen, a, alen);
    if (r1 == 0 && r2 == 0 && e1 != e2)
        abort(); /* equality must not depend on the order of the arguments */

    vf_math_result *res = malloc(sizeof *res);
    if (res) {
        vf_math_score(res, a, alen, b, blen);
        free(res);
    }
    return 0;
}
