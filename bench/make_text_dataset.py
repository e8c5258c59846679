"""Writes N JSONL rows of random English-like text, each long enough to
fill a 512-token sequence of any byte-level BPE tokenizer (bench input)."""
import json
import random
import sys

out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
words = ("the model learns small steps with care while data flows through "
         "layers and every token counts toward a better answer in time").split()
with open(out, "w") as f:
    for _ in range(n):
        text = " ".join(rng.choice(words) for _ in range(900))
        f.write(json.dumps({"text": text}) + "\n")
