//! `tunesmith export`: a run's result as PEFT, GGUF adapter or merged model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};

use tunesmith::export::{
    CheckpointChoice, ExportFormat, ExportOptions, GgufDtype, ModelDtype, export,
};

/// Precision of GGUF tensors.
#[derive(Clone, Copy, ValueEnum)]
pub enum Precision {
    F32,
    F16,
}

/// Weight precision of a merged-gguf file.
#[derive(Clone, Copy, ValueEnum)]
pub enum ModelPrecision {
    F16,
    Bf16,
    #[value(name = "q8_0")]
    Q8_0,
}

/// Arguments of `tunesmith export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The run directory (made by `tunesmith train`).
    pub run_dir: PathBuf,
    /// peft (adapter folder for PEFT), gguf (adapter file for llama.cpp /
    /// Ollama), merged (full HF model folder), merged-gguf (one llama.cpp
    /// model file) or ollama (merged-gguf + Modelfile).
    #[arg(long)]
    pub format: ExportFormat,
    /// Where to write: a folder for peft, merged and ollama, a file for
    /// gguf and merged-gguf.
    #[arg(long)]
    pub out: PathBuf,
    /// best (lowest validation loss), last, or step-N.
    #[arg(long, default_value = "best")]
    pub checkpoint: CheckpointChoice,
    /// Tensor precision of a gguf adapter.
    #[arg(long, value_enum, default_value = "f32")]
    pub gguf_dtype: Precision,
    /// Weight precision of a merged-gguf / ollama model (norms and biases
    /// stay f32).
    #[arg(long, value_enum, default_value = "f16")]
    pub model_dtype: ModelPrecision,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn export_cmd(args: ExportArgs) -> Result<()> {
    let started = Instant::now();
    let options = ExportOptions {
        format: args.format,
        checkpoint: args.checkpoint,
        out: args.out,
        gguf_dtype: match args.gguf_dtype {
            Precision::F32 => GgufDtype::F32,
            Precision::F16 => GgufDtype::F16,
        },
        model_dtype: match args.model_dtype {
            ModelPrecision::F16 => ModelDtype::F16,
            ModelPrecision::Bf16 => ModelDtype::BF16,
            ModelPrecision::Q8_0 => ModelDtype::Q8_0,
        },
        overwrite: args.force,
    };
    let report = export(&args.run_dir, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "exported {} ({:?}) from {} ({}) in {:.1} s",
        report.path.display(),
        report.format,
        report.checkpoint.display(),
        report.chosen_because,
        started.elapsed().as_secs_f64()
    );
    for (file, bytes) in &report.files {
        println!("  {:>12} bytes  {}", bytes, file.display());
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    Ok(())
}
