-- wrk script for bench/common.py's run_wrk (`wrk -d <seconds> ... -s bench/wrk_report.lua
-- <url>`): count every response that is not a 200, and print one machine-readable line
-- with wrk's latency percentiles (wrk records the latency of every request, in
-- microseconds) and error counts.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  responses = 0
  not_ok = 0
  first_not_ok = 0
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 then
    not_ok = not_ok + 1
    if first_not_ok == 0 then first_not_ok = status end
  end
end

function done(summary, latency, requests)
  local total_responses, total_not_ok, first = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_responses = total_responses + (thread:get("responses") or 0)
    total_not_ok = total_not_ok + (thread:get("not_ok") or 0)
    local status = thread:get("first_not_ok") or 0
    if first == 0 and status ~= 0 then first = status end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "responses": %d, "not_ok": %d, "first_not_ok": %d, ' ..
    '"duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "min_us": %d, "mean_us": %.1f, "max_us": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d}\n',
    summary.requests, total_responses, total_not_ok, first, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99)))
end
