"""IIIF Image API 3.0 and 2.1 through real nginx, on images made at test time with opj_compress,
cjpeg and a PNG writer; pixels compared with opj_decompress / djpeg output (independent decoders)."""
import json
import math
import os
import shutil
import subprocess

import harness as t
import pixels as px

work = t.tmpdir()
root = os.path.join(work, "images")
os.makedirs(os.path.join(root, "sub", "dir"))

W, H = 800, 600


def chart(x, y):
    return ((x * 255) // (W - 1), (y * 255) // (H - 1), 60 + ((x // 100 + y // 100) % 2) * 120)


rgb = bytes(c for y in range(H) for x in range(W) for c in chart(x, y))
px.write_pnm(os.path.join(work, "chart.ppm"), W, H, 3, rgb)
grey = bytes((x + 2 * y) % 256 for y in range(H) for x in range(W))
px.write_pnm(os.path.join(work, "grey.pgm"), W, H, 1, grey)
stripes = bytes(255 * ((x + (y // 3)) % 2) for y in range(H) for x in range(W))
px.write_pnm(os.path.join(work, "stripes.pgm"), W, H, 1, stripes)


def opj(src, dst, *args):
    subprocess.run(["opj_compress", "-i", src, "-o", dst] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


opj(os.path.join(work, "chart.ppm"), os.path.join(root, "tiled.jp2"), "-t", "256,256", "-n", "4")
opj(os.path.join(work, "chart.ppm"), os.path.join(root, "untiled.j2k"), "-n", "5")
opj(os.path.join(work, "grey.pgm"), os.path.join(root, "grey.jp2"), "-n", "4")
opj(os.path.join(work, "stripes.pgm"), os.path.join(root, "stripes.jp2"), "-n", "4")
opj(os.path.join(work, "chart.ppm"), os.path.join(root, "sub", "dir", "nested.jp2"), "-n", "3")
subprocess.run(["cjpeg", "-quality", "95", "-outfile", os.path.join(root, "photo.jpg"),
                os.path.join(work, "chart.ppm")], check=True)


px.write_png(os.path.join(root, "flat.png"), W, H, 3, rgb)
with open(os.path.join(work, "outside.jp2"), "wb") as f:
    f.write(open(os.path.join(root, "grey.jp2"), "rb").read())
os.symlink(os.path.join(work, "outside.jp2"), os.path.join(root, "escape.jp2"))
os.symlink(os.path.join(root, "grey.jp2"), os.path.join(root, "alias.jp2"))

v = t.Vellum(work, args=["--workers", "2", "--image-root", root])
n = t.Nginx(work, v.fastcgi_address)
base = "http://127.0.0.1:%d" % n.port
full_ref = px.opj_reference(os.path.join(root, "tiled.jp2"))
t.check(full_ref[:3] == (W, H, 3) and full_ref[3] == rgb, "reference: opj_decompress round-trips the lossless source")


def get(path, headers=None, method="GET"):
    return t.request(n.port, path, headers=headers, method=method)


def get_png(path):
    st, h, body = get(path)
    if st != 200 or not h.get("content-type") == "image/png":
        return None, st, body[:200]
    return px.read_png(body), st, h


# ---- info.json 3.0 -----------------------------------------------------------------------
st, h, body = get("/iiif/3/tiled.jp2/info.json")
info = json.loads(body) if st == 200 else {}
t.check(st == 200, "info.json 3.0 is 200 (%d %r)" % (st, body[:200]))
t.check(h.get("content-type") == 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"',
        "info.json 3.0 default content type is JSON-LD with the profile (%s)" % h.get("content-type"))
t.check(h.get("access-control-allow-origin") == "*", "info.json has CORS *")
t.check(list(info)[:1] == ["@context"] and info.get("@context") == "http://iiif.io/api/image/3/context.json",
        "info.json 3.0 @context comes first")
t.check(info.get("id") == base + "/iiif/3/tiled.jp2", "info.json id is the request's base URI (%s)" % info.get("id"))
t.check(info.get("type") == "ImageService3" and info.get("protocol") == "http://iiif.io/api/image"
        and info.get("profile") == "level2", "info.json 3.0 type, protocol, profile")
t.check(info.get("width") == W and info.get("height") == H, "info.json size is the image's")
tiles = info.get("tiles", [{}])[0]
t.check(tiles.get("width") == 256 and tiles.get("height") == 256 and tiles.get("scaleFactors") == [1, 2, 4, 8],
        "tiles follow the 256x256 JP2 tile grid and its 4 resolution levels (%s)" % tiles)
sizes = [(s["width"], s["height"]) for s in info.get("sizes", [])]
t.check((100, 75) in sizes and (400, 300) in sizes and sizes == sorted(sizes),
        "sizes are ceil(W/sf) x ceil(H/sf), smallest first (%s)" % sizes)
t.check(set(info.get("extraQualities", [])) == {"color", "gray", "bitonal"}, "colour image offers color, gray, bitonal")
t.check({"mirroring", "rotationArbitrary", "sizeUpscaling", "canonicalLinkHeader", "profileLinkHeader"}
        <= set(info.get("extraFeatures", [])), "extraFeatures list what Vellum does beyond level 2")
t.check(info.get("maxWidth", 0) > 0 and info.get("maxArea", 0) > 0, "limits are advertised (sizeUpscaling needs them)")
st, h, _ = get("/iiif/3/tiled.jp2/info.json", {"Accept": "application/json"})
t.check(h.get("content-type") == "application/json", "Accept: application/json gets application/json")
etag_json = h.get("etag")
st, h, _ = get("/iiif/3/tiled.jp2/info.json", {"Accept": "application/ld+json"})
t.check(h.get("content-type", "").startswith("application/ld+json"), "Accept: application/ld+json gets JSON-LD")
t.check(etag_json and h.get("etag") and etag_json != h.get("etag"),
        "the JSON and JSON-LD representations have different ETags (%s, %s)" % (etag_json, h.get("etag")))
st, h, body = get("/iiif/3/tiled.jp2/info.json", {"Host": "iiif.example.org:8443", "X-Forwarded-Proto": "https"})
t.check(json.loads(body).get("id") == "https://iiif.example.org:8443/iiif/3/tiled.jp2",
        "ids follow Host and X-Forwarded-Proto")

st, h, body = get("/iiif/3/grey.jp2/info.json")
t.check(st == 200 and "color" not in json.loads(body).get("extraQualities", []), "grey image does not offer color")

# ---- info.json 2.1 -----------------------------------------------------------------------
st, h, body = get("/iiif/2/tiled.jp2/info.json")
info2 = json.loads(body) if st == 200 else {}
t.check(st == 200 and h.get("content-type") == "application/json", "info.json 2.1 is application/json")
t.check(info2.get("@context") == "http://iiif.io/api/image/2/context.json"
        and info2.get("@id") == base + "/iiif/2/tiled.jp2"
        and info2.get("profile", [None])[0] == "http://iiif.io/api/image/2/level2.json"
        and "maxWidth" in info2.get("profile", [{}, {}])[1] and "maxWidth" not in info2,
        "info.json 2.1: @context, @id, profile array with level2 and limits inside")

# ---- base URI, identifiers -----------------------------------------------------------------
st, h, _ = get("/iiif/3/tiled.jp2")
t.check(st == 303 and h.get("location") == base + "/iiif/3/tiled.jp2/info.json", "base URI: 303 to info.json")
st, h, body = get("/iiif/3/sub%2Fdir%2Fnested.jp2/info.json")
t.check(st == 200 and json.loads(body).get("id") == base + "/iiif/3/sub%2Fdir%2Fnested.jp2",
        "an identifier with %2F resolves to a subfolder; id keeps the request's encoding")
st, h, body = get("/iiif/3/missing.jp2/info.json")
t.check(st == 404 and json.loads(body).get("status") == 404, "missing image: 404 with a JSON message")
for bad in ["..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e%2fimages%2ftiled.jp2", "escape.jp2", "sub",
            "%2Fetc%2Fpasswd", "..%5C..%5Cetc", "tiled.jp2%00", "%252e%252e%252fetc"]:
    st, h, body = get("/iiif/3/%s/info.json" % bad)
    t.check(st in (400, 404), "identifier %s is refused (%d)" % (bad, st))
st, h, body = get("/iiif/3/alias.jp2/info.json")
t.check(st == 200, "a symlink that stays inside the image root is served")

# ---- pixels --------------------------------------------------------------------------------
img, st, _ = get_png("/iiif/3/tiled.jp2/full/max/0/default.png")
t.check(img is not None and img[:3] == (W, H, 3) and img[3] == full_ref[3],
        "full/max png equals opj_decompress exactly (lossless)")
img, st, _ = get_png("/iiif/3/tiled.jp2/256,256,256,256/256,/0/default.png")
ref = px.opj_reference(os.path.join(root, "tiled.jp2"), 0, (256, 256, 512, 512))
t.check(img is not None and img[:4] == ref, "a full-resolution tile equals opj_decompress -d exactly")
img, st, _ = get_png("/iiif/3/tiled.jp2/0,0,512,512/256,/0/default.png")
ref = px.opj_reference(os.path.join(root, "tiled.jp2"), 1, (0, 0, 512, 512))
t.check(img is not None and img[:4] == ref, "a scale-factor-2 tile equals opj_decompress -r 1 exactly")
img, st, _ = get_png("/iiif/3/untiled.j2k/512,512,288,88/36,11/0/default.png")
ref = px.opj_reference(os.path.join(root, "untiled.j2k"), 3, (512, 512, 800, 600))
t.check(img is not None and img[:4] == ref,
        "an edge tile at scale factor 8 of a raw codestream equals opj_decompress -r 3 (%s vs %s)"
        % (img and img[:3], ref[:3]))
img, st, _ = get_png("/iiif/3/tiled.jp2/100,50,300,200/120,/0/default.png")
ref = px.box_downscale(px.crop(full_ref, 100, 50, 300, 200), 120, 80)
d = img and px.diff(img[:4], ref)
t.check(d is not None and d[1] < 1.0, "a 2.5x downscale of a smooth chart matches an exact area "
        "average (mean %s; tolerance < 1)" % (d and round(d[1], 3)))
# Fine stripes: the area average is mid-grey, nearest-neighbour picks black or white.
img, st, _ = get_png("/iiif/3/stripes.jp2/100,50,300,200/120,/0/default.png")
ref = px.box_downscale(px.crop((W, H, 1, stripes), 100, 50, 300, 200), 120, 80)
d = img and px.diff(img[:4], ref)
nearest = px.nearest_downscale(px.crop((W, H, 1, stripes), 100, 50, 300, 200), 120, 80)
dn = px.diff(nearest, ref)
# The JPEG 2000 reduction (a wavelet low-pass, not a box) leaves some aliasing: mean ~15.
t.check(d is not None and d[1] < 25 and d[1] < dn[1] / 4,
        "a 2.5x downscale of 1-px stripes is near the area average (mean %s; tolerance < 25 and "
        "under a quarter of nearest-neighbour's %s)" % (d and round(d[1], 3), round(dn[1], 3)))
st, h, body = get("/iiif/3/tiled.jp2/full/400,/0/default.jpg")
jpg = px.read_jpeg(body) if st == 200 else None
ref = px.opj_reference(os.path.join(root, "tiled.jp2"), 1)
d = jpg and px.diff(jpg, ref)
t.check(h.get("content-type") == "image/jpeg" and d is not None and d[1] < 4.0,
        "jpg output decoded by djpeg is within mean 4 of the reference (%s)" % (d,))
img, st, _ = get_png("/iiif/3/photo.jpg/0,0,400,300/200,/0/default.png")
ref = px.box_downscale(px.crop((W, H, 3, rgb), 0, 0, 400, 300), 200, 150)
d = img and px.diff(img[:4], ref)
t.check(d is not None and d[1] < 4.0, "a JPEG source, DCT-scaled, matches the original (mean %s)" % (d and round(d[1], 2)))
img, st, _ = get_png("/iiif/3/flat.png/10,20,30,40/max/0/default.png")
t.check(img is not None and img[:4] == px.crop((W, H, 3, rgb), 10, 20, 30, 40), "a PNG source crop is exact")

# rotations and mirroring: exact pixel moves of the unrotated answer
base_img, _, _ = get_png("/iiif/3/tiled.jp2/0,0,64,48/max/0/default.png")


def rot(img, q):
    w, h, ch, p = img[:4]
    out = bytearray(len(p))
    for y in range(h):
        for x in range(w):
            if q == 90:
                nx, ny, nw = h - 1 - y, x, h
            elif q == 180:
                nx, ny, nw = w - 1 - x, h - 1 - y, w
            elif q == 270:
                nx, ny, nw = y, w - 1 - x, h
            else:  # mirror
                nx, ny, nw = w - 1 - x, y, w
            out[(ny * nw + nx) * ch:(ny * nw + nx + 1) * ch] = p[(y * w + x) * ch:(y * w + x + 1) * ch]
    return (h, w, ch, bytes(out)) if q in (90, 270) else (w, h, ch, bytes(out))


for r, q in (("90", 90), ("180", 180), ("270", 270), ("!0", "m")):
    img, st, _ = get_png("/iiif/3/tiled.jp2/0,0,64,48/max/%s/default.png" % r)
    t.check(img is not None and base_img is not None and img[:4] == rot(base_img, q),
            "rotation %s is an exact pixel move" % r)
img, st, _ = get_png("/iiif/3/tiled.jp2/0,0,64,48/max/!90/default.png")
t.check(img is not None and img[:4] == rot(rot(base_img, "m"), 90), "!90 mirrors first, then rotates")
img, st, _ = get_png("/iiif/3/tiled.jp2/0,0,200,100/max/30/default.png")
ew = math.ceil(200 * math.cos(math.radians(30)) + 100 * math.sin(math.radians(30)) - 1e-9)
eh = math.ceil(100 * math.cos(math.radians(30)) + 200 * math.sin(math.radians(30)) - 1e-9)
t.check(img is not None and abs(img[0] - ew) <= 1 and abs(img[1] - eh) <= 1 and img[2] == 4
        and img[3][3] == 0, "30 degrees: bounding-box canvas %sx%s, transparent corner in png" % (img and img[:3], (ew, eh)))
st, h, body = get("/iiif/3/tiled.jp2/0,0,200,100/max/30/default.jpg")
j = px.read_jpeg(body) if st == 200 else None
t.check(j is not None and min(j[3][0:3]) > 230, "30 degrees in jpg: white background")

img, st, _ = get_png("/iiif/3/tiled.jp2/0,0,64,48/max/0/gray.png")
d = img and px.diff(img[:4], px.to_gray(base_img))
t.check(img is not None and img[2] == 1 and d is not None and d[0] <= 1, "gray is BT.601 luma (max diff %s)" % (d and d[0]))
img, st, _ = get_png("/iiif/3/tiled.jp2/full/200,/0/bitonal.png")
t.check(img is not None and set(img[3]) <= {0, 255} and len(set(img[3])) == 2, "bitonal has only black and white")

# ---- headers, caching, HEAD ---------------------------------------------------------------
st, h, body = get("/iiif/3/tiled.jp2/pct:0,0,100,100/400,/0/default.jpg")
link = h.get("link", "")
t.check('<%s/iiif/3/tiled.jp2/full/400,300/0/default.jpg>;rel="canonical"' % base in link
        and '<http://iiif.io/api/image/3/level2.json>;rel="profile"' in link,
        "Link has the canonical URI and the profile (%s)" % link)
etag = h.get("etag")
st2, h2, body2 = get("/iiif/3/tiled.jp2/pct:0,0,100,100/400,/0/default.jpg", {"If-None-Match": etag or "x"})
t.check(etag and st2 == 304 and body2 == b"", "If-None-Match with the ETag gets 304")
st, h, body = get("/iiif/3/tiled.jp2/full/400,/0/default.jpg", method="HEAD")
t.check(st == 200 and body == b"" and int(h.get("content-length", 0)) > 0, "HEAD on an image: headers only")

# ---- size rules and errors ------------------------------------------------------------------
cases = [
    ("/iiif/3/tiled.jp2/full/!2000,2000/0/default.png", 200, (W, H)),   # spec over validator (SPECS G1)
    ("/iiif/3/tiled.jp2/full/^!2000,2000/0/default.png", 200, (2000, 1500)),
    ("/iiif/3/tiled.jp2/full/^1000,/0/default.png", 200, (1000, 750)),
    ("/iiif/3/tiled.jp2/square/100,/0/default.png", 200, (100, 100)),
    ("/iiif/3/tiled.jp2/700,500,300,300/max/0/default.png", 200, (100, 100)),
    ("/iiif/2/tiled.jp2/full/full/0/default.png", 200, (W, H)),
    ("/iiif/2/tiled.jp2/full/1000,/0/default.png", 200, (1000, 750)),
    ("/iiif/2/tiled.jp2/full/max/0/native.png", 200, (W, H)),
    ("/iiif/3/tiled.jp2/full/full/0/default.jpg", 400, "size"),
    ("/iiif/3/tiled.jp2/full/1000,/0/default.jpg", 400, "size"),
    ("/iiif/3/tiled.jp2/full/pct:101/0/default.jpg", 400, "size"),
    ("/iiif/2/tiled.jp2/full/^max/0/default.jpg", 400, "size"),
    ("/iiif/3/tiled.jp2/900,0,10,10/max/0/default.jpg", 400, "region"),
    ("/iiif/3/tiled.jp2/0,0,0,10/max/0/default.jpg", 400, "region"),
    ("/iiif/3/tiled.jp2/-1,0,10,10/max/0/default.jpg", 400, "region"),
    ("/iiif/3/tiled.jp2/full/max/361/default.jpg", 400, "rotation"),
    ("/iiif/3/tiled.jp2/full/max/-90/default.jpg", 400, "rotation"),
    ("/iiif/3/tiled.jp2/full/max/0/sepia.jpg", 400, "quality"),
    ("/iiif/3/tiled.jp2/full/max/0/default.bmp", 400, "format"),
    ("/iiif/3/tiled.jp2/full/99999999999,/0/default.jpg", 400, "size"),
    ("/iiif/3/tiled.jp2/full/^20000,/0/default.jpg", 400, "size"),
]
for path, status, expect in cases:
    st, h, body = get(path)
    if status == 200:
        ok = st == 200 and px.read_png(body)[:2] == expect
        t.check(ok, "%s -> 200 %s (%d)" % (path, expect, st))
    else:
        try:
            msg = json.loads(body).get("error", "")
        except ValueError:
            msg = ""
        t.check(st == status and expect in msg.lower(), "%s -> %d naming the %s (%d %r)" % (path, status, expect, st, msg))

# ---- inputs the fuzzer found (tests/fuzz/regressions) -----------------------------------------
reg = os.path.join(t.SOURCE_DIR, "tests", "fuzz", "regressions", "fuzz_jp2")
shutil.copy(os.path.join(reg, "siz-46601-tiles-257-components-oom.j2k"), os.path.join(root, "oom.j2k"))
shutil.copy(os.path.join(t.SOURCE_DIR, "tests", "fuzz", "library-aborts", "htj2k-mel-init-assert.j2k"),
            os.path.join(root, "assert.j2k"))
st, h, body = get("/iiif/3/oom.j2k/info.json")
t.check(st == 413 and b"tiles x 257 components" in body,
        "a header declaring 46,601 tiles x 257 components is refused before OpenJPEG allocates (%d)" % st)
# OpenJPEG 2.5.0 aborts on an assert inside its HTJ2K decoder: that request gets a 500 with a
# message, the worker answers, retires, and is replaced.
st, h, body = get("/iiif/3/assert.j2k/full/max/0/default.png")
t.check(st == 500 and b"decoder failed" in body and h.get("access-control-allow-origin") == "*",
        "an assert inside OpenJPEG fails only that request, with an answer (%d %r)" % (st, body[:100]))
t.wait_for(lambda: "retired after a decoder crash" in v.output() and len(v.workers()) == 2,
           what="the tainted worker to be replaced")
t.check(get("/iiif/3/tiled.jp2/info.json")[0] == 200, "the next request is served")

t.check(len(v.workers()) == 2 and "killed by signal" not in v.output(), "no worker died during the run")
v.stop()
n.stop()
t.done()
