//! Causal-LM cross-entropy over the tokens whose label is not ignored,
//! shifted as transformers shifts it (position t predicts label t+1).
//! Only the positions that are trained on go through the output head, so
//! masked prompts cost no [tokens x vocab] logits (large for 150k-token
//! vocabularies).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::IGNORE;
use crate::model::CausalLm;

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
}

impl Batch {
    /// Pads `rows` (ids, HF-style labels) on the right with `pad_id`.
    pub fn new(rows: &[(&[u32], &[i64])], pad_id: u32, device: &Device) -> Self {
        let b = rows.len();
        let len = rows
            .iter()
            .map(|(ids, _)| ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = vec![pad_id as i64; b * len];
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut tokens = 0;
        for (r, (row_ids, labels)) in rows.iter().enumerate() {
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
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, len]), device),
            positions: Tensor::from_data(TensorData::new(positions, [n]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
            trained_tokens: n,
            tokens,
        }
    }
}

/// Sum of the negative log-likelihoods of the trained positions of `batch`
/// under `model`, as a one-element tensor.
pub fn nll_sum(model: &CausalLm, batch: &Batch) -> Tensor<1> {
    let hidden = model.hidden_states(batch.ids.clone(), None);
    let [b, t, h] = hidden.dims();
    let n = batch.trained_tokens;
    if n == 0 {
        return (hidden.sum() * 0.0).reshape([1]);
    }
    let picked = hidden
        .reshape([b * t, h])
        .select(0, batch.positions.clone());
    let logp = log_softmax(model.head(picked), 1);
    logp.gather(1, batch.targets.clone().reshape([n, 1]))
        .sum()
        .neg()
}
