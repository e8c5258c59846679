use std::path::PathBuf;

/// Errors of tokenization and chat-template rendering.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "no tokenizer.json in {dir}; Tunesmith needs the fast tokenizer file (re-save the tokenizer with transformers' save_pretrained to create it)"
    )]
    MissingTokenizer { dir: PathBuf },

    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),

    #[error("cannot load tokenizer {path}: {reason}")]
    Load { path: PathBuf, reason: String },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("tokenization failed: {reason}")]
    Encode { reason: String },

    #[error(
        "this model has no chat template (no chat_template in tokenizer_config.json and no chat_template.jinja); use plain text instead of messages"
    )]
    NoChatTemplate,

    #[error("the chat template cannot be used: {reason}")]
    Template { reason: String },

    #[error("the chat template rejected the conversation: {message}")]
    TemplateRaised { message: String },
}
