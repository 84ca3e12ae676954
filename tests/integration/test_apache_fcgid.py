"""Apache 2.4 + mod_fcgid (docs/deploy.md block) spawning `vellum` itself: the binary finds the
FastCGI socket on fd 0 and serves as one worker; mod_fcgid manages the processes."""
import json
import os
import shutil

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

a = t.Apache(work, binary, conf)
try:
    t.check_basics(a.port, "apache+fcgid")

    pids = set()
    for i in range(20):
        st, h, body = t.request(a.port, "/health")
        if st == 200:
            pids.add(json.loads(body)["pid"])
    t.check(len(pids) >= 1, "apache+fcgid: 20 requests served by %d vellum process(es)" % len(pids))

    # An identifier with an encoded slash reaches Vellum undecoded (AllowEncodedSlashes NoDecode):
    # the Image API answers for it rather than Apache refusing it with its own 404 page.
    st, h, body = t.request(a.port, "/iiif/3/a%2Fb/info.json")
    t.check(h.get("access-control-allow-origin") == "*" and body.startswith(b"{"),
            "apache+fcgid: %%2F in an identifier reaches vellum (status %d, %r)" % (st, body[:80]))

    log = a.log()
    lines = t.ACCESS_LINE.findall(log)
    t.check(any(l[1] == "/health" and l[2] == "200" for l in lines),
            "apache+fcgid: vellum's access-log lines land in Apache's error log")
    t.check("serving on the socket passed as fd 0" in log,
            "apache+fcgid: vellum ran as a single worker on fd 0")
finally:
    a.stop()
t.done()
