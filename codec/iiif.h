/* iiif.h: IIIF Image API requests (3.0 and 2.1) as pure functions.
 * parse: strings from the URL -> struct iiif_params (syntax only);
 * plan: params + image size + limits -> struct iiif_plan (pixels: region, output size);
 * canonical: plan -> the canonical "region/size/rotation/quality.format" path.
 * Nothing here touches files, sockets or globals. Spec rules restated in ../shared/iiif/SPECS.md A and B. */
#ifndef VELLUM_IIIF_H
#define VELLUM_IIIF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "verr.h"

enum iiif_version { IIIF_V2 = 2, IIIF_V3 = 3 };

enum iiif_region_kind { IIIF_REGION_FULL, IIIF_REGION_SQUARE, IIIF_REGION_PX, IIIF_REGION_PCT };

enum iiif_size_kind {
    IIIF_SIZE_MAX,      /* "max" (3.0 and 2.1) */
    IIIF_SIZE_FULL,     /* "full" (2.1 only; rejected on 3.0) */
    IIIF_SIZE_W,        /* "w," */
    IIIF_SIZE_H,        /* ",h" */
    IIIF_SIZE_PCT,      /* "pct:n" */
    IIIF_SIZE_WH,       /* "w,h" */
    IIIF_SIZE_CONFINED, /* "!w,h" */
};

enum iiif_quality { IIIF_QUALITY_DEFAULT, IIIF_QUALITY_COLOR, IIIF_QUALITY_GRAY, IIIF_QUALITY_BITONAL };

enum iiif_format { IIIF_FORMAT_JPG, IIIF_FORMAT_PNG };

struct iiif_params {
    enum iiif_version version;
    enum iiif_region_kind region_kind;
    double region[4]; /* x, y, w, h: integers for PX, percentages for PCT */
    enum iiif_size_kind size_kind;
    bool upscale;     /* '^' prefix (3.0 only) */
    uint32_t size_w;  /* for W, WH, CONFINED */
    uint32_t size_h;  /* for H, WH, CONFINED */
    double size_pct;  /* for PCT */
    bool mirror;      /* '!' prefix on rotation */
    double rotation;  /* degrees clockwise, 0 <= rotation <= 360 */
    enum iiif_quality quality;
    enum iiif_format format;
};

/* Server limits on output size; 0 means "no limit". maxHeight without maxWidth is not allowed
 * by the spec; when only max_width is set, max_height defaults to it (A9). */
struct iiif_limits {
    uint32_t max_width;
    uint32_t max_height;
    uint64_t max_area;
};

/* A planned request, in full-resolution source pixels. */
struct iiif_plan {
    uint32_t x, y, w, h;     /* region, clipped to the image, w and h >= 1 */
    uint32_t out_w, out_h;   /* scaled size (before rotation), >= 1, within limits */
    bool mirror;
    double rotation;         /* 0 <= rotation < 360 (360 is normalised to 0) */
    enum iiif_quality quality;
    enum iiif_format format;
};

/* Parse the four parameter segments (already percent-decoded). On error returns -1 with
 * err->status 400 and a message naming the parameter and value. */
int iiif_parse(enum iiif_version version, const char *region, const char *size,
               const char *rotation, const char *quality_format, struct iiif_params *out,
               struct verr *err);

/* Plan a parsed request against an image of img_w x img_h. Errors: 400 for a region wholly
 * outside the image or of zero size, a size above the region without '^' (3.0), a zero-size
 * result, or a result above the limits. */
int iiif_plan_request(const struct iiif_params *params, uint32_t img_w, uint32_t img_h,
                      const struct iiif_limits *limits, struct iiif_plan *out, struct verr *err);

/* Largest size <= (w, h) with the aspect ratio kept that respects limits (A9's algorithm);
 * used for "max" and for info.json sizes. */
void iiif_fit_limits(uint32_t w, uint32_t h, const struct iiif_limits *limits, uint32_t *out_w,
                     uint32_t *out_h);

/* Write the canonical "region/size/rotation/quality.format" for a plan (3.0 A14 or 2.1 rules).
 * Returns the length written, or -1 if buf is too small. */
int iiif_canonical(const struct iiif_plan *plan, enum iiif_version version, uint32_t img_w,
                   uint32_t img_h, const struct iiif_limits *limits, char *buf, size_t len);

/* Percent-decode src (len bytes) into a new NUL-terminated string. Rejects malformed escapes
 * and decoded NUL bytes (returns NULL with err 400). The caller frees the result. */
char *iiif_percent_decode(const char *src, size_t len, struct verr *err);

/* What a path under an Image API prefix asks for. */
enum iiif_target { IIIF_TARGET_BASE, IIIF_TARGET_INFO, IIIF_TARGET_IMAGE };

struct iiif_path {
    enum iiif_target target;
    char *identifier;        /* percent-decoded once; owned */
    char *id_raw;            /* the identifier exactly as in the URI (for ids in responses); owned */
    char *params[4];         /* region, size, rotation, quality.format, decoded; owned; IMAGE only */
};

/* Split the raw path after the prefix ("{id}/info.json", "{id}", or
 * "{id}/{region}/{size}/{rotation}/{quality}.{format}"), parsing from the right so identifiers
 * may contain encoded or literal slashes. 400 on an empty identifier or bad escapes. */
int iiif_split_path(const char *raw, struct iiif_path *out, struct verr *err);
void iiif_path_clear(struct iiif_path *p);

const char *iiif_quality_name(enum iiif_quality q);
const char *iiif_format_ext(enum iiif_format f);
const char *iiif_format_mime(enum iiif_format f);

#endif
