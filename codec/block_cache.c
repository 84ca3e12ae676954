/* block_cache.c: see block_cache.h.
 *
 * Files, all under one directory descriptor (openat & co, never following symlinks):
 *   <key>.blk         a decoded block: struct blk_header, then w*h*channels bytes
 *   <key>.lock        taken with flock(LOCK_EX) by the worker decoding <key>; unlinked after
 *   <key>.tmp.<pid>   a block being written; renamed to <key>.blk when complete
 * A reader only ever sees a complete .blk (rename is atomic). Whoever takes a lock looks for
 * the .blk again before decoding, so unlinking the lock file while others wait on it is safe:
 * they find the block when they get the lock. A worker killed while decoding releases its lock
 * with its death; its .tmp is removed by the next eviction scan. */
#include "block_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "source_internal.h"

#define BLK_MAGIC 0x314b4c42564c4556ull /* "VELVBLK1" */
#define TMP_MAX_AGE_S 60

struct blk_header {
    uint64_t magic;
    uint64_t key_check; /* the hash the file name was made of: a renamed file is not trusted */
    uint32_t w, h;
    uint32_t channels;
    uint32_t reserved;
};

#define BLOCK_MIN 256 /* smallest block side: the tile size most viewers ask for */
#define MAX_TOKENS 64 /* bits of the mask cpu_acquire hands back */

struct block_cache {
    int dirfd;
    uint64_t max_bytes;
    uint32_t block;           /* block_size: most a block covers of the full image, per side */
    int ncpu;                 /* CPU tokens: cpu-<i>.tok, one per core */
    int tok_fd[MAX_TOKENS];
    bool tidy;                /* a block was stored: check the cap (block_cache_tidy) */
    struct block_cache_stats stats;
};

void block_cache_default_dir(char *out, size_t len)
{
    struct stat st;
    const char *base = "/dev/shm";
    if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode)) {
        base = getenv("TMPDIR");
        if (!base || !*base)
            base = "/tmp";
    }
    snprintf(out, len, "%s/vellum-%u", base, (unsigned)geteuid());
}

struct block_cache *block_cache_open(const char *dir, uint64_t max_bytes, uint32_t block,
                                     struct verr *err)
{
    if (block < 64 || block > 8192)
        block = BLOCK_CACHE_SIZE;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        verr_set(err, 500, "cannot create the block cache directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        verr_set(err, 500, "cannot open the block cache directory %s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    /* Another local user must not be able to plant blocks (pixels we would serve) or links. */
    if (st.st_uid != geteuid() || (st.st_mode & 022)) {
        verr_set(err, 500, "block cache directory %s must be owned by uid %u and writable by no "
                 "one else (it is uid %u, mode %03o)", dir, (unsigned)geteuid(),
                 (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
        close(fd);
        return NULL;
    }
    struct block_cache *c = calloc(1, sizeof *c);
    if (!c) {
        verr_set(err, 500, "out of memory");
        close(fd);
        return NULL;
    }
    c->dirfd = fd;
    c->max_bytes = max_bytes;
    c->block = block;
    int n = codec_cpu_count();
    c->ncpu = n > MAX_TOKENS ? MAX_TOKENS : n;
    for (int i = 0; i < MAX_TOKENS; i++)
        c->tok_fd[i] = -1;
    return c;
}

void block_cache_close(struct block_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->ncpu; i++)
        if (c->tok_fd[i] >= 0)
            close(c->tok_fd[i]);
    close(c->dirfd);
    free(c);
}

void block_cache_stats(const struct block_cache *c, struct block_cache_stats *s)
{
    if (c)
        *s = c->stats;
    else
        memset(s, 0, sizeof *s);
}

/* ---- CPU tokens -------------------------------------------------------------------------
 * One file per core in the cache folder; a decode holds one with flock() while it runs, and a
 * block decode also takes whichever others are free, one OpenJPEG thread per token. So decodes
 * of all workers together never run more threads than there are cores, and a block decode uses
 * the cores that other workers leave idle (while they wait for that very block, typically). */

static bool token_try(struct block_cache *c, int k, bool wait)
{
    if (c->tok_fd[k] < 0) {
        char name[32];
        snprintf(name, sizeof name, "cpu-%d.tok", k);
        c->tok_fd[k] = openat(c->dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (c->tok_fd[k] < 0)
            return false;
    }
    return flock(c->tok_fd[k], wait ? LOCK_EX : LOCK_EX | LOCK_NB) == 0;
}

int block_cache_cpu_acquire(struct block_cache *c, int max, uint64_t *held)
{
    *held = 0;
    if (!c)
        return max > 1 ? max : 1;
    int n = 0, start = (int)(getpid() % c->ncpu);
    for (int i = 0; i < c->ncpu && n < max; i++) {
        int k = (start + i) % c->ncpu;
        if (token_try(c, k, false)) {
            *held |= 1ull << k;
            n++;
        }
    }
    /* None free: every core is decoding; wait for ours (our share of the machine). */
    if (n == 0 && token_try(c, start, true)) {
        *held |= 1ull << start;
        n = 1;
    }
    return n > 0 ? n : 1;
}

void block_cache_cpu_release(struct block_cache *c, uint64_t held)
{
    for (int k = 0; c && k < c->ncpu; k++)
        if (held & (1ull << k))
            (void)flock(c->tok_fd[k], LOCK_UN);
}

/* ---- geometry ---------------------------------------------------------------------------- */

/* The block around a request, on one axis, at reduction r. Reduced pixel p covers the reference
 * grid from p*2^r; the image starts at origin o. */
struct axis {
    uint64_t p0, p1;     /* the request's reduced pixels [p0, p1) */
    uint64_t lo, hi;     /* the block's reduced pixels [lo, hi) */
    uint32_t full0, len; /* the block as a region of the image, full resolution */
    uint64_t index;      /* which block along this axis */
};

/* The block grid at level r. A block decode is what the first tile of a block waits for, so
 * its cost is bounded, not just its size: a block never covers more than block_size x
 * block_size pixels of the full-resolution image (at level r, block_size >> r, but at least
 * BLOCK_MIN: the same compressed data, and the same decode time, at every level), and an
 * untiled source's full-resolution blocks are half as tall. Decoding a region of an untiled
 * JPEG 2000 pays code-block and wavelet margins on every side, where a tiled source's blocks
 * line up with its tiles: a 1024x1024 block at full resolution costs about 3x as much there
 * (docs/performance.md has the measurements). The same margins make an untiled source's
 * smallest blocks (scale factor 4 and coarser) cost about as much as a block twice as wide and
 * tall (48 ms against 94 for four times the pixels): while requests queue for a worker
 * (queued), the wait for one decode matters less than how many there are, and those blocks are
 * 2 x BLOCK_MIN a side. */
static void block_shape(const struct block_cache *c, const struct codec_info *info, int r,
                        bool queued, uint32_t *w, uint32_t *h)
{
    uint32_t min = c->block < BLOCK_MIN ? c->block : BLOCK_MIN;
    uint32_t side = r < 31 ? c->block >> r : 0;
    *w = *h = side < min ? min : side;
    if (r == 0 && info->tile_w == 0 && *h / 2 >= min)
        *h /= 2;
    if (queued && info->tile_w == 0 && side <= min && 2 * min <= c->block)
        *w = *h = 2 * min;
}

static int block_axis(uint64_t o, uint64_t size, uint64_t p0, uint64_t p1, int r,
                      uint32_t block, struct axis *a)
{
    a->p0 = p0;
    a->p1 = p1;
    a->index = a->p0 / block;
    uint64_t start = a->index * block, end = start + block;
    if (a->p1 > end || a->p1 <= a->p0)
        return -1;
    uint64_t img_lo = codec_src_ceil_shift(o, r), img_hi = codec_src_ceil_shift(o + size, r);
    a->lo = start > img_lo ? start : img_lo;
    a->hi = end < img_hi ? end : img_hi;
    uint64_t g0 = start << r, g1 = end << r; /* on the reference grid */
    if (g0 < o)
        g0 = o;
    if (g1 > o + size)
        g1 = o + size;
    a->full0 = (uint32_t)(g0 - o);
    a->len = (uint32_t)(g1 - g0);
    return 0;
}

/* ---- files ------------------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static struct codec_image *crop(const unsigned char *px, uint32_t bw, int ch, uint32_t x,
                                uint32_t y, uint32_t w, uint32_t h)
{
    struct codec_image *img = codec_image_new(w, h, ch);
    if (!img)
        return NULL;
    size_t row = (size_t)w * (size_t)ch, stride = (size_t)bw * (size_t)ch;
    for (uint32_t j = 0; j < h; j++)
        memcpy(img->px + j * row, px + (size_t)(y + j) * stride + (size_t)x * (size_t)ch, row);
    return img;
}

/* What a request wants from one stored block: the block (file name, key check, size) and the
 * request's w x h pixels at (x, y) inside it. */
struct want {
    char name[64];
    uint64_t check;
    uint32_t bw, bh;
    int ch;
    uint32_t x, y, w, h;
};

/* Crop wt's pixels from its stored block; 0 on success, 1 when absent or unusable, -1 (err set)
 * when out of memory. */
static int load(struct block_cache *c, const struct want *wt, struct codec_image **out,
                struct verr *err)
{
    const char *name = wt->name;
    uint64_t check = wt->check;
    uint32_t bw = wt->bw, bh = wt->bh, x = wt->x, y = wt->y, w = wt->w, h = wt->h;
    int ch = wt->ch;
    int fd = openat(c->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 1;
    struct stat st;
    size_t need = sizeof(struct blk_header) + (size_t)bw * bh * (size_t)ch;
    int rc = 1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == need) {
        void *map = mmap(NULL, need, PROT_READ, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            const struct blk_header *hd = map;
            if (hd->magic == BLK_MAGIC && hd->key_check == check && hd->w == bw && hd->h == bh &&
                hd->channels == (uint32_t)ch) {
                *out = crop((const unsigned char *)(hd + 1), bw, ch, x, y, w, h);
                rc = *out ? 0 : verr_set(err, 500, "out of memory for a %ux%u region", w, h);
            }
            munmap(map, need);
        }
        if (rc == 0)
            (void)futimens(fd, NULL); /* recently used: evicted last */
    }
    close(fd);
    if (rc == 1)
        (void)unlinkat(c->dirfd, name, 0); /* wrong size or header: not ours to keep */
    return rc;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

struct entry {
    int64_t mtime_ns;
    off_t bytes;
    char name[64];
};

static int by_age(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

/* Keep the directory under max_bytes: oldest blocks go first, down to 3/4 of it. Also removes
 * temporary files a killed worker left behind. It reads the whole folder (about 0.3 ms with a
 * few hundred blocks), so it runs after a response (block_cache_tidy), not while a client and
 * the workers waiting for the block wait. Races with other workers doing the same are
 * harmless (a file already gone is skipped; an open or mapped block stays readable). */
static void evict(struct block_cache *c)
{
    int fd = openat(c->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct entry *list = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len >= sizeof list->name ||
            fstatat(c->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (strstr(de->d_name, ".tmp.")) {
            if (now - st.st_mtime > TMP_MAX_AGE_S)
                (void)unlinkat(c->dirfd, de->d_name, 0);
            continue;
        }
        if (len < 4 || strcmp(de->d_name + len - 4, ".blk") != 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct entry *grown = realloc(list, ncap * sizeof *list);
            if (!grown)
                break;
            list = grown;
            cap = ncap;
        }
        list[n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        list[n].bytes = st.st_size;
        memcpy(list[n].name, de->d_name, len + 1);
        total += (uint64_t)st.st_size;
        n++;
    }
    closedir(d);
    if (total > c->max_bytes) {
        qsort(list, n, sizeof *list, by_age);
        for (size_t i = 0; i < n && total > c->max_bytes / 4 * 3; i++) {
            if (unlinkat(c->dirfd, list[i].name, 0) == 0)
                c->stats.evicted++;
            total -= (uint64_t)list[i].bytes;
        }
    }
    free(list);
}

void block_cache_tidy(struct block_cache *c)
{
    if (c && c->tidy) {
        c->tidy = false;
        evict(c);
    }
}

static void store(struct block_cache *c, const char *name, uint64_t check,
                  const struct codec_image *img)
{
    size_t bytes = (size_t)img->w * img->h * (size_t)img->channels;
    if (sizeof(struct blk_header) + bytes > c->max_bytes / 4)
        return; /* would push out most of the cache for one block */
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", name, (int)getpid());
    int fd = openat(c->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    struct blk_header hd = {BLK_MAGIC, check, img->w, img->h, (uint32_t)img->channels, 0};
    int ok = write_all(fd, &hd, sizeof hd) == 0 && write_all(fd, img->px, bytes) == 0;
    close(fd);
    if (ok && renameat(c->dirfd, tmp, c->dirfd, name) == 0) {
        c->stats.stored++;
        c->tidy = true;
    } else {
        (void)unlinkat(c->dirfd, tmp, 0);
    }
}

static uint64_t block_key(uint64_t source_key, int r, uint64_t ix, uint64_t iy, int ch,
                          uint32_t sw, uint32_t sh)
{
    return mix(mix(mix(mix(source_key, (uint64_t)r), ix), iy),
               (uint64_t)ch << 32 | (uint64_t)sw << 16 | sh);
}

/* A miss: take the lock file lockname (one worker decodes, the others wait here) and look for
 * the block again. 0 or -1 as load() when another worker stored it meanwhile (counted as a
 * wait; the lock is given back); 1 to decode it, with the lock in *lk (-1 when it could not be
 * taken: decode anyway). */
static int take_turn(struct block_cache *c, const char *lockname, const struct want *wt, int *lk,
                     struct codec_image **out, enum codec_block_use *use, struct verr *err)
{
    *lk = openat(c->dirfd, lockname, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*lk < 0 || flock(*lk, LOCK_EX) != 0)
        return 1;
    int rc = load(c, wt, out, err);
    if (rc <= 0) {
        close(*lk);
        *lk = -1;
        if (rc == 0) {
            c->stats.waits++;
            *use = CODEC_BLOCK_HIT;
        }
    }
    return rc;
}

/* After the decode: the waiters find the file; the lock file goes (see the top of this file). */
static void give_turn(struct block_cache *c, const char *lockname, int lk)
{
    if (lk >= 0) {
        (void)unlinkat(c->dirfd, lockname, 0);
        close(lk);
    }
}

/* A miss of a JPEG or PNG source (no random access to a region there) fills a band of the level:
 * one decode, and every block of the band stored, so the next tiles of the band, in any worker,
 * are hits. A JPEG region costs its own rows plus a cheaper entropy-only pass over the rows above
 * (jpeg_src.c), so a JPEG band is one block high and the image's width: the first tile of a band
 * waits for that band only. A PNG region costs every row down to its bottom, so a PNG band is
 * the whole level, decoded once as codec_decode() would for any region of it; so is the band
 * of a JPEG whose EXIF orientation turns it (5-8), whose displayed rows are stored columns
 * (a mirrored one keeps its rows, upside down at worst). A band is decoded as the region it is,
 * so the decoder's own rounding puts its rows where the level has them. Blocks are on the
 * grid and under the names a JPEG 2000 block would have. One lock per band: the workers that
 * miss elsewhere in it meanwhile wait for that decode instead of repeating it. Returns as
 * block_cache_decode; the request (wt) is at (ax->p0, ay->p0) of the level. */
static int fill_band(struct block_cache *c, uint64_t source_key, const char *path,
                     const struct codec_info *info, const struct codec_decode_req *req, int r,
                     uint32_t sw, uint32_t sh, const struct axis *ax, const struct axis *ay,
                     const struct want *wt, struct codec_image **out, enum codec_block_use *use,
                     struct verr *err)
{
    int ch = info->channels;
    uint32_t lw = (uint32_t)codec_src_ceil_shift(info->width, r);
    uint32_t lh = (uint32_t)codec_src_ceil_shift(info->height, r);
    /* What one decode covers: rows [u0, u1) of the level, as the image region [y, y + h). */
    bool band = info->format == CODEC_FORMAT_JPEG && info->orientation <= 4; /* not turned */
    uint32_t u0 = band ? (uint32_t)ay->index * sh : 0;
    uint32_t u1 = band && lh - u0 > sh ? u0 + sh : lh;
    uint64_t y = (uint64_t)u0 << r;
    uint64_t h = ((uint64_t)u1 << r) < info->height ? ((uint64_t)u1 << r) - y : info->height - y;
    /* The decoder must pick level r for that region too (as it does unless the image is a
     * pixel or two wide at that level), and the decode may take at most half the cache. */
    if (codec_src_pick_reduction(0, y, info->width, h, lw, u1 - u0, info->levels) != r ||
        (uint64_t)lw * (u1 - u0) * (uint64_t)ch > c->max_bytes / 2) {
        c->stats.bypassed++;
        return 1;
    }
    char lockname[64];
    uint64_t unit = band ? mix(ay->index, 0x42414e44ull /* BAND */) : 0x4c4556454cull /* LEVEL */;
    snprintf(lockname, sizeof lockname, "%016llx.lock",
             (unsigned long long)mix(mix(source_key, (uint64_t)r), unit));
    int lk, rc = take_turn(c, lockname, wt, &lk, out, use, err);
    if (rc <= 0)
        return rc;
    c->stats.misses++;
    uint64_t held;
    (void)block_cache_cpu_acquire(c, 1, &held); /* libjpeg and libpng use one thread */
    const struct codec_decode_req whole = {
        .x = 0, .y = (uint32_t)y, .w = info->width, .h = (uint32_t)h, .want_w = lw,
        .want_h = u1 - u0, .max_pixels = req->max_pixels, .max_bytes = req->max_bytes,
        .threads = 1,
    };
    struct codec_image *img = NULL;
    struct verr werr;
    rc = 1; /* whatever goes wrong, the caller decodes the region itself */
    int drc = codec_decode(path, info, &whole, &img, &werr);
    block_cache_cpu_release(c, held);
    if (drc == 0 && img && img->w == lw && img->h == u1 - u0 && img->channels == ch) {
        *out = crop(img->px, lw, ch, (uint32_t)ax->p0, (uint32_t)ay->p0 - u0, wt->w, wt->h);
        rc = *out ? 0 : 1;
        for (uint64_t by = u0 / sh; rc == 0 && by * sh < u1; by++) {
            for (uint64_t bx = 0; bx * sw < lw; bx++) {
                uint32_t x0 = (uint32_t)(bx * sw), y0 = (uint32_t)(by * sh);
                uint32_t cw = lw - x0 < sw ? lw - x0 : sw, chh = u1 - y0 < sh ? u1 - y0 : sh;
                struct codec_image *b = crop(img->px, lw, ch, x0, y0 - u0, cw, chh);
                if (!b)
                    break;
                uint64_t k = block_key(source_key, r, bx, by, ch, sw, sh);
                char bname[64];
                snprintf(bname, sizeof bname, "%016llx.blk", (unsigned long long)k);
                store(c, bname, k, b);
                codec_image_free(b);
            }
        }
        if (rc == 0)
            *use = CODEC_BLOCK_DECODED;
    }
    codec_image_free(img);
    give_turn(c, lockname, lk);
    return rc;
}

/* A request of a whole-image source that spans several blocks of its level (a PNG's coarse
 * scale factors: PNG has no reduced levels, so their regions are large at full size) is put
 * together from those blocks, each a hit or a miss that fill_band() decodes (storing its
 * neighbours too): the same pixels the direct decode gives, without decoding again. Hits are
 * counted per block. Returns as block_cache_decode. */
static int stitch(struct block_cache *c, uint64_t source_key, const char *path,
                  const struct codec_info *info, const struct codec_decode_req *req, int r,
                  const uint64_t rect[4], struct codec_image **out, enum codec_block_use *use,
                  struct verr *err)
{
    uint32_t s = c->block;
    int ch = info->channels;
    uint64_t lw = codec_src_ceil_shift(info->width, r), lh = codec_src_ceil_shift(info->height, r);
    uint64_t x0 = rect[0], y0 = rect[1], x1 = rect[2], y1 = rect[3];
    uint64_t bytes = (x1 - x0) * (y1 - y0) * (uint64_t)ch;
    /* Too big for the cache, or for the request's memory cap: the direct decode answers (and
     * says 413 when the cap is what stops it). */
    if (x1 <= x0 || y1 <= y0 || x1 > lw || y1 > lh || bytes > c->max_bytes / 2 ||
        (req->max_bytes && bytes > req->max_bytes)) {
        c->stats.bypassed++;
        return 1;
    }
    struct codec_image *img = codec_image_new((uint32_t)(x1 - x0), (uint32_t)(y1 - y0), ch);
    if (!img)
        return verr_set(err, 500, "out of memory for a %llux%llu region",
                        (unsigned long long)(x1 - x0), (unsigned long long)(y1 - y0));
    bool decoded = false;
    for (uint64_t by = y0 / s; by * s < y1; by++) {
        for (uint64_t bx = x0 / s; bx * s < x1; bx++) {
            uint64_t bx0 = bx * s, by0 = by * s;
            uint64_t ox0 = x0 > bx0 ? x0 : bx0, oy0 = y0 > by0 ? y0 : by0;
            uint64_t ox1 = x1 < bx0 + s ? x1 : bx0 + s, oy1 = y1 < by0 + s ? y1 : by0 + s;
            struct want wt = {
                .bw = (uint32_t)(lw - bx0 < s ? lw - bx0 : s),
                .bh = (uint32_t)(lh - by0 < s ? lh - by0 : s), .ch = ch,
                .x = (uint32_t)(ox0 - bx0), .y = (uint32_t)(oy0 - by0),
                .w = (uint32_t)(ox1 - ox0), .h = (uint32_t)(oy1 - oy0),
            };
            wt.check = block_key(source_key, r, bx, by, ch, s, s);
            snprintf(wt.name, sizeof wt.name, "%016llx.blk", (unsigned long long)wt.check);
            struct codec_image *piece = NULL;
            int rc = load(c, &wt, &piece, err);
            if (rc == 0) {
                c->stats.hits++;
            } else if (rc == 1) {
                const struct axis ax = {.p0 = ox0, .index = bx}, ay = {.p0 = oy0, .index = by};
                enum codec_block_use u = CODEC_BLOCK_NONE;
                rc = fill_band(c, source_key, path, info, req, r, s, s, &ax, &ay, &wt, &piece, &u,
                               err);
                decoded = decoded || u == CODEC_BLOCK_DECODED;
            }
            if (rc != 0) { /* 1: the caller decodes the region itself; -1: err is set */
                codec_image_free(img);
                return rc;
            }
            codec_image_paste(img, piece, (uint32_t)(ox0 - x0), (uint32_t)(oy0 - y0));
            codec_image_free(piece);
        }
    }
    *out = img;
    *use = decoded ? CODEC_BLOCK_DECODED : CODEC_BLOCK_HIT;
    return 0;
}

/* The block of shape sw x sh at level r that holds the request's pixels rect (their axes in
 * *ax, *ay) and what to cut from it; 1 when no block of that shape holds them all. */
static int want_in(const struct codec_info *info, uint64_t source_key, int r,
                   const uint64_t rect[4], uint32_t sw, uint32_t sh, struct axis *ax,
                   struct axis *ay, struct want *wt)
{
    if (block_axis(info->origin_x, info->width, rect[0], rect[2], r, sw, ax) < 0 ||
        block_axis(info->origin_y, info->height, rect[1], rect[3], r, sh, ay) < 0)
        return 1;
    *wt = (struct want){
        .bw = (uint32_t)(ax->hi - ax->lo), .bh = (uint32_t)(ay->hi - ay->lo),
        .ch = info->channels,
        .x = (uint32_t)(ax->p0 - ax->lo), .y = (uint32_t)(ay->p0 - ay->lo),
        .w = (uint32_t)(ax->p1 - ax->p0), .h = (uint32_t)(ay->p1 - ay->p0),
    };
    wt->check = block_key(source_key, r, ax->index, ay->index, wt->ch, sw, sh);
    snprintf(wt->name, sizeof wt->name, "%016llx.blk", (unsigned long long)wt->check);
    return 0;
}

int block_cache_decode(struct block_cache *c, uint64_t source_key, const char *path,
                       const struct codec_info *info, const struct codec_decode_req *req,
                       bool queued, struct codec_image **out, enum codec_block_use *use,
                       struct verr *err)
{
    *out = NULL;
    *use = CODEC_BLOCK_NONE;
    bool jp2 = info->format == CODEC_FORMAT_JP2 || info->format == CODEC_FORMAT_J2K;
    /* Whole-image sources (below) */
    bool whole = (info->format == CODEC_FORMAT_JPEG || info->format == CODEC_FORMAT_PNG) &&
                 info->origin_x == 0 && info->origin_y == 0;
    if (!c || (!jp2 && !whole))
        return 1;
    /* The level the decoder picks, and the request's pixels there: [rect[0], rect[2]) x
     * [rect[1], rect[3]). An EXIF-oriented JPEG's decoder rounds in stored coordinates, which a
     * mirror turns around (jpeg_src.c says where its pixels lie); everything else reduces the
     * region's edges on the reference grid. */
    uint64_t rect[4];
    int r;
    if (info->format == CODEC_FORMAT_JPEG && info->orientation > 1) {
        r = codec_jpeg_level_rect(info, req, rect);
    } else {
        uint64_t x = (uint64_t)info->origin_x + req->x, y = (uint64_t)info->origin_y + req->y;
        r = codec_src_pick_reduction(x, y, req->w, req->h, req->want_w, req->want_h,
                                     info->levels);
        rect[0] = codec_src_ceil_shift(x, r);
        rect[1] = codec_src_ceil_shift(y, r);
        rect[2] = codec_src_ceil_shift(x + req->w, r);
        rect[3] = codec_src_ceil_shift(y + req->h, r);
    }
    struct axis ax, ay;
    struct want wt;
    uint32_t sw, sh;
    block_shape(c, info, r, queued, &sw, &sh);
    if (whole) /* every block of a level comes from one decode: one shape, the largest */
        sw = sh = c->block;
    /* A request bigger than the level's block (a viewer using large tiles) gets the smallest
     * larger block that holds it, up to block_size. */
    bool grown = false;
    while (want_in(info, source_key, r, rect, sw, sh, &ax, &ay, &wt) != 0) {
        if (sw >= c->block && sh >= c->block) {
            if (whole)
                return stitch(c, source_key, path, info, req, r, rect, out, use, err);
            c->stats.bypassed++;
            return 1;
        }
        sw = sw * 2 < c->block ? sw * 2 : c->block;
        sh = sh * 2 < c->block ? sh * 2 : c->block;
        grown = true;
    }
    /* The decoder must pick the same level for the block as for the request, or the pixels
     * would differ (only for blocks a pixel or two wide, where halving again changes nothing).
     * A whole-image source's fill checks its own decode (fill_band). */
    if (!whole && codec_src_pick_reduction((uint64_t)info->origin_x + ax.full0,
                                           (uint64_t)info->origin_y + ay.full0, ax.len, ay.len,
                                           wt.bw, wt.bh, info->levels) != r) {
        c->stats.bypassed++;
        return 1;
    }
    char lockname[64];
    snprintf(lockname, sizeof lockname, "%016llx.lock", (unsigned long long)wt.check);

    int rc = load(c, &wt, out, err);
    if (rc == 1 && !whole && !grown) {
        /* Where the shape depends on the queue, a block of the other shape serves as well. */
        uint32_t ow, oh;
        struct axis oax, oay;
        struct want other;
        block_shape(c, info, r, !queued, &ow, &oh);
        if ((ow != sw || oh != sh) &&
            want_in(info, source_key, r, rect, ow, oh, &oax, &oay, &other) == 0)
            rc = load(c, &other, out, err);
    }
    if (rc <= 0) {
        if (rc == 0) {
            c->stats.hits++;
            *use = CODEC_BLOCK_HIT;
        }
        return rc;
    }
    if (whole)
        return fill_band(c, source_key, path, info, req, r, sw, sh, &ax, &ay, &wt, out, use,
                         err);
    int lk;
    rc = take_turn(c, lockname, &wt, &lk, out, use, err);
    if (rc <= 0)
        return rc;
    c->stats.misses++;
    uint64_t held;
    int threads = block_cache_cpu_acquire(c, c->ncpu, &held);
    const struct codec_decode_req breq = {
        .x = ax.full0, .y = ay.full0, .w = ax.len, .h = ay.len, .want_w = wt.bw, .want_h = wt.bh,
        .max_pixels = req->max_pixels, .max_bytes = req->max_bytes,
        .threads = threads > req->threads ? threads : req->threads,
    };
    struct codec_image *block = NULL;
    struct verr berr;
    rc = 1; /* whatever goes wrong with the block, the caller decodes the region itself */
    int drc = codec_decode(path, info, &breq, &block, &berr);
    block_cache_cpu_release(c, held);
    if (drc == 0 && block && block->w == wt.bw && block->h == wt.bh && block->channels == wt.ch) {
        *out = crop(block->px, wt.bw, wt.ch, wt.x, wt.y, wt.w, wt.h);
        if (*out) {
            store(c, wt.name, wt.check, block);
            *use = CODEC_BLOCK_DECODED;
            rc = 0;
        }
    }
    codec_image_free(block);
    give_turn(c, lockname, lk);
    return rc;
}
