/* comm_shared.c: memory the ranks of a host map together (comm.h's
 * SfShared), for the gradient sum and update done in place by the ranks
 * (trainer_shared.c) instead of an allreduce, or before one between hosts;
 * and the collectives of that sum over the host's ranks and across hosts.
 * With comm.c, comm_watchdog.c and comm_buckets.c, the only code that
 * calls MPI (comm_internal.h).
 *
 * An MPI-3 shared-memory window, in the passive-target epoch that
 * MPI_Win_lock_all(MPI_MODE_NOCHECK) opens once for the window's life: the
 * ranks then load and store into it directly, and sf_shared_sync orders
 * those accesses with MPI_Win_sync on both sides of a collective (the
 * "unified" model's recipe, MPI 3.1 §11.5.4 and its example 11.10). */
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "comm_internal.h"

/* Open MPI puts its own bytes before a segment (264 of them in 4.1), so
 * each is asked ALIGN bytes longer and starts at the next ALIGN boundary:
 * whole pages, and the callers' 64-byte lines are lines. */
#define ALIGN 4096

struct SfShared {
    SfComm *c;
    MPI_Win win;
    MPI_Comm host;   /* this host's ranks: the window's group, the syncs' */
    MPI_Comm across; /* the ranks of this one's node rank, one per host;
                        MPI_COMM_NULL on one host */
    int across_root; /* the one of them on rank 0's host */
    int rank, size, hosts; /* node rank, ranks on the host, hosts */
    void **base;     /* each node rank's segment, mapped into this process */
};

/* Whether Open MPI's backing directory for shared windows (osc_sm's,
 * /dev/shm unless OMPI_MCA_osc_sm_backing_directory says otherwise) has
 * room for total bytes, and this process may write a file that large. The
 * files are sparse: a full tmpfs would not fail the allocation but kill a
 * rank with SIGBUS when it first touches a page (a container's 64 MB
 * /dev/shm is the usual case); past the file size limit (ulimit -f), the
 * rank that sizes the file dies of SIGXFSZ. */
static int room_for(unsigned long long total)
{
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    struct statvfs fs;
    struct rlimit fsize;
    if (statvfs(dir && *dir ? dir : "/dev/shm", &fs) != 0)
        return 0;
    if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY &&
        fsize.rlim_cur < total)
        return 0;
    return (unsigned long long)fs.f_bavail * fs.f_frsize >= total;
}

SfShared *sf_comm_shared_create(SfComm *c, size_t first_bytes, size_t bytes)
{
    if (c->size < 2)
        return NULL;
    /* The host's ranks: a group per shared-memory domain. */
    MPI_Comm host;
    MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &host);
    int rank, size;
    MPI_Comm_rank(host, &rank);
    MPI_Comm_size(host, &size);
    /* Every host the same count, 2 or more: node rank r's slice of the
     * weights is then the same on every host. {min, -max, hosts}. */
    int shape[3] = {size, -size, rank == 0};
    MPI_Allreduce(MPI_IN_PLACE, shape, 2, MPI_INT, MPI_MIN, c->comm);
    MPI_Allreduce(MPI_IN_PLACE, shape + 2, 1, MPI_INT, MPI_SUM, c->comm);
    /* Each segment, its alignment, and a margin, summed over the host. */
    unsigned long long total = (rank == 0 ? first_bytes : bytes) + ALIGN + (2u << 20);
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, host);
    SfShared *s = calloc(1, sizeof *s);
    if (s && !(s->base = calloc((size_t)size, sizeof *s->base))) {
        free(s);
        s = NULL;
    }
    int ok = shape[0] == -shape[1] && size >= 2 && s != NULL && room_for(total);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, c->comm);
    if (!ok) {
        MPI_Comm_free(&host);
        if (s)
            free(s->base);
        free(s);
        return NULL;
    }
    s->host = host;
    s->rank = rank;
    s->size = size;
    s->hosts = shape[2];
    s->across = MPI_COMM_NULL;
    if (s->hosts > 1) {
        MPI_Comm_split(c->comm, rank, c->rank, &s->across);
        if (s->hosts >= 3) { /* the gradient's slices cross by the ring */
            MPI_Comm ring = sf_comm_ring_dup(s->across, NULL);
            MPI_Comm_free(&s->across);
            s->across = ring;
        }
        /* which of them is on rank 0's host: restores start there */
        int first_host = c->rank == 0, me;
        MPI_Allreduce(MPI_IN_PLACE, &first_host, 1, MPI_INT, MPI_MAX, host);
        MPI_Comm_rank(s->across, &me);
        s->across_root = first_host ? me : 0;
        MPI_Allreduce(MPI_IN_PLACE, &s->across_root, 1, MPI_INT, MPI_MAX, s->across);
    }
    /* Each segment on its own pages (noncontig), so no two ranks' blocks
     * share a cache line. */
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    void *mine = NULL;
    watch_begin(c, OP_SHARED);
    MPI_Win_allocate_shared((MPI_Aint)((rank == 0 ? first_bytes : bytes) + ALIGN), 1, info,
                            host, &mine, &s->win);
    watch_end(c);
    MPI_Info_free(&info);
    for (int r = 0; r < size; r++) {
        MPI_Aint len;
        int disp;
        MPI_Win_shared_query(s->win, r, &len, &disp, &s->base[r]);
        s->base[r] = (void *)(((uintptr_t)s->base[r] + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    s->c = c;
    return s;
}

int sf_shared_rank(const SfShared *s) { return s->rank; }
int sf_shared_size(const SfShared *s) { return s->size; }
int sf_shared_hosts(const SfShared *s) { return s->hosts; }

void *sf_shared_segment(const SfShared *s, int rank) { return s->base[rank]; }

int sf_shared_sync(SfShared *s, int flag)
{
    SfComm *c = s->c;
    MPI_Win_sync(s->win);
    watch_begin(c, OP_SHARED_SYNC);
    MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_MAX, s->host);
    watch_end(c);
    MPI_Win_sync(s->win);
    return flag;
}

void sf_shared_host_sum_f64(SfShared *s, double *buf, int64_t n)
{
    watch_begin(s->c, OP_ALLREDUCE);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, s->host);
    watch_end(s->c);
}

void sf_shared_across_sum_f32(SfShared *s, float *buf, int64_t n)
{
    watch_begin(s->c, OP_ALLREDUCE);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, s->across);
    watch_end(s->c);
}

void sf_shared_across_bcast_f32(SfShared *s, float *buf, int64_t n)
{
    watch_begin(s->c, OP_BCAST);
    MPI_Bcast(buf, (int)n, MPI_FLOAT, s->across_root, s->across);
    watch_end(s->c);
}

void sf_shared_free(SfShared *s)
{
    if (!s)
        return;
    MPI_Win_unlock_all(s->win);
    watch_begin(s->c, OP_SHARED);
    MPI_Win_free(&s->win);
    watch_end(s->c);
    MPI_Comm_free(&s->host);
    if (s->across != MPI_COMM_NULL)
        MPI_Comm_free(&s->across);
    free(s->base);
    free(s);
}
