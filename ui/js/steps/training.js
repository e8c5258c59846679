// Wizard step 4: training settings. A preset (from `presets`) fills the
// [train] section (plus data.max_length / val_fraction, early stopping and
// the run name); the values stay editable; the advisor's rules (off / warn /
// stop); the compute backend, unavailable ones disabled with the reason; and
// triage: several learning rates tried for the early window first.

import { app, wizard, emit } from "../state.js";
import { h, replace, field, clone } from "../dom.js";
import { firstError, rawValue, updateField, resetFields, parseField } from "../validate.js";
import { inspectDataset } from "./dataset.js";

export const FIELDS = [
  { path: "train.learning_rate", label: "Learning rate", kind: "float", min: "gt0", testid: "lr-input" },
  { path: "train.epochs", label: "Epochs", kind: "int", min: "gt0", testid: "epochs-input" },
  { path: "train.micro_batch", label: "Micro-batch", kind: "int", min: "gt0", testid: "micro-batch-input" },
  { path: "train.grad_accum", label: "Gradient accumulation", kind: "int", min: "gt0", testid: "grad-accum-input" },
  { path: "data.max_length", label: "Max length (tokens)", kind: "int", min: "gt0", testid: "max-length-input" },
  { path: "train.eval_every", label: "Evaluate every (steps, 0 = end only)", kind: "int", min: "ge0", testid: "eval-every-input" },
  { path: "train.warmup_steps", label: "Warmup steps", kind: "int", min: "ge0", testid: "warmup-input" },
];
const SCHEDULES = ["constant", "linear", "cosine"];
// The advisor's rules and their defaults (docs/config.md, [early_stopping]).
const RULES = [
  ["divergence", "stop", "NaN/Inf loss or a collapsed model"],
  ["grad_spike", "warn", "gradient norm far above its running median"],
  ["overfitting", "stop", "validation loss rising while training loss falls"],
  ["plateau", "warn", "no validation improvement"],
];
const MODES = ["off", "warn", "stop"];
const PATIENCE = { path: "early_stopping.patience", label: "Patience (evaluations)", kind: "int", min: "gt0", testid: "patience-input" };
// The early window's default share of the planned steps (docs/config.md, [early_stopping]).
const EARLY_WINDOW = 0.1;

/** A learning rate written compactly: 0.0009 → "9e-4", 0.003 → "3e-3", 0.5 → "0.5". */
export function compactLr(x) {
  const v = Number(x.toPrecision(3));
  if (v !== 0 && (Math.abs(v) < 0.01 || Math.abs(v) >= 1000)) return v.toExponential().replace("e+", "e");
  return String(v);
}

/** The triage's learning rates as typed (default: the learning rate times 0.3, 1 and 3). */
export function triageText() {
  if (wizard.triage.lrs != null) return wizard.triage.lrs;
  const lr = wizard.config.train?.learning_rate;
  return lr > 0 ? [0.3, 1, 3].map((f) => compactLr(lr * f)).join(", ") : "";
}

/** {values: [text]} or {error} for the triage's learning rates. */
export function parseTriageLrs(text) {
  const parts = String(text ?? "").split(",").map((x) => x.trim()).filter((x) => x !== "");
  const spec = { label: "Each triage learning rate", kind: "float", min: "gt0" };
  for (const part of parts) {
    const r = parseField(spec, part);
    if (r.error) return { error: `${r.error.replace(/\.$/, "")} ("${part}").` };
  }
  if (parts.length < 2) return { error: "Triage needs at least two learning rates, separated by commas." };
  return { values: parts };
}

/** Fills the training settings from preset `name`. */
export function applyPreset(name) {
  const p = app.presets.find((x) => x.name === name);
  if (!p) return;
  const c = p.config ?? {};
  const cfg = wizard.config;
  cfg.train = clone(c.train ?? {});
  for (const k of ["max_length", "val_fraction"]) {
    if (c.data?.[k] != null) cfg.data[k] = c.data[k];
  }
  if (c.early_stopping) cfg.early_stopping = clone(c.early_stopping);
  else delete cfg.early_stopping;
  if (c.output?.name) cfg.output = { ...(cfg.output ?? {}), name: c.output.name };
  resetFields([...FIELDS.map((f) => f.path), PATIENCE.path]);
  wizard.presetName = name;
}

export function render(el) {
  const cfg = wizard.config;
  replace(el,
    
    h("h2", {}, "Training"),
    h("div", { class: "cards", role: "radiogroup", "aria-label": "Preset" },
      app.presets.map((p) => h("button", {
        type: "button",
        role: "radio",
        "aria-checked": String(p.name === wizard.presetName),
        class: ["card-choice", p.name === wizard.presetName && "selected"],
        testid: `preset-${p.name}`,
        onclick: () => {
          applyPreset(p.name);
          inspectDataset();
          render(el);
        },
      }, h("span", { class: "card-title" }, p.title ?? p.name), h("span", { class: "card-text" }, p.description)))),
    h("p", { class: "hint" }, "A preset fills the values below; the method stays as chosen on the previous step."),
    h("div", { class: "field-grid" },
      FIELDS.map((spec) => numberInput(spec, spec.path === "data.max_length" ? () => inspectDataset() : null)),
      scheduleSelect(cfg)),
    h("h3", {}, "Early stopping"),
    h("p", { class: "hint" }, "The advisor watches the run: off ignores a rule, warn only advises, stop ends the run (keeping the best or last good checkpoint)."),
    h("div", { class: "field-grid" }, RULES.map(([rule, def, what]) => ruleSelect(rule, def, what)), numberInput(PATIENCE, null, 3)),
    h("h3", {}, "Triage"),
    triageFields(el),
    h("h3", {}, "Compute"),
    backendSelect(cfg));
}

function numberInput(spec, onChange, fallback) {
  let raw = rawValue(spec);
  if (raw === "" && fallback != null) raw = String(fallback);
  const input = h("input", { type: "text", inputmode: "decimal", testid: spec.testid, value: raw, autocomplete: "off" });
  const f = field(spec.label, input);
  input.addEventListener("input", () => {
    const err = updateField(spec, input.value);
    f.error.textContent = err ?? "";
    input.setAttribute("aria-invalid", String(Boolean(err)));
    emit("wizard:message", null);
  });
  if (onChange) input.addEventListener("change", onChange);
  return f.wrap;
}

function triageFields(el) {
  const t = wizard.triage;
  const share = wizard.config.early_stopping?.early_window ?? EARLY_WINDOW;
  const toggle = h("input", {
    type: "checkbox",
    testid: "triage-toggle",
    checked: t.on,
    onchange: (e) => {
      t.on = e.target.checked;
      emit("wizard:message", null);
      render(el);
    },
  });
  const input = h("input", { type: "text", testid: "triage-lrs", value: triageText(), autocomplete: "off", disabled: !t.on });
  const f = field("Learning rates (comma-separated)", input);
  const showError = () => {
    const err = t.on ? parseTriageLrs(input.value).error : null;
    f.error.textContent = err ?? "";
    input.setAttribute("aria-invalid", String(Boolean(err)));
  };
  input.addEventListener("input", () => {
    t.lrs = input.value;
    showError();
    emit("wizard:message", null);
  });
  showError();
  return h("div", { class: "triage-fields" },
    h("label", { class: "check-line" }, toggle, " Try several learning rates first (triage)"),
    h("p", { class: "hint" },
      `Each learning rate runs for the early window (${Math.round(share * 100)}% of the planned steps); `,
      "the one with the lower gradient norm and higher loss early on continues to the end, the others stay stopped ",
      "(early-dynamics ranking, Pareja et al. 2024)."),
    h("div", { class: "field-grid" }, f.wrap));
}

function scheduleSelect(cfg) {
  const select = h("select", {
    testid: "schedule-select",
    onchange: (e) => { cfg.train.schedule = e.target.value; },
  }, SCHEDULES.map((s) => h("option", { value: s, selected: (cfg.train.schedule ?? "cosine") === s }, s)));
  return field("Schedule", select, "after warmup").wrap;
}

function ruleSelect(rule, def, what) {
  const current = wizard.config.early_stopping?.[rule] ?? def;
  const select = h("select", {
    testid: `rule-${rule}`,
    onchange: (e) => {
      wizard.config.early_stopping = { ...(wizard.config.early_stopping ?? {}), [rule]: e.target.value };
    },
  }, MODES.map((m) => h("option", { value: m, selected: m === current }, m)));
  return field(rule.replace("_", " "), select, what).wrap;
}

function backendSelect(cfg) {
  const current = cfg.model.backend ?? "auto";
  const select = h("select", {
    testid: "backend-select",
    onchange: (e) => {
      cfg.model.backend = e.target.value;
      emit("wizard:message", null);
    },
  }, app.backends.map((b) => h("option", {
    value: b.name,
    disabled: !b.available,
    selected: b.name === current,
  }, b.available ? `${b.name} — ${b.detail}` : `${b.name} (unavailable: ${b.detail})`)));
  return h("div", {},
    field("Backend", select).wrap,
    h("ul", { class: "backend-list" }, app.backends.map((b) =>
      h("li", { class: b.available ? "ok" : "off" }, h("strong", {}, b.name), ": ", b.detail))));
}

export function validate() {
  const err = firstError([...FIELDS, ...(wizard.config.early_stopping?.patience != null || Object.hasOwn(wizard.form, PATIENCE.path) ? [PATIENCE] : [])]);
  if (err) return err;
  const backend = app.backends.find((b) => b.name === (wizard.config.model.backend ?? "auto"));
  if (backend && !backend.available) return `The ${backend.name} backend is unavailable: ${backend.detail}.`;
  if (wizard.triage.on) return parseTriageLrs(triageText()).error ?? null;
  return null;
}
