//! Tokenizers from `tokenizer.json` (the HF tokenizers crate) with the
//! special tokens and chat template of `tokenizer_config.json`.

mod error;
mod template;

use std::path::Path;

use serde_json::Value;

pub use error::TokenizerError;
pub use template::{CHATML_TEMPLATE, ChatMessage, ChatTemplate};

use crate::model::ModelConfig;

/// Byte range `(start, end)` of the text a token came from.
pub type Offsets = (usize, usize);

/// A model's tokenizer plus what transformers reads beside it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    unk_token: Option<String>,
    template: Option<ChatTemplate>,
    stop_ids: Vec<u32>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`
    /// and `generation_config.json` from a model folder. Only tokenizer.json
    /// is required.
    ///
    /// A GGUF file (or a folder holding one and no config.json) gives the
    /// tokenizer rebuilt from its metadata instead.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        if let Some(file) = crate::gguf::locate(dir)? {
            return Self::from_gguf(&file);
        }
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(TokenizerError::MissingTokenizer {
                dir: dir.to_path_buf(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| TokenizerError::Load {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let config = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let token = |key: &str| special_token(config.get(key));
        let mut template_source = match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // Older multi-template layout: [{"name": "default", "template": ...}, ...]
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        // transformers >= 4.43 saves the template in its own file.
        let jinja = dir.join("chat_template.jinja");
        if template_source.is_none() && jinja.is_file() {
            template_source =
                Some(
                    std::fs::read_to_string(&jinja).map_err(|source| TokenizerError::Io {
                        path: jinja.clone(),
                        source,
                    })?,
                );
        }
        let mut tok = Self {
            inner,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            pad_token: token("pad_token"),
            unk_token: token("unk_token"),
            template: template_source.map(ChatTemplate::new),
            stop_ids: Vec::new(),
        };
        tok.stop_ids = tok.find_stop_ids(dir)?;
        Ok(tok)
    }

    /// The tokenizer of a GGUF file (see [`crate::gguf::tokenizer_json`]).
    fn from_gguf(path: &Path) -> Result<Self, TokenizerError> {
        let file = crate::gguf::GgufFile::open(path)?;
        let (json, special) = crate::gguf::tokenizer_json(&file)?;
        let inner: tokenizers::Tokenizer =
            json.parse()
                .map_err(|e: tokenizers::Error| TokenizerError::Load {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        let config = crate::gguf::model_config(&file)?;
        let mut tok = Self {
            inner,
            bos_token: special.bos,
            eos_token: special.eos,
            pad_token: special.pad,
            unk_token: special.unk,
            template: special.chat_template.map(ChatTemplate::new),
            stop_ids: config.eos_token_ids,
        };
        if tok.stop_ids.is_empty() {
            tok.stop_ids = tok.eos_token_id();
        }
        Ok(tok)
    }

    /// Generation stops at these ids: generation_config.json's eos ids, else
    /// config.json's, else the tokenizer's eos token.
    fn find_stop_ids(&self, dir: &Path) -> Result<Vec<u32>, TokenizerError> {
        if let Some(gen_config) = read_json_opt(&dir.join("generation_config.json"))? {
            let ids = crate::model::config_token_ids(gen_config.get("eos_token_id"));
            if !ids.is_empty() {
                return Ok(ids);
            }
        }
        if let Ok(config) = ModelConfig::from_dir(dir)
            && !config.eos_token_ids.is_empty()
        {
            return Ok(config.eos_token_ids);
        }
        Ok(self.eos_token_id())
    }

    /// The eos token's id, the last resort for stop ids.
    fn eos_token_id(&self) -> Vec<u32> {
        self.eos_token
            .as_deref()
            .and_then(|t| self.inner.token_to_id(t))
            .into_iter()
            .collect()
    }

    /// Token ids of `text`; with `add_special_tokens` the tokenizer's
    /// post-processor adds BOS/EOS as the model expects.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Encode {
                reason: e.to_string(),
            })
    }

    /// Token ids of `text` with the byte range of `text` each came from
    /// (special tokens included).
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<(Vec<u32>, Vec<Offsets>), TokenizerError> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| (e.get_ids().to_vec(), e.get_offsets().to_vec()))
            .map_err(|e| TokenizerError::Encode {
                reason: e.to_string(),
            })
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Encode {
                reason: e.to_string(),
            })
    }

    /// Renders a conversation through the model's chat template, as
    /// transformers' `apply_chat_template(..., tokenize=False)` does.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let template = self
            .template
            .as_ref()
            .ok_or(TokenizerError::NoChatTemplate)?;
        let specials = [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
            ("unk_token", &self.unk_token),
        ];
        template.render(messages, add_generation_prompt, &specials)
    }

    /// Renders and tokenizes a conversation. The template writes the special
    /// tokens itself, so none are added on top (as transformers does).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<(String, Vec<u32>), TokenizerError> {
        let rendered = self.apply_chat_template(messages, add_generation_prompt)?;
        let ids = self.encode(&rendered, false)?;
        Ok((rendered, ids))
    }

    /// The chat template's source text, if the model has one.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.template.as_ref().map(ChatTemplate::source)
    }

    /// The id of a token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// True when the folder has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Ids that end generation.
    /// Renders chats with `source` if the model brought no template of its
    /// own; returns whether it did.
    pub fn use_fallback_template(&mut self, source: &str) -> bool {
        if self.template.is_some() {
            return false;
        }
        self.template = Some(ChatTemplate::new(source.to_string()));
        // A turn of the fallback ends with its end-of-turn token: answers
        // are trained up to it and generation stops at it.
        if source == CHATML_TEMPLATE
            && let Some(id) = self.inner.token_to_id("<|im_end|>")
            && !self.stop_ids.contains(&id)
        {
            self.stop_ids.push(id);
        }
        true
    }

    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Size of the vocabulary including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Special tokens appear as plain strings or as AddedToken dicts.
fn special_token(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn read_json_opt(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TokenizerError::Json {
            path: path.to_path_buf(),
            source,
        })
}
