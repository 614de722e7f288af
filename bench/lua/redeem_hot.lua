-- POST /v1/coupons/redeem of one shared code by every till at once: a new order reference
-- and Idempotency-Key per request, the same code row for all.
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
  return wrk.format("POST", "/v1/coupons/redeem", {
    ["Authorization"] = "Bearer " .. data.api_key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = order_ref,
  }, string.format(BODY, data.code, data.store_id, order_ref))
end
