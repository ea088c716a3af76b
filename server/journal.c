/*
 * The trajectory buffer's write-ahead log: one file DIR/journal of records
 *
 *     u32 magic "ENVJ" | u32 payload length | u32 CRC-32 of the payload | payload
 *
 * (host byte order: the file is read back by the same machine). The payload is
 * whatever buffer.c wrote (a JSON object). A crash in the middle of a write
 * leaves a record whose length runs past the end of the file or whose CRC does
 * not match; opening the journal replays every record before it and cuts the
 * file there, so the torn record never comes back.
 *
 * Durability by group commit: appends only write(); a thread that needs its
 * records on disk calls srv__journal_sync with the ticket its append returned.
 * The first such thread runs fdatasync for everything written so far while
 * the others wait on a condvar; when it returns, every waiter whose ticket is
 * covered wakes up done. Under libmicrohttpd's thread pool one fdatasync thus
 * serves as many requests as arrived during the previous one.
 *
 * The file is created lazily, at the first append, so that a server which
 * never receives trajectories leaves nothing behind in the working directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <zlib.h>

#include "server/server_int.h"

#define JOURNAL_MAGIC 0x4a564e45u /* "ENVJ" read as little-endian bytes */
#define JOURNAL_MAX_RECORD (1u << 30)
#define JOURNAL_NAME "journal"

struct srv__journal {
    char *dir;               /* owned */
    char *path;              /* owned: dir/journal */
    int fd;                  /* -1 until the first append creates the file */
    pthread_mutex_t lock;    /* fd, written, durable, syncing, error */
    pthread_cond_t synced;
    uint64_t written;        /* bytes ever appended (a ticket counter, not an offset) */
    uint64_t durable;        /* tickets up to here are on disk */
    uint64_t size;           /* bytes in the current file */
    int syncing;             /* a thread is in fdatasync */
    int error;               /* errno of a failed write or sync: the journal is unusable */
};

typedef struct rec_header {
    uint32_t magic;
    uint32_t len;
    uint32_t crc;
} rec_header;

static uint32_t crc_of(const char *p, size_t len)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)p, (uInt)len);
}

/* Takes an exclusive lock so that two servers never share one journal. */
static int lock_file(int fd, const char *path, char *err, size_t errlen)
{
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "journal %s is in use by another envsrv (%s)", path,
                 errno == EWOULDBLOCK ? "locked" : strerror(errno));
        return -1;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

/* Reads the whole file and replays its intact prefix; cuts a torn tail. */
static int replay(srv__journal *j, srv__journal_replay_fn fn, void *payload, char *err, size_t errlen)
{
    int rc = -1;
    char *data = NULL;
    struct stat st;
    if (fstat(j->fd, &st) != 0) {
        snprintf(err, errlen, "cannot read journal %s: %s", j->path, strerror(errno));
        goto done;
    }
    size_t size = (size_t)st.st_size;
    data = malloc(size ? size : 1);
    if (!data) {
        snprintf(err, errlen, "out of memory reading journal %s (%zu bytes)", j->path, size);
        goto done;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(j->fd, data + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "cannot read journal %s: %s", j->path, n ? strerror(errno) : "short read");
            goto done;
        }
        got += (size_t)n;
    }
    size_t off = 0;
    while (off + sizeof(rec_header) <= size) {
        rec_header h;
        memcpy(&h, data + off, sizeof h);
        if (h.magic != JOURNAL_MAGIC || h.len > size - off - sizeof h ||
            crc_of(data + off + sizeof h, h.len) != h.crc)
            break;
        if (fn(payload, data + off + sizeof h, h.len, err, errlen) != 0)
            goto done;
        off += sizeof h + h.len;
    }
    if (off < size) {
        /* A crash mid-append: what follows the last intact record was never
         * acknowledged (its fsync had not returned), so it is dropped. */
        fprintf(stderr, "envsrv: journal %s: discarding a torn record (%zu bytes at offset %zu)\n",
                j->path, size - off, off);
        if (ftruncate(j->fd, (off_t)off) != 0 || fdatasync(j->fd) != 0) {
            snprintf(err, errlen, "cannot truncate journal %s: %s", j->path, strerror(errno));
            goto done;
        }
    }
    if (lseek(j->fd, (off_t)off, SEEK_SET) < 0) {
        snprintf(err, errlen, "cannot seek journal %s: %s", j->path, strerror(errno));
        goto done;
    }
    j->size = off;
    rc = 0;
done:
    free(data);
    return rc;
}

int srv__journal_open(srv__journal **out, const char *dir, srv__journal_replay_fn fn, void *payload,
                      char *err, size_t errlen)
{
    int rc = -1;
    *out = NULL;
    srv__journal *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    j->fd = -1;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->synced, NULL);
    j->dir = strdup(dir);
    size_t plen = strlen(dir) + sizeof JOURNAL_NAME + 1;
    j->path = malloc(plen);
    if (!j->dir || !j->path) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    snprintf(j->path, plen, "%s/%s", dir, JOURNAL_NAME);
    j->fd = open(j->path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0) {
        if (errno == ENOENT) {
            rc = 0; /* created at the first append */
            goto done;
        }
        snprintf(err, errlen, "cannot open journal %s: %s", j->path, strerror(errno));
        goto done;
    }
    if (lock_file(j->fd, j->path, err, errlen) != 0 || replay(j, fn, payload, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        srv__journal_free(j);
        j = NULL;
    }
    *out = j;
    return rc;
}

void srv__journal_free(srv__journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->synced);
    free(j->dir);
    free(j->path);
    free(j);
}

/* Called with j->lock held. */
static int create_file(srv__journal *j, char *err, size_t errlen)
{
    if (mkdir(j->dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create journal directory %s: %s", j->dir, strerror(errno));
        return -1;
    }
    int fd = open(j->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create journal %s: %s", j->path, strerror(errno));
        return -1;
    }
    if (lock_file(fd, j->path, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    fsync_dir(j->dir);
    j->fd = fd;
    j->size = 0;
    return 0;
}

/* Writes all of iov (advancing it), retrying short writes. */
static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Frames recs into iov/hdrs (2 entries per record). */
static int frame(struct iovec *iov, rec_header *hdrs, char *const *recs, const size_t *lens, size_t n,
                 size_t *total, char *err, size_t errlen)
{
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > JOURNAL_MAX_RECORD) {
            snprintf(err, errlen, "journal record of %zu bytes is over the limit of %u", lens[i],
                     JOURNAL_MAX_RECORD);
            return -1;
        }
        hdrs[i].magic = JOURNAL_MAGIC;
        hdrs[i].len = (uint32_t)lens[i];
        hdrs[i].crc = crc_of(recs[i], lens[i]);
        iov[2 * i].iov_base = &hdrs[i];
        iov[2 * i].iov_len = sizeof hdrs[i];
        iov[2 * i + 1].iov_base = recs[i];
        iov[2 * i + 1].iov_len = lens[i];
        *total += sizeof hdrs[i] + lens[i];
    }
    return 0;
}

int srv__journal_append(uint64_t *ticket, srv__journal *j, char *const *recs, const size_t *lens,
                        size_t n, char *err, size_t errlen)
{
    int rc = -1;
    struct iovec *iov = malloc(2 * (n ? n : 1) * sizeof *iov);
    rec_header *hdrs = malloc((n ? n : 1) * sizeof *hdrs);
    size_t total = 0;
    pthread_mutex_lock(&j->lock);
    if (!iov || !hdrs) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (j->error) {
        snprintf(err, errlen, "journal %s failed earlier: %s", j->path, strerror(j->error));
        goto done;
    }
    if (j->fd < 0 && create_file(j, err, errlen) != 0)
        goto done;
    if (frame(iov, hdrs, recs, lens, n, &total, err, errlen) != 0)
        goto done;
    if (write_all(j->fd, iov, (int)(2 * n)) != 0) {
        /* A partial record may now sit at the end; later appends would follow
         * it and be lost at replay, so the journal refuses further writes. */
        j->error = errno;
        snprintf(err, errlen, "cannot write journal %s: %s", j->path, strerror(errno));
        goto done;
    }
    j->written += total;
    j->size += total;
    *ticket = j->written;
    rc = 0;
done:
    pthread_mutex_unlock(&j->lock);
    free(iov);
    free(hdrs);
    return rc;
}

int srv__journal_sync(srv__journal *j, uint64_t ticket, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&j->lock);
    while (j->durable < ticket) {
        if (j->error) {
            snprintf(err, errlen, "journal %s failed: %s", j->path, strerror(j->error));
            rc = -1;
            break;
        }
        if (j->syncing) {
            pthread_cond_wait(&j->synced, &j->lock);
            continue;
        }
        /* Become the syncer for everything written so far. */
        j->syncing = 1;
        uint64_t target = j->written;
        int fd = j->fd;
        pthread_mutex_unlock(&j->lock);
        int r = fdatasync(fd);
        int e = errno;
        pthread_mutex_lock(&j->lock);
        j->syncing = 0;
        if (r != 0)
            j->error = e;
        else if (target > j->durable)
            j->durable = target;
        pthread_cond_broadcast(&j->synced);
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

int srv__journal_rewrite(srv__journal *j, char *const *recs, const size_t *lens, size_t n, char *err,
                         size_t errlen)
{
    int rc = -1, fd = -1;
    struct iovec *iov = malloc(2 * (n ? n : 1) * sizeof *iov);
    rec_header *hdrs = malloc((n ? n : 1) * sizeof *hdrs);
    size_t tlen = strlen(j->path) + 5;
    char *tmp = malloc(tlen);
    size_t total = 0;
    err[0] = '\0';
    pthread_mutex_lock(&j->lock);
    /* The syncer uses the old fd outside the lock: let it finish first. */
    while (j->syncing)
        pthread_cond_wait(&j->synced, &j->lock);
    if (!iov || !hdrs || !tmp) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (j->error) {
        snprintf(err, errlen, "journal %s failed earlier: %s", j->path, strerror(j->error));
        goto done;
    }
    if (j->fd < 0 && create_file(j, err, errlen) != 0)
        goto done;
    snprintf(tmp, tlen, "%s.tmp", j->path);
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || frame(iov, hdrs, recs, lens, n, &total, err, errlen) != 0) {
        if (fd < 0)
            snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (write_all(fd, iov, (int)(2 * n)) != 0 || fdatasync(fd) != 0 || lock_file(fd, tmp, err, errlen) != 0) {
        if (!err[0])
            snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, j->path) != 0) {
        snprintf(err, errlen, "cannot replace journal %s: %s", j->path, strerror(errno));
        goto done;
    }
    fsync_dir(j->dir);
    close(j->fd);
    j->fd = fd;
    fd = -1;
    j->size = total;
    /* The snapshot holds the effect of every record appended before it, and
     * it is on disk: every ticket handed out so far is durable. */
    j->durable = j->written;
    pthread_cond_broadcast(&j->synced);
    rc = 0;
done:
    pthread_mutex_unlock(&j->lock);
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(iov);
    free(hdrs);
    return rc;
}

uint64_t srv__journal_size(srv__journal *j)
{
    pthread_mutex_lock(&j->lock);
    uint64_t s = j->size;
    pthread_mutex_unlock(&j->lock);
    return s;
}
