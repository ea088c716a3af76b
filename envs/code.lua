-- Code: Python functions checked by their tests (HumanEval and MBPP formats).
--
-- HumanEval records are {"task_id", "prompt", "entry_point",
-- "canonical_solution", "test"}: the model completes the function in
-- `prompt`, and the test's check(candidate) must pass. MBPP records are
-- {"task_id", "text", "code", "test_list", "test_setup_code",
-- "challenge_test_list"}: the model writes the function named in the tests,
-- and each `assert` of test_list is one test. The format is told by the
-- fields. The program is the completion's last fenced code block, or the
-- whole completion; for HumanEval it runs after the prompt, so a completion
-- may be either the whole function or just its body.
--
-- MBPP's harder challenge_test_list is an optional test set: the item field
-- test_set (else params.test_set) is "standard" (test_list, the default),
-- "challenge" (challenge_test_list) or "all" (both).
--
-- Reward: 1 when every test passes, else 0; with reward_mode = "fraction"
-- (an item field, else params.reward_mode) the fraction of tests passed.
-- details.status is "passed", or why not: "failed" (an assertion),
-- "error" (an exception), "timeout", "crashed", "load_error" (the program
-- did not even load), "no_result", or a sandbox status word such as
-- "TIME_LIMIT_EXCEEDED". A sandbox that fails (INTERNAL_ERROR, EXEC_ERROR)
-- fails the call: that is never a wrong answer.
--
-- The tests cannot be faked from inside the candidate's program: the harness
-- below is the main program, and it never runs candidate code itself. It
-- forks a child that loads the candidate and answers calls; the tests run in
-- the harness, and everything the child returns crosses a pipe as plain data
-- (numbers, strings, lists, dicts, sets, tuples; other objects stay in the
-- child behind handles), read back with a parser that builds nothing else.
-- So exit(0), os._exit(), patched builtins or assert, raising SystemExit,
-- printing "PASSED" and objects whose __eq__ always says yes all come out as
-- failures. The result line carries a random nonce that only the harness
-- reads (from stdin, after every child is gone), and the child's stdout is
-- its stderr, so it cannot print a result either. Each test has a time limit;
-- a hung or crashed child is replaced for the next test. The built-in sample
-- problems were written for envsrv; serve the real sets with
-- `--data code=/path/to/HumanEval.jsonl` or `--data code=/path/to/mbpp.jsonl`.

local sandbox, extract, json = envsrv.sandbox, envsrv.code.extract, envsrv.json

local HARNESS = [==[
# Only built-in modules: `json`, `ast` and `signal` would import re and enum,
# which cost more start-up time than all the rest of the harness.
import os, sys, select, time, builtins, math, gc
import _ast
import _signal as signal
del sys.path[0]
sys.set_int_max_str_digits(0)
MAX_MSG = 64 << 20

def enc(v, handle, depth=0):
    if depth > 200:
        raise ValueError('value nested too deeply')
    t = type(v)
    if v is None or t is bool or t is int or t is str or t is bytes:
        return repr(v)
    if t is float:
        return repr(v) if math.isfinite(v) else "F('%r')" % v
    if isinstance(v, Remote):
        return object.__getattribute__(v, '_h')
    d = depth + 1
    if isinstance(v, bool):
        return repr(bool(v))
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        return enc(float(v), handle, d)
    if isinstance(v, complex):
        return 'C(%s,%s)' % (enc(float(v.real), handle, d), enc(float(v.imag), handle, d))
    if isinstance(v, str):
        return repr(str.__str__(v))
    if isinstance(v, (bytes, bytearray)):
        return repr(bytes(v))
    if isinstance(v, tuple):
        return '(' + ''.join(enc(x, handle, d) + ',' for x in tuple.__iter__(v)) + ')'
    if isinstance(v, list):
        return '[' + ','.join(enc(x, handle, d) for x in list.__iter__(v)) + ']'
    if isinstance(v, dict):
        return '{' + ','.join(enc(k, handle, d) + ':' + enc(x, handle, d)
                              for k, x in dict.items(v)) + '}'
    if isinstance(v, frozenset):
        return 'FS([' + ','.join(enc(x, handle, d) for x in frozenset.__iter__(v)) + '])'
    if isinstance(v, set):
        return 'S([' + ','.join(enc(x, handle, d) for x in set.__iter__(v)) + '])'
    return handle(v)

def dec(text, resolve):
    def walk(n):
        if isinstance(n, _ast.Constant) and type(n.value) in (int, float, complex, str, bytes, bool, type(None)):
            return n.value
        if isinstance(n, _ast.UnaryOp) and isinstance(n.op, _ast.USub) and isinstance(n.operand, _ast.Constant) \
                and type(n.operand.value) in (int, float):
            return -n.operand.value
        if isinstance(n, _ast.Tuple):
            return tuple(walk(x) for x in n.elts)
        if isinstance(n, _ast.List):
            return [walk(x) for x in n.elts]
        if isinstance(n, _ast.Dict):
            return {walk(k): walk(x) for k, x in zip(n.keys, n.values)}
        if isinstance(n, _ast.Call) and isinstance(n.func, _ast.Name) and not n.keywords:
            f, a = n.func.id, [walk(x) for x in n.args]
            if f == 'F' and len(a) == 1 and a[0] in ('inf', '-inf', 'nan'):
                return float(a[0])
            if f == 'C' and len(a) == 2 and all(type(x) is float for x in a):
                return complex(a[0], a[1])
            if f == 'S' and len(a) == 1 and type(a[0]) is list:
                return set(a[0])
            if f == 'FS' and len(a) == 1 and type(a[0]) is list:
                return frozenset(a[0])
            if f in ('R', 'G') and len(a) == 1 and type(a[0]) in (int, str):
                return resolve(f, a[0])
        raise ValueError('bad value from the other side')
    return walk(compile(text, '<value>', 'eval', _ast.PyCF_ONLY_AST).body)

def send(fd, text):
    data = text.encode('utf-8', 'surrogatepass')
    data = len(data).to_bytes(4, 'big') + data
    while data:
        data = data[os.write(fd, data):]

# BaseException: a test's own `except Exception` must not swallow them.
class Timeout(BaseException):
    pass

class Crash(BaseException):
    pass

# Bytes read but not yet returned, per fd: one read usually brings a whole
# message (often the next one too), so a message costs one system call.
bufs = {}

def recv(fd, deadline):
    buf = bufs.get(fd, b'')
    while True:
        if len(buf) >= 4:
            n = int.from_bytes(buf[:4], 'big')
            if n > MAX_MSG:
                raise Crash()
            if len(buf) >= 4 + n:
                bufs[fd] = buf[4 + n:]
                return buf[4:4 + n].decode('utf-8', 'surrogatepass')
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                bufs[fd] = buf
                raise Timeout()
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise Crash()
        buf += chunk

def clean(s):
    # Valid UTF-8 for the JSON result: lone surrogates and the like become '?'.
    return s[:300].encode('utf-8', 'replace').decode('utf-8')

def short(e):
    try:
        return clean(type(e).__name__ + ': ' + str(e))
    except BaseException:
        return clean(type(e).__name__)

# ---- the candidate's side (a forked child) ----

def child_main(rfd, wfd, source):
    objs = []
    def handle(v):
        objs.append(v)
        return 'R(%d)' % (len(objs) - 1)
    ns = {'__name__': 'candidate', '__builtins__': builtins}
    def resolve(kind, key):
        return objs[key] if kind == 'R' else ns[key]
    try:
        exec(compile(source, 'candidate.py', 'exec'), ns)
        names = {}
        for k, v in list(ns.items()):
            if k.startswith('__'):
                continue
            if isinstance(v, type(sys)):
                names[k] = ('M', v.__name__)
            else:
                names[k] = ('G', k)
        reply = enc(('loaded', names), handle)
    except BaseException as e:
        reply = enc(('load_error', short(e)), handle)
    send(wfd, reply)
    while True:
        msg = recv(rfd, None)
        try:
            op, tgt, args, kw = dec(msg, resolve)
            if op == 'call':
                v = tgt(*args, **kw)
            elif op == 'getattr':
                v = getattr(tgt, args[0])
            elif op == 'setattr':
                v = setattr(tgt, args[0], args[1])
            elif op == 'list':
                v = list(tgt)
            elif op == 'len':
                v = len(tgt)
            elif op == 'getitem':
                v = tgt[args[0]]
            elif op == 'contains':
                v = args[0] in tgt
            elif op == 'bool':
                v = bool(tgt)
            elif op == 'str':
                v = str(tgt)
            elif op == 'repr':
                v = repr(tgt)
            else:
                v = None
            reply = enc(('ok', v), handle)
        except BaseException as e:
            try:
                reply = enc(('err', short(e)), handle)
            except BaseException:
                reply = "('err','unprintable error')"
        send(wfd, reply)

# ---- the trusted side ----

class CandidateError(Exception):
    pass

class Child:
    def __init__(self, source):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        # Objects that exist now need no collection in the child: without
        # this its first collection would touch (and copy) every page.
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w1)
                os.close(r2)
                bufs.clear()
                gc.enable()
                null = os.open('/dev/null', os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(2, 1)
                for s in SIGNALS:
                    signal.signal(s, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                child_main(r1, w2, source)
            finally:
                os._exit(0)
        os.close(r1)
        os.close(w2)
        self.pid, self.w, self.r = pid, w1, r2
        self.broken = False

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.w)
        os.close(self.r)
        bufs.pop(self.r, None)

child = None
deadline = None

def resolve_p(kind, key):
    return Remote(('R(%d)' if kind == 'R' else 'G(%r)') % key)

def fail_handle(v):
    raise TypeError('cannot pass %s to the candidate' % type(v).__name__)

def rpc(op, h, args=(), kw=None):
    if child.broken:
        raise Crash()
    child.broken = True
    try:
        send(child.w, '(%r,%s,%s,%s)' % (op, h, enc(tuple(args), fail_handle), enc(kw or {}, fail_handle)))
    except OSError:
        raise Crash()
    reply = recv(child.r, deadline)
    child.broken = False
    kind, v = dec(reply, resolve_p)
    if kind == 'ok':
        return v
    raise CandidateError(v)

class Remote:
    __slots__ = ('_h',)
    def __init__(self, h):
        object.__setattr__(self, '_h', h)
    def __call__(self, *a, **k):
        return rpc('call', self._h, a, k)
    def __getattr__(self, n):
        if n.startswith('__'):
            raise AttributeError(n)
        return rpc('getattr', self._h, (n,))
    def __setattr__(self, n, v):
        rpc('setattr', self._h, (n, v))
    def __iter__(self):
        return iter(rpc('list', self._h))
    def __len__(self):
        return rpc('len', self._h)
    def __getitem__(self, k):
        return rpc('getitem', self._h, (k,))
    def __contains__(self, x):
        return rpc('contains', self._h, (x,))
    def __bool__(self):
        return rpc('bool', self._h)
    def __str__(self):
        return rpc('str', self._h)
    def __repr__(self):
        return rpc('repr', self._h)

def to_json(v):
    if isinstance(v, str):
        return '"' + ''.join('\\u%04x' % ord(c) if ord(c) < 0x20 or c in '"\\' else c
                             for c in v) + '"'
    if isinstance(v, dict):
        return '{' + ','.join(to_json(k) + ':' + to_json(x) for k, x in v.items()) + '}'
    if isinstance(v, list):
        return '[' + ','.join(to_json(x) for x in v) + ']'
    return repr(v)

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGALRM, signal.SIGTSTP, signal.SIGTTIN,
           signal.SIGTTOU)

def main():
    global child, deadline
    # The harness makes few objects and no cycles worth collecting.
    gc.disable()
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    # spec.json is JSON without true/false/null, which reads the same as a
    # Python literal.
    with open('spec.json', encoding='utf-8') as f:
        spec = dec(f.read(), None)
    with open('candidate.py', encoding='utf-8', errors='surrogateescape') as f:
        source = f.read()
    timeout = float(spec.get('timeout', 10))
    out = {'load': 'ok', 'tests': []}
    tns = {'__name__': '__test__'}
    trusted = spec.get('trusted') or ''
    try:
        exec(compile(trusted, 'tests.py', 'exec'), tns)
    except BaseException as e:
        out = {'harness_error': 'the problem\'s own code failed: ' + short(e)}
        spec['tests'] = []
    names = None
    for test in spec['tests']:
        res = {'status': 'passed'}
        deadline = time.monotonic() + timeout
        try:
            if child is None:
                child = Child(source)
                kind, v = dec(recv(child.r, deadline), resolve_p)
                if kind != 'loaded':
                    out['load'] = 'error'
                    out['load_error'] = clean(str(v))
                    break
                if names is None:
                    names = v
                    for k, (how, ref) in sorted(names.items()):
                        if k in tns or (k in builtins.__dict__ and k != spec.get('entry_point')):
                            continue
                        if how == 'M' and ref in sys.stdlib_module_names:
                            __import__(ref)
                            tns[k] = sys.modules[ref]
                        elif how == 'G':
                            tns[k] = Remote('G(%r)' % ref)
                    if spec.get('entry_point'):
                        tns[spec['entry_point']] = Remote('G(%r)' % spec['entry_point'])
                    setup = spec.get('setup') or ''
                    if setup:
                        exec(compile(setup, 'setup.py', 'exec'), tns)
            exec(compile(test, 'test.py', 'exec'), tns)
        except AssertionError as e:
            res = {'status': 'failed', 'error': short(e)}
        except Timeout:
            res = {'status': 'timeout'}
        except Crash:
            res = {'status': 'crashed'}
        except CandidateError as e:
            res = {'status': 'error', 'error': clean(str(e))}
        except Exception as e:
            res = {'status': 'error', 'error': short(e)}
        if res['status'] in ('timeout', 'crashed') and child is not None:
            if names is None:
                out['load'] = res['status']
            child.kill()
            child = None
        if out['load'] != 'ok':
            break
        out['tests'].append(res)
    if child is not None:
        child.kill()
    nonce = sys.stdin.read().strip()
    sys.stdout.write('\n%s %s\n' % (nonce, to_json(out)))
    sys.stdout.flush()
    # Nothing left to clean up: skip the interpreter's teardown.
    os._exit(0)

main()
]==]

local defaults = { reward_mode = "all", timeout_s = 10, memory_mb = 1024, test_set = "standard" }

-- Compiling the harness costs more CPU than the rest of it together, so each
-- Lua state compiles it once, in the sandbox, and keeps the code object
-- (marshalled) for its later runs, whose main program only loads it. The
-- cache holds the output of our own code alone, so it is as trusted as the
-- source, and it cannot change a reward.
local LOADER = "import marshal\nexec(marshal.loads(open('harness.bin', 'rb').read()))\n"
local COMPILE = "import marshal, sys\n" ..
  "sys.stdout.buffer.write(marshal.dumps(compile(open('harness.py').read(), 'harness.py', 'exec')))\n"
local compiled_harness

-- Program output goes into details, which must convert to JSON: its last n
-- bytes, invalid UTF-8 bytes made '?'.
local clean = envsrv.text.clean

local function harness()
  if not compiled_harness then
    local res = sandbox.run {
      language = "python", code = COMPILE, files = { ["harness.py"] = HARNESS },
      limits = { cpu_ms = 10000, wall_ms = 20000, memory_mb = 256, output_bytes = 16 << 20 },
    }
    if res.status ~= "OK" then
      error("cannot compile the test harness: sandbox " .. res.status .. ": " .. res.message ..
            " " .. clean(res.stderr, 300))
    end
    compiled_harness = res.stdout
  end
  return compiled_harness
end

local function kind_of(item)
  if type(item.prompt) == "string" and type(item.entry_point) == "string"
     and type(item.test) == "string" then
    return "humaneval"
  end
  if type(item.text) == "string" and type(item.test_list) == "table" then
    return "mbpp"
  end
  error("item has neither HumanEval fields (prompt, entry_point, test) " ..
        "nor MBPP fields (text, test_list)")
end

local function fence(code)
  return "```python\n" .. code .. (code:sub(-1) == "\n" and "" or "\n") .. "```"
end

-- The function an MBPP item's tests call: the first `assert name(`.
local function mbpp_entry(item)
  for _, t in ipairs(item.test_list) do
    local name = type(t) == "string" and t:match("^%s*assert%s+[%(%s]*([%a_][%w_]*)%s*%(")
    if name and name ~= "set" and name ~= "sorted" and name ~= "math" and name ~= "abs" then
      return name
    end
  end
  return nil
end

local function setting(item, name)
  local v = item[name]
  if v == nil then v = defaults[name] end
  return v
end

-- Runs the candidate against the item's tests; returns reward, details.
local function judge(item, completion)
  local kind = kind_of(item)
  local src = extract(completion)
  local candidate, spec
  if kind == "humaneval" then
    local ep = item.entry_point
    if not ep:match("^[%a_][%w_]*$") then
      error("entry_point '" .. ep .. "' is not a Python name")
    end
    -- A whole function replaces the prompt's signature and docstring; a bare body continues them.
    if src:find("def%s+" .. ep .. "%s*%(") then
      candidate = item.prompt .. "\n" .. src
    else
      candidate = item.prompt .. src
    end
    spec = { trusted = item.prompt .. "\n" .. item.test, setup = "",
             tests = { "check(" .. ep .. ")" }, entry_point = ep }
  else
    local set = setting(item, "test_set")
    local lists
    if set == "standard" then
      lists = { "test_list" }
    elseif set == "challenge" then
      lists = { "challenge_test_list" }
    elseif set == "all" then
      lists = { "test_list", "challenge_test_list" }
    else
      error("test_set must be \"standard\", \"challenge\" or \"all\"")
    end
    local tests = {}
    for _, name in ipairs(lists) do
      local list = item[name]
      if type(list) ~= "table" then error(name .. " is missing or not a list") end
      for i, t in ipairs(list) do
        if type(t) ~= "string" then error(name .. "[" .. i .. "] is not a string") end
        tests[#tests + 1] = t
      end
      if #list == 0 then error(name .. " is empty") end
    end
    spec = { trusted = "", setup = item.test_setup_code or "", tests = tests,
             entry_point = mbpp_entry(item) }
    candidate = src
  end
  local timeout = setting(item, "timeout_s")
  if type(timeout) ~= "number" or timeout <= 0 or timeout > 60 then
    error("timeout_s must be a number of seconds in (0, 60]")
  end
  spec.timeout = timeout
  local budget = math.floor(#spec.tests * timeout * 1000) + 10000
  local nonce = sandbox.nonce()
  local res = sandbox.run {
    language = "python",
    code = LOADER,
    stdin = nonce .. "\n",
    files = { ["harness.bin"] = harness(), ["candidate.py"] = candidate,
              ["spec.json"] = json.encode(spec) },
    limits = { cpu_ms = budget, wall_ms = budget, memory_mb = setting(item, "memory_mb"),
               output_bytes = 1 << 20, processes = 64 },
  }
  if res.status == "INTERNAL_ERROR" or res.status == "EXEC_ERROR" then
    error("sandbox " .. res.status .. ": " .. res.message)
  end
  local details = { sandbox = res.status, cpu_ms = res.cpu_ms, wall_ms = res.wall_ms,
                    tier = res.tier, warm = res.warm, total = #spec.tests, passed = 0 }
  local at = res.stdout:find("\n" .. nonce .. " ", 1, true)
  if not at then
    -- The harness was killed (by the candidate, or a limit): no result.
    details.status = res.status == "OK" and "no_result" or res.status
    details.stderr = clean(res.stderr, 2000)
    return 0.0, details
  end
  local line = res.stdout:sub(at + #nonce + 2):match("^[^\n]*")
  local out = json.decode(line)
  if out.harness_error then error(out.harness_error) end
  local status = "passed"
  if out.load ~= "ok" then
    status = out.load == "error" and "load_error" or out.load
    details.load_error = out.load_error
  end
  details.tests = {}
  for i = 1, #spec.tests do
    local t = out.tests[i] or { status = "not_run" }
    details.tests[i] = t
    if t.status == "passed" then
      details.passed = details.passed + 1
    elseif status == "passed" then
      status = t.status
    end
  end
  if status ~= "passed" then details.stderr = clean(res.stderr, 2000) end
  details.status = status
  if setting(item, "reward_mode") == "fraction" then
    return details.passed / details.total, details
  end
  return status == "passed" and 1.0 or 0.0, details
end

return {
  name = "code",
  description = "Python functions (HumanEval/MBPP); reward 1 when all tests pass in the sandbox",
  long_running = true,   -- runs code in the sandbox: the server scores it on its worker pool
  version = "1",
  dataset = { test = "data/code/test.jsonl" },
  default_split = "test",
  params = defaults,

  prompt = function(item)
    local text
    if kind_of(item) == "humaneval" then
      text = "Complete the following Python function. Reply with the whole function " ..
             "in a ```python code block.\n\n" .. fence(item.prompt)
    else
      local tests = {}
      for i, t in ipairs(item.test_list) do tests[i] = tostring(t) end
      text = "You are an expert Python programmer, and here is your task: " .. item.text ..
             " Your code should pass these tests:\n\n" .. table.concat(tests, "\n") ..
             "\n\nReply with the code in a ```python code block."
    end
    return { { role = "user", content = text } }
  end,

  metadata = function(item)
    return { task_id = item.task_id, format = kind_of(item) }
  end,

  -- The reference solution, shown with ?include_answer=1.
  answer = function(item)
    if kind_of(item) == "humaneval" then return item.prompt .. item.canonical_solution end
    return item.code
  end,

  reward = judge,
}
