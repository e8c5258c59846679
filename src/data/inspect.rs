//! What the model will see of a dataset: the `data inspect` report, also
//! the wizard's preview.

use std::ops::ControlFlow;
use std::path::Path;

use serde::Serialize;

use super::{DataError, FileKind, Format, IGNORE, LoadOptions, RowError, for_each_row, scan};
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
    pub file_kind: FileKind,
    pub format: Format,
    /// Rows that parsed and rendered.
    pub rows: usize,
    /// Rows that did not.
    pub bad_rows: usize,
    /// The first `MAX_LISTED_ERRORS` bad rows with file:line and reason.
    pub errors: Vec<RowError>,
    /// Things to know about the whole file (a fallback chat template...).
    pub warnings: Vec<String>,
    /// Present when a tokenizer was given.
    pub tokens: Option<TokenReport>,
}

/// Bad rows listed one by one in a report (all are counted).
pub const MAX_LISTED_ERRORS: usize = 1000;

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
/// would. Bad rows never abort the report (it exists to find them). The
/// file is streamed: memory holds one chunk of rows plus the lengths.
pub fn inspect(
    path: &Path,
    tokenizer: Option<&TextTokenizer>,
    options: &LoadOptions,
) -> Result<DataReport, DataError> {
    let file_kind = FileKind::of(path)?;
    let unit = file_kind.unit();
    let mut bad_rows = 0usize;
    let mut errors = Vec::new();
    let mut note = |e: RowError| {
        bad_rows += 1;
        if errors.len() < MAX_LISTED_ERRORS {
            errors.push(e);
        }
    };
    let Some(tokenizer) = tokenizer else {
        let mut rows = 0usize;
        let (format, _) = for_each_row(path, options.format, &options.columns, |line, row| {
            match row {
                Ok(_) => rows += 1,
                Err(reason) => note(RowError {
                    file: path.to_path_buf(),
                    line,
                    unit,
                    reason,
                }),
            }
            ControlFlow::Continue(())
        })?;
        return Ok(DataReport {
            file_kind,
            format,
            rows,
            bad_rows,
            errors,
            warnings: Vec::new(),
            tokens: None,
        });
    };
    let mut lengths: Vec<u32> = Vec::new();
    let mut truncated = 0usize;
    let mut trained_tokens = 0usize;
    let mut shown = Vec::new();
    let summary = scan(path, tokenizer, options, |r| match r {
        Ok(s) => {
            lengths.push(s.example.ids.len() as u32);
            truncated += usize::from(s.truncated);
            trained_tokens += s.example.trained_tokens();
            if shown.len() < 3 {
                shown.push(s.example);
            }
        }
        Err(e) => note(e),
    })?;
    let mut examples = Vec::new();
    for ex in &shown {
        examples.push(RenderedExample {
            line: ex.line,
            tokens: ex.ids.len(),
            spans: spans(&ex.ids, &ex.labels, tokenizer)?,
        });
    }
    Ok(DataReport {
        file_kind,
        format: summary.format,
        rows: lengths.len(),
        bad_rows,
        errors,
        warnings: summary.warnings,
        tokens: Some(TokenReport {
            truncated,
            max_length: options.max_length,
            total_tokens: lengths.iter().map(|&l| l as usize).sum(),
            trained_tokens,
            histogram: histogram(&lengths, options.max_length),
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
fn histogram(lengths: &[u32], max_length: usize) -> Vec<Bucket> {
    let longest = (lengths.iter().copied().max().unwrap_or(0) as usize).min(max_length);
    let width = longest.div_ceil(8).max(1);
    let mut buckets: Vec<Bucket> = (0..8)
        .map(|i| Bucket {
            from: i * width,
            to: (i + 1) * width,
            count: 0,
        })
        .collect();
    for &l in lengths {
        let i = (l as usize / width).min(7);
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
