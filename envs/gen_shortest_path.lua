-- gen-shortest_path: a shortest path in a small weighted undirected graph.
-- Difficulty d (1..6): 3 + 2d nodes (A, B, C, ...), a random spanning tree
-- plus d + 1 extra edges, weights 1 to 9.
-- Answer: "ANSWER: A D C F", the nodes of a path from the start to the goal.
-- ANY shortest path earns 1; a valid but longer path earns 0.5 * best / length.

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

local function node(i) return string.char(64 + i) end

-- Weight of the edge between nodes a and b (names), or nil.
local function weight(item, a, b)
  for _, e in ipairs(item.edges) do
    if (e[1] == a and e[2] == b) or (e[1] == b and e[2] == a) then return e[3] end
  end
  return nil
end

return {
  name = "gen-shortest_path",
  description = "Procedural: shortest paths in small weighted graphs; any shortest path counts",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local n, edges, has = 3 + 2 * d, {}, {}
    local function add(i, j)
      local key = math.min(i, j) * 100 + math.max(i, j)
      if i == j or has[key] then return end
      has[key] = true
      edges[#edges + 1] = { node(i), node(j), math.random(1, 9) }
    end
    for i = 2, n do add(i, math.random(1, i - 1)) end
    for _ = 1, d + 1 do add(math.random(n), math.random(n)) end
    -- Dijkstra (n <= 15: the simple O(n^2) form) from node 1 to node n.
    local dist, prev, done = { [1] = 0 }, {}, {}
    for _ = 1, n do
      local u
      for v = 1, n do
        if not done[v] and dist[v] and (u == nil or dist[v] < dist[u]) then u = v end
      end
      done[u] = true
      for _, e in ipairs(edges) do
        local a, b = e[1]:byte() - 64, e[2]:byte() - 64
        local v = a == u and b or b == u and a or nil
        if v and (dist[v] == nil or dist[u] + e[3] < dist[v]) then
          dist[v], prev[v] = dist[u] + e[3], u
        end
      end
    end
    local path, v = {}, n
    while v do table.insert(path, 1, node(v)) v = prev[v] end
    return { difficulty = d, nodes = n, start = node(1), goal = node(n), edges = edges,
             distance = dist[n], solution = table.concat(path, " ") }
  end,

  prompt = function(item)
    local es = {}
    for i, e in ipairs(item.edges) do es[i] = string.format("%s-%s (%d)", e[1], e[2], e[3]) end
    return { { role = "user", content = string.format("An undirected graph has nodes A to %s "
      .. "and these edges with their lengths: %s. Find a shortest path from %s to %s. Give the "
      .. "final answer on the last line as 'ANSWER: <nodes separated by spaces>', e.g. "
      .. "'ANSWER: A C %s'.", item.goal, table.concat(es, ", "), item.start, item.goal, item.goal) } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "shortest_path", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    if a == nil then return 0, { reason = "no answer" } end
    local path = {}
    for tok in a:upper():gmatch("[^%s,%-]+") do path[#path + 1] = tok end
    if #path < 2 or #path > 64 or path[1] ~= item.start or path[#path] ~= item.goal then
      return 0, { reason = "must go from " .. item.start .. " to " .. item.goal }
    end
    local length = 0
    for i = 1, #path - 1 do
      local w = weight(item, path[i], path[i + 1])
      if not w then return 0, { reason = "step " .. i .. " follows no edge" } end
      length = length + w
    end
    if length == item.distance then return 1, { reason = "shortest", length = length } end
    return 0.5 * item.distance / length, { reason = "longer", length = length }
  end,
}
