"""Checks the exports of a Tunesmith run on a GGUF base with transformers/PEFT.

Usage: check_gguf_exports.py GGUF PEFT_DIR MERGED_DIR OURS.json
OURS.json is `tunesmith logits --adapter RUN` output (the adapted model's
logits). Prints the largest logit difference of (a) PEFT's adapter on
transformers' own reading of the GGUF and (b) transformers loading the
merged folder, against Tunesmith, and whether the merged folder's tokenizer
gives the GGUF tokenizer's ids and chat rendering.
"""
import json
import pathlib
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, peft_dir, merged_dir, ours = (pathlib.Path(p) for p in sys.argv[1:5])
cases = json.loads(ours.read_text())["cases"]


def worst(model):
    d = 0.0
    for c in cases:
        with torch.no_grad():
            y = model(torch.tensor([c["token_ids"]])).logits[0]
        d = max(d, float((torch.tensor(c["logits"]) - y).abs().max()))
    return d


base = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
print(f"PEFT adapter on transformers' GGUF base: max |logit diff| {worst(PeftModel.from_pretrained(base, peft_dir)):.2e}")
merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
print(f"merged folder in transformers:           max |logit diff| {worst(merged):.2e}")
t_gguf = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
t_merged = AutoTokenizer.from_pretrained(merged_dir)
text = "Fine-tuning 3 small models in 2024: it's easy!"
msgs = [{"role": "user", "content": "What is the capital of France?"}]
same_ids = t_gguf(text)["input_ids"] == t_merged(text)["input_ids"]
same_chat = t_gguf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
    t_merged.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
print(f"merged tokenizer: same ids {same_ids}, same chat rendering {same_chat}")
sys.exit(0 if same_ids and same_chat else 1)
