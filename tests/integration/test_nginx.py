"""nginx (docs/deploy.md server block) -> `vellum serve` over TCP and over a unix socket."""
import os

import harness as t


def access_lines(v):
    return t.ACCESS_LINE.findall(v.output())


def run(label, listen):
    work = t.tmpdir()
    v = t.Vellum(work, listen=listen(work) if listen else None, args=["--workers", "2"])
    n = t.Nginx(work, v.fastcgi_address)
    t.check_basics(n.port, label)

    # One access-log line per request, with its time; the URI logged raw.
    t.request(n.port, "/health?probe=%d" % n.port)
    lines = access_lines(v)
    mine = [l for l in lines if l[1] == "/health?probe=%d" % n.port]
    t.check(len(mine) == 1, "%s: exactly one access-log line for a request (%d)" % (label, len(mine)))
    if mine:
        method, uri, status, size, ms, pid = mine[0]
        t.check(method == "GET" and status == "200" and int(size) > 0 and float(ms) >= 0
                and int(pid) in v.workers(),
                "%s: access line has method, status, bytes, ms and a worker pid: %s" % (label, mine[0]))
    t.check(len(v.workers()) == 2, "%s: 2 workers running" % label)

    # Static files beside Vellum come from nginx (the block's try_files), Vellum gets the rest.
    with open(os.path.join(n.dir, "www", "index.html"), "w") as f:
        f.write("<h1>viewer</h1>")
    st, h, body = t.request(n.port, "/")
    t.check(st == 200 and b"viewer" in body, "%s: nginx serves the static index page" % label)

    n.stop()
    v.stop()
    t.check(v.proc.returncode == 0, "%s: vellum exits 0 on SIGTERM (%s)" % (label, v.proc.returncode))
    if listen:
        t.check(not os.path.exists(v.listen), "%s: socket file removed at exit" % label)


run("nginx+tcp", None)
run("nginx+unix", lambda work: os.path.join(work, "vellum.sock"))
t.done()
