/* error.h: how a module tells its caller what failed.
 *
 * Modules never print or exit: they fill an SfError and return -1 (or NULL).
 * The caller decides whether the failure is fatal, and the command layer
 * turns it into a message and an exit status. Under MPI the ranks first agree
 * on the worst status (comm.h), so no rank exits while others wait. */
#ifndef SHARDFIT_ERROR_H
#define SHARDFIT_ERROR_H

/* Exit statuses, as SPEC §3 fixes them. */
enum {
    SF_EXIT_OK = 0,
    SF_EXIT_FAILURE = 1, /* anything else: I/O failure, divergence, a bug */
    SF_EXIT_INPUT = 2    /* bad usage, config, data or checkpoint */
};

typedef struct SfError {
    int code;       /* 0 while no error was set; else an SF_EXIT_* value */
    char msg[1024]; /* names the key, path or value, and a hint */
} SfError;

/* Records the first error only: the deepest, most specific message wins and
 * callers higher up need not check whether one was already set. */
void sf_error_set(SfError *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts context before an error already set ("data.path " + "'x.h5': cannot
 * open"), truncating the end if the whole does not fit. No-op when no error
 * is set. */
void sf_error_prefix(SfError *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears err for reuse. */
void sf_error_clear(SfError *err);

#endif
