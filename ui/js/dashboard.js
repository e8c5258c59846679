// The dashboard of the run started or resumed in this window: state, progress
// (step/total, ETA, tokens/s as Rust reports them in `progress`), controls
// (control_run), the Rust-rendered chart refreshed as `run-events` payloads
// arrive (throttled to two requests a second, never two in flight), advice,
// warnings, and how the run ended.

import { app, on } from "./state.js";
import { h, replace } from "./dom.js";
import { invoke, listen } from "./ipc.js";
import { basename, count, duration, num, rate } from "./format.js";
import { showChart, chartSize, Throttle } from "./chart.js";

/** run_dir → {events, progress} for runs of this window. */
const live = new Map();
let visible = false;
let controlError = null;
let chartError = null;
const root = () => document.getElementById("dashboard-root");

const throttle = new Throttle(refreshChart, 500);

function entry(runDir) {
  if (!live.has(runDir)) live.set(runDir, { events: [], progress: null });
  return live.get(runDir);
}

/** Applies one `run-events` payload. */
export function onRunEvents(payload) {
  const e = entry(payload.run_dir);
  e.events.push(...(payload.events ?? []));
  if (payload.progress) e.progress = payload.progress;
  if (payload.run_dir !== app.currentRun?.run_dir) return;
  renderStatus();
  if (visible) throttle.request();
}

/** A run becomes this window's current one (started or resumed). */
async function setCurrent(run) {
  controlError = null;
  chartError = null;
  const e = entry(run.run_dir);
  render();
  if (run.resumed) {
    // Show what happened before the resume too (advice, the earlier end).
    try {
      const past = await invoke("run_events", { run_dir: run.run_dir }, { quiet: true });
      const seen = new Set(past.map((x) => JSON.stringify(x)));
      e.events = [...past, ...e.events.filter((x) => !seen.has(JSON.stringify(x)))];
      renderStatus();
    } catch {
      // the live events still show; the chart reads the file itself
    }
  }
  if (run.resumed && !e.progress) {
    // A run opened from the history (or resumed, before its first
    // payload): where it stands, from its metrics.
    try {
      const progress = await invoke("run_progress", { run_dir: run.run_dir }, { quiet: true });
      if (!e.progress) {
        e.progress = progress;
        renderStatus();
      }
    } catch {
      // the state badge keeps "starting" until events arrive
    }
  }
}

async function control(action) {
  const run = app.currentRun;
  if (!run) return;
  controlError = null;
  try {
    await invoke("control_run", { run_dir: run.run_dir, action }, { quiet: true });
  } catch (err) {
    controlError = `${action}: ${err.message}`;
  }
  renderStatus();
}

async function refreshChart() {
  const run = app.currentRun;
  const box = root().querySelector("[data-testid=chart]");
  if (!run || !box) return;
  const { width, height } = chartSize(box);
  try {
    const chart = await invoke("run_chart", { run_dir: run.run_dir, width, height }, { quiet: true });
    if (run !== app.currentRun) return;
    showChart(box, chart, width, height);
    chartError = null;
  } catch (err) {
    chartError = err.message;
  }
  const errEl = root().querySelector(".chart-error");
  if (errEl) errEl.textContent = chartError ?? "";
}

/** The full skeleton (once per current run); renderStatus() fills it. */
function render() {
  const run = app.currentRun;
  const name = document.getElementById("dash-run-name");
  if (!run) {
    name.textContent = "";
    replace(root(), h("div", { class: "empty-state" },
      h("p", {}, "No run in this window yet."),
      h("p", { class: "muted" }, "Start one from New run, or resume an interrupted one from Runs.")));
    return;
  }
  name.textContent = basename(run.run_dir);
  name.title = run.run_dir;
  const btn = (testid, label, action, cls = "btn") =>
    h("button", { type: "button", class: cls, testid, dataset: { action }, onclick: () => control(action) }, label);
  replace(root(),
    h("div", { class: "dash-top" },
      h("div", { class: "state-badge", "aria-live": "polite" }, h("span", { class: "muted" }, "State "), h("strong", { testid: "run-state" }, "starting")),
      h("div", { class: "controls-row", role: "group", "aria-label": "Run controls" },
        btn("pause-run", "Pause", "pause"),
        btn("resume-run", "Resume", "resume"),
        btn("checkpoint-run", "Checkpoint now", "checkpoint"),
        btn("stop-run", "Stop", "stop", "btn btn-danger"))),
    h("p", { class: "inline-error control-error", role: "alert" }),
    h("div", { class: "progress-block", testid: "run-progress" },
      h("div", { class: "progress", role: "progressbar", "aria-label": "Training progress", "aria-valuemin": "0" },
        h("div", { class: "progress-fill" })),
      h("div", { class: "progress-text", "aria-live": "polite" })),
    h("div", { class: "outcome", "aria-live": "assertive" }),
    h("div", { class: "started-info" }),
    h("div", { class: "dash-grid" },
      h("div", { class: "chart-col" },
        h("div", { class: "chart", testid: "chart" }, h("p", { class: "muted chart-placeholder" }, "The chart appears with the first steps.")),
        h("p", { class: "inline-error chart-error", role: "alert" }),
        h("div", { class: "ranks-panel", testid: "ranks" })),
      h("aside", { class: "advice-col", "aria-label": "Advice" },
        h("h2", {}, "Advice"),
        h("ul", { class: "advice-list", testid: "advice-list", "aria-live": "polite" }))));
  renderStatus();
}

/** Updates state, progress, outcome, warnings and advice from the run's data. */
function renderStatus() {
  const run = app.currentRun;
  const el = root();
  if (!run || !el.querySelector("[data-testid=run-state]")) return;
  const e = entry(run.run_dir);
  const p = e.progress;
  const state = p?.state ?? "starting";
  el.querySelector("[data-testid=run-state]").textContent = state;
  el.querySelector(".state-badge").dataset.state = state;

  const active = state === "running" || state === "paused" || state === "starting";
  el.querySelector("[data-testid=pause-run]").disabled = state !== "running";
  el.querySelector("[data-testid=resume-run]").disabled = state !== "paused";
  el.querySelector("[data-testid=checkpoint-run]").disabled = !(state === "running" || state === "paused");
  el.querySelector("[data-testid=stop-run]").disabled = !active;
  el.querySelector(".control-error").textContent = controlError ?? "";

  const bar = el.querySelector(".progress");
  const total = p?.total_steps ?? 0;
  const step = p?.step ?? 0;
  bar.setAttribute("aria-valuemax", String(total || 1));
  bar.setAttribute("aria-valuenow", String(step));
  el.querySelector(".progress-fill").style.width = total ? `${Math.min(100, (step / total) * 100)}%` : "0%";
  // A GPU run's first step compiles its kernels: say so instead of a
  // step counter that seems stuck.
  const phase = e.events.findLast((x) => x.event === "preparing" || x.event === "step");
  const preparing = phase?.event === "preparing" && active ? phase.message : null;
  replace(el.querySelector(".progress-text"),
    h("span", { class: "progress-steps" }, `Step ${step} / ${total || "—"}`),
    preparing ? h("span", { class: "preparing", testid: "preparing" }, preparing) : null,
    h("span", {}, `ETA ${state === "finished" ? "—" : duration(p?.eta_s)}`),
    h("span", {}, `Elapsed ${duration(p?.elapsed_s)}`),
    h("span", {}, rate(p?.tokens_per_sec)),
    termsLine(e.events));

  renderRanks(el.querySelector(".ranks-panel"), e.events);
  renderOutcome(el.querySelector(".outcome"), e.events);
  renderStarted(el.querySelector(".started-info"), e.events);
  const advice = e.events.filter((x) => x.event === "advice");
  replace(el.querySelector(".advice-list"), advice.length
    ? advice.slice().reverse().map((a) => h("li", { class: ["advice", `sev-${a.severity}`] },
      h("div", { class: "advice-head" }, h("span", { class: "sev-tag" }, a.severity), ` ${a.rule.replace("_", " ")} · step ${a.step}`),
      h("p", {}, a.message),
      a.stops ? h("p", { class: "advice-stops" }, "This rule stops the run.") : null))
    : h("li", { class: "muted" }, "No advice so far."));
}

/**
 * A method's own loss terms at the latest step (AdaLoRA's and KaSA's
 * regularisers, unweighted; the chart's loss is the task's alone).
 */
function termsLine(events) {
  const last = events.findLast((x) => x.event === "step");
  const terms = Object.entries(last?.terms ?? {});
  if (!terms.length) return null;
  return h("span", { class: "loss-terms", testid: "loss-terms", title: "the method's regularisers at the latest step, before weighting" },
    terms.map(([name, v]) => `${name} ${Number(v).toPrecision(4)}`).join(" · "));
}

/**
 * AdaLoRA's ranks per layer after its latest reallocation (the `ranks`
 * event): one row per decoder layer, one column per adapted module, each
 * cell's shade its share of the largest rank.
 */
function renderRanks(box, events) {
  const last = events.findLast((x) => x.event === "ranks");
  if (!last) {
    box.replaceChildren();
    return;
  }
  const first = events.find((x) => x.event === "ranks");
  const cells = new Map();
  const layers = new Set();
  const modules = [];
  for (const [name, rank] of Object.entries(last.ranks)) {
    const m = /layers\.(\d+)\.(?:[a-z_]+\.)?([a-z_]+)$/.exec(name);
    if (!m) continue;
    const layer = Number(m[1]);
    layers.add(layer);
    if (!modules.includes(m[2])) modules.push(m[2]);
    cells.set(`${layer}/${m[2]}`, rank);
  }
  const order = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
  modules.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const max = Math.max(1, ...cells.values());
  const kept = [...cells.values()].reduce((a, b) => a + b, 0);
  const before = first === last ? "" : ` (first reallocation at step ${first.step})`;
  replace(box,
    h("h2", {}, "Ranks per layer"),
    h("p", { class: "muted", testid: "ranks-summary" },
      `After step ${last.step}: ${kept} ranks kept of a budget of ${last.budget}${before}.`),
    h("table", { class: "ranks-table", testid: "ranks-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "layer"), modules.map((m) => h("th", { scope: "col" }, m.replace("_proj", ""))))),
      h("tbody", {}, [...layers].sort((a, b) => a - b).map((layer) => h("tr", {},
        h("th", { scope: "row" }, String(layer)),
        modules.map((m) => {
          const rank = cells.get(`${layer}/${m}`);
          if (rank === undefined) return h("td", { class: "muted" }, "—");
          return h("td", {
            class: "rank-cell",
            title: `layer ${layer} ${m}: rank ${rank}`,
            // Five shades (the CSP allows no inline styles).
            dataset: { share: String(Math.round((rank / max) * 4)) },
          }, String(rank));
        }))))));
}

function renderOutcome(box, events) {
  const failed = events.findLast((x) => x.event === "failed");
  const finished = events.findLast((x) => x.event === "finished");
  if (failed) {
    replace(box, h("div", { class: "outcome-card failed", testid: "run-failed" },
      h("strong", {}, `Failed at step ${failed.step}`), h("p", {}, failed.message)));
  } else if (finished) {
    const stopped = finished.reason !== "completed";
    replace(box, h("div", { class: ["outcome-card", stopped ? "stopped" : "finished"], testid: "run-finished" },
      h("strong", {}, stopped ? `Stopped: ${finished.reason}` : "Finished: completed"),
      h("p", {}, `Best validation loss ${num(finished.best_val_loss)} at step ${finished.best_step ?? "—"}`,
        ` · final ${num(finished.final_val_loss)} · ${duration(finished.elapsed_s)}`)));
  } else {
    box.replaceChildren();
  }
}

function renderStarted(box, events) {
  const s = events.findLast((x) => x.event === "started");
  if (!s) {
    box.replaceChildren();
    return;
  }
  const warnings = [...(s.warnings ?? [])];
  if (s.truncated_rows > 0) warnings.push(`${s.truncated_rows} rows are longer than max_length and were cut.`);
  if (s.bad_rows > 0) warnings.push(`${s.bad_rows} bad rows were skipped.`);
  replace(box,
    h("p", { class: "muted" },
      `${s.method} on ${s.backend} · ${count(s.trainable_params)} trainable of ${count(s.total_params)} · `,
      `${s.train_rows} training rows, ${s.val_rows} validation rows`,
      s.start_step > 0 ? ` · resumed at step ${s.start_step}` : ""),
    warnings.length ? h("ul", { class: "warnings", testid: "started-warnings" }, warnings.map((w) => h("li", {}, w))) : null);
}

export function onShow() {
  visible = true;
  if (app.currentRun) throttle.request();
}

export function onHide() {
  visible = false;
}

export function initDashboard() {
  render();
  listen("run-events", onRunEvents);
  on("run:current", setCurrent);
  window.addEventListener("resize", () => {
    if (visible && app.currentRun) throttle.request();
  });
}
