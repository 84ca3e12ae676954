/* tile_store.h: image responses kept as plain files for the web server to send.
 *
 * With tile_store_dir set, every image Vellum makes for a plain GET is written under dir, one
 * file per image in a folder per identifier (handle_image.c: for
 * /iiif/3/a.jp2/0,0,256,256/256,/0/default.jpg, the file
 * <dir>/iiif/3/a.jp2/0,0,256,256_256,_0_default.jpg), and the nginx block of docs/deploy.md
 * (a regex location and try_files) answers the next request for it as a static file, without
 * Vellum. Files are named by the request path decoded once, as nginx's $uri is, and only
 * names that pass tile_store_path_ok are written, so the file nginx finds for a URL is the one
 * Vellum wrote for that request.
 *
 * Layout under dir:
 *   <identifier folder>/<file>  the images, mode 0644 in folders of mode 0755 (nginx reads them)
 *   .vellum/bytes         the store's size, a counter shared by the workers (mmap)
 *   .vellum/stamps/<h>    which source file (device, inode, size, mtime) an identifier's
 *                         folder was made from; a different file empties the folder
 *   .vellum/evict.lock    held by the worker that trims the store
 *   .vellum/trash/        folders being removed
 * .vellum is reachable by no URL: the web server uses dir as root only under /iiif/. */
#ifndef VELLUM_TILE_STORE_H
#define VELLUM_TILE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct tile_store;

struct tile_store_stats {
    uint64_t stored, evicted, invalidated, bytes;
    uint64_t spared; /* files a trim kept because the web server had sent them since */
    bool by_use;     /* the store's file system records reads (not mounted noatime) */
};

/* Open (creating it and .vellum if needed) the store at dir, capped at max_bytes. The folder
 * must belong to this user and be writable by no one else. NULL with err on failure. */
struct tile_store *tile_store_open(const char *dir, uint64_t max_bytes, struct verr *err);
void tile_store_close(struct tile_store *s);

/* Whether a request path (decoded once, no query string) may become a file: '/' separated
 * segments of letters, digits and - _ . ~ ! , : ^ + = @ only, none empty, none starting with
 * '.', each shorter than 200 bytes, at most 16 of them. No '%' is left to decode, and no
 * segment can climb out of the store. */
bool tile_store_path_ok(const char *path);

/* Make sure the files under id_dir (a request path's folder for one identifier, e.g.
 * "/iiif/3/a.jp2") come from the source with this stamp: when another stamp is recorded, the
 * folder is removed first. Returns 0, or -1 when the store cannot vouch for the folder (then
 * nothing must be put under it). */
int tile_store_check(struct tile_store *s, const char *id_dir, const void *stamp, size_t len);

/* Write body as the file at path (tile_store_path_ok) under the store, atomically (a temporary
 * name, then rename), and trim the store to 3/4 of its cap when it passes the cap: files the web
 * server has not sent for longest go first (CLOCK on the files' access times; oldest stored
 * first on a noatime mount). Returns 0 or -1 (nothing stored; the response is unaffected). */
int tile_store_put(struct tile_store *s, const char *path, const unsigned char *body, size_t len);

/* This worker's counters and the store's size; zeros for NULL. */
void tile_store_stats(const struct tile_store *s, struct tile_store_stats *out);

#endif
