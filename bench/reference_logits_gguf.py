"""Reference side of bench/logits-gguf.sh: transformers reads the GGUF file
itself (`gguf_file=`), tokenizes every case with the tokenizer it rebuilds
from the file's metadata, and writes the ids and f32 logits."""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, cases_path, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
kw = dict(gguf_file=gguf.name)
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kw)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw).eval()
results = []
with torch.no_grad():
    for case in json.load(open(cases_path))["cases"]:
        if "messages" in case:
            rendered = tokenizer.apply_chat_template(
                case["messages"], tokenize=False,
                add_generation_prompt=case.get("add_generation_prompt", False))
            ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(case["text"], add_special_tokens=case.get("add_special_tokens", True))["input_ids"]
        logits = model(torch.tensor([ids])).logits[0]
        results.append({"name": case["name"], "token_ids": ids, "logits": logits.tolist()})
json.dump({"cases": results}, open(out, "w"))
