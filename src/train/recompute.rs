//! Gradient checkpointing by block recompute: the forward pass runs every
//! decoder layer untracked and keeps only each layer's input; backward then
//! re-runs one layer at a time with gradients tracked and pushes the
//! upstream gradient through it. At most one layer's activations exist at
//! once, for about one more forward pass of compute.
//!
//! burn's own `gradient_checkpointing()` recomputes cheap elementwise ops
//! but keeps every matmul output, which is most of a decoder's activation
//! memory; the block is the unit that pays.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::Tensor;

use super::loss::{Batch, head_nll_sum};
use super::params;
use crate::model::{CausalLm, Dropout};

/// Loss of one micro-batch (divided by `denom`) with its gradients added into
/// `grads`, recomputing each decoder layer in backward. Gives the numbers
/// [`super::loss::train_nll_sum`] followed by one backward gives, as long
/// as the dropout masks are `Dropout::Seeded` (a recomputed layer must draw
/// the masks of its first pass).
pub fn backward(
    model: &CausalLm,
    batch: &Batch,
    denom: f64,
    dropout: Dropout,
    grads: &mut BTreeMap<String, Tensor<1>>,
) -> f64 {
    let tracked_ctx = model.layer_context(&batch.ids, batch.packing.as_ref(), dropout);
    let plain_ctx = tracked_ctx.untracked();
    let plain = model.valid();

    // Forward, untracked: keep each layer's input.
    let mut inputs = Vec::with_capacity(model.layers.len());
    let mut x = plain.embed(batch.ids.clone().inner());
    for i in 0..model.layers.len() {
        inputs.push(x.clone());
        x = plain.layer(i, x, &plain_ctx);
    }
    drop(plain);

    // The head and the loss, tracked from the last layer's output.
    let last = Tensor::from_inner(x).require_grad();
    let loss = head_nll_sum(model, model.final_norm(last.clone()), batch) / denom;
    let value = loss.clone().into_scalar::<f32>() as f64;
    let g = loss.backward();
    params::accumulate_grads(model, &g, grads);
    let mut upstream = last.grad(&g);

    // Backward, one layer at a time from the top.
    for (i, input) in inputs.into_iter().enumerate().rev() {
        let Some(up) = upstream.take() else { break };
        let x = Tensor::from_inner(input).require_grad();
        let out = model.layer(i, x.clone(), &tracked_ctx);
        let g = (out * Tensor::from_inner(up)).sum().backward();
        params::accumulate_grads(model, &g, grads);
        upstream = x.grad(&g);
    }

    // The embeddings train under full fine-tuning.
    if let Some(up) = upstream
        && model.embed_tokens.is_require_grad()
    {
        let e = model.embed(batch.ids.clone());
        let g = (e * Tensor::from_inner(up)).sum().backward();
        params::accumulate_grads(model, &g, grads);
    }
    value
}
