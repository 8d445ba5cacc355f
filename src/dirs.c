/* dirs.c: mkdir -p (dirs.h). */
#include "dirs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* mkdir of one prefix: 0 when it is a directory afterwards. */
static int make_one(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0777) == 0)
        return 0;
    if (errno != EEXIST)
        return -1;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    errno = ENOTDIR;
    return -1;
}

int sf_make_dirs(const char *path, char *failed, size_t size)
{
    char *buf = strdup(path);
    if (!buf) {
        snprintf(failed, size, "%s", path);
        errno = ENOMEM;
        return -1;
    }
    /* Each prefix ending before a '/', then the whole. */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        const char c = *p;
        *p = '\0';
        if (make_one(buf) != 0) {
            const int saved = errno;
            snprintf(failed, size, "%s", buf);
            free(buf);
            errno = saved;
            return -1;
        }
        *p = c;
        if (!c)
            break;
    }
    free(buf);
    return 0;
}
