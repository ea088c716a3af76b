-- A shop assistant task that needs two tool calls in sequence: look the
-- product up by name (to learn its code), then ask for a quote with that
-- code (the shop's discount rules are hidden in the tool). The catalogue is
-- generated from the item's seed, so every item is a different shop.
-- Reward 1 for the right total, which only a quote with the right code and
-- quantity gives away.

local NAMES = { "kettle", "lamp", "teapot", "blanket", "mug", "clock", "vase", "rug" }
local COLOURS = { "blue", "green", "red", "white", "black", "yellow" }

-- The shop of one item: products with codes and prices, and the order asked for.
local function shop(item)
  math.randomseed(item.seed)
  local products, used = {}, {}
  while #products < 5 do
    local name = COLOURS[math.random(#COLOURS)] .. " " .. NAMES[math.random(#NAMES)]
    if not used[name] then
      used[name] = true
      products[#products + 1] = { name = name, code = string.format("P-%04d", math.random(0, 9999)),
                                  cents = math.random(5, 80) * 25 }
    end
  end
  local wanted = products[math.random(#products)]
  return products, wanted, math.random(2, 24)
end

-- Total in cents: 10% off from 10 units, 20% off from 20 (hidden from the model).
local function total_cents(cents, qty)
  local off = qty >= 20 and 20 or qty >= 10 and 10 or 0
  return cents * qty * (100 - off) // 100
end

local function dollars(cents) return string.format("%d.%02d", cents // 100, cents % 100) end

local function opening(item)
  local _, wanted, qty = shop(item)
  return {
    { role = "system", content = "You are a shop assistant. Use the tools: find_product(name) gives "
      .. "a product's code, quote(code, quantity) gives the price of an order. Call them with "
      .. "<tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>. When you know the total, "
      .. "reply 'Answer: <dollars>' without a tool call." },
    { role = "user", content = string.format("I need %d of the %s. How much is that in total?", qty,
                                             wanted.name) },
  }
end

return {
  name = "dialogue_tools",
  description = "Look a product up, then get a quote: two tool calls in sequence, shops from seeds",
  dataset = { test = "data/dialogue_tools/test.jsonl" },
  id_field = "id",
  limits = { max_turns = 6, max_chars = 20000 },

  tools = {
    { name = "find_product", description = "Find a product by name; gives its code and unit price",
      parameters = { type = "object", required = { "name" }, additionalProperties = false,
                     properties = { name = { type = "string" } } },
      run = function(args, state)
        for _, p in ipairs(state.products) do
          if p.name == args.name:lower() then return { code = p.code, unit_price = dollars(p.cents) } end
        end
        error("no product named '" .. args.name .. "'", 0)
      end },
    { name = "quote", description = "Price of an order, discounts included",
      parameters = { type = "object", required = { "code", "quantity" }, additionalProperties = false,
                     properties = { code = { type = "string" },
                                    quantity = { type = "integer", minimum = 1, maximum = 1000 } } },
      run = function(args, state)
        for _, p in ipairs(state.products) do
          if p.code == args.code then
            state.quoted = state.quoted or {}
            state.quoted[#state.quoted + 1] = args.code .. " x" .. args.quantity
            return { total = dollars(total_cents(p.cents, args.quantity)) }
          end
        end
        error("unknown product code '" .. args.code .. "'", 0)
      end },
  },

  prompt = opening,
  answer = function(item)
    local _, wanted, qty = shop(item)
    return dollars(total_cents(wanted.cents, qty))
  end,

  reset = function(item, state)
    state.products = shop(item)
    return opening(item)
  end,

  step = function(item, state, action)
    local _, wanted, qty = shop(item)
    local want = dollars(total_cents(wanted.cents, qty))
    local got = envsrv.verify.extract_number(action)
    local right = got ~= nil and envsrv.verify.numbers_equal(got, want)
    return { reward = right and 1 or 0, done = true,
             info = { correct = right, expected = want, quotes = state.quoted or {} } }
  end,
}
