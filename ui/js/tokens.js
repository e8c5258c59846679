// The dataset's token view (needs a model): length histogram as an SVG built
// with DOM calls, token totals, and three examples rendered as the model sees
// them with the trained (masked-in) spans shaded. All numbers are the engine's.

import { h, svg } from "./dom.js";
import { count } from "./format.js";

/** Renders a DataReport's `tokens` section. */
export function tokenView(tokens) {
  return h("div", { class: "token-view" },
    h("div", { class: "stat-row" },
      stat("Tokens", count(tokens.total_tokens)),
      stat("Trained tokens", count(tokens.trained_tokens)),
      stat("Truncated rows", `${tokens.truncated} (max ${tokens.max_length})`)),
    h("h3", {}, "Token lengths"),
    histogram(tokens.histogram ?? []),
    h("h3", {}, "Examples as the model sees them"),
    h("p", { class: "hint" }, h("mark", { class: "trained" }, "Shaded"), " text is trained on (the loss covers it)."),
    (tokens.examples ?? []).map(example));
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value));
}

/** Bars of [{from, to, count}] with count labels and bin edges. */
export function histogram(bins) {
  const W = 560;
  const H = 150;
  const pad = { l: 8, r: 8, t: 16, b: 22 };
  const max = Math.max(1, ...bins.map((b) => b.count));
  const bw = bins.length ? (W - pad.l - pad.r) / bins.length : 0;
  const plotH = H - pad.t - pad.b;
  const g = bins.map((b, i) => {
    const bh = (b.count / max) * plotH;
    const x = pad.l + i * bw;
    return svg("g", {},
      svg("rect", { class: "hist-bar", x: x + 2, y: pad.t + plotH - bh, width: Math.max(1, bw - 4), height: Math.max(bh, b.count ? 1 : 0) },
        svg("title", {}, `${b.from}–${b.to} tokens: ${b.count} rows`)),
      b.count ? svg("text", { class: "hist-count", x: x + bw / 2, y: pad.t + plotH - bh - 4, "text-anchor": "middle" }, String(b.count)) : null,
      svg("text", { class: "hist-label", x: x + 2, y: H - 6 }, String(b.from)));
  });
  return h("figure", { class: "histogram" },
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Histogram of example lengths in tokens" },
      svg("line", { class: "hist-axis", x1: pad.l, x2: W - pad.r, y1: pad.t + plotH, y2: pad.t + plotH }), g),
    h("figcaption", { class: "hint" }, "Rows per length bin (tokens)"));
}

function example(ex) {
  return h("div", { class: "example" },
    h("div", { class: "example-head" }, `Line ${ex.line} · ${ex.tokens} tokens`),
    h("pre", { class: "example-text" },
      (ex.spans ?? []).map((s) => (s.trained ? h("mark", { class: "trained" }, s.text) : h("span", {}, s.text)))));
}
