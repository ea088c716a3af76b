/*
 * The OpenAI client backend: `envsrv eval|rollout --backend openai` sends
 * each item's rendered prompt to an external OpenAI-compatible server's
 * POST /v1/completions (vLLM, SGLang, another envsrv) with n = the group
 * size and logprobs = 1, and reads back texts, finish reasons and per-token
 * logprobs. libcurl does the HTTP.
 *
 * Token ids: the completions API returns text. When a local copy of the
 * model's tokenizer is given (--model with the openai backend), the client
 * asks for "return_tokens_as_token_ids" (a vLLM extension envsrv serves too)
 * and encodes the prompt itself, so groups carry tokens and masks; otherwise
 * a group holds the texts and the logprobs as given and says
 * "tokens_unknown": true.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "server/server_int.h"

#define REMOTE_MAX_ANSWER (64u << 20)   /* bytes of one answer before it is refused */
#define RETRY_FIRST_MS    500           /* wait before the first retry; doubles each time */
#define RETRY_MAX_MS      8000          /* longest wait we choose ourselves */
#define RETRY_AFTER_MAX_S 60            /* longest Retry-After we honour */

struct srv__remote {
    char *url;                  /* owned: BASE/v1/completions */
    char *auth;                 /* owned: "Authorization: Bearer KEY", or NULL */
    char *model_name;           /* owned, or NULL (the field is then left out) */
    long timeout_ms;
    int retries;                /* more tries after a transient failure */
    const inf_bundle *bundle;   /* borrowed, may be NULL: tokenizer + template */
    inf_chat_template tpl;      /* without a bundle: --chat-template, if any */
    bool has_template;
    inf_render_fn render;       /* without a bundle: a Lua template, if any */
    void *render_payload;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int srv__remote_new(srv__remote **out, const srv__remote_options *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->base_url || (strncmp(o->base_url, "http://", 7) && strncmp(o->base_url, "https://", 8))) {
        snprintf(err, errlen, "--base-url must be an http:// or https:// URL, got '%.200s'",
                 o->base_url ? o->base_url : "");
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl failed to initialise");
        return -1;
    }
    srv__remote *r = calloc(1, sizeof *r);
    size_t blen = strlen(o->base_url);
    while (blen && o->base_url[blen - 1] == '/')
        blen--;
    /* A base URL may or may not end in /v1, as OpenAI clients accept both. */
    int has_v1 = blen >= 3 && !strncmp(o->base_url + blen - 3, "/v1", 3);
    if (r && (r->url = malloc(blen + 32)))
        snprintf(r->url, blen + 32, "%.*s%s/completions", (int)blen, o->base_url, has_v1 ? "" : "/v1");
    if (r && o->api_key && o->api_key[0] && (r->auth = malloc(strlen(o->api_key) + 32)))
        snprintf(r->auth, strlen(o->api_key) + 32, "Authorization: Bearer %s", o->api_key);
    if (r)
        r->model_name = dup_or_null(o->model_name);
    if (!r || !r->url || (o->api_key && o->api_key[0] && !r->auth) || (o->model_name && !r->model_name)) {
        srv__remote_free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 600000;
    r->retries = o->retries;
    r->bundle = o->bundle;
    r->render = o->render;
    r->render_payload = o->render_payload;
    if (!o->bundle && !o->render && o->chat_template) {
        inf_error ierr = { 0 };
        if (inf_chat_template_load_any(&r->tpl, &r->has_template, o->chat_template, &ierr) != 0) {
            snprintf(err, errlen, "%s", ierr.message);
            srv__remote_free(r);
            return -1;
        }
    }
    *out = r;
    return 0;
}

void srv__remote_free(srv__remote *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->auth);
    free(r->model_name);
    free(r);
}

const char *srv__remote_url(const srv__remote *r)
{
    return r->url;
}

/* ---- HTTP ------------------------------------------------------------------- */

typedef struct answer {
    char *data;
    size_t len, cap;
    int too_big;
} answer;

static size_t on_data(char *p, size_t size, size_t nmemb, void *userdata)
{
    answer *a = userdata;
    size_t n = size * nmemb;
    if (a->len + n + 1 > REMOTE_MAX_ANSWER) {
        a->too_big = 1;
        return 0;   /* stops the transfer */
    }
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 16384;
        while (cap < a->len + n + 1)
            cap *= 2;
        char *grown = realloc(a->data, cap);
        if (!grown)
            return 0;
        a->data = grown;
        a->cap = cap;
    }
    memcpy(a->data + a->len, p, n);
    a->len += n;
    a->data[a->len] = '\0';
    return n;
}

/* One POST: how it ended. */
typedef struct attempt {
    json_t *out;        /* the parsed answer (new reference), or NULL with err */
    int transient;      /* failed in a way worth trying again */
    long retry_after_s; /* the server's Retry-After, or -1 */
} attempt;

/* Whether a failure may pass by itself: no connection, a dropped or timed
 * out transfer, or a server that is busy or broken for now (OpenAI's own
 * clients retry the same statuses). A 4xx other than 408/409/429 and an
 * answer that is not JSON will not change on a second try. */
static int is_transient(CURLcode rc, long status)
{
    if (rc != CURLE_OK)
        return rc == CURLE_COULDNT_CONNECT || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
               rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE || rc == CURLE_OPERATION_TIMEDOUT;
    return status == 408 || status == 409 || status == 429 || status >= 500;
}

/* POSTs `body` once. On failure, err names what went wrong: no connection,
 * a timeout, a non-200 status (with the server's error message), or an
 * answer that is not JSON. */
static attempt post_once(const srv__remote *r, const char *body, char *err, size_t errlen)
{
    attempt at = { NULL, 0, -1 };
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    answer a = { 0 };
    if (!c) {
        snprintf(err, errlen, "libcurl failed to start a request");
        return at;
    }
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (r->auth)
        headers = curl_slist_append(headers, r->auth);
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  /* timeouts without SIGALRM: threads are safe */
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_off_t retry_after = -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after >= 0)
        at.retry_after_s = retry_after > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (long)retry_after;
    if (a.too_big) {
        snprintf(err, errlen, "%s: the answer is over %u bytes", r->url, REMOTE_MAX_ANSWER);
    } else if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s%s", r->url, rc == CURLE_OPERATION_TIMEDOUT ? "no answer in time: " : "",
                 cerr[0] ? cerr : curl_easy_strerror(rc));
        at.transient = is_transient(rc, 0);
    } else {
        json_error_t je;
        json_t *out = a.data ? json_loadb(a.data, a.len, 0, &je) : NULL;
        const char *msg = json_string_value(json_object_get(json_object_get(out, "error"), "message"));
        if (status != 200) {
            snprintf(err, errlen, "%s answered HTTP %ld: %.300s", r->url, status,
                     msg ? msg : a.data ? a.data : "(no body)");
            at.transient = is_transient(rc, status);
            json_decref(out);
        } else if (!json_is_object(out)) {
            snprintf(err, errlen, "%s answered something that is not a JSON object: %.120s", r->url,
                     a.data ? a.data : "(no body)");
            json_decref(out);
        } else {
            at.out = out;
        }
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    free(a.data);
    return at;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* POSTs `body` and returns the parsed JSON answer (new reference), or NULL
 * with err. A transient failure is tried again up to r->retries times,
 * after the server's Retry-After or a doubling wait; err then says how
 * many tries were made. */
static json_t *post_json(const srv__remote *r, const char *body, char *err, size_t errlen)
{
    long wait_ms = RETRY_FIRST_MS;
    for (int tries = 1;; tries++) {
        attempt at = post_once(r, body, err, errlen);
        if (at.out || !at.transient || tries > r->retries) {
            if (!at.out && tries > 1) {
                size_t len = strlen(err);
                snprintf(err + len, errlen - len, " (gave up after %d tries)", tries);
            }
            return at.out;
        }
        sleep_ms(at.retry_after_s >= 0 ? at.retry_after_s * 1000 : wait_ms);
        wait_ms = wait_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : wait_ms * 2;
    }
}

/* ---- the completions request and answer --------------------------------------- */

static json_t *request_body(const srv__remote *r, const char *prompt, const inf_gen_options *o)
{
    json_t *b = json_pack("{s:s, s:i, s:i, s:f, s:f, s:I, s:i}", "prompt", prompt, "n", o->n_samples, "max_tokens",
                          o->max_tokens, "temperature", (double)o->temperature, "top_p", (double)o->top_p,
                          "seed", (json_int_t)o->seed, "logprobs", 1);
    if (!b)
        return NULL;
    int bad = 0;
    /* Extensions (vLLM, envsrv) only when they matter, so that servers
     * without them still accept the plain request. */
    if (r->model_name)
        bad |= json_object_set_new(b, "model", json_string(r->model_name));
    if (o->top_k)
        bad |= json_object_set_new(b, "top_k", json_integer(o->top_k));
    if (o->min_p > 0)
        bad |= json_object_set_new(b, "min_p", json_real(o->min_p));
    if (r->bundle)
        bad |= json_object_set_new(b, "return_tokens_as_token_ids", json_true());
    if (o->n_stop) {
        json_t *stops = json_array();
        for (size_t i = 0; stops && i < o->n_stop; i++)
            json_array_append_new(stops, json_string(o->stop[i]));
        bad |= json_object_set_new(b, "stop", stops);
    }
    if (bad) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* Reads one choice into s. Token ids come from "token_id:N" strings;
 * *ids_ok is cleared when any token is not one. 0, or -1 with err. */
static int read_choice(inf_sample *s, int *ids_ok, const json_t *choice, char *err, size_t errlen)
{
    const json_t *text = json_object_get(choice, "text");
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    const json_t *lp = json_object_get(choice, "logprobs");
    const json_t *lps = json_object_get(lp, "token_logprobs"), *toks = json_object_get(lp, "tokens");
    if (!json_is_string(text) || !json_is_array(lps)) {
        snprintf(err, errlen, "a choice lacks 'text' or 'logprobs.token_logprobs'");
        return -1;
    }
    size_t n = json_array_size(lps);
    s->text = malloc(json_string_length(text) + 1);
    s->logprobs = malloc((n ? n : 1) * sizeof *s->logprobs);
    s->tokens = calloc(n ? n : 1, sizeof *s->tokens);
    if (!s->text || !s->logprobs || !s->tokens) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(s->text, json_string_value(text), json_string_length(text) + 1);
    s->text_len = json_string_length(text);
    s->n_tokens = n;
    s->finish = finish && !strcmp(finish, "length") ? INF_FINISH_LENGTH : INF_FINISH_STOP;
    s->stop_index = -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(lps, i);
        if (!json_is_number(v)) {
            snprintf(err, errlen, "logprobs.token_logprobs[%zu] is not a number", i);
            return -1;
        }
        s->logprobs[i] = (float)json_number_value(v);
        const char *t = json_string_value(json_array_get(toks, i));
        char *end = NULL;
        long id = t && !strncmp(t, "token_id:", 9) ? strtol(t + 9, &end, 10) : -1;
        if (id < 0 || !end || *end || id > INT32_MAX)
            *ids_ok = 0;
        else
            s->tokens[i] = (int)id;
    }
    return 0;
}

/* The prompt as text (and ids, when a bundle is there). */
static int render_prompt(char **text, srv__completions *out, const srv__remote *r, const json_t *messages, char *err,
                         size_t errlen)
{
    inf_chat_message *msgs = NULL;
    size_t n = 0, len = 0;
    inf_error ierr = { 0 };
    int rc = -1;
    if (srv__messages_from_json(&msgs, &n, messages) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (r->bundle)
        rc = inf_bundle_render(text, &len, r->bundle, msgs, n, &ierr) ||
             inf_bundle_encode_messages(&out->prompt, &out->n_prompt, r->bundle, msgs, n, &ierr);
    else if (r->render)
        rc = r->render(text, &len, msgs, n, r->render_payload, &ierr);
    else if (r->has_template)
        rc = inf_chat_render(text, &len, &r->tpl, msgs, n, true, &ierr);
    else
        rc = inf_render_plain(text, &len, msgs, n, &ierr);
    if (rc)
        snprintf(err, errlen, "cannot render the prompt: %s", ierr.message);
    free(msgs);
    return rc ? -1 : 0;
}

int srv__remote_generate(srv__completions *out, srv__remote *r, const json_t *messages, const inf_gen_options *opts,
                         char *err, size_t errlen)
{
    char *prompt = NULL, *body_text = NULL;
    json_t *body = NULL, *ans = NULL;
    int rc = SRV__GEN_EINVALID;
    if (render_prompt(&prompt, out, r, messages, err, errlen) != 0)
        goto done;
    rc = SRV__GEN_ENOMEM;
    body = request_body(r, prompt, opts);
    body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!body_text) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = SRV__GEN_EREMOTE;
    if (!(ans = post_json(r, body_text, err, errlen)))
        goto done;
    const json_t *choices = json_object_get(ans, "choices");
    size_t n = (size_t)opts->n_samples;
    if (json_array_size(choices) != n) {
        snprintf(err, errlen, "%s answered %zu choices for n = %zu", r->url, json_array_size(choices), n);
        goto done;
    }
    out->res.samples = calloc(n, sizeof *out->res.samples);
    if (!out->res.samples) {
        snprintf(err, errlen, "out of memory");
        rc = SRV__GEN_ENOMEM;
        goto done;
    }
    out->res.n_samples = n;
    out->res.prompt_tokens = out->n_prompt;
    int ids_ok = 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(choices, i);
        const json_t *index = json_object_get(c, "index");
        /* Choices are placed by their index (servers may reorder them). */
        size_t at = json_is_integer(index) ? (size_t)json_integer_value(index) : i;
        char why[200];
        if (at >= n || out->res.samples[at].text) {
            snprintf(err, errlen, "%s answered a bad or repeated choice index", r->url);
            goto done;
        }
        if (read_choice(&out->res.samples[at], &ids_ok, c, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: choice %zu: %s", r->url, i, why);
            goto done;
        }
    }
    out->tokens_known = r->bundle && ids_ok;
    if (!out->tokens_known) {
        free(out->prompt);
        out->prompt = NULL;
        out->n_prompt = 0;
    }
    rc = 0;
done:
    json_decref(ans);
    json_decref(body);
    free(body_text);
    free(prompt);
    return rc;
}
