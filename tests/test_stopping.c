/* test_stopping.c: early stopping and target on scripted metric sequences,
 * against what Keras's EarlyStopping does with the same numbers. */
#include <check.h>
#include <math.h>

#include "shardfit/stopping.h"
#include "testutil.h"

/* Feeds values for epochs 1..n; returns the epoch that stopped the run (0:
 * none) and the decision that did it in *why. */
static int64_t run(const char *monitor, int early, int64_t patience,
                   double min_delta, double target, const double *v, int n,
                   SfStopDecision *why, int64_t *best_epoch)
{
    SfConfig c;
    SfError err = {0};
    char set[128];
    sf_config_defaults(&c);
    snprintf(set, sizeof set, "stop.monitor=%s", monitor);
    ck_assert_int_eq(sf_config_set(&c, set, &err), 0);
    c.stop.early_stopping = early;
    c.stop.patience = patience;
    c.stop.min_delta = min_delta;
    c.stop.target = target;
    SfStopper s;
    sf_stopper_init(&s, &c);
    *why = SF_STOP_CONTINUE;
    for (int e = 1; e <= n; e++) {
        int improved;
        *why = sf_stopper_update(&s, e, v[e - 1], &improved);
        *best_epoch = s.best_epoch;
        if (*why != SF_STOP_CONTINUE)
            return e;
    }
    return 0;
}

START_TEST(test_patience_counts_epochs_without_improvement)
{
    const double v[] = {1.0, 0.9, 0.95, 0.96, 0.5};
    SfStopDecision why;
    int64_t best;
    ck_assert_int_eq(run("val_loss", 1, 2, 0.0, 0.0, v, 5, &why, &best), 4);
    ck_assert_int_eq(why, SF_STOP_EARLY);
    ck_assert_int_eq(best, 2);
    ck_assert_int_eq(run("val_loss", 1, 3, 0.0, 0.0, v, 5, &why, &best), 0);
    ck_assert_int_eq(best, 5);
    ck_assert_int_eq(run("val_loss", 0, 1, 0.0, 0.0, v, 5, &why, &best), 0);
}
END_TEST

START_TEST(test_patience_zero_and_first_epoch)
{
    const double up[] = {1.0, 1.1}, down[] = {1.0, 0.9, 0.8};
    SfStopDecision why;
    int64_t best;
    /* The first epoch never stops; patience 0 stops at the first plateau. */
    ck_assert_int_eq(run("val_loss", 1, 0, 0.0, 0.0, up, 1, &why, &best), 0);
    ck_assert_int_eq(run("val_loss", 1, 0, 0.0, 0.0, up, 2, &why, &best), 2);
    /* ... and an improving epoch never stops by patience. */
    ck_assert_int_eq(run("val_loss", 1, 0, 0.0, 0.0, down, 3, &why, &best), 0);
}
END_TEST

START_TEST(test_min_delta_needs_a_clear_improvement)
{
    const double v[] = {1.0, 0.95, 0.93, 0.85};
    SfStopDecision why;
    int64_t best;
    ck_assert_int_eq(run("val_loss", 1, 1, 0.1, 0.0, v, 4, &why, &best), 2);
    ck_assert_int_eq(best, 1);
    ck_assert_int_eq(run("val_loss", 1, 3, 0.1, 0.0, v, 4, &why, &best), 0);
    ck_assert_int_eq(best, 4); /* 0.85 beats 1.0 by more than 0.1 */
}
END_TEST

START_TEST(test_accuracy_is_maximized)
{
    const double v[] = {0.5, 0.6, 0.55, 0.58};
    SfStopDecision why;
    int64_t best;
    ck_assert_int_eq(run("val_accuracy", 1, 2, 0.0, 0.0, v, 4, &why, &best), 4);
    ck_assert_int_eq(best, 2);
    ck_assert_int_eq(run("accuracy", 1, 1, 0.0, 0.0, v, 4, &why, &best), 3);
}
END_TEST

START_TEST(test_target)
{
    const double acc[] = {0.8, 0.91, 0.95}, loss[] = {0.5, 0.29, 0.2};
    SfStopDecision why;
    int64_t best;
    ck_assert_int_eq(run("val_accuracy", 0, 0, 0.0, 0.9, acc, 3, &why, &best), 2);
    ck_assert_int_eq(why, SF_STOP_TARGET);
    ck_assert_int_eq(run("loss", 0, 0, 0.0, 0.3, loss, 3, &why, &best), 2);
    ck_assert_int_eq(run("loss", 0, 0, 0.0, 0.1, loss, 3, &why, &best), 0);
}
END_TEST

START_TEST(test_nan_never_improves)
{
    const double v[] = {1.0, NAN, NAN};
    SfStopDecision why;
    int64_t best;
    ck_assert_int_eq(run("val_loss", 1, 2, 0.0, 0.0, v, 3, &why, &best), 3);
    ck_assert_int_eq(best, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stopping");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_patience_counts_epochs_without_improvement);
    tcase_add_test(tc, test_patience_zero_and_first_epoch);
    tcase_add_test(tc, test_min_delta_needs_a_clear_improvement);
    tcase_add_test(tc, test_accuracy_is_maximized);
    tcase_add_test(tc, test_target);
    tcase_add_test(tc, test_nan_never_improves);
    suite_add_tcase(s, tc);
    return sf_test_run(s);
}
