/* pool.h: the FastCGI worker pool. The master opens the listen socket, forks workers that run
 * the accept loop, and supervises them: respawn with back-off, recycling, drain on
 * SIGTERM/SIGINT, rolling restart on SIGHUP. Under mod_fcgid / spawn-fcgi the listen socket
 * is already on fd 0 and the process serves as a single worker. */
#ifndef VELLUM_POOL_H
#define VELLUM_POOL_H

#include <stdbool.h>

#include "config.h"

/* Re-reads the configuration on SIGHUP; returns 0 and fills cfg, or -1 with err. */
typedef int (*pool_reload_fn)(void *ctx, struct vellum_config *cfg, struct verr *err);

/* Run the pool until SIGTERM/SIGINT; returns the process exit status (0 after a clean drain). */
int pool_run(struct vellum_config *cfg, pool_reload_fn reload, void *reload_ctx);

/* True when fd 0 is a listening socket (we were started by mod_fcgid or spawn-fcgi). */
bool pool_fd0_is_listener(void);

/* Serve as one worker on fd 0 until SIGTERM or the web server closes the socket. */
int pool_run_single(const struct vellum_config *cfg);

#endif
