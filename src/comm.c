/* comm.c: communicators and their collectives (comm.h). With
 * comm_watchdog.c, comm_buckets.c and comm_shared.c, the only code that calls MPI
 * (comm_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "shardfit/error.h"

const char *sf_comm_op_name(int op)
{
    static const char *const names[] = {"", "status agreement", "broadcast",
                                        "allreduce", "alltoallv", "barrier",
                                        "allgather", "gather", "clock sync",
                                        "shared memory window",
                                        "shared gradient sync"};
    return op >= 0 && op < (int)(sizeof names / sizeof *names) ? names[op] : "?";
}

int sf_comm_cvar_int(const char *name, int value, int *old)
{
    int provided, idx, count, verbosity, bind, scope, rc = -1;
    int nlen = 0, dlen = 0;
    MPI_Datatype type;
    MPI_T_enum values;
    MPI_T_cvar_handle h;
    if (MPI_T_init_thread(MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return -1;
    if (MPI_T_cvar_get_index(name, &idx) == MPI_SUCCESS &&
        MPI_T_cvar_get_info(idx, NULL, &nlen, &verbosity, &type, &values, NULL, &dlen,
                            &bind, &scope) == MPI_SUCCESS &&
        (type == MPI_INT || (type == MPI_C_BOOL && value < 0)) &&
        MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) == MPI_SUCCESS) {
        /* Open MPI's bool variables (coll_tuned_use_dynamic_rules) are
         * MPI_C_BOOL: read into zeroed room that fits either type. */
        union { int i; _Bool b; char room[16]; } v;
        memset(&v, 0, sizeof v);
        if (count == 1 && MPI_T_cvar_read(h, &v) == MPI_SUCCESS &&
            (value < 0 || MPI_T_cvar_write(h, &value) == MPI_SUCCESS)) {
            *old = type == MPI_INT ? v.i : v.b;
            rc = 0;
        }
        MPI_T_cvar_handle_free(&h);
    }
    MPI_T_finalize();
    return rc;
}

/* Open MPI's coll/tuned, left to its fixed decisions, sums a gradient's
 * size over 3 or 4 ranks no faster than its recursive doubling (3) or
 * Rabenseifner's algorithm (4), and much slower than its ring, which
 * sends each rank's link 2 (P - 1) / P of the bytes, the least any
 * algorithm can: `shardfit bench-comm`, 2 MiB, one rank on each namespace
 * host over 1gbit, ms: 3 hosts 62.4 against 29.8 by the ring (recursive
 * doubling 66.3), 4 hosts 37.6 against 30.1 (Rabenseifner 37.7), 2 hosts
 * alike either way (17.5), 5 to 8 hosts 49-90 against 30-32; without a
 * rate limit, 3 hosts on 2 cores, 5.7-6.6 against 2.0-2.1 (once glibc
 * keeps the ring's buffers mapped, bigalloc.c), 8 hosts about even. More
 * than 8 hosts is not measured (docs/BENCHMARKS.md).
 * coll/tuned takes a forced algorithm from the variable when it makes a
 * communicator, and only with dynamic rules on (sf_comm_init), so it is
 * forced while this duplicate is made and put back after: the other
 * communicators, with their many small sums, keep the fixed decisions. A
 * user's forced algorithm stays. */
MPI_Comm sf_comm_ring_dup(MPI_Comm comm, int *algorithm)
{
    enum { RING = 4 };
    int alg = -1, rules = 0, old = -1;
    if (sf_comm_cvar_int("coll_tuned_use_dynamic_rules", -1, &rules) == 0 &&
        sf_comm_cvar_int("coll_tuned_allreduce_algorithm", -1, &old) == 0)
        alg = rules ? old : 0;
    int forced = alg == 0 && rules &&
                 sf_comm_cvar_int("coll_tuned_allreduce_algorithm", RING, &old) == 0;
    MPI_Comm dup;
    MPI_Comm_dup(comm, &dup);
    if (forced)
        sf_comm_cvar_int("coll_tuned_allreduce_algorithm", 0, &old);
    if (algorithm)
        *algorithm = forced ? RING : alg;
    return dup;
}

const char *sf_comm_sums_algorithm(const SfComm *c)
{
    /* Open MPI 4.1's names for coll_tuned_allreduce_algorithm's values */
    static const char *names[] = {"coll/tuned's fixed choice", "basic_linear",
                                  "nonoverlapping", "recursive_doubling", "ring",
                                  "segmented_ring", "rabenseifner"};
    int a = c->sums != MPI_COMM_NULL ? c->sums_algorithm : -1;
    return a >= 0 && a < (int)(sizeof names / sizeof *names) ? names[a] : NULL;
}

/* Collective over comm (one allgather of host names). */
static SfComm *wrap(MPI_Comm comm, int owns_mpi)
{
    SfComm *c = calloc(1, sizeof *c);
    int ok = c != NULL;
    if (c)
        c->sums = MPI_COMM_NULL;
    char name[MPI_MAX_PROCESSOR_NAME] = "", mine[SF_COMM_HOST_MAX] = "";
    if (c) {
        c->comm = comm;
        c->owns_mpi = owns_mpi;
        MPI_Comm_rank(comm, &c->rank);
        MPI_Comm_size(comm, &c->size);
        c->hosts = calloc((size_t)c->size, sizeof *c->hosts);
        ok = c->hosts != NULL;
    }
    /* Every rank joins the allgather, even one out of memory, and all learn
     * whether all can go on. */
    int len = 0;
    MPI_Get_processor_name(name, &len);
    snprintf(mine, sizeof mine, "%s", name);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm);
    if (ok)
        MPI_Allgather(mine, SF_COMM_HOST_MAX, MPI_CHAR, c->hosts,
                      SF_COMM_HOST_MAX, MPI_CHAR, comm);
    if (ok)
        c->sums = c->size >= 3 ? sf_comm_ring_dup(comm, &c->sums_algorithm)
                               : MPI_COMM_NULL;
    if (!ok && c) {
        free(c->hosts);
        free(c);
        c = NULL;
    }
    return c;
}

SfComm *sf_comm_init(int *argc, char ***argv)
{
    int started = 0, provided;
    MPI_Initialized(&started);
    /* Read once, at MPI_Init: what lets sf_comm_ring_dup force coll/tuned's
     * ring on one communicator. With no rules file and nothing forced,
     * coll/tuned's decisions are its fixed ones, as without it. A value
     * set by the user stays. */
    if (!started)
        setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", 0);
    if (!started &&
        MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return NULL;
    return wrap(MPI_COMM_WORLD, !started);
}

SfComm *sf_comm_self(void) { return wrap(MPI_COMM_SELF, 0); }

SfComm *sf_comm_split(SfComm *c, int color)
{
    MPI_Comm sub;
    MPI_Comm_split(c->comm, color < 0 ? MPI_UNDEFINED : color, c->rank, &sub);
    return sub == MPI_COMM_NULL ? NULL : wrap(sub, 0);
}
const char *sf_comm_host(const SfComm *c, int rank) { return c->hosts[rank]; }

int sf_comm_describe_hosts(const SfComm *c, char *buf, size_t n)
{
    int nhosts = 0;
    size_t used = 0;
    buf[0] = '\0';
    for (int r = 0; r < c->size; r++) {
        int seen = 0;
        for (int q = 0; q < r && !seen; q++)
            seen = !strcmp(c->hosts[q], c->hosts[r]);
        if (seen)
            continue;
        nhosts++;
        /* This host's ranks, consecutive ones as a range: "ranks 0-1, 4". */
        int count = 0;
        for (int q = r; q < c->size; q++)
            count += !strcmp(c->hosts[q], c->hosts[r]);
        used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s (rank%s",
                                 nhosts > 1 ? ", " : "", c->hosts[r],
                                 count > 1 ? "s" : "");
        for (int q = r, first = 1; q < c->size; q++) {
            if (strcmp(c->hosts[q], c->hosts[r]))
                continue;
            int last = q;
            while (last + 1 < c->size && !strcmp(c->hosts[last + 1], c->hosts[r]))
                last++;
            if (last > q)
                used += (size_t)snprintf(buf + used, used < n ? n - used : 0,
                                         "%s %d-%d", first ? "" : ",", q, last);
            else
                used += (size_t)snprintf(buf + used, used < n ? n - used : 0,
                                         "%s %d", first ? "" : ",", q);
            first = 0;
            q = last;
        }
        used += (size_t)snprintf(buf + used, used < n ? n - used : 0, ")");
    }
    return nhosts;
}

void sf_comm_set_position(SfComm *c, int64_t epoch, int64_t step)
{
    atomic_store_explicit(&c->epoch, epoch, memory_order_relaxed);
    atomic_store_explicit(&c->step, step, memory_order_relaxed);
}

void sf_comm_free(SfComm *c)
{
    if (!c)
        return;
    sf_comm_buckets_free(c->buckets);
    if (c->has_watchdog)
        sf_comm_watchdog_stop(c);
    if (c->sums != MPI_COMM_NULL)
        MPI_Comm_free(&c->sums);
    if (c->comm != MPI_COMM_WORLD && c->comm != MPI_COMM_SELF)
        MPI_Comm_free(&c->comm);
    if (c->owns_mpi)
        MPI_Finalize();
    free(c->hosts);
    free(c);
}

int sf_comm_rank(const SfComm *c) { return c->rank; }
int sf_comm_size(const SfComm *c) { return c->size; }

int sf_comm_agree(SfComm *c, int status, int *first_rank)
{
    /* MAXLOC picks the largest status and, among equals, the lowest rank. */
    struct { int value, rank; } in = {status, c->rank}, out;
    watch_begin(c, OP_AGREE);
    MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, c->comm);
    watch_end(c);
    if (first_rank)
        *first_rank = out.value ? out.rank : -1;
    return out.value;
}

int sf_comm_agree_error(SfComm *c, int failed, int name_rank, SfError *err)
{
    int first = -1;
    int status = sf_comm_agree(c, failed ? (err->code ? err->code : 1) : 0, &first);
    if (!status)
        return 0;
    if (c->rank != first) {
        err->code = status;
        err->msg[0] = '\0';
    } else if (name_rank && c->size > 1) {
        sf_error_prefix(err, "rank %d: ", c->rank);
    }
    return status;
}

void sf_comm_bcast_i64(SfComm *c, int64_t *buf, int64_t n, int root)
{
    watch_begin(c, OP_BCAST);
    MPI_Bcast(buf, (int)n, MPI_INT64_T, root, c->comm);
    watch_end(c);
}

void sf_comm_bcast_f32(SfComm *c, float *buf, int64_t n, int root)
{
    watch_begin(c, OP_BCAST);
    MPI_Bcast(buf, (int)n, MPI_FLOAT, root, c->comm);
    watch_end(c);
}

void sf_comm_bcast_bytes(SfComm *c, void *buf, size_t n, int root)
{
    watch_begin(c, OP_BCAST);
    MPI_Bcast(buf, (int)n, MPI_BYTE, root, c->comm);
    watch_end(c);
}

void sf_comm_allreduce_sum_f32(SfComm *c, float *buf, int64_t n)
{
    watch_begin(c, OP_ALLREDUCE);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
                  c->sums != MPI_COMM_NULL ? c->sums : c->comm);
    watch_end(c);
    c->f32_allreduces++;
}

int64_t sf_comm_allreduce_f32_count(const SfComm *c) { return c->f32_allreduces; }

void sf_comm_allreduce_sum_f64(SfComm *c, double *buf, int64_t n)
{
    watch_begin(c, OP_ALLREDUCE);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, c->comm);
    watch_end(c);
}

void sf_comm_allreduce_max_f64(SfComm *c, double *buf, int64_t n)
{
    watch_begin(c, OP_ALLREDUCE);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_MAX, c->comm);
    watch_end(c);
}

void sf_comm_alltoallv(SfComm *c, const void *send, const int *scount,
                       const int *sdispl, void *recv, const int *rcount,
                       const int *rdispl)
{
    watch_begin(c, OP_ALLTOALLV);
    MPI_Alltoallv(send, scount, sdispl, MPI_BYTE, recv, rcount, rdispl,
                  MPI_BYTE, c->comm);
    watch_end(c);
}

void sf_comm_barrier(SfComm *c)
{
    watch_begin(c, OP_BARRIER);
    MPI_Barrier(c->comm);
    watch_end(c);
}

void sf_comm_allgather_u64(SfComm *c, uint64_t value, uint64_t *all)
{
    watch_begin(c, OP_ALLGATHER);
    MPI_Allgather(&value, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, c->comm);
    watch_end(c);
}

void sf_comm_abort(SfComm *c, int status)
{
    MPI_Abort(c ? c->comm : MPI_COMM_WORLD, status);
}

/* FNV-1a over 64-bit words (then the tail bytes): 8x faster than byte-wise
 * on a 400 MB model, and any flipped bit still changes the hash. */
static uint64_t fnv1a(const void *buf, size_t bytes)
{
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ULL, word;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        memcpy(&word, p + i, 8);
        h = (h ^ word) * 0x100000001b3ULL;
    }
    for (; i < bytes; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

int sf_comm_count_drifted(SfComm *c, const void *buf, size_t bytes, int *bad,
                          int max)
{
    uint64_t *all = malloc((size_t)c->size * sizeof *all);
    if (!all)
        sf_comm_abort(c, SF_EXIT_FAILURE); /* a few bytes per rank */
    sf_comm_allgather_u64(c, fnv1a(buf, bytes), all);
    int n = 0;
    for (int r = 1; r < c->size; r++)
        if (all[r] != all[0]) {
            if (bad && n < max)
                bad[n] = r;
            n++;
        }
    free(all);
    return n;
}

void sf_comm_gather_f32(SfComm *c, const float *send, int64_t n, float *recv)
{
    int *counts = NULL, *displs = NULL, mine = (int)n;
    if (c->rank == 0) {
        counts = malloc((size_t)c->size * sizeof *counts);
        displs = malloc((size_t)c->size * sizeof *displs);
        if (!counts || !displs)
            sf_comm_abort(c, SF_EXIT_FAILURE); /* a few bytes per rank */
    }
    watch_begin(c, OP_GATHER);
    MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, c->comm);
    if (c->rank == 0)
        for (int r = 0, pos = 0; r < c->size; pos += counts[r], r++)
            displs[r] = pos;
    MPI_Gatherv(send, mine, MPI_FLOAT, recv, counts, displs, MPI_FLOAT, 0, c->comm);
    watch_end(c);
    free(counts);
    free(displs);
}

void sf_comm_library_version(char *buf, size_t n)
{
    char lib[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0, major = 0, minor = 0;
    MPI_Get_library_version(lib, &len);
    MPI_Get_version(&major, &minor);
    lib[strcspn(lib, ",\n")] = '\0'; /* "Open MPI v4.1.4, package: ..." */
    snprintf(buf, n, "%s (MPI %d.%d)", lib, major, minor);
}

void sf_comm_set_hook(SfComm *c, SfCommHook fn, void *ctx)
{
    c->hook = fn;
    c->hook_ctx = ctx;
}

enum { TAG_PING = 7311, TAG_PONG = 7312 };

void sf_comm_clock_offset(SfComm *c, int rounds, double *offset, double *error)
{
    *offset = 0.0;
    *error = 0.0;
    watch_begin(c, OP_CLOCK);
    for (int r = 1; r < c->size; r++) {
        if (c->rank == 0) {
            for (int i = 0; i < rounds; i++) {
                long long ping, pong;
                MPI_Recv(&ping, 1, MPI_LONG_LONG, r, TAG_PING, c->comm,
                         MPI_STATUS_IGNORE);
                pong = now_ns();
                MPI_Send(&pong, 1, MPI_LONG_LONG, r, TAG_PONG, c->comm);
            }
        } else if (c->rank == r) {
            long long best = -1;
            for (int i = 0; i < rounds; i++) {
                long long sent = now_ns(), there;
                MPI_Send(&sent, 1, MPI_LONG_LONG, 0, TAG_PING, c->comm);
                MPI_Recv(&there, 1, MPI_LONG_LONG, 0, TAG_PONG, c->comm,
                         MPI_STATUS_IGNORE);
                long long back = now_ns(), rtt = back - sent;
                if (best < 0 || rtt < best) {
                    best = rtt;
                    *offset = (double)(there - sent - rtt / 2) * 1e-9;
                    *error = (double)rtt * 0.5e-9;
                }
            }
        }
    }
    MPI_Barrier(c->comm);
    watch_end(c);
}

void *sf_comm_gather_bytes(SfComm *c, const void *send, size_t n,
                           size_t *counts, int *ok)
{
    /* MPI counts are int: a trace buffer is far below 2 GiB per rank. */
    int mine = (int)n, *icounts = NULL, *displs = NULL;
    char *recv = NULL;
    int good = 1;
    if (c->rank == 0) {
        icounts = malloc((size_t)c->size * sizeof *icounts);
        displs = malloc((size_t)c->size * sizeof *displs);
        good = icounts && displs;
    }
    watch_begin(c, OP_GATHER);
    MPI_Bcast(&good, 1, MPI_INT, 0, c->comm);
    if (good) {
        MPI_Gather(&mine, 1, MPI_INT, icounts, 1, MPI_INT, 0, c->comm);
        size_t total = 0;
        if (c->rank == 0) {
            for (int r = 0; r < c->size; r++) {
                displs[r] = (int)total;
                total += (size_t)icounts[r];
            }
            recv = malloc(total ? total : 1);
            good = recv != NULL;
        }
        MPI_Bcast(&good, 1, MPI_INT, 0, c->comm);
        if (good)
            MPI_Gatherv(send, mine, MPI_BYTE, recv, icounts, displs, MPI_BYTE, 0,
                        c->comm);
    }
    watch_end(c);
    if (good && c->rank == 0)
        for (int r = 0; r < c->size; r++)
            counts[r] = (size_t)icounts[r];
    free(icounts);
    free(displs);
    *ok = good;
    if (!good) {
        free(recv);
        return NULL;
    }
    return recv;
}
