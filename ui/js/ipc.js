// The only door to Rust: `invoke` and `listen` over window.__TAURI__ (the app
// sets withGlobalTauri). A rejected command shows its message in the error
// banner unless the caller shows it inline ({quiet: true}); either way the
// promise rejects with an Error carrying the engine's message.

import { showError } from "./banner.js";

export const NOT_IN_APP = "Not running inside the Tunesmith app";

const tauri = () => window.__TAURI__;

/** True when the Tauri API is there. */
export function inApp() {
  return Boolean(tauri()?.core?.invoke && tauri()?.event?.listen);
}

/** The text of whatever a command rejected with (the engine sends strings). */
export function errorText(err) {
  if (typeof err === "string") return err;
  if (err instanceof Error) return err.message;
  if (err && typeof err.message === "string") return err.message;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/** invoke(cmd, args, {quiet}) → the command's result. */
export async function invoke(cmd, args = {}, { quiet = false } = {}) {
  if (!inApp()) {
    if (!quiet) showError(NOT_IN_APP);
    throw new Error(NOT_IN_APP);
  }
  try {
    return await tauri().core.invoke(cmd, args);
  } catch (err) {
    const message = errorText(err);
    if (!quiet) showError(`${cmd.replaceAll("_", " ")}: ${message}`);
    throw new Error(message);
  }
}

/** listen(event, fn(payload)) → a promise of the unlisten function. */
export function listen(event, fn) {
  if (!inApp()) return Promise.resolve(() => {});
  return tauri().event.listen(event, (e) => fn(e.payload));
}
