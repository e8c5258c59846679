// Wizard step 2: the base model (a folder or GGUF file dialog, a model
// found on this machine by list_models, or the bundled tiny model), its
// summary from inspect_model, and the dataset re-inspected with its
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

async function pick(kind) {
  try {
    const path = await invoke("pick_path", { kind }, { quiet: true });
    if (path) choose(path);
  } catch (err) {
    wizard.model.error = err.message;
    emit("wizard:render", "model");
  }
}

// The models on this machine, looked up once per window.
const found = { listing: null, error: null, loading: false };

// The panel showing them; the lookup's answer refills only this panel, so
// the rest of the step (and whatever the user is clicking) stays in place.
let foundPanel = null;

async function listModels() {
  if (found.listing || found.loading) return;
  found.loading = true;
  try {
    found.listing = await invoke("list_models", {}, { quiet: true });
  } catch (err) {
    found.error = err.message;
  }
  found.loading = false;
  if (foundPanel?.isConnected) fillFound(foundPanel, wizard.model);
}

export function render(el) {
  const m = wizard.model;
  const bundled = app.bundled?.model;
  listModels();
  replace(el,
    
    h("h2", {}, "Base model"),
    h("p", { class: "lead" }, "A Hugging Face model folder (config.json, tokenizer.json, *.safetensors) or a GGUF file of the llama, mistral, qwen2 or qwen3 family."),
    h("div", { class: "choice-row" },
      h("button", { type: "button", class: "btn", testid: "model-choose", onclick: () => pick("model") }, "Choose folder…"),
      h("button", { type: "button", class: "btn", testid: "model-choose-gguf", onclick: () => pick("gguf") }, "Choose GGUF file…"),
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
    onThisMachine(m),
    tokens());
}

const STORES = { "hf-cache": "HF cache", ollama: "Ollama", "lm-studio": "LM Studio", folder: "Folder" };

function onThisMachine(m) {
  foundPanel = h("div", { class: "panel", testid: "found-panel" });
  fillFound(foundPanel, m);
  return foundPanel;
}

function fillFound(panel, m) {
  const body = () => {
    if (found.error) return h("p", { class: "inline-error", role: "alert" }, found.error);
    if (!found.listing) return h("p", { class: "muted", "aria-live": "polite" }, "Looking in the Hugging Face cache, Ollama and LM Studio…");
    const models = found.listing.models;
    if (!models.length) {
      const where = found.listing.searched.map(([, dir]) => dir).join(", ");
      return h("p", { class: "empty" }, `No models found in ${where || "the usual places"}.`);
    }
    return h("table", { class: "found-models", testid: "found-models" },
      h("thead", {}, h("tr", {}, ["Model", "From", "Architecture", "Parameters", "Type", "Size", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, models.map((f, i) => h("tr", {
        class: [!f.trainable && "untrainable", m.path === f.path && "selected"],
        testid: `found-${i}`,
      },
        h("td", {}, h("div", {}, f.name), h("div", { class: "path", title: f.path }, f.path)),
        h("td", {}, STORES[f.store] ?? f.store),
        h("td", {}, f.architecture ?? "—"),
        h("td", {}, f.parameters == null ? "—" : count(f.parameters)),
        h("td", {}, f.dtype ?? "—"),
        h("td", {}, bytes(f.size_bytes)),
        h("td", {}, f.trainable
          ? [h("button", {
              type: "button", class: "btn btn-small", testid: `found-use-${i}`,
              "aria-pressed": String(m.path === f.path),
              onclick: () => choose(f.path, f.name),
            }, "Use"), f.note ? h("div", { class: "muted" }, f.note) : null]
          : h("span", { class: "muted", testid: `found-why-${i}` }, `Cannot train: ${f.note ?? "unknown reason"}`))))));
  };
  replace(panel, h("h3", {}, "On this machine"), body());
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
