/* render.c: codec_render, one planned Image API request from source file to encoded bytes.
 * The order is IIIF 3.0 §4.6: region (decoded directly), size, mirror, rotation, quality,
 * format. Each step hands a new image to the next and the previous one is freed at once, so at
 * most two images are alive at a time. */
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "block_cache.h"
#include "codec.h"
#include "source_internal.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Replace *img by next (when next is non-NULL), freeing the old one. Returns -1 on NULL so the
 * caller can bail out; err was set by the step that failed. */
static int step(struct codec_image **img, struct codec_image *next)
{
    if (!next)
        return -1;
    codec_image_free(*img);
    *img = next;
    return 0;
}

#define MAX_DECODE_THREADS 64 /* block_cache_cpu_acquire gives at most one per core */

int codec_render(const char *path, const struct codec_info *info, const struct iiif_plan *plan,
                 const struct codec_render_opts *opts, unsigned char **out, size_t *out_len,
                 struct verr *err)
{
    struct codec_image *img = NULL;
    int rc = -1;
    struct codec_timing tm = {0, 0, 0, CODEC_BLOCK_NONE};
    double t0 = now_ms(), t1 = t0, t2 = t0;

    *out = NULL;
    *out_len = 0;
    if (!path || !info || !plan || !opts || plan->w == 0 || plan->h == 0 || plan->out_w == 0 ||
        plan->out_h == 0)
        return verr_set(err, 500, "render: invalid arguments");

    const struct codec_decode_req req = {
        .x = plan->x,
        .y = plan->y,
        .w = plan->w,
        .h = plan->h,
        .want_w = plan->out_w,
        .want_h = plan->out_h,
        .max_pixels = opts->max_decode_pixels,
        .threads = opts->threads,
        .max_bytes = opts->max_bytes,
    };
    /* After the decode, at most two images are alive: the output size (or, rotated by an
     * arbitrary angle, its bounding box, at most twice the area) with up to 4 channels. */
    uint64_t out_bytes = (uint64_t)plan->out_w * plan->out_h * 4 * 2;
    if (plan->rotation != 0 && plan->rotation != 90 && plan->rotation != 180 && plan->rotation != 270)
        out_bytes *= 2;
    if (codec_src_check_memory(out_bytes, opts->max_bytes, "the output image", err) < 0)
        return -1;
    /* Through the shared block cache when the region lies in one block, else directly. */
    int b = opts->blocks ? block_cache_decode(opts->blocks, opts->source_key, path, info, &req,
                                              opts->queued, &img, &tm.block, err)
                         : 1;
    if (b < 0)
        goto done;
    if (b == 1) {
        /* A decode holds a CPU token (block_cache.h) so all workers' decodes together stay
         * within the cores. */
        uint64_t held;
        struct codec_decode_req dreq = req;
        /* A region over several JPEG 2000 tiles decodes in parts, one per thread (jp2.c), which
         * scales as OpenJPEG's own threads do not: it takes every core no decode holds. */
        bool spread = opts->blocks && codec_jp2_splits(info, &req);
        dreq.threads = block_cache_cpu_acquire(opts->blocks,
                                               spread ? MAX_DECODE_THREADS : opts->threads, &held);
        int drc = codec_decode(path, info, &dreq, &img, err);
        block_cache_cpu_release(opts->blocks, held);
        if (drc < 0)
            goto done;
    }
    t1 = t2 = now_ms();
    if (!img) {
        verr_set(err, 500, "render: decoder returned no image");
        goto done;
    }

    /* The decoder may already have reduced to exactly the wanted size (e.g. a tile at a
     * native level): then there is nothing to resample. */
    if ((img->w != plan->out_w || img->h != plan->out_h) &&
        step(&img, codec_resize(img, plan->out_w, plan->out_h, err)) < 0)
        goto done;
    if (plan->mirror && step(&img, codec_mirror(img, err)) < 0)
        goto done;
    /* PNG can show the corners an arbitrary rotation uncovers as transparent; JPEG gets white. */
    if (plan->rotation != 0 &&
        step(&img, codec_rotate(img, plan->rotation, plan->format == IIIF_FORMAT_PNG, err)) < 0)
        goto done;

    /* color/default keep the pixels (a grey source stays grey). */
    bool converted = false;
    if (plan->quality == IIIF_QUALITY_GRAY) {
        if (step(&img, codec_to_gray(img, err)) < 0)
            goto done;
        converted = true;
    } else if (plan->quality == IIIF_QUALITY_BITONAL) {
        if (step(&img, codec_to_bitonal(img, err)) < 0)
            goto done;
        converted = true;
    }

    /* The source profile describes the source's colour space: it fits the output unless we
     * turned colour into grey (an RGB profile on grey pixels is wrong, and libpng rejects it).
     * A grey source's profile is a grey profile and still fits its grey output. */
    const unsigned char *icc = NULL;
    size_t icc_len = 0;
    if (info->icc && info->icc_len > 0 && (!converted || info->channels <= 2)) {
        icc = info->icc;
        icc_len = info->icc_len;
    }

    t2 = now_ms();
    if (plan->format == IIIF_FORMAT_PNG)
        rc = codec_encode_png(img, icc, icc_len, out, out_len, err);
    else
        rc = codec_encode_jpeg(img, opts->jpeg_quality, icc, icc_len, out, out_len, err);

done:
    codec_image_free(img);
    if (opts->timing && rc == 0) {
        tm.decode_ms = t1 - t0;
        tm.transform_ms = t2 - t1;
        tm.encode_ms = now_ms() - t2;
        *opts->timing = tm;
    }
    return rc;
}
