use std::path::PathBuf;

/// Everything that can go wrong while reading a model folder. Each message
/// names the file or tensor involved and says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path} is not a model (expected a folder with config.json and *.safetensors, or a .gguf file)"
    )]
    NotAModelDir { path: PathBuf },

    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),

    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "model_type \"{found}\" in {path} is not supported; Tunesmith supports {}",
        supported.join(", ")
    )]
    UnsupportedModelType {
        path: PathBuf,
        found: String,
        supported: Vec<&'static str>,
    },

    #[error("{path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },

    #[error(
        "{path}: rope scaling type \"{kind}\" is not supported; supported types are default, linear and llama3"
    )]
    UnsupportedRope { path: PathBuf, kind: String },

    #[error(
        "no weights in {dir}: expected model.safetensors or model.safetensors.index.json (pickle .bin files are never loaded; convert them to safetensors first)"
    )]
    NoWeights { dir: PathBuf },

    #[error("{path} is not a valid safetensors file (truncated or corrupt?): {reason}")]
    CorruptSafetensors { path: PathBuf, reason: String },

    #[error("{path}: {reason}")]
    BadIndex { path: PathBuf, reason: String },

    #[error(
        "tensor \"{name}\" is missing from {location}; the folder does not hold a complete {model_type} checkpoint"
    )]
    MissingTensor {
        name: String,
        location: String,
        model_type: String,
    },

    #[error(
        "unexpected tensor \"{name}\" in {path}: it does not belong to a {model_type} model with this config.json (is config.json from another model?)"
    )]
    UnexpectedTensor {
        name: String,
        path: PathBuf,
        model_type: String,
    },

    #[error(
        "tensor \"{name}\" in {path} has shape {found:?}, but config.json implies {expected:?}"
    )]
    TensorShape {
        name: String,
        path: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error(
        "tensor \"{name}\" in {path} has dtype {dtype}; Tunesmith loads F32, F16 and BF16 weights (quantized checkpoints are not supported)"
    )]
    TensorDtype {
        name: String,
        path: PathBuf,
        dtype: String,
    },

    #[error(
        "model.quantize = \"{format}\": the {kind} weights have rows of {cols} values, which do not split into blocks of {block}; use {hint}"
    )]
    QuantizeShape {
        format: &'static str,
        kind: &'static str,
        cols: usize,
        block: usize,
        hint: &'static str,
    },
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
