-- gen-sudoku: fill a Latin-square-with-boxes puzzle. Difficulty d (1..6):
-- levels 1-2 are 4x4 (2x2 boxes), 3-4 are 6x6 (2x3 boxes), 5-6 are 9x9 (3x3
-- boxes); the higher level of each pair blanks more cells.
-- Answer: "ANSWER:" followed by the grid, one row per line, digits only (any
-- separators are ignored). ANY completion that keeps the givens and has every
-- digit once per row, column and box earns 1 (puzzles need not have a unique
-- solution); a grid that keeps the givens but breaks rules earns 0.5 times the
-- fraction of rows, columns and boxes that are right.

local SHAPES = { { 2, 2 }, { 2, 2 }, { 2, 3 }, { 2, 3 }, { 3, 3 }, { 3, 3 } }

local function shuffled(n)
  local t = {}
  for i = 1, n do t[i] = i end
  for i = n, 2, -1 do local j = math.random(i) t[i], t[j] = t[j], t[i] end
  return t
end

-- Number of groups (rows, columns, boxes) of grid g (1-based, n*n) that hold
-- each digit once.
local function good_groups(g, n, br, bc)
  local good = 0
  local function check(cells)
    local seen = {}
    for _, v in ipairs(cells) do
      if v < 1 or v > n or seen[v] then return end
      seen[v] = true
    end
    good = good + 1
  end
  for r = 0, n - 1 do
    local row, col = {}, {}
    for c = 0, n - 1 do row[#row + 1] = g[r * n + c + 1] col[#col + 1] = g[c * n + r + 1] end
    check(row)
    check(col)
  end
  for b = 0, n - 1 do
    local r0, c0, box = (b // br) * br, (b % br) * bc, {}
    for r = r0, r0 + br - 1 do for c = c0, c0 + bc - 1 do box[#box + 1] = g[r * n + c + 1] end end
    check(box)
  end
  return good
end

return {
  name = "gen-sudoku",
  description = "Procedural: 4x4, 6x6 and 9x9 sudoku; any valid completion counts",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local br, bc = SHAPES[d][1], SHAPES[d][2] -- box rows, box columns
    local n = br * bc
    -- A valid grid from the standard pattern, then shuffled: digits, rows within
    -- bands, bands, columns within stacks, stacks.
    local digits, rows, cols = shuffled(n), {}, {}
    for _, band in ipairs(shuffled(bc)) do
      for _, r in ipairs(shuffled(br)) do rows[#rows + 1] = (band - 1) * br + r - 1 end
    end
    for _, stack in ipairs(shuffled(br)) do
      for _, c in ipairs(shuffled(bc)) do cols[#cols + 1] = (stack - 1) * bc + c - 1 end
    end
    local full, puzzle = {}, {}
    for i, r in ipairs(rows) do
      for j, c in ipairs(cols) do
        local v = (bc * (r % br) + r // br + c) % n + 1
        full[(i - 1) * n + j] = digits[v]
      end
    end
    local blank = math.floor(n * n * (d % 2 == 1 and 0.4 or 0.55))
    local order = shuffled(n * n)
    for i = 1, n * n do puzzle[i] = full[i] end
    for i = 1, blank do puzzle[order[i]] = 0 end
    local function rows_text(g)
      local lines = {}
      for r = 0, n - 1 do lines[r + 1] = table.concat(g, "", r * n + 1, r * n + n) end
      return table.concat(lines, "\n")
    end
    return { difficulty = d, size = n, box_rows = br, box_cols = bc,
             puzzle = rows_text(puzzle), solution = rows_text(full) }
  end,

  prompt = function(item)
    return { { role = "user", content = string.format("Fill in this %dx%d sudoku (0 marks an "
      .. "empty cell). Each row, each column and each %dx%d box must hold the digits 1 to %d "
      .. "once.\n%s\nGive the final answer as 'ANSWER:' followed by the completed grid, one "
      .. "row of %d digits per line.", item.size, item.size, item.box_rows, item.box_cols,
      item.size, item.puzzle, item.size) } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "sudoku", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local at
    for p in completion:gmatch("()ANSWER:") do at = p end
    if not at then return 0, { reason = "no answer" } end
    local n, grid = item.size, {}
    for ch in completion:sub(at + 7):gmatch("%d") do
      grid[#grid + 1] = tonumber(ch)
      if #grid == n * n then break end
    end
    if #grid < n * n then return 0, { reason = "grid has fewer than " .. n * n .. " digits" } end
    local i = 0
    for ch in item.puzzle:gmatch("%d") do
      i = i + 1
      if ch ~= "0" and tonumber(ch) ~= grid[i] then return 0, { reason = "changes a given" } end
    end
    local good = good_groups(grid, n, item.box_rows, item.box_cols)
    if good == 3 * n then return 1, { reason = "valid" } end
    return 0.5 * good / (3 * n), { reason = "breaks the rules", good_groups = good }
  end,
}
