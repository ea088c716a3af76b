#!/usr/bin/env python3
"""A reward function for TRL's GRPOTrainer that asks envsrv for the rewards.

TRL calls a reward function with the batch's completions (and every dataset
column as a keyword argument) and expects one float per completion back. This
one groups the completions by item and scores each group in one request to
`POST /v1/envs/{env}/score`, so a whole GRPO group costs one round trip.

    from trl import GRPOConfig, GRPOTrainer
    from trl_reward import EnvsrvReward

    reward = EnvsrvReward("http://127.0.0.1:8000", env="gsm8k")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=ds, ...)

The dataset needs an `item_id` column holding envsrv item ids (for example
from `POST /v1/envs/gsm8k/sample`, or "train-0".."train-7472" with
`--data gsm8k=PATH`), or an `item` column with inline items. Only the standard
library is used; run this file directly for a self-check against a server.
"""
import json
import urllib.request
from collections import OrderedDict


class EnvsrvReward:
    """Callable reward function: (completions, **columns) -> list of floats."""

    def __init__(self, base_url="http://127.0.0.1:8000", env="gsm8k", api_key=None, timeout=60):
        self.base_url = base_url.rstrip("/")
        self.env = env
        self.api_key = api_key
        self.timeout = timeout
        # TRL logs reward functions by their __name__.
        self.__name__ = "envsrv_" + env

    def _score(self, key, completions):
        body = {"completions": completions}
        if key[0] == "id":
            body["item_id"] = key[1]
        else:
            body["item"] = json.loads(key[1])
        req = urllib.request.Request(
            "%s/v1/envs/%s/score" % (self.base_url, self.env),
            data=json.dumps(body).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json"})
        if self.api_key:
            req.add_header("Authorization", "Bearer " + self.api_key)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())["rewards"]

    @staticmethod
    def _text(completion):
        # Conversational datasets give a list of messages; take the assistant text.
        if isinstance(completion, list):
            return "".join(m.get("content", "") for m in completion if m.get("role") == "assistant")
        return completion

    def __call__(self, completions, item_id=None, item=None, **kwargs):
        if item_id is None and item is None:
            raise ValueError("the dataset needs an 'item_id' (or 'item') column for envsrv")
        groups = OrderedDict()
        for i, completion in enumerate(completions):
            key = ("id", item_id[i]) if item_id is not None else ("item", json.dumps(item[i]))
            groups.setdefault(key, []).append(i)
        rewards = [0.0] * len(completions)
        for key, indices in groups.items():
            scored = self._score(key, [self._text(completions[i]) for i in indices])
            for i, r in zip(indices, scored):
                rewards[i] = float(r)
        return rewards


if __name__ == "__main__":
    # Self-check: ./envsrv --env gsm8k, then python3 examples/trl_reward.py
    f = EnvsrvReward()
    print(f(["The answer is 42.", "#### 7"], item_id=["test-0", "test-0"]))
