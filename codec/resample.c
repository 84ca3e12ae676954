/* resample.c: codec_resize, the "size" step of the pipeline (IIIF 3.0 §4.2).
 * Separable, driven by a weight table per axis built once: for each output row, a vertical pass
 * into a 16-bit intermediate row, then a horizontal pass from it. Shrinking an axis is exact
 * area-averaging (every output pixel is the coverage-weighted mean of the source pixels under
 * it); enlarging is pixel-centre aligned bilinear. Images with alpha are filtered premultiplied
 * so that the colour of transparent pixels never bleeds into visible ones. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* Weights are fixed point with 14 fraction bits: 255 * 255 (a premultiplied sample) times 2^14
 * still fits a uint32 accumulator, and 1/16384 is far below what 8-bit output can show. */
#define WBITS 14
#define WONE (1u << WBITS)

/* Same cap as codec_image_new(): anything above it is a request we refuse, not an OOM. */
#define MAX_BYTES ((uint64_t)1 << 31)

struct span {
    uint32_t start; /* first source index */
    uint32_t n;     /* number of taps */
    uint32_t off;   /* index of the first weight in axis.w */
};

struct axis {
    struct span *spans; /* one per output index */
    uint16_t *w;
};

static void axis_free(struct axis *ax)
{
    free(ax->spans);
    free(ax->w);
}

/* Build the weight table for resampling src samples to dst samples along one axis.
 * Shrinking: output o covers source interval [o*src/dst, (o+1)*src/dst); working in units of
 * 1/dst keeps every overlap an exact integer. Weights are rounded cumulatively so that each
 * span sums to exactly WONE (a constant image stays constant).
 * Enlarging (and identity): output centre o+0.5 maps to source position (o+0.5)*src/dst - 0.5,
 * clamped to the edge pixels; two taps with the fractional part as weight. */
static int axis_build(struct axis *ax, uint32_t src, uint32_t dst, struct verr *err)
{
    /* At most ceil(src/dst) + 1 taps per output when shrinking, so <= src + 2*dst weights;
     * span offsets are 32-bit. */
    const uint64_t max_taps = src > dst ? (uint64_t)src / dst + 2 : 2;
    if (max_taps * dst > UINT32_MAX)
        return verr_set(err, 413, "resize: %u -> %u needs too many weights", src, dst);
    ax->spans = malloc((size_t)dst * sizeof *ax->spans);
    ax->w = malloc((size_t)(max_taps * dst) * sizeof *ax->w);
    if (!ax->spans || !ax->w)
        return verr_set(err, 500, "resize: out of memory for %u -> %u weights", src, dst);

    uint32_t off = 0;
    for (uint32_t o = 0; o < dst; o++) {
        struct span *sp = &ax->spans[o];
        sp->off = off;
        if (src > dst) {
            uint64_t lo = (uint64_t)o * src, hi = (uint64_t)(o + 1) * src;
            uint64_t i0 = lo / dst, i1 = (hi + dst - 1) / dst;
            uint64_t cum = 0, prev = 0;
            sp->start = (uint32_t)i0;
            sp->n = (uint32_t)(i1 - i0);
            for (uint64_t i = i0; i < i1; i++) {
                uint64_t a = i * dst > lo ? i * dst : lo;
                uint64_t b = (i + 1) * dst < hi ? (i + 1) * dst : hi;
                cum += b - a;
                uint64_t acc = (cum * WONE + src / 2) / src;
                ax->w[off++] = (uint16_t)(acc - prev);
                prev = acc;
            }
        } else {
            /* Position in units of 1/(2*dst): (2o+1)*src - dst. */
            int64_t num = (int64_t)(2 * (uint64_t)o + 1) * src - dst;
            int64_t den = 2 * (int64_t)dst;
            uint64_t i0 = 0, w1 = 0;
            if (num > 0) {
                i0 = (uint64_t)(num / den);
                w1 = ((uint64_t)(num % den) * WONE + (uint64_t)den / 2) / (uint64_t)den;
            }
            if (i0 >= (uint64_t)src - 1) {
                i0 = src - 1;
                w1 = 0;
            }
            sp->start = (uint32_t)i0;
            if (w1 == 0) {
                sp->n = 1;
                ax->w[off++] = WONE;
            } else {
                sp->n = 2;
                ax->w[off++] = (uint16_t)(WONE - w1);
                ax->w[off++] = (uint16_t)w1;
            }
        }
    }
    return 0;
}

/* acc[i] += wk * row[i]. Written as fixed 16-element blocks because GCC's -O2 vectoriser (the
 * "very cheap" model) only takes loops whose trip count needs no scalar epilogue; this form
 * halves the time of a 1024x1024 -> 256x256 RGB resize at -O2 on x86-64. */
static inline void mac_row(uint32_t *restrict acc, const unsigned char *restrict row, uint32_t wk,
                           size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t j = 0; j < 16; j++)
            acc[i + j] += wk * row[i + j];
    for (; i < n; i++)
        acc[i] += wk * row[i];
}

/* inter[i] = round(acc[i] / 64), same blocking. */
static inline void narrow_row(uint16_t *restrict inter, const uint32_t *restrict acc, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t j = 0; j < 16; j++)
            inter[i + j] = (uint16_t)((acc[i + j] + (1u << 5)) >> 6);
    for (; i < n; i++)
        inter[i] = (uint16_t)((acc[i] + (1u << 5)) >> 6);
}

/* Vertical step for one output row: accumulate the weighted source rows into acc (uint32,
 * one per sample of a source-width row), then round into the 16-bit intermediate row.
 * Without alpha the intermediate is value * 256 (8 fraction bits kept for the second pass).
 * With alpha (last channel) colour is premultiplied: stored as value * alpha (<= 65025),
 * alpha as alpha * 256. CH is a constant at each call site so the channel loops unroll. */
static inline void vrow(const struct codec_image *src, const struct span *sp, const uint16_t *w,
                        uint32_t *acc, uint16_t *inter, const size_t CH, const bool ALPHA)
{
    const size_t row_len = (size_t)src->w * CH;
    memset(acc, 0, row_len * sizeof *acc);
    for (uint32_t k = 0; k < sp->n; k++) {
        const unsigned char *row = src->px + (size_t)(sp->start + k) * row_len;
        const uint32_t wk = w[k];
        if (!ALPHA) {
            mac_row(acc, row, wk, row_len);
            continue;
        }
        for (size_t i = 0; i < row_len; i += CH) {
            const uint32_t a = row[i + CH - 1];
            for (size_t c = 0; c < CH - 1; c++)
                acc[i + c] += wk * (row[i + c] * a);
            acc[i + CH - 1] += wk * a;
        }
    }
    if (!ALPHA) {
        narrow_row(inter, acc, row_len);
        return;
    }
    for (size_t i = 0; i < row_len; i += CH) {
        for (size_t c = 0; c < CH - 1; c++)
            inter[i + c] = (uint16_t)((acc[i + c] + (1u << (WBITS - 1))) >> WBITS);
        inter[i + CH - 1] = (uint16_t)((acc[i + CH - 1] + (1u << 5)) >> 6);
    }
}

/* Horizontal step for one output row, from the intermediate row to 8 bits, unpremultiplying
 * when there is alpha. Accumulators: plain = value * 2^22; alpha = alpha * 2^22; premultiplied
 * colour = value * alpha * 2^14, so value = colour * 256 / alpha. */
static inline void hrow(const uint16_t *inter, const struct axis *ax, uint32_t dw,
                        unsigned char *out, const size_t CH, const bool ALPHA)
{
    for (uint32_t x = 0; x < dw; x++, out += CH) {
        const struct span *sp = &ax->spans[x];
        const uint16_t *w = ax->w + sp->off;
        const uint16_t *p = inter + (size_t)sp->start * CH;
        uint32_t acc[4] = {0, 0, 0, 0};
        for (uint32_t k = 0; k < sp->n; k++, p += CH)
            for (size_t c = 0; c < CH; c++)
                acc[c] += w[k] * (uint32_t)p[c];
        if (!ALPHA) {
            for (size_t c = 0; c < CH; c++)
                out[c] = (unsigned char)((acc[c] + (1u << 21)) >> 22);
            continue;
        }
        const uint64_t a = acc[CH - 1];
        for (size_t c = 0; c < CH - 1; c++) {
            const uint64_t v = a ? ((uint64_t)acc[c] * 256 + a / 2) / a : 0;
            out[c] = (unsigned char)(v > 255 ? 255 : v);
        }
        out[CH - 1] = (unsigned char)((a + (1u << 21)) >> 22);
    }
}

/* The vertical step runs first, one output row at a time, so the intermediate is a single
 * source-width row (no full-size buffer) and the bulk of the work - the first pass over every
 * source pixel - is the vectorised contiguous loop. */
static inline void resize_rows(const struct codec_image *src, struct codec_image *dst,
                               const struct axis *ax, const struct axis *ay, uint32_t *acc,
                               uint16_t *inter, const size_t CH, const bool ALPHA)
{
    for (uint32_t y = 0; y < dst->h; y++) {
        const struct span *sp = &ay->spans[y];
        vrow(src, sp, ay->w + sp->off, acc, inter, CH, ALPHA);
        hrow(inter, ax, dst->w, dst->px + (size_t)y * dst->w * CH, CH, ALPHA);
    }
}

struct codec_image *codec_resize(const struct codec_image *src, uint32_t w, uint32_t h,
                                 struct verr *err)
{
    struct codec_image *dst = NULL;
    struct axis ax = {0}, ay = {0};
    uint16_t *inter = NULL;
    uint32_t *acc = NULL;

    if (!src || !src->px || src->w == 0 || src->h == 0 || w == 0 || h == 0 || src->channels < 1 ||
        src->channels > 4) {
        verr_set(err, 500, "resize: invalid image or size %ux%u", w, h);
        return NULL;
    }
    const int ch = src->channels;
    const uint64_t out_bytes = (uint64_t)w * h * (uint64_t)ch;
    if (out_bytes > MAX_BYTES) {
        verr_set(err, 413, "resize: %ux%u output is too large", w, h);
        return NULL;
    }

    dst = codec_image_new(w, h, ch);
    if (!dst)
        goto oom;
    if (w == src->w && h == src->h) {
        memcpy(dst->px, src->px, (size_t)out_bytes);
        return dst;
    }

    const size_t row_len = (size_t)src->w * (size_t)ch;
    inter = malloc(row_len * sizeof *inter);
    acc = malloc(row_len * sizeof *acc);
    if (!inter || !acc)
        goto oom;
    if (axis_build(&ax, src->w, w, err) < 0 || axis_build(&ay, src->h, h, err) < 0)
        goto fail;

    switch (ch) {
    case 1:
        resize_rows(src, dst, &ax, &ay, acc, inter, 1, false);
        break;
    case 2:
        resize_rows(src, dst, &ax, &ay, acc, inter, 2, true);
        break;
    case 3:
        resize_rows(src, dst, &ax, &ay, acc, inter, 3, false);
        break;
    default:
        resize_rows(src, dst, &ax, &ay, acc, inter, 4, true);
        break;
    }

    free(inter);
    free(acc);
    axis_free(&ax);
    axis_free(&ay);
    return dst;

oom:
    verr_set(err, 500, "resize: out of memory (%ux%u -> %ux%u)", src->w, src->h, w, h);
fail:
    codec_image_free(dst);
    free(inter);
    free(acc);
    axis_free(&ax);
    axis_free(&ay);
    return NULL;
}
