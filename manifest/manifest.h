/* manifest.h: IIIF JSON-LD documents (info.json, manifests, collections) from plain structs.
 * No HTTP, no database: callers pass what the document needs and get JSON text back. */
#ifndef VELLUM_MANIFEST_H
#define VELLUM_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "iiif.h"
#include "verr.h"

/* What an image information document says about one image service. */
struct manifest_image_info {
    const char *id;           /* base URI: scheme://host/prefix/identifier (as requested) */
    uint32_t width, height;
    bool is_color;            /* false for grey sources: "color" is then not advertised */
    uint32_t tile_w, tile_h;  /* tile size advertised */
    int scale_factors;        /* advertised factors are 1, 2, 4, ... 2^(scale_factors-1) */
    struct iiif_limits limits;
    bool upscaling;           /* advertise sizeUpscaling (3.0) / sizeAboveFull (2.1) */
};

/* The tiles a viewer should ask for: the source's own tile grid when it is tiled with tiles of
 * 256..1024 px (each tile is one decode), else 512; scale factors down to the level where the
 * whole image fits in one tile, and at least every native resolution level. */
void manifest_choose_tiling(const struct codec_info *src, uint32_t *tile_w, uint32_t *tile_h,
                            int *scale_factors);

/* info.json text for Image API 3.0 or 2.1 (malloc'd; the caller frees it), or NULL with err. */
char *manifest_info_json(enum iiif_version version, const struct manifest_image_info *info,
                         struct verr *err);

#endif
