/*
 * lenv_replay: rewards for a whole transcript, by playing its assistant
 * turns through lenv_reset / lenv_step (see lenv.h). Built on the public
 * episode API alone, so a replay is exactly the episode the server would
 * have run: same seeds, same tools, same limits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

/* The action of one assistant message: its content, then its OpenAI
 * tool_calls as <tool_call> blocks (the format the tool parser reads first).
 * New string in *out; returns 0 or an LENV_E* code with err filled. */
static int action_of(char **out, size_t *len, const json_t *msg, size_t index, lenv_error *err)
{
    *out = NULL;
    const json_t *content = json_object_get(msg, "content");
    const json_t *calls = json_object_get(msg, "tool_calls");
    if (content && !json_is_string(content) && !json_is_null(content))
        return lenv__fail(err, LENV_EINVALID, "transcript message %zu: content must be a string",
                          index);
    if (calls && !json_is_array(calls))
        return lenv__fail(err, LENV_EINVALID, "transcript message %zu: tool_calls must be a list",
                          index);
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    if (json_is_string(content))
        fwrite(json_string_value(content), 1, json_string_length(content), f);
    size_t i;
    json_t *c;
    int rc = LENV_OK;
    json_array_foreach(calls, i, c) {
        const json_t *fn = json_object_get(c, "function");
        const json_t *name = json_object_get(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        if (!json_is_string(name)) {
            rc = lenv__fail(err, LENV_EINVALID, "transcript message %zu: tool call %zu has no "
                            "function.name", index, i);
            break;
        }
        /* Arguments as the model sent them: JSON text (OpenAI) or an object. */
        char *text = json_is_string(args) || args == NULL
                         ? NULL
                         : json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        char *nm = json_dumps(name, JSON_ENCODE_ANY);
        fprintf(f, "%s<tool_call>{\"name\": %s, \"arguments\": %s}</tool_call>",
                (size || i) ? "\n" : "", nm ? nm : "\"\"",
                json_is_string(args) ? json_string_value(args) : text ? text : "{}");
        free(text);
        free(nm);
    }
    if (fclose(f) != 0 && rc == LENV_OK)
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
    if (rc != LENV_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = size;
    return LENV_OK;
}

int lenv_replay(json_t **out, lenv_env *env, const json_t *item, const json_t *messages,
                lenv_error *err)
{
    *out = NULL;
    if (!json_is_array(messages))
        return lenv__fail(err, LENV_EINVALID, "a transcript must be a list of messages");
    if (json_array_size(messages) > LENV_MAX_TRANSCRIPT)
        return lenv__fail(err, LENV_ELIMIT, "at most %d messages per transcript, got %zu",
                          LENV_MAX_TRANSCRIPT, json_array_size(messages));
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
            return lenv__fail(err, LENV_EINVALID, "transcript message %zu must be an object with "
                              "a string 'role'", i);

    json_t *obs = NULL, *state = NULL, *result = NULL;
    json_t *res = json_object(), *rewards = json_array(), *infos = json_array();
    int rc;
    if (res == NULL || rewards == NULL || infos == NULL ||
        json_object_set(res, "rewards", rewards) || json_object_set(res, "infos", infos)) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = lenv_reset(&obs, &state, env, item, err)) != LENV_OK)
        goto done;
    double total = 0;
    int finished = 0;
    const char *reason = "incomplete";
    size_t steps = 0, ignored = 0;
    json_array_foreach(messages, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "role")), "assistant") != 0)
            continue;
        if (finished) {
            ignored++;
            continue;
        }
        char *action = NULL;
        size_t len = 0;
        if ((rc = action_of(&action, &len, m, i, err)) != LENV_OK)
            goto done;
        rc = lenv_step(&result, &state, env, item, action, len, err);
        free(action);
        if (rc != LENV_OK)
            goto done;
        steps++;
        double r = json_number_value(json_object_get(result, "reward"));
        total += r;
        const json_t *info = json_object_get(result, "info");
        if (json_array_append_new(rewards, json_real(r)) != 0 ||
            json_array_append_new(infos, info ? json_incref((json_t *)info) : json_object()) != 0) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
        if (json_is_true(json_object_get(result, "done"))) {
            finished = 1;
            const char *limit = json_string_value(json_object_get(info, "limit"));
            reason = limit && lenv_is_multi_turn(env) ? limit : "done";
        }
        json_decref(result);
        result = NULL;
    }
    json_t *reason_v = json_string(reason);
    if (json_object_set_new(res, "total", json_real(total)) ||
        json_object_set_new(res, "done", json_boolean(finished)) ||
        json_object_set_new(res, "reason", reason_v) ||
        json_object_set_new(res, "steps", json_integer((json_int_t)steps)) ||
        json_object_set_new(res, "ignored", json_integer((json_int_t)ignored))) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    *out = res;
    res = NULL;
    rc = LENV_OK;
done:
    json_decref(res);
    json_decref(rewards);
    json_decref(infos);
    json_decref(obs);
    json_decref(state);
    json_decref(result);
    return rc;
}
