//! Frozen linear weights held block-quantized (`model.quantize`, QLoRA):
//! the codes and scales of `tunesmith_kernels::quant` as device tensors.
//! Each product dequantizes the layer's weight just for itself: on the CPU
//! one fused op does so in forward and again in backward; elsewhere burn's
//! tensor ops dequantize it and autodiff keeps that dense copy for backward
//! (gradient checkpointing bounds it to one layer at a time).

use burn::module::{Module, Param, ParamId};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use tunesmith_kernels::quant::{NF4_TABLE, Quantized};

use super::{ModelConfig, ModelError};

pub use tunesmith_kernels::QuantFormat;

/// A frozen weight W [out, in] (HF's layout), block-quantized along `in`.
#[derive(Module, Debug)]
pub struct QuantizedWeight {
    /// Packed codes [out, words], u32.
    pub codes: Param<Tensor<2, Int>>,
    /// One scale per block [out, in / block], f32.
    pub scales: Param<Tensor<2>>,
    #[module(skip)]
    pub format: QuantFormat,
}

impl QuantizedWeight {
    /// Moves a host-quantized matrix onto `device`.
    pub fn new(q: Quantized, device: &Device) -> Self {
        let (rows, words) = (q.rows, q.format.words(q.cols));
        let blocks = q.cols / q.format.block();
        let codes = Tensor::from_data(
            TensorData::new(q.codes, [rows, words]),
            (device, DType::U32),
        );
        let scales = Tensor::from_data(TensorData::new(q.scales, [rows, blocks]), device);
        Self {
            codes: Param::initialized(ParamId::new(), codes),
            scales: Param::from_tensor(scales),
            format: q.format,
        }
    }

    /// (in, out) features.
    pub fn dims(&self) -> (usize, usize) {
        let [out, words] = self.codes.dims();
        (words * 32 / self.format.bits(), out)
    }

    /// Bytes held on the device.
    pub fn bytes(&self) -> usize {
        let (inp, out) = self.dims();
        (inp * out * self.format.bits()) / 8
            + 4 * self.scales.val().dims().iter().product::<usize>()
    }

    /// `x · Wᵀ` for `x` [.., in].
    pub fn matmul<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if tunesmith_kernels::fused(&x) {
            return tunesmith_kernels::quant_matmul(
                x,
                self.codes.val(),
                self.scales.val(),
                self.format,
            );
        }
        let w_t = self.dequantize().transpose();
        let dims = x.dims();
        let (inp, out) = self.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        x.reshape([rows, inp]).matmul(w_t).reshape(out_dims)
    }

    /// The dense weight [out, in] in f32, from tensor ops that any backend
    /// runs; the same numbers as the CPU kernel's dequantization.
    pub fn dequantize(&self) -> Tensor<2> {
        let [out, _] = self.codes.dims();
        let (inp, _) = self.dims();
        let block = self.format.block();
        let blocks = inp / block;
        let bytes = self.bytes_of_codes();
        let values = match self.format {
            QuantFormat::Q8_0 => {
                // Bytes are two's-complement int8 codes.
                let v = bytes.float();
                v.clone() - v.greater_equal_elem(128.0).float() * 256.0
            }
            QuantFormat::Q4_0 => {
                // Per block: 16 bytes, values j (low nibble) and j + 16.
                let b = bytes.reshape([out, blocks, block / 2]);
                let low = b.clone().bitwise_and_scalar(0x0f);
                let high = b.bitwise_right_shift_scalar(4);
                Tensor::cat(vec![low, high], 2).float().reshape([out, inp]) - 8.0
            }
            QuantFormat::Nf4 => {
                // Byte j: value 2j (high nibble) and 2j + 1 (low).
                let high = bytes.clone().bitwise_right_shift_scalar(4);
                let low = bytes.bitwise_and_scalar(0x0f);
                let idx = Tensor::stack::<3>(vec![high, low], 2).reshape([out * inp]);
                let table = Tensor::<1>::from_data(NF4_TABLE, &self.scales.device());
                table.select(0, idx).reshape([out, inp])
            }
        };
        let scales = self.scales.val().reshape([out, blocks, 1]);
        (values.reshape([out, blocks, block]) * scales).reshape([out, inp])
    }

    /// The code bytes [out, words * 4], each in its own integer.
    fn bytes_of_codes(&self) -> Tensor<2, Int> {
        let codes = self.codes.val();
        let [out, words] = codes.dims();
        let parts: Vec<Tensor<3, Int>> = [0u32, 8, 16, 24]
            .into_iter()
            .map(|shift| {
                codes
                    .clone()
                    .bitwise_right_shift_scalar(shift)
                    .bitwise_and_scalar(0xff)
                    .reshape([out, words, 1])
            })
            .collect();
        Tensor::cat(parts, 2).reshape([out, words * 4])
    }
}

/// Checks that every linear weight of `model` splits into `format`'s
/// blocks along its input features.
pub fn check_shapes(model: &ModelConfig, format: QuantFormat) -> Result<(), ModelError> {
    for kind in crate::methods::LINEAR_MODULES {
        if let Some((inp, _)) = crate::methods::linear_shape(model, kind)
            && !inp.is_multiple_of(format.block())
        {
            return Err(shape_error(format, kind, inp));
        }
    }
    Ok(())
}

/// The error for the `name` weights, with rows of `cols`, under `format`.
pub(crate) fn shape_error(format: QuantFormat, name: &str, cols: usize) -> ModelError {
    let kind = crate::methods::LINEAR_MODULES
        .into_iter()
        .find(|k| name.ends_with(k))
        .unwrap_or("linear");
    let hint = if cols.is_multiple_of(32) {
        "model.quantize = \"q8_0\" or \"q4_0\" (blocks of 32), or \"none\""
    } else {
        "model.quantize = \"none\" (bf16 storage also halves the memory)"
    };
    ModelError::QuantizeShape {
        format: format.name(),
        kind,
        cols,
        block: format.block(),
        hint,
    }
}
