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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_value(const json_t *a, const json_t *b)
{
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_INTEGER:
        return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL: {
        double x = json_real_value(a), y = json_real_value(b);
        return memcmp(&x, &y, sizeof x) == 0;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_value(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
                         ib = json_object_iter_next((json_t *)b, ib)) {
            if (strcmp(json_object_iter_key(ia), json_object_iter_key(ib)) != 0 ||
                !same_value(json_object_iter_value(ia), json_object_iter_value(ib)))
                return 0;
        }
        return !ia && !ib;
    }
    default:
        return 1;
    }
}

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
        if (ref && (!json_equal(ref, got) || !same_value(ref, got)))
            abort();
        if (!got && (me.text[0] == '\0' || me.line < 1 || me.column < 1 || me.position < 0 ||
                     (size_t)me.position > size))
            abort();
        json_decref(ref);
        json_decref(got);
    }
    return 0;
}
