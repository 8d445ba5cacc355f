/* h5util.h: what the HDF5 gateway files share (private to src/).
 *
 * dataset.c (reading), h5writer.c (writing) and the checkpoint module all
 * need the same three things from HDF5: a quiet library that lets us word
 * the errors, the mapping between SfDtype and HDF5 types, and a way to ask
 * whether a path exists without HDF5 failing on a missing parent group. */
#ifndef SHARDFIT_H5UTIL_H
#define SHARDFIT_H5UTIL_H

#include <hdf5.h>

#include "shardfit/dataset.h"

/* Call at every entry point, before other HDF5 calls. Turns off HDF5's
 * printing of its error stack (our messages name the path and dataset
 * instead) and, when it is the process's first HDF5 call, HDF5's clean-up
 * at exit: after a failed H5Fclose (a full disk) that clean-up crashes in
 * HDF5 1.10.8, turning a clean exit 1 into a segfault. Every file we open
 * is closed explicitly, so nothing is lost. */
void sf_h5_init(void);

/* Debian's parallel HDF5 is not built thread-safe: only one thread may be
 * inside the library at a time. Every public function of the HDF5 gateway
 * files (dataset, writer, visit, checkpoint) that may run while another
 * thread uses HDF5 (the stream loader's reader) holds this process-wide lock
 * around its HDF5 calls. Recursive, so a locked function may call another. */
void sf_h5_lock(void);
void sf_h5_unlock(void);

/* For the child of a fork made while holding the lock (h5guard.c): the
 * lock's owner is a thread of the parent, so the child starts it afresh,
 * unlocked. */
void sf_h5_lock_reset_in_child(void);

/* The innermost message of the current HDF5 error stack (the most specific
 * one), copied into buf; "" if the stack is empty. An errno text in it is
 * kept and the rest of HDF5's long form dropped: "file write failed: File
 * too large". Call it right after the failing HDF5 call: the next HDF5 call
 * clears the stack. Returns buf. */
const char *sf_h5_error_detail(char *buf, size_t n);

/* The native memory type for t (H5T_NATIVE_UINT8, ...); HDF5 converts the
 * stored byte order to it when reading. Never fails. */
hid_t sf_h5_native_type(SfDtype t);

/* The fixed-width little-endian file type for t (H5T_STD_U8LE, ...). */
hid_t sf_h5_file_type(SfDtype t);

/* The SfDtype of an HDF5 type: integer classes by size and sign, floats of
 * 4 or 8 bytes. Returns 0, or -1 if the type has no SfDtype (compound,
 * string, half float, ...); then *class_name says what it is. */
int sf_h5_dtype_of(hid_t type, SfDtype *out, const char **class_name);

/* 1 if every component of path names an existing link (soft links count),
 * 0 if one does not (or a parent is not a group), -1 if path is longer than
 * 1023 characters. Unlike H5Lexists on the whole path, a missing parent group
 * is a plain 0. On 0, if parent is not NULL, the deepest existing component
 * ("/" or "/train") is copied into it. */
int sf_h5_path_exists(hid_t loc, const char *path, char *parent, size_t n);

/* Opens path read-only. Errors (SF_EXIT_INPUT) say whether the file is
 * missing ("'x.h5': cannot open: No such file or directory"), not HDF5, or
 * unreadable for HDF5's own reasons. Calls sf_h5_init(). -1 on error. */
hid_t sf_h5_open_read(const char *path, SfError *err);

typedef enum {
    SF_H5_PROBE_OK,   /* numeric, at most SF_MAX_DIMS dimensions: info filled */
    SF_H5_PROBE_TYPE, /* not numeric (or a null dataspace): *cls says what */
    SF_H5_PROBE_RANK, /* numeric, but info->ndims exceeds SF_MAX_DIMS */
    SF_H5_PROBE_FAIL  /* HDF5 could not say */
} SfH5Probe;

/* The dtype and shape of an open dataset or attribute, without judging
 * them (a scalar has ndims 0, a dimension may be 0). */
SfH5Probe sf_h5_probe(hid_t obj, SfArrayInfo *info, const char **cls);

#endif
