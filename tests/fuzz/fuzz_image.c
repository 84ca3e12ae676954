/* fuzz_image: the source readers behind codec_probe() and codec_decode(), built three times
 * (tests/fuzz/CMakeLists.txt): fuzz_jp2 (JP2 and raw J2K codestreams), fuzz_jpeg and fuzz_png,
 * each keeping only inputs with its format's magic so it stays on its own reader.
 * The codec reads by path, so the input goes into a memfd named /proc/self/fd/N. Sizes are
 * capped (probe 64 Mpx, decode 16 Mpx) so that a header declaring a huge image is refused
 * rather than run out of memory; the decodes are the whole image at about 1/16 (a reduced
 * level, as for a thumbnail) and a 64 x 64 region at full resolution, as for a tile. A tiled
 * JPEG 2000's thumbnail is decoded with one thread and with three (in parts, jp2.c), and the
 * two must agree wherever both succeed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec.h"

#define PROBE_MAX_PIXELS ((uint64_t)64 << 20)
#define DECODE_MAX_PIXELS ((uint64_t)16 << 20)

#if defined(FUZZ_FORMAT_JP2)
#define FUZZ_NAME "fuzz_jp2"
static const unsigned char magic[][12] = {
    {0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a},
    {0xff, 0x4f, 0xff, 0x51},
};
static const size_t magic_len[] = {12, 4};
#elif defined(FUZZ_FORMAT_JPEG)
#define FUZZ_NAME "fuzz_jpeg"
static const unsigned char magic[][12] = {{0xff, 0xd8, 0xff}};
static const size_t magic_len[] = {3};
#elif defined(FUZZ_FORMAT_PNG)
#define FUZZ_NAME "fuzz_png"
static const unsigned char magic[][12] = {{0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a}};
static const size_t magic_len[] = {8};
#else
#error "define FUZZ_FORMAT_JP2, FUZZ_FORMAT_JPEG or FUZZ_FORMAT_PNG"
#endif

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fd = memfd_create(FUZZ_NAME, MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

static int has_magic(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof magic_len / sizeof magic_len[0]; i++) {
        if (size >= magic_len[i] && memcmp(data, magic[i], magic_len[i]) == 0)
            return 1;
    }
    return 0;
}

static void set_input(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        perror("writing the memfd");
        abort();
    }
}

static void fail(const char *what, const struct codec_info *info, const struct codec_decode_req *r,
                 const struct codec_image *img)
{
    fprintf(stderr,
            FUZZ_NAME ": %s: image %ux%u channels %d levels %d; region %u,%u,%u,%u want %ux%u;"
                      " got %ux%u channels %d\n",
            what, info->width, info->height, info->channels, info->levels, r->x, r->y, r->w, r->h,
            r->want_w, r->want_h, img ? img->w : 0, img ? img->h : 0, img ? img->channels : 0);
    abort();
}

/* Decode and check the result's shape; the image when the caller wants it (keep), else freed. */
static struct codec_image *decode_with(const struct codec_info *info, uint32_t x, uint32_t y,
                                       uint32_t w, uint32_t h, uint32_t want_w, uint32_t want_h,
                                       int threads, int keep)
{
    struct codec_decode_req req = {.x = x, .y = y, .w = w, .h = h, .want_w = want_w,
                                   .want_h = want_h, .max_pixels = DECODE_MAX_PIXELS,
                                   .threads = threads};
    struct codec_image *img = NULL;
    struct verr err = {0, ""};

    if (codec_decode(path, info, &req, &img, &err) < 0) {
        if (img)
            fail("decode failed but returned an image", info, &req, img);
        if (err.status < 400 || err.status > 599)
            fail("decode error without a 4xx/5xx status", info, &req, NULL);
        return NULL;
    }
    /* codec.h: the region at the coarsest reduction still >= want, never above the region. */
    if (!img || !img->px || img->channels != info->channels || img->w < want_w || img->h < want_h ||
        img->w > w || img->h > h)
        fail("decoded image unlike the request", info, &req, img);
    /* Touch every byte, so ASan sees a short buffer and MSan-style garbage shows as UB. */
    volatile unsigned sum = 0;
    for (size_t i = 0, n = (size_t)img->w * img->h * (size_t)img->channels; i < n; i++)
        sum += img->px[i];
    (void)sum;
    if (keep)
        return img;
    codec_image_free(img);
    return NULL;
}

static void decode(const struct codec_info *info, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                   uint32_t want_w, uint32_t want_h)
{
    (void)decode_with(info, x, y, w, h, want_w, want_h, 1, 0);
}

#if defined(FUZZ_FORMAT_JP2)
/* A tiled source's region over several tiles decodes in parts on threads of their own when
 * given threads (jp2.c): where both ways succeed, the pixels must be the same. */
static void decode_parts(const struct codec_info *info, uint32_t w, uint32_t h, uint32_t want_w,
                         uint32_t want_h)
{
    struct codec_image *one = decode_with(info, 0, 0, w, h, want_w, want_h, 1, 1);
    struct codec_image *parts = decode_with(info, 0, 0, w, h, want_w, want_h, 3, 1);
    if (one && parts &&
        (one->w != parts->w || one->h != parts->h ||
         memcmp(one->px, parts->px, (size_t)one->w * one->h * (size_t)one->channels) != 0)) {
        const struct codec_decode_req req = {.w = w, .h = h, .want_w = want_w, .want_h = want_h};
        fail("decoded in parts, unlike in one piece", info, &req, parts);
    }
    codec_image_free(one);
    codec_image_free(parts);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct codec_info info;
    struct verr err = {0, ""};

    if (!has_magic(data, size))
        return -1; /* not this target's format: keep it out of the corpus */
    set_input(data, size);
    if (codec_probe(path, PROBE_MAX_PIXELS, &info, &err) < 0) {
        if (err.status < 400 || err.status > 599) {
            fprintf(stderr, FUZZ_NAME ": probe error status %d: %s\n", err.status, err.msg);
            abort();
        }
        return 0;
    }
    if (info.width < 1 || info.height < 1 ||
        (uint64_t)info.width * info.height > PROBE_MAX_PIXELS || info.channels < 1 ||
        info.channels > 4 || info.levels < 0 || info.orientation < 1 || info.orientation > 8 ||
        (!info.icc) != (info.icc_len == 0)) {
        fprintf(stderr, FUZZ_NAME ": probe returned %ux%u channels %d levels %d orientation %d\n",
                info.width, info.height, info.channels, info.levels, info.orientation);
        abort();
    }

    uint32_t w = info.width, h = info.height;
#if defined(FUZZ_FORMAT_JP2)
    if (info.tile_w)
        decode_parts(&info, w, h, (w + 15) / 16, (h + 15) / 16);
    else
#endif
        decode(&info, 0, 0, w, h, (w + 15) / 16, (h + 15) / 16);
    uint32_t x = w / 3, y = h / 3;
    uint32_t rw = w - x < 64 ? w - x : 64, rh = h - y < 64 ? h - y : 64;
    decode(&info, x, y, rw, rh, rw, rh);
    codec_info_clear(&info);
    return 0;
}
