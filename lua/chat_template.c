/*
 * Chat templates written in Lua: `--chat-template FILE.lua`, where the file
 * returns function(messages) -> string. This is the way to use a model whose
 * Jinja template envsrv does not recognise (it renders only ChatML and
 * Llama 3 itself): write the few lines that template produces.
 *
 *   -- mistral.lua
 *   return function(messages)
 *     local out = { "<s>" }
 *     for _, m in ipairs(messages) do
 *       if m.role == "user" then out[#out + 1] = "[INST] " .. m.content .. " [/INST]"
 *       else out[#out + 1] = m.content .. "</s>" end
 *     end
 *     return table.concat(out)
 *   end
 *
 * The function runs in the same sandbox as environment code (no io, no os,
 * an instruction budget and a memory cap), in a state of its own guarded by
 * a mutex, so one template may serve every thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lenv_int.h"

#define TEMPLATE_MEMORY       (64u << 20)
#define TEMPLATE_INSTRUCTIONS 50000000ULL
#define TEMPLATE_MAX_FILE     (1u << 20)

struct lenv_chat_template {
    lenv__state st;
    pthread_mutex_t lock;
};

int lenv_chat_template_open(lenv_chat_template **out, const char *path, lenv_error *err)
{
    *out = NULL;
    char *src = NULL, *wrapped = NULL;
    size_t len = 0;
    int rc = lenv__read_file(&src, &len, path, err);
    if (rc != 0)
        return rc;
    if (len > TEMPLATE_MAX_FILE) {
        free(src);
        return lenv__fail(err, LENV_ELIMIT, "chat template '%s' is over %u bytes", path, TEMPLATE_MAX_FILE);
    }
    /* The sandbox runs definition files, which return a table: wrap the
     * file so its function becomes the table's `render`. The prefix adds no
     * newline, so Lua's line numbers still match the file's. */
    static const char head[] = "return { render = (function() ", tail[] = "\nend)() }";
    lenv_chat_template *t = calloc(1, sizeof *t);
    wrapped = malloc(sizeof head + len + sizeof tail);
    if (!t || !wrapped) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    size_t n = 0;
    memcpy(wrapped, head, sizeof head - 1);
    n += sizeof head - 1;
    memcpy(wrapped + n, src, len);
    n += len;
    memcpy(wrapped + n, tail, sizeof tail - 1);
    n += sizeof tail - 1;
    rc = lenv__state_open(&t->st, wrapped, n, path, TEMPLATE_MEMORY, TEMPLATE_INSTRUCTIONS, err);
    if (rc != 0)
        goto done;
    lua_rawgeti(t->st.L, LUA_REGISTRYINDEX, t->st.ref_def);
    int is_fn = lua_getfield(t->st.L, -1, "render") == LUA_TFUNCTION;
    lua_settop(t->st.L, 0);
    if (!is_fn) {
        lenv__state_close(&t->st);
        rc = lenv__fail(err, LENV_EINVALID, "chat template '%s' must return function(messages) -> string", path);
        goto done;
    }
    pthread_mutex_init(&t->lock, NULL);
    *out = t;
    t = NULL;
done:
    free(t);
    free(wrapped);
    free(src);
    return rc;
}

void lenv_chat_template_free(lenv_chat_template *t)
{
    if (!t)
        return;
    lenv__state_close(&t->st);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

typedef struct render_ctx {
    const json_t *messages;
    char *text;
    size_t len;
} render_ctx;

/* Calls render(messages) and copies the string out. [-0, +0, e] */
static int render_impl(lua_State *L)
{
    render_ctx *c = lua_touserdata(L, 1);
    lenv__state *st = lenv__state_of(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_def);
    lua_getfield(L, -1, "render");
    lenv__push_json(L, c->messages);
    lenv__arm(L, 0);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        return lenv__raise(L, LENV_ESCRIPT, 0, "the chat template returned %s, not a string",
                           luaL_typename(L, -1));
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    c->text = malloc(len + 1);
    if (!c->text)
        return lenv__raise(L, LENV_ENOMEM, 0, "out of memory");
    memcpy(c->text, s, len);
    c->text[len] = '\0';
    c->len = len;
    return 0;
}

int lenv_chat_template_render(char **text, size_t *len, lenv_chat_template *t, const json_t *messages,
                              lenv_error *err)
{
    render_ctx c = { messages, NULL, 0 };
    pthread_mutex_lock(&t->lock);
    int rc = lenv__state_pcall(&t->st, render_impl, &c, err);
    pthread_mutex_unlock(&t->lock);
    if (rc != 0) {
        free(c.text);
        return rc;
    }
    *text = c.text;
    *len = c.len;
    return 0;
}
