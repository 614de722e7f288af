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

function request()
  local order_ref = common.unique(data.prefix)
  return common.redeem_request(data, data.code, order_ref)
end
