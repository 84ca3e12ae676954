"""Apache 2.4 + mod_fcgid (docs/deploy.md block) spawning `vellum` itself: the binary finds the
FastCGI socket on fd 0 and serves as one worker; mod_fcgid manages the processes."""
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
t.done()
