/*
 * Multi-turn episodes through lenv_reset / lenv_step / lenv_replay: whole
 * games of every shipped multi-turn env (calculator, guess, wordle,
 * dialogue_tools), tools that run (results, Lua errors, schema violations,
 * unknown tools, broken JSON, the instruction limit — all tool messages, not
 * failures), episode limits, and transcript replays that give the same
 * rewards every time and on every pool state.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/lenv.h"

/* ---- helpers ---------------------------------------------------------------------- */

static lenv_env *open_env(const char *name, size_t n_states)
{
    lenv_options o = LENV_OPTIONS_INIT;
    lenv_error err;
    lenv_env *env = NULL;
    o.name_or_path = name;
    o.n_states = n_states;
    o.instruction_limit = 2000000;
    if (lenv_open(&env, &o, &err) != LENV_OK)
        fail_msg("lenv_open(%s): %s", name, err.message);
    return env;
}

/* Writes src to a temporary .lua file and opens it. */
static int open_source(lenv_env **env, const char *src, lenv_error *err)
{
    char path[] = "/tmp/envsrv_mt_XXXXXX.lua";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    lenv_options o = LENV_OPTIONS_INIT;
    o.name_or_path = path;
    o.instruction_limit = 2000000;
    int rc = lenv_open(env, &o, err);
    unlink(path);
    return rc;
}

static const json_t *item_of(lenv_env *env, const char *id)
{
    const json_t *item = NULL;
    lenv_error err;
    if (lenv_item_find(&item, env, id, &err) != LENV_OK)
        fail_msg("%s", err.message);
    return item;
}

/* An episode in progress. */
typedef struct episode {
    lenv_env *env;
    const json_t *item;
    json_t *state;
    json_t *last;   /* the last step's result */
} episode;

static json_t *start(episode *ep, lenv_env *env, const json_t *item)
{
    json_t *obs = NULL;
    lenv_error err;
    ep->env = env;
    ep->item = item;
    ep->last = NULL;
    if (lenv_reset(&obs, &ep->state, env, item, &err) != LENV_OK)
        fail_msg("reset: %s", err.message);
    return obs;
}

/* One step; returns the content of the first observation message ("" if none). */
static const char *step(episode *ep, const char *action)
{
    json_decref(ep->last);
    ep->last = NULL;
    lenv_error err;
    if (lenv_step(&ep->last, &ep->state, ep->env, ep->item, action, strlen(action), &err) != LENV_OK)
        fail_msg("step(%s): %s", action, err.message);
    const char *c = json_string_value(json_object_get(
        json_array_get(json_object_get(ep->last, "observation"), 0), "content"));
    return c ? c : "";
}

static double reward(const episode *ep) { return json_number_value(json_object_get(ep->last, "reward")); }
static int done(const episode *ep) { return json_is_true(json_object_get(ep->last, "done")); }
static const json_t *info(const episode *ep) { return json_object_get(ep->last, "info"); }

static void finish(episode *ep)
{
    json_decref(ep->last);
    json_decref(ep->state);
    ep->last = ep->state = NULL;
}

static void expect_prefix(const char *got, const char *want)
{
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want it to start with \"%s\"", got, want);
}

#define CALC(expr) "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"" expr "\"}}</tool_call>"
/* The same inside a JSON string. */
#define CALC_JSON(expr) "<tool_call>{\\\"name\\\": \\\"calculator\\\", \\\"arguments\\\": {\\\"expression\\\": \\\"" expr "\\\"}}</tool_call>"

/* ---- calculator ---------------------------------------------------------------------- */

static void test_multiturn_calculator__tool_then_answer(void **state)
{
    (void)state;
    lenv_env *env = open_env("calculator", 1);
    json_t *d = lenv_describe(env, 0);
    assert_true(json_is_true(json_object_get(d, "multi_turn")));
    const json_t *tool = json_array_get(json_object_get(d, "tools"), 0);
    assert_string_equal(json_string_value(json_object_get(tool, "type")), "function");
    assert_string_equal(json_string_value(json_object_get(json_object_get(tool, "function"), "name")),
                        "calculator");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "limits"), "max_turns")), 8);
    json_decref(d);
    lenv_limits lim;
    lenv_get_limits(&lim, env);
    assert_int_equal(lim.max_chars, 20000);
    assert_int_equal(lim.idle_timeout_s, LENV_DEFAULT_IDLE_TIMEOUT);

    const json_t *item = item_of(env, "apples");
    json_t *view = NULL;
    lenv_error err;
    assert_int_equal(lenv_item_view(&view, env, item, 0, &err), LENV_OK);
    assert_int_equal(json_array_size(json_object_get(view, "tools")), 1);
    json_decref(view);

    episode ep;
    json_t *obs = start(&ep, env, item);
    assert_int_equal(json_array_size(obs), 2);
    json_decref(obs);
    assert_non_null(json_object_get(ep.state, "_envsrv"));

    assert_string_equal(step(&ep, "Let me compute. " CALC("48 * 17 - 529")), "287");
    assert_false(done(&ep));
    assert_true(reward(&ep) == 0.0);
    const json_t *msg = json_array_get(json_object_get(ep.last, "observation"), 0);
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "tool");
    assert_string_equal(json_string_value(json_object_get(msg, "name")), "calculator");
    assert_string_equal(json_string_value(json_object_get(msg, "tool_call_id")), "call_1_0");
    assert_true(json_is_true(json_object_get(json_array_get(json_object_get(info(&ep), "tool_calls"), 0), "ok")));

    step(&ep, "Answer: 287");
    assert_true(done(&ep));
    assert_true(reward(&ep) > 0.9499 && reward(&ep) < 0.9501); /* one call at 0.05 */
    assert_true(json_is_true(json_object_get(info(&ep), "correct")));
    /* The episode is over: another step is the caller's mistake. */
    json_t *res = NULL;
    assert_int_equal(lenv_step(&res, &ep.state, env, item, "Answer: 287", 11, &err), LENV_EINVALID);
    assert_non_null(strstr(err.message, "over"));
    finish(&ep);

    /* Two calls in one turn, then a wrong answer. */
    json_decref(start(&ep, env, item_of(env, "tickets")));
    step(&ep, CALC("1245*18") "\n" CALC("312 * 27"));
    assert_int_equal(json_array_size(json_object_get(ep.last, "observation")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(
                            json_object_get(ep.last, "observation"), 1), "content")), "8424");
    step(&ep, "Answer: 30000");
    assert_true(done(&ep) && reward(&ep) == 0.0);
    finish(&ep);
    lenv_free(env);
}

static void test_multiturn_calculator__tool_errors(void **state)
{
    (void)state;
    lenv_env *env = open_env("calculator", 1);
    episode ep;
    json_decref(start(&ep, env, item_of(env, "train")));
    /* A Lua error in the tool, without the env file's position. */
    assert_string_equal(step(&ep, CALC("378/0")), "error: division by zero");
    assert_false(done(&ep));
    expect_prefix(step(&ep, CALC("2 +* 3")), "error: expected a number at position 3");
    /* Schema violations, with paths. */
    const char *c = step(&ep, "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expr\": \"1+1\"}}</tool_call>");
    assert_string_equal(c, "error: invalid arguments: $: missing required property 'expression'; "
                           "$.expr: unexpected property 'expr'");
    const json_t *rec = json_array_get(json_object_get(info(&ep), "tool_calls"), 0);
    assert_int_equal(json_array_size(json_object_get(rec, "violations")), 2);
    assert_true(json_is_false(json_object_get(rec, "ok")));
    c = step(&ep, "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": 42}}</tool_call>");
    assert_string_equal(c, "error: invalid arguments: $.expression: expected string, got integer");
    /* Unknown tool and broken JSON. */
    assert_string_equal(step(&ep, "<tool_call>{\"name\": \"python\", \"arguments\": {}}</tool_call>"),
                        "error: unknown tool 'python' (tools: calculator)");
    expect_prefix(step(&ep, "<tool_call>{\"name\": \"calculator\", \"arguments\": {</tool_call>"),
                  "error: could not read the tool call: tool call 1: invalid JSON");
    /* Still playing: six turns so far, two left. */
    assert_string_equal(step(&ep, CALC("378 / 4.5")), "84");
    step(&ep, "The answer is 84.");
    assert_true(done(&ep));
    assert_true(reward(&ep) > 0.9499 && reward(&ep) < 0.9501); /* only calls that worked cost */
    assert_int_equal(json_integer_value(json_object_get(info(&ep), "calls")), 1);
    finish(&ep);
    lenv_free(env);
}

static void test_multiturn_calculator__limits(void **state)
{
    (void)state;
    lenv_env *env = open_env("calculator", 1);
    episode ep;
    /* max_turns = 8: eight tool turns end the episode with the reason. */
    json_decref(start(&ep, env, item_of(env, "fuel")));
    for (int i = 0; i < 8; i++)
        step(&ep, CALC("1+1"));
    assert_true(done(&ep));
    assert_string_equal(json_string_value(json_object_get(info(&ep), "limit")), "max_turns");
    assert_true(reward(&ep) == 0.0);
    finish(&ep);
    /* max_chars = 20000: a long action ends it before the env sees it. */
    json_decref(start(&ep, env, item_of(env, "fuel")));
    char *big = malloc(25001);
    memset(big, 'x', 25000);
    big[25000] = '\0';
    step(&ep, big);
    assert_true(done(&ep));
    assert_string_equal(json_string_value(json_object_get(info(&ep), "limit")), "max_chars");
    free(big);
    finish(&ep);
    lenv_free(env);
}

/* ---- guess, wordle, dialogue_tools ------------------------------------------------------ */

static void test_multiturn_guess__binary_search(void **state)
{
    (void)state;
    lenv_env *env = open_env("guess", 1);
    const char *ids[] = {"g1", "g2", "g3", "g4", "g5", "g6"};
    for (size_t k = 0; k < 6; k++) {
        const json_t *item = item_of(env, ids[k]);
        long lo = json_integer_value(json_object_get(item, "low"));
        long hi = json_integer_value(json_object_get(item, "high"));
        episode ep;
        json_decref(start(&ep, env, item));
        int turns = 0;
        for (;;) {
            char buf[64];
            long mid = (lo + hi) / 2;
            snprintf(buf, sizeof buf, "My guess: %ld", mid);
            const char *hint = step(&ep, buf);
            turns++;
            if (done(&ep))
                break;
            if (strcmp(hint, "Higher.") == 0)
                lo = mid + 1;
            else if (strcmp(hint, "Lower.") == 0)
                hi = mid - 1;
            else
                fail_msg("unexpected hint %s", hint);
        }
        assert_true(reward(&ep) > 1.0 - turns / 10.0 + 0.0999 - 0.001);
        assert_true(reward(&ep) < 1.0 - turns / 10.0 + 0.1001);
        finish(&ep);
    }
    /* Not a number: a hint, the turn counts; running out of turns ends it. */
    episode ep;
    json_decref(start(&ep, env, item_of(env, "g1")));
    assert_string_equal(step(&ep, "hmm"), "That is not a whole number. Guess again.");
    for (int i = 0; i < 9; i++)
        step(&ep, "50");
    assert_true(done(&ep));
    assert_string_equal(json_string_value(json_object_get(info(&ep), "limit")), "max_turns");
    finish(&ep);
    lenv_free(env);
}

static void test_multiturn_wordle__feedback(void **state)
{
    (void)state;
    lenv_env *env = open_env("wordle", 1);
    episode ep;
    json_decref(start(&ep, env, item_of(env, "w5"))); /* eerie */
    assert_string_equal(step(&ep, "there"), "THERE ..YYG");
    assert_string_equal(step(&ep, "I will try EMBER"), "EMBER G..YY");
    assert_string_equal(step(&ep, "no word"), "Reply with a five-letter word.");
    step(&ep, "eerie");
    assert_true(done(&ep));
    assert_true(reward(&ep) > 0.6666 && reward(&ep) < 0.6667); /* the third guess */
    assert_int_equal(json_integer_value(json_object_get(info(&ep), "guesses")), 3);
    finish(&ep);
    json_decref(start(&ep, env, item_of(env, "w1"))); /* crane */
    step(&ep, "crane");
    assert_true(done(&ep) && reward(&ep) == 1.0);
    finish(&ep);
    lenv_free(env);
}

/* Plays dialogue_tools: find_product, then quote, then the answer. */
static void test_multiturn_dialogue_tools__two_calls(void **state)
{
    (void)state;
    lenv_env *env = open_env("dialogue_tools", 1);
    const char *ids[] = {"shop-1", "shop-2", "shop-3", "shop-4", "shop-5", "shop-6"};
    for (size_t k = 0; k < 6; k++) {
        const json_t *item = item_of(env, ids[k]);
        lenv_error err;
        json_t *view = NULL;
        assert_int_equal(lenv_item_view(&view, env, item, 1, &err), LENV_OK);
        assert_int_equal(json_array_size(json_object_get(view, "tools")), 2);
        const char *want = json_string_value(json_object_get(view, "answer"));
        episode ep;
        json_t *obs = start(&ep, env, item);
        const char *q = json_string_value(json_object_get(json_array_get(obs, 1), "content"));
        int qty = 0;
        char name[64] = "";
        assert_int_equal(sscanf(q, "I need %d of the %63[^.].", &qty, name), 2);
        char buf[512];
        snprintf(buf, sizeof buf, "<tool_call>{\"name\": \"find_product\", \"arguments\": {\"name\": \"%s\"}}</tool_call>", name);
        json_t *found = json_loads(step(&ep, buf), 0, NULL);
        if (found == NULL)
            fail_msg("find_product: %s", step(&ep, buf));
        const char *code = json_string_value(json_object_get(found, "code"));
        assert_non_null(code);
        /* A wrong code and a wrong type first: tool errors. */
        assert_string_equal(step(&ep, "<tool_call>{\"name\": \"quote\", \"arguments\": {\"code\": \"P-x\", \"quantity\": 2}}</tool_call>"),
                            "error: unknown product code 'P-x'");
        assert_string_equal(step(&ep, "<tool_call>{\"name\": \"quote\", \"arguments\": {\"code\": \"P-x\", \"quantity\": 0}}</tool_call>"),
                            "error: invalid arguments: $.quantity: 0 is less than the minimum 1");
        snprintf(buf, sizeof buf, "{\"name\": \"quote\", \"arguments\": {\"code\": \"%s\", \"quantity\": %d}}", code, qty);
        json_t *quote = json_loads(step(&ep, buf), 0, NULL);
        const char *total = json_string_value(json_object_get(quote, "total"));
        assert_non_null(total);
        assert_string_equal(total, want);
        snprintf(buf, sizeof buf, "Answer: %s", total);
        step(&ep, buf);
        assert_true(done(&ep));
        assert_true(reward(&ep) == 1.0);
        assert_int_equal(json_array_size(json_object_get(info(&ep), "quotes")), 1);
        json_decref(found);
        json_decref(quote);
        json_decref(obs);
        json_decref(view);
        finish(&ep);
    }
    lenv_free(env);
}

/* ---- tools in a user's env -------------------------------------------------------------- */

static const char *const TOOLS_ENV =
    "return { name = 'toolbox', prompt = function() return {} end,\n"
    "  tools = {\n"
    "    { name = 'spin', description = 'never ends', run = function(args, state) while true do end end },\n"
    "    { name = 'boom', run = function() error({ code = 1 }) end },\n"
    "    { name = 'fn', run = function() return function() end end },\n"
    "    { name = 'count', parameters = { type = 'object', properties = { by = { type = 'integer' } } },\n"
    "      run = function(args, state) state.n = state.n + (args.by or 1); return { n = state.n } end },\n"
    "    { name = 'doc_only', description = 'described, not run' },\n"
    "  },\n"
    "  reset = function(item, state) state.n = 0; return { { role = 'user', content = 'go' } } end,\n"
    "  step = function(item, state, action) return { reward = state.n, done = true } end }\n";

static void test_multiturn_tools__failures_are_tool_messages(void **state)
{
    (void)state;
    lenv_env *env = NULL;
    lenv_error err;
    if (open_source(&env, TOOLS_ENV, &err) != LENV_OK)
        fail_msg("open: %s", err.message);
    json_t *item = json_object();
    episode ep;
    json_decref(start(&ep, env, item));
    expect_prefix(step(&ep, "{\"name\": \"spin\"}"), "error: instruction limit exceeded");
    /* The budget is whole again for the next call in the same turn and after. */
    step(&ep, "<tool_call>{\"name\": \"spin\"}</tool_call><tool_call>{\"name\": \"count\", \"arguments\": {\"by\": 2}}</tool_call>");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(ep.last, "observation"), 1), "content")),
                        "{\"n\":2}");
    assert_string_equal(step(&ep, "{\"name\": \"boom\"}"), "error: the tool raised an error that is not a string");
    expect_prefix(step(&ep, "{\"name\": \"fn\"}"), "error: the tool returned a value that is not JSON");
    expect_prefix(step(&ep, "{\"name\": \"doc_only\"}"), "error: tool 'doc_only' is only described");
    assert_string_equal(step(&ep, "{\"name\": \"count\"}"), "{\"n\":3}");
    step(&ep, "done");
    assert_true(done(&ep) && reward(&ep) == 3.0);
    finish(&ep);
    json_decref(item);
    lenv_free(env);

    /* Declarations are checked at load. */
    const char *bad[][2] = {
        {"tools = { { name = 'a b', run = function() end } }", "tools[1].name must match"},
        {"tools = { { name = 'a' }, { name = 'a' } }", "declared twice"},
        {"tools = { { name = 'a', parameters = 3 } }", "parameters must be a JSON Schema"},
        {"tools = { { name = 'a', colour = 1 } }", "unknown field 'colour'"},
        {"tools = 'x'", "definition field 'tools' must be a table"},
        {"limits = { max_turns = 0 }", "limits.max_turns must be an integer"},
        {"limits = { turns = 3 }", "unknown field 'turns'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char src[512];
        snprintf(src, sizeof src, "return { name = 'bad', prompt = function() return {} end, "
                 "reward = function() return 0 end, %s }", bad[i][0]);
        lenv_env *e = NULL;
        assert_int_equal(open_source(&e, src, &err), LENV_EINVALID);
        if (strstr(err.message, bad[i][1]) == NULL)
            fail_msg("%s: %s", bad[i][0], err.message);
        assert_null(e);
    }
}

/* ---- replay ------------------------------------------------------------------------------ */

static json_t *replay(lenv_env *env, const json_t *item, const char *transcript)
{
    json_t *msgs = json_loads(transcript, 0, NULL);
    assert_non_null(msgs);
    json_t *out = NULL;
    lenv_error err;
    if (lenv_replay(&out, env, item, msgs, &err) != LENV_OK)
        fail_msg("replay: %s", err.message);
    json_decref(msgs);
    return out;
}

static const char *const CALC_TRANSCRIPT =
    "[{\"role\": \"system\", \"content\": \"ignored\"}, {\"role\": \"user\", \"content\": \"q\"},"
    " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\","
    "   \"function\": {\"name\": \"calculator\", \"arguments\": \"{\\\"expression\\\": \\\"2961/3-87\\\"}\"}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"900\"},"
    " {\"role\": \"assistant\", \"content\": \"<tool_call>{\\\"name\\\": \\\"calculator\\\", \\\"arguments\\\": {\\\"expression\\\": \\\"1/0\\\"}}</tool_call>\"},"
    " {\"role\": \"tool\", \"content\": \"error: division by zero\"},"
    " {\"role\": \"assistant\", \"content\": \"Answer: 900\"},"
    " {\"role\": \"assistant\", \"content\": \"extra\"}]";

static void test_multiturn_replay__deterministic(void **state)
{
    (void)state;
    lenv_env *env = open_env("calculator", 3);
    const json_t *item = item_of(env, "share");
    json_t *first = replay(env, item, CALC_TRANSCRIPT);
    const json_t *rewards = json_object_get(first, "rewards");
    assert_int_equal(json_array_size(rewards), 3);
    assert_true(json_number_value(json_array_get(rewards, 0)) == 0.0);
    assert_true(json_number_value(json_array_get(rewards, 2)) > 0.9499);
    assert_true(json_number_value(json_object_get(first, "total")) < 0.9501);
    assert_true(json_is_true(json_object_get(first, "done")));
    assert_string_equal(json_string_value(json_object_get(first, "reason")), "done");
    assert_int_equal(json_integer_value(json_object_get(first, "ignored")), 1);
    const json_t *call1 = json_array_get(json_object_get(json_array_get(json_object_get(first, "infos"), 1),
                                                         "tool_calls"), 0);
    assert_string_equal(json_string_value(json_object_get(call1, "error")), "division by zero");
    /* The same transcript, many times, with three pool states taking turns
     * and other episodes in between: the same result to the bit. */
    for (int i = 0; i < 6; i++) {
        json_t *other = replay(env, item_of(env, "apples"), "[{\"role\": \"assistant\", \"content\": \"" CALC_JSON("1+1") "\"}]");
        json_decref(other);
        json_t *again = replay(env, item, CALC_TRANSCRIPT);
        assert_true(json_equal(first, again));
        json_decref(again);
    }
    json_decref(first);

    /* Incomplete, over the turn limit, malformed. */
    json_t *out = replay(env, item, "[{\"role\": \"assistant\", \"content\": \"" CALC_JSON("3") "\"}]");
    assert_string_equal(json_string_value(json_object_get(out, "reason")), "incomplete");
    assert_true(json_is_false(json_object_get(out, "done")));
    json_decref(out);
    char many[4096] = "[";
    for (int i = 0; i < 10; i++)
        strcat(many, i ? ", {\"role\": \"assistant\", \"content\": \"hmm\"}" : "{\"role\": \"assistant\", \"content\": \"" "<tool_call>{\\\"name\\\": \\\"calculator\\\", \\\"arguments\\\": {\\\"expression\\\": \\\"2\\\"}}</tool_call>" "\"}");
    strcat(many, "]");
    lenv_env *guess = open_env("guess", 2);
    out = replay(guess, item_of(guess, "g1"), many);
    assert_string_equal(json_string_value(json_object_get(out, "reason")), "max_turns");
    assert_int_equal(json_integer_value(json_object_get(out, "steps")), 10);
    json_decref(out);
    lenv_error err;
    const char *bad[] = {"{}", "[1]", "[{\"content\": \"x\"}]",
                         "[{\"role\": \"assistant\", \"content\": 5}]",
                         "[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {}}]}]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *m = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        out = (json_t *)1;
        assert_int_equal(lenv_replay(&out, env, item, m, &err), LENV_EINVALID);
        assert_null(out);
        json_decref(m);
    }
    lenv_free(guess);
    lenv_free(env);
}

static void test_multiturn_replay__single_turn_and_wordle(void **state)
{
    (void)state;
    /* A single-turn env: the first assistant message is the completion. */
    lenv_env *env = open_env("tools", 1);
    json_t *out = replay(env, item_of(env, "simple_python_sample_1"),
                         "[{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"x\","
                         " \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"convert_temperature\","
                         " \"arguments\": {\"value\": 100, \"from_unit\": \"F\", \"to_unit\": \"C\"}}}]}]");
    assert_true(json_number_value(json_object_get(out, "total")) == 1.0);
    assert_string_equal(json_string_value(json_object_get(out, "reason")), "done");
    json_decref(out);
    lenv_free(env);
    env = open_env("wordle", 2);
    const char *t = "[{\"role\": \"assistant\", \"content\": \"plumb\"}, {\"role\": \"user\", \"content\": \"PLUMB ....Y\"},"
                    " {\"role\": \"assistant\", \"content\": \"Maybe sheep? No: bread\"}, {\"role\": \"assistant\", \"content\": \"fjord\"}]";
    json_t *a = replay(env, item_of(env, "w4"), t);
    json_t *b = replay(env, item_of(env, "w4"), t);
    assert_true(json_equal(a, b));
    assert_true(json_number_value(json_object_get(a, "total")) > 0.6666 &&
                json_number_value(json_object_get(a, "total")) < 0.6667);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(a, "infos"), 1), "marks")),
                        ".Y..G"); /* "bread": the last five-letter word */
    json_decref(a);
    json_decref(b);
    lenv_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multiturn_calculator__tool_then_answer),
        cmocka_unit_test(test_multiturn_calculator__tool_errors),
        cmocka_unit_test(test_multiturn_calculator__limits),
        cmocka_unit_test(test_multiturn_guess__binary_search),
        cmocka_unit_test(test_multiturn_wordle__feedback),
        cmocka_unit_test(test_multiturn_dialogue_tools__two_calls),
        cmocka_unit_test(test_multiturn_tools__failures_are_tool_messages),
        cmocka_unit_test(test_multiturn_replay__deterministic),
        cmocka_unit_test(test_multiturn_replay__single_turn_and_wordle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
