#!/usr/bin/env bash
# Greedy decoding speed (the chat panel's path): `tunesmith generate` on the
# real SmolLM2-135M-Instruct against transformers generate on the same
# machine, the same prompt and the same number of new tokens (end-of-turn
# tokens ignored on both sides), f32, all cores. Also says whether both
# produced the same text (greedy f32 decoding should agree token for token).
#
#   bench/generate.sh [cpu|wgpu|cuda]        (default: cpu)
#   NEW=256 bench/generate.sh                 (new tokens; default 128)
#   PROFILE=release bench/generate.sh         (default: the dev build `make run` uses)
#
# Python and the build as in bench/train.sh (bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-cpu}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="${BENCH_DIR:-$TARGET/bench}"
NEW="${NEW:-128}"
PROFILE="${PROFILE:-debug}"
PROMPT="${PROMPT:-The three most useful things to know about training a small language model are}"
mkdir -p "$WORK"

. bench/common.sh
"$PY" bench/models.py smollm2 "$WORK/smollm2"

"$BIN" generate --model "$WORK/smollm2" --prompt "$PROMPT" --greedy --ignore-eos \
    --max-new-tokens "$NEW" --backend "$BACKEND" >"$WORK/gen-ours.txt" 2>"$WORK/gen-ours.err" \
    || { cat "$WORK/gen-ours.err" >&2; exit 1; }
ref=$("$PY" bench/reference_generate.py "$WORK/smollm2" "$PROMPT" "$NEW" \
    "$([ "$BACKEND" = cpu ] && echo cpu || echo cuda)")
"$PY" - "$WORK/gen-ours.txt" "$WORK/gen-ours.err" "$ref" "$BACKEND" <<'PY'
import json, re, sys
ours_text = open(sys.argv[1]).read().rstrip("\n")
m = re.search(r"(\d+) token\(s\) in ([\d.]+)s \(([\d.]+) tokens/s\)", open(sys.argv[2]).read())
if not m:
    sys.exit("no timing line in tunesmith's output: " + open(sys.argv[2]).read())
n, secs, tps = int(m[1]), float(m[2]), float(m[3])
ref = json.loads(sys.argv[3])
print(f"== greedy decoding, SmolLM2-135M-Instruct, f32, {n} new tokens, backend {sys.argv[4]} ==")
print(f"tunesmith {tps:7.1f} tok/s ({secs:.2f} s) | transformers {ref['tokens_per_sec']:7.1f} tok/s "
      f"({ref['seconds']:.2f} s) | ratio {tps / ref['tokens_per_sec']:.2f}x")
same = ours_text == ref["text"]
if same:
    print("same text on both sides")
else:
    k = next((i for i, (a, b) in enumerate(zip(ours_text, ref["text"])) if a != b),
             min(len(ours_text), len(ref["text"])))
    print(f"texts differ from character {k}: tunesmith {ours_text[k:k+40]!r} vs transformers {ref['text'][k:k+40]!r}")
PY
