/*
 * Finding tool calls in a completion: Hermes/Qwen <tool_call> tags, Llama-3
 * JSON, OpenAI tool_calls objects and bare JSON, inside code fences or not.
 * See vf_tool_calls_parse in verifiers.h for the contract.
 *
 * The work is in two steps: find the JSON texts that hold calls (tags,
 * fences, the whole text), then turn each JSON value into {name, arguments}
 * pairs, whatever its shape. Text inside <think>...</think> is dropped first,
 * so that a model's reasoning about a call is not taken for the call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verifiers/verifiers.h"

#define OPEN_TAG "<tool_call>"
#define CLOSE_TAG "</tool_call>"
#define PYTHON_TAG "<|python_tag|>"

typedef struct parser {
    json_t *out;        /* borrowed: the array of calls being built */
    char *reason;       /* may be NULL */
    size_t cap;
    int oom;
} parser;

static int fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(parser *p, const char *fmt, ...)
{
    if (p->reason && p->cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->reason, p->cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Narrows [*s, *s + *n) to its text without surrounding whitespace. */
static void trim(const char **s, size_t *n)
{
    while (*n && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((*s)[*n - 1]))
        (*n)--;
}

static const char *find(const char *s, size_t n, const char *needle)
{
    return memmem(s, n, needle, strlen(needle));
}

/* Whether a JSON value has the shape of one call or a container of calls. */
static int looks_like_call(const json_t *v)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            if (looks_like_call(e))
                return 1;
        return 0;
    }
    return json_is_object(v) &&
           (json_is_string(json_object_get(v, "name")) ||
            json_is_object(json_object_get(v, "function")) ||
            json_is_array(json_object_get(v, "tool_calls")));
}

/* Appends {name, arguments} for one call object. */
static int add_one(parser *p, const json_t *v)
{
    size_t k = json_array_size(p->out) + 1;
    if (!json_is_object(v))
        return fail(p, "tool call %zu: expected a JSON object, got %s", k,
                    json_is_array(v) ? "a list" : "a scalar");
    const json_t *fn = json_object_get(v, "function");
    if (json_is_object(fn) && !json_is_string(json_object_get(v, "name")))
        v = fn; /* OpenAI: {"type": "function", "function": {"name", "arguments"}} */
    const char *name = json_string_value(json_object_get(v, "name"));
    if (name == NULL || name[0] == '\0')
        return fail(p, "tool call %zu: no \"name\" string", k);
    if (k > VF_TOOL_MAX_CALLS)
        return fail(p, "more than %d tool calls", VF_TOOL_MAX_CALLS);
    const json_t *args = json_object_get(v, "arguments");
    if (args == NULL)
        args = json_object_get(v, "parameters"); /* Llama-3 */
    json_t *obj = NULL;
    if (args == NULL || json_is_null(args)) {
        obj = json_object();
    } else if (json_is_object(args)) {
        obj = json_deep_copy(args);
    } else if (json_is_string(args)) {
        /* OpenAI sends arguments as JSON text. */
        json_error_t jerr;
        obj = json_loadb(json_string_value(args), json_string_length(args), 0, &jerr);
        if (obj == NULL)
            return fail(p, "tool call %zu (%.64s): arguments are not valid JSON: %s", k, name,
                        jerr.text);
        if (!json_is_object(obj)) {
            json_decref(obj);
            return fail(p, "tool call %zu (%.64s): arguments must be a JSON object", k, name);
        }
    } else {
        return fail(p, "tool call %zu (%.64s): arguments must be a JSON object", k, name);
    }
    json_t *call = json_pack("{s:s, s:o}", "name", name, "arguments", obj);
    if (obj == NULL || call == NULL || json_array_append_new(p->out, call) != 0) {
        p->oom = 1;
        return -2;
    }
    return 0;
}

/* Appends the calls a JSON value holds, whatever its shape. */
static int add_value(parser *p, const json_t *v, int depth)
{
    if (depth > 4)
        return fail(p, "tool calls nested too deeply");
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            int rc = add_value(p, e, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    const json_t *tc = json_object_get(v, "tool_calls");
    if (json_is_array(tc) && !json_is_string(json_object_get(v, "name")))
        return add_value(p, tc, depth + 1); /* an OpenAI assistant message or response */
    return add_one(p, v);
}

/* Parses one or more JSON values written one after another (Llama-3 puts ';'
 * between calls) and adds their calls. `strict`: the text was marked as a
 * call (a <tool_call> tag), so JSON that is not a call is an error; otherwise
 * it is just JSON, and adds nothing. */
static int add_json_text(parser *p, const char *s, size_t n, int strict, int ordinal)
{
    trim(&s, &n);
    /* A fence inside the tag: ```json ... ``` */
    if (n >= 3 && memcmp(s, "```", 3) == 0) {
        const char *nl = memchr(s, '\n', n);
        const char *end = n >= 6 ? find(s + 3, n - 3, "```") : NULL;
        if (nl && end && end > nl) {
            n = (size_t)(end - (nl + 1));
            s = nl + 1;
            trim(&s, &n);
        }
    }
    size_t pos = 0;
    int values = 0;
    while (pos < n) {
        json_error_t jerr;
        json_t *v = json_loadb(s + pos, n - pos, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);
        if (v == NULL) {
            if (ordinal > 0)
                return fail(p, "tool call %d: invalid JSON: %s", ordinal, jerr.text);
            return fail(p, "invalid JSON in tool call: %s at column %d", jerr.text,
                        (int)(pos + (size_t)jerr.position));
        }
        pos += (size_t)jerr.position;
        values++;
        int rc = 0;
        if (strict || looks_like_call(v))
            rc = add_value(p, v, 0);
        json_decref(v);
        if (rc)
            return rc;
        while (pos < n && (is_space(s[pos]) || s[pos] == ';'))
            pos++;
        if (pos < n && s[pos] != '{' && s[pos] != '[') {
            if (strict)
                return fail(p, "tool call %d: unexpected text after the JSON: '%.20s'",
                            ordinal > 0 ? ordinal : 1, s + pos);
            break; /* prose after the JSON: the JSON was the call */
        }
    }
    if (values == 0 && strict)
        return fail(p, "tool call %d: empty", ordinal);
    return 0;
}

/* Hermes / Qwen: every <tool_call>...</tool_call> in order. */
static int parse_tags(parser *p, const char *s, size_t n)
{
    int ordinal = 0;
    const char *at = find(s, n, OPEN_TAG);
    while (at) {
        ordinal++;
        const char *body = at + strlen(OPEN_TAG);
        size_t left = n - (size_t)(body - s);
        const char *close = find(body, left, CLOSE_TAG);
        const char *next = find(body, left, OPEN_TAG);
        if (next && (close == NULL || next < close))
            return fail(p, "tool call %d: <tool_call> without </tool_call>", ordinal);
        size_t blen = close ? (size_t)(close - body) : left; /* the last one may be unclosed */
        size_t before = json_array_size(p->out);
        int rc = add_json_text(p, body, blen, 1, ordinal);
        if (rc)
            return rc;
        if (json_array_size(p->out) == before)
            return fail(p, "tool call %d: empty", ordinal);
        if (close == NULL)
            break;
        const char *rest = close + strlen(CLOSE_TAG);
        at = find(rest, n - (size_t)(rest - s), OPEN_TAG);
    }
    return 0;
}

/* Code fences: the JSON inside each ```...``` block, in order. Returns 1 in
 * *found when there was at least one fence with JSON in it. */
static int parse_fences(parser *p, const char *s, size_t n, int *found)
{
    const char *at = find(s, n, "```");
    *found = 0;
    while (at) {
        const char *body = at + 3;
        size_t left = n - (size_t)(body - s);
        const char *close = find(body, left, "```");
        if (close == NULL)
            break;
        /* The language tag runs to the end of the first line. */
        const char *nl = memchr(body, '\n', (size_t)(close - body));
        const char *js = nl ? nl + 1 : body;
        size_t jn = (size_t)(close - js);
        trim(&js, &jn);
        if (jn && (js[0] == '{' || js[0] == '[')) {
            *found = 1;
            int rc = add_json_text(p, js, jn, 0, 0);
            if (rc)
                return rc;
        }
        const char *rest = close + 3;
        at = find(rest, n - (size_t)(rest - s), "```");
    }
    return 0;
}

/* Copies the text without <think>...</think> (and without what follows an
 * unclosed <think>). New buffer the caller frees, NULL on out-of-memory. */
static char *strip_think(const char *s, size_t n, size_t *out_n)
{
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return NULL;
    size_t w = 0, pos = 0;
    while (pos < n) {
        const char *open = find(s + pos, n - pos, "<think>");
        size_t upto = open ? (size_t)(open - s) : n;
        memcpy(buf + w, s + pos, upto - pos);
        w += upto - pos;
        if (open == NULL)
            break;
        const char *close = find(open, n - upto, "</think>");
        if (close == NULL)
            break;
        pos = (size_t)(close - s) + strlen("</think>");
    }
    buf[w] = '\0';
    *out_n = w;
    return buf;
}

int vf_tool_calls_parse(json_t **out, const char *text, size_t len, char *reason, size_t cap)
{
    *out = NULL;
    if (reason && cap)
        reason[0] = '\0';
    size_t n = 0;
    char *buf = text ? strip_think(text, len, &n) : NULL;
    parser p = {json_array(), reason, cap, 0};
    int rc = -2;
    if ((text && buf == NULL) || p.out == NULL)
        goto done;
    const char *s = buf ? buf : "";
    if (find(s, n, OPEN_TAG)) {
        rc = parse_tags(&p, s, n);
    } else {
        int fenced = 0;
        rc = parse_fences(&p, s, n, &fenced);
        if (rc == 0 && !fenced) {
            const char *t = s;
            size_t tn = n;
            trim(&t, &tn);
            size_t pl = strlen(PYTHON_TAG);
            if (tn >= pl && memcmp(t, PYTHON_TAG, pl) == 0) {
                t += pl;
                tn -= pl;
                trim(&t, &tn);
            }
            if (tn && (t[0] == '{' || t[0] == '['))
                rc = add_json_text(&p, t, tn, 0, 0);
        }
    }
    if (p.oom)
        rc = -2;
    if (rc == -2 && reason && cap)
        snprintf(reason, cap, "out of memory");
    if (rc == 0) {
        *out = p.out;
        p.out = NULL;
    }
done:
    json_decref(p.out);
    free(buf);
    return rc;
}
