-- wrk script for t/bench/ingest.sh: POST one ~300-byte JSON event per
-- request, identical bytes for every target (the URL picks the target).
--
--   BENCH_BODY_BYTES  size of one event (default 300)
--   BENCH_BATCH       events per POST (default 1: one object; N > 1: a
--                     JSON array of N such events, one request)
--   BENCH_STRICT=1    count every status outside 2xx through a response()
--                     hook; without it the count is wrk's own status error
--                     counter, which only counts statuses >= 400 (the hook
--                     costs the client a little CPU per response)
--
-- done() prints one machine-readable line, WRK_RESULT key=value ...,
-- which ingest.sh parses.

local size = tonumber(os.getenv("BENCH_BODY_BYTES") or "") or 300

local head = '{"type":"ticket.updated","resourceId":"ticket-123",'
          .. '"payload":{"data":{"status":"open","priority":"high",'
          .. '"assignee":"agent-42","note":"'
local tail = '"}}}'
local pad  = size - #head - #tail
if pad < 0 then pad = 0 end

local event = head .. string.rep("x", pad) .. tail
local batch = tonumber(os.getenv("BENCH_BATCH") or "") or 1

wrk.method = "POST"
if batch > 1 then
   local events = {}
   for i = 1, batch do events[i] = event end
   wrk.body = "[" .. table.concat(events, ",") .. "]"
else
   wrk.body = event
end
wrk.headers["Content-Type"] = "application/json"

local strict  = os.getenv("BENCH_STRICT") == "1"
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

if strict then
   non2xx = 0

   function response(status, headers, body)
      if status < 200 or status > 299 then
         non2xx = non2xx + 1
      end
   end
end

function done(summary, latency, requests)
   local non2xx_total = 0
   local how = "wrk-status-errors"

   if strict then
      how = "response-hook"
      for _, t in ipairs(threads) do
         non2xx_total = non2xx_total + (t:get("non2xx") or 0)
      end
   else
      non2xx_total = summary.errors.status
   end

   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_us=%d bytes=%d body_bytes=%d"
      .. " non2xx=%d non2xx_source=%s err_connect=%d err_read=%d"
      .. " err_write=%d err_timeout=%d lat_p50_us=%d lat_p99_us=%d\n",
      summary.requests, summary.duration, summary.bytes, #wrk.body,
      non2xx_total, how, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
