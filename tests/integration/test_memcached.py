"""Several Vellum hosts sharing images through a real memcached (docs/deploy.md, "Several hosts:
sharing images through memcached"). Two hosts, each a Vellum pool with its own block cache
behind its own nginx, point at one memcached: an image host A decoded is sent by host B from
memcached with the same bytes and ETag, without a decode; two URLs for one canonical request
share an entry; a replaced source is decoded afresh; an image above memcached's item limit and
a memcached that is down or comes back cost nothing but the sharing; a bad server list is
refused at startup."""
import os
import random
import shutil
import subprocess
import time

import harness as t
import pixels as px

if not shutil.which("memcached"):
    t.skip("memcached is not installed (scripts/setup installs it)")

work = t.tmpdir()
W, H = 1200, 900


def make_jp2(path, seed):
    # Random pixels (lossless), so a full-size PNG is far above memcached's 1 MB item limit.
    rgb = random.Random(seed).randbytes(W * H * 3)
    ppm = path + ".ppm"
    px.write_pnm(ppm, W, H, 3, rgb)
    subprocess.run(["opj_compress", "-i", ppm, "-o", path + ".tmp.jp2", "-t", "512,512", "-n", "4"],
                   check=True, stdout=subprocess.DEVNULL)
    os.replace(path + ".tmp.jp2", path)
    os.remove(ppm)


root = os.path.join(work, "images")
os.makedirs(root)
make_jp2(os.path.join(root, "a.jp2"), 1)
mc = t.Memcached()
servers = "127.0.0.1:%d" % mc.port


class Host:
    def __init__(self, name):
        self.v = t.Vellum(work, args=["--workers", "2", "--image-root", root,
                                      "--block-cache-dir", os.path.join(work, name + "-blocks"),
                                      "--memcached-servers", servers])
        self.n = t.Nginx(work, self.v.fastcgi_address)
        self.port = self.n.port

    def get(self, path, method="GET", headers=None):
        return t.request(self.port, path, method=method, headers=headers)

    def counters(self, key):
        total = {}
        for per in t.health_by_worker(self.port, self.v, key).values():
            for k, n in per.items():
                if not isinstance(n, bool):
                    total[k] = total.get(k, 0) + n
        return total


A, B = Host("a"), Host("b")
TILE = "/iiif/3/a.jp2/512,0,512,512/256,/0/default.jpg"

st, _, body = A.get("/health")
t.check(st == 200 and b'"memcached":{"enabled":true' in body, "/health reports memcached enabled: %r" % body[-160:])

# --- host A decodes; host B sends A's image from memcached ----------------------------------
items0 = mc.items()
st, ha, body_a = A.get(TILE)
t.check(st == 200 and ha.get("content-type") == "image/jpeg", "host A: the tile is a JPEG (%d)" % st)
t.check("decode;" in ha.get("server-timing", ""), "host A: it was decoded (%s)" % ha.get("server-timing"))
t.wait_for(lambda: mc.items() > items0, what="host A to put the tile in memcached after its response")
st, hb, body_b = B.get(TILE)
t.check(st == 200 and body_b == body_a, "host B: the same bytes as host A (%d, %d vs %d bytes)"
        % (st, len(body_b), len(body_a)))
t.check('memcached;desc="shared cache hit"' in hb.get("server-timing", "") and
        "decode;" not in hb.get("server-timing", ""),
        "host B: from memcached, no decode (%s)" % hb.get("server-timing"))
t.check(hb.get("etag") == ha.get("etag") and hb.get("content-type") == "image/jpeg" and
        hb.get("access-control-allow-origin") == "*" and "max-age" in hb.get("cache-control", ""),
        "host B: the same ETag, type, CORS and Cache-Control (%s)" % hb)
t.check(B.counters("block_cache").get("misses", 0) == 0, "host B: its block cache decoded nothing")
t.check(B.counters("memcached").get("hits", 0) == 1, "host B: /health counts the hit (%s)"
        % B.counters("memcached"))
t.check(A.counters("memcached").get("stored", 0) >= 1, "host A: /health counts the store (%s)"
        % A.counters("memcached"))

# Conditional and HEAD requests on host B.
st, h, body = B.get(TILE, headers={"If-None-Match": ha["etag"]})
t.check(st == 304 and body == b"", "host B: If-None-Match with the ETag is a 304 (%d)" % st)
st, h, body = B.get(TILE, method="HEAD")
t.check(st == 200 and body == b"" and h.get("content-length") == str(len(body_a)),
        "host B: HEAD from memcached has the length and no body (%d, %s)" % (st, h.get("content-length")))

# --- two URLs for one canonical request share an entry; PNG keeps its type -------------------
items0 = mc.items()
st, h1, png_a = A.get("/iiif/3/a.jp2/full/300,/0/default.png")
t.check(st == 200 and h1.get("content-type") == "image/png", "PNG from host A (%d)" % st)
t.wait_for(lambda: mc.items() > items0, what="host A to put the PNG in memcached")
st, h2, png_b = B.get("/iiif/3/a.jp2/full/300,225/0/default.png")
t.check(st == 200 and png_b == png_a, "host B: the same PNG under another URL (%d)" % st)
t.check('memcached;desc="shared cache hit"' in h2.get("server-timing", "") and
        h2.get("content-type") == "image/png",
        "full/300, and full/300,225 share one entry; the type is image/png (%s, %s)"
        % (h2.get("server-timing"), h2.get("content-type")))

# --- an image above memcached's 1 MB item limit: served, counted, not shared ------------------
BIG = "/iiif/3/a.jp2/full/max/0/default.png"
errors0 = A.counters("memcached").get("errors", 0)
st, _, big = A.get(BIG)
t.check(st == 200 and len(big) > 1024 * 1024, "a %d-byte PNG is served (%d)" % (len(big), st))
t.wait_for(lambda: A.counters("memcached").get("errors", 0) > errors0, timeout=5,
           what="host A to count memcached refusing the big image")
st, h, big_b = B.get(BIG)
t.check(st == 200 and big_b == big and "decode;" in h.get("server-timing", ""),
        "host B decodes the big image itself, same bytes (%d, %s)" % (st, h.get("server-timing")))

# --- a replaced source is decoded afresh, not sent from memcached -----------------------------
old = body_a
time.sleep(1.1)  # a new modification time, whatever the file system's resolution
make_jp2(os.path.join(root, "a.jp2"), 2)
st, h, new_b = B.get(TILE)
t.check(st == 200 and new_b != old and "decode;" in h.get("server-timing", ""),
        "after the source is replaced, host B decodes the new file (%d, %s)" % (st, h.get("server-timing")))
t.check(h.get("etag") != ha.get("etag"), "the new image has a new ETag")
t.wait_for(lambda: "memcached;" in A.get(TILE)[1].get("server-timing", ""), timeout=5,
           what="host A to get the new tile from memcached")
st, h, new_a = A.get(TILE)
t.check(new_a == new_b, "host A sends host B's new tile")

# --- memcached down: requests are served, promptly; back up: sharing resumes -----------------
mc.stop()
for i, path in enumerate(["/iiif/3/a.jp2/0,0,512,512/256,/0/default.jpg",
                          "/iiif/3/a.jp2/0,512,512,388/256,/0/default.jpg",
                          "/iiif/3/a.jp2/0,0,512,512/256,/0/default.jpg"]):
    t0 = time.time()
    st, h, _ = A.get(path)
    took = time.time() - t0
    t.check(st == 200 and took < 1.0, "memcached down: request %d is served in %.3f s (%d)" % (i, took, st))
t.check(A.counters("memcached").get("errors", 0) > 0, "memcached down: /health counts errors")
mc = t.Memcached(mc.port)
# Host A's workers saw memcached fail and leave it alone for RETRY_S (2 s, counted in whole
# seconds by libmemcached): ask A for new tiles until one of them is stored again.
fresh_tiles = iter("/iiif/3/a.jp2/%d,%d,256,256/256,/0/default.jpg" % (x, y)
                   for y in range(0, 768, 256) for x in range(0, 1024, 256))
fresh = {}


def stored_again():
    items0 = mc.items()
    path = next(fresh_tiles)
    st, _, body = A.get(path)
    end = time.time() + 0.5  # the store follows the response
    while st == 200 and time.time() < end:
        if mc.items() > items0:
            fresh["path"], fresh["body"] = path, body
            return True
        time.sleep(0.05)
    return False


t.wait_for(stored_again, timeout=12, what="host A to store a tile once memcached is back")
FRESH, fresh_a = fresh["path"], fresh["body"]
# Host B never saw the outage; its connections died with the old memcached, and a call on such
# a connection is repeated once on a new one, so its first request already gets A's tile.
st, h, fresh_b = B.get(FRESH)
t.check(st == 200 and fresh_b == fresh_a and "memcached;" in h.get("server-timing", ""),
        "memcached back: host B gets host A's new tile from it (%s)" % h.get("server-timing"))
for host in (A, B):
    host.n.stop()
    host.v.stop()

# --- a server list that does not parse is refused at startup, with the key named --------------
r = subprocess.run([t.VELLUM_BIN, "config", "--memcached-servers", "10.0.0.1:99999"],
                   capture_output=True, text=True)
t.check(r.returncode != 0 and "memcached_servers" in r.stderr,
        "a bad memcached_servers is refused, naming the key (%d: %s)" % (r.returncode, r.stderr.strip()))

t.done()
