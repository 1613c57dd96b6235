-- Every subject in order (thread t takes t, t + threads, ...), until bench/pip.py interrupts wrk.
local threads = __THREADS__
local i
function init(args)
  i = tid - 1
end
function request()
  local path = prefix .. string.format("%07d", i % n)
  i = i + threads
  return wrk.format("GET", path)
end
