/*
 * Matching tool calls against BFCL ground truth, after the Berkeley Function
 * Calling Leaderboard's AST checker (bfcl_eval/eval_checker/ast_eval/
 * ast_checker.py: simple_function_checker, type_checker, string_checker,
 * list_checker, dict_checker, list_dict_checker, and the parallel checker).
 * vf_bfcl_match in verifiers.h states the rules.
 *
 * Where this differs from BFCL, on purpose:
 *   - one algorithm serves all four categories: calls pair up with the ground
 *     truth by a maximum bipartite matching (BFCL's parallel checker is greedy,
 *     which can miss a pairing that exists; with one call it is the same);
 *   - booleans are never numbers (Python's True == 1 is an accident there);
 *   - an integer is accepted for a float inside lists too, not only at the top;
 *   - a partial credit, which BFCL does not have.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verifiers/verifiers.h"

#define MAX_CALLS VF_TOOL_MAX_CALLS

/* ---- values --------------------------------------------------------------- */

/* BFCL's standardize_string: drop spaces and , . / - _ * ^, lowercase, and
 * read ' as ". Writes into a new buffer the caller frees (NULL: no memory). */
static char *standardize(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (strchr(" ,./-_*^", c) && c != '\0')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '\'')
            c = '"';
        out[w++] = c;
    }
    out[w] = '\0';
    return out;
}

/* Python's == on JSON values: numbers by value (1 == 1.0), everything else by
 * structure. `norm` compares strings after standardize() (BFCL normalizes the
 * strings of a list but not those nested deeper, hence a flag, not a rule). */
static int empty_container(const json_t *v)
{
    return (json_is_array(v) && json_array_size(v) == 0) ||
           (json_is_object(v) && json_object_size(v) == 0);
}

static int py_equal(const json_t *a, const json_t *b, int norm)
{
    /* Ground truth that went through Lua cannot tell [] from {} (both are an
     * empty table), so the two are equal here. */
    if (empty_container(a) && empty_container(b))
        return 1;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_is_string(a) && json_is_string(b)) {
        if (!norm)
            return json_equal(a, b);
        char *x = standardize(json_string_value(a), json_string_length(a));
        char *y = standardize(json_string_value(b), json_string_length(b));
        int eq = x && y && strcmp(x, y) == 0;
        free(x);
        free(y);
        return eq;
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!py_equal(json_array_get(a, i), json_array_get(b, i), 0))
                return 0;
        return 1;
    }
    if (json_is_object(a) && json_is_object(b)) {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            const json_t *w = json_object_get(b, k);
            if (w == NULL || !py_equal(v, w, 0))
                return 0;
        }
        return 1;
    }
    return json_equal(a, b);
}

/* Whether a list of acceptable values holds "" (the parameter may be omitted). */
static int omittable(const json_t *list)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
        if (json_is_string(v) && json_string_length(v) == 0)
            return 1;
    return 0;
}

/* Whether `v` is in `list` (Python's `in`), strings normalized when `norm`. */
static int in_list(const json_t *v, const json_t *list, int norm)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
        if (py_equal(v, e, norm))
            return 1;
    return 0;
}

/* A list with string elements normalized, for BFCL's list_checker. New. */
static json_t *standardize_list(const json_t *list)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        json_t *x;
        if (json_is_string(e)) {
            char *s = standardize(json_string_value(e), json_string_length(e));
            x = s ? json_stringn(s, strlen(s)) : NULL;
            free(s);
        } else {
            x = json_incref(e);
        }
        if (out == NULL || x == NULL || json_array_append_new(out, x) != 0) {
            json_decref(x);
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* ---- types ---------------------------------------------------------------- */

enum vtype { T_ANY, T_STRING, T_INT, T_FLOAT, T_BOOL, T_LIST, T_DICT, T_NULL };

static enum vtype doc_type(const char *t)
{
    if (t == NULL || strcmp(t, "any") == 0)
        return T_ANY;
    if (strcmp(t, "string") == 0)
        return T_STRING;
    if (strcmp(t, "integer") == 0)
        return T_INT;
    if (strcmp(t, "float") == 0 || strcmp(t, "number") == 0)
        return T_FLOAT;
    if (strcmp(t, "boolean") == 0)
        return T_BOOL;
    if (strcmp(t, "array") == 0 || strcmp(t, "tuple") == 0)
        return T_LIST;
    if (strcmp(t, "dict") == 0 || strcmp(t, "object") == 0)
        return T_DICT;
    return T_ANY;
}

static enum vtype value_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: return T_STRING;
    case JSON_INTEGER: return T_INT;
    case JSON_REAL: return T_FLOAT;
    case JSON_TRUE:
    case JSON_FALSE: return T_BOOL;
    case JSON_ARRAY: return T_LIST;
    case JSON_OBJECT: return T_DICT;
    default: return T_NULL;
    }
}

/* An integer is a float too (BFCL converts it before comparing). */
static int type_ok(const json_t *v, enum vtype t)
{
    enum vtype got = value_type(v);
    return t == T_ANY || got == t || (t == T_FLOAT && got == T_INT);
}

static const char *vtype_name(enum vtype t)
{
    static const char *const names[] = {"any", "string", "integer", "float", "boolean", "list",
                                        "dict", "null"};
    return names[t];
}

/* ---- one call ------------------------------------------------------------- */

/* The verdict on one (given call, expected call) pair of the same function. */
typedef struct verdict {
    int ok;
    const char *reason;     /* static; the first problem found */
    char message[VF_TOOL_REASON_MAX];
    size_t right, total;    /* parameters right / counted */
} verdict;

static void problem(verdict *v, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(verdict *v, const char *reason, const char *fmt, ...)
{
    if (!v->ok)
        return; /* keep the first */
    v->ok = 0;
    v->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
}

/* BFCL's dict_checker for one acceptable dict: every given key known and its
 * value among the key's acceptable values; every absent key omittable. */
static int dict_matches(const json_t *given, const json_t *answer)
{
    if (!json_is_object(given) || !json_is_object(answer))
        return 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)given, k, v) {
        const json_t *acc = json_object_get(answer, k);
        if (acc == NULL)
            return 0;
        if (json_is_array(acc) ? !in_list(v, acc, json_is_string(v)) : !py_equal(v, acc, 1))
            return 0;
    }
    json_object_foreach((json_t *)answer, k, v)
        if (json_object_get(given, k) == NULL && !(json_is_array(v) && omittable(v)))
            return 0;
    return 1;
}

/* Whether the value of one parameter is acceptable; fills v on a problem.
 * Returns -1 on out-of-memory. */
static int check_param(verdict *vd, const char *fname, const char *pname, const json_t *value,
                       const json_t *acceptable, const json_t *prop)
{
    enum vtype want = doc_type(json_string_value(json_object_get(prop, "type")));
    enum vtype item = T_ANY;
    if (want == T_LIST)
        item = doc_type(json_string_value(json_object_get(json_object_get(prop, "items"), "type")));

    /* BFCL's type_checker: when the answers themselves are of another type
     * than the doc says, the parameter is a "variable" and is compared as is. */
    enum vtype answers = T_NULL;
    size_t i;
    json_t *a;
    json_array_foreach(acceptable, i, a) {
        if (!(json_is_string(a) && json_string_length(a) == 0)) {
            answers = value_type(a);
            break;
        }
    }
    int variable = answers != T_NULL && want != T_ANY && answers != want &&
                   !(want == T_FLOAT && answers == T_INT);
    if (!type_ok(value, want)) {
        if (answers != T_NULL && value_type(value) == answers) {
            variable = 1;
        } else {
            problem(vd, "wrong_type", "%s: parameter '%.64s' should be %s, got %s", fname, pname,
                    vtype_name(want), vtype_name(value_type(value)));
            return 0;
        }
    }
    if (!variable && want == T_LIST && item != T_ANY) {
        /* As at the top: items of the answers' own item type pass too. */
        enum vtype answer_items = T_NULL;
        json_array_foreach(acceptable, i, a) {
            if (json_is_array(a) && json_array_size(a) > 0) {
                answer_items = value_type(json_array_get(a, 0));
                break;
            }
        }
        json_t *e;
        json_array_foreach(value, i, e) {
            if (!type_ok(e, item) && value_type(e) != answer_items) {
                problem(vd, "wrong_type", "%s: parameter '%.64s' item %zu should be %s, got %s",
                        fname, pname, i, vtype_name(item), vtype_name(value_type(e)));
                return 0;
            }
        }
    }

    int ok = 0;
    if (variable) {
        ok = in_list(value, acceptable, 0);
    } else if (json_is_string(value)) {
        ok = in_list(value, acceptable, 1);
    } else if (json_is_object(value)) {
        json_array_foreach(acceptable, i, a)
            ok |= dict_matches(value, a);
    } else if (json_is_array(value) && item == T_DICT) {
        json_array_foreach(acceptable, i, a) { /* list_dict_checker */
            if (!json_is_array(a) || json_array_size(a) != json_array_size(value))
                continue;
            int all = 1;
            for (size_t k = 0; k < json_array_size(a) && all; k++)
                all = dict_matches(json_array_get(value, k), json_array_get(a, k));
            ok |= all;
        }
    } else if (json_is_array(value)) {
        json_t *sv = standardize_list(value);
        if (sv == NULL)
            return -1;
        json_array_foreach(acceptable, i, a) {
            if (!json_is_array(a))
                continue;
            json_t *sa = standardize_list(a);
            if (sa == NULL) {
                json_decref(sv);
                return -1;
            }
            ok |= py_equal(sv, sa, 0);
            json_decref(sa);
        }
        json_decref(sv);
    } else {
        ok = in_list(value, acceptable, 0);
    }
    if (!ok) {
        char *got = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        char *want_s = json_dumps(acceptable, JSON_COMPACT);
        problem(vd, "wrong_value", "%s: parameter '%.64s' is %.60s, expected one of %.80s", fname,
                pname, got ? got : "?", want_s ? want_s : "?");
        free(got);
        free(want_s);
    }
    return ok;
}

/* Sorted keys of an object (at most cap). */
static size_t sorted_keys(const char **keys, size_t cap, const json_t *obj)
{
    size_t n = 0;
    for (void *it = json_object_iter((json_t *)obj); it && n < cap;
         it = json_object_iter_next((json_t *)obj, it))
        keys[n++] = json_object_iter_key(it);
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *t = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = t;
        }
    return n;
}

/* BFCL's simple_function_checker on one pair; counts every parameter so that
 * the partial credit sees all of them, while the reason is the first problem.
 * Returns -1 on out-of-memory. */
static int check_call(verdict *vd, const json_t *args, const char *fname, const json_t *expected,
                      const json_t *doc)
{
    memset(vd, 0, sizeof *vd);
    vd->ok = 1;
    vd->reason = "ok";
    const json_t *params = json_object_get(doc, "parameters");
    const json_t *props = json_object_get(params, "properties");
    const json_t *req = json_object_get(params, "required");
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
        const char *p = json_string_value(r);
        if (p && json_object_get(args, p) == NULL)
            problem(vd, "missing_param", "%s: required parameter '%.64s' is missing", fname, p);
    }
    const char *keys[128];
    size_t nk = sorted_keys(keys, 128, args);
    if (nk < json_object_size(args))
        problem(vd, "unexpected_param", "%s: more than 128 parameters", fname);
    for (size_t k = 0; k < nk; k++) {
        const json_t *acc = json_object_get(expected, keys[k]);
        const json_t *prop = json_object_get(props, keys[k]);
        vd->total++;
        if (acc == NULL || prop == NULL || !json_is_array(acc)) {
            problem(vd, "unexpected_param", "%s: unexpected parameter '%.64s'", fname, keys[k]);
            continue;
        }
        int rc = check_param(vd, fname, keys[k], json_object_get(args, keys[k]), acc, prop);
        if (rc < 0)
            return -1;
        vd->right += (size_t)rc;
    }
    nk = sorted_keys(keys, 128, expected);
    for (size_t k = 0; k < nk; k++) {
        if (json_object_get(args, keys[k]) || omittable(json_object_get(expected, keys[k])))
            continue;
        vd->total++;
        problem(vd, "missing_optional", "%s: parameter '%.64s' is missing", fname, keys[k]);
    }
    return 0;
}

/* ---- many calls -------------------------------------------------------------- */

/* Names match exactly, or with '.' written '_' (tool names in the OpenAI
 * format cannot hold dots, so models and BFCL's own handlers rewrite them). */
static int name_matches(const char *given, const char *want)
{
    if (strcmp(given, want) == 0)
        return 1;
    for (; *given && *want; given++, want++)
        if (*given != *want && !(*want == '.' && *given == '_'))
            return 0;
    return *given == *want;
}

/* Kuhn's augmenting path from expected call i over edges ok[i][j]. */
static int augment(size_t i, size_t ng, const unsigned char *ok, int *owner, unsigned char *seen)
{
    for (size_t j = 0; j < ng; j++) {
        if (!ok[i * MAX_CALLS + j] || seen[j])
            continue;
        seen[j] = 1;
        if (owner[j] < 0 || augment((size_t)owner[j], ng, ok, owner, seen)) {
            owner[j] = (int)i;
            return 1;
        }
    }
    return 0;
}

static int bad_data(vf_bfcl_result *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad_data(vf_bfcl_result *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
    out->reason = "bad_ground_truth";
    out->reward = 0;
    out->valid = 0;
    return -1;
}

int vf_bfcl_match(vf_bfcl_result *out, const json_t *calls, const json_t *functions,
                  const json_t *ground_truth, int partial)
{
    memset(out, 0, sizeof *out);
    out->reason = "ok";
    if (!json_is_array(ground_truth) || json_array_size(ground_truth) == 0)
        return bad_data(out, "ground truth must be a non-empty list of calls");
    if (!json_is_array(functions))
        return bad_data(out, "function docs must be a list");
    size_t ne = json_array_size(ground_truth), ng = json_array_size(calls);
    if (ne > MAX_CALLS)
        return bad_data(out, "more than %d expected calls", MAX_CALLS);
    out->calls_expected = ne;
    out->calls_given = ng;
    if (ng > MAX_CALLS)
        ng = MAX_CALLS; /* the parser never gives more; keep the tables bounded */

    int rc = -1;
    const char **enames = calloc(ne, sizeof *enames);
    const json_t **eparams = calloc(ne, sizeof *eparams);
    const json_t **docs = calloc(ne, sizeof *docs);
    unsigned char *ok = calloc((size_t)MAX_CALLS * MAX_CALLS, 1);
    verdict *vds = calloc(ne * (ng ? ng : 1), sizeof *vds);
    int *owner = malloc(MAX_CALLS * sizeof *owner);
    unsigned char seen[MAX_CALLS];
    if (!enames || !eparams || !docs || !ok || !vds || !owner) {
        snprintf(out->message, sizeof out->message, "out of memory");
        rc = -2;
        goto done;
    }
    for (size_t i = 0; i < ne; i++) {
        const json_t *g = json_array_get(ground_truth, i);
        if (!json_is_object(g) || json_object_size(g) != 1) {
            rc = bad_data(out, "ground truth call %zu must be {function: {param: [values]}}", i + 1);
            goto done;
        }
        void *it = json_object_iter((json_t *)g);
        enames[i] = json_object_iter_key(it);
        eparams[i] = json_object_iter_value(it);
        if (!json_is_object(eparams[i])) {
            rc = bad_data(out, "ground truth call %zu (%.64s): parameters must be an object", i + 1,
                          enames[i]);
            goto done;
        }
        size_t k;
        json_t *f;
        json_array_foreach(functions, k, f)
            if (json_is_string(json_object_get(f, "name")) &&
                strcmp(json_string_value(json_object_get(f, "name")), enames[i]) == 0)
                docs[i] = f;
        if (docs[i] == NULL) {
            rc = bad_data(out, "no function doc for '%.64s' of the ground truth", enames[i]);
            goto done;
        }
    }

    /* Every pair of the same function gets a verdict. */
    for (size_t i = 0; i < ne; i++) {
        for (size_t j = 0; j < ng; j++) {
            const json_t *c = json_array_get(calls, j);
            const char *name = json_string_value(json_object_get(c, "name"));
            verdict *vd = &vds[i * ng + j];
            if (name == NULL || !name_matches(name, enames[i])) {
                vd->reason = NULL; /* not a candidate */
                continue;
            }
            if (check_call(vd, json_object_get(c, "arguments"), enames[i], eparams[i], docs[i]) != 0) {
                snprintf(out->message, sizeof out->message, "out of memory");
                rc = -2;
                goto done;
            }
            ok[i * MAX_CALLS + j] = (unsigned char)vd->ok;
        }
    }

    for (size_t j = 0; j < MAX_CALLS; j++)
        owner[j] = -1;
    size_t matched = 0;
    for (size_t i = 0; i < ne; i++) {
        memset(seen, 0, sizeof seen);
        matched += (size_t)augment(i, ng, ok, owner, seen);
    }
    out->calls_right = matched;
    out->valid = ng == ne && matched == ne;

    if (ng == 0) {
        out->reason = "no_tool_call";
        snprintf(out->message, sizeof out->message, "no tool call; expected %zu", ne);
    } else if (ng != ne) {
        out->reason = "wrong_count";
        snprintf(out->message, sizeof out->message, "expected %zu call%s, got %zu", ne,
                 ne == 1 ? "" : "s", out->calls_given);
    } else if (!out->valid) {
        /* Explain the first expected call left without a partner. */
        for (size_t i = 0; i < ne; i++) {
            int has = 0;
            for (size_t j = 0; j < ng; j++)
                has |= owner[j] == (int)i;
            if (has)
                continue;
            /* Fewer calls to this function than expected: the others went elsewhere. */
            size_t want_same = 0, got_same = 0;
            for (size_t k = 0; k < ne; k++)
                want_same += strcmp(enames[k], enames[i]) == 0;
            for (size_t j = 0; j < ng; j++)
                got_same += vds[i * ng + j].reason != NULL;
            const verdict *why = NULL;
            if (got_same < want_same && got_same > 0) {
                out->reason = "wrong_function";
                snprintf(out->message, sizeof out->message, "expected %zu call%s to '%.64s', "
                         "got %zu", want_same, want_same == 1 ? "" : "s", enames[i], got_same);
                break;
            }
            for (size_t j = 0; j < ng && !why; j++)
                if (vds[i * ng + j].reason && owner[j] < 0)
                    why = &vds[i * ng + j];
            for (size_t j = 0; j < ng && !why; j++)
                if (vds[i * ng + j].reason)
                    why = &vds[i * ng + j];
            if (why && why->ok) {
                out->reason = "wrong_count"; /* right call, but another expected call took it */
                snprintf(out->message, sizeof out->message, "%.64s: called too few times",
                         enames[i]);
            } else if (why) {
                out->reason = why->reason;
                snprintf(out->message, sizeof out->message, "%s", why->message);
            } else {
                out->reason = "wrong_function";
                snprintf(out->message, sizeof out->message, "no call to '%.64s' (got '%.64s')",
                         enames[i],
                         json_string_value(json_object_get(json_array_get(calls, 0), "name")));
            }
            break;
        }
    }

    if (out->valid) {
        out->reward = 1.0;
        for (size_t i = 0; i < ne; i++)
            for (size_t j = 0; j < ng; j++)
                if (owner[j] == (int)i) {
                    out->params_right += vds[i * ng + j].right;
                    out->params_total += vds[i * ng + j].total;
                }
    } else if (partial && ng > 0) {
        /* Greedy pairing by the fraction of parameters right. */
        unsigned char used_e[MAX_CALLS] = {0}, used_g[MAX_CALLS] = {0};
        double sum = 0;
        for (;;) {
            double best = -1;
            size_t bi = 0, bj = 0;
            for (size_t i = 0; i < ne; i++)
                for (size_t j = 0; j < ng; j++) {
                    const verdict *vd = &vds[i * ng + j];
                    if (used_e[i] || used_g[j] || vd->reason == NULL)
                        continue;
                    double s = vd->total ? (double)vd->right / (double)vd->total : 1.0;
                    if (s > best) {
                        best = s;
                        bi = i;
                        bj = j;
                    }
                }
            if (best < 0)
                break;
            used_e[bi] = used_g[bj] = 1;
            sum += best;
            out->params_right += vds[bi * ng + bj].right;
            out->params_total += vds[bi * ng + bj].total;
        }
        out->reward = sum / (double)(ne > out->calls_given ? ne : out->calls_given);
    }
    rc = 0;
done:
    free(enames);
    free(eparams);
    free(docs);
    free(ok);
    free(vds);
    free(owner);
    return rc;
}

int vf_bfcl_score(vf_bfcl_result *out, const char *completion, size_t len,
                  const json_t *functions, const json_t *ground_truth, int partial)
{
    json_t *calls = NULL;
    char reason[VF_TOOL_REASON_MAX];
    int rc = vf_tool_calls_parse(&calls, completion, len, reason, sizeof reason);
    if (rc == -2) {
        memset(out, 0, sizeof *out);
        out->reason = "parse_error";
        snprintf(out->message, sizeof out->message, "out of memory");
        return -2;
    }
    if (rc != 0) {
        /* Check the data all the same, so that bad data is never hidden. */
        json_t *none = json_array();
        if (none == NULL)
            return -2;
        rc = vf_bfcl_match(out, none, functions, ground_truth, partial);
        json_decref(none);
        if (rc != 0)
            return rc;
        out->reason = "parse_error";
        snprintf(out->message, sizeof out->message, "%s", reason);
        return 0;
    }
    rc = vf_bfcl_match(out, calls, functions, ground_truth, partial);
    json_decref(calls);
    return rc;
}

/* ---- reference answers ------------------------------------------------------ */

/* The first acceptable value of a BFCL answer list, reduced recursively;
 * NULL means "leave it out". New reference. */
static json_t *gold_first_value(const json_t *acceptable)
{
    const json_t *v = json_array_get(acceptable, 0);
    if (json_is_string(v) && json_string_length(v) == 0)
        return NULL;
    if (json_is_object(v)) {
        json_t *d = json_object();
        const char *k;
        json_t *lst;
        json_object_foreach((json_t *)v, k, lst) {
            json_t *x = json_is_array(lst) ? gold_first_value(lst) : json_incref(lst);
            if (x)
                json_object_set_new(d, k, x);
        }
        return d;
    }
    if (json_is_array(v) && json_array_size(v) > 0 && json_is_object(json_array_get(v, 0))) {
        json_t *l = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            json_t *wrap = json_pack("[O]", e);
            json_t *x = wrap ? gold_first_value(wrap) : NULL;
            json_decref(wrap);
            if (x)
                json_array_append_new(l, x);
        }
        return l;
    }
    return json_incref((json_t *)v);
}

static const json_t *gold_find_doc(const json_t *functions, const char *name)
{
    size_t i;
    json_t *f;
    json_array_foreach(functions, i, f) {
        const char *n = json_string_value(json_object_get(f, "name"));
        if (n && strcmp(n, name) == 0)
            return f;
    }
    return NULL;
}

static int gold_is_required(const json_t *params, const char *name)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(params, "required"), i, r)
        if (json_is_string(r) && strcmp(json_string_value(r), name) == 0)
            return 1;
    return 0;
}

/* The arguments of one ground-truth call {param: [acceptable...]}. */
static json_t *gold_arguments(const json_t *answers, const json_t *params)
{
    json_t *args = json_object();
    const char *p;
    json_t *acc;
    json_object_foreach((json_t *)answers, p, acc) {
        if (!json_object_get(json_object_get(params, "properties"), p))
            continue;
        json_t *v = gold_first_value(acc);
        if (!v && gold_is_required(params, p) && json_array_size(acc) > 1) {
            json_t *rest = json_pack("[O]", json_array_get(acc, 1));
            v = rest ? gold_first_value(rest) : NULL;
            json_decref(rest);
        }
        if (v)
            json_object_set_new(args, p, v);
    }
    return args;
}

json_t *vf_bfcl_gold_calls(const json_t *ground_truth, const json_t *functions)
{
    if (!json_is_array(ground_truth))
        return NULL;
    json_t *calls = json_array();
    size_t i;
    json_t *g;
    json_array_foreach(ground_truth, i, g) {
        if (!json_is_object(g) || json_object_size(g) != 1) {
            json_decref(calls);
            return NULL;
        }
        void *it = json_object_iter(g);
        const char *name = json_object_iter_key(it);
        const json_t *params = json_object_get(gold_find_doc(functions, name), "parameters");
        json_t *call = json_pack("{s:s, s:o}", "name", name, "arguments",
                                 gold_arguments(json_object_iter_value(it), params));
        if (!call || json_array_append_new(calls, call) != 0) {
            json_decref(calls);
            return NULL;
        }
    }
    return calls;
}
