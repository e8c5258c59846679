// Wizard step 2: the base model (a folder dialog or the bundled tiny model),
// its summary from inspect_model, and the dataset re-inspected with its
// tokenizer (token-length histogram and rendered examples).

import { app, wizard, emit } from "../state.js";
import { h, replace } from "../dom.js";
import { invoke } from "../ipc.js";
import { basename, bytes, count } from "../format.js";
import { tokenView } from "../tokens.js";
import { inspectDataset } from "./dataset.js";

let seq = 0;

async function choose(path, label) {
  const m = wizard.model;
  m.path = path;
  m.label = label ?? basename(path);
  m.summary = null;
  m.error = null;
  wizard.config.model.path = path;
  emit("wizard:message", null);
  emit("wizard:render", "model");
  inspectDataset();
  const mine = ++seq;
  try {
    const summary = await invoke("inspect_model", { path }, { quiet: true });
    if (mine === seq) m.summary = summary;
  } catch (err) {
    if (mine === seq) m.error = err.message;
  }
  emit("wizard:render", "model");
}

async function pick() {
  try {
    const path = await invoke("pick_path", { kind: "model" }, { quiet: true });
    if (path) choose(path);
  } catch (err) {
    wizard.model.error = err.message;
    emit("wizard:render", "model");
  }
}

export function render(el) {
  const m = wizard.model;
  const bundled = app.bundled?.model;
  replace(el,
    
    h("h2", {}, "Base model"),
    h("p", { class: "lead" }, "A Hugging Face model folder (config.json, tokenizer.json, *.safetensors) of the llama, mistral, qwen2 or qwen3 family."),
    h("div", { class: "choice-row" },
      h("button", { type: "button", class: "btn", testid: "model-choose", onclick: pick }, "Choose folder…"),
      bundled ? h("button", {
        type: "button",
        class: ["btn", "btn-sample", m.path === bundled.path && "selected"],
        testid: "model-bundled",
        "aria-pressed": String(m.path === bundled.path),
        onclick: () => choose(bundled.path, bundled.name),
      }, h("span", { class: "btn-title" }, bundled.name), h("span", { class: "btn-sub" }, "bundled tiny model")) : null),
    m.path ? h("div", { class: "panel" },
      h("div", {}, h("strong", {}, m.label), h("div", { class: "path", title: m.path }, m.path)),
      m.error ? h("p", { class: "inline-error", role: "alert" }, m.error) : null,
      m.summary ? summary(m.summary) : (m.error ? null : h("p", { class: "muted", "aria-live": "polite" }, "Reading the model…")))
      : h("p", { class: "empty" }, "No model chosen yet."),
    tokens());
}

function summary(s) {
  const dtypes = Object.entries(s.dtypes ?? {}).map(([k, v]) => `${k} (${count(v)})`).join(", ");
  const rows = [
    ["Architecture", s.model_type],
    ["Layers", s.num_layers],
    ["Hidden size", s.hidden_size],
    ["Heads", s.num_kv_heads && s.num_kv_heads !== s.num_heads ? `${s.num_heads} (${s.num_kv_heads} key/value)` : s.num_heads],
    ["Vocabulary", s.vocab_size],
    ["Data types", dtypes],
    ["On disk", bytes(s.bytes_on_disk)],
    ["Loaded", bytes(s.bytes_loaded)],
  ];
  return h("div", { class: "model-summary" },
    h("div", { class: "stat big", testid: "model-params" },
      h("span", { class: "stat-value" }, `${count(s.parameters)} parameters`),
      h("span", { class: "stat-label" }, `${s.parameters.toLocaleString("en-US")} exactly`)),
    h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v ?? "—"))])));
}

function tokens() {
  const d = wizard.dataset;
  if (!d.path || !wizard.model.path) return null;
  return h("div", { class: "panel" },
    h("h3", {}, `${d.label} with this model's tokenizer`),
    d.loading ? h("p", { class: "muted" }, "Tokenizing…") : null,
    d.error ? h("p", { class: "inline-error", role: "alert" }, d.error) : null,
    d.report?.tokens ? tokenView(d.report.tokens) : null);
}

export function validate() {
  const m = wizard.model;
  if (!m.path) return "Choose a model folder or the bundled model.";
  if (m.error) return `The model could not be read: ${m.error}`;
  if (!m.summary) return "Wait until the model has been read.";
  return null;
}
