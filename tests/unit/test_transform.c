/* test_transform.c: codec_resize, codec_mirror, codec_rotate, codec_to_gray, codec_to_bitonal,
 * the JPEG and PNG encoders and codec_render. Expected pixels are computed by hand (or by a
 * naive reference written here); encoder output is read back with independent decoders:
 * Debian's djpeg for JPEG, libpng's simplified read API for PNG. */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"

static char tmpdir[512];

static struct codec_image *mk(uint32_t w, uint32_t h, int ch)
{
    struct codec_image *img = codec_image_new(w, h, ch);
    if (!img) {
        fprintf(stderr, "codec_image_new(%u, %u, %d) failed\n", w, h, ch);
        exit(2);
    }
    return img;
}

static unsigned char *px(const struct codec_image *img, uint32_t x, uint32_t y)
{
    return img->px + ((size_t)y * img->w + x) * img->channels;
}

/* Deterministic pseudo-random bytes (LCG) so failures reproduce. */
static void fill_random(struct codec_image *img, uint32_t seed)
{
    size_t n = (size_t)img->w * img->h * img->channels;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        img->px[i] = (unsigned char)(seed >> 24);
    }
}

static bool same_pixels(const struct codec_image *a, const struct codec_image *b)
{
    return a && b && a->w == b->w && a->h == b->h && a->channels == b->channels &&
           memcmp(a->px, b->px, (size_t)a->w * a->h * a->channels) == 0;
}

/* ---- resize ---- */

static void test_resize_constant(void)
{
    static const uint32_t sizes[][2] = {{11, 7}, {80, 50}, {37, 5}, {5, 60}, {1, 1}, {36, 24}};
    for (int ch = 1; ch <= 4; ch++) {
        struct codec_image *src = mk(37, 23, ch);
        static const unsigned char val[4] = {10, 200, 77, 100};
        for (size_t i = 0; i < (size_t)37 * 23; i++)
            memcpy(src->px + i * ch, val + (ch == 2 ? 2 : 0), (size_t)ch);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            struct verr err = {0};
            struct codec_image *dst = codec_resize(src, sizes[s][0], sizes[s][1], &err);
            CHECK_MSG(dst != NULL, "%s", err.msg);
            if (!dst)
                continue;
            CHECK_INT(dst->w, sizes[s][0]);
            CHECK_INT(dst->h, sizes[s][1]);
            CHECK_INT(dst->channels, ch);
            int bad = 0;
            for (size_t i = 0; i < (size_t)dst->w * dst->h * ch; i++)
                bad += dst->px[i] != src->px[i % ch];
            CHECK_MSG(bad == 0, "constant %d-channel image not constant at %ux%u", ch, dst->w,
                      dst->h);
            codec_image_free(dst);
        }
        codec_image_free(src);
    }
}

static void test_resize_area_average(void)
{
    struct verr err = {0};
    /* 4x4 with 2x2 blocks whose sums divide by 4: each output is exactly its block's mean. */
    static const unsigned char b44[16] = {
        0,   40,  10, 250, /* */
        80,  120, 30, 110, /* means: (0+40+80+120)/4 = 60, (10+250+30+110)/4 = 100 */
        255, 1,   7,  9,   /* */
        3,   5,   16, 0,   /* means: (255+1+3+5)/4 = 66, (7+9+16+0)/4 = 8 */
    };
    struct codec_image *src = mk(4, 4, 1);
    memcpy(src->px, b44, 16);
    struct codec_image *dst = codec_resize(src, 2, 2, &err);
    CHECK(dst && dst->w == 2 && dst->h == 2);
    if (dst) {
        CHECK_INT(dst->px[0], 60);
        CHECK_INT(dst->px[1], 100);
        CHECK_INT(dst->px[2], 66);
        CHECK_INT(dst->px[3], 8);
    }
    codec_image_free(dst);
    /* Single-pixel checker of 20/60: every 2x2 block averages to 40. */
    for (int i = 0; i < 16; i++)
        src->px[i] = ((i % 4) + (i / 4)) % 2 ? 60 : 20;
    dst = codec_resize(src, 2, 2, &err);
    CHECK(dst && dst->px[0] == 40 && dst->px[1] == 40 && dst->px[2] == 40 && dst->px[3] == 40);
    codec_image_free(dst);
    codec_image_free(src);

    /* 3 -> 2: output 0 covers [0, 1.5), all of pixel 0 and half of pixel 1, so weights 2/3 and
     * 1/3; output 1 is the mirror image. Row [0, 90, 180] -> [30, 150]. */
    src = mk(3, 1, 1);
    src->px[0] = 0, src->px[1] = 90, src->px[2] = 180;
    dst = codec_resize(src, 2, 1, &err);
    CHECK(dst && dst->px[0] == 30 && dst->px[1] == 150);
    codec_image_free(dst);
    codec_image_free(src);

    /* 3x3 -> 2x2 in both axes on p(x, y) = 30x + 60y: the weighted mean position along an axis
     * is 1/3 for output 0 and 2/3*2 + 1/3*1 = 5/3 for output 1, so out = 30*mx + 60*my:
     * (0,0) 10+20 = 30, (1,0) 50+20 = 70, (0,1) 10+100 = 110, (1,1) 50+100 = 150. */
    src = mk(3, 3, 1);
    for (uint32_t y = 0; y < 3; y++)
        for (uint32_t x = 0; x < 3; x++)
            *px(src, x, y) = (unsigned char)(30 * x + 60 * y);
    dst = codec_resize(src, 2, 2, &err);
    CHECK(dst != NULL);
    if (dst) {
        CHECK_INT(dst->px[0], 30);
        CHECK_INT(dst->px[1], 70);
        CHECK_INT(dst->px[2], 110);
        CHECK_INT(dst->px[3], 150);
    }
    codec_image_free(dst);
    /* One bright centre pixel: it covers 1/3 x 1/3 of each output -> 255/9 = 28.3 -> 28. */
    memset(src->px, 0, 9);
    src->px[4] = 255;
    dst = codec_resize(src, 2, 2, &err);
    CHECK(dst && dst->px[0] == 28 && dst->px[1] == 28 && dst->px[2] == 28 && dst->px[3] == 28);
    codec_image_free(dst);
    codec_image_free(src);
}

static void test_resize_step_edge(void)
{
    /* Step at x = 2 on 6 columns -> 4: output 1 covers [1.5, 3): half of a 0 pixel and a whole
     * 255 pixel, mean 255 / 1.5 = 170. Nearest-neighbour could only give 0 or 255. */
    struct verr err = {0};
    struct codec_image *src = mk(6, 5, 3);
    for (uint32_t y = 0; y < 5; y++)
        for (uint32_t x = 0; x < 6; x++)
            memset(px(src, x, y), x < 2 ? 0 : 255, 3);
    struct codec_image *dst = codec_resize(src, 4, 3, &err);
    CHECK(dst && dst->w == 4 && dst->h == 3 && dst->channels == 3);
    if (dst) {
        for (uint32_t y = 0; y < 3; y++) {
            CHECK_INT(px(dst, 0, y)[0], 0);
            CHECK_INT(px(dst, 1, y)[0], 170);
            CHECK_INT(px(dst, 1, y)[2], 170);
            CHECK_INT(px(dst, 2, y)[1], 255);
            CHECK_INT(px(dst, 3, y)[0], 255);
        }
    }
    codec_image_free(dst);
    codec_image_free(src);
}

static void test_resize_upscale_and_mixed(void)
{
    struct verr err = {0};
    /* Bilinear, pixel centres aligned: output o samples source position (o + 0.5) / 2 - 0.5:
     * -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1). [0, 200] -> [0, 50, 150, 200]. */
    struct codec_image *src = mk(2, 1, 1);
    src->px[0] = 0, src->px[1] = 200;
    struct codec_image *dst = codec_resize(src, 4, 1, &err);
    CHECK(dst && dst->px[0] == 0 && dst->px[1] == 50 && dst->px[2] == 150 && dst->px[3] == 200);
    codec_image_free(dst);
    codec_image_free(src);

    /* Mixed: 4x2 -> 2x4 (width area-averaged, height bilinear).
     * rows [0 40 80 120] -> [20 100], [100 140 180 220] -> [120 200]; then vertically with
     * weights 0, 1/4, 3/4, 1: column 0 = 20 45 95 120, column 1 = 100 125 175 200. */
    src = mk(4, 2, 1);
    static const unsigned char m[8] = {0, 40, 80, 120, 100, 140, 180, 220};
    memcpy(src->px, m, 8);
    dst = codec_resize(src, 2, 4, &err);
    static const unsigned char want[8] = {20, 100, 45, 125, 95, 175, 120, 200};
    CHECK(dst && dst->w == 2 && dst->h == 4 && memcmp(dst->px, want, 8) == 0);
    codec_image_free(dst);
    codec_image_free(src);
}

static void test_resize_alpha(void)
{
    struct verr err = {0};
    /* Transparent red next to opaque blue, averaged 2 -> 1: premultiplied, the red counts for
     * nothing, so the colour is pure blue and alpha is 255/2 -> 128. */
    struct codec_image *src = mk(2, 1, 4);
    static const unsigned char rb[8] = {255, 0, 0, 0, 0, 0, 255, 255};
    memcpy(src->px, rb, 8);
    struct codec_image *dst = codec_resize(src, 1, 1, &err);
    CHECK(dst && dst->channels == 4);
    if (dst) {
        CHECK_INT(dst->px[0], 0);
        CHECK_INT(dst->px[1], 0);
        CHECK_INT(dst->px[2], 255);
        CHECK_INT(dst->px[3], 128);
    }
    codec_image_free(dst);
    /* Upscaling 2 -> 4: the two middle pixels have partial alpha (64, 191) and stay pure blue. */
    dst = codec_resize(src, 4, 1, &err);
    CHECK(dst != NULL);
    if (dst) {
        for (int x = 1; x <= 2; x++) {
            const unsigned char *p = px(dst, (uint32_t)x, 0);
            CHECK_MSG(p[0] == 0 && p[1] == 0 && p[2] == 255, "x=%d rgb=%d,%d,%d", x, p[0], p[1],
                      p[2]);
        }
        CHECK_INT(px(dst, 1, 0)[3], 64);
        CHECK_INT(px(dst, 2, 0)[3], 191);
        CHECK_INT(px(dst, 3, 0)[3], 255);
    }
    codec_image_free(dst);
    codec_image_free(src);

    /* Grey + alpha: a transparent white pixel beside an opaque black one stays black. */
    src = mk(2, 2, 2);
    static const unsigned char ga[8] = {255, 0, 0, 255, 255, 0, 0, 255};
    memcpy(src->px, ga, 8);
    dst = codec_resize(src, 1, 1, &err);
    CHECK(dst && dst->px[0] == 0 && dst->px[1] == 128);
    codec_image_free(dst);
    codec_image_free(src);
}

static void test_resize_identity(void)
{
    struct verr err = {0};
    struct codec_image *src = mk(17, 9, 4);
    fill_random(src, 7);
    struct codec_image *dst = codec_resize(src, 17, 9, &err);
    CHECK(dst && dst != src && dst->px != src->px);
    CHECK(same_pixels(src, dst));
    codec_image_free(dst);
    /* Bad arguments are errors, not crashes. */
    err.status = 0;
    CHECK(codec_resize(src, 0, 5, &err) == NULL);
    CHECK_INT(err.status, 500);
    codec_image_free(src);
}

/* ---- mirror and rotate ---- */

static void test_mirror(void)
{
    struct verr err = {0};
    struct codec_image *src = mk(3, 2, 3);
    for (int i = 0; i < 18; i++)
        src->px[i] = (unsigned char)i;
    struct codec_image *dst = codec_mirror(src, &err);
    /* Row 0 pixels (0,1,2) (3,4,5) (6,7,8) become (6,7,8) (3,4,5) (0,1,2). */
    static const unsigned char want[18] = {6,  7,  8,  3,  4,  5,  0, 1,  2,
                                           15, 16, 17, 12, 13, 14, 9, 10, 11};
    CHECK(dst && dst->w == 3 && dst->h == 2 && memcmp(dst->px, want, 18) == 0);
    codec_image_free(dst);
    codec_image_free(src);
}

static void test_rotate_quarters(void)
{
    struct verr err = {0};
    /* 1 2 3
     * 4 5 6 */
    struct codec_image *src = mk(3, 2, 1);
    for (int i = 0; i < 6; i++)
        src->px[i] = (unsigned char)(i + 1);
    static const unsigned char r90[6] = {4, 1, 5, 2, 6, 3}; /* 2 wide, 3 high */
    static const unsigned char r180[6] = {6, 5, 4, 3, 2, 1};
    static const unsigned char r270[6] = {3, 6, 2, 5, 1, 4};
    struct codec_image *d = codec_rotate(src, 90, true, &err);
    CHECK(d && d->w == 2 && d->h == 3 && d->channels == 1 && memcmp(d->px, r90, 6) == 0);
    codec_image_free(d);
    d = codec_rotate(src, 180, false, &err);
    CHECK(d && d->w == 3 && d->h == 2 && memcmp(d->px, r180, 6) == 0);
    codec_image_free(d);
    d = codec_rotate(src, 270, true, &err);
    CHECK(d && d->w == 2 && d->h == 3 && memcmp(d->px, r270, 6) == 0);
    codec_image_free(d);
    d = codec_rotate(src, 0, true, &err);
    CHECK(d && d != src && same_pixels(d, src));
    codec_image_free(d);
    codec_image_free(src);

    /* Bigger than one 32x32 block, RGBA: compare with the textbook mapping, and check that
     * 90 followed by 270 (and 180 twice) is the identity. */
    src = mk(70, 45, 4);
    fill_random(src, 42);
    struct codec_image *a = codec_rotate(src, 90, false, &err);
    CHECK(a && a->w == 45 && a->h == 70);
    if (a) {
        int bad = 0;
        for (uint32_t y = 0; y < src->h; y++)
            for (uint32_t x = 0; x < src->w; x++)
                bad += memcmp(px(src, x, y), px(a, src->h - 1 - y, x), 4) != 0;
        CHECK_INT(bad, 0);
        struct codec_image *b = codec_rotate(a, 270, false, &err);
        CHECK(same_pixels(b, src));
        codec_image_free(b);
    }
    codec_image_free(a);
    a = codec_rotate(src, 180, false, &err);
    struct codec_image *b = a ? codec_rotate(a, 180, false, &err) : NULL;
    CHECK(same_pixels(b, src));
    codec_image_free(a);
    codec_image_free(b);
    codec_image_free(src);
}

static void test_rotate_arbitrary(void)
{
    struct verr err = {0};
    /* 40x20 of constant colour. IIIF 3.0 §4.3 bounding box:
     * 45 deg: 40*0.7071 + 20*0.7071 = 42.43 -> 43 both ways;
     * 30 deg: w 40*0.8660 + 20*0.5 = 44.64 -> 45, h 40*0.5 + 20*0.8660 = 37.32 -> 38. */
    struct codec_image *src = mk(40, 20, 3);
    for (size_t i = 0; i < 800; i++)
        memcpy(src->px + i * 3, "\xC8\x64\x32", 3); /* (200, 100, 50) */
    /* A distinct 2x2 marker at the centre so "centre preserved" means something. */
    for (uint32_t y = 9; y <= 10; y++)
        for (uint32_t x = 19; x <= 20; x++)
            memcpy(px(src, x, y), "\x0A\xF0\x14", 3); /* (10, 240, 20) */

    struct codec_image *t = codec_rotate(src, 45, true, &err);
    CHECK(t && t->w == 43 && t->h == 43 && t->channels == 4);
    if (t) {
        /* Corners are outside the rotated rectangle: fully transparent. */
        CHECK_INT(px(t, 0, 0)[3], 0);
        CHECK_INT(px(t, 42, 0)[3], 0);
        CHECK_INT(px(t, 0, 42)[3], 0);
        CHECK_INT(px(t, 42, 42)[3], 0);
        /* The canvas centre (21.5, 21.5) maps to the source centre, inside the marker. */
        const unsigned char *c = px(t, 21, 21);
        CHECK_MSG(c[0] == 10 && c[1] == 240 && c[2] == 20 && c[3] == 255, "centre %d,%d,%d,%d",
                  c[0], c[1], c[2], c[3]);
        /* Deep inside the rectangle, away from the marker: the source colour, opaque. */
        const unsigned char *in = px(t, 12, 12);
        CHECK_MSG(in[0] == 200 && in[1] == 100 && in[2] == 50 && in[3] == 255, "inside %d,%d,%d,%d",
                  in[0], in[1], in[2], in[3]);
        /* Antialiased edges: some alpha strictly between 0 and 255, and the colour of those
         * pixels is still the source colour (no dark fringe from the transparent background). */
        int partial = 0, fringe = 0;
        for (size_t i = 0; i < (size_t)43 * 43; i++) {
            const unsigned char *p = t->px + i * 4;
            if (p[3] > 0 && p[3] < 255) {
                partial++;
                fringe += abs(p[0] - 200) > 1 || abs(p[1] - 100) > 1 || abs(p[2] - 50) > 1;
            }
        }
        CHECK(partial > 20);
        CHECK_INT(fringe, 0);
    }
    codec_image_free(t);

    struct codec_image *w = codec_rotate(src, 45, false, &err);
    CHECK(w && w->w == 43 && w->h == 43 && w->channels == 3);
    if (w) {
        CHECK(memcmp(px(w, 0, 0), "\xFF\xFF\xFF", 3) == 0);
        CHECK(memcmp(px(w, 42, 42), "\xFF\xFF\xFF", 3) == 0);
        CHECK(memcmp(px(w, 21, 21), "\x0A\xF0\x14", 3) == 0);
    }
    codec_image_free(w);

    w = codec_rotate(src, 30, false, &err);
    CHECK(w && w->w == 45 && w->h == 38);
    codec_image_free(w);

    /* Grey gains an alpha channel in transparent mode; RGBA keeps its four. */
    struct codec_image *g = mk(10, 10, 1);
    memset(g->px, 77, 100);
    t = codec_rotate(g, 10, true, &err);
    CHECK(t && t->channels == 2);
    codec_image_free(t);
    t = codec_rotate(g, 90, true, &err); /* exact moves never add channels */
    CHECK(t && t->channels == 1);
    codec_image_free(t);
    codec_image_free(g);
    codec_image_free(src);
}

/* ---- gray and bitonal ---- */

static void test_gray_bitonal(void)
{
    struct verr err = {0};
    /* BT.601: Y = 0.299 R + 0.587 G + 0.114 B, rounded:
     * red 76.245 -> 76, green 149.685 -> 150, blue 29.07 -> 29, white 255,
     * (100,150,200) 29.9 + 88.05 + 22.8 = 140.75 -> 141, (10,20,30) 2.99 + 11.74 + 3.42 -> 18. */
    static const unsigned char rgb[18] = {255, 0,   0,   0,   255, 0,   0,  0,  255,
                                          255, 255, 255, 100, 150, 200, 10, 20, 30};
    static const unsigned char gray[6] = {76, 150, 29, 255, 141, 18};
    static const unsigned char bit[6] = {0, 255, 0, 255, 255, 0};
    struct codec_image *src = mk(6, 1, 3);
    memcpy(src->px, rgb, 18);
    struct codec_image *d = codec_to_gray(src, &err);
    CHECK(d && d->channels == 1 && memcmp(d->px, gray, 6) == 0);
    codec_image_free(d);
    d = codec_to_bitonal(src, &err);
    CHECK(d && d->channels == 1 && memcmp(d->px, bit, 6) == 0);
    codec_image_free(d);
    codec_image_free(src);

    /* RGBA -> GA keeps alpha. */
    src = mk(2, 1, 4);
    static const unsigned char rgba[8] = {100, 150, 200, 33, 255, 0, 0, 200};
    memcpy(src->px, rgba, 8);
    d = codec_to_gray(src, &err);
    CHECK(d && d->channels == 2 && d->px[0] == 141 && d->px[1] == 33 && d->px[2] == 76 &&
          d->px[3] == 200);
    codec_image_free(d);
    d = codec_to_bitonal(src, &err);
    CHECK(d && d->channels == 2 && d->px[0] == 255 && d->px[1] == 33 && d->px[2] == 0 &&
          d->px[3] == 200);
    codec_image_free(d);
    codec_image_free(src);

    /* Grey input: gray copies it; bitonal thresholds at 128 (127 -> 0, 128 -> 255). */
    src = mk(4, 1, 2);
    static const unsigned char gin[8] = {127, 9, 128, 10, 0, 11, 255, 12};
    memcpy(src->px, gin, 8);
    d = codec_to_gray(src, &err);
    CHECK(same_pixels(d, src));
    codec_image_free(d);
    d = codec_to_bitonal(src, &err);
    static const unsigned char gbit[8] = {0, 9, 255, 10, 0, 11, 255, 12};
    CHECK(d && d->channels == 2 && memcmp(d->px, gbit, 8) == 0);
    codec_image_free(d);
    codec_image_free(src);
}

/* ---- encoders ---- */

static int write_file(const char *path, const unsigned char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(buf, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

/* Decode a JPEG with Debian's djpeg into a PNM and read it back: an independent decoder. */
static struct codec_image *djpeg(const unsigned char *jpg, size_t len)
{
    char in[600], outp[600], cmd[1400];
    snprintf(in, sizeof in, "%s/t.jpg", tmpdir);
    snprintf(outp, sizeof outp, "%s/t.pnm", tmpdir);
    if (write_file(in, jpg, len) < 0)
        return NULL;
    snprintf(cmd, sizeof cmd, "djpeg -pnm -outfile '%s' '%s'", outp, in);
    if (system(cmd) != 0)
        return NULL;
    FILE *f = fopen(outp, "rb");
    if (!f)
        return NULL;
    char magic[3] = {0};
    unsigned w = 0, h = 0, maxv = 0;
    struct codec_image *img = NULL;
    if (fscanf(f, "%2s %u %u %u", magic, &w, &h, &maxv) == 4 && fgetc(f) != EOF && maxv == 255 &&
        (strcmp(magic, "P5") == 0 || strcmp(magic, "P6") == 0)) {
        img = mk(w, h, magic[1] == '5' ? 1 : 3);
        size_t n = (size_t)w * h * img->channels;
        if (fread(img->px, 1, n, f) != n) {
            codec_image_free(img);
            img = NULL;
        }
    }
    fclose(f);
    unlink(in);
    unlink(outp);
    return img;
}

static double mean_abs_diff(const struct codec_image *a, const struct codec_image *b)
{
    size_t n = (size_t)a->w * a->h * a->channels;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs(a->px[i] - b->px[i]);
    return s / (double)n;
}

/* Walk the JPEG markers up to SOS; reassemble the APP2 ICC_PROFILE chunks in sequence order.
 * Also reports the marker order so the test can check APP0 comes first. */
static unsigned char *jpeg_icc(const unsigned char *j, size_t len, size_t *icc_len, int *first_app,
                               int *n_chunks)
{
    unsigned char *icc = NULL;
    size_t total = 0;
    int expect_seq = 1, count = 0;
    *first_app = -1;
    *n_chunks = 0;
    if (len < 4 || j[0] != 0xFF || j[1] != 0xD8)
        return NULL;
    size_t pos = 2;
    while (pos + 4 <= len && j[pos] == 0xFF) {
        int marker = j[pos + 1];
        size_t seglen = (size_t)j[pos + 2] << 8 | j[pos + 3];
        if (marker == 0xDA || pos + 2 + seglen > len)
            break;
        if (*first_app < 0)
            *first_app = marker;
        const unsigned char *d = j + pos + 4;
        if (marker == 0xE2 && seglen >= 16 && memcmp(d, "ICC_PROFILE", 12) == 0) {
            if (d[12] != expect_seq || (count && d[13] != count)) {
                free(icc);
                return NULL;
            }
            count = d[13];
            expect_seq++;
            size_t n = seglen - 16;
            unsigned char *nb = realloc(icc, total + n);
            if (!nb) {
                free(icc);
                return NULL;
            }
            icc = nb;
            memcpy(icc + total, d + 14, n);
            total += n;
            (*n_chunks)++;
        }
        pos += 2 + seglen;
    }
    if (icc && *n_chunks != count) {
        free(icc);
        return NULL;
    }
    *icc_len = total;
    return icc;
}

static void test_encode_jpeg(void)
{
    struct verr err = {0};
    unsigned char *out = NULL;
    size_t out_len = 0;

    /* Smooth RGB gradient at quality 90: djpeg must give it back with mean |diff| < 3. */
    struct codec_image *src = mk(96, 64, 3);
    for (uint32_t y = 0; y < 64; y++)
        for (uint32_t x = 0; x < 96; x++) {
            unsigned char *p = px(src, x, y);
            p[0] = (unsigned char)(x * 255 / 95);
            p[1] = (unsigned char)(y * 255 / 63);
            p[2] = (unsigned char)(128 + (x + y) / 4);
        }
    CHECK_INT(codec_encode_jpeg(src, 90, NULL, 0, &out, &out_len, &err), 0);
    CHECK(out_len > 4 && out[0] == 0xFF && out[1] == 0xD8 && out[out_len - 2] == 0xFF &&
          out[out_len - 1] == 0xD9);
    struct codec_image *back = out ? djpeg(out, out_len) : NULL;
    CHECK(back && back->w == 96 && back->h == 64 && back->channels == 3);
    if (back && back->w == 96 && back->h == 64 && back->channels == 3) {
        double d = mean_abs_diff(src, back);
        CHECK_MSG(d < 3.0, "RGB q90 mean abs diff %.3f", d);
    }
    codec_image_free(back);
    free(out);

    /* ICC: a 150000-byte profile needs three APP2 chunks (65519 + 65519 + 18962), placed right
     * after JFIF's APP0; djpeg must still read the file. JPEG does not validate the profile,
     * so arbitrary bytes are fine here. */
    size_t icc_len = 150000;
    unsigned char *icc = malloc(icc_len);
    CHECK(icc != NULL);
    if (icc) {
        for (size_t i = 0; i < icc_len; i++)
            icc[i] = (unsigned char)(i * 7 + i / 251);
        CHECK_INT(codec_encode_jpeg(src, 80, icc, icc_len, &out, &out_len, &err), 0);
        size_t got_len = 0;
        int first_app = 0, chunks = 0;
        unsigned char *got = out ? jpeg_icc(out, out_len, &got_len, &first_app, &chunks) : NULL;
        CHECK_INT(first_app, 0xE0);
        CHECK_INT(chunks, 3);
        CHECK(got && got_len == icc_len && memcmp(got, icc, icc_len) == 0);
        free(got);
        back = out ? djpeg(out, out_len) : NULL;
        CHECK(back && back->w == 96 && back->h == 64);
        codec_image_free(back);
        free(out);
        free(icc);
    }
    codec_image_free(src);

    /* Grey gradient -> TJSAMP_GRAY: djpeg gives a P5 back, mean |diff| < 3. */
    src = mk(64, 40, 1);
    for (uint32_t y = 0; y < 40; y++)
        for (uint32_t x = 0; x < 64; x++)
            *px(src, x, y) = (unsigned char)(x * 2 + y);
    CHECK_INT(codec_encode_jpeg(src, 90, NULL, 0, &out, &out_len, &err), 0);
    back = out ? djpeg(out, out_len) : NULL;
    CHECK(back && back->channels == 1 && back->w == 64 && back->h == 40);
    if (back && back->channels == 1 && back->w == 64 && back->h == 40) {
        double d = mean_abs_diff(src, back);
        CHECK_MSG(d < 3.0, "grey q90 mean abs diff %.3f", d);
    }
    codec_image_free(back);
    free(out);
    codec_image_free(src);

    /* RGBA: alpha 0 composites to white, alpha 255 keeps the colour, 128 is halfway. Left
     * third transparent, middle third half-covered black, right third opaque dark blue. */
    src = mk(48, 16, 4);
    for (uint32_t y = 0; y < 16; y++)
        for (uint32_t x = 0; x < 48; x++) {
            unsigned char *p = px(src, x, y);
            static const unsigned char cols[3][4] = {
                {0, 0, 0, 0}, {0, 0, 0, 128}, {0, 0, 100, 255}};
            memcpy(p, cols[x / 16], 4);
        }
    CHECK_INT(codec_encode_jpeg(src, 95, NULL, 0, &out, &out_len, &err), 0);
    back = out ? djpeg(out, out_len) : NULL;
    CHECK(back && back->channels == 3 && back->w == 48);
    if (back && back->channels == 3 && back->w == 48) {
        /* Sample block centres, away from the chroma-subsampled edges; tolerance 4. */
        const unsigned char *a = px(back, 4, 8), *b = px(back, 24, 8), *c = px(back, 44, 8);
        CHECK_MSG(a[0] >= 251 && a[1] >= 251 && a[2] >= 251, "%d %d %d", a[0], a[1], a[2]);
        CHECK_MSG(abs(b[0] - 127) <= 4 && abs(b[2] - 127) <= 4, "%d %d %d", b[0], b[1], b[2]);
        CHECK_MSG(c[0] <= 4 && c[1] <= 4 && abs(c[2] - 100) <= 4, "%d %d %d", c[0], c[1], c[2]);
    }
    codec_image_free(back);
    free(out);
    codec_image_free(src);
}

/* A minimal profile libpng accepts (ICC.1 header: size, version 2.1, 'mntr', colour space,
 * 'XYZ ' PCS, 'acsp', D50 illuminant) with one 'desc'-like tag of payload. */
static size_t make_icc(unsigned char *p, const char *space)
{
    const size_t len = 132 + 12 + 24;
    memset(p, 0, len);
    p[0] = 0, p[1] = 0, p[2] = 0, p[3] = (unsigned char)len;
    p[8] = 2, p[9] = 0x10;
    memcpy(p + 12, "mntr", 4);
    memcpy(p + 16, space, 4);
    memcpy(p + 20, "XYZ ", 4);
    memcpy(p + 36, "acsp", 4);
    static const unsigned char d50[12] = {0, 0, 0xF6, 0xD6, 0, 1, 0, 0, 0, 0, 0xD3, 0x2D};
    memcpy(p + 68, d50, 12);
    p[131] = 1; /* one tag */
    memcpy(p + 132, "desc", 4);
    p[139] = 144; /* offset */
    p[143] = 24;  /* length */
    memcpy(p + 144, "vellum test profile!....", 24);
    return len;
}

/* Chunk names in file order, up to IEND. */
static bool png_has_chunk(const unsigned char *b, size_t len, const char *name)
{
    size_t pos = 8;
    while (pos + 12 <= len) {
        size_t n =
            (size_t)b[pos] << 24 | (size_t)b[pos + 1] << 16 | (size_t)b[pos + 2] << 8 | b[pos + 3];
        if (memcmp(b + pos + 4, name, 4) == 0)
            return true;
        if (memcmp(b + pos + 4, "IEND", 4) == 0 || n > len)
            break;
        pos += 12 + n;
    }
    return false;
}

struct membuf {
    const unsigned char *p;
    size_t len, pos;
};

static void mem_read(png_structp png, png_bytep data, size_t n)
{
    struct membuf *m = png_get_io_ptr(png);
    if (n > m->len - m->pos)
        png_error(png, "read past end");
    memcpy(data, m->p + m->pos, n);
    m->pos += n;
}

/* Read the iCCP chunk back through libpng's reader (it inflates the profile for us). */
static bool png_icc_equals(const unsigned char *buf, size_t len, const unsigned char *icc,
                           size_t icc_len)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    struct membuf m = {buf, len, 0};
    volatile bool ok = false;
    if (!info)
        goto done;
    if (setjmp(png_jmpbuf(png)))
        goto done;
    png_set_read_fn(png, &m, mem_read);
    png_read_info(png, info);
    png_charp name = NULL;
    int comp = -1;
    png_bytep prof = NULL;
    png_uint_32 plen = 0;
    if (png_get_iCCP(png, info, &name, &comp, &prof, &plen) == PNG_INFO_iCCP)
        ok = strcmp(name, "ICC profile") == 0 && plen == icc_len && memcmp(prof, icc, icc_len) == 0;
done:
    png_destroy_read_struct(&png, &info, NULL);
    return ok;
}

static void test_encode_png(void)
{
    static const png_uint_32 formats[4] = {PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB,
                                           PNG_FORMAT_RGBA};
    for (int ch = 1; ch <= 4; ch++) {
        struct verr err = {0};
        struct codec_image *src = mk(57, 31, ch);
        fill_random(src, (uint32_t)ch * 1000u);
        unsigned char *out = NULL;
        size_t out_len = 0;
        CHECK_INT(codec_encode_png(src, NULL, 0, &out, &out_len, &err), 0);
        CHECK(out && !png_has_chunk(out, out_len, "iCCP"));

        /* libpng's simplified reader: lossless, so the pixels must match exactly. */
        png_image im;
        memset(&im, 0, sizeof im);
        im.version = PNG_IMAGE_VERSION;
        bool ok = out && png_image_begin_read_from_memory(&im, out, out_len);
        CHECK_MSG(ok, "ch=%d: %s", ch, im.message);
        if (ok) {
            CHECK_INT(im.width, 57);
            CHECK_INT(im.height, 31);
            im.format = formats[ch - 1];
            unsigned char *buf = malloc(PNG_IMAGE_SIZE(im));
            CHECK(buf != NULL);
            if (buf && png_image_finish_read(&im, NULL, buf, 0, NULL)) {
                CHECK_MSG(memcmp(buf, src->px, (size_t)57 * 31 * ch) == 0, "ch=%d pixels differ",
                          ch);
            } else {
                CHECK_MSG(0, "ch=%d finish_read: %s", ch, im.message);
            }
            free(buf);
            png_image_free(&im);
        }
        free(out);
        codec_image_free(src);
    }

    /* iCCP: an RGB profile on an RGB image is written and reads back byte for byte. */
    struct verr err = {0};
    unsigned char icc[256];
    size_t icc_len = make_icc(icc, "RGB ");
    struct codec_image *src = mk(8, 8, 3);
    fill_random(src, 5);
    unsigned char *out = NULL;
    size_t out_len = 0;
    CHECK_INT(codec_encode_png(src, icc, icc_len, &out, &out_len, &err), 0);
    CHECK(out && png_has_chunk(out, out_len, "iCCP"));
    CHECK(out && png_icc_equals(out, out_len, icc, icc_len));
    free(out);
    codec_image_free(src);

    /* libpng refuses an RGB profile on a grey image; that is a warning, not a failed request. */
    src = mk(8, 8, 1);
    fill_random(src, 6);
    CHECK_MSG(codec_encode_png(src, icc, icc_len, &out, &out_len, &err) == 0, "%s", err.msg);
    CHECK(out && !png_has_chunk(out, out_len, "iCCP"));
    free(out);
    /* ... while a grey profile on it is kept. */
    icc_len = make_icc(icc, "GRAY");
    CHECK_INT(codec_encode_png(src, icc, icc_len, &out, &out_len, &err), 0);
    CHECK(out && png_icc_equals(out, out_len, icc, icc_len));
    free(out);
    codec_image_free(src);
}

/* ---- render ---- */

static void test_render(void)
{
    /* A 100x80 RGB PNG source; region 10,10,50,40 scaled to 25,20 (exactly 2x2 boxes), mirror
     * off, rotation 90, png. Reference: naive 2x2 box mean (rounded half up) of the crop, then
     * dst(x, y) = box(y, 19 - x). */
    struct verr err = {0};
    struct codec_image *src = mk(100, 80, 3);
    fill_random(src, 99);
    unsigned char *png = NULL;
    size_t png_len = 0;
    char path[600];
    snprintf(path, sizeof path, "%s/render-src.png", tmpdir);
    CHECK_INT(codec_encode_png(src, NULL, 0, &png, &png_len, &err), 0);
    CHECK_INT(png ? write_file(path, png, png_len) : -1, 0);
    free(png);

    struct codec_info info;
    memset(&info, 0, sizeof info);
    CHECK_MSG(codec_probe(path, 0, &info, &err) == 0, "probe: %s", err.msg);
    CHECK_INT(info.width, 100);
    CHECK_INT(info.height, 80);
    const struct iiif_plan plan = {.x = 10,
                                   .y = 10,
                                   .w = 50,
                                   .h = 40,
                                   .out_w = 25,
                                   .out_h = 20,
                                   .mirror = false,
                                   .rotation = 90,
                                   .quality = IIIF_QUALITY_DEFAULT,
                                   .format = IIIF_FORMAT_PNG};
    const struct codec_render_opts opts = {
        .max_decode_pixels = 0, .jpeg_quality = 90, .threads = 1};
    unsigned char *out = NULL;
    size_t out_len = 0;
    CHECK_MSG(codec_render(path, &info, &plan, &opts, &out, &out_len, &err) == 0, "render: %s",
              err.msg);

    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (out && png_image_begin_read_from_memory(&im, out, out_len)) {
        CHECK_INT(im.width, 20);
        CHECK_INT(im.height, 25);
        im.format = PNG_FORMAT_RGB;
        unsigned char *buf = malloc(PNG_IMAGE_SIZE(im));
        if (buf && png_image_finish_read(&im, NULL, buf, 0, NULL) && im.width == 20) {
            int bad = 0;
            for (uint32_t by = 0; by < 20; by++)
                for (uint32_t bx = 0; bx < 25; bx++)
                    for (int c = 0; c < 3; c++) {
                        unsigned s = 0;
                        for (int k = 0; k < 4; k++)
                            s += px(src, 10 + 2 * bx + (k & 1), 10 + 2 * by + (k >> 1))[c];
                        /* 90 clockwise: box (bx, by) lands at (19 - by, bx). */
                        bad += buf[((size_t)bx * 20 + (19 - by)) * 3 + c] != (s + 2) / 4;
                    }
            CHECK_INT(bad, 0);
        } else {
            CHECK_MSG(0, "render output unreadable: %s", im.message);
        }
        free(buf);
        png_image_free(&im);
    } else {
        CHECK_MSG(0, "render output is not a PNG");
    }
    free(out);

    /* Same request as a gray JPEG: djpeg reads a 20x25 greyscale image close to the BT.601
     * luma of the reference boxes. The source is noise, the worst case for JPEG, hence the
     * loose bound: mean |diff| < 6 at quality 90 (3.0 measured). */
    struct iiif_plan gplan = plan;
    gplan.quality = IIIF_QUALITY_GRAY;
    gplan.format = IIIF_FORMAT_JPG;
    CHECK_MSG(codec_render(path, &info, &gplan, &opts, &out, &out_len, &err) == 0, "render: %s",
              err.msg);
    struct codec_image *back = out ? djpeg(out, out_len) : NULL;
    CHECK(back && back->w == 20 && back->h == 25 && back->channels == 1);
    if (back && back->w == 20 && back->h == 25 && back->channels == 1) {
        double sum = 0;
        for (uint32_t by = 0; by < 20; by++)
            for (uint32_t bx = 0; bx < 25; bx++) {
                unsigned rgb[3];
                for (int c = 0; c < 3; c++) {
                    unsigned s = 0;
                    for (int k = 0; k < 4; k++)
                        s += px(src, 10 + 2 * bx + (k & 1), 10 + 2 * by + (k >> 1))[c];
                    rgb[c] = (s + 2) / 4;
                }
                int y = (int)((299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2] + 500) / 1000);
                sum += abs(*px(back, 19 - by, bx) - y);
            }
        CHECK_MSG(sum / 500 < 6.0, "gray render mean abs diff %.2f", sum / 500);
    }
    codec_image_free(back);
    free(out);

    codec_info_clear(&info);
    unlink(path);
    codec_image_free(src);
}

int main(void)
{
    const char *base = getenv("VELLUM_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    if (mkdir(base, 0700) < 0 && errno != EEXIST) {
        perror(base);
        return 2;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/xform-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        perror(tmpdir);
        return 2;
    }

    test_resize_constant();
    test_resize_area_average();
    test_resize_step_edge();
    test_resize_upscale_and_mixed();
    test_resize_alpha();
    test_resize_identity();
    test_mirror();
    test_rotate_quarters();
    test_rotate_arbitrary();
    test_gray_bitonal();
    test_encode_jpeg();
    test_encode_png();
    test_render();

    rmdir(tmpdir);
    return CHECK_DONE();
}
