//! `tunesmith logits`: full causal-LM logits for a file of cases, for
//! checking Tunesmith against other implementations.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::CausalLm;
use crate::tokenizer::{ChatMessage, TextTokenizer, TokenizerError};

/// A CASES.json file: `{"cases": [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

/// One input: exactly one of `token_ids`, `text` or `messages`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub token_ids: Option<Vec<u32>>,
    #[serde(default)]
    pub text: Option<String>,
    /// For `text`: let the tokenizer add BOS/EOS (default true).
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// For `messages`: end with the assistant header (default false).
    #[serde(default)]
    pub add_generation_prompt: Option<bool>,
}

/// The logits of one case, as OUT.json stores them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseOutput {
    pub name: String,
    pub token_ids: Vec<u32>,
    /// [tokens][vocab]
    pub logits: Vec<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<String>,
}

/// OUT.json: `{"cases": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputFile {
    pub cases: Vec<CaseOutput>,
}

/// Errors of reading cases and computing their logits.
#[derive(Debug, thiserror::Error)]
pub enum LogitsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid cases file ({{\"cases\": [{{\"name\", and one of token_ids, text, messages}}]}}): {source}"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("case \"{name}\": {reason}")]
    BadCase { name: String, reason: String },
    #[error("case \"{name}\": {source}")]
    Tokenizer {
        name: String,
        #[source]
        source: TokenizerError,
    },
    #[error("reading logits from the device failed: {0}")]
    Readback(String),
}

impl CaseFile {
    /// Reads and parses a cases file.
    pub fn read(path: &Path) -> Result<Self, LogitsError> {
        let text = std::fs::read_to_string(path).map_err(|source| LogitsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| LogitsError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Case {
    /// The token ids of this case, and the rendered template text for
    /// `messages` cases.
    pub fn tokens(
        &self,
        tokenizer: Option<&TextTokenizer>,
    ) -> Result<(Vec<u32>, Option<String>), LogitsError> {
        let bad = |reason: &str| LogitsError::BadCase {
            name: self.name.clone(),
            reason: reason.to_string(),
        };
        let tok_err = |source| LogitsError::Tokenizer {
            name: self.name.clone(),
            source,
        };
        let need_tokenizer = || tokenizer.ok_or_else(|| bad("needs the model's tokenizer.json"));
        match (&self.token_ids, &self.text, &self.messages) {
            (Some(ids), None, None) => Ok((ids.clone(), None)),
            (None, Some(text), None) => {
                let ids = need_tokenizer()?
                    .encode(text, self.add_special_tokens.unwrap_or(true))
                    .map_err(tok_err)?;
                Ok((ids, None))
            }
            (None, None, Some(messages)) => {
                let (rendered, ids) = need_tokenizer()?
                    .encode_chat(messages, self.add_generation_prompt.unwrap_or(false))
                    .map_err(tok_err)?;
                Ok((ids, Some(rendered)))
            }
            _ => Err(bad("give exactly one of token_ids, text or messages")),
        }
    }
}

/// Computes the logits of every case, one sequence at a time.
pub fn run_cases(
    model: &CausalLm,
    tokenizer: Option<&TextTokenizer>,
    cases: &CaseFile,
) -> Result<OutputFile, LogitsError> {
    let vocab = model.vocab_size();
    let device = model.embed_tokens.val().device();
    let mut out = Vec::with_capacity(cases.cases.len());
    for case in &cases.cases {
        let (ids, rendered) = case.tokens(tokenizer)?;
        if ids.is_empty() {
            return Err(LogitsError::BadCase {
                name: case.name.clone(),
                reason: "no tokens".into(),
            });
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(LogitsError::BadCase {
                name: case.name.clone(),
                reason: format!("token id {id} is outside the vocabulary of {vocab}"),
            });
        }
        let n = ids.len();
        let input: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(input, [1, n]), &device);
        let flat = model
            .forward(tokens, None)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| LogitsError::Readback(format!("{e:?}")))?;
        out.push(CaseOutput {
            name: case.name.clone(),
            token_ids: ids,
            logits: flat.chunks_exact(vocab).map(<[f32]>::to_vec).collect(),
            rendered,
        });
    }
    Ok(OutputFile { cases: out })
}
