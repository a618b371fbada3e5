-- wrk script for scripts/bench: every request carries the next of the tokens in
-- the file given after `--` (one a line), so no two requests in a row share one.
local tokens = {}
local n = 0
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      tokens[n] = "Bearer " .. line
    end
  end
  -- Each thread starts at its own place.
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return wrk.format("GET", "/", { ["Authorization"] = tokens[i] })
end
