"""Largest absolute logit difference between two OUT.json files."""
import json
import sys

a = json.load(open(sys.argv[1]))["cases"]
b = json.load(open(sys.argv[2]))["cases"]
worst = 0.0
for ca, cb in zip(a, b):
    assert ca["token_ids"] == cb["token_ids"], ca["name"]
    for ra, rb in zip(ca["logits"], cb["logits"]):
        worst = max(worst, max(abs(x - y) for x, y in zip(ra, rb)))
print(f"max |tunesmith - transformers| over all logits: {worst:.3e}")
