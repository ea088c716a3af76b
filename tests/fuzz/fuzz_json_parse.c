/*
 * libFuzzer target for srv__json_parse (server/json_parse.c), differential
 * against its reference, Jansson's json_loadb (`make fuzz`).
 *
 * Every input is parsed by both under the server's flags (JSON_ALLOW_NUL |
 * JSON_DECODE_ANY) and under none. Beyond "no crash" (ASan/UBSan), it aborts
 * when one accepts what the other rejects, when accepted values differ in
 * value or in type anywhere (integer vs real, the bits of a real, key order),
 * or when an error comes without a message or a position inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/server_int.h"
#include "tests/support/json_same.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t flag_sets[] = { JSON_ALLOW_NUL | JSON_DECODE_ANY, 0 };
    const char *text = (const char *)data;
    for (size_t f = 0; f < 2; f++) {
        json_error_t je, me;
        json_t *ref = json_loadb(text, size, flag_sets[f], &je);
        json_t *got = srv__json_parse(text, size, flag_sets[f], &me);
        if (!ref != !got)
            abort();
        if (ref && (!json_equal(ref, got) || !tsup_json_same(ref, got)))
            abort();
        if (!got && (me.text[0] == '\0' || me.line < 1 || me.column < 1 || me.position < 0 ||
                     (size_t)me.position > size))
            abort();
        json_decref(ref);
        json_decref(got);
    }
    return 0;
}
