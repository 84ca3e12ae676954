"""Per-request limits through real nginx: the wall-clock limit (request_timeout_ms) inside a
decode and outside one, and the memory estimate (max_request_memory_mb). Each limit must answer
that request with a clear error, keep the pool serving, and leave other requests untouched."""
import json
import os
import subprocess
import time

import harness as t
import pixels as px

work = t.tmpdir()
root = os.path.join(work, "images")
os.makedirs(root)

# A 3000x3000 RGB lossless JP2: a full-resolution decode of it takes far more than 100 ms.
W = H = 3000
row = bytes((x * 7 + (x >> 3)) & 255 for x in range(W * 3))
px.write_pnm(os.path.join(work, "big.ppm"), W, H, 3, b"".join(row[y % 97:] + row[:y % 97] for y in range(H)))
subprocess.run(["opj_compress", "-i", os.path.join(work, "big.ppm"), "-o", os.path.join(root, "big.jp2"),
                "-n", "6", "-t", "1024,1024"], check=True, stdout=subprocess.DEVNULL)


def error_json(body, what):
    try:
        doc = json.loads(body)
    except ValueError:
        t.check(False, "%s: the error body is JSON (%r)" % (what, body[:120]))
        return {}
    t.check(isinstance(doc.get("error"), str) and doc["error"], "%s: the body says why (%s)" % (what, doc))
    return doc


# --- wall-clock limit inside a decode: 503 for that request, worker replaced ------------------
v = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--request-timeout-ms", "100",
                         "--max-width", "0", "--max-area", "0", "--debug-routes"])
n = t.Nginx(work, v.fastcgi_address)
st, _, _ = t.request(n.port, "/iiif/3/big.jp2/info.json")
t.check(st == 200, "timeout: info.json answers (%d)" % st)
st, _, _ = t.request(n.port, "/iiif/3/big.jp2/full/188,/0/default.jpg")
t.check(st == 200, "timeout: a thumbnail decodes within the limit (%d)" % st)
before = v.workers()
t0 = time.time()
st, hdrs, body = t.request(n.port, "/iiif/3/big.jp2/full/max/0/default.png")
took = time.time() - t0
t.check(st == 503, "timeout: a decode past request_timeout_ms answers 503 (got %d)" % st)
doc = error_json(body, "timeout")
t.check("100 ms" in doc.get("error", ""), "timeout: the message names the limit (%s)" % doc)
t.check(took < 5, "timeout: the answer came soon after the limit (%.2f s)" % took)
t.wait_for(lambda: len(v.workers()) == 1 and v.workers() != before, what="worker replaced after a timeout")
st, _, _ = t.request(n.port, "/iiif/3/big.jp2/full/188,/0/default.jpg")
t.check(st == 200, "timeout: the next request is served (%d)" % st)
t.check("stopped after request_timeout_ms" in v.output(), "timeout: the worker logged what it stopped")

# --- outside a decode (our own code, here /debug/sleep): the worker exits, nginx answers 502 ---
before = v.workers()
t0 = time.time()
st, _, _ = t.request(n.port, "/debug/sleep?ms=5000")
took = time.time() - t0
t.check(st == 502, "timeout outside the decoder: nginx gets no answer and says 502 (got %d)" % st)
t.check(took < 3, "timeout outside the decoder: stopped at the limit, not after 5 s (%.2f s)" % took)
t.wait_for(lambda: len(v.workers()) == 1 and v.workers() != before, what="worker replaced")
t.check("passed request_timeout_ms" in v.output(), "timeout outside the decoder: the master logged it")
st, _, _ = t.request(n.port, "/debug/sleep?ms=20")
t.check(st == 200, "timeout: a request within the limit afterwards is served (%d)" % st)

# --- after the response (tile store writes, block cache tidying; here /debug/sleep's after_ms,
# which sleeps once the answer is out): the client has its answer, the worker exits at the
# limit instead of staying busy, and is replaced -----------------------------------------------
before = v.workers()
logged = v.output().count("passed request_timeout_ms")
t0 = time.time()
st, _, body = t.request(n.port, "/debug/sleep?ms=0&after_ms=30000")
took = time.time() - t0
t.check(st == 200 and b'"slept_ms":0' in body, "after the response: the client got its answer (%d %r)" % (st, body[:80]))
t.check(took < 3, "after the response: the answer did not wait for the work after it (%.2f s)" % took)
t.wait_for(lambda: len(v.workers()) == 1 and v.workers() != before, timeout=10,
           what="the worker stuck after its response replaced at the limit (not after 30 s)")
t.check(v.output().count("passed request_timeout_ms") > logged,
        "after the response: the master logged why the worker stopped")
st, _, _ = t.request(n.port, "/debug/sleep?ms=20")
t.check(st == 200, "after the response: the next request is served (%d)" % st)
v.stop()
n.stop()

# --- memory estimate: 413 before decoding, the worker keeps serving ---------------------------
v = t.Vellum(work, args=["--workers", "1", "--image-root", root, "--max-request-memory-mb", "40",
                         "--max-width", "0", "--max-area", "0"])
n = t.Nginx(work, v.fastcgi_address)
before = v.workers()
# 2000x2000 out of 3000x3000 decodes at full resolution: 3000x3000 x 3 components x (8 + 3)
# bytes is about 300 MB, far above 40 MB; the output itself (2000x2000, 32 MB) would fit.
st, _, body = t.request(n.port, "/iiif/3/big.jp2/full/2000,/0/default.jpg")
t.check(st == 413, "memory: a decode estimated above max_request_memory_mb is 413 (got %d)" % st)
doc = error_json(body, "memory")
t.check("JPEG 2000" in doc.get("error", "") and "max_request_memory_mb" in doc.get("error", ""),
        "memory: the message names the decode and the setting (%s)" % doc)
# The same image at 1/8 (375x375 decoded, about 1.5 MB) fits.
st, _, _ = t.request(n.port, "/iiif/3/big.jp2/full/375,/0/default.jpg")
t.check(st == 200, "memory: a reduced decode of the same image fits (%d)" % st)
# An output that is too large on its own (upscaled far) is refused as well.
st, _, body = t.request(n.port, "/iiif/3/big.jp2/0,0,256,256/^4000,/0/default.png")
t.check(st == 413, "memory: an output image estimated above the limit is 413 (got %d)" % st)
t.check(v.workers() == before, "memory: no worker died or was replaced (%s -> %s)" % (before, v.workers()))
v.stop()
n.stop()

t.done()
