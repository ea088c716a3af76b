/*
 * GET /v1/sandbox and POST /v1/sandbox/run: what the sandbox can do here, and
 * running one program in it (docs/api.md, "Sandbox"; the sandbox itself is
 * sandbox/sandbox.h).
 *
 * POST /v1/sandbox/run is a SRV__ROUTE_POOL route: this handler runs on a
 * worker of the pool (workers.c), never on an HTTP thread, so it may block in
 * sbx_run for as long as the run's wall-clock limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/sandbox.h"
#include "server/server_int.h"

/* Bytes of `code` a request may carry (the body cap applies too). */
#define MAX_CODE_BYTES (4u << 20)
/* Smallest memory limit the sandbox accepts; smaller requests are raised. */
#define MIN_MEMORY_MB 16

/* The API's language names and the sandbox's: "python" is the API's name for
 * the sandbox's "python3" (which is accepted too). */
static const struct {
    const char *api;
    const char *sbx;
} languages[] = {
    { "python", "python3" }, { "python3", "python3" }, { "c", "c" },
    { "cpp", "cpp" },        { "bash", "bash" },       { "lua", "lua" },
};

static const char *sbx_name_of(const char *api)
{
    for (size_t i = 0; i < sizeof languages / sizeof languages[0]; i++)
        if (strcmp(languages[i].api, api) == 0)
            return languages[i].sbx;
    return NULL;
}

/* ---- output as JSON ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one
 * (overlong forms, surrogates and code points over U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* A JSON string of the bytes, each byte that is not part of valid UTF-8
 * replaced by U+FFFD (programs may print anything; JSON holds only text).
 * *replaced is set when something was. Returns a new reference or NULL when
 * out of memory. */
static json_t *text_of(const char *data, size_t len, int *replaced)
{
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(s + i, len - i);
        if (!k)
            break;
        i += k;
    }
    if (i == len)
        return json_stringn(data ? data : "", len);
    *replaced = 1;
    /* Each invalid byte becomes 3 bytes at most. */
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        if (k) {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *limits_json(const sbx_limits *l)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "cpu_ms", (json_int_t)l->cpu_ms, "wall_ms",
                     (json_int_t)l->wall_ms, "memory_mb", (json_int_t)l->memory_mb, "output_bytes",
                     (json_int_t)l->output_bytes);
}

/* ---- GET /v1/sandbox ------------------------------------------------------------- */

void srv__api_sandbox_info(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    const srv_sandbox_options *sb = &srv->sandbox;
    json_t *layers = json_array(), *missing = json_array(), *langs = json_array();
    json_t *body = NULL;
    if (!layers || !missing || !langs)
        goto done;
    for (unsigned bit = 1; bit & SBX_LAYERS_ALL; bit <<= 1)
        json_array_append_new((sb->probe.layers & bit) ? layers : missing,
                              json_string(sbx_layer_name(bit)));
    for (size_t i = 0; i < sizeof languages / sizeof languages[0]; i++) {
        if (strcmp(languages[i].api, "python3") == 0)
            continue; /* an alias, not a language of its own */
        const sbx_language *l = sbx_language_find(languages[i].sbx);
        json_array_append_new(langs, json_pack("{s:s, s:b}", "name", languages[i].api, "available",
                                               sb->ready && l && l->available));
    }
    size_t queued = 0;
    unsigned running = 0, workers = 0;
    srv__pool_stats(&queued, &running, &workers, srv->pool);
    sbx_limits defaults = SBX_LIMITS_INIT;
    body = json_pack("{s:s, s:b, s:s, s:o, s:o, s:i, s:b, s:s, s:i, s:{s:I, s:I, s:I}, s:{s:o, s:o}, s:o}",
                     "tier", sbx_tier_name(sb->ready ? sbx_current_tier() : SBX_TIER_NONE),
                     "ready", sb->ready,
                     "mode", sb->strict ? "strict" : "best-effort",
                     "layers", layers, "missing_layers", missing,
                     "cgroup_version", sb->probe.cgroup_version,
                     "as_root", sb->probe.as_root,
                     "message", sb->ready ? sb->probe.message : sb->init_error,
                     "workers", (int)workers,
                     "queue", "max", (json_int_t)sb->queue, "waiting", (json_int_t)queued,
                     "running", (json_int_t)running,
                     "limits", "max", limits_json(&sb->max), "default", limits_json(&defaults),
                     "languages", langs);
    layers = missing = langs = NULL; /* stolen by json_pack, even on failure */
done:
    json_decref(layers);
    json_decref(missing);
    json_decref(langs);
    if (!body)
        srv__reply_error(resp, 500, "internal", "out of memory");
    else
        srv__reply_json(resp, 200, body);
}

/* ---- POST /v1/sandbox/run ---------------------------------------------------------- */

/* Reads limits.<name> into *dst, clamped to [min, max]. Absent keeps *dst
 * (the default, also clamped). Returns 0 or -1 with resp filled. */
static int read_limit(uint32_t *dst, srv__response *resp, const json_t *limits, const char *name,
                      uint32_t min, uint32_t max)
{
    const json_t *v = json_object_get(limits, name);
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
            srv__reply_error(resp, 422, "invalid_field",
                             "field 'limits.%s' must be a positive integer, got %s", name,
                             json_is_integer(v) ? "a number below 1" : srv__json_kind(v));
            return -1;
        }
        json_int_t n = json_integer_value(v);
        *dst = n > (json_int_t)max ? max : (uint32_t)n;
    }
    if (*dst > max)
        *dst = max;
    if (*dst < min)
        *dst = min;
    return 0;
}

/* A file name the sandbox accepts: plain, short, not hidden behind a path. */
static int file_name_ok(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len < 128 && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/*
 * Validates the body into *req (pointers borrowed from `body`) and *files
 * (a new array the caller frees). Returns 0 or -1 with resp filled.
 */
static int parse_run(sbx_request *req, sbx_file **files, srv__response *resp, const srv_server *srv,
                     const json_t *body)
{
    static const char *const known[] = { "language", "code", "stdin", "files", "limits", "warm" };
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= strcmp(key, known[i]) == 0;
        if (!ok) {
            srv__reply_error(resp, 422, "invalid_field",
                             "unknown field '%.64s' (known: language, code, stdin, files, limits, warm)", key);
            return -1;
        }
    }

    v = json_object_get(body, "language");
    if (!json_is_string(v)) {
        srv__reply_error(resp, 422, "invalid_field",
                         "field 'language' must be one of python, c, cpp, bash, lua; got %s",
                         v ? srv__json_kind(v) : "nothing");
        return -1;
    }
    const char *name = sbx_name_of(json_string_value(v));
    if (!name) {
        srv__reply_error(resp, 422, "invalid_field",
                         "field 'language': unknown language '%.64s' (known: python, c, cpp, bash, lua)",
                         json_string_value(v));
        return -1;
    }
    const sbx_language *lang = sbx_language_find(name);
    if (!lang || !lang->available) {
        srv__reply_error(resp, 422, "invalid_field",
                         "field 'language': '%s' is not available on this server (its interpreter or "
                         "compiler is not installed)", json_string_value(v));
        return -1;
    }
    req->language = name;

    v = json_object_get(body, "code");
    if (!json_is_string(v)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'code' must be a string, got %s",
                         v ? srv__json_kind(v) : "nothing");
        return -1;
    }
    if (json_string_length(v) > MAX_CODE_BYTES) {
        srv__reply_error(resp, 422, "invalid_field", "field 'code' is %zu bytes, over the limit of %u",
                         json_string_length(v), MAX_CODE_BYTES);
        return -1;
    }
    req->code = json_string_value(v);
    req->code_len = json_string_length(v);

    /* Warm by default, as for environments: the same isolation and result. */
    v = json_object_get(body, "warm");
    if (v && !json_is_boolean(v)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'warm' must be a boolean, got %s",
                         srv__json_kind(v));
        return -1;
    }
    req->warm = !v || json_is_true(v);

    v = json_object_get(body, "stdin");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            srv__reply_error(resp, 422, "invalid_field", "field 'stdin' must be a string, got %s",
                             srv__json_kind(v));
            return -1;
        }
        req->stdin_data = json_string_value(v);
        req->stdin_len = json_string_length(v);
    }

    v = json_object_get(body, "files");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v)) {
            srv__reply_error(resp, 422, "invalid_field",
                             "field 'files' must be an object of file name to content, got %s",
                             srv__json_kind(v));
            return -1;
        }
        if (json_object_size(v) > SBX_MAX_FILES) {
            srv__reply_error(resp, 422, "invalid_field", "field 'files' has %zu files, over the limit of %d",
                             json_object_size(v), SBX_MAX_FILES);
            return -1;
        }
        *files = calloc(json_object_size(v) + 1, sizeof **files);
        if (!*files) {
            srv__reply_error(resp, 500, "internal", "out of memory");
            return -1;
        }
        const json_t *content;
        json_object_foreach((json_t *)v, key, content) {
            if (!file_name_ok(key) || strcmp(key, lang->main_file) == 0) {
                srv__reply_error(resp, 422, "invalid_field",
                                 "field 'files': '%.128s' is not a usable file name (a plain name under "
                                 "128 bytes, not '.', '..' or '%s')", key, lang->main_file);
                return -1;
            }
            if (!json_is_string(content)) {
                srv__reply_error(resp, 422, "invalid_field", "field 'files.%.128s' must be a string, got %s",
                                 key, srv__json_kind(content));
                return -1;
            }
            sbx_file *f = &(*files)[req->nfiles++];
            f->name = key;
            f->content = json_string_value(content);
            f->len = json_string_length(content);
        }
        req->files = *files;
    }

    v = json_object_get(body, "limits");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v)) {
            srv__reply_error(resp, 422, "invalid_field", "field 'limits' must be an object, got %s",
                             srv__json_kind(v));
            return -1;
        }
    }
    const json_t *limits = json_is_object(v) ? v : NULL;
    if (limits) {
        json_object_foreach((json_t *)limits, key, v) {
            if (strcmp(key, "cpu_ms") != 0 && strcmp(key, "wall_ms") != 0 &&
                strcmp(key, "memory_mb") != 0 && strcmp(key, "output_bytes") != 0) {
                srv__reply_error(resp, 422, "invalid_field",
                                 "unknown field 'limits.%.64s' (known: cpu_ms, wall_ms, memory_mb, "
                                 "output_bytes)", key);
                return -1;
            }
        }
    }
    const sbx_limits *max = &srv->sandbox.max;
    if (read_limit(&req->limits.cpu_ms, resp, limits, "cpu_ms", 1, max->cpu_ms) != 0 ||
        read_limit(&req->limits.wall_ms, resp, limits, "wall_ms", 1, max->wall_ms) != 0 ||
        read_limit(&req->limits.memory_mb, resp, limits, "memory_mb", MIN_MEMORY_MB, max->memory_mb) != 0 ||
        read_limit(&req->limits.output_bytes, resp, limits, "output_bytes", 1, max->output_bytes) != 0)
        return -1;
    return 0;
}

/* The result as the API answers it; NULL when out of memory. */
static json_t *result_json(const sbx_result *r, const sbx_request *req, const char *language)
{
    int replaced = 0;
    json_t *out = text_of(r->out.data, r->out.len, &replaced);
    json_t *err = text_of(r->err.data, r->err.len, &replaced);
    json_t *comp = text_of(r->compile.data, r->compile.len, &replaced);
    json_t *lim = limits_json(&req->limits);
    if (!out || !err || !comp || !lim) {
        json_decref(out);
        json_decref(err);
        json_decref(comp);
        json_decref(lim);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:i, s:i, s:o, s:o, s:b, s:b, s:I, s:I, s:o, s:b, s:i, s:I, s:I, s:I,"
                     " s:I, s:b, s:s, s:b, s:s, s:o}",
                     "status", sbx_status_name(r->status),
                     "language", language,
                     "exit_code", r->exit_code,
                     "signal", r->signal,
                     "stdout", out, "stderr", err,
                     "stdout_truncated", r->out.truncated,
                     "stderr_truncated", r->err.truncated,
                     "stdout_bytes", (json_int_t)r->out.total,
                     "stderr_bytes", (json_int_t)r->err.total,
                     "compile_output", comp,
                     "compile_output_truncated", r->compile.truncated,
                     "compile_exit_code", r->compile_exit_code,
                     "compile_ms", (json_int_t)r->compile_ms,
                     "cpu_ms", (json_int_t)r->cpu_ms,
                     "wall_ms", (json_int_t)r->wall_ms,
                     "memory_kb", (json_int_t)r->memory_kb,
                     "output_replaced", replaced,
                     "sandbox", r->tier ? r->tier : sbx_tier_name(sbx_current_tier()),
                     "warm", r->warm,
                     "message", r->message,
                     "limits", lim);
}

void srv__api_sandbox_run(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    sbx_file *files = NULL;
    sbx_result res;
    memset(&res, 0, sizeof res);
    json_t *body = srv__parse_object(resp, req, 0);
    if (!body)
        return;
    if (!srv->sandbox.ready) {
        srv__reply_error(resp, 503, "sandbox_unavailable", "the sandbox is not available on this server: %s",
                         srv->sandbox.init_error[0] ? srv->sandbox.init_error : "not initialised");
        goto done;
    }
    sbx_request run = SBX_REQUEST_INIT;
    if (parse_run(&run, &files, resp, srv, body) != 0)
        goto done;
    char err[256] = "";
    int rc = sbx_run(&res, &run, err, sizeof err);
    if (rc == SBX_EINVALID) {
        srv__reply_error(resp, 422, "invalid_field", "%s", err);
        goto done;
    }
    if (rc != 0 || res.status == SBX_INTERNAL_ERROR) {
        /* Never a 200 that a trainer could score as a wrong answer. */
        srv__reply_error(resp, 500, "sandbox_error", "the sandbox failed: %s",
                         res.message[0] ? res.message : err[0] ? err : "unknown error");
        goto done;
    }
    json_t *out = result_json(&res, &run, json_string_value(json_object_get(body, "language")));
    if (!out)
        srv__reply_error(resp, 500, "internal", "out of memory");
    else
        srv__reply_json(resp, 200, out);
done:
    sbx_result_free(&res);
    free(files);
    json_decref(body);
}
