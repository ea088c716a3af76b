/*
 * POST /v1/envs/{env}/rollouts — envsrv generates: for each chosen item, a
 * group of completions from the model loaded with --model, scored by the
 * env, in the trajectory format of `envsrv rollout` (srv__rollout_group), so
 * a trainer can post the groups to /scored_data as they are.
 *
 *   {"item_ids": ["test-1", ...]} or {"n_items": k, "split"?, "seed"?},
 *   "group_size", "temperature", "top_p", "top_k", "min_p", "max_tokens",
 *   "stop", "seed"  ->  {"groups": [...], "env_version", "model"}
 *
 * Runs on the generation worker (SRV__ROUTE_GEN). Also holds the sampling
 * parameter parser the OpenAI-compatible routes share (api_openai.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* A number field in [min, max]; integer-only when `integer`. 0 absent or
 * read, -1 with msg filled. */
static int num_field(double *out, const json_t *body, const char *key, double min, double max, int integer,
                     char *msg, size_t msglen)
{
    const json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || (integer && !json_is_integer(v)) || d < min || d > max) {
        snprintf(msg, msglen, "field '%s' must be %s from %g to %g, got %s", key,
                 integer ? "an integer" : "a number", min, max,
                 json_is_number(v) ? "a value out of range" : srv__json_kind(v));
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_stops(srv__gen_params *p, const json_t *v, char *msg, size_t msglen)
{
    if (!v || json_is_null(v))
        return 0;
    size_t n = json_is_string(v) ? 1 : json_array_size(v);
    if ((!json_is_string(v) && !json_is_array(v)) || n > INF_MAX_STOPS) {
        snprintf(msg, msglen, "field 'stop' must be a string or an array of at most %d strings", INF_MAX_STOPS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s) || json_string_length(s) == 0 ||
            strlen(json_string_value(s)) != json_string_length(s)) {
            snprintf(msg, msglen, "field 'stop': element %zu must be a non-empty string without NUL bytes", i);
            return -1;
        }
        p->stops[i] = json_string_value(s);
    }
    p->opts.stop = n ? p->stops : NULL;
    p->opts.n_stop = n;
    return 0;
}

int srv__parse_gen_params(srv__gen_params *p, const json_t *body, const char *n_key, const char *max_key,
                          int max_tokens_cap, const char **param, char *msg, size_t msglen)
{
    inf_gen_options *o = &p->opts;
    double d;
#define FIELD(key, min, max, integer, assign)                                                      \
    do {                                                                                           \
        d = -1;                                                                                    \
        *param = key;                                                                              \
        if (num_field(&d, body, key, min, max, integer, msg, msglen) != 0)                         \
            return -1;                                                                             \
        if (json_object_get(body, key) && !json_is_null(json_object_get(body, key)))               \
            assign;                                                                                \
    } while (0)
    FIELD("temperature", 0, 100, 0, o->temperature = (float)d);
    FIELD("top_p", 1e-6, 1, 0, o->top_p = (float)d);
    FIELD("top_k", 0, 1 << 24, 1, o->top_k = (int)d);
    FIELD("min_p", 0, 1, 0, o->min_p = (float)d);
    FIELD("seed", 0, 9007199254740992.0, 1, o->seed = (uint64_t)d);
    if (n_key)
        FIELD(n_key, 1, SRV_GEN_MAX_SAMPLES, 1, o->n_samples = (int)d);
    FIELD(max_key, 1, max_tokens_cap, 1, o->max_tokens = (int)d);
#undef FIELD
    *param = "stop";
    if (parse_stops(p, json_object_get(body, "stop"), msg, msglen) != 0)
        return -1;
    *param = NULL;
    return 0;
}

/* The item ids a request names, as a new array of strings: item_ids as
 * given, or n_items drawn by lenv_sample. Returns NULL with resp filled. */
static json_t *chosen_items(srv__response *resp, srv_server *srv, size_t idx, lenv_env *env, const json_t *body)
{
    const json_t *ids = json_object_get(body, "item_ids"), *n = json_object_get(body, "n_items");
    if (!!ids == !!n) {
        srv__reply_error(resp, 400, "bad_request", "give either 'item_ids' or 'n_items'");
        return NULL;
    }
    if (ids) {
        size_t k = json_array_size(ids);
        if (!json_is_array(ids) || k == 0 || k > SRV_GEN_MAX_ITEMS) {
            srv__reply_error(resp, 422, "invalid_field", "field 'item_ids' must be an array of 1 to %d strings",
                             SRV_GEN_MAX_ITEMS);
            return NULL;
        }
        for (size_t i = 0; i < k; i++)
            if (!json_is_string(json_array_get(ids, i))) {
                srv__reply_error(resp, 422, "invalid_field", "field 'item_ids': element %zu is %s, not a string",
                                 i, srv__json_kind(json_array_get(ids, i)));
                return NULL;
            }
        return json_deep_copy(ids);
    }
    if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > SRV_GEN_MAX_ITEMS) {
        srv__reply_error(resp, 422, "invalid_field", "field 'n_items' must be an integer from 1 to %d",
                         SRV_GEN_MAX_ITEMS);
        return NULL;
    }
    const json_t *split = json_object_get(body, "split"), *seed = json_object_get(body, "seed");
    if (split && !json_is_null(split) && !json_is_string(split)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'split' must be a string, got %s", srv__json_kind(split));
        return NULL;
    }
    json_t *views = NULL, *out = json_array();
    lenv_error err = { 0 };
    if (!out || lenv_sample(&views, env, json_string_value(split), (size_t)json_integer_value(n),
                            (uint64_t)json_integer_value(seed), &err) != 0) {
        json_decref(out);
        if (err.code == LENV_ENOTFOUND)
            err.code = LENV_EINVALID;
        if (err.message[0])
            srv__reply_lenv_error(resp, srv, idx, &err);
        else
            srv__reply_error(resp, 500, "internal", "out of memory");
        return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(views, i, v)
        json_array_append(out, json_object_get(v, "id"));
    json_decref(views);
    return out;
}

/* Maps a failed group to an answer. */
static void reply_group_error(srv__response *resp, srv_server *srv, size_t idx, int rc, const lenv_error *lerr,
                              const char *item_id, const char *msg)
{
    if (rc == SRV__GEN_EENV) {
        srv__reply_lenv_error(resp, srv, idx, lerr);
        return;
    }
    if (rc == SRV__GEN_ENOMEM)
        srv__reply_error(resp, 500, "internal", "item '%.200s': %s", item_id, msg);
    else
        srv__reply_error(resp, 422, rc == SRV__GEN_ETOOLONG ? "prompt_too_long" : "invalid_field",
                         "item '%.200s': %s", item_id, msg);
}

void srv__api_rollouts(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    size_t idx;
    lenv_env *env = srv__find_env(&idx, resp, req, 0);
    if (!env)
        return;
    if (!srv->sampler) {
        srv__reply_error(resp, 409, "no_model", "no model loaded: start envsrv with --model PATH");
        return;
    }
    json_t *body = srv__parse_object(resp, req, 0), *ids = NULL, *groups = NULL;
    if (!body)
        return;
    int seq_len = inf_model_config(inf_bundle_model(srv__sampler_bundle(srv->sampler)))->seq_len;
    srv__gen_params p = { .opts = INF_GEN_OPTIONS_INIT };
    p.opts.max_tokens = seq_len < 256 ? seq_len : 256;
    const char *param = NULL;
    char msg[256];
    if (srv__parse_gen_params(&p, body, "group_size", "max_tokens", seq_len, &param, msg, sizeof msg) != 0) {
        srv__reply_error(resp, 422, "invalid_field", "%s", msg);
        goto done;
    }
    if (!(ids = chosen_items(resp, srv, idx, env, body)))
        goto done;
    groups = json_array();
    if (!groups) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        json_t *g = NULL;
        srv__group_stats st;
        lenv_error lerr = { 0 };
        char err[512];
        int rc = srv__rollout_group(&g, &st, srv->sampler, env, id, &p.opts, &lerr, err, sizeof err);
        if (rc != 0) {
            reply_group_error(resp, srv, idx, rc, &lerr, id, err);
            goto done;
        }
        srv__metrics_scored(srv->metrics, idx, st.n, st.reward_sum);
        if (json_array_append_new(groups, g) != 0) {
            srv__reply_error(resp, 500, "internal", "out of memory");
            goto done;
        }
    }
    json_t *out = json_pack("{s:O, s:s, s:{s:s, s:s}}", "groups", groups, "env_version", lenv_version(env),
                            "model", "name", srv->model_name, "sha256",
                            inf_bundle_sha256(srv__sampler_bundle(srv->sampler)));
    if (!out)
        srv__reply_error(resp, 500, "internal", "out of memory");
    else
        srv__reply_json(resp, 200, out);
done:
    json_decref(groups);
    json_decref(ids);
    json_decref(body);
}
