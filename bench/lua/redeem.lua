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

function request()
  local order_ref = common.unique(data.prefix)
  -- counter was just incremented by common.unique: the n-th request of this thread
  local index = (counter - 1) * data.wrk_threads + thread_no
  local code = data.codes[((index - 1) % #data.codes) + 1]
  return common.redeem_request(data, code, order_ref)
end
