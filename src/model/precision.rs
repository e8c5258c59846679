//! Where precision is decided: the dtype frozen weights are stored in
//! (`model.dtype`), and the casts at the boundaries of the compute, which
//! stays f32 (norms, softmax, rope and the loss, as transformers does in
//! bf16 too, and everything else because the CPU backend's bf16 matmul
//! widens to f32 anyway). Trained parameters are f32 master weights.

use burn::tensor::{DType, Device, FloatDType, Tensor};

use super::quant::QuantFormat;
use crate::config::Dtype;

/// How the frozen base is held: the dtype of its dense weights (the
/// embeddings, the head, and the linear layers unless quantized) and the
/// block format of the linear layers' weights, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage {
    pub dtype: DType,
    pub quantize: Option<QuantFormat>,
}

impl Storage {
    /// Every weight dense in `dtype`.
    pub fn dense(dtype: DType) -> Self {
        Self {
            dtype,
            quantize: None,
        }
    }

    /// In words, for logs and reports: `bf16`, or `q4_0 linear layers
    /// (QLoRA), bf16 embeddings and head`.
    pub fn describe(&self) -> String {
        let dtype = match self.dtype {
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            _ => "f32",
        };
        match self.quantize {
            None => dtype.to_string(),
            Some(format) => format!(
                "{} linear layers (QLoRA), {dtype} embeddings and head",
                format.name()
            ),
        }
    }
}

/// The 16-bit type a requested `model.dtype` asks for, given the
/// checkpoint's declared dtype (config.json's `torch_dtype`); `None` means
/// f32. `auto` keeps a 16-bit checkpoint 16-bit.
pub fn requested_half(requested: Dtype, declared: Option<&str>) -> Option<FloatDType> {
    match requested {
        Dtype::F32 => None,
        Dtype::Bf16 => Some(FloatDType::BF16),
        Dtype::F16 => Some(FloatDType::F16),
        Dtype::Auto => match declared {
            Some("bfloat16") => Some(FloatDType::BF16),
            Some("float16") => Some(FloatDType::F16),
            _ => None,
        },
    }
}

/// The dtype frozen weights are stored in on `device` (see
/// [`requested_half`]). A 16-bit type the device cannot hold falls back to
/// f32, with a message when the user asked for it explicitly.
pub fn storage_dtype(
    requested: Dtype,
    declared: Option<&str>,
    device: &Device,
) -> (DType, Option<String>) {
    let Some(wanted) = requested_half(requested, declared) else {
        return (DType::F32, None);
    };
    if device.supports_dtype(wanted) {
        return (wanted.into(), None);
    }
    let note = format!(
        "model.dtype: this device cannot hold {wanted:?} weights; they are stored in f32 \
         (twice the memory)"
    );
    (DType::F32, (requested != Dtype::Auto).then_some(note))
}

/// `t` in f32, for the compute (a no-op for f32 tensors).
pub fn widen<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}

/// A trained parameter's value as its f32 master copy.
pub fn master<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    widen(t)
}
