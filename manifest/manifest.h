/* manifest.h: IIIF JSON-LD documents (info.json, manifests, collections) from plain structs.
 * No HTTP, no database: callers pass what the document needs and get JSON text back. */
#ifndef VELLUM_MANIFEST_H
#define VELLUM_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
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

/* ---- Presentation API (presentation.c) ------------------------------------------------------
 * Manifests, Canvases and Collections from db structs (SPECS.md C, D, G12). base is the server
 * root without a trailing slash (http_base_url); every id is absolute under it:
 *   {base}/presentation/3/{id}/manifest and .../canvas/{n} (n 1-based);
 *   {base}/presentation/3/collection (the top level) and .../collection/{name};
 *   the same under /presentation/2/ for 2.1; images at {base}/iiif/3/{id} and {base}/iiif/2/{id}.
 * Identifiers are percent-encoded in every URL (all but A-Z a-z 0-9 - . _ ~). Each function
 * returns malloc'd JSON text (the caller frees it), or NULL with err (404 for a canvas index
 * past the end, 500 for out of memory or an object the schema cannot describe). */
struct db_object;
struct db_collection;

char *manifest_presentation3(const struct db_object *obj, const char *base, struct verr *err);
/* One Canvas (0-based index) as a top-level document with @context, as served at its id. */
char *manifest_canvas3(const struct db_object *obj, size_t index, const char *base,
                       struct verr *err);
char *manifest_collection3(const struct db_collection *c, const char *base, struct verr *err);
char *manifest_presentation2(const struct db_object *obj, const char *base, struct verr *err);
char *manifest_collection2(const struct db_collection *c, const char *base, struct verr *err);

/* s with every byte outside the unreserved set as %XX (upper-case hex); malloc'd, NULL on OOM. */
char *manifest_percent_encode(const char *s);

/* What a text value may carry (SPECS C3 HTML rules). */
enum manifest_text {
    MANIFEST_TEXT_PLAIN, /* labels: tags, comments and script/style content are removed */
    MANIFEST_TEXT_HTML3, /* 3.0 summary, metadata values, requiredStatement value */
    MANIFEST_TEXT_HTML2, /* 2.1 description, attribution, metadata values */
};

/* The value as it goes into a document (malloc'd, NULL on OOM). PLAIN: markup removed, and a
 * result that still starts with '<' and ends with '>' gets a trailing space so clients never
 * take it for HTML. HTML3/HTML2: a value with markup in it is rebuilt from its allowed elements
 * only (3.0: a b br i img p small span sub sup; 2.1: a b br i img p span), with href
 * (http, https, mailto) on a and src (http, https) and alt on img as the only attributes;
 * script/style and similar elements are dropped with their content, everything else is
 * escaped or dropped, tags are balanced; 3.0 wraps the result in one <span> unless it already
 * is one element. A value with no markup is returned unchanged. */
char *manifest_text(const char *value, enum manifest_text kind);

#endif
