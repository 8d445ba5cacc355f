/* test_h5guard.c: the child process that reads untrusted files first
 * (src/h5guard.h): what comes back for each way a child can end. The
 * corrupt files themselves go through the commands in cli_corrupt_files.sh;
 * here the child's work is made to succeed, fail, crash, loop and run out
 * of memory on purpose. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/h5guard.h"
#include "../src/h5util.h"
#include "shardfit/error.h"
#include "testutil.h"

static int touched; /* set by a child: must not reach the parent */

static int succeed(void *arg, SfError *err)
{
    (void)arg, (void)err;
    touched = 1;
    return 0;
}

static int fail_input(void *arg, SfError *err)
{
    sf_error_set(err, SF_EXIT_INPUT, "'%s' has no dataset '/x'", (char *)arg);
    return -1;
}

static int crash(void *arg, SfError *err)
{
    (void)arg, (void)err;
    abort(); /* SIGABRT: sanitizers leave it alone, unlike SIGSEGV */
}

static int loop(void *arg, SfError *err)
{
    (void)arg, (void)err;
    for (volatile unsigned i = 0;; i++)
        ;
    return 0;
}

/* The caller's reads hold the HDF5 lock; the guard forks holding it too. */
static int take_lock(void *arg, SfError *err)
{
    (void)arg, (void)err;
    sf_h5_lock();
    sf_h5_unlock();
    return 0;
}

/* 4 GiB: more than the child's limit (2 GiB beyond what it maps), less
 * than the machine's memory, so without the limit malloc would succeed. */
static __attribute__((unused)) int allocate_4g(void *arg, SfError *err)
{
    (void)arg;
    char *p = malloc((size_t)4 << 30);
    if (!p) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
        return -1;
    }
    free(p);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

START_TEST(test_success_runs_in_a_child)
{
    SfError err = {0};
    touched = 0;
    ck_assert_int_eq(sf_h5_guard("/nonexistent", succeed, NULL, &err), 0);
    ck_assert_int_eq(err.code, 0);
    ck_assert_int_eq(touched, 0);
}
END_TEST

START_TEST(test_child_error_comes_back_word_for_word)
{
    SfError err = {0};
    ck_assert_int_eq(sf_h5_guard("/nonexistent", fail_input, "d.h5", &err), -1);
    ck_assert_int_eq(err.code, SF_EXIT_INPUT);
    ck_assert_str_eq(err.msg, "'d.h5' has no dataset '/x'");
}
END_TEST

START_TEST(test_crash_is_an_input_error)
{
    SfError err = {0};
    ck_assert_int_eq(sf_h5_guard("/nonexistent", crash, NULL, &err),
                     SF_H5_GUARD_FAILED);
    ck_assert_int_eq(err.code, SF_EXIT_INPUT);
    ck_assert_msg(strstr(err.msg, "the HDF5 library crashed reading this file "
                                  "(Aborted)"), "%s", err.msg);
}
END_TEST

START_TEST(test_endless_loop_is_stopped_at_the_time_limit)
{
    SfError err = {0};
    setenv("SHARDFIT_FILE_CHECK_TIMEOUT", "1", 1);
    double t0 = now();
    int rc = sf_h5_guard("/nonexistent", loop, NULL, &err);
    double took = now() - t0;
    unsetenv("SHARDFIT_FILE_CHECK_TIMEOUT");
    ck_assert_int_eq(rc, SF_H5_GUARD_FAILED);
    ck_assert_int_eq(err.code, SF_EXIT_INPUT);
    ck_assert_msg(strstr(err.msg, "did not finish reading this file in 1 s"),
                  "%s", err.msg);
    ck_assert_msg(took >= 0.9 && took < 30, "took %.1f s", took);
}
END_TEST

START_TEST(test_lock_held_at_fork_is_free_in_the_child)
{
    SfError err = {0};
    setenv("SHARDFIT_FILE_CHECK_TIMEOUT", "10", 1);
    sf_h5_lock(); /* as a caller inside the gateway would hold it */
    int rc = sf_h5_guard("/nonexistent", take_lock, NULL, &err);
    sf_h5_unlock();
    unsetenv("SHARDFIT_FILE_CHECK_TIMEOUT");
    ck_assert_msg(rc == 0, "%s", err.msg);
}
END_TEST

/* Under AddressSanitizer the child has no memory limit (its shadow memory
 * needs the address space), so this runs in plain builds only. */
START_TEST(test_memory_is_limited)
{
#if !defined(__SANITIZE_ADDRESS__)
    SfError err = {0};
    ck_assert_int_eq(sf_h5_guard("/nonexistent", allocate_4g, NULL, &err), -1);
    ck_assert_str_eq(err.msg, "out of memory");
#endif
}
END_TEST

int main(void)
{
    Suite *s = suite_create("h5guard");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_success_runs_in_a_child);
    tcase_add_test(tc, test_child_error_comes_back_word_for_word);
    tcase_add_test(tc, test_crash_is_an_input_error);
    tcase_add_test(tc, test_endless_loop_is_stopped_at_the_time_limit);
    tcase_add_test(tc, test_lock_held_at_fork_is_free_in_the_child);
    tcase_add_test(tc, test_memory_is_limited);
    suite_add_tcase(s, tc);
    return sf_test_run(s);
}
