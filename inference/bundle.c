/*
 * A model bundle: weights, tokenizer and chat template found from one path,
 * so that every entry point (envsrv generate, eval, rollout, the server's
 * --model) loads models the same way and renders prompts the same way.
 *
 * Formats are told apart by what the path is: a directory with config.json
 * is a HuggingFace model, a file starting with "GGUF" is a GGUF file, any
 * other file is taken as a llama2.c checkpoint (whose loader checks the
 * header against the file size, so garbage is still refused clearly).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "inference/inference_int.h"

#define BUNDLE_MAX_TEMPLATE (1u << 20)  /* bytes of a --chat-template file */
#define BUNDLE_MAX_FILES 4096           /* files of an HF folder hashed */

struct inf_bundle {
    inf_model *model;           /* owned */
    inf_tokenizer *tok;         /* owned */
    inf_bundle_format format;
    bool has_template;          /* false: the plain "role: content" convention */
    inf_chat_template tpl;
    inf_render_fn render;       /* the caller's template, overriding tpl; NULL when none */
    void *render_payload;
    char sha256[65];
};

static const char HOW_TO[] =
    "pass --chat-template FILE.lua (a Lua function(messages) -> string), a ChatML or Llama-3 "
    "Jinja template file, or 'plain'";

/* ---- hashing ------------------------------------------------------------ */

/* Feeds the file at `path` into ctx. */
static int hash_file(EVP_MD_CTX *ctx, const char *path, inf_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return inf__fail(err, INF_EIO, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc(CHUNK);
    size_t n;
    int rc = buf ? 0 : inf__fail(err, INF_ENOMEM, "out of memory");
    while (!rc && (n = fread(buf, 1, CHUNK, f)) > 0)
        if (EVP_DigestUpdate(ctx, buf, n) != 1)
            rc = inf__fail(err, INF_ENOMEM, "%s: SHA-256 failed", path);
    if (!rc && ferror(f))
        rc = inf__fail(err, INF_EIO, "%s: read error", path);
    free(buf);
    fclose(f);
    return rc;
}

static void hex32(char out[65], const unsigned char md[32])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* SHA-256 of one file as hex. */
static int sha256_file(char out[65], const char *path, inf_error *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int mdlen = 0;
    int rc = inf__fail(err, INF_ENOMEM, "out of memory hashing %s", path);
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && !(rc = hash_file(ctx, path, err)) &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1)
        hex32(out, md);
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether `name` is one of the files that define an HF model's function. */
static bool hf_model_file(const char *name)
{
    size_t n = strlen(name);
    return !strcmp(name, "config.json") || (n > 12 && !strcmp(name + n - 12, ".safetensors"));
}

/*
 * An HF folder's hash: SHA-256 over the lines "NAME SHA256\n" of config.json
 * and every *.safetensors file, in name order. Tokenizer files are left out:
 * they do not change what the weights compute, and reports name them apart.
 */
static int sha256_hf_dir(char out[65], const char *dir, inf_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return inf__fail(err, INF_EIO, "%s: cannot open: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!hf_model_file(e->d_name))
            continue;
        char **grown = n < BUNDLE_MAX_FILES ? realloc(names, (n + 1) * sizeof *names) : NULL;
        if (!grown || !(grown[n] = strdup(e->d_name))) {
            names = grown ? grown : names;
            rc = inf__fail(err, INF_ENOMEM, "%s: too many files or out of memory", dir);
            break;
        }
        names = grown;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!rc && (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1))
        rc = inf__fail(err, INF_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        char path[4096], one[65], line[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!(rc = sha256_file(one, path, err))) {
            int len = snprintf(line, sizeof line, "%s %s\n", names[i], one);
            if (EVP_DigestUpdate(ctx, line, (size_t)len) != 1)
                rc = inf__fail(err, INF_ENOMEM, "SHA-256 failed");
        }
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!rc && EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        rc = inf__fail(err, INF_ENOMEM, "SHA-256 failed");
    if (!rc)
        hex32(out, md);
    EVP_MD_CTX_free(ctx);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- format detection and loading ---------------------------------------- */

static int detect_format(inf_bundle_format *out, const char *path, inf_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return inf__fail(err, INF_EIO, "model '%s': cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char cfg[4096];
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (access(cfg, R_OK) != 0)
            return inf__fail(err, INF_EINVALID,
                             "model '%s' is a folder without config.json: not a HuggingFace model "
                             "folder", path);
        *out = INF_BUNDLE_HF;
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return inf__fail(err, INF_EIO, "model '%s': cannot open: %s", path, strerror(errno));
    char magic[4] = { 0 };
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    *out = got == 4 && !memcmp(magic, "GGUF", 4) ? INF_BUNDLE_GGUF : INF_BUNDLE_LLAMA2C;
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* An explicit --tokenizer: tokenizer.json (or its folder), a .gguf file's
 * vocabulary, or a llama2.c tokenizer.bin sized to the model's vocabulary. */
static int load_tokenizer_path(inf_tokenizer **out, const char *path, int vocab_size, inf_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return inf__fail(err, INF_EIO, "tokenizer '%s': cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode) || ends_with(path, ".json"))
        return inf_tokenizer_load_hf(out, path, err);
    if (ends_with(path, ".gguf"))
        return inf_tokenizer_load_gguf(out, path, err);
    return inf_tokenizer_load_llama2c(out, path, vocab_size, err);
}

/* tokenizer.bin beside a llama2.c checkpoint. */
static int default_llama2c_tokenizer(char *out, size_t outlen, const char *model, inf_error *err)
{
    const char *slash = strrchr(model, '/');
    int n = slash ? snprintf(out, outlen, "%.*s/tokenizer.bin", (int)(slash - model), model)
                  : snprintf(out, outlen, "tokenizer.bin");
    if (n <= 0 || (size_t)n >= outlen)
        return inf__fail(err, INF_EINVALID, "model path is too long");
    if (access(out, R_OK) != 0)
        return inf__fail(err, INF_EIO, "no tokenizer given and %s: cannot open: %s; pass --tokenizer "
                                       "FILE", out, strerror(errno));
    return 0;
}

/* The chat template a GGUF file carries: 0 with *found set when it has a
 * recognised one, 0 with *found clear when it has none, or an error naming
 * how to pass one when it has one envsrv cannot render. */
static int gguf_template(inf_chat_template *out, bool *found, const char *path, inf_error *err)
{
    inf__gguf *g = NULL;
    int rc = inf__gguf_open(&g, path, err);
    if (rc)
        return rc;
    *found = false;
    const inf__gguf_kv *kv = inf__gguf_find(g, "tokenizer.chat_template");
    const char *s = NULL;
    size_t len = 0;
    if (kv && !(rc = inf__gguf_str(&s, &len, g, kv, err))) {
        char *text = strndup(s, len);
        if (!text)
            rc = inf__fail(err, INF_ENOMEM, "out of memory");
        else if (inf_chat_template_from_string(out, text, err) != 0)
            rc = inf__fail(err, INF_EINVALID, "%s: its tokenizer.chat_template is not one envsrv "
                                              "renders; %s", path, HOW_TO);
        else
            *found = true;
        free(text);
    }
    inf__gguf_close(g);
    return rc;
}

int inf_chat_template_load_any(inf_chat_template *tpl, bool *has_template, const char *path, inf_error *err)
{
    *has_template = false;
    memset(tpl, 0, sizeof *tpl);
    if (!strcmp(path, "plain"))
        return 0;
    if (ends_with(path, ".json")) {
        int rc = inf_chat_template_load(tpl, path, err);
        *has_template = rc == 0;
        return rc;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return inf__fail(err, INF_EIO, "chat template '%s': cannot open: %s", path, strerror(errno));
    char *text = malloc(BUNDLE_MAX_TEMPLATE + 1);
    size_t n = text ? fread(text, 1, BUNDLE_MAX_TEMPLATE + 1, f) : 0;
    fclose(f);
    int rc = 0;
    if (!text)
        rc = inf__fail(err, INF_ENOMEM, "out of memory");
    else if (n > BUNDLE_MAX_TEMPLATE)
        rc = inf__fail(err, INF_EINVALID, "chat template '%s' is over %u bytes", path,
                       BUNDLE_MAX_TEMPLATE);
    else {
        text[n] = '\0';
        if (inf_chat_template_from_string(tpl, text, err) != 0)
            rc = inf__fail(err, INF_EINVALID, "chat template '%s' is neither ChatML nor Llama-3, the "
                                              "templates envsrv renders; %s", path, HOW_TO);
        else
            *has_template = true;
    }
    free(text);
    return rc;
}

/* The template found with the model when none is given. */
static int auto_template(inf_bundle *b, const char *model_path, inf_error *err)
{
    if (b->format == INF_BUNDLE_GGUF)
        return gguf_template(&b->tpl, &b->has_template, model_path, err);
    if (b->format != INF_BUNDLE_HF)
        return 0;
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", model_path);
    json_t *j = access(cfg, R_OK) == 0 ? json_load_file(cfg, 0, NULL) : NULL;
    bool has = j && json_object_get(j, "chat_template");
    json_decref(j);
    if (!has)   /* a base model: the plain convention, as for llama2.c */
        return 0;
    if (inf_chat_template_load(&b->tpl, cfg, err) != 0)
        return inf__fail(err, INF_EINVALID, "%s: its chat_template is not one envsrv renders (ChatML, "
                                            "Llama-3); %s", cfg, HOW_TO);
    b->has_template = true;
    return 0;
}

int inf_bundle_load(inf_bundle **out, const char *model_path, const char *tokenizer_path,
                    const char *chat_template_path, inf_error *err)
{
    *out = NULL;
    inf_bundle *b = calloc(1, sizeof *b);
    if (!b)
        return inf__fail(err, INF_ENOMEM, "out of memory");
    int rc = detect_format(&b->format, model_path, err);
    char tok_path[4096];
    if (rc)
        goto done;
    switch (b->format) {
    case INF_BUNDLE_HF:
        rc = inf_model_load_hf(&b->model, model_path, err);
        if (!rc && !tokenizer_path)
            rc = inf_tokenizer_load_hf(&b->tok, model_path, err);
        if (!rc)
            rc = sha256_hf_dir(b->sha256, model_path, err);
        break;
    case INF_BUNDLE_GGUF:
        rc = inf_model_load_gguf(&b->model, model_path, err);
        if (!rc && !tokenizer_path && (rc = inf_tokenizer_load_gguf(&b->tok, model_path, err)) != 0) {
            char why[sizeof err->message];
            snprintf(why, sizeof why, "%s", err->message);
            rc = inf__fail(err, rc, "%.200s; pass --tokenizer FILE", why);
        }
        if (!rc)
            rc = sha256_file(b->sha256, model_path, err);
        break;
    case INF_BUNDLE_LLAMA2C:
        rc = inf_model_load_llama2c(&b->model, model_path, err);
        if (!rc && !tokenizer_path && !(rc = default_llama2c_tokenizer(tok_path, sizeof tok_path,
                                                                       model_path, err)))
            rc = inf_tokenizer_load_llama2c(&b->tok, tok_path, inf_model_config(b->model)->vocab_size,
                                            err);
        if (!rc)
            rc = sha256_file(b->sha256, model_path, err);
        break;
    }
    if (!rc && tokenizer_path)
        rc = load_tokenizer_path(&b->tok, tokenizer_path, inf_model_config(b->model)->vocab_size, err);
    if (!rc && inf_tokenizer_vocab_size(b->tok) > inf_model_config(b->model)->vocab_size)
        rc = inf__fail(err, INF_EINVALID, "the tokenizer has %d tokens but the model only %d",
                       inf_tokenizer_vocab_size(b->tok), inf_model_config(b->model)->vocab_size);
    if (!rc)
        rc = chat_template_path ? inf_chat_template_load_any(&b->tpl, &b->has_template, chat_template_path, err)
                                : auto_template(b, model_path, err);
done:
    if (rc)
        inf_bundle_free(b);
    else
        *out = b;
    return rc;
}

void inf_bundle_free(inf_bundle *b)
{
    if (!b)
        return;
    inf_tokenizer_free(b->tok);
    inf_model_free(b->model);
    free(b);
}

const inf_model *inf_bundle_model(const inf_bundle *b)
{
    return b->model;
}

const inf_tokenizer *inf_bundle_tokenizer(const inf_bundle *b)
{
    return b->tok;
}

const char *inf_bundle_sha256(const inf_bundle *b)
{
    return b->sha256;
}

const char *inf_bundle_format_name(const inf_bundle *b)
{
    switch (b->format) {
    case INF_BUNDLE_HF: return "hf";
    case INF_BUNDLE_GGUF: return "gguf";
    default: return "llama2c";
    }
}

void inf_bundle_set_renderer(inf_bundle *b, inf_render_fn fn, void *payload)
{
    b->render = fn;
    b->render_payload = payload;
}

const char *inf_bundle_template_name(const inf_bundle *b)
{
    if (b->render)
        return "custom";
    if (!b->has_template)
        return "plain";
    return b->tpl.family == INF_CHAT_LLAMA3 ? "llama3" : "chatml";
}

/* ---- prompts --------------------------------------------------------------- */

int inf_render_plain(char **text, size_t *len, const inf_chat_message *msgs, size_t n, inf_error *err)
{
    size_t cap = 16;
    for (size_t i = 0; i < n; i++)
        cap += strlen(msgs[i].role ? msgs[i].role : "user") +
               strlen(msgs[i].content ? msgs[i].content : "") + 3;
    char *s = malloc(cap);
    if (!s)
        return inf__fail(err, INF_ENOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s: %s\n", msgs[i].role ? msgs[i].role : "user",
                              msgs[i].content ? msgs[i].content : "");
    o += (size_t)snprintf(s + o, cap - o, "assistant:");
    *text = s;
    *len = o;
    return 0;
}

int inf_bundle_render(char **text, size_t *len, const inf_bundle *b, const inf_chat_message *msgs,
                      size_t n, inf_error *err)
{
    if (b->render)
        return b->render(text, len, msgs, n, b->render_payload, err);
    if (!b->has_template)
        return inf_render_plain(text, len, msgs, n, err);
    return inf_chat_render(text, len, &b->tpl, msgs, n, true, err);
}

int inf_bundle_encode_messages(int **ids, size_t *n_ids, const inf_bundle *b,
                               const inf_chat_message *msgs, size_t n, inf_error *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = inf_bundle_render(&text, &len, b, msgs, n, err);
    /* A template's text carries its own special tokens (and Llama 3's BOS):
     * encode them as such and add nothing, as transformers'
     * apply_chat_template does. The plain convention is ordinary text. */
    if (!rc)
        rc = inf_tokenizer_encode(ids, n_ids, b->tok, text, len,
                                  b->has_template || b->render ? INF_TOK_SPECIAL : INF_TOK_BOS, err);
    free(text);
    return rc;
}

int inf_bundle_encode_text(int **ids, size_t *n_ids, const inf_bundle *b, const char *text, size_t len,
                           inf_error *err)
{
    return inf_tokenizer_encode(ids, n_ids, b->tok, text, len, INF_TOK_BOS, err);
}
