local etags = {__ETAGS__}
local indexes = {__INDEXES__}
local auth = wrk.headers["Authorization"]
function request()
  local i = indexes[math.random(1, #indexes)]
  return wrk.format("GET", prefix .. string.format("%07d", i), {["Authorization"] = auth, ["If-None-Match"] = etags[i]})
end
