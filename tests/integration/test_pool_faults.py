"""The pool under faults, through real nginx: a worker killed with -9 while requests flow,
SIGTERM during a slow request, SIGHUP reload under load, recycling, crash-loop back-off; and the
default pool size under a CPU affinity mask and a cgroup CPU quota."""
import os
import re
import signal
import subprocess
import threading
import time

import harness as t


class Load:
    """Background clients hammering a path; counts statuses and connection errors."""

    def __init__(self, port, path="/health", clients=4):
        self.port, self.path = port, path
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.statuses = {}
        self.errors = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for th in self.threads:
            th.start()

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                st, _, _ = t.request(self.port, self.path, timeout=20)
                with self.lock:
                    self.statuses[st] = self.statuses.get(st, 0) + 1
            except Exception as e:  # refused / reset: exactly what must not happen
                with self.lock:
                    self.errors.append(repr(e))

    def stop(self):
        self.stop_flag.set()
        for th in self.threads:
            th.join(30)
        return self.statuses, self.errors


def slow(port, ms, out):
    try:
        out.append(t.request(port, "/debug/sleep?ms=%d" % ms, timeout=30)[0])
    except Exception as e:
        out.append(repr(e))


work = t.tmpdir()

# --- kill -9 of a worker while requests are flowing -----------------------------------------
v = t.Vellum(work, args=["--workers", "2", "--debug-routes"])
n = t.Nginx(work, v.fastcgi_address)
before = v.workers()
load = Load(n.port)
time.sleep(1.0)
os.kill(before[0], signal.SIGKILL)
time.sleep(1.0)
statuses, errors = load.stop()
bad = sum(c for s, c in statuses.items() if s != 200)
t.check(statuses.get(200, 0) > 50, "kill -9: requests kept flowing (%s)" % statuses)
# At most the one request in flight in the killed worker may fail (nginx answers 502 for it).
t.check(bad + len(errors) <= 1, "kill -9: at most one request lost (%s, errors %s)" % (statuses, errors[:3]))
t.wait_for(lambda: len(v.workers()) == 2, what="respawn")
after = v.workers()
t.check(before[0] not in after and before[1] in after and len(after) == 2,
        "kill -9: the dead worker was replaced (%s -> %s)" % (before, after))
codes = [t.request(n.port, "/health")[0] for _ in range(30)]
t.check(codes == [200] * 30, "kill -9: later requests all succeed")
t.check("killed by signal 9" in v.output(), "kill -9: the master logged the death")

# --- crash loop: back-off (one worker, so every crash hits the same slot) ----------------------
cv = t.Vellum(work, args=["--workers", "1", "--debug-routes"])
cn = t.Nginx(work, cv.fastcgi_address)
for _ in range(5):
    t.request(cn.port, "/debug/crash")  # the worker aborts; nginx answers 502
t.wait_for(lambda: cv.output().count("killed by signal 6") >= 5, what="five crashes logged")
delays = [int(d) for d in re.findall(r"killed by signal 6; respawning in (\d+) ms", cv.output())]
t.check(len(delays) == 5 and delays[-1] >= 400 and delays == sorted(delays),
        "crash loop: respawn back-off grows (%s ms)" % delays)
t.wait_for(lambda: t.request(cn.port, "/health")[0] == 200, timeout=15, what="pool back after crashes")
t.check(t.request(cn.port, "/health")[0] == 200, "crash loop: the pool serves again afterwards")
cv.stop()
cn.stop()

# --- SIGTERM during a slow request -----------------------------------------------------------
out = []
th = threading.Thread(target=slow, args=(n.port, 1500, out))
th.start()
time.sleep(0.4)
t0 = time.time()
v.signal(signal.SIGTERM)
rc = v.wait(30)
th.join(30)
t.check(out == [200], "SIGTERM: the in-flight slow request completed (%s)" % out)
t.check(rc == 0, "SIGTERM: the master exited 0 (%s)" % rc)
t.check(time.time() - t0 < 5, "SIGTERM: the master exited promptly after the drain")
t.check(v.workers() == [], "SIGTERM: no worker left behind")
n.stop()

# --- SIGHUP: reload under load, no request refused ----------------------------------------
conf = os.path.join(work, "reload.conf")
with open(conf, "w") as f:
    f.write("workers = 2\ndebug_routes = true\n")
v = t.Vellum(work, args=["--config", conf])
n = t.Nginx(work, v.fastcgi_address)
before = v.workers()
load = Load(n.port, clients=4)
slow_out = []
slow_threads = [threading.Thread(target=slow, args=(n.port, 800, slow_out)) for _ in range(2)]
for th in slow_threads:
    th.start()
time.sleep(0.3)
with open(conf, "w") as f:
    f.write("workers = 3\ndebug_routes = true\n")
v.signal(signal.SIGHUP)
t.wait_for(lambda: "reload complete" in v.output(), timeout=20, what="reload to complete")
time.sleep(0.5)
statuses, errors = load.stop()
for th in slow_threads:
    th.join(30)
t.check(set(statuses) == {200} and not errors and statuses[200] > 50,
        "SIGHUP: every request during the reload succeeded (%s, errors %s)" % (statuses, errors[:3]))
t.check(slow_out == [200, 200], "SIGHUP: slow requests in flight completed (%s)" % slow_out)
after = v.workers()
t.check(len(after) == 3 and not set(before) & set(after),
        "SIGHUP: workers replaced and resized to the new config (%s -> %s)" % (before, after))
# A broken config on reload is refused and the pool keeps serving.
with open(conf, "w") as f:
    f.write("workers = many\n")
v.signal(signal.SIGHUP)
t.wait_for(lambda: "reload refused" in v.output(), what="refused reload")
t.check('workers = "many"' in v.output(), "SIGHUP: a bad config is refused with the key named")
t.check(t.request(n.port, "/health")[0] == 200 and v.workers() == after,
        "SIGHUP: after a refused reload the same workers keep serving")
v.stop()
n.stop()

# --- recycling after max_requests_per_worker --------------------------------------------------
v = t.Vellum(work, args=["--workers", "1", "--max-requests-per-worker", "5"])
n = t.Nginx(work, v.fastcgi_address)
import json
pids = []
for _ in range(16):
    st, _, body = t.request(n.port, "/health")
    t.check(st == 200, "recycle: request served") if st != 200 else None
    if st == 200:
        pids.append(json.loads(body)["pid"])
t.check(len(pids) == 16, "recycle: 16 of 16 requests succeeded")
t.check(len(set(pids)) == 4, "recycle: a fresh worker every 5 requests (%d pids)" % len(set(pids)))
t.check(v.output().count("recycled after 5 requests") >= 3, "recycle: the master logged it")
v.stop()
n.stop()

# --- workers = 0: one per core Vellum may use ---------------------------------------------------
# Pinned by taskset, or in a container or systemd unit with a CPU quota, a machine's cores are not
# Vellum's: more workers than its share only queue for it.


def pool_size(preexec=None):
    pv = t.Vellum(work, args=["--workers", "0"], preexec=preexec)
    m = re.search(r"listening on \S+ with (\d+) workers?", pv.output())
    t.wait_for(lambda: len(pv.workers()) == (int(m.group(1)) if m else -1), what="workers started")
    size = len(pv.workers())
    pv.stop()
    return int(m.group(1)) if m else None, size


mask = sorted(os.sched_getaffinity(0))
logged, running = pool_size()
t.check(logged == running and 1 <= running <= len(mask),
        "workers = 0: %s workers logged, %d running, %d cores in the affinity mask"
        % (logged, running, len(mask)))
logged, running = pool_size(lambda: os.sched_setaffinity(0, {mask[0]}))
t.check(logged == 1 and running == 1,
        "workers = 0 pinned to one core: one worker (%s logged, %d running)" % (logged, running))


def quota_cgroup():
    """A new cgroup allowing 1 CPU (v1 cpu controller, else v2 under our own), or None."""
    name = "vellum-test-%d" % os.getpid()
    try:
        d = "/sys/fs/cgroup/cpu/" + name
        if os.path.isdir("/sys/fs/cgroup/cpu"):
            os.mkdir(d)
            with open(d + "/cpu.cfs_period_us", "w") as f:
                f.write("100000")
            with open(d + "/cpu.cfs_quota_us", "w") as f:
                f.write("100000")
            return d
        with open("/proc/self/cgroup") as f:
            own = [ln.split("::", 1)[1].strip() for ln in f if ln.startswith("0::")][0]
        d = "/sys/fs/cgroup%s/%s" % ("" if own == "/" else own, name)
        os.mkdir(d)
        with open(d + "/cpu.max", "w") as f:
            f.write("100000 100000")
        return d
    except (OSError, IndexError) as e:
        print("SKIP (loudly): workers = 0 under a CPU quota: cannot make a cgroup here (%s)" % e)
        try:
            os.rmdir(d)
        except (OSError, UnboundLocalError):
            pass
        return None


cg = quota_cgroup()


def join():
    with open(cg + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))


if cg:
    try:
        subprocess.run(["true"], preexec_fn=join, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        print("SKIP (loudly): workers = 0 under a CPU quota: cannot join the cgroup here (%s)" % e)
        os.rmdir(cg)
        cg = None
if cg and len(mask) < 2:
    print("SKIP (loudly): workers = 0 under a CPU quota: one core in the mask, nothing to tell apart")
elif cg:
    logged, running = pool_size(join)
    t.check(logged == 1 and running == 1,
            "workers = 0 in a cgroup allowed 1 CPU of %d: one worker (%s logged, %d running)"
            % (len(mask), logged, running))
if cg:  # the stopped processes leave the cgroup as they are reaped
    t.wait_for(lambda: not open(cg + "/cgroup.procs").read().strip(), what="cgroup empty")
    os.rmdir(cg)
t.done()
