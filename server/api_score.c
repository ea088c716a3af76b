/*
 * POST /v1/envs/{env}/score — the hot path of an RLVR trainer: one item, a
 * group of completions, one reward each.
 *
 * Kept lean on purpose: one srv__json_parse of the body, completions passed to
 * lenv_score as pointers into the parsed JSON (no copies), one json_dumps of
 * the answer, metrics by atomics.
 */
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* Completions up to this many use arrays on the stack; larger groups allocate. */
#define STACK_COMPLETIONS 256

/* Checks `completions` and fills texts/lens from it. Returns 0 or -1 with resp
 * filled (422 naming the element at fault). */
static int check_completions(srv__response *resp, const json_t *arr, const char **texts,
                             size_t *lens)
{
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(arr, i);
        if (!json_is_string(c)) {
            srv__reply_error(resp, 422, "invalid_field",
                             "field 'completions' must be an array of strings, element %zu is %s", i,
                             srv__json_kind(c));
            return -1;
        }
        texts[i] = json_string_value(c);
        lens[i] = json_string_length(c);
    }
    return 0;
}

/* The transcript form: {"item_id" | "item", "messages": [...]} replays a
 * dialogue the trainer ran itself through the env's reset/step (multi-turn
 * envs), so it gets the rewards envsrv would have given. */
static void score_transcript(srv__response *resp, srv__request *req, lenv_env *env, size_t idx,
                             json_t *body, json_t *messages)
{
    json_t *out = NULL, *item = NULL;
    if (!json_is_array(messages)) {
        srv__reply_error(resp, 422, "invalid_field",
                         "field 'messages' must be an array of messages, got %s", srv__json_kind(messages));
        return;
    }
    const char *item_id = NULL;
    if (srv__resolve_item(&item, &item_id, resp, req->srv, idx, body) != 0)
        return;
    lenv_error err = { 0 };
    int rc = lenv_replay(&out, env, item, messages, &err);
    json_decref(item);
    if (rc != 0) {
        srv__reply_lenv_error(resp, req->srv, idx, &err);
        return;
    }
    srv__metrics_scored(req->srv->metrics, idx, 1, json_number_value(json_object_get(out, "total")));
    if (json_object_set_new(out, "env_version", json_string(lenv_version(env))) != 0 ||
        json_object_set_new(out, "item_id", item_id ? json_string(item_id) : json_null()) != 0) {
        json_decref(out);
        srv__reply_error(resp, 500, "internal", "out of memory");
        return;
    }
    srv__reply_json(resp, 200, out);
}

void srv__api_score(srv__response *resp, srv__request *req)
{
    const char *stack_texts[STACK_COMPLETIONS];
    size_t stack_lens[STACK_COMPLETIONS];
    const char **texts = stack_texts;
    size_t *lens = stack_lens;
    json_t *out = NULL, *item = NULL;

    size_t idx;
    lenv_env *env = srv__find_env(&idx, resp, req, 0);
    if (!env)
        return;
    json_t *body = srv__parse_object(resp, req, 0);
    if (!body)
        return;

    json_t *arr = json_object_get(body, "completions");
    json_t *messages = json_object_get(body, "messages");
    if (arr && messages) {
        srv__reply_error(resp, 400, "bad_request", "give either 'completions' or 'messages', not both");
        goto done;
    }
    if (messages) {
        score_transcript(resp, req, env, idx, body, messages);
        goto done;
    }
    if (!arr) {
        srv__reply_error(resp, 400, "bad_request", "missing field 'completions' (or 'messages' for a transcript)");
        goto done;
    }
    if (!json_is_array(arr)) {
        srv__reply_error(resp, 422, "invalid_field",
                         "field 'completions' must be an array of strings, got %s", srv__json_kind(arr));
        goto done;
    }
    size_t n = json_array_size(arr);
    if (n == 0 || n > LENV_MAX_COMPLETIONS) {
        srv__reply_error(resp, 422, "invalid_field",
                         "field 'completions' must hold 1 to %d strings, got %zu", LENV_MAX_COMPLETIONS, n);
        goto done;
    }
    const char *item_id = NULL;
    if (srv__resolve_item(&item, &item_id, resp, req->srv, idx, body) != 0)
        goto done;
    if (n > STACK_COMPLETIONS) {
        texts = malloc(n * sizeof *texts);
        lens = malloc(n * sizeof *lens);
        if (!texts || !lens) {
            srv__reply_error(resp, 500, "internal", "out of memory");
            goto done;
        }
    }
    if (check_completions(resp, arr, texts, lens) != 0)
        goto done;

    lenv_error err = { 0 };
    if (lenv_score(&out, env, item, texts, lens, n, &err) != 0) {
        srv__reply_lenv_error(resp, req->srv, idx, &err);
        goto done;
    }
    double sum = 0;
    json_t *rewards = json_object_get(out, "rewards");
    for (size_t i = 0; i < json_array_size(rewards); i++)
        sum += json_number_value(json_array_get(rewards, i));
    srv__metrics_scored(req->srv->metrics, idx, n, sum);
    /* Procedural envs learn their solve rate per level from every result
     * (the curriculum); ids that are not generated ids are none of its
     * business, so its ENOTFOUND is ignored. */
    if (item_id && lenv_is_generated(env, NULL, NULL))
        for (size_t i = 0; i < json_array_size(rewards); i++)
            lenv_curriculum_record(env, item_id, json_number_value(json_array_get(rewards, i)), &err);

    if (json_object_set_new(out, "env_version", json_string(lenv_version(env))) != 0 ||
        json_object_set_new(out, "item_id", item_id ? json_string(item_id) : json_null()) != 0) {
        srv__reply_error(resp, 500, "internal", "out of memory");
        goto done;
    }
    srv__reply_json(resp, 200, out);
    out = NULL;
done:
    if (texts != stack_texts)
        free(texts);
    if (lens != stack_lens)
        free(lens);
    json_decref(out);
    json_decref(item);
    json_decref(body);
}
