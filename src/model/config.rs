use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::ModelError;

/// The architectures Tunesmith can load. They share one decoder design and
/// differ in biases, norms and rope details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl ModelType {
    /// The `model_type` strings of config.json that we accept.
    pub const SUPPORTED: [&'static str; 4] = ["llama", "mistral", "qwen2", "qwen3"];

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "llama" => Self::Llama,
            "mistral" => Self::Mistral,
            "qwen2" => Self::Qwen2,
            "qwen3" => Self::Qwen3,
            _ => return None,
        })
    }

    /// The `model_type` string as HF writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

impl std::fmt::Display for ModelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How rotary frequencies are rescaled for longer contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain rope.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's wavelength-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Each frequency divided by its own factor (llama.cpp's
    /// `rope_freqs.weight`, how GGUF files carry Llama 3's scaling).
    Factors(Vec<f64>),
}

/// A model's hyperparameters, normalised from the several layouts of
/// config.json that transformers 4 and 5 write.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    /// Bias on q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub o_bias: bool,
    /// Bias on gate, up and down projections.
    pub mlp_bias: bool,
    /// Qwen3's RMSNorm on each head of q and k.
    pub qk_norm: bool,
    pub tie_word_embeddings: bool,
    /// Mistral's sliding attention window, when the config sets one.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The dtype config.json declares (`torch_dtype` or `dtype`), if any.
    pub declared_dtype: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    hidden_act: Option<String>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
}

impl ModelConfig {
    /// Reads `config.json` from a model folder.
    /// A GGUF file (or a folder holding one and no config.json) gives its
    /// metadata instead.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        if let Some(file) = crate::gguf::locate(dir)? {
            let file = crate::gguf::GgufFile::open(&file)?;
            return Ok(crate::gguf::model_config(&file)?);
        }
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(ModelError::NotAModelDir {
                path: dir.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        Self::from_json(&text, &path)
    }

    /// Parses the text of a config.json; `path` is only used in messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ModelError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        let found = raw.model_type.clone().unwrap_or_default();
        let model_type =
            ModelType::parse(&found).ok_or_else(|| ModelError::UnsupportedModelType {
                path: path.to_path_buf(),
                found: if found.is_empty() {
                    "(none)".into()
                } else {
                    found
                },
                supported: ModelType::SUPPORTED.to_vec(),
            })?;
        let need = |v: Option<usize>, key: &str| {
            v.filter(|&n| n > 0)
                .ok_or_else(|| invalid(format!("\"{key}\" is missing or zero")))
        };
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(num_heads);
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(invalid(format!(
                "num_attention_heads ({num_heads}) must be a multiple of num_key_value_heads ({num_kv_heads})"
            )));
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(invalid(format!(
                    "hidden_size ({hidden_size}) is not divisible by num_attention_heads ({num_heads}) and head_dim is not set"
                )));
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(invalid(format!("head_dim ({head_dim}) must be even")));
        }
        if let Some(act) = raw.hidden_act.as_deref()
            && act != "silu"
        {
            return Err(invalid(format!(
                "hidden_act \"{act}\" is not supported (only silu)"
            )));
        }
        let (rope_theta, rope_scaling) = parse_rope(&raw, path)?;

        let sliding_window = match model_type {
            ModelType::Mistral => raw.sliding_window,
            _ if raw.use_sliding_window == Some(true) => {
                return Err(invalid(
                    "use_sliding_window = true is not supported for this architecture".into(),
                ));
            }
            _ => None,
        };
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match model_type {
            ModelType::Qwen2 => (true, false),
            ModelType::Mistral => (false, false),
            ModelType::Llama | ModelType::Qwen3 => (attention_bias, attention_bias),
        };

        Ok(Self {
            model_type,
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            num_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            qkv_bias,
            o_bias,
            mlp_bias: raw.mlp_bias.unwrap_or(false) && model_type == ModelType::Llama,
            qk_norm: model_type == ModelType::Qwen3,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            sliding_window,
            bos_token_id: token_ids(raw.bos_token_id.as_ref()).first().copied(),
            eos_token_ids: token_ids(raw.eos_token_id.as_ref()),
            declared_dtype: raw.dtype.or(raw.torch_dtype),
        })
    }
}

/// A token id field may be a number, a list of numbers, or null.
pub(crate) fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as u32).into_iter().collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|n| n as u32))
            .collect(),
        _ => Vec::new(),
    }
}

/// transformers 4 writes `rope_theta` + `rope_scaling`; transformers 5 writes
/// one `rope_parameters` dict holding both.
fn parse_rope(raw: &RawConfig, path: &Path) -> Result<(f64, RopeScaling), ModelError> {
    let params = raw.rope_parameters.as_ref().filter(|v| v.is_object());
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or(raw.rope_theta)
        .unwrap_or(10_000.0);
    let scaling = params.or(raw.rope_scaling.as_ref().filter(|v| v.is_object()));
    let Some(scaling) = scaling else {
        return Ok((theta, RopeScaling::None));
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let path_buf = || PathBuf::from(path);
    let num = |key: &str| -> Result<f64, ModelError> {
        scaling
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| ModelError::InvalidConfig {
                path: path_buf(),
                reason: format!("rope scaling of type \"{kind}\" needs a numeric \"{key}\""),
            })
    };
    let rope = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => {
            return Err(ModelError::UnsupportedRope {
                path: path_buf(),
                kind: other.to_string(),
            });
        }
    };
    Ok((theta, rope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ModelConfig, ModelError> {
        ModelConfig::from_json(json, Path::new("config.json"))
    }

    const BASE: &str = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2"#;

    #[test]
    fn legacy_and_v5_rope_layouts_agree() {
        let legacy = parse(&format!(
            r#"{{"model_type":"llama",{BASE},"rope_theta":500000.0,
            "rope_scaling":{{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":8192}}}}"#
        ))
        .unwrap();
        let v5 = parse(&format!(
            r#"{{"model_type":"llama",{BASE},"rope_parameters":{{"rope_type":"llama3",
            "rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192}}}}"#
        ))
        .unwrap();
        assert_eq!(legacy, v5);
        assert_eq!(legacy.rope_theta, 500000.0);
        assert!(matches!(legacy.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn unsupported_model_type_lists_supported() {
        let err = parse(&format!(r#"{{"model_type":"gpt2",{BASE}}}"#)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"gpt2\""), "{msg}");
        assert!(msg.contains("llama, mistral, qwen2, qwen3"), "{msg}");
    }

    #[test]
    fn unsupported_rope_type_is_named() {
        let err = parse(&format!(
            r#"{{"model_type":"qwen2",{BASE},"rope_scaling":{{"type":"yarn","factor":4.0}}}}"#
        ))
        .unwrap_err();
        assert!(err.to_string().contains("\"yarn\""), "{err}");
    }

    #[test]
    fn qwen2_has_qkv_bias_and_gqa_defaults() {
        let c = parse(&format!(
            r#"{{"model_type":"qwen2",{BASE},"num_key_value_heads":1}}"#
        ))
        .unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!((c.num_kv_heads, c.head_dim), (1, 4));
    }

    #[test]
    fn bad_gqa_ratio_is_rejected() {
        let err = parse(&format!(
            r#"{{"model_type":"llama",{BASE},"num_key_value_heads":3}}"#
        ))
        .unwrap_err();
        assert!(err.to_string().contains("multiple"), "{err}");
    }
}
