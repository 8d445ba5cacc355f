/* fuzz_common.c: the temporary input file and the error contract check
 * (see fuzz_common.h). */
#include "fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char input_path[256], input_dir[256], named_path[512];

static void remove_input(void)
{
    if (input_path[0])
        unlink(input_path);
    if (named_path[0])
        unlink(named_path);
    if (input_dir[0])
        rmdir(input_dir);
}

static void remove_at_exit(void)
{
    static int registered;
    if (!registered++)
        atexit(remove_input);
}

/* /dev/shm when it is writable (no disk I/O), else $TMPDIR or /tmp. */
static const char *temp_root(void)
{
    return access("/dev/shm", W_OK) == 0 ? "/dev/shm"
           : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
}

static void write_all(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        fuzz_fail("cannot write %zu bytes to %s", size, path);
}

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

const char *fuzz_write_file(const uint8_t *data, size_t size)
{
    if (!input_path[0]) {
        snprintf(input_path, sizeof input_path, "%s/shardfit-fuzz-XXXXXX",
                 temp_root());
        int fd = mkstemp(input_path);
        if (fd < 0)
            fuzz_fail("cannot create %s", input_path);
        close(fd);
        remove_at_exit();
    }
    write_all(input_path, data, size);
    return input_path;
}

const char *fuzz_write_named(const char *name, const uint8_t *data, size_t size,
                             const char **dir)
{
    if (!input_dir[0]) {
        snprintf(input_dir, sizeof input_dir, "%s/shardfit-fuzz-XXXXXX",
                 temp_root());
        if (!mkdtemp(input_dir))
            fuzz_fail("cannot create %s", input_dir);
        snprintf(named_path, sizeof named_path, "%s/%s", input_dir, name);
        remove_at_exit();
    }
    write_all(named_path, data, size);
    *dir = input_dir;
    return named_path;
}

void fuzz_check_error(const char *what, int rc, const SfError *err)
{
    if (rc < 0 && (err->code != SF_EXIT_FAILURE && err->code != SF_EXIT_INPUT))
        fuzz_fail("%s failed with error code %d: '%s'", what, err->code, err->msg);
    if (rc < 0 && !err->msg[0])
        fuzz_fail("%s failed without a message", what);
    if (rc < 0 && !memchr(err->msg, '\0', sizeof err->msg))
        fuzz_fail("%s left an unterminated message", what);
    if (rc >= 0 && err->code)
        fuzz_fail("%s succeeded but set an error: '%s'", what, err->msg);
}
