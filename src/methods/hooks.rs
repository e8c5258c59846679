//! What a method adds to the training step beyond its layers' forward:
//! loss terms of its own (AdaLoRA's orthogonality regulariser), a transform
//! of the gradients before they are measured and clipped, and a hook after
//! the optimizer that knows the step and the planned total (AdaLoRA's rank
//! reallocation). The training loop asks [`Method::hooks`] for them once per
//! run, so a method without any pays nothing.
//!
//! [`Method::hooks`]: super::Method::hooks

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::MethodState;
use crate::model::CausalLm;

/// Which optimizer step a hook runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepAt {
    /// Steps finished before this one (0 for the first step): PEFT's
    /// `global_step` in `update_and_allocate(global_step)`.
    pub index: usize,
    /// The run's planned number of optimizer steps.
    pub total: usize,
}

/// One extra term of a step's loss.
pub struct LossTerm {
    /// Stable name, reported as its own series (`orth_reg`).
    pub name: &'static str,
    /// Its value before weighting, for the reports.
    pub value: f64,
    /// `weight · value` as a scalar on the tracked model, which the step
    /// differentiates once per optimizer step (not per micro-batch).
    pub weighted: Tensor<1>,
}

/// What a hook reports to the run's events.
#[derive(Debug, Clone, PartialEq)]
pub enum HookNote {
    /// AdaLoRA reallocated its rank budget: the rank kept in each adapted
    /// module (by HF module name) and the budget they share.
    Ranks {
        budget: usize,
        ranks: BTreeMap<String, usize>,
    },
}

/// A method's part in each training step. Every hook has a default that
/// does nothing.
pub trait TrainingHooks: Send {
    /// Extra loss terms on the tracked (autodiff) `model`.
    fn loss_terms(&self, _model: &CausalLm) -> Vec<LossTerm> {
        Vec::new()
    }

    /// Changes the step's gradients (by parameter name, flattened) before
    /// their norm is measured and they are clipped.
    fn transform_gradients(&mut self, _grads: &mut BTreeMap<String, Tensor<1>>) {}

    /// Whether [`TrainingHooks::after_step`] reads the gradients (so the
    /// step keeps the clipped gradients for it).
    fn wants_gradients(&self) -> bool {
        false
    }

    /// Runs after the optimizer updated `model`, with the clipped gradients
    /// the optimizer used (empty unless [`TrainingHooks::wants_gradients`]);
    /// returns the model, possibly changed, and what to report.
    fn after_step(
        &mut self,
        model: CausalLm,
        _grads: &BTreeMap<String, Tensor<1>>,
        _at: StepAt,
    ) -> (CausalLm, Vec<HookNote>) {
        (model, Vec::new())
    }

    /// What the hooks carry from step to step, saved with every checkpoint
    /// beside the method's prepared state and handed back on resume.
    fn state(&self) -> MethodState {
        MethodState::new()
    }
}

/// The hooks of a method that has none.
pub struct NoHooks;

impl TrainingHooks for NoHooks {}
