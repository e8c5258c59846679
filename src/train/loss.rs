//! Causal-LM cross-entropy over the tokens whose label is not ignored,
//! shifted as transformers shifts it (position t predicts label t+1).
//! Only the positions that are trained on go through the output head, so
//! masked prompts cost no [tokens x vocab] logits (large for 150k-token
//! vocabularies); on the CPU the head and the loss are one fused op that
//! holds only a block of the trained positions' logits at a time.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::{Example, IGNORE};
use crate::model::{CausalLm, Dropout, Packing};

/// Padded token ids of one micro-batch and where its loss is taken.
pub struct Batch {
    /// [batch, len]
    pub ids: Tensor<2, Int>,
    /// Flat indices (row * len + t) of the positions whose next token is
    /// trained on.
    pub positions: Tensor<1, Int>,
    /// The token each of those positions must predict.
    pub targets: Tensor<1, Int>,
    /// Positions whose loss counts.
    pub trained_tokens: usize,
    /// Real (non-padding) tokens.
    pub tokens: usize,
    /// Present when a row holds packed examples.
    pub packing: Option<Packing>,
}

impl Batch {
    /// Pads `rows` (ids, HF-style labels) on the right with `pad_id`.
    pub fn new(rows: &[(&[u32], &[i64])], pad_id: u32, device: &Device) -> Self {
        let rows: Vec<(&[u32], &[i64], &[u32])> = rows
            .iter()
            .map(|&(ids, labels)| (ids, labels, &[][..]))
            .collect();
        Self::build(&rows, pad_id, device)
    }

    /// A batch of examples, packed ones included.
    pub fn from_examples(examples: &[&Example], pad_id: u32, device: &Device) -> Self {
        let rows: Vec<(&[u32], &[i64], &[u32])> = examples
            .iter()
            .map(|e| (e.ids.as_slice(), e.labels.as_slice(), e.segments.as_slice()))
            .collect();
        Self::build(&rows, pad_id, device)
    }

    fn build(rows: &[(&[u32], &[i64], &[u32])], pad_id: u32, device: &Device) -> Self {
        let b = rows.len();
        let len = rows
            .iter()
            .map(|(ids, _, _)| ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        // Right padding changes no number (causality keeps it out of every
        // real position, and it is never a target); it bounds the shapes
        // GPU backends compile.
        let len = crate::backend::padded_len(len, device);
        let mut ids = vec![pad_id as i64; b * len];
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut tokens = 0;
        for (r, (row_ids, labels, _)) in rows.iter().enumerate() {
            tokens += row_ids.len();
            for (t, &id) in row_ids.iter().enumerate() {
                ids[r * len + t] = id as i64;
            }
            for (t, &label) in labels.iter().enumerate().skip(1) {
                if label != IGNORE {
                    positions.push((r * len + t - 1) as i64);
                    targets.push(label);
                }
            }
        }
        let n = positions.len();
        let packed = rows.iter().any(|(_, _, segments)| segments.len() > 1);
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, len]), device),
            positions: Tensor::from_data(TensorData::new(positions, [n]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
            trained_tokens: n,
            tokens,
            packing: packed.then(|| layout(rows, len)),
        }
    }
}

/// Position within its example and example index of every token; padding
/// forms a segment of its own.
fn layout(rows: &[(&[u32], &[i64], &[u32])], len: usize) -> Packing {
    let mut positions = Vec::with_capacity(rows.len() * len);
    let mut segments = Vec::with_capacity(rows.len() * len);
    for (ids, _, lengths) in rows {
        let whole = [ids.len() as u32];
        let lengths = if lengths.is_empty() {
            &whole[..]
        } else {
            lengths
        };
        for (k, &l) in lengths.iter().enumerate() {
            positions.extend(0..l as usize);
            segments.extend(std::iter::repeat_n(k as u32, l as usize));
        }
        let pad = len - ids.len();
        positions.extend(0..pad);
        segments.extend(std::iter::repeat_n(u32::MAX, pad));
    }
    Packing {
        positions,
        segments,
    }
}

/// Sum of the negative log-likelihoods of the trained positions of `batch`
/// under `model`, as a one-element tensor (dropout where gradients are
/// tracked, from the backend's current random stream).
pub fn nll_sum(model: &CausalLm, batch: &Batch) -> Tensor<1> {
    let hidden = match &batch.packing {
        Some(packing) => model.hidden_states_packed(batch.ids.clone(), packing),
        None => model.hidden_states(batch.ids.clone(), None),
    };
    head_nll_sum(model, hidden, batch)
}

/// [`nll_sum`] of a training step, dropout drawn as `dropout` says.
pub fn train_nll_sum(model: &CausalLm, batch: &Batch, dropout: Dropout) -> Tensor<1> {
    let hidden = model.hidden_states_train(batch.ids.clone(), batch.packing.as_ref(), dropout);
    head_nll_sum(model, hidden, batch)
}

/// The loss of `batch` from the model's final hidden states [batch, len,
/// hidden] (after the last norm): the output head and the cross-entropy.
pub fn head_nll_sum(model: &CausalLm, hidden: Tensor<3>, batch: &Batch) -> Tensor<1> {
    let [b, t, h] = hidden.dims();
    let n = batch.trained_tokens;
    if n == 0 {
        return (hidden.sum() * 0.0).reshape([1]);
    }
    let picked = hidden
        .reshape([b * t, h])
        .select(0, batch.positions.clone());
    if tunesmith_kernels::fused(&picked) {
        // The head and the loss in one op: only a block of the
        // [positions, vocab] logits exists at a time.
        return tunesmith_kernels::head_nll(picked, model.head_weight(), batch.targets.clone())
            .sum();
    }
    let logits = model.head(picked);
    log_softmax(logits, 1)
        .gather(1, batch.targets.clone().reshape([n, 1]))
        .sum()
        .neg()
}
