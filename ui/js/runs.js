// Past runs (list_runs): a table; selecting a row shows its chart
// (run_chart) and a summary of its events (run_events); ticking several and
// Overlay shows overlay_chart; Resume continues an interrupted run that has a
// checkpoint (resume_run) and opens the dashboard.

import { app, emit } from "./state.js";
import { h, replace } from "./dom.js";
import { invoke } from "./ipc.js";
import { num } from "./format.js";
import { showChart, chartSize } from "./chart.js";

export const INTERRUPTED = "running or interrupted";

const view = {
  runs: [],
  error: null,
  selected: null,
  checked: new Set(),
  detail: null, // {kind: "run"|"overlay", title, chartError, events}
  loading: false,
};
let seq = 0;
const root = () => document.getElementById("runs-root");

export async function loadRuns() {
  view.loading = true;
  render();
  try {
    view.runs = await invoke("list_runs", {}, { quiet: true });
    view.error = null;
    const dirs = new Set(view.runs.map((r) => r.dir));
    view.checked = new Set([...view.checked].filter((d) => dirs.has(d)));
    if (view.selected && !dirs.has(view.selected)) view.selected = null;
  } catch (err) {
    view.error = err.message;
  }
  view.loading = false;
  render();
}

/** A CSS class for a run's status text (completed, interrupted, stopped, failed). */
function statusClass(status) {
  if (status === "completed") return "status-completed";
  if (status === INTERRUPTED) return "status-running-or-interrupted";
  if (/^failed/.test(status)) return "status-failed";
  return "status-stopped";
}

/** Long statuses ("stopped by the advisor (Divergence): …") up to their colon; the full text is the title. */
function shortStatus(status) {
  const cut = status.indexOf(":");
  return cut > 0 ? status.slice(0, cut) : status;
}

const canResume = (r) => r && r.status === INTERRUPTED && r.checkpoint_step != null;

async function select(dir) {
  view.selected = dir;
  const run = view.runs.find((r) => r.dir === dir);
  view.detail = { kind: "run", title: run?.name ?? dir, chartError: null, events: null, eventsError: null };
  render();
  const mine = ++seq;
  const box = root().querySelector("[data-testid=runs-chart]");
  const { width, height } = chartSize(box);
  const [chart, events] = await Promise.allSettled([
    invoke("run_chart", { run_dir: dir, width, height }, { quiet: true }),
    invoke("run_events", { run_dir: dir }, { quiet: true }),
  ]);
  if (mine !== seq) return;
  if (chart.status === "fulfilled") showChart(root().querySelector("[data-testid=runs-chart]"), chart.value, width, height);
  else view.detail.chartError = chart.reason.message;
  if (events.status === "fulfilled") view.detail.events = events.value;
  else view.detail.eventsError = events.reason.message;
  renderDetailText();
}

async function overlay() {
  const dirs = view.runs.map((r) => r.dir).filter((d) => view.checked.has(d));
  if (dirs.length < 2) return;
  view.detail = { kind: "overlay", title: `Overlay of ${dirs.length} runs`, chartError: null, events: null };
  render();
  const mine = ++seq;
  const box = root().querySelector("[data-testid=runs-chart]");
  const { width, height } = chartSize(box);
  try {
    const chart = await invoke("overlay_chart", { run_dirs: dirs, width, height }, { quiet: true });
    if (mine !== seq) return;
    showChart(root().querySelector("[data-testid=runs-chart]"), chart, width, height);
  } catch (err) {
    if (mine !== seq) return;
    view.detail.chartError = err.message;
  }
  renderDetailText();
}

async function resume() {
  const run = view.runs.find((r) => r.dir === view.selected);
  if (!canResume(run)) return;
  try {
    const { run_dir } = await invoke("resume_run", { run_dir: run.dir }, { quiet: true });
    app.currentRun = { run_dir, resumed: true };
    emit("run:current", app.currentRun);
    emit("nav", "dashboard");
  } catch (err) {
    view.error = `Resume: ${err.message}`;
    render();
  }
}

function render() {
  const el = root();
  if (!el) return;
  const selectedRun = view.runs.find((r) => r.dir === view.selected);
  replace(el,
    h("div", { class: "toolbar" },
      h("button", { type: "button", class: "btn", onclick: loadRuns }, "Refresh"),
      h("button", {
        type: "button", class: "btn", testid: "runs-overlay", disabled: view.checked.size < 2, onclick: overlay,
        title: "Tick two or more runs to compare their curves",
      }, `Overlay${view.checked.size ? ` (${view.checked.size})` : ""}`),
      h("button", {
        type: "button", class: "btn btn-primary", testid: "runs-resume", disabled: !canResume(selectedRun), onclick: resume,
        title: "Continue the selected interrupted run from its newest checkpoint",
      }, "Resume"),
      h("span", { class: "muted", "aria-live": "polite" }, view.loading ? "Loading…" : `${view.runs.length} runs`)),
    view.error ? h("p", { class: "inline-error", role: "alert", testid: "runs-error" }, view.error) : null,
    table(),
    view.detail ? detail() : h("p", { class: "hint" }, "Select a run to see its chart; tick several to overlay them."));
  if (view.detail) renderDetailText();
}

function table() {
  if (!view.runs.length) return h("p", { class: "empty", testid: "runs-table" }, "No runs yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: "runs-table", testid: "runs-table" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Overlay")),
      ["Name", "Status", "Step", "Last loss", "Best val loss", "Method"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, view.runs.map((r) => h("tr", {
      testid: "runs-row",
      dataset: { runDir: r.dir },
      class: [r.dir === view.selected && "selected"],
      "aria-selected": String(r.dir === view.selected),
      tabindex: "0",
      onclick: () => select(r.dir),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(r.dir); } },
    },
    h("td", { onclick: (e) => e.stopPropagation() },
      h("input", {
        type: "checkbox",
        "aria-label": `Overlay ${r.name}`,
        checked: view.checked.has(r.dir),
        testid: "runs-check",
        onchange: (e) => {
          if (e.target.checked) view.checked.add(r.dir);
          else view.checked.delete(r.dir);
          const btn = root().querySelector("[data-testid=runs-overlay]");
          btn.disabled = view.checked.size < 2;
          btn.textContent = `Overlay${view.checked.size ? ` (${view.checked.size})` : ""}`;
        },
      })),
    h("td", { class: "run-name", title: r.dir }, r.name),
    h("td", {}, h("span", { class: ["status", statusClass(r.status)], title: r.status }, shortStatus(r.status))),
    h("td", { class: "num" }, `${r.step} / ${r.total_steps}`),
    h("td", { class: "num" }, num(r.last_loss)),
    h("td", { class: "num" }, num(r.best_val_loss)),
    h("td", {}, r.method))))));
}

function detail() {
  return h("div", { class: "panel run-detail" },
    h("h2", {}, view.detail.title),
    h("div", { class: "chart", testid: "runs-chart" }, h("p", { class: "muted chart-placeholder" }, "Loading the chart…")),
    h("p", { class: "inline-error runs-chart-error", role: "alert" }),
    h("div", { class: "events-summary", testid: "runs-events", "aria-live": "polite" }));
}

function renderDetailText() {
  const d = view.detail;
  const el = root();
  const err = el.querySelector(".runs-chart-error");
  if (err) err.textContent = d.chartError ?? "";
  const box = el.querySelector(".events-summary");
  if (!box) return;
  if (d.kind === "overlay") {
    box.replaceChildren();
    return;
  }
  if (d.eventsError) {
    replace(box, h("p", { class: "inline-error" }, d.eventsError));
    return;
  }
  if (!d.events) {
    replace(box, h("p", { class: "muted" }, "Reading the events…"));
    return;
  }
  const ev = d.events;
  const n = (kind) => ev.filter((e) => e.event === kind).length;
  const finished = ev.findLast((e) => e.event === "finished");
  const failed = ev.findLast((e) => e.event === "failed");
  const advice = ev.filter((e) => e.event === "advice");
  replace(box,
    h("dl", { class: "facts" },
      h("dt", {}, "Events"), h("dd", {}, `${n("step")} steps logged, ${n("eval")} evaluations, ${n("checkpoint")} checkpoints`),
      h("dt", {}, "Outcome"), h("dd", {}, failed ? `failed at step ${failed.step}: ${failed.message}`
        : finished ? `${finished.reason} at step ${finished.step}; best validation loss ${num(finished.best_val_loss)} at step ${finished.best_step}`
          : "no end recorded (running or interrupted)")),
    advice.length ? h("ul", { class: "advice-list compact" }, advice.map((a) =>
      h("li", { class: ["advice", `sev-${a.severity}`] },
        h("div", { class: "advice-head" }, h("span", { class: "sev-tag" }, a.severity), ` ${a.rule.replace("_", " ")} · step ${a.step}`),
        h("p", {}, a.message)))) : null);
}

export function onShow() {
  loadRuns();
}

export function initRuns() {
  render();
}
