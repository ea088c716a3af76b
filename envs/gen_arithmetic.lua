-- gen-arithmetic: evaluate a random integer expression (+, -, *, parentheses).
-- Difficulty d (1..8) gives d + 1 operands of up to 1 + d // 3 digits.
-- Answer: the integer value on a line "ANSWER: <integer>". Reward 1 or 0.

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

-- A random expression tree over `n` operands: returns text, value.
local function expr(n, maxv)
  if n == 1 then
    local v = math.random(1, maxv)
    return tostring(v), v
  end
  local left = math.random(1, n - 1)
  local lt, lv = expr(left, maxv)
  local rt, rv = expr(n - left, maxv)
  local op = ({ "+", "-", "*" })[math.random(3)]
  if op == "*" and math.abs(lv * rv) > 10^9 then op = "+" end
  local v = op == "+" and lv + rv or op == "-" and lv - rv or lv * rv
  if left > 1 then lt = "(" .. lt .. ")" end
  if n - left > 1 then rt = "(" .. rt .. ")" end
  return lt .. " " .. op .. " " .. rt, v
end

return {
  name = "gen-arithmetic",
  description = "Procedural: evaluate a multi-step integer expression",
  levels = { min = 1, max = 8 },

  generate = function(seed, d)
    local text, value = expr(d + 1, 10 ^ (1 + d // 3) - 1 | 0)
    return { expression = text, difficulty = d, solution = tostring(value) }
  end,

  prompt = function(item)
    return { { role = "user", content = "Compute the value of " .. item.expression ..
      ". Show your work, then give the final answer on the last line as 'ANSWER: <integer>'." } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "arithmetic", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    local given = a and a:gsub("[,%s]", "")
    local ok = given ~= nil and given:match("^%-?%d+$") ~= nil and
               math.tointeger(tonumber(given)) == math.tointeger(tonumber(item.solution))
    return ok and 1 or 0, { given = a and utf8.len(a) and a or envsrv.json.null }
  end,
}
