//! The Hugging Face files that go beside a model's weights — config.json,
//! tokenizer.json, tokenizer_config.json, generation_config.json — for a
//! base that is a GGUF file and so has none: written from the file's
//! metadata, so that a merged export from a GGUF base is a folder
//! transformers loads like any other.

use std::path::Path;

use serde_json::{Value as Json, json};

use super::ExportError;
use crate::gguf::GgufFile;
use crate::model::{ModelConfig, ModelError, ModelType, RopeScaling};

/// The side files of the GGUF base `path`, by file name.
pub(super) fn from_gguf(
    path: &Path,
    model: &ModelConfig,
) -> Result<Vec<(&'static str, String)>, ExportError> {
    let file = GgufFile::open(path).map_err(ModelError::from)?;
    side_files(&file, model)
}

fn side_files(
    file: &GgufFile,
    model: &ModelConfig,
) -> Result<Vec<(&'static str, String)>, ExportError> {
    let (tokenizer, special) = crate::gguf::tokenizer_json(file).map_err(ModelError::from)?;
    let add_bos = file
        .opt_bool("tokenizer.ggml.add_bos_token")
        .ok()
        .flatten()
        .unwrap_or(false);
    let mut tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "clean_up_tokenization_spaces": false,
        "model_max_length": model.max_position_embeddings,
    });
    for (key, token) in [
        ("bos_token", &special.bos),
        ("eos_token", &special.eos),
        ("pad_token", &special.pad),
        ("unk_token", &special.unk),
    ] {
        if let Some(t) = token {
            tokenizer_config[key] = json!(t);
        }
    }
    if let Some(template) = &special.chat_template {
        tokenizer_config["chat_template"] = json!(template);
    }
    let mut generation = json!({ "_from_model_config": true });
    if let Some(bos) = model.bos_token_id {
        generation["bos_token_id"] = json!(bos);
    }
    match model.eos_token_ids.as_slice() {
        [] => {}
        [one] => generation["eos_token_id"] = json!(one),
        many => generation["eos_token_id"] = json!(many),
    }
    let pretty = |v: &Json| serde_json::to_string_pretty(v).unwrap_or_default();
    Ok(vec![
        ("config.json", pretty(&config_json(model)?)),
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", pretty(&tokenizer_config)),
        ("generation_config.json", pretty(&generation)),
    ])
}

/// The tokenizer files of a base, as text: a folder's own, or those a GGUF
/// base's metadata gives (read once), with the file's pre-tokenizer name.
pub(super) struct TokenizerTexts {
    pub tokenizer: Option<String>,
    pub tokenizer_config: Option<String>,
    /// `tokenizer.ggml.pre` of a GGUF base.
    pub gguf_pre: Option<String>,
}

impl TokenizerTexts {
    pub(super) fn read(base: &Path, model: &ModelConfig) -> Result<Self, ExportError> {
        if let Some(gguf) = crate::gguf::locate(base).map_err(ModelError::from)? {
            let file = GgufFile::open(&gguf).map_err(ModelError::from)?;
            let gguf_pre = file
                .opt_str("tokenizer.ggml.pre")
                .ok()
                .flatten()
                .map(str::to_string);
            let mut files = side_files(&file, model)?;
            let mut take = |name: &str| {
                files
                    .iter()
                    .position(|(n, _)| *n == name)
                    .map(|i| files.swap_remove(i).1)
            };
            return Ok(Self {
                tokenizer: take("tokenizer.json"),
                tokenizer_config: take("tokenizer_config.json"),
                gguf_pre,
            });
        }
        let read = |name: &str| -> Result<Option<String>, ExportError> {
            let path = base.join(name);
            if !path.is_file() {
                return Ok(None);
            }
            std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|source| ExportError::Io { path, source })
        };
        Ok(Self {
            tokenizer: read("tokenizer.json")?,
            tokenizer_config: read("tokenizer_config.json")?,
            gguf_pre: None,
        })
    }
}

/// config.json as transformers writes it for `model`.
pub(super) fn config_json(model: &ModelConfig) -> Result<Json, ExportError> {
    let architecture = match model.model_type {
        ModelType::Llama => "LlamaForCausalLM",
        ModelType::Mistral => "MistralForCausalLM",
        ModelType::Qwen2 => "Qwen2ForCausalLM",
        ModelType::Qwen3 => "Qwen3ForCausalLM",
    };
    let mut c = json!({
        "architectures": [architecture],
        "model_type": model.model_type.as_str(),
        "vocab_size": model.vocab_size,
        "hidden_size": model.hidden_size,
        "intermediate_size": model.intermediate_size,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_heads,
        "num_key_value_heads": model.num_kv_heads,
        "head_dim": model.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": model.rms_norm_eps,
        "rope_theta": model.rope_theta,
        "max_position_embeddings": model.max_position_embeddings,
        "tie_word_embeddings": model.tie_word_embeddings,
        "use_cache": true,
    });
    match model.model_type {
        ModelType::Llama => {
            c["attention_bias"] = json!(model.qkv_bias);
            c["mlp_bias"] = json!(model.mlp_bias);
        }
        ModelType::Qwen2 | ModelType::Qwen3 => {
            c["attention_bias"] = json!(model.qkv_bias);
            c["use_sliding_window"] = json!(false);
        }
        ModelType::Mistral => {}
    }
    c["sliding_window"] = json!(model.sliding_window);
    if let Some(bos) = model.bos_token_id {
        c["bos_token_id"] = json!(bos);
    }
    if let Some(&eos) = model.eos_token_ids.first() {
        c["eos_token_id"] = json!(eos);
    }
    c["rope_scaling"] = match &model.rope_scaling {
        RopeScaling::None => Json::Null,
        &RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
        &RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => llama3(
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        ),
        RopeScaling::Factors(factors) => llama3_from_factors(model, factors)?,
    };
    Ok(c)
}

fn llama3(factor: f64, low: f64, high: f64, original: f64) -> Json {
    json!({
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original as u64,
    })
}

/// GGUF files carry Llama 3's rope scaling as the per-frequency divisors
/// it produces; config.json needs the parameters. The Llama 3.1/3.2
/// releases use low 1, high 4 from 8192 positions with a factor of 8 or
/// 32: the parameters whose divisors match are the ones written.
fn llama3_from_factors(model: &ModelConfig, factors: &[f64]) -> Result<Json, ExportError> {
    for factor in [8.0, 16.0, 32.0, 4.0, 2.0] {
        let candidate = RopeScaling::Llama3 {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let probe = ModelConfig {
            rope_scaling: candidate,
            ..model.clone()
        };
        let Some(expected) = super::gguf_model::llama3_rope_factors(&probe) else {
            continue;
        };
        let close = expected.len() == factors.len()
            && expected
                .iter()
                .zip(factors)
                .all(|(&e, &f)| ((e as f64) - f).abs() <= 1e-4 * f.abs().max(1.0));
        if close {
            return Ok(llama3(factor, 1.0, 4.0, 8192.0));
        }
    }
    Err(ExportError::HfUnsupported {
        what: "the GGUF base's per-frequency rope factors (rope_freqs.weight), which match no \
               Llama 3 scaling"
            .into(),
    })
}
