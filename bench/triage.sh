#!/usr/bin/env bash
# How often triage keeps the candidate that ends best. For several seeds:
# `tunesmith triage --run-all` runs every grid combination for the early
# window, ranks them by the SFT guide's early dynamics, then runs every
# candidate to the end so the candidate kept can be compared with the one
# whose best validation loss is lowest (and with the naive pick, the lowest
# early training loss, with the guide's rank over all candidates at once —
# triage's rule before it ranked within each effective batch — and with
# chance).
#
#   bench/triage.sh [SEEDS]       (default 5; the bundled tiny model)
#   GRID="lr=3e-4,1e-3,3e-3,1e-2" EPOCHS=2 bench/triage.sh
#   MODEL=smollm2 bench/triage.sh 3   # the real SmolLM2-135M-Instruct on the
#       # Smithy dataset (presets/quickstart-smollm2.toml), fetched once;
#       # grid "lr=1e-5,1e-4,3e-4,1e-3 effective_batch=8,16", 2 epochs
#
# GRID holds one or more space-separated `key=v1,v2,...` grids. Prints one
# line per seed and the rates; the triage folders (triage.md, triage.svg)
# stay in $BENCH_DIR/triage.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-5}"
WORK="${BENCH_DIR:-/tmp/tunesmith-bench}/triage"
rm -rf "$WORK" && mkdir -p "$WORK"
cargo build --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/debug/tunesmith"

case "${MODEL:-tiny}" in
    tiny)
        PRESET=presets/quickstart.toml
        SETS=()
        GRID="${GRID:-lr=3e-4,1e-3,3e-3,1e-2}"
        ;;
    smollm2)
        PRESET=presets/quickstart-smollm2.toml
        SETS=(--set model.path="$("$BIN" models fetch smollm2-135m-instruct)" --set train.eval_every=7)
        GRID="${GRID:-lr=1e-5,1e-4,3e-4,1e-3 effective_batch=8,16}"
        ;;
    *) echo "MODEL is tiny or smollm2, not $MODEL" >&2; exit 2 ;;
esac
EPOCHS="${EPOCHS:-2}"
GRIDS=()
n=1
for g in $GRID; do
    GRIDS+=(--grid "$g")
    n=$((n * $(tr ',' '\n' <<<"${g#*=}" | wc -l)))
done

hits=0
naive_hits=0
across_hits=0
for seed in $(seq 1 "$SEEDS"); do
    "$BIN" triage "$PRESET" "${GRIDS[@]}" --run-all --json "${SETS[@]}" \
        --set output.runs_dir="$WORK" --set model.backend=cpu \
        --set train.epochs="$EPOCHS" --set train.seed="$seed" --set data.seed="$seed" \
        | tail -1 >"$WORK/report-$seed.json"
    line=$(python3 - "$WORK/report-$seed.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["candidates"]
kept, best = r["kept"], r["best_at_end"]
# The naive pick for comparison: the lowest early training loss.
healthy = [i for i, x in enumerate(c) if x["early"] and not x["diverged"]]
naive = min(healthy, key=lambda i: c[i]["early"]["mean_loss"])
# The rule before: rank-sum over all candidates (gradient norm ascending,
# loss descending, ties by gradient norm), whatever their batch.
def ranks(key):
    order = sorted(healthy, key=key)
    return {i: r for r, i in enumerate(order)}
by_norm = ranks(lambda i: c[i]["early"]["mean_grad_norm"])
by_loss = ranks(lambda i: -c[i]["early"]["mean_loss"])
across = min(healthy, key=lambda i: (by_norm[i] + by_loss[i], c[i]["early"]["mean_grad_norm"]))
order = sorted((x for x in c if x["rank"] is not None), key=lambda x: x["rank"])
losses = " ".join(f'{x["name"]}={x["best_val_loss"]:.4f}' for x in c if x["best_val_loss"] is not None)
# Regret: how much worse the pick's best validation loss is than the best one's.
low = c[best]["best_val_loss"] if best is not None else None
def regret(i):
    v = c[i]["best_val_loss"]
    return f"{v - low:+.4f}" if v is not None and low is not None else "-"
# What triage itself ran: the early windows plus its batch leaders to the end.
cost = sum(x["total_steps"] if x["rank"] == 0 else x["early_steps"] for x in c)
print(f'{int(kept == best)} {int(naive == best)} {int(across == best)} kept={c[kept]["name"]} ({regret(kept)}) '
      f'ranked-across-batches={c[across]["name"]} ({regret(across)}) '
      f'lowest-early-loss={c[naive]["name"]} ({regret(naive)}) best={c[best]["name"] if best is not None else "-"} '
      f'early-order={">".join(x["name"] for x in order)} triage-cost={cost}/{r["steps_all_to_end"]} steps | {losses}')
PY
)
    read -r hit naive across rest <<<"$line"
    echo "seed $seed: $rest"
    hits=$((hits + hit))
    naive_hits=$((naive_hits + naive))
    across_hits=$((across_hits + across))
done
echo "triage kept the candidate with the best final validation loss in $hits of $SEEDS seeds (grid $GRID, $EPOCHS epochs, $PRESET)"
echo "ranking all candidates at once (the rule before ranking within each effective batch) picked it in $across_hits of $SEEDS"
echo "the lowest early training loss picked it in $naive_hits of $SEEDS; a random pick would in 1 of $n"
