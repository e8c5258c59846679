// Wizard step 5: the TOML the run will save (from config_toml, which also
// validates), a short summary, and Start (start_run), which opens the
// dashboard on the new run; with triage on, Start triage (start_triage)
// opens the Triage view instead.

import { app, wizard, emit } from "../state.js";
import { h, replace, clone } from "../dom.js";
import { invoke } from "../ipc.js";
import { basename } from "../format.js";
import { triageText, parseTriageLrs } from "./training.js";

let seq = 0;
let startError = null;

async function loadToml() {
  const mine = ++seq;
  wizard.toml = { text: null, error: null, loading: true };
  try {
    const text = await invoke("config_toml", { config: clone(wizard.config) }, { quiet: true });
    if (mine === seq) wizard.toml = { text, error: null };
  } catch (err) {
    if (mine === seq) wizard.toml = { text: null, error: err.message };
  }
  if (mine === seq) emit("wizard:render", "review");
}

async function start() {
  wizard.starting = true;
  startError = null;
  emit("wizard:render", "review");
  try {
    const config = clone(wizard.config);
    const lrs = triageLrs();
    if (lrs) {
      const { dir } = await invoke("start_triage", { config, grid: [`lr=${lrs.join(",")}`], run_all: false }, { quiet: true });
      emit("triage:started", { dir, model_path: config.model.path });
      emit("nav", "triage");
    } else {
      const { run_dir } = await invoke("start_run", { config }, { quiet: true });
      app.currentRun = { run_dir, model_path: config.model.path };
      emit("run:current", app.currentRun);
      emit("nav", "dashboard");
    }
  } catch (err) {
    startError = err.message;
  }
  wizard.starting = false;
  emit("wizard:render", "review");
}

/** The triage's learning rates when triage is on (the training step validated them), else null. */
function triageLrs() {
  return wizard.triage.on ? parseTriageLrs(triageText()).values ?? null : null;
}

export function render(el) {
  if (!wizard.toml.loading && wizard.toml.text == null && wizard.toml.error == null) loadToml();
  const t = wizard.toml;
  const method = app.methods.find((m) => m.id === wizard.methodId);
  const preset = app.presets.find((p) => p.name === wizard.presetName);
  replace(el,
    
    h("h2", {}, "Review"),
    h("dl", { class: "facts review-facts" },
      h("dt", {}, "Dataset"), h("dd", {}, wizard.dataset.label ?? basename(wizard.dataset.path)),
      h("dt", {}, "Model"), h("dd", {}, wizard.model.label ?? basename(wizard.model.path)),
      h("dt", {}, "Method"), h("dd", {}, method?.title ?? "—"),
      h("dt", {}, "Preset"), h("dd", {}, preset?.title ?? preset?.name ?? "custom"),
      h("dt", {}, "Backend"), h("dd", {}, wizard.config.model.backend ?? "auto")),
    h("h3", {}, "Run configuration"),
    triageLrs() ? h("p", { class: "triage-note", testid: "review-triage" },
      h("strong", {}, `Triage over learning rates: ${triageLrs().join(", ")}`),
      " — each runs for the early window, the best one continues to the end.") : null,
    t.loading ? h("p", { class: "muted", "aria-live": "polite" }, "Checking the configuration…") : null,
    t.error ? h("p", { class: "inline-error", role: "alert", testid: "review-error" }, t.error) : null,
    h("pre", { class: "toml", testid: "review-toml", tabindex: "0" }, t.text ?? ""),
    h("div", { class: "actions" },
      h("button", {
        type: "button",
        class: "btn btn-primary btn-large",
        testid: "start-run",
        disabled: !t.text || wizard.starting,
        onclick: start,
      }, wizard.starting ? "Starting…" : triageLrs() ? "Start triage" : "Start training"),
      startError ? h("p", { class: "inline-error", role: "alert", testid: "start-error" }, startError) : null));
}

/** The review step is last; leaving it forgets the TOML so it is re-checked. */
export function validate() {
  return null;
}

/** On every visit the config may have changed: fetch the TOML again. */
export function onShow() {
  seq += 1;
  wizard.toml = { text: null, error: null };
}
