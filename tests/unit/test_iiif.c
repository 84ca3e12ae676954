/* test_iiif.c: table-driven tests of codec/iiif.c (IIIF Image API 3.0 and 2.1 requests).
 * Every expected value is worked out by hand from the spec (3.0 §4, its implementation notes,
 * 2.1 §4, ../../shared/iiif/SPECS.md A, B, G); the arithmetic is in the comments. */
#include "iiif.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ---- whole requests: parse + plan + canonical ----------------------------------------------- */

struct req_case {
    int ver;
    const char *region, *size, *rot, *qf;
    uint32_t img_w, img_h;
    uint32_t max_w, max_h;
    uint64_t max_area;
    int status;          /* 0 = success */
    const char *msg_has; /* errors: the message must name this parameter */
    uint32_t x, y, w, h, out_w, out_h;
    const char *canonical;
};

#define OK(v, r, s, rot, qf, W, H, mw, mh, ma, x, y, w, h, ow, oh, canon)                          \
    {                                                                                              \
        v, r, s, rot, qf, W, H, mw, mh, ma, 0, NULL, x, y, w, h, ow, oh, canon                     \
    }
#define BAD(v, r, s, rot, qf, W, H, mw, mh, ma, has)                                               \
    {                                                                                              \
        v, r, s, rot, qf, W, H, mw, mh, ma, 400, has, 0, 0, 0, 0, 0, 0, NULL                       \
    }
#define D "default.jpg"
#define U32 4294967295u

/* clang-format off */
static const struct req_case req_cases[] = {
    /* -- 3.0 §4.1 regions (spec example image is 300x200) -- */
    OK(3, "full", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    /* square: side min(300,200)=200, centred: x=(300-200)/2=50 */
    OK(3, "square", "max", "0", D, 300, 200, 0, 0, 0, 50, 0, 200, 200, 200, 200, "50,0,200,200/max/0/default.jpg"),
    OK(3, "square", "max", "0", D, 200, 300, 0, 0, 0, 0, 50, 200, 200, 200, 200, "0,50,200,200/max/0/default.jpg"),
    /* x=(301-200)/2=50 (rounded down) */
    OK(3, "square", "max", "0", D, 301, 200, 0, 0, 0, 50, 0, 200, 200, 200, 200, "50,0,200,200/max/0/default.jpg"),
    /* A14: a square of a square image is full */
    OK(3, "square", "max", "0", D, 256, 256, 0, 0, 0, 0, 0, 256, 256, 256, 256, "full/max/0/default.jpg"),
    OK(3, "125,15,120,140", "max", "0", D, 300, 200, 0, 0, 0, 125, 15, 120, 140, 120, 140, "125,15,120,140/max/0/default.jpg"),
    /* spec example 5: 125,15,200,200 -> cropped to 175x185 */
    OK(3, "125,15,200,200", "max", "0", D, 300, 200, 0, 0, 0, 125, 15, 175, 185, 175, 185, "125,15,175,185/max/0/default.jpg"),
    /* spec example 4: pct:41.6,7.5,40,70: x0=124.8->125, x1=81.6*3=244.8->245, y0=15, y1=77.5*2=155 */
    OK(3, "pct:41.6,7.5,40,70", "max", "0", D, 300, 200, 0, 0, 0, 125, 15, 120, 140, 120, 140, "125,15,120,140/max/0/default.jpg"),
    /* spec example 6: x1=108.2*3=324.6 -> clipped to 300 (w 175); y1=107.5*2=215 -> 200 (h 185) */
    OK(3, "pct:41.6,7.5,66.6,100", "max", "0", D, 300, 200, 0, 0, 0, 125, 15, 175, 185, 175, 185, "125,15,175,185/max/0/default.jpg"),
    OK(3, "pct:0,0,100,100", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "pct:0,0,100.0,100", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "0,0,300,200", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "0,0,1000,1000", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "0,0,4294967295,4294967295", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "0000,0,300,200", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "299,199,1,1", "max", "0", D, 300, 200, 0, 0, 0, 299, 199, 1, 1, 1, 1, "299,199,1,1/max/0/default.jpg"),
    OK(3, "299,199,5,5", "max", "0", D, 300, 200, 0, 0, 0, 299, 199, 1, 1, 1, 1, "299,199,1,1/max/0/default.jpg"),
    OK(3, "pct:50,50,50,50", "max", "0", D, 300, 200, 0, 0, 0, 150, 100, 150, 100, 150, 100, "150,100,150,100/max/0/default.jpg"),
    /* x0=333.0->333, x1=66.7*10=667 -> w 334 */
    OK(3, "pct:33.3,0,33.4,100", "max", "0", D, 1000, 10, 0, 0, 0, 333, 0, 334, 10, 334, 10, "333,0,334,10/max/0/default.jpg"),
    /* exact decimal halves round up: 1.005% of 10000 = 100.5 -> 101; 11.005% = 1100.5 -> 1101 */
    OK(3, "pct:1.005,0,10,100", "max", "0", D, 10000, 100, 0, 0, 0, 101, 0, 1000, 100, 1000, 100, "101,0,1000,100/max/0/default.jpg"),
    /* edges round half up, so adjacent halves of 301x201 tile exactly: 0..150.5->151, 151..301 */
    OK(3, "pct:0,0,50,50", "max", "0", D, 301, 201, 0, 0, 0, 0, 0, 151, 101, 151, 101, "0,0,151,101/max/0/default.jpg"),
    OK(3, "pct:50,50,50,50", "max", "0", D, 301, 201, 0, 0, 0, 151, 101, 150, 100, 150, 100, "151,101,150,100/max/0/default.jpg"),
    /* x0=999.0, x1=1099 -> 1000: w 1 */
    OK(3, "pct:99.9,0,10,10", "max", "0", D, 1000, 1000, 0, 0, 0, 999, 0, 1, 100, 1, 100, "999,0,1,100/max/0/default.jpg"),
    OK(3, "pct:0,0,1000000000000000000000000000000,50", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 100, 300, 100, "0,0,300,100/max/0/default.jpg"),
    OK(3, "pct:.5,0,10.,100", "max", "0", D, 1000, 10, 0, 0, 0, 5, 0, 100, 10, 100, 10, "5,0,100,10/max/0/default.jpg"),

    /* -- 3.0 §4.2 sizes on the full 300x200 image (the spec's own examples) -- */
    OK(3, "full", "150,", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,100/0/default.jpg"),
    /* ,150: w = 300*150/200 = 225 */
    OK(3, "full", ",150", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 225, 150, "full/225,150/0/default.jpg"),
    OK(3, "full", "pct:50", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,100/0/default.jpg"),
    OK(3, "full", "225,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 225, 100, "full/225,100/0/default.jpg"),
    /* spec: !225,100 returns 150,100 */
    OK(3, "full", "!225,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,100/0/default.jpg"),
    /* spec: ^!360,360 returns 360,240 */
    OK(3, "full", "^!360,360", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 360, 240, "full/^360,240/0/default.jpg"),
    OK(3, "full", "^360,", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 360, 240, "full/^360,240/0/default.jpg"),
    OK(3, "full", "^,240", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 360, 240, "full/^360,240/0/default.jpg"),
    OK(3, "full", "^pct:120", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 360, 240, "full/^360,240/0/default.jpg"),
    OK(3, "full", "^360,360", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 360, 360, "full/^360,360/0/default.jpg"),
    OK(3, "full", "^400,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 400, 100, "full/^400,100/0/default.jpg"),
    /* '^' that does not upscale is canonically plain w,h */
    OK(3, "full", "^150,", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,100/0/default.jpg"),
    /* ^max without limits: nothing to grow to, the region size */
    OK(3, "full", "^max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    /* sizes equal to what max gives are canonically max */
    OK(3, "full", "300,200", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "full", "pct:100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "full", "^pct:100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "full", "!300,200", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "full", "300,", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    /* G1: !w,h larger than the region gives the region (spec), never an upscale */
    OK(3, "full", "!1000,1000", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "full", "!2000,3000", "0", D, 1000, 1000, 0, 0, 0, 0, 0, 1000, 1000, 1000, 1000, "full/max/0/default.jpg"),
    /* ^!2000,3000 on 1000x1000: 2000*1000 <= 3000*1000, width binds: 2000x2000 */
    OK(3, "full", "^!2000,3000", "0", D, 1000, 1000, 0, 0, 0, 0, 0, 1000, 1000, 2000, 2000, "full/^2000,2000/0/default.jpg"),
    /* !100,100: 100*200 <= 100*300, width binds; h = 200*100/300 = 66.7 -> 67 */
    OK(3, "full", "!100,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 100, 67, "full/100,67/0/default.jpg"),
    OK(3, "full", "^!100,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 100, 67, "full/100,67/0/default.jpg"),
    /* !100,50: 100*200 > 50*300, height binds; w = 300*50/200 = 75 */
    OK(3, "full", "!100,50", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 75, 50, "full/75,50/0/default.jpg"),
    /* tie 150*200 == 100*300: 150x100 */
    OK(3, "full", "!150,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,100/0/default.jpg"),
    /* !500,500 on 1001x999: width binds; h = 999*500/1001 = 499.0 -> 499 */
    OK(3, "full", "!500,500", "0", D, 1001, 999, 0, 0, 0, 0, 0, 1001, 999, 500, 499, "full/500,499/0/default.jpg"),
    /* 150, on 301x201: h = 201*150/301 = 100.17 -> 100 */
    OK(3, "full", "150,", "0", D, 301, 201, 0, 0, 0, 0, 0, 301, 201, 150, 100, "full/150,100/0/default.jpg"),
    /* G7 round half up: 2, on 4x3 -> h = 1.5 -> 2; ,2 on 3x4 -> w = 1.5 -> 2 */
    OK(3, "full", "2,", "0", D, 4, 3, 0, 0, 0, 0, 0, 4, 3, 2, 2, "full/2,2/0/default.jpg"),
    OK(3, "full", ",2", "0", D, 3, 4, 0, 0, 0, 0, 0, 3, 4, 2, 2, "full/2,2/0/default.jpg"),
    /* free side below one pixel is raised to 1: 10, on 1000x1 -> h = 0.01 -> 1 */
    OK(3, "full", "10,", "0", D, 1000, 1, 0, 0, 0, 0, 0, 1000, 1, 10, 1, "full/10,1/0/default.jpg"),
    OK(3, "full", ",10", "0", D, 1, 1000, 0, 0, 0, 0, 0, 1, 1000, 1, 10, "full/1,10/0/default.jpg"),
    OK(3, "full", "pct:10", "0", D, 1000, 1, 0, 0, 0, 0, 0, 1000, 1, 100, 1, "full/100,1/0/default.jpg"),
    /* pct:50 on 301x201: 150.5 -> 151, 100.5 -> 101 */
    OK(3, "full", "pct:50", "0", D, 301, 201, 0, 0, 0, 0, 0, 301, 201, 151, 101, "full/151,101/0/default.jpg"),
    OK(3, "full", "pct:0.5", "0", D, 1000, 800, 0, 0, 0, 0, 0, 1000, 800, 5, 4, "full/5,4/0/default.jpg"),
    /* size applies to the region: 100, on a 100x100 region is max */
    OK(3, "0,0,100,100", "100,", "0", D, 300, 200, 0, 0, 0, 0, 0, 100, 100, 100, 100, "0,0,100,100/max/0/default.jpg"),
    OK(3, "125,15,120,140", "90,", "!345", "gray.jpg", 300, 200, 0, 0, 0, 125, 15, 120, 140, 90, 105, "125,15,120,140/90,105/!345/gray.jpg"),
    /* no wraparound near UINT32_MAX: ^4294967295, on a 1x1 region */
    OK(3, "0,0,1,1", "^4294967295,", "0", D, 100, 100, 0, 0, 0, 0, 0, 1, 1, U32, U32, "0,0,1,1/^4294967295,4294967295/0/default.jpg"),
    OK(3, "full", "max", "0", D, U32, U32, 0, 0, 0, 0, 0, U32, U32, U32, U32, "full/max/0/default.jpg"),

    /* -- A9 limits (maxWidth/maxHeight/maxArea) -- */
    /* spec: max with maxWidth 200 on 300x200 -> 200 x round(200*200/300=133.3)=133 */
    OK(3, "full", "max", "0", D, 300, 200, 200, 0, 0, 0, 0, 300, 200, 200, 133, "full/max/0/default.jpg"),
    /* maxHeight defaults to maxWidth: 200x300 -> h 200, w = 200*200/300 = 133 */
    OK(3, "full", "max", "0", D, 200, 300, 200, 0, 0, 0, 0, 200, 300, 133, 200, "full/max/0/default.jpg"),
    /* spec: ^max with maxWidth 360 -> 360x240 */
    OK(3, "full", "^max", "0", D, 300, 200, 360, 0, 0, 0, 0, 300, 200, 360, 240, "full/^max/0/default.jpg"),
    /* the size max would give is canonically max, whatever form asked for it */
    OK(3, "full", "200,", "0", D, 300, 200, 200, 0, 0, 0, 0, 300, 200, 200, 133, "full/max/0/default.jpg"),
    OK(3, "full", "150,", "0", D, 300, 200, 200, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,100/0/default.jpg"),
    /* !1000,1000 with maxWidth 200: box 200x200, width binds: 200 x 133 */
    OK(3, "full", "!1000,1000", "0", D, 300, 200, 200, 0, 0, 0, 0, 300, 200, 200, 133, "full/max/0/default.jpg"),
    OK(3, "full", "^!1000,1000", "0", D, 300, 200, 360, 0, 0, 0, 0, 300, 200, 360, 240, "full/^max/0/default.jpg"),
    /* maxArea 30000 on 300x200: s = sqrt(0.5) = 0.7071; floor(212.1)=212, floor(141.4)=141 */
    OK(3, "full", "max", "0", D, 300, 200, 0, 0, 30000, 0, 0, 300, 200, 212, 141, "full/max/0/default.jpg"),
    OK(3, "full", "^max", "0", D, 300, 200, 0, 0, 30000, 0, 0, 300, 200, 212, 141, "full/max/0/default.jpg"),
    /* ^max with maxArea 240000: s = 2 -> 600x400 */
    OK(3, "full", "^max", "0", D, 300, 200, 0, 0, 240000, 0, 0, 300, 200, 600, 400, "full/^max/0/default.jpg"),
    /* !1000,1000 gives the region 300x200 = 60000 > 30000: fitted as max -> 212x141 */
    OK(3, "full", "!1000,1000", "0", D, 300, 200, 0, 0, 30000, 0, 0, 300, 200, 212, 141, "full/max/0/default.jpg"),
    /* maxWidth 400, maxHeight 100: h 200 > 100 -> 100, w = 300*100/200 = 150 */
    OK(3, "full", "max", "0", D, 300, 200, 400, 100, 0, 0, 0, 300, 200, 150, 100, "full/max/0/default.jpg"),
    OK(3, "full", "^max", "0", D, 300, 200, 400, 100, 0, 0, 0, 300, 200, 150, 100, "full/max/0/default.jpg"),
    /* ^max, 600x1000: scales 2 (w) and 5 (h); width binds: 600 x 400 */
    OK(3, "full", "^max", "0", D, 300, 200, 600, 1000, 0, 0, 0, 300, 200, 600, 400, "full/^max/0/default.jpg"),
    /* ^max, 1000x300: scales 3.33 and 1.5; height binds: 300, w = 300*300/200 = 450 */
    OK(3, "full", "^max", "0", D, 300, 200, 1000, 300, 0, 0, 0, 300, 200, 450, 300, "full/^max/0/default.jpg"),
    /* ^max, maxWidth 600 (maxHeight 600), maxArea 100000: area binds, s = sqrt(100000/60000) =
     * 1.29099; floor(387.30)=387, floor(258.20)=258; 387*258 = 99846 */
    OK(3, "full", "^max", "0", D, 300, 200, 600, 0, 100000, 0, 0, 300, 200, 387, 258, "full/^max/0/default.jpg"),
    /* maxHeight only */
    OK(3, "full", "max", "0", D, 300, 200, 0, 100, 0, 0, 0, 300, 200, 150, 100, "full/max/0/default.jpg"),
    /* A9 order: 4000x3000, maxArea 1e6: s = 0.2887 -> 1154x866; then width 1154 > 1000 ->
     * 1000 x 3000*1000/4000 = 750 */
    OK(3, "full", "max", "0", D, 4000, 3000, 1000, 0, 1000000, 0, 0, 4000, 3000, 1000, 750, "full/max/0/default.jpg"),
    /* tall: maxWidth 1000 (maxHeight 1000) on 1000x4000: h -> 1000, w = 1000*1000/4000 = 250 */
    OK(3, "full", "max", "0", D, 1000, 4000, 1000, 0, 0, 0, 0, 1000, 4000, 250, 1000, "full/max/0/default.jpg"),
    /* G6: max after a crop uses the cropped size */
    OK(3, "0,0,100,50", "max", "0", D, 300, 200, 200, 0, 0, 0, 0, 100, 50, 100, 50, "0,0,100,50/max/0/default.jpg"),
    /* area fit with a 1-px-wide image: s = 0.01 -> w floor(0.01)=0 -> 1; h must give 1*h <= 100 */
    OK(3, "full", "max", "0", D, 1, 1000000, 0, 0, 100, 0, 0, 1, 1000000, 1, 100, "full/max/0/default.jpg"),

    /* -- tiles, implementation note §3 (integer arithmetic, last column/row) -- */
    /* 1000x800, tile 512, s=1, n=m=1: xr=512, wr=1000-512=488, yr=512, hr=800-512=288, ws=488 */
    OK(3, "512,512,488,288", "488,288", "0", D, 1000, 800, 0, 0, 0, 512, 512, 488, 288, 488, 288, "512,512,488,288/max/0/default.jpg"),
    /* 1000x800, tile 256, s=2, n=m=1: xr=512, wr=488, ws=(488+1)/2=244; hr=288, hs=(288+1)/2=144 */
    OK(3, "512,512,488,288", "244,144", "0", D, 1000, 800, 0, 0, 0, 512, 512, 488, 288, 244, 144, "512,512,488,288/244,144/0/default.jpg"),
    /* same tile asked as w,: h = 288*244/488 = 144 exactly */
    OK(3, "512,512,488,288", "244,", "0", D, 1000, 800, 0, 0, 0, 512, 512, 488, 288, 244, 144, "512,512,488,288/244,144/0/default.jpg"),
    /* s=4: one tile; ws=(1000+3)/4=250, hs=(800+3)/4=200 */
    OK(3, "0,0,1000,800", "250,200", "0", D, 1000, 800, 0, 0, 0, 0, 0, 1000, 800, 250, 200, "full/250,200/0/default.jpg"),
    OK(3, "full", "125,", "0", D, 1000, 800, 0, 0, 0, 0, 0, 1000, 800, 125, 100, "full/125,100/0/default.jpg"),
    /* 1001x999, tile 256, s=2, n=m=1: wr=489, ws=(489+1)/2=245; hr=487, hs=(487+1)/2=244;
     * 245, gives h = 487*245/489 = 243.998 -> 244 = hs */
    OK(3, "512,512,489,487", "245,", "0", D, 1001, 999, 0, 0, 0, 512, 512, 489, 487, 245, 244, "512,512,489,487/245,244/0/default.jpg"),
    /* s=4 one tile: ws=(1001+3)/4=251, hs=(999+3)/4=250; 251, -> 999*251/1001 = 250.498 -> 250 */
    OK(3, "full", "251,", "0", D, 1001, 999, 0, 0, 0, 0, 0, 1001, 999, 251, 250, "full/251,250/0/default.jpg"),
    /* s=8: ws=(1001+7)/8=126, hs=(999+7)/8=125; the w,h form is exact ... */
    OK(3, "full", "126,125", "0", D, 1001, 999, 0, 0, 0, 0, 0, 1001, 999, 126, 125, "full/126,125/0/default.jpg"),
    /* ... while 126, rounds 999*126/1001 = 125.75 -> 126 (G7: why viewers send w,h) */
    OK(3, "full", "126,", "0", D, 1001, 999, 0, 0, 0, 0, 0, 1001, 999, 126, 126, "full/126,126/0/default.jpg"),

    /* -- 3.0 §4.3 rotation, §4.4 quality, §4.5 format -- */
    OK(3, "full", "max", "90", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/90/default.jpg"),
    OK(3, "full", "max", "180", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/180/default.jpg"),
    OK(3, "full", "max", "270", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/270/default.jpg"),
    OK(3, "full", "max", "22.5", "default.png", 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/22.5/default.png"),
    OK(3, "full", "max", "360", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "full", "max", "360.0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/default.jpg"),
    OK(3, "full", "max", "!0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/!0/default.jpg"),
    OK(3, "full", "max", "!90", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/!90/default.jpg"),
    OK(3, "full", "max", "!180", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/!180/default.jpg"),
    OK(3, "full", "max", "!360", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/!0/default.jpg"),
    OK(3, "full", "max", "!22.5", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/!22.5/default.jpg"),
    /* §4.7 canonical floats: integer when whole, leading 0, no trailing zeros */
    OK(3, "full", "max", "90.0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/90/default.jpg"),
    OK(3, "full", "max", "045", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/45/default.jpg"),
    OK(3, "full", "max", "22.50", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/22.5/default.jpg"),
    OK(3, "full", "max", ".5", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0.5/default.jpg"),
    OK(3, "full", "max", "5.", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/5/default.jpg"),
    OK(3, "full", "max", "359.9", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/359.9/default.jpg"),
    OK(3, "full", "max", "0.123456789", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0.123456789/default.jpg"),
    OK(3, "full", "max", "0.00001", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0.00001/default.jpg"),
    OK(3, "full", "max", "0", "color.jpg", 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/color.jpg"),
    OK(3, "full", "max", "0", "gray.png", 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/gray.png"),
    OK(3, "full", "max", "0", "bitonal.png", 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/max/0/bitonal.png"),

    /* -- 3.0 plan-time errors -- */
    /* §4.1: wholly outside (x >= W or y >= H) */
    BAD(3, "300,0,10,10", "max", "0", D, 300, 200, 0, 0, 0, "region"),
    BAD(3, "0,200,10,10", "max", "0", D, 300, 200, 0, 0, 0, "region"),
    BAD(3, "4294967295,0,10,10", "max", "0", D, 300, 200, 0, 0, 0, "region"),
    /* pct x0 = 100% of W = W: outside; 99.95% of 1000 = 999.5 -> 1000: outside */
    BAD(3, "pct:100,0,10,10", "max", "0", D, 300, 200, 0, 0, 0, "region"),
    BAD(3, "pct:99.95,0,10,10", "max", "0", D, 1000, 1000, 0, 0, 0, "region"),
    BAD(3, "pct:0,100,10,10", "max", "0", D, 300, 200, 0, 0, 0, "region"),
    /* pct region rounding to no pixels: x1 = 0.1% of 300 = 0.3 -> 0 */
    BAD(3, "pct:0,0,0.1,0.1", "max", "0", D, 300, 200, 0, 0, 0, "region"),
    /* §4.2 without '^' nothing may exceed the region */
    BAD(3, "full", "301,", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(3, "full", ",201", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(3, "full", "pct:101", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(3, "full", "pct:100.1", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(3, "full", "301,200", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(3, "full", "300,201", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(3, "0,0,100,100", "101,", "0", D, 300, 200, 0, 0, 0, "size"),
    /* the region is clipped before sizing: 512,512 on the 488x288 edge tile is an upscale */
    BAD(3, "512,512,512,512", "512,512", "0", D, 1000, 800, 0, 0, 0, "size"),
    /* result below one pixel: pct:1 of 10x10 = 0.1 x 0.1 */
    BAD(3, "full", "pct:1", "0", D, 10, 10, 0, 0, 0, "size"),
    BAD(3, "full", "^pct:0.001", "0", D, 10, 10, 0, 0, 0, "size"),
    /* result above 32 bits: 2 * 4294967295 */
    BAD(3, "0,0,1,2", "^4294967295,", "0", D, 100, 100, 0, 0, 0, "size"),
    BAD(3, "full", "^pct:99999999999999999999", "0", D, 300, 200, 0, 0, 0, "size"),
    /* above the limits -> 400 (G4) */
    BAD(3, "full", "300,", "0", D, 300, 200, 200, 0, 0, "size"),
    BAD(3, "full", "^400,", "0", D, 300, 200, 360, 0, 0, "size"),
    BAD(3, "full", "^400,100", "0", D, 300, 200, 360, 0, 0, "size"),
    /* ^,300 with maxWidth 400: w = 450 > 400 */
    BAD(3, "full", "^,300", "0", D, 300, 200, 400, 0, 0, "size"),
    BAD(3, "full", "300,200", "0", D, 300, 200, 0, 0, 30000, "size"),
    BAD(3, "full", "pct:100", "0", D, 300, 200, 0, 0, 30000, "size"),
    BAD(3, "full", ",200", "0", D, 300, 200, 0, 150, 0, "size"),
    /* parse errors come before plan errors, left to right */
    BAD(3, "400,0,10,10", "bogus", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(3, "bogus", "bogus", "bogus", "bogus", 300, 200, 0, 0, 0, "region"),
    BAD(3, "full", "bogus", "bogus", "bogus", 300, 200, 0, 0, 0, "size"),
    BAD(3, "full", "max", "bogus", "bogus", 300, 200, 0, 0, 0, "rotation"),
    BAD(3, "full", "max", "0", "bogus.tif", 300, 200, 0, 0, 0, "quality"),
    BAD(3, "full", "max", "0", "default.tif", 300, 200, 0, 0, 0, "format"),

    /* -- 2.1 (B): full, max, no '^', implicit upscaling, 2.1 canonical sizes -- */
    OK(2, "full", "full", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/full/0/default.jpg"),
    OK(2, "full", "max", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/full/0/default.jpg"),
    /* max with maxWidth 200 -> 200x133; 2.1 canonical w, as 200*200/300 -> 133 */
    OK(2, "full", "max", "0", D, 300, 200, 200, 0, 0, 0, 0, 300, 200, 200, 133, "full/200,/0/default.jpg"),
    /* maxArea 30000: 212x141; 200*212/300 = 141.3 -> 141, so w, */
    OK(2, "full", "max", "0", D, 300, 200, 0, 0, 30000, 0, 0, 300, 200, 212, 141, "full/212,/0/default.jpg"),
    OK(2, "full", "150,", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,/0/default.jpg"),
    OK(2, "full", ",150", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 225, 150, "full/225,/0/default.jpg"),
    OK(2, "full", "pct:50", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,/0/default.jpg"),
    OK(2, "full", "pct:200", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 600, 400, "full/600,/0/default.jpg"),
    OK(2, "full", "600,", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 600, 400, "full/600,/0/default.jpg"),
    OK(2, "full", ",400", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 600, 400, "full/600,/0/default.jpg"),
    OK(2, "full", "225,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 225, 100, "full/225,100/0/default.jpg"),
    OK(2, "full", "150,101", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 101, "full/150,101/0/default.jpg"),
    OK(2, "full", "150,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,/0/default.jpg"),
    OK(2, "full", "300,200", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/full/0/default.jpg"),
    OK(2, "full", "!225,100", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 150, 100, "full/150,/0/default.jpg"),
    /* 2.1 !w,h may exceed the region: !1000,1000 -> width binds, h = 200*1000/300 = 666.7 -> 667 */
    OK(2, "full", "!1000,1000", "0", D, 300, 200, 0, 0, 0, 0, 0, 300, 200, 1000, 667, "full/1000,/0/default.jpg"),
    /* ... within the limits: box 400x400 -> 400 x 266.7 -> 267 */
    OK(2, "full", "!1000,1000", "0", D, 300, 200, 400, 0, 0, 0, 0, 300, 200, 400, 267, "full/400,/0/default.jpg"),
    OK(2, "full", "2,", "0", D, 4, 3, 0, 0, 0, 0, 0, 4, 3, 2, 2, "full/2,/0/default.jpg"),
    OK(2, "square", "full", "0", D, 300, 200, 0, 0, 0, 50, 0, 200, 200, 200, 200, "50,0,200,200/full/0/default.jpg"),
    OK(2, "square", "full", "0", D, 256, 256, 0, 0, 0, 0, 0, 256, 256, 256, 256, "full/full/0/default.jpg"),
    OK(2, "pct:41.6,7.5,40,70", "full", "0", D, 300, 200, 0, 0, 0, 125, 15, 120, 140, 120, 140, "125,15,120,140/full/0/default.jpg"),
    OK(2, "125,15,200,200", "full", "0", D, 300, 200, 0, 0, 0, 125, 15, 175, 185, 175, 185, "125,15,175,185/full/0/default.jpg"),
    OK(2, "125,15,120,140", "90,", "!345", "gray.jpg", 300, 200, 0, 0, 0, 125, 15, 120, 140, 90, 105, "125,15,120,140/90,/!345/gray.jpg"),
    OK(2, "full", "full", "!90", "native.jpg", 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/full/!90/default.jpg"),
    OK(2, "full", "full", "22.5", "bitonal.png", 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/full/22.5/bitonal.png"),
    OK(2, "full", "full", "360", "color.jpg", 300, 200, 0, 0, 0, 0, 0, 300, 200, 300, 200, "full/full/0/color.jpg"),
    OK(2, "512,512,488,288", "244,", "0", D, 1000, 800, 0, 0, 0, 512, 512, 488, 288, 244, 144, "512,512,488,288/244,/0/default.jpg"),
    /* full above the limits is still a 400 (max is fitted) */
    BAD(2, "full", "full", "0", D, 300, 200, 200, 0, 0, "size"),
    BAD(2, "full", "600,", "0", D, 300, 200, 500, 0, 0, "size"),
    BAD(2, "full", "^max", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(2, "full", "^100,", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(2, "full", "^pct:50", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(2, "full", "^!100,100", "0", D, 300, 200, 0, 0, 0, "size"),
    BAD(2, "full", "pct:1", "0", D, 10, 10, 0, 0, 0, "size"),
    BAD(2, "300,0,10,10", "full", "0", D, 300, 200, 0, 0, 0, "region"),
    BAD(2, "full", "full", "0", "default.tif", 300, 200, 0, 0, 0, "format"),
    BAD(2, "full", "full", "0", "default.webp", 300, 200, 0, 0, 0, "format"),
};
/* clang-format on */

/* ---- one bad value for one parameter, the others valid ------------------------------------- */

enum which { P_REGION, P_SIZE, P_ROT, P_QF };

struct bad_case {
    int ver; /* 0 = both versions */
    enum which param;
    const char *value;
    const char *msg_has;
};

/* clang-format off */
static const struct bad_case bad_cases[] = {
    /* region syntax (3.0 §4.1: non-negative integers; pct floats per §4.7) */
    {0, P_REGION, "", "region"},
    {0, P_REGION, "Full", "region"},
    {0, P_REGION, "FULL", "region"},
    {0, P_REGION, "full ", "region"},
    {0, P_REGION, "square ", "region"},
    {0, P_REGION, "-1,0,10,10", "region"},
    {0, P_REGION, "+1,0,10,10", "region"},
    {0, P_REGION, "1e3,0,10,10", "region"},
    {0, P_REGION, "0x10,0,10,10", "region"},
    {0, P_REGION, "nan,0,10,10", "region"},
    {0, P_REGION, "inf,0,10,10", "region"},
    {0, P_REGION, "1.5,0,10,10", "region"},
    {0, P_REGION, "1.2.3,0,10,10", "region"},
    {0, P_REGION, ",0,10,10", "region"},
    {0, P_REGION, "0,,10,10", "region"},
    {0, P_REGION, "0,0,10", "region"},
    {0, P_REGION, "0,0,10,10,10", "region"},
    {0, P_REGION, "0,0,10,10,", "region"},
    {0, P_REGION, " 1,0,10,10", "region"},
    {0, P_REGION, "1 ,0,10,10", "region"},
    {0, P_REGION, "0,0,10,10 ", "region"},
    {0, P_REGION, "99999999999999999999,0,10,10", "region"},
    {0, P_REGION, "4294967296,0,10,10", "region"},
    {0, P_REGION, "0,0,18446744073709551617,10", "region"},
    {0, P_REGION, "0,0,0,10", "region"},
    {0, P_REGION, "0,0,10,0", "region"},
    {0, P_REGION, "0,0,0,0", "region"},
    {0, P_REGION, "pct:", "region"},
    {0, P_REGION, "pct:0,0,10", "region"},
    {0, P_REGION, "pct:0,0,10,10,10", "region"},
    {0, P_REGION, "pct:-1,0,10,10", "region"},
    {0, P_REGION, "pct:+1,0,10,10", "region"},
    {0, P_REGION, "pct:1e1,0,10,10", "region"},
    {0, P_REGION, "pct:1E1,0,10,10", "region"},
    {0, P_REGION, "pct:nan,0,10,10", "region"},
    {0, P_REGION, "pct:inf,0,10,10", "region"},
    {0, P_REGION, "pct:0x1,0,10,10", "region"},
    {0, P_REGION, "pct:1.2.3,0,10,10", "region"},
    {0, P_REGION, "pct:.,0,10,10", "region"},
    {0, P_REGION, "pct: 1,0,10,10", "region"},
    {0, P_REGION, "pct:0,0,0,10", "region"},
    {0, P_REGION, "pct:0,0,10,0.0", "region"},
    {0, P_REGION, "PCT:0,0,10,10", "region"},
    {0, P_REGION, "pct :0,0,10,10", "region"},
    {0, P_REGION, "pct:0,0,10,10%", "region"},
    /* size syntax */
    {0, P_SIZE, "", "size"},
    {0, P_SIZE, "MAX", "size"},
    {0, P_SIZE, "max ", "size"},
    {0, P_SIZE, ",", "size"},
    {0, P_SIZE, "w,", "size"},
    {0, P_SIZE, "-1,", "size"},
    {0, P_SIZE, "+1,", "size"},
    {0, P_SIZE, "1e3,", "size"},
    {0, P_SIZE, "0x10,", "size"},
    {0, P_SIZE, "nan,", "size"},
    {0, P_SIZE, "inf,", "size"},
    {0, P_SIZE, "1.5,", "size"},
    {0, P_SIZE, " 1,", "size"},
    {0, P_SIZE, "1 ,", "size"},
    {0, P_SIZE, "1,2,3", "size"},
    {0, P_SIZE, "10,10,", "size"},
    {0, P_SIZE, "100", "size"},
    {0, P_SIZE, "0,", "size"},
    {0, P_SIZE, ",0", "size"},
    {0, P_SIZE, "0,0", "size"},
    {0, P_SIZE, "!0,10", "size"},
    {0, P_SIZE, "!100,", "size"},
    {0, P_SIZE, "!,100", "size"},
    {0, P_SIZE, "!100", "size"},
    {0, P_SIZE, "!!100,100", "size"},
    {0, P_SIZE, "99999999999999999999,", "size"},
    {0, P_SIZE, "4294967296,", "size"},
    {0, P_SIZE, ",4294967296", "size"},
    {0, P_SIZE, "pct:", "size"},
    {0, P_SIZE, "pct:-5", "size"},
    {0, P_SIZE, "pct:+5", "size"},
    {0, P_SIZE, "pct:1e2", "size"},
    {0, P_SIZE, "pct:nan", "size"},
    {0, P_SIZE, "pct:inf", "size"},
    {0, P_SIZE, "pct:0x10", "size"},
    {0, P_SIZE, "pct:1.2.3", "size"},
    {0, P_SIZE, "pct:0", "size"},
    {0, P_SIZE, "pct:0.0", "size"},
    {0, P_SIZE, "pct:50%", "size"},
    {0, P_SIZE, "pct: 50", "size"},
    {0, P_SIZE, "PCT:50", "size"},
    {3, P_SIZE, "full", "size"}, /* A4, G15: removed in 3.0 */
    {3, P_SIZE, "^full", "size"},
    {3, P_SIZE, "^", "size"},
    {3, P_SIZE, "^^max", "size"},
    {3, P_SIZE, "!^100,100", "size"},
    {3, P_SIZE, "^abc", "size"},
    {3, P_SIZE, "^0,", "size"},
    {3, P_SIZE, "^pct:0", "size"},
    {2, P_SIZE, "^max", "size"}, /* B: no '^' in 2.1 */
    {2, P_SIZE, "^100,", "size"},
    {2, P_SIZE, "^full", "size"},
    /* rotation (3.0 §4.3) */
    {0, P_ROT, "", "rotation"},
    {0, P_ROT, "!", "rotation"},
    {0, P_ROT, "-1", "rotation"},
    {0, P_ROT, "-0", "rotation"},
    {0, P_ROT, "+1", "rotation"},
    {0, P_ROT, "1e3", "rotation"},
    {0, P_ROT, "1E2", "rotation"},
    {0, P_ROT, "0x10", "rotation"},
    {0, P_ROT, "nan", "rotation"},
    {0, P_ROT, "inf", "rotation"},
    {0, P_ROT, "1.2.3", "rotation"},
    {0, P_ROT, ".", "rotation"},
    {0, P_ROT, " 1", "rotation"},
    {0, P_ROT, "1 ", "rotation"},
    {0, P_ROT, "360.1", "rotation"},
    {0, P_ROT, "361", "rotation"},
    {0, P_ROT, "720", "rotation"},
    {0, P_ROT, "99999999999999999999", "rotation"},
    {0, P_ROT, "!!90", "rotation"},
    {0, P_ROT, "!-90", "rotation"},
    {0, P_ROT, "90!", "rotation"},
    {0, P_ROT, "1,5", "rotation"},
    {0, P_ROT, "ninety", "rotation"},
    /* quality.format (3.0 §4.4-4.5) */
    {0, P_QF, "", "quality"},
    {0, P_QF, "default", "quality"},
    {0, P_QF, "default.", "format"},
    {0, P_QF, ".jpg", "quality"},
    {0, P_QF, "default.jpg.jpg", "quality"},
    {0, P_QF, "default..jpg", "quality"},
    {0, P_QF, "Default.jpg", "quality"},
    {0, P_QF, "grey.jpg", "quality"},
    {0, P_QF, "default.JPG", "format"},
    {0, P_QF, "default.jpeg", "format"},
    {0, P_QF, "default.jpg ", "format"},
    {0, P_QF, "default.tif", "format"},
    {0, P_QF, "default.gif", "format"},
    {0, P_QF, "default.jp2", "format"},
    {0, P_QF, "default.pdf", "format"},
    {0, P_QF, "default.webp", "format"},
    {3, P_QF, "native.jpg", "quality"}, /* 1.x/2.x name, not 3.0 */
};
/* clang-format on */

/* ---- percent-decoding, path splitting, fit_limits ----------------------------------------- */

struct decode_case {
    const char *src;
    size_t len;       /* 0 = strlen(src) */
    const char *want; /* NULL = 400 */
};

/* clang-format off */
static const struct decode_case decode_cases[] = {
    {"abc", 0, "abc"},
    {"", 0, ""},
    {"a%2Fb", 0, "a/b"},
    {"a%2fb", 0, "a/b"},
    {"%252F", 0, "%2F"}, /* decoded once: A2 double-encoding is literal */
    {"a+b", 0, "a+b"},   /* path semantics: '+' is not a space */
    {"%41%42", 0, "AB"},
    {"%2D", 0, "-"},
    {"%C3%A9", 0, "\xc3\xa9"},
    {"%5E!100,100", 0, "^!100,100"},
    {"abc%41", 3, "abc"},
    {"%zz", 0, NULL},
    {"%4", 0, NULL},
    {"%", 0, NULL},
    {"abc%", 0, NULL},
    {"abc%2", 0, NULL},
    {"%g0", 0, NULL},
    {"%0g", 0, NULL},
    {"%00", 0, NULL},
    {"a%00b", 0, NULL},
    {"%%41", 0, NULL},
    {"a\0b", 3, NULL},
    {"%41", 2, NULL}, /* the escape is cut by len */
};
/* clang-format on */

struct split_case {
    const char *raw;
    int status;
    enum iiif_target target;
    const char *identifier, *id_raw;
    const char *params[4];
    const char *msg_has;
};

/* clang-format off */
static const struct split_case split_cases[] = {
    {"abc/info.json", 0, IIIF_TARGET_INFO, "abc", "abc", {NULL}, NULL},
    {"a%2Fb/info.json", 0, IIIF_TARGET_INFO, "a/b", "a%2Fb", {NULL}, NULL},
    {"a%252Fb/info.json", 0, IIIF_TARGET_INFO, "a%2Fb", "a%252Fb", {NULL}, NULL},
    {"a%2Db/info.json", 0, IIIF_TARGET_INFO, "a-b", "a%2Db", {NULL}, NULL},
    {"a+b/info.json", 0, IIIF_TARGET_INFO, "a+b", "a+b", {NULL}, NULL},
    {"ark:%2F12025%2F654xz321/info.json", 0, IIIF_TARGET_INFO, "ark:/12025/654xz321",
     "ark:%2F12025%2F654xz321", {NULL}, NULL},
    {"a/b/info.json", 0, IIIF_TARGET_INFO, "a/b", "a/b", {NULL}, NULL},
    {"abc/full/max/0/default.jpg/info.json", 0, IIIF_TARGET_INFO, "abc/full/max/0/default.jpg",
     "abc/full/max/0/default.jpg", {NULL}, NULL},
    {"info.json", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"/info.json", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"abc", 0, IIIF_TARGET_BASE, "abc", "abc", {NULL}, NULL},
    {"abc/", 0, IIIF_TARGET_BASE, "abc", "abc", {NULL}, NULL},
    {"a%2Fb/", 0, IIIF_TARGET_BASE, "a/b", "a%2Fb", {NULL}, NULL},
    {"a/b", 0, IIIF_TARGET_BASE, "a/b", "a/b", {NULL}, NULL},
    {"id/info.json/", 0, IIIF_TARGET_BASE, "id/info.json", "id/info.json", {NULL}, NULL},
    {"", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"/", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"abc/full/max/0/default.jpg", 0, IIIF_TARGET_IMAGE, "abc", "abc",
     {"full", "max", "0", "default.jpg"}, NULL},
    /* A2: a literal slash in an identifier still splits from the right (404 later, not 400) */
    {"a/b/full/max/0/default.jpg", 0, IIIF_TARGET_IMAGE, "a/b", "a/b",
     {"full", "max", "0", "default.jpg"}, NULL},
    {"a%2Fb/full/max/0/default.jpg", 0, IIIF_TARGET_IMAGE, "a/b", "a%2Fb",
     {"full", "max", "0", "default.jpg"}, NULL},
    {"a%252Fb/full/max/0/default.jpg", 0, IIIF_TARGET_IMAGE, "a%2Fb", "a%252Fb",
     {"full", "max", "0", "default.jpg"}, NULL},
    {"abc/pct%3A10,10,10,10/%5E!100,100/%2190/default.jpg", 0, IIIF_TARGET_IMAGE, "abc", "abc",
     {"pct:10,10,10,10", "^!100,100", "!90", "default.jpg"}, NULL},
    {"abc//full/max/0/default.jpg", 0, IIIF_TARGET_IMAGE, "abc/", "abc/",
     {"full", "max", "0", "default.jpg"}, NULL},
    {"abc/full/max/0/default.jpg%2Ejpg", 0, IIIF_TARGET_IMAGE, "abc", "abc",
     {"full", "max", "0", "default.jpg.jpg"}, NULL},
    /* no '.' in the last segment: not an image request */
    {"abc/full/max/0/default", 0, IIIF_TARGET_BASE, "abc/full/max/0/default",
     "abc/full/max/0/default", {NULL}, NULL},
    /* only four segments: the whole thing is an identifier */
    {"full/max/0/default.jpg", 0, IIIF_TARGET_BASE, "full/max/0/default.jpg",
     "full/max/0/default.jpg", {NULL}, NULL},
    {"/full/max/0/default.jpg", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"%zz/info.json", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"%4/info.json", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"a%00b/info.json", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"a%00b", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"abc%", 400, 0, NULL, NULL, {NULL}, "identifier"},
    {"abc/%zz/max/0/default.jpg", 400, 0, NULL, NULL, {NULL}, "region"},
    {"abc/full/%4/0/default.jpg", 400, 0, NULL, NULL, {NULL}, "size"},
    {"abc/full/max/%00/default.jpg", 400, 0, NULL, NULL, {NULL}, "rotation"},
    {"abc/full/max/0/default.jpg%", 400, 0, NULL, NULL, {NULL}, "quality"},
};
/* clang-format on */

struct fit_case {
    uint32_t w, h, max_w, max_h;
    uint64_t max_area;
    uint32_t out_w, out_h;
};

/* A9 / implementation note §4, worked by hand. */
/* clang-format off */
static const struct fit_case fit_cases[] = {
    {300, 200, 0, 0, 0, 300, 200},
    {300, 200, 200, 0, 0, 200, 133},          /* 200*200/300 = 133.3 */
    {200, 300, 200, 0, 0, 133, 200},          /* maxHeight = maxWidth */
    {300, 200, 0, 100, 0, 150, 100},
    {300, 200, 0, 0, 30000, 212, 141},        /* s = 0.7071 */
    {300, 200, 0, 0, 60000, 300, 200},        /* exactly at the area: untouched */
    {4000, 3000, 1000, 0, 1000000, 1000, 750},
    {1, 1000000, 0, 0, 100, 1, 100},
    {6000, 4000, 1000, 800, 0, 1000, 667},    /* 4000*1000/6000 = 666.7 */
    {3000, 4000, 1000, 800, 0, 600, 800},     /* w step -> 1000x1333, h step -> 600x800 */
    {100, 100, 1000, 1000, 0, 100, 100},      /* never upscales */
    {1000, 1000, 0, 0, 250000, 500, 500},     /* s = 0.5 exactly */
    {1000, 1, 10, 0, 0, 10, 1},               /* h = 0.01 -> at least 1 */
    {4294967295u, 4294967295u, 0, 0, 0, 4294967295u, 4294967295u},
    {4294967295u, 4294967295u, 1000, 0, 0, 1000, 1000},
};
/* clang-format on */

/* ---- runners -------------------------------------------------------------------------------- */

static int is_plain_ascii(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    }
    return 1;
}

static void run_req_cases(void)
{
    for (size_t i = 0; i < sizeof req_cases / sizeof req_cases[0]; i++) {
        const struct req_case *c = &req_cases[i];
        struct iiif_limits lim = {c->max_w, c->max_h, c->max_area};
        struct iiif_params p;
        struct iiif_plan plan;
        struct verr err = {0, ""};
        char canon[256];
        int rc;

        rc = iiif_parse((enum iiif_version)c->ver, c->region, c->size, c->rot, c->qf, &p, &err);
        if (rc == 0)
            rc = iiif_plan_request(&p, c->img_w, c->img_h, &lim, &plan, &err);
        if (c->status) {
            CHECK_MSG(rc == -1 && err.status == c->status,
                      "req %zu v%d %s/%s/%s/%s: rc %d status %d", i, c->ver, c->region, c->size,
                      c->rot, c->qf, rc, err.status);
            CHECK_MSG(strstr(err.msg, c->msg_has) != NULL, "req %zu: \"%s\" lacks \"%s\"", i,
                      err.msg, c->msg_has);
            CHECK_MSG(is_plain_ascii(err.msg), "req %zu: message not plain ASCII", i);
            continue;
        }
        CHECK_MSG(rc == 0, "req %zu v%d %s/%s/%s/%s on %ux%u: %s", i, c->ver, c->region, c->size,
                  c->rot, c->qf, c->img_w, c->img_h, err.msg);
        if (rc != 0)
            continue;
        CHECK_MSG(plan.x == c->x && plan.y == c->y && plan.w == c->w && plan.h == c->h,
                  "req %zu %s: region %u,%u,%u,%u want %u,%u,%u,%u", i, c->region, plan.x, plan.y,
                  plan.w, plan.h, c->x, c->y, c->w, c->h);
        CHECK_MSG(plan.out_w == c->out_w && plan.out_h == c->out_h,
                  "req %zu %s/%s: out %ux%u want %ux%u", i, c->region, c->size, plan.out_w,
                  plan.out_h, c->out_w, c->out_h);
        CHECK_MSG(plan.rotation >= 0 && plan.rotation < 360, "req %zu: rotation %g", i,
                  plan.rotation);
        rc = iiif_canonical(&plan, (enum iiif_version)c->ver, c->img_w, c->img_h, &lim, canon,
                            sizeof canon);
        CHECK_MSG(rc > 0 && strcmp(canon, c->canonical) == 0 && (size_t)rc == strlen(canon),
                  "req %zu: canonical \"%s\" (rc %d) want \"%s\"", i, rc > 0 ? canon : "", rc,
                  c->canonical);
    }
}

static void run_bad_cases(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        for (int ver = 2; ver <= 3; ver++) {
            const char *v[4] = {"full", ver == 3 ? "max" : "full", "0", "default.jpg"};
            struct iiif_params p;
            struct iiif_plan plan;
            struct verr err = {0, ""};
            int rc;

            if (c->ver && c->ver != ver)
                continue;
            v[c->param] = c->value;
            rc = iiif_parse((enum iiif_version)ver, v[0], v[1], v[2], v[3], &p, &err);
            if (rc == 0) /* a few (pct:0,0,0.1,...) only fail once planned */
                rc = iiif_plan_request(&p, 300, 200, NULL, &plan, &err);
            CHECK_MSG(rc == -1 && err.status == 400, "bad %zu v%d \"%s\": rc %d status %d", i, ver,
                      c->value, rc, err.status);
            CHECK_MSG(strstr(err.msg, c->msg_has) != NULL, "bad %zu v%d: \"%s\" lacks \"%s\"", i,
                      ver, err.msg, c->msg_has);
            CHECK_MSG(is_plain_ascii(err.msg), "bad %zu: message not plain ASCII", i);
        }
    }
}

static void run_decode_cases(void)
{
    for (size_t i = 0; i < sizeof decode_cases / sizeof decode_cases[0]; i++) {
        const struct decode_case *c = &decode_cases[i];
        struct verr err = {0, ""};
        size_t len = c->len ? c->len : strlen(c->src);
        char *got = iiif_percent_decode(c->src, len, &err);

        if (c->want) {
            CHECK_MSG(got && strcmp(got, c->want) == 0, "decode %zu \"%s\": got \"%s\" (%s)", i,
                      c->src, got ? got : "(null)", err.msg);
        } else {
            CHECK_MSG(!got && err.status == 400, "decode %zu \"%s\": want 400", i, c->src);
            CHECK_MSG(is_plain_ascii(err.msg) && err.msg[0], "decode %zu: message", i);
        }
        free(got);
    }
}

static void run_split_cases(void)
{
    for (size_t i = 0; i < sizeof split_cases / sizeof split_cases[0]; i++) {
        const struct split_case *c = &split_cases[i];
        struct iiif_path path;
        struct verr err = {0, ""};
        int rc = iiif_split_path(c->raw, &path, &err);

        if (c->status) {
            CHECK_MSG(rc == -1 && err.status == c->status, "split %zu \"%s\": rc %d status %d", i,
                      c->raw, rc, err.status);
            CHECK_MSG(strstr(err.msg, c->msg_has) != NULL, "split %zu: \"%s\" lacks \"%s\"", i,
                      err.msg, c->msg_has);
            CHECK_MSG(!path.identifier && !path.id_raw && !path.params[0],
                      "split %zu: not cleared on error", i);
            iiif_path_clear(&path);
            continue;
        }
        CHECK_MSG(rc == 0, "split %zu \"%s\": %s", i, c->raw, err.msg);
        if (rc != 0)
            continue;
        CHECK_MSG(path.target == c->target, "split %zu \"%s\": target %d want %d", i, c->raw,
                  (int)path.target, (int)c->target);
        CHECK_MSG(strcmp(path.identifier, c->identifier) == 0, "split %zu: id \"%s\" want \"%s\"",
                  i, path.identifier, c->identifier);
        CHECK_MSG(strcmp(path.id_raw, c->id_raw) == 0, "split %zu: id_raw \"%s\" want \"%s\"", i,
                  path.id_raw, c->id_raw);
        for (int k = 0; k < 4; k++) {
            if (c->target == IIIF_TARGET_IMAGE)
                CHECK_MSG(path.params[k] && strcmp(path.params[k], c->params[k]) == 0,
                          "split %zu: param %d \"%s\" want \"%s\"", i, k,
                          path.params[k] ? path.params[k] : "(null)", c->params[k]);
            else
                CHECK_MSG(path.params[k] == NULL, "split %zu: param %d set", i, k);
        }
        iiif_path_clear(&path);
        CHECK(path.identifier == NULL && path.id_raw == NULL);
        iiif_path_clear(&path); /* twice is harmless */
    }
}

static void run_fit_cases(void)
{
    for (size_t i = 0; i < sizeof fit_cases / sizeof fit_cases[0]; i++) {
        const struct fit_case *c = &fit_cases[i];
        struct iiif_limits lim = {c->max_w, c->max_h, c->max_area};
        uint32_t w = 0, h = 0;

        iiif_fit_limits(c->w, c->h, &lim, &w, &h);
        CHECK_MSG(w == c->out_w && h == c->out_h, "fit %zu %ux%u: got %ux%u want %ux%u", i, c->w,
                  c->h, w, h, c->out_w, c->out_h);
    }
}

/* ---- the rest: parsed fields, messages, names, buffers -------------------------------------- */

static void test_parsed_fields(void)
{
    struct iiif_params p;
    struct verr err = {0, ""};

    CHECK_INT(iiif_parse(IIIF_V3, "pct:41.6,7.5,40,70", "^!360,360", "!22.5", "gray.png", &p, &err),
              0);
    CHECK_INT(p.version, IIIF_V3);
    CHECK_INT(p.region_kind, IIIF_REGION_PCT);
    CHECK(p.region[0] == 41.6 && p.region[1] == 7.5 && p.region[2] == 40 && p.region[3] == 70);
    CHECK_INT(p.size_kind, IIIF_SIZE_CONFINED);
    CHECK(p.upscale);
    CHECK_INT(p.size_w, 360);
    CHECK_INT(p.size_h, 360);
    CHECK(p.mirror);
    CHECK(p.rotation == 22.5);
    CHECK_INT(p.quality, IIIF_QUALITY_GRAY);
    CHECK_INT(p.format, IIIF_FORMAT_PNG);

    CHECK_INT(iiif_parse(IIIF_V3, "1,2,3,4", "pct:12.5", "360", "default.jpg", &p, &err), 0);
    CHECK_INT(p.region_kind, IIIF_REGION_PX);
    CHECK(p.region[0] == 1 && p.region[3] == 4);
    CHECK_INT(p.size_kind, IIIF_SIZE_PCT);
    CHECK(!p.upscale && p.size_pct == 12.5);
    CHECK(!p.mirror && p.rotation == 360); /* params keep 360; the plan normalises it */

    CHECK_INT(iiif_parse(IIIF_V2, "square", "full", "0", "native.png", &p, &err), 0);
    CHECK_INT(p.region_kind, IIIF_REGION_SQUARE);
    CHECK_INT(p.size_kind, IIIF_SIZE_FULL);
    CHECK_INT(p.quality, IIIF_QUALITY_DEFAULT);

    CHECK_INT(iiif_parse(IIIF_V3, "full", "10,", "0", "default.jpg", &p, &err), 0);
    CHECK_INT(p.size_kind, IIIF_SIZE_W);
    CHECK_INT(iiif_parse(IIIF_V3, "full", ",10", "0", "default.jpg", &p, &err), 0);
    CHECK_INT(p.size_kind, IIIF_SIZE_H);
    CHECK_INT(iiif_parse(IIIF_V3, "full", "10,20", "0", "default.jpg", &p, &err), 0);
    CHECK_INT(p.size_kind, IIIF_SIZE_WH);
    CHECK_INT(iiif_parse(IIIF_V3, "full", "^max", "0", "default.jpg", &p, &err), 0);
    CHECK(p.size_kind == IIIF_SIZE_MAX && p.upscale);
    CHECK_INT(iiif_parse(IIIF_V3, "full", "4294967295,4294967295", "0", "default.jpg", &p, &err),
              0);
    CHECK(p.size_w == 4294967295u && p.size_h == 4294967295u);
    CHECK_INT(iiif_parse(IIIF_V3, NULL, "max", "0", "default.jpg", &p, &err), -1);
    CHECK_INT(err.status, 400);
}

static void test_messages(void)
{
    struct iiif_params p;
    struct verr err = {0, ""};
    size_t big = 10 * 1024;
    char *junk = malloc(big + 1);
    char ctl[] = "\x01\x7f\xc3\xa9\t\r\n,1,1,1";

    CHECK(junk != NULL);
    if (!junk)
        return;
    /* a 10 KB value: truncated, marked, still names the parameter and starts with the value */
    memset(junk, '9', big);
    junk[big] = '\0';
    CHECK_INT(iiif_parse(IIIF_V3, junk, "max", "0", "default.jpg", &p, &err), -1);
    CHECK_INT(err.status, 400);
    CHECK(strstr(err.msg, "region") != NULL);
    CHECK(strstr(err.msg, "9999999999") != NULL);
    CHECK(strstr(err.msg, "...") != NULL);
    CHECK(strlen(err.msg) < sizeof err.msg - 1); /* not cut off by the buffer */
    CHECK_INT(iiif_parse(IIIF_V3, "full", junk, "0", "default.jpg", &p, &err), -1);
    CHECK(strstr(err.msg, "size") != NULL);
    CHECK_INT(iiif_parse(IIIF_V3, "full", "max", junk, "default.jpg", &p, &err), -1);
    CHECK(strstr(err.msg, "rotation") != NULL);
    memset(junk, 'x', big);
    junk[big - 4] = '.';
    CHECK_INT(iiif_parse(IIIF_V3, "full", "max", "0", junk, &p, &err), -1);
    CHECK(strstr(err.msg, "quality") != NULL);
    CHECK(strlen(err.msg) < sizeof err.msg - 1);
    free(junk);

    /* control bytes and UTF-8 come back as '?' */
    CHECK_INT(iiif_parse(IIIF_V3, ctl, "max", "0", "default.jpg", &p, &err), -1);
    CHECK(is_plain_ascii(err.msg));
    CHECK(strstr(err.msg, "\"???????,1,1,1\"") != NULL);

    /* the format message says what is supported */
    CHECK_INT(iiif_parse(IIIF_V3, "full", "max", "0", "default.webp", &p, &err), -1);
    CHECK(strstr(err.msg, "webp") != NULL && strstr(err.msg, "jpg") != NULL &&
          strstr(err.msg, "png") != NULL);
    /* size errors name the value and the region */
    {
        struct iiif_plan plan;
        CHECK_INT(iiif_parse(IIIF_V3, "full", "301,", "0", "default.jpg", &p, &err), 0);
        CHECK_INT(iiif_plan_request(&p, 300, 200, NULL, &plan, &err), -1);
        CHECK(strstr(err.msg, "301,") != NULL && strstr(err.msg, "300x200") != NULL);
        /* an image without pixels is the server's problem */
        CHECK_INT(iiif_parse(IIIF_V3, "full", "max", "0", "default.jpg", &p, &err), 0);
        CHECK_INT(iiif_plan_request(&p, 0, 200, NULL, &plan, &err), -1);
        CHECK_INT(err.status, 500);
    }
}

static void test_names_and_buffers(void)
{
    struct iiif_plan plan = {
        0, 0, 300, 200, 150, 100, true, 22.5, IIIF_QUALITY_BITONAL, IIIF_FORMAT_PNG};
    const char *want = "full/150,100/!22.5/bitonal.png";
    char buf[64];

    CHECK_STR(iiif_quality_name(IIIF_QUALITY_DEFAULT), "default");
    CHECK_STR(iiif_quality_name(IIIF_QUALITY_COLOR), "color");
    CHECK_STR(iiif_quality_name(IIIF_QUALITY_GRAY), "gray");
    CHECK_STR(iiif_quality_name(IIIF_QUALITY_BITONAL), "bitonal");
    CHECK_STR(iiif_format_ext(IIIF_FORMAT_JPG), "jpg");
    CHECK_STR(iiif_format_ext(IIIF_FORMAT_PNG), "png");
    CHECK_STR(iiif_format_mime(IIIF_FORMAT_JPG), "image/jpeg");
    CHECK_STR(iiif_format_mime(IIIF_FORMAT_PNG), "image/png");

    /* canonical needs room for the terminating NUL */
    CHECK_INT(iiif_canonical(&plan, IIIF_V3, 300, 200, NULL, buf, sizeof buf), (int)strlen(want));
    CHECK_STR(buf, want);
    CHECK_INT(iiif_canonical(&plan, IIIF_V3, 300, 200, NULL, buf, strlen(want) + 1),
              (int)strlen(want));
    CHECK_INT(iiif_canonical(&plan, IIIF_V3, 300, 200, NULL, buf, strlen(want)), -1);
    CHECK_INT(iiif_canonical(&plan, IIIF_V3, 300, 200, NULL, NULL, 0), -1);
    CHECK_INT(iiif_canonical(&plan, IIIF_V2, 300, 200, NULL, buf, sizeof buf),
              (int)strlen("full/150,/!22.5/bitonal.png"));
    CHECK_STR(buf, "full/150,/!22.5/bitonal.png");

    /* clearing a zeroed path is safe */
    {
        struct iiif_path path;
        memset(&path, 0, sizeof path);
        iiif_path_clear(&path);
        iiif_path_clear(NULL);
        CHECK(path.identifier == NULL);
    }
}

int main(void)
{
    size_t rows = sizeof req_cases / sizeof req_cases[0] + sizeof bad_cases / sizeof bad_cases[0] +
                  sizeof decode_cases / sizeof decode_cases[0] +
                  sizeof split_cases / sizeof split_cases[0] +
                  sizeof fit_cases / sizeof fit_cases[0];

    run_req_cases();
    run_bad_cases();
    run_decode_cases();
    run_split_cases();
    run_fit_cases();
    test_parsed_fields();
    test_messages();
    test_names_and_buffers();
    fprintf(stderr, "%zu table rows\n", rows);
    return CHECK_DONE();
}
