/*
 * JSON <-> Lua values.
 *
 * JSON to Lua: objects become tables with string keys (members that are null
 * are left out, so they read as nil), arrays become sequences 1..n (a null
 * element becomes envsrv.json.null so the length stays right), integers
 * become Lua integers, reals Lua floats.
 *
 * Lua to JSON: a table whose keys are exactly the integers 1..n is an array;
 * any other non-empty table is an object, whose keys must be strings or
 * integers (integers are written in decimal: {[5] = "x"} gives {"5": "x"}),
 * and members are written in byte order of their keys.
 * An EMPTY table is ambiguous; it converts to {} except where the caller
 * expects a list (prompt messages, observations: LENV__EMPTY_ARRAY), where
 * it is []. nil and envsrv.json.null are null; floats must be finite; strings
 * must be valid UTF-8. Both directions stop at LENV__MAX_DEPTH, which is also
 * what ends a table that contains itself.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

/* The address of this byte is envsrv.json.null (a light userdata). */
static const char null_tag = 0;

void lenv__push_null(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&null_tag);
}

int lenv__is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &null_tag;
}

/* ---- JSON -> Lua ------------------------------------------------------------ */

static void push_json(lua_State *L, const json_t *v, int depth)
{
    if (depth > LENV__MAX_DEPTH)
        luaL_error(L, "JSON nested deeper than %d levels", LENV__MAX_DEPTH);
    luaL_checkstack(L, 4, "JSON nested too deeply");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        void *it = json_object_iter((json_t *)v);
        for (; it; it = json_object_iter_next((json_t *)v, it)) {
            const json_t *m = json_object_iter_value(it);
            if (json_is_null(m))
                continue;
            lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
            push_json(L, m, depth + 1);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(v, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
    default:
        lenv__push_null(L);
        break;
    }
}

void lenv__push_json(lua_State *L, const json_t *v)
{
    push_json(L, v, 0);
}

int lenv__json_depth(const json_t *v, int limit)
{
    int deepest = 0;
    if (limit < 0)
        return 1;
    if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) {
            int d = 1 + lenv__json_depth(m, limit - 1);
            if (d > deepest)
                deepest = d;
            if (deepest > limit)
                break;
        }
        return deepest ? deepest : 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) {
            int d = 1 + lenv__json_depth(m, limit - 1);
            if (d > deepest)
                deepest = d;
            if (deepest > limit)
                break;
        }
        return deepest ? deepest : 1;
    }
    return 0;
}

/* ---- Lua -> JSON ------------------------------------------------------------ */

size_t lenv__utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2; cp = c & 0x1f; min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3; cp = c & 0x0f; min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4; cp = c & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int lenv__utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* ASCII runs dominate model output: skip 8 bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = lenv__utf8_seq(s + i, n - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

typedef struct conv {
    lua_State *L;
    char *err;
    size_t errcap;
} conv;

static json_t *conv_fail(conv *c, const char *fmt, const char *arg)
{
    snprintf(c->err, c->errcap, fmt, arg);
    return NULL;
}

static json_t *to_json(conv *c, int idx, unsigned flags, int depth);

/* One member of an object being converted. */
typedef struct member {
    const char *key; /* a string key on the Lua stack, or NULL: use num */
    size_t len;
    int vidx;        /* stack index of the value */
    char num[24];    /* an integer key, in decimal */
} member;

static const char *member_key(const member *m)
{
    return m->key ? m->key : m->num;
}

static int cmp_member(const void *a, const void *b)
{
    const member *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(member_key(x), member_key(y), n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Members are written in key order: lua_next's order depends on the state's
 * string hash seed, and one (env, item, completion) must give the same bytes
 * whichever pool state ran it. Keys and values stay on the Lua stack while
 * the members are sorted. */
static json_t *object_to_json(conv *c, int idx, size_t n, int depth)
{
    lua_State *L = c->L;
    member small[16], *m = small;
    json_t *obj = NULL;
    int base = lua_gettop(L);
    if (n > 200000 || !lua_checkstack(L, (int)(2 * n) + 8))
        return conv_fail(c, "%s", "table has too many keys to convert to JSON");
    if (n > sizeof small / sizeof *small && (m = malloc(n * sizeof *m)) == NULL)
        return conv_fail(c, "%s", "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx))
        lua_pushvalue(L, -2); /* keep key and value; the copy drives lua_next */
    for (size_t i = 0; i < n; i++) {
        int k = base + 1 + 2 * (int)i;
        m[i].vidx = k + 1;
        if (lua_type(L, k) == LUA_TSTRING) {
            m[i].key = lua_tolstring(L, k, &m[i].len);
            if (!lenv__utf8_valid(m[i].key, m[i].len)) {
                conv_fail(c, "%s", "table key is not valid UTF-8");
                goto done;
            }
        } else if (lua_isinteger(L, k)) {
            m[i].key = NULL;
            m[i].len = (size_t)snprintf(m[i].num, sizeof m[i].num, "%" PRId64,
                                        (int64_t)lua_tointeger(L, k));
        } else {
            conv_fail(c, "a table key of type %s cannot be a JSON object key", luaL_typename(L, k));
            goto done;
        }
    }
    qsort(m, n, sizeof *m, cmp_member);
    if ((obj = json_object()) == NULL) {
        conv_fail(c, "%s", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = to_json(c, m[i].vidx, 0, depth + 1);
        if (v == NULL || json_object_setn_new_nocheck(obj, member_key(&m[i]), m[i].len, v) != 0) {
            if (v)
                conv_fail(c, "%s", "out of memory");
            json_decref(obj);
            obj = NULL;
            goto done;
        }
    }
done:
    lua_settop(L, base);
    if (m != small)
        free(m);
    return obj;
}

static json_t *table_to_json(conv *c, int idx, unsigned flags, int depth)
{
    lua_State *L = c->L;
    if (depth >= LENV__MAX_DEPTH) {
        snprintf(c->err, c->errcap, "table nested deeper than %d levels (or containing itself)",
                 LENV__MAX_DEPTH);
        return NULL;
    }
    if (!lua_checkstack(L, 4))
        return conv_fail(c, "%s", "Lua stack exhausted while converting a table");
    /* Count entries; the table is an array when its keys are exactly 1..n. */
    lua_Integer n = 0, max = 0;
    int all_int = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        n++;
        if (all_int && lua_isinteger(L, -2)) {
            lua_Integer k = lua_tointeger(L, -2);
            if (k < 1)
                all_int = 0;
            else if (k > max)
                max = k;
        } else {
            all_int = 0;
        }
        lua_pop(L, 1);
    }
    if (n == 0)
        return (flags & LENV__EMPTY_ARRAY) ? json_array() : json_object();
    if (all_int && max == n) {
        json_t *arr = json_array();
        if (arr == NULL)
            return conv_fail(c, "%s", "out of memory");
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            json_t *v = to_json(c, lua_gettop(L), 0, depth + 1);
            lua_pop(L, 1);
            if (v == NULL || json_array_append_new(arr, v) != 0) {
                json_decref(arr);
                return v ? conv_fail(c, "%s", "out of memory") : NULL;
            }
        }
        return arr;
    }
    return object_to_json(c, idx, (size_t)n, depth);
}

static json_t *to_json(conv *c, int idx, unsigned flags, int depth)
{
    lua_State *L = c->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx)))
            return conv_fail(c, "%s", "number is not finite (nan or inf)");
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!lenv__utf8_valid(s, len))
            return conv_fail(c, "%s", "string is not valid UTF-8");
        json_t *v = json_stringn_nocheck(s, len);
        return v ? v : conv_fail(c, "%s", "out of memory");
    }
    case LUA_TTABLE:
        return table_to_json(c, idx, flags, depth);
    case LUA_TLIGHTUSERDATA:
        if (lenv__is_null(L, idx))
            return json_null();
        /* fall through */
    default:
        return conv_fail(c, "a %s value cannot be converted to JSON", luaL_typename(L, idx));
    }
}

json_t *lenv__to_json(lua_State *L, int idx, unsigned flags, char *err, size_t errcap)
{
    conv c = {L, err, errcap};
    int top = lua_gettop(L);
    json_t *v = to_json(&c, lua_absindex(L, idx), flags, 0);
    lua_settop(L, top);
    return v;
}
