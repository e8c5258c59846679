# Sourced by the benchmarks, with TARGET (the cargo target dir) and PROFILE
# set. Sets PY to a python3 with torch, transformers, peft and gguf —
# BENCH_PYTHON if given, else a venv under the target dir, made once — and
# builds tunesmith in PROFILE, setting BIN to it. The default profile is
# `debug`, the dev build `make run` and the app use (dependencies at
# opt-level 3 without debug checks); PROFILE=release builds the release one.
PY="${BENCH_PYTHON:-}"
if [ -z "$PY" ]; then
    PY="$TARGET/bench-venv/bin/python"
    if [ ! -x "$PY" ]; then
        python3 -m venv "$TARGET/bench-venv"
        "$PY" -m pip install -q torch transformers peft gguf
    fi
fi

if [ "$PROFILE" = release ]; then
    cargo build --release -p tunesmith --bin tunesmith
else
    # --workspace like the tests, so both share one set of compiled crates.
    cargo build --workspace --bins
fi
BIN="$TARGET/$PROFILE/tunesmith"

# bench_models ROWS: makes the models named in ROWS ("smollm2:...",
# "qwen05b:...") under $WORK once, and the text dataset $DATA.
bench_models() {
    for m in smollm2 qwen05b; do
        case " $1 " in *" $m:"*) "$PY" bench/models.py "$m" "$WORK/$m" ;; esac
    done
    DATA="$WORK/text.jsonl"
    [ -f "$DATA" ] || "$PY" bench/make_text_dataset.py "$DATA" 48
}
