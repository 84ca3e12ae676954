/* test_decode.c: codec_probe() and codec_decode() against independent decoders.
 *
 * JPEG 2000: images made here as PNM, encoded by opj_compress (lossless, lossy, tiled, offset
 * origin, 16-bit, sub-sampled), decoded by our codec and by opj_decompress at the same
 * reduction and area: exact match required (same library, same integer output; 16-bit samples
 * compared as v >> 8). Lossless decodes are also compared with the original pixels.
 * JPEG: cjpeg-made files against djpeg -scale 1/N, max abs difference <= JPEG_TOLERANCE; EXIF
 * orientation and multi-chunk ICC spliced into those files. PNG: files written here with libpng
 * (palette+tRNS, 1-bit, 16-bit, Adam7, grey+alpha, iCCP), compared exactly with the pixels
 * written. Fixtures (../shared/fixtures or $VELLUM_FIXTURES): every valid file probes and
 * decodes, every corrupt one returns. Tools and temp files go to $VELLUM_TEST_TMP. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <png.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "block_cache.h"
#include "codec.h"
#include "source_internal.h"

/* djpeg and our decoder run the same libjpeg-turbo code (islow IDCT, fancy upsampling): they
 * should agree exactly; 2 leaves room for a SIMD path that differs from djpeg's build. */
#define JPEG_TOLERANCE 2
#define PROBE_MAX_PIXELS 100000000u

static char tmpdir[1024];

/* ---------------------------------------------------------------- helpers */

static const char *tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
    return buf;
}

/* Run a shell command quietly; true when it exits with 0. */
static bool run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    int n, rc;

    /* Braces so that a redirection inside the command still wins over the silencing one. */
    strcpy(cmd, "{ ");
    va_start(ap, fmt);
    n = vsnprintf(cmd + 2, sizeof cmd - 40, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd - 40)
        return false;
    strcat(cmd, "; } >/dev/null 2>&1");
    rc = system(cmd);
    return rc == 0;
}

static bool tool_exists(const char *name)
{
    return run("command -v %s", name);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* An 8-bit or 16-bit interleaved image, as PNM holds it. */
struct pix {
    int w, h, ch, maxval;
    uint16_t *v;
};

static void pix_free(struct pix *p)
{
    free(p->v);
    p->v = NULL;
}

static int pnm_token(FILE *fp)
{
    int c, v = 0;

    do {
        c = fgetc(fp);
        if (c == '#')
            while (c != '\n' && c != EOF)
                c = fgetc(fp);
    } while (c == ' ' || c == '\n' || c == '\r' || c == '\t');
    if (c < '0' || c > '9')
        return -1;
    while (c >= '0' && c <= '9') {
        v = v * 10 + (c - '0');
        if (v > 1000000)
            return -1;
        c = fgetc(fp);
    }
    return v; /* the single whitespace after maxval is consumed here */
}

static bool pnm_read(const char *path, struct pix *p)
{
    FILE *fp = fopen(path, "rb");
    char magic[3] = {0};
    size_t n;

    memset(p, 0, sizeof *p);
    if (!fp)
        return false;
    if (fread(magic, 1, 2, fp) != 2 || magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6'))
        goto fail;
    p->ch = magic[1] == '5' ? 1 : 3;
    p->w = pnm_token(fp);
    p->h = pnm_token(fp);
    p->maxval = pnm_token(fp);
    if (p->w <= 0 || p->h <= 0 || p->maxval <= 0 || p->maxval > 65535)
        goto fail;
    n = (size_t)p->w * p->h * p->ch;
    p->v = malloc(n * sizeof *p->v);
    if (!p->v)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        int hi = fgetc(fp), lo = 0;
        if (hi == EOF)
            goto fail;
        if (p->maxval > 255) {
            lo = fgetc(fp);
            if (lo == EOF)
                goto fail;
            p->v[i] = (uint16_t)(hi << 8 | lo);
        } else {
            p->v[i] = (uint16_t)hi;
        }
    }
    fclose(fp);
    return true;
fail:
    fclose(fp);
    pix_free(p);
    return false;
}

static bool pnm_write(const char *path, const struct pix *p)
{
    FILE *fp = fopen(path, "wb");
    size_t n = (size_t)p->w * p->h * p->ch;
    bool ok;

    if (!fp)
        return false;
    fprintf(fp, "P%c\n%d %d\n%d\n", p->ch == 1 ? '5' : '6', p->w, p->h, p->maxval);
    for (size_t i = 0; i < n; i++) {
        if (p->maxval > 255)
            fputc(p->v[i] >> 8, fp);
        fputc(p->v[i] & 0xff, fp);
    }
    ok = !ferror(fp);
    return fclose(fp) == 0 && ok;
}

/* A gradient with structure: squares, a diagonal band and some noise, so that misplaced,
 * mirrored or swapped pixels show. */
static struct pix make_pix(int w, int h, int ch, int maxval)
{
    struct pix p = {w, h, ch, maxval, malloc((size_t)w * h * ch * sizeof(uint16_t))};
    uint32_t seed = 12345;

    for (int y = 0; y < h && p.v; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                double g = c == 0   ? (double)x / (w - 1)
                           : c == 1 ? (double)y / (h - 1)
                                    : (double)(x + y) / (w + h - 2);
                double v = 0.1 + 0.7 * g;
                if (((x / 23) + (y / 17)) % 3 == 0)
                    v += 0.15;
                if (abs(x - 2 * y) < 4)
                    v = 0.05 * c;
                seed = seed * 1103515245u + 12345u;
                v += ((seed >> 16) % 7) / 400.0;
                if (v > 1)
                    v = 1;
                p.v[((size_t)y * w + x) * ch + c] = (uint16_t)(v * maxval + 0.5);
            }
    return p;
}

/* A PNM sample at 8 bits, as the contract asks: 2^b - 1 maxvals above 8 bits drop low bits,
 * below 8 bits stretch to 0..255. */
static int to8(const struct pix *p, size_t i)
{
    int bits = 0;

    while ((1 << bits) - 1 < p->maxval)
        bits++;
    if (bits > 8)
        return p->v[i] >> (bits - 8);
    return (p->v[i] * 255 + p->maxval / 2) / p->maxval;
}

/* Max abs difference between img and the rectangle (x, y, img->w, img->h) of ref; -1 when the
 * shapes do not fit. */
static int diff_img_pix(const struct codec_image *img, const struct pix *ref, int x, int y)
{
    int maxd = 0;

    if (!img || img->channels != ref->ch || x < 0 || y < 0 || x + (int)img->w > ref->w ||
        y + (int)img->h > ref->h)
        return -1;
    for (uint32_t j = 0; j < img->h; j++)
        for (uint32_t i = 0; i < img->w; i++)
            for (int c = 0; c < ref->ch; c++) {
                int a = img->px[((size_t)j * img->w + i) * ref->ch + c];
                int b = to8(ref, ((size_t)(y + j) * ref->w + x + i) * ref->ch + c);
                if (abs(a - b) > maxd)
                    maxd = abs(a - b);
            }
    return maxd;
}

static uint32_t ceil_div_pow2(uint64_t v, int r)
{
    return (uint32_t)((v + (1u << r) - 1) >> r);
}

/* The reduction the contract asks for, restated independently: the largest r <= levels whose
 * region, reduced on JPEG 2000's ceil grid, keeps at least want pixels both ways. */
static int expected_reduction(uint64_t x, uint64_t y, uint32_t w, uint32_t h, uint32_t ww,
                              uint32_t wh, int levels)
{
    int best = 0;
    for (int r = 1; r <= levels; r++) {
        uint32_t ew = ceil_div_pow2(x + w, r) - ceil_div_pow2(x, r);
        uint32_t eh = ceil_div_pow2(y + h, r) - ceil_div_pow2(y, r);
        if (ceil_div_pow2(w, r) < ww || ceil_div_pow2(h, r) < wh || ew < ww || eh < wh)
            break;
        best = r;
    }
    return best;
}

static struct codec_image *decode(const char *path, const struct codec_info *info, uint32_t x,
                                  uint32_t y, uint32_t w, uint32_t h, uint32_t ww, uint32_t wh,
                                  int threads, struct verr *err)
{
    struct codec_decode_req req = {.x = x, .y = y, .w = w, .h = h, .want_w = ww, .want_h = wh,
                                   .threads = threads};
    struct codec_image *img = NULL;

    if (codec_decode(path, info, &req, &img, err) < 0)
        return NULL;
    return img;
}

/* ---------------------------------------------------------------- JPEG 2000 */

struct j2k_case {
    const char *file;
    const char *src;  /* which PNM */
    const char *opts; /* opj_compress options */
    bool lossless;
    int ox, oy; /* image offset (-d) */
};

struct region {
    uint32_t x, y, w, h, want_w, want_h;
};

static void test_j2k_case(const struct j2k_case *tc, const struct pix *orig)
{
    char src[1200], dst[1200], ref[1200];
    struct codec_info info;
    struct verr err = {0, ""};
    const struct region regions[] = {
        {0, 0, (uint32_t)orig->w, (uint32_t)orig->h, (uint32_t)orig->w, (uint32_t)orig->h},
        {0, 0, (uint32_t)orig->w, (uint32_t)orig->h, 77, 53},
        {100, 50, 300, 200, 75, 50},
        {37, 11, 129, 97, 17, 13},
        {250, 250, 20, 20, 20, 20},                         /* across tile borders */
        {500, 300, 113, 119, 400, 400},                     /* enlarging: full resolution */
        {0, 0, (uint32_t)orig->w, (uint32_t)orig->h, 1, 1}, /* as small as it gets */
        {(uint32_t)orig->w - 1, (uint32_t)orig->h - 1, 1, 1, 1, 1},
    };

    tmp_path(src, sizeof src, tc->src);
    tmp_path(dst, sizeof dst, tc->file);
    if (!run("opj_compress -i '%s' -o '%s' %s", src, dst, tc->opts)) {
        CHECK_MSG(0, "opj_compress failed for %s", tc->file);
        return;
    }
    if (codec_probe(dst, PROBE_MAX_PIXELS, &info, &err) < 0) {
        CHECK_MSG(0, "probe %s: %d %s", tc->file, err.status, err.msg);
        return;
    }
    CHECK_INT(info.width, orig->w);
    CHECK_INT(info.height, orig->h);
    CHECK_INT(info.channels, orig->ch);
    CHECK_INT(info.bit_depth, orig->maxval > 255 ? 16 : 8);
    CHECK_INT(info.format, strstr(tc->file, ".jp2") ? CODEC_FORMAT_JP2 : CODEC_FORMAT_J2K);
    if (strstr(tc->opts, "-t 256,256"))
        CHECK(info.tile_w == 256 && info.tile_h == 256);
    else if (!strstr(tc->opts, "-t "))
        CHECK(info.tile_w == 0 && info.tile_h == 0);
    if (strstr(tc->opts, "-T 11,7"))
        CHECK(info.tile_x0 == 11 && info.tile_y0 == 7);

    for (size_t k = 0; k < sizeof regions / sizeof regions[0]; k++) {
        const struct region *rg = &regions[k];
        uint64_t ax = (uint64_t)tc->ox + rg->x, ay = (uint64_t)tc->oy + rg->y;
        int r = expected_reduction(ax, ay, rg->w, rg->h, rg->want_w, rg->want_h, info.levels);
        struct codec_image *img =
            decode(dst, &info, rg->x, rg->y, rg->w, rg->h, rg->want_w, rg->want_h, 1, &err);
        struct pix refpix;
        int d;

        if (!img) {
            CHECK_MSG(0, "decode %s region %zu: %d %s", tc->file, k, err.status, err.msg);
            continue;
        }
        snprintf(ref, sizeof ref, "%s/ref-%zu.%s", tmpdir, k, orig->ch == 1 ? "pgm" : "ppm");
        if (!run("opj_decompress -i '%s' -o '%s' -r %d -d %llu,%llu,%llu,%llu", dst, ref, r,
                 (unsigned long long)ax, (unsigned long long)ay, (unsigned long long)(ax + rg->w),
                 (unsigned long long)(ay + rg->h)) ||
            !pnm_read(ref, &refpix)) {
            CHECK_MSG(0, "opj_decompress failed for %s region %zu", tc->file, k);
            codec_image_free(img);
            continue;
        }
        CHECK_MSG(img->w == (uint32_t)refpix.w && img->h == (uint32_t)refpix.h,
                  "%s region %zu r=%d: ours %ux%u, opj_decompress %dx%d", tc->file, k, r, img->w,
                  img->h, refpix.w, refpix.h);
        CHECK(img->w >= rg->want_w || rg->want_w > rg->w);
        d = diff_img_pix(img, &refpix, 0, 0);
        CHECK_MSG(d == 0, "%s region %zu r=%d: differs from opj_decompress by %d", tc->file, k, r,
                  d);
        /* With threads to spare, a region over several tiles decodes in parts, one thread
         * each, cut at tile borders: the same pixels as opj_decompress still. */
        if (info.tile_w) {
            uint64_t splits = codec_jp2_split_count();
            struct codec_image *par =
                decode(dst, &info, rg->x, rg->y, rg->w, rg->h, rg->want_w, rg->want_h, 3, &err);
            uint64_t tx0 = info.tile_x0, ty0 = info.tile_y0;
            bool multi = (ax - tx0) / info.tile_w != (ax + rg->w - 1 - tx0) / info.tile_w ||
                         (ay - ty0) / info.tile_h != (ay + rg->h - 1 - ty0) / info.tile_h;
            CHECK_MSG(par && par->w == img->w && par->h == img->h &&
                          diff_img_pix(par, &refpix, 0, 0) == 0,
                      "%s region %zu r=%d: decoded in parts, differs from opj_decompress",
                      tc->file, k, r);
            CHECK_MSG(codec_jp2_split_count() == splits + (multi ? 1 : 0),
                      "%s region %zu: %s tiles, decoded in %s", tc->file, k,
                      multi ? "several" : "one", multi ? "one piece" : "parts");
            codec_image_free(par);
        }
        if (tc->lossless && r == 0) {
            d = diff_img_pix(img, orig, (int)rg->x, (int)rg->y);
            CHECK_MSG(d == 0, "%s region %zu: lossless decode differs from the original by %d",
                      tc->file, k, d);
        }
        pix_free(&refpix);
        codec_image_free(img);
    }

    /* Threads change nothing but speed. */
    {
        struct codec_image *a = decode(dst, &info, 10, 20, 400, 300, 400, 300, 1, &err);
        struct codec_image *b = decode(dst, &info, 10, 20, 400, 300, 400, 300, 4, &err);
        CHECK(a && b && a->w == b->w && a->h == b->h &&
              memcmp(a->px, b->px, (size_t)a->w * a->h * a->channels) == 0);
        codec_image_free(a);
        codec_image_free(b);
    }
    /* Limits: the probe refuses a larger image, the decode a larger region. */
    {
        struct codec_info small;
        struct codec_decode_req req = {.w = info.width, .h = info.height, .want_w = info.width,
                                       .want_h = info.height, .max_pixels = 1000, .threads = 1};
        struct codec_image *img = NULL;
        CHECK(codec_probe(dst, 1000, &small, &err) < 0 && err.status == 413);
        CHECK(codec_decode(dst, &info, &req, &img, &err) < 0 && err.status == 413 && !img);
        req.w = req.h = req.want_w = req.want_h = 30;
        CHECK(codec_decode(dst, &info, &req, &img, &err) == 0 && img);
        codec_image_free(img);
        req.x = info.width - 5; /* region outside the image */
        img = NULL;
        CHECK(codec_decode(dst, &info, &req, &img, &err) < 0 && err.status == 400 && !img);
    }
    codec_info_clear(&info);
}

/* All components 2x2 sub-sampled: the output is on the full reference grid, each component
 * sample covering the 2x2 grid positions it stands for. */
static void test_j2k_subsampled(void)
{
    char src[1200], dst[1200], ref[1200];
    struct codec_info info;
    struct verr err = {0, ""};
    const struct region regions[] = {{0, 0, 613, 419, 613, 419}, {101, 37, 200, 151, 200, 151}};

    tmp_path(src, sizeof src, "rgb8.ppm");
    tmp_path(dst, sizeof dst, "rgb_sub.j2k");
    if (!run("opj_compress -i '%s' -o '%s' -s 2,2 -n 4", src, dst)) {
        CHECK_MSG(0, "opj_compress -s 2,2 failed");
        return;
    }
    if (codec_probe(dst, PROBE_MAX_PIXELS, &info, &err) < 0) {
        CHECK_MSG(0, "probe rgb_sub.j2k: %s", err.msg);
        return;
    }
    /* -s 2,2 makes a 1225x837 grid from 613x419 samples */
    CHECK_INT(info.width, 1225);
    CHECK_INT(info.height, 837);
    for (size_t k = 0; k < 2; k++) {
        const struct region *rg = &regions[k];
        struct codec_image *img =
            decode(dst, &info, rg->x, rg->y, rg->w, rg->h, rg->w, rg->h, 1, &err);
        struct pix rp;
        int maxd = 0;

        tmp_path(ref, sizeof ref, "ref-sub.ppm");
        if (!img ||
            !run("opj_decompress -i '%s' -o '%s' -d %u,%u,%u,%u", dst, ref, rg->x, rg->y,
                 rg->x + rg->w, rg->y + rg->h) ||
            !pnm_read(ref, &rp)) {
            CHECK_MSG(0, "sub-sampled region %zu: %s", k, img ? "opj_decompress failed" : err.msg);
            codec_image_free(img);
            continue;
        }
        CHECK(img->w == rg->w && img->h == rg->h && img->channels == 3);
        for (uint32_t j = 0; j < img->h && img->w == rg->w && img->h == rg->h; j++)
            for (uint32_t i = 0; i < img->w; i++) {
                int sx = (int)((rg->x + i) / 2) - (int)((rg->x + 1) / 2);
                int sy = (int)((rg->y + j) / 2) - (int)((rg->y + 1) / 2);
                sx = sx < 0 ? 0 : sx >= rp.w ? rp.w - 1 : sx;
                sy = sy < 0 ? 0 : sy >= rp.h ? rp.h - 1 : sy;
                for (int c = 0; c < 3; c++) {
                    int a = img->px[((size_t)j * img->w + i) * 3 + c];
                    int b = rp.v[((size_t)sy * rp.w + sx) * 3 + c];
                    if (abs(a - b) > maxd)
                        maxd = abs(a - b);
                }
            }
        CHECK_MSG(maxd == 0, "sub-sampled region %zu differs by %d", k, maxd);
        pix_free(&rp);
        codec_image_free(img);
    }
    codec_info_clear(&info);

    /* Tiled, with odd image and tile origins: a tile border at an odd grid column falls inside
     * a 2x1 sample, which a region starting there does not see. Given threads, the pixels must
     * still be those of the one-piece decode. */
    tmp_path(dst, sizeof dst, "rgb_sub_tiled.j2k");
    if (!run("opj_compress -i '%s' -o '%s' -s 2,1 -t 96,64 -d 7,3 -T 1,2 -n 3", src, dst) ||
        codec_probe(dst, PROBE_MAX_PIXELS, &info, &err) < 0) {
        CHECK_MSG(0, "tiled sub-sampled file: %s", err.msg);
        return;
    }
    CHECK(info.subsampled && info.tile_w == 96);
    for (uint32_t want = info.width; want >= info.width / 4; want /= 4) {
        struct codec_image *one = decode(dst, &info, 0, 0, info.width, info.height, want,
                                         want * info.height / info.width, 1, &err);
        struct codec_image *par = decode(dst, &info, 0, 0, info.width, info.height, want,
                                         want * info.height / info.width, 3, &err);
        CHECK_MSG(one && par && one->w == par->w && one->h == par->h &&
                      memcmp(one->px, par->px, (size_t)one->w * one->h * one->channels) == 0,
                  "tiled sub-sampled, %u wide: the same pixels with 3 threads as with 1", want);
        codec_image_free(one);
        codec_image_free(par);
    }
    codec_info_clear(&info);
}

/* A server's request that no block holds (codec_render with a block cache, hence CPU tokens)
 * takes the free cores for a region over several tiles, so it decodes in parts; `vellum
 * render` (no block cache) keeps decode_threads, one by default. */
static void test_j2k_render_parts(void)
{
    char path[1200], dir[1200];
    struct codec_info info;
    struct verr err = {0, ""};
    tmp_path(path, sizeof path, "rgb_tiled.j2k"); /* 613x419 in 256x256 tiles */
    tmp_path(dir, sizeof dir, "blocks-render");
    if (codec_probe(path, PROBE_MAX_PIXELS, &info, &err) < 0) {
        CHECK_MSG(0, "probe rgb_tiled.j2k: %s", err.msg);
        return;
    }
    /* 64-pixel blocks: the whole image at full size is a bypass */
    struct block_cache *bc = block_cache_open(dir, 64 << 20, 64, &err);
    CHECK_MSG(bc, "block cache: %s", err.msg);
    const struct iiif_plan plan = {.w = info.width, .h = info.height, .out_w = info.width,
                                   .out_h = info.height, .quality = IIIF_QUALITY_DEFAULT,
                                   .format = IIIF_FORMAT_PNG};
    for (int with_cache = 0; bc && with_cache <= 1; with_cache++) {
        const struct codec_render_opts opts = {.jpeg_quality = 85, .threads = 1,
                                               .blocks = with_cache ? bc : NULL};
        unsigned char *out = NULL;
        size_t len = 0;
        uint64_t before = codec_jp2_split_count();
        CHECK_MSG(codec_render(path, &info, &plan, &opts, &out, &len, &err) == 0 && len > 0,
                  "render: %s", err.msg);
        /* one core: a single token, no parts to run side by side */
        uint64_t want = with_cache && codec_cpu_count() > 1 ? 1 : 0;
        CHECK_MSG(codec_jp2_split_count() - before == want,
                  "render %s the block cache: %llu split decodes, expected %llu",
                  with_cache ? "with" : "without",
                  (unsigned long long)(codec_jp2_split_count() - before), (unsigned long long)want);
        free(out);
    }
    block_cache_close(bc);
    codec_info_clear(&info);
}

static void test_j2k(void)
{
    const struct j2k_case cases[] = {
        {"rgb_lossless.jp2", "rgb8.ppm", "-n 6", true, 0, 0},
        {"rgb_tiled.j2k", "rgb8.ppm", "-t 256,256 -n 5", true, 0, 0},
        {"grey_lossless.jp2", "grey8.pgm", "-n 6", true, 0, 0},
        {"grey_tiled_offset.j2k", "grey8.pgm", "-t 128,128 -n 4 -d 37,23", true, 37, 23},
        /* the tile grid starts elsewhere than the image (XTOsiz, YTOsiz) */
        {"rgb_lossy_tile_origin.j2k", "rgb8.ppm", "-I -r 20 -t 128,96 -n 3 -d 37,23 -T 11,7",
         false, 37, 23},
        {"rgb_lossy_rpcl.jp2", "rgb8.ppm", "-I -r 20 -n 6 -p RPCL", false, 0, 0},
        {"grey16_lossy.j2k", "grey16.pgm", "-I -r 10 -n 5", false, 0, 0},
        {"grey16_lossless_offset.jp2", "grey16.pgm", "-n 3 -d 5,3", true, 5, 3},
    };
    struct pix rgb = make_pix(613, 419, 3, 255), grey = make_pix(613, 419, 1, 255),
               grey16 = make_pix(613, 419, 1, 65535);
    char path[1200];

    if (!tool_exists("opj_compress") || !tool_exists("opj_decompress")) {
        fprintf(stderr, "SKIPPED: opj_compress/opj_decompress not installed\n");
        goto done;
    }
    if (!rgb.v || !grey.v || !grey16.v ||
        !pnm_write(tmp_path(path, sizeof path, "rgb8.ppm"), &rgb) ||
        !pnm_write(tmp_path(path, sizeof path, "grey8.pgm"), &grey) ||
        !pnm_write(tmp_path(path, sizeof path, "grey16.pgm"), &grey16)) {
        CHECK_MSG(0, "cannot write test PNM files in %s", tmpdir);
        goto done;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_j2k_case(&cases[i], !strcmp(cases[i].src, "rgb8.ppm")    ? &rgb
                                 : !strcmp(cases[i].src, "grey8.pgm") ? &grey
                                                                      : &grey16);
    test_j2k_subsampled();
    test_j2k_render_parts();

    /* A codestream cut in half: an error or an image, never a crash. */
    {
        char full[1200], cut[1200];
        struct codec_info info;
        struct verr err = {0, ""};
        tmp_path(full, sizeof full, "rgb_tiled.j2k");
        tmp_path(cut, sizeof cut, "rgb_cut.j2k");
        if (run("head -c 40000 '%s' > '%s'", full, cut) &&
            codec_probe(cut, PROBE_MAX_PIXELS, &info, &err) == 0) {
            struct codec_image *img =
                decode(cut, &info, 0, 0, info.width, info.height, info.width, info.height, 1, &err);
            CHECK(img || err.status == 500);
            codec_image_free(img);
            codec_info_clear(&info);
        }
    }
done:
    pix_free(&rgb);
    pix_free(&grey);
    pix_free(&grey16);
}

/* ---------------------------------------------------------------- JPEG */

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;

    *len = 0;
    if (!fp)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) > 0 && fseek(fp, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n);
        if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        if (buf)
            *len = (size_t)n;
    }
    fclose(fp);
    return buf;
}

/* Write src's JPEG to dst with the given marker segments inserted right after SOI. */
static bool splice_jpeg(const char *src, const char *dst, const unsigned char *segs, size_t n)
{
    size_t len;
    unsigned char *buf = read_file(src, &len);
    FILE *fp;
    bool ok;

    if (!buf || len < 2)
        return free(buf), false;
    fp = fopen(dst, "wb");
    if (!fp)
        return free(buf), false;
    ok = fwrite(buf, 1, 2, fp) == 2 && fwrite(segs, 1, n, fp) == n &&
         fwrite(buf + 2, 1, len - 2, fp) == len - 2;
    ok = (fclose(fp) == 0) && ok;
    free(buf);
    return ok;
}

/* An APP1 Exif segment (big-endian TIFF) holding IFD0 with one Orientation entry. */
static size_t exif_segment(unsigned char *s, int orientation)
{
    static const unsigned char tmpl[] = {
        0xff, 0xe1, 0x00, 0x22, 'E',  'x',  'i',  'f',  0,    0, /* APP1, length 34 */
        'M',  'M',  0x00, 0x2a, 0x00, 0x00, 0x00, 0x08,          /* TIFF header */
        0x00, 0x01,                                              /* one entry */
        0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* 0x0112 */
        0x00, 0x00, 0x00, 0x00};                                                /* next IFD */
    memcpy(s, tmpl, sizeof tmpl);
    s[29] = (unsigned char)orientation;
    return sizeof tmpl;
}

/* Pixel of the displayed image at (dx, dy), taken from the stored image st (sw x sh) the way
 * EXIF orientation o displays it: written as the inverse of the decoder's mapping. */
static const uint16_t *oriented_at(const struct pix *st, int o, int dx, int dy)
{
    int sw = st->w, sh = st->h, sx, sy;

    switch (o) {
    case 2:
        sx = sw - 1 - dx;
        sy = dy;
        break;
    case 3:
        sx = sw - 1 - dx;
        sy = sh - 1 - dy;
        break;
    case 4:
        sx = dx;
        sy = sh - 1 - dy;
        break;
    case 5:
        sx = dy;
        sy = dx;
        break;
    case 6:
        sx = dy;
        sy = sh - 1 - dx;
        break;
    case 7:
        sx = sw - 1 - dy;
        sy = sh - 1 - dx;
        break;
    case 8:
        sx = sw - 1 - dy;
        sy = dx;
        break;
    default:
        sx = dx;
        sy = dy;
        break;
    }
    return st->v + ((size_t)sy * sw + sx) * st->ch;
}

static void test_jpeg_scaling(const char *jpg, const struct pix *orig, const char *tag)
{
    struct codec_info info;
    struct verr err = {0, ""};
    char ref[1200];

    if (codec_probe(jpg, PROBE_MAX_PIXELS, &info, &err) < 0) {
        CHECK_MSG(0, "probe %s: %s", tag, err.msg);
        return;
    }
    CHECK_INT(info.format, CODEC_FORMAT_JPEG);
    CHECK_INT(info.width, orig->w);
    CHECK_INT(info.height, orig->h);
    CHECK_INT(info.channels, orig->ch);
    CHECK_INT(info.levels, 3);
    CHECK_INT(info.orientation, 1);
    for (int r = 0; r <= 3; r++) {
        int d = 1 << r;
        struct pix rp;
        uint32_t sw = ceil_div_pow2(orig->w, r), sh = ceil_div_pow2(orig->h, r);
        struct codec_image *img;
        /* a region whose ceil grid extents are exactly its nominal size at 1/d */
        uint32_t x = 8u * 13, y = 8u * 7, w = 8u * 40 + 3, h = 8u * 30 + 5;
        uint32_t rx = x >> r, ry = y >> r;

        tmp_path(ref, sizeof ref, orig->ch == 1 ? "djpeg.pgm" : "djpeg.ppm");
        if (!run("djpeg -scale 1/%d -pnm -outfile '%s' '%s'", d, ref, jpg) || !pnm_read(ref, &rp)) {
            CHECK_MSG(0, "djpeg -scale 1/%d failed", d);
            continue;
        }
        CHECK(rp.w == (int)sw && rp.h == (int)sh);
        img = decode(jpg, &info, 0, 0, info.width, info.height, sw, sh, 1, &err);
        CHECK_MSG(img && img->w == sw && img->h == sh, "%s 1/%d: %s", tag, d,
                  img ? "wrong size" : err.msg);
        if (img) {
            int md = diff_img_pix(img, &rp, 0, 0);
            CHECK_MSG(md >= 0 && md <= JPEG_TOLERANCE, "%s 1/%d whole: max diff %d", tag, d, md);
        }
        codec_image_free(img);
        img = decode(jpg, &info, x, y, w, h, ceil_div_pow2(w, r), ceil_div_pow2(h, r), 1, &err);
        CHECK_MSG(img && img->w == ceil_div_pow2(w, r) && img->h == ceil_div_pow2(h, r),
                  "%s 1/%d region: %s", tag, d, img ? "wrong size" : err.msg);
        if (img) {
            int md = diff_img_pix(img, &rp, (int)rx, (int)ry);
            CHECK_MSG(md >= 0 && md <= JPEG_TOLERANCE, "%s 1/%d region: max diff %d", tag, d, md);
        }
        codec_image_free(img);
        pix_free(&rp);
    }
    codec_info_clear(&info);
}

/* Regions are decoded in part (rows above skipped, rows below not read, columns cropped with a
 * margin: jpeg_src.c). Every region must be byte-identical to the same pixels of the whole
 * image decoded at the same scale, whatever its alignment to iMCUs and however the chroma is
 * subsampled: a wrong crop margin shows up as a difference at the region's left or right edge. */
static void test_jpeg_partial(const char *jpg, const char *tag)
{
    struct codec_info info;
    struct verr err = {0, ""};
    if (codec_probe(jpg, PROBE_MAX_PIXELS, &info, &err) < 0) {
        CHECK_MSG(0, "probe %s: %s", tag, err.msg);
        return;
    }
    uint32_t seed = 12345;
    for (int r = 0; r <= 3; r++) {
        uint32_t sw = ceil_div_pow2(info.width, r), sh = ceil_div_pow2(info.height, r);
        struct codec_image *whole =
            decode(jpg, &info, 0, 0, info.width, info.height, sw, sh, 1, &err);
        CHECK_MSG(whole != NULL, "%s 1/%d whole: %s", tag, 1 << r, err.msg);
        if (!whole)
            continue;
        int bad = 0;
        for (int k = 0; k < 40; k++) {
            /* Region corners on the 1/2^r grid (so the scaled region is exactly [rx, rx+rw)),
             * anywhere, including the image's edges. */
            seed = seed * 1103515245u + 12345u;
            uint32_t rx = (seed >> 8) % sw;
            seed = seed * 1103515245u + 12345u;
            uint32_t ry = (seed >> 8) % sh;
            seed = seed * 1103515245u + 12345u;
            uint32_t rw = 1 + (seed >> 8) % (sw - rx);
            seed = seed * 1103515245u + 12345u;
            uint32_t rh = 1 + (seed >> 8) % (sh - ry);
            uint32_t x = rx << r, y = ry << r;
            uint32_t w = ((rx + rw) << r) - x, h = ((ry + rh) << r) - y;
            if (x + w > info.width)
                w = info.width - x;
            if (y + h > info.height)
                h = info.height - y;
            struct codec_image *img = decode(jpg, &info, x, y, w, h, rw, rh, 1, &err);
            bool same = img && img->w == rw && img->h == rh;
            for (uint32_t j = 0; same && j < rh; j++)
                same = memcmp(img->px + (size_t)j * rw * whole->channels,
                              whole->px + ((size_t)(ry + j) * whole->w + rx) * whole->channels,
                              (size_t)rw * whole->channels) == 0;
            if (!same && bad++ < 3)
                CHECK_MSG(0, "%s 1/%d region %u,%u,%u,%u (scaled %u,%u %ux%u) differs from the "
                          "whole decode%s%s", tag, 1 << r, x, y, w, h, rx, ry, rw, rh,
                          img ? "" : ": ", img ? "" : err.msg);
            codec_image_free(img);
        }
        CHECK_MSG(bad == 0, "%s 1/%d: %d of 40 regions differ from the whole decode", tag, 1 << r,
                  bad);
        codec_image_free(whole);
    }
    codec_info_clear(&info);
}

static void test_jpeg_orientation(const char *jpg)
{
    char ref[1200], oj[1200];
    struct pix st;
    unsigned char seg[64];
    struct verr err = {0, ""};

    tmp_path(ref, sizeof ref, "djpeg-o.ppm");
    if (!run("djpeg -pnm -outfile '%s' '%s'", ref, jpg) || !pnm_read(ref, &st)) {
        CHECK_MSG(0, "djpeg failed");
        return;
    }
    for (int o = 1; o <= 8; o++) {
        struct codec_info info;
        size_t n = exif_segment(seg, o);
        int dw = o >= 5 ? st.h : st.w, dh = o >= 5 ? st.w : st.h;
        const uint32_t rg[2][4] = {{0, 0, (uint32_t)dw, (uint32_t)dh}, {17, 29, 101, 77}};

        tmp_path(oj, sizeof oj, "oriented.jpg");
        if (!splice_jpeg(jpg, oj, seg, n) || codec_probe(oj, PROBE_MAX_PIXELS, &info, &err) < 0) {
            CHECK_MSG(0, "orientation %d: cannot make or probe: %s", o, err.msg);
            continue;
        }
        CHECK_INT(info.orientation, o);
        CHECK_INT(info.width, dw);
        CHECK_INT(info.height, dh);
        for (int k = 0; k < 2; k++) {
            struct codec_image *img = decode(oj, &info, rg[k][0], rg[k][1], rg[k][2], rg[k][3],
                                             rg[k][2], rg[k][3], 1, &err);
            int maxd = 0;
            if (!img || img->w != rg[k][2] || img->h != rg[k][3]) {
                CHECK_MSG(0, "orientation %d region %d: %s", o, k, img ? "wrong size" : err.msg);
                codec_image_free(img);
                continue;
            }
            for (uint32_t j = 0; j < img->h; j++)
                for (uint32_t i = 0; i < img->w; i++) {
                    const uint16_t *e =
                        oriented_at(&st, o, (int)(rg[k][0] + i), (int)(rg[k][1] + j));
                    for (int c = 0; c < 3; c++) {
                        int dd = abs(img->px[((size_t)j * img->w + i) * 3 + c] - e[c]);
                        if (dd > maxd)
                            maxd = dd;
                    }
                }
            CHECK_MSG(maxd <= JPEG_TOLERANCE, "orientation %d region %d: max diff %d", o, k, maxd);
            codec_image_free(img);
        }
        /* Reduced: the size follows the displayed region. */
        {
            struct codec_image *img = decode(oj, &info, 0, 0, info.width, info.height,
                                             info.width / 4, info.height / 4, 1, &err);
            CHECK(img && img->w == ceil_div_pow2(info.width, 2) &&
                  img->h == ceil_div_pow2(info.height, 2));
            codec_image_free(img);
        }
        codec_info_clear(&info);
    }
    pix_free(&st);
}

/* An RGB ICC profile split over three APP2 chunks written out of order. */
static void test_jpeg_icc(const char *jpg)
{
    enum { ICC_LEN = 150000, CHUNK = 65519 };
    unsigned char *icc = malloc(ICC_LEN), *segs = malloc(ICC_LEN + 3 * 18);
    size_t at = 0;
    const int order[3] = {2, 1, 3};
    char out[1200];
    struct codec_info info;
    struct verr err = {0, ""};

    if (!icc || !segs) {
        CHECK(0);
        goto done;
    }
    for (size_t i = 0; i < ICC_LEN; i++)
        icc[i] = (unsigned char)(i * 7 + 3);
    icc[0] = ICC_LEN >> 24;
    icc[1] = (ICC_LEN >> 16) & 0xff;
    icc[2] = (ICC_LEN >> 8) & 0xff;
    icc[3] = ICC_LEN & 0xff;
    memcpy(icc + 16, "RGB ", 4);
    memcpy(icc + 36, "acsp", 4);
    for (int k = 0; k < 3; k++) {
        int seq = order[k];
        size_t off = (size_t)(seq - 1) * CHUNK;
        size_t n = off + CHUNK > ICC_LEN ? ICC_LEN - off : CHUNK;
        size_t seg_len = n + 2 + 14;
        segs[at++] = 0xff;
        segs[at++] = 0xe2;
        segs[at++] = (unsigned char)(seg_len >> 8);
        segs[at++] = (unsigned char)(seg_len & 0xff);
        memcpy(segs + at, "ICC_PROFILE", 12);
        at += 12;
        segs[at++] = (unsigned char)seq;
        segs[at++] = 3;
        memcpy(segs + at, icc + off, n);
        at += n;
    }
    tmp_path(out, sizeof out, "icc.jpg");
    if (!splice_jpeg(jpg, out, segs, at) || codec_probe(out, PROBE_MAX_PIXELS, &info, &err) < 0) {
        CHECK_MSG(0, "ICC JPEG: %s", err.msg);
        goto done;
    }
    CHECK_INT(info.icc_len, ICC_LEN);
    CHECK(info.icc && memcmp(info.icc, icc, ICC_LEN) == 0);
    codec_info_clear(&info);
done:
    free(icc);
    free(segs);
}

static void test_jpeg(void)
{
    char path[1200], jpg[1200], gjpg[1200], j422[1200], j444[1200];
    struct pix rgb = make_pix(613, 419, 3, 255), grey = make_pix(613, 419, 1, 255);

    if (!tool_exists("cjpeg") || !tool_exists("djpeg")) {
        fprintf(stderr, "SKIPPED: cjpeg/djpeg not installed\n");
        goto done;
    }
    tmp_path(jpg, sizeof jpg, "rgb.jpg");
    tmp_path(gjpg, sizeof gjpg, "grey.jpg");
    if (!pnm_write(tmp_path(path, sizeof path, "rgb8.ppm"), &rgb) ||
        !run("cjpeg -quality 92 -outfile '%s' '%s'", jpg, path) ||
        !pnm_write(tmp_path(path, sizeof path, "grey8.pgm"), &grey) ||
        !run("cjpeg -quality 92 -grayscale -outfile '%s' '%s'", gjpg, path) ||
        !run("cjpeg -quality 92 -sample 2x1 -outfile '%s' '%s'",
             tmp_path(j422, sizeof j422, "rgb422.jpg"), tmp_path(path, sizeof path, "rgb8.ppm")) ||
        !run("cjpeg -quality 92 -sample 1x1 -outfile '%s' '%s'",
             tmp_path(j444, sizeof j444, "rgb444.jpg"), path)) {
        CHECK_MSG(0, "cannot make test JPEG files");
        goto done;
    }
    test_jpeg_scaling(jpg, &rgb, "rgb.jpg");
    test_jpeg_scaling(gjpg, &grey, "grey.jpg");
    test_jpeg_partial(jpg, "rgb.jpg (4:2:0)");
    test_jpeg_partial(j422, "rgb422.jpg");
    test_jpeg_partial(j444, "rgb444.jpg");
    test_jpeg_partial(gjpg, "grey.jpg");

    /* A header claiming 50000 x 50000 grey pixels: with no pixel cap, decoding all of it would
     * need a 2.5 GB region, past one decoded buffer's limit: 413 before anything is allocated. */
    {
        char big[1200];
        FILE *in = fopen(gjpg, "rb"), *outf = fopen(tmp_path(big, sizeof big, "big.jpg"), "wb");
        unsigned char buf[1 << 16];
        size_t n = in ? fread(buf, 1, sizeof buf, in) : 0, sof = 0;
        for (size_t i = 2; i + 9 < n && !sof; i++)
            if (buf[i] == 0xff && buf[i + 1] == 0xc0)
                sof = i;
        if (sof) { /* SOF0: FF C0, length (2), precision, height (2), width (2) */
            buf[sof + 5] = buf[sof + 7] = 50000 >> 8;
            buf[sof + 6] = buf[sof + 8] = 50000 & 0xff;
        }
        if (outf)
            fwrite(buf, 1, n, outf);
        if (in)
            fclose(in);
        if (outf)
            fclose(outf);
        struct codec_info bi;
        struct verr err = {0, ""};
        if (sof && n < sizeof buf && codec_probe(big, 0, &bi, &err) == 0) {
            struct codec_decode_req req = {.w = 50000, .h = 50000, .want_w = 50000,
                                           .want_h = 50000, .threads = 1};
            struct codec_image *img = NULL;
            CHECK_MSG(codec_decode(big, &bi, &req, &img, &err) < 0 && err.status == 413,
                      "a 50000x50000 JPEG region: %d %s", err.status, err.msg);
            codec_image_free(img);
            codec_info_clear(&bi);
        } else {
            CHECK_MSG(0, "cannot make a JPEG claiming 50000x50000 (sof at %zu): %s", sof,
                      err.msg);
        }
    }

    /* A progressive JPEG is decoded from a buffer of all its coefficients, whatever the region:
     * the memory estimate counts it (613 x 419 x 3 x 2 bytes), a baseline one's does not. */
    {
        char prog[1200];
        struct codec_info pi, bi;
        struct verr err = {0, ""};
        if (run("cjpeg -quality 92 -progressive -outfile '%s' '%s'",
                tmp_path(prog, sizeof prog, "prog.jpg"), tmp_path(path, sizeof path, "rgb8.ppm")) &&
            codec_probe(prog, PROBE_MAX_PIXELS, &pi, &err) == 0 &&
            codec_probe(jpg, PROBE_MAX_PIXELS, &bi, &err) == 0) {
            struct codec_decode_req req = {.x = 64, .y = 64, .w = 64, .h = 64, .want_w = 64,
                                           .want_h = 64, .threads = 1, .max_bytes = 1000000};
            struct codec_image *img = NULL;
            CHECK_MSG(codec_decode(prog, &pi, &req, &img, &err) < 0 && err.status == 413,
                      "progressive JPEG over the memory cap: %d %s", err.status, err.msg);
            codec_image_free(img);
            img = NULL;
            CHECK_MSG(codec_decode(jpg, &bi, &req, &img, &err) == 0 && img,
                      "baseline JPEG region within the memory cap: %s", err.msg);
            codec_image_free(img);
            req.max_bytes = 0;
            img = NULL;
            CHECK_MSG(codec_decode(prog, &pi, &req, &img, &err) == 0 && img,
                      "progressive JPEG region without a cap: %s", err.msg);
            codec_image_free(img);
            codec_info_clear(&pi);
            codec_info_clear(&bi);
            test_jpeg_partial(prog, "progressive rgb.jpg");
        } else {
            CHECK_MSG(0, "cannot make or probe a progressive JPEG: %s", err.msg);
        }
    }
    test_jpeg_orientation(jpg);
    test_jpeg_icc(jpg);

    /* Truncated after the header: an image (libjpeg pads, as djpeg does) or a 500. */
    {
        char cut[1200];
        struct codec_info info;
        struct verr err = {0, ""};
        tmp_path(cut, sizeof cut, "cut.jpg");
        if (run("head -c 3000 '%s' > '%s'", jpg, cut) &&
            codec_probe(cut, PROBE_MAX_PIXELS, &info, &err) == 0) {
            struct codec_image *img =
                decode(cut, &info, 0, 0, info.width, info.height, info.width, info.height, 1, &err);
            CHECK(img || err.status == 500);
            codec_image_free(img);
            codec_info_clear(&info);
        }
        if (run("head -c 100 '%s' > '%s'", jpg, cut))
            CHECK_MSG(codec_probe(cut, PROBE_MAX_PIXELS, &info, &err) < 0 && err.status == 500,
                      "JPEG cut at 100 bytes: %d %s", err.status, err.msg);
    }
done:
    pix_free(&rgb);
    pix_free(&grey);
}

/* ---------------------------------------------------------------- PNG */

struct png_case {
    const char *file;
    int w, h, color_type, bit_depth;
    bool interlaced, trns, iccp;
};

/* An RGB display profile libpng accepts in iCCP: a header, no tags, then noise. The noise keeps
 * the compressed chunk above 92 bytes: libpng 1.6.39 calls shorter iCCP chunks "too short". */
#define TEST_ICC_LEN 1000
static void make_icc(unsigned char *p)
{
    uint32_t seed = 99;

    for (int i = 132; i < TEST_ICC_LEN; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
    memset(p, 0, 132);
    p[2] = TEST_ICC_LEN >> 8;
    p[3] = TEST_ICC_LEN & 0xff;
    p[8] = 2;
    p[9] = 0x10;
    memcpy(p + 12, "mntr", 4);
    memcpy(p + 16, "RGB ", 4);
    memcpy(p + 20, "XYZ ", 4);
    memcpy(p + 36, "acsp", 4);
    /* D50 illuminant, s15Fixed16 */
    p[68 + 2] = 0xf6, p[68 + 3] = 0xd6;
    p[72 + 1] = 0x01;
    p[76 + 2] = 0xd3, p[76 + 3] = 0x2d;
}

/* Write a PNG with libpng; fill expected with the 8-bit G/GA/RGB/RGBA pixels a reader must
 * produce. Returns the expected channel count, 0 on failure. */
static int write_png(const char *path, const struct png_case *pc, unsigned char *expected)
{
    FILE *fp = fopen(path, "wb");
    png_structp png = NULL;
    png_infop info = NULL;
    int src_ch = pc->color_type == PNG_COLOR_TYPE_GRAY         ? 1
                 : pc->color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                 : pc->color_type == PNG_COLOR_TYPE_RGB        ? 3
                 : pc->color_type == PNG_COLOR_TYPE_RGBA       ? 4
                                                               : 1;
    int out_ch = pc->color_type == PNG_COLOR_TYPE_PALETTE ? (pc->trns ? 4 : 3)
                 : (pc->trns && src_ch == 1)              ? 2
                                                          : src_ch;
    size_t row_bytes = ((size_t)pc->w * src_ch * pc->bit_depth + 7) / 8;
    unsigned char *rows = calloc((size_t)pc->h, row_bytes);
    png_color palette[16];
    png_byte trans[16];
    unsigned char icc[TEST_ICC_LEN];
    int ok = 0;

    if (!fp || !rows)
        goto done;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png)))
        goto done;
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)pc->w, (png_uint_32)pc->h, pc->bit_depth, pc->color_type,
                 pc->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (int i = 0; i < 16; i++) {
        palette[i].red = (png_byte)(i * 16);
        palette[i].green = (png_byte)(255 - i * 13);
        palette[i].blue = (png_byte)(i * i);
        trans[i] = (png_byte)(i * 17);
    }
    if (pc->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_PLTE(png, info, palette, 16);
        if (pc->trns)
            png_set_tRNS(png, info, trans, 16, NULL);
    } else if (pc->trns) {
        png_color_16 tc = {0, 0, 0, 0, 77};
        png_set_tRNS(png, info, NULL, 0, &tc);
    }
    if (pc->iccp) {
        make_icc(icc);
        png_set_iCCP(png, info, "test", PNG_COMPRESSION_TYPE_BASE, icc, TEST_ICC_LEN);
    }
    for (int y = 0; y < pc->h; y++) {
        unsigned char *row = rows + (size_t)y * row_bytes;
        for (int x = 0; x < pc->w; x++) {
            unsigned char *e = expected + ((size_t)y * pc->w + x) * out_ch;
            if (pc->color_type == PNG_COLOR_TYPE_PALETTE) {
                int idx = (x / 3 + y * 5) % 16 & ((1 << pc->bit_depth) - 1);
                int per = 8 / pc->bit_depth;
                row[x / per] |= (unsigned char)(idx << (8 - pc->bit_depth * (x % per + 1)));
                e[0] = palette[idx].red;
                e[1] = palette[idx].green;
                e[2] = palette[idx].blue;
                if (pc->trns)
                    e[3] = trans[idx];
            } else if (pc->bit_depth == 1) {
                int bit = (x + y / 3) % 3 == 0;
                row[x / 8] |= (unsigned char)(bit << (7 - x % 8));
                e[0] = bit ? 255 : 0;
            } else {
                for (int c = 0; c < src_ch; c++) {
                    int v16 = (x * 997 + y * 613 + c * 20011) % 65536;
                    int v8 = (x * 3 + y * 7 + c * 50) % 256;
                    if (pc->bit_depth == 16) {
                        row[((size_t)x * src_ch + c) * 2] = (unsigned char)(v16 >> 8);
                        row[((size_t)x * src_ch + c) * 2 + 1] = (unsigned char)(v16 & 0xff);
                        e[c] = (unsigned char)(v16 >> 8);
                    } else {
                        row[(size_t)x * src_ch + c] = (unsigned char)v8;
                        e[c] = (unsigned char)v8;
                    }
                }
                if (pc->trns && src_ch == 1)
                    e[1] = e[0] == 77 ? 0 : 255;
            }
        }
    }
    png_write_info(png, info);
    {
        int passes = png_set_interlace_handling(png);
        for (int p = 0; p < passes; p++)
            for (int y = 0; y < pc->h; y++)
                png_write_row(png, rows + (size_t)y * row_bytes);
    }
    png_write_end(png, info);
    ok = out_ch;
done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    free(rows);
    if (fp && fclose(fp) != 0)
        ok = 0;
    return ok;
}

static void test_png(void)
{
    const struct png_case cases[] = {
        {"pal4_trns.png", 37, 23, PNG_COLOR_TYPE_PALETTE, 4, false, true, false},
        {"pal8.png", 40, 30, PNG_COLOR_TYPE_PALETTE, 8, true, false, false},
        {"grey1.png", 45, 19, PNG_COLOR_TYPE_GRAY, 1, false, false, false},
        {"grey8_trns.png", 31, 33, PNG_COLOR_TYPE_GRAY, 8, false, true, false},
        {"ga8.png", 33, 21, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, false, false},
        {"rgb16_icc.png", 41, 29, PNG_COLOR_TYPE_RGB, 16, false, false, true},
        {"rgba8_adam7.png", 53, 31, PNG_COLOR_TYPE_RGBA, 8, true, false, false},
        {"ga16_adam7.png", 17, 70, PNG_COLOR_TYPE_GRAY_ALPHA, 16, true, false, false},
    };

    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct png_case *pc = &cases[k];
        unsigned char *expected = calloc((size_t)pc->w * pc->h, 4);
        char path[1200];
        struct codec_info info;
        struct verr err = {0, ""};
        int ch;
        const uint32_t rg[2][4] = {{0, 0, (uint32_t)pc->w, (uint32_t)pc->h}, {3, 5, 11, 13}};

        tmp_path(path, sizeof path, pc->file);
        ch = expected ? write_png(path, pc, expected) : 0;
        if (!ch || codec_probe(path, PROBE_MAX_PIXELS, &info, &err) < 0) {
            CHECK_MSG(0, "%s: cannot write or probe: %s", pc->file, err.msg);
            free(expected);
            continue;
        }
        CHECK_INT(info.format, CODEC_FORMAT_PNG);
        CHECK_INT(info.channels, ch);
        CHECK_INT(info.width, pc->w);
        CHECK_INT(info.levels, 0);
        CHECK_INT(info.icc_len, pc->iccp ? TEST_ICC_LEN : 0);
        for (int r = 0; r < 2; r++) {
            /* want is a quarter of the region: PNG still decodes at full resolution */
            struct codec_image *img = decode(path, &info, rg[r][0], rg[r][1], rg[r][2], rg[r][3],
                                             rg[r][2] / 4 + 1, rg[r][3] / 4 + 1, 1, &err);
            bool same = img && img->w == rg[r][2] && img->h == rg[r][3] && img->channels == ch;
            for (uint32_t j = 0; same && j < img->h; j++)
                same = memcmp(img->px + (size_t)j * img->w * ch,
                              expected + (((size_t)(rg[r][1] + j) * pc->w) + rg[r][0]) * ch,
                              (size_t)img->w * ch) == 0;
            CHECK_MSG(same, "%s region %d: %s", pc->file, r, img ? "pixels differ" : err.msg);
            codec_image_free(img);
        }
        codec_info_clear(&info);
        free(expected);
    }
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void)
{
    char path[1200];
    struct codec_info info;
    struct verr err = {0, ""};
    FILE *fp;

    CHECK(codec_probe("/nonexistent/vellum/none.jp2", 0, &info, &err) < 0 && err.status == 404);
    CHECK(codec_probe(tmpdir, 0, &info, &err) < 0 && err.status == 404);
    tmp_path(path, sizeof path, "text.jp2");
    fp = fopen(path, "wb");
    if (fp) {
        fputs("this is not an image at all\n", fp);
        fclose(fp);
    }
    CHECK(codec_probe(path, 0, &info, &err) < 0 && err.status == 415);
    tmp_path(path, sizeof path, "empty.png");
    fp = fopen(path, "wb");
    if (fp)
        fclose(fp);
    CHECK(codec_probe(path, 0, &info, &err) < 0 && err.status == 415);
    /* A SIZ that declares 0 x 0: refused, not allocated. */
    {
        static const unsigned char siz0[] = {
            0xff, 0x4f, 0xff, 0x51, 0x00, 0x29, 0x00, 0x00, 0, 0, 0, 0, 0, 0,    0,   0,
            0,    0,    0,    0,    0,    0,    0,    0,    0, 0, 0, 1, 0, 0,    0,   1,
            0,    0,    0,    0,    0,    0,    0,    0,    0, 1, 7, 1, 1, 0xff, 0xd9};
        tmp_path(path, sizeof path, "siz0.j2k");
        fp = fopen(path, "wb");
        if (fp) {
            fwrite(siz0, 1, sizeof siz0, fp);
            fclose(fp);
        }
        CHECK(codec_probe(path, 0, &info, &err) < 0 && err.status >= 400);
    }
    codec_info_clear(NULL);
    codec_image_free(NULL);
    CHECK(codec_image_new(0, 5, 3) == NULL);
    CHECK(codec_image_new(70000, 70000, 4) == NULL); /* above the 2^31-byte cap */
    CHECK(codec_image_new(5, 5, 5) == NULL);
}

/* ---------------------------------------------------------------- fixtures */

struct tally {
    int ok, failed;
};

static bool is_expected_failure(const char *rel)
{
    /* libjpeg-turbo is built for 8-bit samples only */
    return strstr(rel, "jpeg/libjpeg-turbo/monkey12.jpg") != NULL;
}

/* Probe, then decode the whole image at about 1/8 and a 64x64 region at full resolution. */
static int try_file(const char *path, char *why, size_t why_len)
{
    struct codec_info info;
    struct verr err = {0, ""};
    struct codec_image *img;
    uint32_t x, y, w, h;

    if (codec_probe(path, PROBE_MAX_PIXELS, &info, &err) < 0) {
        snprintf(why, why_len, "probe %d %s", err.status, err.msg);
        return -1;
    }
    img = decode(path, &info, 0, 0, info.width, info.height, (info.width + 7) / 8,
                 (info.height + 7) / 8, 2, &err);
    if (!img || img->channels != info.channels || img->w < (info.width + 7) / 8 ||
        img->h < (info.height + 7) / 8) {
        snprintf(why, why_len, "decode 1/8 %d %s", err.status, img ? "bad result" : err.msg);
        codec_image_free(img);
        codec_info_clear(&info);
        return -1;
    }
    codec_image_free(img);
    w = info.width < 64 ? info.width : 64;
    h = info.height < 64 ? info.height : 64;
    x = (info.width - w) / 2;
    y = (info.height - h) / 2;
    img = decode(path, &info, x, y, w, h, w, h, 1, &err);
    if (!img || img->w != w || img->h != h || img->channels != info.channels) {
        snprintf(why, why_len, "decode region %d %s", err.status, img ? "bad result" : err.msg);
        codec_image_free(img);
        codec_info_clear(&info);
        return -1;
    }
    codec_image_free(img);
    codec_info_clear(&info);
    return 0;
}

static void walk(const char *root, const char *rel, bool must_decode, struct tally *t)
{
    char dir[1400];
    DIR *d;
    struct dirent *de;

    snprintf(dir, sizeof dir, "%s/%s", root, rel);
    d = opendir(dir);
    if (!d) {
        CHECK_MSG(0, "cannot open fixture folder %s", dir);
        return;
    }
    while ((de = readdir(d))) {
        char sub[1400], full[2900], why[400];
        struct stat st;

        if (de->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%s/%s", rel, de->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        if (stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            walk(root, sub, must_decode, t);
            continue;
        }
        if (try_file(full, why, sizeof why) == 0) {
            t->ok++;
        } else {
            t->failed++;
            if (must_decode && !is_expected_failure(sub))
                CHECK_MSG(0, "fixture %s: %s", sub, why);
        }
    }
    closedir(d);
}

static void fixtures_dir(char *buf, size_t len)
{
    const char *env = getenv("VELLUM_FIXTURES");
    const char *src = getenv("VELLUM_SOURCE_DIR");

    if (env && *env) {
        snprintf(buf, len, "%s", env);
    } else if (src && *src) {
        snprintf(buf, len, "%s/../shared/fixtures", src);
    } else {
        /* This file is <source>/tests/unit/test_decode.c. */
        char here[1024];
        char *cut;
        snprintf(here, sizeof here, "%s", __FILE__);
        for (int i = 0; i < 3; i++) {
            cut = strrchr(here, '/');
            if (cut)
                *cut = '\0';
            else
                here[0] = '\0';
        }
        snprintf(buf, len, "%s%s../shared/fixtures", here, here[0] ? "/" : "");
    }
}

/* Fixtures that exercise palette, precision and colour conversion, against opj_decompress at
 * reduction r. sYCC and CMYK are converted differently (opj_decompress truncates, we round):
 * tolerance 1 there, exact otherwise. Only files without an ICC profile (opj_decompress would
 * apply it) and without alpha (PNM has none). */
static void test_fixtures_vs_opj(const char *root)
{
    static const struct {
        const char *rel;
        int r, tolerance;
    } refs[] = {
        {"jp2/openjpeg-data/conformance/file2.jp2", 0, 1}, /* sYCC, cdef reorder */
        {"jp2/openjpeg-data/conformance/file3.jp2", 1, 1}, /* sYCC 4:2:0 */
        {"jp2/openjpeg-data/nonregression/issue411-ycc420.jp2", 0, 1},
        {"jp2/openjpeg-data/nonregression/issue411-ycc422.jp2", 0, 1},
        {"jp2/openjpeg-data/nonregression/issue411-ycc444.jp2", 0, 1},
        {"jp2/openjpeg-data/nonregression/issue205.jp2", 0, 1}, /* CMYK */
        {"jp2/openjpeg-data/conformance/file9.jp2", 0, 0},      /* palette */
        {"jp2/jpylyzer/palettedImage.jp2", 1, 0},
        {"jp2/openjpeg-data/nonregression/issue412.jp2", 0, 0}, /* palette + cdef */
        {"jp2/pillow/9bit.j2k", 0, 0},
        {"jp2/openjpeg-data/conformance/file6.jp2", 0, 0},   /* 12-bit */
        {"jp2/openjpeg-data/conformance/p0_03.j2k", 0, 0},   /* 4-bit signed */
        {"jp2/openjpeg-data/conformance/b1_mono.j2c", 1, 0}, /* image and tile offsets */
        {"jp2/openjpeg-data/conformance/p1_05.j2k", 0, 0},   /* offsets, packed headers */
        {"jp2/rais/16-bit-rgb.jp2", 2, 0},
        {"large/sn00063609-19091231_rpcl-t1024.jp2", 3, 0},
    };

    if (!tool_exists("opj_decompress"))
        return;
    for (size_t k = 0; k < sizeof refs / sizeof refs[0]; k++) {
        char path[2200], ref[1200];
        struct codec_info info;
        struct verr err = {0, ""};
        struct codec_image *img;
        struct pix rp;
        int d, r = refs[k].r;

        snprintf(path, sizeof path, "%s/%s", root, refs[k].rel);
        if (codec_probe(path, PROBE_MAX_PIXELS, &info, &err) < 0) {
            CHECK_MSG(0, "%s: %s", refs[k].rel, err.msg);
            continue;
        }
        tmp_path(ref, sizeof ref, info.channels == 1 ? "fixture.pgm" : "fixture.ppm");
        /* One less than the nominal size: with an odd grid origin the reduced extent is. */
        img = decode(path, &info, 0, 0, info.width, info.height,
                     r ? ceil_div_pow2(info.width, r) - 1 : info.width,
                     r ? ceil_div_pow2(info.height, r) - 1 : info.height, 1, &err);
        if (!img || !run("opj_decompress -i '%s' -o '%s' -r %d", path, ref, r) ||
            !pnm_read(ref, &rp)) {
            CHECK_MSG(0, "%s: %s", refs[k].rel, img ? "opj_decompress failed" : err.msg);
            codec_image_free(img);
            codec_info_clear(&info);
            continue;
        }
        CHECK_MSG(img->w == (uint32_t)rp.w && img->h == (uint32_t)rp.h, "%s: %ux%u vs %dx%d",
                  refs[k].rel, img->w, img->h, rp.w, rp.h);
        d = diff_img_pix(img, &rp, 0, 0);
        CHECK_MSG(d >= 0 && d <= refs[k].tolerance, "%s: max diff %d from opj_decompress",
                  refs[k].rel, d);
        /* A tiled file with threads to spare decodes in parts (jp2.c): the same pixels. */
        if (info.tile_w) {
            struct codec_image *par =
                decode(path, &info, 0, 0, info.width, info.height,
                       r ? ceil_div_pow2(info.width, r) - 1 : info.width,
                       r ? ceil_div_pow2(info.height, r) - 1 : info.height, 3, &err);
            CHECK_MSG(par && par->w == img->w && par->h == img->h &&
                          memcmp(par->px, img->px, (size_t)img->w * img->h * img->channels) == 0,
                      "%s: decoded in parts, differs from one piece", refs[k].rel);
            codec_image_free(par);
        }
        pix_free(&rp);
        codec_image_free(img);
        codec_info_clear(&info);
    }
}

static void test_fixtures(void)
{
    char root[1100];
    const char *valid[] = {"jp2", "jpeg", "png", "large"};
    struct stat st;

    fixtures_dir(root, sizeof root);
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "SKIPPED: fixtures not found at %s\n", root);
        return;
    }
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        struct tally t = {0, 0};
        walk(root, valid[i], true, &t);
        fprintf(stderr, "fixtures/%s: %d decoded, %d errors\n", valid[i], t.ok, t.failed);
        CHECK(t.ok > 0);
    }
    {
        struct tally t = {0, 0};
        walk(root, "corrupt", false, &t);
        fprintf(stderr, "fixtures/corrupt: %d decoded, %d errors (all returned)\n", t.ok, t.failed);
    }
    test_fixtures_vs_opj(root);
}

/* The cores the pool and the decoders size themselves by (cpus.c). */
static void test_cpu_count(void)
{
    CHECK_INT(codec_cpu_quota("100000", "100000"), 1);
    CHECK_INT(codec_cpu_quota("150000", "100000"), 2); /* docker --cpus=1.5: rounded up */
    CHECK_INT(codec_cpu_quota("50000", "100000"), 1);
    CHECK_INT(codec_cpu_quota("400000", "100000"), 4);
    CHECK_INT(codec_cpu_quota("max", "100000"), 0); /* v2: no limit */
    CHECK_INT(codec_cpu_quota("-1", "100000"), 0);  /* v1: no limit */
    CHECK_INT(codec_cpu_quota("100000", "0"), 0);
    CHECK_INT(codec_cpu_quota("", "100000"), 0);
    CHECK_INT(codec_cpu_quota(NULL, "100000"), 0);

    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    int n = codec_cpu_count(), mine = CPU_COUNT(&set);
    CHECK_MSG(n >= 1 && n <= mine, "%d cores counted, %d in the affinity mask", n, mine);
    /* Pinned to one core (taskset -c), a process counts one, whatever the machine has. */
    int first = 0;
    while (first < CPU_SETSIZE && !CPU_ISSET(first, &set))
        first++;
    pid_t pid = fork();
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(first, &one);
        _exit(sched_setaffinity(0, sizeof one, &one) == 0 ? codec_cpu_count() : 100);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    CHECK_MSG(WEXITSTATUS(status) == 1, "pinned to one core: %d counted", WEXITSTATUS(status));
}

int main(void)
{
    const char *base = getenv("VELLUM_TEST_TMP");
    char made[1024];

    if (base && *base) {
        if (mkdir(base, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "cannot create %s\n", base);
            return 1;
        }
        snprintf(tmpdir, sizeof tmpdir, "%s/decode-%ld", base, (long)getpid());
    } else {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/vellum-test-%ld", (long)getpid());
    }
    snprintf(made, sizeof made, "%s", tmpdir);
    if (mkdir(tmpdir, 0700) != 0) {
        fprintf(stderr, "cannot create %s\n", tmpdir);
        return 1;
    }

    test_cpu_count();
    test_errors();
    test_png();
    test_jpeg();
    test_j2k();
    test_fixtures();

    nftw(made, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return CHECK_DONE();
}
