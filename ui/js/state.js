// Shared state: what the app loaded at start, the wizard's one state object
// (every step renders from it, so going Back keeps everything), the run this
// window started or resumed, and a tiny publish/subscribe bus.

export const app = {
  info: null,
  bundled: null,
  methods: [],
  presets: [],
  backends: [],
  /** The run started or resumed in this window: {run_dir, model_path}. */
  currentRun: null,
};

export const wizard = {
  step: 0,
  /** RunConfig being edited (JSON with the TOML's sections). */
  config: null,
  dataset: { path: null, label: null, format: "auto", report: null, error: null, loading: false },
  model: { path: null, label: null, summary: null, error: null },
  methodId: null,
  presetName: null,
  /** Raw text of the number inputs, keyed by config path ("train.epochs"). */
  form: {},
  estimate: { result: null, error: null, pending: false },
  toml: { text: null, error: null },
  /** Triage over learning rates: on, and the typed list (null = the default around the learning rate). */
  triage: { on: false, lrs: null },
  starting: false,
};

const subscribers = new Map();

/** Subscribe to a topic; returns the unsubscribe function. */
export function on(topic, fn) {
  if (!subscribers.has(topic)) subscribers.set(topic, new Set());
  subscribers.get(topic).add(fn);
  return () => subscribers.get(topic).delete(fn);
}

export function emit(topic, data) {
  for (const fn of subscribers.get(topic) ?? []) fn(data);
}

/** Reads a dotted path ("train.epochs") of an object. */
export function getPath(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

/** Writes a dotted path, creating sections as needed. */
export function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (o[k] == null || typeof o[k] !== "object") o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
}
