// The new-run wizard: five steps (dataset, model, method, training, review)
// over the one `wizard` state object. Each step renders from that state when
// shown, so Back keeps every choice; Next runs the step's validation and stays
// put, with the message on the step, until it passes.

import { wizard, on } from "./state.js";
import { h, replace } from "./dom.js";
import * as dataset from "./steps/dataset.js";
import * as model from "./steps/model.js";
import * as method from "./steps/method.js";
import * as training from "./steps/training.js";
import * as review from "./steps/review.js";

const STEPS = [
  { id: "dataset", title: "Dataset", mod: dataset },
  { id: "model", title: "Model", mod: model },
  { id: "method", title: "Method", mod: method },
  { id: "training", title: "Training", mod: training },
  { id: "review", title: "Review", mod: review },
];

const root = () => document.getElementById("view-wizard");
const container = (id) => root().querySelector(`[data-step=${id}]`);
const message = () => document.getElementById("step-message");

/** Shows step `i` (rendered afresh from the state). */
export function showStep(i) {
  wizard.step = Math.max(0, Math.min(STEPS.length - 1, i));
  for (const s of STEPS) container(s.id).hidden = s.id !== STEPS[wizard.step].id;
  setMessage(null);
  STEPS[wizard.step].mod.onShow?.();
  renderCurrent();
  const back = root().querySelector("[data-testid=wizard-back]");
  const next = root().querySelector("[data-testid=wizard-next]");
  back.disabled = wizard.step === 0;
  next.hidden = wizard.step === STEPS.length - 1;
  renderStepper();
  // A new step starts at its top: Next sits at the foot of a long step
  // (the method cards), and the scroll position would otherwise carry over
  // and open the next step at its foot, its first choices out of sight.
  root().closest(".main")?.scrollTo({ top: 0 });
}

function renderCurrent() {
  const s = STEPS[wizard.step];
  s.mod.render(container(s.id));
}

function renderStepper() {
  const ol = root().querySelector(".stepper");
  replace(ol, STEPS.map((s, i) =>
    h("li", {
      class: ["stepper-item", i < wizard.step && "done", i === wizard.step && "current"],
      "aria-current": i === wizard.step ? "step" : null,
    }, h("span", { class: "stepper-num" }, String(i + 1)), h("span", {}, s.title))));
}

function setMessage(text) {
  const el = message();
  el.textContent = text ?? "";
  el.classList.toggle("error", Boolean(text));
}

function next() {
  const s = STEPS[wizard.step];
  const error = s.mod.validate();
  if (error) {
    setMessage(error);
    return;
  }
  showStep(wizard.step + 1);
}

export function initWizard() {
  root().querySelector("[data-testid=wizard-back]").addEventListener("click", () => showStep(wizard.step - 1));
  root().querySelector("[data-testid=wizard-next]").addEventListener("click", next);
  // Async results (inspections, estimates) ask for a re-render of the current step.
  on("wizard:render", (stepIds) => {
    const s = STEPS[wizard.step];
    if (!stepIds || [].concat(stepIds).includes(s.id)) renderCurrent();
  });
  on("wizard:message", setMessage);
  showStep(wizard.step);
}
