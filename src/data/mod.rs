//! Datasets: JSONL rows in the common instruction formats, rendered through
//! the model's chat template into token ids with exact label masks.

mod inspect;
mod render;
mod rows;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::tokenizer::{TextTokenizer, TokenizerError};

pub use inspect::{Bucket, DataReport, RenderedExample, Span, TokenReport, inspect};
pub use render::render_row;
pub use rows::{Row, read_rows};

/// Label of tokens the loss ignores (as in PyTorch / transformers).
pub const IGNORE: i64 = -100;

/// Row schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Detected from the first valid row's keys.
    Auto,
    /// `instruction`, `input`, `output`, optional `system`.
    Alpaca,
    /// OpenAI `messages`: a list of `role`/`content`.
    Messages,
    /// ShareGPT `conversations`: a list of `from` (system, human, gpt) /
    /// `value`.
    Sharegpt,
    /// `prompt` and `completion` strings, no chat template.
    PromptCompletion,
    /// Raw `text`, trained on entirely.
    Text,
}

impl std::str::FromStr for Format {
    type Err = String;

    /// The names used in TOML (`auto`, `alpaca`, `messages`, `sharegpt`,
    /// `prompt_completion`, `text`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!("unknown format `{s}`; use auto, alpaca, messages, sharegpt, prompt_completion or text")
        })
    }
}

/// Which tokens the loss is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainOn {
    /// Assistant turns (every one of a multi-turn chat) / completions only.
    Assistant,
    /// Every token.
    All,
}

/// One tokenized example: HF-style labels aligned with `ids` (`IGNORE`
/// where the loss is not taken; the shift happens in the loss).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// Line of the source file (1-based).
    pub line: usize,
}

impl Example {
    /// Tokens the loss covers (labels after the first position).
    pub fn trained_tokens(&self) -> usize {
        self.labels.iter().skip(1).filter(|&&l| l != IGNORE).count()
    }
}

/// A bad row, skipped and counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// The tokenized examples of one file and what happened to the rest.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub examples: Vec<Example>,
    /// The schema used (detected or configured).
    pub format: Option<Format>,
    /// Rows cut to `max_length`.
    pub truncated: usize,
    /// Rows that could not be used, with reasons.
    pub errors: Vec<RowError>,
}

/// A dataset that cannot be used at all.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read dataset {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dataset {path} has no usable rows{}", first_error(.errors))]
    Empty {
        path: PathBuf,
        errors: Vec<RowError>,
    },
    #[error(
        "{bad} of {total} rows of {path} are bad (more than data.max_bad_fraction = {limit}); \
         first: {first}. Fix the file or raise data.max_bad_fraction"
    )]
    TooManyBad {
        path: PathBuf,
        bad: usize,
        total: usize,
        limit: f64,
        first: RowError,
    },
    #[error("cannot detect the format of {path}: {reason}; set data.format")]
    UnknownFormat { path: PathBuf, reason: String },
    #[error(
        "validation set is empty: {rows} training rows with data.val_fraction = {fraction}; \
         raise val_fraction or give data.val"
    )]
    NoValidation { rows: usize, fraction: f64 },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

fn first_error(errors: &[RowError]) -> String {
    errors
        .first()
        .map(|e| format!(" (first problem: {e})"))
        .unwrap_or_default()
}

/// How rows become examples.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub format: Format,
    pub max_length: usize,
    pub train_on: TrainOn,
    pub max_bad_fraction: f64,
}

/// Reads, renders and tokenizes every row of `path`.
pub fn load_dataset(
    path: &Path,
    tokenizer: &TextTokenizer,
    options: LoadOptions,
) -> Result<Dataset, DataError> {
    let (rows, mut errors, format) = read_rows(path, options.format)?;
    let total = rows.len() + errors.len();
    let mut out = Dataset {
        format: Some(format),
        ..Dataset::default()
    };
    for (line, row) in rows {
        match render_row(&row, tokenizer, options.train_on) {
            Ok((mut ids, mut labels)) => {
                if ids.len() > options.max_length {
                    ids.truncate(options.max_length);
                    labels.truncate(options.max_length);
                    out.truncated += 1;
                }
                let ex = Example { ids, labels, line };
                if ex.trained_tokens() == 0 {
                    errors.push(RowError {
                        file: path.to_path_buf(),
                        line,
                        reason:
                            "no tokens left to train on (empty answer, or cut by data.max_length)"
                                .into(),
                    });
                } else {
                    out.examples.push(ex);
                }
            }
            Err(e) => errors.push(RowError {
                file: path.to_path_buf(),
                line,
                reason: e.to_string(),
            }),
        }
    }
    errors.sort_by_key(|e| e.line);
    if out.examples.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            errors,
        });
    }
    if !errors.is_empty() && errors.len() as f64 > options.max_bad_fraction * total as f64 {
        return Err(DataError::TooManyBad {
            path: path.to_path_buf(),
            bad: errors.len(),
            total,
            limit: options.max_bad_fraction,
            first: errors[0].clone(),
        });
    }
    out.errors = errors;
    Ok(out)
}

/// Splits `examples` into (train, validation) by `fraction`, deterministically
/// for a seed. At least one example is held out when `fraction` > 0.
pub fn split(
    mut examples: Vec<Example>,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>), DataError> {
    let n = examples.len();
    let n_val = ((n as f64) * fraction).round() as usize;
    let n_val = if fraction > 0.0 { n_val.max(1) } else { 0 };
    if n_val == 0 || n_val >= n {
        return Err(DataError::NoValidation { rows: n, fraction });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut is_val = vec![false; n];
    for &i in &order[..n_val] {
        is_val[i] = true;
    }
    let mut train = Vec::with_capacity(n - n_val);
    let mut val = Vec::with_capacity(n_val);
    for (i, ex) in examples.drain(..).enumerate() {
        if is_val[i] {
            val.push(ex);
        } else {
            train.push(ex);
        }
    }
    Ok((train, val))
}
