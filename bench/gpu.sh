#!/usr/bin/env bash
# One-shot GPU check for a lent device machine (no network there): LoRA r16
# training of the SmolLM2-135M-shaped model through burn's wgpu backend on
# the machine's Vulkan driver, side by side with torch+PEFT on CUDA, same
# shape (micro-batch 4 x 512), same steps.
#
#   bench/gpu.sh BINARY.gz OUT_DIR
#
# BINARY.gz is a gzipped tunesmith built on the developer machine; the
# Vulkan loader comes from .gl/*.deb when the machine has none (see the
# device notes). Needs python3 with torch, transformers, peft (present on
# those machines).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN_GZ="$1"; OUT="$2"; STEPS="${STEPS:-8}"
W=/tmp/tunesmith-gpu; mkdir -p "$W" "$OUT"
if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
fi
# The driver's own folder on these machines; the loader does not look there.
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
    [ -e "$icd" ] && export VK_DRIVER_FILES="$icd" \
        __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
done
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}; $(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\n' ' ')"
gzip -dc "$BIN_GZ" >"$W/tunesmith" && chmod +x "$W/tunesmith"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 tests/fixtures/make_fixtures.py --smollm2-135m "$W/model" >"$OUT/model.log" 2>&1 || tail -5 "$OUT/model.log"
python3 bench/make_text_dataset.py "$W/text.jsonl" 40
start=$(date +%s)
VK_LOADER_DEBUG=error timeout 420 "$W/tunesmith" train bench/train-lora.toml --backend wgpu --json \
    --set "model.path=$W/model" --set "data.train=$W/text.jsonl" \
    --set "train.max_steps=$STEPS" --set "output.runs_dir=$W/runs" \
    >"$OUT/events-wgpu.jsonl" 2>"$OUT/err-wgpu.txt"
echo "wgpu run: exit $?, $(( $(date +%s) - start )) s wall" | tee -a "$OUT/gpu.txt"
tail -3 "$OUT/err-wgpu.txt"
python3 - "$OUT/events-wgpu.jsonl" <<'PY' | tee -a "$OUT/gpu.txt"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [e for e in ev if e["event"] == "step"]
for e in ev:
    if e["event"] in ("started", "failed"):
        print({k: e[k] for k in ("event", "backend", "message") if k in e})
for s in steps:
    print(f"step {s['step']}: loss {s['loss']:.4f} grad {s['grad_norm']:.3f} {s['tokens_per_sec']:.0f} tok/s")
late = steps[2:] or steps[1:]
if late:
    print(f"tunesmith(wgpu/vulkan): {sum(s['tokens_per_sec'] for s in late) / len(late):.0f} tokens/s (steps 3+)")
PY
python3 bench/reference_train.py "$W/model" "$STEPS" cuda 2>&1 | tail -2 | tee -a "$OUT/gpu.txt"
