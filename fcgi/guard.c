/* guard.c: see guard.h. The handlers are installed only for the duration of the call and jump
 * back with siglongjmp; the signal mask is restored by sigsetjmp(.., 1). The deadline is a
 * POSIX timer that signals the worker's own thread (SIGEV_THREAD_ID), so the jump always lands
 * on the thread that armed the guard, never on one of OpenJPEG's decode threads. */
#include "guard.h"

#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static sigjmp_buf guard_env;
static volatile sig_atomic_t guard_armed;
static volatile pid_t guard_tid; /* the thread that armed the guard: the only one that may jump */

static const int guarded[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#define NGUARDED (sizeof guarded / sizeof guarded[0])

static void on_fault(int sig)
{
    if (guard_armed) {
        /* A decoder thread (OpenJPEG's pool) failed: jumping from here would resume the
         * guarded thread's stack on this one. Hand the signal to the guarded thread and park
         * this one; the worker exits once the request is answered. */
        if (gettid() != guard_tid) {
            tgkill(getpid(), guard_tid, sig);
            for (;;)
                pause();
        }
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
        guard_tid = gettid();
        guard_armed = 1;
        rc = fn(ctx);
        guard_armed = 0;
    }
    for (size_t i = 0; i < NGUARDED; i++)
        sigaction(guarded[i], &old[i], NULL);
    *caught = sig;
    return sig ? -1 : rc;
}

/* ---- the deadline ----------------------------------------------------------------------- */

static timer_t deadline_timer;
static int deadline_ready;
static volatile sig_atomic_t deadline_active;

static void on_deadline(int sig)
{
    if (!deadline_active)
        return; /* fired as the request finished */
    deadline_active = 0;
    if (guard_armed) {
        guard_armed = 0;
        siglongjmp(guard_env, sig);
    }
    static const char msg[] = "vellum: a request (or the work after its response) passed "
                              "request_timeout_ms outside the decoder; this worker exits and "
                              "will be replaced\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(GUARD_EXIT_TIMEOUT);
}

int guard_deadline_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_deadline;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(GUARD_TIMEOUT, &sa, NULL) < 0)
        return -1;
    if (deadline_ready)
        return 0;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = GUARD_TIMEOUT;
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, &deadline_timer) < 0)
        return -1;
    deadline_ready = 1;
    return 0;
}

void guard_deadline_start(long ms)
{
    if (!deadline_ready || ms <= 0)
        return;
    struct itimerspec it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = ms / 1000;
    it.it_value.tv_nsec = (ms % 1000) * 1000000L;
    deadline_active = 1;
    timer_settime(deadline_timer, 0, &it, NULL);
}

void guard_deadline_stop(void)
{
    if (!deadline_ready)
        return;
    deadline_active = 0;
    struct itimerspec it;
    memset(&it, 0, sizeof it);
    timer_settime(deadline_timer, 0, &it, NULL);
}
