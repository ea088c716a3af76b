-- gen-linear: a system of linear equations with integer coefficients and a
-- unique integer solution. Difficulty d (1..6): 1 + (d + 1) // 2 unknowns
-- (x, y, z, w), coefficients up to 3 + 2d in size.
-- Answer: "ANSWER: x=3, y=-2". Reward: the fraction of unknowns right (1 when
-- all are); an answer that names an unknown twice or an unknown that does not
-- exist earns 0.

local VARS = { "x", "y", "z", "w" }

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

-- Determinant of a small integer matrix (Laplace expansion; k <= 4).
local function det(m)
  local k = #m
  if k == 1 then return m[1][1] end
  local s = 0
  for c = 1, k do
    local minor = {}
    for r = 2, k do
      local row = {}
      for cc = 1, k do if cc ~= c then row[#row + 1] = m[r][cc] end end
      minor[#minor + 1] = row
    end
    s = s + (c % 2 == 1 and 1 or -1) * m[1][c] * det(minor)
  end
  return s
end

local function term(coef, var, first)
  local sign = coef < 0 and "-" or (first and "" or "+")
  local mag = math.abs(coef) == 1 and "" or tostring(math.abs(coef))
  return (first and sign or " " .. sign .. " ") .. mag .. var
end

return {
  name = "gen-linear",
  description = "Procedural: systems of linear equations with integer solutions",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local k, c = 1 + (d + 1) // 2, 3 + 2 * d
    local sol, m = {}, {}
    for i = 1, k do sol[i] = math.random(-10 - d, 10 + d) end
    repeat
      for r = 1, k do
        m[r] = {}
        for j = 1, k do
          local v = 0
          while v == 0 do v = math.random(-c, c) end
          m[r][j] = v
        end
      end
    until det(m) ~= 0
    local eqs, rhs, parts = {}, {}, {}
    for r = 1, k do
      local s, text = 0, {}
      for j = 1, k do
        s = s + m[r][j] * sol[j]
        text[j] = term(m[r][j], VARS[j], j == 1)
      end
      rhs[r] = s
      eqs[r] = table.concat(text) .. " = " .. s
    end
    for j = 1, k do parts[j] = VARS[j] .. "=" .. sol[j] end
    return { difficulty = d, unknowns = k, equations = eqs, values = sol,
             solution = table.concat(parts, ", ") }
  end,

  prompt = function(item)
    local names = table.concat(VARS, ", ", 1, item.unknowns)
    return { { role = "user", content = "Solve for " .. names .. ":\n" ..
      table.concat(item.equations, "\n") .. "\nGive the final answer on the last line as " ..
      "'ANSWER: " .. item.solution:gsub("%-?%d+", "<value>") .. "'." } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "linear", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    if a == nil then return 0, { reason = "no answer" } end
    local index, seen, right = {}, {}, 0
    for i = 1, item.unknowns do index[VARS[i]] = i end
    for name, value in a:gmatch("(%a+)%s*=%s*([^,;%s]+)") do
      local i = index[name:lower()]
      if not i or seen[i] then return 0, { reason = "bad or repeated unknown" } end
      seen[i] = true
      if envsrv.verify.numbers_equal(value, tostring(item.values[i])) then right = right + 1 end
    end
    return right / item.unknowns, { right = right }
  end,
}
