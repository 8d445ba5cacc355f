/* bigalloc.h: memory for the big flat blocks (parameters, gradients,
 * optimizer state, held dataset rows, a model's activations), on 2 MiB
 * pages where the kernel offers them; and memory that stays mapped between
 * steps (sf_memory_keep). Private to src/. */
#ifndef SHARDFIT_BIGALLOC_H
#define SHARDFIT_BIGALLOC_H

#include <stddef.h>

/* Like calloc(n, size): zeroed, released with free(), NULL when out of
 * memory. A block of 1 MiB or more is aligned to 2 MiB and advised to
 * transparent huge pages (Linux, THP "madvise" or "always"); smaller ones
 * are plain calloc. */
void *sf_big_calloc(size_t n, size_t size);

/* Keeps glibc's malloc from giving memory back to the kernel between
 * steps, so blocks that are freed and allocated again every step (Open
 * MPI's collectives allocate their temporary buffers per call) are not
 * page-faulted in again each time: blocks under 32 MiB come from the heap,
 * and up to 64 MiB of free memory at its top stays mapped. Call once, at
 * start, before MPI. No effect with another C library. */
void sf_memory_keep(void);

#endif
