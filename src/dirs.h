/* dirs.h: making a directory and its parents, as mkdir -p (private to
 * src/): checkpoint.dir and log.dir. */
#ifndef SHARDFIT_DIRS_H
#define SHARDFIT_DIRS_H

#include <stddef.h>

/* Creates path and each missing directory above it (mode 0777 less the
 * umask). 0, or -1 with errno set and failed (size bytes) naming the
 * prefix that could not be made; a prefix that exists but is not a
 * directory fails with ENOTDIR. */
int sf_make_dirs(const char *path, char *failed, size_t size);

#endif
