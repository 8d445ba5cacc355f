/* comm.c: the only compilation unit that calls MPI (comm.h). */
#include "shardfit/comm.h"

#include <mpi.h>
#include <stdlib.h>

struct SfComm {
    MPI_Comm comm;
    int rank, size;
    int owns_mpi; /* the world handle finalizes MPI when freed */
};

static SfComm *wrap(MPI_Comm comm, int owns_mpi)
{
    SfComm *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->comm = comm;
    c->owns_mpi = owns_mpi;
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    return c;
}

SfComm *sf_comm_init(int *argc, char ***argv)
{
    int started = 0;
    MPI_Initialized(&started);
    if (!started && MPI_Init(argc, argv) != MPI_SUCCESS)
        return NULL;
    return wrap(MPI_COMM_WORLD, !started);
}

SfComm *sf_comm_self(void) { return wrap(MPI_COMM_SELF, 0); }

void sf_comm_free(SfComm *c)
{
    if (!c)
        return;
    if (c->owns_mpi)
        MPI_Finalize();
    free(c);
}

int sf_comm_rank(const SfComm *c) { return c->rank; }
int sf_comm_size(const SfComm *c) { return c->size; }

int sf_comm_agree(SfComm *c, int status, int *first_rank)
{
    /* MAXLOC picks the largest status and, among equals, the lowest rank. */
    struct { int value, rank; } in = {status, c->rank}, out;
    MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, c->comm);
    if (first_rank)
        *first_rank = out.value ? out.rank : -1;
    return out.value;
}

void sf_comm_bcast_i64(SfComm *c, int64_t *buf, int64_t n, int root)
{
    MPI_Bcast(buf, (int)n, MPI_INT64_T, root, c->comm);
}

void sf_comm_allreduce_sum_f32(SfComm *c, float *buf, int64_t n)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->comm);
}

void sf_comm_allreduce_sum_f64(SfComm *c, double *buf, int64_t n)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, c->comm);
}

void sf_comm_allreduce_max_f64(SfComm *c, double *buf, int64_t n)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_MAX, c->comm);
}

void sf_comm_alltoallv(SfComm *c, const void *send, const int *scount,
                       const int *sdispl, void *recv, const int *rcount,
                       const int *rdispl)
{
    MPI_Alltoallv(send, scount, sdispl, MPI_BYTE, recv, rcount, rdispl,
                  MPI_BYTE, c->comm);
}

void sf_comm_barrier(SfComm *c) { MPI_Barrier(c->comm); }

void sf_comm_abort(SfComm *c, int status)
{
    MPI_Abort(c ? c->comm : MPI_COMM_WORLD, status);
}
