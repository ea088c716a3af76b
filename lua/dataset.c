/*
 * Dataset files: the embedded set, files on disk, JSONL parsing, `--data`
 * overrides, and the SHA-256 hashes that name versions.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "lua/lenv_int.h"

/* Data files larger than this are refused rather than read into memory. */
#define MAX_DATA_FILE ((size_t)2 << 30)

const lenv_embedded_file *lenv__embedded_find(const char *name)
{
    for (const lenv_embedded_file *f = lenv_embedded_files; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

int lenv__read_file(char **data, size_t *len, const char *path, lenv_error *err)
{
    int rc = LENV_EIO;
    char *buf = NULL;
    size_t size = 0, cap = 0;
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return lenv__fail(err, LENV_EIO, "cannot read '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        lenv__fail(err, LENV_EIO, "cannot read '%s': it is a directory", path);
        goto done;
    }
    /* Read in growing chunks: the size from stat can lie (pipes, /proc). */
    for (;;) {
        if (cap - size < 2) {
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > MAX_DATA_FILE + 2) {
                lenv__fail(err, LENV_EIO, "cannot read '%s': larger than %zu bytes", path,
                           MAX_DATA_FILE);
                goto done;
            }
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                rc = lenv__fail(err, LENV_ENOMEM, "out of memory reading '%s'", path);
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + size, 1, cap - size - 1, f);
        size += got;
        if (got == 0) {
            if (ferror(f)) {
                lenv__fail(err, LENV_EIO, "cannot read '%s': %s", path, strerror(errno));
                goto done;
            }
            break;
        }
    }
    if (buf == NULL && (buf = malloc(1)) == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory reading '%s'", path);
        goto done;
    }
    buf[size] = '\0';
    *data = buf;
    *len = size;
    buf = NULL;
    rc = LENV_OK;
done:
    free(buf);
    fclose(f);
    return rc;
}

int lenv__parse_jsonl(json_t **out, const char *data, size_t len, const char *name,
                      lenv_error *err)
{
    *out = NULL;
    json_t *arr = json_array();
    if (arr == NULL)
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    size_t pos = 0, lineno = 0;
    while (pos < len) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl != NULL);
        lineno++;
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k == n)
            continue; /* blank lines are allowed anywhere */
        json_error_t jerr;
        json_t *rec = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
        if (rec == NULL) {
            json_decref(arr);
            return lenv__fail(err, LENV_EIO, "data file '%s' line %zu: %s at column %d", name,
                              lineno, jerr.text, jerr.column);
        }
        if (!json_is_object(rec)) {
            json_decref(rec);
            json_decref(arr);
            return lenv__fail(err, LENV_EIO, "data file '%s' line %zu: a record must be a JSON "
                              "object", name, lineno);
        }
        if (json_array_append_new(arr, rec) != 0) {
            json_decref(arr);
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
        }
    }
    *out = arr;
    return LENV_OK;
}

/* ---- --data overrides ------------------------------------------------------- */

void lenv__split_files_free(lenv__split_file *files, size_t n)
{
    if (files == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(files[i].split);
        free(files[i].path);
    }
    free(files);
}

/* Split name inferred from a file name, as lenv.h documents. New string. */
static char *infer_split(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strstr(base, "train"))
        return strdup("train");
    if (strstr(base, "test"))
        return strdup("test");
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return strndup(base, n);
}

static int add_file(lenv__split_file **files, size_t *n, size_t *cap, char *split, char *path,
                    lenv_error *err)
{
    if (split == NULL || path == NULL) {
        free(split);
        free(path);
        return lenv__fail(err, LENV_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*files)[i].split, split) == 0) {
            int rc = lenv__fail(err, LENV_EINVALID, "split '%s' is given twice ('%s' and '%s')",
                                split, (*files)[i].path, path);
            free(split);
            free(path);
            return rc;
        }
    }
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        lenv__split_file *nf = realloc(*files, ncap * sizeof *nf);
        if (nf == NULL) {
            free(split);
            free(path);
            return lenv__fail(err, LENV_ENOMEM, "out of memory");
        }
        *files = nf;
        *cap = ncap;
    }
    (*files)[*n] = (lenv__split_file){split, path, NULL};
    (*n)++;
    return LENV_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether `name` fits `pattern` (one '*'); stem and stem_len get what the '*'
 * stood for. */
static int pattern_match(const char *name, const char *pattern, const char **stem,
                         size_t *stem_len)
{
    const char *star = strchr(pattern, '*');
    size_t pre = (size_t)(star - pattern), post = strlen(star + 1), len = strlen(name);
    if (len <= pre + post || strncmp(name, pattern, pre) != 0 ||
        strcmp(name + len - post, star + 1) != 0)
        return 0;
    *stem = name + pre;
    *stem_len = len - pre - post;
    return 1;
}

/* Adds one split per file of a directory that fits `pattern` ("*.jsonl" by
 * default; the '*' names the split), in name order. */
static int add_directory(lenv__split_file **files, size_t *n, size_t *cap, const char *dir,
                         const char *pattern, lenv_error *err)
{
    int rc = LENV_OK;
    char **names = NULL;
    size_t count = 0, ncap = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return lenv__fail(err, LENV_EIO, "cannot read directory '%s': %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *stem;
        size_t stem_len;
        if (!pattern_match(e->d_name, pattern, &stem, &stem_len))
            continue;
        if (count == ncap) {
            size_t c2 = ncap ? ncap * 2 : 8;
            char **nn = realloc(names, c2 * sizeof *nn);
            if (nn == NULL) {
                rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
                goto done;
            }
            names = nn;
            ncap = c2;
        }
        if ((names[count] = strdup(e->d_name)) == NULL) {
            rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
            goto done;
        }
        count++;
    }
    if (count == 0) {
        rc = lenv__fail(err, LENV_EIO, "directory '%s' has no %s files", dir, pattern);
        goto done;
    }
    qsort(names, count, sizeof *names, cmp_str);
    for (size_t i = 0; i < count && rc == LENV_OK; i++) {
        const char *stem;
        size_t stem_len;
        char *path = NULL;
        pattern_match(names[i], pattern, &stem, &stem_len);
        if (asprintf(&path, "%s/%s", dir, names[i]) < 0)
            path = NULL;
        rc = add_file(files, n, cap, strndup(stem, stem_len), path, err);
    }
done:
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int lenv__expand_sources(lenv__split_file **out, size_t *n_out, const lenv_data_source *src,
                         size_t n, const char *pattern, lenv_error *err)
{
    if (pattern == NULL)
        pattern = "*.jsonl";
    lenv__split_file *files = NULL;
    size_t count = 0, cap = 0;
    int rc = LENV_OK;
    for (size_t i = 0; i < n && rc == LENV_OK; i++) {
        if (src[i].path == NULL || src[i].path[0] == '\0') {
            rc = lenv__fail(err, LENV_EINVALID, "data source %zu has no path", i);
            break;
        }
        struct stat sb;
        if (stat(src[i].path, &sb) != 0) {
            rc = lenv__fail(err, LENV_EIO, "cannot read '%s': %s", src[i].path, strerror(errno));
            break;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (src[i].split) {
                rc = lenv__fail(err, LENV_EINVALID, "data for split '%s' must be a file, "
                                "'%s' is a directory", src[i].split, src[i].path);
                break;
            }
            rc = add_directory(&files, &count, &cap, src[i].path, pattern, err);
        } else {
            char *split = src[i].split ? strdup(src[i].split) : infer_split(src[i].path);
            rc = add_file(&files, &count, &cap, split, strdup(src[i].path), err);
        }
    }
    if (rc != LENV_OK) {
        lenv__split_files_free(files, count);
        *out = NULL;
        *n_out = 0;
        return rc;
    }
    *out = files;
    *n_out = count;
    return LENV_OK;
}

/* ---- SHA-256 ------------------------------------------------------------------ */

struct lenv__sha256 {
    EVP_MD_CTX *ctx;
};

lenv__sha256 *lenv__sha256_new(void)
{
    lenv__sha256 *h = malloc(sizeof *h);
    if (h == NULL)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        lenv__sha256_free(h);
        return NULL;
    }
    return h;
}

int lenv__sha256_add(lenv__sha256 *h, const void *data, size_t len)
{
    return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -1;
}

int lenv__sha256_hex16(lenv__sha256 *h, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_DigestFinal_ex(h->ctx, md, &mdlen) == 1 && mdlen >= 8;
    lenv__sha256_free(h);
    if (!ok)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[16] = '\0';
    return 0;
}

void lenv__sha256_free(lenv__sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}
