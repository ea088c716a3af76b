/*
 * The Atropos-compatible trajectory routes (docs/trajectory.md): the same
 * paths, fields and answers as atroposlib/api/server.py, over the buffer of
 * buffer.c, plus POST /v1/policy for policy versions.
 *
 * Bodies may be gzip-compressed (Content-Encoding: gzip), as Atropos's
 * GZipRequestMiddleware accepts; they are inflated here with a cap on the
 * inflated size, so a small zip bomb cannot exhaust memory.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "server/server_int.h"

/* Largest inflated body: token lists compress about tenfold, so this leaves
 * room for any body a client could send uncompressed under --max-body. */
#define MAX_INFLATED_FACTOR 16
#define MAX_INFLATED_CAP (1024u << 20)

/* Seconds a producer told "queue full" should wait before retrying. */
#define RETRY_AFTER_S 1

static void reply_buffer_error(srv__response *resp, int rc, const char *err)
{
    switch (rc) {
    case SRV__BUF_EINVALID: srv__reply_error(resp, 422, "invalid_field", "%s", err); break;
    case SRV__BUF_EFULL:
        srv__reply_error(resp, 503, "queue_full", "%s", err);
        resp->retry_after_s = RETRY_AFTER_S;
        break;
    case SRV__BUF_ENOTFOUND: srv__reply_error(resp, 404, "unknown_env", "%s", err); break;
    case SRV__BUF_ESTATE: srv__reply_error(resp, 409, "not_registered", "%s", err); break;
    default: srv__reply_error(resp, 500, "internal", "%s", err); break;
    }
}

/* Inflates a gzip body into *out (malloc'd, NUL-terminated). Returns 0, or -1
 * with resp filled (400 for a corrupt stream, 413 past the cap). */
static int inflate_body(char **out, size_t *out_len, srv__response *resp, const srv__request *req)
{
    size_t cap_limit = req->srv->max_body > MAX_INFLATED_CAP / MAX_INFLATED_FACTOR
                           ? MAX_INFLATED_CAP
                           : req->srv->max_body * MAX_INFLATED_FACTOR;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) { /* +16: gzip framing only */
        srv__reply_error(resp, 500, "internal", "cannot start gzip decoder");
        return -1;
    }
    size_t cap = req->body_len * 4 + 1024, len = 0;
    if (cap > cap_limit + 1)
        cap = cap_limit + 1;
    char *buf = malloc(cap);
    int rc = -1, zr = Z_OK;
    if (!buf) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    zs.next_in = (Bytef *)req->body;
    zs.avail_in = (uInt)req->body_len;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > cap_limit) {
                srv__reply_error(resp, 413, "body_too_large",
                                 "gzip body inflates to more than %zu bytes", cap_limit);
                goto done;
            }
            size_t ncap = cap * 2 > cap_limit + 1 ? cap_limit + 1 : cap * 2;
            char *p = realloc(buf, ncap);
            if (!p) {
                srv__reply_error(resp, 500, "internal", "out of memory");
                goto done;
            }
            buf = p;
            cap = ncap;
        }
        zs.next_out = (Bytef *)buf + len;
        zs.avail_out = (uInt)(cap - 1 - len);
        zr = inflate(&zs, Z_NO_FLUSH);
        len = (size_t)((char *)zs.next_out - buf);
        if (zr == Z_STREAM_END)
            break;
        if (zr != Z_OK && !(zr == Z_BUF_ERROR && zs.avail_out == 0)) {
            srv__reply_error(resp, 400, "bad_gzip", "request body is not valid gzip (%s)",
                             zs.msg ? zs.msg : zr == Z_BUF_ERROR ? "truncated" : "corrupt");
            goto done;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = 0;
done:
    inflateEnd(&zs);
    free(buf);
    return rc;
}

/*
 * Parses the body (inflating it when Content-Encoding says gzip) as JSON of
 * the given type (JSON_OBJECT or JSON_ARRAY). Returns a new reference or
 * NULL with resp filled. When `text` is not NULL, *text and *text_len are the
 * JSON text parsed, valid until the request ends or, for an inflated body,
 * until the caller frees *inflated_out.
 */
static json_t *parse_body_text(srv__response *resp, const srv__request *req, json_type type, int empty_ok,
                               const char **text_out, size_t *text_len, char **inflated_out)
{
    const char *enc = req->header ? req->header(req, "Content-Encoding") : NULL;
    char *inflated = NULL;
    const char *text = req->body ? req->body : "";
    size_t len = req->body_len;
    json_t *v = NULL;
    if (enc && enc[0] && strcasecmp(enc, "identity") != 0) {
        if (strcasecmp(enc, "gzip") != 0) {
            srv__reply_error(resp, 415, "unsupported_encoding",
                             "Content-Encoding '%.64s' is not supported (use gzip or none)", enc);
            return NULL;
        }
        if (inflate_body(&inflated, &len, resp, req) != 0)
            return NULL;
        text = inflated;
    }
    if (len == 0 && empty_ok) {
        free(inflated);
        v = json_object();
        if (!v)
            srv__reply_error(resp, 500, "internal", "out of memory");
        return v;
    }
    json_error_t jerr;
    v = srv__json_parse(text, len, JSON_DECODE_ANY, &jerr);
    if (v && text_out) {
        *text_out = text;
        *text_len = len;
        *inflated_out = inflated;
        inflated = NULL;
    }
    free(inflated);
    if (!v) {
        srv__reply_error(resp, 400, "bad_json", "invalid JSON: %s at line %d column %d", jerr.text, jerr.line,
                         jerr.column);
        return NULL;
    }
    if (json_typeof(v) != type) {
        srv__reply_error(resp, 400, "bad_request", "request body must be a JSON %s, got %s",
                         type == JSON_ARRAY ? "array" : "object", srv__json_kind(v));
        json_decref(v);
        if (inflated_out) {
            free(*inflated_out);
            *inflated_out = NULL;
        }
        return NULL;
    }
    return v;
}

static json_t *parse_body(srv__response *resp, const srv__request *req, json_type type, int empty_ok)
{
    return parse_body_text(resp, req, type, empty_ok, NULL, NULL, NULL);
}

/*
 * Splits the text of a JSON array already parsed (so known to be valid) into
 * its n top-level elements: starts[i], lens[i]. Returns 0, or -1 when the
 * count differs (the caller then lets the buffer encode the groups itself).
 */
static int split_array(const char **starts, size_t *lens, size_t n, const char *s, size_t len)
{
    size_t i = 0, k = 0, depth = 0;
    while (i < len && s[i] != '[')
        i++;
    i++;
    const char *start = NULL;
    for (; i < len; i++) {
        char c = s[i];
        if (c == '"') {
            if (!start)
                start = s + i;
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (depth == 0 && (c == ',' || c == ']')) {
            if (start) {
                if (k == n)
                    return -1;
                size_t end = i;
                while (end > 0 && (s[end - 1] == ' ' || s[end - 1] == '\t' || s[end - 1] == '\n' ||
                                   s[end - 1] == '\r'))
                    end--;
                starts[k] = start;
                lens[k++] = (size_t)(s + end - start);
                start = NULL;
            }
            if (c == ']')
                break;
            continue;
        }
        if (!start)
            start = s + i;
        if (c == '[' || c == '{')
            depth++;
        else if (c == ']' || c == '}')
            depth--;
    }
    return k == n ? 0 : -1;
}

void srv__api_register(srv__response *resp, srv__request *req)
{
    char err[512];
    json_t *out = NULL, *body = parse_body(resp, req, JSON_OBJECT, 0);
    if (!body)
        return;
    int rc = srv__buffer_register(&out, req->srv->buffer, body, err, sizeof err);
    json_decref(body);
    if (rc)
        reply_buffer_error(resp, rc, err);
    else
        srv__reply_json(resp, 200, out);
}

void srv__api_register_env(srv__response *resp, srv__request *req)
{
    char err[512];
    json_t *out = NULL, *body = parse_body(resp, req, JSON_OBJECT, 0);
    if (!body)
        return;
    int rc = srv__buffer_register_env(&out, req->srv->buffer, body, err, sizeof err);
    json_decref(body);
    if (rc)
        reply_buffer_error(resp, rc, err);
    else
        srv__reply_json(resp, 200, out);
}

/* env_id from the query string or, for old clients, from a JSON body. */
static int env_id_arg(long long *id, srv__response *resp, const srv__request *req)
{
    const char *q = req->query ? req->query(req, "env_id") : NULL;
    if (q) {
        char *end;
        *id = strtoll(q, &end, 10);
        if (!q[0] || *end) {
            srv__reply_error(resp, 422, "invalid_field", "query parameter 'env_id' must be an integer, got '%.64s'", q);
            return -1;
        }
        return 0;
    }
    json_t *body = parse_body(resp, req, JSON_OBJECT, 1);
    if (!body)
        return -1;
    json_t *v = json_object_get(body, "env_id");
    int rc = 0;
    if (!v) {
        srv__reply_error(resp, 400, "bad_request", "missing 'env_id' (query parameter or JSON body)");
        rc = -1;
    } else if (!json_is_integer(v)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'env_id' must be an integer, got %s", srv__json_kind(v));
        rc = -1;
    } else {
        *id = json_integer_value(v);
    }
    json_decref(body);
    return rc;
}

void srv__api_disconnect_env(srv__response *resp, srv__request *req)
{
    char err[512];
    long long id;
    if (env_id_arg(&id, resp, req) != 0)
        return;
    int rc = srv__buffer_disconnect_env(req->srv->buffer, id, err, sizeof err);
    if (rc)
        reply_buffer_error(resp, rc, err);
    else
        srv__reply_json(resp, 200, json_pack("{s:s}", "status", "success"));
}

static void push(srv__response *resp, srv__request *req, int list)
{
    char err[512];
    const char *text = NULL;
    size_t text_len = 0;
    char *inflated = NULL;
    json_t *body = parse_body_text(resp, req, list ? JSON_ARRAY : JSON_OBJECT, 0, &text, &text_len, &inflated);
    if (!body)
        return;
    json_t *groups = body;
    if (!list) {
        groups = json_array();
        if (!groups || json_array_append(groups, body) != 0) {
            json_decref(groups);
            json_decref(body);
            free(inflated);
            srv__reply_error(resp, 500, "internal", "out of memory");
            return;
        }
        json_decref(body);
    }
    size_t accepted = 0, n = json_array_size(groups);
    long long buffered = -1;
    /* The groups' own text goes to the journal as it came. */
    const char **starts = malloc((n ? n : 1) * sizeof *starts);
    size_t *lens = malloc((n ? n : 1) * sizeof *lens);
    int have_raw = starts && lens;
    if (have_raw && list)
        have_raw = split_array(starts, lens, n, text, text_len) == 0;
    else if (have_raw) {
        starts[0] = text;
        lens[0] = text_len;
    }
    int rc = srv__buffer_push(&accepted, list ? NULL : &buffered, req->srv->buffer, groups, have_raw ? starts : NULL,
                              have_raw ? lens : NULL, err, sizeof err);
    free(starts);
    free(lens);
    free(inflated);
    json_decref(groups);
    if (rc)
        reply_buffer_error(resp, rc, err);
    else if (list)
        srv__reply_json(resp, 200, json_pack("{s:s, s:I, s:I}", "status", "received", "groups_processed",
                                             (json_int_t)n, "groups_accepted", (json_int_t)accepted));
    else if (buffered >= 0) /* Atropos: a mixed-size group waiting for its partners */
        srv__reply_json(resp, 200, json_pack("{s:s, s:I}", "status", "buffered", "buffer_size", (json_int_t)buffered));
    else
        srv__reply_json(resp, 200, json_pack("{s:s, s:I}", "status", "received", "groups_accepted",
                                             (json_int_t)accepted));
}

void srv__api_scored_data(srv__response *resp, srv__request *req)
{
    push(resp, req, 0);
}

void srv__api_scored_data_list(srv__response *resp, srv__request *req)
{
    push(resp, req, 1);
}

void srv__api_batch(srv__response *resp, srv__request *req)
{
    char err[512];
    json_t *batch = NULL;
    int rc = srv__buffer_batch(&batch, req->srv->buffer, err, sizeof err);
    if (rc)
        reply_buffer_error(resp, rc, err);
    else
        srv__reply_json(resp, 200, json_pack("{s:o?}", "batch", batch));
}

void srv__api_status(srv__response *resp, srv__request *req)
{
    srv__reply_json(resp, 200, srv__buffer_status(req->srv->buffer));
}

void srv__api_status_env(srv__response *resp, srv__request *req)
{
    char err[512];
    long long id;
    json_t *out = NULL;
    if (env_id_arg(&id, resp, req) != 0)
        return;
    int rc = srv__buffer_status_env(&out, req->srv->buffer, id, err, sizeof err);
    if (rc)
        reply_buffer_error(resp, rc, err);
    else
        srv__reply_json(resp, 200, out);
}

void srv__api_info(srv__response *resp, srv__request *req)
{
    srv__reply_json(resp, 200, srv__buffer_info(req->srv->buffer));
}

void srv__api_wandb_info(srv__response *resp, srv__request *req)
{
    srv__reply_json(resp, 200, srv__buffer_wandb_info(req->srv->buffer));
}

void srv__api_latest_example(srv__response *resp, srv__request *req)
{
    srv__reply_json(resp, 200, srv__buffer_latest(req->srv->buffer));
}

void srv__api_reset_data(srv__response *resp, srv__request *req)
{
    static const char ok[] = "Reset successful";
    char err[512];
    int rc = srv__buffer_reset(req->srv->buffer, err, sizeof err);
    if (rc) {
        reply_buffer_error(resp, rc, err);
        return;
    }
    /* Atropos answers a plain-text body here. */
    resp->status = 200;
    resp->body = (char *)ok;
    resp->body_len = sizeof ok - 1;
    resp->body_static = 1;
    resp->content_type = "text/plain; charset=utf-8";
}

void srv__api_policy(srv__response *resp, srv__request *req)
{
    char err[512];
    json_t *out = NULL, *body = parse_body(resp, req, JSON_OBJECT, 0);
    if (!body)
        return;
    json_t *v = json_object_get(body, "version");
    int rc = 0;
    if (!v) {
        srv__reply_error(resp, 400, "bad_request", "missing field 'version'");
    } else if (!json_is_integer(v) || json_integer_value(v) < 0) {
        srv__reply_error(resp, 422, "invalid_field", "field 'version' must be a non-negative integer, got %s",
                         json_is_integer(v) ? "a negative one" : srv__json_kind(v));
    } else if ((rc = srv__buffer_set_policy(&out, req->srv->buffer, json_integer_value(v), err, sizeof err))) {
        reply_buffer_error(resp, rc, err);
    } else {
        srv__reply_json(resp, 200, out);
    }
    json_decref(body);
}
