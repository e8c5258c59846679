// Wizard step 1: the training file. A file dialog or a bundled sample, then
// the engine's report: format (changeable: re-inspects), rows, bad rows with
// their line numbers, warnings, and the token view once a model is chosen.

import { app, wizard, emit } from "../state.js";
import { h, replace, field, nextId } from "../dom.js";
import { invoke } from "../ipc.js";
import { basename } from "../format.js";
import { tokenView } from "../tokens.js";

export const FORMATS = ["auto", "alpaca", "messages", "sharegpt", "prompt_completion", "text"];
let inspectSeq = 0;

/** (Re)inspects the chosen dataset, with the chosen model's tokenizer if any. */
export async function inspectDataset() {
  const d = wizard.dataset;
  if (!d.path) return;
  const seq = ++inspectSeq;
  d.loading = true;
  d.error = null;
  emit("wizard:render", ["dataset", "model"]);
  const args = { path: d.path };
  if (d.format && d.format !== "auto") args.format = d.format;
  if (wizard.model.path) args.model_path = wizard.model.path;
  const maxLength = wizard.config?.data?.max_length;
  if (maxLength) args.max_length = maxLength;
  try {
    const report = await invoke("inspect_dataset", args, { quiet: true });
    if (seq !== inspectSeq) return;
    d.report = report;
  } catch (err) {
    if (seq !== inspectSeq) return;
    d.report = null;
    d.error = err.message;
  }
  d.loading = false;
  emit("wizard:render", ["dataset", "model"]);
}

function choose(path, label) {
  const d = wizard.dataset;
  d.path = path;
  d.label = label ?? basename(path);
  d.report = null;
  d.format = "auto";
  wizard.config.data.train = path;
  wizard.config.data.format = "auto";
  emit("wizard:message", null);
  inspectDataset();
}

async function pick() {
  try {
    const path = await invoke("pick_path", { kind: "dataset" }, { quiet: true });
    if (path) choose(path);
  } catch (err) {
    wizard.dataset.error = err.message;
    emit("wizard:render", ["dataset", "model"]);
  }
}

export function render(el) {
  const d = wizard.dataset;
  const samples = app.bundled?.datasets ?? [];
  replace(el,
    
    h("h2", {}, "Training data"),
    h("p", { class: "lead" }, "A JSONL, JSON, CSV, TSV, Parquet or text file with one example per row."),
    h("div", { class: "choice-row" },
      h("button", { type: "button", class: "btn", testid: "dataset-choose", onclick: pick }, "Choose file…"),
      samples.map((s, i) => h("button", {
        type: "button",
        class: ["btn", "btn-sample", d.path === s.path && "selected"],
        testid: `dataset-sample-${i}`,
        title: s.description,
        "aria-pressed": String(d.path === s.path),
        onclick: () => choose(s.path, s.name),
      }, h("span", { class: "btn-title" }, s.name), h("span", { class: "btn-sub" }, s.description)))),
    d.path ? summary(d) : h("p", { class: "empty" }, "No dataset chosen yet."));
}

function summary(d) {
  const select = h("select", {
    onchange: (e) => {
      d.format = e.target.value;
      wizard.config.data.format = d.format;
      inspectDataset();
    },
    testid: "dataset-format",
  }, FORMATS.map((f) => h("option", { value: f, selected: f === d.format }, f === "auto" ? "auto (detect)" : f)));
  const r = d.report;
  return h("div", { class: "panel" },
    h("div", { class: "panel-head" },
      h("div", {}, h("strong", {}, d.label), h("div", { class: "path", title: d.path }, d.path)),
      field("Format", select).wrap),
    h("div", { class: "status-line", "aria-live": "polite" },
      d.loading ? h("span", { class: "muted" }, "Inspecting…") : null,
      d.error ? h("span", { class: "inline-error", role: "alert" }, d.error) : null),
    r ? report(r) : null);
}

function report(r) {
  const badId = nextId("bad");
  return h("div", { class: "report" },
    h("div", { class: "stat-row" },
      h("div", { class: "stat", testid: "dataset-rows" },
        h("span", { class: "stat-label" }, "Rows"), h("span", { class: "stat-value" }, `${r.rows} rows`)),
      h("div", { class: "stat" }, h("span", { class: "stat-label" }, "Detected format"), h("span", { class: "stat-value" }, r.format)),
      h("div", { class: "stat" }, h("span", { class: "stat-label" }, "File kind"), h("span", { class: "stat-value" }, r.file_kind)),
      h("div", { class: ["stat", r.bad_rows > 0 && "stat-bad"] },
        h("span", { class: "stat-label" }, "Bad rows"), h("span", { class: "stat-value" }, String(r.bad_rows)))),
    r.errors?.length ? h("details", { class: "bad-rows", open: true },
      h("summary", { id: badId }, `${r.bad_rows} bad row${r.bad_rows === 1 ? "" : "s"} will be skipped`),
      h("ul", { "aria-labelledby": badId }, r.errors.map((e) =>
        h("li", {}, h("span", { class: "line-no" }, `${e.unit ?? "line"} ${e.line}`), " ", e.reason)))) : null,
    r.warnings?.length ? h("ul", { class: "warnings" }, r.warnings.map((w) => h("li", {}, w))) : null,
    r.tokens ? tokenView(r.tokens)
      : h("p", { class: "hint" }, wizard.model.path ? "" : "Token lengths and rendered examples appear once a model is chosen (next step)."));
}

export function validate() {
  const d = wizard.dataset;
  if (!d.path) return "Choose a dataset file or one of the samples.";
  if (d.loading) return "Wait for the dataset inspection to finish.";
  if (d.error) return `The dataset could not be read: ${d.error}`;
  if (!d.report || !(d.report.rows > 0)) return "The dataset has no usable rows.";
  return null;
}
