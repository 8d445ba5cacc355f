/* test_optim.c: the update rules of optim.h against hand-computed PyTorch
 * steps, and the learning-rate schedule's closed forms. */
#include <check.h>
#include <math.h>

#include "shardfit/optim.h"
#include "shardfit/sampler.h"
#include "shardfit/schedule.h"
#include "testutil.h"

static SfConfig base_config(SfOptimKind kind)
{
    SfConfig c;
    sf_config_defaults(&c);
    c.optimizer.name = kind;
    c.optimizer.lr = 0.1;
    return c;
}

/* Runs steps updates of one parameter (start 1.0) with a constant gradient. */
static float run(const SfConfig *c, float g, int steps, float scale)
{
    SfError err = {0};
    SfOptim *o = sf_optim_create(c, 1, &err);
    float p = 1.0f;
    for (int i = 0; i < steps; i++)
        sf_optim_step(o, &p, &g, scale, c->optimizer.lr);
    ck_assert_int_eq(sf_optim_steps(o), steps);
    sf_optim_free(o);
    return p;
}

START_TEST(test_sgd_variants)
{
    SfConfig c = base_config(SF_OPTIM_SGD);
    ck_assert_float_eq_tol(run(&c, 0.5f, 1, 1.0f), 0.95f, 1e-7f);
    ck_assert_float_eq_tol(run(&c, 1.0f, 1, 0.5f), 0.95f, 1e-7f); /* scale */
    c.optimizer.momentum = 0.9;
    /* v1 = 1, p = 0.9; v2 = 1.9, p = 0.71 */
    ck_assert_float_eq_tol(run(&c, 1.0f, 2, 1.0f), 0.71f, 1e-6f);
    c.optimizer.nesterov = 1;
    /* d1 = 1 + 0.9*1 = 1.9, p = 0.81; v2 = 1.9, d2 = 1 + 1.71, p = 0.539 */
    ck_assert_float_eq_tol(run(&c, 1.0f, 2, 1.0f), 0.539f, 1e-6f);
    c.optimizer.nesterov = 0;
    c.optimizer.momentum = 0.0;
    c.optimizer.weight_decay = 0.1;
    /* d = 0.5 + 0.1*1 = 0.6, p = 0.94 */
    ck_assert_float_eq_tol(run(&c, 0.5f, 1, 1.0f), 0.94f, 1e-7f);
}
END_TEST

START_TEST(test_adam_and_adamw_first_steps)
{
    SfConfig c = base_config(SF_OPTIM_ADAM);
    /* Bias correction makes the first step lr * g / (|g| + eps). */
    ck_assert_float_eq_tol(run(&c, 0.3f, 1, 1.0f), 1.0f - 0.1f, 1e-6f);
    ck_assert_float_eq_tol(run(&c, -2.0f, 1, 1.0f), 1.0f + 0.1f, 1e-6f);
    /* Constant gradient: mhat = g and vhat = g^2 at every step. */
    ck_assert_float_eq_tol(run(&c, 0.3f, 3, 1.0f), 1.0f - 0.3f, 1e-5f);
    c.optimizer.weight_decay = 0.5; /* adam: L2 into the gradient */
    ck_assert_float_eq_tol(run(&c, 0.3f, 1, 1.0f), 0.9f, 1e-6f);
    c.optimizer.name = SF_OPTIM_ADAMW; /* decoupled: p *= 1 - lr*wd first */
    ck_assert_float_eq_tol(run(&c, 0.3f, 1, 1.0f), 0.95f - 0.1f, 1e-6f);
}
END_TEST

START_TEST(test_clipping)
{
    float g[2] = {3.0f, 4.0f};
    ck_assert_double_eq_tol(sf_optim_grad_norm(g, 2, 0.5f), 2.5, 1e-9);
    float s = sf_optim_clip_scale(0.5f, 2.5, 1.0);
    ck_assert_float_eq_tol(s * 5.0f, 1.0f, 1e-5f);
    ck_assert_float_eq(sf_optim_clip_scale(0.5f, 2.5, 10.0), 0.5f);
}
END_TEST

START_TEST(test_schedule_closed_forms)
{
    SfConfig c = base_config(SF_OPTIM_SGD);
    SfSchedule s;
    sf_schedule_init(&s, &c, 10, 100);
    ck_assert_double_eq(sf_schedule_lr(&s, 57), 0.1);
    c.schedule.warmup_steps = 4;
    sf_schedule_init(&s, &c, 10, 100);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 0), 0.025, 1e-12);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 3), 0.1, 1e-12);
    c.schedule.warmup_steps = 0;
    c.schedule.name = SF_SCHED_COSINE;
    c.schedule.min_lr = 0.01;
    sf_schedule_init(&s, &c, 10, 101);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 0), 0.1, 1e-12);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 50), 0.055, 1e-12);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 100), 0.01, 1e-12);
    c.schedule.name = SF_SCHED_MULTISTEP;
    c.schedule.milestones[0] = 2;
    c.schedule.milestones[1] = 5;
    c.schedule.n_milestones = 2;
    sf_schedule_init(&s, &c, 10, 100);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 19), 0.1, 1e-12);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 20), 0.01, 1e-12);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 50), 0.001, 1e-12);
    c.optimizer.lr_scaling = SF_LR_SCALING_LINEAR;
    c.train.batch_size = 512;
    c.schedule.name = SF_SCHED_CONSTANT;
    sf_schedule_init(&s, &c, 10, 100);
    ck_assert_double_eq_tol(sf_schedule_lr(&s, 0), 0.2, 1e-12);
}
END_TEST

/* Every schedule against its closed form at the first step, a warmup
 * boundary, a middle step and the last step, with steps per epoch taken from
 * a partial last batch (N 1050, B 100: 11) and from drop_last (10). */
START_TEST(test_schedules_with_partial_batches)
{
    const double pi = 3.14159265358979323846;
    for (int drop = 0; drop <= 1; drop++) {
        const int64_t E = sf_sampler_steps(1050, 100, drop), T = 5 * E;
        ck_assert_int_eq(E, drop ? 10 : 11);
        SfConfig c = base_config(SF_OPTIM_SGD);
        SfSchedule s;
        c.schedule.warmup_epochs = 1.0; /* W = E steps */
        c.schedule.name = SF_SCHED_STEP;
        c.schedule.step_epochs = 2.0;   /* decay every 2E steps */
        sf_schedule_init(&s, &c, E, T);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, 0), 0.1 / (double)E, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, E - 1), 0.1, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, 2 * E - 1), 0.1, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, 2 * E), 0.01, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, T - 1), 0.001, 1e-12);

        c.schedule.name = SF_SCHED_EXPONENTIAL;
        c.schedule.gamma = 0.5;
        sf_schedule_init(&s, &c, E, T);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, E), 0.05, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, 3 * E / 2),
                                0.1 * pow(0.5, (double)(3 * E / 2) / (double)E), 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, T - 1),
                                0.1 * pow(0.5, (double)(T - 1) / (double)E), 1e-12);

        c.schedule.name = SF_SCHED_COSINE;
        c.schedule.min_lr = 0.001;
        sf_schedule_init(&s, &c, E, T);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, 0), 0.1 / (double)E, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, E - 1), 0.1, 1e-12);
        int64_t mid = E + (T - 1 - E) / 2;
        double expect = 0.001 + 0.099 * 0.5 *
                        (1.0 + cos(pi * (double)(mid - E) / (double)(T - 1 - E)));
        ck_assert_double_eq_tol(sf_schedule_lr(&s, mid), expect, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, T - 1), 0.001, 1e-12);

        c.schedule.name = SF_SCHED_MULTISTEP;
        c.schedule.warmup_epochs = 0.0;
        c.schedule.gamma = 0.1;
        c.schedule.milestones[0] = 3;
        c.schedule.n_milestones = 1;
        sf_schedule_init(&s, &c, E, T);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, 3 * E - 1), 0.1, 1e-12);
        ck_assert_double_eq_tol(sf_schedule_lr(&s, 3 * E), 0.01, 1e-12);
    }
}
END_TEST

/* The non-finite check runs inside the vectorized update: an infinite or
 * NaN gradient anywhere (vector body or scalar tail) fails the step, for
 * every update rule; finite gradients never do. */
START_TEST(test_nonfinite_gradient_fails_the_step)
{
    enum { N = 37 }; /* not a multiple of any vector width */
    const float bad_values[] = {INFINITY, -INFINITY, NAN};
    struct { SfOptimKind kind; double momentum; int nesterov; } rules[] = {
        {SF_OPTIM_SGD, 0.0, 0}, {SF_OPTIM_SGD, 0.9, 0}, {SF_OPTIM_SGD, 0.9, 1},
        {SF_OPTIM_ADAM, 0.0, 0}, {SF_OPTIM_ADAMW, 0.0, 0}};
    for (size_t r = 0; r < sizeof rules / sizeof *rules; r++) {
        SfConfig c = base_config(rules[r].kind);
        c.optimizer.momentum = rules[r].momentum;
        c.optimizer.nesterov = rules[r].nesterov;
        c.optimizer.weight_decay = 0.01;
        for (int at = 0; at < N; at += 5) {
            for (size_t b = 0; b < 3; b++) {
                SfError err = {0};
                SfOptim *o = sf_optim_create(&c, N, &err);
                float p[N], g[N];
                for (int i = 0; i < N; i++) {
                    p[i] = 0.5f + 0.01f * (float)i;
                    g[i] = 0.1f * (float)(i % 7) - 0.3f;
                }
                ck_assert_int_eq(sf_optim_step(o, p, g, 0.5f, 0.1), 0);
                g[at] = bad_values[b];
                ck_assert_msg(sf_optim_step(o, p, g, 0.5f, 0.1) == -1,
                              "rule %zu: %g at %d passed", r, (double)g[at], at);
                sf_optim_free(o);
            }
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sgd_variants);
    tcase_add_test(tc, test_adam_and_adamw_first_steps);
    tcase_add_test(tc, test_clipping);
    tcase_add_test(tc, test_nonfinite_gradient_fails_the_step);
    tcase_add_test(tc, test_schedule_closed_forms);
    tcase_add_test(tc, test_schedules_with_partial_batches);
    suite_add_tcase(s, tc);
    return sf_test_run(s);
}
