// Number fields of the wizard: parsing and range checks. The raw text stays in
// wizard.form (so an invalid entry survives Back/Next); the config gets the
// parsed value only when it is valid.

import { wizard, getPath, setPath } from "./state.js";

const FLOAT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INT = /^[+-]?\d+$/;

/**
 * Checks one field. spec: {path, label, kind: "int"|"float", min: "gt0"|"ge0"},
 * or with numeric bounds as the engine's method fields give them:
 * {min, minOpen, max, maxOpen} (max may be null). Returns {value} or {error}.
 */
export function parseField(spec, raw) {
  const text = String(raw ?? "").trim();
  if (text === "") return { error: `${spec.label} is required.` };
  const pattern = spec.kind === "int" ? INT : FLOAT;
  if (!pattern.test(text)) {
    return { error: `${spec.label} must be ${spec.kind === "int" ? "a whole number" : "a number"}.` };
  }
  const value = Number(text);
  if (!Number.isFinite(value)) return { error: `${spec.label} must be a finite number.` };
  if (spec.min === "gt0" && !(value > 0)) return { error: `${spec.label} must be greater than 0.` };
  if (spec.min === "ge0" && !(value >= 0)) return { error: `${spec.label} must be 0 or more.` };
  if (typeof spec.min === "number") {
    if (spec.minOpen && !(value > spec.min)) return { error: `${spec.label} must be greater than ${spec.min}.` };
    if (!spec.minOpen && !(value >= spec.min)) return { error: `${spec.label} must be ${spec.min} or more.` };
  }
  if (typeof spec.max === "number") {
    if (spec.maxOpen && !(value < spec.max)) return { error: `${spec.label} must be less than ${spec.max}.` };
    if (!spec.maxOpen && !(value <= spec.max)) return { error: `${spec.label} must be ${spec.max} or less.` };
  }
  return { value };
}

/** The text an input shows: what the user typed, else the config's value. */
export function rawValue(spec) {
  if (Object.hasOwn(wizard.form, spec.path)) return wizard.form[spec.path];
  const v = getPath(wizard.config, spec.path);
  return v == null ? "" : String(v);
}

/** Stores the typed text; writes the config when it parses. Returns the error or null. */
export function updateField(spec, raw) {
  wizard.form[spec.path] = raw;
  const r = parseField(spec, raw);
  if (!r.error) setPath(wizard.config, spec.path, r.value);
  return r.error ?? null;
}

/** First error among `specs` (current raw values), or null. */
export function firstError(specs) {
  for (const spec of specs) {
    const r = parseField(spec, rawValue(spec));
    if (r.error) return r.error;
  }
  return null;
}

/** Forgets typed text for these paths (e.g. after a preset filled them). */
export function resetFields(paths) {
  for (const p of paths) delete wizard.form[p];
}
