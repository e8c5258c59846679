#!/usr/bin/env bash
# Peak memory: what `plan::estimate` predicts (the `started` event) against
# what the run measured (the `finished` event: the process's peak resident
# memory, VmHWM), over a grid of settings, two optimizer steps each:
#
#   model     SmolLM2-135M-Instruct (real), a Qwen2.5-0.5B-shaped random model
#   method    LoRA r16 on all seven linear kinds (dropout 0.05), full fine-tuning
#   length    128, 512 (micro-batch 4, grad_accum 2)
#   checkpointing  off, on
#   storage   f32; and for LoRA bf16, and q4_0 / nf4 / q8_0 linear layers
#             (bf16 embeddings), at length 512
#
#   bench/memory.sh [cpu|wgpu|cuda]        (default: cpu)
#   ROWS="smollm2:lora:512:on:q4_0" bench/memory.sh
#                      (a subset: model:method:len:ckpt[:storage], storage f32
#                       when left out)
#
# Prints one row per setting and the largest |estimate/measured - 1|.
# Needs python3 with torch, transformers, peft and gguf (bench/common.sh)
# for the models only.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-cpu}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="${BENCH_DIR:-$TARGET/bench}"
PROFILE="${PROFILE:-debug}"
default_rows=""
for m in smollm2 qwen05b; do
    for method in lora full; do
        # Full fine-tuning of the 0.5B shape needs ~10 GB and minutes a step.
        [ "$m:$method" = qwen05b:full ] && continue
        for len in 128 512; do
            for ckpt in off on; do default_rows+="$m:$method:$len:$ckpt "; done
        done
    done
    for storage in bf16 q4_0 nf4 q8_0; do
        for ckpt in off on; do default_rows+="$m:lora:512:$ckpt:$storage "; done
    done
done
ROWS="${ROWS:-$default_rows}"
mkdir -p "$WORK"

. bench/common.sh

bench_models "$ROWS"

echo "== peak memory, estimate vs measured, backend $BACKEND, 2 steps of micro-batch 4 x grad_accum 2 =="
printf '%-34s %12s %12s %8s\n' setting estimate measured ratio
results="$WORK/memory-results.jsonl"
: >"$results"
for row in $ROWS; do
    IFS=: read -r model method len ckpt storage <<<"$row"
    storage="${storage:-f32}"
    out="$WORK/memory-$model-$method-$len-$ckpt-$storage.jsonl"
    flag=$([ "$ckpt" = on ] && echo true || echo false)
    case "$storage" in
        f32 | bf16 | f16) storage_args=(--set "model.dtype=$storage") ;;
        *) storage_args=(--set model.dtype=bf16 --set "model.quantize=$storage") ;;
    esac
    preset=bench/train-lora.toml method_args=(--set method.dropout=0.05)
    if [ "$method" = full ]; then preset=bench/train-full.toml method_args=(); fi
    "$BIN" train "$preset" --backend "$BACKEND" --json \
        --set "model.path=$WORK/$model" --set "data.train=$DATA" --set "data.max_length=$len" \
        --set train.micro_batch=4 --set train.grad_accum=2 --set train.max_steps=2 \
        --set "train.gradient_checkpointing=$flag" ${method_args[@]+"${method_args[@]}"} "${storage_args[@]}" \
        --set "output.runs_dir=$WORK/memory-runs" >"$out" 2>"$WORK/memory-err.txt" \
        || { cat "$WORK/memory-err.txt" >&2; exit 1; }
    # Full fine-tuning checkpoints are GBs: keep only the events.
    rm -rf "$WORK/memory-runs"
    "$PY" - "$out" "$row" >>"$results" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
started = next(e for e in events if e["event"] == "started")
finished = next(e for e in events if e["event"] == "finished")
print(json.dumps({"row": sys.argv[2], "estimate": started["estimated_memory_bytes"],
                  "measured": finished["peak_memory_bytes"]}))
PY
    tail -n 1 "$results" | "$PY" -c '
import json, sys
r = json.loads(sys.stdin.read())
row, est, got = r["row"], r["estimate"] / 2**20, r["measured"] / 2**20
print(f"{row:<34} {est:>8,.0f} MiB {got:>8,.0f} MiB {est / got:8.2f}")'
done
"$PY" - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
worst = max(rows, key=lambda r: abs(r["estimate"] / r["measured"] - 1))
print(f"largest error: {abs(worst['estimate'] / worst['measured'] - 1):.1%} ({worst['row']}); "
      f"{sum(abs(r['estimate'] / r['measured'] - 1) <= 0.15 for r in rows)} of {len(rows)} within 15%")
PY

# Against torch+PEFT on the same model, data and batch: both with the base
# in bf16 and gradient checkpointing on (the memory-saving settings each
# side offers), three steps of 4 x 512, peak RSS of the whole process.
# (QLoRA against PEFT + bitsandbytes is not here: bitsandbytes' 4-bit
# kernels need a GPU build.)
PEFT_MODELS="${PEFT_MODELS:-smollm2 qwen05b}"
echo "== peak memory vs torch+PEFT, bf16 base + gradient checkpointing, 3 steps of 4 x 512, backend $BACKEND =="
for model in $PEFT_MODELS; do
    case " $ROWS " in *" $model:"*) ;; *) bench_models "$model:" ;; esac
    out="$WORK/memory-peft-$model.jsonl"
    "$BIN" train bench/train-lora.toml --backend "$BACKEND" --json \
        --set "model.path=$WORK/$model" --set "data.train=$DATA" --set data.max_length=512 \
        --set train.micro_batch=4 --set train.max_steps=3 --set model.dtype=bf16 \
        --set train.gradient_checkpointing=true --set "output.runs_dir=$WORK/memory-runs" \
        >"$out" 2>"$WORK/memory-err.txt" || { cat "$WORK/memory-err.txt" >&2; exit 1; }
    rm -rf "$WORK/memory-runs"
    ref=$(/usr/bin/time -f "%M" -o "$WORK/rss-ref.txt" "$PY" bench/reference_train.py \
        "$WORK/$model" "$DATA" 3 4 512 "$([ "$BACKEND" = cpu ] && echo cpu || echo cuda)" bf16 ckpt)
    "$PY" - "$out" "$model" "$ref" "$(cat "$WORK/rss-ref.txt")" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
finished = next(e for e in events if e["event"] == "finished")
started = next(e for e in events if e["event"] == "started")
ref = json.loads(sys.argv[3])
theirs = ref["peak_mib"] if ref["peak_kind"] != "RSS" else int(sys.argv[4]) // 1024
ours = finished["peak_memory_bytes"] / 2**20
est = started["estimated_memory_bytes"] / 2**20
ratio = ours / theirs
print(f"{sys.argv[2]:>8}: tunesmith {ours:,.0f} MiB (estimate {est:,.0f}) | torch+peft {theirs:,.0f} MiB "
      f"({ref['peak_kind']}) | ratio {ratio:.2f} (goal <= 0.8{', met' if ratio <= 0.8 else ', NOT met'})")
PY
done
