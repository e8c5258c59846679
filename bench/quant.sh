#!/usr/bin/env bash
# QLoRA learns: LoRA r16 (all seven linear kinds) on the real
# SmolLM2-135M-Instruct over the alpaca sample, the base held in bf16 (the
# reference) and with its linear layers in q8_0, q4_0 and nf4 blocks; the
# same seed, data and schedule for all. Prints each run's validation loss
# before training and at the end, its tokens/s and peak memory, and whether
# each quantized run's final validation loss is within MARGIN (default 0.05
# nats) of the bf16 run's and fell at least 80% as far.
#
#   bench/quant.sh [cpu|wgpu|cuda]          (default: cpu)
#   STEPS=40 STORAGES="bf16 q4_0" bench/quant.sh
#
# Needs python3 with torch, transformers, peft and gguf (bench/common.sh)
# for the model only.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-cpu}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="${BENCH_DIR:-$TARGET/bench}"
PROFILE="${PROFILE:-debug}"
STEPS="${STEPS:-80}"
STORAGES="${STORAGES:-bf16 q8_0 q4_0 nf4}"
MARGIN="${MARGIN:-0.05}"
mkdir -p "$WORK"

. bench/common.sh

"$PY" bench/models.py smollm2 "$WORK/smollm2"

echo "== LoRA r16 on SmolLM2-135M-Instruct, alpaca sample, $STEPS steps of 4 x <=256 tokens, backend $BACKEND =="
results="$WORK/quant-results.jsonl"
: >"$results"
for storage in $STORAGES; do
    case "$storage" in
        f32 | bf16 | f16) storage_args=(--set "model.dtype=$storage") ;;
        *) storage_args=(--set model.dtype=bf16 --set "model.quantize=$storage") ;;
    esac
    out="$WORK/quant-$storage.jsonl"
    "$BIN" train bench/train-lora.toml --backend "$BACKEND" --json \
        --set "model.path=$WORK/smollm2" --set data.train=assets/datasets/alpaca-sample.jsonl \
        --set data.format=auto --set data.max_length=256 --set data.val_fraction=0.1 \
        --set train.micro_batch=4 --set "train.max_steps=$STEPS" --set train.eval_every=10 \
        --set train.learning_rate=3e-4 --set train.schedule=cosine --set train.warmup_steps=4 \
        "${storage_args[@]}" --set "output.runs_dir=$WORK/quant-runs" \
        >"$out" 2>"$WORK/quant-err.txt" || { cat "$WORK/quant-err.txt" >&2; exit 1; }
    rm -rf "$WORK/quant-runs"
    "$PY" - "$out" "$storage" >>"$results" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
evals = [e for e in events if e["event"] == "eval"]
steps = [e for e in events if e["event"] == "step"]
finished = next(e for e in events if e["event"] == "finished")
started = next(e for e in events if e["event"] == "started")
print(json.dumps({
    "storage": sys.argv[2],
    "base": started.get("base_storage", ""),
    "evals": [[e["step"], e["val_loss"]] for e in evals],
    "tokens_per_sec": sum(s["tokens_per_sec"] for s in steps[1:]) / max(1, len(steps) - 1),
    "peak": finished.get("peak_memory_bytes"),
}))
PY
done
"$PY" - "$results" "$MARGIN" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
margin = float(sys.argv[2])
ref = next((r for r in rows if r["storage"] == "bf16"), rows[0])
ref_first, ref_last = ref["evals"][0][1], ref["evals"][-1][1]
print(f"{'base':<8} {'val before':>10} {'val after':>10} {'drop':>7} {'tok/s':>7} {'peak':>9}  verdict")
for r in rows:
    first, last = r["evals"][0][1], r["evals"][-1][1]
    drop = first - last
    ok = last <= ref_last + margin and drop >= 0.8 * (ref_first - ref_last)
    verdict = "reference" if r is ref else ("learns like bf16" if ok else "does NOT learn like bf16")
    peak = f"{r['peak'] / 2**20:,.0f} MiB" if r["peak"] else "-"
    print(f"{r['storage']:<8} {first:>10.4f} {last:>10.4f} {drop:>7.4f} {r['tokens_per_sec']:>7.0f} {peak:>9}  {verdict}")
curve = lambda r: " ".join(f"{s}:{v:.3f}" for s, v in r["evals"])
for r in rows:
    print(f"  {r['storage']:<6} {curve(r)}")
PY
