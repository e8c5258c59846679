//! What a training thread reports. Each event is one JSON object with an
//! `event` field naming it (docs/events.md), both on the channel's consumers'
//! side (`tunesmith train --json`) and in the run's metrics.jsonl.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    /// The thread loaded everything and is about to take its first step.
    Started {
        run_dir: PathBuf,
        /// Optimizer step the run continues from (0 for a new run).
        start_step: usize,
        total_steps: usize,
        train_rows: usize,
        val_rows: usize,
        /// Rows cut to data.max_length.
        truncated_rows: usize,
        /// Rows skipped as bad (see the dataset report).
        bad_rows: usize,
        trainable_params: u64,
        total_params: u64,
        method: String,
        backend: String,
        /// How the frozen base is held (`f32`, `bf16`, `q4_0 linear layers,
        /// bf16 embeddings and head`...): what the adapter was trained
        /// against.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        base_storage: String,
        /// What `plan::estimate` predicts the run's peak memory to be.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_memory_bytes: Option<u64>,
        /// Things the user should know before trusting the run (a fallback
        /// chat template...).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// The next step also compiles and autotunes the backend's kernels
    /// (wgpu, CUDA): minutes on a machine's first run, then read from
    /// cubecl's cache. The next `step` event ends this phase.
    Preparing { step: usize, message: String },
    /// One optimizer step finished.
    Step {
        step: usize,
        total_steps: usize,
        epoch: f64,
        loss: f64,
        /// Global L2 norm of the trainable parameters' gradients, before clipping.
        grad_norm: f64,
        lr: f64,
        tokens_per_sec: f64,
        /// Real tokens processed so far.
        tokens: u64,
        elapsed_s: f64,
        /// The process's peak resident memory since the run started (see
        /// `memory`), where the platform reports it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peak_memory_bytes: Option<u64>,
        /// The method's own loss terms by name, unweighted (AdaLoRA's
        /// `orth_reg`); `loss` is the task's loss without them.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        terms: BTreeMap<String, f64>,
    },
    /// The method moved its rank budget (AdaLoRA): the rank each adapted
    /// module keeps after `step`, by HF module name, and their sum's budget.
    Ranks {
        step: usize,
        budget: usize,
        ranks: BTreeMap<String, usize>,
    },
    /// Validation loss after `step`.
    Eval {
        step: usize,
        val_loss: f64,
        /// True when this is the lowest validation loss so far.
        best: bool,
    },
    /// A checkpoint was written.
    Checkpoint {
        step: usize,
        path: PathBuf,
        /// `interval`, `best`, `requested`, `stopped` or `final`.
        reason: String,
    },
    /// Training is paused between steps.
    Paused { step: usize },
    /// Training continues after a pause.
    Resumed { step: usize },
    /// The run ended normally (`completed`) or on request (`stopped`).
    Finished {
        step: usize,
        reason: String,
        final_val_loss: Option<f64>,
        best_val_loss: Option<f64>,
        best_step: Option<usize>,
        elapsed_s: f64,
        /// The process's peak resident memory over the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peak_memory_bytes: Option<u64>,
    },
    /// The advisor spoke (docs/advisor.md); `stops` says the run ends here.
    Advice(crate::advisor::Advice),
    /// The run failed; what was checkpointed so far is kept.
    Failed { step: usize, message: String },
}

impl TrainEvent {
    /// True for the events that end a run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TrainEvent::Finished { .. } | TrainEvent::Failed { .. }
        )
    }
}
