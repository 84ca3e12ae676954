/* http.h: the HTTP side of a FastCGI request: reading CGI parameters, building a response
 * (status, headers, body), writing it with CORS on every response, and JSON error bodies.
 * Only fcgi/ includes this; the libraries never see HTTP. */
#ifndef VELLUM_HTTP_H
#define VELLUM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"

/* Request limits: the path buffer below (8 KB), the query string, the number of '/'-separated
 * path segments. Larger requests get 414 / 400 before any routing. */
#define HTTP_MAX_QUERY 2048
#define HTTP_MAX_SEGMENTS 64

struct http_request {
    char **envp;           /* CGI parameters (FCGX envp) */
    const char *method;    /* REQUEST_METHOD */
    const char *uri;       /* REQUEST_URI exactly as the client sent it (still percent-encoded) */
    char path[8192];       /* raw path of uri without the query string, prefix removed */
    const char *query;     /* after '?', or "" */
    bool is_head;
};

struct http_response {
    int status;
    char content_type[128];
    char headers[4096];    /* extra header lines, each ending in \r\n */
    size_t headers_len;
    unsigned char *body;   /* owned when body_owned */
    size_t body_len;
    bool body_owned;
};

/* A CGI parameter by name ("HTTP_ACCEPT", "QUERY_STRING", ...) or NULL. */
const char *http_param(const struct http_request *req, const char *name);

/* Fill req from CGI parameters; prefix (may be "") is stripped from the path. Returns -1 with
 * status 400/404 in err when the URI is unusable (too long, not under the prefix). */
int http_request_init(struct http_request *req, char **envp, const char *prefix, struct verr *err);

void http_response_init(struct http_response *resp);
void http_response_clear(struct http_response *resp);

/* Append a header line; silently refuses a line that would overflow (callers add few). */
void http_header_add(struct http_response *resp, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Body setters: take ownership of a malloc'd buffer, or copy a string. Return -1 on OOM. */
void http_body_take(struct http_response *resp, unsigned char *body, size_t len);
int http_body_copy(struct http_response *resp, const char *text);

/* Turn resp into a JSON error: {"error": message, "status": status}. */
void http_error(struct http_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Serialise status line, headers (with CORS) and body (not for HEAD) into out via the write
 * callback. Returns the number of body bytes sent. */
typedef int (*http_write_fn)(void *ctx, const void *buf, size_t len);
size_t http_send(const struct http_request *req, const struct http_response *resp,
                 http_write_fn write, void *ctx);

const char *http_reason(int status);

/* The absolute URL of the server root, without trailing slash: base_url when configured,
 * else scheme://host[:port] from X-Forwarded-Proto/Host, HTTPS, HTTP_HOST or SERVER_NAME and
 * SERVER_PORT; the configured prefix is appended. Returns -1 when it does not fit. */
int http_base_url(const struct http_request *req, const struct vellum_config *cfg, char *buf,
                  size_t len);

/* Value of a query parameter (not decoded) copied into buf; false when absent. */
bool http_query_get(const struct http_request *req, const char *name, char *buf, size_t len);

/* FNV-1a over data, continuing from h (start with HTTP_HASH_INIT): ETags from what a response
 * depends on. */
#define HTTP_HASH_INIT 0xcbf29ce484222325ull
uint64_t http_hash(uint64_t h, const void *data, size_t len);

/* Validators and caching headers: ETag, Last-Modified and Cache-Control ("public,
 * max-age=N", or "public, no-cache" when max_age_s is negative: store but revalidate every
 * time). Returns true when the client's If-None-Match already names etag (or is "*"): resp is
 * then a 304 and the caller sends no body. */
bool http_cache_headers(const struct http_request *req, struct http_response *resp,
                        const char *etag, time_t last_modified, long max_age_s);

/* Content negotiation for IIIF JSON-LD documents (SPECS A13, B, C6). ld_by_default (3.0):
 * application/ld+json with the profile unless the client asks for application/json only; else
 * (2.1) application/json unless the client asks for application/ld+json. profile may be NULL.
 * Adds Vary: Accept. */
void http_set_json_type(const struct http_request *req, struct http_response *resp,
                        const char *profile, bool ld_by_default);

#endif
