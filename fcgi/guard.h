/* guard.h: run a call into a third-party decoder so that an abort() (a failed assert() in
 * OpenJPEG, say) or a crash inside it fails that one request with an answer, instead of killing
 * the worker and leaving the connection without one. The worker is tainted afterwards (the
 * library's state and memory are unknown) and must exit after sending its response. */
#ifndef VELLUM_GUARD_H
#define VELLUM_GUARD_H

typedef int (*guard_fn)(void *ctx);

/* Returns fn(ctx), or -1 with *caught set to the signal (SIGABRT, SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL) that interrupted it; *caught is 0 when fn returned normally. Not reentrant. */
int guard_run(guard_fn fn, void *ctx, int *caught);

#endif
