#!/usr/bin/env python3
"""Our GGUF LoRA adapters and merged GGUF models in llama.cpp itself (`make test-llama-cpp`; needs
a llama.cpp source tree, a C++ compiler, cmake, torch and transformers).

    tests/compat/llama_cpp_adapter.py TUNESMITH_BINARY LLAMA_CPP_SRC WORK_DIR

Builds libllama (CPU) and tests/compat/lora_logits.cpp, converts the base
models to GGUF with llama.cpp's convert_hf_to_gguf.py (f32), trains short
runs (Llama-style tiny model with LoRA; Qwen2 fixture with rsLoRA; Qwen3
fixture with q/k norms and a head_dim of its own; an AdaLoRA run whose modules
keep different ranks), exports
their GGUF adapters, and compares llama.cpp's logits with the adapter
applied against `tunesmith logits --adapter` on the same token ids. The base
logits are compared too, so a difference can be told apart from conversion
noise. The merged-gguf export (f16) is compared with llama.cpp's own
conversion of our merged HF folder: same tensors (names, types, bytes), same
metadata (but the pre-tokenizer name we had to tell the converter), and the
same logits in llama.cpp.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from exports import ROOT, export, run, train

HERE = Path(__file__).resolve().parent


def build(src: Path, work: Path) -> Path:
    build_dir = work / "llama-build"
    lib = build_dir / "bin" / "libllama.so"
    if not lib.exists():
        run(["cmake", "-S", src, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
             "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
             "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DBUILD_SHARED_LIBS=ON"])
        run(["cmake", "--build", build_dir, "--target", "llama", "-j"])
    exe = work / "lora_logits"
    run(["c++", "-O2", "-std=c++17", HERE / "lora_logits.cpp", "-I", src / "include",
         "-I", src / "ggml" / "include", "-L", build_dir / "bin", "-lllama",
         f"-Wl,-rpath,{build_dir / 'bin'}", "-o", exe])
    return exe


def convert(src: Path, model_dir: Path, out: Path, pre: str, outtype: str = "f32") -> Path:
    """convert_hf_to_gguf.py, told the tokenizer's pre-tokenizer name: our
    fixture tokenizers are not in its list of known hashes, and logits of
    given token ids do not depend on it."""
    code = (
        "import sys; sys.argv = sys.argv[1:]; "
        f"sys.path.insert(0, {str(src)!r}); sys.path.insert(0, {str(src / 'gguf-py')!r}); "
        "import conversion.base as b; "
        f"b.TextModel.get_vocab_base_pre = lambda self, tok: {pre!r}; "
        "import convert_hf_to_gguf as c; c.main()"
    )
    run([sys.executable, "-c", code, "convert", model_dir, "--outtype", outtype, "--outfile", out])
    return out


def llama_cpp_logits(exe: Path, model: Path, adapter, ids: list) -> np.ndarray:
    out = subprocess.run([str(exe), str(model), str(adapter or "-"), ",".join(map(str, ids))],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"llama.cpp failed:\n{out.stderr[-3000:]}")
    return np.array(json.loads(out.stdout), dtype=np.float32)


def tunesmith_logits(binary: Path, work: Path, ids: list, model=None, adapter=None) -> np.ndarray:
    cases = work / "cases.json"
    cases.write_text(json.dumps({"cases": [{"name": "ids", "token_ids": ids}]}))
    out = work / "logits.json"
    where = ["--adapter", adapter] if adapter else ["--model", model]
    run([binary, "logits", *where, "--cases", cases, "--out", out, "--backend", "cpu"])
    return np.array(json.loads(out.read_text())["cases"][0]["logits"], dtype=np.float32)


def check_merged(binary, src, exe, work, name, run_dir, pre, ids) -> None:
    sys.path.insert(0, str(src / "gguf-py"))
    from gguf import GGUFReader

    ours = export(binary, run_dir, "merged-gguf", work / f"{name}-merged.gguf")
    merged = export(binary, run_dir, "merged", work / f"{name}-merged")
    ref = convert(src, merged, work / f"{name}-merged-ref.gguf", pre, "f16")
    a, b = GGUFReader(ours), GGUFReader(ref)
    ta = {t.name: t for t in a.tensors}
    tb = {t.name: t for t in b.tensors}
    assert ta.keys() == tb.keys(), (sorted(ta.keys() ^ tb.keys()))
    for n, t in tb.items():
        assert ta[n].tensor_type == t.tensor_type, (n, ta[n].tensor_type, t.tensor_type)
        assert list(ta[n].shape) == list(t.shape), (n, ta[n].shape, t.shape)
        assert np.array_equal(np.asarray(ta[n].data), np.asarray(t.data)), f"{n}: data differs"
    skip = {"tokenizer.ggml.pre"}
    differ = []
    for key, f in b.fields.items():
        if key.startswith(("GGUF.", "general.")) or key in skip:
            continue
        if key not in a.fields:
            differ.append(f"{key} missing")
        elif a.fields[key].contents() != f.contents():
            differ.append(f"{key}: {str(a.fields[key].contents())[:60]} vs {str(f.contents())[:60]}")
    assert not differ, differ
    d = np.abs(llama_cpp_logits(exe, ours, None, ids) - llama_cpp_logits(exe, ref, None, ids)).max()
    assert d == 0.0, f"{name}: llama.cpp logits of our file and its own differ by {d}"
    print(f"{name}: merged-gguf equals llama.cpp's conversion of the merged folder "
          f"({len(ta)} tensors byte for byte, {len(b.fields)} metadata keys, same logits)")


def check(binary, src, exe, work, name, sets, model_dir, pre) -> None:
    base_gguf = convert(src, model_dir, work / f"{name}-base.gguf", pre)
    run_dir = train(binary, work, name, sets, steps=20)
    adapter = export(binary, run_dir, "gguf", work / f"{name}-lora.gguf")
    ids = [(i * 37 + 11) % 300 for i in range(32)]
    ours_base = tunesmith_logits(binary, work, ids, model=model_dir)
    base_diff = np.abs(llama_cpp_logits(exe, base_gguf, None, ids) - ours_base).max()
    ours = tunesmith_logits(binary, work, ids, adapter=run_dir)
    theirs = llama_cpp_logits(exe, base_gguf, adapter, ids)
    moved = np.abs(ours - ours_base).max()
    diff = np.abs(ours - theirs).max()
    print(f"{name}: base max |diff| {base_diff:.2e}; adapter moves logits by {moved:.3f}; "
          f"with the adapter max |diff| {diff:.2e}")
    assert moved > 1e-2, f"{name}: the adapter barely changes the logits"
    assert diff <= max(1e-3, 10 * base_diff), f"{name}: llama.cpp disagrees by {diff}"
    check_merged(binary, src, exe, work, name, run_dir, pre, ids)


def main() -> None:
    binary, src, work = (Path(a).resolve() for a in sys.argv[1:4])
    work.mkdir(parents=True, exist_ok=True)
    exe = build(src, work)
    check(binary, src, exe, work, "llama-lora", [], ROOT / "assets/models/tiny-llama", "llama-bpe")
    qwen = ROOT / "tests/fixtures/models/qwen2"
    check(binary, src, exe, work, "qwen2-rslora",
          [f"model.path={qwen}", "method.use_rslora=true", "method.rank=4", "method.alpha=8"],
          qwen, "qwen2")
    qwen3 = ROOT / "tests/fixtures/models/qwen3"
    check(binary, src, exe, work, "qwen3-lora",
          [f"model.path={qwen3}", "method.rank=4", "method.alpha=8"], qwen3, "qwen2")
    # AdaLoRA: modules of different kept ranks in one file, each pair's
    # scale folded into its B
    check(binary, src, exe, work, "llama-adalora",
          ["method.kind=adalora", "method.init_r=6", "method.target_r=3", "method.tinit=4",
           "method.tfinal=4"], ROOT / "assets/models/tiny-llama", "llama-bpe")
    # KaSA: the rank-2r pair of the trained update and the dropped components
    check(binary, src, exe, work, "llama-kasa", ["method.kind=kasa", "method.rank=4"],
          ROOT / "assets/models/tiny-llama", "llama-bpe")
    print("GGUF adapters and merged GGUF models in llama.cpp: ok")


if __name__ == "__main__":
    main()
