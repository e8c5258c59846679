#!/usr/bin/env bash
# Records the engine outputs the UI tests replay (ui/test/fixtures/), from the
# real CLI: dataset and model reports, real training runs (their events,
# metrics.jsonl and config.toml), the runs list, an export report and error,
# a triage over learning rates, and base/tuned generations for the chat view. Run from anywhere:
#   ui/test/record-fixtures.sh [path/to/tunesmith]
# Nothing here is hand-written except backends.json (the app's own list, not
# engine numbers); derive-fixtures.py turns these
# recordings into the shapes the app's commands return (see its header).
set -euo pipefail
export RUST_BACKTRACE=0
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
T="${1:-${TUNESMITH:-$ROOT/target/debug/tunesmith}}"
OUT="$ROOT/ui/test/fixtures"
REC="${REC_DIR:-/tmp/ui-rec}"
cd "$ROOT"
rm -rf "$REC" && mkdir -p "$REC/runs" "$OUT/data" "$OUT/runs"
MODEL="$ROOT/assets/models/tiny-llama"
CHAT="$ROOT/assets/datasets/chat-sample.jsonl"
ALPACA="$ROOT/assets/datasets/alpaca-sample.jsonl"

# A dataset with bad rows (the first 40 chat rows, two of them broken).
BAD="$REC/mixed-with-bad-rows.jsonl"
{ head -n 20 "$CHAT"; echo '{"messages": [{"role": "user", "content": "no answer"'; 
  sed -n 21,30p "$CHAT"; echo '{"messages": [{"role": "assistant", "content": "answer first"}, {"role": "user", "content": "q"}]}';
  sed -n 31,40p "$CHAT"; } > "$BAD"

echo "== data inspect"
for f in "$CHAT" "$ALPACA" "$BAD"; do
  b="$(basename "$f" .jsonl)"
  "$T" data inspect "$f" --json > "$OUT/data/$b.auto.json"
  "$T" data inspect "$f" --model "$MODEL" --json > "$OUT/data/$b.auto.model.json"
done
# A format override that does not fit the file (re-inspect after a change).
"$T" data inspect "$CHAT" --format alpaca --model "$MODEL" --json > "$OUT/data/chat-sample.alpaca.model.json" || true
"$T" data inspect "$CHAT" --format text --model "$MODEL" --json > "$OUT/data/chat-sample.text.model.json" || true
"$T" data inspect "$ALPACA" --max-length 128 --model "$MODEL" --json > "$OUT/data/alpaca-sample.auto.model.128.json"

echo "== methods"
"$T" methods --json | python3 -m json.tool --indent 1 > "$OUT/methods.json"

echo "== model inspect"
"$T" model inspect "$MODEL" --json > "$OUT/model-tiny-llama.json"

echo "== models list (the bundled model, the GGUF fixtures, and a pickle-only folder it cannot train)"
mkdir -p "$REC/models/old-pickle"
cp "$MODEL/config.json" "$REC/models/old-pickle/"
printf 'not loaded' > "$REC/models/old-pickle/pytorch_model.bin"
"$T" models list --only-dirs --dir "$ROOT/assets/models" --dir "$ROOT/tests/fixtures/gguf" --dir "$REC/models" --json \
  > "$OUT/models-list.json"

echo "== estimates per method and rank (tunesmith plan), and one run too big for this machine"
mkdir -p "$OUT/plans"
PLAN=("$T" plan presets/quickstart.toml --set model.backend=cpu --json)
for r in 4 8 16 32; do
  "${PLAN[@]}" --set method.rank=$r --set method.alpha=$((2 * r)) > "$OUT/plans/lora-r$r.json"
done
"${PLAN[@]}" --set method.rank=8 --set method.alpha=16 --set 'method.target_modules=["q_proj","v_proj"]' \
  > "$OUT/plans/lora-r8-qv.json"
# MiSS at its card's width, and Bone: its card's 64 does not divide the tiny
# model's 344-wide MLP (the engine's refusal), 8 does.
"${PLAN[@]}" --set method.kind=miss > "$OUT/plans/miss-balance-r32.json"
"${PLAN[@]}" --set method.kind=miss --set method.mode=bat --set method.rank=8 > "$OUT/plans/miss-bat-r8.json"
"${PLAN[@]}" --set method.kind=miss --set method.mode=bat --set method.rank=64 \
  > /dev/null 2> "$OUT/plans/miss-bat-r64.error.txt" || true
# AdaLoRA at its card's ranks and at smaller ones.
"${PLAN[@]}" --set method.kind=adalora > "$OUT/plans/adalora-r12-t8.json"
"${PLAN[@]}" --set method.kind=adalora --set method.init_r=6 --set method.target_r=4 \
  > "$OUT/plans/adalora-r6-t4.json"
# KaSA at its card's rank and at a smaller one.
"${PLAN[@]}" --set method.kind=kasa > "$OUT/plans/kasa-r8.json"
"${PLAN[@]}" --set method.kind=kasa --set method.rank=4 > "$OUT/plans/kasa-r4.json"
# HFT at the paper's half and at a quarter.
"${PLAN[@]}" --set method.kind=hft > "$OUT/plans/hft-f0.5.json"
"${PLAN[@]}" --set method.kind=hft --set method.fraction=0.25 > "$OUT/plans/hft-f0.25.json"
# Far more activations than RAM: the verdict and its suggestions.
"${PLAN[@]}" --set data.max_length=60000 --set train.micro_batch=16 > "$OUT/plans/lora-r16-len60000.json"

echo "== a real quickstart run"
"$T" train --backend cpu presets/quickstart.toml --set output.runs_dir="$REC/runs" --json > "$OUT/runs/quickstart.events.jsonl"
QS="$(ls -d "$REC"/runs/*-quickstart | tail -n 1)"
cp "$QS/config.toml" "$OUT/runs/quickstart.config.toml"
cmp <(cat "$QS/metrics.jsonl") <(grep -v '^$' "$OUT/runs/quickstart.events.jsonl") >/dev/null \
  || cp "$QS/metrics.jsonl" "$OUT/runs/quickstart.metrics.jsonl"

echo "== a run whose learning rate is far too high (the advisor stops it)"
sleep 1
"$T" train --backend cpu presets/quickstart.toml --set output.runs_dir="$REC/runs" --set train.learning_rate=3.0 \
  --set train.warmup_steps=0 --set output.name=too-hot --json > "$OUT/runs/too-hot.events.jsonl" || true

echo "== an AdaLoRA run (its rank reallocations)"
sleep 1
"$T" train --backend cpu presets/quickstart.toml --set output.runs_dir="$REC/runs" --set method.kind=adalora \
  --set method.tinit=10 --set method.tfinal=10 --set output.name=adalora --json > "$OUT/runs/adalora.events.jsonl"

echo "== a run the advisor stops (divergence: the model collapses)"
sleep 1
"$T" train --backend cpu presets/quickstart.toml --set output.runs_dir="$REC/runs" --set train.learning_rate=50.0 \
  --set train.warmup_steps=0 --set output.name=diverged --json > "$OUT/runs/diverged.events.jsonl" || true

echo "== an interrupted run (killed after its first checkpoint)"
sleep 1
"$T" train --backend cpu presets/quickstart.toml --set output.runs_dir="$REC/runs" --set train.checkpoint_every=10 \
  --set output.name=interrupted --json > "$REC/interrupted.jsonl" &
pid=$!
for _ in $(seq 1 600); do
  grep -q '"event":"checkpoint"' "$REC/interrupted.jsonl" 2>/dev/null && break
  sleep 0.1
done
sleep 2
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
cp "$REC/interrupted.jsonl" "$OUT/runs/interrupted.events.jsonl"

echo "== a triage over three learning rates (the first one ranked is kept and runs to the end)"
"$T" triage presets/quickstart.toml --grid lr=1e-3,3e-3,1e-2 --set output.runs_dir="$REC/triage" --set model.backend=cpu \
  --set train.max_steps=40 --set train.eval_every=10 --json > "$OUT/triage.jsonl"

echo "== runs list"
"$T" runs list --dir "$REC/runs" --json > "$OUT/runs-list.jsonl"

echo "== export"
"$T" export "$QS" --format peft --out "$QS/export/peft" --json > "$OUT/export-peft.json"
RUST_BACKTRACE=0 "$T" export "$QS" --format peft --out "$QS/export/peft" --json > "$REC/err.out" 2> "$OUT/export-peft.error.txt" || true

echo "== chat (base model, then the quickstart run's best checkpoint)"
PROMPT="What is the capital of Sweden?"
"$T" generate --backend cpu --model "$MODEL" --chat --prompt "$PROMPT" --max-new-tokens 24 > "$OUT/chat-base.txt"
"$T" generate --backend cpu --adapter "$QS" --chat --prompt "$PROMPT" --max-new-tokens 24 > "$OUT/chat-tuned.txt"
printf '%s' "$PROMPT" > "$OUT/chat-prompt.txt"

echo "== derive the app-shaped fixtures"
python3 "$ROOT/ui/test/derive-fixtures.py" "$ROOT" "$REC"
echo "recorded into $OUT"
