-- gen-word_problems: a story built from sentence templates, one arithmetic
-- step per sentence. Difficulty d (1..6): d steps after the opening.
-- Answer: "ANSWER: <integer>". Reward 1 when exactly right, else 0.

local NAMES = { "Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jia" }
local THINGS = { "apples", "marbles", "stickers", "coins", "books", "cookies", "stamps", "shells" }

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

-- Each step: function(n, name, thing) -> sentence, new n; nil when it does not fit n.
local STEPS = {
  function(n, who, what)
    local k, m = math.random(2, 6), math.random(2, 12)
    return string.format("%s buys %d bags with %d %s in each.", who, k, m, what), n + k * m
  end,
  function(n, who, what)
    if n < 2 then return nil end
    local g = math.random(1, n - 1)
    return string.format("%s gives %d %s to a friend.", who, g, what), n - g
  end,
  function(n, who, what)
    return string.format("Then the number of %s %s has doubles.", what, who), n * 2
  end,
  function(n, who, what)
    local parts = {}
    for p = 2, 6 do if n % p == 0 and n // p > 0 then parts[#parts + 1] = p end end
    if #parts == 0 then return nil end
    local p = parts[math.random(#parts)]
    return string.format("%s splits the %s equally among %d boxes and keeps only one box.",
                         who, what, p), n // p
  end,
  function(n, who, what)
    local k = math.random(3, 30)
    return string.format("A neighbour gives %s %d more %s.", who, k, what), n + k
  end,
}

return {
  name = "gen-word_problems",
  description = "Procedural: multi-step word problems from templates",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local who, what = NAMES[math.random(#NAMES)], THINGS[math.random(#THINGS)]
    local n = math.random(5, 40)
    local story = { string.format("%s has %d %s.", who, n, what) }
    for _ = 1, d do
      local sentence, nn
      repeat sentence, nn = STEPS[math.random(#STEPS)](n, who, what) until sentence
      story[#story + 1] = sentence
      n = nn
    end
    story[#story + 1] = string.format("How many %s does %s have now?", what, who)
    return { difficulty = d, story = table.concat(story, " "), solution = tostring(n) }
  end,

  prompt = function(item)
    return { { role = "user", content = item.story ..
      " Give the final answer on the last line as 'ANSWER: <integer>'." } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "word_problems", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    local given = a and a:gsub("[,%s]", "")
    local ok = given ~= nil and given:match("^%-?%d+$") ~= nil and
               math.tointeger(tonumber(given)) == math.tointeger(tonumber(item.solution))
    return ok and 1 or 0, { given = a and utf8.len(a) and a or envsrv.json.null }
  end,
}
