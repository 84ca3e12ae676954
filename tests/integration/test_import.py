"""`vellum import`: the real binary on real files. Summary on stdout, exit codes, error messages
that name file, line and column, one transaction per file (a failing file leaves the database
exactly as it was, earlier files stay), re-import, configuration sources, and a 100,000-canvas
CSV timed against the target of 100,000 canvases per minute. The database is then read with
Python's sqlite3 module, independently of Vellum's own loader."""
import csv as csvmod
import io
import json
import os
import re
import sqlite3
import struct
import subprocess
import time
import zlib

import harness as t


def run(args, env=None, timeout=120):
    e = {k: v for k, v in os.environ.items() if not k.startswith("VELLUM_")}
    e.update(env or {})
    p = subprocess.run([t.VELLUM_BIN] + args, capture_output=True, text=True, env=e,
                       timeout=timeout)
    m = t.SANITIZER_REPORT.search(p.stderr)
    if m:
        t.check(False, "sanitizer report from vellum %s: %s" % (" ".join(args[:1]),
                                                               p.stderr[m.start():m.start() + 400]))
    return p.returncode, p.stdout, p.stderr


def write_png(path, w, h):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    raw = b"".join(b"\0" + bytes([y % 256]) * (w * 3) for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def dump(dbpath):
    """Every table's rows, sorted: equal dumps mean equal content."""
    con = sqlite3.connect("file:%s?mode=ro" % dbpath, uri=True)
    try:
        out = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            out[name] = sorted(repr(r) for r in con.execute('SELECT * FROM "%s"' % name))
        out["user_version"] = con.execute("PRAGMA user_version").fetchone()
        return out
    finally:
        con.close()


def query(dbpath, sql, *args):
    con = sqlite3.connect("file:%s?mode=ro" % dbpath, uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


work = t.tmpdir("vellum-import-")
images = os.path.join(work, "images")
os.makedirs(os.path.join(images, "scans"))
write_png(os.path.join(images, "a.png"), 30, 20)
write_png(os.path.join(images, "b.png"), 40, 50)
write_png(os.path.join(images, "scans", "c.png"), 7, 9)
db = os.path.join(work, "catalogue.db")
base = ["import", "--database", db, "--image-root", images]


def write(name, text):
    path = os.path.join(work, name)
    if isinstance(text, bytes):
        with open(path, "wb") as f:
            f.write(text)
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return path


# --help and usage
rc, out, err = run(["import", "--help"])
t.check(rc == 0 and "docs/import.md" in out and ".csv" in out and ".jsonl" in out
        and "--database" in out and "stay imported" in out,
        "import --help explains the formats, points to docs/import.md, lists the options")
rc, out, err = run(base)
t.check(rc == 2 and "no file" in err, "import without a file is a usage error (%d: %s)" % (rc, err.strip()))
rc, out, err = run(["import", "--frobs", "1", "x.csv"])
t.check(rc == 2 and "unknown option --frobs" in err, "an unknown option is a configuration error")

# A CSV with Unicode, right-to-left labels, quotes, commas and newlines in fields, language
# tags, " | " values, " > " ranges and collections.
csv_text = (
    "\ufeffmanifest,label,label@ar,summary,metadata.Creator,metadata.Creator@he,canvas_label,"
    "image,range,collection,nav_date,behavior\r\n"
    'ms1,"Codex, ""A""",مخطوطة,"two\nlines",Scribe | Illuminator,סופר,f. 1r,a.png,'
    "Book 1 > Prologue,Manuscripts > Hebrew,1450-06-01,paged\r\n"
    "ms1,,,,,,f. 1v,b.png,Book 1 > Prologue,,,\r\n"
    'ms1,,,,,,"f. 2r, ""margin""",scans/c.png,Book 2,,,\r\n'
    "map,Map,,,,,,b.png,,Maps,,\r\n"
    "leaf,Leaf,,,,,,a.png,,,,\r\n")
catalogue = write("catalogue.csv", csv_text)
rc, out, err = run(base + [catalogue])
t.check(rc == 0, "a valid CSV imports (exit %d, stderr %r)" % (rc, err))
t.check(out.strip() == "imported 3 objects, 5 canvases from 1 file into %s" % db,
        "summary on stdout: %r" % out)
t.check(err == "", "a small import prints nothing on stderr: %r" % err)

rows = query(db, "SELECT id, label, summary, nav_date, behavior FROM objects ORDER BY pk")
t.check([r[0] for r in rows] == ["ms1", "map", "leaf"], "objects in file order: %r" % rows)
ms1 = rows[0]
t.check(json.loads(ms1[1]) == {"none": ['Codex, "A"'], "ar": ["مخطوطة"]},
        "label merges language columns: %s" % ms1[1])
t.check(json.loads(ms1[2]) == {"none": ["two\nlines"]}, "a newline inside quotes survives")
t.check(ms1[3] == "1450-06-01T00:00:00Z", "a date-only nav_date is expanded: %r" % ms1[3])
t.check(json.loads(ms1[4]) == ["paged"], "behavior stored")
meta = query(db, "SELECT m.label, m.value FROM metadata m JOIN objects o ON o.pk = m.object"
                 " WHERE o.id = 'ms1' ORDER BY position")
t.check([(json.loads(a), json.loads(b)) for a, b in meta] ==
        [({"none": ["Creator"]}, {"none": ["Scribe", "Illuminator"], "he": ["סופר"]})],
        "metadata: NAME is the label, ' | ' splits values, languages merge: %r" % meta)
canvases = query(db, "SELECT c.position, c.label, c.image, c.width, c.height FROM canvases c"
                     " JOIN objects o ON o.pk = c.object WHERE o.id = 'ms1' ORDER BY position")
t.check([(p, i, w, h) for p, _, i, w, h in canvases] ==
        [(0, "a.png", 30, 20), (1, "b.png", 40, 50), (2, "scans/c.png", 7, 9)],
        "canvases with sizes read from the images: %r" % canvases)
t.check(json.loads(canvases[2][1]) == {"none": ['f. 2r, "margin"']}, "quoted canvas label")
ranges = query(db, "SELECT r.pk, r.parent, r.position, r.label, r.canvases FROM ranges r"
                   " JOIN objects o ON o.pk = r.object WHERE o.id = 'ms1' ORDER BY r.pk")
shape = [(json.loads(lbl)["none"][0], par is not None, pos, json.loads(cv))
         for _, par, pos, lbl, cv in ranges]
t.check(shape == [("Book 1", False, 0, []), ("Prologue", True, 0, [0, 1]), ("Book 2", False, 1, [2])],
        "ranges from ' > ' paths, first-seen order: %r" % shape)
colls = query(db, "SELECT c.name, p.name FROM collections c LEFT JOIN collections p"
                  " ON p.pk = c.parent ORDER BY c.pk")
t.check(colls == [("", None), ("Manuscripts", ""), ("Manuscripts > Hebrew", "Manuscripts"),
                  ("Maps", "")], "nested collections created: %r" % colls)
members = query(db, "SELECT c.name, o.id FROM collection_objects m JOIN collections c"
                    " ON c.pk = m.collection JOIN objects o ON o.pk = m.object ORDER BY o.pk")
t.check(members == [("Manuscripts > Hebrew", "ms1"), ("Maps", "map")],
        "collection membership: %r" % members)

# The same file again changes nothing, not even `modified`.
before = dump(db)
rc, out, err = run(base + [catalogue])
t.check(rc == 0 and "(3 unchanged)" in out, "re-import reports unchanged objects: %r" % out)
t.check(dump(db) == before, "re-importing the same file leaves the database as it was")

# A broken file: exit 1, a message naming file, line and column; the database untouched,
# even though an object (ms1, changed) was complete and written before the bad row.
broken = write("broken.csv",
               "manifest,label,image\n"
               'ms1,"Changed\nlabel",a.png\n'
               "ms9,x,b.png\n"
               "ms9,,missing.png\n")
rc, out, err = run(base + [broken])
t.check(rc == 1, "a broken file exits 1 (got %d)" % rc)
t.check(err.startswith("vellum: import: broken.csv line 5, column \"image\"") and
        "missing.png" in err, "the error names file, line 5, column and identifier: %r" % err)
t.check(out == "", "no summary after an error")
t.check(dump(db) == before, "the failed file left the database exactly as before")

bad_files = [
    ("typo.csv", "manifest,lable,image\nx,y,a.png\n", ['typo.csv line 1, column "lable"', "unknown column"]),
    ("quote.csv", 'manifest,label,image\nx,"open,a.png\n', ["quote.csv line 2", "unterminated quote"]),
    ("wide.csv", "manifest,label,image\nx,y,a.png,z\n", ["wide.csv line 2", "4 fields"]),
    ("date.csv", "manifest,nav_date,image\nx,01/02/2020,a.png\n", ['line 2, column "nav_date"']),
    ("dir.csv", "manifest,viewing_direction,image\nx,up,a.png\n", ['column "viewing_direction"']),
    ("rights.csv", "manifest,rights,image\nx,CC-BY,a.png\n", ['column "rights"', "http(s)"]),
    ("split.csv", "manifest,image\nx,a.png\ny,a.png\nx,a.png\n", ["split.csv line 4", "first at line 2"]),
    ("lines.jsonl", '{"manifest": "j", "canvases": [{"image": "a.png"}]}\n\n{"manifest": 7}\n',
     ['lines.jsonl line 3, field "manifest"', "expected a string"]),
    ("range.jsonl", '{"manifest": "j", "canvases": [{"image": "a.png"}], "ranges": [{"label": "x", "canvases": [3]}]}\n',
     ['field "ranges[0].canvases"']),
    ("notes.txt", "manifest,image\n", ["notes.txt", ".csv, .jsonl or .ndjson"]),
]
for name, text, expect in bad_files:
    path = write(name, text)
    rc, out, err = run(base + [path])
    t.check(rc == 1 and all(e in err for e in expect) and err.startswith("vellum: import: "),
            "%s: exit 1 and %r (got %d: %r)" % (name, expect, rc, err.strip()))
t.check(dump(db) == before, "none of the rejected files changed the database")
path = write("latin1.csv", "manifest,label,image\nx,caf\xe9,a.png\n".encode("latin-1"))
rc, out, err = run(base + [path])
t.check(rc == 1 and "latin1.csv line 2" in err and "UTF-8" in err,
        "a Latin-1 file is refused, naming the line: %r" % err.strip())
rc, out, err = run(base + [os.path.join(work, "absent.csv")])
t.check(rc == 1 and "absent.csv" in err, "a missing file is an error naming it")

# JSON Lines, and two files in one run: the first stays when the second fails.
jsonl = write("more.jsonl", json.dumps({
    "manifest": "psalter", "label": {"en": ["Psalter"], "he": ["תהילים"]},
    "metadata": [{"label": "Date", "value": {"en": ["c. 1300"]}}],
    "homepage": [{"id": "https://example.org/psalter", "type": "Text"}],
    "canvases": [{"label": "1r", "image": "a.png"}, {"image": "b.png"}],
    "ranges": [{"label": "All", "canvases": [0, 1]}], "collection": "Maps"}) + "\n")
rc, out, err = run(base + [jsonl, broken])
t.check(rc == 1 and "broken.csv line 5" in err and "stays imported" in err,
        "second file fails, the message says the first stays: %r" % err)
rows = query(db, "SELECT label, extra_json FROM objects WHERE id = 'psalter'")
t.check(len(rows) == 1 and json.loads(rows[0][0]) == {"en": ["Psalter"], "he": ["תהילים"]}
        and json.loads(rows[0][1]) == {"homepage": [{"id": "https://example.org/psalter", "type": "Text"}]},
        "the JSON Lines file before the failing one stayed imported: %r" % rows)
t.check(json.loads(query(db, "SELECT label FROM objects WHERE id = 'ms1'")[0][0])["none"] == ['Codex, "A"'],
        "the failing second file changed nothing")

# Replacement: ms1 again with one canvas, no ranges, another collection.
again = write("again.csv", "manifest,label,image,collection\nms1,Codex A,b.png,Maps\n")
old_modified = query(db, "SELECT modified FROM objects WHERE id = 'ms1'")[0][0]
rc, out, err = run(base + [again])
t.check(rc == 0 and out.startswith("imported 1 object, 1 canvas from 1 file"), "re-import: %r" % out)
n_canvases = query(db, "SELECT COUNT(*) FROM canvases c JOIN objects o ON o.pk = c.object WHERE o.id = 'ms1'")[0][0]
n_ranges = query(db, "SELECT COUNT(*) FROM ranges r JOIN objects o ON o.pk = r.object WHERE o.id = 'ms1'")[0][0]
n_meta = query(db, "SELECT COUNT(*) FROM metadata m JOIN objects o ON o.pk = m.object WHERE o.id = 'ms1'")[0][0]
t.check((n_canvases, n_ranges, n_meta) == (1, 0, 0), "re-import replaced canvases, ranges, metadata")
t.check(query(db, "SELECT modified FROM objects WHERE id = 'ms1'")[0][0] > old_modified,
        "a changed object gets a later `modified`")
t.check(not query(db, "SELECT 1 FROM collections WHERE name LIKE 'Manuscripts%'"),
        "collections left empty by the re-import are gone")

# Configuration from a file and from the environment, like every verb.
conf = write("vellum.conf", 'database = "%s"\nimage_root = "%s"\n' % (db, images))
rc, out, err = run(["import", "--config", conf, again])
t.check(rc == 0 and ("into %s" % db) in out, "database and image_root from --config: %r" % (out + err))
rc, out, err = run(["import", again], env={"VELLUM_DATABASE": db, "VELLUM_IMAGE_ROOT": images})
t.check(rc == 0 and ("into %s" % db) in out, "database and image_root from VELLUM_*: %r" % (out + err))
rc, out, err = run(["import", "--database", os.path.join(work, "no", "such", "dir.db"),
                    "--image-root", images, again])
t.check(rc == 1 and "cannot open database" in err, "an unopenable database is an error: %r" % err)
rc, out, err = run(["import", "--database", db, "--image-root", os.path.join(work, "nope"), again])
t.check(rc == 1 and "image root" in err, "a missing image root is an error: %r" % err)

# The examples in docs/import.md import as the text says (images made at the paths they name).
with open(os.path.join(t.SOURCE_DIR, "docs", "import.md"), encoding="utf-8") as f:
    doc = f.read()
blocks = dict((m.group(1), m.group(2)) for m in re.finditer(r"```(csv|json)\n(.*?)```", doc, re.S))
t.check(set(blocks) == {"csv", "json"}, "docs/import.md has a CSV and a JSON Lines example")
doc_images = os.path.join(work, "doc-images")
wanted = [r["image"] for r in csvmod.DictReader(io.StringIO(blocks.get("csv", "")))]
for line in blocks.get("json", "").splitlines():
    if line.strip():
        wanted += [c["image"] for c in json.loads(line)["canvases"]]
for i, ident in enumerate(wanted):
    os.makedirs(os.path.dirname(os.path.join(doc_images, ident)), exist_ok=True)
    write_png(os.path.join(doc_images, ident), 10 + i, 20)
docdb = os.path.join(work, "doc.db")
ex_csv = write("example.csv", blocks.get("csv", ""))
ex_jsonl = write("example.jsonl", blocks.get("json", ""))
rc, out, err = run(["import", "--database", docdb, "--image-root", doc_images, ex_csv, ex_jsonl])
t.check(rc == 0 and out.startswith("imported 5 objects, 11 canvases from 2 files"),
        "the docs/import.md examples import: %r %r" % (out, err))
if rc == 0:
    t.check(query(docdb, "SELECT COUNT(*) FROM ranges r JOIN objects o ON o.pk = r.object"
                         " WHERE o.id = 'ms-arabic-12'")[0][0] == 3, "the CSV example has 3 ranges")
    orphans = query(docdb, "SELECT id FROM objects o WHERE NOT EXISTS"
                           " (SELECT 1 FROM collection_objects m WHERE m.object = o.pk)")
    t.check(orphans == [("leaf-3",)], "only leaf-3 is in no collection: %r" % orphans)
rc, out, err = run(["import", "--database", docdb, "--image-root", doc_images,
                    write("example-bad.csv", blocks.get("csv", "").replace("ms-arabic-12/f002r.jp2", "nope.jp2"))])
t.check(rc == 1 and "example-bad.csv line 5" in err,
        "the example's rows are on the lines docs/import.md says (the summary spans two): %r" % err)

# 100,000 canvases: 2,000 objects of 50 canvases over five images, ranges and collections.
big_dir = os.path.join(work, "big")
os.makedirs(big_dir)
pool = []
for i in range(5):
    name = "img%d.png" % i
    write_png(os.path.join(images, name), 16 + i, 24 + i)
    pool.append(name)
lines = ["manifest,label,label@fr,metadata.Date,canvas_label,image,range,collection"]
n = 0
for obj in range(2000):
    for c in range(50):
        first = c == 0
        lines.append("obj%05d,%s,%s,%s,p. %d,%s,Part %d > Section %d,%s" % (
            obj, "Object %d" % obj if first else "", "Objet %d" % obj if first else "",
            "19%02d" % (obj % 100) if first else "", c + 1, pool[n % 5], c // 25, c // 5,
            "Box %d" % (obj // 100) if first else ""))
        n += 1
big = os.path.join(big_dir, "big.csv")
with open(big, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
bigdb = os.path.join(work, "big.db")
start = time.monotonic()
rc, out, err = run(["import", "--database", bigdb, "--image-root", images, big], timeout=300)
elapsed = time.monotonic() - start
rate = n / elapsed if elapsed > 0 else 0
print("import of %d canvases: %.2f s, %.0f canvases/s (target: 1,667/s = 100,000/min)"
      % (n, elapsed, rate), flush=True)
t.check(rc == 0 and out.strip() == "imported 2000 objects, 100000 canvases from 1 file into %s" % bigdb,
        "100,000-canvas CSV imports: %r %r" % (out, err[-300:]))
t.check(elapsed < 60, "100,000 canvases in under 60 s (%.1f s)" % elapsed)
t.check("import: big.csv: 100000 rows..." in err and "import: big.csv: 50000 rows..." in err,
        "progress lines on stderr for a long import: %r" % err[:200])
t.check(query(bigdb, "SELECT COUNT(*) FROM canvases")[0][0] == 100000 and
        query(bigdb, "SELECT COUNT(*) FROM ranges")[0][0] == 2000 * 12 and
        query(bigdb, "SELECT COUNT(*) FROM collections")[0][0] == 21,
        "every canvas, range and collection is in the database")
t.check(query(bigdb, "SELECT width, height FROM canvases c JOIN objects o ON o.pk = c.object"
                     " WHERE o.id = 'obj01999' AND c.position = 49")[0] == (16 + 99999 % 5, 24 + 99999 % 5),
        "image sizes right at the end of the file")

t.done()
