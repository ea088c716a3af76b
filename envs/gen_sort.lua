-- gen-sort: sort a list. Difficulty d (1..6): 3 + 2d numbers, ascending or
-- descending; from level 3 on, negative numbers too; from level 5 on, sort
-- words by length, ties alphabetically.
-- Answer: "ANSWER: a, b, c". Reward 1 when exactly right; a permutation of the
-- input in the wrong order earns 0.5 times the fraction of neighbouring pairs
-- in the right order.

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

local function split(s)
  local out = {}
  for part in s:gmatch("[^,]+") do out[#out + 1] = part:match("^%s*(.-)%s*$") end
  return out
end

local function word()
  local w = {}
  for i = 1, math.random(2, 8) do w[i] = string.char(math.random(97, 122)) end
  return table.concat(w)
end

-- before(a, b) of an item's order, on the list's strings.
local function order(item)
  if item.kind == "words" then
    return function(a, b) return #a < #b or (#a == #b and a < b) end
  end
  local sign = item.kind == "descending" and -1 or 1
  return function(a, b) return sign * tonumber(a) < sign * tonumber(b) end
end

return {
  name = "gen-sort",
  description = "Procedural: sort numbers or words",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local n, list = 3 + 2 * d, {}
    local kind = d >= 5 and "words" or (math.random(2) == 1 and "ascending" or "descending")
    for i = 1, n do
      list[i] = kind == "words" and word() or tostring(math.random(d >= 3 and -999 or 0, 999))
    end
    local item = { difficulty = d, kind = kind, list = list }
    local sorted = { table.unpack(list) }
    table.sort(sorted, order(item))
    item.solution = table.concat(sorted, ", ")
    return item
  end,

  prompt = function(item)
    local how = item.kind == "words" and "by length (shortest first), breaking ties alphabetically"
                or "in " .. item.kind .. " order"
    return { { role = "user", content = "Sort this list " .. how .. ": " ..
      table.concat(item.list, ", ") ..
      ". Give the final answer on the last line as 'ANSWER: <items separated by commas>'." } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "sort", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    if a == nil then return 0, { reason = "no answer" } end
    local given, want = split(a), split(item.solution)
    if table.concat(given, ", ") == item.solution then return 1, { reason = "sorted" } end
    if #given ~= #want then return 0, { reason = "wrong length" } end
    local count = {}
    for _, v in ipairs(want) do count[v] = (count[v] or 0) + 1 end
    for _, v in ipairs(given) do
      if not count[v] or count[v] == 0 then return 0, { reason = "not a permutation" } end
      count[v] = count[v] - 1
    end
    local before, good = order(item), 0
    for i = 1, #given - 1 do
      if not before(given[i + 1], given[i]) then good = good + 1 end
    end
    return 0.5 * good / math.max(1, #given - 1), { reason = "wrong order" }
  end,
}
