-- gen-base: convert a number between bases. Difficulty d (1..6): the number
-- has up to 2 + 2d decimal-sized digits; levels 1-3 use bases 2, 8, 10 and 16,
-- levels 4-6 any base from 2 to 36. Digits above 9 are letters (a = 10).
-- Answer: "ANSWER: <digits>" (case and leading zeros ignored). Reward 1 or 0.

local DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

local function to_base(n, b)
  if n == 0 then return "0" end
  local out = {}
  while n > 0 do
    local r = n % b
    table.insert(out, 1, DIGITS:sub(r + 1, r + 1))
    n = n // b
  end
  return table.concat(out)
end

local function pick_base(d)
  if d <= 3 then return ({ 2, 8, 10, 16 })[math.random(4)] end
  return math.random(2, 36)
end

return {
  name = "gen-base",
  description = "Procedural: convert numbers between bases 2 to 36",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local n = math.random(0, 10 ^ math.min(2 + 2 * d, 15) | 0)
    local from, to = pick_base(d), pick_base(d)
    while to == from do to = pick_base(d) end
    return { difficulty = d, number = to_base(n, from), from = from, to = to,
             solution = to_base(n, to) }
  end,

  prompt = function(item)
    return { { role = "user", content = string.format("Convert %s from base %d to base %d. "
      .. "Use the letters a-z for digits 10-35. Give the final answer on the last line as "
      .. "'ANSWER: <digits>'.", item.number, item.from, item.to) } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "base", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    local given = a and a:lower():gsub("^0+(.)", "%1")
    return given == item.solution and 1 or 0, { given = a and utf8.len(a) and a or envsrv.json.null }
  end,
}
