//! Llama-family causal language models (llama, mistral, qwen2, qwen3) read
//! from Hugging Face model folders.

mod config;
mod error;
mod layers;
mod llama;
pub mod precision;
pub mod quant;
mod rope;
mod summary;
mod weights;

pub(crate) use config::token_ids as config_token_ids;
pub use config::{ModelConfig, ModelType, RopeScaling};
pub use error::ModelError;
pub use layers::Linear;
pub use llama::{CausalLm, Dropout, KvCache, LayerContext, LinearInput, Packing};
pub use summary::ModelSummary;
pub use weights::{TensorInfo, WeightSource, decode_f32};
