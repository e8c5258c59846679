//! Triage from the wizard: the candidates run in a background thread, their
//! events reach the web view coalesced on `triage-events`, the last payload
//! with the report (or the error).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Manager, Runtime, State};
use tunesmith::config::RunConfig;
use tunesmith::triage::{GridAxis, TriageEvent, TriageOptions, TriageReport, triage_config};

use crate::error::{AppError, AppResult};
use crate::runs::COALESCE;
use crate::setup::checked_config;
use crate::state::AppState;

/// The event name of coalesced triage events.
pub const TRIAGE_EVENTS: &str = "triage-events";

/// One `triage-events` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriageEvents {
    pub dir: PathBuf,
    pub events: Vec<serde_json::Value>,
    /// The comparison, in the last payload of a triage that completed.
    pub done: Option<serde_json::Value>,
    /// Why the triage failed, in its last payload.
    pub error: Option<String>,
}

/// What `start_triage` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriageStarted {
    pub dir: PathBuf,
}

/// `start_triage` → starts the candidates of `grid` (e.g. `["lr=1e-3,3e-3"]`)
/// over `config` in the background; one triage at a time.
#[tauri::command(rename_all = "snake_case")]
pub fn start_triage<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    config: RunConfig,
    grid: Vec<String>,
    run_all: Option<bool>,
) -> AppResult<TriageStarted> {
    let config = checked_config(&state, config)?;
    let axes = grid
        .iter()
        .map(|g| g.parse::<GridAxis>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AppError::new(e.to_string()))?;
    // The grid is checked before anything starts, so its errors come back
    // from this call rather than as an event.
    tunesmith::triage::candidates(&config, &axes).map_err(|e| AppError::new(e.to_string()))?;
    if state.triage_running.swap(true, Ordering::SeqCst) {
        return Err(AppError::new(
            "a triage is already running in this window; wait for it to finish",
        ));
    }
    let options = TriageOptions {
        run_all_to_end: run_all.unwrap_or(false),
    };
    let (tx, rx) = std::sync::mpsc::channel::<Result<PathBuf, String>>();
    let thread = std::thread::Builder::new()
        .name("tunesmith-app-triage".into())
        .spawn(move || {
            let mut dir: Option<PathBuf> = None;
            let mut batch = Vec::new();
            let mut last_sent = Instant::now();
            let result = triage_config(&config, &axes, options, |event| {
                if let TriageEvent::CandidateStarted { run_dir, .. } = event
                    && dir.is_none()
                {
                    let parent = run_dir.parent().map(PathBuf::from).unwrap_or_default();
                    let _ = tx.send(Ok(parent.clone()));
                    dir = Some(parent);
                }
                batch.push(serde_json::to_value(event).unwrap_or_default());
                if last_sent.elapsed() >= COALESCE {
                    emit(&app, &dir, std::mem::take(&mut batch), None, None);
                    last_sent = Instant::now();
                }
            });
            let (done, error) = match result {
                Ok(report) => (Some(report_json(&report)), None),
                Err(e) => (None, Some(e.to_string())),
            };
            if dir.is_none() {
                // Failed before its first candidate started: the caller
                // gets the error as the command's answer.
                let _ = tx.send(Err(
                    error.unwrap_or_else(|| "the triage ran no candidate".into())
                ));
            } else {
                emit(&app, &dir, batch, done, error);
            }
            app.state::<AppState>()
                .triage_running
                .store(false, Ordering::SeqCst);
        });
    if let Err(e) = thread {
        state.triage_running.store(false, Ordering::SeqCst);
        return Err(AppError::new(format!(
            "could not start the triage thread: {e}"
        )));
    }
    let dir = rx
        .recv()
        .map_err(|_| AppError::new("the triage thread ended without an answer"))?
        .map_err(AppError::new)?;
    Ok(TriageStarted { dir })
}

fn report_json(report: &TriageReport) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or_default()
}

fn emit<R: Runtime>(
    app: &AppHandle<R>,
    dir: &Option<PathBuf>,
    events: Vec<serde_json::Value>,
    done: Option<serde_json::Value>,
    error: Option<String>,
) {
    if events.is_empty() && done.is_none() && error.is_none() {
        return;
    }
    let _ = app.emit(
        TRIAGE_EVENTS,
        TriageEvents {
            dir: dir.clone().unwrap_or_default(),
            events,
            done,
            error,
        },
    );
}
