//! Tunesmith's engine: load Hugging Face Llama-family models into burn, run
//! them exactly as transformers does, and (in later modules) fine-tune and
//! export them.
//!
//! The CLI (`src/main.rs`) and the desktop app (`src-tauri/`) are thin front
//! ends over this library.

pub mod advisor;
pub mod backend;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod data;
pub mod export;
pub mod fsutil;
pub mod generate;
pub mod gguf;
pub mod logits;
pub mod memory;
pub mod methods;
pub mod model;
pub mod plan;
pub mod report;
pub mod tokenizer;
pub mod train;
pub mod triage;

pub use backend::{BackendChoice, BackendError};
pub use config::RunConfig;
pub use generate::{GenerateOptions, Sampling};
pub use model::{CausalLm, ModelConfig, ModelError, ModelSummary};
pub use tokenizer::{ChatMessage, TextTokenizer, TokenizerError};
pub use train::{RunHandle, Session, TrainError, TrainEvent};
