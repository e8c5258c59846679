//! The dashboard's progress line, kept in Rust from the run's events:
//! state, step, elapsed time, ETA and speed.

use serde::Serialize;
use tunesmith::TrainEvent;

/// Where a run is, as the `progress` of a `run-events` payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// `starting`, `running`, `paused`, `finished` or `failed`; a run
    /// opened from the history that ended without a last event is
    /// `interrupted`.
    pub state: &'static str,
    pub step: usize,
    pub total_steps: usize,
    pub elapsed_s: f64,
    /// Seconds left at the speed of the steps taken in this session
    /// (`None` until one step ran, and once the run ended).
    pub eta_s: Option<f64>,
    pub tokens_per_sec: f64,
    #[serde(skip)]
    start_step: usize,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            state: "starting",
            step: 0,
            total_steps: 0,
            elapsed_s: 0.0,
            eta_s: None,
            tokens_per_sec: 0.0,
            start_step: 0,
        }
    }
}

impl Progress {
    /// Takes one event into account.
    pub fn update(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                start_step,
                total_steps,
                ..
            } => {
                self.start_step = *start_step;
                self.step = *start_step;
                self.total_steps = *total_steps;
            }
            TrainEvent::Step {
                step,
                total_steps,
                tokens_per_sec,
                elapsed_s,
                ..
            } => {
                if self.state != "paused" {
                    self.state = "running";
                }
                self.step = *step;
                self.total_steps = *total_steps;
                self.tokens_per_sec = *tokens_per_sec;
                self.elapsed_s = *elapsed_s;
                let done = step.saturating_sub(self.start_step);
                self.eta_s = (done > 0)
                    .then(|| elapsed_s / done as f64 * total_steps.saturating_sub(*step) as f64);
            }
            TrainEvent::Paused { .. } => self.state = "paused",
            TrainEvent::Resumed { .. } => self.state = "running",
            TrainEvent::Finished { elapsed_s, .. } => {
                self.state = "finished";
                self.elapsed_s = *elapsed_s;
                self.eta_s = None;
            }
            TrainEvent::Failed { .. } => {
                self.state = "failed";
                self.eta_s = None;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: usize, elapsed_s: f64) -> TrainEvent {
        TrainEvent::Step {
            step,
            total_steps: 100,
            epoch: 0.0,
            loss: 1.0,
            grad_norm: 1.0,
            lr: 1e-3,
            tokens_per_sec: 500.0,
            tokens: 0,
            elapsed_s,
            peak_memory_bytes: None,
            terms: Default::default(),
        }
    }

    #[test]
    fn eta_counts_only_this_sessions_steps() {
        let mut p = Progress::default();
        assert_eq!(p.state, "starting");
        p.update(&TrainEvent::Started {
            run_dir: "r".into(),
            start_step: 40,
            total_steps: 100,
            train_rows: 1,
            val_rows: 1,
            truncated_rows: 0,
            bad_rows: 0,
            trainable_params: 1,
            total_params: 1,
            method: "lora".into(),
            backend: "cpu".into(),
            base_storage: String::new(),
            estimated_memory_bytes: None,
            warnings: vec![],
        });
        // A resumed run: 10 steps in 5 s since step 40, 50 steps to go.
        p.update(&step(50, 5.0));
        assert_eq!(p.state, "running");
        assert_eq!(p.eta_s, Some(25.0));
        p.update(&TrainEvent::Paused { step: 50 });
        p.update(&step(50, 5.0));
        assert_eq!(p.state, "paused");
        p.update(&TrainEvent::Resumed { step: 50 });
        assert_eq!(p.state, "running");
        p.update(&TrainEvent::Failed {
            step: 50,
            message: "x".into(),
        });
        assert_eq!((p.state, p.eta_s), ("failed", None));
    }
}
