"""Reference side of bench/logits.sh: transformers' logits for cases.json."""
import json
import sys

import torch
from transformers import AutoModelForCausalLM

model_dir, out = sys.argv[1], sys.argv[2]
cases = json.load(open(f"{model_dir}/cases.json"))["cases"]
model = AutoModelForCausalLM.from_pretrained(
    model_dir, dtype=torch.float32, attn_implementation="eager"
).eval()
results = []
with torch.no_grad():
    for case in cases:
        ids = torch.tensor([case["token_ids"]])
        logits = model(ids).logits[0]
        results.append({"name": case["name"], "token_ids": case["token_ids"],
                        "logits": logits.tolist()})
json.dump({"cases": results}, open(out, "w"))
