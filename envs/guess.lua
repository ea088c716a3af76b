-- Guess the number: the env answers "higher" or "lower" until the model
-- finds it. Reward 1 for a first-turn hit, less for every extra turn
-- (1 - (turns - 1) / MAX_TURNS); 0 when the turns run out.

local MAX_TURNS = 10

local function opening(item)
  return {
    { role = "system", content = "Play a guessing game. Reply with one whole number per turn." },
    { role = "user", content = string.format("I am thinking of a whole number from %d to %d. "
      .. "Guess it.", item.low, item.high) },
  }
end

local function say(text) return { { role = "user", content = text } } end

return {
  name = "guess",
  description = "Guess a number in a range; the env says higher or lower; reward by turns used",
  dataset = { test = "data/guess/test.jsonl" },
  id_field = "id",
  limits = { max_turns = MAX_TURNS },

  prompt = opening,
  answer = function(item) return item.secret end,

  reset = function(item, state)
    state.turns = 0
    return opening(item)
  end,

  step = function(item, state, action)
    state.turns = state.turns + 1
    local value = envsrv.verify.extract_number(action)
    local guess = value and math.tointeger(tonumber(value))
    if not guess then
      return { observation = say("That is not a whole number. Guess again."), reward = 0,
               info = { guess = envsrv.json.null } }
    end
    if guess == item.secret then
      return { reward = 1 - (state.turns - 1) / MAX_TURNS, done = true,
               info = { guess = guess, turns = state.turns } }
    end
    local hint = guess < item.secret and "Higher." or "Lower."
    return { observation = say(hint), reward = 0, info = { guess = guess, hint = hint } }
  end,
}
