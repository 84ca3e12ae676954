/* source.c: codec_probe() and codec_decode(). A source is recognised by its first bytes (never by
 * its name), handed to the reader for its format (jp2.c, jpeg_src.c, png_src.c), and checked the
 * same way whatever its format: sizes against the caps, channels, ICC profile against output. */
#include "source_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ISO/IEC 15444-1 I.5.1: the 12-byte JPEG 2000 Signature box that starts every JP2/JPX file. */
static const unsigned char jp2_magic[12] = {0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50,
                                            0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a};
/* A raw codestream starts with SOC (FF4F) immediately followed by SIZ (FF51). */
static const unsigned char j2k_magic[4] = {0xff, 0x4f, 0xff, 0x51};
/* SOI then the first byte of the next marker. */
static const unsigned char jpeg_magic[3] = {0xff, 0xd8, 0xff};
static const unsigned char png_magic[8] = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a};

FILE *codec_src_open(const char *path, struct verr *err)
{
    FILE *fp;
    struct stat st;

    if (!path || !*path) {
        verr_set(err, 404, "no source path");
        return NULL;
    }
    fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        /* Paths stay out of messages: they may reach an HTTP client. */
        if (e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG || e == ELOOP)
            verr_set(err, 404, "source image not found");
        else
            verr_set(err, 500, "cannot open source image: %s", strerror(e));
        return NULL;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        verr_set(err, 404, "source image is not a regular file");
        return NULL;
    }
    return fp;
}

int codec_src_read_all(const char *path, uint64_t max_bytes, unsigned char **buf, size_t *len,
                       struct verr *err)
{
    FILE *fp;
    struct stat st;
    unsigned char *data = NULL;
    size_t size;

    *buf = NULL;
    *len = 0;
    fp = codec_src_open(path, err);
    if (!fp)
        return -1;
    if (fstat(fileno(fp), &st) != 0 || st.st_size < 0) {
        verr_set(err, 500, "cannot stat source image");
        goto fail;
    }
    if ((uint64_t)st.st_size > max_bytes || (uint64_t)st.st_size > SIZE_MAX - 1) {
        verr_set(err, 413, "source file too large (%lld bytes)", (long long)st.st_size);
        goto fail;
    }
    size = (size_t)st.st_size;
    /* One spare byte so an empty file still gets a real allocation. */
    data = malloc(size + 1);
    if (!data) {
        verr_set(err, 500, "out of memory reading source image");
        goto fail;
    }
    if (size && fread(data, 1, size, fp) != size) {
        verr_set(err, 500, "cannot read source image (truncated while reading?)");
        goto fail;
    }
    fclose(fp);
    *buf = data;
    *len = size;
    return 0;
fail:
    free(data);
    fclose(fp);
    return -1;
}

int codec_src_check_area(uint64_t w, uint64_t h, uint64_t max_pixels, const char *what,
                         struct verr *err)
{
    if (w == 0 || h == 0)
        return verr_set(err, 500, "%s has an empty size (%llux%llu)", what, (unsigned long long)w,
                        (unsigned long long)h);
    if (w > CODEC_SRC_MAX_SIDE || h > CODEC_SRC_MAX_SIDE || w * h > CODEC_SRC_MAX_AREA)
        return verr_set(err, 413, "%s size %llux%llu is beyond what this server handles", what,
                        (unsigned long long)w, (unsigned long long)h);
    if (max_pixels && w * h > max_pixels)
        return verr_set(err, 413, "%s of %llux%llu pixels is above the limit of %llu pixels", what,
                        (unsigned long long)w, (unsigned long long)h,
                        (unsigned long long)max_pixels);
    return 0;
}

int codec_src_check_memory(uint64_t bytes, uint64_t max_bytes, const char *what, struct verr *err)
{
    if (max_bytes && bytes > max_bytes)
        return verr_set(err, 413, "%s would need about %llu MB of memory, above the limit of %llu MB "
                        "(max_request_memory_mb)", what, (unsigned long long)(bytes >> 20),
                        (unsigned long long)(max_bytes >> 20));
    return 0;
}

uint64_t codec_src_ceil_shift(uint64_t v, int r)
{
    if (r <= 0)
        return v;
    if (r >= 63)
        return v ? 1 : 0;
    return (v + ((uint64_t)1 << r) - 1) >> r;
}

uint64_t codec_src_extent(uint64_t origin, uint64_t len, int r)
{
    return codec_src_ceil_shift(origin + len, r) - codec_src_ceil_shift(origin, r);
}

int codec_src_pick_reduction(uint64_t x, uint64_t y, uint32_t w, uint32_t h, uint32_t want_w,
                             uint32_t want_h, int levels)
{
    int r = 0;

    if (want_w == 0)
        want_w = 1;
    if (want_h == 0)
        want_h = 1;
    /* Both the nominal size ceil(w / 2^r) and the extent the decoder really produces must stay
     * >= want: the extent can be one pixel short of the nominal size (or even zero). */
    for (int k = 1; k <= levels && k < 32; k++) {
        if (codec_src_ceil_shift(w, k) < want_w || codec_src_ceil_shift(h, k) < want_h)
            break;
        if (codec_src_extent(x, w, k) < want_w || codec_src_extent(y, h, k) < want_h)
            break;
        r = k;
    }
    return r;
}

static int sniff_format(const char *path, enum codec_format *format, struct verr *err)
{
    unsigned char head[12];
    size_t n;
    FILE *fp = codec_src_open(path, err);

    if (!fp)
        return -1;
    n = fread(head, 1, sizeof head, fp);
    if (ferror(fp)) {
        fclose(fp);
        return verr_set(err, 500, "cannot read source image");
    }
    fclose(fp);
    if (n >= sizeof jp2_magic && memcmp(head, jp2_magic, sizeof jp2_magic) == 0)
        *format = CODEC_FORMAT_JP2;
    else if (n >= sizeof j2k_magic && memcmp(head, j2k_magic, sizeof j2k_magic) == 0)
        *format = CODEC_FORMAT_J2K;
    else if (n >= sizeof jpeg_magic && memcmp(head, jpeg_magic, sizeof jpeg_magic) == 0)
        *format = CODEC_FORMAT_JPEG;
    else if (n >= sizeof png_magic && memcmp(head, png_magic, sizeof png_magic) == 0)
        *format = CODEC_FORMAT_PNG;
    else if (n == 0)
        return verr_set(err, 415, "source image is an empty file");
    else
        return verr_set(err, 415, "source is not a JPEG 2000, JPEG or PNG image");
    return 0;
}

/* An embedded profile describes our output only if its colour space is the output's. A CMYK
 * profile (CMYK JPEG or JP2, converted to RGB here) attached to RGB output would make viewers
 * misread every pixel, so it is dropped, as is anything too short or unsigned to be a profile
 * (ICC.1:2010 7.2: 128-byte header, data colour space at 16, 'acsp' at 36). */
static void keep_matching_icc(struct codec_info *info)
{
    const unsigned char *p = info->icc;
    bool keep = false;

    if (!p)
        return;
    if (info->icc_len >= 132) {
        uint32_t declared =
            (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        const char *space = info->channels >= 3 ? "RGB " : "GRAY";
        keep = declared >= 132 && declared <= info->icc_len && memcmp(p + 36, "acsp", 4) == 0 &&
               memcmp(p + 16, space, 4) == 0;
    }
    if (!keep) {
        free(info->icc);
        info->icc = NULL;
        info->icc_len = 0;
    }
}

int codec_probe(const char *path, uint64_t max_pixels, struct codec_info *info, struct verr *err)
{
    enum codec_format format = CODEC_FORMAT_JP2;
    int rc;

    if (!info)
        return verr_set(err, 500, "codec_probe: no info to fill");
    memset(info, 0, sizeof *info);
    if (sniff_format(path, &format, err) < 0)
        return -1;
    switch (format) {
    case CODEC_FORMAT_JP2:
    case CODEC_FORMAT_J2K:
        rc = codec_jp2_probe(path, format, info, err);
        break;
    case CODEC_FORMAT_JPEG:
        rc = codec_jpeg_probe(path, info, err);
        break;
    case CODEC_FORMAT_PNG:
        rc = codec_png_probe(path, max_pixels, info, err);
        break;
    default:
        rc = verr_set(err, 415, "unsupported source format");
        break;
    }
    if (rc < 0)
        goto fail;
    info->format = format;
    if (codec_src_check_area(info->width, info->height, max_pixels, "source image", err) < 0)
        goto fail;
    if (info->channels < 1 || info->channels > 4) {
        verr_set(err, 500, "source image has %d output channels", info->channels);
        goto fail;
    }
    if (info->orientation < 1 || info->orientation > 8)
        info->orientation = 1;
    keep_matching_icc(info);
    return 0;
fail:
    codec_info_clear(info);
    return -1;
}

void codec_info_clear(struct codec_info *info)
{
    if (!info)
        return;
    free(info->icc);
    memset(info, 0, sizeof *info);
}

int codec_decode(const char *path, const struct codec_info *info,
                 const struct codec_decode_req *req, struct codec_image **out, struct verr *err)
{
    int rc;

    if (!out)
        return verr_set(err, 500, "codec_decode: nowhere to put the image");
    *out = NULL;
    if (!info || !req)
        return verr_set(err, 500, "codec_decode: missing info or request");
    if (req->w == 0 || req->h == 0 || req->x >= info->width || req->y >= info->height ||
        req->w > info->width - req->x || req->h > info->height - req->y)
        return verr_set(err, 400, "region %u,%u,%u,%u is not inside the %ux%u image", req->x,
                        req->y, req->w, req->h, info->width, info->height);
    switch (info->format) {
    case CODEC_FORMAT_JP2:
    case CODEC_FORMAT_J2K:
        rc = codec_jp2_decode(path, info, req, out, err);
        break;
    case CODEC_FORMAT_JPEG:
        rc = codec_jpeg_decode(path, info, req, out, err);
        break;
    case CODEC_FORMAT_PNG:
        rc = codec_png_decode(path, info, req, out, err);
        break;
    default:
        rc = verr_set(err, 500, "unknown source format %d", (int)info->format);
        break;
    }
    if (rc < 0)
        return -1;
    if (!*out || (*out)->channels != info->channels) {
        codec_image_free(*out);
        *out = NULL;
        return verr_set(err, 500, "decoder returned an image unlike its header");
    }
    return 0;
}
