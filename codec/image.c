/* image.c: the 8-bit interleaved pixel buffer every decoder fills and every transform and
 * encoder reads (struct codec_image, see codec.h). */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

/* 2^31 bytes: a decoded buffer above this is a request to refuse, not a malloc to attempt. */
#define CODEC_IMAGE_MAX_BYTES ((uint64_t)1 << 31)

struct codec_image *codec_image_new(uint32_t w, uint32_t h, int channels)
{
    struct codec_image *img;
    uint64_t bytes;

    if (w == 0 || h == 0 || channels < 1 || channels > 4)
        return NULL;
    /* w and h are below 2^32 and channels below 8, so this cannot overflow 64 bits. */
    bytes = (uint64_t)w * h * (uint64_t)channels;
    if (bytes > CODEC_IMAGE_MAX_BYTES || bytes > SIZE_MAX)
        return NULL;
    img = malloc(sizeof *img);
    if (!img)
        return NULL;
    img->px = malloc((size_t)bytes);
    if (!img->px) {
        free(img);
        return NULL;
    }
    img->w = w;
    img->h = h;
    img->channels = channels;
    return img;
}

void codec_image_free(struct codec_image *img)
{
    if (!img)
        return;
    free(img->px);
    free(img);
}

void codec_image_paste(struct codec_image *dst, const struct codec_image *src, uint32_t x,
                       uint32_t y)
{
    size_t ch = (size_t)dst->channels, row = (size_t)src->w * ch;
    for (uint32_t j = 0; j < src->h; j++)
        memcpy(dst->px + ((size_t)(y + j) * dst->w + x) * ch, src->px + (size_t)j * row, row);
}
