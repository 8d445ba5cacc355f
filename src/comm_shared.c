/* comm_shared.c: memory every rank of a one-host job maps (comm.h's
 * SfShared), for the gradient sum and update done in place by the ranks
 * (trainer_shared.c) instead of an allreduce. With comm.c, comm_watchdog.c
 * and comm_buckets.c, the only code that calls MPI (comm_internal.h).
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
    void **base; /* each rank's segment, mapped into this process */
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

SfShared *sf_comm_shared_create(SfComm *c, size_t bytes)
{
    if (c->size < 2)
        return NULL;
    /* Each segment, its alignment, and a margin. */
    unsigned long long total = bytes + ALIGN + (2u << 20);
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, c->comm);
    /* All ranks of c on one host: the host's group is all of c. Every rank
     * learns the same answer, so all return NULL alike. */
    MPI_Comm node;
    MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    int node_size, all_here;
    MPI_Comm_size(node, &node_size);
    all_here = node_size == c->size;
    SfShared *s = calloc(1, sizeof *s);
    if (s && !(s->base = calloc((size_t)c->size, sizeof *s->base))) {
        free(s);
        s = NULL;
    }
    int ok = all_here && s != NULL && room_for(total);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, c->comm);
    if (!ok) {
        MPI_Comm_free(&node);
        if (s)
            free(s->base);
        free(s);
        return NULL;
    }
    /* Each segment on its own pages (noncontig), so no two ranks' blocks
     * share a cache line. */
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    void *mine = NULL;
    watch_begin(c, OP_SHARED);
    MPI_Win_allocate_shared((MPI_Aint)(bytes + ALIGN), 1, info, node, &mine, &s->win);
    watch_end(c);
    MPI_Info_free(&info);
    MPI_Comm_free(&node); /* the window keeps its own copy */
    for (int r = 0; r < c->size; r++) {
        MPI_Aint size;
        int disp;
        MPI_Win_shared_query(s->win, r, &size, &disp, &s->base[r]);
        s->base[r] = (void *)(((uintptr_t)s->base[r] + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    s->c = c;
    return s;
}

void *sf_shared_segment(const SfShared *s, int rank) { return s->base[rank]; }

int sf_shared_sync(SfShared *s, int flag)
{
    SfComm *c = s->c;
    MPI_Win_sync(s->win);
    watch_begin(c, OP_SHARED_SYNC);
    MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_MAX, c->comm);
    watch_end(c);
    MPI_Win_sync(s->win);
    return flag;
}

void sf_shared_free(SfShared *s)
{
    if (!s)
        return;
    MPI_Win_unlock_all(s->win);
    watch_begin(s->c, OP_SHARED);
    MPI_Win_free(&s->win);
    watch_end(s->c);
    free(s->base);
    free(s);
}
