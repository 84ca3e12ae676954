/* block_cache.h: decoded JPEG 2000 blocks shared by all workers, as files in one directory
 * (a tmpfs such as /dev/shm by default).
 *
 * A deep-zoom viewer asks for a level's tiles together. Decoding a 1024x1024 block of a level
 * costs about a fifth of decoding its sixteen 256x256 tiles one by one (OpenJPEG re-reads and
 * re-parses the codestream, and decodes overlapping code-blocks, for each), so a tile request
 * decodes the aligned block around it once, stores its pixels, and crops; the next tiles of
 * that block, in any worker, only crop. Workers coordinate with flock(): the first to miss
 * decodes while the others wait for the file. The directory is capped in size, least recently
 * used blocks removed first. */
#ifndef VELLUM_BLOCK_CACHE_H
#define VELLUM_BLOCK_CACHE_H

#include <stdint.h>

#include "codec.h"

/* The default block_size: a block covers at most this many pixels of the full-resolution
 * image per side (block_shape() in block_cache.c has the rule per level); blocks are aligned to
 * their level's grid. block_cache_open takes another. */
#define BLOCK_CACHE_SIZE 1024

struct block_cache;

/* Open (creating it, mode 0700) the cache directory dir, capped at max_bytes, with blocks of
 * block_size = block (64..8192, else BLOCK_CACHE_SIZE). The directory must be a real
 * directory (not a symlink) owned by this user and writable by no one else; otherwise NULL
 * with err set (the caller serves without the cache). */
struct block_cache *block_cache_open(const char *dir, uint64_t max_bytes, uint32_t block,
                                     struct verr *err);

/* CPU tokens shared by all workers through the cache folder, one per core: take at least one
 * (waiting when none is free) and up to max; returns how many (= decode threads to use), with
 * *held to give back to block_cache_cpu_release(). With c NULL (no cache, no tokens): max,
 * nothing held. */
int block_cache_cpu_acquire(struct block_cache *c, int max, uint64_t *held);
void block_cache_cpu_release(struct block_cache *c, uint64_t held);
void block_cache_close(struct block_cache *c);

/* The directory used when none is configured: /dev/shm/vellum-<uid>, or under $TMPDIR (/tmp). */
void block_cache_default_dir(char *out, size_t len);

/* Decode req's region of the source at path through the cache. source_key names the file's
 * version (device, inode, size, mtime). queued: other requests are waiting for a worker, so a
 * miss makes fewer, larger blocks where that saves decoding (block_shape in block_cache.c). A JPEG 2000 miss decodes the block around the region; a
 * JPEG miss decodes the band of the level around it (one block high, the image's width), a PNG
 * miss (and the miss of a JPEG its EXIF orientation turns) the whole level, and stores all of
 * their blocks; a JPEG or PNG region that spans several blocks is put together from them.
 * Returns 0 with *out set, -1 with err set, or 1 when the cache cannot serve the request (a JPEG
 * 2000 region larger than a block, a band too big for the cache, a decode that failed): the
 * caller then decodes the region itself. The pixels are exactly those codec_decode() gives for the same region.
 * *use says how (for Server-Timing). */
int block_cache_decode(struct block_cache *c, uint64_t source_key, const char *path,
                       const struct codec_info *info, const struct codec_decode_req *req,
                       bool queued, struct codec_image **out, enum codec_block_use *use,
                       struct verr *err);


/* Counters of this process (for tests and /health). */
struct block_cache_stats {
    uint64_t hits, misses, waits, stored, evicted, bypassed;
};
void block_cache_stats(const struct block_cache *c, struct block_cache_stats *s);

/* Bring the folder back under its cap if this process stored a block since the last call.
 * A worker calls it once a response is out: the scan is work no client needs to wait for.
 * Until then the folder may exceed the cap by what one request stored. */
void block_cache_tidy(struct block_cache *c);

#endif
