-- Shared by every bench script: loads the run's data, numbers requests, reports results.
--
-- wrk runs this file once per Lua state: the main state (setup, done) and one per thread
-- (init, request, response). The data file (a Lua chunk written by bench/load.py) is the
-- first argument after "--" on the wrk command line.

local common = {}

local threads = {}
local next_thread_no = 0

function common.setup(thread)
  next_thread_no = next_thread_no + 1
  thread:set("thread_no", next_thread_no)
  table.insert(threads, thread)
end

-- Called from each script's init(args): returns the data table.
function common.init(args)
  local data = dofile(args[1])
  counter = 0
  math.randomseed(os.time() * 1000 + (thread_no or 0) * 7919)
  first_error = nil
  per_second = {}  -- successful responses per wall-clock second (throughput per window)
  return data
end

-- A request id unique within this run: <run prefix>-<thread>-<counter>.
function common.unique(prefix)
  counter = counter + 1
  return prefix .. "-" .. thread_no .. "-" .. counter
end

-- The body of a POS redemption of `code` for a new order `order_ref` (redeem scripts).
local REDEEM_BODY = '{"codes":["%s"],"store_id":"%s","channel":"store","currency":"EUR",' ..
  '"lines":[{"sku":"SKU-1","category":"shoes","quantity":1,"unit_price_minor":8999},' ..
  '{"sku":"SKU-SOCKS","category":"accessories","quantity":2,"unit_price_minor":799}],' ..
  '"order_ref":"%s"}'

function common.redeem_request(data, code, order_ref)
  return wrk.format("POST", "/v1/coupons/redeem", {
    ["Authorization"] = "Bearer " .. data.api_key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = order_ref,
  }, string.format(REDEEM_BODY, code, data.store_id, order_ref))
end

function common.pick(list)
  return list[math.random(#list)]
end

function common.response(status, headers, body)
  if status >= 300 then
    if first_error == nil then
      first_error = status .. " " .. string.gsub(string.sub(body or "", 1, 240), "%s+", " ")
    end
    return
  end
  local second = os.time()
  per_second[second] = (per_second[second] or 0) + 1
end

function common.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d errors_status=%d errors_connect=%d " ..
    "errors_read=%d errors_write=%d errors_timeout=%d p50_us=%d p90_us=%d p99_us=%d " ..
    "max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  local seconds = {}
  for _, thread in ipairs(threads) do
    for second, count in pairs(thread:get("per_second") or {}) do
      seconds[second] = (seconds[second] or 0) + count
    end
  end
  io.write("BENCH_SECONDS")
  for second, count in pairs(seconds) do
    io.write(string.format(" %d=%d", second, count))
  end
  io.write("\n")
  for _, thread in ipairs(threads) do
    local err = thread:get("first_error")
    if err ~= nil then
      io.write("BENCH_ERROR " .. err .. "\n")
      break
    end
  end
end

return common
