/* comm_watchdog.c: comm.timeout's watchdog (comm.h, sf_comm_set_timeout):
 * a thread per rank that, past the deadline of a collective, finds out
 * which rank is missing and ends the job with a message naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "shardfit/error.h"

/* ---- the watchdog --------------------------------------------------------
 *
 * A blocked collective cannot say who is missing, so past the deadline the
 * watchdog asks: it sends every other rank's watchdog a roll call on its
 * own communicator, and each answers with where its rank is (in which
 * collective at which step, or outside any). A rank whose watchdog does not
 * answer within the grace period is stopped, hung in the kernel or dead;
 * one that answers from elsewhere has not arrived (still reading data, say).
 * The lowest rank waiting in the collective prints the verdict and aborts.
 * Nothing of this runs before a deadline passes, except one MPI_Iprobe per
 * tick to answer a roll call. */

enum { TAG_ASK = 7301, TAG_ANSWER = 7302 };

/* Where a rank stands, as a roll call answer: op is OP_NONE outside a
 * collective. */
typedef struct {
    int64_t op, epoch, step;
} Where;

static Where where_now(SfComm *c)
{
    int busy = atomic_load_explicit(&c->busy_since, memory_order_acquire) != 0;
    return (Where){busy ? atomic_load(&c->op) : OP_NONE,
                   atomic_load(&c->epoch), atomic_load(&c->step)};
}

/* Answers every roll call waiting for this rank. */
static void answer_roll_calls(SfComm *c)
{
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, c->watch_comm, &flag, &st);
        if (!flag)
            return;
        int64_t ask;
        MPI_Recv(&ask, 1, MPI_INT64_T, st.MPI_SOURCE, TAG_ASK, c->watch_comm,
                 MPI_STATUS_IGNORE);
        Where w = where_now(c);
        MPI_Request req; /* 24 bytes go eagerly; the asker is alive */
        MPI_Isend(&w, 3, MPI_INT64_T, st.MPI_SOURCE, TAG_ANSWER, c->watch_comm,
                  &req);
        MPI_Request_free(&req);
    }
}

/* fork() (h5guard.c's checking child) copies the process with whatever
 * locks its other threads hold at that instant, and the child deadlocks on
 * the first of them it needs. Seen under AddressSanitizer, whose allocator
 * has no fork handler in GCC 12: 1 run in 10 of a 2-rank config error hung
 * until the test's timeout, the child's first malloc waiting on a lock the
 * watchdog thread held. That thread allocates as it starts (the
 * sanitizer's thread state), and may inside MPI; so sf_comm_set_timeout
 * returns only once the watchdog runs, and the watchdog does its MPI work
 * holding the gate, which fork takes first (pthread_atfork). With the gate
 * alone 1 run in 30 still hung; with both, none in 70. One gate for the
 * process, as fork is one for the process. */
static pthread_mutex_t fork_gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fork_gate_once = PTHREAD_ONCE_INIT;

static void gate_close(void) { pthread_mutex_lock(&fork_gate); }
static void gate_open(void) { pthread_mutex_unlock(&fork_gate); }
static void gate_install(void) { pthread_atfork(gate_close, gate_open, gate_open); }

static void nap(double seconds)
{
    struct timespec ts = {(time_t)seconds,
                          (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Appends "ranks 1 (h1), 3 (h2)" style lists of ranks with mark[r] == want
 * to buf. */
static void append_ranks(char *buf, size_t n, const char *what,
                         const signed char *mark, int size, int want,
                         char (*hosts)[SF_COMM_HOST_MAX])
{
    int count = 0;
    for (int r = 0; r < size; r++)
        count += mark[r] == want;
    if (!count)
        return;
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "; rank%s", count > 1 ? "s" : "");
    for (int r = 0, k = 0; r < size; r++) {
        if (mark[r] != want)
            continue;
        len = strlen(buf);
        snprintf(buf + len, n - len, "%s %d (%s)", k++ ? "," : "", r,
                 hosts[r]);
    }
    len = strlen(buf);
    snprintf(buf + len, n - len, " %s", what);
}

enum { MARK_NO_ANSWER = 0, MARK_WAITING = 1, MARK_ELSEWHERE = 2 };

/* Past the deadline: the roll call, the verdict, the end of the job. */
static void roll_call(SfComm *c, double waited)
{
    const int p = c->size;
    Where mine = where_now(c);
    signed char *mark = calloc((size_t)p, 1);
    Where *at = calloc((size_t)p, sizeof *at);
    MPI_Request *reqs = calloc((size_t)p, sizeof *reqs);
    int64_t ask = 1;
    if (mark && at && reqs) {
        for (int r = 0; r < p; r++)
            if (r != c->rank)
                MPI_Isend(&ask, 1, MPI_INT64_T, r, TAG_ASK, c->watch_comm,
                          &reqs[r]);
        mark[c->rank] = MARK_WAITING;
        int answered = 0;
        double grace = c->timeout / 2 < 1 ? 1 : c->timeout / 2 > 10 ? 10
                       : c->timeout / 2;
        long long until = now_ns() + (long long)(grace * 1e9);
        while (answered < p - 1 && now_ns() < until) {
            answer_roll_calls(c);
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, TAG_ANSWER, c->watch_comm, &flag, &st);
            if (!flag) {
                nap(0.01);
                continue;
            }
            Where w;
            MPI_Recv(&w, 3, MPI_INT64_T, st.MPI_SOURCE, TAG_ANSWER,
                     c->watch_comm, MPI_STATUS_IGNORE);
            int r = st.MPI_SOURCE;
            if (mark[r] == MARK_NO_ANSWER && r != c->rank)
                answered++;
            at[r] = w;
            mark[r] = w.op == mine.op && w.step == mine.step &&
                      w.epoch == mine.epoch ? MARK_WAITING : MARK_ELSEWHERE;
        }
        /* The lowest rank waiting in any collective speaks (a rank may have
         * left this collective for the next one while another still waits
         * in it: both time out); the others keep answering a while in case
         * it cannot, then end the job themselves. */
        int lowest = c->rank;
        for (int r = 0; r < c->rank; r++)
            if (mark[r] == MARK_WAITING ||
                (mark[r] == MARK_ELSEWHERE && at[r].op != OP_NONE)) {
                lowest = r;
                break;
            }
        if (lowest != c->rank) {
            long long again = now_ns() + (long long)(grace * 1e9);
            while (now_ns() < again) {
                answer_roll_calls(c);
                nap(0.01);
            }
        }
    }
    char msg[2048];
    snprintf(msg, sizeof msg, "shardfit: error: rank %d (%s): %s at step %lld "
             "(epoch %lld) has waited %.1f s, longer than comm.timeout = %g s",
             c->rank, c->hosts[c->rank], sf_comm_op_name(mine.op), (long long)mine.step,
             (long long)mine.epoch, waited, c->timeout);
    if (mark && at && reqs) {
        append_ranks(msg, sizeof msg, "waiting in it", mark, p, MARK_WAITING,
                     c->hosts);
        append_ranks(msg, sizeof msg, "did not answer (stopped, hung or dead, "
                     "or its host is down or cut off)", mark, p, MARK_NO_ANSWER,
                     c->hosts);
        int all_here = 1;
        for (int r = 0; r < p; r++)
            all_here &= mark[r] == MARK_WAITING;
        if (all_here) {
            size_t len = strlen(msg);
            snprintf(msg + len, sizeof msg - len, ": every rank has arrived, "
                     "so the collective itself has run longer than the "
                     "deadline (a slow or broken network?)");
        }
        for (int r = 0; r < p; r++) {
            if (mark[r] != MARK_ELSEWHERE)
                continue;
            size_t len = strlen(msg);
            if (at[r].op == OP_NONE)
                snprintf(msg + len, sizeof msg - len, "; rank %d (%s) is "
                         "outside any collective at step %lld (still computing "
                         "or reading data)", r, c->hosts[r], (long long)at[r].step);
            else
                snprintf(msg + len, sizeof msg - len, "; rank %d (%s) is in %s "
                         "at step %lld", r, c->hosts[r], sf_comm_op_name(at[r].op),
                         (long long)at[r].step);
        }
    } else {
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof msg - len, ": another rank has stopped, "
                 "stalled or died");
    }
    fprintf(stderr, "%s; ending the job\n", msg);
    fflush(stderr);
    MPI_Abort(c->comm, SF_EXIT_FAILURE);
}

/* Wakes a few times per timeout to answer roll calls; past the deadline it
 * calls the roll and ends the job. MPI calls from this thread are allowed
 * because MPI runs at MPI_THREAD_MULTIPLE (measured: no cost on the
 * allreduce here). */
static void *watchdog_main(void *arg)
{
    SfComm *c = arg;
    atomic_store(&c->watching, 1);
    double tick = c->timeout / 10.0 < 0.2 ? c->timeout / 10.0 : 0.2;
    /* Time this process itself did not run (SIGSTOP, then the SIGCONT that
     * precedes mpirun's kill, or a starved machine) is not the others'
     * fault: a tick that took far longer than asked is taken off the
     * current collective's wait, so a rank that was stopped does not wake
     * up and blame the ranks that waited for it. */
    long long last = now_ns(), seen = 0, excused = 0;
    const long long gap = (long long)((tick * 5.0 > 1.0 ? tick * 5.0 : 1.0) * 1e9);
    while (!atomic_load(&c->quit)) {
        nap(tick);
        long long now = now_ns(), slept = now - last;
        last = now;
        gate_close();
        answer_roll_calls(c);
        gate_open();
        long long since = atomic_load_explicit(&c->busy_since, memory_order_acquire);
        long long lost = slept > gap ? slept - (long long)(tick * 1e9) : 0;
        if (since != seen) {
            /* A collective begun during the lost time has lost only what
             * came after its start. */
            seen = since;
            excused = since && lost > now - since ? now - since : lost;
        } else if (since) {
            excused += lost;
        }
        if (!since)
            continue;
        double waited = (double)(now - since - excused) * 1e-9;
        if (waited > c->timeout) {
            gate_close();
            roll_call(c, waited);
            gate_open();
        }
    }
    return NULL;
}

int sf_comm_set_timeout(SfComm *c, double seconds)
{
    int provided;
    MPI_Query_thread(&provided);
    if (c->size == 1 || c->has_watchdog || provided < MPI_THREAD_MULTIPLE)
        return 0;
    c->timeout = seconds;
    pthread_once(&fork_gate_once, gate_install);
    MPI_Comm_dup(c->comm, &c->watch_comm); /* collective: every rank is here */
    if (pthread_create(&c->watchdog, NULL, watchdog_main, c)) {
        MPI_Comm_free(&c->watch_comm);
        return -1;
    }
    c->has_watchdog = 1;
    while (!atomic_load(&c->watching))
        nap(1e-4);
    return 0;
}

void sf_comm_watchdog_stop(SfComm *c)
{
    atomic_store(&c->quit, 1);
    pthread_join(c->watchdog, NULL);
    MPI_Comm_free(&c->watch_comm);
}
