/* guard.h: run a call into a third-party decoder so that an abort() (a failed assert() in
 * OpenJPEG, say), a crash inside it, or a request that outlives its wall-clock limit fails that
 * one request with an answer, instead of killing the worker and leaving the connection without
 * one. The worker is tainted afterwards (the library's state and memory are unknown: it may have
 * been stopped holding a lock, malloc's included) and must exit after sending its response. */
#ifndef VELLUM_GUARD_H
#define VELLUM_GUARD_H

#include <signal.h>

typedef int (*guard_fn)(void *ctx);

/* The value *caught takes when the request's deadline (guard_deadline_start) passed. */
#define GUARD_TIMEOUT SIGALRM

/* Returns fn(ctx), or -1 with *caught set to the signal (SIGABRT, SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL, or GUARD_TIMEOUT) that interrupted it; *caught is 0 when fn returned normally.
 * Not reentrant. */
int guard_run(guard_fn fn, void *ctx, int *caught);

/* The per-request wall-clock limit, for the calling thread (a worker's main thread).
 * guard_deadline_init() once per process (timers are not inherited by fork); then
 * guard_deadline_start(ms) when a request starts (ms <= 0: no limit) and guard_deadline_stop()
 * when its answer is ready. When the deadline passes inside guard_run, the guarded call is
 * abandoned as after a crash (GUARD_TIMEOUT). When it passes anywhere else (Vellum's own code,
 * which has no safe place to stop), the process writes one line to stderr and _exits with
 * GUARD_EXIT_TIMEOUT at once: the master replaces it, the web server answers 502. */
#define GUARD_EXIT_TIMEOUT 5
int guard_deadline_init(void);
void guard_deadline_start(long ms);
void guard_deadline_stop(void);

#endif
