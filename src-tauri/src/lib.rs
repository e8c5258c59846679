//! Tunesmith desktop app: a Tauri 2 shell whose frontend lives in `../ui`
//! (plain HTML and ES modules, no bundler).
//!
//! The engine (`tunesmith` crate) is not wired in yet; for now the app only
//! answers [`app_info`].

use serde::{Deserialize, Serialize};

/// Display name of the app.
pub const APP_NAME: &str = "Tunesmith";

/// What the frontend shows in its header: the app's name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: String,
    pub version: String,
}

impl AppInfo {
    /// The info of this build (version from this crate's `Cargo.toml`).
    pub fn current() -> Self {
        Self {
            name: APP_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// `invoke('app_info')` → `{ name, version }`.
#[tauri::command]
fn app_info() -> AppInfo {
    AppInfo::current()
}

/// Registers the app's commands (and, later, state and plugins) on `builder`.
///
/// Generic over the runtime so that tests can pass
/// `tauri::test::mock_builder()`.
pub fn build_app<R: tauri::Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![app_info])
}

/// Starts the app with the real (wry) runtime; returns when the app exits.
pub fn run() {
    build_app(tauri::Builder::default())
        .run(tauri::generate_context!())
        .expect("error while running the Tunesmith app");
}
