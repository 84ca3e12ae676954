/* guard.c: see guard.h. The handlers are installed only for the duration of the call and jump
 * back with siglongjmp; the signal mask is restored by sigsetjmp(.., 1). */
#include "guard.h"

#include <setjmp.h>
#include <signal.h>
#include <string.h>

static sigjmp_buf guard_env;
static volatile sig_atomic_t guard_armed;

static const int guarded[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#define NGUARDED (sizeof guarded / sizeof guarded[0])

static void on_fault(int sig)
{
    if (guard_armed) {
        guard_armed = 0;
        siglongjmp(guard_env, sig);
    }
    /* Not ours: die as the signal would have made us die. */
    signal(sig, SIG_DFL);
    raise(sig);
}

int guard_run(guard_fn fn, void *ctx, int *caught)
{
    struct sigaction sa, old[NGUARDED];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    for (size_t i = 0; i < NGUARDED; i++)
        sigaction(guarded[i], &sa, &old[i]);

    volatile int rc = -1;
    int sig = sigsetjmp(guard_env, 1);
    if (sig == 0) {
        guard_armed = 1;
        rc = fn(ctx);
        guard_armed = 0;
    }
    for (size_t i = 0; i < NGUARDED; i++)
        sigaction(guarded[i], &old[i], NULL);
    *caught = sig;
    return sig ? -1 : rc;
}
