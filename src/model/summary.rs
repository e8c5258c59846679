//! What `tunesmith model inspect` shows, read from headers only.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{ModelConfig, ModelError, RopeScaling, WeightSource};

/// A model folder at a glance, without loading any tensor data.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub model_type: String,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rope_scaling: String,
    pub tie_word_embeddings: bool,
    /// Parameters stored in the checkpoint.
    pub parameters: u64,
    /// Parameter count per storage dtype, e.g. {"BF16": 135_000_000}.
    pub dtypes: BTreeMap<String, u64>,
    /// Bytes of tensor data on disk.
    pub bytes_on_disk: u64,
    /// Bytes the weights take once loaded (Tunesmith computes in f32).
    pub bytes_loaded: u64,
    pub weight_files: usize,
    /// The file's own description, for a GGUF model.
    pub gguf: Option<crate::gguf::GgufSummary>,
}

impl ModelSummary {
    /// Reads config.json and the safetensors headers of `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let config = ModelConfig::from_dir(dir)?;
        let weights = WeightSource::open(dir)?;
        let gguf = match crate::gguf::locate(dir)? {
            Some(path) => Some(crate::gguf::GgufSummary::read(&path)?),
            None => None,
        };
        let mut parameters = 0u64;
        let mut bytes_on_disk = 0u64;
        let mut dtypes = BTreeMap::new();
        let mut files = std::collections::BTreeSet::new();
        for info in weights.tensors().values() {
            let n = info.numel() as u64;
            parameters += n;
            bytes_on_disk += info.bytes() as u64;
            *dtypes.entry(info.stored_as()).or_insert(0) += n;
            files.insert(weights.path_of(info).to_path_buf());
        }
        let rope_scaling = match &config.rope_scaling {
            RopeScaling::None => "none".to_string(),
            RopeScaling::Factors(f) => format!(
                "per-frequency factors (up to x{})",
                f.iter().copied().fold(1.0, f64::max)
            ),
            &RopeScaling::Linear { factor } => format!("linear x{factor}"),
            &RopeScaling::Llama3 {
                factor,
                original_max_position_embeddings,
                ..
            } => format!("llama3 x{factor} from {original_max_position_embeddings} positions"),
        };
        Ok(Self {
            model_type: config.model_type.to_string(),
            num_layers: config.num_layers,
            hidden_size: config.hidden_size,
            intermediate_size: config.intermediate_size,
            num_heads: config.num_heads,
            num_kv_heads: config.num_kv_heads,
            head_dim: config.head_dim,
            vocab_size: config.vocab_size,
            max_position_embeddings: config.max_position_embeddings,
            rope_theta: config.rope_theta,
            rope_scaling,
            tie_word_embeddings: config.tie_word_embeddings,
            parameters,
            dtypes,
            bytes_on_disk,
            bytes_loaded: parameters * 4,
            weight_files: files.len(),
            gguf,
        })
    }
}
