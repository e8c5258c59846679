#!/usr/bin/env python3
"""GGUF adapters as llama.cpp's own `gguf` package reads them (runs in CI:
needs numpy and `pip install gguf`, no torch).

    tests/compat/check_gguf.py TUNESMITH_BINARY WORK_DIR

Trains two short runs (Llama-style tiny model, LoRA; Qwen2 fixture, rsLoRA),
exports each as PEFT and as GGUF (f32 and f16), and checks the GGUF files:
general.type / general.architecture / adapter.type, adapter.lora.alpha
stored as FLOAT32 (rsLoRA folded in), one lora_a/lora_b pair per adapted
module under llama.cpp's names, ggml shapes [in, r] and [r, out], and data
equal to the PEFT arrays (q/k lora_b rows permuted for the llama
architecture only). The merged-gguf exports (f16, q8_0) are read too:
architecture, block count, vocabulary, tensor names and types.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

from exports import ROOT, export, llama_cpp_permute, read_safetensors, train

NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
         "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def field(reader: GGUFReader, key: str):
    f = reader.fields[key]
    return f.types[0], f.contents()


def check(binary: Path, work: Path, name: str, sets: list, arch: str, model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    run_dir = train(binary, work, name, sets, steps=2)
    peft_dir = export(binary, run_dir, "peft", work / f"{name}-peft")
    peft_cfg = json.loads((peft_dir / "adapter_config.json").read_text())
    tensors, meta = read_safetensors(peft_dir / "adapter_model.safetensors")
    assert meta == {"format": "pt"}, meta
    r, alpha = peft_cfg["r"], float(peft_cfg["lora_alpha"])
    want_alpha = alpha * math.sqrt(r) if peft_cfg["use_rslora"] else alpha
    for dtype, qtype in (("f32", GGMLQuantizationType.F32), ("f16", GGMLQuantizationType.F16)):
        path = export(binary, run_dir, "gguf", work / f"{name}-{dtype}.gguf", "--gguf-dtype", dtype)
        reader = GGUFReader(path)
        assert field(reader, "general.type") == (GGUFValueType.STRING, "adapter")
        assert field(reader, "general.architecture") == (GGUFValueType.STRING, arch)
        assert field(reader, "adapter.type") == (GGUFValueType.STRING, "lora")
        kind, value = field(reader, "adapter.lora.alpha")
        assert kind == GGUFValueType.FLOAT32, f"alpha stored as {kind}"
        assert abs(value - want_alpha) < 1e-4 * want_alpha, (value, want_alpha)
        by_name = {t.name: t for t in reader.tensors}
        assert len(by_name) == len(tensors), (len(by_name), len(tensors))
        tol = 0 if dtype == "f32" else 2e-3
        for key, a in tensors.items():
            if ".lora_B." in key:
                continue
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            layer, proj = module.split(".")[2], module.split(".")[-1]
            stem = f"blk.{layer}.{NAMES[proj]}.weight"
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            ta, tb = by_name[f"{stem}.lora_a"], by_name[f"{stem}.lora_b"]
            assert ta.tensor_type == qtype and tb.tensor_type == qtype, (ta.tensor_type, qtype)
            # ggml order: lora_a [in, r], lora_b [r, out].
            assert list(ta.shape) == [a.shape[1], a.shape[0]], (stem, ta.shape, a.shape)
            assert list(tb.shape) == [b.shape[1], b.shape[0]], (stem, tb.shape, b.shape)
            if arch == "llama" and proj in ("q_proj", "k_proj"):
                b = llama_cpp_permute(b, n_head if proj == "q_proj" else n_kv)
            got_a = np.asarray(ta.data, dtype=np.float32).reshape(a.shape)
            got_b = np.asarray(tb.data, dtype=np.float32).reshape(b.shape)
            assert np.abs(got_a - a).max() <= tol * max(1.0, np.abs(a).max()), stem
            assert np.abs(got_b - b).max() <= tol * max(1.0, np.abs(b).max()), stem
    print(f"{name}: {arch}, r={r}, alpha {want_alpha:g} in the file, "
          f"{len(tensors)} tensors checked in f32 and f16")
    for dtype, qtype in (("f16", GGMLQuantizationType.F16), ("q8_0", GGMLQuantizationType.Q8_0)):
        path = export(binary, run_dir, "merged-gguf", work / f"{name}-model-{dtype}.gguf",
                      "--model-dtype", dtype)
        reader = GGUFReader(path)
        assert field(reader, "general.type") == (GGUFValueType.STRING, "model")
        assert field(reader, "general.architecture") == (GGUFValueType.STRING, arch)
        assert field(reader, f"{arch}.block_count")[1] == config["num_hidden_layers"]
        assert len(field(reader, "tokenizer.ggml.tokens")[1]) == config["vocab_size"]
        names = {t.name for t in reader.tensors}
        assert "token_embd.weight" in names and "blk.0.attn_q.weight" in names, names
        for t in reader.tensors:
            want = GGMLQuantizationType.F32 if len(t.shape) == 1 else qtype
            if want == GGMLQuantizationType.Q8_0 and t.shape[0] % 32:
                want = GGMLQuantizationType.F16  # rows that do not fill Q8_0 blocks
            assert t.tensor_type == want, (t.name, t.tensor_type)
        print(f"{name}: merged-gguf {dtype}: {len(names)} tensors, metadata readable")


def main() -> None:
    binary, work = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    tiny = ROOT / "assets/models/tiny-llama"
    qwen = ROOT / "tests/fixtures/models/qwen2"
    check(binary, work, "llama-lora", [], "llama", tiny)
    check(binary, work, "qwen2-rslora",
          [f"model.path={qwen}", "method.use_rslora=true", "method.rank=4", "method.alpha=8"],
          "qwen2", qwen)
    print("gguf adapters: ok")


if __name__ == "__main__":
    main()
