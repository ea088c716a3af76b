/*
 * Generation for rollouts, shared by `envsrv eval`, `envsrv rollout` and
 * POST /v1/envs/{env}/rollouts: a sampler turns an item's prompt messages
 * into a group of completions (the built-in engine over a loaded bundle, or
 * an external OpenAI-compatible server, openai_client.c), and
 * srv__rollout_group scores them with the environment and builds the group
 * in the trajectory format (docs/trajectory.md).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

struct srv__sampler {
    const inf_bundle *bundle;       /* borrowed; NULL for a remote sampler */
    int n_threads;
    pthread_mutex_t lock;           /* one generation at a time on the local model */
    srv__remote *remote;            /* owned; NULL for the local engine */
};

int srv__sampler_local(srv__sampler **out, const inf_bundle *b, int n_threads, char *err, size_t errlen)
{
    srv__sampler *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->bundle = b;
    s->n_threads = n_threads > 0 ? n_threads : 1;
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

int srv__sampler_remote(srv__sampler **out, srv__remote *remote, char *err, size_t errlen)
{
    srv__sampler *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        srv__remote_free(remote);
        return -1;
    }
    s->remote = remote;
    s->n_threads = 1;
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

void srv__sampler_free(srv__sampler *s)
{
    if (!s)
        return;
    srv__remote_free(s->remote);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const inf_bundle *srv__sampler_bundle(const srv__sampler *s)
{
    return s->bundle;
}

void srv__completions_free(srv__completions *c)
{
    if (!c)
        return;
    inf_result_free(&c->res);
    free(c->prompt);
    memset(c, 0, sizeof *c);
}

int srv__messages_from_json(inf_chat_message **out, size_t *n, const json_t *messages)
{
    size_t count = json_array_size(messages);
    inf_chat_message *m = calloc(count ? count : 1, sizeof *m);
    if (!m)
        return -1;
    for (size_t i = 0; i < count; i++) {
        const json_t *msg = json_array_get(messages, i);
        m[i].role = json_string_value(json_object_get(msg, "role"));
        m[i].content = json_string_value(json_object_get(msg, "content"));
        if (!m[i].role)
            m[i].role = "user";
        if (!m[i].content)
            m[i].content = "";
    }
    *out = m;
    *n = count;
    return 0;
}

/* The local engine: encode with the bundle, generate under the lock. */
static int local_generate(srv__completions *out, srv__sampler *s, const json_t *messages,
                          const inf_gen_options *opts, char *err, size_t errlen)
{
    inf_chat_message *msgs = NULL;
    size_t n_msgs = 0;
    inf_error ierr = { 0 };
    int rc = SRV__GEN_ENOMEM;
    if (srv__messages_from_json(&msgs, &n_msgs, messages) != 0) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    if (inf_bundle_encode_messages(&out->prompt, &out->n_prompt, s->bundle, msgs, n_msgs, &ierr) != 0) {
        snprintf(err, errlen, "cannot encode the prompt: %s", ierr.message);
        rc = SRV__GEN_EINVALID;
        goto done;
    }
    out->tokens_known = 1;
    int seq_len = inf_model_config(inf_bundle_model(s->bundle))->seq_len;
    /* A prompt that fills the context leaves no room for one new token. */
    if (out->n_prompt + 1 > (size_t)seq_len) {
        snprintf(err, errlen, "the prompt is %zu tokens; the model's context is %d", out->n_prompt,
                 seq_len);
        rc = SRV__GEN_ETOOLONG;
        goto done;
    }
    int grc = srv__sampler_generate_ids(&out->res, s, out->prompt, out->n_prompt, opts, &ierr);
    if (grc != 0) {
        snprintf(err, errlen, "generation failed: %s", ierr.message);
        rc = grc == INF_ENOMEM ? SRV__GEN_ENOMEM : SRV__GEN_EINVALID;
        goto done;
    }
    rc = 0;
done:
    free(msgs);
    return rc;
}

int srv__sampler_generate(srv__completions *out, srv__sampler *s, const json_t *messages,
                          const inf_gen_options *opts, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = s->remote ? srv__remote_generate(out, s->remote, messages, opts, err, errlen)
                       : local_generate(out, s, messages, opts, err, errlen);
    if (rc != 0)
        srv__completions_free(out);
    return rc;
}

int srv__sampler_generate_ids(inf_result *res, srv__sampler *s, const int *ids, size_t n,
                              const inf_gen_options *opts, inf_error *err)
{
    inf_gen_options o = *opts;
    o.n_threads = s->n_threads;
    pthread_mutex_lock(&s->lock);
    int rc = inf_generate(res, inf_bundle_model(s->bundle), inf_bundle_tokenizer(s->bundle), ids, n, &o, err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- groups ------------------------------------------------------------------ */

/* tokens, masks and inference_logprobs of one sample: the prompt (masked
 * -100, logprob 0) then the completion. */
static int append_sequence(json_t *tokens, json_t *masks, json_t *lps, const srv__completions *c,
                           const inf_sample *smp)
{
    json_t *t = json_array(), *m = json_array(), *l = json_array();
    int bad = !t || !m || !l;
    for (size_t i = 0; !bad && i < c->n_prompt; i++)
        bad = json_array_append_new(t, json_integer(c->prompt[i])) ||
              json_array_append_new(m, json_integer(-100)) || json_array_append_new(l, json_real(0.0));
    for (size_t i = 0; !bad && i < smp->n_tokens; i++)
        bad = json_array_append_new(t, json_integer(smp->tokens[i])) ||
              json_array_append_new(m, json_integer(smp->tokens[i])) ||
              json_array_append_new(l, json_real(smp->logprobs[i]));
    bad = bad || json_array_append(tokens, t) || json_array_append(masks, m) || json_array_append(lps, l);
    json_decref(t);
    json_decref(m);
    json_decref(l);
    return bad ? -1 : 0;
}

/* The group object; NULL when out of memory. `scores` is borrowed. */
static json_t *group_json(const lenv_env *env, const char *item_id, const srv__completions *c,
                          const json_t *scores, const inf_gen_options *opts, const char *model_sha)
{
    json_t *g = json_pack("{s:s, s:s, s:s, s:O, s:{s:f, s:f, s:i, s:f, s:I, s:i, s:i}}", "env",
                          lenv_name(env), "env_version", lenv_version(env), "item_id", item_id, "scores",
                          scores, "generation_params", "temperature", (double)opts->temperature, "top_p",
                          (double)opts->top_p, "top_k", opts->top_k, "min_p", (double)opts->min_p, "seed",
                          (json_int_t)opts->seed, "max_tokens", opts->max_tokens, "n",
                          (int)c->res.n_samples);
    /* Every array stays ours (json_object_set adds a reference), so one
     * cleanup path releases them whether or not g took them. */
    json_t *texts = json_array(), *finish = json_array(), *lps = json_array(), *tokens = NULL, *masks = NULL;
    int bad = !g || !texts || !finish || !lps;
    for (size_t s = 0; !bad && s < c->res.n_samples; s++) {
        const inf_sample *smp = &c->res.samples[s];
        bad = json_array_append_new(texts, json_stringn(smp->text ? smp->text : "", smp->text_len)) ||
              json_array_append_new(finish, json_string(inf_finish_name(smp->finish)));
    }
    if (!bad && c->tokens_known) {
        tokens = json_array();
        masks = json_array();
        bad = !tokens || !masks;
        for (size_t s = 0; !bad && s < c->res.n_samples; s++)
            bad = append_sequence(tokens, masks, lps, c, &c->res.samples[s]);
        bad = bad || json_object_set(g, "tokens", tokens) || json_object_set(g, "masks", masks);
    } else if (!bad) {
        /* The remote server gave text and logprobs but no token ids: the
         * group says so and carries the completions' logprobs as given. */
        for (size_t s = 0; !bad && s < c->res.n_samples; s++) {
            const inf_sample *smp = &c->res.samples[s];
            json_t *l = json_array();
            bad = !l || json_array_append_new(lps, l);
            for (size_t i = 0; !bad && i < smp->n_tokens; i++)
                bad = json_array_append_new(l, json_real(smp->logprobs[i]));
        }
        bad = bad || json_object_set_new(g, "tokens_unknown", json_true());
    }
    bad = bad || json_object_set(g, "inference_logprobs", lps) || json_object_set(g, "completions", texts) ||
          json_object_set(g, "finish_reasons", finish);
    if (!bad && model_sha)
        bad = json_object_set_new(g, "model_sha256", json_string(model_sha));
    json_decref(tokens);
    json_decref(masks);
    json_decref(lps);
    json_decref(texts);
    json_decref(finish);
    if (bad) {
        json_decref(g);
        return NULL;
    }
    return g;
}

int srv__rollout_group(json_t **out, srv__group_stats *st, srv__sampler *s, lenv_env *env,
                       const char *item_id, const inf_gen_options *opts, lenv_error *lerr, char *err,
                       size_t errlen)
{
    json_t *item = NULL, *view = NULL, *scored = NULL;
    srv__completions c = { 0 };
    const char **texts = NULL;
    size_t *lens = NULL;
    int rc;
    *out = NULL;
    memset(st, 0, sizeof *st);
    if (lenv_item_get(&item, env, item_id, lerr) != 0 || lenv_item_view(&view, env, item, 0, lerr) != 0) {
        snprintf(err, errlen, "%s", lerr->message);
        rc = SRV__GEN_EENV;
        goto done;
    }
    rc = srv__sampler_generate(&c, s, json_object_get(view, "prompt"), opts, err, errlen);
    if (rc != 0) {
        st->prompt_too_long = rc == SRV__GEN_ETOOLONG;
        goto done;
    }
    rc = SRV__GEN_ENOMEM;
    texts = malloc((c.res.n_samples ? c.res.n_samples : 1) * sizeof *texts);
    lens = malloc((c.res.n_samples ? c.res.n_samples : 1) * sizeof *lens);
    if (!texts || !lens) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < c.res.n_samples; i++) {
        texts[i] = c.res.samples[i].text ? c.res.samples[i].text : "";
        lens[i] = c.res.samples[i].text_len;
        st->new_tokens += c.res.samples[i].n_tokens;
    }
    if (lenv_score(&scored, env, item, texts, lens, c.res.n_samples, lerr) != 0) {
        snprintf(err, errlen, "%s", lerr->message);
        rc = SRV__GEN_EENV;
        goto done;
    }
    const json_t *rewards = json_object_get(scored, "rewards");
    for (size_t i = 0; i < json_array_size(rewards); i++) {
        double r = json_number_value(json_array_get(rewards, i));
        st->reward_sum += r;
        if (i == 0 || r > st->reward_best)
            st->reward_best = r;
    }
    st->n = json_array_size(rewards);
    *out = group_json(env, item_id, &c, rewards, opts, s->bundle ? inf_bundle_sha256(s->bundle) : NULL);
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = 0;
done:
    free(texts);
    free(lens);
    srv__completions_free(&c);
    json_decref(scored);
    json_decref(view);
    json_decref(item);
    return rc;
}

/* ---- loading a model with its template ------------------------------------------ */

int srv__render_lua(char **text, size_t *len, const inf_chat_message *msgs, size_t n, void *payload,
                    inf_error *err)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_pack("{s:s, s:s}", "role", msgs[i].role, "content", msgs[i].content))) {
            json_decref(arr);
            arr = NULL;
        }
    if (!arr) {
        err->code = INF_ENOMEM;
        snprintf(err->message, sizeof err->message, "out of memory (or a message that is not UTF-8)");
        return INF_ENOMEM;
    }
    lenv_error lerr = { 0 };
    int rc = lenv_chat_template_render(text, len, payload, arr, &lerr);
    json_decref(arr);
    if (rc != 0) {
        err->code = rc == LENV_ENOMEM ? INF_ENOMEM : INF_EINVALID;
        snprintf(err->message, sizeof err->message, "chat template: %.230s", lerr.message);
        return err->code;
    }
    return 0;
}

int srv__is_lua_template(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 4 && strcmp(path + n - 4, ".lua") == 0;
}

int srv__model_load(inf_bundle **bundle, lenv_chat_template **lua, const char *model, const char *tokenizer,
                    const char *chat_template, char *err, size_t errlen)
{
    *bundle = NULL;
    *lua = NULL;
    lenv_error lerr = { 0 };
    inf_error ierr = { 0 };
    int is_lua = srv__is_lua_template(chat_template);
    if (is_lua && lenv_chat_template_open(lua, chat_template, &lerr) != 0) {
        snprintf(err, errlen, "--chat-template: %s", lerr.message);
        return -1;
    }
    /* A Lua template replaces the model's own, which then need not be one
     * envsrv recognises: load with the plain convention and attach it. */
    if (model && inf_bundle_load(bundle, model, tokenizer, is_lua ? "plain" : chat_template, &ierr) != 0) {
        snprintf(err, errlen, "%s", ierr.message);
        lenv_chat_template_free(*lua);
        *lua = NULL;
        return -1;
    }
    if (*bundle && *lua)
        inf_bundle_set_renderer(*bundle, srv__render_lua, *lua);
    return 0;
}
