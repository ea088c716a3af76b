/*
 * Handlers for the read-mostly routes: /health, /metrics, /v1/envs,
 * /v1/envs/{env}, /v1/envs/{env}/items/{id} and /v1/envs/{env}/sample.
 */
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

static const char health_body[] = "{\"status\":\"ok\"}";

/* GET /health: a static body, nothing allocated. It is the benchmark's
 * ceiling, so it stays the cheapest answer the server can give. */
void srv__api_health(srv__response *resp, srv__request *req)
{
    (void)req;
    resp->status = 200;
    resp->body = (char *)health_body;
    resp->body_len = sizeof health_body - 1;
    resp->body_static = 1;
}

void srv__api_metrics(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    /* Sweep first so that envsrv_episodes_open does not count the dead. */
    srv_episodes_sweep(srv->episodes, srv_now_ms());
    size_t len = 0;
    char *text = srv__metrics_render(&len, srv->metrics, srv_episodes_count(srv->episodes),
                                     atomic_load(&srv->in_flight));
    if (!text) {
        srv__reply_error(resp, 500, "internal", "out of memory while rendering metrics");
        return;
    }
    resp->status = 200;
    resp->body = text;
    resp->body_len = len;
    resp->body_static = 0;
    resp->content_type = "text/plain; version=0.0.4";
}

void srv__api_envs_list(srv__response *resp, srv__request *req)
{
    json_t *arr = json_array();
    json_t *body = json_object();
    if (!arr || !body)
        goto oom;
    for (size_t i = 0; i < req->srv->n_envs; i++) {
        if (json_array_append_new(arr, lenv_describe(req->srv->envs[i], 0)) != 0)
            goto oom;
    }
    if (json_object_set(body, "envs", arr) != 0)
        goto oom;
    json_decref(arr);
    srv__reply_json(resp, 200, body);
    return;
oom:
    json_decref(arr);
    json_decref(body);
    srv__reply_error(resp, 500, "internal", "out of memory");
}

void srv__api_env_get(srv__response *resp, srv__request *req)
{
    size_t idx;
    lenv_env *env = srv__find_env(&idx, resp, req, 0);
    if (!env)
        return;
    json_t *d = lenv_describe(env, 1);
    if (!d) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        return;
    }
    srv__reply_json(resp, 200, d);
}

/* A boolean query flag: absent, "0" or "false" is off; "1" or "true" is on. */
static int query_flag(int *out, srv__response *resp, const srv__request *req, const char *key)
{
    const char *v = req->query(req, key);
    *out = 0;
    if (!v || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        return 0;
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || v[0] == '\0') {
        *out = 1;
        return 0;
    }
    srv__reply_error(resp, 422, "invalid_field", "query parameter '%s' must be 1, 0, true or false, got '%.64s'",
                     key, v);
    return -1;
}

void srv__api_item_get(srv__response *resp, srv__request *req)
{
    size_t idx;
    lenv_env *env = srv__find_env(&idx, resp, req, 0);
    if (!env)
        return;
    int with_answer;
    if (query_flag(&with_answer, resp, req, "include_answer") != 0)
        return;
    json_t *item = NULL;
    lenv_error err = { 0 };
    json_t *view = NULL;
    if (lenv_item_get(&item, env, req->params[1], &err) != 0 ||
        lenv_item_view(&view, env, item, with_answer, &err) != 0) {
        json_decref(item);
        srv__reply_lenv_error(resp, req->srv, idx, &err);
        return;
    }
    json_decref(item);
    srv__reply_json(resp, 200, view);
}

void srv__api_sample(srv__response *resp, srv__request *req)
{
    size_t idx;
    lenv_env *env = srv__find_env(&idx, resp, req, 0);
    if (!env)
        return;
    /* Every field is optional, so an empty body means "one item, seed 0". */
    json_t *body = srv__parse_object(resp, req, 1);
    if (!body)
        return;
    json_t *items = NULL;
    json_int_t n = 1, seed = 0;
    const char *split = NULL;

    json_t *v = json_object_get(body, "n");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > LENV_MAX_SAMPLE) {
            srv__reply_error(resp, 422, "invalid_field",
                             "field 'n' must be an integer from 1 to %d, got %s", LENV_MAX_SAMPLE,
                             json_is_integer(v) ? "a value out of range" : srv__json_kind(v));
            goto done;
        }
        n = json_integer_value(v);
    }
    v = json_object_get(body, "seed");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            srv__reply_error(resp, 422, "invalid_field", "field 'seed' must be a non-negative integer, got %s",
                             json_is_integer(v) ? "a negative integer" : srv__json_kind(v));
            goto done;
        }
        seed = json_integer_value(v);
    }
    v = json_object_get(body, "split");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
            srv__reply_error(resp, 422, "invalid_field", "field 'split' must be a string, got %s",
                             srv__json_kind(v));
            goto done;
        }
        split = json_string_value(v);
    }

    lenv_error err = { 0 };
    if (lenv_sample(&items, env, split, (size_t)n, (uint64_t)seed, &err) != 0) {
        /* An unknown split is a bad field value here, not a missing resource. */
        if (err.code == LENV_ENOTFOUND)
            err.code = LENV_EINVALID;
        srv__reply_lenv_error(resp, req->srv, idx, &err);
        goto done;
    }
    json_t *out = json_object();
    if (!out || json_object_set(out, "items", items) != 0 ||
        json_object_set_new(out, "env_version", json_string(lenv_version(env))) != 0) {
        json_decref(out);
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    srv__reply_json(resp, 200, out);
done:
    json_decref(items);
    json_decref(body);
}

/* POST /v1/envs/{env}/challenge {"beacon": "<hex>", "count": n}: n items of a
 * procedural env derived from a public random value (docs/challenges.md), so
 * anyone with the same beacon regenerates the same problems. */
void srv__api_challenge(srv__response *resp, srv__request *req)
{
    size_t idx;
    lenv_env *env = srv__find_env(&idx, resp, req, 0);
    if (!env)
        return;
    json_t *body = srv__parse_object(resp, req, 0);
    if (!body)
        return;
    json_t *items = NULL, *out = NULL;
    json_t *beacon = json_object_get(body, "beacon");
    json_t *count = json_object_get(body, "count");
    if (!beacon) {
        srv__reply_error(resp, 400, "bad_request", "missing field 'beacon'");
        goto done;
    }
    if (!json_is_string(beacon)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'beacon' must be a hex string, got %s",
                         srv__json_kind(beacon));
        goto done;
    }
    json_int_t n = 1;
    if (count) {
        if (!json_is_integer(count) || json_integer_value(count) < 1 ||
            json_integer_value(count) > LENV_MAX_CHALLENGE) {
            srv__reply_error(resp, 422, "invalid_field", "field 'count' must be an integer from 1 to %d",
                             LENV_MAX_CHALLENGE);
            goto done;
        }
        n = json_integer_value(count);
    }
    lenv_error err = { 0 };
    if (lenv_challenge(&items, env, json_string_value(beacon), (size_t)n, &err) != 0) {
        srv__reply_lenv_error(resp, req->srv, idx, &err);
        goto done;
    }
    out = json_pack("{s:o, s:s, s:O}", "items", items, "env_version", lenv_version(env), "beacon", beacon);
    items = NULL; /* json_pack's "o" took it, even on failure */
    if (!out) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    srv__reply_json(resp, 200, out);
    out = NULL;
done:
    json_decref(items);
    json_decref(out);
    json_decref(body);
}
