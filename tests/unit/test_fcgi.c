/* test_fcgi.c: the pure parts of fcgi/: configuration keys, request parsing, base URLs,
 * query parameters, JSON errors, response serialisation, which request paths the tile store
 * may keep as files, which memcached server lists are accepted, and the decoder guard. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "guard.h"
#include "http.h"
#include "memcache.h"
#include "tile_store.h"

static void test_config(void)
{
    struct vellum_config c;
    struct verr e;
    config_defaults(&c);
    CHECK_STR(c.listen, "127.0.0.1:9000");
    CHECK_INT(c.workers, 0);
    CHECK_INT(c.socket_mode, 0666);
    CHECK_INT(c.log_level, LOG_LEVEL_INFO);
    CHECK_INT(c.jpeg_quality, 85);

    CHECK_INT(config_set(&c, "workers", "8", "test", &e), 0);
    CHECK_INT(c.workers, 8);
    CHECK_INT(config_set(&c, "WORKERS", "9", "test", &e), 0);
    CHECK_INT(c.workers, 9);
    CHECK_INT(config_set(&c, "image-root", "/srv", "test", &e), 0);
    CHECK_STR(c.image_root, "/srv");

    static const struct {
        const char *key, *value, *needle;
    } bad[] = {
        {"workers", "", "integer from 0 to 1024"},
        {"workers", "1025", "integer from 0 to 1024"},
        {"workers", "-1", "integer from 0 to 1024"},
        {"workers", "4x", "integer from 0 to 1024"},
        {"workers", " 4", "integer from 0 to 1024"},
        {"workers", "99999999999999999999999", "integer from 0 to 1024"},
        {"debug_routes", "maybe", "true or false"},
        {"log_level", "verbose", "error, warn, info or debug"},
        {"socket_mode", "0999", "octal"},
        {"nope", "1", "unknown setting"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.msg[0] = '\0';
        CHECK_INT(config_set(&c, bad[i].key, bad[i].value, "test", &e), -1);
        CHECK_MSG(strstr(e.msg, bad[i].needle) != NULL, "%s=%s: %s", bad[i].key, bad[i].value, e.msg);
        CHECK_MSG(strstr(e.msg, "test") != NULL, "source named: %s", e.msg);
    }
    CHECK_INT(c.workers, 9); /* a refused value leaves the old one */

    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_INT(config_set(&c, "image_root", big, "test", &e), -1);

    /* load: env then flags, flags win; a bare boolean flag means true */
    char *envp[] = {"VELLUM_WORKERS=3", "VELLUM_BASE_URL=https://iiif.example.org/", NULL};
    char *argv[] = {"--workers", "5", "--debug-routes", "--prefix=/v"};
    CHECK_INT(config_load(&c, 4, argv, envp, &e), 0);
    CHECK_INT(c.workers, 5);
    CHECK(c.debug_routes);
    CHECK_STR(c.base_url, "https://iiif.example.org"); /* trailing slash dropped */
    CHECK_STR(c.prefix, "/v");
    char *argv2[] = {"--prefix", "v/"};
    CHECK_INT(config_load(&c, 2, argv2, NULL, &e), -1);
    CHECK(strstr(e.msg, "prefix") != NULL);
}

static void test_request(void)
{
    struct http_request r;
    struct verr e;
    char *env[] = {"REQUEST_METHOD=HEAD", "REQUEST_URI=/v/iiif/3/a%2Fb/info.json?x=1&y=", NULL};
    CHECK_INT(http_request_init(&r, env, "/v", &e), 0);
    CHECK_STR(r.path, "/iiif/3/a%2Fb/info.json");
    CHECK_STR(r.query, "x=1&y=");
    CHECK(r.is_head);
    char v[16];
    CHECK(http_query_get(&r, "x", v, sizeof v));
    CHECK_STR(v, "1");
    CHECK(http_query_get(&r, "y", v, sizeof v));
    CHECK_STR(v, "");
    CHECK(!http_query_get(&r, "z", v, sizeof v));

    char *env2[] = {"REQUEST_URI=/vx/health", NULL};
    CHECK_INT(http_request_init(&r, env2, "/v", &e), -1);
    CHECK_INT(e.status, 404);

    char *huge = malloc(20000);
    strcpy(huge, "REQUEST_URI=/");
    memset(huge + 13, 'a', 19000);
    huge[19013] = '\0';
    char *env3[] = {huge, NULL};
    CHECK_INT(http_request_init(&r, env3, "", &e), -1);
    CHECK_INT(e.status, 414);
    /* query longer than HTTP_MAX_QUERY */
    strcpy(huge, "REQUEST_URI=/health?");
    memset(huge + 20, 'q', HTTP_MAX_QUERY + 1);
    huge[20 + HTTP_MAX_QUERY + 1] = '\0';
    CHECK_INT(http_request_init(&r, env3, "", &e), -1);
    CHECK_INT(e.status, 414);
    huge[20 + HTTP_MAX_QUERY] = '\0'; /* exactly the limit is fine */
    CHECK_INT(http_request_init(&r, env3, "", &e), 0);
    /* too many segments; exactly HTTP_MAX_SEGMENTS is fine */
    strcpy(huge, "REQUEST_URI=");
    for (int i = 0; i < HTTP_MAX_SEGMENTS; i++)
        strcat(huge, "/a");
    CHECK_INT(http_request_init(&r, env3, "", &e), 0);
    strcat(huge, "/a");
    CHECK_INT(http_request_init(&r, env3, "", &e), -1);
    CHECK_INT(e.status, 400);
    free(huge);
}

static void test_base_url(void)
{
    struct vellum_config c;
    config_defaults(&c);
    struct http_request r;
    struct verr e;
    char buf[256];

    char *e1[] = {"REQUEST_URI=/", "HTTP_HOST=localhost:8080", NULL};
    http_request_init(&r, e1, "", &e);
    CHECK_INT(http_base_url(&r, &c, buf, sizeof buf), 0);
    CHECK_STR(buf, "http://localhost:8080");

    char *e2[] = {"REQUEST_URI=/", "HTTP_HOST=a.org", "HTTPS=on", NULL};
    http_request_init(&r, e2, "", &e);
    http_base_url(&r, &c, buf, sizeof buf);
    CHECK_STR(buf, "https://a.org");

    char *e3[] = {"REQUEST_URI=/", "HTTP_HOST=inner", "HTTP_X_FORWARDED_HOST=pub.org",
                  "HTTP_X_FORWARDED_PROTO=https", NULL};
    http_request_init(&r, e3, "", &e);
    http_base_url(&r, &c, buf, sizeof buf);
    CHECK_STR(buf, "https://pub.org");

    /* A Host header with characters no host has is not echoed into ids. */
    char *e4[] = {"REQUEST_URI=/", "HTTP_HOST=evil\"><script>", "SERVER_NAME=srv",
                  "SERVER_PORT=81", NULL};
    http_request_init(&r, e4, "", &e);
    http_base_url(&r, &c, buf, sizeof buf);
    CHECK_STR(buf, "http://srv:81");

    strcpy(c.base_url, "https://iiif.example.org");
    strcpy(c.prefix, "/v");
    http_base_url(&r, &c, buf, sizeof buf);
    CHECK_STR(buf, "https://iiif.example.org/v");
}

struct sink {
    char buf[8192];
    size_t len;
};

static int sink_write(void *ctx, const void *data, size_t len)
{
    struct sink *s = ctx;
    if (s->len + len >= sizeof s->buf)
        return -1;
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
    return 0;
}

static void test_response(void)
{
    struct http_request r;
    struct verr e;
    char *env[] = {"REQUEST_METHOD=GET", "REQUEST_URI=/x", NULL};
    http_request_init(&r, env, "", &e);
    struct http_response resp;
    http_response_init(&resp);
    http_header_add(&resp, "Allow", "GET");
    http_error(&resp, 405, "method \"%s\" not allowed", "PUT");
    struct sink s = {.len = 0};
    size_t n = http_send(&r, &resp, sink_write, &s);
    CHECK(n > 0);
    CHECK(strstr(s.buf, "Status: 405 Method Not Allowed\r\n") == s.buf);
    CHECK(strstr(s.buf, "Access-Control-Allow-Origin: *\r\n") != NULL);
    CHECK(strstr(s.buf, "Allow: GET\r\n") != NULL);
    /* The message is JSON-escaped, not pasted. */
    CHECK(strstr(s.buf, "{\"error\":\"method \\\"PUT\\\" not allowed\",\"status\":405}") != NULL);
    http_response_clear(&resp);

    char *henv[] = {"REQUEST_METHOD=HEAD", "REQUEST_URI=/x", NULL};
    http_request_init(&r, henv, "", &e);
    http_response_init(&resp);
    http_body_copy(&resp, "hello");
    s.len = 0;
    CHECK_INT(http_send(&r, &resp, sink_write, &s), 0);
    CHECK(strstr(s.buf, "Content-Length: 5\r\n") != NULL);
    CHECK(strstr(s.buf, "hello") == NULL);
    http_response_clear(&resp);

    /* An error that happens after the caching headers were added (a decode over a limit, a
     * timeout) goes out as no-store, without the ETag and dates of the image it meant to be. */
    http_request_init(&r, env, "", &e);
    http_response_init(&resp);
    CHECK(!http_cache_headers(&r, &resp, "\"m123\"", 1700000000, 86400));
    http_header_add(&resp, "Link", "<x>;rel=\"canonical\"");
    CHECK(strstr(resp.headers, "max-age=86400") != NULL);
    http_error(&resp, 413, "too big");
    s.len = 0;
    CHECK(http_send(&r, &resp, sink_write, &s) > 0);
    CHECK(strstr(s.buf, "Status: 413 ") == s.buf);
    CHECK(strstr(s.buf, "max-age") == NULL);
    CHECK(strstr(s.buf, "ETag") == NULL);
    CHECK(strstr(s.buf, "Last-Modified") == NULL);
    CHECK(strstr(s.buf, "Cache-Control: no-store\r\n") != NULL);
    CHECK(strstr(s.buf, "Link: <x>;rel=\"canonical\"\r\n") != NULL);
    http_response_clear(&resp);
    /* A success keeps them. */
    http_response_init(&resp);
    CHECK(!http_cache_headers(&r, &resp, "\"m123\"", 1700000000, 86400));
    http_body_copy(&resp, "img");
    s.len = 0;
    CHECK(http_send(&r, &resp, sink_write, &s) > 0);
    CHECK(strstr(s.buf, "max-age=86400") != NULL && strstr(s.buf, "ETag: \"m123\"") != NULL);
    CHECK(strstr(s.buf, "no-store") == NULL);
    http_response_clear(&resp);
}

/* A request path becomes a file only when nginx's decoded $uri is the same string and names
 * no other file: plain characters, no empty or dot-leading segment, bounded length and depth. */
static void test_tile_store_path(void)
{
    static const char *const good[] = {
        "/iiif/3/a.jp2/0,0,256,256/256,/0/default.jpg",
        "/iiif/3/a.jp2/full/!400,400/0/default.jpg",
        "/iiif/3/a.jp2/full/^max/0/default.png",
        "/iiif/2/x/pct:10,10,20,20/full/0/default.jpg",
        "/iiif/3/a-b_c~d+e=f@g.jp2/full/max/!90/gray.png",
        "/a",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_MSG(tile_store_path_ok(good[i]), "should be accepted: %s", good[i]);

    /* Segments shorter than 200 bytes, at most 16 of them. */
    char seg199[256], seg200[256], deep16[64], deep17[64];
    for (int len = 199; len <= 200; len++) {
        char *buf = len == 199 ? seg199 : seg200;
        strcpy(buf, "/iiif/3/");
        memset(buf + 8, 'a', (size_t)len);
        strcpy(buf + 8 + len, "/full/max/0/default.jpg");
    }
    CHECK_INT(strlen(seg200), strlen(seg199) + 1);
    CHECK_MSG(tile_store_path_ok(seg199), "a 199-byte segment is accepted");
    CHECK_MSG(!tile_store_path_ok(seg200), "a 200-byte segment is refused");
    deep16[0] = '\0';
    for (int i = 0; i < 16; i++)
        strcat(deep16, "/s");
    strcpy(deep17, deep16);
    strcat(deep17, "/s");
    CHECK_MSG(tile_store_path_ok(deep16), "16 segments are accepted: %s", deep16);
    CHECK_MSG(!tile_store_path_ok(deep17), "17 segments are refused: %s", deep17);

    static const char *const bad[] = {
        "",
        "/",
        "iiif/3/a.jp2/full/max/0/default.jpg",          /* no leading slash */
        "/iiif/3/sub%2Fa.jp2/full/max/0/default.jpg",   /* an escape: $uri differs */
        "/iiif/3/a%2Ejp2/full/max/0/default.jpg",
        "/iiif/3/../a.jp2/full/max/0/default.jpg",      /* a .. segment */
        "/iiif/3/a.jp2/full/max/0/..",
        "/iiif/3/./a.jp2/full/max/0/default.jpg",
        "/iiif/3/.hidden/full/max/0/default.jpg",       /* a dot-leading segment */
        "/.vellum/stamps/x",
        "/iiif/3//a.jp2/full/max/0/default.jpg",        /* an empty segment */
        "//iiif/3/a.jp2/full/max/0/default.jpg",
        "/iiif/3/a.jp2/full/max/0/",                    /* a trailing slash */
        "/iiif/3/a b.jp2/full/max/0/default.jpg",       /* a space */
        "/iiif/3/a\\b.jp2/full/max/0/default.jpg",      /* a backslash */
        "/iiif/3/caf\xc3\xa9.jp2/full/max/0/default.jpg", /* non-ASCII bytes */
        "/iiif/3/a\x7f.jp2/full/max/0/default.jpg",
        "/iiif/3/a\t.jp2/full/max/0/default.jpg",
        "/iiif/3/a.jp2/full/max/0/default.jpg?x=1",     /* a query string */
        "/iiif/3/a.jp2/full/max/0/default.jpg#f",
        "/iiif/3/a;b.jp2/full/max/0/default.jpg",
        "/iiif/3/a*.jp2/full/max/0/default.jpg",
        "/iiif/3/a\".jp2/full/max/0/default.jpg",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(!tile_store_path_ok(bad[i]), "should be refused: %s", bad[i]);
    CHECK(!tile_store_path_ok(NULL));
}

static void test_memcached_servers(void)
{
    static const char *const good[] = {
        "127.0.0.1:11211", "localhost", "cache-1.example.org:1,10.0.0.2:65535", "a,b,c",
        "mc_1:11211",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_MSG(memcache_servers_ok(good[i]), "should be accepted: %s", good[i]);
    static const char *const bad[] = {
        "", ",", "a,", ",a", "a,,b", "host:", "host:0", "host:65536", "host:99999",
        "host:11211x", "host port", "host;other", ":11211", "a:1:2", "--SERVER=a",
        "[::1]:11211", "h\xc3\xa9:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(!memcache_servers_ok(bad[i]), "should be refused: %s", bad[i]);

    struct vellum_config c;
    struct verr e;
    config_defaults(&c);
    CHECK_STR(c.memcached_servers, "");
    CHECK_INT(c.memcached_ttl_s, 86400);
    CHECK_INT(config_set(&c, "memcached_ttl_s", "2592001", "test", &e) < 0, 1);
}

/* ---- guard.c: a fault in a thread the guarded call started (OpenJPEG's pool, or the parts of a
 * split JPEG 2000 decode) is handed to the guarded thread, which answers; that thread parks. */

static void *faulting_thread(void *arg)
{
    (void)arg;
    abort(); /* as a failed assert() inside a decoder does */
    return NULL;
}

static int call_with_thread(void *ctx)
{
    pthread_t th;
    (void)ctx;
    if (pthread_create(&th, NULL, faulting_thread, NULL) != 0)
        return 2;
    (void)pthread_join(th, NULL); /* never returns: the signal comes here first */
    return 3;
}

static int call_returning(void *ctx)
{
    return *(int *)ctx;
}

static void test_guard(void)
{
    int sig = -1, seven = 7;
    CHECK_INT(guard_run(call_returning, &seven, &sig), 7);
    CHECK_INT(sig, 0);
    sig = 0;
    pid_t me = gettid();
    int rc = guard_run(call_with_thread, NULL, &sig);
    CHECK_MSG(rc == -1 && sig == SIGABRT,
              "an abort in a thread the guarded call started: rc %d, signal %d (want -1, %d)", rc,
              sig, SIGABRT);
    /* Jumping from the faulting thread would go on here on that thread's own stack instead. */
    CHECK_MSG(gettid() == me, "the guarded call returned on its own thread (%d, not %d)",
              (int)gettid(), (int)me);
    /* the guard is disarmed again: a normal call still returns its value */
    CHECK_INT(guard_run(call_returning, &seven, &sig), 7);
}

int main(void)
{
    test_guard();
    test_config();
    test_request();
    test_base_url();
    test_response();
    test_tile_store_path();
    test_memcached_servers();
    return CHECK_DONE();
}
