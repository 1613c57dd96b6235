-- single.lua with one more request header (bench/pip.py --replica: Consistency-Token or Consistency).
wrk.headers["__HEADER__"] = "__VALUE__"
function request()
  return wrk.format("GET", prefix .. string.format("%07d", math.random(0, n - 1)))
end
