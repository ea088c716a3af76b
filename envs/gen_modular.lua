-- gen-modular: modular arithmetic. Difficulty d (1..6) sets the modulus size
-- (up to about 10^d + 7) and the task: a^e mod m, a modular inverse, or a
-- linear congruence a*x = b (mod m) asking for the smallest x >= 0.
-- Answer: "ANSWER: <integer>". Reward 1 when correct, else 0.

local function final(text)
  local ans
  for a in text:gmatch("ANSWER:[ \t]*([^\n]*)") do ans = a end
  return ans and ans:match("^(.-)%s*$")
end

local function gcd(a, b) while b ~= 0 do a, b = b, a % b end return a end

local function powmod(a, e, m)
  local r = 1 % m
  a = a % m
  while e > 0 do
    if e & 1 == 1 then r = r * a % m end
    a = a * a % m
    e = e >> 1
  end
  return r
end

local function inverse(a, m)  -- a and m coprime
  local t, nt, r, nr = 0, 1, m, a % m
  while nr ~= 0 do
    local q = r // nr
    t, nt = nt, t - q * nt
    r, nr = nr, r - q * nr
  end
  return t % m
end

return {
  name = "gen-modular",
  description = "Procedural: modular exponentiation, inverses and linear congruences",
  levels = { min = 1, max = 6 },

  generate = function(seed, d)
    local m = math.random(3, 10 ^ d + 7 | 0)
    local kind = math.random(3)
    local a = math.random(2, m + 5)
    if kind == 1 then
      local e = math.random(2, 10 ^ (d + 1) | 0)
      return { difficulty = d, text = string.format("What is %d^%d mod %d?", a, e, m),
               solution = tostring(powmod(a, e, m)) }
    end
    while gcd(a % m, m) ~= 1 do a = a + 1 end
    if kind == 2 then
      return { difficulty = d, text = string.format("Find the inverse of %d modulo %d: the "
               .. "integer x with 0 <= x < %d and %d*x = 1 (mod %d).", a, m, m, a, m),
               solution = tostring(inverse(a, m)) }
    end
    local b = math.random(0, m - 1)
    return { difficulty = d, text = string.format("Find the smallest integer x >= 0 with "
             .. "%d*x = %d (mod %d).", a, b, m), solution = tostring(b * inverse(a, m) % m) }
  end,

  prompt = function(item)
    return { { role = "user", content = item.text ..
      " Give the final answer on the last line as 'ANSWER: <integer>'." } }
  end,
  answer = function(item) return item.solution end,
  metadata = function(item) return { family = "modular", difficulty = item.difficulty } end,

  reward = function(item, completion)
    local a = final(completion)
    local ok = a ~= nil and a:match("^%d+$") ~= nil and
               math.tointeger(tonumber(a)) == math.tointeger(tonumber(item.solution))
    return ok and 1 or 0, { given = a and utf8.len(a) and a or envsrv.json.null }
  end,
}
