//! `RunConfig`: everything one training run needs, as TOML. Presets,
//! the CLI and the desktop wizard all produce this one type; docs/config.md
//! documents every key and its default.

mod overrides;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::BackendChoice;
use crate::methods::MethodConfig;

pub use overrides::apply_override;

/// A whole run: model, data, method, training schedule and output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub model: ModelSection,
    pub data: DataSection,
    pub method: MethodConfig,
    pub train: TrainSection,
    pub output: OutputSection,
    /// The advisor's rules (docs/advisor.md).
    pub early_stopping: crate::advisor::AdvisorConfig,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// HF model folder (config.json, tokenizer.json, *.safetensors).
    pub path: PathBuf,
    /// Where to compute: auto, cpu, wgpu or cuda.
    pub backend: BackendName,
    /// Storage precision of the frozen base weights: `auto` (the
    /// checkpoint's), `f32`, `bf16` or `f16`. Compute and trained weights
    /// stay f32.
    pub dtype: Dtype,
    /// Block quantization of the frozen linear weights (QLoRA): `none`,
    /// `q8_0`, `q4_0` or `nf4`. Adapter methods only.
    pub quantize: Quantize,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            backend: BackendName::Auto,
            dtype: Dtype::F32,
            quantize: Quantize::None,
        }
    }
}

/// `model.quantize` as written in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quantize {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_0")]
    Q4_0,
    #[serde(rename = "nf4")]
    Nf4,
}

impl Quantize {
    /// The block format, `None` for `none`.
    pub fn format(self) -> Option<crate::model::quant::QuantFormat> {
        use crate::model::quant::QuantFormat;
        match self {
            Self::None => None,
            Self::Q8_0 => Some(QuantFormat::Q8_0),
            Self::Q4_0 => Some(QuantFormat::Q4_0),
            Self::Nf4 => Some(QuantFormat::Nf4),
        }
    }

    /// The value as written in TOML.
    pub fn name(self) -> &'static str {
        self.format().map_or("none", |f| f.name())
    }
}

/// Backend names as written in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl From<BackendName> for BackendChoice {
    fn from(b: BackendName) -> Self {
        match b {
            BackendName::Auto => BackendChoice::Auto,
            BackendName::Cpu => BackendChoice::Cpu,
            BackendName::Wgpu => BackendChoice::Wgpu,
            BackendName::Cuda => BackendChoice::Cuda,
        }
    }
}

/// Storage precision of frozen weights (see `model::precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// The checkpoint's dtype where the device can hold it, else f32.
    Auto,
    F32,
    Bf16,
    F16,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Training file (JSONL).
    pub train: PathBuf,
    /// Optional validation file; without it `val_fraction` of `train` is held out.
    pub val: Option<PathBuf>,
    /// Row schema: auto, alpaca, messages, prompt_completion or text.
    pub format: crate::data::Format,
    /// Longest sequence in tokens; longer rows are truncated (and counted).
    pub max_length: usize,
    /// Share of `train` held out for validation when `val` is not given.
    pub val_fraction: f64,
    /// Seed of the train/validation split and of the shuffling.
    pub seed: u64,
    /// Which tokens the loss covers: `assistant` (the answers) or `all`.
    pub train_on: crate::data::TrainOn,
    /// Largest share of bad rows (invalid JSON, missing fields...) tolerated;
    /// bad rows are skipped and reported, above this share the run refuses.
    pub max_bad_fraction: f64,
    /// Our field names -> the file's, for files with other names
    /// (`columns = { output = "answer" }`).
    pub columns: std::collections::BTreeMap<String, String>,
    /// Template for models without a chat template: `chatml` or `none`
    /// (refuse conversations).
    pub fallback_template: crate::data::FallbackTemplate,
    /// Batch rows of similar length together (less padding).
    pub group_by_length: bool,
    /// Concatenate short examples into sequences of up to `max_length`
    /// tokens; each still attends only to itself.
    pub packing: bool,
}

impl DataSection {
    /// How the data files are read and rendered.
    pub fn load_options(&self) -> crate::data::LoadOptions {
        crate::data::LoadOptions {
            format: self.format,
            max_length: self.max_length,
            train_on: self.train_on,
            max_bad_fraction: self.max_bad_fraction,
            columns: self.columns.clone(),
            fallback_template: self.fallback_template,
        }
    }
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            train: PathBuf::new(),
            val: None,
            format: crate::data::Format::Auto,
            max_length: 512,
            val_fraction: 0.1,
            seed: 42,
            train_on: crate::data::TrainOn::Assistant,
            max_bad_fraction: 0.01,
            columns: Default::default(),
            fallback_template: crate::data::FallbackTemplate::Chatml,
            group_by_length: true,
            packing: false,
        }
    }
}

/// Learning-rate schedules (after warmup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Sequences per forward/backward pass.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step (effective batch = micro_batch × this).
    pub grad_accum: usize,
    /// Passes over the training set (used when `max_steps` is 0).
    pub epochs: usize,
    /// Optimizer steps to run; 0 = as many as `epochs` needs.
    pub max_steps: usize,
    pub learning_rate: f64,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay (not applied to biases and norms).
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this; 0 = no clipping.
    pub max_grad_norm: f64,
    /// Report a step event every N optimizer steps (and the last one).
    pub log_every: usize,
    /// Validation loss every N optimizer steps (and at the end); 0 = only at the end.
    pub eval_every: usize,
    /// Checkpoint every N optimizer steps (and at the end); 0 = only at the end.
    pub checkpoint_every: usize,
    /// Step checkpoints kept besides the best one.
    pub keep_checkpoints: usize,
    /// Seed of adapter initialisation and dropout.
    pub seed: u64,
    /// Recompute each decoder layer in backward instead of keeping its
    /// activations: much less memory for one more forward pass (about 1.6x
    /// the time with LoRA, whose backward is as cheap as its forward).
    pub gradient_checkpointing: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            micro_batch: 4,
            grad_accum: 4,
            epochs: 1,
            max_steps: 0,
            learning_rate: 2e-4,
            schedule: Schedule::Cosine,
            warmup_steps: 0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            log_every: 1,
            eval_every: 50,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            seed: 42,
            gradient_checkpointing: false,
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Folder that holds run directories; empty = the user data folder
    /// (`$XDG_DATA_HOME/tunesmith/runs`, else `~/.local/share/tunesmith/runs`).
    pub runs_dir: PathBuf,
    /// Suffix of the run directory name; empty = the method name.
    pub name: String,
}

/// A configuration that cannot be read or does not make sense.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {reason}")]
    Parse { origin: String, reason: String },
    #[error("--set {arg}: {reason}")]
    Override { arg: String, reason: String },
    #[error("{key} = {value} is invalid: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{key} is not set: {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
}

/// Keys holding paths: relative paths in a file are taken relative to
/// that file's folder, so presets work from any working directory.
const PATH_KEYS: [(&str, &str); 5] = [
    ("model", "path"),
    ("data", "train"),
    ("data", "val"),
    ("output", "runs_dir"),
    ("method", "corda_data"),
];

impl RunConfig {
    /// Reads a TOML file and applies `--set key=value` overrides (their
    /// relative paths are taken relative to the working directory).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // Anchor at an absolute folder: the run directory stores these paths
        // and must not depend on where `resume` is started from.
        let base =
            std::path::absolute(path.parent().unwrap_or(Path::new("."))).map_err(|source| {
                ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Self::from_toml_str(&text, &path.display().to_string(), &base, overrides)
    }

    /// Parses TOML text; `origin` names it in errors and `base` anchors
    /// its relative paths.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        base: &Path,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_string(),
                    reason: e.to_string(),
                })?;
        absolutize(&mut table, base);
        let cwd = std::env::current_dir().unwrap_or_default();
        for arg in overrides {
            apply_override(&mut table, arg, &cwd)?;
        }
        let config: RunConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_string(),
                    reason: e.message().to_string(),
                })?;
        Ok(config)
    }

    /// The config as TOML text (what the run directory stores).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks values that need no file access; files and shapes are checked
    /// by `Session::start`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.train;
        let d = &self.data;
        if self.model.path.as_os_str().is_empty() {
            return Err(ConfigError::Missing {
                key: "model.path",
                hint: "point it at an HF model folder, e.g. --set model.path=assets/models/tiny-llama",
            });
        }
        if d.train.as_os_str().is_empty() {
            return Err(ConfigError::Missing {
                key: "data.train",
                hint: "point it at a JSONL dataset, e.g. --set data.train=assets/datasets/alpaca-sample.jsonl",
            });
        }
        let positive = |key, v: f64, reason| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    reason,
                })
            }
        };
        positive(
            "train.learning_rate",
            t.learning_rate,
            "the learning rate must be > 0 (LoRA: 1e-4..5e-4; full: 1e-5..5e-5)",
        )?;
        positive("train.eps", t.eps, "eps must be > 0 (1e-8 as in PyTorch)")?;
        for (key, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    reason: "betas must be in [0, 1) (0.9 and 0.999 are usual)",
                });
            }
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(ConfigError::Invalid {
                key: "train.weight_decay",
                value: t.weight_decay.to_string(),
                reason: "weight decay must be >= 0",
            });
        }
        if !(t.max_grad_norm.is_finite() && t.max_grad_norm >= 0.0) {
            return Err(ConfigError::Invalid {
                key: "train.max_grad_norm",
                value: t.max_grad_norm.to_string(),
                reason: "use a positive norm (1.0 is usual) or 0 to turn clipping off",
            });
        }
        for (key, v) in [
            ("train.micro_batch", t.micro_batch),
            ("train.grad_accum", t.grad_accum),
            ("train.log_every", t.log_every),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: "0".into(),
                    reason: "must be at least 1",
                });
            }
        }
        if t.epochs == 0 && t.max_steps == 0 {
            return Err(ConfigError::Invalid {
                key: "train.max_steps",
                value: "0".into(),
                reason: "with train.epochs = 0, set max_steps to the number of optimizer steps",
            });
        }
        if !(0.0..1.0).contains(&d.val_fraction) {
            return Err(ConfigError::Invalid {
                key: "data.val_fraction",
                value: d.val_fraction.to_string(),
                reason: "the held-out share must be in [0, 1)",
            });
        }
        if d.max_length < 2 {
            return Err(ConfigError::Invalid {
                key: "data.max_length",
                value: d.max_length.to_string(),
                reason: "a sequence needs at least 2 tokens to predict one",
            });
        }
        if self.model.quantize != Quantize::None
            && let Some(reason) = self.method.method().quantized_base_refusal()
        {
            return Err(ConfigError::Invalid {
                key: "model.quantize",
                value: self.model.quantize.name().to_string(),
                reason,
            });
        }
        Ok(())
    }

    /// The folder holding run directories.
    pub fn runs_dir(&self) -> PathBuf {
        if self.output.runs_dir.as_os_str().is_empty() {
            default_runs_dir()
        } else {
            self.output.runs_dir.clone()
        }
    }
}

/// `$XDG_DATA_HOME/tunesmith/runs`, else `~/.local/share/tunesmith/runs`,
/// else `./runs`.
pub fn default_runs_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match data {
        Some(d) => d.join("tunesmith").join("runs"),
        None => PathBuf::from("runs"),
    }
}

fn absolutize(table: &mut toml::Table, base: &Path) {
    for (section, key) in PATH_KEYS {
        if let Some(toml::Value::Table(s)) = table.get_mut(section)
            && let Some(toml::Value::String(p)) = s.get_mut(key)
            && !p.is_empty()
            && Path::new(p.as_str()).is_relative()
        {
            *p = normalize(&base.join(p.as_str())).display().to_string();
        }
    }
}

/// Removes `.` and `dir/..` pairs without touching the file system, so
/// stored paths read `/x/assets/m` rather than `/x/presets/../assets/m`.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn is_path_key(section: &str, key: &str) -> bool {
    PATH_KEYS.contains(&(section, key))
}
