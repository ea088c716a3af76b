-- gen-sat: random 3-SAT with a planted solution. Difficulty d (1..8):
-- 3 + 2d variables and about 4.2 clauses per variable (near the hard ratio).
-- Answer: "ANSWER: 1 -2 3 ..." giving every variable once, positive for true
-- and negative for false. ANY satisfying assignment earns 1; a complete
-- assignment that is not satisfying earns 0.5 times the fraction of satisfied
-- clauses.

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

return {
  name = "gen-sat",
  description = "Procedural: 3-SAT with a planted solution; any satisfying assignment counts",
  levels = { min = 1, max = 8 },

  generate = function(seed, d)
    local n = 3 + 2 * d
    local m = (42 * n + 5) // 10
    local planted, clauses = {}, {}
    for v = 1, n do planted[v] = math.random(2) == 1 end
    for c = 1, m do
      local clause
      repeat
        local vars = {}
        for v = 1, n do vars[v] = v end
        clause = {}
        local sat = false
        for i = 1, 3 do
          local j = math.random(i, n)
          vars[i], vars[j] = vars[j], vars[i]
          local positive = math.random(2) == 1
          clause[i] = positive and vars[i] or -vars[i]
          sat = sat or (positive == planted[vars[i]])
        end
      until sat
      clauses[c] = clause
    end
    local lits = {}
    for v = 1, n do lits[v] = planted[v] and tostring(v) or tostring(-v) end
    return { difficulty = d, variables = n, clauses = clauses, solution = table.concat(lits, " ") }
  end,

  prompt = function(item)
    local cs = {}
    for i, c in ipairs(item.clauses) do
      local lits = {}
      for j, l in ipairs(c) do lits[j] = (l < 0 and "NOT x" or "x") .. math.abs(l) end
      cs[i] = "(" .. table.concat(lits, " OR ") .. ")"
    end
    return { { role = "user", content = string.format("Find values for x1..x%d that make "
      .. "every clause true:\n%s\nGive the final answer on the last line as 'ANSWER: "
      .. "<literals>', listing every variable once: i for xi = true, -i for xi = false "
      .. "(e.g. 'ANSWER: 1 -2 3').", item.variables, table.concat(cs, " AND\n")) } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "sat", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    if a == nil then return 0, { reason = "no answer" } end
    local value, count = {}, 0
    for tok in a:gmatch("%S+") do
      local l = tok:match("^%-?%d+$") and math.tointeger(tonumber(tok))
      local v = l and math.abs(l)
      if not v or v < 1 or v > item.variables or value[v] ~= nil then
        return 0, { reason = "bad or repeated literal" }
      end
      value[v] = l > 0
      count = count + 1
    end
    if count ~= item.variables then return 0, { reason = "incomplete assignment" } end
    local good = 0
    for _, c in ipairs(item.clauses) do
      for _, l in ipairs(c) do
        if value[math.abs(l)] == (l > 0) then good = good + 1 break end
      end
    end
    if good == #item.clauses then return 1, { reason = "satisfied" } end
    return 0.5 * good / #item.clauses, { reason = "unsatisfied", satisfied = good }
  end,
}
