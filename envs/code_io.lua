-- Code I/O: programs that read stdin and write stdout, judged on test cases
-- (competitive-programming format).
--
-- Each record is {"statement", "tests": [{"input", "output",
-- "float_tolerance"?}], "solution"?, "time_limit_s"?, "memory_mb"?}. The
-- program is the completion's last fenced code block (or the whole
-- completion); its language comes from the fence's tag: python (the default),
-- c or cpp. C and C++ are compiled once, in the sandbox, and the binary runs
-- once per test. Each test is its own sandboxed run with the test's input on
-- stdin; the output matches when it has the same whitespace-separated tokens
-- as the expected output, where a token that is a number may differ by
-- float_tolerance (absolute, or relative to the expected value) when the test
-- or item gives one. Nothing the program prints can mark a test passed: only
-- its output is compared, outside the sandbox.
--
-- Reward: 1 when every test passes (judging stops at the first failure),
-- else 0; with reward_mode = "fraction" (an item field, else
-- params.reward_mode) every test runs and the reward is the fraction passed.
-- details.status is "passed", "wrong_answer", "compile_error",
-- "unsupported_language", or the sandbox's word for the first failing test
-- in lower case ("time_limit_exceeded", "runtime_error", ...). A sandbox that
-- fails (INTERNAL_ERROR, EXEC_ERROR) fails the call: never a wrong answer.
-- The built-in sample problems were written for envsrv.

local sandbox, extract = envsrv.sandbox, envsrv.code.extract

local defaults = { reward_mode = "all", time_limit_s = 2, memory_mb = 256 }

local languages = {
  python = "python", py = "python", python3 = "python", py3 = "python",
  c = "c", cpp = "cpp", ["c++"] = "cpp", cxx = "cpp", cc = "cpp",
}

-- The same flags as the sandbox's own language table (docs/sandbox.md). The
-- binary leaves on stdout; the compiler's messages go to stderr.
local compilers = {
  c = { file = "main.c", cmd = "/usr/bin/gcc -std=gnu17 -O2 -pipe -o main main.c -lm" },
  cpp = { file = "main.cpp", cmd = "/usr/bin/g++ -std=gnu++17 -O2 -pipe -o main main.cpp" },
}

local function setting(item, name)
  local v = item[name]
  if v == nil then v = defaults[name] end
  return v
end

-- Program output goes into details, which must convert to JSON: its last n
-- bytes, invalid UTF-8 bytes made '?'.
local clean = envsrv.text.clean

local function failed_run(res)
  if res.status == "INTERNAL_ERROR" or res.status == "EXEC_ERROR" then
    error("sandbox " .. res.status .. ": " .. res.message)
  end
end

-- A decimal number token ("-12", "3.5", "1e-9"), as a float; else nil.
local function number(tok)
  if tok:match("^[+-]?%d+%.?%d*[eE]?[+-]?%d*$") or tok:match("^[+-]?%.%d+[eE]?[+-]?%d*$") then
    return tonumber(tok)
  end
  return nil
end

-- Whether `got` has the same tokens as `want`; the first difference otherwise.
local function same_output(got, want, tol)
  local gi = got:gmatch("%S+")
  local n = 0
  for w in want:gmatch("%S+") do
    n = n + 1
    local g = gi()
    if g == nil then return false, "output ends after " .. (n - 1) .. " tokens" end
    if g ~= w then
      local a, b = number(g), number(w)
      if not (tol and a and b and math.abs(a - b) <= tol * math.max(1.0, math.abs(b))) then
        return false, "token " .. n .. ": expected '" .. w:sub(1, 50) .. "', got '" .. g:sub(1, 50) .. "'"
      end
    end
  end
  if gi() ~= nil then return false, "extra output after " .. n .. " tokens" end
  return true
end

local function check_item(item)
  if type(item.tests) ~= "table" or #item.tests == 0 then
    error("item has no tests (a list of {input, output})")
  end
  for i, t in ipairs(item.tests) do
    if type(t) ~= "table" or type(t.input) ~= "string" or type(t.output) ~= "string" then
      error("tests[" .. i .. "] must be {input = string, output = string}")
    end
  end
end

local function judge(item, completion)
  check_item(item)
  local limit = setting(item, "time_limit_s")
  if type(limit) ~= "number" or limit <= 0 or limit > 60 then
    error("time_limit_s must be a number of seconds in (0, 60]")
  end
  local fraction = setting(item, "reward_mode") == "fraction"
  local src, tag = extract(completion)
  local lang = languages[tag or "python"]
  local details = { language = lang or tag, total = #item.tests, passed = 0, tests = {} }
  if not lang then
    details.status = "unsupported_language"
    return 0.0, details
  end
  local limits = { cpu_ms = math.floor(limit * 1000), wall_ms = math.floor(limit * 2000) + 1000,
                   memory_mb = setting(item, "memory_mb") }

  -- The request for one test: the script, or the binary built once.
  local base
  if lang == "python" then
    base = { language = "python", code = src }
  else
    local cc = compilers[lang]
    local res = sandbox.run {
      argv = { "/bin/bash", "-c", cc.cmd .. " 1>&2 && cat main" },
      files = { [cc.file] = src },
      limits = { cpu_ms = 20000, wall_ms = 30000, memory_mb = 1024, output_bytes = 64 << 20 },
    }
    failed_run(res)
    if res.status ~= "OK" then
      details.status = "compile_error"
      details.compile_output = clean(res.stderr, 2000)
      return 0.0, details
    end
    base = { argv = { "/work/main" },
             files = { main = { content = res.stdout, executable = true } } }
  end

  local status = "passed"
  for i, t in ipairs(item.tests) do
    local res = sandbox.run {
      language = base.language, code = base.code, argv = base.argv, files = base.files,
      stdin = t.input, limits = limits,
    }
    failed_run(res)
    local r = { status = "passed", cpu_ms = res.cpu_ms }
    if res.status ~= "OK" then
      r.status = res.status:lower()
      r.stderr = clean(res.stderr, 500)
    else
      local ok, why = same_output(res.stdout, t.output, t.float_tolerance or item.float_tolerance)
      if not ok then r.status, r.diff = "wrong_answer", why end
    end
    details.tests[i] = r
    if r.status == "passed" then
      details.passed = details.passed + 1
    else
      if status == "passed" then status = r.status end
      if not fraction then break end
    end
  end
  details.status = status
  if fraction then return details.passed / details.total, details end
  return status == "passed" and 1.0 or 0.0, details
end

return {
  name = "code_io",
  description = "stdin/stdout programs (Python, C, C++) judged on test cases in the sandbox",
  long_running = true,   -- runs code in the sandbox: the server scores it on its worker pool
  version = "1",
  dataset = { test = "data/code_io/test.jsonl" },
  default_split = "test",
  params = defaults,

  prompt = function(item)
    local examples = {}
    for i = 1, math.min(2, #item.tests) do
      local t = item.tests[i]
      examples[#examples + 1] = "Input:\n" .. t.input .. "Output:\n" .. t.output
    end
    return { { role = "user", content =
      "Solve the following problem. The program reads standard input and writes standard output. " ..
      "Reply with the complete program in one fenced code block tagged python, c or cpp.\n\n" ..
      item.statement .. "\n\nExamples:\n\n" .. table.concat(examples, "\n") } }
  end,

  metadata = function(item) return { tests = #item.tests } end,

  answer = function(item) return item.solution end,

  reward = judge,
}
