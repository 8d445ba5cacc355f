/* testutil.h: what every test binary shares. */
#ifndef SHARDFIT_TESTUTIL_H
#define SHARDFIT_TESTUTIL_H

#include <check.h>

/* Runs the suite, prints Check's summary line (which tests/run-all.sh
 * counts), and returns the process exit status: 0 when all passed. */
int sf_test_run(Suite *s);

/* dir/name in a rotating buffer: up to four results live at once. */
const char *sf_test_path(const char *dir, const char *name);

/* rm -rf path (making directories writable first); quiet if it is gone. */
void sf_test_remove_tree(const char *path);

#endif
