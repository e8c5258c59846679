"""Shared by the export checks: make short runs with the tunesmith binary,
export them, and read safetensors without torch."""

import json
import struct
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list) -> str:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr}")
    return out.stdout


def train(binary: Path, work: Path, name: str, sets: list, steps: int) -> Path:
    """A short quickstart run with overrides; returns its run directory."""
    args = [binary, "train", ROOT / "presets/quickstart.toml", "--backend", "cpu", "--json",
            "--set", f"output.runs_dir={work / 'runs'}", "--set", f"output.name={name}",
            "--set", f"train.max_steps={steps}", "--set", "train.eval_every=0",
            "--set", "train.learning_rate=0.01"]
    for s in sets:
        args += ["--set", s]
    for line in run(args).splitlines():
        event = json.loads(line)
        if event["event"] == "started":
            return Path(event["run_dir"])
    raise SystemExit(f"{name}: no started event")


def export(binary: Path, run_dir: Path, fmt: str, out: Path, *extra) -> Path:
    run([binary, "export", run_dir, "--format", fmt, "--out", out, "--checkpoint", "last",
         "--force", *extra])
    return out


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """(tensors as float32 numpy arrays, metadata) of an F32 safetensors file."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[base + start:base + end], dtype="<f4").reshape(info["shape"])
    return out, meta


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))
