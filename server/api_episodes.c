/*
 * Episodes: POST /v1/envs/{env}/episodes starts one, POST
 * /v1/episodes/{id}/step advances it. Single-turn environments are the
 * one-step case: the first step is done, and the episode is removed.
 */
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

static size_t env_index_of(const srv_server *srv, const lenv_env *env)
{
    for (size_t i = 0; i < srv->n_envs; i++)
        if (srv->envs[i] == env)
            return i;
    return srv->n_envs;
}

void srv__api_episode_create(srv__response *resp, srv__request *req)
{
    json_t *observation = NULL, *state = NULL, *out = NULL, *item = NULL;
    size_t idx;
    lenv_env *env = srv__find_env(&idx, resp, req, 0);
    if (!env)
        return;
    json_t *body = srv__parse_object(resp, req, 0);
    if (!body)
        return;
    const char *item_id = NULL;
    if (srv__resolve_item(&item, &item_id, resp, req->srv, idx, body) != 0)
        goto done;

    lenv_error err = { 0 };
    if (lenv_reset(&observation, &state, env, item, &err) != 0) {
        srv__reply_lenv_error(resp, req->srv, idx, &err);
        goto done;
    }
    out = json_object();
    if (!out || json_object_set_new(out, "env_version", json_string(lenv_version(env))) != 0 ||
        json_object_set_new(out, "item_id", item_id ? json_string(item_id) : json_null()) != 0) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    /* Jansson's reference counts are atomic (JANSSON_THREAD_SAFE_REFCOUNT),
     * so the store may hold a reference to an item the env shares. */
    char id[SRV_EPISODE_ID_LEN + 1];
    /* The env's own idle timeout (limits.idle_timeout) may be shorter than
     * the server's --episode-ttl. */
    lenv_limits limits;
    lenv_get_limits(&limits, env);
    int rc = srv_episodes_create(id, req->srv->episodes, env, json_incref(item), state,
                                 (uint64_t)limits.idle_timeout_s * 1000u,
                                 srv_now_ms());
    state = NULL; /* the store took it, whatever rc says */
    if (rc == SRV_EP_FULL) {
        srv__reply_error(resp, 429, "too_many_episodes",
                         "too many open episodes; finish some or wait for them to expire");
        goto done;
    }
    if (rc != 0) {
        srv__reply_error(resp, 500, "internal", "cannot create an episode (out of memory or entropy)");
        goto done;
    }
    if (json_object_set_new(out, "episode_id", json_string(id)) != 0 ||
        json_object_set(out, "observation", observation) != 0) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    srv__reply_json(resp, 200, out);
    out = NULL;
done:
    json_decref(out);
    json_decref(observation);
    json_decref(state);
    json_decref(item);
    json_decref(body);
}

void srv__api_episode_step(srv__response *resp, srv__request *req)
{
    srv_server *srv = req->srv;
    json_t *result = NULL;
    srv_episode *ep = NULL;
    int finished = 0;
    json_t *body = srv__parse_object(resp, req, 0);
    if (!body)
        return;
    json_t *action = json_object_get(body, "action");
    if (!action) {
        srv__reply_error(resp, 400, "bad_request", "missing field 'action'");
        goto done;
    }
    if (!json_is_string(action)) {
        srv__reply_error(resp, 422, "invalid_field", "field 'action' must be a string, got %s",
                         srv__json_kind(action));
        goto done;
    }

    const char *id = req->params[0];
    int rc = srv_episodes_acquire(&ep, srv->episodes, id, srv_now_ms());
    if (rc == SRV_EP_BUSY) {
        srv__reply_error(resp, 409, "episode_busy", "episode '%.64s' is running another step", id);
        goto done;
    }
    if (rc != 0) {
        srv__reply_error(resp, 404, "unknown_episode", "unknown or expired episode '%.64s'", id);
        goto done;
    }

    lenv_error err = { 0 };
    if (lenv_step(&result, &ep->state, ep->env, ep->item, json_string_value(action),
                  json_string_length(action), &err) != 0) {
        /* The episode stays open (its state is unchanged) unless the step
         * left it without a state to continue from. */
        finished = ep->state == NULL;
        srv__reply_lenv_error(resp, srv, env_index_of(srv, ep->env), &err);
        goto done;
    }
    finished = json_is_true(json_object_get(result, "done"));
    if (json_object_set_new(result, "env_version", json_string(lenv_version(ep->env))) != 0) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    srv__reply_json(resp, 200, result);
    result = NULL;
done:
    if (ep)
        srv_episodes_release(srv->episodes, ep, finished, srv_now_ms());
    json_decref(result);
    json_decref(body);
}
