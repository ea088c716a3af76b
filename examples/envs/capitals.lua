-- A small custom environment: name the capital city of a country.
-- Run it with:  envsrv --env ./examples/envs/capitals.lua
-- Its items live next to it in capitals.jsonl, one JSON object per line:
--   {"id": "france", "country": "France", "capital": "Paris", "aliases": []}

local function normalize(s)
  return (s:lower():gsub("[%p%s]+", " "))
end

-- True when `name` appears in `text` as whole words.
local function mentions(text, name)
  return (" " .. normalize(text) .. " "):find(" " .. normalize(name) .. " ", 1, true) ~= nil
end

return {
  name = "capitals",
  description = "Name the capital city of a country; reward 1 when the completion names it",
  dataset = { test = "capitals.jsonl" },
  id_field = "id",                       -- the records carry their own ids
  params = { accepts_aliases = true },

  prompt = function(item)
    return {
      { role = "system", content = "Answer with the name of the city only." },
      { role = "user", content = "What is the capital of " .. item.country .. "?" },
    }
  end,

  answer = function(item) return item.capital end,

  metadata = function(item) return { country = item.country } end,

  reward = function(item, completion)
    local names = { item.capital }
    for _, alias in ipairs(item.aliases or {}) do names[#names + 1] = alias end
    for _, name in ipairs(names) do
      if mentions(completion, name) then
        return 1.0, { matched = name }
      end
    end
    return 0.0, { matched = envsrv.json.null }
  end,
}
