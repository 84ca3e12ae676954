/* codec.h: source images (JPEG 2000, JPEG, PNG) -> 8-bit pixel buffers -> transforms -> encoded
 * JPEG/PNG bytes. Probe reads headers only; decode reads only what a request needs.
 * No HTTP here: errors carry an HTTP-ish status in struct verr. */
#ifndef VELLUM_CODEC_H
#define VELLUM_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iiif.h"
#include "verr.h"

enum codec_format { CODEC_FORMAT_JP2, CODEC_FORMAT_J2K, CODEC_FORMAT_JPEG, CODEC_FORMAT_PNG };

/* What a source's header says. Filled by codec_probe(); release with codec_info_clear(). */
struct codec_info {
    enum codec_format format;
    uint32_t width, height;   /* full-resolution image area */
    uint32_t origin_x, origin_y; /* JPEG 2000: where the image area starts on the reference grid */
    int channels;             /* of decoded output: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA */
    int bit_depth;            /* source precision, max over components (8, 16, ...) */
    int levels;               /* cheap reductions: scale factors 1, 2, ..., 2^levels are native */
    uint32_t tile_w, tile_h;  /* native tile size; 0 when untiled */
    uint32_t tile_x0, tile_y0; /* JPEG 2000: where the tile grid starts on the reference grid */
    bool subsampled;           /* JPEG 2000: a component is sampled more coarsely than the grid */
    int orientation;          /* EXIF orientation 1..8 for JPEG (1 = none); sizes above are as displayed */
    unsigned char *icc;       /* embedded ICC profile or NULL; owned */
    size_t icc_len;
};

/* Read only the header of the file at path. 404 if it does not exist, 415/500 if it is not a
 * readable JPEG 2000 / JPEG / PNG, 413 if its declared size is above max_pixels (0 = no cap). */
int codec_probe(const char *path, uint64_t max_pixels, struct codec_info *info, struct verr *err);
void codec_info_clear(struct codec_info *info);

/* An 8-bit interleaved image: channels 1 (G), 2 (GA), 3 (RGB) or 4 (RGBA); stride = w * channels. */
struct codec_image {
    uint32_t w, h;
    int channels;
    unsigned char *px;
};

/* Allocates w*h*channels bytes (checked for overflow and against a 2^31 byte cap). NULL on failure. */
struct codec_image *codec_image_new(uint32_t w, uint32_t h, int channels);
void codec_image_free(struct codec_image *img);
/* Copy src into dst with its top-left corner at (x, y); src must lie inside dst and have its
 * channels. */
void codec_image_paste(struct codec_image *dst, const struct codec_image *src, uint32_t x,
                       uint32_t y);

struct codec_decode_req {
    uint32_t x, y, w, h;      /* region in full-resolution coordinates (already clipped) */
    uint32_t want_w, want_h;  /* the size the pipeline will scale the region to */
    uint64_t max_pixels;      /* refuse (413) a decode of more pixels than this; 0 = no cap */
    uint64_t max_bytes;       /* refuse (413) a decode estimated to need more memory; 0 = none */
    int threads;              /* decoder threads (OpenJPEG); <= 1 means single-threaded */
};

/* Decode the region at the coarsest native reduction whose size is still >= want (both
 * dimensions), or full resolution when upscaling. The result covers exactly the region, at
 * roughly region / 2^r (rounded up). Result channels equal info->channels. Error for this
 * request only (never abort) on a corrupt or truncated file. */
int codec_decode(const char *path, const struct codec_info *info, const struct codec_decode_req *req,
                 struct codec_image **out, struct verr *err);

/* Transforms. Each returns a new image (the input is untouched) or NULL with err set. */
/* Resample to w x h: area-averaging (box filter over exact pixel coverage) when shrinking,
 * bilinear when enlarging; channels kept. */
struct codec_image *codec_resize(const struct codec_image *src, uint32_t w, uint32_t h, struct verr *err);
/* Mirror left<->right. */
struct codec_image *codec_mirror(const struct codec_image *src, struct verr *err);
/* Rotate clockwise by deg (0 <= deg < 360). Multiples of 90 are exact pixel moves. Other
 * angles: bilinear, canvas enlarged to the rotated bounding box; the background is transparent
 * (an alpha channel is added) when transparent is true, else white. */
struct codec_image *codec_rotate(const struct codec_image *src, double deg, bool transparent,
                                 struct verr *err);
/* Convert to grey (ITU-R BT.601 luma), alpha kept. */
struct codec_image *codec_to_gray(const struct codec_image *src, struct verr *err);
/* Convert to black/white: grey, then threshold at 128 (alpha kept). */
struct codec_image *codec_to_bitonal(const struct codec_image *src, struct verr *err);

/* Encoders: the output buffer is malloc'd and owned by the caller. icc may be NULL. JPEG has
 * no alpha: alpha is composited over white. quality is 1..100. */
int codec_encode_jpeg(const struct codec_image *img, int quality, const unsigned char *icc,
                      size_t icc_len, unsigned char **out, size_t *out_len, struct verr *err);
int codec_encode_png(const struct codec_image *img, const unsigned char *icc, size_t icc_len,
                     unsigned char **out, size_t *out_len, struct verr *err);

struct block_cache;

/* Where a render's time went (milliseconds, monotonic clock), for Server-Timing and profiling. */
enum codec_block_use { CODEC_BLOCK_NONE, CODEC_BLOCK_HIT, CODEC_BLOCK_DECODED };
struct codec_timing {
    double decode_ms;    /* decode, or crop from a cached block */
    double transform_ms; /* resize, mirror, rotation, quality */
    double encode_ms;
    enum codec_block_use block;
};

/* Per-request options for the whole pipeline. */
struct codec_render_opts {
    uint64_t max_decode_pixels; /* 0 = no cap */
    int jpeg_quality;           /* 1..100 */
    int threads;
    uint64_t max_bytes;         /* memory estimate cap per request (413 above it); 0 = none */
    struct block_cache *blocks; /* decoded blocks shared between workers (block_cache.h); NULL = none */
    bool queued;                /* other requests wait for a worker: larger blocks (block_cache.h) */
    uint64_t source_key;        /* identifies the source file's version in the block cache */
    struct codec_timing *timing; /* filled when non-NULL */
};

/* Run a planned Image API request against a probed source: decode, resize, mirror, rotate,
 * quality, encode. The encoded bytes are malloc'd and owned by the caller. */
int codec_render(const char *path, const struct codec_info *info, const struct iiif_plan *plan,
                 const struct codec_render_opts *opts, unsigned char **out, size_t *out_len,
                 struct verr *err);

/* The cores this process may use (cpus.c): its CPU affinity (taskset, cpusets, systemd's
 * CPUAffinity=), capped by its cgroup's CPU quota rounded up (docker --cpus, CPUQuota=); at
 * least 1. What the worker pool and the decoders size themselves by. */
int codec_cpu_count(void);
/* The cores a cgroup quota of `quota` microseconds per `period` allows, rounded up; 0 for no
 * limit ("max", "-1") or text that is not a number. */
int codec_cpu_quota(const char *quota, const char *period);

#endif
