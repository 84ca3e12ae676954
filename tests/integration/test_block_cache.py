"""The shared block cache (codec/block_cache.c) through real nginx: tiles cut from a cached
block are exactly the pixels opj_decompress gives for the tile's own area (lossless and lossy
9/7), each block is decoded once across workers, JPEG sources once per band of a level and PNG
ones (and EXIF-oriented JPEGs) once per level (tiles equal djpeg's DCT-scaled decode, turned as
EXIF says, and the PNG's own pixels), the cache
stays under its size, a replaced
source is never served from old blocks, a foreign or damaged file in the cache is ignored, and
an unsafe cache folder turns the cache off rather than trusting it."""
import concurrent.futures
import math
import os
import subprocess
import time

import harness as t
import pixels as px

work = t.tmpdir()
root = os.path.join(work, "images")
os.makedirs(root)
W, H = 2300, 1500


def chart(seed):
    row = bytes(((x * (3 + seed)) ^ (x >> 2) ^ (seed * 40)) & 255 for x in range(W * 3 + 256))
    return b"".join(row[(y * 7) % 256:(y * 7) % 256 + W * 3] for y in range(H))


px.write_pnm(os.path.join(work, "a.ppm"), W, H, 3, chart(1))
px.write_pnm(os.path.join(work, "b.ppm"), W, H, 3, chart(2))


def opj(src, dst, *args):
    subprocess.run(["opj_compress", "-i", src, "-o", dst] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


opj(os.path.join(work, "a.ppm"), os.path.join(root, "lossless.jp2"), "-n", "5")
opj(os.path.join(work, "a.ppm"), os.path.join(root, "lossy.jp2"), "-n", "6", "-I", "-r", "20",
    "-p", "RPCL", "-c", "[256,256],[256,256],[128,128]")
opj(os.path.join(work, "a.ppm"), os.path.join(root, "tiled.jp2"), "-n", "5", "-t", "512,512")
subprocess.run(["cjpeg", "-quality", "90", "-outfile", os.path.join(root, "photo.jpg"),
                os.path.join(work, "a.ppm")], check=True)
A_PIXELS = px.read_pnm(os.path.join(work, "a.ppm"))
px.write_png(os.path.join(root, "flat.png"), W, H, 3, A_PIXELS[3])

cache = os.path.join(work, "blocks")
BLOCK = 1024  # the default block_size
v = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--block-cache-dir", cache,
                         "--block-cache-mb", "64", "--block-size", str(BLOCK)])
n = t.Nginx(work, v.fastcgi_address)


def tiles(sf, size=256):
    """Every tile of one scale factor, as a viewer asks for them."""
    out = []
    step = size * sf
    for y in range(0, H, step):
        for x in range(0, W, step):
            w, h = min(step, W - x), min(step, H - y)
            out.append((x, y, w, h, -(-w // sf), -(-h // sf)))
    return out


def fetch(ident, tile):
    x, y, w, h, ow, oh = tile
    st, _, body = t.request(n.port, "/iiif/3/%s/%d,%d,%d,%d/%d,%d/0/default.png" % (ident, x, y, w, h, ow, oh))
    return tile, st, body


def health_sum():
    """Block cache counters summed over the workers."""
    seen = t.health_by_worker(n.port, v, "block_cache")
    total = {}
    for b in seen.values():
        for k, val in b.items():
            if k != "enabled":
                total[k] = total.get(k, 0) + val
    return total, seen


# --- every tile of two levels, 4 clients at once, against opj_decompress of each tile's area ---
for ident in ("lossless.jp2", "lossy.jp2", "tiled.jp2"):
    src = os.path.join(root, ident)
    for sf in (1, 4):
        r = sf.bit_length() - 1
        level = tiles(sf)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda tl: fetch(ident, tl), level))
        bad = [tl for tl, st, _ in results if st != 200]
        t.check(not bad, "%s sf %d: all %d tiles answered 200 (failed: %s)" % (ident, sf, len(level), bad[:3]))
        worst = 0
        for tl, st, body in results:
            if st != 200:
                continue
            x, y, w, h, ow, oh = tl
            ref = px.opj_reference(src, r, (x, y, x + w, y + h))
            got = px.read_png(body)
            if got[:3] != ref[:3]:
                worst = 999
                break
            worst = max(worst, max(abs(a - b) for a, b in zip(got[3], ref[3])))
        t.check(worst == 0, "%s sf %d: every tile equals opj_decompress -r %d -d <tile> exactly "
                "(largest difference %d)" % (ident, sf, r, worst))

total, per_worker = health_sum()
print("block cache counters:", per_worker)


def block_grid(r, tiled, queued=False):
    """The block shape at level r (architecture.md): a block covers at most BLOCK x BLOCK pixels
    of the full image (BLOCK >> r at level r, at least 256); an untiled source's full-resolution
    blocks are half as tall, and its 256-pixel blocks are 512 while requests queue."""
    side = max(256, BLOCK >> r)
    if queued and not tiled and side == 256:
        return 512, 512
    return side, (side // 2 if r == 0 and not tiled else side)


def blocks_of(r, tiled, queued=False):
    bw, bh = block_grid(r, tiled, queued)
    lw, lh = -(-W // (1 << r)), -(-H // (1 << r))
    return -(-lw // bw) * -(-lh // bh)


# Four clients and two workers: requests sometimes wait for a worker, and then an untiled
# image's blocks at 1/4 are the larger shape. Either way no block is decoded twice: every miss
# stored a block file of its own.
fewest = sum(blocks_of(r, ident == "tiled.jp2", True)
             for ident in ("lossless.jp2", "lossy.jp2", "tiled.jp2") for r in (0, 2))
most = sum(blocks_of(r, ident == "tiled.jp2")
           for ident in ("lossless.jp2", "lossy.jp2", "tiled.jp2") for r in (0, 2))
stored = len([f for f in os.listdir(cache) if f.endswith(".blk")])
t.check(fewest <= total.get("misses", 0) <= most and total.get("misses", 0) == stored,
        "each block was decoded once across both workers (%d misses, %d blocks stored, %d-%d "
        "blocks of the two shapes)" % (total.get("misses", 0), stored, fewest, most))
tiles_total = 3 * (len(tiles(1)) + len(tiles(4)))
t.check(total.get("hits", 0) + total.get("waits", 0) + total.get("misses", 0) == tiles_total,
        "every other tile was cut from a stored block (%s, %d tiles)" % (total, tiles_total))
t.check(total.get("waits", 0) > 0, "concurrent tiles of one block waited for it instead of decoding it again (%s)" % total)
toks = sorted(f for f in os.listdir(cache) if f.startswith("cpu-") and f.endswith(".tok"))
cores = len(os.sched_getaffinity(0))  # what Vellum may use (a cgroup quota would be fewer)
t.check(0 < len(toks) <= cores,
        "decodes took CPU tokens, one file per core at most (%s, %d cores)" % (toks, cores))
st = os.stat(cache)
t.check(st.st_mode & 0o777 == 0o700, "the cache folder is private (mode %o)" % (st.st_mode & 0o777))

# --- JPEG and PNG: a miss decodes a band of the level (JPEG) or the whole level (PNG) once and
# stores all of its blocks; every tile equals an independent decode (djpeg -scale 1/2^r; the
# PNG's pixels) ----------------------------------------------------------------------------------
before_jpeg = total
before_bypassed = total.get("bypassed", 0)
for ident, refs in (("photo.jpg", {r: px.djpeg_reference(os.path.join(root, "photo.jpg"), r)
                                   for r in (0, 2, 3)}),
                    ("flat.png", {0: A_PIXELS})):
    # sf 8: a PNG tile is 2048 pixels of the full-size level, put together from 2x2 blocks
    for sf in (1, 4, 8):
        level = tiles(sf)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda tl: fetch(ident, tl), level))
        bad = [tl for tl, st, _ in results if st != 200]
        t.check(not bad, "%s sf %d: all %d tiles answered 200 (failed: %s)" % (ident, sf, len(level), bad[:3]))
        r = sf.bit_length() - 1 if ident.endswith(".jpg") else 0  # PNG has no reduced levels
        ref = refs[r]
        mismatched = []
        for tl, st, body in results:
            x, y, w, h, ow, oh = tl
            got = px.read_png(body)
            # The tile's pixels at level r, on the ceil grid (x / 2^r rounded up).
            want = px.crop(ref, -(-x >> r), -(-y >> r), -(-(x + w) >> r) - -(-x >> r),
                           -(-(y + h) >> r) - -(-y >> r))
            if r == 0 and sf > 1:
                want = px.box_downscale(want, ow, oh)
                d = px.diff(got, want)
                if d is None or d[0] > 1:
                    mismatched.append(tl[:4])
            elif got[:4] != want[:4]:
                mismatched.append(tl[:4])
        t.check(not mismatched, "%s sf %d: every tile equals the independent decode (%s)"
                % (ident, sf, "exactly" if ident.endswith(".jpg") or sf == 1 else
                   "downscaled, within 1 level") + (": not %s" % mismatched[:3] if mismatched else ""))
total, per_worker = health_sum()
misses = total.get("misses", 0) - before_jpeg.get("misses", 0)
# photo.jpg: one decode per band (BLOCK rows of a level, the image's width): two at full size
# (1500 rows), one at 1/4, one at 1/8. flat.png has no reduced levels: one decode of the whole
# image at full size serves all three scale factors (blocks of whole-image sources are
# block_size square; a sf 8 tile is cut from four of them).
bands = sum(math.ceil(math.ceil(H / 2 ** r) / BLOCK) for r in (0, 2, 3))
t.check(misses == bands + 1, "JPEG: one decode per band of a level (%d), PNG: one whole-image "
        "decode, not one per tile (%d decodes for %d tiles)"
        % (bands, misses, 2 * sum(len(tiles(sf)) for sf in (1, 4, 8))))
t.check(total.get("bypassed", 0) == before_bypassed,
        "JPEG and PNG: no tile bypassed the cache, not even PNG tiles spanning several blocks "
        "(%d bypassed)" % (total.get("bypassed", 0) - before_bypassed))

# --- EXIF-oriented JPEGs: requests are in displayed coordinates and the decoder rounds the scale
# in stored ones, which a mirror turns around. Every tile must equal what the direct decode gives:
# djpeg's scaled decode of the stored image, cropped where the displayed tile lies in the stored
# image, then turned as EXIF says (the formulas below are the EXIF definitions, written here
# apart from jpeg_src.c). One decode per level of a turned image, per band of a mirrored one;
# nothing bypasses the cache. ---------------------------------------------------------------


def stored_rect(o, dw, dh, x, y, w, h):
    """The stored rectangle a displayed one (of a dw x dh display) shows."""
    return {1: (x, y, w, h), 2: (dw - x - w, y, w, h), 3: (dw - x - w, dh - y - h, w, h),
            4: (x, dh - y - h, w, h), 5: (y, x, h, w), 6: (y, dw - x - w, h, w),
            7: (dh - y - h, dw - x - w, h, w), 8: (dh - y - h, x, h, w)}[o]


def displayed(img, o):
    """img (stored) as EXIF orientation o shows it: D[y][x] = S[row][col] below."""
    sw, sh, ch, data = img
    dw, dh = (sh, sw) if o >= 5 else (sw, sh)
    src = {1: lambda x, y: (y, x), 2: lambda x, y: (y, sw - 1 - x),
           3: lambda x, y: (sh - 1 - y, sw - 1 - x), 4: lambda x, y: (sh - 1 - y, x),
           5: lambda x, y: (x, y), 6: lambda x, y: (sh - 1 - x, y),
           7: lambda x, y: (sh - 1 - x, sw - 1 - y), 8: lambda x, y: (x, sw - 1 - y)}[o]
    out = bytearray(dw * dh * ch)
    for y in range(dh):
        for x in range(dw):
            row, col = src(x, y)
            out[(y * dw + x) * ch:(y * dw + x + 1) * ch] = data[(row * sw + col) * ch:(row * sw + col + 1) * ch]
    return dw, dh, ch, bytes(out)


photo = open(os.path.join(root, "photo.jpg"), "rb").read()
before_oriented, _ = health_sum()
refs, levels = {}, set()
for o in (3, 6, 7):  # 180 degrees; 90 clockwise; transverse: both mirrors with the transpose
    ident = "photo-o%d.jpg" % o
    with open(os.path.join(root, ident), "wb") as f:
        f.write(px.with_orientation(photo, o))
    dw, dh = (H, W) if o >= 5 else (W, H)
    for sf in (1, 8):
        level = [(x, y, min(256 * sf, dw - x), min(256 * sf, dh - y))
                 for y in range(0, dh, 256 * sf) for x in range(0, dw, 256 * sf)]
        if sf == 1:  # the four corners and one inside: rounding is exact at full size anyway
            level = [level[0], level[-1], level[len(level) // 2]] + \
                [tl for tl in level if (tl[0] == 0 and tl[1] + tl[3] == dh) or
                 (tl[1] == 0 and tl[0] + tl[2] == dw)]
        else:  # and regions off the tile grid, where rounding in stored coordinates shows
            level += [(101, 37, 1203, 877), (5, 3, 701, 501), (dw - 333, dh - 251, 333, 251)]
        level = [(x, y, w, h, -(-w // sf), -(-h // sf)) for x, y, w, h in level]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda tl: fetch(ident, tl), level))
        mismatched = []
        for tl, st, body in results:
            x, y, w, h, ow, oh = tl
            sx, sy, sw_, sh_ = stored_rect(o, dw, dh, x, y, w, h)
            # the coarsest scale (at most 1/8) whose crop still has the size asked for
            want_w, want_h = (oh, ow) if o >= 5 else (ow, oh)
            r = next(k for k in (3, 2, 1, 0)
                     if -(-(sx + sw_) >> k) - -(-sx >> k) >= want_w and
                     -(-(sy + sh_) >> k) - -(-sy >> k) >= want_h)
            # one decode per level of a turned image; a mirrored one (3) keeps its stored rows,
            # upside down: one per band of the level (BLOCK rows, as displayed) the region is in
            sh_r = -(-H >> r)  # the stored image's height at 1/2^r
            if o >= 5:
                levels.add((o, r))
            else:
                top, bottom = sh_r - -(-(sy + sh_) >> r), sh_r - -(-sy >> r)
                levels.update((o, r, b) for b in range(top // BLOCK, (bottom - 1) // BLOCK + 1))
            if r not in refs:
                refs[r] = px.djpeg_reference(os.path.join(root, "photo.jpg"), r)  # ignores EXIF
            ref = refs[r]
            cx, cy = -(-sx >> r), -(-sy >> r)
            piece = px.crop(ref, cx, cy, -(-(sx + sw_) >> r) - cx, -(-(sy + sh_) >> r) - cy)
            want = displayed(piece, o)
            if st != 200:
                mismatched.append((tl[:4], st))
            elif want[:2] == (ow, oh):
                if px.read_png(body)[:4] != want[:4]:
                    mismatched.append((tl[:4], "pixels"))
            else:  # the crop rounds to a pixel more or less than asked: Vellum resizes it
                d = px.diff(px.read_png(body), px.box_downscale(want, ow, oh))
                if d is None or d[0] > 1:
                    mismatched.append((tl[:4], "resized", d))
        t.check(not mismatched, "%s sf %d: every region answered and equals djpeg's scaled decode "
                "of the stored image, cropped and turned as EXIF %d says (resized within 1 where "
                "the crop rounds to another size)%s"
                % (ident, sf, o, (": not %s" % mismatched[:3]) if mismatched else ""))
after_oriented, _ = health_sum()
t.check(after_oriented.get("misses", 0) - before_oriented.get("misses", 0) == len(levels),
        "oriented JPEGs: one decode per level (turned) or band of a level (mirrored) (%d decodes, "
        "%d levels or bands)"
        % (after_oriented.get("misses", 0) - before_oriented.get("misses", 0), len(levels)))
t.check(after_oriented.get("bypassed", 0) == before_oriented.get("bypassed", 0),
        "oriented JPEGs: no tile bypassed the cache (%d)"
        % (after_oriented.get("bypassed", 0) - before_oriented.get("bypassed", 0)))

# --- a replaced source is never served from its old blocks --------------------------------------
probe_tile = (1024, 0, 256, 256, 256, 256)
before = px.read_png(fetch("lossless.jp2", probe_tile)[2])
tmp = os.path.join(work, "replaced.jp2")
opj(os.path.join(work, "b.ppm"), tmp, "-n", "5")
os.replace(tmp, os.path.join(root, "lossless.jp2"))
st, hdrs, body = t.request(n.port, "/iiif/3/lossless.jp2/1024,0,256,256/256,256/0/default.png")
after = px.read_png(body)
ref = px.opj_reference(os.path.join(root, "lossless.jp2"), 0, (1024, 0, 1280, 256))
t.check(after[3] == ref[3] and after[3] != before[3], "after the source is replaced, its tiles show the new file")
timing = hdrs.get("server-timing", "")
t.check("block decoded" in timing and "decode;dur=" in timing and "encode;dur=" in timing,
        "Server-Timing says the new block was decoded (%s)" % timing)
st, hdrs, _ = t.request(n.port, "/iiif/3/lossless.jp2/1280,256,256,256/256,256/0/default.png")
t.check(st == 200 and "block cache hit" in hdrs.get("server-timing", ""),
        "Server-Timing says a neighbouring tile was a block cache hit (%s)" % hdrs.get("server-timing"))

# --- a damaged block file is ignored and replaced -----------------------------------------------
blocks = [f for f in os.listdir(cache) if f.endswith(".blk")]
for f in blocks:
    with open(os.path.join(cache, f), "r+b") as fh:
        fh.truncate(100)
after2 = px.read_png(fetch("lossless.jp2", probe_tile)[2])
t.check(after2[3] == ref[3], "a truncated block file in the cache is not served")

v.stop()
n.stop()

# --- size cap: a 16 MB cache over 21 MB of blocks stays under its cap ---------------------------
# (two images' full-resolution blocks: 2 x 2300 x 1500 x 3 bytes)
small = os.path.join(work, "small-cache")
v = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--block-cache-dir", small,
                         "--block-cache-mb", "16"])
n = t.Nginx(work, v.fastcgi_address)
for ident in ("lossy.jp2", "tiled.jp2"):
    for tl in tiles(1, BLOCK):
        st = fetch(ident, tl)[1]
        t.check(st == 200, "capped cache: block-sized tile %s of %s served" % (tl[:4], ident))
used = sum(os.path.getsize(os.path.join(small, f)) for f in os.listdir(small))
total, _ = health_sum()
t.check(used <= 16 << 20, "capped cache: %d bytes stored, cap 16 MB" % used)
nblocks = 2 * -(-W // BLOCK) * -(-H // BLOCK)
t.check(total.get("stored", 0) == nblocks, "capped cache: all %d blocks were stored on the way (%s)" % (nblocks, total))
t.check(total.get("evicted", 0) > 0, "capped cache: old blocks were evicted (%s)" % total)
v.stop()
n.stop()

# --- while requests queue for the one worker, an untiled image's 1/4 level is decoded in blocks
# of 2x2 tiles; either shape serves the other mode's requests ----------------------------------
qcache = os.path.join(work, "qblocks")
v = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--block-cache-dir", qcache,
                         "--debug-routes"])
n = t.Nginx(work, v.fastcgi_address)
level = tiles(4)  # lossy.jp2 at 1/4: 575x375, 3x2 tiles: 6 blocks of 256 or 2 of 512


def queued_burst(ident):
    """The level's tiles asked for at once while the worker sleeps: they all queue behind it."""
    with concurrent.futures.ThreadPoolExecutor(len(level) + 1) as pool:
        sleeper = pool.submit(t.request, n.port, "/debug/sleep?ms=400")
        time.sleep(0.1)
        results = list(pool.map(lambda tl: fetch(ident, tl), level))
        sleeper.result()
    return results


def same_as_opj(ident, results):
    src = os.path.join(root, ident)
    return all(st == 200 and px.read_png(body)[:4] ==
               px.opj_reference(src, 2, (x, y, x + w, y + h))[:4]
               for (x, y, w, h, ow, oh), st, body in results)


def misses():
    return health_sum()[0].get("misses", 0)


m0 = misses()
results = queued_burst("lossy.jp2")
m1 = misses()
t.check(same_as_opj("lossy.jp2", results),
        "queued: every 1/4 tile of the untiled image equals opj_decompress of its area")
# Each request but the last saw others waiting: the first tile of each 512 block decoded it (the
# last request may decode its 256 block if it is the first of a block).
t.check(m1 - m0 == blocks_of(2, False, True),
        "queued: %d block decodes for the level's %d tiles (%d blocks of 512; %d of 256 unqueued)"
        % (m1 - m0, len(level), blocks_of(2, False, True), blocks_of(2, False)))
results = [fetch("lossy.jp2", tl) for tl in level]  # one at a time: nothing waits
t.check(same_as_opj("lossy.jp2", results) and misses() == m1,
        "unqueued: the same tiles are cut from the larger blocks, with no decode (%d misses)"
        % (misses() - m1))
# The other way round: 256 blocks made one at a time serve a queued burst.
m2 = misses()
results = [fetch("lossless.jp2", tl) for tl in level]
m3 = misses()
t.check(m3 - m2 == blocks_of(2, False), "unqueued: one decode per 256 block (%d)" % (m3 - m2))
results = queued_burst("lossless.jp2")
t.check(same_as_opj("lossless.jp2", results) and misses() == m3,
        "queued: tiles already in 256 blocks are cut from them, with no decode (%d misses)"
        % (misses() - m3))
v.stop()
n.stop()

# --- an unsafe cache folder (writable by others) is refused; images are still served ------------
unsafe = os.path.join(work, "unsafe")
os.makedirs(unsafe)
os.chmod(unsafe, 0o777)
v = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--block-cache-dir", unsafe])
n = t.Nginx(work, v.fastcgi_address)
st = fetch("lossy.jp2", (0, 0, 256, 256, 256, 256))[1]
t.check(st == 200, "unsafe cache folder: the tile is still served (%d)" % st)
t.check(not os.listdir(unsafe), "unsafe cache folder: nothing was written to it")
t.check("serving without the block cache" in v.output() and "writable by no one else" in v.output(),
        "unsafe cache folder: the worker says why it runs without the cache")
v.stop()
n.stop()

t.done()
