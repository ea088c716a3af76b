-- wrk script: POST /v1/envs/gsm8k/score with bodies read from BODIES
-- (one JSON body per line, written by bench/make_bodies.py), cycling.
local bodies = {}
local path = os.getenv("BODIES")
for line in io.lines(path) do bodies[#bodies + 1] = line end
local requests = {}
for i, b in ipairs(bodies) do
  requests[i] = wrk.format("POST", "/v1/envs/gsm8k/score",
                           { ["Content-Type"] = "application/json" }, b)
end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end
-- wrk counts non-2xx/3xx answers itself; print them so a broken server
-- cannot pass for a fast one.
done = function(summary, latency, requests_)
  io.write(string.format("non-2xx responses: %d\n", summary.errors.status))
end
