// Chat: one prompt, two `chat` calls side by side: the base model (no run_dir)
// and the base model plus a run's best checkpoint. Their text streams in on
// `chat-token` events, routed by the call's id; each side shows done or its
// error.

import { app } from "./state.js";
import { h, field, replace } from "./dom.js";
import { invoke, listen } from "./ipc.js";
import { basename } from "./format.js";

const view = { runs: [], runDir: null, modelPath: null, prompt: "", maxTokens: "64", sending: false, error: null };
const panes = {
  base: { id: null, text: "", status: "idle", error: null },
  tuned: { id: null, text: "", status: "idle", error: null },
};
let counter = 0;
const root = () => document.getElementById("chat-root");

async function load() {
  try {
    view.runs = await invoke("list_runs", {}, { quiet: true });
    view.error = null;
  } catch (err) {
    view.error = err.message;
  }
  const dirs = view.runs.map((r) => r.dir);
  if (!view.runDir || !dirs.includes(view.runDir)) {
    const current = app.currentRun?.run_dir;
    view.runDir = dirs.includes(current) ? current : dirs[0] ?? null;
  }
  if (!view.modelPath) view.modelPath = app.currentRun?.model_path ?? app.bundled?.model?.path ?? null;
  render();
}

function onToken({ id, text }) {
  for (const [side, p] of Object.entries(panes)) {
    if (p.id === id && p.status === "streaming") {
      p.text += text;
      const out = root().querySelector(`[data-testid=chat-${side}] .chat-text`);
      if (out) out.textContent = p.text;
    }
  }
}

async function ask(side, args) {
  try {
    const { text } = await invoke("chat", args, { quiet: true });
    const p = panes[side];
    if (p.id !== args.id) return;
    p.text = text;
    p.status = "done";
  } catch (err) {
    const p = panes[side];
    if (p.id !== args.id) return;
    p.status = "error";
    p.error = err.message;
  }
  renderPane(side);
}

async function send() {
  const max = Number(view.maxTokens);
  if (!view.prompt.trim()) {
    view.error = "Type a prompt first.";
    render();
    return;
  }
  if (!Number.isInteger(max) || max <= 0) {
    view.error = "Max new tokens must be a whole number greater than 0.";
    render();
    return;
  }
  if (!view.modelPath) {
    view.error = "Choose a model.";
    render();
    return;
  }
  view.error = null;
  counter += 1;
  const common = { model_path: view.modelPath, prompt: view.prompt, max_new_tokens: max };
  panes.base = { id: `base-${counter}`, text: "", status: "streaming", error: null };
  panes.tuned = view.runDir
    ? { id: `tuned-${counter}`, text: "", status: "streaming", error: null }
    : { id: null, text: "", status: "error", error: "Choose a run to compare with." };
  view.sending = true;
  render();
  const calls = [ask("base", { id: panes.base.id, ...common })];
  if (view.runDir) calls.push(ask("tuned", { id: panes.tuned.id, ...common, run_dir: view.runDir }));
  await Promise.all(calls);
  view.sending = false;
  render();
}

async function chooseModel() {
  try {
    const path = await invoke("pick_path", { kind: "model" }, { quiet: true });
    if (path) view.modelPath = path;
  } catch (err) {
    view.error = err.message;
  }
  render();
}

function render() {
  const el = root();
  const runSelect = h("select", {
    testid: "chat-run-select",
    onchange: (e) => { view.runDir = e.target.value || null; },
  }, view.runs.length ? view.runs.map((r) => h("option", { value: r.dir, selected: r.dir === view.runDir }, `${r.name} — ${r.status}`))
    : h("option", { value: "" }, "no runs yet"));
  const prompt = h("textarea", {
    testid: "chat-prompt", rows: "3", placeholder: "Ask both models the same thing…",
    oninput: (e) => { view.prompt = e.target.value; },
    onkeydown: (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(); },
  });
  prompt.value = view.prompt;
  const maxInput = h("input", { type: "text", inputmode: "numeric", value: view.maxTokens, oninput: (e) => { view.maxTokens = e.target.value; } });
  replace(el,
    h("div", { class: "panel form-panel" },
      h("div", { class: "field-row" },
        h("div", { class: "field" },
          h("span", { class: "label" }, "Base model"),
          h("div", { class: "input-row" },
            h("span", { class: "path", title: view.modelPath ?? "" }, view.modelPath ? basename(view.modelPath) : "none"),
            h("button", { type: "button", class: "btn btn-small", onclick: chooseModel }, "Choose…"))),
        field("Fine-tuned run", runSelect).wrap,
        field("Max new tokens", maxInput).wrap),
      field("Prompt", prompt).wrap,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "btn btn-primary", testid: "chat-send", disabled: view.sending, onclick: send }, view.sending ? "Generating…" : "Send"),
        h("span", { class: "hint" }, "Ctrl+Enter sends")),
      view.error ? h("p", { class: "inline-error", role: "alert", testid: "chat-error" }, view.error) : null),
    h("div", { class: "chat-panes" },
      pane("base", "Base model"),
      pane("tuned", view.runDir ? `Fine-tuned: ${basename(view.runDir)}` : "Fine-tuned")));
  renderPane("base");
  renderPane("tuned");
}

function pane(side, title) {
  return h("section", { class: "chat-pane", testid: `chat-${side}`, "aria-label": title },
    h("h2", {}, title),
    h("pre", { class: "chat-text", "aria-live": "polite" }),
    h("p", { class: "chat-status", role: "status" }));
}

function renderPane(side) {
  const el = root().querySelector(`[data-testid=chat-${side}]`);
  if (!el) return;
  const p = panes[side];
  el.dataset.status = p.status;
  el.querySelector(".chat-text").textContent = p.text;
  const status = el.querySelector(".chat-status");
  status.textContent = p.status === "streaming" ? "Generating…" : p.status === "done" ? (p.text.trim() ? "Done" : "Done (the answer was only whitespace)") : p.status === "error" ? p.error : "";
  status.classList.toggle("inline-error", p.status === "error");
}

export function onShow() {
  load();
}

export function initChat() {
  listen("chat-token", onToken);
  render();
}
