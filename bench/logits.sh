#!/usr/bin/env bash
# Time and peak memory of `tunesmith logits` on a SmolLM2-135M-shaped random
# model (512 tokens), side by side with transformers on the same input.
#
#   bench/logits.sh [cpu|wgpu|cuda]
#
# Needs python3 with torch + transformers (for the model and the reference):
#   pip install torch transformers tokenizers safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-cpu}"
WORK="${BENCH_DIR:-/tmp/tunesmith-bench}"
MODEL="$WORK/smollm2-135m"
RUNS="${RUNS:-3}"
mkdir -p "$WORK"

if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "making a SmolLM2-135M-shaped random model in $MODEL"
    python3 tests/fixtures/make_fixtures.py --smollm2-135m "$MODEL"
fi

cargo build --release -p tunesmith --bin tunesmith
BIN="${CARGO_TARGET_DIR:-target}/release/tunesmith"

measure() { # label, command...
    local label="$1"; shift
    for i in $(seq "$RUNS"); do
        /usr/bin/time -f "$label wall %e s, peak RSS %M KiB" "$@" >/dev/null 2>"$WORK/err.txt" \
            || { cat "$WORK/err.txt"; exit 1; }
        tail -n 1 "$WORK/err.txt"
    done
}

echo "== 512 tokens, full logits, $RUNS runs each (whole process: load + forward + write) =="
measure "tunesmith($BACKEND)" "$BIN" logits --backend "$BACKEND" --model "$MODEL" \
    --cases "$MODEL/cases.json" --out "$WORK/tunesmith.json"
measure "transformers(cpu)  " python3 bench/reference_logits.py "$MODEL" "$WORK/reference.json"
python3 bench/compare_logits.py "$WORK/tunesmith.json" "$WORK/reference.json"
