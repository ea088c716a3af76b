-- Arithmetic word problems where the model may call a calculator tool.
-- Multi-turn: each assistant turn either calls the tool (envsrv runs it and
-- answers with a tool message) or gives the final answer, which ends the
-- episode. Reward: 1 for the right answer, minus COST_PER_CALL for each
-- calculator call (never below 0); an item may set its own "cost_per_call".

local COST_PER_CALL = 0.05

-- expression := sum; sum := product {(+|-) product}; product := unary {(*|/) unary};
-- unary := -unary | number | ( sum ). Errors go back to the model as tool errors.
local function evaluate(text)
  if #text > 200 then error("expression longer than 200 characters", 0) end
  local s, pos = text:gsub("[%s,]", ""), 1
  local sum
  local function peek() return s:sub(pos, pos) end
  local function unary()
    local c = peek()
    if c == "-" then pos = pos + 1; return -unary() end
    if c == "(" then
      pos = pos + 1
      local v = sum()
      if peek() ~= ")" then error("missing ')' at position " .. pos, 0) end
      pos = pos + 1
      return v
    end
    local num = s:match("^%d+%.?%d*", pos) or s:match("^%.%d+", pos)
    if not num then error("expected a number at position " .. pos, 0) end
    pos = pos + #num
    return tonumber(num)
  end
  local function product()
    local v = unary()
    while peek() == "*" or peek() == "/" do
      local op = peek(); pos = pos + 1
      local r = unary()
      if op == "*" then v = v * r
      elseif r == 0 then error("division by zero", 0)
      else v = v / r end
    end
    return v
  end
  sum = function()
    local v = product()
    while peek() == "+" or peek() == "-" do
      local op = peek(); pos = pos + 1
      if op == "+" then v = v + product() else v = v - product() end
    end
    return v
  end
  local v = sum()
  if pos <= #s then error("unexpected '" .. peek() .. "' at position " .. pos, 0) end
  if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
  return string.format("%.10g", v)
end

local function opening(item)
  return {
    { role = "system", content = "Solve the problem. You may call the calculator tool, one call "
      .. "per <tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"...\"}}</tool_call>. "
      .. "When you know the result, reply with 'Answer: <number>' and no tool call." },
    { role = "user", content = item.question },
  }
end

return {
  name = "calculator",
  description = "Arithmetic word problems with a calculator tool; each call costs a little",
  dataset = { test = "data/calculator/test.jsonl" },
  id_field = "id",
  params = { cost_per_call = COST_PER_CALL },
  limits = { max_turns = 8, max_chars = 20000 },

  tools = {
    { name = "calculator",
      description = "Evaluate an arithmetic expression with + - * / and parentheses",
      parameters = { type = "object", additionalProperties = false, required = { "expression" },
                     properties = { expression = { type = "string", description = "e.g. (48*17)-529" } } },
      run = function(args, state)
        local value = evaluate(args.expression)   -- a call that fails costs nothing
        state.calls = state.calls + 1
        return value
      end },
  },

  prompt = opening,
  answer = function(item) return item.answer end,

  reset = function(item, state)
    state.calls = 0
    return opening(item)
  end,

  step = function(item, state, action)
    local got = envsrv.verify.extract_number(action)
    local right = got ~= nil and envsrv.verify.numbers_equal(got, item.answer)
    local cost = (item.cost_per_call or COST_PER_CALL) * state.calls
    return { reward = right and math.max(0, 1 - cost) or 0, done = true,
             info = { correct = right, calls = state.calls, answer = got } }
  end,
}
