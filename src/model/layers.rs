//! The small building blocks of a decoder, with HF weights transposed once
//! at load time so the forward pass is a plain `x · W`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, module::linear};

use super::precision;
use super::quant::QuantizedWeight;
use crate::methods::Adapter;

/// A linear layer with its frozen weight stored dense as [in, out] or
/// block-quantized as [out, in] (exactly one of the two), optionally
/// carrying the trainable adapter of a fine-tuning method (LoRA...).
#[derive(Module, Debug)]
pub struct Linear {
    /// The dense weight [in, out] (module path `.weight`, which full
    /// fine-tuning's checkpoints are keyed by).
    weight: Option<Param<Tensor<2>>>,
    quantized: Option<QuantizedWeight>,
    pub bias: Option<Param<Tensor<1>>>,
    pub adapter: Option<Adapter>,
}

impl Linear {
    /// A plain layer without an adapter.
    pub fn new(weight: Param<Tensor<2>>, bias: Option<Param<Tensor<1>>>) -> Self {
        Self {
            weight: Some(weight),
            quantized: None,
            bias,
            adapter: None,
        }
    }

    /// A layer whose frozen weight is block-quantized.
    pub fn quantized(weight: QuantizedWeight, bias: Option<Param<Tensor<1>>>) -> Self {
        Self {
            weight: None,
            quantized: Some(weight),
            bias,
            adapter: None,
        }
    }

    /// The dense weight [in, out]; `None` when it is quantized.
    pub fn dense_weight(&self) -> Option<&Param<Tensor<2>>> {
        self.weight.as_ref()
    }

    /// The quantized weight, when it is.
    pub fn quantized_weight(&self) -> Option<&QuantizedWeight> {
        self.quantized.as_ref()
    }

    /// The device the weight lives on.
    pub fn device(&self) -> Device {
        match (&self.weight, &self.quantized) {
            (Some(w), _) => w.val().device(),
            (None, Some(q)) => q.scales.val().device(),
            (None, None) => unreachable!("a Linear is built with a weight"),
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
        let bias = self.bias.as_ref().map(|b| b.val());
        let base = match (&self.weight, &self.quantized) {
            (Some(weight), _) => dense(x.clone(), weight.val(), bias),
            (None, Some(q)) => {
                let y = q.matmul(x.clone());
                match bias {
                    Some(b) => y + b.unsqueeze(),
                    None => y,
                }
            }
            (None, None) => unreachable!("a Linear is built with a weight"),
        };
        match &self.adapter {
            Some(adapter) => adapter.forward(x, base, self, dropout),
            None => base,
        }
    }

    /// The frozen weight [in, out] in f32, dequantized or widened when it
    /// is stored otherwise, outside the autodiff graph: for methods whose
    /// update depends on the base weight (DoRA's column norms).
    pub fn frozen_weight(&self) -> Tensor<2> {
        let w = match (&self.weight, &self.quantized) {
            (Some(w), _) => precision::widen(w.val()),
            (None, Some(q)) => q.dequantize().transpose(),
            (None, None) => unreachable!("a Linear is built with a weight"),
        };
        w.detach()
    }

    /// Replaces the dense frozen weight by `w` (row-major [in, out], f32),
    /// held in the old one's dtype (for methods that start from a modified
    /// base, as PiSSA's residual). A quantized weight is refused: methods
    /// that modify the base refuse a quantized one before loading.
    pub fn replace_frozen_weight(&mut self, w: Vec<f32>) -> Result<(), ReplaceError> {
        let (inp, out) = self.dims();
        let device = self.device();
        let Some(old) = &self.weight else {
            return Err(ReplaceError(
                "the base is held quantized (model.quantize); use model.quantize = \"none\"".into(),
            ));
        };
        let dtype = old.val().dtype();
        let t = Tensor::<2>::from_data(burn::tensor::TensorData::new(w, [inp, out]), &device);
        let t = match dtype {
            burn::tensor::DType::BF16 => t.cast(burn::tensor::FloatDType::BF16),
            burn::tensor::DType::F16 => t.cast(burn::tensor::FloatDType::F16),
            _ => t,
        };
        self.weight = Some(Param::from_tensor(t).set_require_grad(false));
        Ok(())
    }

    /// (in, out) features.
    pub fn dims(&self) -> (usize, usize) {
        match (&self.weight, &self.quantized) {
            (Some(w), _) => {
                let [i, o] = w.dims();
                (i, o)
            }
            (None, Some(q)) => q.dims(),
            (None, None) => unreachable!("a Linear is built with a weight"),
        }
    }
}

/// A replacement weight could not be held as the layer's was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the frozen weight cannot be replaced: {0}")]
pub struct ReplaceError(pub String);

/// `x · weight (+ bias)` for a dense frozen or trained weight [in, out].
fn dense<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<D> {
    if weight.dtype() == x.dtype() {
        linear(x, weight, bias)
    } else if tunesmith_kernels::fused(&x) {
        // A 16-bit frozen weight on the CPU: widened for this product
        // and again in backward, never kept in f32.
        let y = tunesmith_kernels::frozen_matmul(x, weight);
        match bias {
            Some(b) => y + b.unsqueeze(),
            None => y,
        }
    } else {
        // Elsewhere the widened copy is what autodiff keeps for
        // backward; gradient checkpointing bounds it to one layer.
        linear(x, precision::widen(weight), bias)
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
