// Small DOM helpers: build elements without innerHTML (the CSP forbids inline
// styles and scripts, and engine text is always inserted as text).

const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "textContent", "htmlFor"]);

/**
 * h("button", {class: "btn", testid: "x", onclick: fn}, "text", child...)
 * `testid` sets data-testid; `on<event>` adds a listener; `dataset` merges
 * data-* attributes; null, undefined and false props and children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  append(el, children);
  return el;
}

/** Like h() for SVG elements (attributes only). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v != null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function applyProps(el, props) {
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
    else if (k === "testid") el.dataset.testid = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

/** Appends children (nested arrays flattened; strings and numbers as text). */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function nextId(prefix = "id") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: returns {wrap, input, error}. */
export function field(label, input, hint) {
  const id = input.id || nextId("f");
  input.id = id;
  const error = h("p", { class: "field-error", id: `${id}-err`, "aria-live": "polite" });
  input.setAttribute("aria-describedby", `${id}-err`);
  const wrap = h("div", { class: "field" },
    h("label", { htmlFor: id }, label),
    input,
    hint ? h("p", { class: "hint" }, hint) : null,
    error);
  return { wrap, input, error };
}

/** Deep copy of plain JSON data. */
export function clone(value) {
  return value == null ? value : JSON.parse(JSON.stringify(value));
}
