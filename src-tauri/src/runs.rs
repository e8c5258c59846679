//! Runs: start, control, resume, list, reopen, and the charts. Events of
//! the runs started here reach the web view coalesced on `run-events`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Manager, Runtime, State};
use tunesmith::config::RunConfig;
use tunesmith::report::{Chart, RunSeries};
use tunesmith::train::runs::RunSummary;
use tunesmith::train::{Control, RunHandle};
use tunesmith::{Session, TrainEvent};

use crate::error::{AppError, AppResult};
use crate::progress::Progress;
use crate::setup::{blocking, checked_config};
use crate::state::AppState;

/// The event name of coalesced run events.
pub const RUN_EVENTS: &str = "run-events";

/// How often, at most, a run's events are sent to the web view: a run
/// taking a hundred steps a second still costs the window four updates.
pub const COALESCE: Duration = Duration::from_millis(250);

/// One `run-events` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEvents {
    pub run_dir: PathBuf,
    pub events: Vec<TrainEvent>,
    pub progress: serde_json::Value,
}

/// What `start_run` and `resume_run` return.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    pub run_dir: PathBuf,
}

/// `start_run` → validates and starts `config`; events follow.
#[tauri::command(rename_all = "snake_case")]
pub async fn start_run<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    config: RunConfig,
) -> AppResult<Started> {
    let config = checked_config(&state, config)?;
    let handle = blocking(move || Ok(Session::start(config)?)).await?;
    Ok(watch(app, &state, handle))
}

/// `resume_run` → continues an interrupted run from its newest checkpoint;
/// with `learning_rate`, rolls back to it and retries at that rate (what
/// divergence advice suggests).
#[tauri::command(rename_all = "snake_case")]
pub async fn resume_run<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    run_dir: PathBuf,
    learning_rate: Option<f64>,
) -> AppResult<Started> {
    let dir = run_dir_of(&state, &run_dir)?;
    if state.running.lock().is_ok_and(|r| r.contains_key(&dir)) {
        return Err(AppError::new("this run is already running in this window"));
    }
    let handle = blocking(move || {
        Ok(match learning_rate {
            Some(lr) => Session::retry(&dir, lr)?,
            None => Session::resume(&dir)?,
        })
    })
    .await?;
    Ok(watch(app, &state, handle))
}

/// Registers the run's controls and forwards its events from a thread.
fn watch<R: Runtime>(app: AppHandle<R>, state: &AppState, handle: RunHandle) -> Started {
    let run_dir = handle.run_dir().to_path_buf();
    if let Ok(mut running) = state.running.lock() {
        running.insert(run_dir.clone(), handle.controller());
    }
    let _ = std::thread::Builder::new()
        .name("tunesmith-app-events".into())
        .spawn(move || forward(app, handle));
    Started { run_dir }
}

/// Sends the run's events in batches of at most one per [`COALESCE`],
/// the terminal event at once; forgets the run's controls when it ends.
fn forward<R: Runtime>(app: AppHandle<R>, handle: RunHandle) {
    let run_dir = handle.run_dir().to_path_buf();
    let mut progress = Progress::default();
    let mut batch = Vec::new();
    let mut last_sent = Instant::now() - COALESCE;
    loop {
        let mut ended = false;
        match handle.events().recv_timeout(COALESCE / 5) {
            Ok(event) => {
                progress.update(&event);
                ended = event.is_terminal();
                batch.push(event);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => ended = true,
        }
        if !batch.is_empty() && (ended || last_sent.elapsed() >= COALESCE) {
            let payload = RunEvents {
                run_dir: run_dir.clone(),
                events: std::mem::take(&mut batch),
                progress: serde_json::to_value(&progress).unwrap_or_default(),
            };
            let _ = app.emit(RUN_EVENTS, payload);
            last_sent = Instant::now();
        }
        if ended {
            break;
        }
    }
    if let Ok(mut running) = app.state::<AppState>().running.lock() {
        running.remove(&run_dir);
    }
    handle.join();
}

/// What `control_run` can ask.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Pause,
    Resume,
    Stop,
    Checkpoint,
}

/// `control_run` → pause, resume, stop or checkpoint a run of this window.
#[tauri::command(rename_all = "snake_case")]
pub fn control_run(state: State<'_, AppState>, run_dir: PathBuf, action: Action) -> AppResult<()> {
    let dir = run_dir_of(&state, &run_dir)?;
    let control = match action {
        Action::Pause => Control::Pause,
        Action::Resume => Control::Resume,
        Action::Stop => Control::Stop,
        Action::Checkpoint => Control::Checkpoint,
    };
    let sent = state
        .running
        .lock()
        .ok()
        .and_then(|r| r.get(&dir).map(|c| c.send(control)))
        .unwrap_or(false);
    if sent {
        Ok(())
    } else {
        Err(AppError::new(format!(
            "{} is not running in this window (it ended, or was started elsewhere)",
            dir.display()
        )))
    }
}

/// `list_runs` → every run in the runs folder, newest first.
#[tauri::command(rename_all = "snake_case")]
pub fn list_runs(state: State<'_, AppState>) -> Vec<RunSummary> {
    let mut runs = tunesmith::train::runs::list_runs(&state.runs_dir);
    runs.reverse();
    runs
}

/// `run_events` → a run's whole metrics.jsonl.
#[tauri::command(rename_all = "snake_case")]
pub fn run_events(state: State<'_, AppState>, run_dir: PathBuf) -> AppResult<Vec<TrainEvent>> {
    let dir = run_dir_of(&state, &run_dir)?;
    Ok(tunesmith::train::runs::read_events(&dir))
}

/// `run_progress` → where a run stands (state, step, elapsed), from its
/// metrics.jsonl: for a run opened from the history rather than started
/// in this window.
#[tauri::command(rename_all = "snake_case")]
pub fn run_progress(state: State<'_, AppState>, run_dir: PathBuf) -> AppResult<Progress> {
    let dir = run_dir_of(&state, &run_dir)?;
    let mut progress = Progress::default();
    for event in tunesmith::train::runs::read_events(&dir) {
        progress.update(&event);
    }
    if progress.state == "running" || progress.state == "paused" || progress.state == "starting" {
        let live = state.running.lock().is_ok_and(|r| r.contains_key(&dir));
        if !live {
            // Its process ended without a last word: a crash or a kill.
            progress.state = "interrupted";
            progress.eta_s = None;
        }
    }
    Ok(progress)
}

/// `run_chart` → one run's chart at the window's size.
#[tauri::command(rename_all = "snake_case")]
pub async fn run_chart(
    state: State<'_, AppState>,
    run_dir: PathBuf,
    width: u32,
    height: u32,
) -> AppResult<Chart> {
    let dir = run_dir_of(&state, &run_dir)?;
    blocking(move || {
        Ok(tunesmith::report::run_chart(
            &RunSeries::from_run_dir(&dir),
            width,
            height,
        )?)
    })
    .await
}

/// `overlay_chart` → several runs' loss and gradient-norm curves together.
#[tauri::command(rename_all = "snake_case")]
pub async fn overlay_chart(
    state: State<'_, AppState>,
    run_dirs: Vec<PathBuf>,
    width: u32,
    height: u32,
) -> AppResult<Chart> {
    if run_dirs.is_empty() {
        return Err(AppError::new("select at least one run to overlay"));
    }
    let dirs = run_dirs
        .iter()
        .map(|d| run_dir_of(&state, d))
        .collect::<AppResult<Vec<_>>>()?;
    blocking(move || {
        let series: Vec<RunSeries> = dirs.iter().map(|d| RunSeries::from_run_dir(d)).collect();
        Ok(tunesmith::report::overlay_chart(&series, width, height)?)
    })
    .await
}

/// `run_dir` when it is a run under the app's runs folder.
pub(crate) fn run_dir_of(state: &AppState, run_dir: &Path) -> AppResult<PathBuf> {
    let dir = state.check(run_dir)?;
    if !dir.starts_with(&state.runs_dir) || !dir.join("config.toml").is_file() {
        return Err(AppError::new(format!(
            "{} is not a run in {}",
            run_dir.display(),
            state.runs_dir.display()
        )));
    }
    Ok(dir)
}
