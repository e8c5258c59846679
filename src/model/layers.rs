//! The small building blocks of a decoder, with HF weights transposed once
//! at load time so the forward pass is a plain `x · W`.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, module::linear};

use super::precision;
use crate::methods::Adapter;

/// A dense layer with weight stored as [in, out], optionally carrying the
/// trainable adapter of a fine-tuning method (LoRA...).
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub adapter: Option<Adapter>,
}

impl Linear {
    /// A plain layer without an adapter.
    pub fn new(weight: Param<Tensor<2>>, bias: Option<Param<Tensor<1>>>) -> Self {
        Self {
            weight,
            bias,
            adapter: None,
        }
    }

    /// `x · W (+ bias)` plus the adapter's update, with the adapter's
    /// dropout where gradients are tracked.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dropout = x.is_autodiff();
        self.forward_with(x, dropout)
    }

    /// As [`Linear::forward`], with the adapter's dropout on or off.
    pub fn forward_with<const D: usize>(&self, x: Tensor<D>, dropout: bool) -> Tensor<D> {
        let weight = self.weight.val();
        let bias = self.bias.as_ref().map(|b| b.val());
        let base = if weight.dtype() == x.dtype() {
            linear(x.clone(), weight, bias)
        } else if tunesmith_kernels::fused(&x) {
            // A 16-bit frozen weight on the CPU: widened for this product
            // and again in backward, never kept in f32.
            let y = tunesmith_kernels::frozen_matmul(x.clone(), weight);
            match bias {
                Some(b) => y + b.unsqueeze(),
                None => y,
            }
        } else {
            // Elsewhere the widened copy is what autodiff keeps for
            // backward; gradient checkpointing bounds it to one layer.
            linear(x.clone(), precision::widen(weight), bias)
        };
        match &self.adapter {
            Some(adapter) => adapter.forward(x, base, dropout),
            None => base,
        }
    }

    /// (in, out) features.
    pub fn dims(&self) -> (usize, usize) {
        let [i, o] = self.weight.dims();
        (i, o)
    }
}

/// Root-mean-square normalisation over the last dimension, as in Llama.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if tunesmith_kernels::fused(&x) {
            return tunesmith_kernels::rms_norm(x, self.weight.val(), self.eps);
        }
        let variance = x.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = x * (variance + self.eps).sqrt().recip();
        let dim = self.weight.dims()[0];
        let mut shape = [1usize; D];
        shape[D - 1] = dim;
        normed * self.weight.val().reshape(shape)
    }
}
