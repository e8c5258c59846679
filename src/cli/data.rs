//! `tunesmith data inspect`: what a dataset looks like to the model.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use tunesmith::TextTokenizer;
use tunesmith::data::{FallbackTemplate, Format, LoadOptions, TrainOn, inspect};

/// Arguments of `tunesmith data inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The dataset: .jsonl, .json (array), .csv, .tsv, .parquet or .txt.
    pub file: PathBuf,
    /// Render and tokenize with this model's tokenizer and chat template.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Row schema: auto (from the first row's keys), alpaca, messages,
    /// sharegpt, prompt_completion or text.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Longest sequence in tokens (longer rows are counted as truncated).
    #[arg(long, default_value_t = 512)]
    pub max_length: usize,
    /// Train on every token instead of the answers only.
    #[arg(long)]
    pub all_tokens: bool,
    /// Read one of our fields from a column of another name, e.g.
    /// `--column output=answer` (repeatable; as data.columns).
    #[arg(long = "column", value_name = "OURS=THEIRS")]
    pub columns: Vec<String>,
    /// Refuse conversations when the model has no chat template, instead
    /// of rendering them as ChatML.
    #[arg(long)]
    pub no_fallback_template: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn inspect_cmd(args: InspectArgs) -> Result<()> {
    let tokenizer = args
        .model
        .as_deref()
        .map(TextTokenizer::from_dir)
        .transpose()?;
    let mut options = LoadOptions {
        format: args.format,
        max_length: args.max_length,
        train_on: if args.all_tokens {
            TrainOn::All
        } else {
            TrainOn::Assistant
        },
        max_bad_fraction: 1.0,
        ..LoadOptions::default()
    };
    if args.no_fallback_template {
        options.fallback_template = FallbackTemplate::None;
    }
    for pair in &args.columns {
        let Some((ours, theirs)) = pair.split_once('=') else {
            bail!("--column {pair}: expected OURS=THEIRS, e.g. --column output=answer");
        };
        options
            .columns
            .insert(ours.trim().to_string(), theirs.trim().to_string());
    }
    let report = inspect(&args.file, tokenizer.as_ref(), &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("file        {}", args.file.display());
    println!(
        "format      {:?} ({:?} file)",
        report.format, report.file_kind
    );
    println!(
        "rows        {} usable, {} bad",
        report.rows, report.bad_rows
    );
    for e in report.errors.iter().take(20) {
        println!("  {e}");
    }
    if report.bad_rows > 20 {
        println!(
            "  ... and {} more (use --json for the first {})",
            report.bad_rows - 20,
            tunesmith::data::MAX_LISTED_ERRORS
        );
    }
    for w in &report.warnings {
        println!("warning     {w}");
    }
    let Some(t) = report.tokens else {
        println!("(give --model DIR to see tokens, lengths and rendered examples)");
        return Ok(());
    };
    println!(
        "tokens      {} in all, {} trained on ({:.0}%); {} rows cut to {}",
        t.total_tokens,
        t.trained_tokens,
        100.0 * t.trained_tokens as f64 / t.total_tokens.max(1) as f64,
        t.truncated,
        t.max_length
    );
    println!("lengths");
    let most = t
        .histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(1)
        .max(1);
    for b in &t.histogram {
        let bar = "#".repeat((40 * b.count).div_ceil(most));
        println!("  {:>5}..{:<5} {:>6} {bar}", b.from, b.to, b.count);
    }
    for ex in &t.examples {
        println!(
            "\n--- line {} ({} tokens; trained spans between [[ and ]]) ---",
            ex.line, ex.tokens
        );
        let mut text = String::new();
        for s in &ex.spans {
            if s.trained {
                text.push_str(&format!("[[{}]]", s.text));
            } else {
                text.push_str(&s.text);
            }
        }
        println!("{text}");
    }
    Ok(())
}
