//! Fine-tuning methods. Each method is one file: its TOML section, its
//! checks against the model's shapes, and how it turns a frozen base model
//! into the model to train. Methods that add weights beside a linear layer
//! (LoRA and its relatives) do so through [`Adapter`].

pub mod adalora;
pub mod catalog;
pub mod corda;
pub mod exported;
pub mod full;
pub mod hft;
pub mod hooks;
pub mod kasa;
pub mod lora;
pub mod miss;
pub mod svd;
pub mod triplets;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{CausalLm, Linear, ModelConfig};

pub use adalora::AdaloraConfig;
pub use exported::{ExportForm, LoraPair, ModuleTensors};
pub use full::FullConfig;
pub use hft::HftConfig;
pub use hooks::{HookNote, LossTerm, NoHooks, StepAt, TrainingHooks};
pub use kasa::KasaConfig;
pub use lora::{LoraAdapter, LoraConfig, LoraInit};
pub use miss::{MissAdapter, MissConfig, MissMode};
pub use triplets::TripletAdapter;

use crate::train::params::HostTensor;

/// Tensors a method keeps beside its trained parameters, by name: fixed at
/// preparation (PiSSA's initial pair) or moved by its hooks. Saved with
/// every checkpoint and handed back on resume and export, so a run resumes
/// and exports exactly.
pub type MethodState = BTreeMap<String, HostTensor>;

/// What [`Method::prepare`] works with besides the model.
pub struct PrepareContext<'a> {
    /// The run's seeded random stream (`train.seed`).
    pub rng: &'a mut StdRng,
    /// The state a checkpoint saved, when a run resumes or a trained run is
    /// loaded: the method rebuilds from it rather than computing it anew.
    pub saved: Option<&'a MethodState>,
    /// Progress of a long preparation: (done, total, what is being done).
    pub progress: &'a mut dyn FnMut(usize, usize, &str),
    /// Token ids of the calibration rows [`Method::calibration`] asked for
    /// (empty when it asks for none, or the run resumes).
    pub calibration: &'a [Vec<u32>],
}

/// Calibration rows a method's preparation runs through the model (CorDA).
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationRequest {
    /// How many rows (fewer when the data has fewer).
    pub rows: usize,
    /// The dataset file they come from; none = the run's training rows.
    pub data: Option<std::path::PathBuf>,
}

impl<'a> PrepareContext<'a> {
    /// A fresh preparation that reports no progress.
    pub fn fresh(rng: &'a mut StdRng, progress: &'a mut dyn FnMut(usize, usize, &str)) -> Self {
        Self {
            rng,
            saved: None,
            progress,
            calibration: &[],
        }
    }
}

/// A method's share of a training step's memory (see `plan::estimate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryTerms {
    /// Parameters added beside the base model (adapters), held in f32.
    pub added_params: u64,
    /// Base parameters trained in place: held as f32 masters rather than
    /// in the base's storage dtype.
    pub trained_base_params: u64,
    /// Values (f32) per token and decoder layer that backward keeps
    /// beyond what the frozen layer itself keeps.
    pub layer_values: u64,
    /// Values (f32) per decoder layer that backward keeps whatever the
    /// batch (Bone's weight-shaped updates).
    pub layer_fixed: u64,
    /// Values (f32) the method's training hooks hold on the device beside
    /// the parameters (AdaLoRA's sensitivity averages).
    pub state_values: u64,
    /// Whether the output head stays frozen (a 16-bit frozen head is
    /// widened to f32 for the loss).
    pub head_frozen: bool,
}

impl MemoryTerms {
    /// An adapter method's terms: `added_params` f32 parameters beside a
    /// frozen base (head included) and `layer_values` per token and layer.
    pub fn adapter(added_params: u64, layer_values: u64) -> Self {
        Self {
            added_params,
            trained_base_params: 0,
            layer_values,
            layer_fixed: 0,
            state_values: 0,
            head_frozen: true,
        }
    }

    /// The terms of a method that trains `params` of the base's own weights
    /// in place and adds nothing.
    pub fn trained_base(params: u64, head_frozen: bool) -> Self {
        Self {
            added_params: 0,
            trained_base_params: params,
            layer_values: 0,
            layer_fixed: 0,
            state_values: 0,
            head_frozen,
        }
    }
}

/// The model to train and the method's state to checkpoint with it.
pub struct PreparedModel {
    pub model: CausalLm,
    pub state: MethodState,
}

/// The linear layers of a decoder block, by their HF names.
pub const LINEAR_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// What a method needs from the training loop and the front ends.
pub trait Method {
    /// Short name (`lora`, `full`) used in logs and run names.
    fn name(&self) -> &'static str;

    /// Checks the method's settings against the model's shapes before any
    /// weight is loaded.
    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError>;

    /// Number of parameters the method trains on this model.
    fn trainable_params(&self, model: &ModelConfig) -> u64;

    /// Whether the method trains the base model's own weights (which then
    /// cannot be held quantized).
    fn trains_base_weights(&self) -> bool {
        false
    }

    /// The calibration rows its preparation needs, if any.
    fn calibration(&self) -> Option<CalibrationRequest> {
        None
    }

    /// Checks the method's settings against the run's planned number of
    /// optimizer steps (AdaLoRA's schedule must fit in it).
    fn check_steps(&self, _total_steps: usize) -> Result<(), MethodError> {
        Ok(())
    }

    /// The method's part in each training step of a run of `total_steps`
    /// on `model`; `saved` is the state a checkpoint saved when the run
    /// resumes.
    fn hooks(
        &self,
        _model: &ModelConfig,
        _total_steps: usize,
        _saved: Option<&MethodState>,
    ) -> Result<Box<dyn TrainingHooks>, MethodError> {
        Ok(Box::new(NoHooks))
    }

    /// What the method adds to a step's memory, for `plan::estimate`.
    fn memory_terms(&self, model: &ModelConfig) -> MemoryTerms;

    /// Why the base cannot be held quantized (`model.quantize`) under this
    /// method, if it cannot; the message names what to do instead.
    fn quantized_base_refusal(&self) -> Option<&'static str> {
        self.trains_base_weights().then_some(
            "a quantized base is frozen, and this method trains the base weights: \
             use an adapter method (method.kind = \"lora\") or model.quantize = \"none\"",
        )
    }

    /// Turns a freshly loaded model into the model to train: adds the
    /// method's parameters (initialised from `ctx.rng`, or rebuilt from
    /// `ctx.saved`) and marks exactly the trained parameters as requiring
    /// gradients; everything else is frozen so it gets neither gradients
    /// nor optimizer state.
    fn prepare(
        &self,
        model: CausalLm,
        ctx: &mut PrepareContext<'_>,
    ) -> Result<PreparedModel, MethodError>;

    /// The trained adapter as the exports write it, from each adapted
    /// module's checkpoint tensors (by HF module name,
    /// `model.layers.0.self_attn.q_proj`) and the method's saved state.
    /// Methods that add no adapter (full fine-tuning) export none.
    fn export_form(
        &self,
        _model: &ModelConfig,
        adapters: BTreeMap<String, ModuleTensors>,
        _state: &MethodState,
    ) -> Result<ExportForm, MethodError> {
        match adapters.into_keys().next() {
            Some(module) => Err(MethodError::Export {
                module,
                reason: format!("a {} run has no adapter there", self.name()),
            }),
            None => Ok(ExportForm::default()),
        }
    }

    /// [`Method::prepare`] from scratch without progress reports, keeping
    /// only the model (tests, benchmarks).
    fn prepare_fresh(&self, model: CausalLm, rng: &mut StdRng) -> Result<CausalLm, MethodError> {
        let mut quiet = |_: usize, _: usize, _: &str| {};
        let mut ctx = PrepareContext::fresh(rng, &mut quiet);
        Ok(self.prepare(model, &mut ctx)?.model)
    }
}

/// The `[method]` section of a run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MethodConfig {
    /// Train the base weights themselves.
    Full(FullConfig),
    /// Low-rank adapters beside frozen linear layers.
    Lora(LoraConfig),
    /// MiSS (and Bone, its weight-guided `bat` mode): shards of one small
    /// trained block shared across each layer's input.
    Miss(MissConfig),
    /// AdaLoRA: SVD-form adapters whose rank budget moves between layers
    /// during training.
    Adalora(AdaloraConfig),
    /// KaSA: the base without its smallest singular components, and an
    /// update in SVD form with two regularisers.
    Kasa(KasaConfig),
    /// HFT: full updates on a seeded random half of each layer's
    /// parameter groups.
    Hft(HftConfig),
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::Lora(LoraConfig::default())
    }
}

impl MethodConfig {
    /// The method behind this configuration.
    pub fn method(&self) -> &dyn Method {
        match self {
            MethodConfig::Full(c) => c,
            MethodConfig::Lora(c) => c,
            MethodConfig::Miss(c) => c,
            MethodConfig::Adalora(c) => c,
            MethodConfig::Kasa(c) => c,
            MethodConfig::Hft(c) => c,
        }
    }
}

/// Trainable weights attached to a linear layer. One variant per method
/// that needs them.
#[derive(Module, Debug)]
pub enum Adapter {
    Lora(LoraAdapter),
    Miss(MissAdapter),
    Adalora(TripletAdapter),
    Kasa(TripletAdapter),
}

impl Adapter {
    /// The layer's output given its input `x`, the frozen base output and
    /// the frozen layer itself (for methods whose update depends on its
    /// weight); `dropout` says whether training-time dropout applies.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<D>,
        base: Tensor<D>,
        layer: &Linear,
        dropout: bool,
    ) -> Tensor<D> {
        match self {
            Adapter::Lora(a) => a.forward(x, base, layer, dropout),
            Adapter::Miss(a) => a.forward(x, base, layer, dropout),
            Adapter::Adalora(a) | Adapter::Kasa(a) => a.forward(x, base, dropout),
        }
    }
}

/// A method setting that does not fit the model or makes no sense.
#[derive(Debug, Error, PartialEq)]
pub enum MethodError {
    #[error(
        "method.target_modules names `{name}`, which this {model_type} model does not have; \
         use some of: {available}"
    )]
    UnknownModule {
        name: String,
        model_type: String,
        available: String,
    },
    #[error(
        "method.target_modules is empty: name at least one module, e.g. [\"q_proj\", \"v_proj\"]"
    )]
    NoTargets,
    #[error(
        "method.rank = {rank} is larger than `{module}` allows ({inp} -> {out}); \
         use a rank of at most {max}"
    )]
    RankTooLarge {
        rank: usize,
        module: String,
        inp: usize,
        out: usize,
        max: usize,
    },
    #[error("method.{key} = {value} is invalid: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "method.{key} = {value} does not fit `{module}` ({inp} -> {out}): {reason}; \
         {fits} fits every target layer"
    )]
    Misfit {
        key: &'static str,
        value: usize,
        module: String,
        inp: usize,
        out: usize,
        reason: &'static str,
        fits: usize,
    },
    #[error(
        "method.tinit = {tinit} and method.tfinal = {tfinal} leave no steps to reallocate the \
         rank budget in a run of {total} optimizer steps: lower them (tinit + tfinal < {total}) \
         or train longer"
    )]
    Schedule {
        tinit: usize,
        tfinal: usize,
        total: usize,
    },
    #[error("method.layers lists layer {layer}, but the model has layers 0..{num_layers}")]
    NoSuchLayer { layer: usize, num_layers: usize },
    #[error("preparing {module} failed: {reason}")]
    Decomposition { module: String, reason: String },
    #[error("the checkpoint's adapter on {module} cannot be exported: {reason}")]
    Export { module: String, reason: String },
    #[error(
        "the run's saved method state `{key}` cannot be used: {reason} \
         (was the run's model or [method] section changed?)"
    )]
    State { key: String, reason: String },
}

/// Refuses an `alpha` (the update's scale numerator) that is not positive.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), MethodError> {
    if alpha.is_finite() && alpha > 0.0 {
        return Ok(());
    }
    Err(MethodError::Invalid {
        key: "alpha",
        value: alpha.to_string(),
        reason: "alpha must be a positive number (often twice the rank)",
    })
}

/// Refuses a dropout probability outside [0, 1).
pub(crate) fn check_dropout(dropout: f64) -> Result<(), MethodError> {
    if (0.0..1.0).contains(&dropout) {
        return Ok(());
    }
    Err(MethodError::Invalid {
        key: "dropout",
        value: dropout.to_string(),
        reason: "dropout is a probability in [0, 1)",
    })
}

/// The matrix a checkpoint's method state saved under `key`, which must
/// have `shape`.
pub(crate) fn saved_matrix(
    saved: &MethodState,
    key: String,
    shape: [usize; 2],
) -> Result<Vec<f32>, MethodError> {
    match saved.get(&key) {
        Some(t) if t.shape == shape => Ok(t.data.clone()),
        Some(t) => Err(MethodError::State {
            reason: format!("its shape is {:?}, the model needs {shape:?}", t.shape),
            key,
        }),
        None => Err(MethodError::State {
            key,
            reason: "it is missing".into(),
        }),
    }
}

/// (in, out) features of the linear module `name` (`q_proj`...) in this model.
pub fn linear_shape(model: &ModelConfig, name: &str) -> Option<(usize, usize)> {
    let (h, hd, i) = (model.hidden_size, model.head_dim, model.intermediate_size);
    Some(match name {
        "q_proj" => (h, model.num_heads * hd),
        "k_proj" | "v_proj" => (h, model.num_kv_heads * hd),
        "o_proj" => (model.num_heads * hd, h),
        "gate_proj" | "up_proj" => (h, i),
        "down_proj" => (i, h),
        _ => return None,
    })
}

/// The (in, out) features of each of `targets` in this model, refusing an
/// empty list or a module the model does not have.
pub(crate) fn target_shapes<'a>(
    model: &ModelConfig,
    targets: &'a [String],
) -> Result<Vec<(&'a str, usize, usize)>, MethodError> {
    if targets.is_empty() {
        return Err(MethodError::NoTargets);
    }
    targets
        .iter()
        .map(|name| match linear_shape(model, name) {
            Some((inp, out)) => Ok((name.as_str(), inp, out)),
            None => Err(MethodError::UnknownModule {
                name: name.clone(),
                model_type: model.model_type.to_string(),
                available: LINEAR_MODULES.join(", "),
            }),
        })
        .collect()
}

/// `per_module(in, out)` summed over `targets` and every decoder layer: a
/// method's parameter count.
pub(crate) fn over_layers(
    model: &ModelConfig,
    targets: &[String],
    per_module: impl Fn(usize, usize) -> usize,
) -> u64 {
    let per_layer: usize = targets
        .iter()
        .filter_map(|m| linear_shape(model, m))
        .map(|(i, o)| per_module(i, o))
        .sum();
    (per_layer * model.num_layers) as u64
}

/// Whether the linear layer `full_name` (`model.layers.3.mlp.up_proj`) is
/// one of `targets` (leaf names).
pub(crate) fn is_target(targets: &[String], full_name: &str) -> bool {
    let leaf = leaf_name(full_name);
    targets.iter().any(|t| t == leaf)
}

/// Training-time dropout with probability `p` on an adapter's input.
pub(crate) fn dropout_input<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    let keep = 1.0 - p;
    if tunesmith_kernels::fused(&x) {
        // The mask's seed comes from the backend's stream, so a layer
        // recomputed under checkpointing (which reseeds that stream) draws
        // the same mask again.
        let seed = stream_seed(&x.device());
        tunesmith_kernels::dropout(x, keep, seed)
    } else {
        let mask = x.random_like(burn::tensor::Distribution::Bernoulli(keep));
        x * mask / keep
    }
}

/// A 64-bit seed drawn from `device`'s random stream.
fn stream_seed(device: &burn::tensor::Device) -> u64 {
    use burn::tensor::{Distribution, Int};
    // Int tensors are i32 on some backends: three 30-bit draws.
    let draw = Tensor::<1, Int>::random([3], Distribution::Uniform(0.0, 2f64.powi(30)), device);
    let halves: Vec<i64> = draw
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap_or_default();
    halves
        .iter()
        .fold(0u64, |acc, &h| acc.rotate_left(30) ^ (h as u64))
}

/// Whether the linear layer called `full_name` (`model.layers.3.mlp.up_proj`)
/// is one of `modules` (leaf names).
pub(crate) fn leaf_name(full_name: &str) -> &str {
    full_name.rsplit('.').next().unwrap_or(full_name)
}
