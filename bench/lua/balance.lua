-- GET /v1/me/balance as many different members: each request picks one of a few hundred
-- member tokens at random.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data

setup = common.setup
response = common.response
done = common.done

function init(args)
  data = common.init(args)
end

function request()
  local token = common.pick(data.tokens)
  return wrk.format("GET", "/v1/me/balance", { ["Authorization"] = "Bearer " .. token })
end
