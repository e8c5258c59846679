#!/usr/bin/env bash
# The real SmolLM2-135M-Instruct GGUF (../shared/REAL-MODELS.md) loaded three
# ways, f32 on the CPU: Tunesmith reading the .gguf file directly, Tunesmith
# reading the HF folder transformers converts from it (bench/models.py), and
# transformers reading the .gguf itself. Prints the largest logit difference
# of each Tunesmith side against transformers (token ids must be identical),
# and the GGUF load's wall time and peak RSS.
#
#   bench/logits-gguf.sh        (BENCH_PYTHON, BENCH_DIR as in bench/train.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="${BENCH_DIR:-$TARGET/bench}"
PROFILE="${PROFILE:-debug}"
mkdir -p "$WORK"
. bench/common.sh
bench_models "smollm2:"
GGUF="$WORK/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
CASES="$WORK/gguf-cases.json"
cat >"$CASES" <<'JSON'
{"cases": [
 {"name": "text", "text": "The capital of France is"},
 {"name": "text_long", "text": "Fine-tuning a small language model on your own machine takes a dataset, a base model and some patience. Here is how it goes:"},
 {"name": "text_digits", "text": "In 2024, 3 of the 12 runs used 512 tokens."},
 {"name": "chat", "messages": [
   {"role": "system", "content": "You are a helpful assistant."},
   {"role": "user", "content": "What is the capital of France?"}], "add_generation_prompt": true}
]}
JSON
"$PY" bench/reference_logits_gguf.py "$GGUF" "$CASES" "$WORK/gguf-reference.json" 2>/dev/null
/usr/bin/time -f "tunesmith from the .gguf: wall %e s, peak RSS %M KiB (load + forward + write)" \
    "$BIN" logits --backend cpu --model "$GGUF" --cases "$CASES" --out "$WORK/gguf-ours.json"
"$BIN" logits --backend cpu --model "$WORK/smollm2" --cases "$CASES" --out "$WORK/gguf-ours-hf.json" 2>/dev/null
echo -n "from the .gguf:      "; "$PY" bench/compare_logits.py "$WORK/gguf-ours.json" "$WORK/gguf-reference.json"
echo -n "from the HF folder:  "; "$PY" bench/compare_logits.py "$WORK/gguf-ours-hf.json" "$WORK/gguf-reference.json"
