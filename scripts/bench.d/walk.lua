-- walk.lua: make wrk walk a URL list exactly once (each URL once, in list order), then stop.
--
--   wrk -t 1 -c C -d CAP --timeout 120s -s walk.lua http://127.0.0.1:PORT -- LIST [REPEATS]
--
-- wrk runs for a duration, not for a number of requests, so on its own it cannot do "each URL
-- once". Here one wrk thread owns the list and all C connections take the next URL from it
-- (so the order stays the viewer's order, interleaved across connections as a browser's
-- connections would). A connection that asks for more once the list is used up is handed an
-- empty request and stays idle. When the last response is in, the script signals wrk's main
-- thread (SIGINT, which wrk handles by ending the run), so wrk's own clock, requests/s and
-- latency percentiles cover exactly the walk (plus up to wrk's 100 ms stop tick, which the
-- caller corrects with the duration printed below). CAP only bounds a run that hangs.
local ffi = require("ffi")
ffi.cdef [[
int getpid(void);
int tgkill(int tgid, int tid, int sig);
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct bench_timespec *ts);
]]

local reqs = {}
total = 0
local sent = 0
done_n = 0
codes = {}
walk_us = 0
local first_us = 0
local verified = false

local ts = ffi.new("struct bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

function init(args)
  local list = {}
  for line in io.lines(args[1]) do
    if #line > 0 then list[#list + 1] = line end
  end
  local repeats = tonumber(args[2] or "1")
  for _ = 1, repeats do
    for _, u in ipairs(list) do reqs[#reqs + 1] = wrk.format("GET", u) end
  end
  total = #reqs
end

function request()
  -- wrk calls request() once before the run to check what it returns: not a real request.
  if not verified then
    verified = true
    return reqs[1]
  end
  if sent >= total then return "" end
  sent = sent + 1
  if sent == 1 then first_us = now_us() end
  return reqs[sent]
end

function response(status, headers, body)
  done_n = done_n + 1
  local k = tostring(status)
  codes[k] = (codes[k] or 0) + 1
  if done_n == total then
    walk_us = now_us() - first_us
    local pid = ffi.C.getpid()
    ffi.C.tgkill(pid, pid, 2) -- SIGINT to wrk's main thread: end the run now
  end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local t = threads[1]
  local parts = {}
  for k, v in pairs(t:get("codes") or {}) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WALK {"requests":%d,"expected":%d,"completed":%d,"duration_us":%d,"walk_us":%.0f,'
    .. '"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"codes":{%s}}\n',
    summary.requests, t:get("total"), t:get("done_n"), summary.duration, t:get("walk_us"),
    summary.bytes, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
end
