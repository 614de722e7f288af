-- POST /v1/orders from a store till: a new order id and Idempotency-Key per request, a
-- random seeded member, a two-line basket.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data

setup = common.setup
response = common.response
done = common.done

function init(args)
  data = common.init(args)
end

local BODY = '{"order_id":"%s","channel":"store","store_id":"%s",' ..
  '"member":{"member_id":%d},' ..
  '"lines":[{"sku":"SKU-%d","category":"shoes","quantity":1,"unit_price_minor":%d},' ..
  '{"sku":"SKU-SOCKS","category":"accessories","quantity":2,"unit_price_minor":799}],' ..
  '"currency":"EUR","occurred_at":"%s"}'

function request()
  local order_id = common.unique(data.prefix)
  local body = string.format(BODY, order_id, data.store_id, common.pick(data.members),
    math.random(1, 500), math.random(1000, 20000), data.occurred_at)
  return wrk.format("POST", "/v1/orders", {
    ["Authorization"] = "Bearer " .. data.api_key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = order_id,
  }, body)
end
