/* comm.h: everything the ranks say to each other.
 *
 * Only comm.c, comm_watchdog.c, comm_buckets.c and comm_shared.c include
 * <mpi.h> (CoMD's rule):
 * the rest of shardfit sees a handle and a handful of collectives, so the
 * model, sampler and optimizer are tested without mpirun. All calls are
 * collective over the handle's ranks unless marked otherwise. MPI errors are
 * fatal (MPI_ERRORS_ARE_FATAL): a failing collective ends the whole job
 * rather than leaving ranks waiting. */
#ifndef SHARDFIT_COMM_H
#define SHARDFIT_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "shardfit/error.h"

typedef struct SfComm SfComm;

/* Starts MPI (once per process) and returns the world. Works without mpirun
 * (a singleton of one rank). NULL only if MPI cannot start (or, on every
 * rank alike, no memory for the handle). */
SfComm *sf_comm_init(int *argc, char ***argv);

/* A one-rank communicator of this process alone (MPI_COMM_SELF): lets tests
 * run the same trainer on 1 rank inside a multi-rank job. Not collective. */
SfComm *sf_comm_self(void);

/* Collective. Puts a deadline on every collective of c (comm.timeout): a
 * watchdog thread ends the whole job (MPI_Abort, exit status 1) when one
 * has waited longer than seconds, after printing which operation, at which
 * step, on which rank, and, from a roll call of the other ranks' watchdogs
 * (comm_watchdog.c), which ranks are waiting in it, which did not answer and which
 * are elsewhere. A stopped, stalled or dead peer so ends the job instead of
 * hanging it. The cost on the hot path is two atomic stores per collective.
 * No-op on a one-rank comm. 0, or -1 if the thread cannot start. */
int sf_comm_set_timeout(SfComm *c, double seconds);

/* What the watchdog's message names: the epoch and the optimizer step
 * being computed, both 1-based. Cheap: call it every step. */
void sf_comm_set_position(SfComm *c, int64_t epoch, int64_t step);

/* Collective: a new communicator of the ranks of c that pass the same
 * color, ordered as in c (tests use it to run jobs of several sizes inside
 * one mpirun). NULL for ranks that pass a negative color. */
SfComm *sf_comm_split(SfComm *c, int color);

/* Host names are kept to this many bytes, the terminating NUL included. */
#define SF_COMM_HOST_MAX 64

/* The host rank runs on, as MPI_Get_processor_name reports it (truncated to
 * SF_COMM_HOST_MAX - 1 bytes); gathered once when the handle was made, so
 * the watchdog can name the host of a rank that does not answer. Not
 * collective. */
const char *sf_comm_host(const SfComm *c, int rank);

/* Writes which ranks run on which host, hosts in order of their lowest rank
 * and consecutive ranks as ranges ("sfh1 (ranks 0-1), sfh2 (rank 2)"), into
 * buf (n bytes, truncated to fit). Returns the number of hosts. Not
 * collective. */
int sf_comm_describe_hosts(const SfComm *c, char *buf, size_t n);

/* Frees a handle; the world's free also finalizes MPI. NULL is fine. */
void sf_comm_free(SfComm *c);

int sf_comm_rank(const SfComm *c);
int sf_comm_size(const SfComm *c);

/* Worst status over all ranks (statuses are SF_EXIT_* codes, larger is
 * worse), and the lowest rank that reported it (-1 if all are 0). Used to
 * agree before acting on a local error, so no rank exits alone. */
int sf_comm_agree(SfComm *c, int status, int *first_rank);

/* "Agree, then report once", for a local failure that every rank must act
 * on together: failed says whether this rank failed (err then says how).
 * Returns the worst status over the ranks, 0 when none failed. On the
 * lowest failing rank err keeps its message, prefixed "rank R: " when
 * name_rank is set and the job has several ranks; on every other rank
 * err->code is the agreed status and err->msg is empty. So the caller
 * prints err when err->msg is set, and exactly one rank does. */
int sf_comm_agree_error(SfComm *c, int failed, int name_rank, SfError *err);

void sf_comm_bcast_i64(SfComm *c, int64_t *buf, int64_t n, int root);
void sf_comm_bcast_f32(SfComm *c, float *buf, int64_t n, int root);
/* Raw bytes: for plain structs, all ranks running the same binary. */
void sf_comm_bcast_bytes(SfComm *c, void *buf, size_t n, int root);
void sf_comm_allreduce_sum_f32(SfComm *c, float *buf, int64_t n);  /* in place */

/* The algorithm Open MPI sums sf_comm_allreduce_sum_f32 with on 3 or more
 * ranks: "ring" (coll/tuned's, asked for at start: comm.c says why) unless
 * the user forced another through coll_tuned_allreduce_algorithm, or
 * "coll/tuned's fixed choice" with coll_tuned_use_dynamic_rules = 0; NULL
 * on 1 or 2 ranks or where Open MPI's variables cannot be read. */
const char *sf_comm_sums_algorithm(const SfComm *c);

/* Non-blocking sums for gradient buckets (comm.bucket_mb). Collective:
 * starts the helper thread that progresses them (Open MPI runs a
 * non-blocking collective only while a thread is inside MPI) on a private
 * duplicate of c, and asks Open MPI for its ring algorithm for them
 * (comm_buckets.c says why). Idempotent; a no-op on one rank or without
 * MPI_THREAD_MULTIPLE (posts are then summed at once, blocking). 0, or -1
 * if the thread cannot start. */
int sf_comm_enable_buckets(SfComm *c);

/* The algorithm Open MPI's libnbc sums the buckets with
 * (coll_libnbc_iallreduce_algorithm: "ring" unless the user chose another),
 * or NULL where that is not known (no buckets, another MPI). */
const char *sf_comm_buckets_algorithm(const SfComm *c);

/* Starts the in-place sum of buf (n floats) over the ranks and returns at
 * once; buf must stay untouched until sf_comm_wait_sums. Every rank posts
 * the same sequence of sizes in the same order (a rank with nothing to add
 * posts zeros). No other collective of c may run between the first post
 * and the wait; the comm.timeout deadline runs from the first post to the
 * end of the wait. On one rank it does nothing. */
void sf_comm_post_sum_f32(SfComm *c, float *buf, int64_t n);

/* Blocks until every posted sum has finished on this rank. */
void sf_comm_wait_sums(SfComm *c);

/* How many sum_f32 allreduces c has made, blocking or posted: the trainer
 * makes one per gradient bucket per optimizer step (gradients, loss and
 * counts together; one in all with comm.bucket_mb = 0), whatever
 * micro_batch is, and no other. Not collective. */
int64_t sf_comm_allreduce_f32_count(const SfComm *c);
void sf_comm_allreduce_sum_f64(SfComm *c, double *buf, int64_t n); /* in place */
void sf_comm_allreduce_max_f64(SfComm *c, double *buf, int64_t n); /* in place */

/* Byte exchange: this rank sends scount[r] bytes from send + sdispl[r] to
 * rank r and receives rcount[r] bytes from r into recv + rdispl[r]. */
void sf_comm_alltoallv(SfComm *c, const void *send, const int *scount,
                       const int *sdispl, void *recv, const int *rcount,
                       const int *rdispl);

void sf_comm_barrier(SfComm *c);

/* Concatenates every rank's n floats in rank order into recv on rank 0
 * (recv is ignored elsewhere and must hold the total there). */
void sf_comm_gather_f32(SfComm *c, const float *send, int64_t n, float *recv);

/* Every rank's value, in rank order, into all (size entries). */
void sf_comm_allgather_u64(SfComm *c, uint64_t value, uint64_t *all);

/* Whether every rank holds the same bytes in buf: one allgather of a 64-bit
 * hash (FNV-1a). Returns how many ranks differ from rank 0, listing the
 * first max of them in bad (may be NULL); every rank gets the same answer.
 * A guard against bugs and silent corruption: replicas must never drift. */
int sf_comm_count_drifted(SfComm *c, const void *buf, size_t bytes, int *bad,
                          int max);

/* The MPI library and the standard it implements, e.g. "Open MPI v4.1.4
 * (MPI 3.1)". Not collective. */
void sf_comm_library_version(char *buf, size_t n);

/* Called after every collective of c, on this rank, with the collective's
 * name ("allreduce", "alltoallv", ...), the monotonic seconds (sf_clock's
 * clock) this rank arrived in it and left it, and its sequence number on c
 * (the same collective has the same number on every rank). The trace
 * (trace.h) listens here. */
typedef void (*SfCommHook)(void *ctx, const char *op, double arrived,
                           double left, int64_t seq);

/* Sets or (fn NULL) clears the hook. Not collective. The cost when unset
 * is one branch per collective. */
void sf_comm_set_hook(SfComm *c, SfCommHook fn, void *ctx);

/* Collective. Rank 0's monotonic clock as seen from this rank: rank 0 plays
 * `rounds` ping-pongs with each other rank in turn, and the round with the
 * shortest round trip gives offset = rank 0's time - the midpoint of the
 * local send and receive (NTP's estimate). local + *offset is rank 0's
 * clock to within *error (half that round trip). Rank 0 gets 0 and 0. */
void sf_comm_clock_offset(SfComm *c, int rounds, double *offset, double *error);

/* Collective. Concatenates every rank's n bytes in rank order into a
 * malloc'd block on rank 0 (returned; the caller frees) and each rank's
 * count into counts[size] there; NULL elsewhere. When rank 0 cannot
 * allocate, every rank returns NULL having sent nothing (*ok = 0 on all
 * ranks); else *ok = 1. */
void *sf_comm_gather_bytes(SfComm *c, const void *send, size_t n,
                           size_t *counts, int *ok);

/* Memory that the ranks on one host map together (an MPI-3 shared-memory
 * window, one per host): the ranks of a host read and write each other's
 * segments directly, and sf_shared_sync orders those accesses. */
typedef struct SfShared SfShared;

/* Collective. Each rank contributes a segment, page aligned and
 * zero-filled: first_bytes on the first rank of its host (node rank 0),
 * bytes on the others (zero allowed). The job may span several hosts when
 * each holds the same number of ranks, 2 or more. NULL on every rank alike
 * when c has one rank, a host has one rank or another count than the
 * others, or a host's shared memory filesystem (/dev/shm) has no room for
 * its segments or they pass the file size limit (not an error: the caller
 * keeps its collectives);
 * allocation failures abort the job (MPI_ERRORS_ARE_FATAL). */
SfShared *sf_comm_shared_create(SfComm *c, size_t first_bytes, size_t bytes);

/* This rank's place among its host's ranks (its node rank), how many they
 * are, and how many hosts the job spans. Not collective. */
int sf_shared_rank(const SfShared *s);
int sf_shared_size(const SfShared *s);
int sf_shared_hosts(const SfShared *s);

/* Node rank r's segment, as mapped into this process. Not collective. */
void *sf_shared_segment(const SfShared *s, int rank);

/* Collective over the host's ranks, under c's comm.timeout watchdog: a
 * barrier after which every store any of them made to the window before
 * it is seen by all of them. It carries a flag: returns the largest flag
 * any of them passed. */
int sf_shared_sync(SfShared *s, int flag);

/* Collective over the host's ranks, under the watchdog: buf (n doubles)
 * summed over them in place. */
void sf_shared_host_sum_f64(SfShared *s, double *buf, int64_t n);

/* Collective over the ranks that share this one's node rank, one on each
 * host (sf_shared_hosts > 1 only), under the watchdog: buf (n floats)
 * summed over them in place. */
void sf_shared_across_sum_f32(SfShared *s, float *buf, int64_t n);

/* Collective over the ranks that share this one's node rank (hosts > 1),
 * under the watchdog: buf (n floats) of the one on rank 0's host to the
 * others. */
void sf_shared_across_bcast_f32(SfShared *s, float *buf, int64_t n);

/* Collective. Unmaps and frees the window. NULL is fine. */
void sf_shared_free(SfShared *s);

/* Ends every rank of the job now with the given exit status (not collective). */
void sf_comm_abort(SfComm *c, int status);

#endif
