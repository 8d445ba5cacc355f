/* fuzz_common.h: what the fuzz targets share.
 *
 * The readers under test open their input by path (inih via a file, zlib's
 * gzopen, H5Fopen), so a target writes each input to one temporary file of
 * its own and hands over the path. Each target is one libFuzzer
 * LLVMFuzzerTestOneInput(); scripts/fuzz.sh builds and runs them. */
#ifndef SHARDFIT_FUZZ_COMMON_H
#define SHARDFIT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "shardfit/error.h"

/* Writes data to this process's temporary file (in /dev/shm when it is
 * writable, so no disk I/O; removed at exit) and returns its path, the same
 * for every call. A failure to write is the harness's, not the input's: it
 * aborts. */
const char *fuzz_write_file(const uint8_t *data, size_t size);

/* Like fuzz_write_file, but the file is dir/name in a temporary directory
 * of this process (for readers that scan a directory by file name). The
 * directory and file are removed at exit; use one name per process. */
const char *fuzz_write_named(const char *name, const uint8_t *data, size_t size,
                             const char **dir);

/* The contract every reader under test keeps: on failure (rc < 0) err holds
 * an exit status of 1 or 2 and a message; on success err is untouched.
 * Aborts, naming what, when that is broken. */
void fuzz_check_error(const char *what, int rc, const SfError *err);

/* Aborts with a message on stderr: a finding, as libFuzzer counts crashes. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
