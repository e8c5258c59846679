"""Reference side of bench/generate.sh: greedy decoding with transformers
(KV cache, SDPA attention, all cores), the same prompt and number of new
tokens as the Tunesmith side, end-of-turn tokens ignored.

    reference_generate.py MODEL_DIR PROMPT NEW_TOKENS [cpu|cuda]

Prints one JSON line: new tokens, seconds (prefill + decode, after loading),
tokens/s and the generated text.
"""
import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, prompt, new = sys.argv[1], sys.argv[2], int(sys.argv[3])
device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
if device == "cpu":
    torch.set_num_threads(os.cpu_count())
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
model.to(device).eval()
ids = tok(prompt, return_tensors="pt")["input_ids"].to(device)
with torch.inference_mode():
    # One short warm-up so lazy initialisation is not counted, as the first
    # call of a fresh process would otherwise be.
    model.generate(ids, max_new_tokens=2, do_sample=False)
    start = time.perf_counter()
    out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    secs = time.perf_counter() - start
gen = out[0, ids.shape[1]:].tolist()
print(json.dumps({
    "new_tokens": len(gen), "seconds": secs, "tokens_per_sec": len(gen) / secs,
    "text": tok.decode(gen, skip_special_tokens=False),
}))
