// Entry point: wires the left navigation to the views, loads what the app
// offers (app_info, bundled, methods, presets, backends) and starts the
// wizard. Outside the Tauri window it says so in the error banner.

import { app, wizard, on, emit } from "./state.js";
import { clone } from "./dom.js";
import { initBanner, showError } from "./banner.js";
import { inApp, invoke, NOT_IN_APP } from "./ipc.js";
import { initWizard } from "./wizard.js";
import { applyPreset } from "./steps/training.js";
import * as dashboard from "./dashboard.js";
import * as triage from "./triage.js";
import * as runs from "./runs.js";
import * as exportView from "./export.js";
import * as chat from "./chat.js";
import { basename } from "./format.js";

const VIEWS = {
  wizard: {},
  dashboard: { onShow: dashboard.onShow, onHide: dashboard.onHide },
  triage: { onShow: triage.onShow, onHide: triage.onHide },
  runs: { onShow: runs.onShow },
  export: { onShow: exportView.onShow },
  chat: { onShow: chat.onShow },
};
let current = null;

/** Shows one view and marks its nav button. */
export function showView(name) {
  if (!VIEWS[name]) return;
  if (current && current !== name) VIEWS[current].onHide?.();
  current = name;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.viewName !== name;
  for (const btn of document.querySelectorAll(".nav-item")) {
    if (btn.dataset.view === name) btn.setAttribute("aria-current", "page");
    else btn.removeAttribute("aria-current");
  }
  VIEWS[name].onShow?.();
}

/** A new RunConfig from the first preset, without its model and dataset (the user picks those). */
function initialConfig() {
  const first = app.presets[0];
  const config = clone(first?.config) ?? {};
  for (const k of ["model", "data", "method", "train", "output"]) config[k] ??= {};
  delete config.model.path;
  delete config.data.train;
  wizard.config = config;
  if (first) applyPreset(first.name);
}

async function loadApp() {
  // Probing backends starts GPU drivers (seconds on a software Vulkan
  // driver): the window does not wait for it; the training step fills in
  // when the answer comes.
  invoke("backends")
    .then((list) => {
      app.backends = list;
      emit("wizard:render", ["training"]);
    })
    .catch(() => {
      // The banner shows the error; `auto` still works (it falls back to the CPU).
      app.backends = [{ name: "auto", available: true, detail: "backends could not be probed" }];
      emit("wizard:render", ["training"]);
    });
  const [info, bundled, methods, presets] = await Promise.allSettled([
    invoke("app_info"), invoke("bundled"), invoke("methods"), invoke("presets"),
  ]);
  const value = (r, fallback) => (r.status === "fulfilled" ? r.value : fallback);
  app.info = value(info, null);
  app.bundled = value(bundled, null);
  app.methods = value(methods, []);
  app.presets = value(presets, []);
  if (app.info) {
    document.getElementById("app-version").textContent = `v${app.info.version}`;
    document.title = app.info.name;
  }
}

async function main() {
  initBanner();
  for (const btn of document.querySelectorAll(".nav-item")) {
    btn.addEventListener("click", () => showView(btn.dataset.view));
  }
  on("nav", showView);
  on("run:current", (run) => {
    const el = document.getElementById("nav-run");
    el.textContent = run ? `Current run: ${basename(run.run_dir)}` : "";
    el.title = run?.run_dir ?? "";
  });
  if (!inApp()) showError(NOT_IN_APP);
  else await loadApp();
  initialConfig();
  initWizard();
  dashboard.initDashboard();
  triage.initTriage();
  runs.initRuns();
  exportView.initExport();
  chat.initChat();
  showView("wizard");
  document.body.dataset.ready = "true";
}

main();
