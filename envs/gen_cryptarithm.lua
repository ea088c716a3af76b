-- gen-cryptarithm: WORD + WORD = WORD with letters standing for digits.
-- Difficulty d (1..5): addends of 1 + d digits. Built from a real sum, so a
-- solution exists; it need not be unique.
-- Answer: "ANSWER: A=1, B=2, ..." for every letter. ANY assignment of distinct
-- digits to letters, with no word starting with 0, that makes the sum true
-- earns 1; else 0.

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

local function value(word, digit)
  local v = 0
  for ch in word:gmatch(".") do v = v * 10 + digit[ch] end
  return v
end

return {
  name = "gen-cryptarithm",
  description = "Procedural: cryptarithms (WORD + WORD = WORD); any valid assignment counts",
  levels = { min = 1, max = 5 },

  generate = function(seed, d)
    local lo, hi = 10 ^ d | 0, 10 ^ (d + 1) - 1 | 0
    local a, b = math.random(lo, hi), math.random(lo, hi)
    local s = a + b
    -- Letters for the digits that occur, in a random order.
    local pool = {}
    for i = 1, 26 do pool[i] = string.char(64 + i) end
    for i = 26, 2, -1 do local j = math.random(i) pool[i], pool[j] = pool[j], pool[i] end
    local letter, used = {}, 0
    local function spell(x)
      return (tostring(x):gsub("%d", function(c)
        if not letter[c] then used = used + 1 letter[c] = pool[used] end
        return letter[c]
      end))
    end
    local w1, w2, w3 = spell(a), spell(b), spell(s)
    -- The solution lists letters alphabetically, except that a letter whose
    -- value moves the sum (nonzero net place weight) comes last, so changing
    -- the last digit of the listing always breaks it.
    local weight, pairs_ = {}, {}
    local function add(word, sign)
      for i = 1, #word do
        local ch = word:sub(i, i)
        weight[ch] = (weight[ch] or 0) + sign * 10 ^ (#word - i)
      end
    end
    add(w1, 1) add(w2, 1) add(w3, -1)
    for c, l in pairs(letter) do pairs_[#pairs_ + 1] = { l, c } end
    table.sort(pairs_, function(x, y)
      local zx, zy = weight[x[1]] == 0, weight[y[1]] == 0
      if zx ~= zy then return zx end
      return x[1] < y[1]
    end)
    local parts = {}
    for i, p in ipairs(pairs_) do parts[i] = p[1] .. "=" .. p[2] end
    return { difficulty = d, words = { w1, w2, w3 }, solution = table.concat(parts, ", ") }
  end,

  prompt = function(item)
    local w = item.words
    return { { role = "user", content = string.format("Solve the cryptarithm %s + %s = %s: "
      .. "each letter stands for a different digit and no number starts with 0. Give the "
      .. "final answer on the last line as 'ANSWER: A=1, B=2, ...' with every letter.",
      w[1], w[2], w[3]) } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "cryptarithm", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    if a == nil then return 0, { reason = "no answer" } end
    local digit, taken = {}, {}
    for l, v in a:upper():gmatch("(%a)%s*=%s*(%d+)") do
      local x = tonumber(v)
      if #v ~= 1 or digit[l] or taken[x] then return 0, { reason = "letters need distinct digits" } end
      digit[l], taken[x] = x, true
    end
    for _, w in ipairs(item.words) do
      for ch in w:gmatch(".") do
        if not digit[ch] then return 0, { reason = "no digit for " .. ch } end
      end
      if digit[w:sub(1, 1)] == 0 then return 0, { reason = "leading zero" } end
    end
    local w = item.words
    if value(w[1], digit) + value(w[2], digit) == value(w[3], digit) then
      return 1, { reason = "valid" }
    end
    return 0, { reason = "sum is wrong" }
  end,
}
