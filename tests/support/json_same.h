/*
 * Whether two Jansson values are the same value, more strictly than
 * json_equal: the same type at every level, equal integers, bit-identical
 * reals, equal string bytes, object keys in the same order. Shared by the
 * JSON parser's differential test and its fuzz target (which links nothing
 * else of tests/support, hence a header).
 */
#ifndef ENVSRV_TEST_JSON_SAME_H
#define ENVSRV_TEST_JSON_SAME_H

#include <string.h>

#include <jansson.h>

static inline int tsup_json_same(const json_t *a, const json_t *b)
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
            if (!tsup_json_same(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
                         ib = json_object_iter_next((json_t *)b, ib)) {
            if (strcmp(json_object_iter_key(ia), json_object_iter_key(ib)) != 0 ||
                !tsup_json_same(json_object_iter_value(ia), json_object_iter_value(ib)))
                return 0;
        }
        return !ia && !ib;
    }
    default:
        return 1; /* true, false, null: the type says it all */
    }
}

#endif
