//! The curves of one run, taken from its events.

use std::collections::BTreeMap;
use std::path::Path;

use crate::advisor::Advice;
use crate::train::TrainEvent;

/// One optimizer step's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub tokens_per_sec: f64,
}

/// Everything a chart of one run shows.
#[derive(Debug, Clone, Default)]
pub struct RunSeries {
    /// A name for legends (the run directory's name).
    pub name: String,
    /// Steps in order; a step logged twice (a resumed run repeats the steps
    /// after its checkpoint) keeps its last values.
    pub steps: Vec<StepPoint>,
    /// (step, validation loss), in order, last value per step.
    pub evals: Vec<(usize, f64)>,
    pub advice: Vec<Advice>,
    /// Planned optimizer steps.
    pub total_steps: usize,
    /// Steps covered by the advisor's early window (0 when unknown).
    pub early_steps: usize,
}

impl RunSeries {
    /// Curves from an event stream (metrics.jsonl or live events).
    /// `early_window` is the share of planned steps the advisor summarises
    /// (`early_stopping.early_window`).
    pub fn from_events(name: &str, events: &[TrainEvent], early_window: f64) -> Self {
        let mut steps = BTreeMap::new();
        let mut evals = BTreeMap::new();
        let mut advice = Vec::new();
        let mut total_steps = 0;
        for event in events {
            match event {
                TrainEvent::Started { total_steps: t, .. } => total_steps = *t,
                TrainEvent::Step {
                    step,
                    total_steps: t,
                    loss,
                    grad_norm,
                    lr,
                    tokens_per_sec,
                    ..
                } => {
                    total_steps = *t;
                    steps.insert(
                        *step,
                        StepPoint {
                            step: *step,
                            loss: *loss,
                            grad_norm: *grad_norm,
                            lr: *lr,
                            tokens_per_sec: *tokens_per_sec,
                        },
                    );
                }
                TrainEvent::Eval { step, val_loss, .. } => {
                    evals.insert(*step, *val_loss);
                }
                TrainEvent::Advice(a) => advice.push(a.clone()),
                _ => {}
            }
        }
        let early_steps = if total_steps == 0 || early_window <= 0.0 {
            0
        } else {
            ((total_steps as f64) * early_window).ceil().max(1.0) as usize
        };
        Self {
            name: name.to_string(),
            steps: steps.into_values().collect(),
            evals: evals.into_iter().collect(),
            advice,
            total_steps,
            early_steps,
        }
    }

    /// Reads a run directory's metrics.jsonl and config.toml (for the early
    /// window; the default share when the config cannot be read).
    pub fn from_run_dir(run_dir: &Path) -> Self {
        let events = crate::train::runs::read_events(run_dir);
        let early_window = crate::train::prepare::run_config(run_dir)
            .map(|c| c.early_stopping.early_window)
            .unwrap_or_else(|_| crate::advisor::AdvisorConfig::default().early_window);
        let name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_events(&name, &events, early_window)
    }

    /// The lowest finite validation loss and its step.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.evals
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .fold(None, |best, (s, v)| match best {
                Some((_, b)) if b <= v => best,
                _ => Some((s, v)),
            })
    }

    /// The last step reached (or planned, when nothing ran yet), for the
    /// x axis.
    pub fn last_step(&self) -> usize {
        let seen = self
            .steps
            .last()
            .map(|p| p.step)
            .max(self.evals.last().map(|e| e.0))
            .unwrap_or(0);
        seen.max(1)
    }
}
