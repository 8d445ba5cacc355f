/* test_config.c: unit tests of src/config.c and src/config_table.c.
 *
 * Defaults against SPEC §4, a full INI file, --set precedence, one test per
 * error class (each checks the message names where and what), the cross-key
 * checks, and format -> load round trips. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardfit/config.h"
#include "testutil.h"

/* Writes text to a fresh temp file; its name goes to path (>= 32 bytes). */
static void write_temp(const char *text, char *path)
{
    strcpy(path, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* Loads text as an INI file over cfg; the file's name goes to path. */
static int load_text(SfConfig *cfg, const char *text, SfError *err, char *path)
{
    write_temp(text, path);
    int rc = sf_config_load(cfg, path, err);
    unlink(path);
    return rc;
}

/* Loads text over the defaults, expects failure, and checks that the message
 * starts with "PATH:LINE: " and contains want. */
static void expect_load_error(const char *text, int line, const char *want)
{
    SfConfig cfg;
    SfError err = { 0 };
    char path[64], prefix[96];
    sf_config_defaults(&cfg);
    ck_assert_int_eq(load_text(&cfg, text, &err, path), -1);
    ck_assert_int_eq(err.code, SF_EXIT_INPUT);
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err.msg, prefix, strlen(prefix)) == 0,
                  "message '%s' does not start with '%s'", err.msg, prefix);
    ck_assert_msg(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

/* Applies one --set over the defaults, expects failure containing want. */
static void expect_set_error(const char *assignment, const char *want)
{
    SfConfig cfg;
    SfError err = { 0 };
    sf_config_defaults(&cfg);
    ck_assert_int_eq(sf_config_set(&cfg, assignment, &err), -1);
    ck_assert_int_eq(err.code, SF_EXIT_INPUT);
    ck_assert_msg(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

/* Defaults plus the given --set list (NULL-ended), which must all succeed. */
static void config_with(SfConfig *cfg, const char *const *sets)
{
    SfError err = { 0 };
    memset(cfg, 0, sizeof *cfg);
    sf_config_defaults(cfg);
    for (; *sets; sets++)
        ck_assert_msg(sf_config_set(cfg, *sets, &err) == 0, "%s: %s", *sets, err.msg);
}

/* Expects sf_config_check() to fail with want, for defaults plus sets. */
static void expect_check_error(const char *const *sets, const char *want)
{
    SfConfig cfg;
    SfError err = { 0 };
    config_with(&cfg, sets);
    ck_assert_int_eq(sf_config_check(&cfg, &err), -1);
    ck_assert_int_eq(err.code, SF_EXIT_INPUT);
    ck_assert_msg(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

static void expect_check_ok(const char *const *sets)
{
    SfConfig cfg;
    SfError err = { 0 };
    config_with(&cfg, sets);
    ck_assert_msg(sf_config_check(&cfg, &err) == 0, "unexpected: %s", err.msg);
}

START_TEST(defaults_match_spec)
{
    SfConfig c;
    sf_config_defaults(&c);
    ck_assert_str_eq(c.data.path, "");
    ck_assert_str_eq(c.data.features, "/train/images");
    ck_assert_str_eq(c.data.labels, "/train/labels");
    ck_assert(c.data.scale == 1.0 && c.data.offset == 0.0);
    ck_assert_str_eq(c.data.val_path, "");
    ck_assert_str_eq(c.data.val_features, "");
    ck_assert(c.data.validation_split == 0.0);
    ck_assert_int_eq(c.data.loader, SF_LOADER_SHARD);
    ck_assert_str_eq(c.model.layers, "dense:128 relu dense:10");
    ck_assert_int_eq(c.model.loss, SF_LOSS_CROSS_ENTROPY);
    ck_assert_int_eq(c.model.init, SF_INIT_AUTO);
    ck_assert_int_eq(c.train.epochs, 10);
    ck_assert_int_eq(c.train.batch_size, 128);
    ck_assert_int_eq(c.train.micro_batch, 0);
    ck_assert_int_eq(c.train.drop_last, 0);
    ck_assert_int_eq(c.train.shuffle, 1);
    ck_assert_uint_eq(c.train.seed, 1);
    ck_assert_int_eq(c.train.max_steps, 0);
    ck_assert_int_eq(c.train.threads, 1);
    ck_assert_int_eq(c.optimizer.name, SF_OPTIM_SGD);
    ck_assert(c.optimizer.lr == 0.01 && c.optimizer.momentum == 0.0);
    ck_assert_int_eq(c.optimizer.nesterov, 0);
    ck_assert(c.optimizer.beta1 == 0.9 && c.optimizer.beta2 == 0.999);
    ck_assert(c.optimizer.eps == 1e-8 && c.optimizer.clip_norm == 0.0);
    ck_assert_int_eq(c.optimizer.lr_scaling, SF_LR_SCALING_NONE);
    ck_assert_int_eq(c.schedule.name, SF_SCHED_CONSTANT);
    ck_assert_int_eq(c.schedule.warmup_steps, 0);
    ck_assert(c.schedule.warmup_epochs == 0 && c.schedule.step_epochs == 0);
    ck_assert_int_eq(c.schedule.n_milestones, 0);
    ck_assert(c.schedule.gamma == 0.1 && c.schedule.min_lr == 0.0);
    ck_assert_int_eq(c.stop.early_stopping, 0);
    ck_assert_int_eq(c.stop.monitor, SF_MONITOR_VAL_LOSS);
    ck_assert_int_eq(c.stop.patience, 0);
    ck_assert(c.stop.target == 0.0 && c.stop.min_delta == 0.0);
    ck_assert_str_eq(c.checkpoint.dir, "runs/default/ckpt");
    ck_assert_int_eq(c.checkpoint.every_epochs, 1);
    ck_assert_int_eq(c.checkpoint.every_steps, 0);
    ck_assert_int_eq(c.checkpoint.keep_last, 3);
    ck_assert_str_eq(c.checkpoint.resume, "auto");
    ck_assert(c.comm.timeout == 600.0);
    ck_assert_str_eq(c.log.dir, "runs/default");
    ck_assert_int_eq(c.log.progress, SF_PROGRESS_AUTO);
    ck_assert_str_eq(c.log.metrics, "metrics.jsonl");
    ck_assert_str_eq(c.log.trace, "");
    ck_assert_int_eq(c.log.trace_first, 1);
    ck_assert_int_eq(c.log.trace_last, 200);
}
END_TEST

START_TEST(enum_names)
{
    ck_assert_str_eq(sf_config_loader_name(SF_LOADER_STREAM), "stream");
    ck_assert_str_eq(sf_config_optim_name(SF_OPTIM_ADAMW), "adamw");
    ck_assert_str_eq(sf_config_schedule_name(SF_SCHED_COSINE), "cosine");
    ck_assert_str_eq(sf_config_schedule_name(SF_SCHED_MULTISTEP), "multistep");
    ck_assert_str_eq(sf_config_monitor_name(SF_MONITOR_VAL_ACCURACY), "val_accuracy");
}
END_TEST

static const char full_ini[] =
    "; a full config, with every kind of comment\n"
    "# hash comment\n"
    "\n"
    "[data]\n"
    "path = /data/fashion.h5   ; inline semicolon comment\n"
    "features=/train/x\n"
    "   labels   =   /train/y    # inline hash comment\n"
    "scale = 0.00392156862745098\n"
    "offset = -0.5\n"
    "validation_split = 0.1\n"
    "loader = Stream\n"
    "\r\n"
    "[model]\n"
    "layers = conv:8:3 relu maxpool:2 flatten dense:10   ; a CNN\n"
    "loss = mse\n"
    "init = glorot\n"
    "  [train]  \n"
    "epochs = 3\n"
    "batch_size = all\n"
    "micro_batch = 32\n"
    "shuffle = off\n"
    "seed = 18446744073709551615\n"
    "threads = 4\r\n"
    "[optimizer]\n"
    "name = adamw\n"
    "lr = 3e-4\n"
    "weight_decay = 0.01\n"
    "[schedule]\n"
    "name = multistep\n"
    "milestones = 30, 60 ,90\n"
    "[stop]\n"
    "early_stopping = yes\n"
    "monitor = val_accuracy\n"
    "patience = 5\n"
    "[checkpoint]\n"
    "resume = never\n"
    "[comm]\n"
    "timeout = 30.5\n"
    "[log]\n"
    "progress = none\n"
    "trace = a#b;c.json\n";

START_TEST(load_full_file)
{
    SfConfig c;
    SfError err = { 0 };
    char path[64];
    sf_config_defaults(&c);
    ck_assert_msg(load_text(&c, full_ini, &err, path) == 0, "%s", err.msg);
    ck_assert_int_eq(err.code, 0);
    ck_assert_str_eq(c.data.path, "/data/fashion.h5");
    ck_assert_str_eq(c.data.features, "/train/x");
    ck_assert_str_eq(c.data.labels, "/train/y");
    ck_assert(c.data.scale == 0.00392156862745098 && c.data.offset == -0.5);
    ck_assert(c.data.validation_split == 0.1);
    ck_assert_int_eq(c.data.loader, SF_LOADER_STREAM);
    ck_assert_str_eq(c.model.layers, "conv:8:3 relu maxpool:2 flatten dense:10");
    ck_assert_int_eq(c.model.loss, SF_LOSS_MSE);
    ck_assert_int_eq(c.model.init, SF_INIT_GLOROT);
    ck_assert_int_eq(c.train.epochs, 3);
    ck_assert_int_eq(c.train.batch_size, 0);
    ck_assert_int_eq(c.train.micro_batch, 32);
    ck_assert_int_eq(c.train.shuffle, 0);
    ck_assert_uint_eq(c.train.seed, UINT64_MAX);
    ck_assert_int_eq(c.train.threads, 4);
    ck_assert_int_eq(c.optimizer.name, SF_OPTIM_ADAMW);
    ck_assert(c.optimizer.lr == 3e-4 && c.optimizer.weight_decay == 0.01);
    ck_assert_int_eq(c.schedule.name, SF_SCHED_MULTISTEP);
    ck_assert_int_eq(c.schedule.n_milestones, 3);
    ck_assert_int_eq(c.schedule.milestones[0], 30);
    ck_assert_int_eq(c.schedule.milestones[2], 90);
    ck_assert_int_eq(c.stop.early_stopping, 1);
    ck_assert_int_eq(c.stop.monitor, SF_MONITOR_VAL_ACCURACY);
    ck_assert_int_eq(c.stop.patience, 5);
    ck_assert_str_eq(c.checkpoint.resume, "never");
    ck_assert(c.comm.timeout == 30.5);
    ck_assert_int_eq(c.log.progress, SF_PROGRESS_NONE);
    ck_assert_str_eq(c.log.trace, "a#b;c.json");
    ck_assert_str_eq(c.checkpoint.dir, "runs/default/ckpt"); /* untouched default */
    ck_assert_int_eq(sf_config_check(&c, &err), 0);
}
END_TEST

START_TEST(set_overrides_file)
{
    SfConfig c;
    SfError err = { 0 };
    char path[64];
    sf_config_defaults(&c);
    ck_assert_int_eq(load_text(&c, "[optimizer]\nlr = 0.5\n[train]\nepochs = 7\n",
                               &err, path), 0);
    ck_assert_int_eq(sf_config_set(&c, "optimizer.lr=0.25", &err), 0);
    ck_assert_int_eq(sf_config_set(&c, " train.batch_size = ALL ", &err), 0);
    ck_assert_int_eq(sf_config_set(&c, "data.path=/x/y=z.h5", &err), 0);
    ck_assert_int_eq(sf_config_set(&c, "schedule.milestones=", &err), 0);
    ck_assert(c.optimizer.lr == 0.25);
    ck_assert_int_eq(c.train.epochs, 7);
    ck_assert_int_eq(c.train.batch_size, 0);
    ck_assert_str_eq(c.data.path, "/x/y=z.h5");
    ck_assert_int_eq(sf_config_set_key(&c, "stop", "patience", "4", &err), 0);
    ck_assert_int_eq(c.stop.patience, 4);
    ck_assert_int_eq(err.code, 0);
}
END_TEST

START_TEST(bool_spellings)
{
    static const char *const yes[] = { "true", "TRUE", "yes", "On", "1" };
    static const char *const no[] = { "false", "No", "off", "OFF", "0" };
    SfConfig c;
    SfError err = { 0 };
    sf_config_defaults(&c);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(sf_config_set_key(&c, "train", "drop_last", yes[i], &err), 0);
        ck_assert_int_eq(c.train.drop_last, 1);
        ck_assert_int_eq(sf_config_set_key(&c, "train", "drop_last", no[i], &err), 0);
        ck_assert_int_eq(c.train.drop_last, 0);
    }
    expect_set_error("train.shuffle=maybe",
                     "train.shuffle = 'maybe': expected true or false");
    expect_set_error("train.shuffle=2", "expected true or false");
}
END_TEST

START_TEST(unknown_key_suggests_closest)
{
    expect_load_error("; x\n[train]\nepochs = 3\nbatchsize = 64\n", 4,
                      "unknown key 'train.batchsize'; did you mean 'train.batch_size'?");
    expect_load_error("[optimizer]\nLR = 0.1\n", 2, "did you mean 'optimizer.lr'?");
    expect_set_error("train.batchsize=64",
                     "--set 'train.batchsize=64': unknown key 'train.batchsize'; "
                     "did you mean 'train.batch_size'?");
}
END_TEST

START_TEST(unknown_key_in_other_section)
{
    expect_load_error("[train]\nlr = 0.1\n", 2,
                      "unknown key 'train.lr'; did you mean 'optimizer.lr'?");
    expect_load_error("[train]\nname = adam\n", 2,
                      "did you mean 'optimizer.name' or 'schedule.name'?");
    expect_load_error("lr = 0.1\n[optimizer]\n", 1,
                      "key 'lr' is outside any section; did you mean 'optimizer.lr'?");
}
END_TEST

START_TEST(unknown_section_suggests_closest)
{
    expect_load_error("[data]\npath = x\n[optimiser]\nlr = 0.1\n", 3,
                      "unknown section '[optimiser]'; did you mean '[optimizer]'?");
    expect_load_error("\n[chekpoint]\n", 2, "did you mean '[checkpoint]'?");
    expect_set_error("optimiser.lr=0.1",
                     "unknown section '[optimiser]'; did you mean '[optimizer]'?");
}
END_TEST

START_TEST(enum_suggests_closest)
{
    expect_load_error("[optimizer]\nname = adamm\n", 2,
                      "optimizer.name = 'adamm': expected one of sgd, adam, adamw; "
                      "did you mean 'adam'?");
    expect_set_error("stop.monitor=val_los", "did you mean 'val_loss'?");
    expect_set_error("data.loader=mmap", "expected one of shard, replicate, stream");
}
END_TEST

START_TEST(bad_integer)
{
    expect_load_error("[train]\nepochs = abc\n", 2,
                      "train.epochs = 'abc': expected an integer >= 1");
    expect_set_error("train.max_steps=1.5", "expected an integer >= 0");
    expect_set_error("train.seed=-1", "train.seed = '-1': expected an integer in [0, ");
    expect_set_error("train.seed=", "expected an integer");
    expect_set_error("train.batch_size=abc",
                     "train.batch_size = 'abc': expected a positive integer or 'all'");
    expect_set_error("train.batch_size=0",
                     "train.batch_size = '0': must be a positive integer or 'all'");
    expect_set_error("train.batch_size=-5", "must be a positive integer or 'all'");
}
END_TEST

START_TEST(trailing_junk)
{
    expect_load_error("[train]\n\nepochs = 10x\n", 3,
                      "train.epochs = '10x': expected an integer >= 1");
    expect_set_error("optimizer.lr=0.1abc",
                     "optimizer.lr = '0.1abc': expected a finite number >= 0");
    expect_set_error("train.seed=12 3", "expected an integer");
    expect_set_error("train.batch_size=64k", "expected a positive integer or 'all'");
    expect_set_error("train.epochs=0x10", "expected an integer");
}
END_TEST

START_TEST(integer_overflow)
{
    expect_set_error("train.epochs=99999999999999999999",
                     "train.epochs = '99999999999999999999': does not fit in 64 bits");
    expect_set_error("train.seed=18446744073709551616", "does not fit in 64 bits");
    expect_set_error("train.batch_size=9223372036854775808", "does not fit in 64 bits");
}
END_TEST

START_TEST(out_of_range)
{
    expect_set_error("train.threads=300",
                     "train.threads = '300': must be an integer in [1, 256]");
    expect_set_error("train.threads=0", "must be an integer in [1, 256]");
    expect_set_error("train.epochs=0", "train.epochs = '0': must be an integer >= 1");
    expect_set_error("train.micro_batch=-1", "must be an integer >= 0");
    expect_set_error("checkpoint.keep_last=-2", "must be an integer >= 0");
    expect_set_error("optimizer.momentum=1",
                     "optimizer.momentum = '1': must be a number in [0, 1)");
    expect_set_error("optimizer.beta2=1.0", "must be a number in [0, 1)");
    expect_set_error("optimizer.eps=0", "optimizer.eps = '0': must be a number > 0");
    expect_set_error("schedule.gamma=-0.5", "must be a number > 0");
    expect_set_error("data.validation_split=1", "must be a number in [0, 1)");
    expect_set_error("comm.timeout=0", "comm.timeout = '0': must be a number > 0");
    expect_set_error("optimizer.lr=-0.1", "must be a number >= 0");
    expect_set_error("schedule.warmup_epochs=-1", "must be a number >= 0");
}
END_TEST

START_TEST(non_finite_numbers)
{
    expect_load_error("[optimizer]\nlr = nan\n", 2,
                      "optimizer.lr = 'nan': expected a finite number >= 0");
    expect_set_error("optimizer.lr=inf", "expected a finite number >= 0");
    expect_set_error("data.scale=-Infinity",
                     "data.scale = '-Infinity': expected a finite number");
    expect_set_error("data.offset=1e999", "expected a finite number");
    expect_set_error("data.offset=", "expected a finite number");
}
END_TEST

START_TEST(duplicate_key)
{
    expect_load_error("[optimizer]\nlr = 0.1\n\n[train]\n[optimizer]\nlr = 0.2\n", 6,
                      "'optimizer.lr' is set twice, on lines 2 and 6");
}
END_TEST

START_TEST(long_line)
{
    char text[512], line[256];
    memset(line, 'x', 200);
    line[200] = '\0';
    snprintf(text, sizeof text, "[data]\n; %.197s\npath = a\n", line);
    SfConfig c;
    SfError err = { 0 };
    char path[64];
    sf_config_defaults(&c);
    ck_assert_msg(load_text(&c, text, &err, path) == 0, "%s", err.msg); /* 199: ok */
    snprintf(text, sizeof text, "[data]\npath = a\n; %.198s\n", line);
    expect_load_error(text, 3, "line is 200 characters long; at most 199");
}
END_TEST

START_TEST(missing_file)
{
    SfConfig c;
    SfError err = { 0 };
    sf_config_defaults(&c);
    ck_assert_int_eq(sf_config_load(&c, "/nonexistent/shardfit.ini", &err), -1);
    ck_assert_int_eq(err.code, SF_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(err.msg, "'/nonexistent/shardfit.ini'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file or directory"));
    sf_error_clear(&err);
    ck_assert_int_eq(sf_config_load(&c, "/tmp", &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "Is a directory"));
}
END_TEST

START_TEST(syntax_errors)
{
    expect_load_error("[train]\nepochs 10\n", 2,
                      "expected 'key = value' or '[section]', got 'epochs 10'");
    expect_load_error("[train\n", 1, "lacks the closing ']'");
    expect_load_error("[train] x\n", 1, "unexpected text");
}
END_TEST

START_TEST(bad_set_syntax)
{
    expect_set_error("foo", "--set 'foo': expected section.key=value");
    expect_set_error("foo=1", "--set 'foo=1': expected section.key=value");
    expect_set_error("train.=1", "expected section.key=value");
    expect_set_error(".lr=1", "expected section.key=value");
    expect_set_error("train.epochs", "expected section.key=value");
    expect_set_error("train.epochs=zero", "--set 'train.epochs=zero': train.epochs = "
                     "'zero': expected an integer >= 1");
}
END_TEST

START_TEST(milestones)
{
    SfConfig c;
    SfError err = { 0 };
    sf_config_defaults(&c);
    ck_assert_int_eq(sf_config_set(&c, "schedule.milestones= 5,10 , 20", &err), 0);
    ck_assert_int_eq(c.schedule.n_milestones, 3);
    ck_assert_int_eq(c.schedule.milestones[1], 10);
    expect_load_error("[schedule]\nmilestones = 30,20\n", 2,
                      "milestone 2 (20) is not greater than milestone 1 (30)");
    expect_set_error("schedule.milestones=10,10", "milestone 2 (10) is not greater");
    expect_set_error("schedule.milestones=10,x", "item 2 ('x') is not a positive integer");
    expect_set_error("schedule.milestones=0", "item 1 ('0') is not a positive integer");
    expect_set_error("schedule.milestones=1,,2", "item 2 ('') is not a positive");
    expect_set_error("schedule.milestones=1,2,", "ends with a comma");
    char many[512] = "schedule.milestones=";
    for (int i = 1; i <= SF_MAX_MILESTONES + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s%d",
                 i > 1 ? "," : "", i);
    expect_set_error(many, "more than 64 milestones");
}
END_TEST

START_TEST(trace_steps)
{
    SfConfig c;
    SfError err = { 0 };
    sf_config_defaults(&c);
    ck_assert_int_eq(sf_config_set(&c, "log.trace_steps=7:7", &err), 0);
    ck_assert_int_eq(c.log.trace_first, 7);
    ck_assert_int_eq(c.log.trace_last, 7);
    char *text = sf_config_format(&c);
    ck_assert_ptr_nonnull(strstr(text, "trace_steps = 7:7\n"));
    free(text);
    expect_set_error("log.trace_steps=5:2", "needs 1 <= FIRST <= LAST");
    expect_set_error("log.trace_steps=0:10", "needs 1 <= FIRST <= LAST");
    expect_set_error("log.trace_steps=200", "expected FIRST:LAST");
    expect_set_error("log.trace_steps=:5", "expected FIRST:LAST");
    expect_set_error("log.trace_steps=1:x", "two integers");
    expect_load_error("[log]\ntrace_steps = 3-9\n", 2, "log.trace_steps = '3-9'");
}
END_TEST

START_TEST(strings_must_round_trip)
{
    char set[1200] = "data.path=";
    memset(set + strlen(set), 'a', 300);
    expect_set_error(set, "is 300 characters long; at most 192 fit");
    expect_set_error("data.path=a ;b", "starts a comment");
    expect_set_error("log.trace=#x", "starts a comment");
    expect_set_error("log.trace=a\tb", "control character");
}
END_TEST

START_TEST(failed_load_leaves_config)
{
    SfConfig c, before;
    SfError err = { 0 };
    char path[64];
    memset(&c, 0, sizeof c);
    sf_config_defaults(&c);
    memcpy(&before, &c, sizeof c);
    ck_assert_int_eq(load_text(&c, "[optimizer]\nlr = 0.5\nmomentum = 2\n", &err, path),
                     -1);
    ck_assert_int_eq(memcmp(&c, &before, sizeof c), 0);
}
END_TEST

#define SETS(...) ((const char *const[]){ __VA_ARGS__, NULL })

START_TEST(check_data_keys)
{
    expect_check_error(SETS("data.features=/x"),
                       "data.path is required: the HDF5 file with the training set");
    expect_check_ok(SETS("data.path=d.h5"));
    expect_check_error(SETS("data.path=d.h5", "data.val_features=/v/x"),
                       "data.val_features is set but data.val_labels is empty");
    expect_check_error(SETS("data.path=d.h5", "data.val_labels=/v/y"),
                       "data.val_labels is set but data.val_features is empty");
    expect_check_error(SETS("data.path=d.h5", "data.val_features=/v/x",
                            "data.val_labels=/v/y", "data.validation_split=0.2"),
                       "both define a validation set");
    expect_check_error(SETS("data.path=d.h5", "data.val_path=v.h5"),
                       "data.val_path is set but data.val_features is empty");
    expect_check_ok(SETS("data.path=d.h5", "data.val_path=v.h5",
                         "data.val_features=/v/x", "data.val_labels=/v/y"));
    expect_check_error(SETS("data.path=d.h5", "model.layers="), "model.layers is empty");
}
END_TEST

START_TEST(check_train_keys)
{
    expect_check_error(SETS("data.path=d.h5", "train.batch_size=all",
                            "train.drop_last=true"),
                       "full-batch gradient descent has no partial batch to drop");
    expect_check_ok(SETS("data.path=d.h5", "train.batch_size=all"));
    expect_check_error(SETS("data.path=d.h5", "optimizer.nesterov=true"),
                       "optimizer.nesterov = true needs");
    expect_check_ok(SETS("data.path=d.h5", "optimizer.nesterov=true",
                         "optimizer.momentum=0.9"));
}
END_TEST

START_TEST(check_stop_keys)
{
    expect_check_error(SETS("data.path=d.h5", "stop.early_stopping=true"),
                       "stop.monitor = val_loss needs a validation set");
    expect_check_error(SETS("data.path=d.h5", "stop.target=0.9",
                            "stop.monitor=val_accuracy"),
                       "stop.monitor = val_accuracy needs a validation set");
    expect_check_ok(SETS("data.path=d.h5", "stop.early_stopping=true",
                         "data.validation_split=0.1"));
    expect_check_ok(SETS("data.path=d.h5", "stop.early_stopping=true",
                         "stop.monitor=loss"));
    expect_check_error(SETS("data.path=d.h5", "stop.restore_best=true"),
                       "stop.restore_best = true needs stop.early_stopping = true");
}
END_TEST

START_TEST(check_schedule_keys)
{
    expect_check_error(SETS("data.path=d.h5", "schedule.name=multistep"),
                       "schedule.name = multistep needs schedule.milestones");
    expect_check_ok(SETS("data.path=d.h5", "schedule.name=multistep",
                         "schedule.milestones=3,6"));
    expect_check_error(SETS("data.path=d.h5", "schedule.name=step"),
                       "schedule.name = step needs schedule.step_size");
    expect_check_ok(SETS("data.path=d.h5", "schedule.name=step",
                         "schedule.step_epochs=2.5"));
    expect_check_error(SETS("data.path=d.h5", "schedule.warmup_steps=10",
                            "schedule.warmup_epochs=1"),
                       "warmup_steps and schedule.warmup_epochs are both set");
    expect_check_error(SETS("data.path=d.h5", "schedule.step_size=10",
                            "schedule.step_epochs=1"),
                       "step_size and schedule.step_epochs are both set");
}
END_TEST

/* format(a) loaded over fresh defaults gives b == a, and format(b) == format(a). */
static void assert_round_trip(const SfConfig *a)
{
    SfConfig b;
    SfError err = { 0 };
    char path[64];
    char *text = sf_config_format(a);
    ck_assert_ptr_nonnull(text);
    memset(&b, 0, sizeof b);
    sf_config_defaults(&b);
    ck_assert_msg(load_text(&b, text, &err, path) == 0, "%s\n%s", err.msg, text);
    char *again = sf_config_format(&b);
    ck_assert_ptr_nonnull(again);
    ck_assert_str_eq(again, text);
    ck_assert_msg(memcmp(a, &b, sizeof b) == 0, "structs differ after reload of\n%s",
                  text);
    free(again);
    free(text);
}

START_TEST(format_round_trip)
{
    SfConfig a;
    config_with(&a, SETS(
        "data.path=/d/train.h5", "data.features=/f", "data.labels=/l",
        "data.scale=0.1", "data.offset=-0.0", "data.val_path=/d/val.h5",
        "data.val_features=/vf", "data.val_labels=/vl", "data.validation_split=0.3",
        "data.loader=replicate",
        "model.layers=dense:64 tanh dropout:0.5 dense:3", "model.loss=mse",
        "model.init=he", "model.init_checkpoint=w.h5",
        "train.epochs=2", "train.batch_size=all", "train.micro_batch=7",
        "train.drop_last=true", "train.shuffle=false",
        "train.seed=12345678901234567890", "train.max_steps=99", "train.threads=256",
        "optimizer.name=adam", "optimizer.lr=0.123456789012345678",
        "optimizer.momentum=0.9", "optimizer.nesterov=true",
        "optimizer.weight_decay=5e-4", "optimizer.beta1=0.8", "optimizer.beta2=0.99",
        "optimizer.eps=1e-300", "optimizer.clip_norm=2.5",
        "optimizer.lr_scaling=linear",
        "schedule.name=cosine", "schedule.warmup_steps=5", "schedule.warmup_epochs=0.5",
        "schedule.step_size=3", "schedule.step_epochs=1.25",
        "schedule.milestones=1,2,300", "schedule.gamma=0.5", "schedule.min_lr=1e-6",
        "stop.early_stopping=true", "stop.monitor=accuracy", "stop.min_delta=0.001",
        "stop.patience=3", "stop.restore_best=true", "stop.target=0.95",
        "checkpoint.dir=/ck", "checkpoint.every_epochs=0", "checkpoint.every_steps=50",
        "checkpoint.keep_last=0", "checkpoint.resume=/ck/epoch-0001.h5",
        "comm.timeout=1e-3",
        "log.dir=/logs", "log.progress=epoch", "log.metrics=m.jsonl",
        "log.trace=t.json"));
    assert_round_trip(&a);
    config_with(&a, SETS("train.batch_size=1", "log.trace="));
    assert_round_trip(&a);
}
END_TEST

START_TEST(format_text)
{
    SfConfig a;
    config_with(&a, SETS("train.batch_size=all", "schedule.milestones=3,6",
                         "optimizer.lr=0.1"));
    char *text = sf_config_format(&a);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strncmp(text, "[data]\npath =\nfeatures = /train/images\n", 39) == 0,
                  "%s", text);
    ck_assert_ptr_nonnull(strstr(text, "\nbatch_size = all\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmilestones = 3,6\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nlr = 0.1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nwarmup_epochs = 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n\n[log]\ndir = runs/default\n"));
    free(text);
    sf_config_defaults(&a);
    assert_round_trip(&a);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults_match_spec);
    tcase_add_test(tc, enum_names);
    tcase_add_test(tc, load_full_file);
    tcase_add_test(tc, set_overrides_file);
    tcase_add_test(tc, bool_spellings);
    tcase_add_test(tc, unknown_key_suggests_closest);
    tcase_add_test(tc, unknown_key_in_other_section);
    tcase_add_test(tc, unknown_section_suggests_closest);
    tcase_add_test(tc, enum_suggests_closest);
    tcase_add_test(tc, bad_integer);
    tcase_add_test(tc, trailing_junk);
    tcase_add_test(tc, integer_overflow);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, non_finite_numbers);
    tcase_add_test(tc, duplicate_key);
    tcase_add_test(tc, long_line);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, syntax_errors);
    tcase_add_test(tc, bad_set_syntax);
    tcase_add_test(tc, milestones);
    tcase_add_test(tc, trace_steps);
    tcase_add_test(tc, strings_must_round_trip);
    tcase_add_test(tc, failed_load_leaves_config);
    tcase_add_test(tc, check_data_keys);
    tcase_add_test(tc, check_train_keys);
    tcase_add_test(tc, check_stop_keys);
    tcase_add_test(tc, check_schedule_keys);
    tcase_add_test(tc, format_round_trip);
    tcase_add_test(tc, format_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sf_test_run(config_suite());
}
