-- Patch: fix an issue in a small repository with a unified diff (SWE-style).
--
-- An item names a repository, a commit, the issue text and a test command:
--
--   {"id": "calc-add",
--    "repo": "https://host/org/repo" | "/path/to/repo" | {"files": {"src/calc.py": "..."}},
--    "commit": "<commit id, tag or branch>",   -- optional for inline repos
--    "issue": "add(2, 3) returns -1 ...",
--    "test_command": "python3 tests/test_calc.py",
--    "tests": ["test_add", "test_sub"],          -- optional: named tests
--    "test_files": ["tests/test_calc.py"],       -- optional: files a patch may not touch
--    "reward_mode": "all" | "fraction",          -- optional (else params.reward_mode)
--    "patch": "<a reference diff>"}              -- optional: shown as the answer
--
-- An inline repository ({"files": {path: content}}) becomes a real git
-- repository in the git cache, with one commit whose id depends only on the
-- files. The completion's diff (its last fenced code block, else the whole
-- text) is applied with libgit2 to the commit's tree; the patched tree is
-- unpacked in the sandbox's /work/repo, and the test command runs there with
-- bash. Reward: 1 when the command exits 0, else 0; with reward_mode
-- "fraction" and named tests, the fraction of them that the command reports
-- as passing, one line "PASS <name>" per passing test (a test also reported
-- "FAIL <name>", or not reported, has failed).
--
-- A diff that does not parse, does not apply, touches a path outside the
-- repository (absolute, "..", ".git"), makes a symlink, or changes one of the
-- item's test_files scores 0 with details.status "rejected" and the reason.
-- A sandbox that fails (INTERNAL_ERROR, EXEC_ERROR) fails the call: that is
-- never a wrong answer. The built-in sample tasks were written for envsrv.

local git, sandbox, extract = envsrv.git, envsrv.sandbox, envsrv.code.extract

local defaults = {
  reward_mode = "all",
  limits = { wall_ms = 20000, cpu_ms = 10000, memory_mb = 512, tmpfs_mb = 128 },
}

-- Unpacks the archive into /work/repo and runs the test command ($1) there.
local RUN = 'set -e; cd /work; mkdir repo; tar -xf repo.tar -C repo --no-same-owner; ' ..
            'rm -f repo.tar; cd repo; set +e; exec /bin/bash -c "$1"'

local function reward_mode(item)
  return item.reward_mode or defaults.reward_mode
end

-- Program output goes into details, which must convert to JSON: its last n
-- bytes, invalid UTF-8 bytes made '?'.
local clean = envsrv.text.clean

-- libgit2 reads git's diff format: a plain `diff -u` (no "diff --git" lines)
-- gets them added, one per "--- "/"+++ " pair, so either form works.
local function git_headers(diff)
  if diff:find("^diff %-%-git ") or diff:find("\ndiff %-%-git ") then return diff end
  local lines, out = {}, {}
  for line in (diff .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local function strip(p, prefix)
    if p == "/dev/null" then return nil end
    return (p:gsub("^" .. prefix .. "/", ""))
  end
  for i, line in ipairs(lines) do
    local old = line:match("^%-%-%- (%S+)")
    local new = lines[i + 1] and lines[i + 1]:match("^%+%+%+ (%S+)")
    if old and new then
      local o, n = strip(old, "a"), strip(new, "b")
      out[#out + 1] = "diff --git a/" .. (o or n) .. " b/" .. (n or o)
      if not o then out[#out + 1] = "new file mode 100644"
      elseif not n then out[#out + 1] = "deleted file mode 100644" end
    end
    out[#out + 1] = line
  end
  return table.concat(out, "\n")
end

local function judge(item, completion)
  local diff = git_headers(extract(completion))
  if not diff:find("\n%+%+%+ ") and not diff:find("^%+%+%+ ") then
    return 0, { status = "rejected", reason = "the completion contains no unified diff" }
  end
  local applied = git.apply{ repo = item.repo, commit = item.commit, diff = diff }
  if not applied.ok then
    return 0, { status = "rejected", reason = clean(applied.reason, 1000), commit = applied.commit }
  end
  for _, path in ipairs(applied.changed) do
    for _, protected in ipairs(item.test_files or {}) do
      if path == protected then
        return 0, { status = "rejected", commit = applied.commit,
                    reason = clean("the diff changes the test file '" .. path .. "'", 1000) }
      end
    end
  end
  local res = sandbox.run{
    argv = { "/bin/bash", "-c", RUN, "patch", item.test_command },
    files = { ["repo.tar"] = applied.archive },
    limits = defaults.limits,
  }
  if res.status == "INTERNAL_ERROR" or res.status == "EXEC_ERROR" then
    error("the sandbox failed: " .. res.status .. " " .. (res.message or ""))
  end
  local details = { commit = applied.commit, changed = applied.changed, exit_code = res.exit_code,
                    output = clean(res.stdout .. res.stderr, 2000) }
  local passed_all = res.status == "OK"
  details.status = passed_all and "passed" or (res.status == "RUNTIME_ERROR" and "failed" or res.status)
  if item.tests and #item.tests > 0 then
    local seen = {}
    for line in res.stdout:gmatch("[^\n]+") do
      local word, name = line:match("^(%u+)%s+(%S+)%s*$")
      if word == "PASS" and seen[name] == nil then seen[name] = true
      elseif word == "FAIL" then seen[name] = false end
    end
    local results, n_pass = {}, 0
    for _, name in ipairs(item.tests) do
      results[name] = seen[name] == true
      if results[name] then n_pass = n_pass + 1 end
    end
    details.tests = results
    if reward_mode(item) == "fraction" then
      return n_pass / #item.tests, details
    end
  end
  return passed_all and 1 or 0, details
end

local function listing(item)
  if type(item.repo) ~= "table" then
    return "The repository is " .. tostring(item.repo) .. " at commit " .. tostring(item.commit) .. ".\n"
  end
  local paths = {}
  for path in pairs(item.repo.files) do paths[#paths + 1] = path end
  table.sort(paths)
  local parts = { "The repository's files:\n" }
  for _, path in ipairs(paths) do
    parts[#parts + 1] = "\n" .. path .. ":\n```\n" .. item.repo.files[path] .. "```\n"
  end
  return table.concat(parts)
end

return {
  name = "patch",
  description = "Fix an issue in a small repository with a unified diff; its tests run in the sandbox",
  long_running = true,   -- runs tests in the sandbox: the server scores on its worker pool
  version = "1",
  dataset = { test = "data/patch/test.jsonl" },
  default_split = "test",
  id_field = "id",
  params = defaults,

  prompt = function(item)
    local text = "Fix this issue in the repository below.\n\nIssue: " .. item.issue .. "\n\n" ..
                 listing(item) .. "\nThe tests run with `" .. item.test_command .. "`. Reply with " ..
                 "a unified diff (as `git diff` prints it, paths relative to the repository's " ..
                 "root) in a ```diff code block."
    return { { role = "user", content = text } }
  end,

  metadata = function(item)
    return { repo = type(item.repo) == "table" and "inline" or item.repo, commit = item.commit,
             tests = item.tests }
  end,

  answer = function(item)
    return item.patch and ("```diff\n" .. item.patch .. "```") or nil
  end,

  reward = judge,
}
