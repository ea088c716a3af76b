-- gen-countdown: reach a target with +, -, *, / and parentheses, using each
-- given number at most once (24-game style). Difficulty d (1..6): 3 + d // 2
-- numbers, and targets built from more of them at higher levels.
-- Answer: "ANSWER: <expression>". Any expression that hits the target with the
-- allowed numbers earns 1; a valid expression that misses earns
-- 0.5 * (1 - |miss| / 10) when it is within 10 of the target, else 0.
-- Arithmetic is exact (rationals), so 7/2*2 is 7.

local POOL = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 50, 75, 100 }

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

local function gcd(a, b) a, b = math.abs(a), math.abs(b) while b ~= 0 do a, b = b, a % b end return a end
local function frac(n, d)
  if d < 0 then n, d = -n, -d end
  local g = gcd(n, d)
  if g > 1 then n, d = n // g, d // g end
  return { n, d }
end

-- Parses and evaluates an expression: returns the value {num, den} and the list
-- of numbers used, or nil and a reason. Grammar: e = t {(+|-) t}; t = f {(*|/) f};
-- f = number | "(" e ")".
local function evaluate(s)
  if #s > 200 then return nil, "too long" end
  local pos, used = 1, {}
  local function skip() pos = s:find("[^ \t]", pos) or #s + 1 end
  local expr
  local function factor()
    skip()
    if s:sub(pos, pos) == "(" then
      pos = pos + 1
      local v, why = expr()
      if not v then return nil, why end
      skip()
      if s:sub(pos, pos) ~= ")" then return nil, "missing )" end
      pos = pos + 1
      return v
    end
    local digits = s:match("^%d+", pos)
    if not digits or #digits > 3 then return nil, "expected a number" end
    pos = pos + #digits
    used[#used + 1] = tonumber(digits)
    return frac(tonumber(digits), 1)
  end
  local function chain(sub, ops, apply)
    local v, why = sub()
    if not v then return nil, why end
    while true do
      skip()
      local op = s:sub(pos, pos)
      if not ops:find(op, 1, true) or op == "" then return v end
      pos = pos + 1
      local w, why2 = sub()
      if not w then return nil, why2 end
      v = apply(op, v, w)
      if not v then return nil, "division by zero" end
      if math.abs(v[1]) > 1e12 or v[2] > 1e12 then return nil, "numbers too large" end
    end
  end
  local function term()
    return chain(factor, "*/", function(op, a, b)
      if op == "*" then return frac(a[1] * b[1], a[2] * b[2]) end
      if b[1] == 0 then return nil end
      return frac(a[1] * b[2], a[2] * b[1])
    end)
  end
  expr = function()
    return chain(term, "+-", function(op, a, b)
      local sign = op == "+" and 1 or -1
      return frac(a[1] * b[2] + sign * b[1] * a[2], a[2] * b[2])
    end)
  end
  local v, why = expr()
  skip()
  if v and pos <= #s then return nil, "unexpected character at " .. pos end
  return v, v and used or why
end

return {
  name = "gen-countdown",
  description = "Procedural: reach a target number with + - * / from given numbers",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local n = 3 + d // 2
    while true do
      local nums = {}
      for i = 1, n do nums[i] = POOL[math.random(d <= 2 and 10 or #POOL)] end
      -- Combine a random subset, left to right with random operators, keeping
      -- every intermediate value a positive integer.
      local k = math.min(n, 2 + math.random(0, d))
      local order = {}
      for i = 1, n do order[i] = i end
      for i = n, 2, -1 do local j = math.random(i) order[i], order[j] = order[j], order[i] end
      local text, value = tostring(nums[order[1]]), nums[order[1]]
      for i = 2, k do
        local x, op = nums[order[i]], ({ "+", "-", "*", "/" })[math.random(4)]
        if op == "-" and value - x <= 0 then op = "+" end
        if op == "/" and (value % x ~= 0 or x == 1) then op = "*" end
        if op == "*" and x == 1 then op = "+" end
        value = op == "+" and value + x or op == "-" and value - x or
                op == "*" and value * x or value // x
        text = (i > 2 and "(" .. text .. ")" or text) .. " " .. op .. " " .. x
      end
      if value >= 10 and value <= 999 then
        return { difficulty = d, numbers = nums, target = value, solution = text }
      end
    end
  end,

  prompt = function(item)
    local nums = {}
    for i, v in ipairs(item.numbers) do nums[i] = tostring(v) end
    return { { role = "user", content = "Using the numbers " .. table.concat(nums, ", ") ..
      " (each at most once; you need not use all), and + - * / with parentheses, make " ..
      item.target .. ". Give the final answer on the last line as 'ANSWER: <expression>'." } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "countdown", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    if a == nil then return 0, { reason = "no answer" } end
    local v, used = evaluate(a)
    if not v then return 0, { reason = used } end
    local left = {}
    for _, x in ipairs(item.numbers) do left[x] = (left[x] or 0) + 1 end
    for _, x in ipairs(used) do
      if not left[x] or left[x] == 0 then return 0, { reason = "number " .. x .. " not allowed" } end
      left[x] = left[x] - 1
    end
    if v[2] == 1 and v[1] == item.target then return 1, { reason = "hit" } end
    local miss = math.abs(v[1] / v[2] - item.target)
    return miss < 10 and 0.5 * (1 - miss / 10) or 0, { reason = "missed", miss = miss }
  end,
}
