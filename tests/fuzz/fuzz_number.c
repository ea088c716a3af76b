/*
 * libFuzzer target for the GSM8K number verifier (`make fuzz`).
 *
 * The input is split at its first NUL byte into a completion and a reference;
 * every public entry point runs on it. Beyond "no crash" (ASan/UBSan), it
 * checks the contracts a caller relies on: a found value parses back to
 * itself, and a completion always scores 1.0 against its own extracted value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verifiers/verifiers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t clen = nul ? (size_t)(nul - data) : size;
    const char *ref = nul ? text + clen + 1 : text;
    size_t rlen = nul ? size - clen - 1 : size;

    vf_number_answer got;
    vf_number_extract(&got, text, size);
    if (got.source != VF_SOURCE_NONE) {
        char again[VF_VALUE_MAX];
        if (vf_number_parse(again, sizeof again, got.value, strlen(got.value)) != 0 ||
            strcmp(again, got.value) != 0)
            abort();
        if (got.start + got.len > size)
            abort();
        vf_gsm8k_result self;
        if (vf_gsm8k_score(&self, text, size, got.value, strlen(got.value)) != 0 ||
            self.reward != 1.0)
            abort();
    }

    char value[VF_VALUE_MAX];
    vf_number_parse(value, sizeof value, text, size);
    vf_number_answer ref_answer;
    vf_gsm8k_reference(&ref_answer, ref, rlen);
    vf_gsm8k_result res;
    vf_gsm8k_score(&res, text, clen, ref, rlen);
    return 0;
}
