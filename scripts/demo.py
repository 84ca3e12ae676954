"""scripts/demo.py: make demo content and run `vellum serve` behind nginx in the foreground.

The nginx server block is the one in docs/deploy.md (read by the same code the integration
tests use). Demo content lives in .demo/ (ignored by git) and is made once.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import harness  # noqa: E402

PORT = int(os.environ.get("VELLUM_DEMO_PORT", "8080"))
DEMO = os.path.join(SOURCE, ".demo")
IMAGES = os.path.join(DEMO, "images")
WWW = os.path.join(DEMO, "www")


def write_ppm(path, w, h, pixel):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        for y in range(h):
            f.write(bytes(c for x in range(w) for c in pixel(x, y)))


def make_images():
    """A synthetic test chart (gradients, rings and a grid) as tiled and untiled JPEG 2000."""
    os.makedirs(IMAGES, exist_ok=True)
    ppm = os.path.join(DEMO, "chart.ppm")
    w, h = 2400, 1800
    if not os.path.exists(ppm):
        print("demo: drawing a %dx%d test chart..." % (w, h), flush=True)

        def pixel(x, y):
            grid = (x % 200 < 3) or (y % 200 < 3)
            dx, dy = x - w / 2, y - h / 2
            ring = int((dx * dx + dy * dy) ** 0.5) // 40 % 2
            if grid:
                return (20, 20, 20)
            return (x * 255 // w, y * 255 // h, 200 if ring else 60)
        write_ppm(ppm, w, h, pixel)
    for name, extra in (("chart.jp2", ["-t", "512,512"]), ("chart-untiled.jp2", [])):
        out = os.path.join(IMAGES, name)
        if not os.path.exists(out):
            subprocess.run(["opj_compress", "-i", ppm, "-o", out, "-n", "6", "-r", "20"] + extra,
                           check=True, stdout=subprocess.DEVNULL)


# Real photographs, from a Debian package that is downloaded (not installed) and unpacked here.
PHOTO_PACKAGE = "plasma-workspace-wallpapers"
PHOTOS = {
    "cups.jp2": ("ColorfulCups", "Colourful cups (photograph), archive-style untiled JP2"),
    "path.jp2": ("Path", "A forest path (photograph), tiled JP2 (1024x1024 tiles)"),
}
# How libraries encode masters: lossy 9/7, 7 resolution levels, precincts, RPCL progression,
# quality layers, tile-parts by resolution, PLT/TLM/SOP/EPH markers.
ARCHIVE_OPTS = ["-I", "-n", "7", "-p", "RPCL", "-c", "[256,256],[256,256],[128,128]",
                "-b", "64,64", "-r", "40,20,10", "-TP", "R", "-PLT", "-TLM", "-SOP", "-EPH"]


def make_photos():
    """Returns the photographs made (some may be missing when the package cannot be fetched)."""
    debs = os.path.join(DEMO, "debs")
    os.makedirs(debs, exist_ok=True)
    wanted = [name for name in PHOTOS if not os.path.exists(os.path.join(IMAGES, name))]
    if wanted:
        deb = [f for f in os.listdir(debs) if f.startswith(PHOTO_PACKAGE) and f.endswith(".deb")]
        if not deb:
            print("demo: fetching photographs (apt-get download %s, ~95 MB, once)..." % PHOTO_PACKAGE,
                  flush=True)
            r = subprocess.run(["apt-get", "download", PHOTO_PACKAGE], cwd=debs,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deb = [f for f in os.listdir(debs) if f.endswith(".deb")]
            if r.returncode != 0 or not deb:
                print("demo: could not download %s (%s); continuing with the test chart only"
                      % (PHOTO_PACKAGE, r.stderr.strip().splitlines()[-1:]), flush=True)
                return [n for n in PHOTOS if os.path.exists(os.path.join(IMAGES, n))]
        unpacked = os.path.join(debs, "x")
        os.makedirs(unpacked, exist_ok=True)
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", os.path.join(debs, deb[0])],
                               stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", unpacked, "--wildcards",
                        "./usr/share/wallpapers/*/contents/images/2560x1600.jpg"],
                       stdin=tar.stdout, check=True)
        tar.wait()
        for name in wanted:
            folder, _ = PHOTOS[name]
            jpg = os.path.join(unpacked, "usr/share/wallpapers", folder, "contents/images/2560x1600.jpg")
            ppm = os.path.join(DEMO, folder + ".ppm")
            subprocess.run(["djpeg", "-pnm", "-outfile", ppm, jpg], check=True)
            tiles = ["-t", "1024,1024"] if name == "path.jp2" else []
            print("demo: encoding %s as an archive-style JPEG 2000..." % name, flush=True)
            subprocess.run(["opj_compress", "-i", ppm, "-o", os.path.join(IMAGES, name)]
                           + ARCHIVE_OPTS + tiles, check=True, stdout=subprocess.DEVNULL)
            os.unlink(ppm)
    return list(PHOTOS)


def make_www(photos):
    os.makedirs(WWW, exist_ok=True)
    for page, src in (("index.html", "demo-index.html"), ("osd.html", "demo-osd.html")):
        with open(os.path.join(HERE, src), encoding="utf-8") as f:
            text = f.read()
        with open(os.path.join(WWW, page), "w", encoding="utf-8") as f:
            f.write(text)
    images = [{"id": n, "title": PHOTOS[n][1]} for n in photos]
    images += [{"id": "chart.jp2", "title": "Test chart, tiled JP2 (512x512 tiles)"},
               {"id": "chart-untiled.jp2", "title": "Test chart, untiled JP2"}]
    with open(os.path.join(WWW, "images.json"), "w", encoding="utf-8") as f:
        json.dump(images, f, indent=1)
    # OpenSeadragon from npm, pinned by scripts/viewer/package-lock.json.
    viewer = os.path.join(HERE, "viewer")
    osd = os.path.join(viewer, "node_modules", "openseadragon", "build", "openseadragon")
    if not os.path.isdir(osd):
        print("demo: installing OpenSeadragon (npm ci)...", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=viewer, check=True)
    target = os.path.join(WWW, "openseadragon")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(osd, target)
    make_viewers()


# Mirador 4 and Universal Viewer: the pages the viewer tests drive (scripts/viewers/), with the
# built bundles from tests/e2e's npm lock file.
VIEWER_BUNDLES = (("openseadragon", "build/openseadragon"), ("mirador", "dist"),
                  ("universalviewer", "dist/umd"))


def make_viewers():
    required = ["mirador/dist/mirador.min.js", "universalviewer/dist/umd/UV.js",
                "openseadragon/build/openseadragon/openseadragon.min.js"]
    if not all(os.path.exists(os.path.join(WWW, "node_modules", r)) for r in required):
        print("demo: installing Mirador and Universal Viewer (npm ci in tests/e2e, once)...",
              flush=True)
        why = harness.ensure_e2e_packages(required)
        if why:
            print("demo: no Mirador / Universal Viewer pages: " + why, flush=True)
            return
        for pkg, sub in VIEWER_BUNDLES:
            dst = os.path.join(WWW, "node_modules", pkg, sub)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(os.path.join(harness.E2E_DIR, "node_modules", pkg, sub), dst,
                            ignore=shutil.ignore_patterns("*.map"))
        shutil.copy(os.path.join(harness.E2E_DIR, "node_modules", "universalviewer", "dist", "uv.css"),
                    os.path.join(WWW, "node_modules", "universalviewer", "dist"))
    os.makedirs(os.path.join(WWW, "viewers"), exist_ok=True)
    for page in ("osd.html", "mirador.html", "uv.html"):
        shutil.copy(os.path.join(HERE, "viewers", page), os.path.join(WWW, "viewers", page))


DEMO_CATALOGUE = """manifest,label,label@fr,summary,metadata.Photographer,metadata.Subject,metadata.Subject@fr,rights,nav_date,behavior,collection,canvas_label,image,range
album,Photographs from a Debian package,Photographies tirées d'un paquet Debian,"Two photographs shipped with KDE Plasma's wallpapers, and the test chart, as a three-page object.",KDE Plasma artists,Everyday things | Nature,Objets du quotidien | Nature,http://creativecommons.org/licenses/by-sa/4.0/,2023-05-09,paged,Demo collection,Colourful cups,cups.jp2,Photographs
album,,,,,,,,,,,A forest path,path.jp2,Photographs
album,,,,,,,,,,,Test chart,chart.jp2,Charts
chart,Vellum test chart,Mire de test Vellum,"A synthetic chart drawn by scripts/demo: gradients, rings and a 200-pixel grid.",scripts/demo,Test image,Image de test,http://creativecommons.org/publicdomain/zero/1.0/,2026-11-25,,Demo collection,Chart,chart-untiled.jp2,
"""


def make_catalogue(photos):
    """The demo catalogue: a multi-page object (when the photographs exist) and a single image."""
    db = os.path.join(DEMO, "vellum.db")
    csv = os.path.join(DEMO, "catalogue.csv")
    lines = DEMO_CATALOGUE.splitlines(True)
    if len(photos) < 2:  # offline: keep only the object that needs no photograph
        lines = [lines[0]] + [l for l in lines[1:] if l.startswith("chart,")]
    with open(csv, "w", encoding="utf-8") as f:
        f.writelines(lines)
    subprocess.run([os.path.join(SOURCE, "build", "vellum"), "import", "--database", db,
                    "--image-root", IMAGES, csv], check=True)
    return db


def main():
    make_images()
    photos = make_photos()
    make_www(photos)
    db = make_catalogue(photos)
    os.makedirs(DEMO, exist_ok=True)
    # The tile store of docs/deploy.md: tiles Vellum made once are files nginx sends itself.
    # Emptied at every start, so the demo also shows first decodes.
    store = os.path.join(DEMO, "tiles")
    shutil.rmtree(store, ignore_errors=True)
    v = harness.Vellum(DEMO, listen="127.0.0.1:%d" % harness.free_port(),
                       args=["--image-root", IMAGES, "--database", db, "--tile-store-dir", store],
                       env={"VELLUM_LOG_LEVEL": "info"})
    if harness.port_open(PORT):
        sys.exit("demo: port %d is taken; set VELLUM_DEMO_PORT to another one" % PORT)
    n = harness.Nginx(DEMO, v.fastcgi_address, www=WWW, port=PORT, template_name="nginx-store",
                      values={"STORE_DIR": store})
    base = "http://127.0.0.1:%d" % PORT
    print("""
Vellum demo is running (Ctrl-C stops it).

  demo page        %(b)s/
  OpenSeadragon    %(b)s/osd.html
  health           %(b)s/health
  collection       %(b)s/presentation/3/collection
  a manifest       %(b)s/presentation/3/%(m)s/manifest
  in Mirador       %(b)s/viewers/mirador.html?manifest=%(b)s/presentation/3/%(m)s/manifest
  in UV            %(b)s/viewers/uv.html?manifest=%(b)s/presentation/3/%(m)s/manifest
  image info       %(b)s/iiif/3/chart.jp2/info.json
  a tile           %(b)s/iiif/3/chart.jp2/0,0,512,512/256,/0/default.jpg
  access log       %(log)s  (tiles sent from the tile store do not reach Vellum)
  tile store       %(store)s
""" % {"b": base, "log": v.log_path, "store": store, "m": "album" if len(photos) >= 2 else "chart"}, flush=True)
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    while not stop and v.proc.poll() is None and n.proc.poll() is None:
        time.sleep(0.5)
    n.stop()
    v.stop()
    print("demo: stopped", flush=True)


if __name__ == "__main__":
    main()
