/* comm_buckets.c: gradient sums posted during backward (comm.h,
 * sf_comm_enable_buckets), moved by a helper thread. */
#include <stdio.h>
#include <stdlib.h>

#include "comm_internal.h"
#include "shardfit/error.h"

/* ---- gradient buckets ----------------------------------------------------
 *
 * Open MPI 4.1 has no asynchronous progress: a non-blocking collective moves
 * only while some thread is inside MPI. So a helper thread starts each
 * posted sum (MPI_Iallreduce, in post order, on a duplicate of the job's
 * communicator so it never interleaves with the main thread's collectives)
 * and tests the outstanding ones. While the caller computes, the helper
 * naps between tests (POLL_NS), so on a machine with no spare core it takes
 * a sliver of the caller's core, not half of it; once the caller waits it
 * tests without pause. Sums run in post order and each element is summed
 * by the same algorithm for a given size and rank count, so a run is
 * bitwise repeatable. */

#define MAX_POSTS 64
#define POLL_NS 20000

typedef struct Buckets {
    MPI_Comm comm;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    float *buf[MAX_POSTS];
    int n[MAX_POSTS];
    MPI_Request req[MAX_POSTS];
    int posted, started, finished; /* guarded by mu */
    int waiting, quit;              /* guarded by mu */
    int algorithm; /* coll_libnbc_iallreduce_algorithm in effect, -1: none */
} Buckets;

static void *buckets_main(void *arg)
{
    Buckets *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->quit && b->finished == b->posted)
            pthread_cond_wait(&b->work, &b->mu);
        if (b->quit)
            break;
        while (b->started < b->posted) {
            int i = b->started++;
            pthread_mutex_unlock(&b->mu);
            MPI_Iallreduce(MPI_IN_PLACE, b->buf[i], b->n[i], MPI_FLOAT, MPI_SUM,
                           b->comm, &b->req[i]);
            pthread_mutex_lock(&b->mu);
        }
        int first = b->finished, last = b->started, urgent = b->waiting;
        pthread_mutex_unlock(&b->mu);
        int done = first;
        for (; done < last; done++) {
            int flag = 0;
            MPI_Test(&b->req[done], &flag, MPI_STATUS_IGNORE);
            if (!flag)
                break;
        }
        if (done < last && !urgent)
            nanosleep(&(struct timespec){0, POLL_NS}, NULL);
        pthread_mutex_lock(&b->mu);
        b->finished = done;
        if (b->finished == b->posted)
            pthread_cond_broadcast(&b->done);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Open MPI's libnbc, left to choose (coll_libnbc_iallreduce_algorithm =
 * 0), sums in place, or over fewer than 4 ranks, by a binomial tree: a
 * reduce to rank 0, then a broadcast, so a link carries the bytes one way
 * and only then the other. Its ring (reduce-scatter, then allgather) uses
 * both directions at once. fashion-cnn on 2 namespace hosts over 1gbit,
 * 1 MiB buckets: a step of 20.3 ms with the ring against 32.5 with the
 * tree, and 24.5 with one allreduce after backward (docs/BENCHMARKS.md).
 * A value the user chose (environment or mca-params.conf) stays. Collective
 * in effect: MPI_T's scope for the variable is all ranks, and every rank
 * gets here. Returns the value in effect, or -1 where there is no such
 * variable (another MPI, or no libnbc). */
static int prefer_ring(void)
{
    int alg = -1;
    if (sf_comm_cvar_int("coll_libnbc_iallreduce_algorithm", -1, &alg))
        return -1;
    if (alg == 0 && sf_comm_cvar_int("coll_libnbc_iallreduce_algorithm", 1, &alg) == 0)
        alg = 1;
    return alg;
}

const char *sf_comm_buckets_algorithm(const SfComm *c)
{
    /* Open MPI 4.1's names for the variable's values */
    static const char *names[] = {"libnbc's choice", "ring", "binomial",
                                  "rabenseifner", "recursive_doubling"};
    int a = c->buckets ? c->buckets->algorithm : -1;
    return a >= 0 && a < (int)(sizeof names / sizeof *names) ? names[a] : NULL;
}

int sf_comm_enable_buckets(SfComm *c)
{
    int provided;
    MPI_Query_thread(&provided);
    if (c->buckets || c->size == 1 || provided < MPI_THREAD_MULTIPLE)
        return 0;
    Buckets *b = calloc(1, sizeof *b);
    if (!b)
        return -1;
    MPI_Comm_dup(c->comm, &b->comm); /* collective: every rank is here */
    b->algorithm = prefer_ring();
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->done, NULL);
    if (pthread_create(&b->thread, NULL, buckets_main, b)) {
        MPI_Comm_free(&b->comm);
        free(b);
        return -1;
    }
    c->buckets = b;
    return 0;
}

void sf_comm_buckets_free(Buckets *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->quit = 1;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->done);
    MPI_Comm_free(&b->comm);
    free(b);
}

void sf_comm_post_sum_f32(SfComm *c, float *buf, int64_t n)
{
    c->f32_allreduces++;
    if (c->size == 1)
        return;
    Buckets *b = c->buckets;
    if (!b) {
        /* No helper thread (MPI without THREAD_MULTIPLE): sum now. */
        sf_comm_allreduce_sum_f32(c, buf, n);
        c->f32_allreduces--;
        return;
    }
    pthread_mutex_lock(&b->mu);
    if (b->posted == 0)
        watch_begin(c, OP_ALLREDUCE); /* the deadline covers every bucket */
    if (b->posted == MAX_POSTS) {
        pthread_mutex_unlock(&b->mu);
        fprintf(stderr, "shardfit: bug: more than %d gradient buckets in a step\n",
                MAX_POSTS);
        MPI_Abort(c->comm, SF_EXIT_FAILURE);
    }
    b->buf[b->posted] = buf;
    b->n[b->posted] = (int)n;
    b->posted++;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->mu);
}

void sf_comm_wait_sums(SfComm *c)
{
    Buckets *b = c->buckets;
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    if (b->posted == 0) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    /* A blocking collective between the posts and here (batch statistics
     * summed during backward) ended the deadline the first post armed:
     * arm it again, so the wait is never unwatched. */
    if (atomic_load_explicit(&c->busy_since, memory_order_acquire) == 0) {
        watch_begin(c, OP_ALLREDUCE);
    } else {
        /* The trace's span of the sums is the wait (it must nest in the
         * step's allreduce phase); the deadline still runs from the post. */
        c->hook_op = OP_ALLREDUCE;
        c->arrived_ns = now_ns();
    }
    b->waiting = 1;
    pthread_cond_signal(&b->work);
    while (b->finished < b->posted)
        pthread_cond_wait(&b->done, &b->mu);
    b->waiting = 0;
    b->posted = b->started = b->finished = 0;
    pthread_mutex_unlock(&b->mu);
    watch_end(c);
}
