function request()
  return wrk.format("GET", "/bench/ceiling")
end
