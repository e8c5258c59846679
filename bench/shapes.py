"""Header-only model folders for `tunesmith plan` (never committed): the
config.json of a real model's shape and a model.safetensors whose header
lists every tensor and whose data is a sparse hole (no disk space), so the
estimate of a 3B model can be asked on a machine that cannot hold one. Its
weights read as zeros: for planning only, never for training.

    shapes.py OUT_DIR     writes OUT_DIR/<shape>/ for every shape below
"""
import json
import sys
from pathlib import Path

# Hyperparameters as in the models' config.json on the Hugging Face hub.
SHAPES = {
    "qwen2.5-0.5b": dict(hidden=896, inter=4864, layers=24, heads=14, kv=2, vocab=151936, tie=True, bias=True),
    "qwen2.5-1.5b": dict(hidden=1536, inter=8960, layers=28, heads=12, kv=2, vocab=151936, tie=True, bias=True),
    "qwen2.5-3b": dict(hidden=2048, inter=11008, layers=36, heads=16, kv=2, vocab=151936, tie=True, bias=True),
    "llama-3.2-1b": dict(hidden=2048, inter=8192, layers=16, heads=32, kv=8, vocab=128256, tie=True, bias=False),
    "llama-3.2-3b": dict(hidden=3072, inter=8192, layers=28, heads=24, kv=8, vocab=128256, tie=True, bias=False),
    "qwen2.5-7b": dict(hidden=3584, inter=18944, layers=28, heads=28, kv=4, vocab=152064, tie=False, bias=True),
    "llama-3.1-8b": dict(hidden=4096, inter=14336, layers=32, heads=32, kv=8, vocab=128256, tie=False, bias=False),
}


def write(out: Path, s: dict) -> None:
    qwen = s["bias"]
    hd = s["hidden"] // s["heads"]
    config = {
        "model_type": "qwen2" if qwen else "llama",
        "architectures": ["Qwen2ForCausalLM" if qwen else "LlamaForCausalLM"],
        "hidden_size": s["hidden"], "intermediate_size": s["inter"],
        "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv"], "vocab_size": s["vocab"], "head_dim": hd,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": s["tie"], "torch_dtype": "bfloat16", "hidden_act": "silu",
    }
    tensors = {"model.embed_tokens.weight": [s["vocab"], s["hidden"]],
               "model.norm.weight": [s["hidden"]]}
    if not s["tie"]:
        tensors["lm_head.weight"] = [s["vocab"], s["hidden"]]
    for i in range(s["layers"]):
        p = f"model.layers.{i}"
        for name, shape in [("self_attn.q_proj", [s["heads"] * hd, s["hidden"]]),
                            ("self_attn.k_proj", [s["kv"] * hd, s["hidden"]]),
                            ("self_attn.v_proj", [s["kv"] * hd, s["hidden"]]),
                            ("self_attn.o_proj", [s["hidden"], s["heads"] * hd]),
                            ("mlp.gate_proj", [s["inter"], s["hidden"]]),
                            ("mlp.up_proj", [s["inter"], s["hidden"]]),
                            ("mlp.down_proj", [s["hidden"], s["inter"]])]:
            tensors[f"{p}.{name}.weight"] = shape
            if qwen and name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                tensors[f"{p}.{name}.bias"] = [shape[0]]
        tensors[f"{p}.input_layernorm.weight"] = [s["hidden"]]
        tensors[f"{p}.post_attention_layernorm.weight"] = [s["hidden"]]
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    with open(out / "model.safetensors", "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    for name, shape in SHAPES.items():
        write(root / name, shape)
        print(root / name)
