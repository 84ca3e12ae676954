/* pool.c: the master and its workers (see pool.h).
 *
 * Workers wait in poll() on the shared, non-blocking listen socket and a self-pipe that the
 * SIGTERM handler writes to; only then do they call FCGX_Accept_r. So a stop signal never
 * races with a blocking accept(): an idle worker exits at once, a busy one finishes its
 * request first. Several workers may wake for one connection; the losers get EAGAIN from
 * accept and go back to poll. */
#include "pool.h"

#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "guard.h"
#include "log.h"
#include "source_cache.h"

/* Exit status of a worker that stopped because it reached max_requests_per_worker. */
#define EXIT_RECYCLE 3
/* Exit status of a worker that answered a request whose decoder crashed (guard.h). */
#define EXIT_TAINTED 4
#define MAX_WORKERS 1024

/* ---- worker ---------------------------------------------------------------------------- */

static volatile sig_atomic_t worker_stop;
static int worker_pipe[2] = {-1, -1};

static void worker_on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    worker_stop = 1;
    if (worker_pipe[1] >= 0)
        (void)!write(worker_pipe[1], "x", 1);
    errno = saved;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int fcgx_write(void *ctx, const void *buf, size_t len)
{
    /* FCGX_PutStr takes an int; bodies are capped far below 2 GB by the output limits. */
    if (len > (size_t)0x7fffffff)
        return -1;
    return FCGX_PutStr(buf, (int)len, (FCGX_Stream *)ctx) == (int)len ? 0 : -1;
}

static void serve_request(struct app *app, FCGX_Request *fr)
{
    double t0 = now_ms();
    struct http_request req;
    struct http_response resp;
    struct verr err;
    http_response_init(&resp);
    if (http_request_init(&req, fr->envp, app->cfg->prefix, &err) < 0)
        http_error(&resp, err.status, "%s", err.msg);
    else {
        /* The wall-clock limit covers the handler, not the write to the web server. */
        guard_deadline_start(app->cfg->request_timeout_ms);
        app_handle(app, &req, &resp);
        guard_deadline_stop();
    }
    size_t bytes = http_send(&req, &resp, fcgx_write, fr->out);
    app->served++;
    log_access(req.method ? req.method : "-", req.uri ? req.uri : "-", resp.status, bytes,
               now_ms() - t0);
    http_response_clear(&resp);
}

static int set_handler(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a signal during a request must not fail its reads and writes. poll() is
     * never restarted, which is what wakes an idle worker. */
    sa.sa_flags = SA_RESTART;
    return sigaction(sig, &sa, NULL);
}

/* The accept loop. master is the master's pid (0 when single): an orphaned worker exits. */
static int worker_loop(struct app *app, int listen_fd, pid_t master)
{
    /* Decode buffers are megabytes. By default glibc maps the large ones afresh and hands the
     * heap top back to the kernel after each request, so every request faults its buffers in
     * again (hundreds to thousands of page faults, measured in docs/performance.md). Keep them:
     * the worker's heap keeps up to 128 MB it no longer uses, which is then flat from request to
     * request. */
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 128 << 20);
    if (pipe2(worker_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_msg(LOG_LEVEL_ERROR, "pipe: %s", strerror(errno));
        return 1;
    }
    set_handler(SIGTERM, worker_on_signal);
    set_handler(SIGINT, worker_on_signal);
    set_handler(SIGUSR1, worker_on_signal);
    set_handler(SIGHUP, SIG_IGN);
    set_handler(SIGPIPE, SIG_IGN);
    set_handler(SIGCHLD, SIG_DFL);

    if (app->cfg->request_timeout_ms > 0 && guard_deadline_init() < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot set up the request timer: %s", strerror(errno));
        return 1;
    }
    if (FCGX_Init() != 0) {
        log_msg(LOG_LEVEL_ERROR, "FCGX_Init failed");
        return 1;
    }
    FCGX_Request fr;
    if (FCGX_InitRequest(&fr, listen_fd, 0) != 0) {
        log_msg(LOG_LEVEL_ERROR, "FCGX_InitRequest failed");
        return 1;
    }
    long max_req = app->cfg->max_requests_per_worker;
    int rc = 0;
    while (!worker_stop) {
        struct pollfd p[2] = {{listen_fd, POLLIN, 0}, {worker_pipe[0], POLLIN, 0}};
        int n = poll(p, 2, master ? 1000 : -1);
        if (n < 0 && errno != EINTR) {
            log_msg(LOG_LEVEL_ERROR, "poll: %s", strerror(errno));
            rc = 1;
            break;
        }
        if (worker_stop || (master && getppid() != master))
            break;
        if (n <= 0 || !(p[0].revents & (POLLIN | POLLERR | POLLHUP)))
            continue;
        int a = FCGX_Accept_r(&fr);
        if (a < 0) {
            /* EAGAIN: another worker took the connection. Anything else (EMFILE...) would
             * spin, so breathe a little before polling again. */
            if (a != -EAGAIN && a != -EWOULDBLOCK && a != -EINTR && a != -ECONNABORTED) {
                log_msg(LOG_LEVEL_WARN, "accept: %s", strerror(-a));
                usleep(10000);
            }
            continue;
        }
        serve_request(app, &fr);
        if (app->tainted) {
            /* A library crashed during this request (guard.h): finish the FastCGI records
             * (FCGX_FClose writes, it does not free) and leave without touching the heap. */
            FCGX_FClose(fr.err);
            FCGX_FClose(fr.out);
            _exit(EXIT_TAINTED);
        }
        FCGX_Finish_r(&fr);
        /* What the response left for later (tile store writes, the block cache's size check)
         * is bounded like a request: a hung file system must not keep the worker for good.
         * Past the limit the worker exits (guard.h) and the master starts another. */
        guard_deadline_start(app->cfg->request_timeout_ms);
        app_after_response(app);
        guard_deadline_stop();
        if (max_req > 0 && app->served >= (uint64_t)max_req) {
            rc = EXIT_RECYCLE;
            break;
        }
    }
    FCGX_Free(&fr, 0);
    /* What the worker built up while serving (leak checkers look at this on a normal exit). */
    source_cache_free(app->sources);
    app->sources = NULL;
    handle_presentation_release(app);
    handle_image_release(app);
    close(worker_pipe[0]);
    close(worker_pipe[1]);
    worker_pipe[0] = worker_pipe[1] = -1;
    return rc;
}

bool pool_fd0_is_listener(void)
{
    int acc = 0;
    socklen_t len = sizeof acc;
    return getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && acc;
}

int pool_run_single(const struct vellum_config *cfg)
{
    struct app app = {.cfg = cfg, .started = time(NULL), .served = 0, .listen_fd = 0};
    int fl = fcntl(0, F_GETFL);
    if (fl >= 0)
        fcntl(0, F_SETFL, fl | O_NONBLOCK);
    log_msg(LOG_LEVEL_INFO, "serving on the socket passed as fd 0 (mod_fcgid / spawn-fcgi)");
    int rc = worker_loop(&app, 0, 0);
    /* Under mod_fcgid a recycled or retired process is simply replaced by the process manager. */
    return rc == EXIT_RECYCLE || rc == EXIT_TAINTED ? 0 : rc;
}

/* ---- master ---------------------------------------------------------------------------- */

static int master_pipe[2] = {-1, -1};

static void master_on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    (void)!write(master_pipe[1], &c, 1);
    errno = saved;
}

struct slot {
    pid_t pid;          /* 0 when not running */
    double started_ms;
    int failures;       /* quick deaths in a row, for back-off */
    double respawn_at;  /* when pid == 0: when to start it again (0 = not scheduled) */
    unsigned gen;       /* config generation it was started with */
};

struct pool {
    struct vellum_config *cfg;
    int listen_fd;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pid_t self;
    time_t started;
    struct slot slots[MAX_WORKERS];
    int nslots;
    unsigned gen;
    /* a rolling restart in progress: the old worker being drained, and the next slot */
    pid_t retiring[MAX_WORKERS];
    double retire_deadline[MAX_WORKERS];
    int nretiring;
    bool reloading;
};

static int open_unix(struct pool *p, const char *path, long mode, struct verr *err)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return verr_set(err, 400, "listen = \"%.100s\": socket path too long", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return verr_set(err, 500, "socket: %s", strerror(errno));
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            close(fd);
            return verr_set(err, 400, "listen = \"%.100s\": exists and is not a socket", path);
        }
        /* A socket file left by a crash is stale; one that answers belongs to a live server. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            return verr_set(err, 400, "listen = \"%.100s\": another server is listening there", path);
        }
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        return verr_set(err, 400, "listen = \"%.100s\": bind: %s", path, strerror(e));
    }
    chmod(path, (mode_t)mode);
    snprintf(p->unix_path, sizeof p->unix_path, "%s", path);
    return fd;
}

static int open_tcp(const char *spec, struct verr *err)
{
    char host[256], port[16];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1] || (size_t)(colon - spec) >= sizeof host ||
        strlen(colon + 1) >= sizeof port)
        return verr_set(err, 400, "listen = \"%.100s\": expected host:port or a socket path", spec);
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[' && spec[hl - 1] == ']') {
        memcpy(host, spec + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        memcpy(host, spec, hl);
        host[hl] = '\0';
    }
    strcpy(port, colon + 1);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return verr_set(err, 400, "listen = \"%.100s\": %s", spec, gai_strerror(g));
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        freeaddrinfo(res);
        return verr_set(err, 500, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        int e = errno;
        freeaddrinfo(res);
        close(fd);
        return verr_set(err, 400, "listen = \"%.100s\": bind: %s", spec, strerror(e));
    }
    freeaddrinfo(res);
    return fd;
}

static int open_listener(struct pool *p, struct verr *err)
{
    const char *spec = p->cfg->listen;
    int fd;
    if (!strncmp(spec, "unix:", 5))
        fd = open_unix(p, spec + 5, p->cfg->socket_mode, err);
    else if (spec[0] == '/' || spec[0] == '.')
        fd = open_unix(p, spec, p->cfg->socket_mode, err);
    else
        fd = open_tcp(spec, err);
    if (fd < 0)
        return -1;
    if (listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        return verr_set(err, 500, "listen: %s", strerror(e));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        close(fd);
        return verr_set(err, 500, "fcntl: %s", strerror(errno));
    }
    return fd;
}

static pid_t spawn_worker(struct pool *p)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_msg(LOG_LEVEL_ERROR, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(master_pipe[0]);
        close(master_pipe[1]);
        struct app app = {.cfg = p->cfg, .started = p->started, .served = 0,
                          .listen_fd = p->listen_fd};
        int rc = worker_loop(&app, p->listen_fd, p->self);
        _exit(rc);
    }
    return pid;
}

static void start_slot(struct pool *p, int i)
{
    struct slot *s = &p->slots[i];
    pid_t pid = spawn_worker(p);
    if (pid < 0) {
        s->failures++;
        s->respawn_at = now_ms() + 1000;
        return;
    }
    s->pid = pid;
    s->started_ms = now_ms();
    s->respawn_at = 0;
    s->gen = p->gen;
    log_msg(LOG_LEVEL_DEBUG, "worker %d started", (int)pid);
}

static void retire(struct pool *p, pid_t pid)
{
    if (p->nretiring >= MAX_WORKERS) {
        kill(pid, SIGKILL);
        return;
    }
    kill(pid, SIGTERM);
    p->retiring[p->nretiring] = pid;
    p->retire_deadline[p->nretiring] = now_ms() + (double)p->cfg->shutdown_timeout_ms;
    p->nretiring++;
}

static void reap(struct pool *p, bool stopping)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        bool found = false;
        for (int r = 0; r < p->nretiring; r++) {
            if (p->retiring[r] == pid) {
                p->retiring[r] = p->retiring[--p->nretiring];
                p->retire_deadline[r] = p->retire_deadline[p->nretiring];
                found = true;
                break;
            }
        }
        if (found)
            continue;
        for (int i = 0; i < p->nslots; i++) {
            struct slot *s = &p->slots[i];
            if (s->pid != pid)
                continue;
            s->pid = 0;
            if (stopping)
                break;
            double lived = now_ms() - s->started_ms;
            if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_RECYCLE) {
                log_msg(LOG_LEVEL_INFO, "worker %d recycled after %ld requests", (int)pid,
                        p->cfg->max_requests_per_worker);
                s->failures = 0;
                s->respawn_at = now_ms();
                break;
            }
            if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_TAINTED) {
                log_msg(LOG_LEVEL_WARN, "worker %d retired after a decoder crash or timeout; replaced",
                        (int)pid);
                s->respawn_at = now_ms();
                break;
            }
            if (WIFEXITED(st) && WEXITSTATUS(st) == GUARD_EXIT_TIMEOUT) {
                log_msg(LOG_LEVEL_WARN, "worker %d stopped: a request passed request_timeout_ms "
                        "(%ld ms); replaced", (int)pid, p->cfg->request_timeout_ms);
                s->respawn_at = now_ms();
                break;
            }
            /* Back-off: a worker that dies young, again and again, is respawned after
             * 100 ms, 200 ms, ... up to 10 s, so a crash loop does not eat the CPU. */
            s->failures = lived < 2000 ? s->failures + 1 : 1;
            double delay = s->failures <= 1 ? 0 : 100.0 * (double)(1 << (s->failures > 8 ? 7 : s->failures - 2));
            if (delay > 10000)
                delay = 10000;
            if (WIFSIGNALED(st))
                log_msg(LOG_LEVEL_WARN, "worker %d killed by signal %d; respawning in %.0f ms",
                        (int)pid, WTERMSIG(st), delay);
            else
                log_msg(LOG_LEVEL_WARN, "worker %d exited with status %d; respawning in %.0f ms",
                        (int)pid, WEXITSTATUS(st), delay);
            s->respawn_at = now_ms() + delay;
            break;
        }
    }
}

/* One step of a rolling restart: when no old worker is draining, replace the next slot that
 * still runs the previous configuration: start its successor first, then drain it. */
static void reload_step(struct pool *p)
{
    if (!p->reloading || p->nretiring > 0)
        return;
    for (int i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        if (s->pid > 0 && s->gen != p->gen) {
            pid_t old = s->pid;
            start_slot(p, i);
            if (s->pid == old) /* fork failed: try again later */
                return;
            retire(p, old);
            return;
        }
    }
    p->reloading = false;
    log_msg(LOG_LEVEL_INFO, "reload complete: %d workers on the new configuration", p->nslots);
}

static int worker_count(const struct vellum_config *cfg)
{
    long n = cfg->workers;
    if (n <= 0)
        n = codec_cpu_count();
    return n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

static void do_reload(struct pool *p, pool_reload_fn reload, void *ctx)
{
    struct vellum_config *fresh = malloc(sizeof *fresh);
    struct verr err = {0, ""};
    if (!fresh) {
        log_msg(LOG_LEVEL_ERROR, "reload: out of memory");
        return;
    }
    if (reload(ctx, fresh, &err) < 0) {
        log_msg(LOG_LEVEL_ERROR, "reload refused, keeping the running configuration: %s", err.msg);
        free(fresh);
        return;
    }
    if (strcmp(fresh->listen, p->cfg->listen) != 0) {
        log_msg(LOG_LEVEL_WARN, "reload: listen changed to %s; restart vellum to apply it",
                fresh->listen);
        memcpy(fresh->listen, p->cfg->listen, sizeof fresh->listen);
    }
    *p->cfg = *fresh;
    free(fresh);
    log_set_level((enum log_level)p->cfg->log_level);
    p->gen++;
    int want = worker_count(p->cfg);
    /* Fewer workers: drain the extra slots now. More: the new slots start below. */
    for (int i = want; i < p->nslots; i++) {
        if (p->slots[i].pid > 0)
            retire(p, p->slots[i].pid);
        p->slots[i].pid = 0;
    }
    for (int i = p->nslots; i < want; i++) {
        memset(&p->slots[i], 0, sizeof p->slots[i]);
        p->slots[i].respawn_at = now_ms();
        p->slots[i].gen = p->gen;
    }
    p->nslots = want;
    p->reloading = true;
    log_msg(LOG_LEVEL_INFO, "reloading configuration%s%s: replacing workers one by one",
            p->cfg->config_path[0] ? " from " : "", p->cfg->config_path);
}

static void shutdown_pool(struct pool *p, int sig)
{
    log_msg(LOG_LEVEL_INFO, "%s: draining workers (up to %ld ms)", strsignal(sig),
            p->cfg->shutdown_timeout_ms);
    for (int i = 0; i < p->nslots; i++) {
        if (p->slots[i].pid > 0)
            kill(p->slots[i].pid, SIGTERM);
    }
    for (int r = 0; r < p->nretiring; r++)
        kill(p->retiring[r], SIGTERM);
    double deadline = now_ms() + (double)p->cfg->shutdown_timeout_ms;
    for (;;) {
        reap(p, true);
        int alive = p->nretiring;
        for (int i = 0; i < p->nslots; i++)
            alive += p->slots[i].pid > 0;
        if (alive == 0)
            break;
        if (now_ms() >= deadline) {
            log_msg(LOG_LEVEL_WARN, "%d workers still busy after %ld ms: killing them", alive,
                    p->cfg->shutdown_timeout_ms);
            for (int i = 0; i < p->nslots; i++) {
                if (p->slots[i].pid > 0)
                    kill(p->slots[i].pid, SIGKILL);
            }
            for (int r = 0; r < p->nretiring; r++)
                kill(p->retiring[r], SIGKILL);
            while (waitpid(-1, NULL, 0) > 0)
                ;
            break;
        }
        struct pollfd pf = {master_pipe[0], POLLIN, 0};
        poll(&pf, 1, 50);
        unsigned char buf[64];
        while (read(master_pipe[0], buf, sizeof buf) > 0)
            ;
    }
    close(p->listen_fd);
    if (p->unix_path[0])
        unlink(p->unix_path);
    log_msg(LOG_LEVEL_INFO, "stopped");
}

int pool_run(struct vellum_config *cfg, pool_reload_fn reload, void *reload_ctx)
{
    struct pool *p = calloc(1, sizeof *p);
    if (!p) {
        fprintf(stderr, "vellum: out of memory\n");
        return 1;
    }
    p->cfg = cfg;
    p->self = getpid();
    p->started = time(NULL);
    struct verr err = {0, ""};
    p->listen_fd = open_listener(p, &err);
    if (p->listen_fd < 0) {
        fprintf(stderr, "vellum: cannot listen: %s\n", err.msg);
        free(p);
        return 1;
    }
    if (pipe2(master_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "vellum: pipe: %s\n", strerror(errno));
        free(p);
        return 1;
    }
    set_handler(SIGTERM, master_on_signal);
    set_handler(SIGINT, master_on_signal);
    set_handler(SIGHUP, master_on_signal);
    set_handler(SIGCHLD, master_on_signal);
    set_handler(SIGPIPE, SIG_IGN);

    p->nslots = worker_count(cfg);
    log_msg(LOG_LEVEL_INFO, "vellum %s listening on %s with %d worker%s (image_root %s)",
            VELLUM_VERSION, cfg->listen, p->nslots, p->nslots == 1 ? "" : "s", cfg->image_root);
    for (int i = 0; i < p->nslots; i++)
        start_slot(p, i);

    int stop_sig = 0;
    while (!stop_sig) {
        double now = now_ms(), wake = now + 1000;
        for (int i = 0; i < p->nslots; i++) {
            if (p->slots[i].pid == 0 && p->slots[i].respawn_at > 0 && p->slots[i].respawn_at < wake)
                wake = p->slots[i].respawn_at;
        }
        for (int r = 0; r < p->nretiring; r++) {
            if (p->retire_deadline[r] < wake)
                wake = p->retire_deadline[r];
        }
        int timeout = wake > now ? (int)(wake - now) + 1 : 0;
        struct pollfd pf = {master_pipe[0], POLLIN, 0};
        poll(&pf, 1, timeout);

        bool hup = false;
        unsigned char buf[64];
        ssize_t n;
        while ((n = read(master_pipe[0], buf, sizeof buf)) > 0) {
            for (ssize_t k = 0; k < n; k++) {
                if (buf[k] == SIGTERM || buf[k] == SIGINT)
                    stop_sig = buf[k];
                else if (buf[k] == SIGHUP)
                    hup = true;
            }
        }
        reap(p, stop_sig != 0);
        if (stop_sig)
            break;
        if (hup)
            do_reload(p, reload, reload_ctx);
        now = now_ms();
        for (int i = 0; i < p->nslots; i++) {
            struct slot *s = &p->slots[i];
            if (s->pid == 0 && s->respawn_at > 0 && s->respawn_at <= now)
                start_slot(p, i);
        }
        for (int r = 0; r < p->nretiring; r++) {
            if (p->retire_deadline[r] <= now) {
                log_msg(LOG_LEVEL_WARN, "worker %d did not drain in time: killing it",
                        (int)p->retiring[r]);
                kill(p->retiring[r], SIGKILL);
                p->retire_deadline[r] = now + 60000;
            }
        }
        reload_step(p);
    }
    shutdown_pool(p, stop_sig);
    close(master_pipe[0]);
    close(master_pipe[1]);
    free(p);
    return 0;
}
