//! Datasets: JSONL, JSON, CSV/TSV, Parquet and text files in the common
//! instruction formats, rendered through the model's chat template into
//! token ids with exact label masks.

mod batching;
mod inspect;
mod render;
mod rows;
mod source;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::tokenizer::{TextTokenizer, TokenizerError};

pub use batching::{epoch_batches, pack};
pub use inspect::{
    Bucket, DataReport, MAX_LISTED_ERRORS, RenderedExample, Span, TokenReport, inspect,
};
pub use render::render_row;
pub use rows::{CANONICAL_FIELDS, Row, for_each_row};
pub use source::{FileKind, Unit};

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
    /// Line (or row) of the source file (1-based); the first of a packed
    /// sequence's examples.
    pub line: usize,
    /// Lengths of the examples packed into this sequence (empty when it is
    /// one example).
    pub segments: Vec<u32>,
}

impl Example {
    /// Tokens the loss covers (labels after the first position).
    pub fn trained_tokens(&self) -> usize {
        self.labels.iter().skip(1).filter(|&&l| l != IGNORE).count()
    }
}

/// What chats are rendered with when the model has no chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>` (with a warning).
    Chatml,
    /// Refuse chat rows on such models.
    None,
}

/// A bad row, skipped and counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    pub file: PathBuf,
    /// Line (text files) or row (JSON arrays, Parquet), 1-based; see `unit`.
    pub line: usize,
    pub unit: Unit,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unit {
            Unit::Line => write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason),
            Unit::Row => write!(
                f,
                "{} row {}: {}",
                self.file.display(),
                self.line,
                self.reason
            ),
        }
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
    /// Things the user should know (a fallback chat template...).
    pub warnings: Vec<String>,
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
        "{path}: unknown kind of file; use .jsonl, .json (array of objects), .csv, .tsv, \
         .parquet or .txt"
    )]
    UnsupportedFile { path: PathBuf },
    #[error("{path}: {reason}")]
    BrokenFile { path: PathBuf, reason: String },
    #[error(
        "{path} holds conversations but the model has no chat template and \
         data.fallback_template is \"none\"; add a chat_template to tokenizer_config.json or \
         set data.fallback_template = \"chatml\""
    )]
    NoChatTemplate { path: PathBuf },
    #[error("data.columns: `{name}` is not a field we read; map one of {known}")]
    UnknownColumn { name: String, known: String },
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
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub format: Format,
    pub max_length: usize,
    pub train_on: TrainOn,
    pub max_bad_fraction: f64,
    /// Our field name -> the file's (`output = "answer"`).
    pub columns: BTreeMap<String, String>,
    pub fallback_template: FallbackTemplate,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            format: Format::Auto,
            max_length: 512,
            train_on: TrainOn::Assistant,
            max_bad_fraction: 0.01,
            columns: BTreeMap::new(),
            fallback_template: FallbackTemplate::Chatml,
        }
    }
}

/// One row through the tokenizer.
pub(crate) struct Scanned {
    pub example: Example,
    /// It was longer than `max_length` and cut.
    pub truncated: bool,
}

/// What a scan learned about the file as a whole.
pub(crate) struct ScanSummary {
    pub format: Format,
    pub warnings: Vec<String>,
}

/// Rows rendered together on the thread pool.
const CHUNK: usize = 512;

/// Streams `path` through the tokenizer, handing every row to `sink` in
/// file order: an example, or why the row cannot be used. Nothing is kept
/// beyond one chunk of rows, so the caller decides what to hold.
pub(crate) fn scan(
    path: &Path,
    tokenizer: &TextTokenizer,
    options: &LoadOptions,
    mut sink: impl FnMut(Result<Scanned, RowError>),
) -> Result<ScanSummary, DataError> {
    for name in options.columns.keys() {
        if !CANONICAL_FIELDS.contains(&name.as_str()) {
            return Err(DataError::UnknownColumn {
                name: name.clone(),
                known: CANONICAL_FIELDS.join(", "),
            });
        }
    }
    let mut fallback: Option<TextTokenizer> = None;
    let mut warnings = Vec::new();
    let mut pending: Vec<(usize, Result<Row, String>)> = Vec::with_capacity(CHUNK);
    let mut failure: Option<DataError> = None;
    let unit = FileKind::of(path)?.unit();
    let mut flush = |pending: &mut Vec<(usize, Result<Row, String>)>,
                     unit: Unit,
                     sink: &mut dyn FnMut(Result<Scanned, RowError>)|
     -> Result<(), DataError> {
        let has_chat = pending.iter().any(|(_, r)| matches!(r, Ok(Row::Chat(_))));
        if has_chat && fallback.is_none() && !tokenizer.has_chat_template() {
            if options.fallback_template == FallbackTemplate::None {
                return Err(DataError::NoChatTemplate {
                    path: path.to_path_buf(),
                });
            }
            let mut t = tokenizer.clone();
            t.use_fallback_template(crate::tokenizer::CHATML_TEMPLATE);
            fallback = Some(t);
            warnings.push(
                "the model has no chat template; conversations are rendered as ChatML \
                 (<|im_start|>role ... <|im_end|>). Set data.fallback_template, or add a \
                 chat_template to the model's tokenizer_config.json"
                    .to_string(),
            );
        }
        let tok = fallback.as_ref().unwrap_or(tokenizer);
        let done: Vec<Result<Scanned, RowError>> = pending
            .par_drain(..)
            .map(|(line, row)| {
                let bad = |reason: String| RowError {
                    file: path.to_path_buf(),
                    line,
                    unit,
                    reason,
                };
                let row = row.map_err(bad)?;
                let (mut ids, mut labels) =
                    render_row(&row, tok, options.train_on).map_err(|e| bad(e.to_string()))?;
                let truncated = ids.len() > options.max_length;
                if truncated {
                    ids.truncate(options.max_length);
                    labels.truncate(options.max_length);
                }
                let example = Example {
                    ids,
                    labels,
                    line,
                    segments: Vec::new(),
                };
                if example.trained_tokens() == 0 {
                    return Err(bad(
                        "no tokens left to train on (empty answer, or cut by data.max_length)"
                            .into(),
                    ));
                }
                Ok(Scanned { example, truncated })
            })
            .collect();
        done.into_iter().for_each(&mut *sink);
        Ok(())
    };
    let (format, _) = for_each_row(path, options.format, &options.columns, |n, row| {
        pending.push((n, row));
        if pending.len() >= CHUNK
            && let Err(e) = flush(&mut pending, unit, &mut sink)
        {
            failure = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut pending, unit, &mut sink)?;
    Ok(ScanSummary { format, warnings })
}

/// Reads, renders and tokenizes every row of `path`.
pub fn load_dataset(
    path: &Path,
    tokenizer: &TextTokenizer,
    options: &LoadOptions,
) -> Result<Dataset, DataError> {
    let mut out = Dataset::default();
    let mut errors = Vec::new();
    let summary = scan(path, tokenizer, options, |r| match r {
        Ok(s) => {
            out.truncated += usize::from(s.truncated);
            out.examples.push(s.example);
        }
        Err(e) => errors.push(e),
    })?;
    out.format = Some(summary.format);
    out.warnings = summary.warnings;
    let total = out.examples.len() + errors.len();
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
