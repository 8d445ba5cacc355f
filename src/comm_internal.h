/* comm_internal.h: the communicator's state, shared by comm.c (making
 * communicators, the collectives), comm_watchdog.c (the comm.timeout
 * watchdog), comm_buckets.c (non-blocking gradient sums) and comm_shared.c
 * (node-shared memory). These four are the only files that include <mpi.h>: together they are the one
 * gateway to MPI. Not a public header. */
#ifndef SF_COMM_INTERNAL_H
#define SF_COMM_INTERNAL_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "shardfit/comm.h"

/* The collectives, for the watchdog's message and the trace. */
typedef enum { OP_NONE, OP_AGREE, OP_BCAST, OP_ALLREDUCE, OP_ALLTOALLV,
               OP_BARRIER, OP_ALLGATHER, OP_GATHER, OP_CLOCK, OP_SHARED,
               OP_SHARED_SYNC } CommOp;

/* The collective's name, one static string per op (comm.c): the trace
 * tells collectives apart by the pointer. */
const char *sf_comm_op_name(int op);

struct SfComm {
    MPI_Comm comm;
    int rank, size;
    int owns_mpi; /* the world handle finalizes MPI when freed */
    char (*hosts)[SF_COMM_HOST_MAX]; /* each rank's host, gathered at creation */
    /* Watchdog: busy_since is the monotonic time (ns) the current
     * collective began, 0 outside collectives; written by the main thread,
     * read by the watchdog thread. */
    double timeout;
    pthread_t watchdog;
    int has_watchdog;
    MPI_Comm watch_comm; /* the watchdogs' roll call, apart from the job's */
    atomic_int quit, op, watching; /* watching: the watchdog thread is running */
    atomic_llong busy_since, epoch, step;
    int64_t f32_allreduces;
    struct Buckets *buckets; /* non-blocking sums, after sf_comm_enable_buckets */
    MPI_Comm sums; /* the f32 sums' duplicate, by the ring on 3+ ranks (sf_comm_ring_dup) */
    int sums_algorithm; /* coll_tuned_allreduce_algorithm in effect on sums, -1: not known */
    /* The trace's hook: told of every collective (comm.h). */
    SfCommHook hook;
    void *hook_ctx;
    CommOp hook_op;
    long long arrived_ns;
    int64_t seq; /* collectives made on c */
};

/* The int control variable name of Open MPI, through MPI_T: its value in
 * *old, then set to value unless value < 0. A bool variable can be read
 * (0 or 1), not set. 0, or -1 where there is no such variable or it cannot
 * be read or set (another MPI). */
int sf_comm_cvar_int(const char *name, int value, int *old);

/* A duplicate of comm (collective) whose MPI_Allreduce is coll/tuned's
 * ring, unless the user forced another algorithm or turned coll/tuned's
 * dynamic rules off (comm.c says why). *algorithm (unless NULL): the
 * coll_tuned_allreduce_algorithm in effect on it (0: the fixed choice), -1
 * where Open MPI's variables cannot be read. */
MPI_Comm sf_comm_ring_dup(MPI_Comm comm, int *algorithm);

/* Every collective is bracketed by watch_begin and watch_end: the
 * watchdog's deadline runs between them, and the trace hook hears of it. */
static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void watch_begin(SfComm *c, CommOp op)
{
    long long now = now_ns();
    atomic_store_explicit(&c->op, (int)op, memory_order_relaxed);
    atomic_store_explicit(&c->busy_since, now, memory_order_release);
    c->seq++;
    c->hook_op = op;
    c->arrived_ns = now;
}

static inline void watch_end(SfComm *c)
{
    atomic_store_explicit(&c->busy_since, 0, memory_order_release);
    if (c->hook)
        c->hook(c->hook_ctx, sf_comm_op_name(c->hook_op), (double)c->arrived_ns * 1e-9,
                (double)now_ns() * 1e-9, c->seq);
}

/* comm_watchdog.c: stops and joins the watchdog thread, frees its
 * communicator. Only when c->has_watchdog. */
void sf_comm_watchdog_stop(SfComm *c);

/* comm_buckets.c: stops the helper thread and frees. NULL is fine. */
void sf_comm_buckets_free(struct Buckets *b);

#endif
