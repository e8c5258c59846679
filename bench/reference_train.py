"""Reference side of bench/train.sh: torch + PEFT, LoRA r=16 on all seven
linear kinds, AdamW, the same micro-batch shape, data and number of steps
as the Tunesmith row it is compared with. Attention is torch's SDPA (what
transformers uses by default), on all cores.

    reference_train.py MODEL_DIR DATA_JSONL STEPS BATCH SEQ [cpu|cuda] [f32|bf16] [ckpt]

`ckpt` turns on transformers' gradient checkpointing (non-reentrant, the
recommended mode).

Rows of DATA_JSONL (`{"text": ...}`) are tokenized with the model's own
tokenizer and cut to SEQ tokens, taken in file order. Prints one JSON line:
tokens/s over the steps after the first, the step losses, peak memory.
"""
import json
import os
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, data, steps, batch, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[sys.argv[7] if len(sys.argv) > 7 else "f32"]
torch.manual_seed(0)
if device == "cpu":
    torch.set_num_threads(os.cpu_count())
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
if len(sys.argv) > 8 and sys.argv[8] == "ckpt":
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model = get_peft_model(model, LoraConfig(
    r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                    "gate_proj", "up_proj", "down_proj"]))
model.to(device).train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)

tok = AutoTokenizer.from_pretrained(model_dir)
rows = []
for line in open(data):
    ids = tok(json.loads(line)["text"])["input_ids"][:seq]
    if len(ids) == seq:
        rows.append(ids)
if len(rows) < batch:
    sys.exit(f"{data}: fewer than {batch} rows of {seq} tokens")


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


times, losses = [], []
for step in range(steps):
    picked = [rows[(step * batch + i) % len(rows)] for i in range(batch)]
    ids = torch.tensor(picked, device=device)
    t = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    sync()
    times.append(time.perf_counter() - t)
    losses.append(round(loss.item(), 4))
tps = batch * seq * (steps - 1) / sum(times[1:])
peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({
    "side": "torch+peft", "device": device, "dtype": str(dtype).removeprefix("torch."),
    "threads": torch.get_num_threads(), "tokens_per_sec": round(tps, 1),
    "step_s": round(sum(times[1:]) / (steps - 1), 3), "losses": losses,
    "peak_mib": round(peak), "peak_kind": "cuda allocated" if device == "cuda" else "RSS",
}))
