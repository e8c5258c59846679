// The triage started in this window (start_triage): one row per candidate
// with its state as the `triage-events` payloads tell it (early window,
// stopped after it, running to the end, finished, diverged), latest step,
// the early summary, rank and verdict from the report; the ranked order; the
// Rust-rendered overlay of all candidates so far (throttled like the
// dashboard's chart, never two in flight); and, when the report arrives, a
// summary of the candidate kept and the steps saved, with a way to open it
// in the dashboard.

import { app, on, emit } from "./state.js";
import { h, replace } from "./dom.js";
import { invoke, listen } from "./ipc.js";
import { basename, count, num } from "./format.js";
import { showChart, chartSize, Throttle } from "./chart.js";

/** dir → {candidates: Map(name → candidate), order, done, error} for triages of this window. */
const live = new Map();
/** The triage shown: {dir, model_path}. */
let current = null;
let visible = false;
let chartError = null;
const root = () => document.getElementById("triage-root");

const throttle = new Throttle(refreshChart, 500);

function entry(dir) {
  if (!live.has(dir)) live.set(dir, { candidates: new Map(), order: null, done: null, error: null });
  return live.get(dir);
}

function candidate(t, name) {
  if (!t.candidates.has(name)) {
    t.candidates.set(name, { name, run_dir: null, toEnd: false, state: "early window", step: null, total: null, diverged: false });
  }
  return t.candidates.get(name);
}

/** Applies one TriageEvent to the triage's candidates. */
function apply(t, ev) {
  if (ev.triage === "ranked") {
    t.order = ev.order;
    return;
  }
  const c = candidate(t, ev.name);
  if (ev.triage === "candidate_started") {
    c.run_dir = ev.run_dir;
    c.toEnd = ev.to_the_end;
    if (!c.diverged) c.state = c.toEnd ? "running to the end" : "early window";
    return;
  }
  if (ev.triage !== "train") return;
  const e = ev.event ?? {};
  if (e.event === "started") c.total = e.total_steps;
  else if (e.event === "step") {
    c.step = e.step;
    c.total = e.total_steps;
  } else if (e.event === "advice" && e.stops && (e.rule === "divergence" || !c.toEnd)) {
    c.diverged = true;
  } else if (e.event === "failed") {
    c.diverged = true;
    c.step = e.step ?? c.step;
  } else if (e.event === "finished") {
    c.step = e.step ?? c.step;
    if (!c.diverged) c.state = c.toEnd ? "finished" : "stopped after early window";
  }
  if (c.diverged) c.state = "diverged";
}

/** Applies one `triage-events` payload. */
export function onTriageEvents(payload) {
  const t = entry(payload.dir);
  for (const ev of payload.events ?? []) apply(t, ev);
  if (payload.done) {
    t.done = payload.done;
    for (const r of payload.done.candidates ?? []) {
      const c = candidate(t, r.name);
      c.run_dir ??= r.run_dir;
      if (r.diverged) {
        c.diverged = true;
        c.state = "diverged";
      }
    }
  }
  if (payload.error) t.error = payload.error;
  if (payload.dir !== current?.dir) return;
  renderStatus();
  if (visible) throttle.request();
}

/** A triage becomes this window's shown one (started from the wizard). */
function setCurrent(triage) {
  current = triage;
  chartError = null;
  entry(triage.dir);
  render();
}

const runDirs = (t) => [...t.candidates.values()].map((c) => c.run_dir).filter(Boolean);

async function refreshChart() {
  const shown = current;
  const box = root().querySelector("[data-testid=triage-chart]");
  if (!shown || !box) return;
  const dirs = runDirs(entry(shown.dir));
  if (!dirs.length) return;
  const { width, height } = chartSize(box);
  try {
    const chart = await invoke("overlay_chart", { run_dirs: dirs, width, height }, { quiet: true });
    if (shown !== current) return;
    showChart(box, chart, width, height);
    chartError = null;
  } catch (err) {
    chartError = err.message;
  }
  const errEl = root().querySelector(".triage-chart-error");
  if (errEl) errEl.textContent = chartError ?? "";
}

/** Opens the kept candidate's run in the dashboard (as Runs does for a resumed run). */
function openKept() {
  const t = current && entry(current.dir);
  const kept = t?.done?.candidates?.[t.done.kept];
  if (!kept) return;
  app.currentRun = { run_dir: kept.run_dir, model_path: current.model_path, resumed: true };
  emit("run:current", app.currentRun);
  emit("nav", "dashboard");
}

/** The skeleton (once per triage); renderStatus() fills it. */
function render() {
  const name = document.getElementById("triage-dir-name");
  if (!current) {
    name.textContent = "";
    replace(root(), h("div", { class: "empty-state" },
      h("p", {}, "No triage in this window yet."),
      h("p", { class: "muted" }, "Turn on “Try several learning rates first” on the Training step of New run.")));
    return;
  }
  name.textContent = basename(current.dir);
  name.title = current.dir;
  replace(root(),
    h("div", { class: "outcome-card failed triage-error", testid: "triage-error", role: "alert", hidden: true }),
    h("div", { class: "triage-summary-box", "aria-live": "polite" }),
    h("div", { class: "table-wrap" }, h("table", { class: "triage-table", testid: "triage-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Candidate"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col", class: "num" }, "Step"),
        h("th", { scope: "col", class: "num" }, "Early loss"),
        h("th", { scope: "col", class: "num" }, "Early grad norm"),
        h("th", { scope: "col", class: "num", title: "Rank among the candidates of the same effective batch" }, "Rank in batch"),
        h("th", { scope: "col" }, "Verdict"))),
      h("tbody", { "aria-live": "polite" }))),
    h("p", { class: "muted triage-ranked", testid: "triage-ranked" }),
    h("div", { class: "chart", testid: "triage-chart" }, h("p", { class: "muted chart-placeholder" }, "The chart appears with the first candidate.")),
    h("p", { class: "inline-error triage-chart-error", role: "alert" }));
  renderStatus();
}

function verdict(c, r) {
  if (c.diverged || r?.diverged) return ["diverged", "status-failed"];
  if (!r) return ["—", ""];
  if (r.kept) return ["kept", "status-completed"];
  if (r.likely_worse) return ["likely worse", "status-stopped"];
  return ["not kept", ""];
}

/** Updates rows, ranking, summary and error from the triage's data. */
function renderStatus() {
  const el = root();
  if (!current || !el.querySelector("[data-testid=triage-table]")) return;
  const t = entry(current.dir);
  const report = new Map((t.done?.candidates ?? []).map((r) => [r.name, r]));
  replace(el.querySelector(".triage-table tbody"), [...t.candidates.values()].map((c) => {
    const r = report.get(c.name);
    const [text, cls] = verdict(c, r);
    return h("tr", { testid: "triage-row", dataset: { runDir: c.run_dir ?? "", name: c.name }, class: [r?.kept && "kept"] },
      h("td", { class: "run-name", title: c.run_dir ?? "" }, c.name),
      h("td", { testid: "triage-state" }, c.state),
      h("td", { class: "num" }, `${c.step ?? 0} / ${c.total ?? "—"}`),
      h("td", { class: "num" }, num(r?.early?.mean_loss)),
      h("td", { class: "num" }, num(r?.early?.mean_grad_norm)),
      h("td", { class: "num" }, r?.rank != null ? String(r.rank + 1) : "—"),
      h("td", {}, cls ? h("span", { class: ["status", cls], testid: "triage-verdict" }, text) : h("span", { testid: "triage-verdict" }, text)));
  }));
  el.querySelector(".triage-ranked").textContent = t.order ? `Ranked by early dynamics within each effective batch, best first: ${t.order.join(", ")}` : "";

  const errEl = el.querySelector("[data-testid=triage-error]");
  errEl.hidden = !t.error;
  replace(errEl, t.error ? [h("strong", {}, "Triage failed"), h("p", {}, t.error)] : []);
  renderSummary(el.querySelector(".triage-summary-box"), t.done);
}

/** best_at_end as a name (the report gives an index; a name passes through). */
function bestAtEnd(done) {
  const b = done.best_at_end;
  return typeof b === "number" ? done.candidates[b]?.name ?? "—" : b ?? "—";
}

function renderSummary(box, done) {
  const kept = done?.candidates?.[done.kept];
  if (!done) {
    box.replaceChildren();
    return;
  }
  const saved = done.steps_all_to_end - done.steps_run;
  const share = done.steps_all_to_end > 0 ? Math.round((saved / done.steps_all_to_end) * 100) : 0;
  replace(box, h("div", { class: "outcome-card finished triage-summary", testid: "triage-summary" },
    h("strong", {}, kept ? `Kept ${kept.name}` : "No candidate kept"),
    kept ? h("p", {}, `Ran to step ${kept.steps} of ${kept.total_steps}; best validation loss ${num(kept.best_val_loss)}, final ${num(kept.final_val_loss)}.`) : null,
    h("p", {}, `${count(done.steps_run)} steps run instead of ${count(done.steps_all_to_end)} for every candidate to the end: `,
      `${count(saved)} steps saved (${share}%).`),
    done.kept_was_best != null
      ? h("p", {}, done.kept_was_best ? "The candidate kept also ended best." : `The candidate that ended best: ${bestAtEnd(done)}.`)
      : null,
    kept ? h("div", { class: "actions" },
      h("button", { type: "button", class: "btn btn-primary", testid: "triage-open-kept", onclick: openKept }, "Open in dashboard")) : null));
}

export function onShow() {
  visible = true;
  if (current) throttle.request();
}

export function onHide() {
  visible = false;
}

export function initTriage() {
  render();
  listen("triage-events", onTriageEvents);
  on("triage:started", setCurrent);
  window.addEventListener("resize", () => {
    if (visible && current) throttle.request();
  });
}
