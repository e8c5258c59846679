//! `tunesmith eval`: the mean loss per trained token of a model (or a
//! trained run) on a dataset file, as a run's validation computes it. With
//! the base model and then the run on held-out general text, it measures
//! what a fine-tune forgot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;

use tunesmith::TextTokenizer;
use tunesmith::data::{self, Format, LoadOptions, TrainOn};

use crate::{AdapterArg, BackendArg, PrecisionArg, load, model_dir};

/// Arguments of `tunesmith eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The model folder (optional with --adapter).
    #[arg(long, required_unless_present = "adapter")]
    model: Option<PathBuf>,
    #[command(flatten)]
    adapter: AdapterArg,
    /// The dataset: .jsonl, .json (array), .csv, .tsv, .parquet or .txt.
    #[arg(long)]
    data: PathBuf,
    /// Row schema (default: the run's data.format with --adapter, else auto).
    #[arg(long)]
    format: Option<Format>,
    /// Longest sequence in tokens (default: the run's data.max_length with
    /// --adapter, else 512); longer rows are cut.
    #[arg(long)]
    max_length: Option<usize>,
    /// Score every token instead of the answers only (the run's
    /// data.train_on with --adapter, else answers only).
    #[arg(long)]
    all_tokens: bool,
    /// Rows per forward pass (the run's train.micro_batch with --adapter,
    /// else 8); the loss does not depend on it.
    #[arg(long)]
    micro_batch: Option<usize>,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    precision: PrecisionArg,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// What `tunesmith eval --json` prints.
#[derive(Serialize)]
struct EvalReport {
    data: PathBuf,
    model: PathBuf,
    adapter: Option<PathBuf>,
    /// Mean negative log-likelihood per scored token (nats).
    loss: f64,
    perplexity: f64,
    rows: usize,
    tokens: usize,
    /// Rows cut at max_length.
    truncated: usize,
    /// Rows that could not be read (file:line and why), skipped.
    bad_rows: Vec<String>,
}

pub fn eval_cmd(args: EvalArgs) -> Result<()> {
    let dir = model_dir(&args.model, &args.adapter)?;
    let run = match &args.adapter.adapter {
        Some(a) => {
            let (run_dir, _) = tunesmith::train::prepare::resolve_adapter(a)?;
            Some(tunesmith::train::prepare::run_config(&run_dir)?)
        }
        None => None,
    };
    let mut options = run
        .as_ref()
        .map(|c| c.data.load_options())
        .unwrap_or_default();
    if let Some(format) = args.format {
        options.format = format;
    }
    if let Some(max_length) = args.max_length {
        options.max_length = max_length;
    }
    if args.all_tokens {
        options.train_on = TrainOn::All;
    }
    // A file to score may carry a few unreadable rows; they are reported,
    // not fatal.
    options = LoadOptions {
        max_bad_fraction: 1.0,
        ..options
    };
    let micro_batch = args
        .micro_batch
        .or(run.as_ref().map(|c| c.train.micro_batch))
        .unwrap_or(8);
    if micro_batch == 0 {
        bail!("--micro-batch must be 1 or more");
    }
    let tokenizer = TextTokenizer::from_dir(&dir)?;
    let set = data::load_dataset(&args.data, &tokenizer, &options)?;
    let examples = if run.as_ref().is_some_and(|c| c.data.packing) {
        data::pack(set.examples, options.max_length)
    } else {
        set.examples
    };
    let tokens: usize = examples.iter().map(|e| e.trained_tokens()).sum();
    if tokens == 0 {
        bail!(
            "{}: no row has a token to score (answers only: use --all-tokens for plain text)",
            args.data.display()
        );
    }
    let (model, _) = load(
        &dir,
        &args.adapter,
        args.backend.backend,
        args.precision.dtype,
    )?;
    let start = Instant::now();
    let pad = tokenizer.stop_ids().first().copied().unwrap_or(0);
    let loss = tunesmith::train::evaluate(&model, &examples, micro_batch, pad);
    eprintln!(
        "{} row(s), {tokens} scored token(s) in {:.2}s",
        examples.len(),
        start.elapsed().as_secs_f32()
    );
    let report = EvalReport {
        data: args.data.clone(),
        model: dir,
        adapter: args.adapter.adapter.clone(),
        loss,
        perplexity: loss.exp(),
        rows: examples.len(),
        tokens,
        truncated: set.truncated,
        bad_rows: set.errors.iter().map(|e| e.to_string()).collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "loss {:.6} (perplexity {:.3}) over {} scored tokens in {} rows of {}",
            report.loss,
            report.perplexity,
            report.tokens,
            report.rows,
            report.data.display()
        );
        if report.truncated > 0 {
            println!("{} row(s) were cut at max_length", report.truncated);
        }
        for bad in &report.bad_rows {
            println!("skipped: {bad}");
        }
    }
    Ok(())
}
