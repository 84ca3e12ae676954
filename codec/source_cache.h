/* source_cache.h: identifier -> file under the image root, and a small per-worker cache of
 * parsed source headers, so info.json and tiles do not re-read a header they have seen. */
#ifndef VELLUM_SOURCE_CACHE_H
#define VELLUM_SOURCE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"

/* Resolve a decoded identifier to a regular file under root; the resolved path (symlinks
 * followed) must stay inside root's resolved path. 400 for identifiers that are not relative
 * paths (absolute, "..", empty segments, control bytes), 404 for anything that is not a
 * readable regular file under the root. out receives the resolved path. */
int codec_resolve(const char *root, const char *identifier, char *out, size_t out_len,
                  struct verr *err);

/* What a cached entry says about its file, to validate it and to build ETags. */
struct source_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
};

/* The stamp of the file at path now (stat); -1 when it cannot be read. */
int source_stamp_read(const char *path, struct source_stamp *out);
bool source_stamp_equal(const struct source_stamp *a, const struct source_stamp *b);

struct source_cache;

/* A cache of at most max_entries headers, least recently used evicted first. */
struct source_cache *source_cache_new(size_t max_entries);
void source_cache_free(struct source_cache *c);

/* The header of the file at path (a resolved path), probed on a miss or when the file changed
 * since it was cached (device, inode, size or mtime differ). The returned info belongs to the
 * cache and stays valid until the next call. */
int source_cache_get(struct source_cache *c, const char *path, uint64_t max_pixels,
                     const struct codec_info **info, struct source_stamp *stamp,
                     struct verr *err);

#endif
