/*
 * A pool of empty network namespaces, reused from run to run.
 *
 * Creating a network namespace for every run costs about half a millisecond
 * (and its teardown runs later in a kernel worker). A namespace that holds
 * nothing but a loopback device can be reused: when a run's process tree is
 * gone, so are its sockets. The pool hands each namespace to one run at a
 * time, so concurrent runs never share one.
 *
 * Pooled namespaces are created by the server (real root) and so are owned by
 * the initial user namespace, where sandboxed code has no capabilities: it
 * cannot reconfigure them (addresses, routes, firewall) for the next run.
 * Entering one for the clone is a setns() of the calling thread only, undone
 * right after. Unprivileged servers cannot setns() into such a namespace;
 * they get a fresh one per run (CLONE_NEWNET) instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

#define POOL_MAX 256

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static int pool[POOL_MAX];
static int pool_n;

static int loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    ifr.ifr_flags = IFF_UP | IFF_RUNNING;
    int r = ioctl(s, SIOCSIFFLAGS, &ifr);
    close(s);
    return r;
}

/* A new namespace with lo up, as an fd; the calling thread's own namespace
 * is unchanged on return. Returns -1 with errno on failure. */
static int create_netns(void)
{
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0)
        return -1;
    int fd = -1, e = 0;
    if (unshare(CLONE_NEWNET) < 0) {
        e = errno;
        close(home);
        errno = e;
        return -1;
    }
    if (loopback_up() == 0)
        fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    e = errno;
    if (setns(home, CLONE_NEWNET) < 0) {
        /* Never expected as root; the caller reports it as an internal error
         * (this thread is then cut off from the network). */
        e = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    close(home);
    errno = e;
    return fd;
}

int sbx__netns_acquire(void)
{
    pthread_mutex_lock(&pool_lock);
    int fd = pool_n > 0 ? pool[--pool_n] : -1;
    pthread_mutex_unlock(&pool_lock);
    return fd >= 0 ? fd : create_netns();
}

void sbx__netns_release(int fd)
{
    if (fd < 0)
        return;
    pthread_mutex_lock(&pool_lock);
    if (pool_n < POOL_MAX) {
        pool[pool_n++] = fd;
        fd = -1;
    }
    pthread_mutex_unlock(&pool_lock);
    if (fd >= 0)
        close(fd);
}

void sbx__netns_drop_all(void)
{
    pthread_mutex_lock(&pool_lock);
    while (pool_n > 0)
        close(pool[--pool_n]);
    pthread_mutex_unlock(&pool_lock);
}

pid_t sbx__clone_in_netns(int netns_fd, unsigned long flags)
{
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0)
        return -1;
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        int e = errno;
        close(home);
        errno = e;
        return -1;
    }
    pid_t pid = sbx__clone(flags & ~(unsigned long)CLONE_NEWNET);
    if (pid == 0)
        return 0;   /* the child: the caller takes over */
    int e = errno;
    if (setns(home, CLONE_NEWNET) < 0) {
        /* See create_netns. The child, if any, is the caller's to kill. */
        e = errno;
        close(home);
        errno = e;
        return pid > 0 ? -pid : -1;
    }
    close(home);
    errno = e;
    return pid;
}
