"""harness.py: start real vellum, nginx and Apache on loopback for the integration tests.

Server configurations come from docs/deploy.md (the blocks marked <!-- template:NAME -->), so
the documentation is exactly what is tested. Everything runs in a private temp folder; nothing
system-wide is touched. Only the Python standard library is used.
"""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = os.environ.get("VELLUM_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("VELLUM_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
VELLUM_BIN = os.environ.get("VELLUM_BIN", os.path.join(BUILD_DIR, "vellum"))
FIXTURES = os.environ.get("VELLUM_FIXTURES") or os.path.join(SOURCE_DIR, "..", "shared", "fixtures")
SKIP = 77  # ctest SKIP_RETURN_CODE

_procs = []
_failures = []


def skip(why):
    print("SKIPPED: " + why, flush=True)
    sys.exit(SKIP)


def check(cond, what):
    """Record a failed assertion without stopping, so one run reports every problem."""
    if cond:
        print("ok   " + what, flush=True)
    else:
        print("FAIL " + what, flush=True)
        _failures.append(what)
    return cond


SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak|Undefined)Sanitizer|runtime error: ")
_logs = []


def done():
    # A sanitizer report in any log of a process we started is a failure, even if every HTTP
    # answer looked right (a worker that dies is respawned and would hide it).
    for path in _logs:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        m = SANITIZER_REPORT.search(text)
        check(m is None, "no sanitizer report in %s%s" % (os.path.basename(path),
                                                          ": " + text[m.start():m.start() + 300] if m else ""))
    if _failures:
        print("%d check(s) failed" % len(_failures), flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)
    sys.exit(0)


def tmpdir(name="vellum-it-"):
    d = tempfile.mkdtemp(prefix=name)
    # Apache's children may run as www-data (when the tests run as root): let them in.
    os.chmod(d, 0o755)
    atexit.register(shutil.rmtree, d, True)
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def has_template(name):
    """True when docs/deploy.md has a block marked <!-- template:NAME -->."""
    with open(os.path.join(SOURCE_DIR, "docs", "deploy.md"), encoding="utf-8") as f:
        return ("<!-- template:%s -->" % name) in f.read()


def template(name, **values):
    """The fenced block after <!-- template:NAME --> in docs/deploy.md, placeholders filled."""
    with open(os.path.join(SOURCE_DIR, "docs", "deploy.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- template:%s -->\s*```[a-z]*\n(.*?)```" % re.escape(name), text, re.S)
    if not m:
        raise RuntimeError("no template %s in docs/deploy.md" % name)
    block = m.group(1)
    for k, v in values.items():
        block = block.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", block)
    if left:
        raise RuntimeError("template %s: unfilled placeholders %s" % (name, left))
    return block


def _register(proc):
    _procs.append(proc)
    return proc


@atexit.register
def _stop_all():
    for p in reversed(_procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()


class Vellum:
    """`vellum serve` in its own process group, stderr captured to a file."""

    def __init__(self, workdir, listen=None, args=(), env=None, preexec=None):
        self.workdir = workdir
        self.port = None
        if listen is None:
            self.port = free_port()
            listen = "127.0.0.1:%d" % self.port
        self.listen = listen
        self.log_path = os.path.join(workdir, "vellum-%d.log" % free_port())
        e = dict(os.environ)
        e.update(env or {})
        self.log = open(self.log_path, "w")
        _logs.append(self.log_path)
        self.proc = _register(subprocess.Popen(
            [VELLUM_BIN, "serve", "--listen", listen] + list(args),
            stdout=self.log, stderr=subprocess.STDOUT, env=e, start_new_session=True,
            preexec_fn=preexec))
        if listen.startswith("/") or listen.startswith("unix:"):
            path = listen[5:] if listen.startswith("unix:") else listen
            wait_for(lambda: os.path.exists(path), what="vellum socket " + path)
        else:
            self.port = int(listen.rsplit(":", 1)[1])
            wait_for(lambda: port_open(self.port), what="vellum on port %d" % self.port)

    @property
    def fastcgi_address(self):
        return ("unix:" + self.listen) if self.listen.startswith("/") else self.listen

    def workers(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return sorted(int(x) for x in out.stdout.split())

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        return self.proc.wait(timeout)

    def output(self):
        self.log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


class Memcached:
    """memcached on a loopback port (TCP only), in its own process group (killed at exit like
    every process here). extra: memcached's size flags (memory in MB, largest item)."""

    def __init__(self, port=None, extra=("-m", "64")):
        self.port = port or free_port()
        args = ["memcached", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root without it
        self.proc = _register(subprocess.Popen(args + list(extra), stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for(lambda: port_open(self.port), what="memcached on port %d" % self.port)

    def stats(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"stats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        out = {}
        for line in data.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return out

    def items(self):
        return int(self.stats().get("curr_items", 0))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Nginx:
    """nginx with a docs/deploy.md server block, as a foreground process.

    template_name picks the block (default "nginx"). When deploy.md also has a block
    "<template_name>-http" (lines for the http context, such as nginx-cache's fastcgi_cache_path),
    it goes in before the server block, with @CACHE_DIR@ = <nginx dir>/cache. values fill any
    further placeholders of either block."""

    def __init__(self, workdir, fastcgi, www=None, port=None, template_name="nginx", values=None):
        self.port = port or free_port()
        self.dir = os.path.join(workdir, "nginx-%d" % self.port)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        www = www or os.path.join(self.dir, "www")
        os.makedirs(www, exist_ok=True)
        self.cache_dir = os.path.join(self.dir, "cache")
        fill = {"LISTEN": "127.0.0.1:%d" % self.port, "VELLUM": fastcgi, "WWW": www,
                "CACHE_DIR": self.cache_dir}
        fill.update(values or {})
        server = template(template_name, **fill)
        if has_template(template_name + "-http"):
            server = template(template_name + "-http", **fill) + server
        # The main context around the documented server block: test-only plumbing.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = """daemon off;
%(user)sworker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(d)s/tmp/body;
    fastcgi_temp_path %(d)s/tmp/fastcgi;
    proxy_temp_path %(d)s/tmp/proxy;
    uwsgi_temp_path %(d)s/tmp/uwsgi;
    scgi_temp_path %(d)s/tmp/scgi;
    include /etc/nginx/mime.types;
%(server)s
}
""" % {"d": self.dir, "user": user, "server": server}
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = _register(subprocess.Popen([nginx, "-p", self.dir, "-c", path],
                                               stderr=subprocess.STDOUT,
                                               stdout=open(os.path.join(self.dir, "out.log"), "w"),
                                               start_new_session=True))
        wait_for(lambda: port_open(self.port), what="nginx on port %d" % self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            self.proc.wait(10)


class Apache:
    """Apache httpd with mod_fcgid and a docs/deploy.md block (template_name, default "apache";
    values fill further placeholders), on a high loopback port."""

    MODULES = "/usr/lib/apache2/modules"

    def __init__(self, workdir, vellum_bin, config, template_name="apache", values=None):
        self.port = free_port()
        self.dir = os.path.join(workdir, "apache-%d" % self.port)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o777)
        rundir = os.path.join(self.dir, "fcgid")
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        block = template(template_name, LISTEN="127.0.0.1:%d" % self.port, WWW=www,
                         VELLUM_BIN=vellum_bin, CONFIG=config, RUNDIR=rundir, **(values or {}))
        if os.geteuid() == 0:
            # Apache refuses to serve as root; its children (and so vellum) run as www-data.
            user = "User www-data\nGroup www-data\n"
        else:
            user = ""
        self.error_log = os.path.join(self.dir, "error.log")
        _logs.append(self.error_log)
        conf = """ServerRoot %(d)s
ServerName 127.0.0.1
PidFile %(d)s/httpd.pid
Listen 127.0.0.1:%(port)d
%(user)sLoadModule mpm_event_module %(m)s/mod_mpm_event.so
LoadModule authz_core_module %(m)s/mod_authz_core.so
LoadModule mime_module %(m)s/mod_mime.so
LoadModule dir_module %(m)s/mod_dir.so
LoadModule fcgid_module %(m)s/mod_fcgid.so
LoadModule rewrite_module %(m)s/mod_rewrite.so
LoadModule headers_module %(m)s/mod_headers.so
TypesConfig /etc/mime.types
ErrorLog %(log)s
LogLevel warn
Mutex file:%(d)s
StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
%(block)s
""" % {"d": self.dir, "port": self.port, "user": user, "m": self.MODULES,
       "log": self.error_log, "block": block}
        self.conf = os.path.join(self.dir, "httpd.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        httpd = shutil.which("apache2") or "/usr/sbin/apache2"
        self.proc = _register(subprocess.Popen(
            [httpd, "-f", self.conf, "-DFOREGROUND"],
            stdout=open(os.path.join(self.dir, "out.log"), "w"), stderr=subprocess.STDOUT,
            start_new_session=True))
        try:
            wait_for(lambda: port_open(self.port), what="apache on port %d" % self.port)
        except RuntimeError:
            print(open(os.path.join(self.dir, "out.log")).read())
            if os.path.exists(self.error_log):
                print(open(self.error_log).read())
            raise

    def log(self):
        with open(self.error_log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def request(port, path, method="GET", headers=None, timeout=30):
    """One HTTP/1.1 request on a fresh connection: (status, {lowercase header: value}, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = headers or {}
        conn.putrequest(method, path, skip_accept_encoding=True,
                        skip_host=any(k.lower() == "host" for k in hdrs))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


ACCESS_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (GET|HEAD|POST|OPTIONS|PUT|DELETE) (\S+) "
    r"(\d{3}) (\d+) (\d+\.\d{3})ms pid=(\d+)$", re.M)


def reached(vel, uri, method="GET", at_least=0):
    """How many of vel's access-log lines are method + uri, waiting up to 2 s for at_least of
    them (a line is written when Vellum has answered, which may be after nginx has)."""
    end = time.time() + 2
    while True:
        count = sum(1 for l in ACCESS_LINE.findall(vel.output()) if l[0] == method and l[1] == uri)
        if count >= at_least or time.time() > end:
            return count
        time.sleep(0.05)


def health_by_worker(port, vel, key):
    """{pid: /health's `key` object} from every worker of vel (each /health is answered by
    one worker; asked until all have answered, at most 200 times)."""
    seen = {}
    for _ in range(200):
        st, _, body = request(port, "/health")
        doc = json.loads(body)
        seen[doc["pid"]] = doc[key]
        if set(seen) >= set(vel.workers()):
            break
    return seen


def check_basics(port, label):
    """What every deployment must do, whatever sits in front: /health, JSON errors, CORS on
    every response, HEAD, OPTIONS preflight, 404, 405."""
    import json
    st, h, body = request(port, "/health")
    check(st == 200, "%s: /health is 200 (got %d)" % (label, st))
    check(h.get("access-control-allow-origin") == "*", "%s: /health has CORS *" % label)
    check(h.get("content-type", "").startswith("application/json"), "%s: /health is JSON" % label)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    check(doc.get("status") == "ok" and isinstance(doc.get("pid"), int)
          and isinstance(doc.get("uptime_s"), (int, float)) and isinstance(doc.get("requests"), int)
          and re.match(r"^\d+\.\d+\.\d+", str(doc.get("version", ""))),
          "%s: /health reports status, version, uptime, pid, requests: %s" % (label, body[:200]))

    st, h, body = request(port, "/health", method="HEAD")
    check(st == 200 and body == b"", "%s: HEAD /health is 200 without a body" % label)
    check(h.get("access-control-allow-origin") == "*", "%s: HEAD has CORS *" % label)

    st, h, body = request(port, "/iiif/9/no/such/thing")
    check(st == 404, "%s: unknown path is 404 (got %d)" % (label, st))
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    check(doc.get("status") == 404 and "no such path" in doc.get("error", ""),
          "%s: 404 body is a JSON error: %s" % (label, body[:200]))
    check(h.get("access-control-allow-origin") == "*", "%s: 404 has CORS *" % label)

    st, h, body = request(port, "/health", method="DELETE")
    check(st == 405, "%s: DELETE is 405 (got %d)" % (label, st))
    check("GET" in h.get("allow", ""), "%s: 405 names the allowed methods" % label)
    check(b'"status":405' in body, "%s: 405 body is a JSON error" % label)

    st, h, body = request(port, "/health", method="OPTIONS",
                          headers={"Origin": "https://viewer.example",
                                   "Access-Control-Request-Method": "GET",
                                   "Access-Control-Request-Headers": "Authorization"})
    check(st in (200, 204), "%s: OPTIONS preflight answered (got %d)" % (label, st))
    check(h.get("access-control-allow-origin") == "*", "%s: preflight has CORS *" % label)
    check("GET" in h.get("access-control-allow-methods", ""), "%s: preflight allows GET" % label)
    check("Authorization" in h.get("access-control-allow-headers", ""),
          "%s: preflight allows the requested header" % label)


E2E_DIR = os.path.join(SOURCE_DIR, "tests", "e2e")


def _npm_up_to_date():
    """npm ci writes node_modules/.package-lock.json; same packages and versions as the lock?"""
    import json
    try:
        with open(os.path.join(E2E_DIR, "package-lock.json"), encoding="utf-8") as f:
            want = json.load(f)["packages"]
        with open(os.path.join(E2E_DIR, "node_modules", ".package-lock.json"), encoding="utf-8") as f:
            have = json.load(f)["packages"]
    except (OSError, ValueError, KeyError):
        return False
    have = {k: v.get("version") for k, v in have.items() if k}
    # Optional packages for other platforms (esbuild's binaries) are in the lock but not installed.
    return all(have.get(k) == v.get("version") or (k not in have and v.get("optional"))
               for k, v in want.items() if k) and all(k in want for k in have)


def ensure_e2e_packages(required=()):
    """Install tests/e2e's npm packages from the lock file unless node_modules already matches
    it. Returns None when ready, else why not (offline, no npm): callers skip, loudly. ctest runs
    the tests that call this under one RESOURCE_LOCK, so two never reinstall at once."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        return "node/npm not installed (scripts/setup installs them)"
    present = all(os.path.exists(os.path.join(E2E_DIR, "node_modules", p)) for p in required)
    if _npm_up_to_date() and present:
        return None
    print("npm ci in tests/e2e ...", flush=True)
    try:
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=E2E_DIR,
                           capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired:
        return "npm ci in tests/e2e took over 400 s (registry unreachable?)"
    if r.returncode != 0:
        return "npm ci in tests/e2e failed (offline?): " + (r.stderr or r.stdout)[-400:]
    missing = [p for p in required if not os.path.exists(os.path.join(E2E_DIR, "node_modules", p))]
    return "npm packages incomplete after npm ci: %s" % missing if missing else None
