"""scripts/demo.py: make demo content and run `vellum serve` behind nginx in the foreground.

The nginx server block is the one in docs/deploy.md (read by the same code the integration
tests use). Demo content lives in .demo/ (ignored by git) and is made once.
"""
import os
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


def make_www():
    os.makedirs(WWW, exist_ok=True)
    with open(os.path.join(HERE, "demo-index.html"), encoding="utf-8") as f:
        page = f.read()
    with open(os.path.join(WWW, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)


def main():
    make_images()
    make_www()
    os.makedirs(DEMO, exist_ok=True)
    v = harness.Vellum(DEMO, listen="127.0.0.1:%d" % harness.free_port(),
                       args=["--image-root", IMAGES], env={"VELLUM_LOG_LEVEL": "info"})
    if harness.port_open(PORT):
        sys.exit("demo: port %d is taken; set VELLUM_DEMO_PORT to another one" % PORT)
    n = harness.Nginx(DEMO, v.fastcgi_address, www=WWW, port=PORT)
    base = "http://127.0.0.1:%d" % PORT
    print("""
Vellum demo is running (Ctrl-C stops it).

  viewer page      %(b)s/
  health           %(b)s/health
  image info       %(b)s/iiif/3/chart.jp2/info.json
  a tile           %(b)s/iiif/3/chart.jp2/0,0,512,512/256,/0/default.jpg
  access log       %(log)s
""" % {"b": base, "log": v.log_path}, flush=True)
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
