//! Tunesmith desktop app: a Tauri 2 shell over the `tunesmith` engine,
//! with its front end in `../ui` (plain HTML and ES modules, no bundler).
//! docs/app.md lists the commands and events between the two.
//!
//! Every command is a thin call into the engine; nothing about training
//! is computed here or in the web view.

mod chat;
mod error;
mod export;
mod progress;
mod runs;
mod setup;
mod state;
mod triage;

use serde::{Deserialize, Serialize};

pub use chat::{CHAT_TOKEN, ChatToken};
pub use error::AppError;
pub use progress::Progress;
pub use runs::{COALESCE, RUN_EVENTS, RunEvents};
pub use state::AppState;
pub use triage::{TRIAGE_EVENTS, TriageEvents};

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

/// Registers the app's state, plugins and commands on `builder`.
///
/// Generic over the runtime so that tests can pass
/// `tauri::test::mock_builder()`.
pub fn build_app<R: tauri::Runtime>(
    builder: tauri::Builder<R>,
    state: AppState,
) -> tauri::Builder<R> {
    builder
        .manage(state)
        .plugin(tauri_plugin_dialog::init())
        .invoke_handler(tauri::generate_handler![
            app_info,
            setup::bundled,
            setup::presets,
            setup::methods,
            setup::backends,
            setup::pick_path,
            setup::inspect_dataset,
            setup::inspect_model,
            setup::list_models,
            setup::estimate,
            setup::config_toml,
            runs::start_run,
            runs::resume_run,
            runs::control_run,
            runs::list_runs,
            runs::run_events,
            runs::run_progress,
            runs::run_chart,
            runs::overlay_chart,
            export::export_run,
            chat::chat,
            triage::start_triage,
        ])
}

/// Starts the app with the real (wry) runtime; returns when the app exits.
pub fn run() {
    build_app(tauri::Builder::default(), AppState::from_env())
        .run(tauri::generate_context!())
        .expect("error while running the Tunesmith app");
}
