local size = __BATCH__
local parts = {}
wrk.headers["Content-Type"] = "application/json"
function request()
  for j = 1, size do
    parts[j] = string.format('{"tenant":"__TENANT__","external_id":"user-%07d"}', math.random(0, n - 1))
  end
  return wrk.format("POST", "/api/v1/pip/resolve", nil, '{"subjects":[' .. table.concat(parts, ",") .. ']}')
end
