"""Apache 2.4 + mod_fcgid (docs/deploy.md block) spawning `vellum` itself: the binary finds the
FastCGI socket on fd 0 and serves as one worker; mod_fcgid manages the processes. Then the
apache-store block: images Vellum stored in its tile store are sent by Apache as files."""
import json
import os
import shutil
import subprocess

import harness as t

if not os.path.exists(os.path.join(t.Apache.MODULES, "mod_fcgid.so")):
    t.skip("mod_fcgid is not installed (scripts/setup installs libapache2-mod-fcgid)")

work = t.tmpdir()
# Under root, Apache's children run as www-data: give them a copy of the binary they can reach
# whatever the permissions of the build folder.
binary = os.path.join(work, "vellum")
shutil.copy(t.VELLUM_BIN, binary)
os.chmod(binary, 0o755)
conf = os.path.join(work, "vellum.conf")
with open(conf, "w") as f:
    f.write("# written by test_apache_fcgid.py\nlog_level = info\nimage_root = %s\n" % work)
os.chmod(conf, 0o644)

# A small JPEG 2000 image in a subfolder, to be asked for with an encoded slash.
os.makedirs(os.path.join(work, "sub"))
with open(os.path.join(work, "g.pgm"), "wb") as f:
    f.write(b"P5\n64 48\n255\n" + bytes((x * 4 + y) % 256 for y in range(48) for x in range(64)))
subprocess.run(["opj_compress", "-i", os.path.join(work, "g.pgm"), "-o",
                os.path.join(work, "sub", "a.jp2")], check=True, stdout=subprocess.DEVNULL)
for d, _, names in os.walk(work):
    for name in names:
        os.chmod(os.path.join(d, name), 0o755 if name == "vellum" else 0o644)
    os.chmod(d, 0o755)

a = t.Apache(work, binary, conf)
try:
    t.check_basics(a.port, "apache+fcgid")

    pids = set()
    for i in range(20):
        st, h, body = t.request(a.port, "/health")
        if st == 200:
            pids.add(json.loads(body)["pid"])
    t.check(len(pids) >= 1, "apache+fcgid: 20 requests served by %d vellum process(es)" % len(pids))

    # An identifier with an encoded slash reaches Vellum undecoded (AllowEncodedSlashes NoDecode)
    # and ids keep the client's host, port and encoding.
    st, h, body = t.request(a.port, "/iiif/3/sub%2Fa.jp2/info.json")
    info = json.loads(body) if st == 200 else {}
    t.check(st == 200 and info.get("id") == "http://127.0.0.1:%d/iiif/3/sub%%2Fa.jp2" % a.port
            and info.get("width") == 64, "apache+fcgid: info.json for sub%%2Fa.jp2 (%d %r)" % (st, body[:120]))
    st, h, body = t.request(a.port, "/iiif/3/sub%2Fa.jp2/full/32,/0/default.png")
    t.check(st == 200 and h.get("content-type") == "image/png" and body[:4] == b"\x89PNG",
            "apache+fcgid: an image request through mod_fcgid")

    log = a.log()
    lines = t.ACCESS_LINE.findall(log)
    t.check(any(l[1] == "/health" and l[2] == "200" for l in lines),
            "apache+fcgid: vellum's access-log lines land in Apache's error log")
    t.check("serving on the socket passed as fd 0" in log,
            "apache+fcgid: vellum ran as a single worker on fd 0")
finally:
    a.stop()

# ---- the apache-store block: images Vellum stored are sent by Apache as files ------------------
store = os.path.join(work, "tiles")  # Vellum runs as Apache's user: the store must be its
os.makedirs(store)
os.chmod(store, 0o755)
if os.geteuid() == 0:
    import pwd
    www = pwd.getpwnam("www-data")
    os.chown(store, www.pw_uid, www.pw_gid)
conf2 = os.path.join(work, "vellum-store.conf")
with open(conf2, "w") as f:
    f.write("log_level = info\nimage_root = %s\ntile_store_dir = %s\n" % (work, store))
os.chmod(conf2, 0o644)
a2 = t.Apache(work, binary, conf2, template_name="apache-store", values={"STORE_DIR": store})
try:
    t.check_basics(a2.port, "apache-store")
    TILE = "/iiif/3/sub/a.jp2/0,0,32,32/32,/0/default.png"  # a plain slash: Apache finds the file
    FILE = os.path.join(store, "iiif/3/sub/a.jp2/0,0,32,32_32,_0_default.png")

    def vellum_lines(path):
        return sum(1 for l in t.ACCESS_LINE.findall(a2.log()) if l[1] == path)

    st, h1, b1 = t.request(a2.port, TILE)
    t.check(st == 200 and b1[:4] == b"\x89PNG" and "server-timing" in h1 and vellum_lines(TILE) == 1,
            "apache-store: the first request is Vellum's (%d)" % st)
    t.wait_for(lambda: os.path.isfile(FILE), what="the stored file")
    t.check(open(FILE, "rb").read() == b1, "apache-store: the file holds the response's bytes")
    st, h2, b2 = t.request(a2.port, TILE)
    t.check(st == 200 and b2 == b1 and "server-timing" not in h2 and vellum_lines(TILE) == 1,
            "apache-store: the second request is the file, sent by Apache (%d)" % st)
    t.check(h2.get("content-type") == "image/png" and h2.get("access-control-allow-origin") == "*"
            and "max-age=" in h2.get("cache-control", ""),
            "apache-store: image/png, CORS and Cache-Control on the file (%s)" % h2)
    st, h, b = t.request(a2.port, TILE, method="HEAD")
    t.check(st == 200 and h.get("content-length") == str(len(b1)) and vellum_lines(TILE) == 1,
            "apache-store: HEAD from the file (%d)" % st)
    st, h, b = t.request(a2.port, TILE, method="OPTIONS",
                         headers={"Origin": "https://v.example", "Access-Control-Request-Method": "GET"})
    t.check(st == 204 and "GET" in h.get("access-control-allow-methods", ""),
            "apache-store: OPTIONS goes to Vellum's preflight (%d)" % st)
    st, h, b = t.request(a2.port, "/iiif/3/sub%2Fa.jp2/info.json")
    t.check(st == 200, "apache-store: info.json from Vellum (%d)" % st)
    ESC = "/iiif/3/sub%2Fa.jp2/0,0,32,32/32,/0/default.png"
    st, h, b = t.request(a2.port, ESC)
    t.check(st == 200 and b == b1 and vellum_lines(ESC) == 1,
            "apache-store: the %%2F form reaches Vellum (Apache keeps %%2F), same bytes (%d)" % st)
finally:
    a2.stop()
t.done()
