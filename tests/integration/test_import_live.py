"""`vellum import` while the server serves, through real nginx. Version A of a catalogue is
imported and the server started; then versions B and A of the whole catalogue are re-imported
in turn for 10 s, then one small object alone for 8 s (hundreds of commits), while client
threads fetch the manifests (3.0 and 2.1), a canvas and the top-level collection. Every response
must be a 200 whose document is entirely version A or entirely version B (labels, summary,
metadata, canvas labels, canvas count and size, ranges), never an error or a mix; never older
than the last import that finished before the request was sent; and its Last-Modified/ETag must
be those of the version in the body. Then imports that fail on their last row (after writing
the rest of the file) run while clients fetch: they change nothing anyone sees. The workers must
hold the database file open read-only (O_RDONLY in /proc/PID/fdinfo).

Imports must take real time for the overlap to mean something: besides the served objects
(one of 300/450 canvases) each file carries two "ballast" objects of 8,000 canvases, written
after the served ones, so every import's transaction stays open for a while after it has
rewritten what the clients read.

The header check is statistical: a response whose validators and body come from two different
commits needs a commit to land in a few microseconds of one request. The 8 s of back-to-back
imports of one object make that happen several times per run while serve_object() reads the
object's `modified` outside the snapshot it loads the object from."""
import csv
import email.utils
import io
import json
import os
import re
import sqlite3
import subprocess
import threading
import time

import harness as t
import pixels as px

work = t.tmpdir("vellum-import-live-")
root = os.path.join(work, "images")
os.makedirs(root)
SIZE = {"A": (64, 48), "B": (80, 60)}
for ver, (w, h) in SIZE.items():
    ppm = os.path.join(work, "%s.ppm" % ver)
    px.write_pnm(ppm, w, h, 3, bytes((x * 3 + y * 5 + ord(ver)) % 256 for y in range(h) for x in range(w)
                                     for _ in range(3)))
    subprocess.run(["opj_compress", "-i", ppm, "-o", os.path.join(root, "%s.jp2" % ver), "-n", "3"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

# ---- the two versions ---------------------------------------------------------------------------
# Every text carries the marker [ver:X]; counts and sizes differ too.
CANVASES = {"A": {"big": 300, "small": 2, "other": 5, "tiny": 1},
            "B": {"big": 450, "small": 3, "other": 1, "tiny": 1}}
PER_RANGE = {"A": 100, "B": 90}     # big's ranges: 3 in A, 5 in B
BALLAST = 8000
HEADER = ["manifest", "label", "summary", "collection", "metadata.Version", "metadata.Edition",
          "canvas_label", "image", "range"]


def label(obj, ver):
    return "%s [ver:%s]" % (obj.capitalize(), ver)


def meta(ver):
    m = [{"label": {"none": ["Version"]}, "value": {"none": ["[ver:%s]" % ver]}}]
    if ver == "B":
        m.append({"label": {"none": ["Edition"]}, "value": {"none": ["second [ver:B]"]}})
    return m


def catalogue(ver, bad=False):
    rows = [HEADER]

    def obj(name, n, collection, per_range=None):
        for i in range(n):
            first = i == 0
            rows.append([name, label(name, ver) if first else "",
                         "Summary of %s [ver:%s]" % (name, ver) if first else "",
                         collection if first else "",
                         "[ver:%s]" % ver if first else "",
                         "second [ver:B]" if first and ver == "B" else "",
                         "[ver:%s] p. %d" % (ver, i + 1), "%s.jp2" % ver,
                         "Part %d [ver:%s]" % (i // per_range + 1, ver) if per_range else ""])

    obj("big", CANVASES[ver]["big"], "Books [ver:%s]" % ver, PER_RANGE[ver])
    obj("ballast-1", BALLAST, "Ballast")
    obj("small", CANVASES[ver]["small"], "Books [ver:%s]" % ver)
    obj("ballast-2", BALLAST, "Ballast")
    obj("other", CANVASES[ver]["other"], "")     # in no collection: listed in the top one
    obj("tiny", 1, "Tiny")
    if bad:
        # The last row of the file names an image that does not exist: everything above was
        # written in the transaction, which must then roll back.
        rows[-1][7] = "missing.jp2"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path = os.path.join(work, "catalogue-%s%s.csv" % (ver, "-bad" if bad else ""))
    with open(path, "w", encoding="utf-8") as f:
        f.write(buf.getvalue())
    return path, len(rows)


FILES = {"A": catalogue("A")[0], "B": catalogue("B")[0]}
# For the header check: "tiny" alone, imported back and forth as fast as imports go.
TINY = {}
for ver in "AB":
    TINY[ver] = os.path.join(work, "tiny-%s.csv" % ver)
    with open(TINY[ver], "w", encoding="utf-8") as f:
        f.write("manifest,label,summary,collection,metadata.Version,metadata.Edition,canvas_label,image\n"
                "tiny,%s,Summary of tiny [ver:%s],Tiny,[ver:%s],%s,[ver:%s] p. 1,%s.jp2\n"
                % (label("tiny", ver), ver, ver, "second [ver:B]" if ver == "B" else "", ver, ver))
MAIN = ("big", "small", "other", "tiny", "top")
BAD_FILES = {v: catalogue(v, bad=True) for v in "AB"}
dbpath = os.path.join(work, "vellum.db")


def run_import(path):
    r = subprocess.run([t.VELLUM_BIN, "import", "--database", dbpath, "--image-root", root, path],
                       capture_output=True, text=True, timeout=300)
    m = t.SANITIZER_REPORT.search(r.stderr)
    if m:
        t.check(False, "sanitizer report from vellum import: %s" % r.stderr[m.start():m.start() + 400])
    return r


def modified_stamps():
    con = sqlite3.connect("file:%s?mode=ro" % dbpath, uri=True)
    try:
        return dict(con.execute("SELECT id, modified FROM objects WHERE id IN ('big', 'small', 'other', 'tiny')"))
    finally:
        con.close()


t0 = time.time()
r = run_import(FILES["A"])
if not t.check(r.returncode == 0, "version A imported: %s%s (%.2f s)" % (r.stdout.strip(), r.stderr.strip(),
                                                                     time.time() - t0)):
    t.done()
stamp_version = {}      # (object id, modified) -> version: each import gives new stamps
for oid, mod in modified_stamps().items():
    stamp_version[(oid, mod)] = "A"

v = t.Vellum(work, args=["--workers", "2", "--image-root", root, "--database", dbpath])
n = t.Nginx(work, v.fastcgi_address)

# ---- what a response must look like -------------------------------------------------------------
MARK = re.compile(r"\[ver:([A-Z])\]")


def check_doc(kind, doc, ver):
    """The document, checked against version ver in full; a list of what is wrong."""
    bad = []

    def want(what, got, exp):
        if got != exp:
            bad.append("%s: %r, expected %r" % (what, got if len(repr(got)) < 200 else repr(got)[:200], exp))

    w, h = SIZE[ver]
    if kind in ("big3", "small3", "other3", "tiny3"):
        obj = kind[:-1]
        want("label", doc.get("label"), {"none": [label(obj, ver)]})
        want("summary", doc.get("summary"), {"none": ["Summary of %s [ver:%s]" % (obj, ver)]})
        want("metadata", doc.get("metadata"), meta(ver))
        items = doc.get("items", [])
        want("canvas count", len(items), CANVASES[ver][obj])
        want("canvas labels", [c.get("label") for c in items],
             [{"none": ["[ver:%s] p. %d" % (ver, i + 1)]} for i in range(CANVASES[ver][obj])])
        want("canvas sizes", {(c.get("width"), c.get("height")) for c in items}, {(w, h)})
        if obj == "big":
            nr = -(-CANVASES[ver]["big"] // PER_RANGE[ver])
            want("ranges", [r.get("label") for r in doc.get("structures", [])],
                 [{"none": ["Part %d [ver:%s]" % (i + 1, ver)]} for i in range(nr)])
            want("range sizes", [len(r.get("items", [])) for r in doc.get("structures", [])],
                 [min(PER_RANGE[ver], CANVASES[ver]["big"] - i * PER_RANGE[ver]) for i in range(nr)])
    elif kind == "big2":
        want("label", doc.get("label"), label("big", ver))
        canvases = (doc.get("sequences") or [{}])[0].get("canvases", [])
        want("canvas count", len(canvases), CANVASES[ver]["big"])
        want("canvas labels", [c.get("label") for c in canvases],
             ["[ver:%s] p. %d" % (ver, i + 1) for i in range(CANVASES[ver]["big"])])
        want("canvas sizes", {(c.get("width"), c.get("height")) for c in canvases}, {(w, h)})
    elif kind == "canvas":
        want("canvas label", doc.get("label"), {"none": ["[ver:%s] p. 2" % ver]})
        want("canvas size", (doc.get("width"), doc.get("height")), (w, h))
    elif kind == "top":
        want("top collection items", sorted((i.get("type"), json.dumps(i.get("label"))) for i in doc.get("items", [])),
             sorted([("Collection", json.dumps({"none": ["Ballast"]})),
                     ("Collection", json.dumps({"none": ["Books [ver:%s]" % ver]})),
                     ("Collection", json.dumps({"none": ["Tiny"]})),
                     ("Manifest", json.dumps({"none": [label("other", ver)]}))]))
    return bad


URLS = [("big3", "/presentation/3/big/manifest"), ("small3", "/presentation/3/small/manifest"),
        ("other3", "/presentation/3/other/manifest"), ("big2", "/presentation/2/big/manifest"),
        ("canvas", "/presentation/3/big/canvas/2"), ("top", "/presentation/3/collection"),
        ("tiny3", "/presentation/3/tiny/manifest")]
OBJ_OF = {"big3": "big", "small3": "small", "other3": "other", "big2": "big", "canvas": "big",
          "top": "top", "tiny3": "tiny"}
urls = list(URLS)   # what the clients fetch now (the tiny phase narrows it)

lock = threading.Lock()
results = []      # (kind, t_start, t_end, version or None, problems, etag, last-modified, date)
stop = threading.Event()


def client(k):
    i = k
    while not stop.is_set():
        now_urls = urls
        kind, path = now_urls[i % len(now_urls)]
        i += 1
        ts = time.time()
        try:
            st, hdrs, body = t.request(n.port, path, timeout=30)
        except Exception as e:  # a refused or broken connection is a failure too
            with lock:
                results.append((kind, ts, time.time(), None, ["request failed: %r" % e], None, None, None))
            continue
        te = time.time()
        problems, ver = [], None
        if st != 200:
            problems.append("status %d: %s" % (st, body[:200]))
        else:
            markers = set(MARK.findall(body.decode("utf-8", "replace")))
            if len(markers) != 1:
                problems.append("version markers %s in one document" % sorted(markers))
            else:
                ver = markers.pop()
                try:
                    problems += check_doc(kind, json.loads(body), ver)
                except ValueError as e:
                    problems.append("not JSON: %s" % e)
        with lock:
            results.append((kind, ts, te, ver, problems, hdrs.get("etag"), hdrs.get("last-modified"),
                            hdrs.get("date")))


# A first round before the load: every URL answers version A.
for kind, path in URLS:
    st, _, body = t.request(n.port, path)
    probs = check_doc(kind, json.loads(body), "A") if st == 200 else ["status %d" % st]
    t.check(not probs, "before: %s is version A (%s)" % (path, probs[:2]))

CLIENTS = 6
threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
for th in threads:
    th.start()
time.sleep(0.5)

# ---- the workers opened the database read-only ----------------------------------------------------
real_db = os.path.realpath(dbpath)
for pid in v.workers():
    seen = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target in (real_db, real_db + "-wal", real_db + "-shm"):
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                flags = int(re.search(r"^flags:\s+([0-7]+)", f.read(), re.M).group(1), 8)
            seen.setdefault(os.path.basename(target), []).append(flags)
    print("worker %d: database files open with flags %s" % (
        pid, {k: [oct(f) for f in fl] for k, fl in sorted(seen.items())}), flush=True)
    base = os.path.basename(real_db)
    t.check(base in seen and all(f & 3 == os.O_RDONLY for f in seen[base]),
            "worker %d holds %s open O_RDONLY (flags %s)" % (pid, base, [oct(f) for f in seen.get(base, [])]))
    # Not checked: the -wal and -shm files. SQLite opens both O_RDWR even for a connection
    # opened SQLITE_OPEN_READONLY (wal.c asks for READWRITE and only falls back to read-only when
    # refused): the wal-index in -shm is shared memory every reader updates. What keeps a worker
    # from writing data is the read-only connection (and PRAGMA query_only), as db/schema.c does.

# ---- re-import B, A, B, ... while the clients fetch ------------------------------------------------
imports = []      # (start, end, version, objects it rewrote)


def import_version(path, ver, objects):
    s_ = time.time()
    r_ = run_import(path)
    e_ = time.time()
    if r_.returncode != 0:
        t.check(False, "re-import of version %s while serving: %s" % (ver, (r_.stdout + r_.stderr).strip()[:300]))
        return False
    imports.append((s_, e_, ver, objects))
    for oid, mod in modified_stamps().items():
        if oid in objects:
            stamp_version[(oid, mod)] = ver
    return True


current = "A"
LIVE_SECONDS = 10
TINY_SECONDS = 8
t_live = time.time()
while time.time() - t_live < LIVE_SECONDS:
    nxt = "B" if current == "A" else "A"
    if not import_version(FILES[nxt], nxt, MAIN):
        break
    current = nxt
    time.sleep(0.05)
t_live_end = time.time()
n_main = len(imports)
main_secs = [e - s_ for s_, e, _, _ in imports]

# ---- then "tiny" alone, back and forth as fast as imports go, the clients fetching only it:
# hundreds of commits, so a response that straddles one is likely to happen (the header check).
urls = [u for u in URLS if u[0] == "tiny3"]
tiny = "A" if current == "A" else "B"
t_tiny = time.time()
while time.time() - t_tiny < TINY_SECONDS:
    tiny = "B" if tiny == "A" else "A"
    if not import_version(TINY[tiny], tiny, ("tiny",)):
        break
n_tiny = len(imports) - n_main
urls = list(URLS)

# ---- imports that fail, while the clients fetch: nobody sees anything of them --------------------
time.sleep(0.5)
# the tiny phase left tiny at its own version: bring it in line so one version is "current"
import_version(FILES[current], current, MAIN)
t_settled = time.time()
time.sleep(0.5)
stale = current
stamps_before = modified_stamps()
bad_runs = []
for _ in range(3):
    other = "B" if stale == "A" else "A"
    path, nlines = BAD_FILES[other]
    r = run_import(path)
    bad_runs.append(r)
    t.check(r.returncode == 1 and ("line %d" % nlines) in r.stderr and "missing.jp2" in r.stderr,
            "an import with a bad last row fails, naming line %d: %s" % (nlines, r.stderr.strip()[:200]))
t.check(modified_stamps() == stamps_before, "the failed imports left the database as it was")
time.sleep(0.5)
stop.set()
for th in threads:
    th.join(60)

# ---- the verdict ----------------------------------------------------------------------------------
print("imports: %d of the whole catalogue in %.1f s (%.2f to %.2f s each), %d of tiny alone in %.0f s, "
      "then %d failing ones" % (n_main, t_live_end - t_live, min(main_secs or [0]), max(main_secs or [0]),
                                n_tiny, TINY_SECONDS, len(bad_runs)), flush=True)
with lock:
    res = list(results)
by_ver = {}
for kind, ts, te, ver, probs, etag, lm, _ in res:
    by_ver.setdefault(kind, {}).setdefault(ver, 0)
    by_ver[kind][ver] += 1
print("responses: %d; per URL and version: %s" % (len(res), json.dumps(by_ver, sort_keys=True)), flush=True)

failed = [(kind, ver, probs) for kind, ts, te, ver, probs, etag, lm, _ in res if probs]
t.check(not failed, "every response is a 200 holding one whole version (%d of %d bad: %s)"
        % (len(failed), len(res), failed[:3]))
n_a = sum(1 for r_ in res if r_[3] == "A")
n_b = sum(1 for r_ in res if r_[3] == "B")
t.check(n_a > 0 and n_b > 0, "both versions were served during the imports (A %d, B %d)" % (n_a, n_b))
t.check(n_main >= 6 and n_tiny >= 50, "the import loops ran often enough (%d + %d imports)" % (n_main, n_tiny))
for kind, _ in URLS:
    vs = by_ver.get(kind, {})
    t.check(vs.get("A", 0) > 0 and vs.get("B", 0) > 0, "%s was seen in both versions (%s)" % (kind, vs))


# Never stale: a request sent after an import finished shows that import's version or a later
# import's (one that ran before the answer came back), per object.
def allowed(obj, ts, te):
    mine = [(s_, e, ver) for s_, e, ver, objs in imports if obj in objs]
    done_before = [i for i, (s_, e, ver) in enumerate(mine) if e <= ts]
    k = done_before[-1] if done_before else -1
    vers = {mine[k][2] if k >= 0 else "A"}
    for s_, e, ver in mine[k + 1:]:
        if s_ < te:
            vers.add(ver)
    return vers


stale_reads = [(kind, ver, round(ts - t_live, 3)) for kind, ts, te, ver, probs, _, _, _ in res
               if ver and ts >= t_live and ver not in allowed(OBJ_OF[kind], ts, te)]
t.check(not stale_reads, "no response older than the last import finished before it was asked (%d: %s)"
        % (len(stale_reads), stale_reads[:3]))

# The failing imports: every response asked after the last good import is the version before them.
during_bad = [(kind, ver) for kind, ts, te, ver, probs, _, _, _ in res if ts >= t_settled and ver]
t.check(during_bad and all(ver == stale for _, ver in during_bad),
        "while imports with a bad row ran, all %d responses stayed at version %s (%s)"
        % (len(during_bad), stale, {x: sum(1 for _, y in during_bad if y == x) for x in "AB"}))
for kind, path in URLS:
    st, _, body = t.request(n.port, path)
    probs = check_doc(kind, json.loads(body), stale) if st == 200 else ["status %d" % st]
    t.check(not probs, "after the failed imports %s is still version %s (%s)" % (path, stale, probs[:2]))

# Headers belong to the body: Last-Modified is the stamp of the import that wrote the version in
# the body (each import gives every object it changes a new, later stamp), or Date when that
# stamp is ahead of the clock, and one ETag never names two versions.
mismatch, etags, future = [], {}, []
for kind, ts, te, ver, probs, etag, lm, date in res:
    if not ver or kind == "top":
        continue  # collections are tagged by a hash of the document itself
    stamp = int(email.utils.parsedate_to_datetime(lm).timestamp()) if lm else None
    if stamp and date and stamp > email.utils.parsedate_to_datetime(date).timestamp():
        future.append((kind, lm, date))
    hver = stamp_version.get((OBJ_OF[kind], stamp))
    if hver != ver and date and stamp and stamp >= email.utils.parsedate_to_datetime(date).timestamp() - 1:
        # Clamped to Vellum's clock (the stamp ran ahead of it, see below; nginx's Date may be a
        # second later): then some import of this version must carry a stamp at or after it.
        if any(o == OBJ_OF[kind] and v_ == ver and s_ >= stamp for (o, s_), v_ in stamp_version.items()):
            hver = ver
    if hver != ver:
        mismatch.append((kind, "body " + ver, "Last-Modified %s is %s's" % (lm, hver), round(ts - t_live, 3)))
    etags.setdefault((kind, etag), set()).add(ver)
t.check(not mismatch, "Last-Modified always belongs to the version in the body (%d of %d do not: %s)"
        % (len(mismatch), len(res), mismatch[:3]))
two = {k: sorted(vs) for k, vs in etags.items() if len(vs) > 1}
t.check(not two, "no ETag was sent with two different versions (%d: %s)" % (len(two), list(two.items())[:3]))

# RFC 9110 8.8.2.1: an origin server MUST NOT send a Last-Modified later than its Date. Import
# stamps run ahead of the clock when imports come faster than one a second (each is forced later
# than the last); the header must then say "now", not the stamp (the ETag can keep the stamp).
t.check(not future, "Last-Modified is never later than Date (%d of %d are: %s)"
        % (len(future), len(res), future[:2]))

t.check(len(v.workers()) == 2, "the pool still has its 2 workers")
v.stop()
n.stop()
t.done()
