/*
 * Validation of scored groups for the trajectory buffer: the Atropos
 * ScoredData schema, made strict (every field's type, row lengths that match
 * 'tokens', token ids within the vocabulary, lengths within the trainer's and
 * the env's max_token_len), with an error that names the group, the sequence
 * and the field. Pure functions of the group and the limits: no state.
 */
#include <math.h>
#include <stdio.h>

#include "server/server_int.h"

#define MASK_PROMPT (-100)           /* Atropos's mask value for prompt positions */

/* Checks an optional per-token float array field: null, or n rows each null
 * or an array of numbers as long as tokens[i]. */
static int check_rows(const json_t *g, const char *field, const json_t *tokens, size_t gi, char *err,
                      size_t errlen)
{
    json_t *f = json_object_get(g, field);
    if (!f || json_is_null(f))
        return 0;
    size_t n = json_array_size(tokens);
    if (!json_is_array(f) || json_array_size(f) != n) {
        snprintf(err, errlen, "group %zu: field '%s' must be an array of %zu rows (one per sequence), got %s", gi,
                 field, n, json_is_array(f) ? "another length" : srv__json_kind(f));
        return -1;
    }
    for (size_t s = 0; s < n; s++) {
        json_t *row = json_array_get(f, s);
        if (json_is_null(row))
            continue;
        size_t len = json_array_size(json_array_get(tokens, s));
        if (!json_is_array(row) || json_array_size(row) != len) {
            snprintf(err, errlen, "group %zu, sequence %zu: field '%s' has %zu entries but 'tokens' has %zu", gi,
                     s, field, json_array_size(row), len);
            return -1;
        }
        for (size_t k = 0; k < len; k++) {
            if (!json_is_number(json_array_get(row, k))) {
                snprintf(err, errlen, "group %zu, sequence %zu: field '%s' entry %zu must be a number, got %s",
                         gi, s, field, k, srv__json_kind(json_array_get(row, k)));
                return -1;
            }
        }
    }
    return 0;
}

int srv__group_check(long long *env_id, const json_t *g, size_t gi, const srv__group_limits *lim, char *err,
                     size_t errlen)
{
    if (!json_is_object(g)) {
        snprintf(err, errlen, "group %zu must be an object, got %s", gi, srv__json_kind(g));
        return -1;
    }
    json_t *tokens = json_object_get(g, "tokens"), *masks = json_object_get(g, "masks"),
           *scores = json_object_get(g, "scores");
    const char *missing = !tokens ? "tokens" : !masks ? "masks" : !scores ? "scores" : NULL;
    if (missing) {
        snprintf(err, errlen, "group %zu: missing field '%s'", gi, missing);
        return -1;
    }
    size_t n = json_array_size(tokens);
    if (!json_is_array(tokens) || n == 0) {
        snprintf(err, errlen, "group %zu: field 'tokens' must be a non-empty array of sequences, got %s", gi,
                 json_is_array(tokens) ? "an empty one" : srv__json_kind(tokens));
        return -1;
    }
    if (!json_is_array(masks) || json_array_size(masks) != n) {
        snprintf(err, errlen, "group %zu: field 'masks' must hold %zu sequences like 'tokens', got %s", gi, n,
                 json_is_array(masks) ? "another count" : srv__json_kind(masks));
        return -1;
    }
    if (!json_is_array(scores) || json_array_size(scores) != n) {
        snprintf(err, errlen, "group %zu: field 'scores' must hold %zu numbers (one per sequence), got %s", gi, n,
                 json_is_array(scores) ? "another count" : srv__json_kind(scores));
        return -1;
    }
    json_t *eid = json_object_get(g, "env_id");
    *env_id = -1;
    if (eid && !json_is_null(eid)) {
        if (!json_is_integer(eid) || json_integer_value(eid) < 0 ||
            (size_t)json_integer_value(eid) >= lim->n_envs) {
            snprintf(err, errlen, "group %zu: field 'env_id' must be a registered env id (0 to %zu), got %s", gi,
                     lim->n_envs ? lim->n_envs - 1 : 0, json_is_integer(eid) ? "an unknown one" : srv__json_kind(eid));
            return -1;
        }
        *env_id = json_integer_value(eid);
    }
    long long maxlen = lim->max_token_len;
    if (*env_id >= 0 && *env_id < SRV__BUFFER_MAX_ENVS && lim->env_max[*env_id] > 0 &&
        (maxlen == 0 || lim->env_max[*env_id] < maxlen))
        maxlen = lim->env_max[*env_id];
    for (size_t s = 0; s < n; s++) {
        json_t *tok = json_array_get(tokens, s), *msk = json_array_get(masks, s);
        json_t *sc = json_array_get(scores, s);
        if (!json_is_number(sc) || !isfinite(json_number_value(sc))) {
            snprintf(err, errlen, "group %zu, sequence %zu: field 'scores' must be a finite number, got %s", gi, s,
                     srv__json_kind(sc));
            return -1;
        }
        size_t len = json_array_size(tok);
        if (!json_is_array(tok) || len == 0) {
            snprintf(err, errlen, "group %zu, sequence %zu: field 'tokens' must be a non-empty array of ids", gi, s);
            return -1;
        }
        if (maxlen > 0 && (long long)len > maxlen) {
            snprintf(err, errlen, "group %zu, sequence %zu: field 'tokens' has %zu tokens, over max_token_len %lld",
                     gi, s, len, maxlen);
            return -1;
        }
        if (!json_is_array(msk) || json_array_size(msk) != len) {
            snprintf(err, errlen, "group %zu, sequence %zu: field 'masks' has %zu entries but 'tokens' has %zu", gi,
                     s, json_array_size(msk), len);
            return -1;
        }
        for (size_t k = 0; k < len; k++) {
            json_t *t = json_array_get(tok, k), *m = json_array_get(msk, k);
            long long tv = json_integer_value(t), mv = json_integer_value(m);
            if (!json_is_integer(t) || tv < 0 || tv >= lim->vocab) {
                snprintf(err, errlen, "group %zu, sequence %zu: field 'tokens' entry %zu is %s, not a token id "
                         "from 0 to %lld", gi, s, k, json_is_integer(t) ? "out of range" : srv__json_kind(t),
                         lim->vocab - 1);
                return -1;
            }
            if (!json_is_integer(m) || (mv != MASK_PROMPT && (mv < 0 || mv >= lim->vocab))) {
                snprintf(err, errlen, "group %zu, sequence %zu: field 'masks' entry %zu must be -100 or a token "
                         "id, got %s", gi, s, k, json_is_integer(m) ? "an out-of-range number" : srv__json_kind(m));
                return -1;
            }
        }
    }
    if (check_rows(g, "advantages", tokens, gi, err, errlen) || check_rows(g, "ref_logprobs", tokens, gi, err, errlen) ||
        check_rows(g, "inference_logprobs", tokens, gi, err, errlen))
        return -1;
    static const char *const per_seq[] = { "messages", "overrides" };
    for (size_t i = 0; i < 2; i++) {
        json_t *f = json_object_get(g, per_seq[i]);
        if (f && !json_is_null(f) && (!json_is_array(f) || json_array_size(f) != n)) {
            snprintf(err, errlen, "group %zu: field '%s' must be an array of %zu entries (one per sequence) or null",
                     gi, per_seq[i], n);
            return -1;
        }
    }
    json_t *msgs = json_object_get(g, "messages");
    for (size_t s = 0; json_is_array(msgs) && s < n; s++) {
        json_t *list = json_array_get(msgs, s), *m;
        size_t k;
        if (!json_is_array(list)) {
            snprintf(err, errlen, "group %zu, sequence %zu: field 'messages' must be a list of messages, got %s", gi,
                     s, srv__json_kind(list));
            return -1;
        }
        json_array_foreach(list, k, m) {
            if (!json_is_object(m) || !json_object_get(m, "role") || !json_object_get(m, "content")) {
                snprintf(err, errlen, "group %zu, sequence %zu: field 'messages' entry %zu must be an object with "
                         "'role' and 'content'", gi, s, k);
                return -1;
            }
        }
    }
    static const char *const objs[] = { "generation_params", "group_overrides" };
    for (size_t i = 0; i < 2; i++) {
        json_t *f = json_object_get(g, objs[i]);
        if (f && !json_is_null(f) && !json_is_object(f)) {
            snprintf(err, errlen, "group %zu: field '%s' must be an object or null, got %s", gi, objs[i],
                     srv__json_kind(f));
            return -1;
        }
    }
    json_t *pv = json_object_get(g, "policy_version");
    if (pv && !json_is_null(pv) && !json_is_integer(pv)) {
        snprintf(err, errlen, "group %zu: field 'policy_version' must be an integer or null, got %s", gi,
                 srv__json_kind(pv));
        return -1;
    }
    return 0;
}

int srv__group_is_flat(const json_t *g)
{
    json_t *scores = json_object_get(g, "scores");
    double first = json_number_value(json_array_get(scores, 0));
    for (size_t i = 1; i < json_array_size(scores); i++)
        if (json_number_value(json_array_get(scores, i)) != first)
            return 0;
    return 1;
}
