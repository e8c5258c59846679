#!/usr/bin/env bash
# The adapter methods side by side on the real SmolLM2-135M-Instruct
# (`tunesmith models fetch smollm2-135m-instruct`): the same short run of the
# SmolLM2 quickstart (smithy-chat, 8 x 128, lr 1e-3 cosine) per method, and a
# table of method, trainable parameters, the optimizer's moments (AdamW's m
# and v, f32, for the trained values only), tokens/s, peak memory, the final
# validation loss and a forgetting figure: the loss on held-out text of
# another kind (the bundled alpaca-sample answers, `tunesmith eval`) after
# tuning minus before. One method after the other in one process each, so
# the tokens/s compare on the same machine.
#   bench/methods.sh [STEPS]        (default 40; METHODS="lora dora pissa corda miss bone adalora kasa hft")
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
PROFILE="${PROFILE:-debug}"
STEPS="${1:-40}"
METHODS="${METHODS:-lora dora pissa corda miss bone adalora kasa hft}"
if [ "$PROFILE" = release ]; then
    cargo build --release -p tunesmith --bin tunesmith
else
    cargo build --workspace --bins
fi
BIN="$TARGET/$PROFILE/tunesmith"
MODEL="$("$BIN" models fetch smollm2-135m-instruct | tail -n 1)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

HELDOUT=assets/datasets/alpaca-sample.jsonl
BASE_LOSS="$("$BIN" eval --model "$MODEL" --data "$HELDOUT" --max-length 128 --backend cpu --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["loss"])')"
echo "base model's loss on $HELDOUT: $BASE_LOSS"
printf '%-7s %12s %10s %10s %12s %14s %10s %8s\n' method trainable "moments MiB" tokens/s "peak MiB" "final val" forgetting steps
for m in $METHODS; do
    case "$m" in
        lora) set_method=() ;;
        dora) set_method=(--set method.use_dora=true) ;;
        pissa) set_method=(--set method.init=pissa) ;;
        # Switching the kind starts from MiSS's defaults (shard width 32).
        miss) set_method=(--set method.kind=miss) ;;
        bone) set_method=(--set method.kind=miss --set method.mode=bat --set method.rank=64) ;;
        corda) set_method=(--set method.init=corda) ;;
        adalora) set_method=(--set method.kind=adalora) ;;
        kasa) set_method=(--set method.kind=kasa) ;;
        # Full-parameter updates want a full fine-tune's learning rate.
        hft) set_method=(--set method.kind=hft --set train.learning_rate=2e-5) ;;
        *) echo "unknown method $m (lora, dora, pissa, corda, miss, bone, adalora, kasa, hft)" >&2; exit 2 ;;
    esac
    "$BIN" train presets/quickstart-smollm2.toml --backend cpu --json \
        --set "model.path=$MODEL" --set "output.runs_dir=$WORK/$m" \
        --set "train.max_steps=$STEPS" --set "train.eval_every=$STEPS" \
        "${set_method[@]}" > "$WORK/$m.jsonl"
    RUN_DIR="$(python3 -c 'import json, sys; print(next(json.loads(l)["run_dir"] for l in open(sys.argv[1]) if "\"started\"" in l))' "$WORK/$m.jsonl")"
    "$BIN" eval --adapter "$RUN_DIR" --data "$HELDOUT" --backend cpu --json > "$WORK/$m.eval.json"
    python3 - "$m" "$WORK/$m.jsonl" "$WORK/$m.eval.json" "$BASE_LOSS" <<'EOF'
import json, sys
name, path = sys.argv[1], sys.argv[2]
heldout = json.load(open(sys.argv[3]))["loss"] - float(sys.argv[4])
events = [json.loads(l) for l in open(path)]
started = next(e for e in events if e["event"] == "started")
steps = [e for e in events if e["event"] == "step"]
done = next(e for e in events if e["event"] == "finished")
# tokens/s after the first step (which pays for first-touch allocation)
rate = steps[-1]["tokens_per_sec"] if steps else float("nan")
peak = (done.get("peak_memory_bytes") or 0) / 2**20
val = done.get("final_val_loss")
moments = 2 * 4 * started["trainable_params"] / 2**20
print(f"{name:<7} {started['trainable_params']:>12,} {moments:>10.1f} {rate:>10.0f} {peak:>12.0f} "
      f"{val if val is None else round(val, 4)!s:>14} {heldout:>+10.4f} {done['step']:>8}")
EOF
done
