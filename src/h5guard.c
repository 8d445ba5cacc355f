/* h5guard.c: an untrusted file's reads, first in a child (h5guard.h). */
#include "h5guard.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "h5util.h"

#ifdef SF_NO_H5_GUARD

int sf_h5_guard(const char *path, SfH5GuardFn fn, void *arg, SfError *err)
{
    (void)path, (void)fn, (void)arg, (void)err;
    return 0;
}

#else

#if defined(__SANITIZE_ADDRESS__)
#define SF_GUARD_LIMIT_MEMORY 0
#else
#define SF_GUARD_LIMIT_MEMORY 1
#endif

/* What the child writes to the pipe when fn returns: one write, shorter
 * than PIPE_BUF, so it arrives whole or not at all. */
typedef struct {
    uint32_t magic;
    int code;       /* 0: fn succeeded; else err.code */
    char msg[sizeof ((SfError *)0)->msg];
} Report;

#define REPORT_MAGIC 0x5f683567u

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double time_limit(off_t size)
{
    const char *s = getenv("SHARDFIT_FILE_CHECK_TIMEOUT");
    char *end;
    if (s && *s) {
        double v = strtod(s, &end);
        if (*end == '\0' && v > 0)
            return v;
    }
    return 60.0 + (double)size / 10e6;
}

/* Address space the process maps now (VmSize), in bytes; 0 if unknown. */
static uint64_t mapped_bytes(void)
{
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void limit_child(off_t size)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    if (SF_GUARD_LIMIT_MEMORY) {
        uint64_t now = mapped_bytes();
        if (now) {
            uint64_t cap = now + ((uint64_t)2 << 30) + 2 * (uint64_t)size;
            struct rlimit as = {(rlim_t)cap, (rlim_t)cap};
            setrlimit(RLIMIT_AS, &as);
        }
    }
}

static void write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void run_child(int fd, off_t size, SfH5GuardFn fn, void *arg)
{
    Report r;
    SfError err = {0};
    memset(&r, 0, sizeof r);
    limit_child(size);
    r.magic = REPORT_MAGIC;
    if (fn(arg, &err) < 0) {
        r.code = err.code ? err.code : SF_EXIT_FAILURE;
        memcpy(r.msg, err.msg, sizeof r.msg);
    }
    write_all(fd, &r, sizeof r);
    _exit(0);
}

/* Reads the child's report until EOF or the deadline. Returns the bytes
 * read, or -1 on timeout (or if poll fails: the caller must not wait on a
 * child that may never end). */
static ssize_t read_report(int fd, Report *r, double limit)
{
    size_t got = 0;
    double deadline = seconds_now() + limit;
    for (;;) {
        double left = deadline - seconds_now();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
        int rc = poll(&p, 1, ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            continue; /* the loop head sees the deadline */
        if (rc < 0)
            return -1; /* cannot wait on the child: stop it */
        ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return (ssize_t)got;
        got += (size_t)n;
        if (got == sizeof *r)
            return (ssize_t)got;
    }
}

static int wait_child(pid_t pid, int *status)
{
    for (;;) {
        if (waitpid(pid, status, 0) == pid)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

int sf_h5_guard(const char *path, SfH5GuardFn fn, void *arg, SfError *err)
{
    struct stat st;
    off_t size = stat(path, &st) == 0 ? st.st_size : 0;
    int fds[2];
    if (pipe(fds) != 0)
        return fn(arg, err);
    sf_h5_lock(); /* no other thread is inside HDF5 while we fork */
    pid_t pid = fork();
    if (pid == 0) {
        sf_h5_lock_reset_in_child();
        close(fds[0]);
        run_child(fds[1], size, fn, arg);
    }
    sf_h5_unlock();
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return fn(arg, err);
    }
    Report r;
    memset(&r, 0, sizeof r);
    double limit = time_limit(size);
    ssize_t got = read_report(fds[0], &r, limit);
    close(fds[0]);
    if (got < 0)
        kill(pid, SIGKILL);
    int status = 0;
    if (wait_child(pid, &status) < 0)
        status = 0;
    if (got == (ssize_t)sizeof r && r.magic == REPORT_MAGIC) {
        if (r.code == 0)
            return 0;
        r.msg[sizeof r.msg - 1] = '\0';
        sf_error_set(err, r.code, "%s", r.msg);
        return -1;
    }
    if (got < 0)
        sf_error_set(err, SF_EXIT_INPUT, "the HDF5 library did not finish "
                     "reading this file in %.0f s, so it was stopped: the file "
                     "is probably corrupt (a loop in its metadata); if it is "
                     "only slow to read, set SHARDFIT_FILE_CHECK_TIMEOUT to "
                     "more seconds", limit);
    else if (WIFSIGNALED(status))
        sf_error_set(err, SF_EXIT_INPUT, "the HDF5 library crashed reading "
                     "this file (%s): the file is corrupt (checked in a "
                     "separate process: nothing was loaded from it)",
                     strsignal(WTERMSIG(status)));
    else
        sf_error_set(err, SF_EXIT_INPUT, "the HDF5 library failed reading "
                     "this file (the checking process ended with status %d, "
                     "out of memory or a sanitizer report): the file is "
                     "corrupt", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return SF_H5_GUARD_FAILED;
}

#endif
