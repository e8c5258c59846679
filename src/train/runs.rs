//! The runs in a runs folder, summarised from their metrics.jsonl.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::checkpoint;
use super::events::TrainEvent;

/// One run directory at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub name: String,
    pub method: Option<String>,
    /// `running or interrupted`, `completed`, `stopped` or `failed`.
    pub status: String,
    pub step: usize,
    pub total_steps: usize,
    pub last_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    /// Newest checkpoint step, if any (where `resume` would continue).
    pub checkpoint_step: Option<usize>,
    /// The base model (from config.toml), when the config is readable.
    pub model_path: Option<PathBuf>,
}

/// Every run directory under `root`, oldest first.
pub fn list_runs(root: &Path) -> Vec<RunSummary> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.toml").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter().map(|d| summarize(&d)).collect()
}

/// Reads one run's metrics.jsonl (unreadable lines are skipped: the file
/// may end in a line torn by a crash).
pub fn read_events(run_dir: &Path) -> Vec<TrainEvent> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn summarize(dir: &Path) -> RunSummary {
    let mut s = RunSummary {
        dir: dir.to_path_buf(),
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        method: None,
        status: "running or interrupted".into(),
        step: 0,
        total_steps: 0,
        last_loss: None,
        best_val_loss: None,
        checkpoint_step: checkpoint::list(&dir.join("checkpoints"))
            .last()
            .map(|(s, _)| *s),
        model_path: super::prepare::run_config(dir).ok().map(|c| c.model.path),
    };
    for e in read_events(dir) {
        match e {
            TrainEvent::Started {
                method,
                total_steps,
                ..
            } => {
                s.method = Some(method);
                s.total_steps = total_steps;
                s.status = "running or interrupted".into();
            }
            TrainEvent::Step { step, loss, .. } => {
                s.step = step;
                s.last_loss = Some(loss);
            }
            TrainEvent::Eval { val_loss, .. } => {
                s.best_val_loss = Some(s.best_val_loss.map_or(val_loss, |b: f64| b.min(val_loss)));
            }
            TrainEvent::Finished { reason, .. } => s.status = reason,
            TrainEvent::Failed { .. } => s.status = "failed".into(),
            _ => {}
        }
    }
    s
}
