/* bigalloc.h: memory for the big flat blocks (parameters, gradients,
 * optimizer state, held dataset rows, a model's activations), on 2 MiB
 * pages where the kernel offers them. Private to src/. */
#ifndef SHARDFIT_BIGALLOC_H
#define SHARDFIT_BIGALLOC_H

#include <stddef.h>

/* Like calloc(n, size): zeroed, released with free(), NULL when out of
 * memory. A block of 1 MiB or more is aligned to 2 MiB and advised to
 * transparent huge pages (Linux, THP "madvise" or "always"); smaller ones
 * are plain calloc. */
void *sf_big_calloc(size_t n, size_t size);

#endif
