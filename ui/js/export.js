// Export a run: run, format (with what each one is for), checkpoint (best /
// last), the output path (default <run_dir>/export/<format>, or one chosen in
// a save dialog), then export_run's report (path, files and sizes, the
// checkpoint used and why, notes) or its error.

import { app } from "./state.js";
import { h, field, replace } from "./dom.js";
import { invoke } from "./ipc.js";
import { bytes } from "./format.js";

export const FORMATS = [
  ["peft", "PEFT adapter folder for Hugging Face transformers (small; loads on top of the base model)."],
  ["gguf", "Adapter file for llama.cpp or Ollama, applied on top of the base model's GGUF."],
  ["merged", "Full Hugging Face model folder with the adapter merged into the weights."],
  ["merged-gguf", "One llama.cpp model file with the adapter merged in."],
  ["ollama", "Merged GGUF plus a Modelfile, ready for `ollama create`."],
];
const CHECKPOINTS = [["best", "best (lowest validation loss)"], ["last", "last (newest checkpoint)"]];

const view = { runs: [], runDir: null, format: "peft", checkpoint: "best", customOut: null, busy: false, report: null, error: null, listError: null };
const root = () => document.getElementById("export-root");

/** "<run_dir>/export/<format>" with the run folder's own separator. */
export function defaultOut(runDir, format) {
  if (!runDir) return "";
  const sep = runDir.includes("\\") && !runDir.includes("/") ? "\\" : "/";
  return `${runDir.replace(/[\\/]+$/, "")}${sep}export${sep}${format}`;
}

const outPath = () => view.customOut ?? defaultOut(view.runDir, view.format);

async function load() {
  try {
    view.runs = await invoke("list_runs", {}, { quiet: true });
    view.listError = null;
  } catch (err) {
    view.listError = err.message;
  }
  const dirs = view.runs.map((r) => r.dir);
  if (!view.runDir || !dirs.includes(view.runDir)) {
    const current = app.currentRun?.run_dir;
    view.runDir = dirs.includes(current) ? current : dirs[0] ?? current ?? null;
  }
  render();
}

async function choose() {
  try {
    const path = await invoke("pick_path", { kind: "export", suggested_name: `export-${view.format}` }, { quiet: true });
    if (path) view.customOut = path;
    view.error = null;
  } catch (err) {
    view.error = err.message;
  }
  render();
}

async function run() {
  view.busy = true;
  view.report = null;
  view.error = null;
  render();
  try {
    view.report = await invoke("export_run", {
      run_dir: view.runDir, format: view.format, out: outPath(), checkpoint: view.checkpoint,
    }, { quiet: true });
  } catch (err) {
    view.error = err.message;
  }
  view.busy = false;
  render();
}

function render() {
  const el = root();
  const runSelect = h("select", {
    testid: "export-run-select",
    onchange: (e) => { view.runDir = e.target.value; view.customOut = null; render(); },
  }, view.runs.length ? view.runs.map((r) => h("option", { value: r.dir, selected: r.dir === view.runDir }, `${r.name} — ${r.status}`))
    : h("option", { value: "" }, "no runs yet"));
  const formatSelect = h("select", {
    testid: "export-format",
    onchange: (e) => { view.format = e.target.value; render(); },
  }, FORMATS.map(([f]) => h("option", { value: f, selected: f === view.format }, f)));
  const cpSelect = h("select", {
    testid: "export-checkpoint",
    onchange: (e) => { view.checkpoint = e.target.value; },
  }, CHECKPOINTS.map(([v, label]) => h("option", { value: v, selected: v === view.checkpoint }, label)));
  const out = h("input", { type: "text", readonly: true, testid: "export-out", value: outPath(), class: "path-input" });
  replace(el,
    view.listError ? h("p", { class: "inline-error", role: "alert" }, view.listError) : null,
    h("div", { class: "panel form-panel" },
      field("Run", runSelect).wrap,
      field("Format", formatSelect, FORMATS.find(([f]) => f === view.format)[1]).wrap,
      field("Checkpoint", cpSelect).wrap,
      h("div", { class: "field" },
        h("label", { htmlFor: "export-out-input" }, "Output"),
        h("div", { class: "input-row" }, out,
          h("button", { type: "button", class: "btn", testid: "export-choose", onclick: choose }, "Choose…"),
          view.customOut ? h("button", { type: "button", class: "btn btn-link", onclick: () => { view.customOut = null; render(); } }, "Use default") : null),
        h("p", { class: "hint" }, view.customOut ? "Chosen in the save dialog." : "Default: inside the run folder.")),
      h("div", { class: "actions" },
        h("button", {
          type: "button", class: "btn btn-primary", testid: "export-start", disabled: !view.runDir || view.busy, onclick: run,
        }, view.busy ? "Exporting…" : "Export"))),
    h("div", { class: "export-error-slot", "aria-live": "assertive" },
      view.error ? h("p", { class: "inline-error error-card", role: "alert", testid: "export-error" }, view.error) : null),
    h("div", { "aria-live": "polite" }, view.report ? report(view.report) : null));
  out.id = "export-out-input";
}

function report(r) {
  const rel = (p) => (p.startsWith(r.path) ? p.slice(r.path.length).replace(/^[\\/]/, "") || p : p);
  return h("div", { class: "panel report-card", testid: "export-result" },
    h("h2", {}, `Exported ${r.format}`),
    h("dl", { class: "facts" },
      h("dt", {}, "Written to"), h("dd", { class: "path" }, r.path),
      h("dt", {}, "Checkpoint"), h("dd", {}, `step ${r.step}: ${r.chosen_because}`, h("div", { class: "path" }, r.checkpoint)),
      h("dt", {}, "Size"), h("dd", {}, bytes(r.bytes))),
    h("table", { class: "files-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "File"), h("th", { scope: "col", class: "num" }, "Size"))),
      h("tbody", {}, (r.files ?? []).map(([p, size]) => h("tr", {}, h("td", { class: "path", title: p }, rel(p)), h("td", { class: "num" }, bytes(size)))))),
    r.notes?.length ? h("ul", { class: "notes" }, r.notes.map((n) => h("li", {}, n))) : null);
}

export function onShow() {
  load();
}

export function initExport() {
  render();
}
