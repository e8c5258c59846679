//! One chat turn with a model, base or fine-tuned, streamed as text: what
//! `tunesmith generate --chat` and the app's chat panel both do.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::backend::{self, BackendChoice, BackendError};
use crate::generate::{GenerateError, GenerateOptions, Sampling, generate};
use crate::model::{CausalLm, ModelError};
use crate::tokenizer::{CHATML_TEMPLATE, ChatMessage, TextTokenizer, TokenizerError};
use crate::train::TrainError;

/// A prompt for one model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The base model folder.
    pub model_dir: PathBuf,
    /// Trained weights to apply: a run directory (its newest checkpoint)
    /// or one checkpoint folder. `None` asks the base model.
    pub adapter: Option<PathBuf>,
    pub system: Option<String>,
    pub prompt: String,
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub backend: BackendChoice,
}

/// The answer, once generation ended.
#[derive(Debug, Clone)]
pub struct ChatReply {
    pub text: String,
    pub tokens: usize,
    /// Things to know (a model without a chat template answered through
    /// the ChatML fallback).
    pub warnings: Vec<String>,
}

/// Why a chat turn failed.
#[derive(Debug, Error)]
pub enum ChatError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error("the prompt produced no tokens; type something to send")]
    EmptyPrompt,
}

/// Turns generated ids into text as they come: the whole continuation is
/// decoded each time and only the new part handed out, so characters made
/// of several tokens come out whole.
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    sent: usize,
}

impl TextStream {
    /// Adds `id`; returns the text it completes, if any.
    pub fn push(&mut self, tokenizer: &TextTokenizer, id: u32) -> Option<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, true).ok()?;
        if text.len() > self.sent && text.is_char_boundary(self.sent) {
            let new = text[self.sent..].to_string();
            self.sent = text.len();
            Some(new)
        } else {
            None
        }
    }
}

/// Loads the model (with the adapter), renders the prompt through its
/// chat template and generates, calling `on_text` with each new piece.
pub fn chat(request: &ChatRequest, mut on_text: impl FnMut(&str)) -> Result<ChatReply, ChatError> {
    let mut tokenizer = TextTokenizer::from_dir(&request.model_dir)?;
    let mut warnings = Vec::new();
    if tokenizer.use_fallback_template(CHATML_TEMPLATE) {
        warnings.push(format!(
            "{} has no chat template; the prompt was rendered as ChatML, as training does by default",
            request.model_dir.display()
        ));
    }
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        messages.push(ChatMessage::new("system", system.as_str()));
    }
    messages.push(ChatMessage::new("user", request.prompt.as_str()));
    let (_, prompt_ids) = tokenizer.encode_chat(&messages, true)?;
    if request.prompt.trim().is_empty() || prompt_ids.is_empty() {
        return Err(ChatError::EmptyPrompt);
    }
    let device = backend::select(request.backend)?.device;
    let model = load(&request.model_dir, request.adapter.as_deref(), &device)?;
    let options = GenerateOptions {
        max_new_tokens: request.max_new_tokens,
        sampling: request.sampling.clone(),
        stop_ids: tokenizer.stop_ids().to_vec(),
    };
    let mut stream = TextStream::default();
    let ids = generate(&model, &prompt_ids, &options, |id| {
        if let Some(text) = stream.push(&tokenizer, id) {
            on_text(&text);
        }
    })?;
    let text = tokenizer.decode(&ids, true)?;
    Ok(ChatReply {
        text,
        tokens: ids.len(),
        warnings,
    })
}

fn load(
    model_dir: &Path,
    adapter: Option<&Path>,
    device: &burn::tensor::Device,
) -> Result<CausalLm, ChatError> {
    Ok(match adapter {
        Some(a) => crate::train::prepare::load_adapted(a, Some(model_dir), device)?.0,
        None => CausalLm::load(model_dir, device)?.0,
    })
}
