/*
 * A GGUF reader (versions 2 and 3): header, metadata key/values of every type,
 * tensor infos. The file is mapped read-only and walked once; every length,
 * count and offset is checked against the file size before it is used, so a
 * truncated or corrupt file gives an error naming the key or tensor where it
 * went wrong, never a read past the end or an allocation sized by garbage.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv;
 * n_kv x (string key, u32 type, value); n_tensors x (string name, u32 n_dims,
 * u64 dims[n_dims], u32 ggml type, u64 offset); padding to general.alignment
 * (default 32); tensor data. A string is a u64 length and that many bytes; an
 * array is a u32 element type, a u64 count and the elements.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inference/inference_int.h"

#define GGUF_MAX_KV       (1u << 20)
#define GGUF_MAX_TENSORS  (1u << 20)
#define GGUF_MAX_STRING   (1u << 30)

static const size_t scalar_size[INF__GGUF_NTYPES] = {
    [INF__GGUF_U8] = 1,  [INF__GGUF_I8] = 1,  [INF__GGUF_U16] = 2, [INF__GGUF_I16] = 2,
    [INF__GGUF_U32] = 4, [INF__GGUF_I32] = 4, [INF__GGUF_F32] = 4, [INF__GGUF_BOOL] = 1,
    [INF__GGUF_U64] = 8, [INF__GGUF_I64] = 8, [INF__GGUF_F64] = 8,
};

typedef struct reader {
    const inf__gguf *g;
    size_t at;
    inf_error *err;
} reader;

static int need(reader *r, uint64_t n, const char *what)
{
    if (n > r->g->size - r->at)
        return inf__fail(r->err, INF_EINVALID, "%s: truncated: %s at offset %zu needs %llu bytes",
                         r->g->path, what, r->at, (unsigned long long)n);
    return 0;
}

static int rd_u32(reader *r, uint32_t *v, const char *what)
{
    int rc = need(r, 4, what);
    if (rc)
        return rc;
    memcpy(v, r->g->map + r->at, 4);
    r->at += 4;
    return 0;
}

static int rd_u64(reader *r, uint64_t *v, const char *what)
{
    int rc = need(r, 8, what);
    if (rc)
        return rc;
    memcpy(v, r->g->map + r->at, 8);
    r->at += 8;
    return 0;
}

static int rd_str(reader *r, const char **s, size_t *len, const char *what)
{
    uint64_t n;
    int rc = rd_u64(r, &n, what);
    if (rc)
        return rc;
    if (n > GGUF_MAX_STRING)
        return inf__fail(r->err, INF_EINVALID, "%s: %s has absurd length %llu", r->g->path, what,
                         (unsigned long long)n);
    if ((rc = need(r, n, what)) != 0)
        return rc;
    *s = (const char *)r->g->map + r->at;
    *len = (size_t)n;
    r->at += (size_t)n;
    return 0;
}

/* Skips one value of `type` (not an array), checking it fits. */
static int skip_value(reader *r, uint32_t type, const char *what)
{
    if (type == INF__GGUF_STRING) {
        const char *s;
        size_t n;
        return rd_str(r, &s, &n, what);
    }
    int rc = need(r, scalar_size[type], what);
    if (!rc)
        r->at += scalar_size[type];
    return rc;
}

static int parse_kv(reader *r, inf__gguf_kv *kv)
{
    char what[96];
    int rc = rd_str(r, &kv->key, &kv->key_len, "metadata key");
    if (rc)
        return rc;
    snprintf(what, sizeof what, "value of '%.*s'", (int)(kv->key_len > 60 ? 60 : kv->key_len),
             kv->key);
    if ((rc = rd_u32(r, &kv->type, what)) != 0)
        return rc;
    if (kv->type >= INF__GGUF_NTYPES)
        return inf__fail(r->err, INF_EINVALID, "%s: %s has unknown type %u", r->g->path, what,
                         kv->type);
    kv->count = 1;
    if (kv->type != INF__GGUF_ARRAY) {
        kv->offset = r->at;
        return skip_value(r, kv->type, what);
    }
    if ((rc = rd_u32(r, &kv->elem_type, what)) != 0 || (rc = rd_u64(r, &kv->count, what)) != 0)
        return rc;
    if (kv->elem_type >= INF__GGUF_NTYPES || kv->elem_type == INF__GGUF_ARRAY)
        return inf__fail(r->err, INF_EINVALID, "%s: %s is an array of unsupported type %u",
                         r->g->path, what, kv->elem_type);
    kv->offset = r->at;
    if (kv->elem_type != INF__GGUF_STRING) {
        /* count * size must fit in what is left: checked without overflow */
        size_t es = scalar_size[kv->elem_type];
        if (kv->count > (r->g->size - r->at) / es)
            return inf__fail(r->err, INF_EINVALID,
                             "%s: truncated: %s claims %llu elements, the file has room for "
                             "%zu",
                             r->g->path, what, (unsigned long long)kv->count,
                             (r->g->size - r->at) / es);
        r->at += (size_t)kv->count * es;
        return 0;
    }
    if (kv->count > (r->g->size - r->at) / 8)
        return inf__fail(r->err, INF_EINVALID, "%s: truncated: %s claims %llu strings", r->g->path,
                         what, (unsigned long long)kv->count);
    for (uint64_t i = 0; i < kv->count; i++)
        if ((rc = skip_value(r, INF__GGUF_STRING, what)) != 0)
            return rc;
    return 0;
}

/* Bytes of a tensor of `type` with `n` elements, or 0 for types we do not read. */
static uint64_t tensor_bytes(uint32_t type, uint64_t n)
{
    switch (type) {
    case INF__GGML_F32: return n * 4;
    case INF__GGML_F16:
    case INF__GGML_BF16: return n * 2;
    case INF__GGML_Q8_0: return n % 32 ? 0 : n / 32 * 34;
    default: return 0;
    }
}

int inf__gguf_open(inf__gguf **out, const char *path, inf_error *err)
{
    int rc = INF_EIO;
    int fd = -1;
    inf__gguf *g = calloc(1, sizeof *g);
    *out = NULL;
    if (!g)
        return inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
    snprintf(g->path, sizeof g->path, "%s", path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = inf__fail(err, INF_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = inf__fail(err, INF_EIO, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_size < 24) {
        rc = inf__fail(err, INF_EINVALID, "%s: truncated: %lld bytes is shorter than a GGUF "
                                          "header", path, (long long)st.st_size);
        goto done;
    }
    g->size = (size_t)st.st_size;
    void *map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = inf__fail(err, INF_EIO, "%s: cannot map: %s", path, strerror(errno));
        goto done;
    }
    g->map = map;
    reader r = {g, 4, err};
    if (memcmp(g->map, "GGUF", 4) != 0) {
        rc = inf__fail(err, INF_EINVALID, "%s: not a GGUF file (bad magic)", path);
        goto done;
    }
    if ((rc = rd_u32(&r, &g->version, "version")) != 0 ||
        (rc = rd_u64(&r, &g->n_tensors, "tensor count")) != 0 ||
        (rc = rd_u64(&r, &g->n_kv, "metadata count")) != 0)
        goto done;
    if (g->version != 2 && g->version != 3) {
        rc = inf__fail(err, INF_EINVALID, "%s: GGUF version %u is not supported (2 or 3)", path,
                       g->version);
        goto done;
    }
    if (g->n_kv > GGUF_MAX_KV || g->n_tensors > GGUF_MAX_TENSORS) {
        rc = inf__fail(err, INF_EINVALID, "%s: absurd counts: %llu metadata entries, %llu tensors",
                       path, (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
        goto done;
    }
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(&r, &g->kv[i])) != 0)
            goto done;

    uint64_t align = 32;
    const inf__gguf_kv *ak = inf__gguf_find(g, "general.alignment");
    if (ak) {
        int64_t a;
        if ((rc = inf__gguf_int(&a, g, ak, err)) != 0)
            goto done;
        if (a < 1 || a > 65536 || (a & (a - 1)) != 0) {
            rc = inf__fail(err, INF_EINVALID, "%s: general.alignment %lld is not a power of two",
                           path, (long long)a);
            goto done;
        }
        align = (uint64_t)a;
    }
    uint64_t *offsets = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *offsets);
    if (!offsets) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        inf__gguf_tensor *t = &g->tensors[i];
        if ((rc = rd_str(&r, &t->name, &t->name_len, "tensor name")) != 0 ||
            (rc = rd_u32(&r, &t->n_dims, "tensor dims")) != 0)
            break;
        if (t->n_dims < 1 || t->n_dims > 4) {
            rc = inf__fail(err, INF_EINVALID, "%s: tensor '%.*s' has %u dimensions (1 to 4)",
                           path, (int)(t->name_len > 60 ? 60 : t->name_len), t->name, t->n_dims);
            break;
        }
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims && !rc; d++) {
            if ((rc = rd_u64(&r, &t->dims[d], "tensor shape")) != 0)
                break;
            if (t->dims[d] == 0 || t->dims[d] > (1ull << 40) || n > (1ull << 40) / t->dims[d])
                rc = inf__fail(err, INF_EINVALID, "%s: tensor '%.*s' has an absurd shape", path,
                               (int)(t->name_len > 60 ? 60 : t->name_len), t->name);
            else
                n *= t->dims[d];
        }
        if (rc || (rc = rd_u32(&r, &t->type, "tensor type")) != 0 ||
            (rc = rd_u64(&r, &offsets[i], "tensor offset")) != 0)
            break;
        t->n_bytes = tensor_bytes(t->type, n);
    }
    if (!rc) {
        uint64_t data_start = (r.at + align - 1) / align * align;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            inf__gguf_tensor *t = &g->tensors[i];
            if (offsets[i] % align != 0 || data_start > g->size ||
                offsets[i] > g->size - data_start ||
                t->n_bytes > g->size - data_start - offsets[i]) {
                rc = inf__fail(err, INF_EINVALID,
                               "%s: tensor '%.*s' lies outside the file or is misaligned", path,
                               (int)(t->name_len > 60 ? 60 : t->name_len), t->name);
                break;
            }
            t->data = g->map + data_start + offsets[i];
        }
    }
    free(offsets);
    if (rc)
        goto done;
    *out = g;
    g = NULL;
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    inf__gguf_close(g);
    return rc;
}

void inf__gguf_close(inf__gguf *g)
{
    if (!g)
        return;
    if (g->map)
        munmap((void *)g->map, g->size);
    free(g->kv);
    free(g->tensors);
    free(g);
}

const inf__gguf_kv *inf__gguf_find(const inf__gguf *g, const char *key)
{
    size_t n = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && memcmp(g->kv[i].key, key, n) == 0)
            return &g->kv[i];
    return NULL;
}

int inf__gguf_int(int64_t *out, const inf__gguf *g, const inf__gguf_kv *kv, inf_error *err)
{
    const unsigned char *p = g->map + kv->offset;
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        uint64_t u64; int64_t i64;
    } v;
    switch (kv->type) {
    case INF__GGUF_U8: case INF__GGUF_BOOL: memcpy(&v.u8, p, 1); *out = v.u8; return 0;
    case INF__GGUF_I8: memcpy(&v.i8, p, 1); *out = v.i8; return 0;
    case INF__GGUF_U16: memcpy(&v.u16, p, 2); *out = v.u16; return 0;
    case INF__GGUF_I16: memcpy(&v.i16, p, 2); *out = v.i16; return 0;
    case INF__GGUF_U32: memcpy(&v.u32, p, 4); *out = v.u32; return 0;
    case INF__GGUF_I32: memcpy(&v.i32, p, 4); *out = v.i32; return 0;
    case INF__GGUF_I64: memcpy(&v.i64, p, 8); *out = v.i64; return 0;
    case INF__GGUF_U64:
        memcpy(&v.u64, p, 8);
        if (v.u64 > INT64_MAX)
            break;
        *out = (int64_t)v.u64;
        return 0;
    default: break;
    }
    return inf__fail(err, INF_EINVALID, "%s: '%.*s' is not an integer", g->path,
                     (int)kv->key_len, kv->key);
}

int inf__gguf_str(const char **s, size_t *len, const inf__gguf *g, const inf__gguf_kv *kv,
                  inf_error *err)
{
    if (kv->type != INF__GGUF_STRING)
        return inf__fail(err, INF_EINVALID, "%s: '%.*s' is not a string", g->path,
                         (int)kv->key_len, kv->key);
    uint64_t n;
    memcpy(&n, g->map + kv->offset, 8);
    *s = (const char *)g->map + kv->offset + 8;
    *len = (size_t)n;
    return 0;
}
