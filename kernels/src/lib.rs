//! Fused CPU kernels for the training step of a Llama-family decoder:
//! RMSNorm, SwiGLU's gate and the cross-entropy of logits, each one pass
//! forward and one pass backward, parallel over rows; and causal attention
//! with grouped KV heads that never materialises the score matrix.
//!
//! They are a burn backend extension ([`FusedOps`]) implemented for the
//! `flex` CPU backend and for `Autodiff<Flex>` (with a hand-written backward
//! that keeps one tensor per op instead of every intermediate). GPU backends
//! keep burn's composed ops, which their fusion compiler already merges:
//! callers ask [`fused`] first and take the composed path when it says no.
//!
//! `TUNESMITH_FUSED=0` in the environment turns the kernels off (for
//! measuring what they bring, or to rule them out when hunting a bug).

mod attention;
mod cpu;
mod head;
mod mm;
pub mod quant;

use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchDevice, Flex, FloatDType, backend_extension,
};
use burn::tensor::{DType, Int, Tensor, TensorData};

pub use quant::QuantFormat;

/// Operations with a fused CPU implementation.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// RMSNorm of `x` [rows, width] with `weight` [width].
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// `silu(gate) * up`, both of one shape.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Inverted dropout of `x` keeping each element with probability
    /// `keep`, the mask drawn from `seed` by a counter-based generator: the
    /// backward pass recomputes it instead of keeping it.
    fn fused_dropout(x: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self>;

    /// Negative log-likelihood of `targets` [rows] under `logits`
    /// [rows, vocab], one value per row.
    fn fused_nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self>;

    /// Negative log-likelihood of `targets` [rows] under the logits
    /// `hidden [rows, width] · weight [width, vocab]`, one value per row,
    /// without the [rows, vocab] logits ever existing at once. `weight` is
    /// read in place whatever its strides (a transposed embedding is fine).
    fn fused_head_nll(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `x` [rows, in] (f32) times a frozen `weight` [in, out] stored in a
    /// narrower float type (bf16, f16): the weight is widened to f32 for
    /// the product in forward and widened again in backward, so no f32 copy
    /// of it outlives the call. The weight gets no gradient.
    fn fused_frozen_matmul(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x` [rows, in] (f32) times the transpose of a frozen block-quantized
    /// weight [out, in] (`codes` [out, words] u32, `scales` [out, blocks]
    /// f32, see [`quant`]): the weight is dequantized for the product in
    /// forward and again in backward, so no dense copy outlives the call.
    fn fused_quant_matmul(
        x: FloatTensor<Self>,
        codes: IntTensor<Self>,
        scales: FloatTensor<Self>,
        format: QuantFormat,
    ) -> FloatTensor<Self>;

    /// Causal softmax attention of `q` [batch, heads, len, dim] over `k`, `v`
    /// [batch, kv_heads, len, dim] (each KV head serving `heads / kv_heads`
    /// query heads in a row, as transformers' `repeat_kv` lays them out).
    fn fused_causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
}

/// Whether the fused kernels serve this tensor: f32 on the CPU backend,
/// with or without autodiff, and not switched off by `TUNESMITH_FUSED=0`.
pub fn fused<const D: usize>(x: &Tensor<D>) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| std::env::var("TUNESMITH_FUSED").as_deref() != Ok("0"));
    enabled && on_cpu(&x.device()) && x.dtype() == DType::F32
}

/// Whether `device` is burn's `flex` CPU backend, with or without autodiff.
pub fn on_cpu(device: &burn::tensor::Device) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(**inner, DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// RMSNorm over the last dimension (see [`FusedOps::fused_rms_norm`]).
/// Only for tensors [`fused`] accepts.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    let dims = x.dims();
    let width = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let out = <Dispatch as FusedOps>::fused_rms_norm(
        x.reshape([rows, width]).into_dispatch(),
        weight.into_dispatch(),
        eps,
    );
    Tensor::<2>::from_dispatch(out).reshape(dims)
}

/// `silu(gate) * up` (see [`FusedOps::fused_swiglu`]). Only for tensors
/// [`fused`] accepts.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_swiglu(
        gate.into_dispatch(),
        up.into_dispatch(),
    ))
}

/// Inverted dropout (see [`FusedOps::fused_dropout`]). Only for tensors
/// [`fused`] accepts.
pub fn dropout<const D: usize>(x: Tensor<D>, keep: f64, seed: u64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_dropout(
        x.into_dispatch(),
        keep,
        seed,
    ))
}

/// Per-row negative log-likelihood (see [`FusedOps::fused_nll`]). Only for
/// tensors [`fused`] accepts; every target must be below the vocabulary.
pub fn nll(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_nll(
        logits.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// Per-row negative log-likelihood under the output head (see
/// [`FusedOps::fused_head_nll`]): `hidden` [rows, width], `weight` [width,
/// vocab]. Only for tensors [`fused`] accepts; every target must be below
/// the vocabulary.
pub fn head_nll(hidden: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_head_nll(
        hidden.into_dispatch(),
        weight.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// `x · weight` for a frozen weight stored in bf16 or f16 (see
/// [`FusedOps::fused_frozen_matmul`]): `x` [.., in] f32 on the CPU backend,
/// `weight` [in, out] untracked. Callers with an f32 weight use a plain
/// matmul, which keeps the weight itself (no copy) for backward.
pub fn frozen_matmul<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let width = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let [inp, out] = weight.dims();
    assert_eq!(width, inp, "x has {width} features, the weight takes {inp}");
    let y = <Dispatch as FusedOps>::fused_frozen_matmul(
        x.reshape([rows, width]).into_dispatch(),
        weight.into_dispatch(),
    );
    let mut out_dims = dims;
    out_dims[D - 1] = out;
    Tensor::<2>::from_dispatch(y).reshape(out_dims)
}

/// `x · Wᵀ` for a frozen block-quantized weight W [out, in] (see
/// [`FusedOps::fused_quant_matmul`]): `x` [.., in] f32 on the CPU backend,
/// `codes` [out, words] u32 and `scales` [out, blocks] untracked.
pub fn quant_matmul<const D: usize>(
    x: Tensor<D>,
    codes: Tensor<2, Int>,
    scales: Tensor<2>,
    format: QuantFormat,
) -> Tensor<D> {
    let dims = x.dims();
    let width = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let [out, words] = codes.dims();
    let inp = words * 32 / format.bits();
    assert_eq!(width, inp, "x has {width} features, the weight takes {inp}");
    let y = <Dispatch as FusedOps>::fused_quant_matmul(
        x.reshape([rows, width]).into_dispatch(),
        codes.into_dispatch(),
        scales.into_dispatch(),
        format,
    );
    let mut out_dims = dims;
    out_dims[D - 1] = out;
    Tensor::<2>::from_dispatch(y).reshape(out_dims)
}

/// Causal attention (see [`FusedOps::fused_causal_attention`]) with the
/// usual `1/sqrt(dim)` scale. Only for tensors [`fused`] accepts, with no
/// mask beyond causality (no padding inside rows, no packing, no window,
/// no cache).
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [_, heads, _, dim] = q.dims();
    let kv_heads = k.dims()[1];
    assert!(
        kv_heads > 0 && heads.is_multiple_of(kv_heads),
        "{heads} query heads cannot share {kv_heads} KV heads"
    );
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_causal_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        1.0 / (dim as f64).sqrt(),
    ))
}

fn f32s(t: &FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "fused kernels take f32 tensors");
    t.to_contiguous()
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor has a slice")
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

fn indices(targets: &IntTensor<Flex>, bound: usize) -> Vec<usize> {
    let t = targets.to_contiguous();
    let out: Vec<usize> = match t.dtype() {
        DType::I64 => t
            .as_slice::<i64>()
            .map(|s| s.iter().map(|&v| v as usize).collect()),
        DType::I32 => t
            .as_slice::<i32>()
            .map(|s| s.iter().map(|&v| v as usize).collect()),
        other => panic!("fused_nll takes i64 or i32 targets, not {other:?}"),
    }
    .expect("a contiguous tensor has a slice");
    if let Some(bad) = out.iter().find(|&&v| v >= bound) {
        panic!("target token {bad} is outside the vocabulary of {bound}");
    }
    out
}

fn rms_norm_forward(x: &FlexTensor, w: &FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
    let (x, w) = (f32s(x), f32s(w));
    let (y, rstd) = cpu::rms_norm(slice(&x), slice(&w), eps as f32);
    let rows = rstd.len();
    (tensor(y, shape(&x)), tensor(rstd, vec![rows]))
}

fn swiglu_forward(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (a, b) = (f32s(a), f32s(b));
    tensor(cpu::swiglu(slice(&a), slice(&b)), shape(&a))
}

fn nll_forward(logits: &FlexTensor, targets: &IntTensor<Flex>) -> (FlexTensor, FlexTensor) {
    let logits = f32s(logits);
    let vocab = shape(&logits)[1];
    let t = indices(targets, vocab);
    let (loss, lse) = cpu::nll(slice(&logits), vocab, &t);
    let rows = t.len();
    (tensor(loss, vec![rows]), tensor(lse, vec![rows]))
}

/// An f32 [width, vocab] head weight that [`head_view`] can read in place:
/// the tensor itself when its strides are non-negative, else a copy.
fn head_weight(t: &FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "fused kernels take f32 tensors");
    assert_eq!(
        t.layout().num_dims(),
        2,
        "the head weight is [width, vocab]"
    );
    if t.layout().has_positive_strides() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn head_view(t: &FlexTensor) -> head::Weight<'_> {
    let layout = t.layout();
    let (width, vocab, rs, cs) = layout
        .as_2d_strides()
        .expect("the head weight is [width, vocab]");
    head::Weight {
        data: &t.storage::<f32>()[layout.start_offset()..],
        width,
        vocab,
        rs: rs as usize,
        cs: cs as usize,
    }
}

fn head_nll_forward(
    hidden: &FlexTensor,
    weight: &FlexTensor,
    targets: &IntTensor<Flex>,
    with_grad: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let w = head_view(weight);
    let t = indices(targets, w.vocab);
    let dims = shape(hidden);
    assert!(
        dims.len() == 2 && dims[0] == t.len() && dims[1] == w.width,
        "hidden states {dims:?} do not fit {} targets and a head of width {}",
        t.len(),
        w.width
    );
    let (loss, dh) = head::forward(slice(hidden), w, &t, with_grad);
    (tensor(loss, vec![t.len()]), dh.map(|dh| tensor(dh, dims)))
}

fn attention_dims(q: &FlexTensor, k: &FlexTensor) -> attention::Dims {
    let (qs, ks) = (shape(q), shape(k));
    assert_eq!(
        qs.len(),
        4,
        "attention takes [batch, heads, len, dim] tensors"
    );
    assert!(
        ks.len() == 4 && ks[0] == qs[0] && ks[2] == qs[2] && ks[3] == qs[3],
        "keys {ks:?} do not fit queries {qs:?}"
    );
    attention::Dims {
        batch: qs[0],
        heads: qs[1],
        kv_heads: ks[1],
        len: qs[2],
        dim: qs[3],
    }
}

fn attention_forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    scale: f64,
) -> (FlexTensor, FlexTensor) {
    let (q, k, v) = (f32s(q), f32s(k), f32s(v));
    let dims = attention_dims(&q, &k);
    let (out, lse) = attention::forward(slice(&q), slice(&k), slice(&v), dims, scale as f32);
    let lse_shape = vec![dims.batch, dims.heads, dims.len];
    (tensor(out, shape(&q)), tensor(lse, lse_shape))
}

/// `x · widen(weight)` on the CPU; `transpose_weight` multiplies by the
/// weight's transpose instead (the backward pass).
fn widened_matmul(x: FlexTensor, weight: &FlexTensor, transpose_weight: bool) -> FlexTensor {
    let wide = Flex::float_cast(weight.clone(), FloatDType::F32);
    let wide = if transpose_weight {
        Flex::float_transpose(wide)
    } else {
        wide
    };
    Flex::float_matmul(x, wide)
}

/// The dense f32 [out, in] weight of quantized `codes` and `scales`.
fn dequantized(codes: &IntTensor<Flex>, scales: &FlexTensor, format: QuantFormat) -> FlexTensor {
    let codes = codes.to_contiguous();
    let words = codes
        .as_slice::<u32>()
        .expect("quantized codes are a contiguous u32 tensor");
    let scales = f32s(scales);
    let dims = shape(&codes);
    let (out, cols) = (dims[0], dims[1] * 32 / format.bits());
    let mut dense = vec![0f32; out * cols];
    quant::dequantize_into(words, slice(&scales), format, cols, &mut dense);
    tensor(dense, vec![out, cols])
}

/// `x · Wᵀ` for a quantized W; `backward` multiplies by W instead.
fn quantized_matmul(
    x: FlexTensor,
    codes: &IntTensor<Flex>,
    scales: &FlexTensor,
    format: QuantFormat,
    backward: bool,
) -> FlexTensor {
    let dense = dequantized(codes, scales, format);
    let dense = if backward {
        dense
    } else {
        Flex::float_transpose(dense)
    };
    Flex::float_matmul(x, dense)
}

fn dropout_forward(x: &FlexTensor, keep: f64, seed: u64) -> FlexTensor {
    let x = f32s(x);
    tensor(cpu::dropout(slice(&x), keep as f32, seed), shape(&x))
}

impl FusedOps for Flex {
    fn fused_dropout(x: FlexTensor, keep: f64, seed: u64) -> FlexTensor {
        dropout_forward(&x, keep, seed)
    }

    fn fused_quant_matmul(
        x: FlexTensor,
        codes: FlexTensor,
        scales: FlexTensor,
        format: QuantFormat,
    ) -> FlexTensor {
        quantized_matmul(f32s(&x), &codes, &scales, format, false)
    }

    fn fused_frozen_matmul(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        widened_matmul(f32s(&x), &weight, false)
    }

    fn fused_causal_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        scale: f64,
    ) -> FlexTensor {
        attention_forward(&q, &k, &v, scale).0
    }

    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        rms_norm_forward(&x, &weight, eps).0
    }

    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        swiglu_forward(&gate, &up)
    }

    fn fused_nll(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        nll_forward(&logits, &targets).0
    }

    fn fused_head_nll(hidden: FlexTensor, weight: FlexTensor, targets: FlexTensor) -> FlexTensor {
        let (hidden, weight) = (f32s(&hidden), head_weight(&weight));
        head_nll_forward(&hidden, &weight, &targets, false).0
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// x, weight, per-row rstd.
    type State = (FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let g = f32s(&grads.consume::<Flex>(&ops.node));
        let (x, w, rstd) = ops.state;
        let (dx, dw) = cpu::rms_norm_backward(
            slice(&x),
            slice(&w),
            slice(&rstd),
            slice(&g),
            node_w.is_some(),
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, shape(&x)));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, tensor(dw, shape(&w)));
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    /// gate, up.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let g = f32s(&grads.consume::<Flex>(&ops.node));
        let (a, b) = ops.state;
        let (da, db) = cpu::swiglu_backward(slice(&a), slice(&b), slice(&g));
        if let Some(node) = node_a {
            grads.register::<Flex>(node.id, tensor(da, shape(&a)));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, tensor(db, shape(&b)));
        }
    }
}

#[derive(Debug)]
struct NllBackward;

impl Backward<Flex, 1> for NllBackward {
    /// logits, targets, per-row log-sum-exp.
    type State = (FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_logits] = ops.parents;
        let g = f32s(&grads.consume::<Flex>(&ops.node));
        let Some(node) = node_logits else { return };
        let (logits, targets, lse) = ops.state;
        let dims = shape(&logits);
        let vocab = dims[1];
        let t = indices(&targets, vocab);
        // The saved logits are this op's alone by now: the gradient
        // overwrites them instead of allocating another [rows, vocab].
        let mut data = logits
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        cpu::nll_backward(&mut data, vocab, &t, slice(&lse), slice(&g));
        grads.register::<Flex>(node.id, tensor(data, dims));
    }
}

#[derive(Debug)]
struct HeadNllBackward;

/// What the head's backward needs.
#[derive(Debug, Clone)]
enum HeadNllState {
    /// The weight is frozen: the hidden states' gradient for unit upstream
    /// gradients, computed in forward.
    Eager { dh: FlexTensor },
    /// The weight trains: its inputs, to recompute the logits block by block.
    Recompute(Box<HeadInputs>),
}

#[derive(Debug, Clone)]
struct HeadInputs {
    hidden: FlexTensor,
    weight: FlexTensor,
    targets: FlexTensor,
}

impl Backward<Flex, 2> for HeadNllBackward {
    type State = HeadNllState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_h, node_w] = ops.parents;
        let g = f32s(&grads.consume::<Flex>(&ops.node));
        match ops.state {
            HeadNllState::Eager { dh } => {
                let Some(node) = node_h else { return };
                let dims = shape(&dh);
                let mut data = dh.into_data().try_into_vec::<f32>().expect("f32 gradient");
                head::scale_rows(&mut data, dims[1], slice(&g));
                grads.register::<Flex>(node.id, tensor(data, dims));
            }
            HeadNllState::Recompute(inputs) => {
                let HeadInputs {
                    hidden,
                    weight,
                    targets,
                } = *inputs;
                let w = head_view(&weight);
                let t = indices(&targets, w.vocab);
                let (dh, dw) = head::backward(slice(&hidden), w, &t, slice(&g), node_h.is_some());
                if let (Some(node), Some(dh)) = (node_h, dh) {
                    grads.register::<Flex>(node.id, tensor(dh, shape(&hidden)));
                }
                if let Some(node) = node_w {
                    grads.register::<Flex>(node.id, tensor(dw, vec![w.width, w.vocab]));
                }
            }
        }
    }
}

#[derive(Debug)]
struct FrozenMatmulBackward;

impl Backward<Flex, 1> for FrozenMatmulBackward {
    /// The stored (narrow) weight.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let g = f32s(&grads.consume::<Flex>(&ops.node));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, widened_matmul(g, &ops.state, true));
        }
    }
}

#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    /// keep, seed.
    type State = (f64, u64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (keep, seed) = ops.state;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dropout_forward(&g, keep, seed));
        }
    }
}

#[derive(Debug)]
struct QuantMatmulBackward;

impl Backward<Flex, 1> for QuantMatmulBackward {
    /// The codes, scales and format of the weight.
    type State = (FlexTensor, FlexTensor, QuantFormat);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let g = f32s(&grads.consume::<Flex>(&ops.node));
        let (codes, scales, format) = &ops.state;
        if let Some(node) = node_x {
            let dx = quantized_matmul(g, codes, scales, *format, true);
            grads.register::<Flex>(node.id, dx);
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// q, k, v, output, log-sum-exp, scale.
    type State = (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        f64,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = f32s(&grads.consume::<Flex>(&ops.node));
        let (q, k, v, out, lse, scale) = ops.state;
        let dims = attention_dims(&q, &k);
        let saved = attention::Saved {
            q: slice(&q),
            k: slice(&k),
            v: slice(&v),
            out: slice(&out),
            lse: slice(&lse),
        };
        let grads_qkv = attention::backward(&saved, slice(&g), dims, scale as f32);
        let shapes = [shape(&q), shape(&k), shape(&v)];
        for ((parent, grad), shape) in ops.parents.into_iter().zip(grads_qkv).zip(shapes) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, tensor(grad, shape));
            }
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_dropout(x: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self> {
        let out = dropout_forward(x.primitive(), keep, seed);
        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((keep, seed), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_quant_matmul(
        x: FloatTensor<Self>,
        codes: IntTensor<Self>,
        scales: FloatTensor<Self>,
        format: QuantFormat,
    ) -> FloatTensor<Self> {
        assert!(
            !scales.is_tracked(),
            "fused_quant_matmul takes a frozen weight"
        );
        let scales = scales.primitive().clone();
        let out = quantized_matmul(f32s(x.primitive()), &codes, &scales, format, false);
        match QuantMatmulBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((codes, scales, format), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_frozen_matmul(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        assert!(
            !weight.is_tracked(),
            "fused_frozen_matmul takes a frozen weight; a trained one is f32 and uses matmul"
        );
        let w = weight.primitive().clone();
        let out = widened_matmul(f32s(x.primitive()), &w, false);
        match FrozenMatmulBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(w, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        // One contiguous copy of each input serves forward and backward.
        let (qc, kc, vc) = (
            f32s(q.primitive()),
            f32s(k.primitive()),
            f32s(v.primitive()),
        );
        let (out, lse) = attention_forward(&qc, &kc, &vc, scale);
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (qc, kc, vc, out.clone(), lse, scale);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        // One contiguous copy of each input serves forward and backward.
        let (xc, wc) = (f32s(x.primitive()), f32s(weight.primitive()));
        let (y, rstd) = rms_norm_forward(&xc, &wc, eps);
        match RmsNormBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (xc, wc, rstd);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (gc, uc) = (f32s(gate.primitive()), f32s(up.primitive()));
        let out = swiglu_forward(&gc, &uc);
        match SwigluBackward
            .prepare::<C>([gate.node(), up.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (gc, uc);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_head_nll(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let (hc, wc) = (f32s(hidden.primitive()), head_weight(weight.primitive()));
        // A frozen head (every adapter method) gets its hidden-state gradient
        // now, while each block of logits is at hand; a training head needs
        // the upstream gradient for its own, so backward recomputes.
        let eager = hidden.is_tracked() && !weight.is_tracked();
        let (loss, dh) = head_nll_forward(&hc, &wc, &targets, eager);
        match HeadNllBackward
            .prepare::<C>([hidden.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = match dh {
                    Some(dh) => HeadNllState::Eager { dh },
                    None => HeadNllState::Recompute(Box::new(HeadInputs {
                        hidden: hc,
                        weight: wc,
                        targets,
                    })),
                };
                prep.finish(state, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(loss),
        }
    }

    fn fused_nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let lc = f32s(logits.primitive());
        let (loss, lse) = nll_forward(&lc, &targets);
        match NllBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (lc, targets, lse);
                drop(logits);
                prep.finish(state, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(loss),
        }
    }
}
