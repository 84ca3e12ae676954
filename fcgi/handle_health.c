/* handle_health.c: /health for load balancers and humans, and /debug/sleep and /debug/crash for
 * the tests that need a slow request (drain, reload) or a dying worker (respawn, back-off).
 * The debug routes exist only when debug_routes = true. */
#include "app.h"
#include "block_cache.h"
#include "memcache.h"
#include "tile_store.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void handle_health(struct app *app, const struct http_request *req, struct http_response *resp)
{
    (void)req;
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && cJSON_AddStringToObject(o, "status", "ok") &&
        cJSON_AddStringToObject(o, "version", VELLUM_VERSION) &&
        cJSON_AddNumberToObject(o, "uptime_s", (double)(time(NULL) - app->started)) &&
        cJSON_AddNumberToObject(o, "pid", (double)getpid()) &&
        cJSON_AddNumberToObject(o, "requests", (double)app->served)) {
        /* This worker's block cache counters (the cache itself is shared). */
        struct block_cache_stats bs;
        block_cache_stats(app->blocks, &bs);
        cJSON *b = cJSON_AddObjectToObject(o, "block_cache");
        if (b && cJSON_AddBoolToObject(b, "enabled", app->cfg->block_cache_mb > 0 && !app->blocks_failed) &&
            cJSON_AddNumberToObject(b, "hits", (double)bs.hits) &&
            cJSON_AddNumberToObject(b, "waits", (double)bs.waits) &&
            cJSON_AddNumberToObject(b, "misses", (double)bs.misses) &&
            cJSON_AddNumberToObject(b, "stored", (double)bs.stored) &&
            cJSON_AddNumberToObject(b, "evicted", (double)bs.evicted) &&
            cJSON_AddNumberToObject(b, "bypassed", (double)bs.bypassed)) {
            /* This worker's tile store counters; bytes is the whole store's size. */
            struct tile_store_stats ts;
            tile_store_stats(app->tiles, &ts);
            cJSON *t = cJSON_AddObjectToObject(o, "tile_store");
            bool on = app->cfg->tile_store_dir[0] && !app->tiles_failed;
            if (t && cJSON_AddBoolToObject(t, "enabled", on) &&
                cJSON_AddNumberToObject(t, "stored", (double)ts.stored) &&
                cJSON_AddNumberToObject(t, "evicted", (double)ts.evicted) &&
                cJSON_AddNumberToObject(t, "invalidated", (double)ts.invalidated) &&
                cJSON_AddNumberToObject(t, "spared", (double)ts.spared) &&
                cJSON_AddNumberToObject(t, "bytes", (double)ts.bytes) &&
                (!app->tiles ||
                 cJSON_AddStringToObject(t, "trim_order",
                                         ts.by_use ? "least recently sent first"
                                                   : "oldest stored first (noatime mount)"))) {
                /* This worker's memcached counters. */
                struct memcache_stats ms;
                memcache_stats(app->mcache, &ms);
                cJSON *m = cJSON_AddObjectToObject(o, "memcached");
                if (m && cJSON_AddBoolToObject(m, "enabled", app->cfg->memcached_servers[0] &&
                                                                 !app->mcache_failed) &&
                    cJSON_AddNumberToObject(m, "hits", (double)ms.hits) &&
                    cJSON_AddNumberToObject(m, "misses", (double)ms.misses) &&
                    cJSON_AddNumberToObject(m, "stored", (double)ms.stored) &&
                    cJSON_AddNumberToObject(m, "errors", (double)ms.errors))
                    text = cJSON_PrintUnformatted(o);
            }
        }
    }
    cJSON_Delete(o);
    if (!text) {
        http_error(resp, 500, "out of memory");
        return;
    }
    http_body_take(resp, (unsigned char *)text, strlen(text));
    http_header_add(resp, "Cache-Control", "no-store");
}

void handle_debug_sleep(struct app *app, const struct http_request *req,
                        struct http_response *resp)
{
    char v[32];
    long ms = 1000, after = 0;
    if (http_query_get(req, "ms", v, sizeof v))
        ms = strtol(v, NULL, 10);
    if (http_query_get(req, "after_ms", v, sizeof v))
        after = strtol(v, NULL, 10);
    if (ms < 0 || ms > 60000 || after < 0 || after > 60000) {
        http_error(resp, 400, "ms and after_ms must be 0..60000");
        return;
    }
    app->debug_after_ms = after; /* stands for slow work after the response (app_after_response) */
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    char body[64];
    snprintf(body, sizeof body, "{\"slept_ms\":%ld,\"pid\":%d}", ms, (int)getpid());
    if (http_body_copy(resp, body) < 0)
        http_error(resp, 500, "out of memory");
}

void handle_debug_crash(struct app *app, const struct http_request *req,
                        struct http_response *resp)
{
    (void)app;
    (void)req;
    (void)resp;
    abort();
}
