-- POST /v1/coupons/redeem from a store till: each request redeems a code nobody else
-- redeems in this run (thread t of T takes codes t, t+T, t+2T, ...), with a new order
-- reference and Idempotency-Key.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data

setup = common.setup
response = common.response
done = common.done

function init(args)
  data = common.init(args)
end

local BODY = '{"codes":["%s"],"store_id":"%s","channel":"store","currency":"EUR",' ..
  '"lines":[{"sku":"SKU-1","category":"shoes","quantity":1,"unit_price_minor":8999},' ..
  '{"sku":"SKU-SOCKS","category":"accessories","quantity":2,"unit_price_minor":799}],' ..
  '"order_ref":"%s"}'

function request()
  local order_ref = common.unique(data.prefix)
  -- counter was just incremented by common.unique: the n-th request of this thread
  local index = (counter - 1) * data.wrk_threads + thread_no
  local code = data.codes[((index - 1) % #data.codes) + 1]
  return wrk.format("POST", "/v1/coupons/redeem", {
    ["Authorization"] = "Bearer " .. data.api_key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = order_ref,
  }, string.format(BODY, code, data.store_id, order_ref))
end
