#!/usr/bin/env python3
"""A minimal Atropos-style trainer loop against envsrv's trajectory buffer
(Python standard library only; docs/trajectory.md).

Start a server:   ./envsrv --journal .envsrv
Then run:         python3 examples/trainer_loop.py --steps 20 --demo-env

It registers as the trainer (POST /register), announces its policy version
(POST /v1/policy), pulls batches (GET /batch) and reports throughput. A real
trainer would run its optimizer step on each batch; here that step is a no-op
that only counts tokens. With --demo-env it also starts a toy environment
worker in a thread that registers (POST /register-env, waiting for the
trainer as Atropos environments do) and pushes scored groups, so the loop has
something to consume without a separate environment process.
"""
import argparse
import gzip
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request


def call(base, method, path, body=None, gz=False, timeout=30):
    """One request; returns (status, decoded body)."""
    data, headers = None, {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        if gz:
            data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def demo_env(base, group_size, seq_len, stop):
    """A toy environment worker: random tokens, one score per sequence."""
    req = {"max_token_length": seq_len, "desired_name": "demo", "weight": 1.0,
           "group_size": group_size, "min_batch_allocation": None}
    while not stop.is_set():
        _, r = call(base, "POST", "/register-env", req)
        if r.get("status") == "success":
            break
        time.sleep(0.2)  # Atropos's protocol: poll until the trainer has started
    env_id = r["env_id"]
    rng = random.Random(0)
    while not stop.is_set():
        prompt = [rng.randrange(32000) for _ in range(seq_len // 4)]
        tokens, masks = [], []
        for _ in range(group_size):
            completion = [rng.randrange(32000) for _ in range(seq_len - len(prompt))]
            tokens.append(prompt + completion)
            masks.append([-100] * len(prompt) + completion)
        group = {"tokens": tokens, "masks": masks, "env_id": env_id,
                 "scores": [rng.choice((0.0, 1.0)) for _ in range(group_size)]}
        st, r = call(base, "POST", "/scored_data", group, gz=True)
        if st == 503:      # backpressure: the queue is full, retry later
            time.sleep(0.05)
        elif st != 200:
            print("demo env: %s" % r, file=sys.stderr)
            return


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per batch")
    ap.add_argument("--max-token-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--demo-env", action="store_true", help="also run a toy environment worker")
    args = ap.parse_args()
    base = args.url.rstrip("/")

    st, r = call(base, "POST", "/register", {
        "wandb_group": "envsrv-demo", "wandb_project": "trainer_loop", "batch_size": args.batch_size,
        "max_token_len": args.max_token_len, "checkpoint_dir": "checkpoints",
        "save_checkpoint_interval": 0, "starting_step": 0, "num_steps": args.steps})
    if st != 200:
        sys.exit("register failed: %s" % r)
    print("registered as trainer %s" % r["uuid"])

    stop = threading.Event()
    if args.demo_env:
        threading.Thread(target=demo_env, args=(base, 8, 256, stop), daemon=True).start()

    version, step, seqs, tokens = 0, 0, 0, 0
    call(base, "POST", "/v1/policy", {"version": version})
    start = time.monotonic()
    while step < args.steps:
        st, r = call(base, "GET", "/batch")
        if st != 200:
            sys.exit("batch failed: %s" % r)
        batch = r["batch"]
        if batch is None:
            time.sleep(0.1)   # nothing ready yet (the first call also starts the trainer)
            continue
        # The optimizer step would go here; count what it would train on.
        for g in batch:
            seqs += len(g["tokens"])
            tokens += sum(len(t) for t in g["tokens"])
        step += 1
        version += 1
        call(base, "POST", "/v1/policy", {"version": version})
        elapsed = time.monotonic() - start
        print("step %d: %d groups, %d sequences; %.1f seq/s, %.0f tokens/s"
              % (step, len(batch), sum(len(g["tokens"]) for g in batch), seqs / elapsed, tokens / elapsed))
    stop.set()
    _, status = call(base, "GET", "/status")
    print("done: %d steps in %.1f s; server status: %s" % (step, time.monotonic() - start, json.dumps(status)))


if __name__ == "__main__":
    main()
