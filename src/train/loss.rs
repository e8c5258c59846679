//! Causal-LM cross-entropy over the tokens whose label is not ignored,
//! shifted as transformers shifts it (position t predicts label t+1).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::IGNORE;

/// Padded token ids and labels of one micro-batch.
pub struct Batch {
    /// [batch, len]
    pub ids: Tensor<2, Int>,
    /// [batch, len - 1]: the label each position predicts (0 where ignored).
    pub targets: Tensor<2, Int>,
    /// [batch, len - 1]: 1 where the loss is taken, else 0.
    pub weights: Tensor<2>,
    /// Positions whose loss counts.
    pub trained_tokens: usize,
    /// Real (non-padding) tokens.
    pub tokens: usize,
}

impl Batch {
    /// Pads `rows` (ids, labels) on the right with `pad_id`.
    pub fn new(rows: &[(&[u32], &[i64])], pad_id: u32, device: &Device) -> Self {
        let b = rows.len();
        let len = rows
            .iter()
            .map(|(ids, _)| ids.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let mut ids = vec![pad_id as i64; b * len];
        let mut targets = vec![0i64; b * (len - 1)];
        let mut weights = vec![0f32; b * (len - 1)];
        let mut trained = 0;
        let mut tokens = 0;
        for (r, (row_ids, labels)) in rows.iter().enumerate() {
            tokens += row_ids.len();
            for (t, &id) in row_ids.iter().enumerate() {
                ids[r * len + t] = id as i64;
            }
            for t in 1..labels.len() {
                if labels[t] != IGNORE {
                    targets[r * (len - 1) + t - 1] = labels[t];
                    weights[r * (len - 1) + t - 1] = 1.0;
                    trained += 1;
                }
            }
        }
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, len]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, len - 1]), device),
            weights: Tensor::from_data(TensorData::new(weights, [b, len - 1]), device),
            trained_tokens: trained,
            tokens,
        }
    }
}

/// Sum of the negative log-likelihoods of the trained positions, as a
/// one-element tensor. `logits` is [batch, len, vocab].
pub fn nll_sum(logits: Tensor<3>, batch: &Batch) -> Tensor<1> {
    let [b, len, _] = logits.dims();
    let logits = logits.narrow(1, 0, len - 1);
    let logp = log_softmax(logits, 2);
    let picked = logp
        .gather(2, batch.targets.clone().reshape([b, len - 1, 1]))
        .reshape([b, len - 1]);
    (picked * batch.weights.clone()).sum().neg()
}
