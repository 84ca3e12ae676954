/* rotate.c: codec_mirror and codec_rotate, the "rotation" step (IIIF 3.0 §4.3): mirroring is
 * applied before rotation by the pipeline. Multiples of 90 degrees are exact pixel moves; any
 * other angle is resampled bilinearly onto the rotated bounding box. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MAX_BYTES ((uint64_t)1 << 31)
/* Square blocks for the 90/270 transposes so that both the rows read and the columns written
 * stay in cache. */
#define BLOCK 32
/* M_PI is POSIX, not C11. */
#define PI 3.14159265358979323846

static struct codec_image *image_new_err(uint32_t w, uint32_t h, int ch, const char *what,
                                         struct verr *err)
{
    if ((uint64_t)w * h * (uint64_t)ch > MAX_BYTES) {
        verr_set(err, 413, "%s: %ux%u result is too large", what, w, h);
        return NULL;
    }
    struct codec_image *img = codec_image_new(w, h, ch);
    if (!img)
        verr_set(err, 500, "%s: out of memory (%ux%u)", what, w, h);
    return img;
}

static bool image_ok(const struct codec_image *img)
{
    return img && img->px && img->w > 0 && img->h > 0 && img->channels >= 1 && img->channels <= 4;
}

struct codec_image *codec_mirror(const struct codec_image *src, struct verr *err)
{
    if (!image_ok(src)) {
        verr_set(err, 500, "mirror: invalid image");
        return NULL;
    }
    struct codec_image *dst = image_new_err(src->w, src->h, src->channels, "mirror", err);
    if (!dst)
        return NULL;
    const size_t ch = (size_t)src->channels, row = (size_t)src->w * ch;
    for (uint32_t y = 0; y < src->h; y++) {
        const unsigned char *s = src->px + y * row;
        unsigned char *d = dst->px + y * row + row - ch;
        for (uint32_t x = 0; x < src->w; x++, s += ch, d -= ch)
            memcpy(d, s, ch);
    }
    return dst;
}

/* Pixel moves for quarter = 1, 2, 3 (90, 180, 270 degrees clockwise). For 90 the source's
 * bottom-left pixel lands top-left: src(sx, sy) -> dst(h-1-sy, sx); for 270 src(sx, sy) ->
 * dst(sy, w-1-sx). CH is a constant at each call site so each memcpy becomes a plain move. */
static inline void move_pixels(const struct codec_image *src, struct codec_image *dst, int quarter,
                               const size_t CH)
{
    const uint32_t w = src->w, h = src->h, dw = dst->w;
    if (quarter == 2) {
        const size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++)
            memcpy(dst->px + (n - 1 - i) * CH, src->px + i * CH, CH);
        return;
    }
    for (uint32_t by = 0; by < h; by += BLOCK) {
        const uint32_t ey = by + BLOCK < h ? by + BLOCK : h;
        for (uint32_t bx = 0; bx < w; bx += BLOCK) {
            const uint32_t ex = bx + BLOCK < w ? bx + BLOCK : w;
            for (uint32_t sy = by; sy < ey; sy++) {
                const unsigned char *s = src->px + ((size_t)sy * w + bx) * CH;
                for (uint32_t sx = bx; sx < ex; sx++, s += CH) {
                    const size_t dx = quarter == 1 ? h - 1 - sy : sy;
                    const size_t dy = quarter == 1 ? sx : w - 1 - sx;
                    memcpy(dst->px + (dy * dw + dx) * CH, s, CH);
                }
            }
        }
    }
}

static struct codec_image *rotate_quarter(const struct codec_image *src, int quarter,
                                          struct verr *err)
{
    struct codec_image *dst = quarter == 2
                                  ? image_new_err(src->w, src->h, src->channels, "rotate", err)
                                  : image_new_err(src->h, src->w, src->channels, "rotate", err);
    if (!dst)
        return NULL;
    switch (src->channels) {
    case 1:
        move_pixels(src, dst, quarter, 1);
        break;
    case 2:
        move_pixels(src, dst, quarter, 2);
        break;
    case 3:
        move_pixels(src, dst, quarter, 3);
        break;
    default:
        move_pixels(src, dst, quarter, 4);
        break;
    }
    return dst;
}

/* Arbitrary angle. The canvas is the rotated bounding box (IIIF 3.0 §4.3); each output pixel
 * centre is mapped back into the source and sampled bilinearly. Outside the source is the
 * background "pixel" (transparent, or opaque white), blended in by the same bilinear weights,
 * so edges are antialiased. Colour is blended premultiplied. */
static struct codec_image *rotate_any(const struct codec_image *src, double deg, bool transparent,
                                      struct verr *err)
{
    const double rad = deg * PI / 180.0, c = cos(rad), s = sin(rad);
    const double fw = ceil(fabs(src->w * c) + fabs(src->h * s) - 1e-9);
    const double fh = ceil(fabs(src->w * s) + fabs(src->h * c) - 1e-9);
    if (fw > UINT32_MAX || fh > UINT32_MAX) {
        verr_set(err, 413, "rotate: result is too large");
        return NULL;
    }
    const uint32_t dw = fw < 1 ? 1 : (uint32_t)fw, dh = fh < 1 ? 1 : (uint32_t)fh;
    const int sch = src->channels;
    const bool src_alpha = sch == 2 || sch == 4;
    const int ncol = src_alpha ? sch - 1 : sch; /* colour channels */
    const int dch = transparent && !src_alpha ? sch + 1 : sch;
    const bool dst_alpha = dch == 2 || dch == 4;
    struct codec_image *dst = image_new_err(dw, dh, dch, "rotate", err);
    if (!dst)
        return NULL;

    /* Background in premultiplied [0, 1] alpha terms: white opaque or fully transparent. */
    const float bg_a = transparent ? 0.0f : 1.0f, bg_c = transparent ? 0.0f : 255.0f;
    const double scx = src->w / 2.0, scy = src->h / 2.0, dcx = dw / 2.0, dcy = dh / 2.0;
    const size_t srow = (size_t)src->w * (size_t)sch;

    for (uint32_t y = 0; y < dh; y++) {
        const double dy = y + 0.5 - dcy, dx0 = 0.5 - dcx;
        /* Inverse of the clockwise rotation (y down): u = c*dx + s*dy, v = -s*dx + c*dy;
         * minus 0.5 turns a position into pixel-index space. */
        double u = c * dx0 + s * dy + scx - 0.5;
        double v = -s * dx0 + c * dy + scy - 0.5;
        unsigned char *out = dst->px + (size_t)y * dw * (size_t)dch;
        for (uint32_t x = 0; x < dw; x++, u += c, v -= s, out += dch) {
            const double fx0 = floor(u), fy0 = floor(v);
            const float fx = (float)(u - fx0), fy = (float)(v - fy0);
            float col[3] = {0, 0, 0}, alpha = 0, cover = 0;
            if (fx0 >= -1 && fy0 >= -1 && fx0 < src->w && fy0 < src->h) {
                const long ix = (long)fx0, iy = (long)fy0;
                const float wt[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
                for (int k = 0; k < 4; k++) {
                    const long px = ix + (k & 1), py = iy + (k >> 1);
                    if (px < 0 || py < 0 || px >= (long)src->w || py >= (long)src->h || wt[k] == 0)
                        continue;
                    const unsigned char *p = src->px + (size_t)py * srow + (size_t)px * (size_t)sch;
                    const float a = src_alpha ? p[sch - 1] / 255.0f : 1.0f;
                    cover += wt[k];
                    alpha += wt[k] * a;
                    for (int ci = 0; ci < ncol; ci++)
                        col[ci] += wt[k] * a * p[ci];
                }
            }
            const float rest = 1.0f - cover;
            alpha += rest * bg_a;
            for (int ci = 0; ci < ncol; ci++) {
                col[ci] += rest * bg_c;
                /* Unpremultiply only where we keep an alpha channel; without one alpha is 1. */
                float val = dst_alpha ? (alpha > 0 ? col[ci] / alpha : 0) : col[ci];
                out[ci] = (unsigned char)(val >= 255.0f ? 255 : val <= 0 ? 0 : (int)(val + 0.5f));
            }
            if (dst_alpha) {
                float a = alpha * 255.0f;
                out[dch - 1] = (unsigned char)(a >= 255.0f ? 255 : a <= 0 ? 0 : (int)(a + 0.5f));
            }
        }
    }
    return dst;
}

struct codec_image *codec_rotate(const struct codec_image *src, double deg, bool transparent,
                                 struct verr *err)
{
    if (!image_ok(src) || !isfinite(deg)) {
        verr_set(err, 500, "rotate: invalid image or angle");
        return NULL;
    }
    deg = fmod(deg, 360.0);
    if (deg < 0)
        deg += 360.0;
    /* Angles within 1e-9 of a quarter turn are that quarter turn: exact moves, no blur. */
    const double q = round(deg / 90.0);
    if (fabs(deg - q * 90.0) < 1e-9) {
        const int quarter = (int)q % 4;
        if (quarter == 0) {
            struct codec_image *dst = image_new_err(src->w, src->h, src->channels, "rotate", err);
            if (dst)
                memcpy(dst->px, src->px, (size_t)src->w * src->h * (size_t)src->channels);
            return dst;
        }
        return rotate_quarter(src, quarter, err);
    }
    return rotate_any(src, deg, transparent, err);
}
