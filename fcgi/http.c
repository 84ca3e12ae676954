/* http.c: requests and responses over FastCGI (see http.h). */
#include "http.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* When a parameter is passed twice (nginx sends both an included fastcgi_param and a later
 * override), the last one wins, as in PHP-FPM. */
const char *http_param(const struct http_request *req, const char *name)
{
    size_t n = strlen(name);
    const char *found = NULL;
    for (char **e = req->envp; e && *e; e++) {
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            found = *e + n + 1;
    }
    return found;
}

int http_request_init(struct http_request *req, char **envp, const char *prefix, struct verr *err)
{
    memset(req, 0, sizeof *req);
    req->envp = envp;
    req->method = http_param(req, "REQUEST_METHOD");
    if (!req->method)
        req->method = "GET";
    req->is_head = !strcmp(req->method, "HEAD");
    req->uri = http_param(req, "REQUEST_URI");
    if (!req->uri || !*req->uri) {
        /* Servers that do not pass REQUEST_URI: rebuild it from SCRIPT_NAME + PATH_INFO. */
        req->uri = http_param(req, "DOCUMENT_URI");
        if (!req->uri)
            req->uri = "/";
    }
    const char *q = strchr(req->uri, '?');
    size_t plen = q ? (size_t)(q - req->uri) : strlen(req->uri);
    req->query = q ? q + 1 : "";
    if (plen >= sizeof req->path)
        return verr_set(err, 414, "request path longer than %zu bytes", sizeof req->path - 1);
    /* Early sanity checks (Image API §10): nothing Vellum serves needs more than this. */
    if (strlen(req->query) > HTTP_MAX_QUERY)
        return verr_set(err, 414, "query string longer than %d bytes", HTTP_MAX_QUERY);
    size_t segments = 0;
    for (size_t i = 0; i < plen; i++)
        segments += req->uri[i] == '/';
    if (segments > HTTP_MAX_SEGMENTS)
        return verr_set(err, 400, "request path has more than %d segments", HTTP_MAX_SEGMENTS);
    size_t pre = strlen(prefix);
    if (pre) {
        if (plen < pre || strncmp(req->uri, prefix, pre) != 0 ||
            (plen > pre && req->uri[pre] != '/'))
            return verr_set(err, 404, "no such path (routes live under %s)", prefix);
    }
    memcpy(req->path, req->uri + pre, plen - pre);
    req->path[plen - pre] = '\0';
    if (!req->path[0])
        strcpy(req->path, "/");
    return 0;
}

void http_response_init(struct http_response *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->status = 200;
    strcpy(resp->content_type, "application/json");
}

void http_response_clear(struct http_response *resp)
{
    if (resp->body_owned)
        free(resp->body);
    http_response_init(resp);
}

void http_header_add(struct http_response *resp, const char *name, const char *fmt, ...)
{
    char value[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof value)
        return;
    size_t room = sizeof resp->headers - resp->headers_len;
    int m = snprintf(resp->headers + resp->headers_len, room, "%s: %s\r\n", name, value);
    if (m > 0 && (size_t)m < room)
        resp->headers_len += (size_t)m;
    else
        resp->headers[resp->headers_len] = '\0';
}

void http_body_take(struct http_response *resp, unsigned char *body, size_t len)
{
    if (resp->body_owned)
        free(resp->body);
    resp->body = body;
    resp->body_len = len;
    resp->body_owned = true;
}

int http_body_copy(struct http_response *resp, const char *text)
{
    size_t n = strlen(text);
    unsigned char *b = malloc(n + 1);
    if (!b)
        return -1;
    memcpy(b, text, n + 1);
    http_body_take(resp, b, n);
    return 0;
}

void http_error(struct http_response *resp, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keep headers already added (Allow on a 405), drop any body. */
    if (resp->body_owned)
        free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    resp->body_owned = false;
    resp->status = status;
    strcpy(resp->content_type, "application/json");

    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && cJSON_AddStringToObject(o, "error", msg) && cJSON_AddNumberToObject(o, "status", status))
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text) {
        size_t n = strlen(text);
        /* A trailing newline makes curl output readable. */
        char *t = realloc(text, n + 2);
        if (t) {
            t[n] = '\n';
            t[n + 1] = '\0';
            http_body_take(resp, (unsigned char *)t, n + 1);
        } else {
            http_body_take(resp, (unsigned char *)text, n);
        }
    }
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* An error must not be cached, yet a handler may have added the caching headers of the
 * response it meant to send before the error happened (a decode that failed, timed out or went
 * over a limit after the ETag was computed). Copies the header lines into dst without those,
 * and says no-store instead. No malloc: this also serves the answer after a decoder crash. */
static size_t error_headers(char *dst, size_t cap, const char *src, size_t len)
{
    static const char *const drop[] = {"cache-control:", "etag:", "last-modified:"};
    static const char no_store[] = "Cache-Control: no-store\r\n";
    size_t out = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(src + i, '\n', len - i);
        size_t line = nl ? (size_t)(nl - (src + i)) + 1 : len - i;
        bool keep = true;
        for (size_t k = 0; k < sizeof drop / sizeof drop[0]; k++)
            if (line >= strlen(drop[k]) && strncasecmp(src + i, drop[k], strlen(drop[k])) == 0)
                keep = false;
        if (keep && out + line < cap) {
            memcpy(dst + out, src + i, line);
            out += line;
        }
        i += line;
    }
    if (out + sizeof no_store - 1 < cap) {
        memcpy(dst + out, no_store, sizeof no_store - 1);
        out += sizeof no_store - 1;
    }
    return out;
}

size_t http_send(const struct http_request *req, const struct http_response *resp,
                 http_write_fn write, void *ctx)
{
    char head[6144], errhdr[sizeof resp->headers + 32];
    const char *extra = resp->headers;
    size_t extra_len = resp->headers_len;
    if (resp->status >= 400) {
        extra_len = error_headers(errhdr, sizeof errhdr, resp->headers, resp->headers_len);
        extra = errhdr;
    }
    bool has_body = resp->status != 204 && resp->status != 304;
    int n = snprintf(head, sizeof head,
                     "Status: %d %s\r\n"
                     "Access-Control-Allow-Origin: *\r\n"
                     "%s%s%s"
                     "Content-Length: %zu\r\n"
                     "%.*s\r\n",
                     resp->status, http_reason(resp->status),
                     has_body ? "Content-Type: " : "", has_body ? resp->content_type : "",
                     has_body ? "\r\n" : "", has_body ? resp->body_len : (size_t)0,
                     (int)extra_len, extra);
    if (n < 0 || (size_t)n >= sizeof head)
        return 0;
    if (write(ctx, head, (size_t)n) < 0)
        return 0;
    if (!has_body || req->is_head || resp->body_len == 0)
        return 0;
    if (write(ctx, resp->body, resp->body_len) < 0)
        return 0;
    return resp->body_len;
}

int http_base_url(const struct http_request *req, const struct vellum_config *cfg, char *buf,
                  size_t len)
{
    int n;
    if (cfg->base_url[0]) {
        n = snprintf(buf, len, "%s%s", cfg->base_url, cfg->prefix);
    } else {
        const char *scheme = http_param(req, "HTTP_X_FORWARDED_PROTO");
        if (!scheme || (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
            const char *https = http_param(req, "HTTPS");
            scheme = https && (!strcmp(https, "on") || !strcmp(https, "1")) ? "https" : "http";
        }
        const char *host = http_param(req, "HTTP_X_FORWARDED_HOST");
        if (!host || !*host)
            host = http_param(req, "HTTP_HOST");
        if (host && *host) {
            /* A Host header is client input that ends up in JSON ids: allow only the
             * characters a host[:port] can hold. */
            for (const char *c = host; *c; c++) {
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_", *c)) {
                    host = NULL;
                    break;
                }
            }
        }
        if (host && *host) {
            n = snprintf(buf, len, "%s://%s%s", scheme, host, cfg->prefix);
        } else {
            const char *name = http_param(req, "SERVER_NAME");
            const char *port = http_param(req, "SERVER_PORT");
            bool default_port = !port || (!strcmp(scheme, "http") && !strcmp(port, "80")) ||
                                (!strcmp(scheme, "https") && !strcmp(port, "443"));
            n = snprintf(buf, len, "%s://%s%s%s%s", scheme, name ? name : "localhost",
                         default_port ? "" : ":", default_port ? "" : port, cfg->prefix);
        }
    }
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

bool http_query_get(const struct http_request *req, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = req->query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = seg - nl - 1;
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, p + nl + 1, vl);
            buf[vl] = '\0';
            return true;
        }
        if (seg == nl && !strncmp(p, name, nl)) {
            buf[0] = '\0';
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

uint64_t http_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void http_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* True when the client's If-None-Match lists etag (or "*"). */
static bool etag_matches(const struct http_request *req, const char *etag)
{
    const char *inm = http_param(req, "HTTP_IF_NONE_MATCH");
    if (!inm)
        return false;
    if (!strcmp(inm, "*"))
        return true;
    size_t n = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
        if ((p == inm || p[-1] == ' ' || p[-1] == ',' || p[-1] == '/') &&
            (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return true;
    }
    return false;
}

bool http_cache_headers(const struct http_request *req, struct http_response *resp,
                        const char *etag, time_t last_modified, long max_age_s)
{
    char date[64];
    /* Never later than now (RFC 9110 8.8.2.1): import stamps are kept strictly increasing, so
     * several imports within a second run ahead of the clock. The ETag still tells them apart. */
    time_t now = time(NULL);
    http_date(last_modified > now ? now : last_modified, date, sizeof date);
    http_header_add(resp, "ETag", "%s", etag);
    http_header_add(resp, "Last-Modified", "%s", date);
    if (max_age_s < 0)
        http_header_add(resp, "Cache-Control", "public, no-cache");
    else
        http_header_add(resp, "Cache-Control", "public, max-age=%ld", max_age_s);
    if (etag_matches(req, etag)) {
        resp->status = 304;
        return true;
    }
    return false;
}

void http_set_json_type(const struct http_request *req, struct http_response *resp,
                        const char *profile, bool ld_by_default)
{
    const char *accept = http_param(req, "HTTP_ACCEPT");
    bool wants_ld = accept && strstr(accept, "application/ld+json");
    bool wants_json = accept && strstr(accept, "application/json");
    bool ld = ld_by_default ? !(wants_json && !wants_ld) : wants_ld;
    if (ld && profile)
        snprintf(resp->content_type, sizeof resp->content_type,
                 "application/ld+json;profile=\"%s\"", profile);
    else
        strcpy(resp->content_type, ld ? "application/ld+json" : "application/json");
    http_header_add(resp, "Vary", "Accept");
}
