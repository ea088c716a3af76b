-- A five-letter word game: after each guess the env marks every letter
-- G (right letter, right place), Y (in the word, elsewhere) or . (not in
-- it; repeated letters count as often as the word has them).
-- Reward 1 - (guesses - 1) / MAX_GUESSES on success, 0 otherwise.

local MAX_GUESSES = 6

-- "G", "Y", "." for each letter of guess against target (both lowercase).
local function feedback(guess, target)
  local marks, left = {}, {}
  for i = 1, 5 do
    local g, t = guess:sub(i, i), target:sub(i, i)
    if g == t then marks[i] = "G" else left[t] = (left[t] or 0) + 1 end
  end
  for i = 1, 5 do
    local g = guess:sub(i, i)
    if not marks[i] then
      if (left[g] or 0) > 0 then marks[i] = "Y"; left[g] = left[g] - 1 else marks[i] = "." end
    end
  end
  return table.concat(marks)
end

-- The last five-letter word of the reply.
local function last_word(text)
  local word
  for w in text:gmatch("%a+") do
    if #w == 5 then word = w:lower() end
  end
  return word
end

local function opening()
  return {
    { role = "system", content = "Guess the secret five-letter English word in at most "
      .. MAX_GUESSES .. " guesses. Reply with one word per turn. After each guess you get one "
      .. "mark per letter: G = right place, Y = in the word elsewhere, . = not in the word." },
    { role = "user", content = "Your first guess?" },
  }
end

return {
  name = "wordle",
  description = "Guess a five-letter word with per-letter feedback each turn",
  dataset = { test = "data/wordle/test.jsonl" },
  id_field = "id",
  limits = { max_turns = MAX_GUESSES },

  prompt = opening,
  answer = function(item) return item.target end,

  reset = function(item, state)
    state.guesses = {}
    return opening()
  end,

  step = function(item, state, action)
    local guess = last_word(action)
    if not guess then
      return { observation = { { role = "user", content = "Reply with a five-letter word." } },
               reward = 0, info = { guess = envsrv.json.null } }
    end
    state.guesses[#state.guesses + 1] = guess
    local marks = feedback(guess, item.target)
    if marks == "GGGGG" then
      return { reward = 1 - (#state.guesses - 1) / MAX_GUESSES, done = true,
               info = { guess = guess, guesses = #state.guesses } }
    end
    return { observation = { { role = "user", content = guess:upper() .. " " .. marks } },
             reward = 0, info = { guess = guess, marks = marks } }
  end,
}
