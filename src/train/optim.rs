//! AdamW exactly as `torch.optim.AdamW` computes it (decoupled weight decay,
//! bias-corrected moments, eps added after the square root), with state
//! only for parameters that receive gradients.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::params::HostTensor;
use crate::config::TrainSection;

/// Optimizer hyperparameters and per-parameter moments.
pub struct AdamW {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// Optimizer steps taken.
    pub steps: u64,
    m: BTreeMap<String, Tensor<1>>,
    v: BTreeMap<String, Tensor<1>>,
}

/// Biases and norm weights get no weight decay, as in transformers' Trainer.
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("norm"))
}

impl AdamW {
    /// A fresh optimizer for the `[train]` settings.
    pub fn new(train: &TrainSection) -> Self {
        Self {
            beta1: train.beta1,
            beta2: train.beta2,
            eps: train.eps,
            weight_decay: train.weight_decay,
            steps: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One update of `param` (flattened) with `grad` already clipped.
    pub fn update(&mut self, name: &str, param: Tensor<1>, grad: Tensor<1>, lr: f64) -> Tensor<1> {
        // `steps` is advanced by `finish_step` once all parameters are done.
        let t = (self.steps + 1) as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let param = if self.weight_decay > 0.0 && decays(name) {
            param * (1.0 - lr * self.weight_decay)
        } else {
            param
        };
        let m = match self.m.remove(name) {
            Some(m) => m * b1 + grad.clone() * (1.0 - b1),
            None => grad.clone() * (1.0 - b1),
        };
        let g2 = grad.clone() * grad;
        let v = match self.v.remove(name) {
            Some(v) => v * b2 + g2 * (1.0 - b2),
            None => g2 * (1.0 - b2),
        };
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let denom = v.clone().sqrt() / bc2.sqrt() + self.eps;
        let param = param - m.clone() / denom * (lr / bc1);
        self.m.insert(name.to_string(), m);
        self.v.insert(name.to_string(), v);
        param
    }

    /// Counts a completed optimizer step.
    pub fn finish_step(&mut self) {
        self.steps += 1;
    }

    /// Moments as host tensors, keyed `m.<param>` and `v.<param>`.
    pub fn state(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::new();
        for (prefix, map) in [("m", &self.m), ("v", &self.v)] {
            for (name, t) in map {
                out.insert(
                    format!("{prefix}.{name}"),
                    HostTensor::from_tensor(t.clone()),
                );
            }
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] onto `device`.
    pub fn load_state(
        &mut self,
        steps: u64,
        state: BTreeMap<String, HostTensor>,
        device: &burn::tensor::Device,
    ) {
        self.steps = steps;
        for (key, host) in state {
            let t = Tensor::<1>::from_data(
                burn::tensor::TensorData::new(host.data, [host.shape.iter().product::<usize>()]),
                device,
            );
            if let Some(name) = key.strip_prefix("m.") {
                self.m.insert(name.to_string(), t);
            } else if let Some(name) = key.strip_prefix("v.") {
                self.v.insert(name.to_string(), t);
            }
        }
    }
}
