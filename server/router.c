/*
 * The routing table: one line per route, matched segment by segment. A
 * `{name}` segment matches any non-empty segment and becomes a path parameter,
 * percent-decoded here (libmicrohttpd is told not to decode the path, so an
 * id holding "%2F" stays one segment).
 */
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

const srv__route srv__routes[] = {
    { "GET", "/health", srv__api_health, SRV__ROUTE_INLINE },
    { "GET", "/metrics", srv__api_metrics, SRV__ROUTE_INLINE },
    { "GET", "/v1/envs", srv__api_envs_list, SRV__ROUTE_INLINE },
    { "GET", "/v1/envs/{env}", srv__api_env_get, SRV__ROUTE_INLINE },
    { "GET", "/v1/envs/{env}/items/{id}", srv__api_item_get, SRV__ROUTE_INLINE },
    { "POST", "/v1/envs/{env}/sample", srv__api_sample, SRV__ROUTE_INLINE },
    { "POST", "/v1/envs/{env}/challenge", srv__api_challenge, SRV__ROUTE_INLINE },
    { "POST", "/v1/envs/{env}/score", srv__api_score, SRV__ROUTE_POOL_IF_LONG },
    { "POST", "/v1/envs/{env}/episodes", srv__api_episode_create, SRV__ROUTE_POOL_IF_LONG },
    { "POST", "/v1/episodes/{id}/step", srv__api_episode_step, SRV__ROUTE_POOL_IF_LONG },
    { "GET", "/v1/sandbox", srv__api_sandbox_info, SRV__ROUTE_INLINE },
    { "POST", "/v1/sandbox/run", srv__api_sandbox_run, SRV__ROUTE_POOL },
    /* The built-in sampler (--model): docs/api.md "Generation". */
    { "POST", "/v1/envs/{env}/rollouts", srv__api_rollouts, SRV__ROUTE_GEN },
    { "POST", "/v1/completions", srv__api_completions, SRV__ROUTE_GEN },
    { "POST", "/v1/chat/completions", srv__api_chat_completions, SRV__ROUTE_GEN },
    { "GET", "/v1/models", srv__api_models, SRV__ROUTE_INLINE },
    /* Atropos-compatible trajectory buffer (docs/trajectory.md). */
    { "POST", "/register", srv__api_register, SRV__ROUTE_INLINE },
    { "POST", "/register-env", srv__api_register_env, SRV__ROUTE_INLINE },
    { "POST", "/disconnect-env", srv__api_disconnect_env, SRV__ROUTE_INLINE },
    { "POST", "/scored_data", srv__api_scored_data, SRV__ROUTE_INLINE },
    { "POST", "/scored_data_list", srv__api_scored_data_list, SRV__ROUTE_INLINE },
    { "GET", "/batch", srv__api_batch, SRV__ROUTE_INLINE },
    { "GET", "/status", srv__api_status, SRV__ROUTE_INLINE },
    { "GET", "/status-env", srv__api_status_env, SRV__ROUTE_INLINE },
    { "GET", "/info", srv__api_info, SRV__ROUTE_INLINE },
    { "GET", "/wandb_info", srv__api_wandb_info, SRV__ROUTE_INLINE },
    { "GET", "/latest_example", srv__api_latest_example, SRV__ROUTE_INLINE },
    { "GET", "/reset_data", srv__api_reset_data, SRV__ROUTE_INLINE },
    { "POST", "/v1/policy", srv__api_policy, SRV__ROUTE_INLINE },
};
const size_t srv__n_routes = sizeof srv__routes / sizeof srv__routes[0];

/* Where one path parameter lies in the raw path. */
typedef struct span {
    const char *p;
    size_t len;
} span;

/* Matches `path` against `pattern`; on a match fills spans[] with the raw
 * parameter segments and *n with their count. */
static int match(const char *pattern, const char *path, span *spans, size_t *n)
{
    *n = 0;
    const char *pp = pattern, *up = path;
    while (*pp && *up) {
        if (*pp != '/' || *up != '/')
            return 0;
        pp++;
        up++;
        const char *pend = strchr(pp, '/');
        size_t plen = pend ? (size_t)(pend - pp) : strlen(pp);
        const char *uend = strchr(up, '/');
        size_t ulen = uend ? (size_t)(uend - up) : strlen(up);
        if (plen > 1 && pp[0] == '{' && pp[plen - 1] == '}') {
            if (ulen == 0 || *n == SRV__MAX_PARAMS)
                return 0;
            spans[*n].p = up;
            spans[*n].len = ulen;
            (*n)++;
        } else if (plen != ulen || memcmp(pp, up, plen) != 0) {
            return 0;
        }
        pp += plen;
        up += ulen;
    }
    return *pp == '\0' && *up == '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into a new string. A '%' not followed by two hex
 * digits is kept as it is (browsers and curl send such paths unchanged).
 * Returns NULL when the result would hold a NUL byte or out of memory. */
static char *decode(const char *s, size_t len, int *has_nul)
{
    *has_nul = 0;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len &&
            (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            char c = (char)(hi * 16 + lo);
            if (c == '\0') {
                *has_nul = 1;
                free(out);
                return NULL;
            }
            out[o++] = c;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

srv__handler srv__route_match(srv__request *req, srv__response *resp)
{
    span spans[SRV__MAX_PARAMS];
    size_t n = 0;
    int path_route = -1;
    char allow[sizeof resp->allow] = "";

    req->route = SRV__ROUTE_UNMATCHED;
    for (size_t r = 0; r < srv__n_routes; r++) {
        if (!match(srv__routes[r].pattern, req->path, spans, &n))
            continue;
        if (strcmp(srv__routes[r].method, req->method) != 0) {
            /* Same path, other method: remember it for the Allow header. */
            if (!strstr(allow, srv__routes[r].method) &&
                strlen(allow) + strlen(srv__routes[r].method) + 3 < sizeof allow) {
                if (allow[0])
                    strcat(allow, ", ");
                strcat(allow, srv__routes[r].method);
            }
            if (path_route < 0)
                path_route = (int)r;
            continue;
        }
        req->route = (int)r;
        for (size_t i = 0; i < n; i++) {
            if (spans[i].len > SRV__MAX_PARAM_LEN) {
                srv__reply_error(resp, 400, "bad_request",
                                 "path segment of %zu bytes is too long (at most %d)",
                                 spans[i].len, SRV__MAX_PARAM_LEN);
                return NULL;
            }
            int has_nul = 0;
            char *v = decode(spans[i].p, spans[i].len, &has_nul);
            if (!v) {
                if (has_nul)
                    srv__reply_error(resp, 400, "bad_request", "path segment decodes to a NUL byte");
                else
                    srv__reply_error(resp, 500, "internal", "out of memory");
                return NULL;
            }
            req->params[req->n_params++] = v;
        }
        return srv__routes[r].handler;
    }
    if (path_route >= 0) {
        /* Counted under the path's pattern: still a bounded label. */
        req->route = path_route;
        memcpy(resp->allow, allow, sizeof allow);
        srv__reply_error(resp, 405, "method_not_allowed", "method %.32s is not allowed on %.256s (allowed: %s)",
                         req->method, req->path, allow);
    } else {
        srv__reply_error(resp, 404, "not_found", "no route for %.32s %.256s", req->method, req->path);
    }
    return NULL;
}
