/* metrics.c: metrics.jsonl records and progress lines (metrics.h). */
#include "shardfit/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double sf_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double sf_peak_rss_mb(void)
{
    char line[256];
    double kb = NAN;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtod(line + 6, NULL);
            break;
        }
    if (f)
        fclose(f);
    return kb / 1024.0;
}

/* JSON has no NaN or Infinity. */
static void put_number(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.9g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

int sf_metrics_append(const char *path, const SfEpochMetrics *m, SfError *err)
{
    FILE *f = fopen(path, "a");
    if (!f) {
        sf_error_set(err, SF_EXIT_FAILURE, "log.metrics '%s': cannot open: %s",
                     path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\"epoch\": %lld, \"step\": %lld, \"steps_in_epoch\": %lld, "
            "\"samples\": %lld", (long long)m->epoch, (long long)m->step,
            (long long)m->steps_in_epoch, (long long)m->samples);
    put_number(f, "lr", m->lr);
    put_number(f, "loss", m->loss);
    put_number(f, "accuracy", m->has_accuracy ? m->accuracy : NAN);
    if (m->has_val) {
        put_number(f, "val_loss", m->val_loss);
        put_number(f, "val_accuracy", m->has_accuracy ? m->val_accuracy : NAN);
    }
    put_number(f, "seconds", m->seconds);
    put_number(f, "samples_per_sec", m->samples_per_sec);
    fprintf(f, ", \"world_size\": %d", m->world_size);
    put_number(f, "step_seconds", m->step_seconds);
    put_number(f, "compute_seconds", m->compute_seconds);
    put_number(f, "forward_seconds", m->forward_seconds);
    put_number(f, "backward_seconds", m->backward_seconds);
    put_number(f, "optimizer_seconds", m->optimizer_seconds);
    put_number(f, "allreduce_seconds", m->allreduce_seconds);
    put_number(f, "data_seconds", m->data_seconds);
    put_number(f, "eval_seconds", m->eval_seconds);
    put_number(f, "peak_rss_mb", sf_peak_rss_mb());
    fputs("}\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        sf_error_set(err, SF_EXIT_FAILURE, "log.metrics '%s': write failed: %s",
                     path, strerror(errno));
        return -1;
    }
    return 0;
}

void sf_metrics_format(const SfEpochMetrics *m, int64_t epochs,
                       int64_t steps_per_epoch, char *buf, int size)
{
    int n = snprintf(buf, (size_t)size, "epoch %lld/%lld  %lld/%lld  loss %.4f",
                     (long long)m->epoch, (long long)epochs,
                     (long long)m->steps_in_epoch, (long long)steps_per_epoch,
                     m->loss);
    if (m->has_accuracy && n < size)
        n += snprintf(buf + n, (size_t)(size - n), "  acc %.4f", m->accuracy);
    if (m->has_val && n < size)
        n += snprintf(buf + n, (size_t)(size - n), "  val_loss %.4f", m->val_loss);
    if (m->has_val && m->has_accuracy && n < size)
        n += snprintf(buf + n, (size_t)(size - n), "  val_acc %.4f",
                      m->val_accuracy);
    if (n < size)
        snprintf(buf + n, (size_t)(size - n), "  lr %.4g  %.1fs  %.0f samples/s",
                 m->lr, m->seconds, m->samples_per_sec);
}

/* A bar only on a terminal. Under mpirun a rank cannot tell: Open MPI hands
 * ranks a pseudo-terminal even when mpirun's own output goes to a file or a
 * pipe, so there `auto` means a line per epoch (log.progress = bar forces
 * the bar). */
static int on_terminal(FILE *out)
{
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    return isatty(fileno(out)) && !size;
}

void sf_progress_init(SfProgressOut *p, SfProgress mode, FILE *out)
{
    if (mode == SF_PROGRESS_AUTO)
        mode = on_terminal(out) ? SF_PROGRESS_BAR : SF_PROGRESS_EPOCH;
    p->mode = mode;
    p->out = out;
    p->last_draw = 0.0;
}

void sf_progress_step(SfProgressOut *p, int64_t epoch, int64_t epochs,
                      int64_t step_in_epoch, int64_t steps_per_epoch,
                      double loss, double accuracy, int has_accuracy)
{
    if (p->mode != SF_PROGRESS_BAR)
        return;
    double now = sf_clock();
    if (now - p->last_draw < 0.1 && step_in_epoch < steps_per_epoch)
        return;
    p->last_draw = now;
    char bar[31];
    int filled = (int)(30 * step_in_epoch / (steps_per_epoch ? steps_per_epoch : 1));
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '=' : (i == filled ? '>' : '.');
    bar[30] = '\0';
    fprintf(p->out, "\repoch %lld/%lld  %lld/%lld [%s]  loss %.4f",
            (long long)epoch, (long long)epochs, (long long)step_in_epoch,
            (long long)steps_per_epoch, bar, loss);
    if (has_accuracy)
        fprintf(p->out, "  acc %.4f", accuracy);
    fflush(p->out);
}

void sf_progress_epoch(SfProgressOut *p, const SfEpochMetrics *m,
                       int64_t epochs, int64_t steps_per_epoch)
{
    if (p->mode == SF_PROGRESS_NONE)
        return;
    char line[512];
    sf_metrics_format(m, epochs, steps_per_epoch, line, sizeof line);
    /* \033[K clears what the bar left beyond the line's end. */
    fprintf(p->out, p->mode == SF_PROGRESS_BAR ? "\r%s\033[K\n" : "%s\n", line);
    fflush(p->out);
}
