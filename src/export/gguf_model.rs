//! Complete llama.cpp model files: the merged weights under llama.cpp's
//! tensor names (q/k rows permuted for the llama architecture, norms and
//! biases in f32), the architecture's hyperparameters and rope settings,
//! and the byte-level BPE tokenizer (tokens, types, merges, special ids,
//! chat template) — what llama.cpp's convert_hf_to_gguf.py writes.

use std::path::Path;

use serde_json::Value as Json;

use super::gguf::{Q8_BLOCK, TensorHeader, TensorType, Value, write_streaming};
use super::gguf_adapter::{architecture, permute_rows};
use super::merged::{merged_f32, plan};
use super::{ExportError, Trained};
use crate::model::{ModelConfig, ModelType, RopeScaling, WeightSource};
use crate::tokenizer::TextTokenizer;

/// Precision of the 2-D weights of a model file (1-D tensors stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelDtype {
    #[default]
    F16,
    BF16,
    Q8_0,
}

impl ModelDtype {
    fn tensor_type(self) -> TensorType {
        match self {
            Self::F16 => TensorType::F16,
            Self::BF16 => TensorType::BF16,
            Self::Q8_0 => TensorType::Q8_0,
        }
    }

    /// llama.cpp's `general.file_type`.
    fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 7,
            Self::BF16 => 32,
        }
    }
}

/// llama.cpp's name of an HF tensor.
fn tensor_name(hf: &str) -> Option<String> {
    Some(match hf {
        "model.embed_tokens.weight" => "token_embd.weight".into(),
        "model.norm.weight" => "output_norm.weight".into(),
        "lm_head.weight" => "output.weight".into(),
        _ => {
            let rest = hf.strip_prefix("model.layers.")?;
            let (layer, path) = rest.split_once('.')?;
            let (module, kind) = path.rsplit_once('.')?;
            let short = match module {
                "input_layernorm" => "attn_norm",
                "post_attention_layernorm" => "ffn_norm",
                "self_attn.q_proj" => "attn_q",
                "self_attn.k_proj" => "attn_k",
                "self_attn.v_proj" => "attn_v",
                "self_attn.o_proj" => "attn_output",
                "self_attn.q_norm" => "attn_q_norm",
                "self_attn.k_norm" => "attn_k_norm",
                "mlp.gate_proj" => "ffn_gate",
                "mlp.up_proj" => "ffn_up",
                "mlp.down_proj" => "ffn_down",
                _ => return None,
            };
            format!("blk.{layer}.{short}.{kind}")
        }
    })
}

fn unsupported(what: String) -> ExportError {
    ExportError::GgufUnsupported { what }
}

/// Writes the model file `out` atomically; returns notes for the report.
pub fn write(trained: &Trained, out: &Path, dtype: ModelDtype) -> Result<Vec<String>, ExportError> {
    let base_dir = &trained.config.model.path;
    let model = &trained.model;
    if let Some(window) = model.sliding_window {
        return Err(unsupported(format!(
            "a sliding attention window ({window} tokens) under the llama architecture"
        )));
    }
    let source = WeightSource::open(base_dir)?;
    let updates = plan(trained, &source)?;
    let tokenizer = TextTokenizer::from_dir(base_dir)?;
    let arch = architecture(model.model_type);
    let mut notes = Vec::new();
    let mut metadata = hyperparameters(model, arch, dtype, trained);
    metadata.extend(tokenizer_metadata(base_dir, model, &tokenizer, &mut notes)?);

    // Tensors in the base's order, plus llama3 rope factors.
    let mut headers = Vec::new();
    let mut sources: Vec<Option<&str>> = Vec::new();
    for (name, info) in source.tensors() {
        let gguf_name =
            tensor_name(name).ok_or_else(|| unsupported(format!("the tensor {name}")))?;
        let ty = if info.shape.len() == 1 {
            TensorType::F32
        } else if dtype == ModelDtype::Q8_0 && info.shape[1] % Q8_BLOCK != 0 {
            notes.push(format!(
                "{gguf_name} kept in f16 (rows not a multiple of 32)"
            ));
            TensorType::F16
        } else {
            dtype.tensor_type()
        };
        headers.push(TensorHeader {
            name: gguf_name,
            dims: info.shape.iter().rev().map(|&d| d as u64).collect(),
            ty,
        });
        sources.push(Some(name.as_str()));
    }
    let rope_factors = llama3_rope_factors(model);
    if let Some(f) = &rope_factors {
        headers.push(TensorHeader {
            name: "rope_freqs.weight".into(),
            dims: vec![f.len() as u64],
            ty: TensorType::F32,
        });
        sources.push(None);
    }
    let permute_heads = |name: &str| -> Option<usize> {
        if arch != "llama" {
            return None;
        }
        if name.contains("self_attn.q_proj.") {
            Some(model.num_heads)
        } else if name.contains("self_attn.k_proj.") {
            Some(model.num_kv_heads)
        } else {
            None
        }
    };
    let tmp = out.with_file_name(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
        write_streaming(&mut w, &metadata, &headers, |i| {
            let Some(name) = sources[i] else {
                return Ok(TensorType::F32.encode(rope_factors.as_deref().unwrap_or(&[])));
            };
            let info = &source.tensors()[name];
            let mut values = merged_f32(info, &source.raw(info), updates.get(name))
                .ok_or_else(|| std::io::Error::other(format!("{name} is not a float tensor")))?;
            if let Some(heads) = permute_heads(name) {
                let rows = info.shape[0];
                let cols = info.shape.get(1).copied().unwrap_or(1);
                values = permute_rows(&values, rows, cols, heads);
            }
            Ok(headers[i].ty.encode(&values))
        })?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(out)(e));
    }
    if arch == "llama" {
        notes.push("q/k weight rows permuted per head as llama.cpp stores them".into());
    }
    Ok(notes)
}

fn hyperparameters(
    model: &ModelConfig,
    arch: &str,
    dtype: ModelDtype,
    trained: &Trained,
) -> Vec<(String, Value)> {
    let key = |k: &str| format!("{arch}.{k}");
    let name = trained
        .run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut m = vec![
        ("general.architecture".to_string(), Value::Str(arch.into())),
        ("general.type".into(), Value::Str("model".into())),
        ("general.name".into(), Value::Str(name)),
        ("general.file_type".into(), Value::U32(dtype.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        (key("block_count"), Value::U32(model.num_layers as u32)),
        (
            key("context_length"),
            Value::U32(model.max_position_embeddings as u32),
        ),
        (
            key("embedding_length"),
            Value::U32(model.hidden_size as u32),
        ),
        (
            key("feed_forward_length"),
            Value::U32(model.intermediate_size as u32),
        ),
        (
            key("attention.head_count"),
            Value::U32(model.num_heads as u32),
        ),
        (
            key("attention.head_count_kv"),
            Value::U32(model.num_kv_heads as u32),
        ),
        (key("rope.freq_base"), Value::F32(model.rope_theta as f32)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(model.rms_norm_eps as f32),
        ),
        (
            key("attention.key_length"),
            Value::U32(model.head_dim as u32),
        ),
        (
            key("attention.value_length"),
            Value::U32(model.head_dim as u32),
        ),
        (
            key("rope.dimension_count"),
            Value::U32(model.head_dim as u32),
        ),
        (key("vocab_size"), Value::U32(model.vocab_size as u32)),
    ];
    if let RopeScaling::Linear { factor } = model.rope_scaling {
        m.push((key("rope.scaling.type"), Value::Str("linear".into())));
        m.push((key("rope.scaling.factor"), Value::F32(factor as f32)));
    }
    m
}

/// Llama 3.1's frequency-dependent rope scaling as the per-dimension
/// divisors llama.cpp reads from `rope_freqs.weight`.
pub(super) fn llama3_rope_factors(model: &ModelConfig) -> Option<Vec<f32>> {
    if let RopeScaling::Factors(factors) = &model.rope_scaling {
        return Some(factors.iter().map(|&f| f as f32).collect());
    }
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings: old_len,
    } = model.rope_scaling
    else {
        return None;
    };
    let dim = model.head_dim;
    let low_wavelen = old_len / low_freq_factor;
    let high_wavelen = old_len / high_freq_factor;
    Some(
        (0..dim / 2)
            .map(|i| {
                let exponent = ((2 * i) as f32 / dim as f32) as f64;
                let freq = 1.0 / (model.rope_theta as f32 as f64).powf(exponent) as f32 as f64;
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let f = if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old_len / wavelen - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                };
                f as f32
            })
            .collect(),
    )
}

/// llama.cpp's name for the pre-tokenizer (the regex that splits text
/// before BPE), recognised from tokenizer.json.
fn pre_tokenizer(tokenizer_json: &Json) -> Option<&'static str> {
    let pre = tokenizer_json.get("pre_tokenizer")?;
    let text = pre.to_string();
    if text.contains(r"\\p{N}{1,3}") {
        Some("llama-bpe")
    } else if text.contains(r"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|") {
        Some("qwen2")
    } else if text.contains("\"Digits\"") && text.contains("\"individual_digits\":true") {
        Some("smollm")
    } else if pre.get("type").and_then(Json::as_str) == Some("ByteLevel") {
        Some("gpt-2")
    } else {
        None
    }
}

fn tokenizer_metadata(
    dir: &Path,
    model: &ModelConfig,
    tokenizer: &TextTokenizer,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, Value)>, ExportError> {
    let path = dir.join("tokenizer.json");
    let texts = super::hf_files::TokenizerTexts::read(dir, model)?;
    let text = texts.tokenizer.ok_or_else(|| ExportError::Io {
        path: path.clone(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let json: Json = serde_json::from_str(&text).map_err(|e| ExportError::Checkpoint {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let bpe = &json["model"];
    let byte_level = json["pre_tokenizer"].to_string().contains("ByteLevel");
    if bpe["type"] != "BPE" || !byte_level {
        return Err(unsupported(
            "this tokenizer (only byte-level BPE — Llama 3, Qwen, SmolLM2 — is written; \
             SentencePiece models such as TinyLlama and Mistral need llama.cpp's converter)"
                .into(),
        ));
    }
    let n = model.vocab_size;
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![1i32; n];
    if let Some(vocab) = bpe["vocab"].as_object() {
        for (token, id) in vocab {
            if let Some(slot) = id.as_u64().and_then(|i| tokens.get_mut(i as usize)) {
                *slot = Some(token.clone());
            }
        }
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else {
            continue;
        };
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = Some(content.to_string());
            // Control for special tokens, user-defined for the others.
            types[id as usize] = if added["special"] == true { 3 } else { 4 };
        }
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = 5;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<String> = bpe["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => Some(s.clone()),
            Json::Array(pair) => Some(format!(
                "{} {}",
                pair.first()?.as_str()?,
                pair.get(1)?.as_str()?
            )),
            _ => None,
        })
        .collect();
    // A GGUF base names its pre-tokenizer itself; keep that name.
    let pre = texts
        .gguf_pre
        .or_else(|| pre_tokenizer(&json).map(str::to_string))
        .unwrap_or_else(|| {
            notes.push(
                "pre-tokenizer not recognised: written as \"default\"; llama.cpp may split text \
                 differently from transformers"
                    .into(),
            );
            "default".to_string()
        });
    let mut m = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::Str("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".into(), Value::Str(pre)),
        ("tokenizer.ggml.tokens".into(), Value::ArrStr(tokens)),
        ("tokenizer.ggml.token_type".into(), Value::ArrI32(types)),
        ("tokenizer.ggml.merges".into(), Value::ArrStr(merges)),
    ];
    let config_json: Json = texts
        .tokenizer_config
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Json::Null);
    let special = |key: &str| -> Option<u32> {
        let v = &config_json[key];
        let s = v.as_str().or_else(|| v["content"].as_str())?;
        tokenizer.token_id(s)
    };
    let bos = special("bos_token").or(model.bos_token_id);
    let eos = special("eos_token").or(model.eos_token_ids.first().copied());
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", bos),
        ("tokenizer.ggml.eos_token_id", eos),
        ("tokenizer.ggml.padding_token_id", special("pad_token")),
    ] {
        if let Some(id) = id {
            m.push((key.into(), Value::U32(id)));
        }
    }
    // BOS is added when the tokenizer's post-processor prepends it.
    let adds_bos = bos.is_some_and(|b| {
        tokenizer
            .encode("a", true)
            .is_ok_and(|ids| ids.first() == Some(&b))
    });
    let adds_eos = eos.is_some_and(|e| {
        tokenizer
            .encode("a", true)
            .is_ok_and(|ids| ids.last() == Some(&e))
    });
    m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(adds_bos)));
    m.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(adds_eos)));
    // Template post-processors can add a separator between paired inputs;
    // ours never do, and llama.cpp's converter says so explicitly.
    if json["post_processor"]
        .to_string()
        .contains("TemplateProcessing")
    {
        m.push(("tokenizer.ggml.add_sep_token".into(), Value::Bool(false)));
    }
    if let Some(template) = tokenizer.chat_template_source() {
        m.push((
            "tokenizer.chat_template".into(),
            Value::Str(template.to_string()),
        ));
    }
    if model.model_type == ModelType::Mistral {
        notes.push("Mistral is written under llama.cpp's llama architecture".into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_tensors_get_llama_cpp_names() {
        for (hf, ours) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.norm.weight", "output_norm.weight"),
            (
                "model.layers.2.input_layernorm.weight",
                "blk.2.attn_norm.weight",
            ),
            ("model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"),
            (
                "model.layers.1.self_attn.k_norm.weight",
                "blk.1.attn_k_norm.weight",
            ),
            ("model.layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"),
        ] {
            assert_eq!(tensor_name(hf).as_deref(), Some(ours), "{hf}");
        }
        assert_eq!(tensor_name("model.layers.0.mlp.experts.weight"), None);
    }
}
