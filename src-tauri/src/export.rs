//! The export panel's command.

use std::path::PathBuf;

use tauri::State;
use tunesmith::export::{
    CheckpointChoice, ExportFormat, ExportOptions, ExportReport, GgufDtype, ModelDtype,
};

use crate::error::{AppError, AppResult};
use crate::runs::run_dir_of;
use crate::setup::blocking;
use crate::state::AppState;

/// `export_run` → writes the run's result as `format` to `out` (picked in
/// the save dialog, or under the run folder). An existing `out` is
/// replaced: the save dialog already asked.
#[tauri::command(rename_all = "snake_case")]
pub async fn export_run(
    state: State<'_, AppState>,
    run_dir: PathBuf,
    format: String,
    out: PathBuf,
    checkpoint: Option<String>,
) -> AppResult<ExportReport> {
    let dir = run_dir_of(&state, &run_dir)?;
    let out = state.check(&out)?;
    let format: ExportFormat = format.parse().map_err(AppError::new)?;
    let checkpoint: CheckpointChoice = checkpoint
        .as_deref()
        .unwrap_or("best")
        .parse()
        .map_err(AppError::new)?;
    let options = ExportOptions {
        format,
        checkpoint,
        out,
        gguf_dtype: GgufDtype::F32,
        model_dtype: ModelDtype::F16,
        overwrite: true,
    };
    blocking(move || Ok(tunesmith::export::export(&dir, &options)?)).await
}
