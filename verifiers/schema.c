/*
 * JSON Schema validation, the subset that tool declarations use (see
 * vf_schema_validate in verifiers.h). Every violation is reported with the
 * JSON path of the value at fault ("$.items[2].qty"), so that a model told
 * about it can fix exactly that argument.
 *
 * BFCL's function docs are "JSON-schema-like": they say "dict", "float",
 * "tuple" and "any" where JSON Schema says "object", "number", "array" and
 * nothing; those names are accepted as aliases so that the same checker
 * serves both.
 */
#include <math.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "verifiers/verifiers.h"

#define MAX_DEPTH 64
#define PATH_MAX_LEN 200

typedef struct checker {
    json_t *violations; /* borrowed */
    size_t max;
    int count;
    int oom;
} checker;

static void report(checker *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(checker *c, const char *path, const char *fmt, ...)
{
    c->count++;
    if (json_array_size(c->violations) >= c->max)
        return;
    char msg[VF_TOOL_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *v = json_pack("{s:s, s:s}", "path", path, "message", msg);
    if (v == NULL || json_array_append_new(c->violations, v) != 0)
        c->oom = 1;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

/* Whether v is of the schema type `t` (JSON Schema names and BFCL's). An
 * unknown type name accepts anything, as an unknown keyword would. */
static int has_type(const json_t *v, const char *t)
{
    if (strcmp(t, "object") == 0 || strcmp(t, "dict") == 0)
        return json_is_object(v);
    /* An empty object passes as an empty array: values that went through Lua
     * cannot tell [] from {} (both are an empty table). */
    if (strcmp(t, "array") == 0 || strcmp(t, "tuple") == 0 || strcmp(t, "list") == 0)
        return json_is_array(v) || (json_is_object(v) && json_object_size(v) == 0);
    if (strcmp(t, "string") == 0)
        return json_is_string(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) ||
               (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
                fabs(json_real_value(v)) < 9.007199254740992e15);
    if (strcmp(t, "number") == 0 || strcmp(t, "float") == 0)
        return json_is_number(v);
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(t, "null") == 0)
        return json_is_null(v);
    return 1; /* "any" and names we do not know */
}

/* JSON equality where 1 and 1.0 are the same number. */
static int same_value(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static void check(checker *c, const json_t *v, const json_t *schema, const char *path, int depth);

static void check_object(checker *c, const json_t *v, const json_t *schema, const char *path,
                         int depth)
{
    char sub[PATH_MAX_LEN + 80];
    const json_t *props = json_object_get(schema, "properties");
    const json_t *req = json_object_get(schema, "required");
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
        const char *name = json_string_value(r);
        if (name && json_object_get(v, name) == NULL)
            report(c, path, "missing required property '%.64s'", name);
    }
    const json_t *addl = json_object_get(schema, "additionalProperties");
    const char *key;
    json_t *member;
    /* Sorted keys: the order of violations must not depend on the input's. */
    void *it;
    const char *keys[256];
    size_t nk = 0;
    for (it = json_object_iter((json_t *)v); it && nk < 256; it = json_object_iter_next((json_t *)v, it))
        keys[nk++] = json_object_iter_key(it);
    for (size_t a = 1; a < nk; a++)
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *t = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = t;
        }
    for (size_t k = 0; k < nk; k++) {
        key = keys[k];
        member = json_object_get(v, key);
        snprintf(sub, sizeof sub, "%s.%.64s", path, key);
        const json_t *ps = json_object_get(props, key);
        if (ps)
            check(c, member, ps, sub, depth + 1);
        else if (json_is_false(addl))
            report(c, sub, "unexpected property '%.64s'", key);
        else if (json_is_object(addl))
            check(c, member, addl, sub, depth + 1);
    }
    if (json_object_size(v) > nk)
        report(c, path, "object has more than 256 properties");
}

static void check(checker *c, const json_t *v, const json_t *schema, const char *path, int depth)
{
    if (c->oom)
        return;
    if (depth > MAX_DEPTH) {
        report(c, path, "nested deeper than %d levels", MAX_DEPTH);
        return;
    }
    if (json_is_boolean(schema)) { /* true accepts anything, false nothing */
        if (json_is_false(schema))
            report(c, path, "no value is allowed here");
        return;
    }
    if (!json_is_object(schema))
        return;

    const json_t *t = json_object_get(schema, "type");
    if (json_is_string(t) && !has_type(v, json_string_value(t))) {
        report(c, path, "expected %s, got %s", json_string_value(t), type_name(v));
        return; /* the other keywords would only repeat the complaint */
    }
    if (json_is_array(t) && json_array_size(t) > 0) {
        size_t i;
        json_t *e;
        int ok = 0;
        json_array_foreach(t, i, e)
            ok |= json_is_string(e) && has_type(v, json_string_value(e));
        if (!ok) {
            report(c, path, "got %s, which is none of the allowed types", type_name(v));
            return;
        }
    }

    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en)) {
        size_t i;
        json_t *e;
        int ok = 0;
        json_array_foreach(en, i, e)
            ok |= same_value(v, e);
        if (!ok) {
            char *shown = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            char *allowed = json_dumps(en, JSON_COMPACT);
            report(c, path, "%.60s is not one of %.120s", shown ? shown : "value",
                   allowed ? allowed : "the allowed values");
            free(shown);
            free(allowed);
        }
    }
    const json_t *cn = json_object_get(schema, "const");
    if (cn && !same_value(v, cn))
        report(c, path, "must equal the constant the schema gives");

    if (json_is_number(v)) {
        double x = json_number_value(v);
        const json_t *lim;
        if (json_is_number(lim = json_object_get(schema, "minimum")) && x < json_number_value(lim))
            report(c, path, "%g is less than the minimum %g", x, json_number_value(lim));
        if (json_is_number(lim = json_object_get(schema, "maximum")) && x > json_number_value(lim))
            report(c, path, "%g is more than the maximum %g", x, json_number_value(lim));
        if (json_is_number(lim = json_object_get(schema, "exclusiveMinimum")) &&
            x <= json_number_value(lim))
            report(c, path, "%g must be more than %g", x, json_number_value(lim));
        if (json_is_number(lim = json_object_get(schema, "exclusiveMaximum")) &&
            x >= json_number_value(lim))
            report(c, path, "%g must be less than %g", x, json_number_value(lim));
    }
    if (json_is_string(v)) {
        size_t n = utf8_chars(json_string_value(v), json_string_length(v));
        const json_t *lim;
        if (json_is_integer(lim = json_object_get(schema, "minLength")) &&
            (json_int_t)n < json_integer_value(lim))
            report(c, path, "string is shorter than %" JSON_INTEGER_FORMAT " characters",
                   json_integer_value(lim));
        if (json_is_integer(lim = json_object_get(schema, "maxLength")) &&
            (json_int_t)n > json_integer_value(lim))
            report(c, path, "string is longer than %" JSON_INTEGER_FORMAT " characters",
                   json_integer_value(lim));
    }
    if (json_is_array(v)) {
        const json_t *lim;
        json_int_t n = (json_int_t)json_array_size(v);
        if (json_is_integer(lim = json_object_get(schema, "minItems")) && n < json_integer_value(lim))
            report(c, path, "needs at least %" JSON_INTEGER_FORMAT " items, got %" JSON_INTEGER_FORMAT,
                   json_integer_value(lim), n);
        if (json_is_integer(lim = json_object_get(schema, "maxItems")) && n > json_integer_value(lim))
            report(c, path, "allows at most %" JSON_INTEGER_FORMAT " items, got %" JSON_INTEGER_FORMAT,
                   json_integer_value(lim), n);
        const json_t *items = json_object_get(schema, "items");
        if (items) {
            char sub[PATH_MAX_LEN + 32];
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                snprintf(sub, sizeof sub, "%s[%zu]", path, i);
                check(c, e, items, sub, depth + 1);
            }
        }
    }
    if (json_is_object(v))
        check_object(c, v, schema, path, depth);
}

int vf_schema_validate(json_t *violations, const json_t *value, const json_t *schema, size_t max)
{
    checker c = {violations, max, 0, 0};
    if (!json_is_array(violations))
        return -1;
    check(&c, value, schema, "$", 0);
    return c.oom ? -1 : c.count;
}
