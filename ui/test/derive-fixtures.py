#!/usr/bin/env python3
"""Derives ui/test/fixtures/app.json from the recordings of record-fixtures.sh.

Everything the engine computed is copied as recorded. Derived here, in the
shapes the app's commands return (docs/app.md):
  * presets: presets/*.toml read as JSON, with the bundled model and first
    bundled dataset filled in (what the `presets` command promises);
  * runs list: `runs list --json` lines as an array, newest first;
  * replays: each recorded run's events cut into `run-events` payloads. The
    `progress` of a payload is a STAND-IN for what Rust sends: state, step,
    total, elapsed and tokens/s are copied from the events; eta_s is the
    elapsed time per step times the steps left;
  * estimates: `tunesmith plan --json` per rank (and one run too long for
    the recording machine's RAM), as recorded;
  * triage: `triage --json` (TriageEvent lines, then the report) cut into
    `triage-events` payloads of a few events each, the last with done = the
    report (what start_triage's events carry, docs/app.md);
  * export error: the CLI's message without its "Error: " prefix.
Usage: derive-fixtures.py REPO_ROOT RECORD_DIR
"""
import json
import pathlib
import sys
import tomllib

root = pathlib.Path(sys.argv[1]).resolve()
fx = root / "ui" / "test" / "fixtures"


def load_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


model_path = str(root / "assets" / "models" / "tiny-llama")
datasets = [
    ("alpaca-sample", "Alpaca instructions: arithmetic, capitals, words"),
    ("chat-sample", "OpenAI messages: short multi-turn chats"),
]
bundled = {
    "model": {"name": "tiny-llama", "path": model_path},
    "datasets": [],
    "runs_dir": "/tmp/ui-rec/runs",
}
for name, what in datasets:
    report = json.loads((fx / "data" / f"{name}.auto.json").read_text())
    bundled["datasets"].append({
        "name": f"{name}.jsonl",
        "path": str(root / "assets" / "datasets" / f"{name}.jsonl"),
        "description": f"{what} ({report['rows']} rows, {report['format']})",
    })

# Card texts (the app's words, condensed from each preset's header comment).
TITLES = {
    "quickstart": ("Quickstart", "LoRA on the bundled tiny model and sample dataset, about a minute on a CPU."),
    "sft-guide": ("SFT guide", "Large effective batch, low constant learning rate, no warmup (Pareja et al. 2024)."),
    "low-memory": ("Low memory", "Small rank on the attention projections, one sequence per micro-batch."),
}
presets = []
for name in ["quickstart", "sft-guide", "low-memory"]:
    path = root / "presets" / f"{name}.toml"
    text = path.read_text()
    config = tomllib.loads(text)
    for section, key, default in [("model", "path", model_path), ("data", "train", bundled["datasets"][0]["path"])]:
        sec = config.setdefault(section, {})
        if key in sec:
            sec[key] = str((path.parent / sec[key]).resolve())
        else:
            sec[key] = default
    presets.append({"name": name, "title": TITLES[name][0], "description": TITLES[name][1], "config": config})

model_summary = json.loads((fx / "model-tiny-llama.json").read_text())
data = {p.stem: json.loads(p.read_text()) for p in sorted((fx / "data").glob("*.json"))}

# `tunesmith plan --json` as recorded, keyed by file name.
estimates = {p.stem: json.loads(p.read_text()) for p in sorted((fx / "plans").glob("*.json"))}
# ... and the engine's refusals, keyed the same way (`miss-bat-r64`).
estimate_errors = {p.name.removesuffix(".error.txt"): p.read_text().strip().splitlines()[0].removeprefix("Error: ")
                   for p in sorted((fx / "plans").glob("*.error.txt"))}

runs = list(reversed(load_jsonl(fx / "runs-list.jsonl")))
events = {}
replays = {}
for p in sorted((fx / "runs").glob("*.events.jsonl")):
    evs = load_jsonl(p)
    name = p.name.removesuffix(".events.jsonl")
    run_dir = evs[0]["run_dir"]
    events[run_dir] = evs
    payloads = []
    total = evs[0]["total_steps"]
    last_step = None
    state = "starting"
    chunk = []
    for i, e in enumerate(evs):
        chunk.append(e)
        if e["event"] == "step":
            last_step = e
            state = "running"
        elif e["event"] == "finished":
            state = "finished"
        elif e["event"] == "failed":
            state = "failed"
        if len(chunk) >= 6 or i == len(evs) - 1 or e["event"] == "started":
            step = last_step["step"] if last_step else 0
            elapsed = last_step["elapsed_s"] if last_step else 0.0
            eta = elapsed / step * (total - step) if step else None
            if state in ("finished", "failed"):
                eta = 0.0
            payloads.append({
                "run_dir": run_dir,
                "events": chunk,
                "progress": {
                    "state": state,
                    "step": step,
                    "total_steps": total,
                    "elapsed_s": elapsed,
                    "eta_s": eta,
                    "tokens_per_sec": last_step["tokens_per_sec"] if last_step else None,
                },
            })
            chunk = []
    replays[name] = payloads

triage_lines = load_jsonl(fx / "triage.jsonl")
triage_events, triage_report = triage_lines[:-1], triage_lines[-1]
triage_payloads = []
for i in range(0, len(triage_events), 16):
    triage_payloads.append({"dir": triage_report["dir"], "events": triage_events[i:i + 16], "done": None, "error": None})
triage_payloads[-1]["done"] = triage_report

quickstart_dir = replays["quickstart"][0]["run_dir"]
error = (fx / "export-peft.error.txt").read_text().strip().splitlines()[0].removeprefix("Error: ")
methods = json.loads((fx / "methods.json").read_text())["methods"]
backends = json.loads((fx / "backends.json").read_text())["backends"]

app = {
    "_note": "Derived by ui/test/derive-fixtures.py from recordings of the real CLI (record-fixtures.sh); "
             "progress.eta_s is a stand-in, see that script's header.",
    "app_info": {"name": "Tunesmith", "version": "0.0.0-test"},
    "bundled": bundled,
    "presets": presets,
    "methods": methods,
    "backends": backends,
    "model_summary": model_summary,
    "models": json.loads((fx / "models-list.json").read_text()),
    "data": data,
    "estimates": estimates,
    "estimate_errors": estimate_errors,
    "runs": runs,
    "events": events,
    "replays": replays,
    "start_run_dir": quickstart_dir,
    "triage": {"dir": triage_report["dir"], "payloads": triage_payloads},
    "config_toml": (fx / "runs" / "quickstart.config.toml").read_text(),
    "export": {"report": json.loads((fx / "export-peft.json").read_text()), "error": error},
    "chat": {
        "prompt": (fx / "chat-prompt.txt").read_text(),
        "base": (fx / "chat-base.txt").read_text().rstrip("\n"),
        "tuned": (fx / "chat-tuned.txt").read_text().rstrip("\n"),
    },
}
(fx / "app.json").write_text(json.dumps(app, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
print(f"wrote {fx / 'app.json'}")
