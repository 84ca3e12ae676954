/* color.c: the "quality" step (IIIF 3.0 §4.4): gray and bitonal. Colour and default leave the
 * pixels as they are, so they need nothing here. */
#include <stdint.h>
#include <string.h>

#include "codec.h"

#define MAX_BYTES ((uint64_t)1 << 31)

/* ITU-R BT.601 luma, rounded to nearest. The weights sum to exactly 1000, so white stays 255
 * and the result never overflows. */
static inline unsigned char luma(const unsigned char *p)
{
    return (unsigned char)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
}

/* 1 -> 1, 2 -> 2 (copies), 3 -> 1, 4 -> 2 (luma, alpha kept). */
struct codec_image *codec_to_gray(const struct codec_image *src, struct verr *err)
{
    if (!src || !src->px || src->w == 0 || src->h == 0 || src->channels < 1 || src->channels > 4) {
        verr_set(err, 500, "gray: invalid image");
        return NULL;
    }
    const int sch = src->channels, dch = sch >= 3 ? sch - 2 : sch;
    const size_t n = (size_t)src->w * src->h;
    if ((uint64_t)n * (uint64_t)dch > MAX_BYTES) {
        verr_set(err, 413, "gray: image is too large");
        return NULL;
    }
    struct codec_image *dst = codec_image_new(src->w, src->h, dch);
    if (!dst) {
        verr_set(err, 500, "gray: out of memory (%ux%u)", src->w, src->h);
        return NULL;
    }
    const unsigned char *s = src->px;
    unsigned char *d = dst->px;
    if (sch <= 2) {
        memcpy(d, s, n * (size_t)sch);
    } else if (sch == 3) {
        for (size_t i = 0; i < n; i++, s += 3)
            d[i] = luma(s);
    } else {
        for (size_t i = 0; i < n; i++, s += 4, d += 2) {
            d[0] = luma(s);
            d[1] = s[3];
        }
    }
    return dst;
}

/* Grey, then everything at or above mid-grey is white. Alpha is kept as it is. */
struct codec_image *codec_to_bitonal(const struct codec_image *src, struct verr *err)
{
    struct codec_image *dst = codec_to_gray(src, err);
    if (!dst)
        return NULL;
    const size_t ch = (size_t)dst->channels, n = (size_t)dst->w * dst->h;
    unsigned char *p = dst->px;
    for (size_t i = 0; i < n; i++, p += ch)
        p[0] = p[0] >= 128 ? 255 : 0;
    return dst;
}
