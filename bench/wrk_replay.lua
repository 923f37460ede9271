-- wrk script for bench/ingest.py: replay pre-built, pre-signed HTTP requests, each once.
--
--   wrk -t <T> -c <C> -d <seconds> -s bench/wrk_replay.lua <url> -- <dir>
--
-- bench/ingest.py writes one file per wrk thread, <dir>/requests.<n> (n from 0): for each
-- request a line with its length in bytes, then the request's bytes (request line, headers,
-- body; every one unique and signed by the platform's adapter). Once a thread has handed out
-- all of its requests, its connections send a filler (GET /hooks/none/none/: a 404 from the
-- URL table, no database) until every webhook of the thread is answered, and then the thread
-- stops; fillers are not counted (wrk cannot be told to stop a connection any other way:
-- delay() is only asked before a connection's first request when the server closes each
-- connection). Every webhook response status is counted, and one machine-readable line is
-- printed at the end with wrk's latency percentiles (from writing the request to the last
-- byte of the response; the TCP connect before it is not included: gunicorn's sync workers
-- close every connection, so wrk reconnects for each request).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1] .. "/requests." .. id, "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    reqs[#reqs + 1] = string.sub(data, nl + 1, nl + len)
    pos = nl + 1 + len
  end
  handed = 0
  -- wrk asks the first thread for one request before the run, to check it, and never sends
  -- it: that one must not use up a webhook.
  checking = (id == 0)
  fillers = 0
  filler = wrk.format("GET", "/hooks/none/none/")
  responses = 0
  ok = 0
  statuses = ""
  counts = {}
end

function request()
  if checking then
    checking = false
    return reqs[1]
  end
  if handed >= #reqs then
    fillers = fillers + 1
    return filler
  end
  handed = handed + 1
  return reqs[handed]
end

function response(status, headers, body)
  if status == 404 then
    -- A filler (webhooks are never 404 here: every channel of the bench exists).
    return
  end
  responses = responses + 1
  if responses >= #reqs then
    wrk.thread:stop()
  end
  if status >= 200 and status < 300 then ok = ok + 1 end
  counts[status] = (counts[status] or 0) + 1
  local parts = {}
  for code, n in pairs(counts) do parts[#parts + 1] = code .. ":" .. n end
  statuses = table.concat(parts, ",")
end

function done(summary, latency, requests)
  local total_responses, total_ok, handed_out, all = 0, 0, 0, {}
  for _, thread in ipairs(threads) do
    total_responses = total_responses + (thread:get("responses") or 0)
    total_ok = total_ok + (thread:get("ok") or 0)
    handed_out = handed_out + (thread:get("handed") or 0)
    all[#all + 1] = thread:get("statuses") or ""
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_REPLAY {"requests": %d, "handed": %d, "responses": %d, "ok": %d, ' ..
    '"statuses": "%s", "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, handed_out, total_responses, total_ok, table.concat(all, ","),
    summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
