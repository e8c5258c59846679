#!/usr/bin/env bash
# Training throughput, peak memory and losses: LoRA r=16 on all seven linear
# kinds, f32, side by side with torch+PEFT (SDPA attention, all cores) doing
# the same steps on the same token rows in the same run. One row per model
# and micro-batch shape:
#
#   SmolLM2-135M-Instruct (the real model, ../shared/REAL-MODELS.md)  4 x 512, 8 x 128
#   a Qwen2.5-0.5B-shaped random model                               4 x 512, 8 x 128
#
#   bench/train.sh [cpu|wgpu|cuda]          (default: cpu)
#   PROFILE=release bench/train.sh          (the release build; default: the dev build `make run` uses)
#   ROWS="smollm2:4x512" STEPS=4 bench/train.sh   (a subset)
#   FUSED_ROW=1 bench/train.sh              (also Tunesmith without its fused kernels)
#
# Needs python3 with torch, transformers, peft and gguf (bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-cpu}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="${BENCH_DIR:-$TARGET/bench}"
STEPS="${STEPS:-5}"
PROFILE="${PROFILE:-debug}"
ROWS="${ROWS:-smollm2:4x512 smollm2:8x128 qwen05b:4x512 qwen05b:8x128}"
mkdir -p "$WORK"

. bench/common.sh

bench_models "$ROWS"

# tunesmith LABEL MODEL BATCH SEQ [ENV...]: prints one JSON line like the reference's.
tunesmith() {
    local label="$1" model="$2" batch="$3" seq="$4"; shift 4
    local out="$WORK/events-$label.jsonl"
    env "$@" /usr/bin/time -f "%M" -o "$WORK/rss-$label.txt" "$BIN" train bench/train-lora.toml \
        --backend "$BACKEND" --json \
        --set "model.path=$model" --set "data.train=$DATA" --set "data.max_length=$seq" \
        --set "train.micro_batch=$batch" --set "train.max_steps=$STEPS" \
        --set "output.runs_dir=$WORK/runs" \
        >"$out" 2>"$WORK/err-$label.txt" || { cat "$WORK/err-$label.txt" >&2; exit 1; }
    "$PY" - "$out" "$(cat "$WORK/rss-$label.txt")" "$label" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
steps = [e for e in events if e["event"] == "step"]
late = steps[1:]
print(json.dumps({
    "side": sys.argv[3], "tokens_per_sec": sum(e["tokens_per_sec"] for e in late) / len(late),
    "losses": [round(e["loss"], 4) for e in steps], "peak_mib": int(sys.argv[2]) // 1024,
}))
PY
}

echo "== LoRA r16, all linear kinds, f32, $STEPS steps (tokens/s over steps 2+), backend $BACKEND, $(nproc) cores =="
for row in $ROWS; do
    model="${row%%:*}"; shape="${row#*:}"; batch="${shape%x*}"; seq="${shape#*x}"
    dir="$WORK/$model"
    ours=$(tunesmith "tunesmith-$model-$shape" "$dir" "$batch" "$seq")
    unfused=""
    if [ -n "${FUSED_ROW:-}" ]; then
        unfused=$(tunesmith "unfused-$model-$shape" "$dir" "$batch" "$seq" TUNESMITH_FUSED=0)
    fi
    ref=$(/usr/bin/time -f "%M" -o "$WORK/rss-ref.txt" "$PY" bench/reference_train.py \
        "$dir" "$DATA" "$STEPS" "$batch" "$seq" "$([ "$BACKEND" = cpu ] && echo cpu || echo cuda)")
    "$PY" - "$model $shape" "$ours" "$ref" "$unfused" "$(cat "$WORK/rss-ref.txt")" <<'PY'
import json, sys
row, ours, ref = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
unfused = json.loads(sys.argv[4]) if sys.argv[4] else None
if ref["peak_kind"] == "RSS":
    ref["peak_mib"] = int(sys.argv[5]) // 1024
ratio = ours["tokens_per_sec"] / ref["tokens_per_sec"]
print(f"{row:>14}: tunesmith {ours['tokens_per_sec']:7.1f} tok/s, peak {ours['peak_mib']:5d} MiB | "
      f"torch+peft {ref['tokens_per_sec']:7.1f} tok/s, peak {ref['peak_mib']:5d} MiB | "
      f"ratio {ratio:.2f}x")
print(f"{'':>14}  losses tunesmith {ours['losses']}  torch+peft {ref['losses']}")
if unfused:
    print(f"{'':>14}  without fused kernels: {unfused['tokens_per_sec']:.1f} tok/s "
          f"({ours['tokens_per_sec'] / unfused['tokens_per_sec']:.2f}x from the kernels)")
PY
done
