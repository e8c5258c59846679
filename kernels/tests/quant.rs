//! Block quantization against the references in tests/fixtures/quant
//! (made by tests/fixtures/make_quant_fixtures.py): q8_0 and q4_0 against
//! llama.cpp's `gguf` package, NF4 against bitsandbytes' quantizer, every
//! byte and every dequantized value bit for bit; and the quantized matmul
//! with its backward against a plain matmul of the dequantized weight.

use std::path::PathBuf;

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use safetensors::SafeTensors;
use tunesmith_kernels::QuantFormat;
use tunesmith_kernels::quant::{self, Quantized};

fn fixture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/quant/blocks.safetensors");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap();
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), data)
}

fn bytes(st: &SafeTensors, name: &str) -> Vec<u8> {
    st.tensor(name).unwrap().data().to_vec()
}

/// Index and values of the first pair whose bits differ.
fn first_difference(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(i, (x, y))| (i, *x, *y))
}

#[test]
fn ggml_formats_match_the_gguf_package_bit_for_bit() {
    let raw = fixture();
    let st = SafeTensors::deserialize(&raw).unwrap();
    let (shape, input) = f32s(&st, "input");
    let cols = shape[1];
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
        let name = format.name();
        let ours = quant::quantize(&input, cols, format).unwrap();
        let theirs = bytes(&st, &format!("{name}.ggml"));
        let ours_bytes = ours.to_ggml().unwrap();
        assert_eq!(ours_bytes.len(), theirs.len(), "{name}");
        if let Some(i) = ours_bytes.iter().zip(&theirs).position(|(a, b)| a != b) {
            panic!(
                "{name}: byte {i} (row {}) is {} here, {} in gguf",
                i / (ours_bytes.len() / shape[0]),
                ours_bytes[i],
                theirs[i]
            );
        }
        // gguf's blocks, read back and dequantized here, give gguf's values.
        let read = Quantized::from_ggml(&theirs, cols, format).unwrap();
        let (_, expected) = f32s(&st, &format!("{name}.dequant"));
        if let Some((i, a, b)) = first_difference(&read.dequantize(), &expected) {
            panic!("{name}: value {i} dequantizes to {a} here, {b} in gguf");
        }
    }
}

#[test]
fn nf4_matches_bitsandbytes_bit_for_bit() {
    let raw = fixture();
    let st = SafeTensors::deserialize(&raw).unwrap();
    let (shape, input) = f32s(&st, "input");
    let q = quant::quantize(&input, shape[1], QuantFormat::Nf4).unwrap();
    let codes: Vec<u8> = q.codes.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(codes, bytes(&st, "nf4.codes"), "packed codes");
    let (_, absmax) = f32s(&st, "nf4.absmax");
    assert_eq!(first_difference(&q.scales, &absmax), None, "absmax");
    let (_, expected) = f32s(&st, "nf4.dequant");
    if let Some((i, a, b)) = first_difference(&q.dequantize(), &expected) {
        panic!("nf4: value {i} dequantizes to {a} here, {b} in the reference");
    }
}

/// `x · Wᵀ` and its gradient through the fused op against a plain matmul
/// of the dequantized weight.
#[test]
fn quantized_matmul_and_its_backward_match_the_dense_product() {
    let device = Device::flex().autodiff();
    let (out, inp, rows) = (48, 128, 7);
    let mut w = vec![0f32; out * inp];
    for (i, v) in w.iter_mut().enumerate() {
        *v = ((i as f32 * 0.7).sin() * 0.1) + if i % 97 == 0 { 0.5 } else { 0.0 };
    }
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Nf4] {
        let q = quant::quantize(&w, inp, format).unwrap();
        let dense = Tensor::<2>::from_data(TensorData::new(q.dequantize(), [out, inp]), &device);
        let words = format.words(inp);
        let codes = Tensor::<2, burn::tensor::Int>::from_data(
            TensorData::new(q.codes.clone(), [out, words]),
            (&device, DType::U32),
        );
        let blocks = inp / format.block();
        let scales =
            Tensor::<2>::from_data(TensorData::new(q.scales.clone(), [out, blocks]), &device);
        device.seed(3);
        let x = Tensor::<3>::random([1, rows, inp], Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<3>::random([1, rows, out], Distribution::Normal(0.0, 1.0), &device);
        let x1 = x.clone().require_grad();
        let y1 = tunesmith_kernels::quant_matmul(x1.clone(), codes, scales, format);
        let g1 = (y1.clone() * upstream.clone()).sum().backward();
        let x2 = x.require_grad();
        let y2 = x2.clone().matmul(dense.transpose().unsqueeze());
        let g2 = (y2.clone() * upstream).sum().backward();
        let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
        let scale = y2.clone().abs().max().into_scalar::<f32>();
        assert!(diff(y1, y2) <= 1e-6 * scale, "{format:?}: forward");
        let (d1, d2) = (x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
        let gscale = d2.clone().abs().max().into_scalar::<f32>();
        let d = (d1 - d2).abs().max().into_scalar::<f32>();
        assert!(
            d <= 1e-6 * gscale,
            "{format:?}: input gradient differs by {d}"
        );
    }
}
