/* test_phases.c: the named phase timers: each phase adds up its own
 * intervals, compute is forward + backward + optimizer, reset zeroes the
 * totals, and the names are the ones metrics.jsonl and the trace use. */
#include <check.h>
#include <time.h>

#include "shardfit/phases.h"
#include "testutil.h"

static void spin(double seconds)
{
    struct timespec ts = {0, (long)(seconds * 1e9)};
    nanosleep(&ts, NULL);
}

START_TEST(test_phases_add_up_separately)
{
    SfPhases p;
    sf_phases_init(&p, NULL);
    sf_phases_set_step(&p, 3);
    ck_assert_int_eq(p.step, 3);
    for (int i = 0; i < 2; i++) {  /* two micro-batches */
        sf_phases_begin(&p, SF_PHASE_FORWARD);
        spin(0.002);
        sf_phases_end(&p, SF_PHASE_FORWARD);
        sf_phases_begin(&p, SF_PHASE_BACKWARD);
        spin(0.004);
        sf_phases_end(&p, SF_PHASE_BACKWARD);
    }
    ck_assert(p.total[SF_PHASE_FORWARD] >= 0.004);
    ck_assert(p.total[SF_PHASE_BACKWARD] >= 0.008);
    ck_assert(p.total[SF_PHASE_BACKWARD] > p.total[SF_PHASE_FORWARD]);
    ck_assert(p.total[SF_PHASE_DATA] == 0.0 && p.total[SF_PHASE_ALLREDUCE] == 0.0);
    ck_assert(sf_phases_compute(&p) == p.total[SF_PHASE_FORWARD] +
                                         p.total[SF_PHASE_BACKWARD] +
                                         p.total[SF_PHASE_OPTIMIZER]);
    sf_phases_reset(&p);
    for (int i = 0; i < SF_NPHASES; i++)
        ck_assert(p.total[i] == 0.0);
}
END_TEST

START_TEST(test_phase_names)
{
    const char *want[SF_NPHASES] = {"step", "data", "forward", "backward",
                                    "allreduce", "optimizer", "eval", "checkpoint"};
    for (int i = 0; i < SF_NPHASES; i++)
        ck_assert_str_eq(sf_phase_name((SfPhase)i), want[i]);
    ck_assert_str_eq(sf_phase_name(SF_NPHASES), "?");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("phases");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_phases_add_up_separately);
    tcase_add_test(tc, test_phase_names);
    suite_add_tcase(s, tc);
    return sf_test_run(s);
}
