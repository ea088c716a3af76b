/*
 * What every handler shares: JSON and error responses, body parsing, env and
 * item lookup, and the mapping of lenv errors to HTTP. Handlers live in
 * api_envs.c (health, envs, items, sample, metrics), api_score.c and
 * api_episodes.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* The answer when even the error cannot be encoded (out of memory). */
static const char internal_body[] =
    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory while encoding the answer\"}}";

static void reply_static_internal(srv__response *resp)
{
    free(resp->body_static ? NULL : resp->body);
    resp->status = 500;
    resp->body = (char *)internal_body;
    resp->body_len = sizeof internal_body - 1;
    resp->body_static = 1;
}

void srv__reply_json(srv__response *resp, int status, json_t *body)
{
    /* The same text as json_dumps, written faster (json_dump.c); malloc'd,
     * so it can go to libmicrohttpd as MHD_RESPMEM_MUST_FREE. */
    size_t len = 0;
    char *text = body ? srv__json_dump(body, &len) : NULL;
    json_decref(body);
    if (!text) {
        reply_static_internal(resp);
        return;
    }
    if (!resp->body_static)
        free(resp->body);
    resp->status = status;
    resp->body = text;
    resp->body_len = len;
    resp->body_static = 0;
}

/* Replaces bytes that are not valid UTF-8 with '?', in place: messages echo
 * client input (paths, ids), and Jansson refuses invalid UTF-8 strings. */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n;
        unsigned int cp;
        if (p[0] < 0x80) {
            p++;
            continue;
        } else if ((p[0] & 0xE0) == 0xC0) {
            n = 2;
            cp = p[0] & 0x1F;
        } else if ((p[0] & 0xF0) == 0xE0) {
            n = 3;
            cp = p[0] & 0x0F;
        } else if ((p[0] & 0xF8) == 0xF0) {
            n = 4;
            cp = p[0] & 0x07;
        } else {
            *p++ = '?';
            continue;
        }
        size_t i = 1;
        for (; i < n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                break;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        int bad = i < n || (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
                  (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF);
        if (bad)
            *p++ = '?';
        else
            p += n;
    }
}

static json_t *error_object(const char *code, const char *message)
{
    json_t *err = json_object();
    json_t *outer = json_object();
    if (!err || !outer || json_object_set_new(err, "code", json_string(code)) != 0 ||
        json_object_set_new(err, "message", json_string(message)) != 0 ||
        json_object_set(outer, "error", err) != 0) {
        json_decref(err);
        json_decref(outer);
        return NULL;
    }
    json_decref(err);
    return outer;
}

void srv__reply_error(srv__response *resp, int status, const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    utf8_sanitize(message);
    srv__reply_json(resp, status, error_object(code, message));
}

void srv__reply_lenv_error(srv__response *resp, srv_server *srv, size_t env_index,
                           const lenv_error *err)
{
    int status;
    const char *code;
    switch (err->code) {
    case LENV_EINVALID: status = 422; code = "invalid_field"; break;
    case LENV_ENOTFOUND: status = 404; code = "unknown_item"; break;
    case LENV_ELIMIT: status = 422; code = "invalid_field"; break;
    case LENV_ESCRIPT: status = 500; code = "env_error"; break;
    default: status = 500; code = "internal"; break;
    }
    char message[sizeof err->message];
    memcpy(message, err->message, sizeof message);
    message[sizeof message - 1] = '\0';
    utf8_sanitize(message);
    json_t *body = error_object(code, message[0] ? message : "environment call failed");
    if (err->code == LENV_ESCRIPT) {
        srv__metrics_lua_error(srv->metrics, env_index);
        if (body && err->source[0]) {
            char source[sizeof err->source];
            memcpy(source, err->source, sizeof source);
            source[sizeof source - 1] = '\0';
            utf8_sanitize(source);
            json_t *e = json_object_get(body, "error");
            if (json_object_set_new(e, "source", json_string(source)) != 0 ||
                json_object_set_new(e, "line", json_integer(err->line)) != 0) {
                json_decref(body);
                body = NULL;
            }
        }
    }
    srv__reply_json(resp, status, body);
}

json_t *srv__parse_object(srv__response *resp, const srv__request *req, int empty_ok)
{
    if (req->body_len == 0) {
        if (empty_ok) {
            json_t *o = json_object();
            if (!o)
                srv__reply_error(resp, 500, "internal", "out of memory");
            return o;
        }
        srv__reply_error(resp, 400, "bad_request", "request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t jerr;
    /* JSON_DECODE_ANY: a scalar body is valid JSON, answered as bad_request
     * below rather than as bad_json. JSON_ALLOW_NUL: a completion may legitimately hold "\u0000"; lengths are
     * passed along explicitly, and ids are checked for embedded NULs. srv__json_parse accepts what
     * json_loadb does, at a fraction of its cost on long completions. */
    json_t *v = srv__json_parse(req->body, req->body_len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!v) {
        srv__reply_error(resp, 400, "bad_json", "invalid JSON: %s at line %d column %d", jerr.text,
                         jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        srv__reply_error(resp, 400, "bad_request", "request body must be a JSON object, got %s",
                         srv__json_kind(v));
        json_decref(v);
        return NULL;
    }
    return v;
}

lenv_env *srv__find_env(size_t *index, srv__response *resp, const srv__request *req, size_t param)
{
    const char *name = req->params[param];
    for (size_t i = 0; i < req->srv->n_envs; i++) {
        if (strcmp(lenv_name(req->srv->envs[i]), name) == 0) {
            *index = i;
            return req->srv->envs[i];
        }
    }
    srv__reply_error(resp, 404, "unknown_env", "unknown environment '%.200s'", name);
    return NULL;
}

const char *srv__json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

int srv__resolve_item(json_t **item, const char **item_id, srv__response *resp,
                      srv_server *srv, size_t env_index, const json_t *body)
{
    *item = NULL;
    *item_id = NULL;
    json_t *id = json_object_get(body, "item_id");
    json_t *inline_item = json_object_get(body, "item");
    if (id && inline_item) {
        srv__reply_error(resp, 400, "bad_request", "give either 'item_id' or 'item', not both");
        return -1;
    }
    if (!id && !inline_item) {
        srv__reply_error(resp, 400, "bad_request", "missing field 'item_id' (or an inline 'item')");
        return -1;
    }
    if (inline_item) {
        if (!json_is_object(inline_item)) {
            srv__reply_error(resp, 422, "invalid_field", "field 'item' must be an object, got %s",
                             srv__json_kind(inline_item));
            return -1;
        }
        json_t *own_id = json_object_get(inline_item, "id");
        *item = json_incref(inline_item);
        *item_id = json_is_string(own_id) ? json_string_value(own_id) : NULL;
        return 0;
    }
    if (!json_is_string(id)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'item_id' must be a string, got %s",
                         srv__json_kind(id));
        return -1;
    }
    const char *s = json_string_value(id);
    if (strlen(s) != json_string_length(id)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'item_id' must not contain a NUL character");
        return -1;
    }
    lenv_error err = { 0 };
    /* lenv_item_get serves dataset and procedural envs alike. */
    if (lenv_item_get(item, srv->envs[env_index], s, &err) != 0) {
        srv__reply_lenv_error(resp, srv, env_index, &err);
        return -1;
    }
    *item_id = s;
    return 0;
}
