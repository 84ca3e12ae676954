"""IIIF Presentation API 3.0 and 2.1 through real nginx: a CSV and a JSON Lines catalogue are
imported with `vellum import` (images made at test time with opj_compress), then every manifest
reachable from the top-level collection is fetched and checked: ids absolute and equal to the
URL fetched, canvases dereferenceable at their ids, image services answering info.json with the
canvas size, ETag/304, 404/400, 2.1 shape. Every 3.0 Manifest and Collection is validated
against the official JSON Schema (../shared/iiif/schema/iiif_3_0.json, SPECS G12) with
python3-jsonschema; without the schema or the module that part is SKIPPED (exit 77 when
everything else passed)."""
import json
import os
import struct
import subprocess
import sys
import urllib.parse

import harness as t
import pixels as px

work = t.tmpdir()
root = os.path.join(work, "images")
os.makedirs(os.path.join(root, "ms 1"))
os.makedirs(os.path.join(root, "maps"))

SIZES = {"ms 1/f1r.jp2": (640, 480), "ms 1/f1v.jp2": (480, 640), "ms 1/f2r.jp2": (300, 200),
         "maps/europe.jp2": (900, 500), "psalter/\u00e9 1.jp2": (150, 120)}
os.makedirs(os.path.join(root, "psalter"))
for i, (name, (w, h)) in enumerate(SIZES.items()):
    rgb = bytes(c for y in range(h) for x in range(w)
                for c in ((x * 7 + i * 40) % 256, (y * 5) % 256, (x ^ y) % 256))
    ppm = os.path.join(work, "src%d.ppm" % i)
    px.write_pnm(ppm, w, h, 3, rgb)
    subprocess.run(["opj_compress", "-i", ppm, "-o", os.path.join(root, name), "-n", "3"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

CSV = """manifest,label,label@fr,summary,rights,required_statement,nav_date,viewing_direction,behavior,collection,metadata.Creator,canvas_label,image,range
ms 1/a,Book of Hours,Livre d'heures,"<p>A <b>fine</b> book<script>alert(1)</script></p>",https://creativecommons.org/licenses/by/4.0/,Example Library,1450-01-01,left-to-right,paged,Manuscripts > Latin,Anon.,f. 1r,ms 1/f1r.jp2,Calendar > January
ms 1/a,,,,,,,,,,,f. 1v,ms 1/f1v.jp2,Calendar > February
ms 1/a,,,,,,,,,,,f. 2r,ms 1/f2r.jp2,Hours
map-7,<script>alert(1)</script>Map of Europe,,,https://rightsstatements.org/vocab/InC/1.0/,,,,,Maps,,,maps/europe.jp2,
"""
JSONL = json.dumps({
    "manifest": "psalter \u00e9",
    "label": {"en": ["Psalter"], "he": ["\u05ea\u05d4\u05d9\u05dc\u05d9\u05dd"]},
    "summary": "Hebrew psalter.",
    "metadata": [{"label": {"en": ["Date"]}, "value": {"none": ["c. 1300"]}}],
    "requiredStatement": {"label": {"en": ["Held by"]}, "value": {"en": ["Example Library"]}},
    "rights": "http://rightsstatements.org/vocab/NoC-NC/1.0/",
    "navDate": "1300-01-01",
    "viewingDirection": "right-to-left",
    "provider": [{"id": "https://example.org", "type": "Agent", "label": {"en": ["Example Library"]}}],
    "homepage": [{"id": "https://example.org/psalter", "type": "Text",
                  "label": {"en": ["Catalogue record"]}, "format": "text/html"}],
    "seeAlso": [{"id": "https://example.org/psalter.xml", "type": "Dataset", "format": "text/xml"}],
    "canvases": [{"label": "1r", "image": "psalter/\u00e9 1.jp2"}],
    "ranges": [{"label": "Psalms", "ranges": [{"label": {"en": ["Psalm 1"]}, "canvases": [0]}]}],
    "collection": ["Psalters"],
}, ensure_ascii=False) + "\n"

csv_path = os.path.join(work, "catalogue.csv")
jsonl_path = os.path.join(work, "more.jsonl")
with open(csv_path, "w", encoding="utf-8") as f:
    f.write(CSV)
with open(jsonl_path, "w", encoding="utf-8") as f:
    f.write(JSONL)
dbpath = os.path.join(work, "vellum.db")


def run_import(*files):
    r = subprocess.run([t.VELLUM_BIN, "import", "--database", dbpath, "--image-root", root] + list(files),
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
    return r


imp = run_import(csv_path, jsonl_path)
if not t.check(imp.returncode == 0, "vellum import of a CSV and a JSON Lines catalogue: %s" % imp.stdout.strip()):
    t.done()

# The schema part (G12): validated when the schema and python3-jsonschema are there.
SCHEMA_PATH = os.environ.get("VELLUM_IIIF_SCHEMA") or os.path.join(
    t.SOURCE_DIR, "..", "shared", "iiif", "schema", "iiif_3_0.json")
schema_skipped = None
validator = None
try:
    import jsonschema
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        # The official validator uses Draft7Validator without a format checker.
        validator = jsonschema.Draft7Validator(json.load(f))
except ImportError:
    schema_skipped = "python3-jsonschema is not installed (scripts/setup installs it)"
except OSError:
    schema_skipped = "no IIIF schema at %s (set VELLUM_IIIF_SCHEMA)" % SCHEMA_PATH
if schema_skipped:
    print("SKIPPED: schema validation: " + schema_skipped, flush=True)
validated = []


def validate(doc, what):
    if not validator:
        return
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    detail = "; ".join("%s at %s" % (e.message[:200], "/".join(map(str, e.absolute_path)))
                       for e in errors[:3])
    t.check(not errors, "%s passes the official IIIF 3.0 JSON Schema%s" % (what, ": " + detail if errors else ""))
    validated.append(what)


v = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--database", dbpath])
n = t.Nginx(work, v.fastcgi_address)
base = "http://127.0.0.1:%d" % n.port


def get(path, headers=None, method="GET"):
    return t.request(n.port, path, headers=headers, method=method)


def path_of(url):
    t.check(url.startswith(base + "/"), "id is absolute under the server: %s" % url)
    return url[len(base):]


def get_json(url, what, headers=None):
    st, h, body = get(path_of(url), headers=headers)
    t.check(st == 200, "%s: GET %s is 200 (got %d: %s)" % (what, url, st, body[:200]))
    t.check(h.get("access-control-allow-origin") == "*", "%s: CORS *" % what)
    try:
        return json.loads(body), h
    except ValueError:
        t.check(False, "%s: body is JSON" % what)
        return {}, h


def jpeg_size(data):
    """Width and height from a JPEG's SOF marker."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker, seglen = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seglen
    return None


def enc(s):
    return urllib.parse.quote(s, safe="-._~")


LD3 = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'

# ---- collections: the top level lists the root collections and the objects in none -----------
top_url = base + "/presentation/3/collection"
top, h = get_json(top_url, "top collection")
t.check(h.get("content-type") == LD3, "collection Content-Type is JSON-LD with the 3.0 profile: %s" % h.get("content-type"))
t.check(top.get("id") == top_url and top.get("type") == "Collection", "top collection id equals its URL")
validate(top, "top-level Collection")

manifest_urls, seen_collections = [], set()


def walk(coll, depth=0):
    for item in coll.get("items", []):
        t.check(item.get("id") and item.get("type") in ("Manifest", "Collection") and isinstance(item.get("label"), dict),
                "collection item has id, type and a label map: %s" % json.dumps(item)[:200])
        if item.get("type") == "Manifest":
            manifest_urls.append(item["id"])
            if item.get("thumbnail"):
                st, hh, body = get(path_of(item["thumbnail"][0]["id"]))
                t.check(st == 200 and hh.get("content-type") == "image/jpeg",
                        "collection thumbnail %s is a JPEG (got %d)" % (item["thumbnail"][0]["id"], st))
        elif item["id"] not in seen_collections and depth < 5:
            seen_collections.add(item["id"])
            sub, _ = get_json(item["id"], "collection %s" % item["id"])
            t.check(sub.get("id") == item["id"], "collection id equals the URL it was fetched at: %s" % item["id"])
            validate(sub, "Collection %s" % item["id"])
            walk(sub, depth + 1)


walk(top)
want = {base + "/presentation/3/%s/manifest" % enc(i) for i in ("ms 1/a", "map-7", "psalter \u00e9")}
t.check(set(manifest_urls) == want, "collections list every manifest exactly: %s" % sorted(manifest_urls))
t.check(base + "/presentation/3/collection/" + enc("Manuscripts > Latin") in seen_collections,
        "nested collection Manuscripts > Latin is reachable: %s" % sorted(seen_collections))

# ---- every manifest -------------------------------------------------------------------------
info_cache = {}
for murl in sorted(set(manifest_urls)):
    m, h = get_json(murl, "manifest")
    if not m:
        continue
    what = "manifest %s" % murl
    t.check(h.get("content-type") == LD3, "%s: Content-Type %s" % (what, h.get("content-type")))
    t.check(m.get("@context") == "http://iiif.io/api/presentation/3/context.json" and list(m)[0] == "@context",
            "%s: @context first" % what)
    t.check(m.get("id") == murl, "%s: id equals the URL fetched (%s)" % (what, m.get("id")))
    t.check(m.get("type") == "Manifest" and isinstance(m.get("label"), dict), "%s: type and label map" % what)
    t.check("<script" not in json.dumps(m), "%s: no <script> anywhere" % what)
    validate(m, "Manifest %s" % murl)
    canvases = m.get("items", [])
    t.check(len(canvases) >= 1, "%s: has canvases" % what)
    for i, cv in enumerate(canvases):
        cid = cv.get("id", "")
        t.check(cid == murl[:-len("manifest")] + "canvas/%d" % (i + 1), "%s: canvas %d id %s" % (what, i + 1, cid))
        alone, hh = get_json(cid, "canvas %s" % cid)
        t.check(alone.get("id") == cid, "canvas dereferences at its id: %s" % cid)
        t.check(alone.get("@context") == "http://iiif.io/api/presentation/3/context.json",
                "canvas document has the 3.0 @context")
        embedded = dict(alone)
        embedded.pop("@context", None)
        embedded.pop("partOf", None)
        t.check(embedded == cv, "canvas %s is the same as in the manifest" % cid)
        t.check(alone.get("partOf") == [{"id": murl, "type": "Manifest"}], "canvas %s is partOf its manifest" % cid)
        anno = cv["items"][0]["items"][0]
        body = anno["body"]
        t.check(anno.get("motivation") == "painting" and anno.get("target") == cid,
                "canvas %s: painting annotation targets the canvas" % cid)
        svc = body["service"][0]
        t.check(svc.get("type") == "ImageService3" and svc.get("profile") == "level2", "canvas %s: ImageService3 level2" % cid)
        ident = urllib.parse.unquote(svc["id"].rsplit("/", 1)[1])
        t.check(ident in SIZES, "canvas %s: service names a known image (%s)" % (cid, ident))
        info, ih = get_json(svc["id"] + "/info.json", "info.json for %s" % cid)
        t.check(info.get("id") == svc["id"], "info.json id equals the service id %s" % svc["id"])
        t.check((info.get("width"), info.get("height")) == (cv["width"], cv["height"]) ==
                (body["width"], body["height"]) == SIZES.get(ident),
                "canvas %s: canvas, body and info.json sizes agree with the image (%s)" % (cid, SIZES.get(ident)))
        svc2 = body["service"][1]
        info2, _ = get_json(svc2["@id"] + "/info.json", "2.1 info.json for %s" % cid)
        t.check(info2.get("@id") == svc2["@id"] and info2.get("width") == cv["width"], "2.1 service answers too")
        st, hh, img = get(path_of(body["id"]))
        t.check(st == 200 and jpeg_size(img) == (cv["width"], cv["height"]),
                "canvas %s: body image is a %dx%d JPEG (got %d, %s)" % (cid, cv["width"], cv["height"], st, jpeg_size(img) if st == 200 else None))
        th = cv["thumbnail"][0]
        st, hh, img = get(path_of(th["id"]))
        t.check(st == 200 and jpeg_size(img) == (th["width"], th["height"]),
                "canvas %s: thumbnail %s is %sx%s (got %d, %s)" % (cid, th["id"], th.get("width"), th.get("height"), st, jpeg_size(img) if st == 200 else None))
        t.check(max(th["width"], th["height"]) <= 200, "thumbnail fits in 200x200")
    # structures: range items are canvases of this manifest or nested ranges
    ids = {c["id"] for c in canvases}

    def check_range(r):
        t.check(r.get("type") == "Range" and r.get("id", "").startswith(murl[:-len("manifest")] + "range/"),
                "%s: range id %s" % (what, r.get("id")))
        for it in r.get("items", []):
            if it.get("type") == "Canvas":
                t.check(it.get("id") in ids, "%s: range item is a canvas of the manifest" % what)
            else:
                check_range(it)
    for r in m.get("structures", []):
        check_range(r)

ms1 = base + "/presentation/3/%s/manifest" % enc("ms 1/a")
m, _ = get_json(ms1, "ms 1/a")
t.check(m.get("label") == {"none": ["Book of Hours"], "fr": ["Livre d'heures"]}, "label language map: %s" % m.get("label"))
t.check(m.get("summary") == {"none": ["<p>A <b>fine</b> book</p>"]}, "summary HTML sanitised: %s" % m.get("summary"))
t.check(m.get("rights") == "http://creativecommons.org/licenses/by/4.0/", "https CC rights normalised to http (G12)")
t.check(m.get("navDate") == "1450-01-01T00:00:00Z", "navDate: %s" % m.get("navDate"))
t.check(len(m.get("items", [])) == 3, "ms 1/a has 3 canvases")
t.check([r["label"] for r in m.get("structures", [])] == [{"none": ["Calendar"]}, {"none": ["Hours"]}],
        "structures: Calendar, Hours: %s" % [r.get("label") for r in m.get("structures", [])])
cal = m.get("structures", [{}])[0]
t.check([i.get("type") for i in cal.get("items", [])] == ["Range", "Range"], "Calendar holds two ranges")
mp, _ = get_json(base + "/presentation/3/map-7/manifest", "map-7")
t.check(mp.get("label") == {"none": ["Map of Europe"]}, "script removed from a label: %s" % mp.get("label"))
t.check(mp.get("rights") == "http://rightsstatements.org/vocab/InC/1.0/", "https rightsstatements normalised")
ps, _ = get_json(base + "/presentation/3/%s/manifest" % enc("psalter \u00e9"), "psalter")
t.check(ps.get("provider", [{}])[0].get("id") == "https://example.org", "provider passed through from JSON Lines")
t.check(ps.get("homepage", [{}])[0].get("format") == "text/html", "homepage passed through")
t.check(ps.get("viewingDirection") == "right-to-left", "viewingDirection")

# ---- content negotiation, HEAD ----------------------------------------------------------------
st, h, _ = get(path_of(ms1), headers={"Accept": "application/json"})
t.check(st == 200 and h.get("content-type") == "application/json", "Accept: application/json gets plain JSON (%s)" % h.get("content-type"))
t.check("Accept" in h.get("vary", ""), "Vary: Accept")
st, h, body = get(path_of(ms1), method="HEAD")
t.check(st == 200 and body == b"" and h.get("etag"), "HEAD manifest: 200, no body, ETag")

# ---- ETag / 304 -------------------------------------------------------------------------------
st, h, body = get(path_of(ms1))
etag, lm = h.get("etag"), h.get("last-modified")
t.check(etag and lm, "manifest has ETag (%s) and Last-Modified (%s)" % (etag, lm))
st, h2, body2 = get(path_of(ms1), headers={"If-None-Match": etag})
t.check(st == 304 and body2 == b"" and h2.get("etag") == etag, "If-None-Match with the ETag: 304 (got %d)" % st)
st, _, _ = get(path_of(ms1), headers={"If-None-Match": '"something-else"'})
t.check(st == 200, "another ETag: 200")
canvas1 = path_of(m["items"][0]["id"])
st, h, _ = get(canvas1)
st, _, _ = get(canvas1, headers={"If-None-Match": h.get("etag", "")})
t.check(st == 304, "canvas revalidates with 304")
st, h, _ = get("/presentation/3/collection")
st, _, _ = get("/presentation/3/collection", headers={"If-None-Match": h.get("etag", "")})
t.check(st == 304, "collection revalidates with 304")
st, hh, _ = get(path_of(ms1), headers={"Host": "other.example:8080"})
t.check(hh.get("etag") != etag, "another host (ids change) gets another ETag")

# a re-import that changes the object changes its ETag
with open(csv_path, "w", encoding="utf-8") as f:
    f.write(CSV.replace("Book of Hours", "Book of Hours (revised)"))
imp = run_import(csv_path)
t.check(imp.returncode == 0, "re-import with a new label")
st, h, body = get(path_of(ms1), headers={"If-None-Match": etag})
t.check(st == 200 and h.get("etag") != etag and b"(revised)" in body,
        "after re-import the old ETag gets 200 with the new label (got %d)" % st)

# ---- errors -----------------------------------------------------------------------------------
for path, status in [
    ("/presentation/3/no-such-object/manifest", 404),
    ("/presentation/3/ms%201%2Fa/canvas/4", 404),
    ("/presentation/3/ms%201%2Fa/canvas/0", 400),
    ("/presentation/3/ms%201%2Fa/canvas/01", 400),
    ("/presentation/3/ms%201%2Fa/canvas/-1", 400),
    ("/presentation/3/ms%201%2Fa/canvas/one", 400),
    ("/presentation/3/ms%201%2Fa/canvas/99999999999999999999999", 400),
    ("/presentation/3/no-such-object/canvas/1", 404),
    ("/presentation/3/collection/no-such-collection", 404),
    ("/presentation/3/ms%201%2Fa/something", 404),
    ("/presentation/2/no-such-object/manifest", 404),
]:
    st, h, body = get(path)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    t.check(st == status and doc.get("status") == status and doc.get("error"),
            "%s: %d with a JSON error (got %d: %s)" % (path, status, st, body[:150]))
    t.check(h.get("access-control-allow-origin") == "*", "%s: error has CORS" % path)

# ---- 2.1 --------------------------------------------------------------------------------------
m2url = base + "/presentation/2/%s/manifest" % enc("ms 1/a")
m2, h = get_json(m2url, "2.1 manifest")
t.check(h.get("content-type") == "application/json", "2.1 manifest is application/json by default (%s)" % h.get("content-type"))
st, h, _ = get(path_of(m2url), headers={"Accept": "application/ld+json"})
t.check(h.get("content-type", "").startswith("application/ld+json"), "2.1 with Accept ld+json: %s" % h.get("content-type"))
t.check(m2.get("@context") == "http://iiif.io/api/presentation/2/context.json" and m2.get("@id") == m2url
        and m2.get("@type") == "sc:Manifest", "2.1 @context, @id (= URL), @type")
seq = m2.get("sequences", [{}])[0]
t.check(seq.get("@type") == "sc:Sequence" and len(seq.get("canvases", [])) == 3, "2.1 one sequence of 3 canvases")
for cv in seq.get("canvases", []):
    res = cv["images"][0]["resource"]
    t.check(cv["images"][0]["on"] == cv["@id"] and cv["images"][0]["motivation"] == "sc:painting",
            "2.1 image annotation is on its canvas")
    t.check(res["service"]["@context"] == "http://iiif.io/api/image/2/context.json", "2.1 service @context")
    info, _ = get_json(res["service"]["@id"] + "/info.json", "2.1 info.json")
    t.check((info.get("width"), info.get("height")) == (cv["width"], cv["height"]) == (res["width"], res["height"]),
            "2.1 canvas %s size equals its image's" % cv["@id"])
    st, _, img = get(path_of(res["@id"]))
    t.check(st == 200 and jpeg_size(img) == (cv["width"], cv["height"]), "2.1 resource %s is served" % res["@id"])
t.check(any(r.get("viewingHint") == "top" for r in m2.get("structures", [])), "2.1 structures mark top ranges")
c2, _ = get_json(base + "/presentation/2/collection", "2.1 top collection")
t.check(c2.get("@type") == "sc:Collection" and c2.get("@id") == base + "/presentation/2/collection",
        "2.1 top collection")
t.check({x["@id"] for x in c2.get("manifests", [])} | {x["@id"] for x in c2.get("collections", [])},
        "2.1 collection lists something")

# ---- no database: 503 with a clear message, images still served -------------------------------
v2 = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--database", os.path.join(work, "missing.db")])
n2 = t.Nginx(work, v2.fastcgi_address)
st, h, body = t.request(n2.port, "/presentation/3/map-7/manifest")
t.check(st == 503 and b"does not exist" in body, "missing database: 503 naming the problem (got %d: %s)" % (st, body[:150]))
st, _, _ = t.request(n2.port, "/iiif/3/maps%2Feurope.jp2/info.json")
t.check(st == 200, "missing database: images still served")
t.check(not os.path.exists(os.path.join(work, "missing.db")), "a read-only worker never creates the database")

# ---- a real client library (tests/e2e) ----------------------------------------------------------
e2e = os.path.join(t.SOURCE_DIR, "tests", "e2e")
node_script = os.path.join(e2e, "parse_manifest.mjs")
if os.path.exists(node_script) and os.environ.get("VELLUM_SKIP_NPM") != "1":
    import shutil
    node = shutil.which("node")
    why = t.ensure_e2e_packages(["@iiif/parser/package.json"])
    if why:
        print("SKIPPED: @iiif/parser check: " + why, flush=True)
    else:
        urls = sorted(set(manifest_urls)) + [top_url, m2url, base + "/presentation/2/collection"]
        r = subprocess.run([node, node_script] + urls, capture_output=True, text=True, timeout=120)
        print(r.stdout.strip())
        t.check(r.returncode == 0, "@iiif/parser reads every manifest and the collection: %s" % r.stderr[-500:])

if not t._failures and schema_skipped:
    t.check(True, "everything but the schema part")
    print("SKIPPED: schema validation: " + schema_skipped, flush=True)
    sys.exit(t.SKIP)
t.check(not validator or len(validated) >= 6, "schema-validated %d documents" % len(validated))
t.done()
