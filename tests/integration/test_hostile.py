"""Hostile inputs through real nginx (docs/security.md, "Threat model"): crafted source files
(truncations, headers that lie about their size, zero sizes, wrong extensions, directories,
FIFOs, devices, unreadable files, symlinks out of the root) and hostile URLs (traversal in every
encoding, absurd numbers, NaN/inf, oversized identifiers, paths and query strings).

For every case: a complete answer within a time bound (never a hang or a dropped connection),
the status the docs promise (a JSON error where Vellum answers), nothing from outside the image
root, no worker lost (except a documented guard retirement, attributed to its input), and the
next valid request succeeds.

The shared corrupt corpus (../shared/fixtures/corrupt) is NOT requested here: test_fixtures.py
already requests every file in it (info.json, a scaled image and a tile), checks each answer
and the next valid request, and that no worker died; a second pass here would add nothing."""
import http.client
import json
import os
import random
import socket
import stat
import struct
import subprocess
import time
import urllib.parse
import zlib

import harness as t
import pixels as px

BOUND = 15.0  # seconds: every answer, even to a FIFO or a lying header, must come sooner
started = time.time()

work = t.tmpdir()
root = os.path.join(work, "images")
os.makedirs(root)

# ---- sources ---------------------------------------------------------------------------------
W, H = 200, 150        # every valid source
SW, SH = 131, 67       # the secret outside the root: a size no valid source has
rgb = bytes(c for y in range(H) for x in range(W)
            for c in ((x * 255) // (W - 1), (y * 255) // (H - 1), 40 + 160 * ((x // 32 + y // 32) % 2)))
px.write_pnm(os.path.join(work, "valid.ppm"), W, H, 3, rgb)
px.write_pnm(os.path.join(work, "secret.pgm"), SW, SH, 1, bytes((x * y) & 255 for y in range(SH) for x in range(SW)))


def opj(src, dst, *args):
    subprocess.run(["opj_compress", "-i", src, "-o", dst] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(w, h, data, ihdr_w=None, ihdr_h=None):
    raw = b"".join(b"\0" + data[y * w * 3:(y + 1) * w * 3] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w if ihdr_w is None else ihdr_w,
                                         h if ihdr_h is None else ihdr_h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write(name, data):
    with open(os.path.join(root, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


opj(os.path.join(work, "valid.ppm"), os.path.join(root, "valid.jp2"), "-t", "64,64", "-n", "3")
opj(os.path.join(work, "valid.ppm"), os.path.join(root, "valid.j2k"), "-n", "3")
subprocess.run(["cjpeg", "-quality", "90", "-outfile", os.path.join(root, "valid.jpg"),
                os.path.join(work, "valid.ppm")], check=True)
write("valid.png", png_bytes(W, H, rgb))
# The secret: where every traversal below would land if it worked (root/../secret.jp2), in a
# sibling folder whose name starts with the root's (a naive prefix check lets it through), and
# a copy inside the root that proves the detector below recognises its info.json.
opj(os.path.join(work, "secret.pgm"), os.path.join(work, "secret.jp2"), "-n", "2")
os.makedirs(os.path.join(work, "images-evil"))
os.link(os.path.join(work, "secret.jp2"), os.path.join(work, "images-evil", "secret.jp2"))
os.link(os.path.join(work, "secret.jp2"), os.path.join(root, "secret-inside.jp2"))
SECRET_MARKS = (b'"width":%d' % SW, b'"height":%d' % SH)

J = read(os.path.join(root, "valid.jp2"))
K = read(os.path.join(root, "valid.j2k"))
JPG = read(os.path.join(root, "valid.jpg"))
PNG = read(os.path.join(root, "valid.png"))


def be32(b, off):
    return struct.unpack(">I", b[off:off + 4])[0]


def patch(data, *edits):
    """edits: (offset, fmt, value) written big-endian over a copy of data."""
    out = bytearray(data)
    for off, fmt, value in edits:
        struct.pack_into(">" + fmt, out, off, value)
    return bytes(out)


# JPEG 2000 landmarks: SOC+SIZ, the JP2 ihdr box, COD, the first tile-part (SOT / Psot).
CS = J.index(b"\xff\x4f\xff\x51")
IHDR = J.index(b"ihdr")
COD = J.index(b"\xff\x52", CS)
SOT = J.index(b"\xff\x90", CS)
PSOT = be32(J, SOT + 6)
assert K[:4] == b"\xff\x4f\xff\x51" and J[SOT + 4:SOT + 6] == b"\0\0" and PSOT > 64


def siz(data, cs, **fields):
    """Rewrite SIZ fields (Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz Csiz) of the codestream at cs."""
    offs = {"Xsiz": (8, "I"), "Ysiz": (12, "I"), "XOsiz": (16, "I"), "YOsiz": (20, "I"),
            "XTsiz": (24, "I"), "YTsiz": (28, "I"), "Csiz": (40, "H")}
    return patch(data, *[(cs + offs[k][0], offs[k][1], v) for k, v in fields.items()])


def jp2_size(w, h, **tiles):
    """The JP2 with ihdr and SIZ both claiming w x h: a consistent lie."""
    return patch(siz(J, CS, Xsiz=w, Ysiz=h, **tiles), (IHDR + 4, "I", h), (IHDR + 8, "I", w))


def jpeg_sof(data, w, h):
    pos = 2
    while pos + 4 <= len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return patch(data, (pos + 5, "H", h), (pos + 7, "H", w))
        pos += 2 + length
    raise RuntimeError("no SOF in the cjpeg output")


def jpeg_dims(data):
    """(width, height) from a JPEG's SOF, or None."""
    pos = 2
    while data[:2] == b"\xff\xd8" and pos + 9 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
            return w, h
        pos += 2 + length
    return None


IDAT = PNG.index(b"IDAT")
rng = random.Random(1977)

# name -> (bytes, expectations). Expectations per request (info.json, full image, tile):
#   "err"        a 4xx/5xx JSON error from Vellum (not nginx's 502/504: a lost worker or a hang)
#   int          that status exactly, as a JSON error (where the docs name it)
#   "ok"         200 with the true 200x150 size
#   "ok|err"     either: the header is intact (info.json needs nothing more) or the decoder's
#                tolerance is a design choice; what matters is a complete, well-formed answer
E, OK, EITHER = "err", "ok", "ok|err"
crafted = {
    # truncations of a tiled JP2 at every stage of the header, then in the first tile's data
    "trunc-signature.jp2": (J[:12], (E, E, E)),
    "trunc-after-soc.jp2": (J[:CS + 2], (E, E, E)),
    "trunc-mid-siz.jp2": (J[:CS + 20], (E, E, E)),
    "trunc-mid-cod.jp2": (J[:COD + 6], (E, E, E)),
    "trunc-mid-tile.jp2": (J[:SOT + PSOT // 2], (EITHER, E, E)),
    "trunc-mid-data.j2k": (K[:len(K) * 3 // 5], (EITHER, E, E)),
    # SIZ (and ihdr) lying about the size; docs/security.md: 413 for "JPEG 2000 tiles x
    # components" and "decoded source pixels per request", read from the header
    "siz-2g-x-2g-tiled.jp2": (jp2_size(2**31 - 1, 2**31 - 1), (413, 413, 413)),
    "siz-2g-x-2g-one-tile.jp2": (jp2_size(2**31 - 1, 2**31 - 1, XTsiz=2**31 - 1, YTsiz=2**31 - 1),
                                 (413, 413, 413)),
    "siz-100k-x-100k.jp2": (jp2_size(100000, 100000, XTsiz=100000, YTsiz=100000), (413, 413, 413)),
    "siz-100k-x-100k-tiled.j2k": (siz(K, 0, Xsiz=100000, Ysiz=100000, XTsiz=64, YTsiz=64),
                                  (413, 413, 413)),
    "siz-4g-wide.j2k": (siz(K, 0, Xsiz=0xFFFFFFFF), (E, E, E)),
    "siz-zero-width.j2k": (siz(K, 0, Xsiz=0), (E, E, E)),
    "siz-zero-height.jp2": (jp2_size(W, 0), (E, E, E)),
    "siz-empty-area.j2k": (siz(K, 0, XOsiz=W), (E, E, E)),
    "siz-zero-tile.j2k": (siz(K, 0, XTsiz=0, YTsiz=0), (E, E, E)),
    "siz-no-components.j2k": (siz(K, 0, Csiz=0), (E, E, E)),
    "siz-16384-components.j2k": (siz(K, 0, Csiz=16384), (E, E, E)),
    # nothing, or not an image
    "zero-bytes.jp2": (b"", (E, E, E)),
    "random-bytes.jp2": (bytes(rng.getrandbits(8) for _ in range(4096)), (E, E, E)),
    "gif-named.jp2": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", (E, E, E)),
    # wrong extensions: a source is recognised by its first bytes, never its name
    # (docs/architecture.md: "format sniffing by magic bytes"), so these are served
    "jpeg-named.jp2": (JPG, (OK, OK, OK)),
    "jp2-named.jpg": (J, (OK, OK, OK)),
    "png-named.jp2": (PNG, (OK, OK, OK)),
    "j2k-named.png": (K, (OK, OK, OK)),
    # JPEG: SOF lying (65535^2 > max_decode_pixels: 413), zero sizes, truncations
    "sof-65535-x-65535.jpg": (jpeg_sof(JPG, 65535, 65535), (413, 413, 413)),
    "sof-zero-height.jpg": (jpeg_sof(JPG, W, 0), (E, E, E)),
    "sof-zero-width.jpg": (jpeg_sof(JPG, 0, H), (E, E, E)),
    "jpeg-soi-only.jpg": (b"\xff\xd8\xff", (E, E, E)),
    "jpeg-trunc-header.jpg": (JPG[:40], (E, E, E)),
    # a truncated scan: codec/jpeg_src.c accepts libjpeg's warning (as djpeg does)
    "jpeg-trunc-scan.jpg": (JPG[:len(JPG) * 3 // 5], (EITHER, EITHER, EITHER)),
    # PNG: IHDR lying (2^31-1 is a legal PNG side; docs/security.md: a header declaring more
    # than max_decode_pixels is 413, as for JPEG and JPEG 2000), zero, truncated, a bad CRC.
    # Known to fail (2026-11-25): a side above max_decode_pixels trips png_set_user_limits in
    # png_src.c first, and libpng's "Invalid IHDR data" becomes a 500; 200000000x3 gets 413.
    "ihdr-2g-x-2g.png": (png_bytes(W, H, rgb, 2**31 - 1, 2**31 - 1), (413, 413, 413)),
    "ihdr-100k-x-100k.png": (png_bytes(W, H, rgb, 100000, 100000), (413, 413, 413)),
    "ihdr-200m-x-3.png": (png_bytes(W, H, rgb, 200000000, 3), (413, 413, 413)),
    "ihdr-2g-x-1.png": (png_bytes(W, H, rgb, 2**31 - 1, 1), (413, 413, 413)),
    "ihdr-zero-width.png": (png_bytes(W, H, rgb, 0, H), (E, E, E)),
    "png-trunc-ihdr.png": (PNG[:20], (E, E, E)),
    # rows above the cut are intact: a tile there may be served (exactness checked below)
    "png-trunc-idat.png": (PNG[:IDAT + (len(PNG) - IDAT) // 2], (EITHER, E, EITHER)),
    "png-bad-ihdr-crc.png": (PNG[:29] + b"\0\0\0\0" + PNG[33:], (E, E, E)),
}
for name, (data, _) in crafted.items():
    write(name, data)

# A valid JPEG whose file is 1.5 GiB (sparse: a tail of zeros after EOI). docs/security.md:
# "JPEG read into memory 1 GiB -> 413". The header is fine, so info.json may answer.
sparse = os.path.join(root, "sparse-1.5g.jpg")
write("sparse-1.5g.jpg", JPG)
os.truncate(sparse, 3 << 29)
crafted["sparse-1.5g.jpg"] = (None, (EITHER, 413, 413))

# Not regular files, or outside the root: docs/security.md, "Identifiers" step 3: 404.
notes = []
os.makedirs(os.path.join(root, "a-directory.jp2"))
os.mkfifo(os.path.join(root, "fifo.jp2"))
os.symlink("fifo.jp2", os.path.join(root, "link-to-fifo.jp2"))
os.symlink("/dev/zero", os.path.join(root, "link-to-dev-zero.jp2"))
os.symlink("../secret.jp2", os.path.join(root, "escape.jp2"))
os.symlink(os.path.join(work, "secret.jp2"), os.path.join(root, "escape-absolute.jp2"))
os.symlink("../images-evil/secret.jp2", os.path.join(root, "prefix-sibling.jp2"))
os.symlink("..", os.path.join(root, "up"))
os.symlink("missing.jp2", os.path.join(root, "dangling.jp2"))
os.symlink("loop-b.jp2", os.path.join(root, "loop-a.jp2"))
os.symlink("loop-a.jp2", os.path.join(root, "loop-b.jp2"))
files_404 = ["a-directory.jp2", "fifo.jp2", "link-to-fifo.jp2", "link-to-dev-zero.jp2",
             "escape.jp2", "escape-absolute.jp2", "prefix-sibling.jp2", "up%2Fsecret.jp2",
             "up%2Fimages-evil%2Fsecret.jp2", "dangling.jp2", "loop-a.jp2"]
try:
    os.mknod(os.path.join(root, "dev-zero.jp2"), stat.S_IFCHR | 0o644, os.makedev(1, 5))
    files_404.append("dev-zero.jp2")
except OSError as e:
    notes.append("device node case not run: mknod refused (%s)" % e.strerror)
# Unreadable: 403 "image not readable by the server" (docs/security.md, step 3).
write("unreadable.jp2", J)
os.chmod(os.path.join(root, "unreadable.jp2"), 0)
if os.geteuid() == 0:
    # root reads a mode-000 file anyway, and the harness has no way to run vellum unprivileged
    notes.append("unreadable (mode 000) case not run: running as root, which can read it")
for ident in files_404:
    crafted[ident] = (None, (404, 404, 404))
if os.geteuid() != 0:
    crafted["unreadable.jp2"] = (None, (403, 403, 403))

# ---- server ----------------------------------------------------------------------------------
v = t.Vellum(work, args=["--workers", "2", "--image-root", root])
n = t.Nginx(work, v.fastcgi_address)


def get(path, timeout=BOUND):
    """One request sent as raw bytes (no client-side normalisation or validation):
    (status, {header: value}, body, seconds). Status 0: no complete answer (reset, timeout)."""
    if isinstance(path, str):
        path = path.encode("latin-1")
    t0 = time.time()
    sock = socket.create_connection(("127.0.0.1", n.port), timeout=timeout)
    try:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                     % n.port)
        r = http.client.HTTPResponse(sock, method="GET")
        r.begin()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body, time.time() - t0
    except (OSError, http.client.HTTPException) as e:
        return 0, {}, repr(e).encode(), time.time() - t0
    finally:
        sock.close()


def fcgi_get(uri, timeout=BOUND):
    """The same request straight to Vellum over FastCGI, REQUEST_URI exactly as given: for the
    forms nginx refuses itself (a %00, a bad escape), so Vellum's own guard is tested too.
    Returns (status, {header: value}, body, seconds) like get()."""
    if isinstance(uri, str):
        uri = uri.encode("latin-1")

    def record(kind, body):
        return struct.pack(">BBHHBB", 1, kind, 1, len(body), 0, 0) + body

    def pair(k, val):
        enc = lambda n: bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
        return enc(len(k)) + enc(len(val)) + k + val
    params = {b"REQUEST_METHOD": b"GET", b"REQUEST_URI": uri, b"DOCUMENT_URI": uri.split(b"?")[0],
              b"QUERY_STRING": uri.partition(b"?")[2], b"SERVER_PROTOCOL": b"HTTP/1.1",
              b"GATEWAY_INTERFACE": b"CGI/1.1", b"SERVER_NAME": b"127.0.0.1",
              b"SERVER_PORT": b"%d" % v.port, b"HTTP_HOST": b"127.0.0.1:%d" % v.port}
    blob = b"".join(pair(k, val) for k, val in params.items())
    msg = record(1, struct.pack(">HB5x", 1, 0))
    for i in range(0, len(blob), 65535):
        msg += record(4, blob[i:i + 65535])
    msg += record(4, b"") + record(5, b"")
    t0 = time.time()
    out = b""
    try:
        with socket.create_connection(("127.0.0.1", v.port), timeout=timeout) as sock:
            sock.sendall(msg)
            buf = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
            pos, ended = 0, False
            while pos + 8 <= len(buf):
                _, kind, _, clen, plen, _ = struct.unpack(">BBHHBB", buf[pos:pos + 8])
                if kind == 6:
                    out += buf[pos + 8:pos + 8 + clen]
                ended = ended or kind == 3
                pos += 8 + clen + plen
        if not ended:
            return 0, {}, b"no FCGI_END_REQUEST", time.time() - t0
    except OSError as e:
        return 0, {}, repr(e).encode(), time.time() - t0
    head, _, body = out.partition(b"\r\n\r\n")
    h = {}
    for line in head.decode("latin-1").split("\r\n"):
        k, _, val = line.partition(":")
        h[k.strip().lower()] = val.strip()
    st = int(h.get("status", "200").split()[0])
    return st, h, body, time.time() - t0


def json_error(st, h, body):
    """Why this is not a well-formed Vellum error for status st, or None."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "body is not JSON: %r" % body[:120]
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str) or not doc["error"]:
        return "JSON without an error message: %r" % body[:120]
    if doc.get("status") != st:
        return "JSON status %r differs from HTTP %d" % (doc.get("status"), st)
    if not h.get("content-type", "").startswith("application/json"):
        return "error content type %r" % h.get("content-type")
    if h.get("access-control-allow-origin") != "*":
        return "error without CORS"
    return None


def from_nginx(body):
    return b"<center>nginx" in body


def leaks_secret(st, h, body):
    if all(m in body for m in SECRET_MARKS):
        return True
    return h.get("content-type", "").startswith("image/jpeg") and jpeg_dims(body) == (SW, SH)


def judge(st, h, body, secs, want, size=None):
    """Why (st, h, body) does not meet want, or None. size: (w, h) an image answer must have."""
    if st == 0:
        return "no answer (%s) after %.1f s" % (body.decode(errors="replace")[:80], secs)
    if secs > BOUND:
        return "answer took %.1f s" % secs
    if leaks_secret(st, h, body):
        return "%d with the SECRET's size (%dx%d): read outside the image root" % (st, SW, SH)
    if st == 200 and want in (OK, EITHER):
        if size is None:  # info.json
            try:
                doc = json.loads(body)
            except ValueError:
                return "200 info.json is not JSON"
            got = (doc.get("width"), doc.get("height"))
        else:
            got = jpeg_dims(body) if h.get("content-type") == "image/jpeg" else "not a JPEG"
        want_size = (W, H) if size is None else size
        return None if got == want_size else "200 with size %s, expected %s" % (got, want_size)
    if want == OK:
        return "%d, expected 200: %r" % (st, body[:120])
    if isinstance(want, int) and st != want:
        return "%d, expected %d: %r" % (st, want, body[:120])
    if not 400 <= st < 600:
        return "%d, expected an error: %r" % (st, body[:120])
    if st in (502, 504):
        return "%d: nginx lost the worker or timed out: %r" % (st, body[:120])
    return json_error(st, h, body)


# ---- the pool: a worker may leave only by a documented guard retirement ----------------------
VALID_TILE = "/iiif/3/valid.jp2/64,64,64,64/max/0/default.jpg"
initial = v.workers()
t.check(len(initial) == 2, "two workers at start (%s)" % initial)
pool = {"pids": set(initial), "log": 0, "retired": [], "deaths": []}


def after_case(label, problems):
    """The next valid request succeeds; any worker change since the last case is explained."""
    st, h, body, secs = get(VALID_TILE)
    if st != 200 or jpeg_dims(body) != (64, 64):
        problems.append("%s: the next valid request got %d %r" % (label, st, body[:100]))
    try:
        t.wait_for(lambda: len(v.workers()) == 2, timeout=5, what="two workers")
    except RuntimeError:
        problems.append("%s: the pool did not get back to two workers (%s)" % (label, v.workers()))
    log = v.output()
    new, pool["log"] = log[pool["log"]:], len(log)
    now = set(v.workers())
    for pid in sorted(pool["pids"] - now):
        if "worker %d retired after a decoder crash" % pid in new:
            pool["retired"].append("%s (worker %d)" % (label, pid))
        else:
            line = next((l for l in new.splitlines() if "worker %d " % pid in l), "no log line")
            pool["deaths"].append("%s: worker %d left: %s" % (label, pid, line))
            problems.append("%s: worker %d died undocumented: %s" % (label, pid, line))
    for line in new.splitlines():
        if "killed by signal" in line or "exited with status" in line:
            problems.append("%s: %s" % (label, line.strip()))
    pool["pids"] = now


def group_done(name, cases, problems):
    t.check(not problems, "%s: %d cases%s" % (name, cases, "".join("\n  " + p for p in problems)))
    print("summary: %-22s %3d cases, %s" % (name, cases,
                                            "all passed" if not problems else "%d problems" % len(problems)),
          flush=True)


# ---- sanity: the valid sources, and the secret detector ----------------------------------------
problems = []
for ident in ("valid.jp2", "valid.j2k", "valid.jpg", "valid.png"):
    for path, size in (("info.json", None), ("full/max/0/default.jpg", (W, H))):
        st, h, body, secs = get("/iiif/3/%s/%s" % (ident, path))
        why = judge(st, h, body, secs, OK, size)
        if why:
            problems.append("%s/%s: %s" % (ident, path, why))
for path in ("info.json", "full/max/0/default.jpg"):
    st, h, body, secs = get("/iiif/3/secret-inside.jp2/" + path)
    if not (st == 200 and leaks_secret(st, h, body)):
        problems.append("the secret's copy inside the root is not recognised by the detector (%s: %d %r)"
                        % (path, st, body[:100]))
group_done("sanity", 10, problems)

# ---- crafted sources -------------------------------------------------------------------------
REQUESTS = (("info.json", None), ("full/max/0/default.jpg", (W, H)), ("0,0,64,64/max/0/default.jpg", (64, 64)))
problems = []
answers = []
for ident, (_, wants) in crafted.items():
    quoted = ident if "%" in ident else urllib.parse.quote(ident, safe="")
    got = []
    for (path, size), want in zip(REQUESTS, wants):
        for version in ("3",) if path != "info.json" else ("3", "2"):
            st, h, body, secs = get("/iiif/%s/%s/%s" % (version, quoted, path))
            got.append(str(st))
            why = judge(st, h, body, secs, want, size)
            if why:
                problems.append("/iiif/%s/%s/%s: %s" % (version, quoted, path, why))
    answers.append("%s %s" % (" ".join(got), ident))
    after_case(ident, problems)
# what each source got (info.json 3.0, 2.1, full image, tile), for the record
print("crafted answers:\n  " + "\n  ".join(answers), flush=True)
# What a truncated source serves must be its true pixels, not whatever was in memory.
for ident, (x, y) in (("png-trunc-idat.png", (0, 0)), ("trunc-mid-tile.jp2", (128, 64)),
                      ("jpeg-trunc-scan.jpg", (0, 0))):
    st, h, body, secs = get("/iiif/3/%s/%d,%d,64,64/max/0/default.png" % (ident, x, y))
    if st == 200:
        img = px.read_png(body)
        ref = px.crop((W, H, 3, rgb), x, y, 64, 64)
        d = px.diff(img[:4], ref)
        lossy = ident.endswith(".jpg")
        if d is None or (d[1] > 4.0 if lossy else d[0] != 0):
            problems.append("%s: the tile at %d,%d served from a truncated file is not the source's "
                            "pixels (diff %s)" % (ident, x, y, d))
    elif judge(st, h, body, secs, E):
        problems.append("%s tile at %d,%d: %s" % (ident, x, y, judge(st, h, body, secs, E)))
    print("truncated %s: tile at %d,%d -> %d" % (ident, x, y, st), flush=True)
    after_case(ident + " tile", problems)
group_done("crafted sources", len(crafted), problems)

# ---- hostile identifiers: traversal in every encoding ------------------------------------------
# docs/security.md "Identifiers": 400 for absolute, ".", ".." or empty segments, backslashes,
# control bytes (an encoded NUL); 404 for what resolves outside the root or to nothing.
# "nginx" marks raw forms nginx itself refuses before Vellum sees them (no JSON then).
traversal = [
    ("../secret.jp2", 400),
    ("../../secret.jp2", 400),
    ("..%2Fsecret.jp2", 400),
    ("..%2fsecret.jp2", 400),
    ("%2e%2e%2fsecret.jp2", 400),
    ("%2E%2E%2Fsecret.jp2", 400),
    ("%2e%2e/secret.jp2", 400),
    (".%2e%2Fsecret.jp2", 400),
    ("%2e.%2Fsecret.jp2", 400),
    ("valid.jp2%2F..%2F..%2Fsecret.jp2", 400),
    (".%2F..%2Fsecret.jp2", 400),
    ("%2E%2E", 400),
    ("..", 400),
    (".", 400),
    ("%2e", 400),
    ("%252e%252e%252fsecret.jp2", 404),   # decoded once: a literal "%2e%2e%2fsecret.jp2"
    ("..%252fsecret.jp2", 404),
    ("%25252e%25252e%25252fsecret.jp2", 404),
    ("..%5csecret.jp2", 400),
    ("..%5Csecret.jp2", 400),
    ("%2e%2e%5c%2e%2e%5csecret.jp2", 400),
    ("..\\secret.jp2", 400),              # a raw backslash
    ("..\\..\\secret.jp2", 400),
    ("valid.jp2%00", "nginx"),            # nginx refuses an encoded NUL itself; Vellum is
    ("valid.jp2%00.png", "nginx"),        # also asked directly over FastCGI (below)
    ("%00", "nginx"),
    ("..%00%2Fsecret.jp2", "nginx"),
    ("valid.jp2%0a", 400),
    ("valid.jp2%0d%0aX-Injected:%201", 400),
    ("valid.jp2%7f", 400),
    ("valid.jp2\x00", "raw-nul"),          # a raw NUL: nginx refuses the request line
    ("%c0%ae%c0%ae%c0%afsecret.jp2", 404),  # overlong UTF-8 "../": bytes, not dots
    ("%c0%ae%c0%ae/secret.jp2", 404),
    ("%e0%80%ae%e0%80%ae%e0%80%afsecret.jp2", 404),
    ("%c0%2e%c0%2e%c0%2fsecret.jp2", 404),
    ("%ef%bc%8e%ef%bc%8e%ef%bc%8fsecret.jp2", 404),  # fullwidth ．．／
    ("%2Fetc%2Fpasswd", 400),
    ("%2F%2Fetc%2Fpasswd", 400),
    ("%2Fproc%2Fself%2Fenviron", 400),
    (urllib.parse.quote(os.path.join(work, "secret.jp2"), safe=""), 400),
    ("/" + os.path.join(work, "secret.jp2").lstrip("/"), 400),   # "//tmp/.../secret.jp2"
    ("valid.jp2%2F", 400),
    ("%2Fvalid.jp2", 400),
    ("sub%2F%2Fvalid.jp2", 400),
    ("...%2Fsecret.jp2", 404),
    ("~%2F..%2Fsecret.jp2", 400),
    ("%7Eroot%2F.bashrc", 404),
    ("%zz", "nginx"),                     # bad escapes: nginx refuses them too
    ("%", "nginx"),
    ("%2", "nginx"),
    ("valid.jp2%", "nginx"),
]
FORMS = ("/iiif/{v}/{id}/info.json", "/iiif/{v}/{id}/full/max/0/default.jpg", "/iiif/{v}/{id}")
problems = []
cases = by_nginx = 0
for ident, want in traversal:
    for version in ("3", "2"):
        for form in FORMS:
            path = form.format(v=version, id=ident)
            cases += 1
            st, h, body, secs = get(path)
            label = repr(path)
            if leaks_secret(st, h, body):
                problems.append("%s: %d with the SECRET's size: read outside the image root" % (label, st))
            elif st == 0:
                problems.append("%s: no answer (%s)" % (label, body[:80]))
            elif want in ("nginx", "raw-nul"):
                by_nginx += from_nginx(body)
                if st != 400:
                    problems.append("%s: %d, expected 400" % (label, st))
                elif not from_nginx(body) and json_error(st, h, body):
                    problems.append("%s: %s" % (label, json_error(st, h, body)))
                if want == "nginx":
                    # what Vellum does when a web server passes the form on (Apache may)
                    cases += 1
                    st, h, body, secs = fcgi_get(path)
                    why = "leaks the SECRET" if leaks_secret(st, h, body) else (
                        "%d, expected 400: %r" % (st, body[:120]) if st != 400 else json_error(st, h, body))
                    if why:
                        problems.append("%s over FastCGI: %s" % (label, why))
            elif st != want:
                problems.append("%s: %d, expected %d: %r" % (label, st, want, body[:120]))
            elif "x-injected" in h:
                problems.append("%s: a header was injected through the identifier" % label)
            else:
                why = json_error(st, h, body)
                if why:
                    problems.append("%s: %s" % (label, why))
    after_case(repr(ident), problems)
print("traversal: %d answers came from nginx itself (forms it refuses); each such form was also "
      "sent straight to Vellum over FastCGI" % by_nginx, flush=True)
group_done("traversal identifiers", cases, problems)

# ---- hostile numbers ---------------------------------------------------------------------------
# docs/image-api.md: "decimals or signs in pixel values, zero-size results ...: 400 with a JSON
# message that names the parameter and the value"; sizes above the limits: 400.
BIG = "99999999999999999999"
NINES = "9" * 400
numbers = [("region", r) for r in (
    BIG + ",0,10,10", "0,0," + BIG + ",10", "18446744073709551616,0,10,10", "4294967296,0,1,1",
    "4294967295,0,1,1", "0,0,0,0", "1e309,0,10,10", "1e3,0,10,10", "-1,0,10,10", "0,-0,10,10",
    "+1,0,10,10", "1.5,0,10,10", "0x10,0,10,10", "%201,0,10,10", "0,0,10,10,10", "0,0,10", ",,,",
    "NaN,0,10,10", "inf,0,10,10", "pct:NaN,0,10,10", "pct:nan,0,10,10", "pct:inf,0,10,10",
    "pct:0,0,inf,inf", "pct:-1,0,10,10", "pct:1e400,0,10,10", "pct:0,0,1e2,1e2", "pct:0,0,0,0",
    "pct:" + NINES + ",0,10,10", "pct:0,0,0." + "0" * 400 + "1,10", "pct:1..5,0,10,10",
    "pct:.,0,10,10", "pct:", "square:1", "FULL", "full%00", ",".join(["1"] * 3000))
] + [("size", s) for s in (
    BIG + ",", "," + BIG, "18446744073709551616,", "4294967296,", "^4294967295,", "^4294967295,4294967295",
    "^" + BIG + ",", "1e309,", "-1,", "-0,", "NaN,", "inf,", "0,0", "0,", ",0", "!0,0", "!1,0", "!,",
    ",", "^", "^^max", "max,", "pct:0", "pct:NaN", "pct:nan", "pct:inf", "pct:-1", "pct:-0", "pct:1e400",
    "pct:1e9", "^pct:1e9", "^pct:1000000000", "^pct:" + NINES, "pct:" + NINES, "pct:0." + "0" * 400 + "1",
    "^pct:", "pct:101", "10001,", "^10001,", "^!10001,0", "^7072,7072", "full")
] + [("rotation", r) for r in (
    "NaN", "nan", "inf", "-inf", "Infinity", "1e309", "1e2", "360.0000001", "360.1", "361", "-0", "-90",
    "!-90", "!!90", "+90", "%2D90", "0x5a", "90,0", "90.0.0", ".", "!", "", "%2090", NINES, "!" + NINES)
]
problems = []
for param, value in numbers:
    parts = {"region": "full", "size": "max", "rotation": "0"}
    parts[param] = value
    for version in ("3", "2") if param != "size" else ("3",):
        path = "/iiif/%s/valid.jp2/%s/%s/%s/default.jpg" % (version, parts["region"], parts["size"],
                                                           parts["rotation"])
        st, h, body, secs = get(path)
        if st == 400 and from_nginx(body):  # nginx refused it (a %00): ask Vellum directly
            st, h, body, secs = fcgi_get(path)
        label = "%s %r" % (param, value if len(value) < 60 else value[:40] + "...(%d)" % len(value))
        why = judge(st, h, body, secs, 400)
        if not why and param not in json.loads(body)["error"]:
            why = "the message does not name the %s: %r" % (param, body[:160])
        if why:
            problems.append("/iiif/%s %s: %s" % (version, label, why))
    after_case(param + " " + value[:40], problems)
group_done("hostile numbers", len(numbers), problems)

# ---- absurd but valid: must be served, exactly ------------------------------------------------------
served = [
    ("region 0,0,2^32-1,2^32-1 (cropped to the image)", "0,0,4294967295,4294967295/max/0", (W, H)),
    ("region with 4000 leading zeros", "0" * 4000 + "1,0,10,10/max/0", (10, 10)),
    ("region pct with 400-digit width", "pct:0,0,%s,%s/max/0" % (NINES, NINES), (W, H)),
    ("size !2^32-1,2^32-1 (confined to the region)", "full/!4294967295,4294967295/0", (W, H)),
    ("rotation 360", "full/max/360", (W, H)),
    ("rotation 0.(400 zeros)1", "full/max/0." + "0" * 400 + "1", (W, H)),
    ("rotation 90 with 300 leading zeros", "full/max/" + "0" * 300 + "90", (H, W)),
    ("rotation !360.000", "full/max/!360.000", (W, H)),
]
problems = []
for label, params, size in served:
    st, h, body, secs = get("/iiif/3/valid.jp2/%s/default.jpg" % params)
    why = judge(st, h, body, secs, OK, size)
    if why:
        problems.append("%s: %s" % (label, why))
    after_case(label, problems)
group_done("absurd but valid", len(served), problems)

# ---- sizes of the request itself: docs/security.md "Limits" ---------------------------------------
long_cases = [
    # (label, path, expected status, must the answer be Vellum's JSON?); "fcgi:" paths go
    # straight to Vellum, for the limits nginx's own 8 KB request line limit hides
    ("10 KB identifier", "/iiif/3/%s.jp2/info.json" % ("a" * 10240), 414, False),
    ("10 KB identifier, image", "/iiif/3/%s/full/max/0/default.jpg" % ("%2e" * 3400), 414, False),
    ("10 KB identifier over FastCGI", "fcgi:/iiif/3/%s.jp2/info.json" % ("a" * 10240), 414, True),
    ("8192-byte path over FastCGI", "fcgi:/iiif/3/%s.jp2/info.json" % ("a" * (8192 - 22)), 414, True),
    ("8191-byte path over FastCGI (the limit: identifier too long)",
     "fcgi:/iiif/3/%s.jp2/info.json" % ("a" * (8191 - 22)), 400, True),
    ("64 KB path of ../ over FastCGI", "fcgi:/iiif/3/" + "../" * 21000 + "secret.jp2/info.json", 414, True),
    ("8000-byte identifier", "/iiif/3/%s.jp2/info.json" % ("b" * 8000), 400, True),
    ("1025-byte identifier", "/iiif/3/%s.jp2/info.json" % ("c" * 1021), 400, True),
    ("1024-byte identifier (the limit: just not found)", "/iiif/3/%s.jp2/info.json" % ("d" * 1020), 404, True),
    ("1025 bytes once decoded", "/iiif/3/%s.jp2/info.json" % ("%41" * 1021), 400, True),
    ("7 KB region", "/iiif/3/valid.jp2/%s/max/0/default.jpg" % ("1," * 3500), 400, True),
    ("7 KB quality", "/iiif/3/valid.jp2/full/max/0/%s.jpg" % ("q" * 7000), 400, True),
    ("7 KB format", "/iiif/3/valid.jp2/full/max/0/default.%s" % ("j" * 7000), 400, True),
    ("65 path segments", "/iiif/3/" + "a/" * 62 + "info.json", 400, True),
    ("64 path segments (the limit: just not found)", "/iiif/3/" + "a/" * 61 + "info.json", 404, True),
    ("200 %2F-separated segments (not path segments)", "/iiif/3/" + "a%2F" * 200 + "x/info.json", 404, True),
    ("3 KB query string", "/iiif/3/valid.jp2/info.json?" + "q=" + "x" * 3000, 414, True),
    ("2049-byte query string", "/iiif/3/valid.jp2/info.json?" + "x" * 2049, 414, True),
    ("2048-byte query string (the limit: served)", "/iiif/3/valid.jp2/info.json?" + "x" * 2048, 200, True),
]
problems = []
for label, path, want, must_json in long_cases:
    st, h, body, secs = fcgi_get(path[5:]) if path.startswith("fcgi:") else get(path)
    if st == 0:
        why = "no answer (%s)" % body[:80]
    elif leaks_secret(st, h, body):
        why = "%d with the SECRET's size: read outside the image root" % st
    elif st != want:
        why = "%d, expected %d: %r" % (st, want, body[:120])
    elif want == 200:
        why = judge(st, h, body, secs, OK)
    elif must_json or not from_nginx(body):
        why = json_error(st, h, body)
    else:
        why = None
    if why:
        problems.append("%s: %s" % (label, why))
    after_case(label, problems)
group_done("request sizes", len(long_cases), problems)

# ---- the pool over the whole run ---------------------------------------------------------------------
final = v.workers()
print("workers: %s at start, %s at the end; retired by the decoder guard after: %s"
      % (initial, final, ", ".join(pool["retired"]) or "none"), flush=True)
t.check(not pool["deaths"] and "killed by signal" not in v.output() and "exited with status" not in v.output(),
        "no worker died outside the documented guard retirement%s" % "".join("\n  " + d for d in pool["deaths"]))
t.check(len(final) == 2 and (final == initial or pool["retired"]),
        "the pool has its two workers, unchanged unless the guard retired one (%s -> %s)" % (initial, final))
for note in notes:
    print("NOTE: " + note, flush=True)
took = time.time() - started
print("hostile: %.1f s in all" % took, flush=True)
v.stop()
n.stop()
t.done()
