/* jpeg_src.c: JPEG sources through libjpeg-turbo. What the library does not expose (EXIF
 * orientation, ICC profile chunks, the Adobe marker that says CMYK is stored inverted, the sample
 * precision) comes from a small bounded marker parser here. Decode picks a DCT scaling (1, 1/2,
 * 1/4, 1/8) that keeps the region at least as large as wanted and decodes only what the region
 * needs at that scale: rows above it are skipped (entropy-decoded, no IDCT), rows below it are
 * never read, and columns outside it (plus a margin, below) are not transformed. Sizes reported
 * and regions requested are as displayed (after EXIF orientation). */
#include "source_internal.h"

#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE and size_t */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

/* ICC.1 B.4: a profile is split over APP2 "ICC_PROFILE" segments numbered 1..count <= 255. */
#define ICC_MAX_CHUNKS 256

struct jpeg_meta {
    int precision;          /* 0 until a SOF marker is seen */
    uint32_t width, height; /* as stored */
    int ncomp;
    int orientation; /* EXIF, 1..8 */
    bool has_exif;
    bool adobe;        /* APP14 "Adobe": CMYK samples are inverted */
    bool progressive;  /* SOF2/6/10/14: libjpeg keeps every coefficient of the image */
    size_t header_len; /* bytes up to the end of the first SOS segment */
    /* ICC chunks located in the parsed buffer */
    int icc_count;
    size_t icc_off[ICC_MAX_CHUNKS], icc_len[ICC_MAX_CHUNKS];
};

enum parse_result { PARSE_DONE, PARSE_NEED_MORE, PARSE_BAD };

static uint16_t rd16(const unsigned char *p, bool le)
{
    return le ? (uint16_t)(p[0] | p[1] << 8) : (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const unsigned char *p, bool le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* EXIF orientation (TIFF tag 0x0112 in IFD0) from the body of an APP1 segment that follows
 * "Exif\0\0". Anything malformed or out of range means 1 (as stored). */
static int exif_orientation(const unsigned char *p, size_t n)
{
    bool le;
    uint32_t ifd;
    uint16_t count;

    if (n < 8)
        return 1;
    if (p[0] == 'I' && p[1] == 'I')
        le = true;
    else if (p[0] == 'M' && p[1] == 'M')
        le = false;
    else
        return 1;
    if (rd16(p + 2, le) != 42)
        return 1;
    ifd = rd32(p + 4, le);
    if (ifd < 8 || ifd > n - 2)
        return 1;
    count = rd16(p + ifd, le);
    for (uint32_t i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)12 * i;
        uint16_t type;
        uint32_t v;
        if (e > n || n - e < 12)
            break;
        if (rd16(p + e, le) != 0x0112)
            continue;
        type = rd16(p + e + 2, le);
        if (rd32(p + e + 4, le) < 1)
            return 1;
        if (type == 3) /* SHORT, the type the spec gives */
            v = rd16(p + e + 8, le);
        else if (type == 4) /* LONG: seen in the wild */
            v = rd32(p + e + 8, le);
        else
            return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* Walk the markers of buf from SOI to the first SOS. Pure and restartable: the caller may call
 * it again on a longer prefix of the same file. */
static enum parse_result parse_markers(const unsigned char *buf, size_t len, struct jpeg_meta *m)
{
    size_t pos = 2;

    memset(m, 0, sizeof *m);
    m->orientation = 1;
    if (len < 2)
        return PARSE_NEED_MORE;
    if (buf[0] != 0xff || buf[1] != 0xd8)
        return PARSE_BAD;
    for (;;) {
        unsigned marker;
        size_t seg_len, n;
        const unsigned char *seg;

        if (pos >= len)
            return PARSE_NEED_MORE;
        if (buf[pos] != 0xff)
            return PARSE_BAD;
        while (pos < len && buf[pos] == 0xff) /* fill bytes (B.1.1.2) */
            pos++;
        if (pos >= len)
            return PARSE_NEED_MORE;
        marker = buf[pos++];
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7))
            continue; /* TEM, RSTn: no length */
        if (marker == 0xd8 || marker == 0xd9 || marker == 0x00)
            return PARSE_BAD; /* SOI again, EOI before any scan, stuffed zero */
        if (len - pos < 2)
            return PARSE_NEED_MORE;
        seg_len = (size_t)buf[pos] << 8 | buf[pos + 1];
        if (seg_len < 2)
            return PARSE_BAD;
        if (len - pos < seg_len)
            return PARSE_NEED_MORE;
        seg = buf + pos + 2;
        n = seg_len - 2;
        if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 &&
            marker != 0xcc) {
            /* B.2.2: P, Y, X, Nf, then Nf times (C, H:V, Tq), sampling factors 1..4. */
            if (n < 6 || n < 6 + (size_t)3 * seg[5] || seg[5] == 0)
                return PARSE_BAD;
            for (int c = 0; c < seg[5]; c++) {
                int hv = seg[6 + 3 * c + 1];
                if ((hv >> 4) < 1 || (hv >> 4) > 4 || (hv & 15) < 1 || (hv & 15) > 4)
                    return PARSE_BAD;
            }
            if (!m->precision) {
                m->progressive = (marker & 3) == 2;
                m->precision = seg[0];
                m->height = (uint32_t)seg[1] << 8 | seg[2];
                m->width = (uint32_t)seg[3] << 8 | seg[4];
                m->ncomp = seg[5];
            }
        } else if (marker == 0xe1 && n >= 6 && memcmp(seg, "Exif\0\0", 6) == 0 && !m->has_exif) {
            m->has_exif = true;
            m->orientation = exif_orientation(seg + 6, n - 6);
        } else if (marker == 0xe2 && n > 14 && memcmp(seg, "ICC_PROFILE\0", 12) == 0) {
            int seq = seg[12], count = seg[13];
            /* Chunks that disagree on the count or repeat a number make the profile unusable;
             * icc_count = -1 remembers that. */
            if (m->icc_count == 0 && count > 0)
                m->icc_count = count;
            if (m->icc_count > 0 &&
                (count != m->icc_count || seq < 1 || seq > count || m->icc_len[seq - 1]))
                m->icc_count = -1;
            if (m->icc_count > 0) {
                m->icc_off[seq - 1] = pos + 2 + 14;
                m->icc_len[seq - 1] = n - 14;
            }
        } else if (marker == 0xee && n >= 12 && memcmp(seg, "Adobe", 5) == 0) {
            m->adobe = true;
        } else if (marker == 0xda) {
            m->header_len = pos + seg_len;
            return m->precision ? PARSE_DONE : PARSE_BAD;
        }
        pos += seg_len;
    }
}

/* Concatenate the ICC chunks found by parse_markers() (all of 1..count must be there). */
static int collect_icc(const unsigned char *buf, const struct jpeg_meta *m, unsigned char **icc,
                       size_t *icc_len, struct verr *err)
{
    size_t total = 0, at = 0;

    *icc = NULL;
    *icc_len = 0;
    if (m->icc_count <= 0)
        return 0;
    for (int i = 0; i < m->icc_count; i++) {
        if (!m->icc_len[i])
            return 0; /* a chunk is missing: no profile rather than half of one */
        total += m->icc_len[i];
    }
    *icc = malloc(total);
    if (!*icc)
        return verr_set(err, 500, "out of memory copying the ICC profile");
    for (int i = 0; i < m->icc_count; i++) {
        memcpy(*icc + at, buf + m->icc_off[i], m->icc_len[i]);
        at += m->icc_len[i];
    }
    *icc_len = total;
    return 0;
}

/* What we can decode: 8-bit samples, 1 (grey), 3 (YCbCr or RGB) or 4 (CMYK or YCCK)
 * components. The probe uses this marker parser, not TurboJPEG 2.1's tjDecompressHeader3(),
 * which refuses valid CMYK/YCCK files whose K component is not sampled like the others ("Could
 * not determine subsampling type") although libjpeg decodes them fine. */
static int check_header(const struct jpeg_meta *m, struct verr *err)
{
    if (m->precision != 8)
        return verr_set(err, 415, "%d-bit JPEG is not supported (8-bit only)", m->precision);
    if (m->ncomp != 1 && m->ncomp != 3 && m->ncomp != 4)
        return verr_set(err, 415, "JPEG with %d components is not supported", m->ncomp);
    if (m->width == 0 || m->height == 0)
        return verr_set(err, 500, "corrupt JPEG header: size %ux%u", m->width, m->height);
    return 0;
}

int codec_jpeg_probe(const char *path, struct codec_info *info, struct verr *err)
{
    FILE *fp = NULL;
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    struct jpeg_meta *m;
    enum parse_result pr = PARSE_NEED_MORE;

    /* The ICC chunk table makes the metadata a few KB: keep it off the stack. */
    m = calloc(1, sizeof *m);
    if (!m)
        return verr_set(err, 500, "out of memory probing a JPEG");
    fp = codec_src_open(path, err);
    if (!fp)
        goto fail;
    /* Read only the header: grow the buffer until the parser reaches the first scan. */
    while (pr == PARSE_NEED_MORE) {
        size_t got;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            unsigned char *nbuf;
            if (cap >= CODEC_SRC_MAX_HEADER_BYTES) {
                verr_set(err, 413, "JPEG header larger than %u bytes", CODEC_SRC_MAX_HEADER_BYTES);
                goto fail;
            }
            nbuf = realloc(buf, ncap);
            if (!nbuf) {
                verr_set(err, 500, "out of memory reading a JPEG header");
                goto fail;
            }
            buf = nbuf;
            cap = ncap;
        }
        got = fread(buf + len, 1, cap - len, fp);
        len += got;
        pr = parse_markers(buf, len, m);
        if (pr == PARSE_NEED_MORE && got == 0) {
            verr_set(err, 500, "truncated JPEG: the file ends inside its header");
            goto fail;
        }
    }
    if (pr == PARSE_BAD) {
        verr_set(err, 500, "corrupt JPEG header (malformed marker segments)");
        goto fail;
    }
    if (check_header(m, err) < 0)
        goto fail;
    if (collect_icc(buf, m, &info->icc, &info->icc_len, err) < 0)
        goto fail;
    info->orientation = m->orientation;
    info->width = m->orientation >= 5 ? m->height : m->width;
    info->height = m->orientation >= 5 ? m->width : m->height;
    info->channels = m->ncomp == 1 ? 1 : 3;
    info->bit_depth = 8;
    info->levels = 3; /* DCT scaling 1/2, 1/4, 1/8 */
    info->tile_w = info->tile_h = 0;
    fclose(fp);
    free(buf);
    free(m);
    return 0;
fail:
    if (fp)
        fclose(fp);
    free(buf);
    free(m);
    return -1;
}

/* EXIF orientation o (what to do to the stored image to display it) as at most three steps:
 * transpose (5..8), then mirror left-right and/or top-bottom. 6 (turn 90 clockwise) is
 * transpose + mirror left-right, 8 (turn 270) transpose + mirror top-bottom, 7 all three. */
struct orient {
    bool transpose, flip_x, flip_y;
};

static struct orient orient_of(int o)
{
    struct orient t = {o >= 5, o == 2 || o == 3 || o == 6 || o == 7,
                       o == 3 || o == 4 || o == 7 || o == 8};
    return t;
}

/* The stored rectangle r (x, y, w, h) shown as the displayed rectangle (x, y, w, h) of an image
 * stored as sw x sh: undo the mirrors in displayed coordinates, then the transpose. */
static void displayed_to_stored(struct orient t, uint32_t sw, uint32_t sh, uint32_t x, uint32_t y,
                                uint32_t w, uint32_t h, uint32_t r[4])
{
    uint32_t dw = t.transpose ? sh : sw, dh = t.transpose ? sw : sh;

    if (t.flip_x)
        x = dw - x - w;
    if (t.flip_y)
        y = dh - y - h;
    r[0] = t.transpose ? y : x;
    r[1] = t.transpose ? x : y;
    r[2] = t.transpose ? h : w;
    r[3] = t.transpose ? w : h;
}

/* Where stored pixel (sx, sy) of a cw x ch crop goes when the crop is displayed. */
static void stored_to_displayed(struct orient t, uint32_t cw, uint32_t ch, uint32_t sx, uint32_t sy,
                                uint32_t *dx, uint32_t *dy)
{
    uint32_t tx = t.transpose ? sy : sx, ty = t.transpose ? sx : sy;
    uint32_t tw = t.transpose ? ch : cw, th = t.transpose ? cw : ch;

    *dx = t.flip_x ? tw - 1 - tx : tx;
    *dy = t.flip_y ? th - 1 - ty : ty;
}

/* Where a displayed region comes from: its rectangle in the stored image (sr), the DCT scale
 * 1/2^r, and its crop of the scaled stored image (cx, cy, cw x ch, in full_w x full_h). */
struct jpeg_plan {
    struct orient t;
    uint32_t sr[4];
    int r;
    uint32_t cx, cy, cw, ch;
    uint64_t full_w, full_h;
};

/* The region in stored coordinates, with the wanted size turned back, and the scale chosen
 * there; stored_w x stored_h is the image as stored (info's sizes are as displayed). */
static void plan_region(int o, uint32_t stored_w, uint32_t stored_h, int levels,
                        const struct codec_decode_req *req, struct jpeg_plan *p)
{
    p->t = orient_of(o);
    displayed_to_stored(p->t, stored_w, stored_h, req->x, req->y, req->w, req->h, p->sr);
    uint32_t want_w = o >= 5 ? req->want_h : req->want_w;
    uint32_t want_h = o >= 5 ? req->want_w : req->want_h;
    p->r = codec_src_pick_reduction(p->sr[0], p->sr[1], p->sr[2], p->sr[3], want_w, want_h,
                                    levels);
    /* libjpeg's scaled size: ceil(size / 2^r). */
    p->full_w = codec_src_ceil_shift(stored_w, p->r);
    p->full_h = codec_src_ceil_shift(stored_h, p->r);
    /* The crop in the scaled image, on the same ceil grid JPEG 2000 uses. */
    p->cx = (uint32_t)codec_src_ceil_shift(p->sr[0], p->r);
    p->cy = (uint32_t)codec_src_ceil_shift(p->sr[1], p->r);
    p->cw = (uint32_t)codec_src_extent(p->sr[0], p->sr[2], p->r);
    p->ch = (uint32_t)codec_src_extent(p->sr[1], p->sr[3], p->r);
}

int codec_jpeg_level_rect(const struct codec_info *info, const struct codec_decode_req *req,
                          uint64_t rect[4])
{
    int o = info->orientation;
    struct jpeg_plan p;
    plan_region(o, o >= 5 ? info->height : info->width, o >= 5 ? info->width : info->height,
                info->levels, req, &p);
    /* The crop, turned as the decode turns it: a rectangle of the scaled image as displayed. */
    uint64_t x0 = p.t.transpose ? p.cy : p.cx, y0 = p.t.transpose ? p.cx : p.cy;
    uint64_t x1 = x0 + (p.t.transpose ? p.ch : p.cw), y1 = y0 + (p.t.transpose ? p.cw : p.ch);
    uint64_t dw = p.t.transpose ? p.full_h : p.full_w, dh = p.t.transpose ? p.full_w : p.full_h;
    rect[0] = p.t.flip_x ? dw - x1 : x0;
    rect[1] = p.t.flip_y ? dh - y1 : y0;
    rect[2] = p.t.flip_x ? dw - x0 : x1;
    rect[3] = p.t.flip_y ? dh - y0 : y1;
    return p.r;
}

static unsigned char mul255(unsigned a, unsigned b)
{
    return (unsigned char)((a * b + 127) / 255);
}

/* ---- decoding ----------------------------------------------------------------------------
 * libjpeg reports a fatal error through error_exit, which must not return: it jumps back to
 * decode_rows(). Every buffer there is the caller's, and the decompressor and its error manager
 * are only changed through pointers handed to libjpeg (so they live in memory, as in libjpeg's
 * example.c); no other local changes after setjmp(), so none has to be volatile. */
#define JPEG_MAX_SCANS 500 /* more is a known denial of service (libjpeg-turbo's LIMITSCANS) */

struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
};

static void jerr_exit(j_common_ptr c)
{
    struct jerr *e = (struct jerr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings, such as a truncated scan, still give a complete image and are accepted, as djpeg
 * does; nothing is printed. */
static void jerr_emit(j_common_ptr c, int level)
{
    if (level < 0)
        c->err->num_warnings++;
}

static void scan_limit(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        struct jerr *e = (struct jerr *)c->err;
        snprintf(e->msg, sizeof e->msg, "progressive JPEG with more than %d scans",
                 JPEG_MAX_SCANS);
        longjmp(e->jump, 1);
    }
}

/* What decode_rows() decodes: the image scaled by 1/2^r (expected full_w x full_h), as
 * colour space cs with ps bytes per pixel, its pixels [x, x+w) x [y, y+h) into out (w * ps bytes
 * per row); row is scratch for one decoded row, full_w * ps bytes. */
struct rows_req {
    const unsigned char *file;
    size_t len;
    int r, ps;
    J_COLOR_SPACE cs;
    uint64_t full_w, full_h;
    uint32_t x, y, w, h;
    unsigned char *out, *row;
};

static int decode_rows(const struct rows_req *q, struct verr *err)
{
    struct jpeg_decompress_struct d;
    struct jerr e;
    struct jpeg_progress_mgr prog = {.progress_monitor = scan_limit};
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jerr_exit;
    e.pub.emit_message = jerr_emit;
    e.msg[0] = '\0';
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&d);
        return verr_set(err, 500, "corrupt JPEG data: %s", e.msg);
    }
    jpeg_create_decompress(&d);
    d.progress = &prog;
    jpeg_mem_src(&d, q->file, (unsigned long)q->len);
    (void)jpeg_read_header(&d, TRUE);
    d.scale_num = 1;
    d.scale_denom = 1u << q->r;
    d.out_color_space = q->cs;
    (void)jpeg_start_decompress(&d);
    if (d.output_width != q->full_w || d.output_height != q->full_h ||
        d.output_components != q->ps) {
        jpeg_destroy_decompress(&d);
        return verr_set(err, 500, "JPEG decodes to %ux%ux%d, not the probed %llux%llux%d",
                        d.output_width, d.output_height, d.output_components,
                        (unsigned long long)q->full_w, (unsigned long long)q->full_h, q->ps);
    }
    /* Columns: crop to the region plus one iMCU on each side. libjpeg-turbo moves the left edge
     * to an iMCU boundary itself; the margin is for its smooth chroma upsampling, which treats
     * a cropped row's ends as the image's edges (libjpeg.txt, "Partial image decompression"),
     * so pixels right at a crop edge may differ from a full decode's. */
    JDIMENSION margin = (JDIMENSION)(d.max_h_samp_factor * d.min_DCT_scaled_size);
    JDIMENSION x0 = q->x > margin ? q->x - margin : 0;
    JDIMENSION x1 = (uint64_t)q->x + q->w + margin < q->full_w ? q->x + q->w + margin
                                                               : (JDIMENSION)q->full_w;
    JDIMENSION cw = x1 - x0;
    if (x0 > 0 || cw < d.output_width)
        jpeg_crop_scanline(&d, &x0, &cw);
    if (q->y > 0)
        (void)jpeg_skip_scanlines(&d, q->y);
    size_t at = (size_t)(q->x - x0) * (size_t)q->ps, n = (size_t)q->w * (size_t)q->ps;
    for (uint32_t i = 0; i < q->h; i++) {
        JSAMPROW row = q->row;
        if (jpeg_read_scanlines(&d, &row, 1) != 1) {
            jpeg_destroy_decompress(&d);
            return verr_set(err, 500, "corrupt JPEG data: row %u missing", q->y + i);
        }
        memcpy(q->out + (size_t)i * n, q->row + at, n);
    }
    jpeg_destroy_decompress(&d); /* rows below the region are never decoded */
    return 0;
}

int codec_jpeg_decode(const char *path, const struct codec_info *info,
                      const struct codec_decode_req *req, struct codec_image **out,
                      struct verr *err)
{
    unsigned char *file = NULL, *region = NULL, *row = NULL;
    size_t file_len = 0;
    struct jpeg_meta *m = NULL;
    struct codec_image *dst = NULL;
    int ps, o;
    J_COLOR_SPACE cs;
    struct jpeg_plan pl;

    m = calloc(1, sizeof *m);
    if (!m)
        return verr_set(err, 500, "out of memory decoding a JPEG");
    if (codec_src_read_all(path, CODEC_SRC_MAX_FILE_BYTES, &file, &file_len, err) < 0)
        goto fail;
    if (parse_markers(file, file_len, m) != PARSE_DONE) {
        verr_set(err, 500, "corrupt or truncated JPEG header");
        goto fail;
    }
    if (check_header(m, err) < 0)
        goto fail;
    if (file_len > (size_t)0xffffffffu) {
        verr_set(err, 413, "JPEG file too large");
        goto fail;
    }
    o = m->orientation;
    if ((o >= 5 ? m->height : m->width) != info->width ||
        (o >= 5 ? m->width : m->height) != info->height || o != info->orientation) {
        verr_set(err, 500, "JPEG source changed since it was probed");
        goto fail;
    }

    /* Work in stored coordinates: the region, and the wanted size, turned back. */
    plan_region(o, m->width, m->height, info->levels, req, &pl);
    const struct orient t = pl.t;
    const int r = pl.r;
    const uint64_t full_w = pl.full_w, full_h = pl.full_h;
    const uint32_t cx = pl.cx, cy = pl.cy, cw = pl.cw, ch = pl.ch;
    if (cw == 0 || ch == 0 || cx + (uint64_t)cw > full_w || cy + (uint64_t)ch > full_h) {
        verr_set(err, 500, "JPEG region does not fit the scaled image");
        goto fail;
    }

    /* libjpeg converts YCbCr to RGB and YCCK to CMYK itself. */
    if (m->ncomp == 1) {
        cs = JCS_GRAYSCALE;
        ps = 1;
    } else if (m->ncomp == 4) {
        cs = JCS_CMYK;
        ps = 4;
    } else {
        cs = JCS_RGB;
        ps = 3;
    }
    if ((ps == 1) != (info->channels == 1)) {
        verr_set(err, 500, "JPEG colour space changed since it was probed");
        goto fail;
    }
    /* The whole scaled image is what the entropy decoder walks through (up to the region's
     * last row), so that is what the pixel cap applies to. */
    if (codec_src_check_area(full_w, full_h, req->max_pixels, "decoded JPEG", err) < 0)
        goto fail;
    bool upright = !t.transpose && !t.flip_x && !t.flip_y;
    bool direct = upright && ps == info->channels; /* rows land in the result as they are */
    uint64_t region_bytes = (uint64_t)cw * ch * (uint64_t)ps;
    if (region_bytes > CODEC_SRC_MAX_DECODE_BYTES) {
        verr_set(err, 413, "decoded JPEG region of %ux%u is too large", cw, ch);
        goto fail;
    }
    /* A progressive file is decoded from a buffer of all its DCT coefficients (2 bytes each,
     * every component at full size: an upper bound with subsampling), whatever the scale. */
    uint64_t coef_bytes =
        m->progressive ? (uint64_t)m->width * m->height * (uint64_t)m->ncomp * 2 : 0;
    if (codec_src_check_memory(region_bytes * (direct ? 1 : 2) + full_w * (uint64_t)ps +
                                   coef_bytes,
                               req->max_bytes, "decoding this JPEG", err) < 0)
        goto fail;
    dst =
        o >= 5 ? codec_image_new(ch, cw, info->channels) : codec_image_new(cw, ch, info->channels);
    row = malloc((size_t)full_w * (size_t)ps);
    region = direct ? NULL : malloc((size_t)region_bytes);
    if (!dst || !row || (!direct && !region)) {
        verr_set(err, 500, "out of memory for a %ux%u decoded JPEG region", cw, ch);
        goto fail;
    }
    const struct rows_req q = {
        .file = file, .len = file_len, .r = r, .ps = ps, .cs = cs, .full_w = full_w,
        .full_h = full_h, .x = cx, .y = cy, .w = cw, .h = ch, .out = direct ? dst->px : region,
        .row = row,
    };
    if (decode_rows(&q, err) < 0)
        goto fail;

    for (uint32_t sy = 0; !direct && sy < ch; sy++) {
        const unsigned char *src = region + (size_t)sy * cw * (size_t)ps;
        for (uint32_t sx = 0; sx < cw; sx++, src += ps) {
            uint32_t dx, dy;
            unsigned char *p;
            stored_to_displayed(t, cw, ch, sx, sy, &dx, &dy);
            p = dst->px + ((size_t)dy * dst->w + dx) * (size_t)dst->channels;
            if (ps == 4) {
                /* Adobe writes CMYK inverted (0 = full ink); without its marker, 0 = no ink. */
                unsigned c = src[0], mg = src[1], y = src[2], k = src[3];
                if (!m->adobe) {
                    c = 255 - c;
                    mg = 255 - mg;
                    y = 255 - y;
                    k = 255 - k;
                }
                p[0] = mul255(c, k);
                p[1] = mul255(mg, k);
                p[2] = mul255(y, k);
            } else {
                memcpy(p, src, (size_t)ps);
            }
        }
    }
    free(region);
    free(row);
    free(file);
    free(m);
    *out = dst;
    return 0;
fail:
    codec_image_free(dst);
    free(region);
    free(row);
    free(file);
    free(m);
    return -1;
}
