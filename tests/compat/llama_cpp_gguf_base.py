#!/usr/bin/env python3
"""LoRA runs trained on a GGUF file, their GGUF adapters applied by llama.cpp to
that very file (part of `make test-llama-cpp`; needs a llama.cpp source tree,
a C++ compiler and cmake, but no torch).

    tests/compat/llama_cpp_gguf_base.py TUNESMITH_BINARY LLAMA_CPP_SRC WORK_DIR

For each GGUF fixture (llama, mistral, qwen2, qwen3: between them every
tensor type we read) and, when it has been fetched, the real
SmolLM2-135M-Instruct Q4_1: a short LoRA run with `model.path` naming the
.gguf, its adapter exported as GGUF, and llama.cpp's logits with the adapter
applied compared with `tunesmith logits --adapter`. Tunesmith dequantizes the
base to f32 while llama.cpp multiplies the quantized blocks (with its
activations rounded to 8 bits for the k-quants and Q4/Q5 types), so the base
logits are compared too: their rms difference is the quantized base's own
noise, and the adapted logits must agree within twice it, with the change the
adapter makes pointing the same way on both sides (cosine >= 0.99).
"""

import os
import sys
from pathlib import Path

import numpy as np

from exports import ROOT, export, train
from llama_cpp_adapter import build, llama_cpp_logits, tunesmith_logits

FIXTURES = ROOT / "tests/fixtures/gguf"


def smollm2() -> Path | None:
    """The real model kept by `tunesmith models fetch smollm2-135m-instruct`."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    path = cache / "tunesmith/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def check(binary, exe, work, name, gguf: Path, ids: list, steps: int) -> None:
    run_dir = train(binary, work, name,
                    [f"model.path={gguf}", "method.rank=4", "method.alpha=8"], steps=steps)
    adapter = export(binary, run_dir, "gguf", work / f"{name}-lora.gguf")
    ours_base = tunesmith_logits(binary, work, ids, model=gguf)
    theirs_base = llama_cpp_logits(exe, gguf, None, ids)
    base_diff = np.abs(theirs_base - ours_base).max()
    ours = tunesmith_logits(binary, work, ids, adapter=run_dir)
    theirs = llama_cpp_logits(exe, gguf, adapter, ids)
    moved = np.abs(ours - ours_base).max()
    diff = np.abs(ours - theirs).max()
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    # What the adapter changes, seen by each side: a wrong permutation or a
    # dropped module shows here even where the base's noise is large.
    ours_delta, theirs_delta = (ours - ours_base).ravel(), (theirs - theirs_base).ravel()
    cos = float(ours_delta @ theirs_delta
                / (np.linalg.norm(ours_delta) * np.linalg.norm(theirs_delta)))
    print(f"{name}: base max |diff| {base_diff:.2e} (rms {rms(theirs_base - ours_base):.2e}); "
          f"adapter moves logits by {moved:.3f} (rms {rms(ours_delta):.3f}); with the adapter "
          f"max |diff| {diff:.2e} (rms {rms(ours - theirs):.2e}); cosine of the two changes "
          f"{cos:.6f}")
    assert moved > 1e-2, f"{name}: the adapter barely changes the logits"
    noise = rms(theirs_base - ours_base)
    assert rms(ours - theirs) <= max(1e-4, 2 * noise), \
        f"{name}: with the adapter llama.cpp differs by rms {rms(ours - theirs)}, the base by {noise}"
    assert cos >= 0.99, f"{name}: the adapter's change in llama.cpp points elsewhere ({cos})"


def main() -> None:
    binary, src, work = (Path(a).resolve() for a in sys.argv[1:4])
    work.mkdir(parents=True, exist_ok=True)
    exe = build(src, work)
    ids = [(i * 37 + 11) % 300 for i in range(32)]
    for arch in ["llama", "mistral", "qwen2", "qwen3"]:
        check(binary, exe, work, f"gguf-{arch}", FIXTURES / arch / "model.gguf", ids, steps=20)
    real = smollm2()
    if real is None:
        print("SmolLM2-135M-Instruct not fetched: run `tunesmith models fetch "
              "smollm2-135m-instruct` to check the real Q4_1 model too")
    else:
        # Ids of ordinary English pieces, well inside the 49152-token vocabulary.
        real_ids = [(i * 977 + 1000) % 20000 for i in range(32)]
        check(binary, exe, work, "gguf-smollm2-q4_1", real, real_ids, steps=10)
    print("GGUF-based LoRA adapters applied by llama.cpp to their own base files: ok")


if __name__ == "__main__":
    main()
