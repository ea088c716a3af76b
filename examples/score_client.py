#!/usr/bin/env python3
"""What a trainer's REST calls to envsrv look like (Python standard library only).

Start a server first:   ./envsrv --env gsm8k
Then run:               python3 examples/score_client.py [--url http://127.0.0.1:8000]

It samples a few items, builds one correct and one wrong completion per item
(a real trainer would generate them with its policy), scores each group in one
request, and prints the rewards and what the verifier extracted.
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def call(base, method, path, body=None, api_key=None):
    """One JSON request; returns the decoded answer or raises with envsrv's error."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if api_key:
        req.add_header("Authorization", "Bearer " + api_key)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        err = json.loads(e.read()).get("error", {})
        raise SystemExit("envsrv %s %s: %d %s: %s" % (method, path, e.code,
                                                      err.get("code"), err.get("message")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--env", default="gsm8k")
    ap.add_argument("--n", type=int, default=3, help="items to sample")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    key = os.environ.get("ENVSRV_API_KEY")

    info = call(args.url, "GET", "/v1/envs/" + args.env, api_key=key)
    print("env %s version %s splits %s" % (info["name"], info["version"], info["splits"]))

    sample = call(args.url, "POST", "/v1/envs/%s/sample" % args.env,
                  {"n": args.n, "seed": args.seed}, api_key=key)
    for item in sample["items"]:
        user = [m["content"] for m in item["prompt"] if m["role"] == "user"][-1]
        print("\n%s: %s" % (item["id"], user[:100] + ("..." if len(user) > 100 else "")))
        # Only for this demo: ask for the reference so we can build a correct
        # completion. A trainer never needs it.
        full = call(args.url, "GET", "/v1/envs/%s/items/%s?include_answer=1" % (args.env, item["id"]),
                    api_key=key)
        answer = full.get("answer", "")
        final = answer.rpartition("####")[2].strip()
        completions = [
            "Let me think step by step... The answer is %s." % final,
            "I am not sure, maybe 12345678.",
        ]
        scored = call(args.url, "POST", "/v1/envs/%s/score" % args.env,
                      {"item_id": item["id"], "completions": completions}, api_key=key)
        for c, r, d in zip(completions, scored["rewards"], scored["details"]):
            print("  reward %.1f  extracted %-10s  %s" % (r, d.get("value"), c[:60]))
    print("\nenv_version", sample["env_version"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
