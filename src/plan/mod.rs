//! What a run will cost before it starts: trainable parameters and a
//! memory estimate, from config.json and the safetensors headers alone (no
//! weight is loaded), so the wizard can update it as the rank changes.

mod fit;

pub use fit::{Fit, Suggestion};

use serde::Serialize;
use thiserror::Error;

use crate::config::{BackendName, ConfigError, RunConfig};
use crate::methods::{LINEAR_MODULES, MemoryTerms, MethodError, linear_shape};
use crate::model::{ModelConfig, ModelError, ModelSummary, precision};

/// Trainable and total parameters, and the memory a training step needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub trainable_params: u64,
    /// Base parameters plus any the method adds.
    pub total_params: u64,
    pub memory: MemoryEstimate,
    /// The estimate against this machine's RAM, for CPU runs where the
    /// platform reports it (burn does not report GPU memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit: Option<Fit>,
}

/// Bytes, by what holds them. Tunesmith computes in f32: activations,
/// gradients and optimizer state are 4 bytes a value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEstimate {
    /// The base model's weights as held: `model.dtype`, and the linear
    /// layers' blocks under `model.quantize`.
    pub weights: u64,
    /// Weights the method adds (LoRA's A and B); 0 for full fine-tuning,
    /// whose trained weights are the base weights.
    pub trainable: u64,
    /// One gradient per trainable parameter, twice over while a second
    /// micro-batch's gradients are added to the first's.
    pub gradients: u64,
    /// AdamW's two moments per trainable parameter.
    pub optimizer: u64,
    /// What the forward pass keeps for the backward pass at
    /// `train.micro_batch` x `data.max_length` tokens (the largest batch a
    /// run sees), the loss's logits and dequantized weights included.
    pub activations: u64,
    /// The process itself: code, tokenizer, dataset and allocator slack.
    pub runtime: u64,
    /// Held for a moment while the weights load (one tensor decoded
    /// before it is stored); the step's memory comes after, so the peak is
    /// the larger of the two.
    pub loading: u64,
    /// Host copies of the trained values and the optimizer's moments while
    /// a checkpoint is written (between steps, when no activation exists).
    pub checkpointing: u64,
    /// `runtime + weights + trainable + optimizer + max(loading,
    /// gradients + activations, checkpointing)`.
    pub total: u64,
    /// Whether the activations assume the fused CPU kernels (no
    /// [positions, vocab] logits, no attention matrix) or burn's composed
    /// ops (GPU backends).
    pub cpu_kernels: bool,
}

impl MemoryEstimate {
    /// Sets `total` from the parts (see its doc).
    fn totalled(mut self) -> Self {
        let held = self.runtime + self.weights + self.trainable + self.optimizer;
        let step = self.gradients + self.activations;
        self.total = held + self.loading.max(step).max(self.checkpointing);
        self
    }
}

/// Why no estimate could be made.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Method(#[from] MethodError),
}

const F32: u64 = 4;
/// What the process holds besides the model and the step (measured: the
/// binary, its libraries and the allocator's arenas at the first step).
const RUNTIME: u64 = 96 << 20;
/// The fused CPU head holds at most this many bytes of logits at a time
/// (kernels/src/head.rs).
const HEAD_BLOCK: u64 = 128 << 20;

/// Estimates `config`'s run. Checks the config's values and the method
/// against the model (a rank too large, an unknown module is an error
/// here, as it would be at start), but reads no dataset. The backend is
/// taken from `model.backend`; `auto` counts as the CPU when no GPU backend
/// is compiled in.
pub fn estimate(config: &RunConfig) -> Result<Estimate, PlanError> {
    config.validate()?;
    let model = ModelConfig::from_dir(&config.model.path)?;
    let summary = ModelSummary::from_dir(&config.model.path)?;
    let cpu = match config.model.backend {
        BackendName::Cpu => true,
        BackendName::Auto => !cfg!(any(feature = "wgpu", feature = "cuda")),
        BackendName::Wgpu | BackendName::Cuda => false,
    };
    let mut estimate = estimate_for(config, &model, &summary, cpu)?;
    if cpu && let Some(memory) = crate::memory::system_memory() {
        estimate.fit = Some(fit::judge(config, &estimate, memory, |c| {
            estimate_for(c, &model, &summary, cpu).ok()
        }));
    }
    Ok(estimate)
}

/// [`estimate`] for an already read model, on the CPU kernels (`cpu`) or
/// a GPU backend.
pub fn estimate_for(
    config: &RunConfig,
    model: &ModelConfig,
    summary: &ModelSummary,
    cpu: bool,
) -> Result<Estimate, PlanError> {
    let method = config.method.method();
    method.validate(model)?;
    let trainable_params = method.trainable_params(model);
    let terms = method.memory_terms(model);
    let added = terms.added_params;
    // Frozen weights in their storage dtype, trained ones as f32 masters.
    // The CPU holds every 16-bit type (see `precision::storage_dtype`).
    let stored = precision::requested_half(config.model.dtype, model.declared_dtype.as_deref())
        .map_or(F32, |d| burn::tensor::DType::from(d).size() as u64);
    let frozen = summary.parameters.saturating_sub(terms.trained_base_params);
    // Quantized linear weights: codes plus an f32 scale per block.
    let quantize = config.model.quantize.format();
    let linear = linear_params(model);
    let quantized_bytes = quantize.map_or(0, |f| (linear as f64 * f.bytes_per_value()) as u64);
    let dense_frozen = if quantize.is_some() {
        frozen - linear
    } else {
        frozen
    };
    let weights = quantized_bytes + dense_frozen * stored + (summary.parameters - frozen) * F32;
    let trainable = added * F32;
    let accumulating = config.train.grad_accum > 1;
    let gradients = trainable_params * F32 * if accumulating { 2 } else { 1 };
    // AdamW's two moments, and what a method's hooks keep per value (AdaLoRA).
    let optimizer = (2 * trainable_params + terms.state_values) * F32;
    // A 16-bit frozen head is widened to f32 for the loss: one more copy of
    // it while the loss is computed (kept until backward off the CPU).
    let head_frozen = terms.head_frozen;
    let head_widened = if stored < F32 && head_frozen {
        model.vocab_size as u64 * model.hidden_size as u64 * F32
    } else {
        0
    };
    let activations = activation_bytes(config, model, cpu, head_widened, &terms)
        + dequantized(config, model, cpu);
    let (h, i) = (model.hidden_size as u64, model.intermediate_size as u64);
    let largest = (model.vocab_size as u64 * h).max(i * h);
    let loading = largest * F32;
    let checkpointing = 3 * trainable_params * F32;
    Ok(Estimate {
        trainable_params,
        total_params: summary.parameters + added,
        memory: MemoryEstimate {
            weights,
            trainable,
            gradients,
            optimizer,
            activations,
            runtime: RUNTIME,
            loading,
            checkpointing,
            total: 0,
            cpu_kernels: cpu,
        }
        .totalled(),
        fit: None,
    })
}

/// Parameters of the decoder blocks' linear weights (what `model.quantize`
/// quantizes).
fn linear_params(model: &ModelConfig) -> u64 {
    let per_layer: usize = LINEAR_MODULES
        .iter()
        .filter_map(|m| linear_shape(model, m))
        .map(|(i, o)| i * o)
        .sum();
    (per_layer * model.num_layers) as u64
}

/// Dense f32 copies of quantized weights during the step. The CPU kernel
/// dequantizes one weight per product and frees it; elsewhere autodiff
/// keeps every layer's dequantized weights for backward, one layer's
/// with gradient checkpointing.
fn dequantized(config: &RunConfig, model: &ModelConfig, cpu: bool) -> u64 {
    if config.model.quantize.format().is_none() {
        return 0;
    }
    let largest = LINEAR_MODULES
        .iter()
        .filter_map(|m| linear_shape(model, m))
        .map(|(i, o)| (i * o) as u64)
        .max()
        .unwrap_or(0);
    if cpu {
        return largest * F32;
    }
    let layer = linear_params(model) / model.num_layers.max(1) as u64;
    let layers = if config.train.gradient_checkpointing {
        1
    } else {
        model.num_layers as u64
    };
    layers * layer * F32
}

/// Values (f32) one decoder layer keeps per token for backward, with the
/// method's own `method_values`.
fn layer_values(config: &RunConfig, model: &ModelConfig, cpu: bool, method_values: u64) -> u64 {
    let len = config.data.max_length as u64;
    let h = model.hidden_size as u64;
    let q = (model.num_heads * model.head_dim) as u64;
    let kv = (model.num_kv_heads * model.head_dim) as u64;
    let i = model.intermediate_size as u64;
    let heads = model.num_heads as u64;
    // The residual input, both norms' outputs, the attention output and the
    // residual after attention; q/k/v as attention reads them and the
    // attention output laid out for o_proj; the MLP's gate, up and product.
    let mut values = 4 * h + 3 * q + 2 * kv + 3 * i + method_values;
    if !cpu {
        // Composed attention: scores and probabilities per head and key,
        // and the repeated keys and values of grouped-query attention.
        values += 2 * heads * len + 2 * q;
    }
    values
}

/// What the forward pass keeps for backward, at the run's largest batch,
/// with `head_widened` bytes of f32 head copy while the loss runs. On the
/// CPU the fused head keeps a hidden-state gradient per position and one
/// block of logits at a time; the composed head keeps the logits three
/// times (logits, log-softmax, their gradient). Without checkpointing
/// every layer's values are alive while the head runs. With it only each
/// layer's input is kept, and the head's peak and one layer's recompute
/// come one after the other, so the larger of the two counts (measured:
/// adding both over-estimated SmolLM2 at 4 x 512 by 15-19%). Packing adds
/// its dense mask.
fn activation_bytes(
    config: &RunConfig,
    model: &ModelConfig,
    cpu: bool,
    head_widened: u64,
    terms: &MemoryTerms,
) -> u64 {
    let len = config.data.max_length as u64;
    let tokens = config.train.micro_batch as u64 * len;
    let h = model.hidden_size as u64;
    let layers = model.num_layers as u64;
    let layer =
        (tokens * layer_values(config, model, cpu, terms.layer_values) + terms.layer_fixed) * F32;
    let vocab = model.vocab_size as u64;
    let head = if cpu {
        tokens * 2 * h * F32 + HEAD_BLOCK.min(tokens * vocab * F32)
    } else {
        tokens * (2 * h + 3 * vocab) * F32
    } + head_widened;
    let mask = if config.data.packing {
        config.train.micro_batch as u64 * len * len * F32
    } else {
        0
    };
    let step = if config.train.gradient_checkpointing {
        tokens * layers * h * F32 + layer.max(head)
    } else {
        layers * layer + head
    };
    step + mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Quantize;
    use crate::methods::{FullConfig, LoraConfig, MethodConfig};

    fn quickstart() -> RunConfig {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        RunConfig::load(&root.join("presets/quickstart.toml"), &[]).unwrap()
    }

    #[test]
    fn lora_parameters_grow_with_rank_and_match_the_run() {
        let mut config = quickstart();
        let e16 = estimate(&config).unwrap();
        // What the quickstart run's `started` event reports.
        assert_eq!(e16.trainable_params, 147_968);
        assert_eq!(e16.total_params, 988_288 + 147_968);
        let MethodConfig::Lora(l) = &mut config.method else {
            panic!("quickstart is LoRA")
        };
        l.rank = 8;
        let e8 = estimate(&config).unwrap();
        assert_eq!(e8.trainable_params * 2, e16.trainable_params);
        assert_eq!(e8.memory.weights, e16.memory.weights);
        assert!(e8.memory.activations < e16.memory.activations);
        assert_eq!(e8.memory.optimizer, 2 * e8.memory.gradients);
        let m = &e8.memory;
        let held = m.runtime + m.weights + m.trainable + m.optimizer;
        let peak = (m.gradients + m.activations)
            .max(m.loading)
            .max(m.checkpointing);
        assert_eq!(m.total, held + peak);
    }

    #[test]
    fn full_fine_tuning_trains_the_base_weights() {
        let mut config = quickstart();
        config.method = MethodConfig::Full(FullConfig::default());
        let e = estimate(&config).unwrap();
        assert_eq!(e.total_params, 988_288);
        assert_eq!(e.memory.trainable, 0);
        assert!(e.trainable_params > 900_000, "{}", e.trainable_params);
        assert_eq!(e.memory.gradients, e.trainable_params * 4);
    }

    #[test]
    fn longer_sequences_and_packing_cost_activations() {
        let mut config = quickstart();
        let short = estimate(&config).unwrap().memory.activations;
        config.data.max_length *= 2;
        let long = estimate(&config).unwrap().memory.activations;
        assert!(long > 2 * short, "attention rows grow with length too");
        config.data.packing = true;
        assert!(estimate(&config).unwrap().memory.activations > long);
    }

    #[test]
    fn a_quantized_base_holds_its_linear_layers_in_blocks() {
        let mut config = quickstart();
        let dense = estimate(&config).unwrap().memory;
        let model = ModelConfig::from_dir(&config.model.path).unwrap();
        let linear = linear_params(&model);
        for (quantize, bytes_per_weight) in [
            (Quantize::Q8_0, 1.125),
            (Quantize::Q4_0, 0.625),
            (Quantize::Nf4, 0.5625),
        ] {
            config.model.quantize = quantize;
            let q = estimate(&config).unwrap().memory;
            let saved = (linear as f64 * (4.0 - bytes_per_weight)) as u64;
            assert_eq!(dense.weights - q.weights, saved, "{quantize:?}");
            // The CPU kernel holds the largest weight dense while it runs.
            assert!(q.activations > dense.activations, "{quantize:?}");
        }
        // Full fine-tuning trains those weights: refused, naming the key.
        config.method = MethodConfig::Full(FullConfig::default());
        let e = estimate(&config).unwrap_err().to_string();
        assert!(e.contains("model.quantize"), "{e}");
    }

    #[test]
    fn dora_keeps_two_output_widths_per_adapted_layer_for_backward() {
        let mut config = quickstart();
        let lora = estimate(&config).unwrap();
        let MethodConfig::Lora(l) = &mut config.method else {
            panic!("quickstart is LoRA")
        };
        l.use_dora = true;
        let dora = estimate(&config).unwrap();
        let model = ModelConfig::from_dir(&config.model.path).unwrap();
        let outs: u64 = LINEAR_MODULES
            .iter()
            .filter_map(|m| linear_shape(&model, m))
            .map(|(_, o)| o as u64)
            .sum();
        assert_eq!(
            dora.trainable_params - lora.trainable_params,
            outs * model.num_layers as u64
        );
        let tokens = (config.train.micro_batch * config.data.max_length) as u64;
        assert_eq!(
            dora.memory.activations - lora.memory.activations,
            tokens * model.num_layers as u64 * 2 * outs * F32
        );
    }

    #[test]
    fn a_bad_method_is_an_error_naming_the_key() {
        let mut config = quickstart();
        config.method = MethodConfig::Lora(LoraConfig {
            rank: 100_000,
            ..LoraConfig::default()
        });
        let e = estimate(&config).unwrap_err().to_string();
        assert!(e.contains("method.rank"), "{e}");
        config.model.path = "/nonexistent".into();
        assert!(estimate(&config).is_err());
    }
}
