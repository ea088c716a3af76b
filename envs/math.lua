-- MATH: competition mathematics (Hendrycks et al., 2021), e.g. MATH-500.
--
-- Each record is {"problem", "solution", "answer", "subject", "level",
-- "unique_id"}. The model sees the problem and is asked for a \boxed{} answer;
-- the reward is 1 when that answer is mathematically equivalent to the
-- reference (exact rationals, surds, pi, intervals, sets, tuples, matrices,
-- text and choice letters: see envsrv.verify.math), else 0. The built-in
-- sample problems were written for envsrv; serve MATH-500 with
-- `--data math=/path/to/math500/test.jsonl`.

local verify = envsrv.verify

local instruction = "Solve the following math problem step by step. " ..
                    "Put your final answer within \\boxed{}."

return {
  name = "math",
  description = "Competition math (MATH format); reward 1 when the boxed answer is equivalent to the reference",
  version = "1",
  dataset = { test = "data/math/test.jsonl" },
  default_split = "test",

  prompt = function(item)
    return {
      { role = "user", content = instruction .. "\n\n" .. item.problem },
    }
  end,

  -- Public facts about an item, without its answer.
  metadata = function(item)
    return { subject = item.subject, level = item.level, unique_id = item.unique_id }
  end,

  answer = function(item) return item.answer end,

  -- Older MATH files have no `answer` field: the solution's last \boxed{} is
  -- the reference then.
  reward = function(item, completion)
    return verify.math(completion, item.answer or item.solution)
  end,
}
