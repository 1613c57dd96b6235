function request()
  return wrk.format("GET", "/bench/baseline")
end
