/* testutil.h: what every test binary shares. */
#ifndef SHARDFIT_TESTUTIL_H
#define SHARDFIT_TESTUTIL_H

#include <check.h>

/* Runs the suite, prints Check's summary line (which tests/run-all.sh
 * counts), and returns the process exit status: 0 when all passed. */
int sf_test_run(Suite *s);

#endif
