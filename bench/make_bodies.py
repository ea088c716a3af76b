#!/usr/bin/env python3
"""Writes request bodies for the /score benchmark (one JSON body per line).

Each body scores K completions of one GSM8K item: the item's own reference
solution (reward 1) and, for every other completion, the same text with the
final number changed (reward 0) or phrased as "The answer is \\boxed{N}.", so
the verifier sees realistic, varied text. Usage:
    make_bodies.py GSM8K_TEST_JSONL K COUNT > bodies.txt
"""
import json
import sys


def variants(answer):
    head, _, final = answer.rpartition("####")
    final = final.strip()
    yield answer
    try:
        wrong = str(int(final.replace(",", "")) + 1)
    except ValueError:
        wrong = final + "1"
    yield head + "#### " + wrong
    yield head.replace("\n", " ") + " The answer is \\boxed{" + final + "}."


def main():
    path, k, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for i in range(count):
        idx = i % len(records)
        forms = list(variants(records[idx]["answer"]))
        completions = [forms[j % len(forms)] for j in range(k)]
        body = {"item_id": "test-%d" % idx, "completions": completions}
        print(json.dumps(body, separators=(",", ":")))


if __name__ == "__main__":
    main()
