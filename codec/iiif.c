/* iiif.c: IIIF Image API 3.0 and 2.1 requests as pure functions (contract in iiif.h).
 * Rules are cited by section of the spec (3.0 §4.x, 2.1 §4.x) or of ../shared/iiif/SPECS.md
 * (A = 3.0, B = 2.1 deltas, G = pitfalls). No I/O, no globals, no printing: errors are
 * returned in struct verr. */
#include "iiif.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many bytes of a client value are quoted in an error message: values may be
 * kilobytes long and the message buffer is 256 bytes. */
#define SHOWN_MAX 48

/* Limits as the planner uses them: 64-bit, 0 = none, maxHeight already defaulted (A9). */
struct lim {
    uint64_t w, h, area;
};

/* ---- error messages ---------------------------------------------------------------------- */

/* Copy at most SHOWN_MAX bytes of s[0..n) into dst as printable ASCII: anything else (control
 * bytes, UTF-8, DEL) becomes '?', so the message is safe to put in a header or a log line.
 * dst must hold SHOWN_MAX + 4 bytes. */
static void show_value(char *dst, const char *s, size_t n)
{
    size_t keep = n > SHOWN_MAX ? SHOWN_MAX : n;
    size_t i;

    for (i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (keep < n) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

/* 400 naming the parameter and the (possibly partial) value it rejects. */
static int bad_part(struct verr *err, const char *param, const char *value, size_t n,
                    const char *why)
{
    char shown[SHOWN_MAX + 4];

    show_value(shown, value, n);
    return verr_set(err, 400, "invalid %s \"%s\": %s", param, shown, why);
}

static int bad_value(struct verr *err, const char *param, const char *value, const char *why)
{
    /* strnlen: never scan further than needed to know whether the value gets truncated. */
    return bad_part(err, param, value, strnlen(value, SHOWN_MAX + 1), why);
}

/* ---- numbers ----------------------------------------------------------------------------- */

enum num_rc { NUM_OK, NUM_SYNTAX, NUM_RANGE };

/* A pixel value (3.0 §4: "non-negative integers"): one or more ASCII digits and nothing else;
 * no sign, no '+', no spaces, no decimals. Accumulated in 64-bit and rejected above UINT32_MAX,
 * so "99999999999999999999" is a clean 400 rather than a wrapped value. */
static enum num_rc parse_uint32(const char *s, size_t n, uint32_t *out)
{
    uint64_t v = 0;

    if (n == 0)
        return NUM_SYNTAX;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return NUM_SYNTAX;
    }
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            return NUM_RANGE;
    }
    *out = (uint32_t)v;
    return NUM_OK;
}

/* A float (3.0 §4.7, A9): only decimal digits and at most one '.', at least one digit; no
 * sign, exponent, "nan", "inf" or hex, all of which strtod would take. ".5" and "5." are
 * accepted: the leading-0 and no-trailing-zero rules are SHOULDs for clients.
 * Converted by hand rather than with strtod so the result cannot depend on the locale's
 * decimal point: up to 17 significant digits go into an integer mantissa, which is then
 * divided by an exact power of ten (correctly rounded for the short values URLs carry);
 * further digits only shift the scale (integer part) or are dropped (fraction). */
static enum num_rc parse_decimal(const char *s, size_t n, double *out)
{
    uint64_t mant = 0;
    long scale = 0; /* value = mant * 10^scale */
    size_t digits = 0;
    int dots = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (++dots > 1)
                return NUM_SYNTAX;
            continue;
        }
        if (c < '0' || c > '9')
            return NUM_SYNTAX;
        digits++;
        if (mant < 10000000000000000ULL) {
            mant = mant * 10 + (uint64_t)(c - '0');
            if (dots)
                scale--;
        } else if (!dots) {
            scale++;
        }
    }
    if (digits == 0)
        return NUM_SYNTAX;
    if (scale < 0)
        *out = (double)mant / pow(10.0, (double)-scale);
    else
        *out = (double)mant * pow(10.0, (double)scale); /* may be +inf for absurd inputs */
    return NUM_OK;
}

/* Round half up (G7: the free dimension of w, / ,h / pct: rounds half up, as OpenSeadragon
 * expects). The tiny relative nudge absorbs the binary representation error of a decimal
 * input whose exact value is a half (pct:1.005 of 10000 px is 100.5, computed 100.4999...). */
static double round_half_up(double v)
{
    return floor(v + 0.5 + v * 1e-12);
}

/* round_half_up(a * b / c) in integers; a, b <= UINT32_MAX so a * b fits in 64 bits. */
static uint64_t muldiv_round(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t p = a * b;
    uint64_t q = p / c, r = p % c;

    return r >= c - r ? q + 1 : q;
}

static uint64_t at_least_1(uint64_t v)
{
    return v ? v : 1;
}

/* a * b <= limit without overflowing. */
static bool product_le(uint64_t a, uint64_t b, uint64_t limit)
{
    return a == 0 || b <= limit / a;
}

/* ---- parsing ------------------------------------------------------------------------------ */

/* "count" comma-separated numbers (integers, or decimals when is_pct). Returns NULL or why not. */
static const char *parse_list(const char *s, int count, bool is_pct, double *out)
{
    const char *p = s;

    for (int i = 0; i < count; i++) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        if ((i < count - 1) != (end != NULL))
            return is_pct ? "expected pct:x,y,w,h with exactly four values"
                          : "expected x,y,w,h with exactly four values";
        if (is_pct) {
            if (parse_decimal(p, n, &out[i]) != NUM_OK)
                return "percentages must be digits with at most one '.' (no sign or exponent)";
        } else {
            uint32_t v;
            enum num_rc rc = parse_uint32(p, n, &v);
            if (rc == NUM_RANGE)
                return "pixel value above 4294967295";
            if (rc != NUM_OK)
                return "pixel values must be non-negative integers";
            out[i] = v;
        }
        p = end ? end + 1 : p + n;
    }
    return NULL;
}

/* 3.0 §4.1 / 2.1 §4.1: full | square | x,y,w,h | pct:x,y,w,h. */
static int parse_region(const char *s, struct iiif_params *p, struct verr *err)
{
    const char *why;
    bool is_pct;

    if (strcmp(s, "full") == 0) {
        p->region_kind = IIIF_REGION_FULL;
        return 0;
    }
    if (strcmp(s, "square") == 0) {
        p->region_kind = IIIF_REGION_SQUARE;
        return 0;
    }
    is_pct = strncmp(s, "pct:", 4) == 0;
    why = parse_list(is_pct ? s + 4 : s, 4, is_pct, p->region);
    if (why)
        return bad_value(err, "region", s, why);
    /* 3.0 §4.1: a zero width or height is a 400 whatever the image. */
    if (p->region[2] == 0 || p->region[3] == 0)
        return bad_value(err, "region", s, "width and height must be greater than 0");
    p->region_kind = is_pct ? IIIF_REGION_PCT : IIIF_REGION_PX;
    return 0;
}

static int parse_size_number(const char *whole, const char *s, size_t n, uint32_t *out,
                             struct verr *err)
{
    enum num_rc rc = parse_uint32(s, n, out);

    if (rc == NUM_RANGE)
        return bad_value(err, "size", whole, "value above 4294967295");
    if (rc != NUM_OK)
        return bad_value(err, "size", whole, "width and height must be non-negative integers");
    /* 3.0 §4.2: a result below 1 px is a 400; a 0 here can only give one. */
    if (*out == 0)
        return bad_value(err, "size", whole, "width and height must be greater than 0");
    return 0;
}

/* 3.0 §4.2: [^]max | [^]w, | [^],h | [^]pct:n | [^]w,h | [^]!w,h.
 * 2.1 §4.2: full | max | w, | ,h | pct:n | w,h | !w,h (upscaling is implicit, B). */
static int parse_size(enum iiif_version version, const char *s, struct iiif_params *p,
                      struct verr *err)
{
    const char *forms = version == IIIF_V3
                            ? "expected max, w,, ,h, pct:n, w,h or !w,h, optionally prefixed by ^"
                            : "expected full, max, w,, ,h, pct:n, w,h or !w,h";
    const char *t = s, *comma;
    size_t wn, hn;

    if (*t == '^') {
        /* B: 2.1 has no '^'; Vellum rejects it on /iiif/2 rather than guess. */
        if (version != IIIF_V3)
            return bad_value(err, "size", s, "'^' is Image API 3.0 syntax (2.1 has no '^')");
        p->upscale = true;
        t++;
    }
    if (strcmp(t, "max") == 0) {
        p->size_kind = IIIF_SIZE_MAX;
        return 0;
    }
    if (strcmp(t, "full") == 0) {
        /* A4, G15: 'full' was removed from 3.0 (validator size_nofull); 2.1 requires it. */
        if (version == IIIF_V3)
            return bad_value(err, "size", s, "'full' is not a 3.0 size, use 'max'");
        p->size_kind = IIIF_SIZE_FULL;
        return 0;
    }
    if (strncmp(t, "pct:", 4) == 0) {
        if (parse_decimal(t + 4, strlen(t + 4), &p->size_pct) != NUM_OK)
            return bad_value(
                err, "size", s,
                "percentage must be digits with at most one '.' (no sign or exponent)");
        if (p->size_pct == 0)
            return bad_value(err, "size", s, "percentage must be greater than 0");
        p->size_kind = IIIF_SIZE_PCT;
        return 0;
    }
    if (*t == '!') {
        p->size_kind = IIIF_SIZE_CONFINED;
        t++;
    }
    comma = strchr(t, ',');
    if (!comma)
        return bad_value(err, "size", s, forms);
    wn = (size_t)(comma - t);
    hn = strlen(comma + 1);
    if (wn == 0 && hn == 0)
        return bad_value(err, "size", s, forms);
    if (p->size_kind == IIIF_SIZE_CONFINED && (wn == 0 || hn == 0))
        return bad_value(err, "size", s, "!w,h needs both a width and a height");
    if (wn && parse_size_number(s, t, wn, &p->size_w, err))
        return -1;
    if (hn && parse_size_number(s, comma + 1, hn, &p->size_h, err))
        return -1;
    if (p->size_kind != IIIF_SIZE_CONFINED)
        p->size_kind = wn == 0 ? IIIF_SIZE_H : hn == 0 ? IIIF_SIZE_W : IIIF_SIZE_WH;
    return 0;
}

/* 3.0 §4.3: [!]n with 0 <= n <= 360, integer or decimal (§4.7). */
static int parse_rotation(const char *s, struct iiif_params *p, struct verr *err)
{
    const char *t = s;

    if (*t == '!') {
        p->mirror = true;
        t++;
    }
    if (parse_decimal(t, strlen(t), &p->rotation) != NUM_OK)
        return bad_value(
            err, "rotation", s,
            "expected degrees 0-360 (digits and at most one '.'), optionally after '!'");
    if (p->rotation > 360)
        return bad_value(err, "rotation", s, "degrees must be between 0 and 360");
    return 0;
}

/* 3.0 §4.4-4.5: {quality}.{format}, exactly one '.'. */
static int parse_quality_format(enum iiif_version version, const char *s, struct iiif_params *p,
                                struct verr *err)
{
    static const struct {
        const char *name;
        enum iiif_quality q;
    } qualities[] = {
        {"default", IIIF_QUALITY_DEFAULT},
        {"color", IIIF_QUALITY_COLOR},
        {"gray", IIIF_QUALITY_GRAY},
        {"bitonal", IIIF_QUALITY_BITONAL},
    };
    const char *dot = strchr(s, '.');
    const char *ext;
    size_t qn;
    bool found = false;

    if (!dot || strchr(dot + 1, '.'))
        return bad_value(err, "quality.format", s,
                         "expected {quality}.{format} with exactly one '.'");
    qn = (size_t)(dot - s);
    for (size_t i = 0; i < sizeof qualities / sizeof qualities[0]; i++) {
        if (strlen(qualities[i].name) == qn && memcmp(qualities[i].name, s, qn) == 0) {
            p->quality = qualities[i].q;
            found = true;
        }
    }
    /* 2.1 §4.4 called the default "native" in 1.x; old clients still send it to /iiif/2. */
    if (!found && version == IIIF_V2 && qn == 6 && memcmp(s, "native", 6) == 0) {
        p->quality = IIIF_QUALITY_DEFAULT;
        found = true;
    }
    if (!found)
        return bad_part(err, "quality", s, qn, "expected default, color, gray or bitonal");
    ext = dot + 1;
    if (strcmp(ext, "jpg") == 0)
        p->format = IIIF_FORMAT_JPG;
    else if (strcmp(ext, "png") == 0)
        p->format = IIIF_FORMAT_PNG;
    else
        /* 3.0 §4.5: an unsupported format SHOULD be a 400. */
        return bad_value(err, "format", ext,
                         "unsupported format; this server supports jpg and png");
    return 0;
}

int iiif_parse(enum iiif_version version, const char *region, const char *size,
               const char *rotation, const char *quality_format, struct iiif_params *out,
               struct verr *err)
{
    memset(out, 0, sizeof *out);
    out->version = version;
    if (version != IIIF_V2 && version != IIIF_V3)
        return verr_set(err, 500, "unknown IIIF Image API version %d", (int)version);
    if (!region || !size || !rotation || !quality_format)
        return verr_set(err, 400, "missing image request parameter");
    /* The URL's order is the error order: the first bad parameter from the left is reported. */
    if (parse_region(region, out, err) || parse_size(version, size, out, err) ||
        parse_rotation(rotation, out, err) ||
        parse_quality_format(version, quality_format, out, err))
        return -1;
    return 0;
}

/* ---- planning ----------------------------------------------------------------------------- */

static struct lim lim_resolve(const struct iiif_limits *l)
{
    struct lim r = {0, 0, 0};

    if (l) {
        r.w = l->max_width;
        /* A9: maxHeight defaults to maxWidth. */
        r.h = l->max_height ? l->max_height : l->max_width;
        r.area = l->max_area;
    }
    return r;
}

static bool above_limits(uint64_t w, uint64_t h, const struct lim *l)
{
    return (l->w && w > l->w) || (l->h && h > l->h) || (l->area && !product_le(w, h, l->area));
}

/* Last guard after a fit: whatever rounding did, the result respects every limit (A9: sizes
 * "MUST respect them"). Only ever shrinks; keeps both sides >= 1. */
static void enforce_limits(const struct lim *l, uint64_t *w, uint64_t *h)
{
    if (l->w && *w > l->w)
        *w = l->w;
    if (l->h && *h > l->h)
        *h = l->h;
    if (l->area && !product_le(*w, *h, l->area)) {
        if (*w <= *h)
            *h = at_least_1(l->area / *w);
        else
            *w = at_least_1(l->area / *h);
        /* Still over only when one side is 1 and the other alone exceeds the area. */
        if (!product_le(*w, *h, l->area)) {
            if (*w > *h)
                *w = l->area;
            else
                *h = l->area;
        }
    }
}

/* The implementation note's algorithm (A9, 3.0 implementation note §4): area first, then width,
 * then height, each later step computed from the original W,H so rounding does not compound.
 * Never upscales. */
static void fit_down(uint64_t W, uint64_t H, const struct lim *l, uint64_t *ow, uint64_t *oh)
{
    uint64_t w = W, h = H;

    if (l->area && !product_le(W, H, l->area)) {
        double s = sqrt((double)l->area / ((double)W * (double)H));
        /* floor, as the note does, so the area is not exceeded; the 1e-9 keeps an exact
         * integer (sqrt(4) * 300) from landing one below through floating error. */
        w = at_least_1((uint64_t)floor((double)W * s + 1e-9));
        h = at_least_1((uint64_t)floor((double)H * s + 1e-9));
    }
    if (l->w && w > l->w) {
        w = l->w;
        h = at_least_1(muldiv_round(H, l->w, W));
    }
    if (l->h && h > l->h) {
        h = l->h;
        w = at_least_1(muldiv_round(W, l->h, H));
    }
    enforce_limits(l, &w, &h);
    *ow = w;
    *oh = h;
}

/* 3.0 §4.2 ^max: the largest size the limits allow, aspect kept, upscaling if they are above
 * the region. With no limits at all there is nothing to scale to: the region size. */
static void fit_up(uint64_t W, uint64_t H, const struct lim *l, uint64_t *ow, uint64_t *oh)
{
    double s = INFINITY;
    int bind = 0;
    uint64_t w, h;

    if (l->w && (double)l->w / (double)W < s) {
        s = (double)l->w / (double)W;
        bind = 1;
    }
    if (l->h && (double)l->h / (double)H < s) {
        s = (double)l->h / (double)H;
        bind = 2;
    }
    if (l->area) {
        double sa = sqrt((double)l->area / ((double)W * (double)H));
        if (sa < s) {
            s = sa;
            bind = 3;
        }
    }
    if (bind == 0 || s <= 1.0) { /* no limits, or they shrink the region: same as max */
        fit_down(W, H, l, ow, oh);
        return;
    }
    if (bind == 1) { /* the binding side equals its limit exactly, as in A9 */
        w = l->w;
        h = at_least_1(muldiv_round(H, l->w, W));
    } else if (bind == 2) {
        h = l->h;
        w = at_least_1(muldiv_round(W, l->h, H));
    } else {
        double fw = floor((double)W * s + 1e-9), fh = floor((double)H * s + 1e-9);
        /* Past UINT32_MAX the plan rejects the size anyway; keep the cast defined. */
        w = fw > (double)UINT32_MAX ? (uint64_t)UINT32_MAX + 1 : at_least_1((uint64_t)fw);
        h = fh > (double)UINT32_MAX ? (uint64_t)UINT32_MAX + 1 : at_least_1((uint64_t)fh);
    }
    enforce_limits(l, &w, &h);
    *ow = w;
    *oh = h;
}

void iiif_fit_limits(uint32_t w, uint32_t h, const struct iiif_limits *limits, uint32_t *out_w,
                     uint32_t *out_h)
{
    struct lim l = lim_resolve(limits);
    uint64_t ow, oh;

    if (w == 0 || h == 0) { /* no aspect ratio to keep; nothing sensible to scale */
        *out_w = w;
        *out_h = h;
        return;
    }
    fit_down(w, h, &l, &ow, &oh);
    *out_w = (uint32_t)ow; /* fit_down never grows either side */
    *out_h = (uint32_t)oh;
}

/* The request's region and size as text, for error messages raised after parsing. */
static void region_text(const struct iiif_params *p, char *buf, size_t cap)
{
    switch (p->region_kind) {
    case IIIF_REGION_FULL:
        snprintf(buf, cap, "full");
        break;
    case IIIF_REGION_SQUARE:
        snprintf(buf, cap, "square");
        break;
    case IIIF_REGION_PX:
        snprintf(buf, cap, "%.0f,%.0f,%.0f,%.0f", p->region[0], p->region[1], p->region[2],
                 p->region[3]);
        break;
    case IIIF_REGION_PCT:
        snprintf(buf, cap, "pct:%.10g,%.10g,%.10g,%.10g", p->region[0], p->region[1], p->region[2],
                 p->region[3]);
        break;
    }
}

static void size_text(const struct iiif_params *p, char *buf, size_t cap)
{
    const char *up = p->upscale ? "^" : "";

    switch (p->size_kind) {
    case IIIF_SIZE_MAX:
        snprintf(buf, cap, "%smax", up);
        break;
    case IIIF_SIZE_FULL:
        snprintf(buf, cap, "full");
        break;
    case IIIF_SIZE_W:
        snprintf(buf, cap, "%s%u,", up, p->size_w);
        break;
    case IIIF_SIZE_H:
        snprintf(buf, cap, "%s,%u", up, p->size_h);
        break;
    case IIIF_SIZE_PCT:
        snprintf(buf, cap, "%spct:%.10g", up, p->size_pct);
        break;
    case IIIF_SIZE_WH:
        snprintf(buf, cap, "%s%u,%u", up, p->size_w, p->size_h);
        break;
    case IIIF_SIZE_CONFINED:
        snprintf(buf, cap, "%s!%u,%u", up, p->size_w, p->size_h);
        break;
    }
}

static int region_error(struct verr *err, const struct iiif_params *p, const char *why, uint64_t W,
                        uint64_t H)
{
    char text[128];

    region_text(p, text, sizeof text);
    return verr_set(err, 400, "invalid region \"%s\" on a %llux%llu image: %s", text,
                    (unsigned long long)W, (unsigned long long)H, why);
}

/* x,y,w,h: 3.0 §4.1 crops a region that extends past the edge (no padding; the spec's example
 * 125,15,200,200 on 300x200 gives 175x185) and rejects one wholly outside (x >= W or y >= H). */
static int plan_region_px(const struct iiif_params *p, uint64_t W, uint64_t H, uint64_t r[4],
                          struct verr *err)
{
    for (int i = 0; i < 4; i++) {
        /* Parsed values are integers <= UINT32_MAX; re-checked for hand-built params. */
        double v = p->region[i];
        if (!(v >= 0 && v <= (double)UINT32_MAX) || v != floor(v))
            return region_error(err, p, "bad pixel value", W, H);
        r[i] = (uint64_t)v;
    }
    if (r[2] == 0 || r[3] == 0)
        return region_error(err, p, "width and height must be greater than 0", W, H);
    if (r[0] >= W || r[1] >= H)
        return region_error(err, p, "region is outside the image", W, H);
    if (r[2] > W - r[0])
        r[2] = W - r[0];
    if (r[3] > H - r[1])
        r[3] = H - r[1];
    return 0;
}

/* pct:x,y,w,h: percentages of the full image (3.0 §4.1). Rounding is implementation-defined
 * (§4.7). We round the two EDGES half up, x0 = rhu(px * W / 100) and
 * x1 = rhu((px + pw) * W / 100), then w = min(x1, W) - x0 (same for y, h): pct:0,0,100,100 is
 * exactly full, and adjacent pct regions tile without gaps or overlaps. The spec's examples on
 * 300x200: pct:41.6,7.5,40,70 = 125,15,120,140 and pct:41.6,7.5,66.6,100 gives 175x185.
 * x0 >= W is wholly outside; edges that round together leave no pixels: both 400. */
static int plan_region_pct(const struct iiif_params *p, uint64_t W, uint64_t H, uint64_t r[4],
                           struct verr *err)
{
    double dims[2] = {(double)W, (double)H};
    double e0[2], e1[2];

    for (int i = 0; i < 4; i++) {
        if (!(p->region[i] >= 0)) /* NaN or negative: never from the parser */
            return region_error(err, p, "bad percentage", W, H);
    }
    if (p->region[2] == 0 || p->region[3] == 0)
        return region_error(err, p, "width and height must be greater than 0", W, H);
    for (int i = 0; i < 2; i++) {
        e0[i] = round_half_up(p->region[i] * dims[i] / 100.0);
        e1[i] = round_half_up((p->region[i] + p->region[i + 2]) * dims[i] / 100.0);
    }
    if (e0[0] >= dims[0] || e0[1] >= dims[1])
        return region_error(err, p, "region is outside the image", W, H);
    for (int i = 0; i < 2; i++) {
        /* Compared as doubles before any cast: e1 may be huge or +inf. */
        double end = e1[i] > dims[i] ? dims[i] : e1[i];
        r[i] = (uint64_t)e0[i];
        r[i + 2] = (uint64_t)end - r[i];
    }
    if (r[2] == 0 || r[3] == 0)
        return region_error(err, p, "region is less than one pixel", W, H);
    return 0;
}

/* 3.0 §4.1 / 2.1 §4.1: the region in pixels, clipped to the image, w and h >= 1. */
static int plan_region(const struct iiif_params *p, uint64_t W, uint64_t H, uint64_t r[4],
                       struct verr *err)
{
    switch (p->region_kind) {
    case IIIF_REGION_FULL:
        r[0] = 0, r[1] = 0, r[2] = W, r[3] = H;
        return 0;
    case IIIF_REGION_SQUARE:
        /* 3.0 §4.1: side = the short dimension, placed at the server's discretion along the
         * long one; we centre it (offset rounded down). */
        r[2] = r[3] = W < H ? W : H;
        r[0] = (W - r[2]) / 2;
        r[1] = (H - r[3]) / 2;
        return 0;
    case IIIF_REGION_PX:
        return plan_region_px(p, W, H, r, err);
    case IIIF_REGION_PCT:
        return plan_region_pct(p, W, H, r, err);
    }
    return verr_set(err, 400, "invalid region kind %d", (int)p->region_kind);
}

/* Largest w x h with the region's aspect that fits in bw x bh: one side equals the box side
 * exactly, the other is rounded half up (so it can never exceed its box side). Which side
 * binds is decided exactly, comparing bw/rw with bh/rh as bw*rh vs bh*rw in 64-bit. */
static void confine(uint64_t rw, uint64_t rh, uint64_t bw, uint64_t bh, uint64_t *ow, uint64_t *oh)
{
    if (bw * rh <= bh * rw) {
        *ow = bw;
        *oh = at_least_1(muldiv_round(rh, bw, rw));
    } else {
        *oh = bh;
        *ow = at_least_1(muldiv_round(rw, bh, rh));
    }
}

enum size_why { WHY_ABOVE_REGION, WHY_TOO_LARGE, WHY_TOO_SMALL, WHY_LIMITS };

/* 400 for a size that parsed but cannot be served; a, b are the region or the result. */
static int size_error(struct verr *err, const struct iiif_params *p, enum size_why why, uint64_t a,
                      uint64_t b)
{
    char text[64];

    size_text(p, text, sizeof text);
    switch (why) {
    case WHY_ABOVE_REGION:
        return verr_set(err, 400,
                        "invalid size \"%s\": larger than the %llux%llu region; prefix it with '^'"
                        " to allow upscaling",
                        text, (unsigned long long)a, (unsigned long long)b);
    case WHY_TOO_LARGE:
        return verr_set(err, 400, "invalid size \"%s\": result is too large", text);
    case WHY_TOO_SMALL:
        return verr_set(err, 400, "invalid size \"%s\": result is less than one pixel", text);
    case WHY_LIMITS:
        break;
    }
    return verr_set(err, 400, "invalid size \"%s\": result %llux%llu is above the server's limits",
                    text, (unsigned long long)a, (unsigned long long)b);
}

/* 3.0 §4.2 (and 2.1 §4.2 on IIIF_V2): scale the rw x rh region. */
static int plan_size(const struct iiif_params *p, uint64_t rw, uint64_t rh, const struct lim *l,
                     uint64_t *ow, uint64_t *oh, struct verr *err)
{
    bool v3 = p->version == IIIF_V3;
    /* 3.0: without '^' nothing may exceed the region. 2.1 upscales implicitly (B). */
    bool capped = v3 && !p->upscale;
    uint64_t w = 0, h = 0;

    switch (p->size_kind) {
    case IIIF_SIZE_MAX:
        /* 3.0 §4.2 / G6: max is fitted to the limits, never an error; ^max grows to them. */
        if (p->upscale)
            fit_up(rw, rh, l, ow, oh);
        else
            fit_down(rw, rh, l, ow, oh);
        return 0;
    case IIIF_SIZE_FULL:
        if (v3) /* unreachable from the parser (A4: not a 3.0 size) */
            return verr_set(err, 400, "invalid size \"full\": not a 3.0 size, use 'max'");
        w = rw, h = rh;
        break;
    case IIIF_SIZE_W:
        if (capped && p->size_w > rw)
            return size_error(err, p, WHY_ABOVE_REGION, rw, rh);
        w = p->size_w;
        h = at_least_1(muldiv_round(rh, w, rw));
        break;
    case IIIF_SIZE_H:
        if (capped && p->size_h > rh)
            return size_error(err, p, WHY_ABOVE_REGION, rw, rh);
        h = p->size_h;
        w = at_least_1(muldiv_round(rw, h, rh));
        break;
    case IIIF_SIZE_PCT: {
        double fw, fh;
        if (!(p->size_pct > 0))
            return size_error(err, p, WHY_TOO_SMALL, 0, 0);
        if (capped && p->size_pct > 100)
            return size_error(err, p, WHY_ABOVE_REGION, rw, rh);
        fw = round_half_up((double)rw * p->size_pct / 100.0);
        fh = round_half_up((double)rh * p->size_pct / 100.0);
        if (fw > (double)UINT32_MAX || fh > (double)UINT32_MAX)
            return size_error(err, p, WHY_TOO_LARGE, 0, 0);
        /* Both sides rounding to 0 is a request for nothing (400); one side rounding to 0
         * on a very thin region is raised to 1, as for the free side of w, / ,h. */
        if (fw < 1 && fh < 1)
            return size_error(err, p, WHY_TOO_SMALL, 0, 0);
        w = at_least_1((uint64_t)fw);
        h = at_least_1((uint64_t)fh);
        break;
    }
    case IIIF_SIZE_WH:
        if (capped && (p->size_w > rw || p->size_h > rh))
            return size_error(err, p, WHY_ABOVE_REGION, rw, rh);
        w = p->size_w, h = p->size_h;
        break;
    case IIIF_SIZE_CONFINED: {
        /* 3.0 §4.2: "as large as possible but not larger than the extracted region, w or h,
         * or server-imposed limits" (^!w,h: drop the region). A box larger than the region
         * therefore gives the region's size, not a 400 (G1: the spec wins over the
         * validator). The limits are part of the box for the same reason. */
        uint64_t bw = p->size_w, bh = p->size_h;
        if (capped) {
            bw = bw < rw ? bw : rw;
            bh = bh < rh ? bh : rh;
        }
        if (l->w && bw > l->w)
            bw = l->w;
        if (l->h && bh > l->h)
            bh = l->h;
        confine(rw, rh, bw, bh, &w, &h);
        if (l->area && !product_le(w, h, l->area)) {
            uint64_t fw, fh;
            fit_down(w, h, l, &fw, &fh);
            w = fw, h = fh;
        }
        break;
    }
    default:
        return verr_set(err, 400, "invalid size kind");
    }
    if (w > UINT32_MAX || h > UINT32_MAX)
        return size_error(err, p, WHY_TOO_LARGE, 0, 0);
    if (w == 0 || h == 0)
        return size_error(err, p, WHY_TOO_SMALL, 0, 0);
    /* 3.0 §4.2: above the limits is a 400 (§7.3's table says 404; G4: we pick 400). */
    if (above_limits(w, h, l))
        return size_error(err, p, WHY_LIMITS, w, h);
    *ow = w;
    *oh = h;
    return 0;
}

int iiif_plan_request(const struct iiif_params *params, uint32_t img_w, uint32_t img_h,
                      const struct iiif_limits *limits, struct iiif_plan *out, struct verr *err)
{
    struct lim l = lim_resolve(limits);
    uint64_t r[4] = {0, 0, 0, 0}, ow = 0, oh = 0;

    if (img_w == 0 || img_h == 0)
        return verr_set(err, 500, "image has no pixels (%ux%u)", img_w, img_h);
    if (plan_region(params, img_w, img_h, r, err))
        return -1;
    if (plan_size(params, r[2], r[3], &l, &ow, &oh, err))
        return -1;
    if (ow > UINT32_MAX || oh > UINT32_MAX) /* ^max with an absurd maxArea */
        return size_error(err, params, WHY_TOO_LARGE, 0, 0);
    /* Re-checked for hand-built params; the parser already guarantees it. */
    if (!(params->rotation >= 0 && params->rotation <= 360))
        return verr_set(err, 400, "invalid rotation: degrees must be between 0 and 360");
    memset(out, 0, sizeof *out);
    out->x = (uint32_t)r[0];
    out->y = (uint32_t)r[1];
    out->w = (uint32_t)r[2];
    out->h = (uint32_t)r[3];
    out->out_w = (uint32_t)ow;
    out->out_h = (uint32_t)oh;
    out->mirror = params->mirror;
    /* 3.0 §4.3: 360 degrees is a full turn; the plan keeps 0 <= rotation < 360. */
    out->rotation = params->rotation == 360 ? 0 : params->rotation;
    out->quality = params->quality;
    out->format = params->format;
    return 0;
}

/* ---- canonical form ----------------------------------------------------------------------- */

/* 3.0 §4.7 / A14: an integer when whole, else a decimal with a leading 0 and no trailing
 * zeros, never exponent notation. 10 decimals (2.1's limit, B) are plenty for degrees; a
 * value that rounds to 360 at that precision is a full turn, written 0. */
static int rotation_text(bool mirror, double r, char *buf, size_t cap)
{
    char num[32];
    size_t n;

    if (!(r >= 0 && r <= 360))
        return -1;
    snprintf(num, sizeof num, "%.10f", r);
    n = strlen(num);
    while (n > 0 && num[n - 1] == '0')
        num[--n] = '\0';
    if (n > 0 && num[n - 1] == '.')
        num[--n] = '\0';
    if (strcmp(num, "360") == 0)
        snprintf(num, sizeof num, "0");
    snprintf(buf, cap, "%s%s", mirror ? "!" : "", num);
    return 0;
}

int iiif_canonical(const struct iiif_plan *plan, enum iiif_version version, uint32_t img_w,
                   uint32_t img_h, const struct iiif_limits *limits, char *buf, size_t len)
{
    char region[64], size[32], rot[40];
    int n;

    if (plan->w == 0 || plan->h == 0)
        return -1;
    /* A14 / B: "full" whenever the whole image is covered (square of a square image,
     * pct:0,0,100,100, 0,0,W,H), else x,y,w,h. */
    if (plan->x == 0 && plan->y == 0 && plan->w == img_w && plan->h == img_h)
        snprintf(region, sizeof region, "full");
    else
        snprintf(region, sizeof region, "%u,%u,%u,%u", plan->x, plan->y, plan->w, plan->h);

    if (version == IIIF_V3) {
        /* 3.0 §4.8: max when it is what max gives for this region, ^max when it is the
         * largest upscaled size the limits allow; else w,h, with '^' when the result exceeds
         * the region. */
        uint32_t mw, mh;
        uint64_t uw, uh;
        struct lim l = lim_resolve(limits);
        iiif_fit_limits(plan->w, plan->h, limits, &mw, &mh);
        fit_up(plan->w, plan->h, &l, &uw, &uh);
        bool upscaled = plan->out_w > plan->w || plan->out_h > plan->h;
        if (plan->out_w == mw && plan->out_h == mh)
            snprintf(size, sizeof size, "max");
        else if (upscaled && plan->out_w == uw && plan->out_h == uh)
            snprintf(size, sizeof size, "^max");
        else if (upscaled)
            snprintf(size, sizeof size, "^%u,%u", plan->out_w, plan->out_h);
        else
            snprintf(size, sizeof size, "%u,%u", plan->out_w, plan->out_h);
    } else {
        /* 2.1 §4.7: full for no scaling, w, when the aspect ratio is kept (i.e. a w, request
         * would give exactly this height), w,h when distorted. */
        if (plan->out_w == plan->w && plan->out_h == plan->h)
            snprintf(size, sizeof size, "full");
        else if (at_least_1(muldiv_round(plan->h, plan->out_w, plan->w)) == plan->out_h)
            snprintf(size, sizeof size, "%u,", plan->out_w);
        else
            snprintf(size, sizeof size, "%u,%u", plan->out_w, plan->out_h);
    }
    if (rotation_text(plan->mirror, plan->rotation, rot, sizeof rot))
        return -1;
    n = snprintf(buf, len, "%s/%s/%s/%s.%s", region, size, rot, iiif_quality_name(plan->quality),
                 iiif_format_ext(plan->format));
    if (n < 0 || (size_t)n >= len)
        return -1;
    return n;
}

/* ---- paths -------------------------------------------------------------------------------- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 percent-decoding, once (A2: "%253C" is the literal "%3C"). '+' stays '+': this is a
 * path, not a form. A NUL (encoded or raw) would cut the C string short, so it is a 400. */
static char *decode(const char *src, size_t len, const char *what, struct verr *err)
{
    char *out = malloc(len + 1);
    size_t o = 0;

    if (!out) {
        verr_set(err, 500, "out of memory decoding the %s", what);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            int hi = len - i >= 3 ? hex_digit(src[i + 1]) : -1;
            int lo = len - i >= 3 ? hex_digit(src[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                bad_part(err, what, src, len, "'%' must be followed by two hex digits");
                free(out);
                return NULL;
            }
            if (hi == 0 && lo == 0) {
                bad_part(err, what, src, len, "%00 (NUL) is not allowed");
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (src[i] == '\0') {
            bad_part(err, what, src, len, "NUL byte is not allowed");
            free(out);
            return NULL;
        } else {
            out[o++] = src[i];
        }
    }
    out[o] = '\0';
    return out;
}

char *iiif_percent_decode(const char *src, size_t len, struct verr *err)
{
    if (!src) {
        verr_set(err, 400, "missing value to percent-decode");
        return NULL;
    }
    return decode(src, len, "path segment", err);
}

void iiif_path_clear(struct iiif_path *p)
{
    if (!p)
        return;
    free(p->identifier);
    free(p->id_raw);
    for (int i = 0; i < 4; i++)
        free(p->params[i]);
    memset(p, 0, sizeof *p);
}

/* A1, G8: split from the right so identifiers may hold encoded or literal slashes; the
 * identifier is decoded once, the raw form kept for the ids written back to clients. */
int iiif_split_path(const char *raw, struct iiif_path *out, struct verr *err)
{
    static const char info[] = "/info.json";
    static const char *names[4] = {"region", "size", "rotation", "quality.format"};
    const size_t info_len = sizeof info - 1;
    size_t n, id_len;
    size_t cut[4]; /* positions of the last four '/', right to left */
    int found = 0;

    memset(out, 0, sizeof *out);
    if (!raw)
        return verr_set(err, 400, "missing path");
    n = strlen(raw);
    if (n >= info_len && memcmp(raw + n - info_len, info, info_len) == 0) {
        out->target = IIIF_TARGET_INFO;
        id_len = n - info_len;
    } else if (strcmp(raw, "info.json") == 0) {
        return verr_set(err, 400, "info.json requested without an identifier");
    } else {
        for (size_t i = n; i-- > 0 && found < 4;) {
            if (raw[i] == '/')
                cut[found++] = i;
        }
        /* At least five segments and a '.' in the last: {id}/{region}/{size}/{rotation}/{q}.{f} */
        if (found == 4 && memchr(raw + cut[0] + 1, '.', n - cut[0] - 1)) {
            out->target = IIIF_TARGET_IMAGE;
            id_len = cut[3];
        } else {
            out->target = IIIF_TARGET_BASE;
            id_len = n;
            if (id_len > 0 && raw[id_len - 1] == '/')
                id_len--;
        }
    }
    if (id_len == 0)
        return verr_set(err, 400, "empty identifier");

    out->id_raw = strndup(raw, id_len);
    if (!out->id_raw) {
        verr_set(err, 500, "out of memory splitting the path");
        goto fail;
    }
    out->identifier = decode(raw, id_len, "identifier", err);
    if (!out->identifier)
        goto fail;
    if (out->target == IIIF_TARGET_IMAGE) {
        size_t start[4] = {cut[3] + 1, cut[2] + 1, cut[1] + 1, cut[0] + 1};
        size_t end[4] = {cut[2], cut[1], cut[0], n};
        for (int i = 0; i < 4; i++) {
            out->params[i] = decode(raw + start[i], end[i] - start[i], names[i], err);
            if (!out->params[i])
                goto fail;
        }
    }
    return 0;
fail:
    iiif_path_clear(out);
    return -1;
}

/* ---- names -------------------------------------------------------------------------------- */

/* Out-of-range enum values (a caller bug) fall back to the defaults rather than NULL, so a
 * caller formatting the result never dereferences NULL. */
const char *iiif_quality_name(enum iiif_quality q)
{
    switch (q) {
    case IIIF_QUALITY_COLOR:
        return "color";
    case IIIF_QUALITY_GRAY:
        return "gray";
    case IIIF_QUALITY_BITONAL:
        return "bitonal";
    case IIIF_QUALITY_DEFAULT:
    default:
        return "default";
    }
}

const char *iiif_format_ext(enum iiif_format f)
{
    return f == IIIF_FORMAT_PNG ? "png" : "jpg";
}

const char *iiif_format_mime(enum iiif_format f)
{
    return f == IIIF_FORMAT_PNG ? "image/png" : "image/jpeg";
}
