/*
 * Built-in chat templates: ChatML (Qwen2, Qwen2.5, Qwen3) and Llama 3 / 3.1,
 * recognized from tokenizer_config.json's Jinja `chat_template` by their
 * marker tokens, and rendered in C exactly as those templates render plain
 * system/user/assistant conversations (no tools). Anything else is an error
 * that tells the user how to supply a template of their own.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "inference/inference_int.h"

#define CHAT_MAX_CONFIG (64u << 20)

/* Qwen2.5's template inserts this system message when there is none. */
static const char QWEN25_SYSTEM[] =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

#define HOW_TO "pass --chat-template FILE.lua (a Lua function(messages) -> string)"

int inf_chat_template_from_string(inf_chat_template *out, const char *jinja, inf_error *err)
{
    memset(out, 0, sizeof *out);
    if (strstr(jinja, "<|im_start|>")) {
        out->family = INF_CHAT_CHATML;
        if (strstr(jinja, QWEN25_SYSTEM))
            snprintf(out->default_system, sizeof out->default_system, "%s", QWEN25_SYSTEM);
        return 0;
    }
    if (strstr(jinja, "<|start_header_id|>")) {
        out->family = INF_CHAT_LLAMA3;
        out->llama31_dates = strstr(jinja, "Cutting Knowledge Date") != NULL;
        return 0;
    }
    return inf__fail(err, INF_EINVALID, "unsupported chat template in tokenizer_config.json; "
                                        HOW_TO);
}

int inf_chat_template_load(inf_chat_template *out, const char *path, inf_error *err)
{
    memset(out, 0, sizeof *out);
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/tokenizer_config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    if (stat(file, &st) != 0)
        return inf__fail(err, INF_EIO, "%s: cannot open: %s", file, strerror(errno));
    if (st.st_size > (off_t)CHAT_MAX_CONFIG)
        return inf__fail(err, INF_EINVALID, "%s: %lld bytes is too large", file,
                         (long long)st.st_size);
    json_error_t je;
    json_t *cfg = json_load_file(file, 0, &je);
    if (!cfg)
        return inf__fail(err, INF_EINVALID, "%s: bad JSON at line %d: %s", file, je.line,
                         je.text);
    int rc;
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_array(ct)) {    /* [{"name": "default", "template": "..."}, ...] */
        size_t i;
        json_t *e, *found = NULL;
        json_array_foreach(ct, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (name && !strcmp(name, "default"))
                found = json_object_get(e, "template");
        }
        ct = found;
    }
    if (!json_is_string(ct))
        rc = inf__fail(err, INF_EINVALID, "%s has no chat_template; " HOW_TO, file);
    else
        rc = inf_chat_template_from_string(out, json_string_value(ct), err);
    json_decref(cfg);
    return rc;
}

/* A growable string. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Jinja's |trim: strips leading and trailing white space. */
static void put_trimmed(sbuf *b, const char *s)
{
    size_t n = strlen(s), a = 0;
    while (a < n && strchr(" \t\n\r\f\v", s[a]))
        a++;
    while (n > a && strchr(" \t\n\r\f\v", s[n - 1]))
        n--;
    put(b, s + a, n - a);
}

int inf_chat_render(char **text, size_t *len, const inf_chat_template *tpl,
                    const inf_chat_message *msgs, size_t n, bool add_generation_prompt,
                    inf_error *err)
{
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content)
            return inf__fail(err, INF_EINVALID, "chat: message %zu lacks a role or content", i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return inf__fail(err, INF_EINVALID,
                             "chat: role '%.40s' is not supported by the built-in templates "
                             "(system, user, assistant); " HOW_TO,
                             r);
    }
    sbuf b = {0};
    size_t first = 0;
    if (tpl->family == INF_CHAT_CHATML) {
        /* Qwen2.5: '<|im_start|>system\n' + (messages[0] if system else the
         * default) + '<|im_end|>\n', then each message as
         * '<|im_start|>' + role + '\n' + content + '<|im_end|>\n' */
        if (n == 0 || strcmp(msgs[0].role, "system")) {
            if (tpl->default_system[0]) {
                puts_(&b, "<|im_start|>system\n");
                puts_(&b, tpl->default_system);
                puts_(&b, "<|im_end|>\n");
            }
        }
        for (size_t i = first; i < n; i++) {
            puts_(&b, "<|im_start|>");
            puts_(&b, msgs[i].role);
            puts_(&b, "\n");
            puts_(&b, msgs[i].content);
            puts_(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt)
            puts_(&b, "<|im_start|>assistant\n");
    } else if (tpl->family == INF_CHAT_LLAMA3) {
        puts_(&b, "<|begin_of_text|>");
        if (tpl->llama31_dates) {
            /* 3.1: the system message (trimmed, or "") always comes first,
             * after the knowledge cut-off and the template's default date */
            puts_(&b, "<|start_header_id|>system<|end_header_id|>\n\n"
                      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
            if (n > 0 && !strcmp(msgs[0].role, "system")) {
                put_trimmed(&b, msgs[0].content);
                first = 1;
            }
            puts_(&b, "<|eot_id|>");
        }
        for (size_t i = first; i < n; i++) {
            puts_(&b, "<|start_header_id|>");
            puts_(&b, msgs[i].role);
            puts_(&b, "<|end_header_id|>\n\n");
            put_trimmed(&b, msgs[i].content);
            puts_(&b, "<|eot_id|>");
        }
        if (add_generation_prompt)
            puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else {
        return inf__fail(err, INF_EINVALID, "chat: no template; " HOW_TO);
    }
    if (b.oom || !b.p) {
        free(b.p);
        if (b.oom)
            return inf__fail(err, INF_ENOMEM, "chat: out of memory");
        b.p = calloc(1, 1);
        if (!b.p)
            return inf__fail(err, INF_ENOMEM, "chat: out of memory");
    }
    *text = b.p;
    *len = b.n;
    return 0;
}
