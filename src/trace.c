/* trace.c: the per-rank Chrome-trace timeline (trace.h).
 *
 * Recording is an append of 32 bytes to a preallocated array, behind one
 * branch on whether the current step is in the window: the step's cost is
 * a few dozen such appends. Everything else (matching collectives across
 * ranks, aligning clocks, JSON) happens once, on rank 0, at the end. */
#include "shardfit/trace.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/phases.h"

/* Names an event can carry, by index: the same index on every rank, so the
 * gathered bytes mean the same everywhere. Phases first (phases.h's order),
 * then comm.c's collectives; anything else is "collective". */
static const char *const event_names[] = {
    "step", "data", "forward", "backward", "allreduce", "optimizer", "eval",
    "checkpoint",
    "status agreement", "broadcast", "allreduce", "alltoallv", "barrier",
    "allgather", "gather", "clock sync", "shared memory window",
    "shared gradient sync", "collective"
};
enum { FIRST_COLLECTIVE = SF_NPHASES, NNAMES = sizeof event_names / sizeof event_names[0] };
_Static_assert(SF_NPHASES == 8, "event_names lists the phases of phases.h");

typedef struct Event {
    double t0, t1;   /* local sf_clock seconds */
    int64_t step;
    int32_t seq;     /* collectives: sequence number on the comm; spans: -1 */
    int16_t name;    /* index into event_names */
    int16_t pad;
} Event;
_Static_assert(sizeof(Event) == SF_TRACE_EVENT_BYTES, "an event is 32 bytes");

/* What each rank sends rank 0 before its events. */
typedef struct Header {
    double offset, error;   /* clock offset to rank 0 and its uncertainty */
    int64_t nevents, dropped;
    char host[SF_COMM_HOST_MAX];
} Header;

struct SfTrace {
    SfComm *comm;
    int64_t first, last, step;
    int active;
    Event *events;
    int64_t n, cap, dropped;
    size_t *counts;  /* rank 0: bytes gathered from each rank */
    const char *seen[NNAMES]; /* collective names met so far, by address */
    int seen_index[NNAMES], nseen;
    Header head;
};

static void on_collective(void *ctx, const char *op, double arrived, double left,
                          int64_t seq);

SfTrace *sf_trace_create(SfComm *comm, int64_t first, int64_t last,
                         int64_t capacity, SfError *err)
{
    SfTrace *tr = calloc(1, sizeof *tr);
    if (tr) {
        tr->events = malloc((size_t)(capacity > 0 ? capacity : 1) * sizeof(Event));
        tr->counts = calloc((size_t)sf_comm_size(comm), sizeof *tr->counts);
    }
    /* Collective whatever happened above, so every rank gets here. */
    double offset, error;
    sf_comm_clock_offset(comm, 20, &offset, &error);
    if (!tr || !tr->events || !tr->counts) {
        sf_error_set(err, SF_EXIT_FAILURE, "log.trace: out of memory for %lld "
                     "trace events (%lld bytes)", (long long)capacity,
                     (long long)capacity * SF_TRACE_EVENT_BYTES);
        sf_trace_free(tr);
        return NULL;
    }
    /* Touched now, so no page faults land inside the recorded steps. */
    memset(tr->events, 0, (size_t)capacity * sizeof(Event));
    tr->comm = comm;
    tr->first = first;
    tr->last = last;
    tr->cap = capacity;
    tr->head.offset = offset;
    tr->head.error = error;
    snprintf(tr->head.host, sizeof tr->head.host, "%s",
             sf_comm_host(comm, sf_comm_rank(comm)));
    sf_comm_set_hook(comm, on_collective, tr);
    return tr;
}

void sf_trace_free(SfTrace *tr)
{
    if (!tr)
        return;
    if (tr->comm)
        sf_comm_set_hook(tr->comm, NULL, NULL);
    free(tr->events);
    free(tr->counts);
    free(tr);
}

void sf_trace_set_step(SfTrace *tr, int64_t step)
{
    tr->step = step;
    tr->active = step >= tr->first && step <= tr->last;
}

static void record(SfTrace *tr, int name, double t0, double t1, int64_t seq)
{
    if (tr->n == tr->cap) {
        tr->dropped++;
        return;
    }
    tr->events[tr->n++] = (Event){t0, t1, tr->step, (int32_t)seq, (int16_t)name, 0};
}

static int name_index(const char *name, int from)
{
    for (int i = from; i < (int)NNAMES - 1; i++)
        if (!strcmp(event_names[i], name))
            return i;
    return NNAMES - 1;
}

void sf_trace_span(SfTrace *tr, int phase, double t0, double t1)
{
    if (tr->active)
        record(tr, phase >= 0 && phase < SF_NPHASES ? phase : NNAMES - 1, t0, t1, -1);
}

static void on_collective(void *ctx, const char *op, double arrived, double left,
                          int64_t seq)
{
    SfTrace *tr = ctx;
    if (!tr->active)
        return;
    /* comm.c passes the same static strings every time: remember them by
     * address, so the hot path compares a pointer, not strings. */
    int name = -1;
    for (int i = 0; i < tr->nseen && name < 0; i++)
        if (tr->seen[i] == op)
            name = tr->seen_index[i];
    if (name < 0) {
        name = name_index(op, FIRST_COLLECTIVE);
        if (tr->nseen < (int)NNAMES) {
            tr->seen[tr->nseen] = op;
            tr->seen_index[tr->nseen++] = name;
        }
    }
    record(tr, name, arrived, left, seq);
}

/* ---- rank 0: matching, summary, JSON -------------------------------------- */

typedef struct Gathered {
    int size;
    Header *head;        /* per rank */
    Event **ev;          /* per rank, into the gathered block */
    double **waited;     /* per rank per event: seconds until the last arrival */
    int **last;          /* per rank per event: the last rank, -1 for spans */
} Gathered;

/* For each collective (same seq on every rank that recorded it), finds the
 * rank that arrived last on the aligned clock; fills g->waited and g->last. */
static void match_collectives(Gathered *g)
{
    int p = g->size;
    int64_t *at = calloc((size_t)p, sizeof *at);
    for (;;) {
        /* Advance each rank to its next collective; the smallest seq is next. */
        int64_t seq = INT64_MAX;
        for (int r = 0; r < p; r++) {
            while (at[r] < g->head[r].nevents && g->ev[r][at[r]].seq < 0)
                at[r]++;
            if (at[r] < g->head[r].nevents && g->ev[r][at[r]].seq < seq)
                seq = g->ev[r][at[r]].seq;
        }
        if (seq == INT64_MAX)
            break;
        double latest = -INFINITY;
        int who = -1;
        for (int r = 0; r < p; r++) {
            if (at[r] >= g->head[r].nevents || g->ev[r][at[r]].seq != seq)
                continue;
            double a = g->ev[r][at[r]].t0 + g->head[r].offset;
            if (a > latest) {
                latest = a;
                who = r;
            }
        }
        for (int r = 0; r < p; r++) {
            if (at[r] >= g->head[r].nevents || g->ev[r][at[r]].seq != seq)
                continue;
            g->waited[r][at[r]] = latest - (g->ev[r][at[r]].t0 + g->head[r].offset);
            g->last[r][at[r]] = who;
            at[r]++;
        }
    }
    free(at);
}

typedef struct Straggle {
    double compute, steps, waited, caused, lasts, collectives;
} Straggle;

/* Whether event i of rank r lies inside one of that rank's step spans.
 * A step's span is recorded when it ends, after everything inside it, so
 * the next step span at or after i is the only candidate. */
static int in_step(const Gathered *g, int r, int64_t i)
{
    const Event *e = &g->ev[r][i];
    for (int64_t j = i + 1; j < g->head[r].nevents; j++) {
        const Event *s = &g->ev[r][j];
        if (s->name == SF_PHASE_STEP)
            return s->t0 <= e->t0 && e->t1 <= s->t1;
    }
    return 0;
}

/* Per rank: compute seconds and steps recorded, seconds it waited in the
 * collectives inside steps (start-up skew and evaluation are left out, so
 * the figures are parts of the step time), and seconds the others waited
 * for it there (summed over the others, divided by their number). */
static void straggle(const Gathered *g, Straggle *s)
{
    int p = g->size;
    for (int r = 0; r < p; r++) {
        for (int64_t i = 0; i < g->head[r].nevents; i++) {
            const Event *e = &g->ev[r][i];
            if (e->name == SF_PHASE_STEP)
                s[r].steps++;
            if (e->name == SF_PHASE_FORWARD || e->name == SF_PHASE_BACKWARD ||
                e->name == SF_PHASE_OPTIMIZER)
                s[r].compute += e->t1 - e->t0;
            if (e->seq < 0 || !in_step(g, r, i))
                continue;
            s[r].collectives++;
            s[r].waited += g->waited[r][i];
            int who = g->last[r][i];
            if (who == r)
                s[r].lasts++;
            else if (who >= 0 && p > 1)
                s[who].caused += g->waited[r][i] / (p - 1);
        }
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        fputc(*s == '"' || *s == '\\' || (unsigned char)*s < 0x20 ? '?' : *s, f);
    fputc('"', f);
}

static void write_json(FILE *f, const Gathered *g, const Straggle *s,
                       const SfTrace *tr)
{
    int p = g->size;
    double base = INFINITY;
    for (int r = 0; r < p; r++)
        for (int64_t i = 0; i < g->head[r].nevents; i++)
            if (g->ev[r][i].t0 + g->head[r].offset < base)
                base = g->ev[r][i].t0 + g->head[r].offset;
    fputs("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n", f);
    fputs("{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, \"args\": "
          "{\"name\": \"shardfit\"}}", f);
    for (int r = 0; r < p; r++) {
        fprintf(f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 1, "
                "\"tid\": %d, \"args\": {\"name\": \"rank %d (", r, r);
        for (const char *c = g->head[r].host; *c; c++)
            fputc(*c == '"' || *c == '\\' || (unsigned char)*c < 0x20 ? '?' : *c, f);
        fprintf(f, ")\"}},\n{\"name\": \"thread_sort_index\", \"ph\": \"M\", "
                "\"pid\": 1, \"tid\": %d, \"args\": {\"sort_index\": %d}}", r, r);
    }
    for (int r = 0; r < p; r++) {
        for (int64_t i = 0; i < g->head[r].nevents; i++) {
            const Event *e = &g->ev[r][i];
            double ts = (e->t0 + g->head[r].offset - base) * 1e6;
            fprintf(f, ",\n{\"name\": \"%s%s\", \"cat\": \"%s\", \"ph\": \"X\", "
                    "\"pid\": 1, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, "
                    "\"args\": {\"step\": %lld", e->seq < 0 ? "" : "MPI ",
                    event_names[e->name],
                    e->seq < 0 ? "phase" : "collective", r, ts,
                    (e->t1 - e->t0) * 1e6, (long long)e->step);
            if (e->seq >= 0)
                fprintf(f, ", \"seq\": %d, \"last_rank\": %d, \"waited_ms\": %.4f",
                        e->seq, g->last[r][i], g->waited[r][i] * 1e3);
            fputs("}}", f);
        }
    }
    fprintf(f, "\n],\n\"otherData\": {\"producer\": \"shardfit\", "
            "\"trace_steps\": \"%lld:%lld\", \"clock\": \"CLOCK_MONOTONIC of each "
            "rank plus its offset to rank 0, measured at start by 20 ping-pongs "
            "with rank 0 (shortest round trip); ts 0 is the first event\", "
            "\"ranks\": [", (long long)tr->first, (long long)tr->last);
    for (int r = 0; r < p; r++) {
        double steps = s[r].steps > 0 ? s[r].steps : 1;
        fprintf(f, "%s\n  {\"rank\": %d, \"host\": ", r ? "," : "", r);
        json_string(f, g->head[r].host);
        fprintf(f, ", \"clock_offset_us\": %.3f, \"clock_error_us\": %.3f, "
                "\"events\": %lld, \"dropped_events\": %lld, \"steps\": %.0f, "
                "\"compute_ms_per_step\": %.4f, \"wait_ms_per_step\": %.4f, "
                "\"last_arrivals\": %.0f, \"collectives\": %.0f, "
                "\"others_waited_ms_per_step\": %.4f}",
                g->head[r].offset * 1e6, g->head[r].error * 1e6,
                (long long)g->head[r].nevents, (long long)g->head[r].dropped,
                s[r].steps, s[r].compute / steps * 1e3, s[r].waited / steps * 1e3,
                s[r].lasts, s[r].collectives, s[r].caused / steps * 1e3);
    }
    fputs("\n]}}\n", f);
}

static void print_summary(FILE *out, const Gathered *g, const Straggle *s,
                          const char *path)
{
    fprintf(out, "shardfit: trace written to %s; stragglers over the %.0f traced "
            "steps (waits in the steps' collectives, clocks aligned to rank 0):\n",
            path, s[0].steps);
    fprintf(out, "  rank  host              compute ms/step  waited ms/step  "
            "last in  others waited for it ms/step\n");
    for (int r = 0; r < g->size; r++) {
        double steps = s[r].steps > 0 ? s[r].steps : 1;
        fprintf(out, "  %4d  %-16.16s  %15.3f  %14.3f  %3.0f/%-4.0f  %8.3f\n", r,
                g->head[r].host, s[r].compute / steps * 1e3,
                s[r].waited / steps * 1e3, s[r].lasts, s[r].collectives,
                s[r].caused / steps * 1e3);
    }
    fflush(out);
}

/* Rank 0: unpacks the gathered block, matches, writes path atomically. */
static int write_file(const char *block, const size_t *counts, int p,
                      const SfTrace *tr, const char *path, FILE *summary,
                      SfError *err)
{
    int rc = -1;
    Gathered g = {.size = p};
    Straggle *s = calloc((size_t)p, sizeof *s);
    g.head = calloc((size_t)p, sizeof *g.head);
    g.ev = calloc((size_t)p, sizeof *g.ev);
    g.waited = calloc((size_t)p, sizeof *g.waited);
    g.last = calloc((size_t)p, sizeof *g.last);
    char tmp[4096 + 8];
    FILE *f = NULL;
    if (!s || !g.head || !g.ev || !g.waited || !g.last)
        goto oom;
    size_t pos = 0;
    for (int r = 0; r < p; r++) {
        memcpy(&g.head[r], block + pos, sizeof(Header));
        g.ev[r] = (Event *)(void *)(block + pos + sizeof(Header));
        pos += counts[r];
        size_t n = (size_t)g.head[r].nevents;
        g.waited[r] = calloc(n ? n : 1, sizeof(double));
        g.last[r] = malloc((n ? n : 1) * sizeof(int));
        if (!g.waited[r] || !g.last[r])
            goto oom;
        for (size_t i = 0; i < n; i++)
            g.last[r][i] = -1;
    }
    match_collectives(&g);
    straggle(&g, s);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "w"))) {
        sf_error_set(err, SF_EXIT_FAILURE, "log.trace '%s': cannot write: %s", tmp,
                     strerror(errno));
        goto cleanup;
    }
    write_json(f, &g, s, tr);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    f = NULL;
    if (bad || rename(tmp, path)) {
        sf_error_set(err, SF_EXIT_FAILURE, "log.trace '%s': write failed: %s",
                     path, strerror(errno));
        remove(tmp);
        goto cleanup;
    }
    if (summary)
        print_summary(summary, &g, s, path);
    rc = 0;
    goto cleanup;
oom:
    sf_error_set(err, SF_EXIT_FAILURE, "log.trace '%s': out of memory while "
                 "writing the trace", path);
cleanup:
    for (int r = 0; g.waited && g.last && r < p; r++) {
        free(g.waited[r]);
        free(g.last[r]);
    }
    free(g.waited);
    free(g.last);
    free(g.ev);
    free(g.head);
    free(s);
    return rc;
}

int sf_trace_finish(SfTrace *tr, const char *path, FILE *summary, SfError *err)
{
    sf_comm_set_hook(tr->comm, NULL, NULL);
    tr->active = 0;
    tr->head.nevents = tr->n;
    tr->head.dropped = tr->dropped;
    /* The header and the events in one block, so one gather carries both. */
    size_t bytes = sizeof(Header) + (size_t)tr->n * sizeof(Event);
    char *mine = malloc(bytes);
    int p = sf_comm_size(tr->comm), ok = 0, rank = sf_comm_rank(tr->comm);
    /* A rank without memory still joins, sending only its header. */
    if (mine) {
        memcpy(mine, &tr->head, sizeof(Header));
        memcpy(mine + sizeof(Header), tr->events, (size_t)tr->n * sizeof(Event));
    } else {
        Header *h = &tr->head;
        h->nevents = 0;
        h->dropped = tr->n + tr->dropped;
        mine = (char *)h;
        bytes = sizeof(Header);
    }
    char *all = sf_comm_gather_bytes(tr->comm, mine, bytes, tr->counts, &ok);
    if (mine != (char *)&tr->head)
        free(mine);
    int rc = 0;
    if (rank == 0) {
        if (!ok) {
            sf_error_set(err, SF_EXIT_FAILURE, "log.trace '%s': out of memory "
                         "gathering the trace", path);
            rc = -1;
        } else {
            rc = write_file(all, tr->counts, p, tr, path, summary, err);
        }
    }
    free(all);
    return rc;
}
