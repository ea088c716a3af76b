/*
 * A safetensors reader: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [begin, end]},
 * "__metadata__": {...}}, then the data, offsets relative to its start.
 * The file is mapped read-only; the header length, every shape, every offset
 * pair and every byte count are checked against the file before use, so a
 * truncated or corrupt file is an error naming the tensor, never a read past
 * the end or an allocation sized by garbage.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inference/inference_int.h"

/* A header larger than this is refused (real ones are a few hundred KiB). */
#define ST_MAX_HEADER (100u << 20)
#define ST_MAX_TENSORS (1u << 20)

void inf__st_close(inf__st *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->size);
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f);
}

/* "F32" -> INF__ST_F32 ...; unknown dtypes are kept (an error only when used). */
static int st_dtype(const char *s, size_t *elem)
{
    static const struct {
        const char *name;
        int type;
        size_t size;
    } k[] = {
        {"F32", INF__ST_F32, 4},  {"F16", INF__ST_F16, 2},  {"BF16", INF__ST_BF16, 2},
        {"F64", INF__ST_OTHER, 8}, {"I64", INF__ST_OTHER, 8}, {"I32", INF__ST_OTHER, 4},
        {"I16", INF__ST_OTHER, 2}, {"I8", INF__ST_OTHER, 1},  {"U8", INF__ST_OTHER, 1},
        {"BOOL", INF__ST_OTHER, 1}, {"F8_E4M3", INF__ST_OTHER, 1}, {"F8_E5M2", INF__ST_OTHER, 1},
        {"U16", INF__ST_OTHER, 2}, {"U32", INF__ST_OTHER, 4}, {"U64", INF__ST_OTHER, 8},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(s, k[i].name)) {
            *elem = k[i].size;
            return k[i].type;
        }
    return -1;
}

static int parse_tensor(inf__st *f, inf__st_tensor *t, const char *name, json_t *v,
                        const unsigned char *data, size_t data_len, inf_error *err)
{
    const char *path = f->path;
    if (!json_is_object(v))
        return inf__fail(err, INF_EINVALID, "%s: tensor '%s': entry is not an object", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2)
        return inf__fail(err, INF_EINVALID,
                         "%s: tensor '%s' needs a string dtype, a shape array and two "
                         "data_offsets",
                         path, name);
    size_t elem = 0;
    int type = st_dtype(json_string_value(jd), &elem);
    if (type < 0)
        return inf__fail(err, INF_EINVALID, "%s: tensor '%s' has unknown dtype '%s'", path, name,
                         json_string_value(jd));
    if (json_array_size(js) > 4)
        return inf__fail(err, INF_EINVALID, "%s: tensor '%s' has %zu dimensions (at most 4)",
                         path, name, json_array_size(js));
    t->type = type;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", json_string_value(jd));
    t->n_dims = (int)json_array_size(js);
    uint64_t count = 1;
    for (int i = 0; i < t->n_dims; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 ||
            json_integer_value(d) > (json_int_t)INT32_MAX)
            return inf__fail(err, INF_EINVALID, "%s: tensor '%s': shape[%d] is not a size", path,
                             name, i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if (t->shape[i] && count > UINT64_MAX / 16 / (uint64_t)t->shape[i])
            return inf__fail(err, INF_EINVALID, "%s: tensor '%s': shape is too large", path, name);
        count *= (uint64_t)t->shape[i];
    }
    json_t *b = json_array_get(jo, 0), *e = json_array_get(jo, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b) ||
        (uint64_t)json_integer_value(e) > data_len)
        return inf__fail(err, INF_EINVALID,
                         "%s: tensor '%s': data_offsets are outside the %zu data bytes", path,
                         name, data_len);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
    if (end - begin != count * elem)
        return inf__fail(err, INF_EINVALID,
                         "%s: tensor '%s': %llu bytes for %llu elements of %s (need %llu)", path,
                         name, (unsigned long long)(end - begin), (unsigned long long)count,
                         t->dtype_name, (unsigned long long)(count * elem));
    t->data = data + begin;
    t->n_bytes = end - begin;
    t->name = strdup(name);
    if (!t->name)
        return inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
    return 0;
}

int inf__st_open(inf__st **out, const char *path, inf_error *err)
{
    *out = NULL;
    int rc, fd = -1;
    json_t *root = NULL;
    inf__st *f = calloc(1, sizeof *f);
    if (!f)
        return inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = inf__fail(err, INF_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 8) {
        rc = inf__fail(err, INF_EINVALID, "%s: not a safetensors file (%lld bytes)", path,
                       (long long)st.st_size);
        goto done;
    }
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = inf__fail(err, INF_EIO, "%s: cannot map: %s", path, strerror(errno));
        goto done;
    }
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > f->size - 8) {
        rc = inf__fail(err, INF_EINVALID,
                       "%s: header length %llu does not fit the %zu-byte file (or exceeds %u)",
                       path, (unsigned long long)hlen, f->size, ST_MAX_HEADER);
        goto done;
    }
    json_error_t je;
    root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        rc = inf__fail(err, INF_EINVALID, "%s: header is not a JSON object: %s (at byte %d)",
                       path, root ? "wrong type" : je.text, root ? 0 : je.position);
        goto done;
    }
    size_t n = json_object_size(root);
    if (n > ST_MAX_TENSORS) {
        rc = inf__fail(err, INF_EINVALID, "%s: %zu tensors is too many", path, n);
        goto done;
    }
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        rc = inf__fail(err, INF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__"))
            continue;
        rc = parse_tensor(f, &f->tensors[f->n_tensors], key, v, p + 8 + hlen,
                          f->size - 8 - (size_t)hlen, err);
        if (rc)
            goto done;
        f->n_tensors++;
    }
    *out = f;
    f = NULL;
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    json_decref(root);
    inf__st_close(f);
    return rc;
}

const inf__st_tensor *inf__st_find(const inf__st *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}
