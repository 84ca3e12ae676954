"""The official IIIF image validator's checks (github.com/IIIF/image-validator, iiif_validator/tests),
re-implemented against Vellum behind nginx, for Image API 3.0 (/iiif/3/) and 2.1 (/iiif/2/).

The validator's test image is a 1000x1000 grid of 10x10 squares of 100 px, each a distinct colour.
It is in the fixtures as a lossy Kakadu encode; it is served here under its validator identifier,
with no extension. Reference colours come from opj_decompress's decode of that file (never from
Vellum), and pixels from Vellum are decoded by djpeg or by pixels.read_png. The source is lossy and
JPEG output adds its own error, so colours are compared per channel within TOL (30) where the
validator uses 6 against its lossless PNG.

Where the validator and the specification disagree, the specification's behaviour is tested and the
place says so (SPECS.md G1, G2). Random choices use fixed seeds, as the validator does (31337), so a
run is reproducible.
"""
import json
import math
import os
import random
import re
import shutil
import struct
import uuid

import harness as t
import pixels as px

ID = "67352ccc-d1b0-11e1-89ae-279075081939"
SRC = os.path.join(t.FIXTURES, "jp2", "loris", ID + ".jp2")
if not os.path.isfile(SRC):
    t.skip("the IIIF validator's test image %s is not in the fixtures (%s): set VELLUM_FIXTURES"
           % (ID + ".jp2", os.path.abspath(t.FIXTURES)))
for tool in ("opj_decompress", "djpeg"):
    if not shutil.which(tool):
        t.skip("%s is not installed: it is the independent decoder this test compares with" % tool)

TOL = 30      # per channel: lossy source (Kakadu) plus lossy jpg output
SEED = 31337  # the validator's seed
# The validator sends these with every request (test.py HEADERS).
VALIDATOR_HEADERS = {
    "Origin": "http://iiif.io/",
    "Referer": "http://iiif.io/api/image/validator",
    "User-Agent": "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.5; en-US; rv:1.9.1b3pre) "
                  "Gecko/20081130 Minefield/3.1b3pre",
}

work = t.tmpdir()
root = os.path.join(work, "images")
os.makedirs(root)
shutil.copyfile(SRC, os.path.join(root, ID))  # identifiers need not have an extension

v = t.Vellum(work, args=["--workers", "2", "--image-root", root])
n = t.Nginx(work, v.fastcgi_address)
base = "http://127.0.0.1:%d" % n.port

# ---- reference: opj_decompress's full-size decode, one colour per square --------------------
ref = px.opj_reference(SRC)
W, H = ref[0], ref[1]


def rgb_at(img, x, y):
    w, h, ch, p = img[:4]
    i = (y * w + x) * ch
    if ch < 3:
        return (p[i], p[i], p[i])
    return tuple(p[i:i + 3])


def alpha_at(img, x, y):
    w, h, ch, p = img[:4]
    i = (y * w + x) * ch
    return p[i + 1] if ch == 2 else p[i + 3] if ch == 4 else 255


def median_rgb(img, cx, cy, r):
    w, h = img[0], img[1]
    vals = [rgb_at(img, x, y) for y in range(max(0, cy - r), min(h, cy + r + 1))
            for x in range(max(0, cx - r), min(w, cx + r + 1))]
    return tuple(sorted(c[k] for c in vals)[len(vals) // 2] for k in range(3))


def close(a, b, tol=TOL):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


SQUARES = [(c, r) for r in range(10) for c in range(10)]
colour = {(c, r): median_rgb(ref, c * 100 + 50, r * 100 + 50, 30) for c, r in SQUARES}
solid = all(max(abs(a - b) for a, b in zip(rgb_at(ref, c * 100 + dx, r * 100 + dy), colour[(c, r)])) <= 12
            for c, r in SQUARES for dx, dy in ((15, 15), (85, 15), (15, 85), (85, 85), (50, 50)))
t.check((W, H, ref[2]) == (1000, 1000, 3) and len(set(colour.values())) == 100 and solid,
        "reference: opj_decompress decodes the validator image as 1000x1000 RGB, 100 solid squares of "
        "distinct colours")


# ---- plumbing --------------------------------------------------------------------------------
def get(path, headers=None, method="GET"):
    hdrs = dict(VALIDATOR_HEADERS)
    hdrs.update(headers or {})
    return t.request(n.port, path, method=method, headers=hdrs)


def header_size(data):
    """(width, height) from a PNG IHDR or a JPEG SOF marker, without decoding pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", data[16:24])
    pos = 2
    while data[:2] == b"\xff\xd8" and pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        seglen = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
            return w, h
        pos += 2 + seglen
    return None


def fetch(path):
    """(decoded image or None, status, headers, body); images decoded by djpeg or read_png."""
    st, h, body = get(path)
    img = None
    if st == 200:
        ct = h.get("content-type", "")
        try:
            if ct == "image/jpeg":
                img = px.read_jpeg(body)
            elif ct == "image/png":
                img = px.read_png(body)[:4]
        except Exception as e:  # a broken image is a failed check, not a crashed test
            print("decode error for %s: %s" % (path, e))
    return img, st, h, body


def err(body):
    try:
        return json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        return body[:80]


def grid_check(img, mapping, radius, squares=SQUARES, margin=0):
    """Map each square's centre (source pixels) through `mapping` into img and compare the median
    colour around it with the reference. Returns (number compared, list of mismatches)."""
    if img is None:
        return 0, ["no image"]
    bad, count = [], 0
    for c, r in squares:
        ox, oy = mapping(c * 100 + 50.0, r * 100 + 50.0)
        ix, iy = int(math.floor(ox)), int(math.floor(oy))
        if not (margin <= ix < img[0] - margin and margin <= iy < img[1] - margin):
            bad.append(((c, r), "outside at (%.1f,%.1f)" % (ox, oy)))
            continue
        got = median_rgb(img, ix, iy, radius)
        count += 1
        if not close(got, colour[(c, r)]):
            bad.append(((c, r), "at (%d,%d) got %s want %s" % (ix, iy, got, colour[(c, r)])))
    return count, bad


def scale_map(rx, ry, sx, sy):
    return lambda x, y: ((x - rx) * sx, (y - ry) * sy)


def rot90s_map(inner, w, h, rot, mirror=False):
    """Compose: inner mapping onto a w x h canvas, then mirror (first), then rotate clockwise."""
    def f(x, y):
        x, y = inner(x, y)
        if mirror:
            x = w - x
        if rot == 90:
            return h - y, x
        if rot == 180:
            return w - x, h - y
        if rot == 270:
            return y, w - x
        return x, y
    return f


def arbitrary_map(inner, w, h, deg, cw, ch):
    """Clockwise rotation by deg about the centre of a w x h image onto a cw x ch canvas."""
    a = math.radians(deg)
    co, si = math.cos(a), math.sin(a)

    def f(x, y):
        x, y = inner(x, y)
        dx, dy = x - w / 2.0, y - h / 2.0
        return cw / 2.0 + dx * co - dy * si, ch / 2.0 + dx * si + dy * co
    return f


def bbox(w, h, deg):
    a = math.radians(deg)
    return abs(w * math.cos(a)) + abs(h * math.sin(a)), abs(h * math.cos(a)) + abs(w * math.sin(a))


def random_string(rng, length):
    """The validator's make_random_string: ASCII 48-122, with ? # / replaced by $. Sent raw."""
    return "".join(chr(rng.randint(48, 122)) for _ in range(length)) \
        .replace("?", "$").replace("#", "$").replace("/", "$")


def random_strings(test, length, count):
    """The strings the validator sends (seed 31337), then as many again from a seed of our own per
    test, so each parameter also meets the other characters of the range (^ [ ] \\ < > `)."""
    rng, own = random.Random(SEED), random.Random("%d %s" % (SEED, test))
    return [random_string(rng, length) for _ in range(count)] + [random_string(own, length) for _ in range(count)]


LINK = re.compile(r'<([^>]+)>;\s*rel="([^"]+)"\s*([,]*)')  # the validator's parse_rel_links


def rel_links(header):
    links = {}
    for m in LINK.finditer(header or ""):
        links.setdefault(m.group(2), []).append(m.group(1))
    return links


def squares_report(count, bad):
    return "%d squares compared, %d off%s" % (count, len(bad), (": %s" % bad[:3]) if bad else "")


# ---- the validator's tests, per API version ----------------------------------------------------
def run(api):
    V = "3.0" if api == 3 else "2.1"
    prefix = "/iiif/%d" % api
    pfx = "%s/%s" % (prefix, ID)
    MAX = "max" if api == 3 else "full"  # the validator's ImageAPIRequest.to_v2 sends full on 2.x

    def url(region="full", size=None, rotation="0", quality="default", fmt="jpg", ident=pfx):
        return "%s/%s/%s/%s/%s.%s" % (ident, region, size or MAX, rotation, quality, fmt)

    def label(test, what):
        return "%s %s: %s" % (V, test, what)

    def expect_400(test, path, what, allowed=(400,)):
        st, h, body = get(path)
        t.check(st in allowed, label(test, "%s -> %s (got %d %s)"
                                     % (what, "/".join(map(str, allowed)), st, err(body))))

    # -- info_json (level 0) --
    st, h, body = get(pfx + "/info.json")
    ct = h.get("content-type", "")
    t.check(st == 200 and ct.split(";")[0] in ("application/json", "application/ld+json"),
            label("info_json", "200 with a JSON media type (%d %s)" % (st, ct)))
    try:
        info = json.loads(body)
    except ValueError:
        info = {}
    t.check(isinstance(info, dict) and info != {}, label("info_json", "body is a JSON object"))
    info = info if isinstance(info, dict) else {}
    idf = "id" if api == 3 else "@id"
    context = "http://iiif.io/api/image/%d/context.json" % api
    t.check(type(info.get("width")) is int and type(info.get("height")) is int
            and (info.get("width"), info.get("height")) == (1000, 1000),
            label("info_json", "width and height are integers 1000, 1000 (%s, %s)"
                  % (info.get("width"), info.get("height"))))
    t.check(info.get(idf) == base + pfx,
            label("info_json", "%s equals the request URL minus /info.json (%s)" % (idf, info.get(idf))))
    t.check(info.get("@context") == context and list(info)[:1] == ["@context"],
            label("info_json", "@context is %s, first key" % context))
    t.check(info.get("protocol") == "http://iiif.io/api/image", label("info_json", "protocol"))
    profile = info.get("profile")
    if api == 3:
        t.check(profile == "level2", label("info_json", "profile is the string level2 (%r)" % (profile,)))
        t.check(info.get("type") == "ImageService3", label("info_json", "type is ImageService3"))
        t.check(not {"@id", "@type", "license", "attribution", "logo"} & set(info),
                label("info_json", "no 2.x-only keys (@id, @type, license, attribution, logo)"))
        for key in ("extraQualities", "extraFormats", "extraFeatures"):
            val = info.get(key, [])
            t.check(isinstance(val, list) and all(isinstance(x, str) for x in val),
                    label("info_json", "%s is a list of strings" % key))
        quals, fmts, feats = (set(info.get(k, [])) for k in ("extraQualities", "extraFormats", "extraFeatures"))
        limits = {k: info.get(k) for k in ("maxWidth", "maxHeight", "maxArea")}
        t.check(info.get("maxWidth") or info.get("maxArea"),
                label("info_json", "sizeUpscaling is backed by maxWidth or maxArea (%s)" % limits))
    else:
        t.check(isinstance(profile, list) and profile[:1] == ["http://iiif.io/api/image/2/level2.json"],
                label("info_json", "profile is a list starting with the level2 URI (%r)" % (profile,)))
        extra = profile[1] if isinstance(profile, list) and len(profile) > 1 and isinstance(profile[1], dict) else {}
        quals, fmts, feats = (set(extra.get(k, [])) for k in ("qualities", "formats", "supports"))
        limits = {k: extra.get(k) for k in ("maxWidth", "maxHeight", "maxArea")}
        t.check(not {"id", "type", "maxWidth", "maxHeight", "maxArea", "extraFeatures"} & set(info)
                and not {"@context", "@id", "@type"} & set(extra),
                label("info_json", "no 3.0 keys; limits live inside the profile object (%s)" % limits))
    t.check({"color", "gray", "bitonal"} <= quals,
            label("info_json", "claims qualities color, gray, bitonal (%s)" % sorted(quals)))
    optional = {"mirroring", "rotationArbitrary", "canonicalLinkHeader", "profileLinkHeader"}
    optional |= {"sizeUpscaling"} if api == 3 else {"sizeAboveFull"}
    t.check(optional <= feats, label("info_json", "claims the optional features tested below: %s (%s)"
                                     % (sorted(optional), sorted(feats))))
    sizes, tiles = info.get("sizes", []), info.get("tiles", [])
    t.check(isinstance(sizes, list) and all(isinstance(s, dict) and type(s.get("width")) is int
                                            and type(s.get("height")) is int for s in sizes),
            label("info_json", "sizes are objects with integer width and height"))
    t.check(isinstance(tiles, list) and all(
        isinstance(x, dict) and type(x.get("width")) is int and isinstance(x.get("scaleFactors"), list)
        and all(type(f) is int for f in x["scaleFactors"]) for x in tiles),
        label("info_json", "tiles have an integer width and integer scaleFactors"))

    # -- sizes and tiles from info.json MUST work at every level (compliance note) --
    for s in sizes:
        sw, sh = s.get("width"), s.get("height")
        forms = ["%d,%d" % (sw, sh)] + (["%d," % sw] if api == 2 else [])  # 2.1: both w, and w,h (SPECS B)
        for form in forms:
            st, h, body = get(url(size=form))
            t.check(st == 200 and header_size(body) == (sw, sh),
                    label("info sizes", "full/%s -> %dx%d (%d %s)"
                          % (form, sw, sh, st, header_size(body) if st == 200 else err(body))))
    for tile in tiles:
        tw, th = tile.get("width"), tile.get("height", tile.get("width"))
        for sf in tile.get("scaleFactors", []):
            rw, rh = min(tw * sf, W), min(th * sf, H)
            ow, oh = -(-rw // sf), -(-rh // sf)
            form = "%d,%d" % (ow, oh) if api == 3 else "%d," % ow
            st, h, body = get(url("0,0,%d,%d" % (rw, rh), form))
            t.check(st == 200 and header_size(body) == (ow, oh),
                    label("info tiles", "tile 0,0,%d,%d/%s (scale factor %d) -> %dx%d (%d)"
                          % (rw, rh, form, sf, ow, oh, st)))

    # -- id_basic, id_squares (level 0) --
    img, st, h, body = fetch(url())
    t.check(st == 200 and h.get("content-type") == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
            and img is not None and img[:3] == (1000, 1000, 3),
            label("id_basic", "%s -> a 1000x1000 RGB JPEG (%d)" % (url(), st)))
    d = img and px.diff(img, ref)
    t.check(d is not None and d[1] < 6, label("id_squares", "full image matches opj_decompress: mean abs "
                                              "difference %s < 6 (validator's threshold)" % (d and round(d[1], 2))))
    # -- region_full --
    cnt, bad = grid_check(img if img and img[:2] == (1000, 1000) else None, scale_map(0, 0, 1, 1), 10)
    t.check(not bad, label("region_full", "full: every square's colour; " + squares_report(cnt, bad)))

    # -- id errors (level 1) --
    expect_400("id_error_unescaped", prefix + "/%5Bfrob%5D/info.json", "%5Bfrob%5D", (400, 404))
    expect_400("id_error_unescaped", prefix + "/[frob]/info.json", "raw [frob]", (400, 404))
    expect_400("id_error_unescaped", url(ident=prefix + "/[frob]"), "raw [frob] image", (400, 404))
    rid = str(uuid.UUID(int=random.Random(SEED).getrandbits(128), version=1))
    expect_400("id_error_random", "%s/%s/info.json" % (prefix, rid), "random identifier %s" % rid, (404,))
    expect_400("id_error_random", url(ident="%s/%s" % (prefix, rid)), "image of a random identifier", (404,))
    expect_400("id_error_escapedslash", prefix + "/a/b/info.json", "a/b (raw slash)", (404,))
    expect_400("id_error_escapedslash", url(ident=prefix + "/a/b"), "a/b image (raw slash)", (404,))

    # -- id_escaped (level 1): %2D for "-" is still the same identifier --
    esc = "%s/%s" % (prefix, ID.replace("-", "%2D"))
    st, h, body = get(esc + "/info.json")
    try:
        einfo = json.loads(body) if st == 200 else {}
    except ValueError:
        einfo = {}
    t.check(st == 200 and einfo.get("width") == 1000,
            label("id_escaped", "%s/info.json -> 200, the same image (%d %s)"
                  % (esc, st, err(body) if st != 200 else "")))
    img, st, h, body = fetch(url(ident=esc, size=None))
    t.check(img is not None and img[:2] == (1000, 1000),
            label("id_escaped", "image request with %%2D -> 200 (%d)" % st))

    # -- region_square (3.0 level 1; 2.1 optional, claimed) --
    img, st, h, body = fetch(url("square"))
    cnt, bad = grid_check(img if img and img[:2] == (1000, 1000) else None, scale_map(0, 0, 1, 1), 10)
    t.check(img is not None and img[0] == img[1] == 1000 and not bad,
            label("region_square", "square on a square image is the whole 1000x1000 image; %s (%d)"
                  % (squares_report(cnt, bad), st)))

    # -- region_pixels (level 1) and region_percent (level 2): random squares, centre colour --
    rng = random.Random(SEED)
    for _ in range(5):
        x, y = rng.randint(0, 9), rng.randint(0, 9)
        forms = [("region_pixels", "%d,%d,100,100" % (x * 100, y * 100), 100),  # current validator
                 ("region_pixels", "%d,%d,74,74" % (x * 100 + 13, y * 100 + 13), 74),  # older validator
                 ("region_percent", "pct:%d,%d,10,10" % (x * 10, y * 10), 100),
                 ("region_percent", "pct:%d,%d,9,9" % (x * 10 + 1, y * 10 + 1), 90)]
        for test, region, side in forms:
            img, st, h, body = fetch(url(region))
            ok = img is not None and img[:2] == (side, side)
            got = ok and median_rgb(img, side // 2, side // 2, side // 4)
            ok = ok and close(got, colour[(x, y)])
            # the middle, away from JPEG ringing at the square's edges, is solid
            if ok:
                m = side // 2 - 20
                span = range(side // 2 - m, side // 2 + m, 4)
                ok = all(close(rgb_at(img, xx, yy), colour[(x, y)]) for yy in span for xx in span)
            t.check(ok, label(test, "%s -> %dx%d of square (%d,%d), colour %s within %d per channel of %s (%d %s)"
                              % (region, side, side, x, y, got, TOL, colour[(x, y)], st, img and img[:2])))

    # -- region errors (level 1: region_error_random; spec §4.1: zero size / outside -> 400) --
    for r in random_strings("region", 6, 4):
        expect_400("region_error_random", url(r), "region %r" % r)
    for r in ("1000,0,10,10", "0,1000,10,10", "0,0,0,10", "0,0,10,0", "pct:100,0,10,10", "pct:0,0,0,10",
              "-1,0,10,10", "0.5,0,10,10", "0,0,10", "0,0,10,10,10", "pct:-1,0,10,10", "pct:0,0,101x,10"):
        expect_400("region_error", url(r), "region %s" % r)
    img, st, h, body = fetch(url("900,950,200,200"))
    t.check(img is not None and img[:2] == (100, 50) and close(median_rgb(img, 50, 25, 10), colour[(9, 9)]),
            label("region_error", "900,950,200,200 is cropped at the edge to 100x50, not padded (%d %s)"
                  % (st, img and img[:2])))
    img, st, h, body = fetch(url("pct:95,90,10,20"))
    t.check(img is not None and img[:2] == (50, 100) and close(median_rgb(img, 25, 50, 10), colour[(9, 9)]),
            label("region_error", "pct:95,90,10,20 is cropped at the edge to 50x100 (%d %s)" % (st, img and img[:2])))
    img, st, h, body = fetch(url("pct:12.5,32.5,25,15"))
    cnt, bad = grid_check(img if img and img[:2] == (250, 150) else None, scale_map(125, 325, 1, 1), 5,
                          [(2, 4), (3, 4)])
    t.check(not bad, label("region_percent", "decimal pct:12.5,32.5,25,15 -> 250x150 at 125,325; %s (%d %s)"
                           % (squares_report(cnt, bad), st, img and img[:2])))

    # -- size_region (level 2): a 100px square at s,s --
    rng = random.Random(SEED)
    for _ in range(5):
        s, x, y = rng.randint(35, 90), rng.randint(0, 9), rng.randint(0, 9)
        img, st, h, body = fetch(url("%d,%d,100,100" % (x * 100, y * 100), "%d,%d" % (s, s)))
        got = img and median_rgb(img, s // 2, s // 2, s // 5)
        t.check(img is not None and img[:2] == (s, s) and close(got, colour[(x, y)]),
                label("size_region", "%d,%d,100,100/%d,%d -> %dx%d, colour %s ~ %s (%d %s)"
                      % (x * 100, y * 100, s, s, s, s, got, colour[(x, y)], st, img and img[:2])))

    # -- size_wc, size_ch (level 1), size_percent (3.0 level 2, 2.1 level 1), size_bwh (level 2) --
    def sized(test, size, ew, eh):
        img, st, h, body = fetch(url(size=size))
        ok = img is not None and img[:2] == (ew, eh)
        cnt, bad = grid_check(img if ok else None, scale_map(0, 0, ew / 1000.0, eh / 1000.0), 4)
        t.check(ok and not bad, label(test, "%s -> %dx%d (%d %s); %s"
                                      % (size, ew, eh, st, img and img[:2], squares_report(cnt, bad))))

    rng = random.Random(SEED)
    for _ in range(4):
        s = rng.randint(450, 750)
        sized("size_wc", "%d," % s, s, s)
    rng = random.Random(SEED)
    for _ in range(4):
        s = rng.randint(450, 750)
        sized("size_ch", ",%d" % s, s, s)
    rng = random.Random(SEED)
    for _ in range(4):
        w, h_ = rng.randint(350, 750), rng.randint(350, 750)
        sized("size_wh", "%d,%d" % (w, h_), w, h_)  # distorting: sizeByWh (3.0) / sizeByDistortedWh (2.1)
    rng = random.Random(SEED)
    for _ in range(4):
        s = rng.randint(45, 75)
        sized("size_percent", "pct:%d" % s, s * 10, s * 10)
    rng = random.Random(SEED)
    for _ in range(4):
        w, h_ = rng.randint(350, 750), rng.randint(350, 750)
        sized("size_bwh", "!%d,%d" % (w, h_), min(w, h_), min(w, h_))
    sized("size_max", "max", 1000, 1000)  # limits (>= 1000) do not apply
    sized("size_percent", "pct:50.5", 505, 505)

    rng = random.Random(SEED)
    s = rng.randint(1100, 2000)
    if api == 3:
        # -- size_noup (level 1): no upscaling without ^ (§4.2: 400) --
        for size in ("%d,%d" % (s, s), ",%d" % s, "%d," % s, "pct:200", "1000,1001", "pct:100.1"):
            expect_400("size_noup", url(size=size), "size %s (upscaling without ^)" % size)
        # The validator also wants an error for !2000,3000; the spec says !w,h is the largest size that
        # fits w x h AND is not larger than the region, so it is the full 1000x1000 (SPECS G1).
        sized("size_noup (spec over validator, G1)", "!2000,3000", 1000, 1000)
        # -- size_nofull (3.0 level 0): full is not a 3.0 size --
        expect_400("size_nofull", url(size="full"), "size full on 3.0")
        # -- size_up (optional; claimed as sizeUpscaling) --
        sized("size_up", "^%d,%d" % (s, s), s, s)
        sized("size_up", "^,%d" % s, s, s)
        sized("size_up", "^%d," % s, s, s)
        sized("size_up", "^pct:200", 2000, 2000)
        sized("size_up", "^!2000,500", 500, 500)
        sized("size_up", "^!2000,3000", 2000, 2000)
        img, st, h, body = fetch(url("700,300,100,100", "^250,"))
        t.check(img is not None and img[:2] == (250, 250) and close(median_rgb(img, 125, 125, 40), colour[(7, 3)]),
                label("size_up", "700,300,100,100/^250, upscales the region to 250x250 (%d %s)"
                      % (st, img and img[:2])))
        # ^max: the validator expects 1000x1000; the spec makes it the largest size the published
        # limits allow (SPECS G2), computed here as the implementation notes do (area, then width,
        # then height).
        mw, mh, ma = limits.get("maxWidth"), limits.get("maxHeight"), limits.get("maxArea")
        mh = mh or mw
        ew, eh = 1000.0, 1000.0
        if ma:
            k = math.sqrt(ma / (ew * eh))
            ew, eh = math.floor(ew * k), math.floor(eh * k)
        if mw and ew > mw:
            ew, eh = mw, round(1000 * mw / 1000.0)
        if mh and eh > mh:
            ew, eh = round(1000 * mh / 1000.0), mh
        st, h, body = get(url(size="^max"))
        got = header_size(body) if st == 200 else None
        t.check(got is not None and abs(got[0] - ew) <= 1 and abs(got[1] - eh) <= 1,
                label("size_up (spec over validator, G2)", "^max -> the largest size the limits %s allow, "
                      "%dx%d +-1 (%d %s)" % (limits, ew, eh, st, got)))
        for size in ("^abc", "^", "^^max", "^pct:0", "^%d," % (int(mw or 10000) + 1)):
            expect_400("size_up", url(size=size), "size %s (malformed, zero or above maxWidth)" % size)
    else:
        # -- 2.1: upscaling is implicit (sizeAboveFull, claimed); full and max are both the full size --
        sized("size_up", ",%d" % s, s, s)
        sized("size_up", "%d," % s, s, s)
        sized("size full", "full", 1000, 1000)
        sized("size max (viewers send it to 2.x servers)", "max", 1000, 1000)
        expect_400("size", url(size="^max"), "size ^max (no ^ in 2.1)")
        expect_400("size", url(size="^%d," % s), "size ^%d, (no ^ in 2.1)" % s)

    # -- size_error_random (level 1) and plain size errors --
    for r in random_strings("size", 6, 4):
        expect_400("size_error_random", url(size=r), "size %r" % r)
    for size in ("0,", ",0", "0,0", "pct:0", "!0,0", "1.5,", "-10,", "10,10,10", "pct:-5", "!10"):
        expect_400("size_error", url(size=size), "size %s" % size)

    # -- rot_full_basic (level 2): 90/180/270 move every square, corners included --
    corners = [(0, 0), (9, 0), (0, 9), (9, 9)]
    for rot in (90, 180, 270):
        img, st, h, body = fetch(url(rotation=str(rot)))
        ok = img is not None and img[:2] == (1000, 1000)
        f = rot90s_map(scale_map(0, 0, 1, 1), 1000, 1000, rot)
        cnt, bad = grid_check(img if ok else None, f, 10)
        where = ok and ["(%d,%d)->(%d,%d)" % (c, r, int(f(c * 100 + 50, r * 100 + 50)[0]) // 100,
                                              int(f(c * 100 + 50, r * 100 + 50)[1]) // 100) for c, r in corners]
        t.check(ok and not bad, label("rot_full_basic", "rotation %d: corner squares moved clockwise %s; %s (%d)"
                                      % (rot, where, squares_report(cnt, bad), st)))

    img, st, h, body = fetch(url(rotation="360"))
    cnt, bad = grid_check(img if img and img[:2] == (1000, 1000) else None, scale_map(0, 0, 1, 1), 10)
    t.check(not bad, label("rot_full_basic", "rotation 360 is allowed and is the unrotated image; %s (%d)"
                           % (squares_report(cnt, bad), st)))

    # -- rot_region_basic (level 2): random regions rotated by 90s --
    rng = random.Random(SEED)
    for _ in range(2):
        x, y, w, h_ = rng.randint(0, 500), rng.randint(0, 500), rng.randint(100, 400), rng.randint(100, 400)
        inside = [(c, r) for c, r in SQUARES
                  if x + 15 <= c * 100 + 50 < x + w - 15 and y + 15 <= r * 100 + 50 < y + h_ - 15]
        for rot in (90, 180, 270):
            img, st, hd, body = fetch(url("%d,%d,%d,%d" % (x, y, w, h_), rotation=str(rot)))
            dims = (h_, w) if rot in (90, 270) else (w, h_)
            ok = img is not None and img[:2] == dims
            f = rot90s_map(scale_map(x, y, 1, 1), w, h_, rot)
            cnt, bad = grid_check(img if ok else None, f, 5, inside)
            t.check(ok and not bad, label("rot_region_basic", "%d,%d,%d,%d rotated %d -> %dx%d; %s (%d %s)"
                                          % (x, y, w, h_, rot, dims[0], dims[1], squares_report(cnt, bad),
                                             st, img and img[:2])))

    # -- rot_mirror, rot_mirror_180 (optional; claimed as mirroring), and !90 (mirror first) --
    for test, rot, deg, what in (("rot_mirror", "!0", 0, "left-right flip"),
                                 ("rot_mirror_180", "!180", 180, "top-bottom flip"),
                                 ("rot_mirror", "!90", 90, "left-right flip, then 90 clockwise")):
        img, st, h, body = fetch(url(rotation=rot))
        ok = img is not None and img[:2] == (1000, 1000)
        f = rot90s_map(scale_map(0, 0, 1, 1), 1000, 1000, deg, mirror=True)
        cnt, bad = grid_check(img if ok else None, f, 10)
        t.check(ok and not bad, label(test, "%s is a %s; %s (%d)" % (rot, what, squares_report(cnt, bad), st)))

    # -- rot_full_non90 (optional; claimed as rotationArbitrary) --
    rng = random.Random(SEED)
    deg = rng.randint(1, 359)
    while deg % 90 == 0:
        deg = rng.randint(1, 359)
    for rot in (str(deg), "22.5"):
        d = float(rot)
        img, st, h, body = fetch(url(rotation=rot))
        bw, bh = bbox(1000, 1000, d)
        ok = img is not None and abs(img[0] - bw) <= 2 and abs(img[1] - bh) <= 2
        cnt, bad = grid_check(img if ok else None,
                              ok and arbitrary_map(scale_map(0, 0, 1, 1), 1000, 1000, d, img[0], img[1]), 5)
        t.check(ok and not bad, label("rot_full_non90", "rotation %s: canvas is the rotated bounding box %.0fx%.0f +-2 "
                                      "(got %s); every square where rotation puts it, %s (%d)"
                                      % (rot, bw, bh, img and img[:2], squares_report(cnt, bad), st)))
    # In png the area outside the rotated image is transparent (spec §4.3: servers should fill with
    # transparency where the format allows); checked at 300 px wide to keep the PNG decode quick.
    img, st, h, body = fetch(url(size="300,", rotation=str(deg), fmt="png"))
    bw, bh = bbox(300, 300, deg)
    ok = img is not None and img[2] in (2, 4) and abs(img[0] - bw) <= 2 and abs(img[1] - bh) <= 2
    alpha_bad, inside_n, outside_n = [], 0, 0
    if ok:
        a = math.radians(deg)
        co, si = math.cos(a), math.sin(a)
        for oy in range(2, img[1], max(1, img[1] // 24)):
            for ox in range(2, img[0], max(1, img[0] // 24)):
                u, w_ = ox + 0.5 - img[0] / 2.0, oy + 0.5 - img[1] / 2.0
                sx, sy = u * co + w_ * si + 150, -u * si + w_ * co + 150  # inverse rotation into the source
                dist = min(sx, sy, 300 - sx, 300 - sy)  # > 0 inside the source
                if dist <= -2:
                    outside_n += 1
                    if alpha_at(img, ox, oy) != 0:
                        alpha_bad.append((ox, oy, alpha_at(img, ox, oy)))
                elif dist >= 2:
                    inside_n += 1
                    if alpha_at(img, ox, oy) != 255:
                        alpha_bad.append((ox, oy, alpha_at(img, ox, oy)))
        cnt, bad = grid_check(img, arbitrary_map(scale_map(0, 0, 0.3, 0.3), 300, 300, deg, img[0], img[1]), 3)
    else:
        cnt, bad = 0, ["no image"]
    t.check(ok and not alpha_bad and outside_n > 20 and inside_n > 20 and not bad,
            label("rot_full_non90", "300,/%d png: has alpha, transparent outside the rotated image (%d points), "
                  "opaque inside (%d points)%s; %s (%d %s)"
                  % (deg, outside_n, inside_n, " BAD %s" % alpha_bad[:5] if alpha_bad else "",
                     squares_report(cnt, bad), st, img and img[:3])))

    # -- rot_error_random (level 1) and out-of-range rotations --
    for r in random_strings("rotation", 4, 4):
        expect_400("rot_error_random", url(rotation=r), "rotation %r" % r)
    for r in ("361", "-90", "+90", "1e2", "90.5.5", "!", "!!90", "360.01"):
        expect_400("rot_error", url(rotation=r), "rotation %s" % r)

    # -- quality_color (level 2), quality_grey (level 2), quality_bitonal (2.1 level 2; 3.0 optional, claimed) --
    img, st, h, body = fetch(url(quality="color"))
    ok = img is not None and img[:3] == (1000, 1000, 3)
    cnt, bad = grid_check(img if ok else None, scale_map(0, 0, 1, 1), 10)
    t.check(ok and not bad, label("quality_color", "color -> RGB image with the reference colours; %s (%d)"
                                  % (squares_report(cnt, bad), st)))
    for fmt in ("jpg", "png"):
        img, st, h, body = fetch(url(size="250," if fmt == "png" else None, quality="gray", fmt=fmt))
        side = 250 if fmt == "png" else 1000
        ok = img is not None and img[:2] == (side, side)
        grey = ok and (img[2] in (1, 2) or all(rgb_at(img, x, y)[0] == rgb_at(img, x, y)[1] == rgb_at(img, x, y)[2]
                                               for y in range(side) for x in range(side)))
        # Which grey is implementation-defined; docs/image-api.md says BT.601 luma, and any sensible
        # conversion is within the tolerance of it on these colours.
        lum_bad = []
        if ok:
            for c, r in SQUARES:
                want = sum(k * v_ for k, v_ in zip((0.299, 0.587, 0.114), colour[(c, r)]))
                got = median_rgb(img, int((c * 100 + 50) * side / 1000), int((r * 100 + 50) * side / 1000), 3)[0]
                if abs(got - want) > TOL:
                    lum_bad.append(((c, r), got, round(want)))
        t.check(ok and grey and not lum_bad,
                label("quality_grey", "gray.%s: every pixel r==g==b (%d channel(s)); each square's grey within %d "
                      "of its luma%s (%d %s)" % (fmt, img[2] if img else 0, TOL,
                                                 " BAD %s" % lum_bad[:3] if lum_bad else "",
                                              st, img and img[:2])))
    img, st, h, body = fetch(url(size="250,", quality="bitonal", fmt="png"))
    vals = set(img[3][k] for k in range(0, len(img[3]), img[2])) if img else set()
    t.check(img is not None and img[:2] == (250, 250) and vals == {0, 255},
            label("quality_bitonal", "bitonal.png: only black and white pixels, both present (%s) (%d)"
                  % (sorted(vals)[:6], st)))
    img, st, h, body = fetch(url(quality="bitonal"))
    first = img[3][::img[2]] if img else b""
    near = img and sum(1 for x in first if x <= TOL or x >= 255 - TOL) / len(first)
    t.check(img is not None and img[:2] == (1000, 1000) and near > 0.99,
            label("quality_bitonal", "bitonal.jpg: %.2f%% of pixels within %d of black or white (jpg is lossy)"
                  % (100 * (near or 0), TOL)))
    # -- quality_error_random (level 1) and qualities that do not exist in this version --
    for r in random_strings("quality", 6, 4):
        expect_400("quality_error_random", url(quality=r), "quality %r" % r)
    expect_400("quality_error", url(quality="grey"), "quality grey (1.x spelling)")
    if api == 3:
        expect_400("quality_error", url(quality="native"), "quality native (1.x name, not 3.0)")
    else:
        img, st, h, body = fetch(url(quality="native"))
        t.check(img is not None and img[:2] == (1000, 1000),
                label("quality native", "native is served as default on 2.1 (docs/image-api.md) (%d)" % st))

    # -- format_jpg, format_png (level 0 / level 2) --
    st, h, body = get(url())
    t.check(st == 200 and h.get("content-type") == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
            and header_size(body) == (1000, 1000),
            label("format_jpg", "Content-Type image/jpeg, JPEG magic bytes, 1000x1000 (%d %s)"
                  % (st, h.get("content-type"))))
    st, h, body = get(url(fmt="png"))
    t.check(st == 200 and h.get("content-type") == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
            and header_size(body) == (1000, 1000),
            label("format_png", "Content-Type image/png, PNG magic bytes, 1000x1000 (%d %s)"
                  % (st, h.get("content-type"))))
    # -- format_error_random (level 1): the spec says 400; the validator accepts 400, 415, 503 --
    for r in random_strings("format", 3, 16):
        expect_400("format_error_random", url(fmt=r), "format %r" % r)
    mime = {"gif": "image/gif", "tif": "image/tiff", "webp": "image/webp", "pdf": "application/pdf", "jp2": "image/jp2"}
    for fmt, mt in sorted(mime.items()):
        if fmt in fmts:
            st, h, body = get(url(size="100,", fmt=fmt))
            t.check(st == 200 and h.get("content-type") == mt,
                    label("format_" + fmt, "claimed, served as %s (%d)" % (mt, st)))
        else:
            expect_400("format_" + fmt, url(size="100,", fmt=fmt), "unclaimed format %s" % fmt)

    # -- baseurl_redirect (level 1): 303 (spec's recommendation; the validator takes any 3xx) --
    st, h, body = get(pfx)
    t.check(st == 303 and h.get("location") == base + pfx + "/info.json",
            label("baseurl_redirect", "%s -> 303 to %s (%d %s)"
                  % (pfx, base + pfx + "/info.json", st, h.get("location"))))

    # -- cors (level 1): the literal "*" on info and image, GET and OPTIONS, and on errors --
    for what, path in (("info.json", pfx + "/info.json"), ("image", url()), ("404", prefix + "/nope/info.json"),
                       ("400", url(region="nope"))):
        for method in ("GET", "OPTIONS"):
            if what in ("404", "400") and method == "OPTIONS":
                continue
            st, h, body = get(path, method=method)
            t.check(h.get("access-control-allow-origin") == "*",
                    label("cors", "%s %s: Access-Control-Allow-Origin is exactly * (%d %r)"
                          % (method, what, st, h.get("access-control-allow-origin"))))

    # -- jsonld (level 1) and the default media types --
    st, h, body = get(pfx + "/info.json", {"Accept": "application/ld+json"})
    t.check(st == 200 and h.get("content-type", "").startswith("application/ld+json"),
            label("jsonld", "Accept: application/ld+json -> %s" % h.get("content-type")))
    st, h, body = get(pfx + "/info.json")
    want = ('application/ld+json;profile="http://iiif.io/api/image/3/context.json"' if api == 3
            else "application/json")
    t.check(h.get("content-type") == want, label("jsonld", "no Accept -> %s (%s)" % (want, h.get("content-type"))))
    if api == 3:
        st, h, body = get(pfx + "/info.json", {"Accept": 'application/ld+json;profile="%s"' % context})
        t.check(h.get("content-type", "").startswith("application/ld+json"),
                label("jsonld", "Accept: application/ld+json with the profile parameter -> %s" % h.get("content-type")))
    st, h, body = get(pfx + "/info.json", {"Accept": "application/json"})
    t.check(h.get("content-type") == "application/json",
            label("jsonld", "Accept: application/json -> application/json (%s)" % h.get("content-type")))

    # -- linkheader_canonical, linkheader_profile (optional; claimed) --
    st, h, body = get(url())
    links = rel_links(h.get("link"))
    t.check(links.get("canonical") == [base + url()],
            label("linkheader_canonical", "full image: rel=canonical <%s> (%s)" % (base + url(), h.get("link"))))
    prof = "http://iiif.io/api/image/%d/level2.json" % api
    t.check(links.get("profile") == [prof],
            label("linkheader_profile", "rel=profile <%s> (%s)" % (prof, links.get("profile"))))
    # canonical forms of non-canonical requests (spec §4.7 in 3.0, §4.7 in 2.1)
    if api == 3:
        cases = [(url("pct:0,0,100,100", "500,"), url("full", "500,500")),
                 (url("square", "max"), url()),
                 (url("0,0,1000,1000", "pct:100", quality="color"), url(quality="color")),
                 (url("pct:10,20,30,40", "150,", "!90", fmt="png"),
                  url("100,200,300,400", "150,200", "!90", fmt="png")),
                 (url(rotation="22.50"), url(rotation="22.5")),
                 (url(size="^pct:200"), url(size="^2000,2000")),
                 (url(size="^max"), url(size="^max"))]  # "^max if the maximum upscaled size is requested"
    else:
        cases = [(url("pct:0,0,100,100", "500,"), url("full", "500,")),
                 (url("square", "1000,"), url("full", "full")),
                 (url(size="500,500"), url(size="500,")),
                 (url(size="500,400"), url(size="500,400")),
                 (url(size="max", quality="native"), url("full", "full")),
                 (url("pct:10,20,30,40", "150,", "!90", fmt="png"), url("100,200,300,400", "150,", "!90", fmt="png"))]
    for req, canon in cases:
        st, h, body = get(req)
        got = rel_links(h.get("link")).get("canonical")
        t.check(st == 200 and got == [base + canon],
                label("linkheader_canonical", "%s -> canonical %s (%d %s)" % (req[len(pfx):], canon[len(pfx):], st,
                                                                             got and got[0][len(base + pfx):])))


run(3)
run(2)

t.check("killed by signal" not in v.output(), "no worker died during the run")
v.stop()
n.stop()
t.done()
