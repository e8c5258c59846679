//! One optimizer step: forward and backward over the accumulated
//! micro-batches, global gradient norm, clipping, AdamW.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::loss::{Batch, train_nll_sum};
use super::optim::AdamW;
use super::{params, recompute};
use crate::methods::{HookNote, NoHooks, StepAt, TrainingHooks};
use crate::model::{CausalLm, Dropout};

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Mean loss over the step's trained tokens (the task's loss, without
    /// the method's terms).
    pub loss: f64,
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    /// Real tokens processed.
    pub tokens: usize,
    /// The method's extra loss terms by name, unweighted.
    pub terms: BTreeMap<String, f64>,
    /// What the method's hooks reported after the step.
    pub notes: Vec<HookNote>,
}

/// How one optimizer step runs, beyond its data and learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    /// Clip the global gradient norm to this; 0 = no clipping.
    pub max_grad_norm: f64,
    /// Recompute each decoder layer in backward instead of keeping its
    /// activations (see [`super::recompute`]).
    pub gradient_checkpointing: bool,
}

/// Runs one optimizer step over `batches` (the micro-batches of the step).
/// `seed_micro(i)` seeds the dropout masks of micro-batch i, so a step's
/// randomness does not depend on history; `None` draws them from the
/// backend's current stream (with checkpointing, a seed from the
/// micro-batch's index, since recomputed layers must draw their masks again).
pub fn optimizer_step(
    model: CausalLm,
    optim: &mut AdamW,
    batches: &[Batch],
    lr: f64,
    options: StepOptions,
    seed_micro: impl Fn(usize) -> Option<u64>,
) -> (CausalLm, StepStats) {
    let at = StepAt { index: 0, total: 1 };
    hooked_step(
        model,
        optim,
        batches,
        lr,
        options,
        seed_micro,
        &mut NoHooks,
        at,
    )
}

/// [`optimizer_step`] with a method's training hooks: its loss terms join
/// the gradients, its gradient transform runs before the norm is measured,
/// and its post-step hook sees the updated model and the clipped gradients.
#[allow(clippy::too_many_arguments)]
pub fn hooked_step(
    model: CausalLm,
    optim: &mut AdamW,
    batches: &[Batch],
    lr: f64,
    options: StepOptions,
    seed_micro: impl Fn(usize) -> Option<u64>,
    hooks: &mut dyn TrainingHooks,
    at: StepAt,
) -> (CausalLm, StepStats) {
    let max_grad_norm = options.max_grad_norm;
    let (mut grads, loss, tokens) = step_gradients(&model, batches, options, seed_micro);
    let terms = add_loss_terms(&model, &*hooks, &mut grads);
    hooks.transform_gradients(&mut grads);
    let grad_norm = global_norm(&grads);
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6),
    // capped at 1.
    let scale = if max_grad_norm > 0.0 {
        (max_grad_norm / (grad_norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    let keep = hooks.wants_gradients();
    let mut clipped = BTreeMap::new();
    let model = params::update_params(model, &mut grads, |name, p, g| {
        let g = if scale < 1.0 { g * scale } else { g };
        if keep {
            clipped.insert(name.to_string(), g.clone());
        }
        optim.update(name, p, g, lr)
    });
    optim.finish_step();
    let (model, notes) = hooks.after_step(model, &clipped, at);
    (
        model,
        StepStats {
            loss,
            grad_norm,
            tokens,
            terms,
            notes,
        },
    )
}

/// Differentiates the hooks' loss terms on `model` into `grads`; returns
/// their unweighted values by name.
fn add_loss_terms(
    model: &CausalLm,
    hooks: &dyn TrainingHooks,
    grads: &mut BTreeMap<String, Tensor<1>>,
) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    for term in hooks.loss_terms(model) {
        let g = term.weighted.backward();
        params::accumulate_grads(model, &g, grads);
        values.insert(term.name.to_string(), term.value);
    }
    values
}

/// Gradients of the step's loss (keyed by parameter name, flattened), the
/// loss and the real tokens of `batches`, before any clipping; see
/// [`optimizer_step`] for `seed_micro`.
pub fn step_gradients(
    model: &CausalLm,
    batches: &[Batch],
    options: StepOptions,
    seed_micro: impl Fn(usize) -> Option<u64>,
) -> (BTreeMap<String, Tensor<1>>, f64, usize) {
    // Normalise by the tokens of the whole step (as transformers does since
    // 4.46), so accumulation equals one big batch.
    let denom = batches
        .iter()
        .map(|b| b.trained_tokens)
        .sum::<usize>()
        .max(1) as f64;
    let mut grads: BTreeMap<String, Tensor<1>> = BTreeMap::new();
    let mut loss = 0f64;
    let mut tokens = 0usize;
    for (i, batch) in batches.iter().enumerate() {
        let dropout = match seed_micro(i) {
            Some(seed) => Dropout::Seeded(seed),
            None => Dropout::WhenTracked,
        };
        if options.gradient_checkpointing {
            // Seeded even when the caller did not ask: the recomputed layers
            // must draw the masks of the first pass.
            let dropout = match dropout {
                Dropout::WhenTracked => Dropout::Seeded(i as u64),
                seeded => seeded,
            };
            loss += recompute::backward(model, batch, denom, dropout, &mut grads);
        } else {
            let l = train_nll_sum(model, batch, dropout) / denom;
            let g = l.backward();
            params::accumulate_grads(model, &g, &mut grads);
            loss += l.into_scalar::<f32>() as f64;
        }
        tokens += batch.tokens;
    }
    (grads, loss, tokens)
}

/// Global L2 norm of all gradients, read back once.
pub fn global_norm(grads: &BTreeMap<String, Tensor<1>>) -> f64 {
    let mut total: Option<Tensor<1>> = None;
    for g in grads.values() {
        let sq = g.clone().powi_scalar(2).sum();
        total = Some(match total {
            Some(t) => t + sq,
            None => sq,
        });
    }
    total.map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt())
}
