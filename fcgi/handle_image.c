/* handle_image.c: IIIF Image API 3.0 (/iiif/3/) and 2.1 (/iiif/2/) over the same sources.
 * The path after the prefix is split from the right (identifiers may hold %2F), the identifier
 * resolved under image_root, the header taken from the per-worker cache, and then: 303 for the
 * base URI, info.json, or parse -> plan -> render for an image. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "guard.h"
#include "log.h"
#include "codec.h"
#include "iiif.h"
#include "manifest.h"
#include "block_cache.h"
#include "memcache.h"
#include "source_cache.h"
#include "tile_store.h"

#define SOURCE_CACHE_ENTRIES 256

static struct iiif_limits config_limits(const struct vellum_config *cfg)
{
    struct iiif_limits l = {(uint32_t)cfg->max_width, (uint32_t)cfg->max_height,
                            (uint64_t)cfg->max_area};
    if (l.max_height == 0)
        l.max_height = l.max_width;
    return l;
}

/* The shared block cache, opened on first use; NULL when off or unusable (logged once). */
static struct block_cache *blocks(struct app *app)
{
    if (app->blocks || app->blocks_failed || app->cfg->block_cache_mb <= 0)
        return app->blocks;
    char dir[1024];
    if (app->cfg->block_cache_dir[0])
        snprintf(dir, sizeof dir, "%s", app->cfg->block_cache_dir);
    else
        block_cache_default_dir(dir, sizeof dir);
    struct verr err;
    app->blocks = block_cache_open(dir, (uint64_t)app->cfg->block_cache_mb << 20,
                                   (uint32_t)app->cfg->block_size, &err);
    if (!app->blocks) {
        app->blocks_failed = true;
        log_msg(LOG_LEVEL_WARN, "serving without the block cache: %s", err.msg);
    }
    return app->blocks;
}

/* The tile store, opened on first use; NULL when off or unusable (logged once). */
static struct tile_store *tiles(struct app *app)
{
    if (app->tiles || app->tiles_failed || !app->cfg->tile_store_dir[0])
        return app->tiles;
    struct verr err;
    app->tiles = tile_store_open(app->cfg->tile_store_dir, (uint64_t)app->cfg->tile_store_mb << 20,
                                 &err);
    if (!app->tiles) {
        app->tiles_failed = true;
        log_msg(LOG_LEVEL_WARN, "serving without the tile store: %s", err.msg);
    }
    return app->tiles;
}

/* The memcached client shared by the hosts (memcache.h), created on first use; NULL when off or
 * unusable (logged once). */
static struct memcache *shared(struct app *app)
{
    if (app->mcache || app->mcache_failed || !app->cfg->memcached_servers[0])
        return app->mcache;
    struct verr err;
    app->mcache = memcache_open(app->cfg->memcached_servers, app->cfg->memcached_ttl_s, &err);
    if (!app->mcache) {
        app->mcache_failed = true;
        log_msg(LOG_LEVEL_WARN, "serving without memcached: %s", err.msg);
    }
    return app->mcache;
}

/* An image to keep once its response is out (handle_image_after_response): as a file in the
 * tile store (path set) and/or in memcached (etag set). Writing a file costs a fraction of a
 * millisecond on a disk file system, and a memcached round trip about as much, which the client
 * of a cold tile need not wait for. */
struct pending_store {
    char *path;        /* the file, relative to the store: "<id_dir>/<p1>_<p2>_<p3>_<p4>" */
    size_t id_len;     /* path[0, id_len) is the identifier's folder */
    char *src_path;    /* the source file, to see that it did not change meanwhile */
    struct source_stamp stamp;
    char etag[64];     /* the memcached key ("" = not for memcached) */
    unsigned char *body;
    size_t len;
};

static void pending_free(struct pending_store *p)
{
    if (!p)
        return;
    free(p->path);
    free(p->src_path);
    free(p->body);
    free(p);
}

/* The pending record for this response, holding a copy of body; NULL when out of memory. */
static struct pending_store *pending_for(struct app *app, const unsigned char *body, size_t len)
{
    if (app->pending)
        return app->pending;
    struct pending_store *p = calloc(1, sizeof *p);
    if (p && !(p->body = malloc(len ? len : 1))) {
        free(p);
        p = NULL;
    }
    if (!p)
        return NULL;
    memcpy(p->body, body, len);
    p->len = len;
    app->pending = p;
    return p;
}

void handle_image_release(struct app *app)
{
    pending_free(app->pending);
    app->pending = NULL;
    block_cache_close(app->blocks);
    app->blocks = NULL;
    memcache_close(app->mcache);
    app->mcache = NULL;
    tile_store_close(app->tiles);
    app->tiles = NULL;
}

/* With a tile store: forget what it holds for this identifier if it was made from another
 * file (every info.json and every image Vellum makes for a GET or HEAD checks), and keep this
 * image (body) as a file, for a GET without a query string. The store is keyed by the path as
 * nginx decodes it ($uri, decoded once, as Vellum decodes an identifier once): "a%2Fb.jp2" and
 * "a/b.jp2" are one identifier to Vellum and one folder to nginx, and a decoded path must pass
 * tile_store_path_ok (no '%' left, no dot segments) to be stored at all. `drop` is how many
 * segments follow the identifier: an image's four parameters become one file name in the
 * identifier's folder, joined by '_' (which no valid parameter holds), as the nginx block in
 * docs/deploy.md looks for it. info.json checks at once (a viewer's tile requests follow it);
 * an image's check and write wait until its response is out. */
static void store_image(struct app *app, const struct http_request *req, int drop,
                        const char *src_path, const struct source_stamp *stamp,
                        const unsigned char *body, size_t len)
{
    struct tile_store *s = tiles(app);
    if (!s || (strcmp(req->method, "GET") != 0 && !req->is_head))
        return;
    const char *q = strchr(req->uri, '?');
    size_t raw_len = q ? (size_t)(q - req->uri) : strlen(req->uri);
    struct verr err;
    char *path = iiif_percent_decode(req->uri, raw_len, &err);
    if (!path)
        return;
    /* The identifier's folder ends at the drop-th slash from the end. */
    char *cut = path + strlen(path);
    for (int i = 0; i < drop && cut > path; i++)
        while (cut > path && *--cut != '/')
            ;
    if (cut == path) {
        free(path);
        return;
    }
    bool joinable = true; /* '_' in a parameter could make two requests one file name */
    for (char *c = cut + 1; *c; c++) {
        joinable = joinable && *c != '_';
        if (*c == '/')
            *c = '_';
    }
    if (!body || req->is_head || q || !joinable || !tile_store_path_ok(path)) {
        *cut = '\0';
        (void)tile_store_check(s, path, stamp, sizeof *stamp);
        free(path);
        return;
    }
    struct pending_store *p = pending_for(app, body, len);
    char *src = strdup(src_path);
    if (!p || !src) {
        free(src);
        free(path);
        return;
    }
    free(p->path);
    free(p->src_path);
    p->path = path;
    p->id_len = (size_t)(cut - path);
    p->src_path = src;
    p->stamp = *stamp;
}

/* Keep this image in memcached once the response is out (memcache.h): the key is its ETag. */
static void share_image(struct app *app, const char *etag, const unsigned char *body, size_t len)
{
    struct pending_store *p = shared(app) && body && len ? pending_for(app, body, len) : NULL;
    if (p)
        snprintf(p->etag, sizeof p->etag, "%s", etag);
}

static void store_pending(struct app *app)
{
    struct pending_store *p = app->pending;
    if (!p)
        return;
    app->pending = NULL;
    if (p->etag[0])
        (void)memcache_put(app->mcache, p->etag, p->body, p->len);
    if (!p->path) {
        pending_free(p);
        return;
    }
    struct source_stamp now;
    p->path[p->id_len] = '\0';
    int checked = tile_store_check(app->tiles, p->path, &p->stamp, sizeof p->stamp);
    p->path[p->id_len] = '/';
    /* Not if the source changed while the image was made: another worker may already have
     * recorded the new file, and this image would then outlive the check. */
    if (checked == 0 && source_stamp_read(p->src_path, &now) == 0 &&
        source_stamp_equal(&now, &p->stamp))
        (void)tile_store_put(app->tiles, p->path, p->body, p->len);
    pending_free(p);
}

void handle_image_after_response(struct app *app)
{
    store_pending(app);
    block_cache_tidy(app->blocks);
}

static void serve_info(struct app *app, const struct http_request *req, struct http_response *resp,
                       enum iiif_version v, const char *base_id, const struct codec_info *src,
                       const struct source_stamp *stamp)
{
    struct manifest_image_info mi = {
        .id = base_id,
        .width = src->width,
        .height = src->height,
        .is_color = src->channels >= 3,
        .limits = config_limits(app->cfg),
        .upscaling = true,
    };
    manifest_choose_tiling(src, &mi.tile_w, &mi.tile_h, &mi.scale_factors);
    struct verr err;
    char *json = manifest_info_json(v, &mi, &err);
    if (!json) {
        http_error(resp, err.status, "%s", err.msg);
        return;
    }
    char etag[64];
    size_t len = strlen(json);
    /* SPECS A13, B: 3.0 answers JSON-LD with the profile by default, 2.1 plain JSON. */
    http_set_json_type(req, resp, v == IIIF_V3 ? "http://iiif.io/api/image/3/context.json" : NULL,
                       v == IIIF_V3);
    /* A strong ETag names one representation: the same document as JSON and as JSON-LD
     * (content negotiation) gets two. */
    uint64_t h = http_hash(HTTP_HASH_INIT, json, len);
    h = http_hash(h, resp->content_type, strlen(resp->content_type));
    snprintf(etag, sizeof etag, "\"i%016" PRIx64 "\"", h);
    if (http_cache_headers(req, resp, etag, (time_t)(stamp->mtime_ns / 1000000000),
                           app->cfg->cache_max_age)) {
        free(json);
        return;
    }
    http_body_take(resp, (unsigned char *)json, len);
}

/* Whether a request is waiting for a worker: a connection pending on the pool's listen socket
 * (nginx opens one per request). Behind mod_fcgid each process has a socket of its own and a
 * connection at a time, so there it is never so. */
static bool requests_waiting(const struct app *app)
{
    struct pollfd p = {app->listen_fd, POLLIN, 0};
    return app->listen_fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Decoder calls run under guard_run (guard.h): an assert or crash inside OpenJPEG, libjpeg or
 * libpng answers this request with a 500 and retires the worker after the response. */
struct render_call {
    const char *path;
    const struct codec_info *src;
    const struct iiif_plan *plan;
    const struct codec_render_opts *opts;
    unsigned char *bytes;
    size_t len;
    struct verr *err;
};

static int render_guarded(void *ctx)
{
    struct render_call *c = ctx;
    return codec_render(c->path, c->src, c->plan, c->opts, &c->bytes, &c->len, c->err);
}

struct probe_call {
    struct source_cache *cache;
    const char *path;
    uint64_t max_pixels;
    const struct codec_info **src;
    struct source_stamp *stamp;
    struct verr *err;
};

static int probe_guarded(void *ctx)
{
    struct probe_call *c = ctx;
    return source_cache_get(c->cache, c->path, c->max_pixels, c->src, c->stamp, c->err);
}

/* After a crash inside a library, or a decode stopped at the request's deadline, the library's
 * locks and heap may be in any state: the answer is built without malloc (a static body,
 * fixed-size header buffers), nothing is freed afterwards, and the worker leaves with _exit once
 * the response is out (pool.c). */
static void decoder_crashed(struct app *app, struct http_response *resp, int sig, const char *path)
{
    static const char crashed[] = "{\"error\":\"the image decoder failed on this file\",\"status\":500}\n";
    static char timed_out[160];
    app->tainted = true;
    strcpy(resp->content_type, "application/json");
    resp->body_owned = false;
    if (sig == GUARD_TIMEOUT) {
        log_msg(LOG_LEVEL_ERROR, "decode of %s stopped after request_timeout_ms (%ld ms); this "
                "worker will be replaced", path, app->cfg->request_timeout_ms);
        int n = snprintf(timed_out, sizeof timed_out,
                         "{\"error\":\"the image took longer than the server's limit of %ld ms "
                         "to decode\",\"status\":503}\n", app->cfg->request_timeout_ms);
        resp->status = 503;
        resp->body = (unsigned char *)timed_out;
        resp->body_len = n > 0 && (size_t)n < sizeof timed_out ? (size_t)n : 0;
        return;
    }
    log_msg(LOG_LEVEL_ERROR, "decoder died with signal %d on %s; this worker will be replaced", sig,
            path);
    resp->status = 500;
    resp->body = (unsigned char *)crashed;
    resp->body_len = sizeof crashed - 1;
}

static void serve_image(struct app *app, const struct http_request *req, struct http_response *resp,
                        enum iiif_version v, const char *base_id, const char *path,
                        const struct iiif_path *ip, const struct codec_info *src,
                        const struct source_stamp *stamp)
{
    struct verr err;
    struct iiif_params params;
    struct iiif_plan plan;
    struct iiif_limits limits = config_limits(app->cfg);
    if (iiif_parse(v, ip->params[0], ip->params[1], ip->params[2], ip->params[3], &params, &err) < 0 ||
        iiif_plan_request(&params, src->width, src->height, &limits, &plan, &err) < 0) {
        http_error(resp, err.status, "%s", err.msg);
        return;
    }
    char canonical[256];
    if (iiif_canonical(&plan, v, src->width, src->height, &limits, canonical, sizeof canonical) < 0) {
        http_error(resp, 500, "canonical form does not fit");
        return;
    }
    http_header_add(resp, "Link", "<%s/%s>;rel=\"canonical\", <http://iiif.io/api/image/%d/level2.json>;rel=\"profile\"",
                    base_id, canonical, v == IIIF_V3 ? 3 : 2);
    /* The bytes depend on the file, the canonical request and the encoder quality. */
    uint64_t h = http_hash(HTTP_HASH_INIT, stamp, sizeof *stamp);
    h = http_hash(h, canonical, strlen(canonical));
    h = http_hash(h, &app->cfg->jpeg_quality, sizeof app->cfg->jpeg_quality);
    char etag[64];
    snprintf(etag, sizeof etag, "\"m%016" PRIx64 "\"", h);
    if (http_cache_headers(req, resp, etag, (time_t)(stamp->mtime_ns / 1000000000),
                           app->cfg->cache_max_age))
        return;
    snprintf(resp->content_type, sizeof resp->content_type, "%s", iiif_format_mime(plan.format));
    size_t len;
    unsigned char *bytes = memcache_get(shared(app), etag, &len);
    if (bytes) { /* another worker or host made it */
        http_header_add(resp, "Server-Timing", "memcached;desc=\"shared cache hit\"");
        http_body_take(resp, bytes, len);
        store_image(app, req, 4, path, stamp, resp->body, resp->body_len);
        return;
    }

    struct codec_timing timing;
    struct codec_render_opts opts = {
        .max_decode_pixels = (uint64_t)app->cfg->max_decode_pixels,
        .jpeg_quality = (int)app->cfg->jpeg_quality,
        .threads = (int)app->cfg->decode_threads,
        .max_bytes = (uint64_t)app->cfg->max_request_memory_mb << 20,
        .blocks = blocks(app),
        .queued = requests_waiting(app),
        .source_key = http_hash(HTTP_HASH_INIT, stamp, sizeof *stamp),
        .timing = &timing,
    };
    struct render_call call = {path, src, &plan, &opts, NULL, 0, &err};
    int sig;
    if (guard_run(render_guarded, &call, &sig) < 0) {
        if (sig) {
            decoder_crashed(app, resp, sig, path);
            return;
        }
        http_error(resp, err.status ? err.status : 500, "%s", err.msg);
        return;
    }
    /* Where the time went, for browser developer tools and benchmarks (Server-Timing). */
    static const char *const block_use[] = {"", ";desc=\"block cache hit\"",
                                            ";desc=\"block decoded and cached\""};
    http_header_add(resp, "Server-Timing", "decode;dur=%.2f%s, transform;dur=%.2f, encode;dur=%.2f",
                    timing.decode_ms, block_use[timing.block], timing.transform_ms,
                    timing.encode_ms);
    http_body_take(resp, call.bytes, call.len);
    /* region/size/rotation/quality.format follow the identifier */
    store_image(app, req, 4, path, stamp, resp->body, resp->body_len);
    share_image(app, etag, resp->body, resp->body_len);
}

void handle_image(struct app *app, const struct http_request *req, struct http_response *resp)
{
    /* Routes are "/iiif/3/" and "/iiif/2/". */
    enum iiif_version v = req->path[6] == '3' ? IIIF_V3 : IIIF_V2;
    const char *rest = req->path + 8;
    struct verr err;
    struct iiif_path ip;
    memset(&ip, 0, sizeof ip);
    if (iiif_split_path(rest, &ip, &err) < 0) {
        http_error(resp, err.status, "%s", err.msg);
        return;
    }
    char path[4096];
    const struct codec_info *src = NULL;
    struct source_stamp stamp;
    if (!app->sources && !(app->sources = source_cache_new(SOURCE_CACHE_ENTRIES))) {
        http_error(resp, 500, "out of memory");
        goto done;
    }
    if (codec_resolve(app->cfg->image_root, ip.identifier, path, sizeof path, &err) < 0) {
        http_error(resp, err.status, "%s", err.msg);
        goto done;
    }
    struct probe_call probe = {app->sources, path, (uint64_t)app->cfg->max_decode_pixels, &src,
                               &stamp, &err};
    int sig;
    if (guard_run(probe_guarded, &probe, &sig) < 0) {
        if (sig)
            decoder_crashed(app, resp, sig, path);
        else
            http_error(resp, err.status, "%s", err.msg);
        goto done;
    }
    char base[1024], base_id[9216];
    if (http_base_url(req, app->cfg, base, sizeof base) < 0 ||
        snprintf(base_id, sizeof base_id, "%s/iiif/%d/%s", base, v == IIIF_V3 ? 3 : 2, ip.id_raw) >=
            (int)sizeof base_id) {
        http_error(resp, 414, "identifier too long");
        goto done;
    }
    switch (ip.target) {
    case IIIF_TARGET_BASE:
        /* SPECS A1: the base URI redirects to the information document. */
        resp->status = 303;
        http_header_add(resp, "Location", "%s/info.json", base_id);
        break;
    case IIIF_TARGET_INFO:
        store_image(app, req, 1, path, &stamp, NULL, 0); /* a viewer's first request: check */
        serve_info(app, req, resp, v, base_id, src, &stamp);
        break;
    case IIIF_TARGET_IMAGE:
        serve_image(app, req, resp, v, base_id, path, &ip, src, &stamp);
        break;
    }
done:
    if (!app->tainted) /* see decoder_crashed: no free() after a crash */
        iiif_path_clear(&ip);
}
