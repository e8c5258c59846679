// Charts rendered by Rust: puts a Chart's `svg` into a container (parsed as
// SVG, scripts and event attributes dropped) and overlays its `markers` as
// small buttons at their pixel positions; a marker's text shows on hover
// (title) and in a popover on click. Also the refresh throttle: at most one
// request per `minInterval` ms and never two in flight.

import { h, replace } from "./dom.js";

/** Parses an SVG document string into an element of this document. */
function parseSvg(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const root = doc.documentElement;
  if (!root || root.nodeName.toLowerCase() !== "svg" || doc.querySelector("parsererror")) {
    throw new Error("the chart is not a valid SVG document");
  }
  for (const s of root.querySelectorAll("script, foreignObject")) s.remove();
  for (const el of [root, ...root.querySelectorAll("*")]) {
    for (const a of [...el.attributes]) {
      if (/^on/i.test(a.name)) el.removeAttribute(a.name);
    }
  }
  return document.importNode(root, true);
}

/**
 * Shows `chart` ({svg, markers}) drawn at width x height inside `container`.
 * Returns the canvas element.
 */
export function showChart(container, chart, width, height) {
  const canvas = h("div", { class: "chart-canvas" });
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.append(parseSvg(chart.svg));
  const popover = h("div", { class: "marker-popover", role: "dialog", hidden: true });
  for (const m of chart.markers ?? []) canvas.append(marker(m, popover, canvas));
  canvas.append(popover);
  container.replaceChildren(canvas);
  return canvas;
}

function marker(m, popover, canvas) {
  const label = `${m.kind === "best" ? "Best checkpoint" : "Advice"} at step ${m.step}: ${m.text}`;
  const el = h("button", {
    type: "button",
    class: ["chart-marker", `marker-${m.kind}`, `sev-${m.severity ?? "info"}`],
    testid: "chart-marker",
    title: m.text,
    "aria-label": label,
    dataset: { step: String(m.step), kind: m.kind, severity: m.severity ?? "" },
    onclick: (e) => {
      e.stopPropagation();
      const same = !popover.hidden && popover.dataset.step === String(m.step) && popover.dataset.kind === m.kind;
      if (same) {
        popover.hidden = true;
        return;
      }
      replace(popover,
        h("div", { class: "popover-head" }, m.kind === "best" ? "Best checkpoint" : `${m.severity ?? "info"} · step ${m.step}`),
        h("p", {}, m.text),
        h("button", { type: "button", class: "btn btn-small", onclick: () => { popover.hidden = true; } }, "Close"));
      popover.dataset.step = String(m.step);
      popover.dataset.kind = m.kind;
      popover.hidden = false;
      const left = Math.min(m.x + 10, canvas.clientWidth - 260);
      popover.style.left = `${Math.max(0, left)}px`;
      popover.style.top = `${Math.max(0, m.y + 12)}px`;
    },
  });
  el.style.left = `${m.x}px`;
  el.style.top = `${m.y}px`;
  return el;
}

document.addEventListener("click", () => {
  for (const p of document.querySelectorAll(".marker-popover")) p.hidden = true;
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") for (const p of document.querySelectorAll(".marker-popover")) p.hidden = true;
});

/** The size to ask Rust for: the container's width, a fixed aspect. */
export function chartSize(container, fallbackWidth = 640) {
  const width = Math.max(320, Math.floor(container.clientWidth || fallbackWidth));
  const height = Math.max(240, Math.min(520, Math.round(width * 0.62)));
  return { width, height };
}

/**
 * Throttle for chart requests: request() asks for a refresh; `fetch` runs at
 * most once per `minInterval` ms, never twice at the same time, and once more
 * after a run if requests came in meanwhile.
 */
export class Throttle {
  constructor(fetch, minInterval = 500) {
    this.fetch = fetch;
    this.minInterval = minInterval;
    this.pending = false;
    this.inFlight = false;
    this.timer = null;
    this.last = -Infinity;
  }

  request() {
    this.pending = true;
    this.pump();
  }

  pump() {
    if (this.inFlight || this.timer || !this.pending) return;
    const wait = this.last + this.minInterval - performance.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, Math.ceil(wait) + 2);
      return;
    }
    this.pending = false;
    this.inFlight = true;
    this.last = performance.now();
    Promise.resolve()
      .then(() => this.fetch())
      .catch(() => {})
      .finally(() => {
        this.inFlight = false;
        this.pump();
      });
  }

  cancel() {
    clearTimeout(this.timer);
    this.timer = null;
    this.pending = false;
  }
}
