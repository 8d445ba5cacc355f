/* signals.h: stop requests from outside (SIGUSR1, SIGTERM), for preemption.
 *
 * A handler only sets a flag; the trainer reads it once per step and sends it
 * in that step's allreduce, so every rank learns of a request made to any of
 * them at the same step boundary, without another collective. Open MPI's
 * mpirun forwards SIGUSR1 to every rank; SIGTERM sent to mpirun reaches the
 * ranks too, but mpirun kills them about 2 s later whatever they do. */
#ifndef SHARDFIT_SIGNALS_H
#define SHARDFIT_SIGNALS_H

/* Installs the handlers for SIGUSR1 and SIGTERM, and ignores SIGXFSZ.
 * 0, or -1 (errno set). */
int sf_signals_install(void);

/* The signal that asked to stop (SIGUSR1 or SIGTERM), or 0. */
int sf_signals_pending(void);

#endif
