//! What the model will see of a dataset: the `data inspect` report, also
//! the wizard's preview.

use std::path::Path;

use serde::Serialize;

use super::{DataError, Format, IGNORE, LoadOptions, RowError, TrainOn, load_dataset, read_rows};
use crate::tokenizer::TextTokenizer;

/// A contiguous run of tokens, trained on or not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub text: String,
    pub trained: bool,
}

/// One example as rendered text, split where training starts and stops.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedExample {
    pub line: usize,
    pub tokens: usize,
    pub spans: Vec<Span>,
}

/// A bucket of the token-length histogram: `count` rows with
/// `from <= tokens < to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub from: usize,
    pub to: usize,
    pub count: usize,
}

/// Everything `tunesmith data inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DataReport {
    pub format: Format,
    /// Rows that parsed and rendered.
    pub rows: usize,
    /// Rows that did not, with file:line and reason.
    pub errors: Vec<RowError>,
    /// Present when a tokenizer was given.
    pub tokens: Option<TokenReport>,
}

/// The token-level part of a report (needs the model's tokenizer).
#[derive(Debug, Clone, Serialize)]
pub struct TokenReport {
    pub truncated: usize,
    pub max_length: usize,
    pub total_tokens: usize,
    pub trained_tokens: usize,
    pub histogram: Vec<Bucket>,
    pub examples: Vec<RenderedExample>,
}

/// Reads `path` and, with a tokenizer, renders it exactly as training
/// would. Bad rows never abort the report (it exists to find them).
pub fn inspect(
    path: &Path,
    tokenizer: Option<&TextTokenizer>,
    format: Format,
    max_length: usize,
    train_on: TrainOn,
) -> Result<DataReport, DataError> {
    let Some(tokenizer) = tokenizer else {
        let (rows, errors, format) = read_rows(path, format)?;
        return Ok(DataReport {
            format,
            rows: rows.len(),
            errors,
            tokens: None,
        });
    };
    let options = LoadOptions {
        format,
        max_length,
        train_on,
        max_bad_fraction: 1.0,
    };
    let set = load_dataset(path, tokenizer, options)?;
    let lengths: Vec<usize> = set.examples.iter().map(|e| e.ids.len()).collect();
    let mut examples = Vec::new();
    for ex in set.examples.iter().take(3) {
        examples.push(RenderedExample {
            line: ex.line,
            tokens: ex.ids.len(),
            spans: spans(&ex.ids, &ex.labels, tokenizer)?,
        });
    }
    Ok(DataReport {
        format: set.format.unwrap_or(format),
        rows: set.examples.len(),
        errors: set.errors,
        tokens: Some(TokenReport {
            truncated: set.truncated,
            max_length,
            total_tokens: lengths.iter().sum(),
            trained_tokens: set.examples.iter().map(|e| e.trained_tokens()).sum(),
            histogram: histogram(&lengths, max_length),
            examples,
        }),
    })
}

/// Token runs with the same trained flag, decoded. A token is "trained"
/// when the loss predicts it (its label is not ignored).
fn spans(ids: &[u32], labels: &[i64], tokenizer: &TextTokenizer) -> Result<Vec<Span>, DataError> {
    let mut out: Vec<Span> = Vec::new();
    let mut start = 0;
    for i in 1..=ids.len() {
        let boundary = i == ids.len() || (labels[i] != IGNORE) != (labels[start] != IGNORE);
        if boundary {
            out.push(Span {
                text: tokenizer.decode(&ids[start..i], false)?,
                trained: labels[start] != IGNORE,
            });
            start = i;
        }
    }
    Ok(out)
}

/// Eight equal buckets from 0 to the longest row (at most `max_length`).
fn histogram(lengths: &[usize], max_length: usize) -> Vec<Bucket> {
    let longest = lengths.iter().copied().max().unwrap_or(0).min(max_length);
    let width = longest.div_ceil(8).max(1);
    let mut buckets: Vec<Bucket> = (0..8)
        .map(|i| Bucket {
            from: i * width,
            to: (i + 1) * width,
            count: 0,
        })
        .collect();
    for &l in lengths {
        let i = (l / width).min(7);
        buckets[i].count += 1;
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_row_once() {
        let h = histogram(&[1, 2, 15, 16, 16], 16);
        assert_eq!(h.iter().map(|b| b.count).sum::<usize>(), 5);
        assert_eq!(
            h[0],
            Bucket {
                from: 0,
                to: 2,
                count: 1
            }
        );
        assert_eq!(h[7].count, 3);
    }
}
