-- wrk script: send DEPTH requests in one write (HTTP/1.1 pipelining).
-- Usage: wrk -s loadtest/pipeline.lua URL -- DEPTH
local depth = 16
local batch

init = function(args)
  depth = tonumber(args[1]) or depth
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil)
  end
  batch = table.concat(r)
end

request = function()
  return batch
end
