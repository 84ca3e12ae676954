/* memcache.c: see memcache.h. A thin layer over libmemcached: one client per worker, created on
 * first use (after fork), with timeouts short enough that a dead server costs a request a few
 * milliseconds at most, once per RETRY_S. */
#include "memcache.h"

#include <ctype.h>
#include <libmemcached/memcached.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define KEY_PREFIX "vellum:"
#define CONNECT_MS 100    /* a server on the same network answers in well under 1 ms */
#define IO_MS 250         /* the longest wait for one reply (a large image over a slow link) */
#define RETRY_S 2         /* a failed server is left alone this long, then tried again */
#define MAX_TTL_S 2592000 /* memcached reads larger expiry times as absolute dates */

#define LOG_EVERY_S 60 /* a worker logs a memcached failure at most this often */

struct memcache {
    memcached_st *mc;
    long ttl_s;
    time_t logged; /* when this worker last logged a failure */
    struct memcache_stats stats;
};

/* Count a failure, and say what it was now and then (an outage fails every request). */
static void failed(struct memcache *m, memcached_return_t rc, const char *what)
{
    m->stats.errors++;
    time_t now = time(NULL);
    if (m->logged == 0 || now - m->logged >= LOG_EVERY_S) {
        m->logged = now;
        log_msg(LOG_LEVEL_WARN,
                "memcached %s failed: %s (%llu failures in this worker so far; "
                "images are decoded as without memcached)",
                what, memcached_strerror(m->mc, rc), (unsigned long long)m->stats.errors);
    }
}

/* Whether rc is a failure of a connection that was fine before (the server restarted): it is
 * closed now, so asking again opens a new one. A server marked failed answers again at once. */
static bool reconnect_may_help(memcached_return_t rc)
{
    return rc == MEMCACHED_CONNECTION_FAILURE || rc == MEMCACHED_WRITE_FAILURE ||
           rc == MEMCACHED_READ_FAILURE || rc == MEMCACHED_UNKNOWN_READ_FAILURE ||
           rc == MEMCACHED_ERRNO;
}

/* libmemcached's own parser accepts nearly anything (a typo becomes a server that never
 * answers), so the list is checked here, and config_load makes a mistake an error at startup. */
bool memcache_servers_ok(const char *s)
{
    size_t n = 0;
    while (*s) {
        size_t host = 0;
        while (isalnum((unsigned char)s[host]) || s[host] == '.' || s[host] == '-' ||
               s[host] == '_')
            host++;
        if (host == 0)
            return false;
        s += host;
        if (*s == ':') {
            char *end;
            long port = strtol(s + 1, &end, 10);
            if (end == s + 1 || port < 1 || port > 65535)
                return false;
            s = end;
        }
        n++;
        if (*s == ',' && s[1])
            s++;
        else if (*s)
            return false;
    }
    return n > 0;
}

struct memcache *memcache_open(const char *servers, long ttl_s, struct verr *err)
{
    if (!memcache_servers_ok(servers)) {
        verr_set(err, 500, "memcached_servers \"%.200s\" is not a list of host:port", servers);
        return NULL;
    }
    struct memcache *m = calloc(1, sizeof *m);
    memcached_server_list_st list = memcached_servers_parse(servers);
    if (!m || !list || !(m->mc = memcached_create(NULL)) ||
        memcached_server_push(m->mc, list) != MEMCACHED_SUCCESS) {
        verr_set(err, 500, "cannot set up the memcached client for %.200s", servers);
        if (list)
            memcached_server_list_free(list);
        memcache_close(m);
        return NULL;
    }
    memcached_server_list_free(list);
    m->ttl_s = ttl_s < 0 ? 0 : ttl_s > MAX_TTL_S ? MAX_TTL_S : ttl_s;
    static const struct {
        memcached_behavior_t flag;
        uint64_t value;
    } behaviour[] = {
        {MEMCACHED_BEHAVIOR_KETAMA, 1},   /* consistent hashing, the same on every host */
        {MEMCACHED_BEHAVIOR_NO_BLOCK, 1}, /* needed for the connect timeout to apply */
        {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1},
        {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, CONNECT_MS},
        {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, IO_MS},
        {MEMCACHED_BEHAVIOR_SND_TIMEOUT, IO_MS * 1000},
        {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, IO_MS * 1000},
        /* A failed server is not asked again for RETRY_S: its keys are misses meanwhile. (Not
         * REMOVE_FAILED_SERVERS: moving its keys to the others would have hosts disagree on
         * where a key lives, and libmemcached never brings back the last server it removed.) */
        {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, RETRY_S},
    };
    for (size_t i = 0; i < sizeof behaviour / sizeof behaviour[0]; i++)
        (void)memcached_behavior_set(m->mc, behaviour[i].flag, behaviour[i].value);
    return m;
}

void memcache_close(struct memcache *m)
{
    if (!m)
        return;
    if (m->mc)
        memcached_free(m->mc);
    free(m);
}

/* KEY_PREFIX and the ETag's value without its quotes: "vellum:m0123456789abcdef". */
static size_t make_key(const char *etag, char *key, size_t cap)
{
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
        etag++;
        n -= 2;
    }
    if (n == 0 || sizeof KEY_PREFIX - 1 + n >= cap)
        return 0;
    memcpy(key, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    memcpy(key + sizeof KEY_PREFIX - 1, etag, n);
    key[sizeof KEY_PREFIX - 1 + n] = '\0';
    return sizeof KEY_PREFIX - 1 + n;
}

unsigned char *memcache_get(struct memcache *m, const char *etag, size_t *len)
{
    char key[128];
    size_t klen = m ? make_key(etag, key, sizeof key) : 0;
    *len = 0;
    if (!klen)
        return NULL;
    uint32_t flags = 0;
    memcached_return_t rc;
    size_t n = 0;
    char *v = memcached_get(m->mc, key, klen, &n, &flags, &rc);
    if (!v && reconnect_may_help(rc))
        v = memcached_get(m->mc, key, klen, &n, &flags, &rc);
    if (v && memcached_success(rc) && n > 0) {
        m->stats.hits++;
        *len = n;
        return (unsigned char *)v;
    }
    free(v);
    if (rc == MEMCACHED_NOTFOUND || memcached_success(rc))
        m->stats.misses++;
    else
        failed(m, rc, "get");
    return NULL;
}

int memcache_put(struct memcache *m, const char *etag, const unsigned char *body, size_t len)
{
    char key[128];
    size_t klen = m ? make_key(etag, key, sizeof key) : 0;
    if (!klen || !body || len == 0)
        return -1;
    memcached_return_t rc =
        memcached_set(m->mc, key, klen, (const char *)body, len, (time_t)m->ttl_s, 0);
    if (!memcached_success(rc) && reconnect_may_help(rc))
        rc = memcached_set(m->mc, key, klen, (const char *)body, len, (time_t)m->ttl_s, 0);
    if (!memcached_success(rc)) {
        failed(m, rc, "set");
        return -1;
    }
    m->stats.stored++;
    return 0;
}

void memcache_stats(const struct memcache *m, struct memcache_stats *s)
{
    if (m)
        *s = m->stats;
    else
        memset(s, 0, sizeof *s);
}
