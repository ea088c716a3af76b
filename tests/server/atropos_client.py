#!/usr/bin/env python3
"""A stdlib-only client that speaks the Atropos trajectory API exactly as
atroposlib documents it (atroposlib/api/server.py): a trainer registers and
pulls batches, an environment waits for the trainer, registers, pushes scored
groups (plain and gzip) and polls /status-env.

Run by tests/server/test_buffer_journal.c against a fresh envsrv:
    python3 atropos_client.py PORT
Exits 0 when every answer has Atropos's shape and values, 1 otherwise.
"""
import gzip
import json
import sys
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:%s" % sys.argv[1]
TIMEOUT = 30


def call(method, path, body=None, gz=False):
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        if gz:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            raw = r.read()
            ctype = r.headers.get("Content-Type", "")
            return r.status, (json.loads(raw) if "json" in ctype else raw.decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check(cond, what):
    if not cond:
        print("atropos_client: FAILED: %s" % what, file=sys.stderr)
        sys.exit(1)


def group(tag, n=4, env_id=None):
    tokens = [[tag, 10, 11, 12 + i] for i in range(n)]
    masks = [[-100, -100, 11, 12 + i] for i in range(n)]
    g = {
        "tokens": tokens,
        "masks": masks,
        "scores": [1.0 if i % 2 == 0 else -1.0 for i in range(n)],
        "advantages": None,
        "ref_logprobs": None,
        "messages": None,
        "generation_params": {"temperature": 1.0},
        "inference_logprobs": [[0.0, 0.0, -0.5, -0.25] for _ in range(n)],
        "overrides": None,
        "group_overrides": {"group_size": n},
        "images": None,
    }
    if env_id is not None:
        g["env_id"] = env_id
    return g


def main():
    # Trainer side.
    st, r = call("POST", "/register", {
        "wandb_group": "demo", "wandb_project": "envsrv", "batch_size": 8, "max_token_len": 128,
        "checkpoint_dir": "/tmp/ckpt", "save_checkpoint_interval": 10, "starting_step": 3, "num_steps": 100})
    check(st == 200 and isinstance(r["uuid"], int), "/register -> uuid")
    st, r = call("GET", "/wandb_info")
    check(r == {"group": "demo", "project": "envsrv", "zmq_port": None}, "/wandb_info")
    st, r = call("GET", "/info")
    check(r == {"batch_size": 8, "max_token_len": 128}, "/info")

    # Env side: waits until the trainer's first /batch.
    env_req = {"max_token_length": 128, "desired_name": "gsm8k", "weight": 1.0, "group_size": 4,
               "min_batch_allocation": None}
    st, r = call("POST", "/register-env", env_req)
    check(r == {"status": "wait for trainer to start"}, "/register-env before start")
    st, r = call("GET", "/batch")
    check(st == 200 and r == {"batch": None}, "first /batch is null")
    st, r = call("POST", "/register-env", env_req)
    check(r["status"] == "success" and r["env_id"] == 0 and r["wandb_name"] == "gsm8k_0", "/register-env")
    check(r["checkpoint_dir"] == "/tmp/ckpt" and r["starting_step"] == 3 and r["checkpoint_interval"] == 10
          and r["num_steps"] == 100, "/register-env trainer fields")
    env_id = r["env_id"]

    st, r = call("GET", "/status-env?env_id=%d" % env_id)
    check(st == 200 and r["current_step"] == 3 and r["queue_size"] == 0 and r["env_weight"] == 1.0
          and r["self_queue_size"] == 0 and r["unallocated_fraction"] == 1.0 and r["max_group_size"] == 1,
          "/status-env by query")
    st, r = call("GET", "/status-env", {"env_id": env_id})
    check(st == 200 and r["env_weight"] == 1.0, "/status-env by JSON body")

    st, r = call("POST", "/scored_data", group(1, env_id=env_id))
    check(st == 200 and r["status"] == "received", "/scored_data")
    st, r = call("POST", "/scored_data", group(2, env_id=env_id), gz=True)
    check(st == 200, "/scored_data gzip")
    st, r = call("POST", "/scored_data_list", [group(3, env_id=env_id), group(4, env_id=env_id)], gz=True)
    check(st == 200 and r["status"] == "received" and r["groups_processed"] == 2, "/scored_data_list")
    st, r = call("GET", "/status")
    check(r["current_step"] == 3 and r["queue_size"] == 4, "/status")
    st, r = call("GET", "/latest_example")
    check(r["tokens"][0][0] == 4, "/latest_example")

    # Trainer pulls: exactly batch_size sequences, oldest first.
    for expect in ((1, 2), (3, 4)):
        st, r = call("GET", "/batch")
        batch = r["batch"]
        check(batch is not None and sum(len(g["tokens"]) for g in batch) == 8, "batch of 8 sequences")
        check(tuple(g["tokens"][0][0] for g in batch) == expect, "oldest-first batch %r" % (expect,))
        for g in batch:
            check(g["masks"][0][0] == -100 and len(g["scores"]) == 4, "group fields")
            check(g["generation_params"] == {"temperature": 1.0} and g["env_id"] == env_id, "optional fields kept")
            check(len(g["inference_logprobs"]) == 4, "inference_logprobs kept")
    st, r = call("GET", "/batch")
    check(r == {"batch": None}, "empty queue -> null batch")
    st, r = call("GET", "/status")
    check(r["current_step"] == 5, "step counts batches handed out")

    # A bad group: 422 naming group, sequence and field.
    bad = group(9)
    bad["masks"][2] = bad["masks"][2][:-1]
    st, r = call("POST", "/scored_data", bad)
    check(st == 422 and "sequence 2" in r["error"]["message"] and "'masks'" in r["error"]["message"],
          "validation error")

    st, r = call("POST", "/disconnect-env", {"env_id": env_id})
    check(r == {"status": "success"}, "/disconnect-env")
    st, r = call("GET", "/reset_data")
    check(st == 200 and r == "Reset successful", "/reset_data")
    st, r = call("GET", "/info")
    check(r == {"batch_size": -1, "max_token_len": -1}, "/info after reset")
    print("atropos_client: ok")


if __name__ == "__main__":
    main()
