//! Where precision is decided: the dtype frozen weights are stored in
//! (`model.dtype`), and the casts at the boundaries of the compute, which
//! stays f32 (norms, softmax, rope and the loss, as transformers does in
//! bf16 too, and everything else because the CPU backend's bf16 matmul
//! widens to f32 anyway). Trained parameters are f32 master weights.

use burn::tensor::{DType, Device, FloatDType, Tensor};

use crate::config::Dtype;

/// The dtype frozen weights are stored in for a requested `model.dtype`,
/// the checkpoint's declared dtype (config.json's `torch_dtype`) and the
/// device. `auto` keeps a 16-bit checkpoint 16-bit where the device can
/// store and widen it, and is f32 otherwise. An explicit 16-bit request the
/// device cannot hold falls back to f32 with a message saying so.
pub fn storage_dtype(
    requested: Dtype,
    declared: Option<&str>,
    device: &Device,
) -> (DType, Option<String>) {
    let wanted = match requested {
        Dtype::F32 => return (DType::F32, None),
        Dtype::Bf16 => FloatDType::BF16,
        Dtype::F16 => FloatDType::F16,
        Dtype::Auto => match declared {
            Some("bfloat16") => FloatDType::BF16,
            Some("float16") => FloatDType::F16,
            _ => return (DType::F32, None),
        },
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

/// Bytes one stored value of `dtype` takes.
pub fn bytes_per_value(dtype: DType) -> u64 {
    dtype.size() as u64
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
