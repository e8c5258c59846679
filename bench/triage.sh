#!/usr/bin/env bash
# How often triage keeps the candidate that ends best. On the bundled model
# and sample dataset, for several seeds: `tunesmith triage --run-all` runs
# four learning rates for the early window, ranks them by the SFT guide's
# early dynamics, then runs every candidate to the end so the candidate kept
# can be compared with the one whose best validation loss is lowest.
#
#   bench/triage.sh [SEEDS]       (default 5)
#   GRID=lr=3e-4,1e-3,3e-3,1e-2 EPOCHS=2 bench/triage.sh
#
# Prints one line per seed and the rate; the triage folders (triage.md,
# triage.svg) stay in $BENCH_DIR/triage.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-5}"
GRID="${GRID:-lr=3e-4,1e-3,3e-3,1e-2}"
EPOCHS="${EPOCHS:-2}"
WORK="${BENCH_DIR:-/tmp/tunesmith-bench}/triage"
rm -rf "$WORK" && mkdir -p "$WORK"
cargo build --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/debug/tunesmith"

hits=0
naive_hits=0
for seed in $(seq 1 "$SEEDS"); do
    "$BIN" triage presets/quickstart.toml --grid "$GRID" --run-all --json \
        --set output.runs_dir="$WORK" --set model.backend=cpu \
        --set train.epochs="$EPOCHS" --set train.seed="$seed" --set data.seed="$seed" \
        | tail -1 >"$WORK/report-$seed.json"
    line=$(python3 - "$WORK/report-$seed.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["candidates"]
kept, best = r["kept"], r["best_at_end"]
# The naive pick for comparison: the lowest early training loss.
naive = min((i for i, x in enumerate(c) if x["early"]), key=lambda i: c[i]["early"]["mean_loss"])
order = sorted((x for x in c if x["rank"] is not None), key=lambda x: x["rank"])
losses = " ".join(f'{x["name"]}={x["best_val_loss"]:.4f}' for x in c if x["best_val_loss"] is not None)
print(f'{int(kept == best)} {int(naive == best)} kept={c[kept]["name"]} lowest-early-loss={c[naive]["name"]} best={c[best]["name"] if best is not None else "-"} '
      f'early-order={">".join(x["name"] for x in order)} steps={r["steps_run"]}/{r["steps_all_to_end"]} | {losses}')
PY
)
    read -r hit naive rest <<<"$line"
    echo "seed $seed: $rest"
    hits=$((hits + hit))
    naive_hits=$((naive_hits + naive))
done
n=$(tr ',' '\n' <<<"${GRID#*=}" | wc -l)
echo "triage kept the candidate with the best final validation loss in $hits of $SEEDS seeds (grid $GRID, $EPOCHS epochs)"
echo "the lowest early training loss picked it in $naive_hits of $SEEDS; a random pick would in 1 of $n"
