/* h5guard.h: reading an untrusted HDF5 file first in a throw-away process
 * (private to src/).
 *
 * HDF5 1.10.8 crashes, loops forever or allocates gigabytes on some corrupt
 * files (fuzz/known-hdf5/ keeps one of each), inside calls we make with
 * valid arguments, and nothing we can ask the library beforehand predicts
 * it. So every reader of a file a user hands us (dataset open, checkpoint
 * read, inspect) first does the same reads in a forked child: if the child
 * crashes, runs out of its memory budget or its time, the file is reported
 * as corrupt (exit 2) and the calling process never touches it; if the
 * child finishes, the caller repeats the reads for real, which then take
 * the same path through the library. The child's own error (a missing
 * dataset, a wrong shape) comes back as the caller's error, word for word.
 *
 * The child only reads, never calls MPI, and leaves with _exit() (no atexit
 * handlers: Open MPI's and HDF5's clean-up stay the parent's). fork happens
 * under sf_h5_lock(), so no other thread is inside HDF5 at that moment.
 * Cost: one fork and a second read of the metadata (and of a checkpoint's
 * arrays: 0.75 s for an 815 MB checkpoint).
 *
 * Limits on the child, for files that make HDF5 misbehave:
 *  - time: SHARDFIT_FILE_CHECK_TIMEOUT seconds if set (> 0), else 60 s plus
 *    1 s per 10 MB of the file;
 *  - memory: 2 GiB plus twice the file's size beyond what the process
 *    already maps (RLIMIT_AS; not under AddressSanitizer, whose shadow
 *    memory needs terabytes of address space);
 *  - no core file.
 * If fork itself fails (out of processes or memory), fn runs in this
 * process instead: a good file reads the same either way.
 *
 * Built with -DSF_NO_H5_GUARD (the fuzz targets, which must see the
 * crashes in-process), sf_h5_guard only returns 0. */
#ifndef SHARDFIT_H5GUARD_H
#define SHARDFIT_H5GUARD_H

#include "shardfit/error.h"

/* What the child does: the caller's reads of path, results thrown away.
 * Returns 0, or -1 with err set. */
typedef int (*SfH5GuardFn)(void *arg, SfError *err);

/* sf_h5_guard's verdict on a child that did not return. */
#define SF_H5_GUARD_FAILED (-2)

/* Runs fn(arg) in a child process. Returns 0 when it returned 0; -1 with
 * err set to its error, word for word, when it failed; SF_H5_GUARD_FAILED
 * with err set (SF_EXIT_INPUT) when it crashed ("the HDF5 library crashed
 * reading this file (Segmentation fault): the file is corrupt ..."), ran out
 * of time or memory. That message does not name path: callers whose own
 * messages start with the path put it there. path is stat'ed for the size
 * that sets the limits. */
int sf_h5_guard(const char *path, SfH5GuardFn fn, void *arg, SfError *err);

#endif
