#!/usr/bin/env python3
"""PEFT and merged exports as transformers loads them (`make test-compat`;
needs torch, transformers and peft, so not in CI).

    tests/compat/verify_export.py TUNESMITH_BINARY WORK_DIR

For a Llama-style LoRA run, a Qwen2 rsLoRA run, a Qwen2 DoRA run
(PEFT's `use_dora`), a Llama-style PiSSA run (exported as PEFT's rank-2r
conversion on the original base), a Llama-style CorDA run (the same
conversion) and MiSS runs in its three modes (PEFT's
`MissConfig`; balance with a padded shard, bat, mini) and an AdaLoRA run
(PEFT's own adapter resized by its rank pattern): loads the PEFT export
with PeftModel.from_pretrained on the base model and the merged export with
AutoModelForCausalLM.from_pretrained, and compares their logits with
`tunesmith logits --adapter RUN` on the same tokens (max |diff| <= 1e-4).
For a Qwen3 HFT run (base weights trained, no adapter): the PEFT export is
refused naming `merged`, the merged folder loads with the same logits, and
its untrained tensors equal the base's bit for bit.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from exports import ROOT, export, run, train

TOL = 1e-4


def ours(binary: Path, run_dir: Path, ids: list, work: Path) -> torch.Tensor:
    cases = work / "cases.json"
    cases.write_text(json.dumps({"cases": [{"name": "ids", "token_ids": ids}]}))
    out = work / "logits.json"
    run([binary, "logits", "--adapter", run_dir, "--cases", cases, "--out", out, "--backend", "cpu"])
    return torch.tensor(json.loads(out.read_text())["cases"][0]["logits"])


def theirs(model, ids: list) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def verify(binary: Path, work: Path, name: str, sets: list, base: Path) -> None:
    run_dir = train(binary, work, name, sets, steps=20)
    ids = [(i * 37 + 11) % 300 for i in range(32)]
    want = ours(binary, run_dir, ids, work)
    load = dict(dtype=torch.float32, attn_implementation="eager")
    peft_dir = export(binary, run_dir, "peft", work / f"{name}-peft")
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **load),
                                     peft_dir).eval()
    base_logits = theirs(AutoModelForCausalLM.from_pretrained(base, **load).eval(), ids)
    moved = (want - base_logits).abs().max().item()
    assert moved > 1e-2, f"{name}: the adapter barely changes the logits ({moved})"
    d_peft = (theirs(peft, ids) - want).abs().max().item()
    merged_dir = export(binary, run_dir, "merged", work / f"{name}-merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, **load).eval()
    d_merged = (theirs(merged, ids) - want).abs().max().item()
    print(f"{name}: adapter moves logits by up to {moved:.3f}; max |diff| vs tunesmith: "
          f"PEFT {d_peft:.2e}, merged {d_merged:.2e}")
    assert d_peft <= TOL and d_merged <= TOL, name


def verify_merged_only(binary: Path, work: Path, name: str, sets: list, base: Path) -> None:
    run_dir = train(binary, work, name, sets, steps=20)
    ids = [(i * 37 + 11) % 300 for i in range(32)]
    want = ours(binary, run_dir, ids, work)
    refused = subprocess.run([str(binary), "export", str(run_dir), "--format", "peft", "--out",
                              str(work / f"{name}-peft"), "--force"], capture_output=True, text=True)
    assert refused.returncode != 0 and "merged" in refused.stderr, refused.stderr
    load = dict(dtype=torch.float32, attn_implementation="eager")
    original = AutoModelForCausalLM.from_pretrained(base, **load).eval()
    moved = (want - theirs(original, ids)).abs().max().item()
    assert moved > 1e-2, f"{name}: training barely changes the logits ({moved})"
    merged_dir = export(binary, run_dir, "merged", work / f"{name}-merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, **load).eval()
    d_merged = (theirs(merged, ids) - want).abs().max().item()
    before, after = original.state_dict(), merged.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    layer_tensors = [k for k in before if ".layers." in k]
    print(f"{name}: training moves logits by up to {moved:.3f}; merged max |diff| vs tunesmith "
          f"{d_merged:.2e}; {len(changed)} of {len(layer_tensors)} layer tensors trained")
    assert d_merged <= TOL, name
    assert all(".layers." in k for k in changed), changed
    assert 0 < len(changed) < len(layer_tensors), changed


def main() -> None:
    binary, work = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    tiny = ROOT / "assets/models/tiny-llama"
    qwen = ROOT / "tests/fixtures/models/qwen2"
    verify(binary, work, "llama-lora", [], tiny)
    verify(binary, work, "qwen2-rslora",
           [f"model.path={qwen}", "method.use_rslora=true", "method.rank=4", "method.alpha=8"],
           qwen)
    verify(binary, work, "qwen2-dora",
           [f"model.path={qwen}", "method.use_dora=true", "method.rank=4", "method.alpha=8"],
           qwen)
    verify(binary, work, "llama-pissa", ["method.init=pissa"], tiny)
    verify(binary, work, "llama-corda", ["method.init=corda", "method.corda_samples=32"], tiny)
    verify(binary, work, "qwen2-miss", [f"model.path={qwen}", "method.kind=miss", "method.rank=6"],
           qwen)
    verify(binary, work, "llama-bone",
           ["method.kind=miss", "method.mode=bat", "method.rank=8"], tiny)
    verify(binary, work, "qwen2-miss-mini",
           [f"model.path={qwen}", "method.kind=miss", "method.mode=mini", "method.rank=4",
            "method.mini_r=8"], qwen)
    verify(binary, work, "qwen2-adalora",
           [f"model.path={qwen}", "method.kind=adalora", "method.init_r=6", "method.target_r=3",
            "method.tinit=4", "method.tfinal=4"], qwen)
    # KaSA, which PEFT lacks: a plain rank-2r LoRA on the original base
    verify(binary, work, "qwen2-kasa",
           [f"model.path={qwen}", "method.kind=kasa", "method.rank=4", "method.alpha=8",
            "method.gamma=0.01"], qwen)
    # HFT trains half of the base weights: merged only
    verify_merged_only(binary, work, "qwen3-hft",
                       [f"model.path={ROOT / 'tests/fixtures/models/qwen3'}", "method.kind=hft",
                        "train.learning_rate=0.001"],
                       ROOT / "tests/fixtures/models/qwen3")
    print("PEFT and merged exports: ok")


if __name__ == "__main__":
    main()
