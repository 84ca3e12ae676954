"""nginx fastcgi_cache in front of `vellum serve` (docs/deploy.md, blocks nginx-cache-http and
nginx-cache): warm tiles and info.json come from nginx's cache without reaching Vellum, errors,
/health and manifests are never kept, HEAD and GET do not share entries, conditional requests,
Host/X-Forwarded-* in the key, one decode for concurrent cold requests (fastcgi_cache_lock),
revalidation after max-age, a replaced source image, emptying the cache folder.

Whether a request reached Vellum is read from Vellum's access log: one line per request, written
before the end of the response goes out, so it is there when the client has the response; where
nginx answers before it has read all of Vellum's response (a HEAD, a 304 on a miss) the check
waits for it (t.reached(..., at_least=N))."""
import os
import shutil
import subprocess
import threading
import time

import harness as t
import pixels as px

work = t.tmpdir()
W, H = 800, 600


def make_jp2(path, seed, *args):
    rgb = bytes(c for y in range(H) for x in range(W)
                for c in ((x * 255) // (W - 1), (y * 255) // (H - 1), (x * 3 + y * 5 + seed) % 256))
    ppm = path + ".ppm"
    px.write_pnm(ppm, W, H, 3, rgb)
    subprocess.run(["opj_compress", "-i", ppm, "-o", path] + list(args), check=True,
                   stdout=subprocess.DEVNULL)
    os.remove(ppm)


root = os.path.join(work, "images")
os.makedirs(root)
make_jp2(os.path.join(root, "tiled.jp2"), 0, "-t", "256,256", "-n", "4")
make_jp2(os.path.join(root, "untiled.jp2"), 90, "-n", "4")

# A one-object catalogue, to show the Presentation API is left out of the cache.
dbpath = os.path.join(work, "vellum.db")
with open(os.path.join(work, "cat.csv"), "w") as f:
    f.write("manifest,label,image\nbook,A book,tiled.jp2\n")
imp = subprocess.run([t.VELLUM_BIN, "import", "--database", dbpath, "--image-root", root,
                      os.path.join(work, "cat.csv")], capture_output=True, text=True)
t.check(imp.returncode == 0, "vellum import of a one-line catalogue (%s)" % (imp.stdout + imp.stderr).strip())

v = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--database", dbpath])
n = t.Nginx(work, v.fastcgi_address, template_name="nginx-cache")
t.check(os.path.isdir(n.cache_dir), "nginx created the cache folder from the nginx-cache-http block")


def get(path, method="GET", headers=None, port=None, timeout=10):
    """(status, headers, body); status 0 when the response never completes (an entry with a
    Content-Length and no body makes the client wait for bytes that do not come)."""
    try:
        return t.request(port or n.port, path, method=method, headers=headers, timeout=timeout)
    except OSError as e:
        return 0, {}, ("(%s)" % e).encode()


def status(h):
    return h.get("x-cache-status", "(none)")


KEPT = ("content-type", "content-length", "etag", "last-modified", "cache-control",
        "access-control-allow-origin", "link")

# ---- everything the plain block does still works in front of the cache ----------------------
t.check_basics(n.port, "nginx-cache")

# ---- a tile: MISS, then HIT with the same bytes and headers, not reaching Vellum ----------
TILE = "/iiif/3/tiled.jp2/256,0,256,256/256,/0/default.jpg"
st1, h1, b1 = get(TILE)
t.check(st1 == 200 and h1.get("content-type") == "image/jpeg" and b1[:2] == b"\xff\xd8",
        "tile: 200 image/jpeg (%d %s)" % (st1, h1.get("content-type")))
t.check(status(h1) == "MISS", "tile: first GET is a MISS (%s)" % status(h1))
t.check(t.reached(v, TILE, at_least=1) == 1, "tile: the MISS reached Vellum once")
t.check(h1.get("cache-control", "").startswith("public, max-age=") and h1.get("etag"),
        "tile: Vellum sent Cache-Control public max-age and an ETag (%s)" % h1.get("cache-control"))
st2, h2, b2 = get(TILE)
t.check(st2 == 200 and status(h2) == "HIT", "tile: second GET is a HIT (%d %s)" % (st2, status(h2)))
t.check(b2 == b1, "tile: the HIT has the same %d body bytes" % len(b1))
diff = [k for k in KEPT if h1.get(k) != h2.get(k)]
t.check(not diff, "tile: the HIT keeps Content-Type, ETag, Last-Modified, Cache-Control, CORS, "
        "Link (differ: %s)" % diff)
t.check(h2.get("access-control-allow-origin") == "*", "tile: the HIT has CORS *")
t.check(t.reached(v, TILE) == 1, "tile: the HIT did not reach Vellum (%d lines)" % t.reached(v, TILE))

# ---- a second URL is a separate entry ---------------------------------------------------
TILE2 = "/iiif/3/tiled.jp2/0,0,256,256/256,/0/default.jpg"
files_before = sum(len(f) for _, _, f in os.walk(n.cache_dir))
st, h, b = get(TILE2)
t.check(st == 200 and status(h) == "MISS" and b != b1,
        "second tile: its own MISS and its own bytes (%s)" % status(h))
st, h, b = get(TILE2)
t.check(status(h) == "HIT" and t.reached(v, TILE2, at_least=1) == 1,
        "second tile: then a HIT, one Vellum request (%s)" % status(h))
files_after = sum(len(f) for _, _, f in os.walk(n.cache_dir))
t.check(files_after == files_before + 1,
        "second tile: one more file in the cache folder (%d -> %d)" % (files_before, files_after))
st, h, b = get(TILE)
t.check(status(h) == "HIT" and b == b1, "first tile still a HIT with its own bytes")

# ---- info.json: cached, content type kept, one entry per Accept (Vary) ----------------------
INFO = "/iiif/3/tiled.jp2/info.json"
LD = 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
st, h, bi = get(INFO)
t.check(st == 200 and status(h) == "MISS" and h.get("content-type") == LD,
        "info.json: MISS, JSON-LD with the profile (%s %s)" % (status(h), h.get("content-type")))
st, h, b = get(INFO)
t.check(st == 200 and status(h) == "HIT" and b == bi and h.get("content-type") == LD,
        "info.json: HIT, same body, Content-Type kept (%s %s)" % (status(h), h.get("content-type")))
t.check(h.get("access-control-allow-origin") == "*" and h.get("vary") == "Accept",
        "info.json: the HIT has CORS * and Vary: Accept")
t.check(t.reached(v, INFO, at_least=1) == 1, "info.json: one Vellum request for two GETs")
JSON = {"Accept": "application/json"}
st, h, b = get(INFO, headers=JSON)
t.check(status(h) == "MISS" and h.get("content-type") == "application/json",
        "info.json with Accept: application/json is its own entry (%s %s)" % (status(h), h.get("content-type")))
st, h, b = get(INFO, headers=JSON)
t.check(status(h) == "HIT" and h.get("content-type") == "application/json",
        "info.json with Accept: application/json: then a HIT, still application/json (%s)" % h.get("content-type"))
st, h, b = get(INFO)
t.check(status(h) == "HIT" and h.get("content-type") == LD,
        "info.json without Accept: still a HIT with JSON-LD (%s %s)" % (status(h), h.get("content-type")))
t.check(t.reached(v, INFO, at_least=2) == 2, "info.json: two Vellum requests for two Accept values")

# ---- HEAD ------------------------------------------------------------------------------
# After a GET: HEAD is its own entry (the method is in the key), answered without a body.
st, h, b = get(TILE, method="HEAD")
t.check(st == 200 and b == b"" and h.get("content-length") == str(len(b1))
        and h.get("etag") == h1.get("etag") and h.get("content-type") == "image/jpeg",
        "HEAD after GET: 200, no body, the GET's length, ETag and type (%s)" % status(h))
st, h, b = get(TILE, method="HEAD")
t.check(status(h) == "HIT" and b == b"", "HEAD again: a HIT (%s)" % status(h))
t.check(t.reached(v, TILE, "HEAD", at_least=1) == 1, "HEAD: reached Vellum once for two HEADs")
# HEAD first on a cold tile must not leave an empty body for the GETs that follow.
TILE3 = "/iiif/3/tiled.jp2/512,256,256,256/256,/0/default.jpg"
st, h, b = get(TILE3, method="HEAD")
head_len = h.get("content-length")
t.check(st == 200 and b == b"" and status(h) == "MISS", "HEAD on a cold tile: 200, MISS (%s)" % status(h))
st, h, b = get(TILE3, timeout=5)
t.check(st == 200 and len(b) > 0 and str(len(b)) == head_len and b[:2] == b"\xff\xd8",
        "GET after a HEAD on a cold tile: the whole tile (%d, %d bytes, HEAD said %s)" % (st, len(b), head_len))
t.check(t.reached(v, TILE3, "GET", at_least=1) == 1, "GET after HEAD reached Vellum (a separate entry)")

# ---- errors are not kept ---------------------------------------------------------------------
for label, path, want in (("404", "/iiif/3/no-such-image.jp2/info.json", 404),
                          ("400", "/iiif/3/tiled.jp2/full/max/0/default.xyz", 400)):
    st, h, b = get(path)
    t.check(st == want and h.get("cache-control") == "no-store",
            "%s: %d with Cache-Control: no-store (%d, %s)" % (label, want, st, h.get("cache-control")))
    st, h, b = get(path)
    t.check(st == want and status(h) != "HIT", "%s: the second request is not a HIT (%s)" % (label, status(h)))
    t.check(t.reached(v, path, at_least=2) == 2, "%s: both requests reached Vellum (%d)" % (label, t.reached(v, path)))

# ---- /health and the Presentation API stay out of the cache ------------------------------------
HEALTH = "/health?cache-probe=1"
for _ in range(2):
    st, h, b = get(HEALTH)
t.check(st == 200 and h.get("cache-control") == "no-store" and "x-cache-status" not in h,
        "/health: 200, no-store, not through the cache location (%s)" % status(h))
t.check(t.reached(v, HEALTH, at_least=2) == 2, "/health: both requests reached Vellum")
MANIFEST = "/presentation/3/book/manifest"
st, h, b = get(MANIFEST)
t.check(st == 200 and "x-cache-status" not in h, "manifest: 200, not through the cache location")
etag = h.get("etag", "")
st, h, b = get(MANIFEST, headers={"If-None-Match": etag})
t.check(st == 304 and b == b"", "manifest: If-None-Match still gives Vellum's 304 (%d)" % st)
t.check(t.reached(v, MANIFEST, at_least=2) == 2, "manifest: both requests reached Vellum")

# ---- conditional requests -----------------------------------------------------------------
before = t.reached(v, TILE)
st, h, b = get(TILE, headers={"If-None-Match": h1.get("etag", "")})
t.check(st == 304 and b == b"" and status(h) == "HIT" and h.get("etag") == h1.get("etag"),
        "If-None-Match with the ETag of a cached tile: 304 from the cache (%d %s)" % (st, status(h)))
st, h, b = get(TILE, headers={"If-None-Match": '"mffffffffffffffff"'})
t.check(st == 200 and b == b1 and status(h) == "HIT", "another ETag: 200 from the cache (%d)" % st)
st, h, b = get(TILE, headers={"If-Modified-Since": h1.get("last-modified", "")})
t.check(st == 304 and status(h) == "HIT", "If-Modified-Since of a cached tile: 304 (%d)" % st)
t.check(t.reached(v, TILE) == before, "conditional requests on a cached tile did not reach Vellum")
# On a miss nginx asks Vellum for the whole tile, keeps it, and answers the client 304.
TILE4 = "/iiif/3/tiled.jp2/0,256,256,256/256,/0/default.jpg"
st, h, b = get(TILE4, method="HEAD")  # learn the ETag under the HEAD entry
etag4 = h.get("etag", "")
st, h, b = get(TILE4, headers={"If-None-Match": etag4})
t.check(st == 304 and status(h) == "MISS", "If-None-Match on a cold tile: 304, MISS (%d %s)" % (st, status(h)))
# nginx sends the 304 as soon as Vellum's headers are in, and goes on reading the body to store.
t.reached(v, TILE4, at_least=1)
lines = [l for l in t.ACCESS_LINE.findall(v.output()) if l[0] == "GET" and l[1] == TILE4]
t.check(len(lines) == 1 and lines[0][2] == "200" and int(lines[0][3]) > 0,
        "...Vellum rendered the whole tile for it (%s)" % [l[2:4] for l in lines])
st, h, b = get(TILE4)
t.check(st == 200 and status(h) == "HIT" and b[:2] == b"\xff\xd8" and str(len(b)) == h.get("content-length"),
        "...and the next plain GET is a HIT with the whole tile (%s, %d bytes)" % (status(h), len(b)))

# ---- Host and X-Forwarded-* are part of the key ---------------------------------------------
INFO2 = "/iiif/2/tiled.jp2/info.json"
st, h, b = get(INFO2, headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
t.check(st == 200 and b'"https://evil.example/iiif/2/tiled.jp2"' in b,
        "X-Forwarded-Host/-Proto on a cold info.json: Vellum puts them in the id")
st, h, b = get(INFO2)
own = b'"http://127.0.0.1:%d/iiif/2/tiled.jp2"' % n.port
t.check(st == 200 and status(h) == "MISS" and own in b and b"evil" not in b,
        "a plain request is not served that entry: MISS with its own id (%s)" % status(h))
st, h, b = get(INFO2, headers={"Host": "other.example:8443"})
t.check(status(h) == "MISS" and b'"http://other.example:8443/iiif/2/tiled.jp2"' in b,
        "another Host is another entry (%s)" % status(h))
st, h, b = get(INFO2)
t.check(status(h) == "HIT" and own in b, "the plain request's entry is a HIT with its id (%s)" % status(h))

# ---- fastcgi_cache_lock: 8 simultaneous requests for one cold image, one decode ---------------
COLD = "/iiif/3/untiled.jp2/full/max/0/default.jpg"
N = 8
results = [None] * N
barrier = threading.Barrier(N)


def fetch(i):
    barrier.wait()
    t0 = time.time()
    st, h, b = get(COLD, timeout=60)
    results[i] = (st, status(h), b, time.time() - t0)


threads = [threading.Thread(target=fetch, args=(i,)) for i in range(N)]
for th in threads:
    th.start()
for th in threads:
    th.join()
t.check(all(r[0] == 200 for r in results) and len({r[2] for r in results}) == 1 and results[0][2][:2] == b"\xff\xd8",
        "lock: %d simultaneous GETs all 200 with the same bytes (%s)" % (N, [r[:2] for r in results]))
decodes = t.reached(v, COLD, at_least=1)
t.check(decodes == 1, "lock: Vellum decoded it once for %d simultaneous requests (%d)" % (N, decodes))
print("     lock: statuses %s, seconds %s" % (sorted(r[1] for r in results),
                                              sorted(round(r[3], 3) for r in results)), flush=True)

# ---- emptying the cache folder is a purge ------------------------------------------------------
for entry in os.listdir(n.cache_dir):
    shutil.rmtree(os.path.join(n.cache_dir, entry), ignore_errors=True)
st, h, b = get(TILE)
t.check(st == 200 and status(h) == "MISS" and b == b1,
        "after emptying the cache folder: MISS, the tile from Vellum again (%s)" % status(h))
st, h, b = get(TILE)
t.check(status(h) == "HIT", "...then a HIT again (%s)" % status(h))
t.check(t.reached(v, TILE, at_least=2) == 2, "...Vellum asked once more (2 GETs in all)")

err = open(os.path.join(n.dir, "error.log")).read()
bad = [l for l in err.splitlines() if "[crit]" in l or "[alert]" in l or "[emerg]" in l]
t.check(not bad, "nginx logged nothing critical: %s" % bad[:3])
n.stop()
v.stop()

# ---- errors raised while decoding: no-store from Vellum, and nginx must not keep them ---------
# A 1 MB memory limit makes a full-size request a 413 after the caching headers were prepared.
v2 = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--max-request-memory-mb", "1"])
n2 = t.Nginx(work, v2.fastcgi_address, template_name="nginx-cache")
BIG = "/iiif/3/tiled.jp2/full/max/0/default.jpg"
st, h, b = get(BIG, port=n2.port)
t.check(st == 413, "memory limit: full/max is a 413 (%d %s)" % (st, b[:120]))
t.check(h.get("cache-control") == "no-store" and not h.get("etag") and not h.get("last-modified"),
        "memory limit: the 413 says no-store and has no ETag or Last-Modified (%s)" % h.get("cache-control"))
st, h, b = get(BIG, port=n2.port)
t.check(st == 413 and status(h) != "HIT", "memory limit: the second 413 is not a HIT (%s)" % status(h))
t.check(t.reached(v2, BIG, at_least=2) == 2, "memory limit: both requests reached Vellum (%d)" % t.reached(v2, BIG))
n2.stop()
v2.stop()

# ---- after max-age: revalidation (304, no decode) and a replaced source image ---------------
root3 = os.path.join(work, "images3")
os.makedirs(root3)
shutil.copy(os.path.join(root, "tiled.jp2"), os.path.join(root3, "same.jp2"))
shutil.copy(os.path.join(root, "tiled.jp2"), os.path.join(root3, "changing.jp2"))
make_jp2(os.path.join(work, "replacement.jp2"), 200, "-t", "256,256", "-n", "4")
MAX_AGE = 3
v3 = t.Vellum(work, args=["--workers", "2", "--image-root", root3, "--cache-max-age", str(MAX_AGE)])
n3 = t.Nginx(work, v3.fastcgi_address, template_name="nginx-cache")
SAME = "/iiif/3/same.jp2/0,0,256,256/256,/0/default.jpg"
CHANGING = "/iiif/3/changing.jp2/0,0,256,256/256,/0/default.jpg"
st, hs, bs = get(SAME, port=n3.port)
st, hc, bc = get(CHANGING, port=n3.port)
t0 = time.time()
t.check(hc.get("cache-control") == "public, max-age=%d" % MAX_AGE and status(hc) == "MISS",
        "max-age %d: tiles cached with Vellum's max-age (%s)" % (MAX_AGE, hc.get("cache-control")))
os.replace(os.path.join(work, "replacement.jp2"), os.path.join(root3, "changing.jp2"))
st, h, b = get(CHANGING, port=n3.port)
if time.time() - t0 < MAX_AGE - 1:
    t.check(status(h) == "HIT" and b == bc and h.get("etag") == hc.get("etag"),
            "source replaced: until max-age nginx still serves the old tile (%s)" % status(h))
else:
    print("     (machine too slow to see the old tile before max-age; not checked)", flush=True)
time.sleep(MAX_AGE + 1.2)
st, h, b = get(SAME, port=n3.port)
t.check(st == 200 and status(h) == "REVALIDATED" and b == bs,
        "after max-age, unchanged source: REVALIDATED, same bytes (%s)" % status(h))
t.reached(v3, SAME, at_least=2)
lines = [l[2] for l in t.ACCESS_LINE.findall(v3.output()) if l[1] == SAME]
t.check(lines == ["200", "304"], "...Vellum answered the revalidation 304, no decode (%s)" % lines)
st, h, b = get(SAME, port=n3.port)
t.check(status(h) == "HIT", "...then HITs again (%s)" % status(h))
st, h, b = get(CHANGING, port=n3.port)
t.check(st == 200 and status(h) == "EXPIRED" and b != bc and h.get("etag") != hc.get("etag"),
        "after max-age, replaced source: EXPIRED, the new tile with a new ETag (%s)" % status(h))
st, h2, b2 = get(CHANGING, port=n3.port)
t.check(status(h2) == "HIT" and b2 == b, "...then the new tile is a HIT (%s)" % status(h2))
n3.stop()
v3.stop()

t.done()
