//! GGUF files (llama.cpp's, Ollama's and LM Studio's format) as base
//! models: the reader, ggml's dequantizers, the hyperparameters and tensor
//! names mapped to the Hugging Face layout the rest of Tunesmith uses, and
//! the tokenizer rebuilt from the file's vocabulary.

pub mod dequant;
mod hparams;
mod reader;
mod vocab;

use std::path::{Path, PathBuf};

pub use dequant::GgmlType;
pub use hparams::{HfTensor, model_config, tensor_map, unpermute_rows};
pub use reader::{GgufFile, GgufTensor, MetaValue};
pub use vocab::tokenizer_json;

/// What can be wrong with a GGUF file; each message names the file and the
/// key or tensor.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a GGUF file (it does not start with \"GGUF\")")]
    NotGguf { path: PathBuf },

    #[error("{path} is GGUF version {version}; Tunesmith reads versions 2 and 3")]
    Version { path: PathBuf, version: u32 },

    #[error("{path} ends early, inside {what}: the file is truncated (re-download it)")]
    Truncated { path: PathBuf, what: String },

    #[error(
        "tensor \"{tensor}\" in {path} has ggml type {id}, which Tunesmith does not read (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K..Q6_K; requantize the file with llama-quantize)"
    )]
    UnknownType {
        path: PathBuf,
        tensor: String,
        id: u32,
    },

    #[error("tensor \"{tensor}\" in {path}: {reason}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },

    #[error("{path} has no metadata key \"{key}\"; it is not a complete model file")]
    MissingKey { path: PathBuf, key: String },

    #[error("metadata key \"{key}\" in {path}: {reason}")]
    BadKey {
        path: PathBuf,
        key: String,
        reason: String,
    },

    #[error(
        "{path} holds a \"{arch}\" model; Tunesmith trains llama, mistral, qwen2 and qwen3 GGUF files"
    )]
    UnsupportedArch { path: PathBuf, arch: String },

    #[error("the tokenizer in {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error(
        "{dir} holds several GGUF files ({}) and no config.json; set model.path to one of them",
        names.join(", ")
    )]
    Ambiguous { dir: PathBuf, names: Vec<String> },
}

/// The GGUF file `path` stands for, if it stands for one: `path` itself when
/// it is a `.gguf` file (or any file starting with GGUF's magic, as
/// Ollama's `sha256-…` blobs do), or the one `.gguf` file of a folder
/// without config.json. `Ok(None)` for anything else (a Hugging Face folder).
pub fn locate(path: &Path) -> Result<Option<PathBuf>, GgufError> {
    let is_gguf = |p: &Path| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    };
    if path.is_file() {
        return Ok((is_gguf(path) || starts_with_magic(path)).then(|| path.to_path_buf()));
    }
    if !path.is_dir() || path.join("config.json").is_file() {
        return Ok(None);
    }
    let entries = std::fs::read_dir(path).map_err(|source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_gguf(p))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(GgufError::Ambiguous {
            dir: path.to_path_buf(),
            names: found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
        }),
    }
}

/// Whether the file at `path` begins with the four bytes "GGUF".
fn starts_with_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

/// What `tunesmith model inspect` adds for a GGUF file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgufSummary {
    pub path: PathBuf,
    pub version: u32,
    /// `general.name`, when the file names its model.
    pub name: Option<String>,
    pub architecture: String,
    /// Tensors per ggml type.
    pub tensor_types: std::collections::BTreeMap<String, usize>,
    pub tokenizer_model: Option<String>,
    pub pre_tokenizer: Option<String>,
    pub tokens: usize,
    pub merges: usize,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub add_bos_token: Option<bool>,
    pub chat_template: bool,
    /// Every scalar metadata value (arrays by their length).
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Whether the tokenizer rebuilds, and why not.
    pub tokenizer_error: Option<String>,
}

impl GgufSummary {
    /// Reads the header of `path`.
    pub fn read(path: &Path) -> Result<Self, GgufError> {
        let file = GgufFile::open(path)?;
        let mut tensor_types = std::collections::BTreeMap::new();
        for t in file.tensors.values() {
            *tensor_types.entry(t.ty.name().to_string()).or_insert(0) += 1;
        }
        let len = |key: &str| match file.metadata.get(key) {
            Some(MetaValue::Array(a)) => a.len(),
            _ => 0,
        };
        let special = vocab::tokenizer_json(&file);
        let token = |key: &str| {
            let id = file.opt_usize(key).ok().flatten()?;
            file.str_array("tokenizer.ggml.tokens")
                .ok()?
                .get(id)
                .map(|t| t.to_string())
        };
        Ok(Self {
            path: path.to_path_buf(),
            version: file.version,
            name: file
                .opt_str("general.name")
                .ok()
                .flatten()
                .map(str::to_string),
            architecture: file.str("general.architecture")?.to_string(),
            tensor_types,
            tokenizer_model: file
                .opt_str("tokenizer.ggml.model")
                .ok()
                .flatten()
                .map(str::to_string),
            pre_tokenizer: file
                .opt_str("tokenizer.ggml.pre")
                .ok()
                .flatten()
                .map(str::to_string),
            tokens: len("tokenizer.ggml.tokens"),
            merges: len("tokenizer.ggml.merges"),
            bos_token: token("tokenizer.ggml.bos_token_id"),
            eos_token: token("tokenizer.ggml.eos_token_id"),
            add_bos_token: file.opt_bool("tokenizer.ggml.add_bos_token").ok().flatten(),
            chat_template: file.metadata.contains_key("tokenizer.chat_template"),
            metadata: file
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.brief()))
                .collect(),
            tokenizer_error: special.err().map(|e| e.to_string()),
        })
    }
}
