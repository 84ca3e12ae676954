/* app.h: what a worker knows while it serves (configuration, counters) and the route table
 * that maps a request to its handler. */
#ifndef VELLUM_APP_H
#define VELLUM_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "http.h"

struct source_cache;
struct block_cache;
struct tile_store;
struct memcache;
struct pending_store;
struct db;

struct app {
    const struct vellum_config *cfg;
    struct source_cache *sources; /* parsed source headers, created on first use */
    struct block_cache *blocks; /* decoded blocks shared by the workers, opened on first use */
    bool blocks_failed;      /* it could not be opened (logged once): serve without it */
    struct tile_store *tiles; /* images kept as files for the web server, opened on first use */
    bool tiles_failed;       /* it could not be opened (logged once): serve without it */
    struct memcache *mcache; /* images shared with other hosts (memcached), made on first use */
    bool mcache_failed;      /* memcached_servers did not parse (logged once): serve without it */
    struct pending_store *pending; /* an image to store once its response is out */
    struct db *db;           /* the catalogue, opened read-only on first use (Presentation API) */
    dev_t db_dev;            /* which file db is: reopened when the path names another file */
    ino_t db_ino;
    time_t started;          /* when the server (master, or the single process) started */
    uint64_t served;         /* requests served by this worker */
    int listen_fd;           /* the socket workers accept on (the pool's, or fd 0 under
                              * mod_fcgid or spawn-fcgi): a connection pending there is a
                              * request waiting for a worker; -1: none */
    bool tainted;            /* a decoder crashed inside a guarded call: exit after this response */
    long debug_after_ms;     /* /debug/sleep?after_ms=: sleep this long once the response is out */
};

/* A handler fills resp (status, headers, body); returning is enough, errors go in resp. */
typedef void (*route_handler)(struct app *app, const struct http_request *req,
                              struct http_response *resp);

/* Route and run one request; always leaves a complete response in resp. */
void app_handle(struct app *app, const struct http_request *req, struct http_response *resp);

/* Handlers (one file each). */
void handle_health(struct app *app, const struct http_request *req, struct http_response *resp);
void handle_debug_sleep(struct app *app, const struct http_request *req,
                        struct http_response *resp);
void handle_debug_crash(struct app *app, const struct http_request *req,
                        struct http_response *resp);
void handle_image(struct app *app, const struct http_request *req, struct http_response *resp);
void handle_presentation(struct app *app, const struct http_request *req,
                         struct http_response *resp);
/* Close the catalogue handle_presentation opened; for a worker that stops (leak checkers). */
void handle_presentation_release(struct app *app);
/* Close the block cache, tile store and memcached client handle_image opened. */
void handle_image_release(struct app *app);
/* Work a response left for after it was sent: an image to put in the tile store and in
 * memcached, the block cache's size check. */
void handle_image_after_response(struct app *app);
/* Everything left for after the response (the above, and /debug/sleep's after_ms). The worker
 * runs it under request_timeout_ms, like a request. */
void app_after_response(struct app *app);

#endif
