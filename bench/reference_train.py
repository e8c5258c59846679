"""Reference side of bench/train.sh: torch + PEFT, LoRA r=16 on all linear
layers, AdamW, micro-batch 4 x 512 tokens, the same number of steps.
Prints tokens/s over the steps after the first.

    reference_train.py MODEL_DIR STEPS [cpu|cuda]"""
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

model_dir, steps = sys.argv[1], int(sys.argv[2])
device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(
    model_dir, dtype=torch.float32, attn_implementation="eager")
model = get_peft_model(model, LoraConfig(
    r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                    "gate_proj", "up_proj", "down_proj"]))
model.to(device).train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
vocab = model.config.vocab_size
ids = torch.randint(0, vocab, (4, 512)).to(device)


def sync():
    if device == "cuda":
        torch.cuda.synchronize()

times = []
for _ in range(steps):
    t = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    sync()
    times.append(time.perf_counter() - t)
tps = 4 * 512 * (steps - 1) / sum(times[1:])
where = "cuda" if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
print(f"torch+peft({where}): {tps:.0f} tokens/s "
      f"(step {sum(times[1:]) / (steps - 1):.2f} s)")
