/* memcache.h: images shared between Vellum hosts through memcached (optional).
 *
 * With memcached_servers set, a worker looks an image up in memcached before rendering it, and
 * puts every image it renders there once the response is out. The key is the image's strong
 * ETag (a hash of the source file's device, inode, size and mtime, the canonical request and
 * the encoder quality), so a replaced source never meets its old images, two URLs for the same
 * canonical request share an entry, and any identifier fits memcached's key rules. Several
 * hosts pointing at the same servers share what each one decoded; libmemcached spreads keys over
 * the servers with consistent hashing (ketama), the same on every host. memcached's own LRU and
 * the entries' expiry (memcached_ttl) bound it.
 *
 * Failures cost little: every call has short timeouts, a server that fails is left alone for a
 * while (RETRY_S below), and a lookup that fails is a miss. */
#ifndef VELLUM_MEMCACHE_H
#define VELLUM_MEMCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct memcache;

struct memcache_stats {
    uint64_t hits, misses, stored, errors;
};

/* Whether servers is a list "host:port,host:port" (host names or IPv4 addresses; ports
 * 1..65535, 11211 when omitted). */
bool memcache_servers_ok(const char *servers);

/* A client for servers ("host:port,host:port"; port 11211 when omitted), entries kept ttl_s
 * seconds (0 = until memcached evicts them). No connection is made here. NULL with err when the
 * list does not parse or memory runs out. */
struct memcache *memcache_open(const char *servers, long ttl_s, struct verr *err);
void memcache_close(struct memcache *m);

/* The image stored under etag (its quotes included or not), as a malloc'd buffer the caller
 * frees; NULL on a miss or any failure. */
unsigned char *memcache_get(struct memcache *m, const char *etag, size_t *len);

/* Store an image under etag; 0, or -1 when memcached refused it (too big, unreachable). */
int memcache_put(struct memcache *m, const char *etag, const unsigned char *body, size_t len);

void memcache_stats(const struct memcache *m, struct memcache_stats *s);

#endif
