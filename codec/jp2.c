/* jp2.c: JPEG 2000 sources (JP2/JPX files and raw J2K codestreams) through OpenJPEG 2.5.
 * Probe reads the main header plus the JP2 header box (which OpenJPEG only applies at decode
 * time); decode asks OpenJPEG for just the region at the chosen resolution level, then turns
 * the components (any precision, signed or not, sub-sampled or not, sYCC or CMYK) into 8-bit
 * interleaved G, GA, RGB or RGBA. Every call gets its own codec and stream. */
#include "source_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <openjpeg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* OpenJPEG reports through callbacks; the first error is what the client gets to read. */
struct jp2_log {
    int n_errors;
    char first_error[200];
};

/* Everything one call opens, so that a single close frees it whatever happened. */
struct jp2_reader {
    opj_stream_t *stream;
    opj_codec_t *codec;
    opj_image_t *image;
    struct jp2_log log;
};

/* What the JP2 header box says that OpenJPEG's opj_read_header() does not expose: OpenJPEG 2.5
 * applies palette and channel definitions, sets the colour space and hands over the ICC profile
 * (image->icc_profile_buf) only in opj_decode(), so the probe reads these boxes itself. */
struct jp2_boxes {
    bool has_enumcs;
    uint32_t enumcs;    /* first 'colr' with METH 1 */
    unsigned char *icc; /* first 'colr' with METH 2 (restricted) or 3 (any ICC, JPX) */
    size_t icc_len;
    int pclr_columns; /* 0 without a palette */
    int pclr_bits;
    int cmap_entries;
    int cdef_entries;
    int cdef_alpha; /* channels typed opacity or premultiplied opacity */
};

/* How decoded components become output channels. */
enum jp2_colour { JP2_GREY, JP2_RGB, JP2_YCC, JP2_CMYK };

static void log_error(const char *msg, void *client)
{
    struct jp2_log *log = client;
    size_t n;

    if (log->n_errors++ == 0 && msg) {
        snprintf(log->first_error, sizeof log->first_error, "%s", msg);
        /* OpenJPEG messages end with a newline; a verr message should not. */
        n = strlen(log->first_error);
        while (n > 0 && (log->first_error[n - 1] == '\n' || log->first_error[n - 1] == '\r'))
            log->first_error[--n] = '\0';
    }
}

/* Warnings and info are chatty and not errors: dropped, never printed. */
static void log_quiet(const char *msg, void *client)
{
    (void)msg;
    (void)client;
}

static const char *log_message(const struct jp2_log *log)
{
    return log->n_errors ? log->first_error : "no details from OpenJPEG";
}

static void reader_close(struct jp2_reader *rd)
{
    if (rd->image)
        opj_image_destroy(rd->image);
    if (rd->codec)
        opj_destroy_codec(rd->codec);
    if (rd->stream)
        opj_stream_destroy(rd->stream);
    rd->image = NULL;
    rd->codec = NULL;
    rd->stream = NULL;
}

/* Open path and read its main header. rd must stay where it is until reader_close(): the
 * callbacks hold a pointer to rd->log. */
#define BOX(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

static uint16_t be16(const unsigned char *p);
static uint32_t be32(const unsigned char *p);
static uint64_t be64(const unsigned char *p);

/* OpenJPEG allocates per tile and component while it reads the main header, before anything
 * can be checked: a 2.5 KB file declaring 46,601 tiles of 257 components made it allocate about
 * 13 GB (found by fuzz_jp2, tests/fuzz/regressions). So read SIZ (ISO/IEC 15444-1 A.5.1)
 * ourselves first and refuse tile x component counts no real image has. 2^18 allows a
 * 3-component image of 87,000 tiles (300,000 px square at 1024 px tiles). */
#define MAX_TILE_COMPONENTS (1u << 18)

static int check_siz(FILE *fp, enum codec_format format, struct verr *err)
{
    unsigned char b[64];
    if (format == CODEC_FORMAT_JP2) {
        /* Walk the top-level boxes to the contiguous codestream box. */
        for (int i = 0; i < 1024; i++) {
            uint64_t box_len, hdr_len = 8;
            if (fread(b, 1, 8, fp) != 8)
                goto unknown;
            box_len = be32(b);
            if (box_len == 1) {
                if (fread(b + 8, 1, 8, fp) != 8)
                    goto unknown;
                box_len = be64(b + 8);
                hdr_len = 16;
            }
            if (be32(b + 4) == BOX('j', 'p', '2', 'c'))
                break;
            if (box_len < hdr_len || box_len - hdr_len > (uint64_t)INT64_MAX ||
                fseeko(fp, (off_t)(box_len - hdr_len), SEEK_CUR) != 0)
                goto unknown;
        }
    }
    /* SOC, SIZ, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz */
    if (fread(b, 1, 42, fp) != 42 || be16(b) != 0xFF4F || be16(b + 2) != 0xFF51)
        goto unknown;
    uint64_t xs = be32(b + 8), ys = be32(b + 12), xt = be32(b + 24), yt = be32(b + 28);
    uint64_t xto = be32(b + 32), yto = be32(b + 36), comps = be16(b + 40);
    if (xt == 0 || yt == 0 || xto >= xs || yto >= ys)
        return 0; /* malformed: OpenJPEG's own SIZ checks reject it without allocating */
    uint64_t tiles = ((xs - xto + xt - 1) / xt) * ((ys - yto + yt - 1) / yt);
    if (tiles * comps > MAX_TILE_COMPONENTS)
        return verr_set(err, 413,
                        "JPEG 2000 header declares %" PRIu64 " tiles x %" PRIu64
                        " components, more than the %u this server decodes",
                        tiles, comps, MAX_TILE_COMPONENTS);
    return 0;
unknown:
    /* Not where we expected it: let OpenJPEG report what is wrong. */
    return 0;
}

/* OpenJPEG's stream over the source file, read with pread at a position of our own.
 * opj_stream_create_default_file_stream() buffers 1 MB per read, and OpenJPEG seeks from
 * tile-part header to tile-part header: decoding one 1024x1024 tile of a 4.5 MB file with
 * tile-parts by resolution read 8.3 MB. With a small buffer, reads bigger than it (tile data)
 * go straight to OpenJPEG's memory and each seek costs at most one buffer. Measured (whole
 * `vellum render` processes, median of 15): a 256-pixel tile of that file 13.7 -> 11.7 ms, a
 * whole 1024 tile 38.1 -> 36.1 ms; 16 KB beat 64 KB slightly. */
#define STREAM_BUFFER (16 * 1024)

struct file_stream {
    FILE *fp; /* owned; only its descriptor is read */
    uint64_t size, pos;
};

static OPJ_SIZE_T fs_read(void *buf, OPJ_SIZE_T n, void *user)
{
    struct file_stream *fs = user;
    size_t got = 0;
    while (got < n && fs->pos < fs->size) {
        ssize_t r = pread(fileno(fs->fp), (unsigned char *)buf + got, n - got, (off_t)fs->pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        fs->pos += (uint64_t)r;
    }
    return got ? got : (OPJ_SIZE_T)-1;
}

static OPJ_OFF_T fs_skip(OPJ_OFF_T n, void *user)
{
    struct file_stream *fs = user;
    if (n < 0 ? (uint64_t)-n > fs->pos : (uint64_t)n > UINT64_MAX / 2 - fs->pos)
        return -1;
    fs->pos = n < 0 ? fs->pos - (uint64_t)-n : fs->pos + (uint64_t)n;
    return n;
}

static OPJ_BOOL fs_seek(OPJ_OFF_T off, void *user)
{
    struct file_stream *fs = user;
    if (off < 0)
        return OPJ_FALSE;
    fs->pos = (uint64_t)off;
    return OPJ_TRUE;
}

static void fs_free(void *user)
{
    struct file_stream *fs = user;
    fclose(fs->fp);
    free(fs);
}

/* A stream over fp, which it owns from here on (closed with the stream, or now on failure). */
static opj_stream_t *file_stream_new(FILE *fp)
{
    struct stat st;
    struct file_stream *fs = NULL;
    opj_stream_t *stream = NULL;
    if (fstat(fileno(fp), &st) < 0 || st.st_size < 0 || !(fs = malloc(sizeof *fs)) ||
        !(stream = opj_stream_create(STREAM_BUFFER, OPJ_TRUE))) {
        free(fs);
        fclose(fp);
        return NULL;
    }
    *fs = (struct file_stream){fp, (uint64_t)st.st_size, 0};
    opj_stream_set_user_data(stream, fs, fs_free);
    opj_stream_set_user_data_length(stream, fs->size);
    opj_stream_set_read_function(stream, fs_read);
    opj_stream_set_skip_function(stream, fs_skip);
    opj_stream_set_seek_function(stream, fs_seek);
    return stream;
}

static int reader_open(struct jp2_reader *rd, const char *path, enum codec_format format,
                       int threads, struct verr *err)
{
    opj_dparameters_t params;

    memset(rd, 0, sizeof *rd);
    FILE *fp = codec_src_open(path, err);
    if (!fp)
        return -1;
    if (check_siz(fp, format, err) < 0) {
        fclose(fp);
        return -1;
    }
    rd->stream = file_stream_new(fp);
    if (!rd->stream) {
        verr_set(err, 500, "out of memory for a JPEG 2000 stream");
        goto fail;
    }
    rd->codec = opj_create_decompress(format == CODEC_FORMAT_JP2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    if (!rd->codec) {
        verr_set(err, 500, "cannot create a JPEG 2000 decoder");
        goto fail;
    }
    if (!opj_set_info_handler(rd->codec, log_quiet, &rd->log) ||
        !opj_set_warning_handler(rd->codec, log_quiet, &rd->log) ||
        !opj_set_error_handler(rd->codec, log_error, &rd->log)) {
        verr_set(err, 500, "cannot install JPEG 2000 message handlers");
        goto fail;
    }
    opj_set_default_decoder_parameters(&params);
    if (!opj_setup_decoder(rd->codec, &params)) {
        verr_set(err, 500, "cannot set up the JPEG 2000 decoder: %s", log_message(&rd->log));
        goto fail;
    }
    /* Threads only speed things up; a library built without them still decodes. */
    if (threads > 1 && opj_has_thread_support())
        (void)opj_codec_set_threads(rd->codec, threads);
    if (!opj_read_header(rd->stream, rd->codec, &rd->image) || !rd->image) {
        verr_set(err, 500, "corrupt JPEG 2000 header: %s", log_message(&rd->log));
        goto fail;
    }
    if (rd->image->numcomps == 0 || !rd->image->comps) {
        verr_set(err, 500, "JPEG 2000 image has no components");
        goto fail;
    }
    return 0;
fail:
    reader_close(rd);
    return -1;
}

static uint16_t be16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}


/* Read the body of the top-level 'jp2h' box into *buf (NULL if there is none before the
 * codestream, or it is malformed or absurdly large: OpenJPEG has already judged the file, this
 * only looks for extra facts). Returns -1 only for I/O or memory failure. */
static int read_jp2h(const char *path, unsigned char **buf, size_t *len, struct verr *err)
{
    FILE *fp = codec_src_open(path, err);
    unsigned char hdr[16];

    *buf = NULL;
    *len = 0;
    if (!fp)
        return -1;
    /* ISO/IEC 15444-1 I.4: a handful of boxes precede the codestream; 1024 is generous. */
    for (int i = 0; i < 1024; i++) {
        uint64_t box_len, hdr_len = 8, body_len;
        uint32_t type;

        if (fread(hdr, 1, 8, fp) != 8)
            break;
        box_len = be32(hdr);
        type = be32(hdr + 4);
        if (box_len == 1) {
            if (fread(hdr + 8, 1, 8, fp) != 8)
                break;
            box_len = be64(hdr + 8);
            hdr_len = 16;
        } else if (box_len == 0) {
            break; /* "extends to the end of the file": only the codestream may do that */
        }
        if (box_len < hdr_len || type == BOX('j', 'p', '2', 'c'))
            break;
        body_len = box_len - hdr_len;
        if (type == BOX('j', 'p', '2', 'h')) {
            if (body_len > CODEC_SRC_MAX_HEADER_BYTES)
                break;
            *buf = malloc(body_len ? (size_t)body_len : 1);
            if (!*buf) {
                fclose(fp);
                return verr_set(err, 500, "out of memory reading the JP2 header");
            }
            if (fread(*buf, 1, (size_t)body_len, fp) != body_len) {
                free(*buf);
                *buf = NULL;
                break;
            }
            *len = (size_t)body_len;
            break;
        }
        if (body_len > (uint64_t)INT64_MAX || fseeko(fp, (off_t)body_len, SEEK_CUR) != 0)
            break;
    }
    fclose(fp);
    return 0;
}

/* Pick facts out of the sub-boxes of 'jp2h' (I.5.3). Bounded by len; malformed sub-boxes end
 * the walk. */
static int parse_jp2h(const unsigned char *buf, size_t len, struct jp2_boxes *bx, struct verr *err)
{
    size_t pos = 0;

    while (len - pos >= 8) {
        uint64_t box_len = be32(buf + pos), hdr_len = 8;
        uint32_t type = be32(buf + pos + 4);
        const unsigned char *body;
        size_t n;

        if (box_len == 1) {
            if (len - pos < 16)
                break;
            box_len = be64(buf + pos + 8);
            hdr_len = 16;
        } else if (box_len == 0) {
            box_len = len - pos;
        }
        if (box_len < hdr_len || box_len > len - pos)
            break;
        body = buf + pos + hdr_len;
        n = (size_t)(box_len - hdr_len);
        if (type == BOX('c', 'o', 'l', 'r') && n >= 3) {
            uint8_t meth = body[0];
            if (meth == 1 && n >= 7 && !bx->has_enumcs) {
                bx->has_enumcs = true;
                bx->enumcs = be32(body + 3);
            } else if ((meth == 2 || meth == 3) && n > 3 && !bx->icc) {
                bx->icc = malloc(n - 3);
                if (!bx->icc)
                    return verr_set(err, 500, "out of memory copying the ICC profile");
                memcpy(bx->icc, body + 3, n - 3);
                bx->icc_len = n - 3;
            }
        } else if (type == BOX('p', 'c', 'l', 'r') && n >= 3 && !bx->pclr_columns) {
            int npc = body[2];
            if (npc > 0 && n >= 3 + (size_t)npc) {
                bx->pclr_columns = npc;
                for (int i = 0; i < npc; i++)
                    if ((body[3 + i] & 0x7f) + 1 > bx->pclr_bits)
                        bx->pclr_bits = (body[3 + i] & 0x7f) + 1;
            }
        } else if (type == BOX('c', 'm', 'a', 'p') && !bx->cmap_entries) {
            bx->cmap_entries = (int)(n / 4 > 65535 ? 65535 : n / 4);
        } else if (type == BOX('c', 'd', 'e', 'f') && n >= 2 && !bx->cdef_entries) {
            size_t count = be16(body);
            for (size_t i = 0; i < count && 2 + 6 * (i + 1) <= n; i++) {
                uint16_t typ = be16(body + 2 + 6 * i + 2);
                bx->cdef_entries++;
                if (typ == 1 || typ == 2)
                    bx->cdef_alpha++;
            }
        }
        pos += (size_t)box_len;
    }
    return 0;
}

/* The output channel count for ncomp decoded components of which n_alpha are flagged as alpha
 * (by a cdef box). Without such flags, 2 components are grey+alpha and 4 are RGBA unless the
 * colour space is CMYK: the usual reading of raw codestreams. Beyond 4, the first colour
 * components are used and the rest ignored. */
static int output_channels(int ncomp, int n_alpha, bool alpha_known, bool is_cmyk)
{
    bool has_alpha;
    int ncolour;

    if (alpha_known) {
        has_alpha = n_alpha > 0;
        ncolour = ncomp - n_alpha;
    } else {
        has_alpha = ncomp == 2 || (ncomp == 4 && !is_cmyk);
        ncolour = ncomp - (has_alpha ? 1 : 0);
    }
    if (ncolour < 1) { /* everything flagged as alpha: read it as grey */
        has_alpha = false;
        ncolour = ncomp;
    }
    return (ncolour >= 3 ? 3 : 1) + (has_alpha ? 1 : 0);
}

int codec_jp2_probe(const char *path, enum codec_format format, struct codec_info *info,
                    struct verr *err)
{
    struct jp2_reader rd;
    struct jp2_boxes bx;
    opj_codestream_info_v2_t *cs = NULL;
    unsigned char *jp2h = NULL;
    size_t jp2h_len = 0;
    const opj_image_t *img;
    uint32_t min_res = UINT32_MAX;
    int ncomp;

    memset(&bx, 0, sizeof bx);
    if (reader_open(&rd, path, format, 1, err) < 0)
        return -1;
    img = rd.image;
    /* OpenJPEG rejects most absurd SIZ values itself; never rely on it. */
    if (img->x1 <= img->x0 || img->y1 <= img->y0) {
        verr_set(err, 500, "JPEG 2000 image area is empty (%u..%u x %u..%u)", img->x0, img->x1,
                 img->y0, img->y1);
        goto fail;
    }
    info->width = img->x1 - img->x0;
    info->height = img->y1 - img->y0;
    info->origin_x = img->x0;
    info->origin_y = img->y0;
    info->bit_depth = 0;
    for (uint32_t i = 0; i < img->numcomps; i++) {
        const opj_image_comp_t *c = &img->comps[i];
        if (c->prec < 1 || c->prec > 31 || c->dx < 1 || c->dy < 1) {
            verr_set(err, 415,
                     "JPEG 2000 component %u has unsupported precision %u or sampling "
                     "%ux%u",
                     i, c->prec, c->dx, c->dy);
            goto fail;
        }
        if ((int)c->prec > info->bit_depth)
            info->bit_depth = (int)c->prec;
        if (c->dx > 1 || c->dy > 1)
            info->subsampled = true;
    }

    cs = opj_get_cstr_info(rd.codec);
    if (!cs || !cs->m_default_tile_info.tccp_info || cs->nbcomps == 0) {
        verr_set(err, 500, "JPEG 2000 header has no coding parameters");
        goto fail;
    }
    for (uint32_t i = 0; i < cs->nbcomps && i < img->numcomps; i++)
        if (cs->m_default_tile_info.tccp_info[i].numresolutions < min_res)
            min_res = cs->m_default_tile_info.tccp_info[i].numresolutions;
    if (min_res < 1 || min_res > 33) {
        verr_set(err, 500, "JPEG 2000 header declares %u resolution levels", min_res);
        goto fail;
    }
    info->levels = (int)min_res - 1;
    /* One tile covering the image is "untiled" to the rest of the server. */
    if ((uint64_t)cs->tw * cs->th > 1) {
        info->tile_w = cs->tdx;
        info->tile_h = cs->tdy;
        info->tile_x0 = cs->tx0;
        info->tile_y0 = cs->ty0;
    }
    info->orientation = 1;

    ncomp = (int)img->numcomps;
    if (format == CODEC_FORMAT_JP2) {
        if (read_jp2h(path, &jp2h, &jp2h_len, err) < 0)
            goto fail;
        if (jp2h && parse_jp2h(jp2h, jp2h_len, &bx, err) < 0)
            goto fail;
        /* I.5.3.4: a palette applies only together with a component mapping box. */
        if (bx.pclr_columns && bx.cmap_entries) {
            ncomp = bx.cmap_entries;
            if (bx.pclr_bits > info->bit_depth)
                info->bit_depth = bx.pclr_bits;
        }
        info->icc = bx.icc;
        info->icc_len = bx.icc_len;
        bx.icc = NULL;
    }
    info->channels = output_channels(ncomp, bx.cdef_alpha, bx.cdef_entries > 0,
                                     bx.has_enumcs && bx.enumcs == 12);

    free(jp2h);
    opj_destroy_cstr_info(&cs);
    reader_close(&rd);
    return 0;
fail:
    free(bx.icc);
    free(jp2h);
    if (cs)
        opj_destroy_cstr_info(&cs);
    reader_close(&rd);
    return -1;
}

/* One decoded component as the converter reads it. */
struct comp_view {
    const OPJ_INT32 *data;
    uint32_t w;
    uint32_t *xmap; /* output column -> component column */
    size_t *ymap;   /* output row -> offset of the component row */
    int prec;
    int64_t offset; /* added to a sample: 2^(prec-1) for signed components */
    int64_t maxv;   /* 2^prec - 1 */
};

/* Where output pixel i of a region starting at full-resolution grid coordinate a0, reduced by
 * 2^r, finds its sample in a component with sampling step d reduced by 2^f whose decoded area
 * starts at grid coordinate d0: the component sample covering the same grid position (nearest
 * neighbour, which is how sub-sampled chroma is upsampled), relative to the component's first
 * decoded sample, clamped to its size. */
static void fill_map(uint32_t *map, uint32_t n, uint64_t a0, uint64_t d0, int r, uint32_t d, int f,
                     uint32_t size)
{
    uint64_t out0 = codec_src_ceil_shift(a0, r);
    uint64_t step = (uint64_t)d << f;
    uint64_t comp0 = (d0 + step - 1) / step;

    for (uint32_t i = 0; i < n; i++) {
        uint64_t pos = ((out0 + i) << r) / step;
        uint64_t idx = pos > comp0 ? pos - comp0 : 0;
        map[i] = (uint32_t)(idx < size ? idx : size - 1);
    }
}

/* Where a decode started and what part of it the output covers, on the full-resolution grid. */
struct jp2_area {
    uint64_t dx, dy; /* origin of the decoded area */
    uint64_t ax, ay; /* origin of the requested region */
    int r;
    uint32_t out_w, out_h;
};

static int view_init(struct comp_view *v, const opj_image_comp_t *c, const struct jp2_area *a,
                     int index, struct verr *err)
{
    uint32_t *ytmp;

    memset(v, 0, sizeof *v);
    if (!c->data || c->w == 0 || c->h == 0)
        return verr_set(err, 500, "JPEG 2000 component %d was not decoded", index);
    if (c->prec < 1 || c->prec > 31 || c->dx < 1 || c->dy < 1 || c->factor > 31)
        return verr_set(err, 500, "JPEG 2000 component %d has precision %u, sampling %ux%u", index,
                        c->prec, c->dx, c->dy);
    v->data = c->data;
    v->w = c->w;
    v->prec = (int)c->prec;
    v->maxv = ((int64_t)1 << c->prec) - 1;
    v->offset = c->sgnd ? (int64_t)1 << (c->prec - 1) : 0;
    v->xmap = malloc(sizeof *v->xmap * a->out_w);
    v->ymap = malloc(sizeof *v->ymap * a->out_h);
    ytmp = malloc(sizeof *ytmp * a->out_h);
    if (!v->xmap || !v->ymap || !ytmp) {
        free(ytmp);
        return verr_set(err, 500, "out of memory converting JPEG 2000 components");
    }
    fill_map(v->xmap, a->out_w, a->ax, a->dx, a->r, c->dx, (int)c->factor, c->w);
    fill_map(ytmp, a->out_h, a->ay, a->dy, a->r, c->dy, (int)c->factor, c->h);
    for (uint32_t j = 0; j < a->out_h; j++)
        v->ymap[j] = (size_t)ytmp[j] * c->w;
    free(ytmp);
    return 0;
}

static void view_free(struct comp_view *v)
{
    free(v->xmap);
    free(v->ymap);
}

/* A sample as an unsigned value in 0 .. maxv (lossy decoding can overshoot: clamp). */
static int64_t sample(const struct comp_view *v, uint32_t i, uint32_t j)
{
    int64_t s = (int64_t)v->data[v->ymap[j] + v->xmap[i]] + v->offset;
    return s < 0 ? 0 : s > v->maxv ? v->maxv : s;
}

/* Precision to 8 bits: drop low bits above 8, stretch to 0..255 below. */
static unsigned char to8(const struct comp_view *v, int64_t s)
{
    if (v->prec == 8)
        return (unsigned char)s;
    if (v->prec > 8)
        return (unsigned char)(s >> (v->prec - 8));
    return (unsigned char)((s * 255 + v->maxv / 2) / v->maxv);
}

static unsigned char unit_to8(double u)
{
    u = u * 255.0 + 0.5;
    return (unsigned char)(u < 0.0 ? 0 : u > 255.0 ? 255 : u);
}

/* Which components feed which output channels, from the decoded image (after OpenJPEG applied
 * palette and channel definitions), shaped to the channel count the probe promised. */
static void pick_components(const opj_image_t *img, int channels, int sel[5], int *nsel,
                            enum jp2_colour *mode)
{
    int n = (int)img->numcomps, colour[4], ncolour = 0, alpha = -1;
    bool flagged = false, is_cmyk = img->color_space == OPJ_CLRSPC_CMYK;

    for (int i = 0; i < n; i++)
        if (img->comps[i].alpha)
            flagged = true;
    if (!flagged && (n == 2 || (n == 4 && !is_cmyk)))
        alpha = n - 1;
    for (int i = 0; i < n; i++) {
        if ((flagged && img->comps[i].alpha) || i == alpha) {
            if (alpha < 0)
                alpha = i;
        } else if (ncolour < 4) {
            colour[ncolour++] = i;
        }
    }
    if (ncolour == 0) {
        colour[ncolour++] = 0;
        alpha = -1;
    }

    *nsel = 0;
    if (channels >= 3) {
        const opj_image_comp_t *c = img->comps;
        bool subsampled_chroma = ncolour >= 3 && c[colour[0]].dx == 1 && c[colour[0]].dy == 1 &&
                                 (c[colour[1]].dx > 1 || c[colour[1]].dy > 1) &&
                                 (c[colour[2]].dx > 1 || c[colour[2]].dy > 1);
        if (ncolour >= 4 && is_cmyk) {
            *mode = JP2_CMYK;
            for (int k = 0; k < 4; k++)
                sel[(*nsel)++] = colour[k];
        } else if (ncolour >= 3) {
            /* Sub-sampled chroma without a declared colour space is YCC in practice (as in
             * opj_decompress and libvips). */
            bool ycc = img->color_space == OPJ_CLRSPC_SYCC || img->color_space == OPJ_CLRSPC_EYCC ||
                       ((img->color_space == OPJ_CLRSPC_UNSPECIFIED ||
                         img->color_space == OPJ_CLRSPC_UNKNOWN) &&
                        subsampled_chroma);
            *mode = ycc ? JP2_YCC : JP2_RGB;
            for (int k = 0; k < 3; k++)
                sel[(*nsel)++] = colour[k];
        } else {
            *mode = JP2_RGB; /* grey shown as RGB: the same component three times */
            for (int k = 0; k < 3; k++)
                sel[(*nsel)++] = colour[0];
        }
    } else {
        *mode = JP2_GREY;
        sel[(*nsel)++] = colour[0];
    }
    /* Alpha last; -1 means "opaque" when the probe promised alpha that is not there. */
    if (channels == 2 || channels == 4)
        sel[(*nsel)++] = alpha;
}

/* Whether output columns map one to one onto consecutive component columns (no sub-sampling
 * to undo, nothing clamped at the edge). */
static bool view_contiguous(const struct comp_view *v, uint32_t out_w)
{
    return out_w == 0 || ((uint64_t)v->xmap[0] + out_w <= v->w &&
                          v->xmap[out_w - 1] == v->xmap[0] + out_w - 1);
}

/* convert() for what nearly every source is: grey or RGB (optionally with alpha), 8-bit
 * samples, every component at full size. One component at a time, row by row, in a loop the
 * compiler vectorizes: on a 1024x1024 block this is ~4x faster than the per-pixel path, and it
 * runs while the other cores wait for the next decode. Returns false when it does not apply. */
static bool convert_fast(const struct comp_view *views, const int *sel, int nsel,
                         enum jp2_colour mode, int ncol, struct codec_image *dst)
{
    int channels = dst->channels;
    uint32_t out_w = dst->w;
    if (mode != JP2_GREY && mode != JP2_RGB)
        return false;
    for (int k = 0; k < nsel; k++)
        if (sel[k] >= 0 && (views[k].prec != 8 || !view_contiguous(&views[k], out_w)))
            return false;
    for (int c = 0; c < channels; c++) {
        /* Output channel c: colour k < ncol, or the alpha component (the last selected one). */
        int k = c < ncol ? c : nsel - 1;
        for (uint32_t j = 0; j < dst->h; j++) {
            unsigned char *p = dst->px + (size_t)j * out_w * (size_t)channels + c;
            if (sel[k] < 0) { /* no alpha component: opaque */
                for (uint32_t i = 0; i < out_w; i++)
                    p[(size_t)i * channels] = 255;
                continue;
            }
            const OPJ_INT32 *src = views[k].data + views[k].ymap[j] + views[k].xmap[0];
            /* Clamp before adding the signed offset: corrupt data may hold any int32. */
            int32_t off = (int32_t)views[k].offset, lo = -off, hi = 255 - off;
            if (channels == 1) { /* unit stride, so the compiler vectorizes it */
                for (uint32_t i = 0; i < out_w; i++) {
                    int32_t v = src[i];
                    v = v < lo ? lo : v > hi ? hi : v;
                    p[i] = (unsigned char)(v + off);
                }
                continue;
            }
            for (uint32_t i = 0; i < out_w; i++) {
                int32_t v = src[i];
                v = v < lo ? lo : v > hi ? hi : v;
                p[(size_t)i * channels] = (unsigned char)(v + off);
            }
        }
    }
    return true;
}

static int convert(const opj_image_t *img, const struct jp2_area *a, int channels,
                   struct codec_image **out, struct verr *err)
{
    uint32_t out_w = a->out_w, out_h = a->out_h;
    struct comp_view views[5];
    int sel[5], nsel = 0, nviews = 0, ncol;
    enum jp2_colour mode = JP2_GREY;
    struct codec_image *dst = NULL;
    bool has_alpha = channels == 2 || channels == 4;

    pick_components(img, channels, sel, &nsel, &mode);
    ncol = mode == JP2_CMYK ? 4 : channels >= 3 ? 3 : 1;
    for (int k = 0; k < nsel; k++) {
        if (sel[k] < 0)
            continue;
        if (view_init(&views[k], &img->comps[sel[k]], a, sel[k], err) < 0) {
            view_free(&views[k]);
            goto fail;
        }
        nviews = k + 1;
    }
    dst = codec_image_new(out_w, out_h, channels);
    if (!dst) {
        verr_set(err, 500, "out of memory for a %ux%u decoded region", out_w, out_h);
        goto fail;
    }
    if (convert_fast(views, sel, nsel, mode, ncol, dst))
        goto done;
    for (uint32_t j = 0; j < out_h; j++) {
        unsigned char *p = dst->px + (size_t)j * out_w * (size_t)channels;
        for (uint32_t i = 0; i < out_w; i++, p += channels) {
            if (mode == JP2_GREY || mode == JP2_RGB) {
                for (int k = 0; k < ncol; k++)
                    p[k] = to8(&views[k], sample(&views[k], i, j));
            } else if (mode == JP2_YCC) {
                /* sYCC (IEC 61966-2-1 Amd. 1) to RGB, on values scaled to 0..1. */
                double y = (double)sample(&views[0], i, j) / (double)views[0].maxv;
                double cb = ((double)sample(&views[1], i, j) - (double)(views[1].maxv + 1) / 2) /
                            (double)views[1].maxv;
                double cr = ((double)sample(&views[2], i, j) - (double)(views[2].maxv + 1) / 2) /
                            (double)views[2].maxv;
                p[0] = unit_to8(y + 1.402 * cr);
                p[1] = unit_to8(y - 0.344136 * cb - 0.714136 * cr);
                p[2] = unit_to8(y + 1.772 * cb);
            } else {
                /* JP2 CMYK (enumcs 12) is stored uninverted: 0 = no ink. */
                double cmyk[4];
                for (int k = 0; k < 4; k++)
                    cmyk[k] = (double)sample(&views[k], i, j) / (double)views[k].maxv;
                for (int k = 0; k < 3; k++)
                    p[k] = unit_to8((1.0 - cmyk[k]) * (1.0 - cmyk[3]));
            }
            if (has_alpha) {
                int k = nsel - 1;
                p[channels - 1] = sel[k] < 0 ? 255 : to8(&views[k], sample(&views[k], i, j));
            }
        }
    }
done:
    for (int k = 0; k < nviews; k++)
        if (sel[k] >= 0)
            view_free(&views[k]);
    *out = dst;
    return 0;
fail:
    for (int k = 0; k < nviews; k++)
        if (sel[k] >= 0)
            view_free(&views[k]);
    codec_image_free(dst);
    return -1;
}

/* decode_at() failed inside OpenJPEG's decoding, where another way of decoding may succeed. */
#define DECODE_FAILED -2

/* Decode the region at reduction r (or, with r < 0, the one codec_src_pick_reduction() chooses,
 * reported in *r_used), asking OpenJPEG for just the region or, with whole, for the whole image
 * (then cropped). A codec and stream of its own each time. */
static int decode_at(const char *path, const struct codec_info *info,
                     const struct codec_decode_req *req, int r, bool whole, int *r_used,
                     struct codec_image **out, struct verr *err)
{
    struct jp2_reader rd;
    const opj_image_t *img;
    struct jp2_area a;
    uint64_t dec_w, dec_h;
    int rc = -1;

    *r_used = 0;
    if (reader_open(&rd, path, info->format, req->threads, err) < 0)
        return -1;
    img = rd.image;
    if (img->x1 <= img->x0 || img->y1 <= img->y0 || img->x1 - img->x0 != info->width ||
        img->y1 - img->y0 != info->height) {
        verr_set(err, 500, "JPEG 2000 source changed since it was probed");
        goto fail;
    }
    /* The region on the reference grid, whose origin need not be 0 (XOsiz, YOsiz). */
    a.ax = (uint64_t)img->x0 + req->x;
    a.ay = (uint64_t)img->y0 + req->y;
    if (a.ax + req->w > (uint64_t)INT32_MAX || a.ay + req->h > (uint64_t)INT32_MAX) {
        verr_set(err, 413, "JPEG 2000 region is beyond the decoder's coordinate range");
        goto fail;
    }
    /* Chosen once the header is read because the reduced size depends on the grid origin. */
    if (r < 0)
        r = codec_src_pick_reduction(a.ax, a.ay, req->w, req->h, req->want_w, req->want_h,
                                     info->levels);
    *r_used = r;
    a.r = r;
    a.dx = whole ? img->x0 : a.ax;
    a.dy = whole ? img->y0 : a.ay;
    a.out_w = (uint32_t)codec_src_extent(a.ax, req->w, r);
    a.out_h = (uint32_t)codec_src_extent(a.ay, req->h, r);
    dec_w = whole ? codec_src_extent(img->x0, info->width, r) : a.out_w;
    dec_h = whole ? codec_src_extent(img->y0, info->height, r) : a.out_h;
    if (codec_src_check_area(dec_w, dec_h, req->max_pixels, "decoded region", err) < 0)
        goto fail;
    /* OpenJPEG holds every component as 32-bit samples before we see them. */
    if (dec_w * dec_h * (uint64_t)info->channels > CODEC_SRC_MAX_DECODE_BYTES ||
        dec_w * dec_h * img->numcomps > CODEC_SRC_MAX_DECODE_BYTES) {
        verr_set(err, 413, "decoded region %llux%llu with %u components is too large",
                 (unsigned long long)dec_w, (unsigned long long)dec_h, img->numcomps);
        goto fail;
    }
    /* OpenJPEG's 32-bit samples for the region, its tile buffers of the same size, then our
     * 8-bit copy. */
    if (codec_src_check_memory(dec_w * dec_h * ((uint64_t)img->numcomps * 8 + info->channels),
                               req->max_bytes, "decoding this JPEG 2000 region", err) < 0)
        goto fail;
    rc = DECODE_FAILED;
    if (r > 0 && !opj_set_decoded_resolution_factor(rd.codec, (OPJ_UINT32)r)) {
        verr_set(err, 500, "cannot decode JPEG 2000 at 1/%u: %s", 1u << r, log_message(&rd.log));
        goto fail;
    }
    if (!whole && !opj_set_decode_area(rd.codec, rd.image, (OPJ_INT32)a.ax, (OPJ_INT32)a.ay,
                                       (OPJ_INT32)(a.ax + req->w), (OPJ_INT32)(a.ay + req->h))) {
        verr_set(err, 500, "cannot set the JPEG 2000 decode area: %s", log_message(&rd.log));
        goto fail;
    }
    if (!opj_decode(rd.codec, rd.stream, rd.image)) {
        verr_set(err, 500, "corrupt JPEG 2000 data: %s", log_message(&rd.log));
        goto fail;
    }
    if (!opj_end_decompress(rd.codec, rd.stream)) {
        verr_set(err, 500, "corrupt JPEG 2000 data at the end: %s", log_message(&rd.log));
        goto fail;
    }
    /* OpenJPEG sometimes reports an error and carries on with garbage; we do not serve it. */
    if (rd.log.n_errors) {
        verr_set(err, 500, "corrupt JPEG 2000 data: %s", log_message(&rd.log));
        goto fail;
    }
    rc = -1;
    if (rd.image->numcomps == 0 || !rd.image->comps) {
        verr_set(err, 500, "JPEG 2000 decode produced no components");
        goto fail;
    }
    if (convert(rd.image, &a, info->channels, out, err) < 0)
        goto fail;
    reader_close(&rd);
    return 0;
fail:
    reader_close(&rd);
    return rc;
}

/* ---- a region over several tiles, decoded in parts on threads of our own ------------------
 * OpenJPEG decodes the tiles of a region one after another and spreads only the work inside a
 * tile over its threads: little for the small tiles of a reduced level, where its serial parts
 * (packet headers, tile set-up) dominate. A thumbnail of a tiled 5000x7300 scan is 40 such
 * tiles. JPEG 2000 tiles are coded independently, so a region cut at tile borders decodes to
 * the same pixels in parts; each part gets a codec, a stream and a thread of its own. */

#define MAX_PARTS 16

static uint64_t split_count;

uint64_t codec_jp2_split_count(void)
{
    return __atomic_load_n(&split_count, __ATOMIC_RELAXED);
}

struct part {
    const char *path;
    const struct codec_info *info;
    struct codec_decode_req req;
    int r;
    struct codec_image *img;
    struct verr err;
    int rc;
};

static void *part_run(void *arg)
{
    struct part *p = arg;
    int r_used;
    p->rc = decode_at(p->path, p->info, &p->req, p->r, false, &r_used, &p->img, &p->err);
    return NULL;
}

/* A cap for a part that holds frac of the region: the part passes exactly when the whole
 * would (up to rounding; a part refused by rounding only sends the caller to the whole decode). */
static uint64_t part_cap(uint64_t cap, double frac)
{
    return cap ? (uint64_t)((double)cap * frac) + 1 : 0;
}

/* The tiles a region (x, y, w, h, in image coordinates) lies on: columns span[0]..span[1] and
 * rows span[2]..span[3] of the tile grid. false when the source is untiled or the region empty. */
static bool tile_span(const struct codec_info *info, uint32_t x, uint32_t y, uint32_t w,
                      uint32_t h, uint64_t span[4])
{
    uint64_t ax = (uint64_t)info->origin_x + x, ay = (uint64_t)info->origin_y + y;
    if (info->tile_w == 0 || info->tile_h == 0 || w == 0 || h == 0 || ax < info->tile_x0 ||
        ay < info->tile_y0)
        return false;
    span[0] = (ax - info->tile_x0) / info->tile_w;
    span[1] = (ax + w - 1 - info->tile_x0) / info->tile_w;
    span[2] = (ay - info->tile_y0) / info->tile_h;
    span[3] = (ay + h - 1 - info->tile_y0) / info->tile_h;
    return true;
}

/* Whether req would be decoded in parts, with the tiles it lies on in t (tile_span). A
 * sub-sampled component's first sample in a part can lie left of (or above) the part's edge,
 * which a region decode does not see: such sources decode in one piece. */
static bool split_span(const struct codec_info *info, const struct codec_decode_req *req,
                       uint64_t t[4])
{
    return (info->format == CODEC_FORMAT_JP2 || info->format == CODEC_FORMAT_J2K) &&
           !info->subsampled && tile_span(info, req->x, req->y, req->w, req->h, t) &&
           (t[0] != t[1] || t[2] != t[3]);
}

bool codec_jp2_splits(const struct codec_info *info, const struct codec_decode_req *req)
{
    uint64_t t[4];
    return split_span(info, req, t);
}

/* 0 with *out, or 1: not a multi-tile region, no threads to spare, or a part failed (then the
 * caller decodes the region in one piece, which also reports any error). */
static int decode_split(const char *path, const struct codec_info *info,
                        const struct codec_decode_req *req, struct codec_image **out)
{
    uint64_t t[4];
    if (req->threads < 2 || !split_span(info, req, t))
        return 1;
    uint64_t ax = (uint64_t)info->origin_x + req->x, ay = (uint64_t)info->origin_y + req->y;
    uint64_t c0 = t[0], c1 = t[1], r0 = t[2], r1 = t[3];
    /* Cut across the longer run of tiles: columns side by side, or rows one above another. */
    bool cols = c1 - c0 >= r1 - r0;
    uint64_t n = cols ? c1 - c0 + 1 : r1 - r0 + 1, first = cols ? c0 : r0;
    uint64_t tile = cols ? info->tile_w : info->tile_h;
    uint64_t grid0 = cols ? info->tile_x0 : info->tile_y0;
    uint64_t lo = cols ? ax : ay, hi = lo + (cols ? req->w : req->h);
    int parts = req->threads < MAX_PARTS ? req->threads : MAX_PARTS;
    if ((uint64_t)parts > n)
        parts = (int)n;
    if (parts < 2)
        return 1;
    int r = codec_src_pick_reduction(ax, ay, req->w, req->h, req->want_w, req->want_h,
                                     info->levels);
    uint64_t out_w = codec_src_extent(ax, req->w, r), out_h = codec_src_extent(ay, req->h, r);
    uint64_t along = cols ? out_w : out_h;
    /* Cuts at tile borders, none making an empty part (at level r, a few grid columns at a
     * region's edge may reduce to no pixel). */
    uint64_t cut[MAX_PARTS + 1];
    int m = 0;
    cut[0] = lo;
    for (int k = 1; k <= parts; k++) {
        uint64_t b = k == parts ? hi : grid0 + (first + (uint64_t)k * n / (uint64_t)parts) * tile;
        if (codec_src_extent(cut[m], b - cut[m], r) == 0)
            continue;
        cut[++m] = b;
    }
    cut[m] = hi; /* an empty last piece joins the part before it */
    parts = m;
    if (parts < 2)
        return 1;
    /* On the heap: a guarded call abandoned at its deadline jumps out of this frame while the
     * parts' threads still write their results (the worker then exits; this leaks). */
    struct part *p = calloc((size_t)parts, sizeof *p);
    if (!p)
        return 1;
    pthread_t tid[MAX_PARTS];
    bool started[MAX_PARTS] = {false};
    for (int k = 0; k < parts; k++) {
        uint64_t a = cut[k], b = cut[k + 1];
        p[k] = (struct part){.path = path, .info = info, .req = *req, .r = r, .rc = -1};
        p[k].req.threads = 1;
        if (cols) {
            p[k].req.x = (uint32_t)(a - info->origin_x);
            p[k].req.w = (uint32_t)(b - a);
        } else {
            p[k].req.y = (uint32_t)(a - info->origin_y);
            p[k].req.h = (uint32_t)(b - a);
        }
        double frac = (double)codec_src_extent(a, b - a, r) / (double)(along ? along : 1);
        p[k].req.max_pixels = part_cap(req->max_pixels, frac);
        p[k].req.max_bytes = part_cap(req->max_bytes, frac);
    }
    /* The calling thread decodes the first part; a part whose thread cannot start runs here. */
    for (int k = 1; k < parts; k++)
        started[k] = pthread_create(&tid[k], NULL, part_run, &p[k]) == 0;
    part_run(&p[0]);
    for (int k = 1; k < parts; k++) {
        if (started[k])
            (void)pthread_join(tid[k], NULL);
        else
            part_run(&p[k]);
    }
    struct codec_image *img = NULL;
    bool ok = true;
    uint64_t sum = 0;
    for (int k = 0; k < parts && ok; k++) {
        ok = p[k].rc == 0 && p[k].img && p[k].img->channels == info->channels &&
             (cols ? p[k].img->h == out_h : p[k].img->w == out_w);
        if (ok)
            sum += cols ? p[k].img->w : p[k].img->h;
    }
    if (ok && sum == along)
        img = codec_image_new((uint32_t)out_w, (uint32_t)out_h, info->channels);
    uint32_t at = 0;
    for (int k = 0; img && k < parts; k++) {
        codec_image_paste(img, p[k].img, cols ? at : 0, cols ? 0 : at);
        at += cols ? p[k].img->w : p[k].img->h;
    }
    for (int k = 0; k < parts; k++)
        codec_image_free(p[k].img);
    free(p);
    if (img)
        (void)__atomic_add_fetch(&split_count, 1, __ATOMIC_RELAXED);
    *out = img;
    return img ? 0 : 1;
}

int codec_jp2_decode(const char *path, const struct codec_info *info,
                     const struct codec_decode_req *req, struct codec_image **out, struct verr *err)
{
    struct verr first = {0, ""}, retry = {0, ""};
    int r = 0, r_retry, rc;

    if (decode_split(path, info, req, out) == 0)
        return 0;
    rc = decode_at(path, info, req, -1, false, &r, out, &first);
    if (rc == 0)
        return 0;
    /* OpenJPEG 2.5.0 fails on some valid files that opj_decompress also fails on, but only with
     * a decode area or a reduction: conformance p1_05.j2k (packet headers in PPM) for any area
     * not starting at the top, p1_06.j2k (3x3-pixel tiles) at 1/4 and 1/8. Retry once on the
     * whole image at the same reduction (within the same pixel limits), then once on the region
     * at full resolution; the first error is the one reported. */
    if (rc == DECODE_FAILED) {
        if (decode_at(path, info, req, r, true, &r_retry, out, &retry) == 0)
            return 0;
        if (r > 0 && decode_at(path, info, req, 0, false, &r_retry, out, &retry) == 0)
            return 0;
    }
    return verr_set(err, first.status, "%s", first.msg);
}
