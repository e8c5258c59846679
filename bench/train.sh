#!/usr/bin/env bash
# Training throughput and peak memory: LoRA r=16 on all linear layers of a
# SmolLM2-135M-shaped random model, micro-batch 4 x 512 tokens, side by side
# with torch+PEFT doing the same steps in the same run.
#
#   bench/train.sh [cpu|wgpu|cuda ...]     (default: cpu)
#   PROFILE=debug bench/train.sh cpu       (skip the long release build)
#
# Needs python3 with torch, transformers and peft for the model and the
# reference.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKENDS=("${@:-cpu}")
WORK="${BENCH_DIR:-/tmp/tunesmith-bench}"
MODEL="$WORK/smollm2-135m"
DATA="$WORK/text-512.jsonl"
STEPS=6
PROFILE="${PROFILE:-release}"
mkdir -p "$WORK"

if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "making a SmolLM2-135M-shaped random model in $MODEL"
    python3 tests/fixtures/make_fixtures.py --smollm2-135m "$MODEL"
fi
[ -f "$DATA" ] || python3 bench/make_text_dataset.py "$DATA" 40

if [ "$PROFILE" = release ]; then
    cargo build --release --workspace --bins
else
    cargo build --workspace --bins
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE/tunesmith"

for backend in "${BACKENDS[@]}"; do
    out="$WORK/events-$backend.jsonl"
    /usr/bin/time -f "%M" -o "$WORK/rss-$backend.txt" "$BIN" train bench/train-lora.toml \
        --backend "$backend" --json \
        --set "model.path=$MODEL" --set "data.train=$DATA" \
        --set "train.max_steps=$STEPS" --set "output.runs_dir=$WORK/runs" \
        >"$out" 2>"$WORK/err-$backend.txt" || { cat "$WORK/err-$backend.txt"; exit 1; }
    # Mean tokens/s over the steps after the first (which compiles/warms up).
    python3 - "$out" "$backend" "$(cat "$WORK/rss-$backend.txt")" "$PROFILE" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
steps = [e for e in events if e["event"] == "step"][1:]
tps = sum(e["tokens_per_sec"] for e in steps) / len(steps)
print(f"tunesmith({sys.argv[2]}, {sys.argv[4]}): {tps:.0f} tokens/s, "
      f"peak RSS {int(sys.argv[3]) / 1024:.0f} MiB")
PY
done
/usr/bin/time -f "torch+peft peak RSS %M KiB" python3 bench/reference_train.py "$MODEL" "$STEPS"
