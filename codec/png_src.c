/* png_src.c: PNG sources through libpng 1.6. Every PNG becomes 8-bit G, GA, RGB or RGBA:
 * palettes expanded, tRNS turned into alpha, 1/2/4-bit grey stretched, 16-bit reduced, Adam7
 * de-interlaced. PNG has no resolution levels (levels = 0) and no random access: decode reads
 * rows up to the bottom of the region (the whole image when interlaced) and crops.
 *
 * libpng reports errors by longjmp. The two functions that call setjmp() (read_header() and
 * read_region()) touch nothing but the struct png_job their caller owns, so no local variable
 * of theirs is needed after a longjmp and none has to be volatile. */
#include "source_internal.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* Large enough for any real ICC profile or text chunk. */
#define PNG_CHUNK_MAX_BYTES (16u << 20)

/* Ancillary chunks libpng would otherwise parse, as 4-letter names each followed by a NUL. */
static const png_byte ignored_chunks[] =
    "bKGD\0cHRM\0eXIf\0gAMA\0hIST\0iTXt\0oFFs\0pCAL\0pHYs\0sBIT\0"
    "sCAL\0sPLT\0sRGB\0sTER\0tEXt\0tIME\0zTXt";

struct png_job {
    FILE *fp;
    png_structp png;
    png_infop info;
    char error[200];
    uint64_t max_pixels;  /* refuse (413) a header above this; 0 = only the shared caps */
    /* filled by read_header() */
    uint32_t width, height;
    int channels;
    int src_bit_depth;
    bool interlaced;
    /* decode buffers, owned here so that a longjmp cannot leak them */
    unsigned char *row;
    unsigned char *whole;
    png_bytep *row_ptrs;
};

static void on_error(png_structp png, png_const_charp msg)
{
    struct png_job *job = png_get_error_ptr(png);

    snprintf(job->error, sizeof job->error, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

/* libpng warns about benign problems (bad ancillary chunks, CRCs it skipped): not errors. */
static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void job_close(struct png_job *job)
{
    if (job->png)
        png_destroy_read_struct(&job->png, job->info ? &job->info : NULL, NULL);
    if (job->fp)
        fclose(job->fp);
    free(job->row);
    free(job->whole);
    free(job->row_ptrs);
    memset(job, 0, sizeof *job);
}

static int job_open(struct png_job *job, const char *path, uint64_t max_pixels, struct verr *err)
{
    memset(job, 0, sizeof *job);
    job->max_pixels = max_pixels;
    job->fp = codec_src_open(path, err);
    if (!job->fp)
        return -1;
    job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, on_error, on_warning);
    if (!job->png) {
        verr_set(err, 500, "cannot create a PNG decoder");
        goto fail;
    }
    job->info = png_create_info_struct(job->png);
    if (!job->info) {
        verr_set(err, 500, "cannot create a PNG decoder");
        goto fail;
    }
    /* Any side PNG allows (2^31-1) is let through IHDR, and read_header() checks the size
     * before libpng allocates rows (png_read_update_info), answering 413 with the size as for
     * JPEG and JPEG 2000. (libpng's user limits fail IHDR with an error that reads as a
     * corrupt file.) */
    png_set_user_limits(job->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    /* Only IHDR, PLTE, tRNS, iCCP and IDAT matter here. libpng 1.6.39 allocates whatever length
     * a text chunk declares (1 GB in 57-byte crafted files), so every other ancillary chunk,
     * known or not, is skipped unread; iCCP is capped. Less work and less attack surface. */
    png_set_chunk_malloc_max(job->png, PNG_CHUNK_MAX_BYTES);
    png_set_keep_unknown_chunks(job->png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(job->png, PNG_HANDLE_CHUNK_NEVER, ignored_chunks,
                                (int)(sizeof ignored_chunks / 5));
    return 0;
fail:
    job_close(job);
    return -1;
}

/* Read the chunks before the image data and set up the transformations to 8-bit G/GA/RGB/RGBA.
 * Probe and decode both go through here, so they agree on the channel count. -1 with err set
 * (413 for a size above the caps, 500 for a corrupt header). */
static int read_header(struct png_job *job, struct verr *err)
{
    int color_type, bit_depth;

    if (setjmp(png_jmpbuf(job->png)))
        return verr_set(err, 500, "corrupt PNG: %s", job->error);
    png_init_io(job->png, job->fp);
    png_read_info(job->png, job->info);
    /* Before png_read_update_info(), which allocates and clears a row of the declared width
     * (6 GB for a 57-byte file declaring 2^31-1 RGB pixels per row). */
    if (codec_src_check_area(png_get_image_width(job->png, job->info),
                             png_get_image_height(job->png, job->info), job->max_pixels,
                             "PNG image", err) < 0)
        return -1;
    color_type = png_get_color_type(job->png, job->info);
    bit_depth = png_get_bit_depth(job->png, job->info);
    job->src_bit_depth = color_type == PNG_COLOR_TYPE_PALETTE ? 8 : bit_depth;
    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(job->png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(job->png);
    if (png_get_valid(job->png, job->info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(job->png);
    if (bit_depth == 16)
        png_set_strip_16(job->png);
    job->interlaced = png_get_interlace_type(job->png, job->info) != PNG_INTERLACE_NONE;
    if (job->interlaced)
        (void)png_set_interlace_handling(job->png);
    png_read_update_info(job->png, job->info);
    job->width = png_get_image_width(job->png, job->info);
    job->height = png_get_image_height(job->png, job->info);
    job->channels = png_get_channels(job->png, job->info);
    if (png_get_bit_depth(job->png, job->info) != 8 || job->channels < 1 || job->channels > 4 ||
        png_get_rowbytes(job->png, job->info) != (size_t)job->width * (size_t)job->channels)
        return verr_set(err, 500, "corrupt PNG: unexpected layout after conversion");
    return 0;
}

int codec_png_probe(const char *path, uint64_t max_pixels, struct codec_info *info,
                    struct verr *err)
{
    struct png_job job;
    png_charp name;
    png_bytep profile;
    png_uint_32 profile_len;
    int compression;

    if (job_open(&job, path, max_pixels, err) < 0)
        return -1;
    if (read_header(&job, err) < 0)
        goto fail;
    info->width = job.width;
    info->height = job.height;
    info->channels = job.channels;
    info->bit_depth = job.src_bit_depth;
    info->levels = 0;
    info->tile_w = info->tile_h = 0;
    info->orientation = 1;
    if (png_get_iCCP(job.png, job.info, &name, &compression, &profile, &profile_len) ==
            PNG_INFO_iCCP &&
        profile && profile_len > 0) {
        info->icc = malloc(profile_len);
        if (!info->icc) {
            verr_set(err, 500, "out of memory copying the ICC profile");
            goto fail;
        }
        memcpy(info->icc, profile, profile_len);
        info->icc_len = profile_len;
    }
    job_close(&job);
    return 0;
fail:
    job_close(&job);
    return -1;
}

/* Decode rows into dst (already sized req->w x req->h). Non-interlaced images are streamed a
 * row at a time and reading stops after the region's last row; Adam7 needs the whole image. */
static int read_region(struct png_job *job, const struct codec_decode_req *req,
                       struct codec_image *dst)
{
    size_t ch = (size_t)job->channels, out_row = (size_t)req->w * ch;

    if (setjmp(png_jmpbuf(job->png)))
        return -1;
    if (!job->interlaced) {
        for (uint32_t j = 0; j < req->y + req->h; j++) {
            png_read_row(job->png, job->row, NULL);
            if (j >= req->y)
                memcpy(dst->px + (size_t)(j - req->y) * out_row, job->row + req->x * ch, out_row);
        }
    } else {
        png_read_image(job->png, job->row_ptrs);
        for (uint32_t j = 0; j < req->h; j++)
            memcpy(dst->px + (size_t)j * out_row, job->row_ptrs[req->y + j] + req->x * ch, out_row);
    }
    return 0;
}

int codec_png_decode(const char *path, const struct codec_info *info,
                     const struct codec_decode_req *req, struct codec_image **out, struct verr *err)
{
    struct png_job job;
    struct codec_image *dst = NULL;
    size_t row_bytes;
    uint64_t decoded_px;

    if (job_open(&job, path, 0, err) < 0)
        return -1;
    if (read_header(&job, err) < 0)
        goto fail;
    if (job.width != info->width || job.height != info->height || job.channels != info->channels) {
        verr_set(err, 500, "PNG source changed since it was probed");
        goto fail;
    }
    /* No reduced levels in PNG: every row down to the region's bottom is decompressed. */
    decoded_px = (uint64_t)job.width * (job.interlaced ? job.height : req->y + req->h);
    if (req->max_pixels && decoded_px > req->max_pixels) {
        verr_set(err, 413, "decoding this PNG region means %llu pixels, above the limit of %llu",
                 (unsigned long long)decoded_px, (unsigned long long)req->max_pixels);
        goto fail;
    }
    /* Rows of up to 16-bit samples (all of them when interlaced, else one at a time), and the
     * region kept at 8 bits. */
    if (codec_src_check_memory((job.interlaced ? decoded_px : job.width) * job.channels * 2 +
                                   (uint64_t)req->w * req->h * job.channels,
                               req->max_bytes, "decoding this PNG", err) < 0)
        goto fail;
    row_bytes = (size_t)job.width * (size_t)job.channels;
    if (job.interlaced) {
        if ((uint64_t)row_bytes * job.height > CODEC_SRC_MAX_DECODE_BYTES) {
            verr_set(err, 413, "interlaced PNG of %ux%u is too large to decode", job.width,
                     job.height);
            goto fail;
        }
        job.whole = malloc(row_bytes * job.height);
        job.row_ptrs = malloc(sizeof *job.row_ptrs * job.height);
        if (!job.whole || !job.row_ptrs) {
            verr_set(err, 500, "out of memory decoding a PNG");
            goto fail;
        }
        for (uint32_t j = 0; j < job.height; j++)
            job.row_ptrs[j] = job.whole + (size_t)j * row_bytes;
    } else {
        job.row = malloc(row_bytes);
        if (!job.row) {
            verr_set(err, 500, "out of memory decoding a PNG");
            goto fail;
        }
    }
    dst = codec_image_new(req->w, req->h, job.channels);
    if (!dst) {
        verr_set(err, 500, "out of memory for a %ux%u decoded region", req->w, req->h);
        goto fail;
    }
    if (read_region(&job, req, dst) < 0) {
        verr_set(err, 500, "corrupt PNG data: %s", job.error);
        goto fail;
    }
    job_close(&job);
    *out = dst;
    return 0;
fail:
    codec_image_free(dst);
    job_close(&job);
    return -1;
}
