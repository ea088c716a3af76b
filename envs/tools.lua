-- Single-turn function calling over data in the Berkeley Function Calling
-- Leaderboard's format (BFCL v4: simple_python, multiple, parallel,
-- parallel_multiple). The model sees the functions in a system prompt, in
-- the Hermes / Qwen tool format, and answers with <tool_call> blocks (or
-- any format envsrv.verify.tool_calls reads); its calls are matched against
-- the possible answers with BFCL's AST rules.
--
--   envsrv --env tools --data tools=/path/to/bfcl   (BFCL_v4_*.json + possible_answer/)
--
-- Item ids are BFCL's ("simple_python_0"); splits are the categories. An
-- inline item is a question record with its answer in `ground_truth`.

-- Set to true for partial credit: the fraction of calls and parameters right.
local PARTIAL = false

-- BFCL's docs say "dict", "float", "tuple" and "any" where JSON Schema (and
-- so the chat templates) say "object", "number", "array" and nothing.
local TYPES = { dict = "object", float = "number", tuple = "array" }

local function json_schema(s)
  if type(s) ~= "table" then return s end
  local out = {}
  for k, v in pairs(s) do
    if k == "type" and type(v) == "string" then
      if v ~= "any" then out.type = TYPES[v] or v end
    elseif k == "properties" then
      out.properties = {}
      for name, p in pairs(v) do out.properties[name] = json_schema(p) end
    elseif k == "items" then
      out.items = json_schema(v)
    else
      out[k] = v
    end
  end
  return out
end

-- The item's functions as OpenAI tools: { type = "function", function = {...} }.
local function openai_tools(item)
  local tools = {}
  for i, f in ipairs(item["function"]) do
    tools[i] = { type = "function", ["function"] = {
      name = f.name, description = f.description, parameters = json_schema(f.parameters) } }
  end
  return tools
end

local function system_prompt(item)
  local lines = {}
  for i, t in ipairs(openai_tools(item)) do lines[i] = envsrv.json.encode(t) end
  return "You are a helpful assistant that can call functions.\n\n# Tools\n\n"
    .. "You may call one or more functions to assist with the user query.\n\n"
    .. "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    .. table.concat(lines, "\n") .. "\n</tools>\n\n"
    .. "For each function call, return a json object with function name and arguments "
    .. "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    .. '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
end

return {
  name = "tools",
  description = "Function calling on BFCL-format data (AST match; simple, multiple, parallel)",
  dataset = {
    simple_python = "data/tools/BFCL_v4_simple_python.json",
    multiple = "data/tools/BFCL_v4_multiple.json",
    parallel = "data/tools/BFCL_v4_parallel.json",
    parallel_multiple = "data/tools/BFCL_v4_parallel_multiple.json",
  },
  -- A --data folder holds BFCL_v4_<category>.json question files and, in
  -- possible_answer/, answer files of the same names: joined by id.
  data_format = { files = "BFCL_v4_*.json", join = "possible_answer", join_key = "id" },
  default_split = "simple_python",
  id_field = "id",
  params = { partial_credit = PARTIAL, format = "hermes" },

  tools = openai_tools,

  prompt = function(item)
    local messages = { { role = "system", content = system_prompt(item) } }
    for _, turn in ipairs(item.question) do
      for _, m in ipairs(turn) do messages[#messages + 1] = { role = m.role, content = m.content } end
    end
    return messages
  end,

  answer = function(item) return item.ground_truth end,

  metadata = function(item)
    local category = (item.id or "inline"):gsub("_%d+$", ""):gsub("_sample$", "")
    return { category = category, functions = #item["function"], calls = #item.ground_truth }
  end,

  reward = function(item, completion)
    return envsrv.verify.bfcl(completion, item["function"], item.ground_truth, { partial = PARTIAL })
  end,
}
