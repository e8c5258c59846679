#!/usr/bin/env bash
# bf16 on the real SmolLM2-135M-Instruct: `tunesmith logits --dtype bf16`
# (bf16 weights, f32 compute) against transformers with
# dtype=torch.bfloat16 (bf16 weights and activations) on five English
# texts. Prints the argmax agreement (goal >= 99% of positions) and the
# largest |diff| relative to the largest |logit|, against what bf16 allows:
# transformers' own f32 and bf16 logits differ by as much (bf16 rounds every
# activation; 30 layers accumulate it), so the bound is 1.1x that distance;
# and against transformers computing in f32 on the same bf16 weights, which
# is what Tunesmith computes (bound 1e-4).
#
#   bench/logits-bf16.sh [cpu|wgpu|cuda]
#
# Needs python3 with torch, transformers and gguf (bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-cpu}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="${BENCH_DIR:-$TARGET/bench}"
PROFILE="${PROFILE:-debug}"
mkdir -p "$WORK"

. bench/common.sh

"$PY" bench/models.py smollm2 "$WORK/smollm2"
CASES="$WORK/bf16-cases.json"
"$PY" bench/logits_bf16.py cases "$WORK/smollm2" "$CASES"
"$BIN" logits --backend "$BACKEND" --dtype bf16 --model "$WORK/smollm2" --cases "$CASES" \
    --out "$WORK/bf16-tunesmith.json"
"$PY" bench/logits_bf16.py reference "$WORK/smollm2" "$CASES" "$WORK/bf16-transformers.json"
echo "== SmolLM2-135M-Instruct in bf16, tunesmith ($BACKEND) vs transformers (cpu) =="
"$PY" bench/logits_bf16.py compare "$WORK/bf16-tunesmith.json" "$WORK/bf16-transformers.json"
