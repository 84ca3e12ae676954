/* info_json.c: the Image API information document, 3.0 (ImageService3) and 2.1.
 * Rules: ../shared/iiif/SPECS.md A11 (3.0) and B (2.1). */
#include "manifest.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

void manifest_choose_tiling(const struct codec_info *src, uint32_t *tile_w, uint32_t *tile_h,
                            int *scale_factors)
{
    uint32_t tw = 512, th = 512;
    if (src->tile_w >= 256 && src->tile_w <= 1024 && src->tile_h >= 256 && src->tile_h <= 1024) {
        tw = src->tile_w;
        th = src->tile_h;
    }
    /* Enough factors that the smallest level fits in one tile, so a viewer's first view is
     * one request. */
    int n = 1;
    uint64_t w = src->width, h = src->height;
    while ((w > tw || h > th) && n < 20) {
        w = (w + 1) / 2;
        h = (h + 1) / 2;
        n++;
    }
    if (src->levels + 1 > n)
        n = src->levels + 1;
    if (n > 20)
        n = 20;
    *tile_w = tw;
    *tile_h = th;
    *scale_factors = n;
}

static bool add_number(cJSON *o, const char *key, double v)
{
    return cJSON_AddNumberToObject(o, key, v) != NULL;
}

static bool add_strings(cJSON *o, const char *key, const char *const *items, int n)
{
    cJSON *a = cJSON_CreateStringArray(items, n);
    if (!a)
        return false;
    cJSON_AddItemToObject(o, key, a);
    return true;
}

/* sizes: ceil(W/sf) x ceil(H/sf) for every advertised factor (what OpenSeadragon computes and
 * what JPEG 2000 reductions produce, SPECS G7), smallest first, within the limits. */
static bool add_sizes(cJSON *doc, const struct manifest_image_info *in, enum iiif_version v)
{
    cJSON *sizes = cJSON_AddArrayToObject(doc, "sizes");
    if (!sizes)
        return false;
    for (int i = in->scale_factors - 1; i >= 0; i--) {
        uint64_t sf = 1ull << i;
        uint32_t w = (uint32_t)((in->width + sf - 1) / sf), h = (uint32_t)((in->height + sf - 1) / sf);
        uint32_t fw, fh;
        iiif_fit_limits(w, h, &in->limits, &fw, &fh);
        if (fw != w || fh != h)
            continue;
        cJSON *s = cJSON_CreateObject();
        if (!s)
            return false;
        cJSON_AddItemToArray(sizes, s);
        if (v == IIIF_V3 && !cJSON_AddStringToObject(s, "type", "Size"))
            return false;
        if (!add_number(s, "width", w) || !add_number(s, "height", h))
            return false;
    }
    return true;
}

static bool add_tiles(cJSON *doc, const struct manifest_image_info *in, enum iiif_version v)
{
    cJSON *tiles = cJSON_AddArrayToObject(doc, "tiles");
    cJSON *t = cJSON_CreateObject();
    if (!tiles || !t) {
        cJSON_Delete(t);
        return false;
    }
    cJSON_AddItemToArray(tiles, t);
    if (v == IIIF_V3 && !cJSON_AddStringToObject(t, "type", "Tile"))
        return false;
    if (!add_number(t, "width", in->tile_w) || !add_number(t, "height", in->tile_h))
        return false;
    cJSON *sf = cJSON_AddArrayToObject(t, "scaleFactors");
    if (!sf)
        return false;
    for (int i = 0; i < in->scale_factors; i++) {
        cJSON *n = cJSON_CreateNumber((double)(1u << i));
        if (!n)
            return false;
        cJSON_AddItemToArray(sf, n);
    }
    return true;
}

static bool add_limits(cJSON *o, const struct iiif_limits *l)
{
    /* maxHeight is only meaningful (and only allowed) with maxWidth. */
    if (l->max_width && !add_number(o, "maxWidth", l->max_width))
        return false;
    if (l->max_width && l->max_height && !add_number(o, "maxHeight", l->max_height))
        return false;
    if (l->max_area && !add_number(o, "maxArea", (double)l->max_area))
        return false;
    return true;
}

static cJSON *info3(const struct manifest_image_info *in)
{
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return NULL;
    bool ok = cJSON_AddStringToObject(d, "@context", "http://iiif.io/api/image/3/context.json") &&
              cJSON_AddStringToObject(d, "id", in->id) &&
              cJSON_AddStringToObject(d, "type", "ImageService3") &&
              cJSON_AddStringToObject(d, "protocol", "http://iiif.io/api/image") &&
              cJSON_AddStringToObject(d, "profile", "level2") &&
              add_number(d, "width", in->width) && add_number(d, "height", in->height) &&
              add_limits(d, &in->limits) && add_sizes(d, in, IIIF_V3) && add_tiles(d, in, IIIF_V3);
    static const char *const formats[] = {"jpg", "png"};
    static const char *const color_q[] = {"color", "gray", "bitonal"};
    static const char *const grey_q[] = {"gray", "bitonal"};
    /* sizeUpscaling needs a published maxWidth or maxArea (A4). */
    static const char *const features[] = {"canonicalLinkHeader", "mirroring", "profileLinkHeader",
                                           "regionSquare", "rotationArbitrary", "sizeUpscaling"};
    int nfeat = in->upscaling && (in->limits.max_width || in->limits.max_area) ? 6 : 5;
    ok = ok && add_strings(d, "preferredFormats", formats, 1) &&
         (in->is_color ? add_strings(d, "extraQualities", color_q, 3)
                       : add_strings(d, "extraQualities", grey_q, 2)) &&
         add_strings(d, "extraFeatures", features, nfeat);
    if (!ok) {
        cJSON_Delete(d);
        return NULL;
    }
    return d;
}

static cJSON *info2(const struct manifest_image_info *in)
{
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return NULL;
    bool ok = cJSON_AddStringToObject(d, "@context", "http://iiif.io/api/image/2/context.json") &&
              cJSON_AddStringToObject(d, "@id", in->id) &&
              cJSON_AddStringToObject(d, "protocol", "http://iiif.io/api/image") &&
              add_number(d, "width", in->width) && add_number(d, "height", in->height) &&
              add_sizes(d, in, IIIF_V2) && add_tiles(d, in, IIIF_V2);
    cJSON *profile = ok ? cJSON_AddArrayToObject(d, "profile") : NULL;
    cJSON *level = cJSON_CreateString("http://iiif.io/api/image/2/level2.json");
    cJSON *extra = cJSON_CreateObject();
    if (!profile || !level || !extra) {
        cJSON_Delete(level);
        cJSON_Delete(extra);
        cJSON_Delete(d);
        return NULL;
    }
    cJSON_AddItemToArray(profile, level);
    cJSON_AddItemToArray(profile, extra);
    /* level2.json already has jpg, png and default, bitonal: list only what it lacks (B). */
    static const char *const color_q[] = {"default", "color", "gray", "bitonal"};
    static const char *const grey_q[] = {"default", "gray", "bitonal"};
    static const char *const supports[] = {"canonicalLinkHeader", "mirroring", "profileLinkHeader",
                                           "regionSquare", "rotationArbitrary", "sizeAboveFull"};
    ok = (in->is_color ? add_strings(extra, "qualities", color_q, 4)
                       : add_strings(extra, "qualities", grey_q, 3)) &&
         add_strings(extra, "supports", supports, in->upscaling ? 6 : 5) &&
         add_limits(extra, &in->limits);
    if (!ok) {
        cJSON_Delete(d);
        return NULL;
    }
    return d;
}

char *manifest_info_json(enum iiif_version version, const struct manifest_image_info *info,
                         struct verr *err)
{
    cJSON *d = version == IIIF_V3 ? info3(info) : info2(info);
    char *text = d ? cJSON_PrintUnformatted(d) : NULL;
    cJSON_Delete(d);
    if (!text)
        verr_set(err, 500, "out of memory building info.json");
    return text;
}
