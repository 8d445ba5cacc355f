/* signals.c: the stop-request flag (signals.h). The flag is process-wide
 * state because signal handlers can reach nothing else. */
#include "shardfit/signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t requested;

static void on_signal(int sig)
{
    requested = sig;
}

int sf_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
        return -1;
    /* Past a file-size limit (ulimit -f) a write then fails with EFBIG,
     * which the checkpoint writer reports, instead of SIGXFSZ killing the
     * rank mid-file. */
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGXFSZ, &sa, NULL) ? -1 : 0;
}

int sf_signals_pending(void)
{
    return requested;
}
