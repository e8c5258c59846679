// Wizard step 3: the method cards and each card's fields, both from the
// engine (`methods`: id, title, paper, when to choose it, and every [method]
// key with its doc, default and range), and the engine's estimate of
// trainable parameters and memory. A new method in the engine appears here
// with its fields and no change to this file. Estimates are debounced (150 ms)
// and sequence-numbered, so a slow stale answer never overwrites a newer one.

import { app, wizard, emit, setPath } from "../state.js";
import { h, field, clone, replace } from "../dom.js";
import { invoke } from "../ipc.js";
import { bytes, count } from "../format.js";
import { firstError, rawValue, updateField, resetFields } from "../validate.js";

const DEBOUNCE_MS = 150;

let timer = null;
let estimateSeq = 0;
let estimateEl = null;

/** The chosen card. */
const card = () => app.methods.find((x) => x.id === wizard.methodId);
const frozenBase = () => card()?.frozen_base ?? true;

/** The number-field spec (validate.js) of an engine field of type int/float. */
function numberSpec(f) {
  return {
    path: `method.${f.key}`, label: f.label, kind: f.type, min: f.min, minOpen: Boolean(f.min_open),
    max: f.max ?? null, maxOpen: Boolean(f.max_open), testid: `${f.key}-input`,
  };
}

const numberFields = () => (card()?.fields ?? []).filter((f) => f.type === "int" || f.type === "float");

/** Selects the method card `id`: its [method] table replaces the config's. */
export function chooseMethod(id) {
  const m = app.methods.find((x) => x.id === id);
  if (!m) return;
  const before = numberFields().map((f) => `method.${f.key}`);
  wizard.methodId = id;
  wizard.config.method = clone(m.config);
  // A quantized base is frozen: full fine-tuning trains those weights.
  if (!m.frozen_base && wizard.config.model) delete wizard.config.model.quantize;
  resetFields([...before, ...numberFields().map((f) => `method.${f.key}`)]);
}

/** Asks for a new estimate after the debounce delay (if the fields are valid). */
export function scheduleEstimate() {
  clearTimeout(timer);
  const invalid = fieldError();
  if (invalid) {
    estimateSeq += 1; // whatever is in flight is now stale
    wizard.estimate = { result: null, error: null, pending: false, invalid };
    renderEstimate();
    return;
  }
  wizard.estimate = { ...wizard.estimate, pending: true, invalid: null };
  renderEstimate();
  timer = setTimeout(runEstimate, DEBOUNCE_MS);
}

async function runEstimate() {
  const seq = ++estimateSeq;
  try {
    const result = await invoke("estimate", { config: clone(wizard.config) }, { quiet: true });
    if (seq !== estimateSeq) return;
    wizard.estimate = { result, error: null, pending: false };
  } catch (err) {
    if (seq !== estimateSeq) return;
    wizard.estimate = { result: null, error: err.message, pending: false };
  }
  renderEstimate();
}

function fieldError() {
  const e = firstError(numberFields().map(numberSpec));
  if (e) return e;
  for (const f of card()?.fields ?? []) {
    if (f.type === "subset" && !(wizard.config.method[f.key] ?? []).length) return `${f.label}: choose at least one.`;
  }
  return null;
}

export function render(el) {
  if (!wizard.methodId && app.methods.length) chooseMethod(app.methods[0].id);
  estimateEl = h("div", { class: "estimate", "aria-live": "polite" });
  replace(el,
    
    h("h2", {}, "Method"),
    h("div", { class: "cards", role: "radiogroup", "aria-label": "Method" },
      app.methods.map((m) => h("button", {
        type: "button",
        role: "radio",
        "aria-checked": String(m.id === wizard.methodId),
        class: ["card-choice", m.id === wizard.methodId && "selected"],
        testid: `method-${m.id}`,
        onclick: () => {
          chooseMethod(m.id);
          render(el);
        },
      }, h("span", { class: "card-title" }, m.title), h("span", { class: "card-text" }, m.when),
      m.paper ? h("span", { class: "card-paper" }, m.paper) : null))),
    h("div", { class: "method-body" },
      h("div", {}, methodControls(), memoryControls()),
      estimateEl));
  renderEstimate();
  scheduleEstimate();
}

function numberInput(spec, hint) {
  const input = h("input", { type: "text", inputmode: "decimal", testid: spec.testid, value: rawValue(spec), autocomplete: "off", title: hint });
  const f = field(spec.label, input);
  const showError = (err) => {
    f.error.textContent = err ?? "";
    input.setAttribute("aria-invalid", String(Boolean(err)));
  };
  input.addEventListener("input", () => {
    showError(updateField(spec, input.value));
    emit("wizard:message", null);
    scheduleEstimate();
  });
  return f.wrap;
}

/** One subset field: a checkbox per option, the config keeping the options' order. */
function subsetControl(f) {
  const method = wizard.config.method;
  const selected = new Set(method[f.key] ?? f.default ?? []);
  return h("fieldset", { class: "modules", testid: `${f.key}-input` },
    h("legend", { title: f.doc }, f.label),
    f.options.map((name) => h("label", { class: "check" },
      h("input", {
        type: "checkbox",
        value: name,
        checked: selected.has(name),
        testid: `${f.key}-${name}`,
        onchange: (e) => {
          if (e.target.checked) selected.add(name);
          else selected.delete(name);
          method[f.key] = f.options.filter((n) => selected.has(n));
          emit("wizard:message", null);
          scheduleEstimate();
        },
      }), name)));
}

function boolControl(f) {
  const method = wizard.config.method;
  return h("label", { class: "check", title: f.doc },
    h("input", {
      type: "checkbox",
      testid: `${f.key}-input`,
      checked: Boolean(method[f.key]),
      onchange: (e) => {
        method[f.key] = e.target.checked;
        scheduleEstimate();
      },
    }), f.label);
}

/** One of the field's options, as a select. */
function choiceControl(f) {
  const method = wizard.config.method;
  const current = method[f.key] ?? f.default;
  return field(f.label, h("select", {
    testid: `${f.key}-input`,
    title: f.doc,
    onchange: (e) => {
      method[f.key] = e.target.value;
      emit("wizard:message", null);
      scheduleEstimate();
    },
  }, f.options.map((v) => h("option", { value: v, selected: current === v }, v)))).wrap;
}

/** Decoder layers as "0, 2, 5" (empty = all); an entry that is not a layer index is left out. */
function layersControl(f) {
  const method = wizard.config.method;
  const input = h("input", {
    type: "text", testid: `${f.key}-input`, autocomplete: "off", placeholder: "all",
    value: (method[f.key] ?? []).join(", "), title: f.doc,
  });
  input.addEventListener("input", () => {
    method[f.key] = input.value.split(/[\s,]+/).filter((x) => /^\d+$/.test(x)).map(Number);
    scheduleEstimate();
  });
  return field(f.label, input).wrap;
}

/**
 * A dataset file (CorDA's calibration file): its path, a file dialog to
 * choose one and a button back to none (the engine's default, the run's own
 * training rows).
 */
function fileControl(f) {
  const method = wizard.config.method;
  const path = method[f.key] ?? null;
  const error = fileErrors.get(f.key);
  const choose = async () => {
    try {
      const picked = await invoke("pick_path", { kind: "dataset" }, { quiet: true });
      if (!picked) return;
      method[f.key] = picked;
      fileErrors.delete(f.key);
    } catch (err) {
      fileErrors.set(f.key, err.message);
    }
    emit("wizard:render", ["method"]);
    scheduleEstimate();
  };
  const clear = () => {
    method[f.key] = null;
    fileErrors.delete(f.key);
    emit("wizard:render", ["method"]);
    scheduleEstimate();
  };
  return field(f.label, h("div", { class: "file-field", role: "group", "aria-label": f.label, title: f.doc },
    h("span", { class: path ? "file-path" : "muted", testid: `${f.key}-input` }, path ?? "none: the run's training rows"),
    h("button", { type: "button", class: "btn", testid: `${f.key}-choose`, onclick: choose }, "Choose file…"),
    path ? h("button", { type: "button", class: "btn", testid: `${f.key}-clear`, onclick: clear }, "Clear") : null,
    error ? h("p", { class: "inline-error", role: "alert" }, error) : null)).wrap;
}

/** Why the last file dialog of a field failed, by key. */
const fileErrors = new Map();

/** The chosen card's fields, in the engine's order: numbers side by side, then the rest. */
function methodControls() {
  const fields = card()?.fields ?? [];
  const numbers = fields.filter((f) => f.type === "int" || f.type === "float");
  const others = fields.filter((f) => !numbers.includes(f)).map((f) => {
    if (f.type === "subset") return subsetControl(f);
    if (f.type === "bool") return boolControl(f);
    if (f.type === "layers") return layersControl(f);
    if (f.type === "choice") return choiceControl(f);
    if (f.type === "file") return fileControl(f);
    return h("p", { class: "hint" }, `method.${f.key}: edit it in the run's TOML (this app has no control for a ${f.type} field).`);
  });
  return h("div", { class: "controls" },
    numbers.length ? h("div", { class: "field-row" }, numbers.map((f) => numberInput(numberSpec(f), f.doc))) : null,
    others);
}

// `model.dtype` choices (docs/config.md).
const DTYPES = [
  ["f32", "f32 (exact, most memory)"],
  ["auto", "as the checkpoint (16-bit stays 16-bit)"],
  ["bf16", "bf16"],
  ["f16", "f16"],
];

// `model.quantize` choices (docs/config.md); adapter methods only.
const QUANTIZE = [
  ["none", "not quantized"],
  ["q8_0", "q8_0 (8-bit blocks, 1.1 bytes a weight)"],
  ["q4_0", "q4_0 (4-bit blocks, 0.6 bytes a weight: QLoRA)"],
  ["nf4", "nf4 (QLoRA's 4-bit NormalFloat)"],
];

/** The memory savers: gradient checkpointing, the base's storage dtype and,
 * for adapter methods, a quantized base. */
function memoryControls() {
  const train = (wizard.config.train ??= {});
  const model = (wizard.config.model ??= {});
  return h("fieldset", { class: "savers-controls" },
    h("legend", {}, "Memory"),
    h("label", { class: "check" },
      h("input", {
        type: "checkbox",
        testid: "checkpointing-input",
        checked: Boolean(train.gradient_checkpointing),
        onchange: (e) => {
          train.gradient_checkpointing = e.target.checked;
          scheduleEstimate();
        },
      }),
      "Gradient checkpointing (recompute layers in backward: far less memory, about 1.6x the time)"),
    field("Base weights stored in", h("select", {
      testid: "dtype-input",
      onchange: (e) => {
        model.dtype = e.target.value;
        scheduleEstimate();
      },
    }, DTYPES.map(([v, label]) => h("option", { value: v, selected: (model.dtype ?? "f32") === v }, label)))).wrap,
    frozenBase() ? field("Linear layers held as", h("select", {
      testid: "quantize-input",
      onchange: (e) => {
        model.quantize = e.target.value;
        scheduleEstimate();
      },
    }, QUANTIZE.map(([v, label]) => h("option", { value: v, selected: (model.quantize ?? "none") === v }, label)))).wrap : null);
}

function applySuggestion(s) {
  for (const { path, value } of s.set) setPath(wizard.config, path, value);
  resetFields(s.set.map((x) => x.path));
  emit("wizard:render", "method");
}

function fitView(fit) {
  if (!fit) {
    return h("p", { class: "muted", testid: "memory-fit" },
      "GPU memory is not reported by the backend: compare the estimate with your GPU's memory.");
  }
  return h("div", { class: ["fit", fit.fits ? "fits" : "too-big"], testid: "memory-fit" },
    h("p", { class: "verdict" }, `${fit.memory}: ${fit.verdict}`),
    fit.suggestions.length
      ? h("ul", { class: "suggestions" }, fit.suggestions.map((s, i) => h("li", {},
        h("button", { type: "button", testid: `suggestion-${i}`, onclick: () => applySuggestion(s) }, s.change),
        ` ${s.reason}: ${bytes(s.total)}${s.fits ? ", fits" : ", still too much"}`)))
      : null);
}

function renderEstimate() {
  if (!estimateEl) return;
  const e = wizard.estimate;
  const r = e.result;
  const m = r?.memory;
  const parts = m ? [["Weights", m.weights], ["Trainable", m.trainable], ["Gradients", m.gradients],
    ["Optimizer", m.optimizer], ["Activations", m.activations], ["Runtime", m.runtime]] : [];
  replace(estimateEl,
    h("h3", {}, "Estimate"),
    h("div", { class: ["stat-row", e.pending && "stale"] },
      h("div", { class: "stat", testid: "trainable-params" },
        h("span", { class: "stat-label" }, "Trainable parameters"),
        h("span", { class: "stat-value" }, r ? count(r.trainable_params) : "—"),
        r ? h("span", { class: "stat-sub" }, `of ${count(r.total_params)} total`) : null),
      h("div", { class: "stat", testid: "memory-estimate" },
        h("span", { class: "stat-label" }, "Memory"),
        h("span", { class: "stat-value" }, m ? bytes(m.total) : "—"),
        m ? h("dl", { class: "breakdown" }, parts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, bytes(v))])) : null)),
    r ? fitView(r.fit) : null,
    e.pending ? h("p", { class: "muted" }, "Updating…") : null,
    e.invalid ? h("p", { class: "hint" }, `Fix the values to update the estimate: ${e.invalid}`) : null,
    e.error ? h("p", { class: "inline-error", role: "alert", testid: "estimate-error" }, e.error) : null);
}

export function validate() {
  if (!wizard.methodId) return "Choose a method.";
  return fieldError();
}
