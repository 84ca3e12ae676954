/* source_internal.h: what codec/source.c (sniffing, dispatch, shared checks) shares with the
 * per-format readers codec/jp2.c, codec/jpeg_src.c and codec/png_src.c. Not a public API. */
#ifndef VELLUM_SOURCE_INTERNAL_H
#define VELLUM_SOURCE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "codec.h"

/* Caps that hold even when a caller passes max_pixels = 0 ("no cap"). */
#define CODEC_SRC_MAX_SIDE 0x7fffffffu                 /* OpenJPEG works in signed 32-bit */
#define CODEC_SRC_MAX_AREA ((uint64_t)1 << 40)         /* declared width * height, probe */
#define CODEC_SRC_MAX_DECODE_BYTES ((uint64_t)1 << 31) /* one decoded buffer, = codec_image_new */
#define CODEC_SRC_MAX_HEADER_BYTES (64u << 20)         /* JPEG marker segments / JP2 header box */
#define CODEC_SRC_MAX_FILE_BYTES ((uint64_t)1 << 30)   /* a JPEG read whole into memory */

/* Open path for reading: 404 if it does not exist (or is not a regular file), 500 otherwise. */
FILE *codec_src_open(const char *path, struct verr *err);

/* Read the whole file (at most max_bytes, else 413) into a malloc'd buffer. */
int codec_src_read_all(const char *path, uint64_t max_bytes, unsigned char **buf, size_t *len,
                       struct verr *err);

/* 500 for a zero or absurd size, 413 for more than max_pixels (0 = no cap). what names the size
 * in the message ("image", "decoded image"). */
/* 413 when an estimate of the memory a step needs is above max_bytes (0 = no limit). */
int codec_src_check_memory(uint64_t bytes, uint64_t max_bytes, const char *what, struct verr *err);
int codec_src_check_area(uint64_t w, uint64_t h, uint64_t max_pixels, const char *what,
                         struct verr *err);

/* ceil(v / 2^r) */
uint64_t codec_src_ceil_shift(uint64_t v, int r);

/* The size of [origin, origin + len) once the grid is reduced by 2^r, the way JPEG 2000 reduces
 * its reference grid: ceil((origin + len) / 2^r) - ceil(origin / 2^r). */
uint64_t codec_src_extent(uint64_t origin, uint64_t len, int r);

/* The largest r <= levels for which the region [x, x+w) x [y, y+h) reduced by 2^r keeps at least
 * want_w x want_h pixels; 0 when enlarging. */
int codec_src_pick_reduction(uint64_t x, uint64_t y, uint32_t w, uint32_t h, uint32_t want_w,
                             uint32_t want_h, int levels);

/* Per-format readers, called by codec_probe() / codec_decode() after sniffing. The probe
 * functions fill everything but leave the max_pixels check to the caller; codec_decode() has
 * already checked that the request's region lies inside info's width x height. */
int codec_jp2_probe(const char *path, enum codec_format format, struct codec_info *info,
                    struct verr *err);
int codec_jp2_decode(const char *path, const struct codec_info *info,
                     const struct codec_decode_req *req, struct codec_image **out,
                     struct verr *err);
/* Whether codec_jp2_decode() decodes req in parts when given threads: a region over several
 * tiles of a JPEG 2000 source whose components are not sub-sampled. */
bool codec_jp2_splits(const struct codec_info *info, const struct codec_decode_req *req);
/* How many regions codec_jp2_decode() has decoded in parts on several threads (a multi-tile
 * region given threads > 1), in this process: lets tests see that it happened. */
uint64_t codec_jp2_split_count(void);
int codec_jpeg_probe(const char *path, struct codec_info *info, struct verr *err);
int codec_jpeg_decode(const char *path, const struct codec_info *info,
                      const struct codec_decode_req *req, struct codec_image **out,
                      struct verr *err);
/* For the block cache: the scale 1/2^r a JPEG decode of req uses (returned), and where the
 * decoded region lies in the whole image decoded at that scale, as displayed (EXIF orientation
 * applied): columns [rect[0], rect[2]) and rows [rect[1], rect[3]). With an orientation that
 * mirrors, this is not simply the region divided by 2^r, because the scale's rounding works on
 * the stored image. */
int codec_jpeg_level_rect(const struct codec_info *info, const struct codec_decode_req *req,
                          uint64_t rect[4]);
int codec_png_probe(const char *path, uint64_t max_pixels, struct codec_info *info,
                    struct verr *err);
int codec_png_decode(const char *path, const struct codec_info *info,
                     const struct codec_decode_req *req, struct codec_image **out,
                     struct verr *err);

#endif
