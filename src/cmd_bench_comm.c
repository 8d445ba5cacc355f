/* cmd_bench_comm.c: `shardfit bench-comm [--min BYTES] [--max BYTES]
 * [--repeat R] [--csv FILE] [--compute-us U[,U2]] [--exchange-bytes E]
 * [--allreduce-bytes N] [--shared]`:
 * how long MPI_Allreduce of a float sum takes on these ranks and links, from
 * 4 KiB to 64 MiB by powers of two, and the latency-bandwidth line through
 * it; with --compute-us, what the meetings of a step cost when the ranks
 * compute between them. --shared times the gradient sum of
 * comm.node_shared instead of the allreduce, in both (2 or more ranks on
 * every host, as many on each).
 *
 * The numbers calibrate the scaling model of scripts/scale --project: an
 * allreduce of n bytes takes alpha + beta * n. Each time is the slowest
 * rank's, after a barrier: an allreduce ends for the job when it ends on
 * the last rank, and over TCP at 1 Gb/s one rank returned 13 ms before the
 * other from a 2 MiB sum. The median of the repeats is kept, so one slow
 * repeat on a shared machine does not move it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "shardfit/comm.h"
#include "shardfit/metrics.h"
#include "shared_sum.h"

typedef struct Options {
    long long min, max;
    int repeat;
    const char *csv;
    double compute_us;  /* > 0: the synchronisation benchmark instead */
    double compute_us2; /* work after the exchange (--compute-us U1,U2) */
    long long exchange_bytes; /* > 0: an alltoallv meeting too */
    long long allreduce_bytes; /* the sync mode's allreduce (8: a meeting only) */
    int shared;               /* the node-shared sum instead of MPI_Allreduce */
} Options;

/* The gradient sum being timed: MPI_Allreduce, or (--shared) training's
 * node-shared sum over the slots of each host's window. */
typedef struct GradSum {
    SfComm *c;
    SfShared *win; /* NULL: MPI_Allreduce */
    float **slots; /* each node rank's slot in win */
    int rank, p;   /* node rank and ranks on the host, with win */
} GradSum;

/* The sum of n floats as a step makes it: MPI_Allreduce of buf in place;
 * or a sync, this rank adding its host's slots over its slice of them
 * into its own (on several hosts, then allreducing that slice with the
 * other hosts'), and the sync that ends the update (trainer_shared.c; the
 * tail's extra sync on several hosts is left out). */
static void grad_sum(const GradSum *g, float *buf, int64_t n)
{
    if (!g->win) {
        sf_comm_allreduce_sum_f32(g->c, buf, n);
        return;
    }
    int64_t lo, hi;
    sf_shared_slice(n, g->p, g->rank, &lo, &hi);
    sf_shared_sync(g->win, 0);
    sf_shared_sum(g->win, g->slots, lo, hi);
    sf_shared_sync(g->win, 0);
}

/* --shared: this rank's slot written over n floats, as backward writes it
 * before the sum (the lines are then in this rank's cache, which is where
 * the others' reads find them in training). Not timed. Seconds it took;
 * 0 without --shared. */
static double grad_write(const GradSum *g, int64_t n)
{
    if (!g->win)
        return 0.0;
    double t0 = sf_clock();
    float *s = g->slots[g->rank];
    for (int64_t i = 0; i < n; i++)
        s[i] = 1.0f;
    return sf_clock() - t0;
}

/* "4096", "4K", "64M", "1G" (binary units). */
static int parse_bytes(const char *s, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    long long unit = 1;
    if (*end == 'K' || *end == 'k')
        unit = 1LL << 10, end++;
    else if (*end == 'M' || *end == 'm')
        unit = 1LL << 20, end++;
    else if (*end == 'G' || *end == 'g')
        unit = 1LL << 30, end++;
    if (end == s || *end || v < 1 || v > (1LL << 40) / unit || v * unit < 4)
        return -1;
    *out = v * unit;
    return 0;
}

/* "U" or "U1,U2": microseconds of work before and after the exchange. */
static int parse_work(const char *s, Options *o)
{
    char *end;
    double u = strtod(s, &end), u2 = 0.0;
    if (*end == ',') {
        const char *rest = end + 1;
        u2 = strtod(rest, &end);
        if (end == rest)
            return -1;
    }
    if (end == s || *end || !(u > 0.0 && u <= 1e6) || !(u2 >= 0.0 && u2 < 1e6))
        return -1;
    o->compute_us = u;
    o->compute_us2 = u2;
    return 0;
}

static int parse_args(int argc, char **argv, Options *o)
{
    *o = (Options){4LL << 10, 64LL << 20, 20, NULL, 0.0, 0.0, 0, 8, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--min") && v && !parse_bytes(v, &o->min))
            i++;
        else if (!strcmp(a, "--max") && v && !parse_bytes(v, &o->max))
            i++;
        else if (!strcmp(a, "--repeat") && v && atoi(v) >= 1 && atoi(v) <= 1000)
            o->repeat = atoi(v), i++;
        else if (!strcmp(a, "--csv") && v)
            o->csv = v, i++;
        else if (!strcmp(a, "--compute-us") && v && !parse_work(v, o))
            i++;
        else if (!strcmp(a, "--exchange-bytes") && v && !parse_bytes(v, &o->exchange_bytes)
                 && o->exchange_bytes <= (1LL << 30))
            i++;
        else if (!strcmp(a, "--allreduce-bytes") && v && !parse_bytes(v, &o->allreduce_bytes)
                 && o->allreduce_bytes >= 8 && o->allreduce_bytes <= (1LL << 30))
            i++;
        else if (!strcmp(a, "--shared"))
            o->shared = 1;
        else
            return sf_cli_usage_error("bench-comm", "bad argument '%s' (usage: "
                                      "shardfit bench-comm [--min BYTES] [--max BYTES] "
                                      "[--repeat R] [--csv FILE] [--compute-us U[,U2]] "
                                      "[--exchange-bytes BYTES] [--allreduce-bytes BYTES] "
                                      "[--shared]; "
                                      "BYTES like 4K, 64M; U in (0, 1e6], U2 in [0, 1e6])", a);
    }
    if ((o->exchange_bytes || o->allreduce_bytes != 8) && o->compute_us <= 0.0)
        return sf_cli_usage_error("bench-comm", "--exchange-bytes and --allreduce-bytes "
                                  "need --compute-us");
    if (o->min > o->max)
        return sf_cli_usage_error("bench-comm", "--min %lld is larger than --max %lld",
                                  o->min, o->max);
    return 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The slowest rank's seconds for one sum of n floats, per repeat: up to
 * `repeat` of them, fewer once a size has taken 2 s (64 MiB over a 1 Gb/s
 * link takes most of a second). The decision uses allreduced times, so
 * every rank stops alike. Returns the count kept in t. */
static int time_size(const GradSum *g, float *buf, int64_t n, int repeat, double *t)
{
    SfComm *c = g->c;
    for (int w = 0; w < 2; w++) {
        grad_write(g, n);
        grad_sum(g, buf, n);
    }
    double spent = 0.0;
    int k = 0;
    while (k < repeat && (k < 3 || spent < 2.0)) {
        grad_write(g, n);
        sf_comm_barrier(c);
        double t0 = sf_clock();
        grad_sum(g, buf, n);
        double dt = sf_clock() - t0;
        sf_comm_allreduce_max_f64(c, &dt, 1);
        t[k++] = dt;
        spent += dt;
    }
    return k;
}

/* ---- synchronisation while computing ------------------------------------
 * A training step computes, then every rank meets the others in a
 * collective. When ranks outnumber cores, a rank still in a collective can
 * share its core with one that has gone back to computing, and then waits
 * for the scheduler to give it the core back; bench-comm's curve, with
 * every rank in MPI at once, never sees that. So: each rank computes U us
 * of CPU work and meets the others in an 8-byte allreduce, R times (synced);
 * then computes the same without meeting (free: only sharing the cores).
 * The delay per iteration is synced - free, less the meetings' own time
 * measured alone (back to back, no work between).
 *
 * A step of the shard loader meets twice: the exchange of the batch's rows
 * (an alltoallv), then forward and backward, then the gradient's
 * allreduce, then the optimizer and the next gather. --compute-us U1,U2
 * with --exchange-bytes E lays an iteration out the same way: U1 of work,
 * an alltoallv in which every rank receives E bytes spread evenly over the
 * others (and sends as much), U2 of work, the allreduce. That allreduce is
 * 8 bytes, a meeting only, unless --allreduce-bytes gives the gradient's
 * size: a large sum over TCP with more ranks than cores took longer in
 * training than bench-comm's curve says (3 hosts on 2 cores: 8.7-9.4 ms
 * against 5.7-7.4 for 2 MiB), and only a step laid out like this sees it. */

typedef struct Sync {
    long long iters1, iters2; /* spin iterations before and after the exchange */
    char *send, *recv;        /* the exchange's buffers; NULL: no exchange */
    float *sum;               /* the allreduce's buffer, nsum floats */
    int64_t nsum;
    int *count, *displ;       /* bytes to and from each rank, and where */
} Sync;

enum { DO_WORK = 1, DO_EXCHANGE = 2, DO_ALLREDUCE = 4 };

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU work with no memory traffic: a dependent multiply-add chain. */
static float spin(long long iters, float x)
{
    for (long long i = 0; i < iters; i++)
        x = x * 0.9999999f + 1e-7f;
    return x;
}

/* Iterations of spin() per CPU second on this rank, from its own thread CPU
 * time, which other processes on the core do not inflate. The fastest of
 * five trials: on a virtual machine a host's hiccup can still be charged
 * to the thread (one trial of 20M iterations once came out 18% slow, and
 * the work it sized then took 410 us instead of 500). */
static double spin_rate(void)
{
    volatile float sink = spin(1000000, 1.0f);
    double best = 0.0;
    for (int k = 0; k < 5; k++) {
        double t0 = thread_cpu();
        sink = spin(4000000, sink);
        double dt = thread_cpu() - t0, rate = 4000000.0 / (dt > 0.0 ? dt : 1e-9);
        if (rate > best)
            best = rate;
    }
    (void)sink;
    return best;
}

/* Mean seconds per iteration of R iterations of what `what` says (DO_*
 * flags); the slowest rank's. With --shared each sum follows the write of
 * this rank's slot, whose time is left out. */
static double loop_s(const GradSum *g, const Sync *s, int repeat, int what)
{
    SfComm *c = g->c;
    volatile float sink = 1.0f;
    double unseen = 0.0;
    sf_comm_barrier(c);
    double t0 = sf_clock();
    for (int r = 0; r < repeat; r++) {
        if (what & DO_WORK)
            sink = spin(s->iters1, sink);
        if ((what & DO_EXCHANGE) && s->send)
            sf_comm_alltoallv(c, s->send, s->count, s->displ, s->recv, s->count,
                              s->displ);
        if (what & DO_WORK)
            sink = spin(s->iters2, sink);
        if (what & DO_ALLREDUCE) {
            unseen += grad_write(g, s->nsum);
            grad_sum(g, s->sum, s->nsum);
        }
    }
    double dt = (sf_clock() - t0 - unseen) / repeat;
    sf_comm_allreduce_max_f64(c, &dt, 1);
    return dt;
}

static double median5(double *v)
{
    qsort(v, 5, sizeof *v, by_value);
    return v[2];
}

/* Prints, on rank 0, the work, the free and synced seconds per iteration,
 * the small allreduce and the exchange alone, and the delay per iteration;
 * medians of 5 runs. Returns 0, or SF_EXIT_FAILURE when the exchange's
 * buffers do not fit in memory on some rank. */
static int time_sync(const GradSum *g, const Options *o, int rank, int p)
{
    SfComm *c = g->c;
    double rate = spin_rate();
    Sync s = {(long long)(rate * o->compute_us * 1e-6),
              (long long)(rate * o->compute_us2 * 1e-6), NULL, NULL,
              NULL, o->allreduce_bytes / 4, NULL, NULL};
    if (s.iters1 + s.iters2 < 1)
        s.iters1 = 1;
    s.sum = calloc((size_t)s.nsum, sizeof(float));
    int ok = s.sum != NULL;
    if (ok && o->exchange_bytes > 0 && p > 1) {
        long long each = o->exchange_bytes / (p - 1);
        if (each < 1)
            each = 1;
        s.send = malloc((size_t)(each * p));
        s.recv = malloc((size_t)(each * p));
        s.count = calloc((size_t)p, sizeof(int));
        s.displ = calloc((size_t)p, sizeof(int));
        ok = s.send && s.recv && s.count && s.displ;
        for (int r = 0; ok && r < p; r++) {
            s.count[r] = r == rank ? 0 : (int)each;
            s.displ[r] = (int)(each * r);
        }
        if (ok)
            memset(s.send, 1, (size_t)(each * p));
    }
    SfError err = {0};
    if (!ok)
        sf_error_set(&err, SF_EXIT_FAILURE, "out of memory for a %lld-byte exchange "
                     "and a %lld-byte allreduce", o->exchange_bytes, o->allreduce_bytes);
    int status = sf_comm_agree_error(c, !ok, 0, &err);
    if (status) {
        if (err.msg[0])
            sf_cli_report("bench-comm", &err);
    } else {
        double f[5], sy[5], a[5], x[5], d[5];
        for (int k = 0; k < 5; k++) {
            f[k] = loop_s(g, &s, o->repeat, DO_WORK);
            sy[k] = loop_s(g, &s, o->repeat, DO_WORK | DO_EXCHANGE | DO_ALLREDUCE);
            a[k] = loop_s(g, &s, o->repeat, DO_ALLREDUCE);
            x[k] = s.send ? loop_s(g, &s, o->repeat, DO_EXCHANGE) : 0.0;
            /* Both meetings back to back, as they are in synced. */
            d[k] = sy[k] - f[k] - (s.send ? loop_s(g, &s, o->repeat, DO_EXCHANGE |
                                                   DO_ALLREDUCE) : a[k]);
        }
        double work = o->compute_us + o->compute_us2;
        if (rank == 0)
            printf("shardfit bench-comm: %d rank%s computing %.0f us of CPU work "
                   "between meetings (%s%s of %lld bytes), %d iterations, "
                   "medians of 5 runs\n"
                   "sync: compute_us=%.1f free_us=%.1f synced_us=%.1f allreduce_us=%.1f "
                   "exchange_us=%.1f delay_us=%.1f\n", p, p == 1 ? "" : "s", work,
                   s.send ? "an exchange, then " : "",
                   g->win ? "a node-shared sum" : "an allreduce", (long long)s.nsum * 4,
                   o->repeat, work, median5(f) * 1e6, median5(sy) * 1e6,
                   median5(a) * 1e6, median5(x) * 1e6, median5(d) * 1e6);
    }
    free(s.sum);
    free(s.send);
    free(s.recv);
    free(s.count);
    free(s.displ);
    return status ? SF_EXIT_FAILURE : SF_EXIT_OK;
}

/* t = alpha + beta * bytes the way scripts/scale_model.py's fit_line does
 * it (see there why not one least-squares line): beta is the median of
 * (t - t_small) / bytes over the sizes of 256 KiB and more (else the larger
 * half), alpha the smallest max(t - beta * bytes, t / 2) up to 16 KiB.
 * Sizes come in ascending order. */
static void fit(const double *bytes, const double *t, int n, double *alpha,
                double *beta)
{
    double floor = t[0], slope[48];
    int nsmall = 0, k = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || bytes[i] <= 16384.0) {
            floor = t[i] < floor ? t[i] : floor;
            nsmall = i + 1;
        }
    for (int i = 0; i < n; i++)
        if (bytes[i] >= 262144.0)
            slope[k++] = (t[i] - floor) / bytes[i];
    if (k < 2) {
        k = 0;
        for (int i = n / 2; i < n; i++)
            slope[k++] = (t[i] - floor) / bytes[i];
    }
    qsort(slope, (size_t)k, sizeof *slope, by_value);
    double b = k % 2 ? slope[k / 2] : 0.5 * (slope[k / 2 - 1] + slope[k / 2]);
    *beta = b > 0.0 ? b : 0.0;
    *alpha = floor;
    for (int i = 0; i < nsmall; i++) {
        double rest = t[i] - *beta * bytes[i];
        if (rest < 0.5 * t[i])
            rest = 0.5 * t[i];
        if (i == 0 || rest < *alpha)
            *alpha = rest;
    }
}

/* Collective: the window of --shared freed (none is fine). */
static void shared_end(GradSum *g)
{
    sf_shared_free(g->win);
    free(g->slots);
    g->win = NULL;
    g->slots = NULL;
}

/* --shared: a window with a slot of `bytes` for every rank. Returns 0, or
 * an exit status after saying, on rank 0, why there is none. */
static int shared_begin(GradSum *g, long long bytes)
{
    g->win = sf_comm_shared_create(g->c, (size_t)bytes, (size_t)bytes);
    if (g->win) {
        g->rank = sf_shared_rank(g->win);
        g->p = sf_shared_size(g->win);
    }
    g->slots = g->win ? malloc((size_t)g->p * sizeof *g->slots) : NULL;
    int first = -1, status = sf_comm_agree(g->c, g->slots ? 0 : SF_EXIT_FAILURE, &first);
    if (status) {
        if (sf_comm_rank(g->c) == 0)
            fprintf(stderr, "shardfit bench-comm: error: --shared needs 2 or more ranks "
                    "on every host, as many on each, and room in /dev/shm for them "
                    "x %lld bytes (or a rank ran out of memory)\n", bytes);
        shared_end(g);
        return status;
    }
    for (int r = 0; r < g->p; r++)
        g->slots[r] = sf_shared_segment(g->win, r);
    return 0;
}

int sf_cmd_bench_comm(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: shardfit bench-comm [--min BYTES] [--max BYTES] [--repeat R] "
               "[--csv FILE] [--compute-us U[,U2]] [--exchange-bytes BYTES] "
               "[--allreduce-bytes BYTES]\ntimes "
               "MPI_Allreduce (float sum) from --min (4K) to --max (64M) bytes by "
               "powers of two, the median of R (20) repeats of the slowest rank's "
               "time, and fits t = alpha + beta * bytes; with --compute-us, instead "
               "times R iterations of U us of CPU work each followed by an 8-byte "
               "allreduce against the work alone, and prints the delay per "
               "iteration (delay_us); --exchange-bytes adds the shard loader's "
               "meeting: U us of work, an alltoallv in which each rank receives "
               "BYTES from the others, U2 us of work, the allreduce (exchange_us: "
               "the alltoallv alone); --allreduce-bytes sets that allreduce's "
               "size (8; the gradient's, to see how it fares among the work); "
               "--shared times, in both, the gradient sum of comm.node_shared "
               "instead of the allreduce (2 or more ranks on every host); run under "
               "mpirun -np P\n");
        return SF_EXIT_OK;
    }
    Options o;
    int status = parse_args(argc, argv, &o);
    if (status)
        return status;
    SfComm *comm = sf_comm_init(&argc, &argv);
    if (!comm) {
        fprintf(stderr, "shardfit bench-comm: error: MPI could not start\n");
        return SF_EXIT_FAILURE;
    }
    int rank = sf_comm_rank(comm), p = sf_comm_size(comm);
    GradSum g = {comm, NULL, NULL, rank, p};
    if (o.shared) {
        status = shared_begin(&g, o.compute_us > 0.0 ? o.allreduce_bytes : o.max);
        if (status) {
            sf_comm_free(comm);
            return status;
        }
    }
    if (o.compute_us > 0.0) {
        status = time_sync(&g, &o, rank, p);
        shared_end(&g);
        sf_comm_free(comm);
        return status;
    }
    float *buf = g.win ? g.slots[g.rank] : calloc((size_t)(o.max / 4), sizeof(float));
    double *t = malloc((size_t)o.repeat * sizeof *t);
    double bytes[48] = {0}, median[48] = {0};
    FILE *csv = NULL;
    SfError err = {0};
    if (!buf || !t)
        sf_error_set(&err, SF_EXIT_FAILURE, "out of memory for a %lld-byte buffer",
                     o.max);
    else if (rank == 0 && o.csv && !(csv = fopen(o.csv, "w")))
        sf_error_set(&err, SF_EXIT_INPUT, "--csv '%s': cannot write", o.csv);
    status = sf_comm_agree_error(comm, err.code != 0, 0, &err);
    if (status) {
        if (err.msg[0])
            sf_cli_report("bench-comm", &err);
        goto done;
    }
    if (rank == 0) {
        printf("shardfit bench-comm: %s, float sum, %d rank%s; median "
               "of up to %d repeats of the slowest rank's time\n",
               g.win ? "the node-shared sum (comm.node_shared: sync, each rank adds "
                       "every slot over its slice, sync)" : "MPI_Allreduce",
               p, p == 1 ? "" : "s", o.repeat);
        printf("%12s %12s %12s %12s %8s %12s\n", "bytes", "median_us", "min_us",
               "max_us", "repeats", "algbw_GB/s");
        if (csv)
            fprintf(csv, "ranks,bytes,median_s,min_s,max_s,repeats\n");
    }
    int n = 0;
    for (long long b = o.min; b <= o.max && n < 48; b *= 2, n++) {
        int k = time_size(&g, buf, b / 4, o.repeat, t);
        qsort(t, (size_t)k, sizeof *t, by_value);
        double med = k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
        bytes[n] = (double)(b / 4 * 4);
        median[n] = med;
        if (rank != 0)
            continue;
        printf("%12.0f %12.1f %12.1f %12.1f %8d %12.3f\n", bytes[n], med * 1e6,
               t[0] * 1e6, t[k - 1] * 1e6, k, bytes[n] / med / 1e9);
        if (csv)
            fprintf(csv, "%d,%.0f,%.9g,%.9g,%.9g,%d\n", p, bytes[n], med, t[0],
                    t[k - 1], k);
        fflush(stdout);
    }
    if (rank == 0) {
        double alpha, beta;
        fit(bytes, median, n, &alpha, &beta);
        printf("fit: alpha = %.2f us (latency), beta = %.4g ns/byte (%.3f GB/s "
               "of buffer)\n", alpha * 1e6, beta * 1e9, beta > 0 ? 1e-9 / beta : 0.0);
        if (g.win && sf_shared_hosts(g.win) > 1)
            printf("node-shared on %d hosts: each rank reads its host's %d slots over "
                   "its 1/%d of the bytes, then allreduces that 1/%d with the other "
                   "hosts\n", sf_shared_hosts(g.win), g.p, g.p, g.p);
        else if (g.win)
            printf("node-shared: each rank reads the %d slots over its 1/%d of the "
                   "bytes; alpha is the two syncs\n", g.p, g.p);
        else if (p > 1)
            printf("as a ring allreduce (2(P-1) steps, 2(P-1)/P of the bytes per "
                   "rank): alpha per step = %.2f us, link = %.3f Gb/s\n",
                   alpha / (2.0 * (p - 1)) * 1e6,
                   beta > 0 ? 8e-9 * 2.0 * (p - 1) / p / beta : 0.0);
        else
            printf("one rank: nothing crosses a link; run under mpirun -np P\n");
    }
    if (csv && fclose(csv)) {
        fprintf(stderr, "shardfit bench-comm: error: --csv '%s': write failed\n", o.csv);
        status = SF_EXIT_FAILURE;
    }
    csv = NULL;
done:
    if (csv)
        fclose(csv);
    if (!g.win)
        free(buf);
    free(t);
    shared_end(&g);
    sf_comm_free(comm);
    return status;
}
