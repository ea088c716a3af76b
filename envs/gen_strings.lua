-- gen-strings: apply a chain of string transformations. Difficulty d (1..6):
-- d transformations on a word of 4 + d lowercase letters.
-- Answer: "ANSWER: <string>". Reward 1 when exact; a string of the right
-- length earns 0.5 times the fraction of positions that match.

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

local function caesar(s, k)
  return (s:gsub("%a", function(c)
    local base = c:match("%l") and 97 or 65
    return string.char((c:byte() - base + k) % 26 + base)
  end))
end

-- Each: description (with %d for k where it takes one), function(s, k).
local OPS = {
  { "reverse it", function(s) return s:reverse() end },
  { "convert it to upper case", function(s) return s:upper() end },
  { "convert it to lower case", function(s) return s:lower() end },
  { "rotate it left by %d characters (move the first %d characters to the end)",
    function(s, k) k = k % #s return s:sub(k + 1) .. s:sub(1, k) end },
  { "shift every letter forward by %d in the alphabet, wrapping z to a",
    function(s, k) return caesar(s, k) end },
  { "remove every vowel (a, e, i, o, u in either case)",
    function(s) local r = s:gsub("[aeiouAEIOU]", "") return #r > 0 and r or s end },
  { "double every character", function(s) return (s:gsub(".", "%0%0")) end },
}

return {
  name = "gen-strings",
  description = "Procedural: apply a chain of string transformations",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local chars = {}
    for i = 1, 4 + d do chars[i] = string.char(math.random(97, 122)) end
    local s = table.concat(chars)
    local item = { difficulty = d, input = s, steps = {} }
    for i = 1, d do
      local op = OPS[math.random(#OPS)]
      local k = math.random(1, 5)
      if op[1] == OPS[6][1] and s:gsub("[aeiouAEIOU]", "") == "" then op = OPS[1] end
      if op[1] == OPS[7][1] and #s > 40 then op = OPS[1] end
      item.steps[i] = string.format(op[1], k, k)
      s = op[2](s, k)
    end
    item.solution = s
    return item
  end,

  prompt = function(item)
    local lines = { "Start with the string '" .. item.input .. "'. Then, in order:" }
    for i, step in ipairs(item.steps) do lines[#lines + 1] = i .. ". " .. step .. "." end
    lines[#lines + 1] = "Give the resulting string on the last line as 'ANSWER: <string>'."
    return { { role = "user", content = table.concat(lines, "\n") } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "strings", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    if a == item.solution then return 1, { match = true } end
    if a == nil or #a ~= #item.solution then return 0, { match = false } end
    local same = 0
    for i = 1, #a do if a:byte(i) == item.solution:byte(i) then same = same + 1 end end
    return 0.5 * same / #a, { match = false }
  end,
}
