//! What a run will cost before it starts: trainable parameters and a
//! memory estimate, from config.json and the safetensors headers alone (no
//! weight is loaded), so the wizard can update it as the rank changes.

use serde::Serialize;
use thiserror::Error;

use crate::config::{ConfigError, RunConfig};
use crate::methods::{LINEAR_MODULES, MethodConfig, MethodError, linear_shape};
use crate::model::{ModelConfig, ModelError, ModelSummary};

/// Trainable and total parameters, and the memory a training step needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub trainable_params: u64,
    /// Base parameters plus any the method adds.
    pub total_params: u64,
    pub memory: MemoryEstimate,
}

/// Bytes, by what holds them. Tunesmith computes in f32, so every number
/// is 4 bytes a value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEstimate {
    /// The base model's weights.
    pub weights: u64,
    /// Weights the method adds (LoRA's A and B); 0 for full fine-tuning,
    /// whose trained weights are the base weights.
    pub trainable: u64,
    /// One gradient per trainable parameter.
    pub gradients: u64,
    /// AdamW's two moments per trainable parameter.
    pub optimizer: u64,
    /// What the forward pass keeps for the backward pass at
    /// `train.micro_batch` x `data.max_length` tokens (the largest batch a
    /// run sees), logits included.
    pub activations: u64,
    pub total: u64,
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

/// Estimates `config`'s run. Checks the config's values and the method
/// against the model (a rank too large, an unknown module is an error
/// here, as it would be at start), but reads no dataset.
pub fn estimate(config: &RunConfig) -> Result<Estimate, PlanError> {
    config.validate()?;
    let model = ModelConfig::from_dir(&config.model.path)?;
    let summary = ModelSummary::from_dir(&config.model.path)?;
    let method = config.method.method();
    method.validate(&model)?;
    let trainable_params = method.trainable_params(&model);
    let full = matches!(config.method, MethodConfig::Full(_));
    let added = if full { 0 } else { trainable_params };
    let weights = summary.parameters * F32;
    let trainable = added * F32;
    let gradients = trainable_params * F32;
    let optimizer = 2 * trainable_params * F32;
    let activations = activation_bytes(config, &model);
    Ok(Estimate {
        trainable_params,
        total_params: summary.parameters + added,
        memory: MemoryEstimate {
            weights,
            trainable,
            gradients,
            optimizer,
            activations,
            total: weights + trainable + gradients + optimizer + activations,
        },
    })
}

/// Values the autodiff graph keeps per token: per layer the norms'
/// outputs, q/k/v, the attention probabilities (one row of `len` per
/// head), the attention and MLP outputs and the MLP's four intermediate
/// tensors, LoRA's rank-wide intermediates; then the logits three times
/// (logits, log-softmax, their gradient). Packing adds its dense mask.
fn activation_bytes(config: &RunConfig, model: &ModelConfig) -> u64 {
    let len = config.data.max_length as u64;
    let tokens = config.train.micro_batch as u64 * len;
    let h = model.hidden_size as u64;
    let kv = (model.num_kv_heads * model.head_dim) as u64;
    let i = model.intermediate_size as u64;
    let heads = model.num_heads as u64;
    let lora = match &config.method {
        MethodConfig::Lora(l) => {
            LINEAR_MODULES
                .iter()
                .filter(|m| l.target_modules.iter().any(|t| t == *m))
                .filter(|m| linear_shape(model, m).is_some())
                .count() as u64
                * l.rank as u64
        }
        MethodConfig::Full(_) => 0,
    };
    let per_layer = 8 * h + 2 * kv + 4 * i + heads * len + lora;
    let per_token = model.num_layers as u64 * per_layer + 3 * model.vocab_size as u64 + 2 * h;
    let mask = if config.data.packing {
        config.train.micro_batch as u64 * len * len
    } else {
        0
    };
    (tokens * per_token + mask) * F32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::{FullConfig, LoraConfig};

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
        assert_eq!(
            m.total,
            m.weights + m.trainable + m.gradients + m.optimizer + m.activations
        );
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
