/*
 * The `envsrv` table that environment code sees.
 *
 *   envsrv.verify.*   the C verifiers (verifiers/verifiers.h)
 *   envsrv.json.*     encode / decode / null
 *
 * Adding a part: write its functions with their stack effects, put them in a
 * luaL_Reg array and add a row to module_parts below. Each part becomes a
 * read-only subtable. C functions here must release whatever C memory they
 * hold before raising a Lua error: the `guard` userdata below does that for
 * JSON values, whose __gc frees them if an error skips the normal path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"
#include "verifiers/verifiers.h"

/* ---- envsrv.verify ---------------------------------------------------------- */

/* envsrv.verify.gsm8k(completion, reference) -> number, table [-2, +2, e]
 * The reward (1.0 or 0.0) and {extracted = text of the matched number (absent
 * when none), value = its canonical form (absent when none), source =
 * "boxed"|"hashes"|"phrase"|"last_number"|"none", expected = canonical
 * reference}. A reference without a number is an error (bad data). */
static int l_verify_gsm8k(lua_State *L)
{
    size_t clen, rlen;
    const char *c = luaL_checklstring(L, 1, &clen);
    const char *r = luaL_checklstring(L, 2, &rlen);
    vf_gsm8k_result res;
    if (vf_gsm8k_score(&res, c, clen, r, rlen) != 0)
        return luaL_error(L, "envsrv.verify.gsm8k: the reference answer has no number");
    lua_pushnumber(L, res.reward);
    lua_createtable(L, 0, 4);
    if (res.got.source != VF_SOURCE_NONE) {
        if (res.got.start <= clen && res.got.len <= clen - res.got.start) {
            lua_pushlstring(L, c + res.got.start, res.got.len);
            lua_setfield(L, -2, "extracted");
        }
        lua_pushstring(L, res.got.value);
        lua_setfield(L, -2, "value");
    }
    lua_pushstring(L, vf_answer_source_name(res.got.source));
    lua_setfield(L, -2, "source");
    lua_pushstring(L, res.want.value);
    lua_setfield(L, -2, "expected");
    return 2;
}

/* envsrv.verify.number(text) -> string | nil [-1, +1, e]
 * The canonical value when the whole text is one number ("1,200.50" -> "2401/2"). */
static int l_verify_number(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char value[VF_VALUE_MAX];
    if (vf_number_parse(value, sizeof value, s, len) != 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, value);
    return 1;
}

/* envsrv.verify.extract_number(completion) -> string | nil, string [-1, +2, e]
 * The canonical final answer of a completion and where it was found. */
static int l_verify_extract_number(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    vf_number_answer a;
    vf_number_extract(&a, s, len);
    if (a.source == VF_SOURCE_NONE)
        lua_pushnil(L);
    else
        lua_pushstring(L, a.value);
    lua_pushstring(L, vf_answer_source_name(a.source));
    return 2;
}

/* envsrv.verify.numbers_equal(a, b) -> boolean [-2, +1, e]
 * True when both texts are numbers with the same exact value ("0.5", "1/2"). */
static int l_verify_numbers_equal(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    char va[VF_VALUE_MAX], vb[VF_VALUE_MAX];
    lua_pushboolean(L, vf_number_parse(va, sizeof va, a, alen) == 0 &&
                           vf_number_parse(vb, sizeof vb, b, blen) == 0 && strcmp(va, vb) == 0);
    return 1;
}

/* envsrv.verify.math(completion, reference) -> number, table [-2, +2, e]
 * MATH-style equivalence (verifiers/math_*.c). The reference is a bare answer
 * (MATH's `answer` field) or a full solution (its last \boxed{} is used). The
 * reward (1.0 or 0.0) and {extracted = answer text found in the completion
 * (absent when none), normalized = its normalized form, expected = the
 * reference's normalized form, reason = "equal"|"not_equal"|"no_answer"|
 * "unparsable_answer"}. A reference with no parsable answer is an error (bad
 * data), unless the completion's answer is the very same text. The result
 * struct is about 3 KiB, so it lives on the C stack only for this call. */
static int l_verify_math(lua_State *L)
{
    size_t clen, rlen;
    const char *c = luaL_checklstring(L, 1, &clen);
    const char *r = luaL_checklstring(L, 2, &rlen);
    vf_math_result res;
    if (vf_math_score(&res, c, clen, r, rlen) != 0)
        return luaL_error(L, "envsrv.verify.math: the reference has no parsable answer");
    lua_pushnumber(L, res.reward);
    lua_createtable(L, 0, 4);
    if (res.got[0]) {
        lua_pushstring(L, res.got);
        lua_setfield(L, -2, "extracted");
        lua_pushstring(L, res.got_norm);
        lua_setfield(L, -2, "normalized");
    }
    lua_pushstring(L, res.want_norm);
    lua_setfield(L, -2, "expected");
    lua_pushstring(L, res.reason);
    lua_setfield(L, -2, "reason");
    return 2;
}

/* envsrv.verify.math_equal(a, b) -> boolean [-2, +1, e]
 * Whether two bare answers are equivalent ("\frac{1}{2}" and "0.5": true). */
static int l_verify_math_equal(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    int equal = 0;
    vf_math_equal(&equal, a, alen, b, blen);
    lua_pushboolean(L, equal);
    return 1;
}

/* ---- tool calls ------------------------------------------------------------ */

#define GUARD_META "envsrv.guard"

/* C memory a function holds while it may raise: freed by __gc if it does. */
typedef struct guard {
    json_t *json;
    char *text;
} guard;

/* [-0, +1, m] */
static guard *push_guard(lua_State *L)
{
    guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->json = NULL;
    g->text = NULL;
    luaL_setmetatable(L, GUARD_META);
    return g;
}

/* The Lua value at idx as JSON, held by a new guard pushed on the stack;
 * raises "envsrv.verify.FN: WHAT is not JSON: ..." otherwise. [-0, +1, e] */
static json_t *guarded_json(lua_State *L, int idx, const char *fn, const char *what)
{
    char err[160];
    guard *g = push_guard(L);
    g->json = lenv__to_json(L, idx, 0, err, sizeof err);
    if (g->json == NULL)
        luaL_error(L, "envsrv.verify.%s: %s is not JSON: %s", fn, what, err);
    return g->json;
}

/* envsrv.verify.tool_calls(completion) -> calls | nil, reason [-1, +1|2, e]
 * The calls in a completion, {{name = "f", arguments = {...}}, ...}, in the
 * formats vf_tool_calls_parse reads; nil and "no tool call" when there is
 * none, nil and the reason when one is broken. */
static int l_verify_tool_calls(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char reason[VF_TOOL_REASON_MAX];
    guard *g = push_guard(L);
    int rc = vf_tool_calls_parse(&g->json, s, len, reason, sizeof reason);
    if (rc == -2)
        return luaL_error(L, "envsrv.verify.tool_calls: out of memory");
    if (rc != 0 || json_array_size(g->json) == 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc != 0 ? reason : "no tool call");
        return 2;
    }
    lenv__push_json(L, g->json);
    json_decref(g->json);
    g->json = NULL;
    return 1;
}

/* envsrv.verify.bfcl(completion, functions, ground_truth [, {partial = bool}])
 *   -> number, table [-3|4, +2, e]
 * BFCL's AST match (vf_bfcl_score): the reward and {valid, reason, message,
 * calls_expected, calls_given, calls_right, params_right, params_total}.
 * Malformed functions or ground truth is an error (bad data). */
static int l_verify_bfcl(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    int partial = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_getfield(L, 4, "partial");
        partial = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    json_t *functions = guarded_json(L, 2, "bfcl", "functions");
    json_t *gt = guarded_json(L, 3, "bfcl", "ground_truth");
    vf_bfcl_result r;
    int rc = vf_bfcl_score(&r, s, len, functions, gt, partial);
    if (rc != 0)
        return luaL_error(L, "envsrv.verify.bfcl: %s", r.message);
    lua_pushnumber(L, r.reward);
    lua_createtable(L, 0, 8);
    lua_pushboolean(L, r.valid);
    lua_setfield(L, -2, "valid");
    lua_pushstring(L, r.reason);
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, r.message);
    lua_setfield(L, -2, "message");
    const struct { const char *k; size_t v; } counts[] = {
        {"calls_expected", r.calls_expected}, {"calls_given", r.calls_given},
        {"calls_right", r.calls_right}, {"params_right", r.params_right},
        {"params_total", r.params_total},
    };
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        lua_pushinteger(L, (lua_Integer)counts[i].v);
        lua_setfield(L, -2, counts[i].k);
    }
    return 2;
}

/* envsrv.verify.schema(value, schema) -> boolean, table [-2, +2, e]
 * Whether value fits the JSON Schema (vf_schema_validate), and the list of
 * violations {{path = "$.a[1]", message = "..."}, ...} (at most 32). */
static int l_verify_schema(lua_State *L)
{
    luaL_checkany(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    json_t *value = guarded_json(L, 1, "schema", "the value");
    json_t *schema = guarded_json(L, 2, "schema", "the schema");
    guard *g = push_guard(L);
    if ((g->json = json_array()) == NULL)
        return luaL_error(L, "envsrv.verify.schema: out of memory");
    int n = vf_schema_validate(g->json, value, schema, 32);
    if (n < 0)
        return luaL_error(L, "envsrv.verify.schema: out of memory");
    lua_pushboolean(L, n == 0);
    lenv__push_json(L, g->json);
    return 2;
}

static const luaL_Reg verify_funcs[] = {
    {"tool_calls", l_verify_tool_calls},
    {"bfcl", l_verify_bfcl},
    {"schema", l_verify_schema},
    {"gsm8k", l_verify_gsm8k},
    {"number", l_verify_number},
    {"extract_number", l_verify_extract_number},
    {"numbers_equal", l_verify_numbers_equal},
    {"math", l_verify_math},
    {"math_equal", l_verify_math_equal},
    {NULL, NULL},
};

/* ---- envsrv.json -------------------------------------------------------------- */

/* [-1, +0, -] */
static int guard_gc(lua_State *L)
{
    guard *g = luaL_checkudata(L, 1, GUARD_META);
    json_decref(g->json);
    free(g->text);
    g->json = NULL;
    g->text = NULL;
    return 0;
}

/* envsrv.json.encode(value) -> string [-1, +1, e]
 * Compact JSON; see convert.c for how tables map to arrays and objects. */
static int l_json_encode(lua_State *L)
{
    char err[160];
    luaL_checkany(L, 1);
    guard *g = push_guard(L);
    g->json = lenv__to_json(L, 1, 0, err, sizeof err);
    if (g->json == NULL)
        return luaL_error(L, "envsrv.json.encode: %s", err);
    g->text = json_dumps(g->json, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(g->json);
    g->json = NULL;
    if (g->text == NULL)
        return luaL_error(L, "envsrv.json.encode: out of memory");
    lua_pushstring(L, g->text);
    free(g->text);
    g->text = NULL;
    return 1;
}

/* envsrv.json.decode(text) -> value [-1, +1, e]
 * Any JSON value; errors with Jansson's message and position on bad JSON. */
static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    guard *g = push_guard(L);
    json_error_t jerr;
    g->json = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (g->json == NULL)
        return luaL_error(L, "envsrv.json.decode: %s at line %d column %d", jerr.text, jerr.line,
                          jerr.column);
    lenv__push_json(L, g->json);
    json_decref(g->json);
    g->json = NULL;
    return 1;
}

static const luaL_Reg json_funcs[] = {
    {"encode", l_json_encode},
    {"decode", l_json_decode},
    {NULL, NULL},
};

/* ---- envsrv.text ---------------------------------------------------------------- */

/* envsrv.text.clean(s [, n]) -> string [-1|2, +1, e]
 * The last n bytes of s (all of it without n) as valid UTF-8: every byte
 * that does not start a well-formed sequence becomes '?'. For program output
 * and other foreign text that goes into details, which must convert to JSON. */
static int l_text_clean(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_optinteger(L, 2, (lua_Integer)len);
    luaL_argcheck(L, n >= 0, 2, "must not be negative");
    if ((lua_Integer)len > n) {
        s += len - (size_t)n;
        len = (size_t)n;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < len;) {
        size_t run = i;
        while (run < len && s[run] < 0x80)
            run++;
        luaL_addlstring(&b, (const char *)s + i, run - i);
        if (run == len)
            break;
        size_t seq = lenv__utf8_seq(s + run, len - run);
        if (seq)
            luaL_addlstring(&b, (const char *)s + run, seq);
        else
            luaL_addchar(&b, '?');
        i = run + (seq ? seq : 1);
    }
    luaL_pushresult(&b);
    return 1;
}

static const luaL_Reg text_funcs[] = {
    {"clean", l_text_clean},
    {NULL, NULL},
};

/* ---- the module --------------------------------------------------------------- */

static const struct {
    const char *name;
    const luaL_Reg *funcs;
} module_parts[] = {
    {"verify", verify_funcs},
    {"json", json_funcs},
    {"text", text_funcs},
    {"sandbox", lenv__sandbox_funcs}, {"code", lenv__code_funcs},
    {"git", lenv__git_funcs},
    {NULL, NULL},
};

void lenv__module_init(lua_State *L)
{
    if (luaL_newmetatable(L, GUARD_META)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

void lenv__push_module(lua_State *L)
{
    lua_newtable(L);
    int mod = lua_gettop(L);
    for (size_t i = 0; module_parts[i].name; i++) {
        lua_newtable(L);
        luaL_setfuncs(L, module_parts[i].funcs, 0);
        if (strcmp(module_parts[i].name, "json") == 0) {
            lenv__push_null(L);
            lua_setfield(L, -2, "null");
        }
        char name[64];
        snprintf(name, sizeof name, "envsrv.%s", module_parts[i].name);
        lenv__push_readonly(L, -1, name);
        lua_setfield(L, mod, module_parts[i].name);
        lua_pop(L, 1);
    }
    lenv__push_readonly(L, mod, "envsrv");
    lua_remove(L, mod);
}
