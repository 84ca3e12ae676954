"""The shared image corpus (../shared/fixtures, or $VELLUM_FIXTURES) through real nginx:
every valid JPEG 2000 / JPEG / PNG serves its info.json and tiles (pixels checked against
opj_decompress where it writes 8-bit PNM); every corrupt file gets an error (or an image) for
that request only: no worker dies, no request hangs, and the next valid request succeeds."""
import json
import os
import urllib.parse

import harness as t
import pixels as px

FIX = os.path.abspath(t.FIXTURES)
if not os.path.isdir(os.path.join(FIX, "jp2")):
    t.skip("fixtures not found at %s (set VELLUM_FIXTURES); the corpus tests did NOT run" % FIX)

work = t.tmpdir()
v = t.Vellum(work, args=["--workers", "2", "--image-root", FIX])
n = t.Nginx(work, v.fastcgi_address)
workers = v.workers()


def files(folder):
    out = []
    for d, _, names in os.walk(os.path.join(FIX, folder)):
        for name in sorted(names):
            out.append(os.path.relpath(os.path.join(d, name), FIX))
    return sorted(out)


def ident(rel):
    return urllib.parse.quote(rel, safe="")


def get(path):
    try:
        return t.request(n.port, path, timeout=60)
    except Exception as e:  # a hang or a dropped connection is a failure, reported as such
        return 0, {}, repr(e).encode()


# Where Vellum's pixels differ from opj_decompress on purpose (checked by hand, 2026-11-25):
DIFFERENT_BY_DESIGN = {
    # opj_decompress converts embedded ICC profiles to sRGB with lcms; Vellum passes the
    # pixels through and embeds the profile in its output, so browsers apply it.
    "jp2/loris/47102787.jp2": "ICC profile embedded, not applied",
    "jp2/openjpeg-data/conformance/file5.jp2": "ICC profile embedded, not applied",
    "jp2/openjpeg-data/nonregression/issue171.jp2": "ICC profile embedded, not applied",
    # Signed samples: Vellum adds 2^(prec-1) (zero becomes mid-grey, as Kakadu renders them);
    # opj_decompress's PNM writer clips negative values to 0.
    "jp2/openjpeg-data/nonregression/j2k32.j2k": "signed samples offset, not clipped",
    # Image origin offset: the reduced grid is not ceil(W/2^r), so the requested size is
    # resampled from a level one pixel larger.
    "jp2/openjpeg-data/conformance/p1_01.j2k": "origin offset: resampled by one pixel",
}
# Sources Vellum refuses, with the status it must give.
REFUSED = {"jpeg/libjpeg-turbo/monkey12.jpg": 415}  # 12-bit JPEG: libjpeg-turbo 2.1 is built 8-bit

# ---- valid sources ------------------------------------------------------------------------
valid = [f for f in files("jp2") + files("large") + files("jpeg") + files("png")
         if not f.endswith((".md", ".txt"))]
served = compared = 0
problems = []
for rel in valid:
    st, h, body = get("/iiif/3/%s/info.json" % ident(rel))
    if rel in REFUSED:
        if st != REFUSED[rel] or b'"error"' not in body:
            problems.append("%s: expected %d with a message, got %d" % (rel, REFUSED[rel], st))
        continue
    if rel.startswith("png/") and st != 200:
        continue  # fixtures/png holds libpng's crasher files too: they only must not hurt the pool
    if st != 200:
        problems.append("%s: info.json %d %r" % (rel, st, body[:120]))
        continue
    info = json.loads(body)
    tile = info["tiles"][0]
    smallest = info["sizes"][0]
    # the smallest advertised size, and the top-left full-resolution tile
    for path in ("full/%d,%d/0/default.png" % (smallest["width"], smallest["height"]),
                 "0,0,%d,%d/max/0/default.jpg" % (min(tile["width"], info["width"]),
                                                  min(tile["height"], info["height"]))):
        st, h, body = get("/iiif/3/%s/%s" % (ident(rel), path))
        if st != 200:
            problems.append("%s: %s -> %d %r" % (rel, path, st, body[:120]))
    served += 1
    # Pixels: the smallest size equals opj_decompress at that reduction where the reference
    # is a plain 8-bit PNM with as many channels as our answer.
    if (rel.endswith((".jp2", ".j2k", ".j2c", ".jpc")) and info["width"] * info["height"] <= 4_000_000
            and rel not in DIFFERENT_BY_DESIGN):
        sf = max(tile["scaleFactors"])
        r = sf.bit_length() - 1
        try:
            ref = px.opj_reference(os.path.join(FIX, rel), r)
        except Exception:
            continue
        st, h, body = get("/iiif/3/%s/full/%d,%d/0/default.png" % (ident(rel), ref[0], ref[1]))
        if st != 200:
            continue
        img = px.read_png(body)
        if img[2] != ref[2]:
            continue
        d = px.diff(img[:4], ref)
        compared += 1
        if d is None or d[1] > 3.0:
            problems.append("%s: smallest level differs from opj_decompress -r %d: %s" % (rel, r, d))
t.check(not problems, "every valid fixture serves info.json and tiles (%d served, %d compared "
        "with opj_decompress, mean tolerance 3):\n  %s" % (served, compared, "\n  ".join(problems)))
t.check(served >= 100, "at least 100 valid fixtures served (%d)" % served)

# ---- colour: a source's ICC profile travels with the pixels ---------------------------------
def jp2_icc(path):
    """The ICC profile of a JP2's colr box (method 2 or 3), read straight from the file."""
    data = open(path, "rb").read()
    i = data.find(b"colr")
    if i < 4 or data[i + 4] not in (2, 3):
        return None
    n = int.from_bytes(data[i - 4:i], "big")
    return data[i + 7:i - 4 + n]


def jpeg_icc(data):
    chunks, pos = {}, 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] not in (0xDA, 0xD9):
        n = int.from_bytes(data[pos + 2:pos + 4], "big")
        seg = data[pos + 4:pos + 2 + n]
        if data[pos + 1] == 0xE2 and seg.startswith(b"ICC_PROFILE\0"):
            chunks[seg[12]] = seg[14:]
        pos += 2 + n
    return b"".join(chunks[k] for k in sorted(chunks)) if chunks else None


def png_icc(data):
    import zlib
    pos = 8
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == b"iCCP":
            body = data[pos + 8:pos + 8 + n]
            name_end = body.index(b"\0")
            return zlib.decompress(body[name_end + 2:])
        pos += 12 + n
    return None


rel = "jp2/openjpeg-data/nonregression/issue171.jp2"
icc = jp2_icc(os.path.join(FIX, rel))
st, h, body = get("/iiif/3/%s/full/100,/0/default.jpg" % ident(rel))
t.check(icc and st == 200 and jpeg_icc(body) == icc,
        "ICC: the source's %d-byte profile is embedded in jpg output" % len(icc or b""))
st, h, body = get("/iiif/3/%s/full/100,/0/default.png" % ident(rel))
t.check(icc and st == 200 and png_icc(body) == icc, "ICC: the source's profile is embedded in png output")
st, h, body = get("/iiif/3/%s/full/100,/0/gray.jpg" % ident(rel))
t.check(st == 200 and jpeg_icc(body) is None, "ICC: an RGB profile is not put on gray output")

# ---- corrupt sources -------------------------------------------------------------------------
bad = []
for rel in files("corrupt"):
    for path in ("info.json", "full/64,/0/default.jpg", "0,0,16,16/max/0/default.png"):
        st, h, body = get("/iiif/3/%s/%s" % (ident(rel), path))
        # 502/504 would mean nginx lost the worker or timed out: exactly what must not happen
        if st == 0 or st in (502, 504) or not (st == 200 or 400 <= st < 600):
            bad.append("%s/%s -> %d %r" % (rel, path, st, body[:100]))
        elif st >= 400 and b'"error"' not in body:
            bad.append("%s/%s -> %d without a JSON message" % (rel, path, st))
    st, _, _ = get("/iiif/3/%s/info.json" % ident(valid[0]))
    if st != 200:
        bad.append("after %s the next valid request got %d" % (rel, st))
t.check(not bad, "every corrupt fixture gets a complete answer for that request only:\n  " + "\n  ".join(bad[:40]))
t.check(v.workers() == workers and "killed by signal" not in v.output(),
        "no worker died over the whole corpus (%s -> %s)" % (workers, v.workers()))
t.check(get("/health")[0] == 200, "the pool still serves after the corpus")
v.stop()
n.stop()
t.done()
