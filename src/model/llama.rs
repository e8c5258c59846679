//! The Llama-family decoder: one module tree covers llama, mistral, qwen2
//! and qwen3, switched by config flags.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use super::layers::{Linear, RmsNorm};
use super::precision::{self, Storage};
use super::quant::QuantizedWeight;
use super::rope::{self, Rope};
use super::weights::WeightSource;
use super::{ModelConfig, ModelError};

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

/// A causal language model loaded from an HF folder.
#[derive(Module, Debug)]
pub struct CausalLm {
    /// [vocab, hidden], as in the checkpoint.
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// [hidden, vocab]; `None` when tied to the embeddings.
    pub lm_head: Option<Param<Tensor<2>>>,
    /// Position handling, fixed by the config; not a parameter.
    #[module(skip)]
    pub positions: Positions,
}

/// Rope frequencies and the attention window of a model.
#[derive(Debug, Clone)]
pub struct Positions {
    rope: Rope,
    sliding_window: Option<usize>,
}

/// Keys and values of past positions, one entry per layer, after rope.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What every decoder layer of one forward pass shares: rope tables, the
/// attention mask and how dropout is drawn.
#[derive(Debug, Clone)]
pub struct LayerContext {
    /// [batch or 1, 1, len, head_dim]
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// Additive mask [batch or 1, 1, len, past+len], absent when nothing is
    /// masked.
    mask: Option<Tensor<4>>,
    /// True when `mask` hides exactly the future: no cache, no packing, no
    /// sliding window in reach. Then a fused causal attention may run.
    plain_causal: bool,
    dropout: Dropout,
}

/// How the adapters' dropout is drawn in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropout {
    /// Only where gradients are tracked, from the backend's current random
    /// stream (evaluation and generation run untracked, so without it).
    WhenTracked,
    /// In every layer, tracked or not, with the backend's random stream
    /// reseeded from this seed and the layer's index before each layer: a
    /// layer recomputed in backward draws the very masks it drew in forward.
    Seeded(u64),
}

impl LayerContext {
    /// The same context on the backend without autodiff (for a forward pass
    /// that keeps nothing for backward).
    pub fn untracked(&self) -> Self {
        let plain = |t: &Tensor<4>| t.clone().inner();
        Self {
            cos: plain(&self.cos),
            sin: plain(&self.sin),
            mask: self.mask.as_ref().map(plain),
            plain_causal: self.plain_causal,
            dropout: self.dropout,
        }
    }

    /// Whether layer `layer` applies dropout to input `x`; reseeds the
    /// backend's stream first when the masks are seeded.
    fn dropout_for(&self, layer: usize, x: &Tensor<3>) -> bool {
        match self.dropout {
            Dropout::WhenTracked => x.is_autodiff(),
            Dropout::Seeded(seed) => {
                let mixed = (seed ^ (layer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .wrapping_mul(0xBF58_476D_1CE4_E5B9);
                x.device().seed(mixed);
                true
            }
        }
    }
}

/// Per-forward state: the shared context, the optional KV cache and the
/// optional observer of the linear layers' inputs.
struct Step<'a> {
    ctx: LayerContext,
    cache: Option<&'a mut KvCache>,
    tap: Option<&'a mut dyn FnMut(usize, LinearInput, Tensor<3>)>,
}

impl Step<'_> {
    /// A step without cache or tap.
    fn plain(ctx: LayerContext) -> Self {
        Step {
            ctx,
            cache: None,
            tap: None,
        }
    }

    fn tap(&mut self, layer: usize, input: LinearInput, x: &Tensor<3>) {
        if let Some(tap) = self.tap.as_deref_mut() {
            tap(layer, input, x.clone());
        }
    }
}

/// The input a decoder linear layer reads: layers that share one read the
/// same tensor (q/k/v the normed residual, gate/up the normed residual after
/// attention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinearInput {
    /// q_proj, k_proj, v_proj.
    Attention,
    /// o_proj: the attention's output.
    AttentionOutput,
    /// gate_proj, up_proj.
    Mlp,
    /// down_proj: the gated product.
    MlpHidden,
}

impl LinearInput {
    /// The input of the linear module `leaf` (`q_proj`...).
    pub fn of(leaf: &str) -> Option<Self> {
        Some(match leaf {
            "q_proj" | "k_proj" | "v_proj" => Self::Attention,
            "o_proj" => Self::AttentionOutput,
            "gate_proj" | "up_proj" => Self::Mlp,
            "down_proj" => Self::MlpHidden,
            _ => return None,
        })
    }
}

impl Attention {
    fn forward(&self, x: Tensor<3>, layer: usize, step: &mut Step, dropout: bool) -> Tensor<3> {
        let [b, t, _] = x.dims();
        step.tap(layer, LinearInput::Attention, &x);
        let attended = self.attend(x, layer, step, dropout);
        let attended = attended
            .swap_dims(1, 2)
            .reshape([b, t, self.num_heads * self.head_dim]);
        step.tap(layer, LinearInput::AttentionOutput, &attended);
        self.o_proj.forward_with(attended, dropout)
    }

    /// The attention's output per head [batch, heads, len, head_dim],
    /// before o_proj.
    fn attend(&self, x: Tensor<3>, layer: usize, step: &mut Step, dropout: bool) -> Tensor<4> {
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
        let mut q = heads(self.q_proj.forward_with(x.clone(), dropout), nh);
        let mut k = heads(self.k_proj.forward_with(x.clone(), dropout), nkv);
        let mut v = heads(self.v_proj.forward_with(x, dropout), nkv);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        q = rope::apply(q, &step.ctx.cos, &step.ctx.sin);
        k = rope::apply(k, &step.ctx.cos, &step.ctx.sin);
        if let Some(cache) = step.cache.as_deref_mut() {
            if cache.layers.len() <= layer {
                cache.layers.resize_with(layer + 1, || None);
            }
            if let Some((pk, pv)) = cache.layers[layer].take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            cache.layers[layer] = Some((k.clone(), v.clone()));
        }
        if step.ctx.plain_causal && tunesmith_kernels::fused(&q) {
            return tunesmith_kernels::causal_attention(q, k, v);
        }
        let k = repeat_kv(k, nh / nkv);
        let v = repeat_kv(v, nh / nkv);
        if !q.is_autodiff() && !tunesmith_kernels::on_cpu(&q.device()) {
            // Evaluation and generation on GPU backends: burn's fused
            // attention (flash attention on cubecl) never holds the scores.
            let (tq, tk) = (t, k.dims()[2]);
            let (mask, is_causal) = if step.ctx.plain_causal {
                (None, true)
            } else {
                let hidden = |m: &Tensor<4>| m.clone().lower_elem(-1e29).expand([b, nh, tq, tk]);
                (step.ctx.mask.as_ref().map(hidden), false)
            };
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal,
            };
            return attention(q, k, v, mask, None, options);
        }
        let mut scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt());
        if let Some(mask) = &step.ctx.mask {
            scores = scores + mask.clone();
        }
        softmax_last(scores).matmul(v)
    }
}

/// Softmax over the last dimension as the same elementwise ops on every
/// backend, tracked or not. burn's `softmax` is one SIMD kernel on the CPU
/// but these ops under autodiff, which round differently: a layer
/// recomputed in backward (gradient checkpointing) must compute exactly
/// what its untracked first pass computed.
fn softmax_last(scores: Tensor<4>) -> Tensor<4> {
    let max = scores.clone().detach().max_dim(3);
    let exp = (scores - max).exp();
    exp.clone() / exp.sum_dim(3)
}

/// Grouped-query attention: each KV head serves `rep` query heads in a row,
/// as transformers' `repeat_kv` lays them out.
fn repeat_kv(x: Tensor<4>, rep: usize) -> Tensor<4> {
    if rep == 1 {
        return x;
    }
    let [b, n, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, n, rep, t, d])
        .reshape([b, n * rep, t, d])
}

impl Mlp {
    fn forward(&self, x: Tensor<3>, layer: usize, step: &mut Step, dropout: bool) -> Tensor<3> {
        step.tap(layer, LinearInput::Mlp, &x);
        let gate = self.gate_proj.forward_with(x.clone(), dropout);
        let up = self.up_proj.forward_with(x, dropout);
        let hidden = if tunesmith_kernels::fused(&gate) {
            tunesmith_kernels::swiglu(gate, up)
        } else {
            silu(gate) * up
        };
        step.tap(layer, LinearInput::MlpHidden, &hidden);
        self.down_proj.forward_with(hidden, dropout)
    }
}

impl DecoderLayer {
    fn forward(&self, x: Tensor<3>, layer: usize, step: &mut Step) -> Tensor<3> {
        let dropout = step.ctx.dropout_for(layer, &x);
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), layer, step, dropout);
        let normed = self.post_attention_layernorm.forward(h.clone());
        h + self.mlp.forward(normed, layer, step, dropout)
    }
}

/// Token layout of a batch of packed sequences, row-major [batch, len].
#[derive(Debug, Clone, PartialEq)]
pub struct Packing {
    /// Position of each token within its own example.
    pub positions: Vec<usize>,
    /// Which example of its row each token belongs to; tokens attend only
    /// within their example.
    pub segments: Vec<u32>,
}

/// Block-diagonal causal mask [batch, 1, len, len] of packed rows.
fn packed_mask(
    packing: &Packing,
    [batch, len]: [usize; 2],
    window: Option<usize>,
    device: &Device,
) -> Tensor<4> {
    let mut data = vec![0f32; batch * len * len];
    for b in 0..batch {
        let seg = &packing.segments[b * len..(b + 1) * len];
        let pos = &packing.positions[b * len..(b + 1) * len];
        for i in 0..len {
            for j in 0..len {
                let hidden = j > i
                    || seg[j] != seg[i]
                    || window.is_some_and(|w| pos[i] - pos[j].min(pos[i]) >= w);
                if hidden {
                    data[(b * len + i) * len + j] = -1e30;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [batch, 1, len, len]), device)
}

/// The additive causal mask for `len` new positions after `past` cached
/// ones, with an optional sliding window (Mistral): query i sees key j when
/// j <= i and i - j < window.
fn causal_mask(
    past: usize,
    len: usize,
    window: Option<usize>,
    device: &Device,
) -> Option<Tensor<4>> {
    let total = past + len;
    let windowed = window.is_some_and(|w| total > w);
    if len == 1 && !windowed {
        return None;
    }
    let mut data = vec![0f32; len * total];
    for i in 0..len {
        let qi = past + i;
        for j in 0..total {
            let hidden = j > qi || window.is_some_and(|w| qi - j.min(qi) >= w);
            if hidden {
                // A large finite value instead of -inf keeps a fully masked
                // row from turning into NaN.
                data[i * total + j] = -1e30;
            }
        }
    }
    Some(Tensor::from_data(
        TensorData::new(data, [1, 1, len, total]),
        device,
    ))
}

impl CausalLm {
    /// Loads config.json and the safetensors weights of `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, ModelConfig), ModelError> {
        Self::load_stored(dir, device, Storage::dense(DType::F32))
    }

    /// [`CausalLm::load`] with the embeddings, the linear layers and the
    /// head stored as `storage` says (f32, bf16 or f16, see `precision`;
    /// the linear layers block-quantized, see `quant`). Norms and biases
    /// stay f32.
    pub fn load_stored(
        dir: &Path,
        device: &Device,
        storage: Storage,
    ) -> Result<(Self, ModelConfig), ModelError> {
        let config = ModelConfig::from_dir(dir)?;
        if let Some(format) = storage.quantize {
            super::quant::check_shapes(&config, format)?;
        }
        let weights = WeightSource::open(dir)?;
        let model = Loader::new(&weights, &config, device, storage).load()?;
        Ok((model, config))
    }

    /// Logits [batch, len, vocab] for token ids [batch, len]. With a cache,
    /// the tokens continue the cached positions and the cache is extended.
    pub fn forward(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        let hidden = self.hidden_states(tokens, cache);
        self.logits(hidden)
    }

    /// Logits [batch, vocab] of the last position only (generation).
    pub fn forward_last(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<2> {
        let hidden = self.hidden_states(tokens, cache);
        let [b, t, _] = hidden.dims();
        let last = hidden.narrow(1, t - 1, 1);
        self.logits(last).reshape([b, self.vocab_size()])
    }

    /// Final hidden states [batch, len, hidden] after the last norm.
    pub fn hidden_states(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        let past = cache.as_ref().map_or(0, |c| c.len);
        let ctx = self.context(&tokens, past, cache.is_none(), Dropout::WhenTracked);
        self.run_layers(
            tokens,
            Step {
                ctx,
                cache,
                tap: None,
            },
        )
    }

    /// Final hidden states of packed sequences: each token attends only to
    /// the earlier tokens of its own example and is rotated by its position
    /// within that example, so a packed row computes exactly what its
    /// examples compute one by one.
    pub fn hidden_states_packed(&self, tokens: Tensor<2, Int>, packing: &Packing) -> Tensor<3> {
        let ctx = self.packed_context(&tokens, packing, Dropout::WhenTracked);
        self.run_layers(tokens, Step::plain(ctx))
    }

    /// Final hidden states of a training batch (packed or not), dropout
    /// drawn as `dropout` says.
    pub fn hidden_states_train(
        &self,
        tokens: Tensor<2, Int>,
        packing: Option<&Packing>,
        dropout: Dropout,
    ) -> Tensor<3> {
        let ctx = self.layer_context(&tokens, packing, dropout);
        self.run_layers(tokens, Step::plain(ctx))
    }

    /// Runs `tokens` [batch, len] through the decoder (no cache, no dropout)
    /// and hands each linear layer's input to `tap` as (layer, which input,
    /// [batch, len, in]); inputs that several layers share come once (see
    /// [`LinearInput`]). For data-aware methods' preparation (CorDA's
    /// covariances).
    pub fn trace_linear_inputs(
        &self,
        tokens: Tensor<2, Int>,
        tap: &mut dyn FnMut(usize, LinearInput, Tensor<3>),
    ) {
        let ctx = self.context(&tokens, 0, true, Dropout::WhenTracked);
        let step = Step {
            ctx,
            cache: None,
            tap: Some(tap),
        };
        self.run_layers(tokens, step);
    }

    /// The context the decoder layers share for a batch without a cache
    /// (see [`CausalLm::layer`]).
    pub fn layer_context(
        &self,
        tokens: &Tensor<2, Int>,
        packing: Option<&Packing>,
        dropout: Dropout,
    ) -> LayerContext {
        match packing {
            Some(packing) => self.packed_context(tokens, packing, dropout),
            None => self.context(tokens, 0, true, dropout),
        }
    }

    fn context(
        &self,
        tokens: &Tensor<2, Int>,
        past: usize,
        uncached: bool,
        dropout: Dropout,
    ) -> LayerContext {
        let device = tokens.device();
        let [_, len] = tokens.dims();
        let (cos, sin) = self.positions.rope.tables(past, len, &device);
        let window = self.positions.sliding_window;
        LayerContext {
            cos,
            sin,
            mask: causal_mask(past, len, window, &device),
            plain_causal: uncached && window.is_none_or(|w| len <= w),
            dropout,
        }
    }

    fn packed_context(
        &self,
        tokens: &Tensor<2, Int>,
        packing: &Packing,
        dropout: Dropout,
    ) -> LayerContext {
        let device = tokens.device();
        let [batch, len] = tokens.dims();
        let (cos, sin) = self
            .positions
            .rope
            .tables_at(&packing.positions, [batch, len], &device);
        let mask = packed_mask(
            packing,
            [batch, len],
            self.positions.sliding_window,
            &device,
        );
        LayerContext {
            cos,
            sin,
            mask: Some(mask),
            plain_causal: false,
            dropout,
        }
    }

    /// Token embeddings [batch, len, hidden], the first layer's input.
    pub fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        precision::widen(embedding(self.embed_tokens.val(), tokens))
    }

    /// Decoder layer `index` on its input `x` (no cache).
    pub fn layer(&self, index: usize, x: Tensor<3>, ctx: &LayerContext) -> Tensor<3> {
        let mut step = Step {
            ctx: ctx.clone(),
            cache: None,
            tap: None,
        };
        self.layers[index].forward(x, index, &mut step)
    }

    /// The norm after the last layer.
    pub fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        self.norm.forward(x)
    }

    fn run_layers(&self, tokens: Tensor<2, Int>, mut step: Step) -> Tensor<3> {
        let [_, len] = tokens.dims();
        let mut x = self.embed(tokens);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, i, &mut step);
        }
        if let Some(cache) = step.cache {
            cache.len += len;
        }
        self.norm.forward(x)
    }

    fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, h] = hidden.dims();
        self.head(hidden.reshape([b * t, h]))
            .reshape([b, t, self.vocab_size()])
    }

    /// Logits [n, vocab] of final hidden states [n, hidden].
    pub fn head(&self, hidden: Tensor<2>) -> Tensor<2> {
        hidden.matmul(self.head_weight())
    }

    /// The output head as [hidden, vocab] in f32: `lm_head`, or the
    /// transposed embeddings when they are tied (a view, not a copy, of
    /// f32 weights; a widened copy of 16-bit ones).
    pub fn head_weight(&self) -> Tensor<2> {
        precision::widen(match &self.lm_head {
            Some(w) => w.val(),
            None => self.embed_tokens.val().transpose(),
        })
    }

    /// Every linear layer of the decoder with its HF name
    /// (`model.layers.3.self_attn.q_proj`), in checkpoint order.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::with_capacity(self.layers.len() * 7);
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let a = &mut layer.self_attn;
            let m = &mut layer.mlp;
            let named = [
                ("self_attn.q_proj", &mut a.q_proj),
                ("self_attn.k_proj", &mut a.k_proj),
                ("self_attn.v_proj", &mut a.v_proj),
                ("self_attn.o_proj", &mut a.o_proj),
                ("mlp.gate_proj", &mut m.gate_proj),
                ("mlp.up_proj", &mut m.up_proj),
                ("mlp.down_proj", &mut m.down_proj),
            ];
            for (name, linear) in named {
                out.push((format!("model.layers.{i}.{name}"), linear));
            }
        }
        out
    }

    /// [`CausalLm::linears_mut`], read-only.
    pub fn linears(&self) -> Vec<(String, &Linear)> {
        let mut out = Vec::with_capacity(self.layers.len() * 7);
        for (i, layer) in self.layers.iter().enumerate() {
            let (a, m) = (&layer.self_attn, &layer.mlp);
            let named = [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.o_proj", &a.o_proj),
                ("mlp.gate_proj", &m.gate_proj),
                ("mlp.up_proj", &m.up_proj),
                ("mlp.down_proj", &m.down_proj),
            ];
            for (name, linear) in named {
                out.push((format!("model.layers.{i}.{name}"), linear));
            }
        }
        out
    }

    /// Size of the output vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.dims()[0]
    }
}

/// Reads each expected tensor once, transposes linear weights to [in, out],
/// and reports tensors that the config does not account for.
struct Loader<'a> {
    weights: &'a WeightSource,
    config: &'a ModelConfig,
    device: &'a Device,
    /// How the embeddings, linear weights and head are held.
    storage: Storage,
    used: BTreeSet<String>,
}

impl<'a> Loader<'a> {
    fn new(
        weights: &'a WeightSource,
        config: &'a ModelConfig,
        device: &'a Device,
        storage: Storage,
    ) -> Self {
        Self {
            weights,
            config,
            device,
            storage,
            used: BTreeSet::new(),
        }
    }

    fn read(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let data = self
            .weights
            .read_f32(name, shape, self.config.model_type.as_str())?;
        self.used.insert(name.to_string());
        Ok(data)
    }

    fn tensor1(&mut self, name: &str, n: usize) -> Result<Param<Tensor<1>>, ModelError> {
        let data = self.read(name, &[n])?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(data, [n]),
            self.device,
        )))
    }

    /// An HF [out, in] matrix, stored transposed.
    fn matrix_t(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<2>, ModelError> {
        let data = self.read(name, &[out, inp])?;
        let mut t = vec![0f32; data.len()];
        for (o, row) in data.chunks_exact(inp).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                t[i * out + o] = v;
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(t, [inp, out]),
            (self.device, self.storage.dtype),
        ))
    }

    fn linear(
        &mut self,
        prefix: &str,
        inp: usize,
        out: usize,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        let bias = if bias {
            Some(self.tensor1(&format!("{prefix}.bias"), out)?)
        } else {
            None
        };
        let name = format!("{prefix}.weight");
        if let Some(format) = self.storage.quantize {
            // HF's [out, in] rows are the rows ggml quantizes.
            let data = self.read(&name, &[out, inp])?;
            let q = tunesmith_kernels::quant::quantize(&data, inp, format)
                .map_err(|_| super::quant::shape_error(format, prefix, inp))?;
            return Ok(Linear::quantized(
                QuantizedWeight::new(q, self.device),
                bias,
            ));
        }
        let weight = Param::from_tensor(self.matrix_t(&name, out, inp)?);
        Ok(Linear::new(weight, bias))
    }

    fn norm(&mut self, name: &str, dim: usize) -> Result<RmsNorm, ModelError> {
        Ok(RmsNorm {
            weight: self.tensor1(name, dim)?,
            eps: self.config.rms_norm_eps,
        })
    }

    fn load(mut self) -> Result<CausalLm, ModelError> {
        let c = self.config;
        let (h, hd) = (c.hidden_size, c.head_dim);
        let embed = self.read("model.embed_tokens.weight", &[c.vocab_size, h])?;
        let embed_tokens = Param::from_tensor(Tensor::from_data(
            TensorData::new(embed, [c.vocab_size, h]),
            (self.device, self.storage.dtype),
        ));
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let p = format!("model.layers.{i}");
            let a = format!("{p}.self_attn");
            let qk_norm = |s: &mut Self, which: &str| -> Result<Option<RmsNorm>, ModelError> {
                c.qk_norm
                    .then(|| s.norm(&format!("{a}.{which}.weight"), hd))
                    .transpose()
            };
            let self_attn = Attention {
                q_proj: self.linear(&format!("{a}.q_proj"), h, c.num_heads * hd, c.qkv_bias)?,
                k_proj: self.linear(&format!("{a}.k_proj"), h, c.num_kv_heads * hd, c.qkv_bias)?,
                v_proj: self.linear(&format!("{a}.v_proj"), h, c.num_kv_heads * hd, c.qkv_bias)?,
                o_proj: self.linear(&format!("{a}.o_proj"), c.num_heads * hd, h, c.o_bias)?,
                q_norm: qk_norm(&mut self, "q_norm")?,
                k_norm: qk_norm(&mut self, "k_norm")?,
                num_heads: c.num_heads,
                num_kv_heads: c.num_kv_heads,
                head_dim: hd,
            };
            let m = format!("{p}.mlp");
            let mlp = Mlp {
                gate_proj: self.linear(
                    &format!("{m}.gate_proj"),
                    h,
                    c.intermediate_size,
                    c.mlp_bias,
                )?,
                up_proj: self.linear(
                    &format!("{m}.up_proj"),
                    h,
                    c.intermediate_size,
                    c.mlp_bias,
                )?,
                down_proj: self.linear(
                    &format!("{m}.down_proj"),
                    c.intermediate_size,
                    h,
                    c.mlp_bias,
                )?,
            };
            layers.push(DecoderLayer {
                self_attn,
                mlp,
                input_layernorm: self.norm(&format!("{p}.input_layernorm.weight"), h)?,
                post_attention_layernorm: self
                    .norm(&format!("{p}.post_attention_layernorm.weight"), h)?,
            });
        }
        let norm = self.norm("model.norm.weight", h)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(Param::from_tensor(self.matrix_t(
                "lm_head.weight",
                c.vocab_size,
                h,
            )?))
        };
        self.check_leftovers()?;
        Ok(CausalLm {
            embed_tokens,
            layers,
            norm,
            lm_head,
            positions: Positions {
                rope: Rope::new(c),
                sliding_window: c.sliding_window,
            },
        })
    }

    /// Tensors nobody asked for mean the config and the weights disagree
    /// (more layers, biases the config did not announce...): refuse rather
    /// than silently compute something else.
    fn check_leftovers(&self) -> Result<(), ModelError> {
        for (name, info) in self.weights.tensors() {
            if self.used.contains(name) {
                continue;
            }
            // Rope buffers of old checkpoints are recomputed from the config;
            // a tied head saved anyway is ignored exactly as transformers does.
            let benign = name.ends_with("rotary_emb.inv_freq")
                || (name == "lm_head.weight" && self.config.tie_word_embeddings);
            if !benign {
                return Err(ModelError::UnexpectedTensor {
                    name: name.clone(),
                    path: self.weights.path_of(info).to_path_buf(),
                    model_type: self.config.model_type.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(past: usize, len: usize, window: Option<usize>) -> Vec<Vec<bool>> {
        let total = past + len;
        match causal_mask(past, len, window, &Device::flex()) {
            None => vec![vec![true; total]; len],
            Some(m) => m
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .chunks(total)
                .map(|r| r.iter().map(|&v| v == 0.0).collect())
                .collect(),
        }
    }

    #[test]
    fn causal_mask_hides_the_future() {
        let v = visible(0, 3, None);
        assert_eq!(v[0], [true, false, false]);
        assert_eq!(v[2], [true, true, true]);
    }

    #[test]
    fn sliding_window_hides_the_distant_past() {
        // Query 3 with a window of 2 sees keys 2 and 3 only.
        let v = visible(0, 4, Some(2));
        assert_eq!(v[3], [false, false, true, true]);
        // With a cache, a single new token is masked too once past the window.
        let v = visible(4, 1, Some(2));
        assert_eq!(v[0], [false, false, false, true, true]);
        assert_eq!(visible(1, 1, Some(8))[0], [true, true]);
    }
}
