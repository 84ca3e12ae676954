/* encode.c: the "format" step (IIIF 3.0 §4.5): 8-bit images -> JPEG (libjpeg-turbo's TurboJPEG
 * API) or PNG (libpng 1.6), into malloc'd buffers owned by the caller. The source's ICC profile
 * travels along (JPEG APP2 chunks, PNG iCCP) so browsers show the right colours. */
#include <limits.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "codec.h"

/* No encoded response may grow beyond this; a bigger one is a request to refuse. */
#define OUT_CAP ((size_t)1 << 30)
/* libjpeg's JPEG_MAX_DIMENSION. */
#define JPEG_MAX_DIM 65500u

/* ICC.1 Annex B.4: APP2 "ICC_PROFILE\0" + sequence number + count, then at most
 * 65535 - 2 (length) - 14 (header) = 65519 bytes of profile per marker, at most 255 markers. */
#define ICC_HDR_LEN 14
#define ICC_CHUNK_MAX 65519u
#define ICC_MAX_CHUNKS 255u

static bool image_ok(const struct codec_image *img)
{
    return img && img->px && img->w > 0 && img->h > 0 && img->channels >= 1 && img->channels <= 4;
}

/* JPEG has no alpha: blend over white, c' = (c*a + 255*(255-a)) / 255 rounded. */
static unsigned char *flatten_over_white(const struct codec_image *img)
{
    const int sch = img->channels, dch = sch - 1;
    const size_t n = (size_t)img->w * img->h;
    unsigned char *flat = malloc(n * (size_t)dch);
    if (!flat)
        return NULL;
    const unsigned char *s = img->px;
    unsigned char *d = flat;
    for (size_t i = 0; i < n; i++, s += sch, d += dch) {
        const unsigned a = s[dch], bg = 255u * (255u - a) + 127u;
        for (int c = 0; c < dch; c++)
            d[c] = (unsigned char)((s[c] * a + bg) / 255u);
    }
    return flat;
}

/* Copy the TurboJPEG output into a malloc'd buffer, inserting the ICC profile as APP2 markers
 * right after SOI and the JFIF APP0 that libjpeg writes (decoders expect JFIF first). */
static int jpeg_splice_icc(const unsigned char *jpg, size_t jpg_len, const unsigned char *icc,
                           size_t icc_len, unsigned char **out, size_t *out_len, struct verr *err)
{
    if (jpg_len < 4 || jpg[0] != 0xFF || jpg[1] != 0xD8)
        return verr_set(err, 500, "jpeg: encoder output has no SOI marker");
    size_t pos = 2;
    if (jpg[2] == 0xFF && jpg[3] == 0xE0) {
        if (jpg_len < 6)
            return verr_set(err, 500, "jpeg: truncated APP0 in encoder output");
        pos = 4 + ((size_t)jpg[4] << 8 | jpg[5]);
        if (pos > jpg_len)
            return verr_set(err, 500, "jpeg: bad APP0 length in encoder output");
    }
    /* A profile too big for 255 markers cannot be embedded; the image is still worth serving
     * (the browser falls back to sRGB), so it goes out without one. */
    size_t chunks = icc && icc_len ? (icc_len + ICC_CHUNK_MAX - 1) / ICC_CHUNK_MAX : 0;
    if (chunks > ICC_MAX_CHUNKS)
        chunks = 0;
    const size_t total = jpg_len + chunks * (4 + ICC_HDR_LEN) + (chunks ? icc_len : 0);
    if (total > OUT_CAP)
        return verr_set(err, 413, "jpeg: output of %zu bytes is too large", total);
    unsigned char *buf = malloc(total);
    if (!buf)
        return verr_set(err, 500, "jpeg: out of memory (%zu bytes)", total);

    unsigned char *d = buf;
    memcpy(d, jpg, pos);
    d += pos;
    for (size_t k = 0; k < chunks; k++) {
        const size_t off = k * ICC_CHUNK_MAX;
        const size_t n = icc_len - off < ICC_CHUNK_MAX ? icc_len - off : ICC_CHUNK_MAX;
        const size_t seglen = 2 + ICC_HDR_LEN + n;
        *d++ = 0xFF;
        *d++ = 0xE2;
        *d++ = (unsigned char)(seglen >> 8);
        *d++ = (unsigned char)(seglen & 0xFF);
        memcpy(d, "ICC_PROFILE", 12); /* with its NUL */
        d += 12;
        *d++ = (unsigned char)(k + 1);
        *d++ = (unsigned char)chunks;
        memcpy(d, icc + off, n);
        d += n;
    }
    memcpy(d, jpg + pos, jpg_len - pos);
    *out = buf;
    *out_len = total;
    return 0;
}

int codec_encode_jpeg(const struct codec_image *img, int quality, const unsigned char *icc,
                      size_t icc_len, unsigned char **out, size_t *out_len, struct verr *err)
{
    tjhandle tj = NULL;
    unsigned char *flat = NULL, *jpg = NULL;
    unsigned long jpg_len = 0;
    int rc = -1;

    *out = NULL;
    *out_len = 0;
    if (!image_ok(img))
        return verr_set(err, 500, "jpeg: invalid image");
    if (img->w > JPEG_MAX_DIM || img->h > JPEG_MAX_DIM)
        return verr_set(err, 413, "jpeg: %ux%u is beyond JPEG's 65500 pixel limit", img->w, img->h);
    if (quality < 1)
        quality = 1;
    if (quality > 100)
        quality = 100;

    const unsigned char *px = img->px;
    int ch = img->channels;
    if (ch == 2 || ch == 4) {
        flat = flatten_over_white(img);
        if (!flat) {
            verr_set(err, 500, "jpeg: out of memory (%ux%u)", img->w, img->h);
            goto done;
        }
        px = flat;
        ch--;
    }

    tj = tjInitCompress();
    if (!tj) {
        verr_set(err, 500, "jpeg: %s", tjGetErrorStr2(NULL));
        goto done;
    }
    /* 4:2:0 for colour: the usual web trade-off, half the chroma data for little visible loss. */
    const int pf = ch == 1 ? TJPF_GRAY : TJPF_RGB, samp = ch == 1 ? TJSAMP_GRAY : TJSAMP_420;
    if (tjCompress2(tj, px, (int)img->w, 0, (int)img->h, pf, &jpg, &jpg_len, samp, quality, 0) <
        0) {
        verr_set(err, 500, "jpeg: %s", tjGetErrorStr2(tj));
        goto done;
    }
    rc = jpeg_splice_icc(jpg, (size_t)jpg_len, icc, icc_len, out, out_len, err);

done:
    tjFree(jpg);
    if (tj && tjDestroy(tj) < 0 && rc == 0) {
        free(*out);
        *out = NULL;
        *out_len = 0;
        rc = verr_set(err, 500, "jpeg: %s", tjGetErrorStr2(NULL));
    }
    free(flat);
    return rc;
}

/* libpng writes into this growing buffer; it lives on the heap so that nothing the setjmp
 * frame needs after a longjmp is an automatic variable changed in between (C11 7.13.2.1). */
struct png_sink {
    unsigned char *buf;
    size_t len, cap;
    char msg[160];
};

static void png_sink_write(png_structp png, png_bytep data, size_t n)
{
    struct png_sink *s = png_get_io_ptr(png);
    if (n > OUT_CAP - s->len)
        png_error(png, "output too large");
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        if (cap > OUT_CAP)
            cap = OUT_CAP;
        unsigned char *nb = realloc(s->buf, cap);
        if (!nb)
            png_error(png, "out of memory");
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
}

static void png_sink_flush(png_structp png)
{
    (void)png;
}

/* libpng would print and abort if this returned: keep the message, jump back. */
static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_sink *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (e.g. an ICC profile libpng will not embed) do not fail a request; no printing. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Everything that can png_error() happens inside this function so that its setjmp frame
 * holds no variable that changes before a longjmp. */
static int png_write_all(png_structp png, png_infop info, const struct codec_image *img,
                         const unsigned char *icc, size_t icc_len)
{
    static const int color_types[4] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    if (setjmp(png_jmpbuf(png)))
        return -1;
    png_set_IHDR(png, info, img->w, img->h, 8, color_types[img->channels - 1], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_BASE, PNG_FILTER_TYPE_BASE);
    /* Speed over size for tiles: zlib level 3 with the UP filter only. On a 256x256
     * photographic tile that took 4.9 ms for 154 KB, against 11.9 ms for 145 KB with libpng's
     * default (level 6, adaptive over all five filters); SUB, NONE and PAETH at level 3 were
     * no faster, or larger. */
    png_set_compression_level(png, 3);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_UP);
    if (icc && icc_len > 0 && icc_len <= UINT32_MAX)
        png_set_iCCP(png, info, "ICC profile", PNG_COMPRESSION_TYPE_BASE, icc,
                     (png_uint_32)icc_len);
    png_write_info(png, info);
    const size_t stride = (size_t)img->w * (size_t)img->channels;
    for (uint32_t y = 0; y < img->h; y++)
        png_write_row(png, img->px + (size_t)y * stride);
    png_write_end(png, NULL);
    return 0;
}

int codec_encode_png(const struct codec_image *img, const unsigned char *icc, size_t icc_len,
                     unsigned char **out, size_t *out_len, struct verr *err)
{
    png_structp png = NULL;
    png_infop info = NULL;
    int rc = -1;

    *out = NULL;
    *out_len = 0;
    if (!image_ok(img))
        return verr_set(err, 500, "png: invalid image");
    if (img->w > INT32_MAX || img->h > INT32_MAX)
        return verr_set(err, 413, "png: %ux%u is too large", img->w, img->h);
    struct png_sink *sink = calloc(1, sizeof *sink);
    if (!sink)
        return verr_set(err, 500, "png: out of memory");

    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, png_on_error, png_on_warning);
    if (!png) {
        verr_set(err, 500, "png: cannot create writer");
        goto done;
    }
    info = png_create_info_struct(png);
    if (!info) {
        verr_set(err, 500, "png: cannot create info struct");
        goto done;
    }
    png_set_write_fn(png, sink, png_sink_write, png_sink_flush);
    /* libpng 1.6 treats an ICC profile it dislikes (bad header, RGB profile on grey pixels) as
     * a "benign" error, fatal when writing by default. A source's odd profile must not fail the
     * request: make those warnings, so the profile is simply left out. */
    png_set_benign_errors(png, 1);
    if (png_write_all(png, info, img, icc, icc_len) < 0) {
        verr_set(err, 500, "png: %s", sink->msg[0] ? sink->msg : "write failed");
        goto done;
    }
    *out = sink->buf;
    *out_len = sink->len;
    sink->buf = NULL;
    rc = 0;

done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    free(sink->buf);
    free(sink);
    return rc;
}
