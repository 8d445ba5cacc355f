/* bigalloc.c: huge pages for the blocks every step sweeps, and glibc told
 * to keep freed memory mapped (bigalloc.h).
 *
 * The optimizer streams the parameters, gradients and momentum (2.1 MB each
 * for the Fashion-MNIST MLP) once a step, and the loader reads rows from
 * anywhere in the held features (47 MB): on 4 KiB pages both spent much of
 * their time in TLB misses. On 2 MiB pages the optimizer's pass took 19%
 * less time (159 -> 128 us, parameters and gradients alone). Debian's
 * kernels give huge pages only where madvise asks (THP "madvise"). */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE, MADV_DONTNEED */
#include "bigalloc.h"

#include <stdint.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *sf_big_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    if (bytes < HUGE_PAGE / 2)
        return calloc(n, size);
    void *p;
    if (posix_memalign(&p, HUGE_PAGE, bytes))
        return NULL;
#ifdef MADV_HUGEPAGE
    /* Advice only: without THP the block is ordinary memory. Since
     * sf_memory_keep the block may come from the heap, from memory freed
     * earlier and still mapped on 4 KiB pages, which the advice does not
     * change: its whole 2 MiB pages are dropped first, so that memset
     * faults them in anew, huge (the AnonHugePages of a 784-1024-1024-10
     * trainer: 47 MB without this, 82 before sf_memory_keep). */
    size_t whole = bytes & ~(HUGE_PAGE - 1);
    if (whole)
        (void)madvise(p, whole, MADV_DONTNEED);
    (void)madvise(p, (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
    memset(p, 0, bytes);
    return p;
}

/* glibc serves a request of 128 KiB or more by mmap and gives it back by
 * munmap on free, raising that threshold only as such blocks are freed, and
 * trims the heap's top once 128 KiB of it (twice the threshold, raised) is
 * free. A 2 MiB sum over 3 namespace hosts by Open MPI's ring, which
 * allocates two 0.7 MB buffers per call, took 14-21 ms back to back in
 * `shardfit bench-comm`, whose small heap was trimmed after every call,
 * against 2.0-2.1 ms with both thresholds set as here; the trainer, whose
 * heap had other blocks above them, took 2.3-2.7 ms either way. */
void sf_memory_keep(void)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}
