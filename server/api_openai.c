/*
 * OpenAI-compatible routes over the built-in sampler (--model), so that
 * clients written for OpenAI, vLLM or SGLang can use envsrv's model:
 *
 *   POST /v1/completions       prompt (text or token ids) -> text_completion
 *   POST /v1/chat/completions  messages via the chat template -> chat.completion
 *   GET  /v1/models            the served model
 *
 * Supported request fields are listed in docs/api.md; a field envsrv cannot
 * honour (stream, echo, best_of, logit_bias, ...) is a 400, never silently
 * ignored. Errors use OpenAI's shape {"error": {"message", "type", "param",
 * "code"}}. Logprobs, top ones included, are those of the model's unmodified
 * temperature-1 distribution (as vLLM reports them). Sampling is
 * deterministic: a request without a seed uses seed 0.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "server/server_int.h"

/* The request fields envsrv reads ("user" is accepted and unused: it is a
 * label, it never changes the output; penalties are accepted only as 0). */
static const char *const accepted_fields[] = { "model", "user", "frequency_penalty", "presence_penalty",
                                              "max_completion_tokens", "top_logprobs", "logprobs", "n",
                                              "max_tokens", "temperature", "top_p", "top_k", "min_p",
                                              "seed", "stop", "prompt", "messages", "echo", "stream",
                                              "return_tokens_as_token_ids" };

static void openai_error(srv__response *resp, int status, const char *type, const char *param,
                         const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void openai_error(srv__response *resp, int status, const char *type, const char *param,
                         const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages may echo client bytes: keep the answer valid JSON. */
    json_t *m = json_string(msg);
    if (!m)
        m = json_string("invalid request (the message held bytes that are not UTF-8)");
    srv__reply_json(resp, status, json_pack("{s:{s:o, s:s, s:s?, s:s?}}", "error", "message", m, "type", type,
                                            "param", param, "code", code));
}

#define BAD(resp, param, ...) openai_error(resp, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

/* The common checks: a model, a JSON object body, the model name, no
 * unsupported field. Returns the body (new reference) or NULL with resp. */
static json_t *openai_body(srv__response *resp, srv__request *req, const char *required)
{
    srv_server *srv = req->srv;
    if (!srv->sampler) {
        openai_error(resp, 409, "invalid_request_error", NULL, "no_model",
                     "no model loaded: start envsrv with --model PATH");
        return NULL;
    }
    json_error_t je;
    memset(&je, 0, sizeof je);
    json_t *body = req->body_len ? srv__json_parse(req->body, req->body_len, 0, &je) : NULL;
    if (!body && req->body_len) {
        BAD(resp, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(body)) {
        BAD(resp, NULL, "the body must be a JSON object");
        json_decref(body);
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        int known = 0;
        for (size_t i = 0; i < sizeof accepted_fields / sizeof accepted_fields[0]; i++)
            known |= strcmp(key, accepted_fields[i]) == 0;
        if (!known) {
            BAD(resp, key, "field '%.64s' is not supported by envsrv", key);
            goto fail;
        }
    }
    const json_t *model = json_object_get(body, "model");
    if (model && !json_is_null(model) &&
        (!json_is_string(model) || strcmp(json_string_value(model), srv->model_name) != 0)) {
        openai_error(resp, 404, "invalid_request_error", "model", "model_not_found",
                     "the model '%.128s' does not exist; this server serves '%s'",
                     json_is_string(model) ? json_string_value(model) : "?", srv->model_name);
        goto fail;
    }
    const char *penalties[] = { "frequency_penalty", "presence_penalty" };
    for (size_t i = 0; i < 2; i++) {
        const json_t *pen = json_object_get(body, penalties[i]);
        if (pen && !json_is_null(pen) && (!json_is_number(pen) || json_number_value(pen) != 0)) {
            BAD(resp, penalties[i], "field '%s' is not supported (only 0)", penalties[i]);
            goto fail;
        }
    }
    const json_t *stream = json_object_get(body, "stream");
    if (stream && !json_is_false(stream) && !json_is_null(stream)) {
        BAD(resp, "stream", "streaming is not supported; send stream: false");
        goto fail;
    }
    if (!json_object_get(body, required)) {
        BAD(resp, required, "missing field '%s'", required);
        goto fail;
    }
    return body;
fail:
    json_decref(body);
    return NULL;
}

/* Parses the sampling fields; OpenAI's defaults: temperature 1, n 1. */
static int openai_params(srv__gen_params *p, srv__response *resp, const json_t *body, const char *max_key,
                         int default_max, int seq_len)
{
    p->opts = (inf_gen_options)INF_GEN_OPTIONS_INIT;
    p->opts.max_tokens = default_max;
    const char *param = NULL;
    char msg[256];
    if (srv__parse_gen_params(p, body, "n", max_key, seq_len, &param, msg, sizeof msg) != 0) {
        BAD(resp, param, "%s", msg);
        return -1;
    }
    return 0;
}

static const char *openai_finish(inf_finish f)
{
    return f == INF_FINISH_LENGTH ? "length" : "stop";
}

static json_t *usage_json(size_t prompt, const inf_result *res)
{
    size_t completion = 0;
    for (size_t i = 0; i < res->n_samples; i++)
        completion += res->samples[i].n_tokens;
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)prompt, "completion_tokens",
                     (json_int_t)completion, "total_tokens", (json_int_t)(prompt + completion));
}

/* `prefix` + 24 random hex digits ("cmpl-...", "chatcmpl-..."). */
static void new_id(char *out, size_t outlen, const char *prefix)
{
    unsigned char r[12] = { 0 };
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* No entropy: a unique-enough id from the clock. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(r, &ts, sizeof r < sizeof ts ? sizeof r : sizeof ts);
    }
    int n = snprintf(out, outlen, "%s", prefix);
    for (size_t i = 0; i < sizeof r && (size_t)n + 2 < outlen; i++)
        n += snprintf(out + n, outlen - (size_t)n, "%02x", r[i]);
}

/* Replies with an OpenAI answer object of `object` type holding `choices`
 * (borrowed; one per sample of res, else out of memory) and the usage. */
static void reply_choices(srv__response *resp, const srv_server *srv, const char *id_prefix,
                          const char *object, json_t *choices, size_t n_prompt, const inf_result *res)
{
    char id[64];
    new_id(id, sizeof id, id_prefix);
    json_t *out = choices && json_array_size(choices) == res->n_samples
                      ? json_pack("{s:s, s:s, s:I, s:s, s:O, s:o}", "id", id, "object", object,
                                  "created", (json_int_t)time(NULL), "model", srv->model_name, "choices",
                                  choices, "usage", usage_json(n_prompt, res))
                      : NULL;
    if (!out)
        openai_error(resp, 500, "server_error", NULL, NULL, "out of memory");
    else
        srv__reply_json(resp, 200, out);
}

/* A token's piece as a JSON string (pieces may split a UTF-8 character:
 * those bytes become U+FFFD, as OpenAI-compatible servers do), or
 * "token_id:N" when ids were asked for (vLLM's return_tokens_as_token_ids). */
static json_t *piece_json(const inf_tokenizer *tok, int prev, int id, int as_ids, size_t *len)
{
    size_t n = 0;
    const char *p = inf_tokenizer_piece(tok, prev, id, &n);
    *len = p ? n : 0;
    if (as_ids) {
        char buf[32];
        snprintf(buf, sizeof buf, "token_id:%d", id);
        return json_string(buf);
    }
    json_t *s = p ? json_stringn(p, n) : NULL;
    if (s)
        return s;
    char *fixed = malloc(n * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; fixed && i < n; i++) {
        if ((unsigned char)p[i] < 0x80) {
            fixed[o++] = p[i];
        } else {
            memcpy(fixed + o, "\xef\xbf\xbd", 3);
            o += 3;
        }
    }
    s = fixed ? json_stringn(fixed, o) : NULL;
    free(fixed);
    return s;
}

/* The completions logprobs object: tokens, token_logprobs, top_logprobs
 * (the sample's n_top most likely tokens, plus the chosen one when it is not
 * among them, as vLLM answers), text_offset (from the start of the prompt
 * text). */
static json_t *completion_logprobs(const inf_tokenizer *tok, const inf_sample *s, int last_prompt, size_t offset,
                                   int as_ids)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    int prev = last_prompt;
    for (size_t i = 0; i < s->n_tokens; i++) {
        size_t len = 0, alt_len;
        json_t *piece = piece_json(tok, prev, s->tokens[i], as_ids, &len);
        json_t *top = json_object();
        for (int r = 0; top && r < s->n_top; r++) {
            json_t *alt = piece_json(tok, prev, s->top_ids[i * (size_t)s->n_top + (size_t)r], as_ids, &alt_len);
            /* Tokens of the same text share a key: the likelier one stays. */
            if (alt && !json_object_get(top, json_string_value(alt)))
                json_object_set_new(top, json_string_value(alt),
                                    json_real(s->top_logprobs[i * (size_t)s->n_top + (size_t)r]));
            json_decref(alt);
        }
        if (piece && top && !json_object_get(top, json_string_value(piece)))
            json_object_set_new(top, json_string_value(piece), json_real(s->logprobs[i]));
        json_array_append_new(tokens, piece);
        json_array_append_new(lps, json_real(s->logprobs[i]));
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)offset));
        offset += len;
        prev = s->tokens[i];
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

/* The prompt of /v1/completions as ids: a string (encoded after BOS) or an
 * array of token ids. Returns 0 or -1 with resp filled. */
static int completion_prompt(int **ids, size_t *n, srv__response *resp, const inf_bundle *b, const json_t *prompt)
{
    inf_error ierr = { 0 };
    if (json_is_array(prompt) && json_array_size(prompt) == 1 && json_is_string(json_array_get(prompt, 0)))
        prompt = json_array_get(prompt, 0);     /* ["text"]: one prompt, as clients often send */
    if (json_is_string(prompt)) {
        if (inf_bundle_encode_text(ids, n, b, json_string_value(prompt), json_string_length(prompt), &ierr) != 0) {
            BAD(resp, "prompt", "cannot encode the prompt: %s", ierr.message);
            return -1;
        }
        return 0;
    }
    size_t k = json_array_size(prompt);
    int vocab = inf_model_config(inf_bundle_model(b))->vocab_size;
    if (!json_is_array(prompt) || k == 0) {
        BAD(resp, "prompt", "field 'prompt' must be a string or a non-empty array of token ids (one prompt)");
        return -1;
    }
    *ids = malloc(k * sizeof **ids);
    if (!*ids) {
        openai_error(resp, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < k; i++) {
        const json_t *t = json_array_get(prompt, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= vocab) {
            BAD(resp, "prompt", "prompt token %zu must be an integer id from 0 to %d", i, vocab - 1);
            free(*ids);
            *ids = NULL;
            return -1;
        }
        (*ids)[i] = (int)json_integer_value(t);
    }
    *n = k;
    return 0;
}

/* Runs the model on prompt ids; -1 with resp filled on failure. */
static int run_model(inf_result *res, srv__response *resp, srv_server *srv, const int *ids, size_t n,
                     const inf_gen_options *opts)
{
    int seq_len = inf_model_config(inf_bundle_model(srv__sampler_bundle(srv->sampler)))->seq_len;
    if (n == 0 || n + 1 > (size_t)seq_len) {
        BAD(resp, "prompt", "the prompt is %zu tokens; the model's context is %d (room for one new token "
                            "is needed)", n, seq_len);
        return -1;
    }
    inf_error ierr = { 0 };
    if (srv__sampler_generate_ids(res, srv->sampler, ids, n, opts, &ierr) != 0) {
        int oom = ierr.code == INF_ENOMEM;
        openai_error(resp, oom ? 500 : 400, oom ? "server_error" : "invalid_request_error", NULL, NULL,
                     "generation failed: %s", ierr.message);
        return -1;
    }
    return 0;
}

void srv__api_completions(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    json_t *body = openai_body(resp, req, "prompt"), *choices = NULL;
    if (!body)
        return;
    const inf_bundle *b = srv__sampler_bundle(srv->sampler);
    const inf_tokenizer *tok = inf_bundle_tokenizer(b);
    int seq_len = inf_model_config(inf_bundle_model(b))->seq_len;
    int *ids = NULL;
    size_t n_ids = 0;
    inf_result res = { 0 };
    char *prompt_text = NULL;
    size_t prompt_len = 0;
    srv__gen_params p;
    const json_t *lp = json_object_get(body, "logprobs"), *echo = json_object_get(body, "echo");
    const json_t *as_ids = json_object_get(body, "return_tokens_as_token_ids");
    if (openai_params(&p, resp, body, "max_tokens", 16, seq_len) != 0)
        goto done;
    if (lp && !json_is_null(lp) && (!json_is_integer(lp) || json_integer_value(lp) < 0 || json_integer_value(lp) > 20)) {
        BAD(resp, "logprobs", "field 'logprobs' must be an integer from 0 to 20 or null");
        goto done;
    }
    if (echo && !json_is_false(echo) && !json_is_null(echo)) {
        BAD(resp, "echo", "echo is not supported; send echo: false");
        goto done;
    }
    if (as_ids && !json_is_boolean(as_ids)) {
        BAD(resp, "return_tokens_as_token_ids", "field 'return_tokens_as_token_ids' must be a boolean");
        goto done;
    }
    if (json_is_integer(lp))
        p.opts.top_logprobs = (int)json_integer_value(lp);
    inf_error ierr = { 0 };
    if (completion_prompt(&ids, &n_ids, resp, b, json_object_get(body, "prompt")) != 0 ||
        run_model(&res, resp, srv, ids, n_ids, &p.opts) != 0)
        goto done;
    if (inf_tokenizer_decode(&prompt_text, &prompt_len, tok, ids, n_ids, &ierr) != 0) {
        openai_error(resp, 500, "server_error", NULL, NULL, "%s", ierr.message);
        goto done;
    }
    choices = json_array();
    for (size_t i = 0; choices && i < res.n_samples; i++) {
        const inf_sample *s = &res.samples[i];
        json_t *logprobs = lp && json_is_integer(lp)
                               ? completion_logprobs(tok, s, ids[n_ids - 1], prompt_len, json_is_true(as_ids))
                               : json_null();
        json_array_append_new(choices, json_pack("{s:I, s:s%, s:o*, s:s}", "index", (json_int_t)i, "text",
                                                 s->text ? s->text : "", s->text_len, "logprobs", logprobs,
                                                 "finish_reason", openai_finish(s->finish)));
    }
    reply_choices(resp, srv, "cmpl-", "text_completion", choices, n_ids, &res);
done:
    json_decref(choices);
    free(prompt_text);
    free(ids);
    inf_result_free(&res);
    json_decref(body);
}

/* Checks a chat request's messages: an array of {role, content} with a
 * known role and string content. Returns 0 or -1 with resp filled. */
static int check_messages(srv__response *resp, const json_t *msgs)
{
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        BAD(resp, "messages", "field 'messages' must be a non-empty array of {role, content}");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (!json_is_object(m) || !role ||
            (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
             strcmp(role, "developer"))) {
            BAD(resp, "messages", "messages[%zu] must have a role of system, developer, user or assistant", i);
            return -1;
        }
        if (!json_is_string(content) || strlen(json_string_value(content)) != json_string_length(content)) {
            BAD(resp, "messages", "messages[%zu].content must be a string without NUL bytes (content parts "
                                  "are not supported)", i);
            return -1;
        }
    }
    return 0;
}

/* One token of chat logprobs: {token, logprob, bytes}. */
static json_t *chat_token(const inf_tokenizer *tok, int prev, int id, float logprob)
{
    size_t len = 0;
    const char *p = inf_tokenizer_piece(tok, prev, id, &len);
    json_t *token = piece_json(tok, prev, id, 0, &len);
    json_t *bytes = json_array();
    for (size_t k = 0; p && bytes && k < len; k++)
        json_array_append_new(bytes, json_integer((unsigned char)p[k]));
    return json_pack("{s:o, s:f, s:o}", "token", token, "logprob", (double)logprob, "bytes", bytes);
}

/* The chat logprobs object: {"content": [{token, logprob, bytes,
 * top_logprobs: the sample's n_top most likely tokens}]}. */
static json_t *chat_logprobs(const inf_tokenizer *tok, const inf_sample *s, int last_prompt)
{
    json_t *content = json_array();
    int prev = last_prompt;
    for (size_t i = 0; content && i < s->n_tokens; i++) {
        json_t *entry = chat_token(tok, prev, s->tokens[i], s->logprobs[i]);
        json_t *tops = json_array();
        for (int r = 0; tops && r < s->n_top; r++) {
            size_t at = i * (size_t)s->n_top + (size_t)r;
            json_array_append_new(tops, chat_token(tok, prev, s->top_ids[at], s->top_logprobs[at]));
        }
        if (entry)
            json_object_set_new(entry, "top_logprobs", tops);
        else
            json_decref(tops);
        json_array_append_new(content, entry);
        prev = s->tokens[i];
    }
    return json_pack("{s:o}", "content", content);
}

void srv__api_chat_completions(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    json_t *body = openai_body(resp, req, "messages"), *choices = NULL;
    if (!body)
        return;
    const inf_bundle *b = srv__sampler_bundle(srv->sampler);
    const inf_tokenizer *tok = inf_bundle_tokenizer(b);
    int seq_len = inf_model_config(inf_bundle_model(b))->seq_len;
    const json_t *msgs = json_object_get(body, "messages"), *lp = json_object_get(body, "logprobs");
    const json_t *top = json_object_get(body, "top_logprobs");
    const char *max_key = json_object_get(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    inf_chat_message *cm = NULL;
    size_t n_cm = 0, n_ids = 0;
    int *ids = NULL;
    inf_result res = { 0 };
    srv__gen_params p;
    inf_error ierr = { 0 };
    if (check_messages(resp, msgs) != 0 || openai_params(&p, resp, body, max_key, seq_len, seq_len) != 0)
        goto done;
    if (lp && !json_is_boolean(lp) && !json_is_null(lp)) {
        BAD(resp, "logprobs", "field 'logprobs' must be a boolean");
        goto done;
    }
    if (top && !json_is_null(top) &&
        (!json_is_integer(top) || json_integer_value(top) < 0 || json_integer_value(top) > 20)) {
        BAD(resp, "top_logprobs", "field 'top_logprobs' must be an integer from 0 to 20");
        goto done;
    }
    if (json_is_integer(top) && !json_is_true(lp)) {
        BAD(resp, "top_logprobs", "field 'top_logprobs' needs 'logprobs': true");
        goto done;
    }
    if (json_is_integer(top))
        p.opts.top_logprobs = (int)json_integer_value(top);
    if (srv__messages_from_json(&cm, &n_cm, msgs) != 0) {
        openai_error(resp, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    if (inf_bundle_encode_messages(&ids, &n_ids, b, cm, n_cm, &ierr) != 0) {
        BAD(resp, "messages", "cannot encode the messages: %s", ierr.message);
        goto done;
    }
    if (run_model(&res, resp, srv, ids, n_ids, &p.opts) != 0)
        goto done;
    choices = json_array();
    for (size_t i = 0; choices && i < res.n_samples; i++) {
        const inf_sample *s = &res.samples[i];
        json_t *logprobs = json_is_true(lp) ? chat_logprobs(tok, s, ids[n_ids - 1]) : json_null();
        json_array_append_new(choices, json_pack("{s:I, s:{s:s, s:s%}, s:o*, s:s}", "index", (json_int_t)i,
                                                 "message", "role", "assistant", "content",
                                                 s->text ? s->text : "", s->text_len, "logprobs", logprobs,
                                                 "finish_reason", openai_finish(s->finish)));
    }
    reply_choices(resp, srv, "chatcmpl-", "chat.completion", choices, n_ids, &res);
done:
    json_decref(choices);
    free(cm);
    free(ids);
    inf_result_free(&res);
    json_decref(body);
}

void srv__api_models(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    json_t *data = json_array();
    if (data && srv->sampler) {
        const inf_bundle *b = srv__sampler_bundle(srv->sampler);
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:i, s:s, s:s}", "id", srv->model_name,
                                              "object", "model", "created", (json_int_t)srv->started, "owned_by",
                                              "envsrv", "max_model_len",
                                              inf_model_config(inf_bundle_model(b))->seq_len, "sha256",
                                              inf_bundle_sha256(b), "chat_template",
                                              inf_bundle_template_name(b)));
    }
    json_t *out = data ? json_pack("{s:s, s:o}", "object", "list", "data", data) : NULL;
    if (!out)
        openai_error(resp, 500, "server_error", NULL, NULL, "out of memory");
    else
        srv__reply_json(resp, 200, out);
}
