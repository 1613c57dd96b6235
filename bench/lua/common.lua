-- Shared by every bench/pip.py script: per-thread seeds, the key, and one WRKJSON line of figures.
local started = 0
function setup(thread)
  started = started + 1
  thread:set("tid", started)
end
function init(args)
  math.randomseed(os.time() * 1009 + tid * 7919)
  math.random(); math.random()
end
wrk.headers["Authorization"] = "Bearer __KEY__"
local n = __USERS__
local prefix = "__PREFIX__user-"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p75_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
