-- walk.lua: make wrk walk a URL list exactly once (each URL once, in list order), then stop, and
-- time every request.
--
--   wrk -t C -c C -d CAP --timeout 120s -s walk.lua http://127.0.0.1:PORT -- LIST REPEATS C [SLOWEST]
--
-- With SLOWEST = N > 0 it also prints the N slowest responses, one "SLOW us index timing" line
-- each (index: 0-based line of LIST; timing: the Server-Timing header, "-" without one), to
-- show what a walk's p99 is made of.
-- wrk runs for a duration, not for a number of requests, so on its own it cannot do "each URL
-- once". Here every connection has a wrk thread of its own, and they all take the next URL from
-- one counter shared through memory (so the order stays the viewer's order, interleaved across
-- connections as a browser's connections would). A connection that asks for more once the list
-- is used up is handed an empty request and stays idle. When the last response is in, the
-- script signals wrk's main thread (SIGINT, which wrk handles by ending the run), so wrk's own
-- clock and requests/s cover exactly the walk (plus up to wrk's 100 ms stop tick, which the
-- caller corrects with the walk's own duration printed below). CAP only bounds a run that hangs.
-- wrk starts each thread as soon as it is made and installs its SIGINT handler only after the
-- last one, then sleeps for CAP: a SIGINT before that sleep would be lost (a walk of static
-- files can be over before 32 threads are made), so no thread sends its first request before
-- all C have asked for one, and then 50 ms more.
--
-- Latencies are timed here, one sample per response, not taken from wrk's statistics: wrk
-- "corrects" its histogram for coordinated omission, adding for every latency n >= 2e (e = run
-- time / (requests / connections)) samples at n - e, n - 2e, ... down to e, as if an open-loop
-- client had been kept from sending meanwhile. A walk is a closed loop (a connection asks for
-- the next tile when the last one is in, as a viewer does), so those would be requests that
-- never happened, weighing more the faster the server (a shorter e) and the more its latency is
-- bimodal (block hits and block decodes): two 228 ms decodes in a 0.5 s walk of 789 requests
-- became a p90 of 154 ms. One connection per thread is what makes the timing exact: a thread's
-- request() and response() then alternate for its one connection. wrk's corrected p99 is
-- printed beside ours as p99_co_us.
local ffi = require("ffi")
ffi.cdef [[
int getpid(void);
int tgkill(int tgid, int tid, int sig);
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct bench_timespec *ts);
typedef union { char size[40]; long align; } walk_mutex_t;
int pthread_mutex_init(walk_mutex_t *m, const void *attr);
int pthread_mutex_lock(walk_mutex_t *m);
int pthread_mutex_unlock(walk_mutex_t *m);
int usleep(unsigned int usec);
void *calloc(size_t n, size_t size);
struct walk_shared { walk_mutex_t lock; int64_t next, done, ready; double first_us, walk_us; };
]]

local ts = ffi.new("struct bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

-- ---- main thread: setup() for each wrk thread, done() at the end ----
local shared = nil
local threads = {}

function setup(thread)
  if not shared then -- allocated once, never freed: wrk exits after done()
    shared = ffi.cast("struct walk_shared *", ffi.C.calloc(1, ffi.sizeof("struct walk_shared")))
    ffi.C.pthread_mutex_init(shared.lock, nil)
  end
  thread:set("shared_addr", tonumber(ffi.cast("uintptr_t", shared)))
  -- wrk calls request() of its first thread once before the run, to check what it returns.
  thread:set("verify_pending", #threads == 0)
  threads[#threads + 1] = thread
end

-- ---- each wrk thread: one connection ----
local reqs = {}
total = 0
codes = {}
lats = {}
local S = nil
local sent_at = nil
local sent_i = 0
local conns = 1
slowest_n = 0
local list_n = 1
idx = {}
timing = {}
local started = false

local function locked(f)
  ffi.C.pthread_mutex_lock(S.lock)
  local v = f()
  ffi.C.pthread_mutex_unlock(S.lock)
  return v
end

function init(args)
  S = ffi.cast("struct walk_shared *", shared_addr)
  local list = {}
  for line in io.lines(args[1]) do
    if #line > 0 then list[#list + 1] = line end
  end
  local repeats = tonumber(args[2] or "1")
  conns = tonumber(args[3] or "1")
  slowest_n = tonumber(args[4] or "0")
  list_n = math.max(#list, 1)
  for _ = 1, repeats do
    for _, u in ipairs(list) do reqs[#reqs + 1] = wrk.format("GET", u) end
  end
  total = #reqs
end

function request()
  if verify_pending then
    verify_pending = false
    return reqs[1]
  end
  if not started then -- the start barrier (see the top)
    started = true
    locked(function() S.ready = S.ready + 1 end)
    while locked(function() return tonumber(S.ready) end) < conns do ffi.C.usleep(1000) end
    ffi.C.usleep(50000)
  end
  local i = locked(function()
    local n = tonumber(S.next)
    if n < total then
      S.next = n + 1
      if n == 0 then S.first_us = now_us() end
    end
    return n
  end)
  if i >= total then return "" end
  sent_at = now_us()
  sent_i = i % list_n
  return reqs[i + 1]
end

function response(status, headers, body)
  local t = now_us()
  lats[#lats + 1] = t - sent_at
  if slowest_n > 0 then
    idx[#idx + 1] = sent_i
    timing[#timing + 1] = headers["Server-Timing"] or "-"
  end
  local k = tostring(status)
  codes[k] = (codes[k] or 0) + 1
  local last = locked(function()
    S.done = S.done + 1
    if tonumber(S.done) ~= total then return false end
    S.walk_us = t - S.first_us
    return true
  end)
  if last then
    local pid = ffi.C.getpid()
    ffi.C.tgkill(pid, pid, 2) -- SIGINT to wrk's main thread: end the run now
  end
end

-- wrk's stats.c percentile: the smallest sample whose rank reaches round(p% of n + 0.5).
local function percentile(sorted, p)
  local n = #sorted
  if n == 0 then return 0 end
  local rank = math.floor(p / 100 * n + 0.5 + 0.5)
  if rank < 1 then rank = 1 end
  if rank > n then rank = n end
  return sorted[rank]
end

function done(summary, latency, requests)
  local all, merged, sum, slow = {}, {}, 0, {}
  for _, t in ipairs(threads) do
    local ix, tm = t:get("idx") or {}, t:get("timing") or {}
    for j, v in ipairs(t:get("lats") or {}) do
      all[#all + 1] = v
      sum = sum + v
      if ix[j] then slow[#slow + 1] = { v, ix[j], tm[j] } end
    end
    for k, v in pairs(t:get("codes") or {}) do merged[k] = (merged[k] or 0) + v end
  end
  table.sort(all)
  local parts = {}
  for k, v in pairs(merged) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WALK {"requests":%d,"expected":%d,"completed":%d,"duration_us":%d,"walk_us":%.0f,'
    .. '"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
    .. '"samples":%d,"p99_co_us":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"codes":{%s}}\n',
    summary.requests, threads[1]:get("total"), tonumber(shared.done), summary.duration,
    shared.walk_us, summary.bytes, percentile(all, 50), percentile(all, 90),
    percentile(all, 99), all[#all] or 0, #all > 0 and sum / #all or 0, #all,
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
  table.sort(slow, function(x, y) return x[1] > y[1] end)
  for j = 1, math.min(#slow, tonumber(threads[1]:get("slowest_n") or 0)) do
    io.write(string.format("SLOW %d %d %s\n", slow[j][1], slow[j][2], slow[j][3]))
  end
end
