-- GSM8K: grade-school math word problems (Cobbe et al., 2021).
--
-- Each record is {"question": ..., "answer": "worked solution ...\n#### 42"}.
-- The model sees the question; the reward is 1 when the final number it gives
-- equals the number after "####" in the reference, exactly (as rationals:
-- "18.00" and "$18" both equal 18), else 0. The built-in sample data was
-- written for envsrv; serve the real files with `--data gsm8k=/path/to/gsm8k`.

local verify = envsrv.verify

local system = "Solve the math problem step by step. " ..
               "At the end, write the final answer on its own line as '#### <number>'."

return {
  name = "gsm8k",
  description = "Grade-school math word problems; reward 1 when the final number is exactly right",
  version = "1",
  dataset = { train = "data/gsm8k/train.jsonl", test = "data/gsm8k/test.jsonl" },
  default_split = "test",

  prompt = function(item)
    return {
      { role = "system", content = system },
      { role = "user", content = item.question },
    }
  end,

  -- The reference solution, shown with ?include_answer=1.
  answer = function(item) return item.answer end,

  -- reward, details: details says which number was read from the completion
  -- and where ("hashes", "boxed", "phrase" or "last_number").
  reward = function(item, completion)
    return verify.gsm8k(completion, item.answer)
  end,
}
