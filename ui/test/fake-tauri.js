// A fake `window.__TAURI__` for the UI tests, injected before the page's
// scripts (page.evaluateOnNewDocument). It answers the app's commands from
// fixtures/app.json (recorded from the real CLI by record-fixtures.sh) and
// records every call in window.__fake.calls so tests can check the arguments.
// Tests steer it through window.__fake: delay[cmd] (ms or fn(args) → ms),
// fail[cmd] (a message to reject with), pick[kind] (what pick_path returns),
// triagePayloads (what start_triage replays as `triage-events`; default the
// recorded triage's payloads) and triageGapMs (the time between them).
//
// run_chart / overlay_chart: STAND-IN. The Rust chart renderer is tested on
// the Rust side; here the SVG is a plain placeholder of the requested size
// and the markers are derived from the run's advice and best-eval events.
//
// This function is serialised into the page: it must not use anything from
// its module scope.

export function installFakeTauri(fx) {
  const fake = {
    fx,
    calls: [],
    delay: {},
    fail: {},
    pick: { dataset: null, model: null, export: null },
    inFlight: {},
    maxInFlight: {},
    delivered: {},
    exported: new Set(),
    listeners: new Map(),
    nextRunDir: null,
    triagePayloads: null,
    triageGapMs: 80,
    chatPieceMs: 15,
  };
  window.__fake = fake;

  const basename = (p) => String(p).split(/[\\/]/).filter(Boolean).pop();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  fake.emit = (event, payload) => {
    if (event === "run-events") {
      (fake.delivered[payload.run_dir] ??= []).push(...payload.events);
    }
    if (event === "triage-events") {
      // The candidates' train events, per run folder, for the stand-in overlay chart.
      fake.triageDirs ??= {};
      for (const e of payload.events) {
        if (e.triage === "candidate_started") fake.triageDirs[e.name] = e.run_dir;
        else if (e.triage === "train" && fake.triageDirs[e.name]) (fake.delivered[fake.triageDirs[e.name]] ??= []).push(e.event);
      }
    }
    for (const fn of fake.listeners.get(event) ?? []) fn({ event, id: 0, payload });
  };

  function tomlValue(v) {
    if (Array.isArray(v)) return `[${v.map(tomlValue).join(", ")}]`;
    if (typeof v === "string") return JSON.stringify(v);
    return String(v);
  }

  // Stand-in for config_toml: a plain serialisation of the sections.
  function toToml(config) {
    const lines = ["# stand-in TOML written by the test fake (the app's config_toml is Rust's)"];
    for (const [section, table] of Object.entries(config)) {
      if (!table || typeof table !== "object") continue;
      lines.push("", `[${section}]`);
      for (const [k, v] of Object.entries(table)) {
        if (v != null && typeof v !== "object") lines.push(`${k} = ${tomlValue(v)}`);
        else if (Array.isArray(v)) lines.push(`${k} = ${tomlValue(v)}`);
      }
    }
    return `${lines.join("\n")}\n`;
  }

  // STAND-IN chart (see the header).
  function standInChart(runDirs, width, height) {
    const pad = 40;
    const colors = ["#5443d6", "#e0701a", "#1e7b4c", "#b42318"];
    const parts = [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
      `<rect x="0" y="0" width="${width}" height="${height}" fill="#fafafe" stroke="#ddd"/>`,
      `<text x="${pad}" y="22" font-size="12" fill="#666">Stand-in chart of the UI tests (the real one is Rust's)</text>`,
    ];
    const markers = [];
    runDirs.forEach((dir, i) => {
      const evs = fake.delivered[dir] ?? fx.events[dir] ?? [];
      const started = evs.find((e) => e.event === "started");
      const total = started?.total_steps ?? 1;
      const steps = evs.filter((e) => e.event === "step" && Number.isFinite(e.loss));
      const maxLoss = Math.max(1, ...steps.map((s) => s.loss));
      const xOf = (step) => pad + (step / total) * (width - 2 * pad);
      const yOf = (loss) => height - pad - (loss / maxLoss) * (height - 2 * pad);
      const pts = steps.map((s) => `${xOf(s.step).toFixed(1)},${yOf(s.loss).toFixed(1)}`).join(" ");
      parts.push(`<polyline points="${pts}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.5"/>`);
      if (runDirs.length > 1) return;
      for (const a of evs.filter((e) => e.event === "advice")) {
        markers.push({ x: xOf(a.step), y: pad, step: a.step, kind: "advice", severity: a.severity, text: a.message });
      }
      const best = evs.filter((e) => e.event === "eval" && e.best).pop();
      if (best) {
        markers.push({ x: xOf(best.step), y: yOf(best.val_loss), step: best.step, kind: "best", severity: "info", text: `best validation loss ${best.val_loss.toFixed(4)} at step ${best.step}` });
      }
    });
    parts.push("</svg>");
    return { svg: parts.join(""), markers };
  }

  function datasetReport({ path, model_path, format, max_length }) {
    const base = basename(path).replace(/\.jsonl$/, "");
    const stem = `${base}.${format ?? "auto"}${model_path ? ".model" : ""}`;
    const report = fx.data[`${stem}.${max_length}`] ?? fx.data[stem];
    if (!report) throw `cannot read ${path}: no recorded report for it (test fake)`;
    return report;
  }

  function estimate({ config }) {
    const m = config.method ?? {};
    if (m.kind === "miss") {
      const key = `miss-${m.mode}-r${m.rank}`;
      if (fx.estimate_errors[key]) throw fx.estimate_errors[key];
      if (!fx.estimates[key]) throw `${key}: no recorded estimate in the test fixtures`;
      return fx.estimates[key];
    }
    if (m.kind === "adalora") {
      const key = `adalora-r${m.init_r}-t${m.target_r}`;
      if (!fx.estimates[key]) throw `${key}: no recorded estimate in the test fixtures`;
      return fx.estimates[key];
    }
    if (m.kind === "kasa") {
      const key = `kasa-r${m.rank}`;
      if (!fx.estimates[key]) throw `${key}: no recorded estimate in the test fixtures`;
      return fx.estimates[key];
    }
    if (m.kind === "hft") {
      const key = `hft-f${m.fraction}`;
      if (!fx.estimates[key]) throw `${key}: no recorded estimate in the test fixtures`;
      return fx.estimates[key];
    }
    if (m.kind !== "lora") throw `method.kind = "${m.kind}": no recorded estimate in the test fixtures`;
    const qv = JSON.stringify(m.target_modules) === JSON.stringify(["q_proj", "v_proj"]);
    const len = config.data?.max_length;
    const e = fx.estimates[`lora-r${m.rank}${qv ? "-qv" : ""}-len${len}`] ?? fx.estimates[`lora-r${m.rank}${qv ? "-qv" : ""}`];
    if (!e) throw `method.rank = ${m.rank}: no recorded estimate for this rank in the test fixtures`;
    return e;
  }

  async function chat({ id, run_dir }) {
    const text = run_dir ? fx.chat.tuned : fx.chat.base;
    const pieces = text.match(/\s*\S+|\s+/g) ?? [];
    for (const piece of pieces) {
      await sleep(fake.chatPieceMs);
      fake.emit("chat-token", { id: `${id}-other`, text: "NOISE" });
      fake.emit("chat-token", { id, text: piece });
    }
    return { text };
  }

  // start_triage: answers the recorded triage's folder, then replays its payloads.
  function startTriage() {
    const payloads = fake.triagePayloads ?? fx.triage.payloads;
    setTimeout(async () => {
      for (const p of payloads) {
        fake.emit("triage-events", p);
        await sleep(fake.triageGapMs);
      }
    }, fake.triageGapMs);
    return { dir: payloads[0]?.dir ?? fx.triage.dir };
  }

  const handlers = {
    app_info: () => fx.app_info,
    bundled: () => fx.bundled,
    presets: () => fx.presets,
    methods: () => fx.methods,
    backends: () => fx.backends,
    pick_path: ({ kind }) => fake.pick[kind] ?? null,
    inspect_dataset: datasetReport,
    inspect_model: ({ path }) => {
      if (path !== fx.bundled.model.path) throw `${path}: not a model folder (no config.json)`;
      return fx.model_summary;
    },
    list_models: () => fx.models,
    estimate,
    config_toml: ({ config }) => {
      if (!(config.train?.learning_rate > 0)) throw "train.learning_rate must be > 0";
      return toToml(config);
    },
    start_run: () => ({ run_dir: fake.nextRunDir ?? fx.start_run_dir }),
    start_triage: startTriage,
    control_run: () => null,
    resume_run: ({ run_dir }) => ({ run_dir }),
    list_runs: () => fx.runs,
    run_events: ({ run_dir }) => fx.events[run_dir] ?? [],
    // Rust folds the run's events into its progress; the fake takes the last
    // recorded step (a stand-in for the shape, not the logic).
    run_progress: ({ run_dir }) => {
      const events = fx.events[run_dir] ?? [];
      const last = [...events].reverse().find((e) => e.event === "step");
      const ended = events.some((e) => e.event === "finished");
      return {
        state: ended ? "finished" : "interrupted",
        step: last?.step ?? 0,
        total_steps: last?.total_steps ?? 0,
        elapsed_s: last?.elapsed_s ?? 0,
        eta_s: null,
        tokens_per_sec: last?.tokens_per_sec ?? 0,
      };
    },
    run_chart: ({ run_dir, width, height }) => standInChart([run_dir], width, height),
    overlay_chart: ({ run_dirs, width, height }) => standInChart(run_dirs, width, height),
    export_run: ({ out }) => {
      if (fake.exported.has(out)) throw fx.export.error;
      fake.exported.add(out);
      return fx.export.report;
    },
    chat,
  };

  async function invoke(cmd, args = {}) {
    fake.calls.push({ cmd, args: JSON.parse(JSON.stringify(args ?? {})), t: performance.now() });
    fake.inFlight[cmd] = (fake.inFlight[cmd] ?? 0) + 1;
    fake.maxInFlight[cmd] = Math.max(fake.maxInFlight[cmd] ?? 0, fake.inFlight[cmd]);
    try {
      const d = fake.delay[cmd];
      await sleep(typeof d === "function" ? d(args) : d ?? 1);
      if (fake.fail[cmd]) throw fake.fail[cmd];
      const handler = handlers[cmd];
      if (!handler) throw `unknown command ${cmd}`;
      return await handler(args);
    } finally {
      fake.inFlight[cmd] -= 1;
    }
  }

  async function listen(event, fn) {
    if (!fake.listeners.has(event)) fake.listeners.set(event, new Set());
    fake.listeners.get(event).add(fn);
    return () => fake.listeners.get(event).delete(fn);
  }

  window.__TAURI__ = { core: { invoke }, event: { listen } };
}
