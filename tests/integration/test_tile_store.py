"""The tile store (fcgi/tile_store.c) behind nginx (docs/deploy.md, blocks nginx-store-http and
nginx-store): an image Vellum makes for a plain GET becomes a file
<store>/<identifier>/<region>_<size>_<rotation>_<quality>.<format> that nginx then sends
without Vellum (same bytes, CORS and Cache-Control, HEAD too); an identifier in a subfolder
asked for as sub%2Fb.jp2 is stored at the decoded path nginx looks at; OPTIONS still reaches
Vellum; query strings, errors, info.json, redirects, HEAD and 304s are never stored; files 0644
in folders 0755 whatever the umask; a replaced source empties its identifier's folder
(info.json or an image reaching Vellum), also when asked for with escapes; the cap trims the
files nginx sent least recently (a tile sent again and again survives every trim); an unsafe store folder is refused; links planted in the store are not followed;
concurrent requests for the same tiles leave whole files and no temporaries.

Whether a request reached Vellum is read from Vellum's access log (see test_nginx_cache.py)."""
import json
import os
import random
import shutil
import stat
import subprocess
import threading
import time

import harness as t
import pixels as px

T0 = time.time()
work = t.tmpdir()
root = os.path.join(work, "images")
os.makedirs(os.path.join(root, "sub"))
os.makedirs(os.path.join(root, "sub2"))
W, H = 800, 600


def opj(ppm, dst, *args):
    subprocess.run(["opj_compress", "-i", ppm, "-o", dst] + list(args), check=True,
                   stdout=subprocess.DEVNULL)
    os.remove(ppm)


def make_jp2(path, seed):
    """A lossless 800x600 gradient, tiled 256, 4 resolution levels; seed changes blue."""
    rgb = bytes(c for y in range(H) for x in range(W)
                for c in ((x * 255) // (W - 1), (y * 255) // (H - 1), (x * 3 + y * 5 + seed) % 256))
    ppm = path + ".ppm"
    px.write_pnm(ppm, W, H, 3, rgb)
    opj(ppm, path, "-t", "256,256", "-n", "4")


make_jp2(os.path.join(root, "a.jp2"), 0)
for name in ("r.jp2", "s.jp2", "u.jp2", "c.jp2", "sub/b.jp2", "sub2/d.jp2"):
    shutil.copy(os.path.join(root, "a.jp2"), os.path.join(root, name))
make_jp2(os.path.join(work, "r-new.jp2"), 77)       # the replacement of r.jp2
make_jp2(os.path.join(work, "r-third.jp2"), 150)    # and its second replacement
make_jp2(os.path.join(work, "b-new.jp2"), 99)       # the replacement of sub/b.jp2

# Noise does not compress: its PNG tiles are ~200 KB, so a few pass a 1 MB cap.
NW, NH = 1600, 1200
ppm = os.path.join(work, "noise.ppm")
px.write_pnm(ppm, NW, NH, 3, random.Random(5).randbytes(NW * NH * 3))
opj(ppm, os.path.join(root, "noise.jp2"), "-t", "256,256", "-n", "4")
print("     images made in %.1f s" % (time.time() - T0), flush=True)

store = os.path.join(work, "store")  # created by Vellum
# Under umask 027 Vellum must still make folders 0755 and files 0644 (nginx's user reads them).
old_umask = os.umask(0o027)
try:
    v = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--tile-store-dir", store,
                             "--block-cache-dir", os.path.join(work, "blocks")])
finally:
    os.umask(old_umask)
n = t.Nginx(work, v.fastcgi_address, template_name="nginx-store", values={"STORE_DIR": store})


def get(path, method="GET", headers=None, port=None, timeout=20):
    try:
        return t.request(port or n.port, path, method=method, headers=headers, timeout=timeout)
    except OSError as e:
        return 0, {}, ("(%s)" % e).encode()


def files(d):
    """{path relative to d: bytes} of every file (and link) under d, .vellum left out."""
    out = {}
    if not os.path.isdir(d):
        return out
    for dirpath, dirnames, filenames in os.walk(d):
        if dirpath == d and ".vellum" in dirnames:
            dirnames.remove(".vellum")
        for f in filenames:
            p = os.path.join(dirpath, f)
            rel = "/" + os.path.relpath(p, d)
            out[rel] = b"(link)" if os.path.islink(p) else open(p, "rb").read()
    return out


def fpath(path):
    """Where the store keeps the image of a request path (deploy.md): its identifier's folder,
    then the four parameters joined by '_'."""
    parts = path.split("/")
    return "/".join(parts[:-4]) + "/" + "_".join(parts[-4:])


def settle():
    """Let the workers finish the writes they do after a response (about a millisecond)."""
    time.sleep(0.3)


def stored(path, d=None, wait=2.0):
    """The stored file's bytes, or None. Vellum writes it after the response is out (a
    millisecond later), so this waits up to `wait` seconds for it to appear."""
    p = (d or store) + fpath(path)
    end = time.time() + wait
    while not (os.path.isfile(p) and not os.path.islink(p)) and time.time() < end:
        time.sleep(0.01)
    return open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else None


def health_sum(port, vel):
    """tile_store counters summed over the workers; bytes and enabled are the store's, taken
    from any."""
    seen = t.health_by_worker(port, vel, "tile_store")
    total = {"enabled": all(b["enabled"] for b in seen.values()),
             "bytes": max(b["bytes"] for b in seen.values()),
             "trim_order": "/".join(sorted(set(b["trim_order"] for b in seen.values() if "trim_order" in b)))}
    for b in seen.values():
        for k in ("stored", "evicted", "invalidated", "spared"):
            total[k] = total.get(k, 0) + b[k]
    return total


def tile(ident, x, y, size=256, fmt="jpg", sf=1):
    w, h = min(size * sf, W - x), min(size * sf, H - y)
    return "/iiif/3/%s/%d,%d,%d,%d/%d,/0/default.%s" % (ident, x, y, w, h, -(-w // sf), fmt)


# ---- everything the plain block does still works through the nginx-store block ---------------
t.check_basics(n.port, "nginx-store")

# ---- a tile: made by Vellum and stored, then sent by nginx from the file ---------------------
TILE = tile("a.jp2", 0, 0)
st, h1, b1 = get(TILE)
t.check(st == 200 and h1.get("content-type") == "image/jpeg" and b1[:2] == b"\xff\xd8",
        "tile: 200 image/jpeg (%d %s)" % (st, h1.get("content-type")))
t.check("decode;dur=" in h1.get("server-timing", ""), "tile: the first answer is Vellum's (Server-Timing)")
t.check(t.reached(v, TILE, at_least=1) == 1, "tile: the first GET reached Vellum once")
t.check(stored(TILE) == b1, "tile: %s%s holds the %d bytes of the response" % (store, TILE, len(b1)))
if os.path.exists(store + fpath(TILE)):
    mode = stat.S_IMODE(os.stat(store + fpath(TILE)).st_mode)
    t.check(mode == 0o644, "tile: the file is mode 0644 under umask 027 (%o)" % mode)
    folders, d = {}, os.path.dirname(store + fpath(TILE))
    while d != store:
        folders[d[len(store):]] = stat.S_IMODE(os.stat(d).st_mode)
        d = os.path.dirname(d)
    t.check(all(m == 0o755 for m in folders.values()),
            "tile: every folder from /iiif down is mode 0755 under umask 027 (%s)"
            % {k: "%o" % m for k, m in folders.items()})
mode = stat.S_IMODE(os.stat(store).st_mode) if os.path.isdir(store) else 0
t.check(mode == 0o755, "the store folder Vellum created is mode 0755 under umask 027, as "
        "deploy.md says (%o)" % mode)
vel_state = os.path.join(store, ".vellum")
mode = stat.S_IMODE(os.stat(vel_state).st_mode) if os.path.isdir(vel_state) else 0
t.check(mode == 0o700, "the store's .vellum folder is private (%o)" % mode)

st, h2, b2 = get(TILE)
t.check(st == 200 and b2 == b1, "stored tile: 200 with the same %d bytes (%d)" % (len(b1), st))
t.check(t.reached(v, TILE) == 1, "stored tile: did not reach Vellum (%d lines)" % t.reached(v, TILE))
t.check("server-timing" not in h2 and "link" not in h2,
        "stored tile: sent by nginx (no Server-Timing, no Link)")
t.check(h2.get("access-control-allow-origin") == "*", "stored tile: CORS * (%s)" % h2.get("access-control-allow-origin"))
t.check("max-age=" in h2.get("cache-control", "") and h2.get("cache-control") == h1.get("cache-control"),
        "stored tile: the Cache-Control Vellum sends (%s / %s)" % (h2.get("cache-control"), h1.get("cache-control")))
t.check(h2.get("content-type") == "image/jpeg", "stored tile: image/jpeg (%s)" % h2.get("content-type"))

PNG = tile("a.jp2", 256, 0, fmt="png")
st, hp1, bp1 = get(PNG)
t.check(st == 200 and hp1.get("content-type") == "image/png" and bp1[:4] == b"\x89PNG"
        and "server-timing" in hp1 and t.reached(v, PNG, at_least=1) == 1,
        "png tile: 200 image/png from Vellum (%d %s)" % (st, hp1.get("content-type")))
t.check(stored(PNG) == bp1, "png tile: stored with the response's bytes")
st, hp2, bp2 = get(PNG)
t.check(st == 200 and bp2 == bp1 and hp2.get("content-type") == "image/png" and "server-timing" not in hp2
        and hp2.get("access-control-allow-origin") == "*" and "max-age=" in hp2.get("cache-control", ""),
        "png tile again: 200 image/png, same bytes, CORS and max-age, from nginx (%s %s)"
        % (hp2.get("content-type"), hp2.get("cache-control")))
t.check(t.reached(v, PNG) == 1, "png tile again: did not reach Vellum")
V2 = "/iiif/2/a.jp2/0,0,256,256/256,/0/default.jpg"
st, h, bv2 = get(V2)
t.check(st == 200 and stored(V2) == bv2, "Image API 2 tile: stored under /iiif/2/ (%d)" % st)
st, h, b = get(V2)
t.check(st == 200 and b == bv2 and t.reached(v, V2) == 1, "Image API 2 tile again: from the file (%d)" % st)
for p in ("/.vellum/bytes", "/iiif/../.vellum/bytes", "/iiif/3/../../.vellum/bytes"):
    st, h, b = get(p)
    t.check(st in (400, 404) and len(b) != 4096, "the store's state is reachable by no URL: %s (%d)" % (p, st))

# ---- HEAD -----------------------------------------------------------------------------------
st, h, b = get(TILE, method="HEAD")
t.check(st == 200 and b == b"" and h.get("content-length") == str(len(b1)),
        "HEAD of a stored tile: 200, Content-Length %s = the file's %d bytes" % (h.get("content-length"), len(b1)))
# (a HEAD's log line may come after nginx answered: wait for one that should not come)
t.check(t.reached(v, TILE, "HEAD", at_least=1) == 0, "HEAD of a stored tile: did not reach Vellum")
COLD = tile("a.jp2", 512, 0)
st, h, b = get(COLD, method="HEAD")
cold_etag = h.get("etag", "")
t.check(st == 200 and b == b"" and int(h.get("content-length", 0)) > 0,
        "HEAD of an unstored tile: 200 with a length (%d %s)" % (st, h.get("content-length")))
t.check(t.reached(v, COLD, "HEAD", at_least=1) == 1, "HEAD of an unstored tile: reached Vellum")
t.check(not os.path.lexists(store + fpath(COLD)), "HEAD of an unstored tile: nothing stored")

# ---- 304s are not stored; Vellum's ETag then nginx's ---------------------------------------
st, h, b = get(COLD, headers={"If-None-Match": cold_etag})
t.check(st == 304 and b == b"", "If-None-Match with Vellum's ETag of an unstored tile: 304 (%d)" % st)
t.check(t.reached(v, COLD, at_least=1) == 1, "...from Vellum")
t.check(not os.path.lexists(store + fpath(COLD)), "...and the 304 stored nothing")
st, h, bc = get(COLD)
t.check(st == 200 and stored(COLD) == bc and t.reached(v, COLD, at_least=2) == 2,
        "a plain GET then stores it (%d)" % st)
st, h, b = get(COLD, headers={"If-None-Match": cold_etag})
t.check(st == 200 and b == bc, "stored tile with Vellum's old ETag: nginx sends a full 200 (%d)" % st)
st, h, b = get(COLD, headers={"If-None-Match": h.get("etag", "-")})
t.check(st == 304, "stored tile with nginx's ETag: nginx's 304 (%d)" % st)
t.check(t.reached(v, COLD) == 2, "conditional GETs of a stored tile did not reach Vellum")

# ---- OPTIONS goes to Vellum (its preflight), not nginx's static 405 -------------------------
st, h, b = get(TILE, method="OPTIONS", headers={"Origin": "https://viewer.example",
                                                "Access-Control-Request-Method": "GET"})
t.check(st == 204 and "GET" in h.get("access-control-allow-methods", "")
        and h.get("access-control-allow-origin") == "*",
        "OPTIONS on a stored tile: Vellum's 204 preflight (%d %s)" % (st, h.get("access-control-allow-methods")))
t.check(t.reached(v, TILE, "OPTIONS", at_least=1) == 1, "OPTIONS on a stored tile reached Vellum")

# ---- what is never stored ---------------------------------------------------------------------
settle()
before = files(store)
Q = tile("a.jp2", 0, 256) + "?x=1"
ENC = tile("sub%2Fb.jp2", 0, 0)
cases = (("query string", Q, 200, 2),
         ("bad region", "/iiif/3/a.jp2/nonsense/256,/0/default.jpg", 400, 2),
         ("region outside the image", "/iiif/3/a.jp2/5000,5000,256,256/256,/0/default.jpg", 400, 2),
         ("unknown image", tile("nope.jp2", 0, 0), 404, 2),
         ("info.json", "/iiif/3/a.jp2/info.json", 200, 2))
for label, path, want, times in cases:
    bodies = set()
    for _ in range(times):
        st, h, b = get(path)
        bodies.add(b)
        t.check(st == want, "%s: %d (got %d)" % (label, want, st))
    t.check(t.reached(v, path, at_least=times) == times,
            "%s: every request reached Vellum (%d of %d)" % (label, t.reached(v, path), times))
    if want == 200 and path != "/iiif/3/a.jp2/info.json":
        t.check(len(bodies) == 1 and next(iter(bodies))[:2] == b"\xff\xd8", "%s: a JPEG, the same both times" % label)
st, h, b = get("/iiif/3/a.jp2")
t.check(os.path.isdir(store + "/iiif/3/a.jp2") and st == 303
        and h.get("location", "").endswith("/iiif/3/a.jp2/info.json"),
        "base URI with the identifier's folder in the store: Vellum's 303 to info.json (%d %s)"
        % (st, h.get("location")))
t.check(t.reached(v, "/iiif/3/a.jp2", at_least=1) == 1, "base URI reached Vellum")
after = files(store)
t.check(after == before, "none of these (query, 400, 404, info.json, 303) left a file in the "
        "store (new: %s)" % sorted(set(after) - set(before)))

# ---- an identifier in a subfolder, asked for as viewers do (sub%2Fb.jp2) -----------------------
# nginx decodes $uri once, as Vellum decodes an identifier once: the file is stored at the
# decoded path, where nginx looks for it.
st, h, b_enc = get(ENC)
t.check(st == 200 and t.reached(v, ENC, at_least=1) == 1 and "server-timing" in h,
        "%%2F identifier: the first request reaches Vellum (%d)" % st)
t.check(stored(ENC.replace("%2F", "/")) == b_enc,
        "%%2F identifier: stored at the decoded path %s" % fpath(ENC.replace("%2F", "/")))
st, h, b = get(ENC)
t.check(st == 200 and b == b_enc and t.reached(v, ENC) == 1 and "server-timing" not in h,
        "%%2F identifier: the second request is the file, sent by nginx (%d)" % st)
ENC2 = tile("sub%252Fb.jp2", 0, 0)  # decodes once to sub%2Fb.jp2: a name the store refuses
st, h, b = get(ENC2)
t.check(st == 404 and not os.path.lexists(store + "/iiif/3/sub%2Fb.jp2"),
        "a doubly escaped identifier is another (missing) image, and nothing is stored (%d)" % st)

# ---- /health --------------------------------------------------------------------------------
now = files(store)
hs = health_sum(n.port, v)
t.check(hs["enabled"] and hs["stored"] >= len(now) == 5,
        "/health: tile_store enabled, stored %d >= the %d files in the store" % (hs["stored"], len(now)))
t.check(hs["bytes"] == sum(len(b) for b in now.values()) > 0,
        "/health: bytes %d = the files' total %d" % (hs["bytes"], sum(len(b) for b in now.values())))
t.check(hs["evicted"] == 0 and hs["invalidated"] == 0, "/health: nothing evicted or invalidated yet (%s)" % hs)

# ---- links planted in the store are not followed ---------------------------------------------
outside = os.path.join(work, "outside")
os.makedirs(outside)
# (1) the identifier's folder, after its stamp was recorded (info.json): storing must give up.
st, _, _ = get("/iiif/3/s.jp2/info.json")
os.symlink(outside, store + "/iiif/3/s.jp2")
S1 = tile("s.jp2", 0, 0)
st, h, b = get(S1)
t.check(st == 200 and b == b1, "link as the identifier's folder: the tile is served (%d)" % st)
t.check(t.reached(v, S1, at_least=1) == 1, "...by Vellum")
t.check(not os.listdir(outside), "...and nothing was written through the link (%s)" % os.listdir(outside))
# (2) a folder above the identifier's (an identifier in a subfolder, sub2/d.jp2).
os.makedirs(store + "/iiif/3", exist_ok=True)
os.symlink(outside, store + "/iiif/3/sub2")
S2 = tile("sub2/d.jp2", 0, 0)
st, h, b = get(S2)
t.check(st == 200 and b == b1, "link as a folder above the identifier's: served (%d)" % st)
t.check(not os.listdir(outside), "...nothing written through it (%s)" % os.listdir(outside))
# (3) the identifier's folder before any stamp: Vellum removes the link and makes a real folder.
os.symlink(outside, store + "/iiif/3/u.jp2")
S3 = tile("u.jp2", 0, 0)
st, h, b = get(S3)
t.check(st == 200 and b == b1, "link planted before the first request: served (%d)" % st)
t.check(not os.listdir(outside), "...nothing written through it (%s)" % os.listdir(outside))
got = stored(S3)
t.check(not os.path.islink(store + "/iiif/3/u.jp2") and got == b,
        "...the link was replaced by a real folder holding the tile")
# (4) a dangling link in place of the file: replaced, its target never created.
S4 = tile("a.jp2", 0, 0, size=128)
os.makedirs(os.path.dirname(store + fpath(S4)), exist_ok=True)
os.symlink(os.path.join(outside, "leaf.jpg"), store + fpath(S4))
st, h, b = get(S4)
t.check(st == 200 and t.reached(v, S4, at_least=1) == 1, "dangling link as the tile's file: Vellum serves it (%d)" % st)
got = stored(S4)  # waits for the write that follows the response
t.check(not os.path.lexists(os.path.join(outside, "leaf.jpg")) and not os.path.islink(store + fpath(S4))
        and got == b, "...the link is replaced by the file, its target never written")

# ---- a replaced source image ------------------------------------------------------------------
R1, R2, R3 = tile("r.jp2", 0, 0), tile("r.jp2", 256, 256, fmt="png"), tile("r.jp2", 512, 256)
RINFO = "/iiif/3/r.jp2/info.json"
old = {}
for p in (R1, R2):
    st, h, old[p] = get(p)
    t.check(st == 200 and stored(p) == old[p], "source r.jp2: %s stored" % p)
inv0 = health_sum(n.port, v)["invalidated"]
rpath = os.path.join(root, "r.jp2")
os.replace(os.path.join(work, "r-new.jp2"), rpath)  # a new inode
later = os.stat(rpath).st_mtime + 5
os.utime(rpath, (later, later))
st, h, b = get(R1)
t.check(st == 200 and b == old[R1] and t.reached(v, R1) == 1,
        "replaced source, before any request reaches Vellum: nginx still sends the old tile "
        "(deploy.md: until someone asks for info.json)")
st, h, b = get(RINFO)
t.check(st == 200 and t.reached(v, RINFO, at_least=1) == 1, "replaced source: info.json reached Vellum (%d)" % st)
left = files(store + "/iiif/3/r.jp2")
t.check(not left, "replaced source: info.json emptied the identifier's folder (left: %s)" % sorted(left))
inv1 = health_sum(n.port, v)["invalidated"]
t.check(inv1 == inv0 + 1, "replaced source: /health invalidated %d -> %d" % (inv0, inv1))
new = {}
for p in (R1, R2):
    st, h, new[p] = get(p)
    t.check(st == 200 and t.reached(v, p, at_least=2) == 2 and "server-timing" in h,
            "replaced source: %s reached Vellum again (%d)" % (p, st))
    t.check(new[p] != old[p] and stored(p) == new[p], "replaced source: %s has new bytes, and the "
            "store holds them" % p)
got = px.read_png(new[R2])
ref = px.opj_reference(rpath, 0, (256, 256, 512, 512))
t.check(got[:4] == ref[:4], "replaced source: the new png tile is opj_decompress's pixels of the new file")
# The second replacement is noticed by an image request that reaches Vellum, without info.json.
os.replace(os.path.join(work, "r-third.jp2"), rpath)
st, h, b3 = get(R3)
t.check(st == 200 and t.reached(v, R3, at_least=1) == 1, "second replacement: a new tile reached Vellum (%d)" % st)
settle()
left = files(store + "/iiif/3/r.jp2")
t.check(sorted(left) == [fpath(R3)[len("/iiif/3/r.jp2"):]] and stored(R3) == b3,
        "second replacement: the old tiles are gone, only the new one is stored (%s)" % sorted(left))
inv2 = health_sum(n.port, v)["invalidated"]
t.check(inv2 == inv1 + 1, "second replacement: /health invalidated %d -> %d" % (inv1, inv2))
third = {}
for p in (R1, R2):
    st, h, third[p] = get(p)
    t.check(st == 200 and t.reached(v, p, at_least=3) == 3 and third[p] not in (old[p], new[p])
            and stored(p) == third[p], "second replacement: %s from Vellum with the third file's bytes" % p)

# ---- an escaped identifier: nginx decodes it to the stored file, so Vellum checks that one ------
LIT, ESC = tile("sub/b.jp2", 256, 0), tile("sub%2Fb.jp2", 256, 0)
st, h, b_old = get(LIT)
t.check(st == 200 and stored(LIT) == b_old, "literal-slash identifier: %s stored" % LIT)
st, h, b = get(ESC)
t.check(st == 200 and b == b_old and t.reached(v, ESC) == 0,
        "the same tile as sub%%2Fb.jp2: nginx sends the stored file (decoded $uri) (%d)" % st)
os.replace(os.path.join(work, "b-new.jp2"), os.path.join(root, "sub", "b.jp2"))
st, h, b = get("/iiif/3/sub%2Fb.jp2/info.json")
t.check(st == 200 and not files(store + "/iiif/3/sub/b.jp2"),
        "replaced sub/b.jp2: info.json asked as sub%%2Fb.jp2 empties the folder nginx reads (%d, left %s)"
        % (st, sorted(files(store + "/iiif/3/sub/b.jp2"))))
st, h, b = get(ESC)
t.check(st == 200 and t.reached(v, ESC, at_least=1) == 1 and b != b_old,
        "replaced sub/b.jp2: the escaped tile reaches Vellum and has the new file's bytes (%d)" % st)

# ---- 4 clients, the same 20 new tiles at once -------------------------------------------------
CONC = [tile("c.jp2", x, y) for y in (0, 256, 512) for x in (0, 256, 512, 768)]
CONC += [tile("c.jp2", x, y, fmt="png") for y in (0, 256) for x in (0, 256, 512, 768)]
results = [None] * 4
barrier = threading.Barrier(4)


def client(i):
    barrier.wait()
    results[i] = [get(p) for p in CONC]


threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
for th in threads:
    th.start()
for th in threads:
    th.join()
bad = [(p, r[j][0]) for r in results for j, p in enumerate(CONC) if r[j][0] != 200]
t.check(len(CONC) == 20 and not bad, "concurrent: 4 x 20 GETs all 200 (%s)" % bad[:3])
mismatch = [p for j, p in enumerate(CONC)
            if len({r[j][2] for r in results}) != 1 or stored(p) != results[0][j][2]]
t.check(not mismatch, "concurrent: every client got the same bytes and the stored file has them (%s)"
        % mismatch[:3])
settle()
tmps = [f for f in files(store) if "/.tmp." in f]
t.check(not tmps, "concurrent: no temporary files left in the store (%s)" % tmps[:3])
t.check(all(stat.S_IMODE(os.stat(store + fpath(p)).st_mode) == 0o644 for p in CONC
            if os.path.exists(store + fpath(p))),
        "concurrent: every file is 0644")
hs = health_sum(n.port, v)
now = files(store)
t.check(hs["stored"] >= len(now), "/health after all that: stored %d >= %d files" % (hs["stored"], len(now)))

t.check("serving without the tile store" not in v.output(), "Vellum logged no trouble with the store")
err = open(os.path.join(n.dir, "error.log")).read()
bad = [l for l in err.splitlines() if "[crit]" in l or "[alert]" in l or "[emerg]" in l]
t.check(not bad, "nginx logged nothing critical: %s" % bad[:3])

# The same URLs from a Vellum without a store give the same bytes.
v0 = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--block-cache-mb", "0"])
n0 = t.Nginx(work, v0.fastcgi_address)
for p, want in ((R1, third[R1]), (R2, third[R2]), (TILE, b1), (CONC[5], results[0][5][2])):
    st, h, b = get(p, port=n0.port)
    t.check(st == 200 and b == want, "a Vellum without a store sends the stored bytes for %s" % p)
n0.stop()
v0.stop()
n.stop()
v.stop()

# ---- the cap: 1 MB, trimmed to 3/4, oldest first ----------------------------------------------
capstore = os.path.join(work, "capstore")
vc = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--tile-store-dir", capstore,
                          "--tile-store-mb", "1", "--block-cache-dir", os.path.join(work, "blocks")])
nc = t.Nginx(work, vc.fastcgi_address, template_name="nginx-store", values={"STORE_DIR": capstore})
order = []
for sf in (1, 2, 4):
    step = 256 * sf
    for y in range(0, NH, step):
        for x in range(0, NW, step):
            w, h_ = min(step, NW - x), min(step, NH - y)
            order.append("/iiif/3/noise.jp2/%d,%d,%d,%d/%d,/0/default.png" % (x, y, w, h_, -(-w // sf)))
first = None
biggest = 0
fails = []
# One tile everyone looks at (a title page, a thumbnail): nginx sends it from the store every
# other tile of the walk. The trim goes by what was sent least recently, so it must stay
# stored the whole time; an oldest-stored-first trim removes it with the first tiles.
HOT = 2
hot_fails, marked = [], None
for i, p in enumerate(order):
    st, h, b = get(p, port=nc.port)
    if st != 200:
        fails.append((p, st))
    biggest = max(biggest, len(b))
    if i == 0:
        first = b
    if i > HOT and i % 2 == 1:
        if marked is None:
            stored(order[HOT], capstore)
        time.sleep(0.02)  # a timestamp tick of the kernel, so the read is after the store
        st, h, b = get(order[HOT], port=nc.port)
        if st != 200:
            hot_fails.append((i, st))
        if marked is None:  # does this file system record reads (atime after ctime)?
            s = os.stat(capstore + fpath(order[HOT]))
            marked = s.st_atime_ns > s.st_ctime_ns
t.check(not fails and not hot_fails, "cap: %d noise tiles served, and the often-sent one (%s %s)"
        % (len(order), fails[:3], hot_fails[:3]))
settle()
held = files(capstore)
total = sum(len(b) for b in held.values())
sent = biggest * len(order)
t.check(sent > 2 << 20, "cap: the tiles add up to %d bytes, well past 1 MB" % sent)
t.check(total <= (1 << 20) + biggest, "cap: the store holds %d bytes in %d files (cap 1 MB + one tile)"
        % (total, len(held)))
t.check(fpath(order[0]) not in held and fpath(order[1]) not in held, "cap: the first tiles were removed")
t.check(fpath(order[-1]) in held and stored(order[-1], capstore) is not None, "cap: the last tile is kept")
hc = health_sum(nc.port, vc)
if marked:
    t.check(fpath(order[HOT]) in held and t.reached(vc, order[HOT]) == 1,
            "cap: the tile nginx kept sending was never trimmed (in the store at the end, and "
            "Vellum made it once: %d)" % t.reached(vc, order[HOT]))
    t.check(fpath(order[HOT + 1]) not in held, "cap: the tile stored right after it, never sent "
            "again, was trimmed")
    t.check(hc["spared"] > 0 and hc["trim_order"] == "least recently sent first",
            "cap: /health says the trim spared files and goes by use (%s)" % hc)
else:
    print("SKIPPED: cap: %s does not record reads (mounted noatime?): the trim there is oldest "
          "stored first, and what it keeps by use is not checked" % capstore, flush=True)
    t.check(hc["trim_order"].startswith("oldest stored first"),
            "cap: /health says the trim is oldest stored first (%s)" % hc)
t.check(hc["evicted"] > 0 and hc["stored"] == len(order),
        "cap: /health says evicted > 0, stored = %d (%s)" % (len(order), hc))
t.check(0 < hc["bytes"] <= 1 << 20, "cap: /health bytes %d within the cap" % hc["bytes"])
st, h, b = get(order[0], port=nc.port)
t.check(st == 200 and b == first and t.reached(vc, order[0], at_least=2) == 2,
        "cap: a removed tile asked again comes from Vellum with the same bytes (%d)" % st)
t.check(stored(order[0], capstore) == first, "cap: ...and is stored again")
nc.stop()
vc.stop()

# ---- an unsafe store folder (writable by others) is refused; images still served ---------------
unsafe = os.path.join(work, "unsafe")
os.makedirs(unsafe)
os.chmod(unsafe, 0o777)
vu = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--tile-store-dir", unsafe,
                          "--block-cache-mb", "0"])
nu = t.Nginx(work, vu.fastcgi_address, template_name="nginx-store", values={"STORE_DIR": unsafe})
for _ in range(2):
    st, h, b = get(TILE, port=nu.port)
    t.check(st == 200 and b == b1, "unsafe store: the tile is served (%d)" % st)
t.check(t.reached(vu, TILE, at_least=2) == 2, "unsafe store: both requests reached Vellum")
t.check(not os.listdir(unsafe), "unsafe store: nothing was written to it (%s)" % os.listdir(unsafe))
t.check("serving without the tile store" in vu.output() and "writable by no one else" in vu.output(),
        "unsafe store: Vellum says it serves without the tile store, and why")
hu = health_sum(nu.port, vu)
t.check(not hu["enabled"], "unsafe store: /health says tile_store is not enabled (%s)" % hu)
nu.stop()
vu.stop()

print("     ran in %.1f s" % (time.time() - T0), flush=True)
t.done()
