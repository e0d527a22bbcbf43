-- wrk script: POST JSON bodies read from a file (one per line), round-robin.
-- Used by benchmarks/serve_bench.py:  wrk -t1 -c64 -d8s --latency -s serve_post.lua URL -- bodies.jsonl
local bodies = {}
local next_body = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("no request bodies in " .. tostring(args[1])) end
end

function request()
  next_body = (next_body % #bodies) + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[next_body])
end
