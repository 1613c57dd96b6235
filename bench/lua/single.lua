function request()
  return wrk.format("GET", prefix .. string.format("%07d", math.random(0, n - 1)))
end
