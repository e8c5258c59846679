#!/usr/bin/env bash
# `tunesmith data inspect` on a 100k-row messages JSONL with a SmolLM2-like
# tokenizer (49152-token byte-level BPE, ChatML template): rows/s and peak
# RSS, side by side with transformers doing the same rendering, tokenizing
# and assistant masking in the same run.
#
#   bench/data.sh [ROWS]          (default 100000)
#   PROFILE=debug bench/data.sh   (skip the release build)
#
# Needs python3 with tokenizers and transformers (inputs and reference).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-100000}"
WORK="${BENCH_DIR:-/tmp/tunesmith-bench}/data"
PROFILE="${PROFILE:-release}"
mkdir -p "$WORK"
DATA="$WORK/chat-$ROWS.jsonl"
[ -f "$DATA" ] && [ -f "$WORK/tokenizer/tokenizer.json" ] || python3 bench/make_chat_data.py "$WORK" "$ROWS"

if [ "$PROFILE" = release ]; then
    cargo build --release --workspace --bins
else
    cargo build --workspace --bins
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE/tunesmith"

start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$WORK/rss.txt" "$BIN" data inspect "$DATA" \
    --model "$WORK/tokenizer" --max-length 2048 --json >"$WORK/report.json"
end=$(date +%s.%N)
ref=$(python3 bench/reference_data.py "$DATA" "$WORK/tokenizer")
python3 - "$WORK/report.json" "$start" "$end" "$(cat "$WORK/rss.txt")" "$ref" "$(nproc)" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
secs = float(sys.argv[3]) - float(sys.argv[2])
rss_mib = int(sys.argv[4]) / 1024
ref = json.loads(sys.argv[5])
rows = report["rows"] + report["bad_rows"]
print(f"{'':28}{'rows/s':>10}{'seconds':>10}{'peak RSS':>12}")
print(f"{'tunesmith data inspect':28}{rows / secs:>10.0f}{secs:>10.1f}{rss_mib:>9.0f} MiB")
print(f"{'transformers (1 process)':28}{ref['rows_per_s']:>10}{ref['seconds']:>10}{'':>12}")
print(f"rows {rows} ({report['bad_rows']} bad), tokens {report['tokens']['total_tokens']} "
      f"(reference {ref['tokens']}), {sys.argv[6]} cores")
PY
