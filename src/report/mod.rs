//! Charts of runs, drawn by plotters as SVG: the app puts them into its
//! window, and every run leaves one as `report.svg` in its directory.
//!
//! [`RunSeries`] turns a run's events into the curves; [`run_chart`] draws
//! one run (loss and validation loss, gradient norm, learning rate,
//! tokens/s, the early window shaded, advice and the best checkpoint
//! marked); [`overlay_chart`] draws several runs over each other.

mod chart;
mod series;

use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

pub use chart::{overlay_chart, run_chart};
pub use series::RunSeries;

/// The file every run directory gets when its run ends.
pub const REPORT_FILE: &str = "report.svg";

/// Size of `report.svg`, in SVG pixels.
pub const REPORT_SIZE: (u32, u32) = (1200, 760);

/// An SVG chart plus the points the app overlays as interactive markers.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// A whole `<svg>` document.
    pub svg: String,
    /// Advice and the best checkpoint, in the SVG's pixel coordinates.
    pub markers: Vec<Marker>,
}

/// A point of interest on a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub x: i32,
    pub y: i32,
    pub step: usize,
    pub kind: MarkerKind,
    /// For advice: `info`, `warning` or `critical`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// What a hover or click shows.
    pub text: String,
}

/// What a [`Marker`] marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    Advice,
    Best,
}

/// A chart that could not be drawn or saved.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("could not draw the chart: {0}")]
    Draw(String),
    #[error("chart size {width}x{height} is too small; use at least 200x150")]
    TooSmall { width: u32, height: u32 },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Draws the run in `run_dir` from its metrics.jsonl and writes
/// `report.svg` there (atomically). Returns the file's path.
pub fn write_report(run_dir: &Path) -> Result<PathBuf, ReportError> {
    let series = RunSeries::from_run_dir(run_dir);
    let chart = run_chart(&series, REPORT_SIZE.0, REPORT_SIZE.1)?;
    let path = run_dir.join(REPORT_FILE);
    crate::fsutil::write_atomic(&path, chart.svg.as_bytes()).map_err(|source| {
        ReportError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests;
