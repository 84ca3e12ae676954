/* routes.c: the route table. A route matches a path exactly or by prefix; GET and HEAD are
 * served, OPTIONS answers CORS preflight, every other method is a 405 with Allow. */
#include "app.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

struct route {
    const char *path;
    bool is_prefix;
    bool debug_only;
    route_handler handler;
};

static const struct route routes[] = {
    {"/health", false, false, handle_health},
    {"/iiif/3/", true, false, handle_image},
    {"/iiif/2/", true, false, handle_image},
    {"/presentation/3/", true, false, handle_presentation},
    {"/presentation/2/", true, false, handle_presentation},
    {"/debug/sleep", false, true, handle_debug_sleep},
    {"/debug/crash", false, true, handle_debug_crash},
};

static const struct route *route_find(const struct app *app, const char *path)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        if (r->debug_only && !app->cfg->debug_routes)
            continue;
        if (r->is_prefix ? !strncmp(path, r->path, strlen(r->path)) : !strcmp(path, r->path))
            return r;
    }
    return NULL;
}

void app_handle(struct app *app, const struct http_request *req, struct http_response *resp)
{
    const struct route *r = route_find(app, req->path);
    if (!r) {
        http_error(resp, 404, "no such path: %.200s", req->path);
        return;
    }
    if (!strcmp(req->method, "OPTIONS")) {
        /* CORS preflight: any origin may GET; allow the headers the client asks for. */
        const char *want = http_param(req, "HTTP_ACCESS_CONTROL_REQUEST_HEADERS");
        resp->status = 204;
        http_header_add(resp, "Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
        if (want && *want && strlen(want) < 1000)
            http_header_add(resp, "Access-Control-Allow-Headers", "%s", want);
        http_header_add(resp, "Access-Control-Max-Age", "86400");
        http_header_add(resp, "Allow", "GET, HEAD, OPTIONS");
        return;
    }
    if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
        http_header_add(resp, "Allow", "GET, HEAD, OPTIONS");
        http_error(resp, 405, "method %.20s not allowed; use GET or HEAD", req->method);
        return;
    }
    r->handler(app, req, resp);
}

void app_after_response(struct app *app)
{
    handle_image_after_response(app);
    if (app->debug_after_ms > 0) {
        struct timespec ts = {app->debug_after_ms / 1000, (app->debug_after_ms % 1000) * 1000000L};
        app->debug_after_ms = 0;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}
