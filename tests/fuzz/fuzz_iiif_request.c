/* fuzz_iiif_request: the Image API request parser and planner (codec/iiif.h), 3.0 and 2.1.
 * The input is four parameters separated by NUL or '/' (region/size/rotation/quality.format);
 * each is parsed, planned against a table of image sizes and server limits, and every plan is
 * checked against the contract in iiif.h, then written in canonical form, which must parse and
 * plan back to the same plan. Any broken invariant abort()s, so libFuzzer keeps the input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iiif.h"

static const struct {
    uint32_t w, h;
} sizes[] = {{1, 1}, {7, 5}, {640, 480}, {5000, 3}, {40000, 30000}};

/* No limits; maxWidth only (maxHeight defaults to it, A9); all three; maxArea only; the
 * defaults of fcgi/config.c. */
static const struct iiif_limits limits[] = {
    {0, 0, 0}, {1000, 0, 0}, {400, 300, 100000}, {0, 0, 5000}, {10000, 10000, 50000000},
};

static void fail(const char *what, const char *canon)
{
    fprintf(stderr, "fuzz_iiif_request: invariant broken: %s (canonical \"%s\")\n", what,
            canon ? canon : "");
    abort();
}

static void check_plan(const struct iiif_params *p, const struct iiif_plan *pl, uint32_t img_w,
                       uint32_t img_h, const struct iiif_limits *lim)
{
    uint64_t lim_w = lim->max_width, lim_h = lim->max_height ? lim->max_height : lim->max_width;

    if (pl->w < 1 || pl->h < 1 || (uint64_t)pl->x + pl->w > img_w ||
        (uint64_t)pl->y + pl->h > img_h)
        fail("region not inside the image", NULL);
    if (pl->out_w < 1 || pl->out_h < 1)
        fail("output size below 1", NULL);
    if ((lim_w && pl->out_w > lim_w) || (lim_h && pl->out_h > lim_h) ||
        (lim->max_area && (uint64_t)pl->out_w * pl->out_h > lim->max_area))
        fail("output size above the limits", NULL);
    if (!(pl->rotation >= 0 && pl->rotation < 360))
        fail("rotation outside [0, 360)", NULL);
    if (pl->mirror != p->mirror || pl->quality != p->quality || pl->format != p->format)
        fail("mirror, quality or format not carried over", NULL);
    /* 3.0 §4.2: without '^' the result never exceeds the region. */
    if (p->version == IIIF_V3 && !p->upscale && (pl->out_w > pl->w || pl->out_h > pl->h))
        fail("3.0 size above the region without '^'", NULL);
    /* Sizes the client gave exactly are the sizes it gets (or a 400). */
    if ((p->size_kind == IIIF_SIZE_WH && (pl->out_w != p->size_w || pl->out_h != p->size_h)) ||
        (p->size_kind == IIIF_SIZE_W && pl->out_w != p->size_w) ||
        (p->size_kind == IIIF_SIZE_H && pl->out_h != p->size_h) ||
        (p->size_kind == IIIF_SIZE_CONFINED && (pl->out_w > p->size_w || pl->out_h > p->size_h)))
        fail("output size differs from the size asked for", NULL);
}

/* Split "a/b/c/d.e" (in place) into its four parts; NULL when it is not four parts. */
static int split4(char *s, char *part[4])
{
    part[0] = s;
    for (int i = 1; i < 4; i++) {
        char *slash = strchr(part[i - 1], '/');
        if (!slash)
            return -1;
        *slash = '\0';
        part[i] = slash + 1;
    }
    return strchr(part[3], '/') ? -1 : 0;
}

static double rotation_distance(double a, double b)
{
    double d = fabs(a - b);
    return d > 180 ? 360 - d : d;
}

static void check_canonical(enum iiif_version v, const struct iiif_plan *pl, uint32_t img_w,
                            uint32_t img_h, const struct iiif_limits *lim)
{
    char canon[512], copy[512], again[512], *part[4];
    struct iiif_params p2;
    struct iiif_plan pl2;
    struct verr err = {0, ""};

    int n = iiif_canonical(pl, v, img_w, img_h, lim, canon, sizeof canon);
    if (n <= 0 || (size_t)n != strlen(canon))
        fail("no canonical form for a planned request", NULL);
    memcpy(copy, canon, (size_t)n + 1);
    if (split4(copy, part) < 0)
        fail("canonical form is not region/size/rotation/quality.format", canon);
    if (iiif_parse(v, part[0], part[1], part[2], part[3], &p2, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        fail("canonical form does not parse", canon);
    }
    if (iiif_plan_request(&p2, img_w, img_h, lim, &pl2, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        fail("canonical form does not plan", canon);
    }
    /* The rotation is written with 10 decimals, so it may move by up to 5e-11. */
    if (pl2.x != pl->x || pl2.y != pl->y || pl2.w != pl->w || pl2.h != pl->h ||
        pl2.out_w != pl->out_w || pl2.out_h != pl->out_h || pl2.mirror != pl->mirror ||
        pl2.quality != pl->quality || pl2.format != pl->format ||
        rotation_distance(pl2.rotation, pl->rotation) > 1e-9)
        fail("canonical form plans to a different request", canon);
    if (iiif_canonical(&pl2, v, img_w, img_h, lim, again, sizeof again) != n ||
        strcmp(again, canon) != 0)
        fail("canonical form is not a fixed point", canon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    char *part[4] = {"", "", "", ""};
    int nparts = 0;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* The first three NUL or '/' end a parameter; the rest is quality.format. */
    part[nparts++] = buf;
    for (size_t i = 0; i < size && nparts < 4; i++) {
        if (buf[i] == '\0' || buf[i] == '/') {
            buf[i] = '\0';
            part[nparts++] = buf + i + 1;
        }
    }

    for (int vi = 0; vi < 2; vi++) {
        enum iiif_version v = vi ? IIIF_V2 : IIIF_V3;
        struct iiif_params p;
        struct verr err = {0, ""};
        if (iiif_parse(v, part[0], part[1], part[2], part[3], &p, &err) < 0) {
            if (err.status != 400)
                fail("parse error without status 400", NULL);
            continue;
        }
        if (p.version != v)
            fail("parsed version differs", NULL);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
                struct iiif_plan pl;
                err.status = 0;
                if (iiif_plan_request(&p, sizes[si].w, sizes[si].h, &limits[li], &pl, &err) < 0) {
                    if (err.status < 400 || err.status > 599)
                        fail("plan error without a 4xx/5xx status", NULL);
                    continue;
                }
                check_plan(&p, &pl, sizes[si].w, sizes[si].h, &limits[li]);
                check_canonical(v, &pl, sizes[si].w, sizes[si].h, &limits[li]);
            }
        }
    }
    free(buf);
    return 0;
}
