"""Real IIIF viewers against Vellum in headless Chromium: OpenSeadragon on an image's info.json
(a tiled and an untiled JPEG 2000), Mirador 4 and Universal Viewer 4 on a manifest of three pages
imported with `vellum import`. The viewer pages (scripts/viewers/) and the front-end packages
(npm, pinned by tests/e2e/package-lock.json) are served by one nginx, the IIIF documents and
images by another (so every request is cross-origin and CORS is exercised), with the
docs/deploy.md server block for the tile store (nginx-store): tiles one viewer loaded come to
the next from the store as files nginx sends, and that must be seen to happen. tests/e2e/viewers.mjs drives Chromium with playwright-core: open,
wait until the tiles are loaded, zoom in twice, pan; Mirador also goes to page 2. Checked here:

- every request the page made was answered without a 4xx/5xx or a network/CORS failure, and
  nothing was fetched from outside this machine; no console error, no uncaught exception;
- every image request is a tile of the grid info.json advertises (one of tiles[0].scaleFactors,
  region aligned to tile*sf, size ceil(region/sf)) or one of its `sizes` or a thumbnail the
  manifest names; anything else is listed and fails;
- zooming in requested finer tiles, panning requested new ones;
- the viewer area is not blank (pixel statistics of screenshots, kept in
  $VELLUM_BUILD_DIR/e2e-artifacts/ with report.json);
- Mirador shows the manifest's label, its metadata and "1 of 3", then "2 of 3" and page 2's tiles.

SKIPPED (exit 77) when Chromium (Debian package chromium), node or npm is missing, or the npm
packages cannot be installed (offline); every real viewer problem fails.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

import harness as t
import pixels as px

T_START = time.time()
CHROMIUM = os.environ.get("VELLUM_CHROMIUM", "/usr/bin/chromium")
E2E = os.path.join(t.SOURCE_DIR, "tests", "e2e")
VIEWERS = os.path.join(t.SOURCE_DIR, "scripts", "viewers")
ARTIFACTS = os.path.join(t.BUILD_DIR, "e2e-artifacts")

node, npm = shutil.which("node"), shutil.which("npm")
if not os.access(CHROMIUM, os.X_OK):
    t.skip("no Chromium at %s (Debian package chromium; scripts/setup installs it)" % CHROMIUM)
if not node or not npm:
    t.skip("node/npm not installed (scripts/setup installs them)")


# ---- npm packages: `npm ci` only when node_modules does not match the lock file ------------------
REQUIRED = ["playwright-core/package.json", "openseadragon/build/openseadragon/openseadragon.min.js",
            "mirador/dist/mirador.min.js", "universalviewer/dist/umd/UV.js"]
why = t.ensure_e2e_packages(REQUIRED)
if why:
    t.skip(why)

# ---- images and catalogue -----------------------------------------------------------------------
work = t.tmpdir("vellum-viewers-")
root = os.path.join(work, "images")
os.makedirs(os.path.join(root, "book"))


def chart(w, h, variant):
    """An RGB test chart with structure at every scale: gradients, a checkerboard and a grid
    (dark 6 px lines every 250 px), different for each variant. Row by row, so it is fast."""
    cell = (100, 160, 64)[variant]
    gradx = bytes(x * 255 // (w - 1) for x in range(w))
    checker = [bytes((210 if ((x // cell) + k) % 2 else 40) for x in range(w)) for k in (0, 1)]
    out = bytearray(w * h * 3)
    dark = bytes(w * 3)
    for y in range(h):
        row = bytearray(w * 3)
        grad_y = y * 255 // (h - 1)
        chk = checker[(y // cell) % 2]
        chans = [(gradx, bytes([grad_y]) * w, chk),
                 (chk, gradx, bytes([255 - grad_y]) * w),
                 (bytes([grad_y]) * w, chk, gradx)][variant]
        for c in range(3):
            row[c::3] = chans[c]
        if y % 250 < 6:
            row = dark
        else:
            for x in range(0, w, 250):
                row[x * 3:(x + 6) * 3] = bytes(len(row[x * 3:(x + 6) * 3]))
        out[y * w * 3:(y + 1) * w * 3] = row
    return bytes(out)


IMAGES = {  # identifier: (width, height, variant, encoder options)
    "book/p1.jp2": (3000, 2000, 0, ["-t", "512,512", "-n", "6"]),  # tiled 512
    "book/p2.jp2": (2000, 3000, 1, ["-n", "6"]),                   # untiled
    "book/p3.jpg": (1600, 1200, 2, None),                          # baseline JPEG
}
for name, (w, h, variant, opts) in IMAGES.items():
    ppm = os.path.join(work, "src-%d.ppm" % variant)
    px.write_pnm(ppm, w, h, 3, chart(w, h, variant))
    out = os.path.join(root, name)
    if opts is None:
        subprocess.run(["cjpeg", "-quality", "90", "-outfile", out, ppm], check=True)
    else:
        subprocess.run(["opj_compress", "-i", ppm, "-o", out, "-r", "20"] + opts,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.unlink(ppm)

LABEL = "Vellum viewer test book"
METADATA = {"Creator": "Vellum test suite", "Date": "2026"}
CSV = """manifest,label,summary,metadata.Creator,metadata.Date,rights,canvas_label,image
book,%s,Three charts drawn by tests/integration/test_viewers.py.,%s,%s,http://creativecommons.org/publicdomain/zero/1.0/,p. 1,book/p1.jp2
book,,,,,,p. 2,book/p2.jp2
book,,,,,,p. 3,book/p3.jpg
""" % (LABEL, METADATA["Creator"], METADATA["Date"])
csv_path = os.path.join(work, "catalogue.csv")
with open(csv_path, "w", encoding="utf-8") as f:
    f.write(CSV)
db = os.path.join(work, "vellum.db")
r = subprocess.run([t.VELLUM_BIN, "import", "--database", db, "--image-root", root, csv_path],
                   capture_output=True, text=True)
if not t.check(r.returncode == 0, "vellum import of a three-page catalogue: %s" % (r.stdout + r.stderr).strip()):
    t.done()

# ---- servers: pages on one origin, IIIF on another ----------------------------------------------
www = os.path.join(work, "www")
os.makedirs(os.path.join(www, "node_modules"))
for page in ("osd.html", "mirador.html", "uv.html"):
    shutil.copy(os.path.join(VIEWERS, page), www)
# Only the built front-end folders, copied (~40 MB, well under a second): the pages then do not
# depend on tests/e2e/node_modules staying in place while the browser runs.
for pkg, sub in (("openseadragon", "build/openseadragon"), ("mirador", "dist"), ("universalviewer", "dist/umd")):
    shutil.copytree(os.path.join(E2E, "node_modules", pkg, sub), os.path.join(www, "node_modules", pkg, sub),
                    ignore=shutil.ignore_patterns("*.map"))
shutil.copy(os.path.join(E2E, "node_modules", "universalviewer", "dist", "uv.css"),
            os.path.join(www, "node_modules", "universalviewer", "dist"))

# The IIIF origin is the deployment deploy.md recommends: tiles a viewer loaded before (the
# second and third viewer load the same images) come from the tile store as files that nginx
# sends, cross-origin like the rest.
store = os.path.join(work, "tiles")
v = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--database", db,
                         "--tile-store-dir", store])
pages = t.Nginx(work, v.fastcgi_address, www=www)
iiif = t.Nginx(work, v.fastcgi_address, template_name="nginx-store", values={"STORE_DIR": store})
PAGES = "http://127.0.0.1:%d" % pages.port
IIIF = "http://127.0.0.1:%d" % iiif.port


def enc(s):
    return urllib.parse.quote(s, safe="")


def fetch_json(path):
    st, h, body = t.request(iiif.port, path)
    if st != 200:
        raise RuntimeError("GET %s: %d %s" % (path, st, body[:200]))
    return json.loads(body)


manifest_url = IIIF + "/presentation/3/book/manifest"
manifest = fetch_json("/presentation/3/book/manifest")
t.check(len(manifest.get("items", [])) == 3, "the manifest has 3 canvases")
thumbnails = set()
for th in manifest.get("thumbnail", []):
    thumbnails.add(th["id"])
for cv in manifest.get("items", []):
    for th in cv.get("thumbnail", []):
        thumbnails.add(th["id"])
infos = {}


def info_for(ident, version="3"):
    if (ident, version) not in infos:
        infos[ident, version] = fetch_json("/iiif/%s/%s/info.json" % (version, enc(ident)))
    return infos[ident, version]


for name in IMAGES:
    i = info_for(name)
    print("info.json %s: %dx%d tiles %s sizes %s" % (name, i["width"], i["height"], i.get("tiles"),
                                                    [(s["width"], s["height"]) for s in i.get("sizes", [])]),
          flush=True)

# ---- run the browser -----------------------------------------------------------------------------
shutil.rmtree(ARTIFACTS, ignore_errors=True)
os.makedirs(ARTIFACTS, exist_ok=True)
scenarios = [
    {"name": "osd-tiled", "kind": "osd",
     "url": PAGES + "/osd.html?info=" + enc(IIIF + "/iiif/3/%s/info.json" % enc("book/p1.jp2"))},
    {"name": "osd-untiled", "kind": "osd",
     "url": PAGES + "/osd.html?info=" + enc(IIIF + "/iiif/3/%s/info.json" % enc("book/p2.jp2"))},
    {"name": "mirador", "kind": "mirador", "url": PAGES + "/mirador.html?manifest=" + enc(manifest_url),
     "page2": "/" + enc("book/p2.jp2")},
    {"name": "uv", "kind": "uv", "url": PAGES + "/uv.html?manifest=" + enc(manifest_url)},
]
only = os.environ.get("VELLUM_E2E_ONLY")
if only:
    scenarios = [s for s in scenarios if s["name"] in only.split(",")]
config = os.path.join(work, "viewers.json")
with open(config, "w") as f:
    json.dump({"chromium": CHROMIUM, "artifacts": ARTIFACTS, "timeoutMs": 45000, "scenarios": scenarios}, f)
print("setup took %.1f s; running viewers.mjs" % (time.time() - T_START), flush=True)
try:
    r = subprocess.run([node, os.path.join(E2E, "viewers.mjs"), config], capture_output=True, text=True,
                       timeout=400)
except subprocess.TimeoutExpired as e:
    t.check(False, "viewers.mjs finished within 400 s: %s" % (e.stderr or b"")[-1500:])
    t.done()
sys.stdout.write(r.stderr)
if r.returncode != 0 or not r.stdout.strip():
    t.check(False, "viewers.mjs ran (exit %d): %s" % (r.returncode, r.stderr[-1500:]))
    t.done()
report = json.loads(r.stdout.strip().splitlines()[-1])
with open(os.path.join(ARTIFACTS, "report.json"), "w") as f:
    json.dump(report, f, indent=1)


# ---- checking one image request against info.json ---------------------------------------------
def parse_size(size, rw, rh):
    """A 3.0 or 2.1 size parameter for a region of rw x rh: (w, h)."""
    s = size.lstrip("^")
    if s in ("max", "full"):
        return rw, rh
    if s.startswith("pct:"):
        n = float(s[4:])
        return max(1, round(rw * n / 100)), max(1, round(rh * n / 100))
    confined = s.startswith("!")
    s = s.lstrip("!")
    w, _, h = s.partition(",")
    if confined:
        w, h = int(w), int(h)
        scale = min(w / rw, h / rh)
        return max(1, int(rw * scale + 0.5)), max(1, int(rh * scale + 0.5))
    if w and h:
        return int(w), int(h)
    if w:
        return int(w), max(1, math.floor(rh * int(w) / rw + 0.5))
    return max(1, math.floor(rw * int(h) / rh + 0.5)), int(h)


def classify(url):
    """What an image URL asks for, against its info.json: ('tile', sf) on the advertised grid;
    ('size', (w, h)) one of `sizes`; ('thumbnail', url) named by the manifest; ('free', (w, h))
    the whole image at a size info.json does not list (allowed by level 2, reported);
    ('other', why) anything else (a region off the tile grid, a wrong tile size...)."""
    if url in thumbnails:
        return "thumbnail", url
    parts = urllib.parse.urlsplit(url).path.split("/")
    if len(parts) != 8 or parts[1] != "iiif" or parts[2] not in ("2", "3"):
        return "other", "not an Image API URL"
    ident = urllib.parse.unquote(parts[3])
    region, size, rotation, qf = parts[4:8]
    if ident not in IMAGES:
        return "other", "unknown image %s" % ident
    info = info_for(ident, parts[2])
    W, H = info["width"], info["height"]
    if rotation != "0" or qf.split(".")[0] not in ("default", "native" if parts[2] == "2" else "default"):
        return "other", "rotation %s / quality %s" % (rotation, qf)
    if region == "full":
        x, y, rw, rh = 0, 0, W, H
    else:
        try:
            x, y, rw, rh = (int(n) for n in region.split(","))
        except ValueError:
            return "other", "region %s" % region
    try:
        sw, sh = parse_size(size, rw, rh)
    except ValueError:
        return "other", "size %s" % size
    tiles = (info.get("tiles") or [{}])[0]
    tw = tiles.get("width")
    th = tiles.get("height", tw)
    for sf in tiles.get("scaleFactors", []):
        if tw and x % (tw * sf) == 0 and y % (th * sf) == 0 and rw == min(tw * sf, W - x) \
                and rh == min(th * sf, H - y) and (sw, sh) == (math.ceil(rw / sf), math.ceil(rh / sf)):
            return "tile", sf
    if (x, y, rw, rh) == (0, 0, W, H):
        if any((s["width"], s["height"]) == (sw, sh) for s in info.get("sizes", [])):
            return "size", (sw, sh)
        return "free", (sw, sh)
    return "other", "region %s size %s (%dx%d) is neither a tile of %s nor one of the sizes" % (
        region, size, sw, sh, tiles)


def is_image(url):
    p = urllib.parse.urlsplit(url).path.split("/")
    return len(p) == 8 and p[1] == "iiif" and not url.endswith("info.json")


# Viewer-side faults seen with the pinned versions, that say nothing about the server:
KNOWN_BAD_REQUESTS = [
    # Universal Viewer 4.4.0 passes prefixUrl undefined to OpenSeadragon with data: URIs as
    # button images; OpenSeadragon prefixes one with its default "/images/" and fetches it.
    PAGES + "/images/data:image/gif;base64,",
]
KNOWN_CONSOLE_ERRORS = [
    # Mirador 4.0.0's bundled React 19 complains about Mirador's own code.
    "Accessing element.ref was removed in React 19",
]
summary = []
for sc in report["scenarios"]:
    name = sc["name"]
    t.check(not sc.get("error"), "%s: the run completed%s" % (name, ": " + sc.get("error", "")[:600] if sc.get("error") else ""))
    t.check(not sc.get("timedOut"), "%s: every step settled (tiles loaded) in time: %s" % (name, sc.get("notes")))
    reqs = sc["requests"]
    local = [q for q in reqs if q["url"].startswith((PAGES + "/", IIIF + "/"))]
    external = [q["url"] for q in reqs if q not in local and not q["url"].startswith(("data:", "blob:"))]
    t.check(not external, "%s: nothing requested from outside this machine: %s" % (name, external[:5]))
    bad = ["%s %s %s" % (q["status"], q["failure"] or "", q["url"]) for q in local
           if (q["status"] is None or q["status"] >= 400 or q["failure"])]
    known = [b for b in bad if any(k in b for k in KNOWN_BAD_REQUESTS)]
    if known:
        print("note %s: known viewer quirk(s), not counted: %s" % (name, known), flush=True)
    bad = [b for b in bad if b not in known]
    t.check(not bad, "%s: every request (%d) answered without 4xx/5xx or failure: %s" % (name, len(local), bad[:8]))
    errors, known = [], []
    for c in sc["console"]:
        if c["type"] != "error":
            continue
        where = c.get("where") or ""
        if any(k in c["text"] for k in KNOWN_CONSOLE_ERRORS) or any(k in where for k in KNOWN_BAD_REQUESTS):
            known.append(c["text"][:120])
        else:
            errors.append("%s (%s)" % (c["text"], where))
    if known:
        print("note %s: known viewer console error(s), not counted: %s" % (name, known), flush=True)
    t.check(not errors, "%s: no console errors (CORS or other): %s" % (name, errors[:5]))
    t.check(not sc["pageErrors"], "%s: no uncaught exceptions: %s" % (name, sc["pageErrors"][:3]))
    warnings = [c["text"] for c in sc["console"] if c["type"] == "warning"]
    if warnings:
        print("note %s: %d console warning(s), e.g. %s" % (name, len(warnings), warnings[:3]), flush=True)

    images = [q for q in local if is_image(q["url"])]
    t.check(images and all(q["status"] == 200 for q in images),
            "%s: every image request (%d) is 200: %s" % (name, len(images), sorted({q["status"] for q in images}, key=str)))
    t.check(all(q.get("cors") == "*" for q in images if q["url"].startswith(IIIF)),
            "%s: image responses carry Access-Control-Allow-Origin: *" % name)
    ctypes = sorted({str(q.get("contentType")) for q in images if q["url"].endswith(".jpg")})
    t.check(ctypes == ["image/jpeg"], "%s: .jpg responses are image/jpeg: %s" % (name, ctypes))
    kinds, by_phase, others, free, fmts, urls = {}, {}, [], [], {}, []
    for q in images:
        kind, detail = classify(q["url"])
        api = urllib.parse.urlsplit(q["url"]).path.split("/")[2]
        key = "v%s %s" % (api, "tile sf%d" % detail if kind == "tile" else "%s %dx%d" % ((kind,) + detail)
                          if kind in ("size", "free") else kind)
        kinds[key] = kinds.get(key, 0) + 1
        by_phase.setdefault(q["phase"], []).append((kind, detail, q["url"]))
        fmts[q["url"].rsplit(".", 1)[1]] = fmts.get(q["url"].rsplit(".", 1)[1], 0) + 1
        if kind == "other":
            others.append("%s (%s)" % (q["url"], detail))
        if kind == "free":
            free.append(q["url"])
        urls.append(q["url"])
    t.check(not others, "%s: every image request is a tile, a size or a thumbnail info.json/manifest advertises: %s"
            % (name, others[:6]))
    if free:
        print("note %s: %d whole-image request(s) at sizes info.json does not list (level 2 allows any): %s"
              % (name, len(free), free[:6]), flush=True)
    dups = len(urls) - len(set(urls))
    infos_fetched = sum(1 for q in local if q["url"].endswith("/info.json"))
    summary.append("%-12s %3d image requests %s, formats %s, %d duplicate(s), %d info.json, %.1f s"
                   % (name, len(images), dict(sorted(kinds.items())), fmts, dups, infos_fetched, sc["ms"] / 1000))

    # zoom and pan did something
    def finest(phase):
        sfs = [d for k, d, _ in by_phase.get(phase, []) if k == "tile"]
        return min(sfs) if sfs else None
    seen_before = {u for p in ("load",) for _, _, u in by_phase.get(p, [])}
    zoom_new = [u for _, _, u in by_phase.get("zoom", []) if u not in seen_before]
    t.check(sc.get("zoomFactor") and (sc["zoomFactor"] > 3.5 or sc.get("zoomAtMax") and sc["zoomFactor"] > 1.5),
            "%s: two clicks on Zoom in zoomed 4x, or to the viewer's maximum (got %sx%s)"
            % (name, sc.get("zoomFactor"), ", at the maximum" if sc.get("zoomAtMax") else ""))
    t.check(zoom_new and (finest("zoom") or 0) < (finest("load") or 99) or (finest("zoom") == 1 and zoom_new),
            "%s: zooming in requested finer tiles (finest scale factor %s -> %s, %d new)"
            % (name, finest("load"), finest("zoom"), len(zoom_new)))
    seen_before |= set(zoom_new)
    pan_new = [u for _, _, u in by_phase.get("pan", []) if u not in seen_before]
    t.check(len(pan_new) > 0, "%s: panning requested new tiles (%d)" % (name, len(pan_new)))

    # not blank
    for what, s in sorted(sc["screenshots"].items()):
        t.check(s["stddev"] > 20 and s["dominant"] < 0.5 and s["colours"] > 50,
                "%s: %s view is not blank (luma sd %.1f, %d colours, top colour %.0f%%; %s)"
                % (name, what, s["stddev"], s["colours"], 100 * s["dominant"], os.path.basename(s["file"])))
    t.check(set(sc["screenshots"]) >= {"load", "zoom", "pan"}, "%s: screenshots after load, zoom, pan" % name)
    drawers = sorted({v.get("drawer") or "?" for st in sc["osd"].values() for v in st})
    print("note %s: OpenSeadragon drawer %s" % (name, drawers), flush=True)

    if sc["kind"] == "mirador":
        text = sc["texts"].get("load", "")
        t.check(LABEL in text, "mirador: shows the manifest's label %r" % LABEL)
        for k, val in METADATA.items():
            t.check(k in text and val in text, "mirador: shows the metadata %s: %s" % (k, val))
        t.check("1 of 3" in text, "mirador: shows the page count (1 of 3)")
        t.check("2 of 3" in sc["texts"].get("page2", ""), "mirador: Next item goes to 2 of 3")
        p2 = [(k, d) for k, d, u in by_phase.get("page2", []) if "/iiif/3/%s/" % enc("book/p2.jp2") in u]
        t.check(any(k == "tile" for k, _ in p2), "mirador: page 2 loads page 2's tiles (%d requests: %s)"
                % (len(p2), sorted({"%s %s" % (k, d) for k, d in p2})))
    if sc["kind"] == "uv":
        t.check(LABEL in sc["texts"].get("load", ""), "uv: shows the manifest's label %r" % LABEL)

# The second and third viewer asked for tiles the first had loaded: nginx sent those from the
# tile store (no Vellum access-log line), cross-origin, and every check above still held.
browser_images = sum(1 for sc in report["scenarios"] for q in sc["requests"]
                     if q["url"].startswith(IIIF + "/iiif/") and not q["url"].endswith("/info.json")
                     and q["status"] == 200)
vellum_images = sum(1 for l in t.ACCESS_LINE.findall(v.output())
                    if l[1].startswith("/iiif/") and not l[1].endswith("/info.json") and l[2] == "200")
stored_files = sum(len(fs) for d, _, fs in os.walk(store) if "/.vellum" not in d)
t.check(stored_files > 0 and vellum_images < browser_images,
        "tile store: the browsers got %d images, Vellum made %d of them, %d files are stored; "
        "the rest came from the store through nginx" % (browser_images, vellum_images, stored_files))

print("\n".join(summary), flush=True)
print("artifacts: %s; total %.1f s" % (ARTIFACTS, time.time() - T_START), flush=True)
t.done()
