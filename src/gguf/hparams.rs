//! A GGUF model's hyperparameters as a [`ModelConfig`] and its tensors
//! under their Hugging Face names, the way transformers reads the same file
//! (`from_pretrained(dir, gguf_file=...)`), so everything downstream of
//! loading sees one layout.

use std::collections::BTreeMap;

use super::{GgufError, GgufFile};
use crate::model::{ModelConfig, ModelType, RopeScaling};

/// The GGUF architectures we load, and the model type each becomes.
/// llama.cpp writes Mistral 7B as "llama"; newer converters may say
/// "mistral".
fn model_type(arch: &str) -> Option<ModelType> {
    Some(match arch {
        "llama" => ModelType::Llama,
        "mistral" => ModelType::Mistral,
        "qwen2" => ModelType::Qwen2,
        "qwen3" => ModelType::Qwen3,
        _ => return None,
    })
}

/// The file's `general.architecture`, checked to be one we load.
pub(crate) fn architecture(file: &GgufFile) -> Result<(&str, ModelType), GgufError> {
    let arch = file.str("general.architecture")?;
    let ty = model_type(arch).ok_or_else(|| GgufError::UnsupportedArch {
        path: file.path().to_path_buf(),
        arch: arch.to_string(),
    })?;
    Ok((arch, ty))
}

/// The hyperparameters of a GGUF model.
pub fn model_config(file: &GgufFile) -> Result<ModelConfig, GgufError> {
    let (arch, model_type) = architecture(file)?;
    let key = |k: &str| format!("{arch}.{k}");
    let bad = |k: &str, reason: String| GgufError::BadKey {
        path: file.path().to_path_buf(),
        key: k.to_string(),
        reason,
    };
    let positive = |k: &str| -> Result<usize, GgufError> {
        let k = key(k);
        match file.usize(&k)? {
            0 => Err(bad(&k, "must be positive".into())),
            n => Ok(n),
        }
    };
    let hidden_size = positive("embedding_length")?;
    let num_layers = positive("block_count")?;
    let intermediate_size = positive("feed_forward_length")?;
    let num_heads = positive("attention.head_count")?;
    let kv_key = key("attention.head_count_kv");
    let num_kv_heads = file.opt_usize(&kv_key)?.unwrap_or(num_heads);
    if num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
        return Err(bad(
            &kv_key,
            format!("{num_kv_heads} KV heads do not divide {num_heads} heads"),
        ));
    }
    let head_dim = match file.opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None if hidden_size.is_multiple_of(num_heads) => hidden_size / num_heads,
        None => {
            return Err(bad(
                &key("attention.key_length"),
                "missing, and the embedding length is not a multiple of the heads".into(),
            ));
        }
    };
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(bad(
            &key("attention.key_length"),
            format!("head size {head_dim} must be even"),
        ));
    }
    let embed = file
        .tensors
        .get("token_embd.weight")
        .ok_or_else(|| GgufError::BadTensor {
            path: file.path().to_path_buf(),
            tensor: "token_embd.weight".into(),
            reason: "missing; the file holds no complete model".into(),
        })?;
    // The embedding's rows are the vocabulary the weights know; the
    // tokenizer may list fewer (padding rows) but never more.
    let vocab_size = embed.dims.get(1).copied().unwrap_or(0);
    let rope_theta = file.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0);
    let rope_scaling = rope_scaling(file, arch)?;
    let has = |name: &str| file.tensors.contains_key(name);
    let (bos_token_id, eos_token_ids) = special_ids(file)?;
    let declared_dtype = match file.opt_usize("general.file_type")? {
        Some(0) => Some("float32".to_string()),
        Some(1) => Some("float16".to_string()),
        Some(32) => Some("bfloat16".to_string()),
        // A quantized file has no 16-bit type that holds its values
        // exactly; "auto" keeps them in f32 (set model.dtype or
        // model.quantize to save memory).
        _ => None,
    };
    Ok(ModelConfig {
        model_type,
        vocab_size,
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps: file
            .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-6),
        rope_theta,
        rope_scaling,
        max_position_embeddings: file.opt_usize(&key("context_length"))?.unwrap_or(2048),
        qkv_bias: has("blk.0.attn_q.bias"),
        o_bias: has("blk.0.attn_output.bias"),
        mlp_bias: has("blk.0.ffn_up.bias"),
        qk_norm: has("blk.0.attn_q_norm.weight"),
        tie_word_embeddings: !has("output.weight"),
        sliding_window: match model_type {
            ModelType::Mistral => file.opt_usize(&key("attention.sliding_window"))?,
            _ => None,
        },
        bos_token_id,
        eos_token_ids,
        declared_dtype,
    })
}

/// Rope scaling from `{arch}.rope.scaling.*`, or Llama 3's per-frequency
/// factors, which llama.cpp stores as the `rope_freqs.weight` tensor.
fn rope_scaling(file: &GgufFile, arch: &str) -> Result<RopeScaling, GgufError> {
    if let Some(t) = file.tensors.get("rope_freqs.weight") {
        let factors = super::dequant::dequantize(t.ty, file.data(t), t.numel());
        return Ok(RopeScaling::Factors(
            factors.into_iter().map(f64::from).collect(),
        ));
    }
    let type_key = format!("{arch}.rope.scaling.type");
    match file.opt_str(&type_key)? {
        None | Some("none") => Ok(RopeScaling::None),
        Some("linear") => {
            let factor_key = format!("{arch}.rope.scaling.factor");
            let factor = file.opt_f64(&factor_key)?.unwrap_or(1.0);
            Ok(if factor == 1.0 {
                RopeScaling::None
            } else {
                RopeScaling::Linear { factor }
            })
        }
        Some(other) => Err(GgufError::BadKey {
            path: file.path().to_path_buf(),
            key: type_key,
            reason: format!("rope scaling \"{other}\" is not supported (none, linear)"),
        }),
    }
}

fn special_ids(file: &GgufFile) -> Result<(Option<u32>, Vec<u32>), GgufError> {
    let id = |k: &str| file.opt_usize(k).map(|v| v.map(|v| v as u32));
    let bos = id("tokenizer.ggml.bos_token_id")?;
    let eos = id("tokenizer.ggml.eos_token_id")?;
    let eot = id("tokenizer.ggml.eot_token_id")?;
    let mut eos_ids: Vec<u32> = eos.into_iter().chain(eot).collect();
    eos_ids.dedup();
    Ok((bos, eos_ids))
}

/// Where a Hugging Face tensor comes from in the GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// The tensor's GGUF name.
    pub gguf: String,
    /// llama.cpp permutes the rows of llama's q and k projections per head
    /// (for its interleaved rope); this many heads undo it.
    pub permute_heads: Option<usize>,
}

/// Every tensor of the file under its Hugging Face name. Names we do not
/// know keep their GGUF name, so the loader reports them as unexpected
/// rather than silently dropping weights.
pub fn tensor_map(file: &GgufFile, config: &ModelConfig) -> BTreeMap<String, HfTensor> {
    let permutes = matches!(config.model_type, ModelType::Llama | ModelType::Mistral);
    let mut map = BTreeMap::new();
    for name in file.tensors.keys() {
        if name == "rope_freqs.weight" {
            // Read into the config's rope scaling.
            continue;
        }
        let (hf, permute_heads) = match hf_name(name) {
            Some((hf, heads)) => {
                let heads = match heads {
                    Heads::Query if permutes => Some(config.num_heads),
                    Heads::Key if permutes => Some(config.num_kv_heads),
                    _ => None,
                };
                (hf, heads)
            }
            None => (name.clone(), None),
        };
        map.insert(
            hf,
            HfTensor {
                gguf: name.clone(),
                permute_heads,
            },
        );
    }
    map
}

enum Heads {
    Query,
    Key,
    None,
}

fn hf_name(gguf: &str) -> Option<(String, Heads)> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some((t.to_string(), Heads::None));
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    if param != "weight" && param != "bias" {
        return None;
    }
    let (hf, heads) = match module {
        "attn_norm" => ("input_layernorm", Heads::None),
        "ffn_norm" => ("post_attention_layernorm", Heads::None),
        "attn_q" => ("self_attn.q_proj", Heads::Query),
        "attn_k" => ("self_attn.k_proj", Heads::Key),
        "attn_v" => ("self_attn.v_proj", Heads::None),
        "attn_output" => ("self_attn.o_proj", Heads::None),
        "attn_q_norm" => ("self_attn.q_norm", Heads::None),
        "attn_k_norm" => ("self_attn.k_norm", Heads::None),
        "ffn_gate" => ("mlp.gate_proj", Heads::None),
        "ffn_up" => ("mlp.up_proj", Heads::None),
        "ffn_down" => ("mlp.down_proj", Heads::None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}.{param}"), heads))
}

/// Undoes llama.cpp's per-head row permutation of a q or k projection (or
/// its bias): within each head, GGUF row `2j + s` holds Hugging Face row
/// `s·half + j`. Works on whole rows of any encoding, `row_bytes` each.
pub fn unpermute_rows(data: &[u8], heads: usize, row_bytes: usize) -> Vec<u8> {
    let rows = data.len() / row_bytes.max(1);
    let per_head = rows / heads.max(1);
    let half = per_head / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..half {
                let hf = h * per_head + s * half + j;
                let gg = h * per_head + 2 * j + s;
                out[hf * row_bytes..(hf + 1) * row_bytes]
                    .copy_from_slice(&data[gg * row_bytes..(gg + 1) * row_bytes]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_hugging_face_layout() {
        let (n, _) = hf_name("blk.12.attn_q.weight").unwrap();
        assert_eq!(n, "model.layers.12.self_attn.q_proj.weight");
        let (n, _) = hf_name("blk.0.ffn_down.bias").unwrap();
        assert_eq!(n, "model.layers.0.mlp.down_proj.bias");
        assert!(hf_name("blk.x.attn_q.weight").is_none());
        assert!(hf_name("mystery.weight").is_none());
    }

    #[test]
    fn unpermuting_inverts_llama_cpp_permutation() {
        // Two heads of four rows, one byte per row: llama.cpp's permute
        // maps HF rows [0 1 2 3] of a head to GGUF order [0 2 1 3].
        let gguf = [0u8, 2, 1, 3, 4, 6, 5, 7];
        assert_eq!(unpermute_rows(&gguf, 2, 1), vec![0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
