//! Export of a run's result in the forms other tools load unchanged: HF
//! PEFT adapters, llama.cpp GGUF LoRA adapters, and merged HF models.

mod gguf_adapter;
mod gguf_model;
mod hf_files;
mod merged;
mod ollama;
mod peft;
mod trained;

pub mod gguf;

use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

pub use crate::methods::LoraPair;
pub use gguf_model::ModelDtype;
pub use trained::{Trained, choose_checkpoint};

use crate::model::ModelError;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// `adapter_model.safetensors` + `adapter_config.json` for
    /// `PeftModel.from_pretrained`.
    Peft,
    /// One GGUF LoRA adapter file for llama.cpp (`--lora`) and Ollama
    /// (`ADAPTER`).
    Gguf,
    /// The base model with the update added, as an HF model folder.
    Merged,
    /// The merged model as one llama.cpp GGUF file (f16, bf16 or q8_0).
    MergedGguf,
    /// A folder with the merged GGUF model and an Ollama Modelfile.
    Ollama,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "peft" => Ok(Self::Peft),
            "gguf" => Ok(Self::Gguf),
            "merged" => Ok(Self::Merged),
            "merged-gguf" => Ok(Self::MergedGguf),
            "ollama" => Ok(Self::Ollama),
            _ => Err(format!(
                "unknown format `{s}`; use peft, gguf, merged, merged-gguf or ollama"
            )),
        }
    }
}

/// Which checkpoint of a run to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointChoice {
    /// The lowest validation loss (the newest when none was recorded).
    Best,
    /// The newest.
    Last,
    /// The one written after this optimizer step.
    Step(usize),
}

impl std::str::FromStr for CheckpointChoice {
    type Err = String;

    /// `best`, `last`, `step-120` or `120`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "best" => Ok(Self::Best),
            "last" => Ok(Self::Last),
            _ => s
                .strip_prefix("step-")
                .unwrap_or(s)
                .parse()
                .map(Self::Step)
                .map_err(|_| format!("`{s}`: use best, last or step-N")),
        }
    }
}

/// Precision of GGUF tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufDtype {
    #[default]
    F32,
    F16,
}

/// An export request.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    pub checkpoint: CheckpointChoice,
    /// A folder (peft, merged) or a file (gguf).
    pub out: PathBuf,
    pub gguf_dtype: GgufDtype,
    /// Weight precision of a merged-gguf file.
    pub model_dtype: ModelDtype,
    /// Replace `out` if it exists.
    pub overwrite: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub format: ExportFormat,
    pub checkpoint: PathBuf,
    pub step: usize,
    /// Why that checkpoint.
    pub chosen_because: String,
    pub path: PathBuf,
    /// Every file written with its size in bytes.
    pub files: Vec<(PathBuf, u64)>,
    pub bytes: u64,
    /// Things the user should know about the result.
    pub notes: Vec<String>,
}

/// Why an export failed. Nothing is left half-written in any case.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error(
        "{path} is not a run directory (no config.toml); pass a folder made by `tunesmith train`"
    )]
    NotARun { path: PathBuf },
    #[error(
        "{run} has no checkpoint yet; a run writes one every train.checkpoint_every steps and \
         at the end (resume it, or pick another run)"
    )]
    NoCheckpoints { run: PathBuf },
    #[error("{run} has no checkpoint {wanted}; it has steps {available} (or use best / last)")]
    UnknownCheckpoint {
        run: PathBuf,
        wanted: String,
        available: String,
    },
    #[error(
        "a {method} run has no adapter to export as {format}; export `merged` (the trained \
         weights in a full model folder)"
    )]
    NotAnAdapter { method: String, format: String },
    #[error(
        "llama.cpp cannot load {what} in a GGUF adapter; export `merged` and convert the \
         merged folder instead"
    )]
    GgufUnsupported { what: String },
    #[error(
        "a {method} run cannot become a llama.cpp GGUF adapter: llama.cpp's adapters hold \
         plain LoRA pairs only, not {what}; export `merged-gguf` (the update merged into \
         one GGUF model) or `ollama` instead, or `peft` for PEFT"
    )]
    NoGgufAdapter { method: String, what: String },
    #[error("a Hugging Face config.json cannot express {what}; export `merged-gguf` instead")]
    HfUnsupported { what: String },
    #[error("{path} already exists; choose another --out or pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("checkpoint {path} is unusable: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Run(Box<crate::train::TrainError>),
}

impl From<(PathBuf, std::io::Error)> for ExportError {
    fn from((path, source): (PathBuf, std::io::Error)) -> Self {
        Self::Io { path, source }
    }
}

/// Exports `run_dir` as `options` say.
pub fn export(run_dir: &Path, options: &ExportOptions) -> Result<ExportReport, ExportError> {
    if options.out.exists() && !options.overwrite {
        return Err(ExportError::Exists {
            path: options.out.clone(),
        });
    }
    let trained = Trained::load(run_dir, &options.checkpoint)?;
    let notes = match options.format {
        ExportFormat::Peft => peft::write(&trained, &options.out, options.overwrite)?,
        ExportFormat::Gguf => gguf_adapter::write(&trained, options)?,
        ExportFormat::Merged => merged::write(&trained, &options.out, options.overwrite)?,
        ExportFormat::MergedGguf => gguf_model::write(&trained, &options.out, options.model_dtype)?,
        ExportFormat::Ollama => ollama::write(
            &trained,
            &options.out,
            options.model_dtype,
            options.overwrite,
        )?,
    };
    let files = list_files(&options.out);
    Ok(ExportReport {
        format: options.format,
        checkpoint: trained.checkpoint.clone(),
        step: trained.step,
        chosen_because: trained.chosen_because.clone(),
        path: options.out.clone(),
        bytes: files.iter().map(|(_, n)| n).sum(),
        files,
        notes,
    })
}

fn list_files(path: &Path) -> Vec<(PathBuf, u64)> {
    if path.is_file() {
        let n = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        return vec![(path.to_path_buf(), n)];
    }
    let mut out: Vec<(PathBuf, u64)> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| (e.path(), m.len()))
        })
        .collect();
    out.sort();
    out
}

/// Bytes of f32 values, little-endian.
fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
