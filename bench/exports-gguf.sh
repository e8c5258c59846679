#!/usr/bin/env bash
# Exports of a LoRA run on the real SmolLM2-135M-Instruct Q4_1 GGUF
# (../shared/REAL-MODELS.md), checked with transformers and PEFT: the PEFT
# adapter applied to transformers' own reading of the same GGUF, and the
# merged folder (config and tokenizer written from the GGUF metadata), both
# against Tunesmith's adapted logits; the merged tokenizer against the GGUF's.
#
#   bench/exports-gguf.sh       (BENCH_PYTHON, BENCH_DIR as in bench/train.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="${BENCH_DIR:-$TARGET/bench}"
PROFILE="${PROFILE:-debug}"
mkdir -p "$WORK"
. bench/common.sh
bench_models "smollm2:"
GGUF="$(cd "$WORK/gguf" && pwd)/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT="$WORK/exports-gguf"
rm -rf "$OUT" && mkdir -p "$OUT"
"$BIN" train presets/quickstart.toml --backend cpu --set model.path="$GGUF" \
    --set data.max_length=128 --set train.micro_batch=4 --set train.max_steps=8 \
    --set train.learning_rate=1e-3 --set train.eval_every=0 --set output.runs_dir="$OUT/runs" >/dev/null
RUN="$(ls -d "$OUT"/runs/* | tail -n 1)"
"$BIN" export "$RUN" --format peft --out "$OUT/peft" >/dev/null
"$BIN" export "$RUN" --format merged --out "$OUT/merged" >/dev/null
cat >"$OUT/cases.json" <<'JSON'
{"cases": [
 {"name": "text", "text": "The capital of France is"},
 {"name": "chat", "messages": [{"role": "user", "content": "What is the capital of France?"}], "add_generation_prompt": true}
]}
JSON
"$BIN" logits --backend cpu --adapter "$RUN" --cases "$OUT/cases.json" --out "$OUT/ours.json" 2>/dev/null
"$PY" bench/check_gguf_exports.py "$GGUF" "$OUT/peft" "$OUT/merged" "$OUT/ours.json" 2>/dev/null
