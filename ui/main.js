// Entry point of the Tunesmith UI (plain ES module, no bundler).
// `window.__TAURI__` is there because tauri.conf.json sets app.withGlobalTauri.

const versionEl = document.getElementById("version");

async function showAppInfo() {
  const tauri = window.__TAURI__;
  if (!tauri?.core?.invoke) {
    versionEl.textContent = "Not running inside the Tunesmith app";
    versionEl.classList.add("error");
    return;
  }
  try {
    /** @type {{ name: string, version: string }} */
    const info = await tauri.core.invoke("app_info");
    versionEl.textContent = `Version ${info.version}`;
    document.title = info.name;
  } catch (err) {
    versionEl.textContent = `Could not read the app version: ${err}`;
    versionEl.classList.add("error");
  }
}

showAppInfo();
