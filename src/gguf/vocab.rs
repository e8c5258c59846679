//! The tokenizer of a GGUF file (`tokenizer.ggml.*`) rebuilt as a Hugging
//! Face `tokenizer.json`, so the `tokenizers` crate runs it. The
//! pre-tokenizer follows llama.cpp's `tokenizer.ggml.pre` (the split the
//! model was trained with), not a guess from the vocabulary.

use serde_json::{Value, json};

use super::{GgufError, GgufFile};

/// Qwen2's split (llama.cpp's `qwen2` pre-tokenizer).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split (`llama-bpe`): digits in runs of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizers we rebuild, by `tokenizer.ggml.pre`.
pub const SUPPORTED_PRE: [&str; 5] = ["default", "gpt2", "smollm", "qwen2", "llama-bpe"];

/// ggml token types (`tokenizer.ggml.token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// What transformers reads beside tokenizer.json, from the same metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub unk: Option<String>,
    pub chat_template: Option<String>,
}

/// The file's tokenizer as tokenizer.json text, with its special tokens
/// and chat template.
pub fn tokenizer_json(file: &GgufFile) -> Result<(String, SpecialTokens), GgufError> {
    let err = |reason: String| GgufError::Tokenizer {
        path: file.path().to_path_buf(),
        reason,
    };
    let model = file.str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer.ggml.model = \"{model}\": Tunesmith rebuilds byte-level BPE (\"gpt2\") vocabularies; SentencePiece (\"llama\") ones are not supported yet — use the model's Hugging Face folder instead"
        )));
    }
    let tokens = file.str_array("tokenizer.ggml.tokens")?;
    let merges = file.str_array("tokenizer.ggml.merges")?;
    let types = match file.metadata.get("tokenizer.ggml.token_type") {
        Some(super::MetaValue::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().map(|t| t as i64).unwrap_or(1))
            .collect(),
        _ => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(err(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let pre = file.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let (normalizer, pre_tokenizer, ignore_merges) = match pre {
        "default" | "gpt2" => (Value::Null, byte_level(true), false),
        "smollm" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]}),
            false,
        ),
        "qwen2" => (json!({"type": "NFC"}), split_then_bytes(QWEN2_SPLIT), false),
        "llama-bpe" => (Value::Null, split_then_bytes(LLAMA3_SPLIT), true),
        other => {
            return Err(err(format!(
                "tokenizer.ggml.pre = \"{other}\" is not rebuilt (supported: {}); use the model's Hugging Face folder instead",
                SUPPORTED_PRE.join(", ")
            )));
        }
    };

    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, (&token, &ty)) in tokens.iter().zip(&types).enumerate() {
        if vocab.insert(token.to_string(), json!(id)).is_some() {
            return Err(err(format!(
                "token {token:?} (id {id}) appears twice in tokenizer.ggml.tokens"
            )));
        }
        if ty == CONTROL || ty == USER_DEFINED {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == CONTROL,
            }));
        }
    }
    let name_of = |key: &str| -> Result<Option<String>, GgufError> {
        match file.opt_usize(key)? {
            None => Ok(None),
            Some(id) => tokens
                .get(id)
                .map(|t| Some(t.to_string()))
                .ok_or_else(|| err(format!("{key} = {id} is past the {} tokens", tokens.len()))),
        }
    };
    let special = SpecialTokens {
        bos: name_of("tokenizer.ggml.bos_token_id")?,
        eos: name_of("tokenizer.ggml.eos_token_id")?,
        pad: name_of("tokenizer.ggml.padding_token_id")?,
        unk: name_of("tokenizer.ggml.unknown_token_id")?,
        chat_template: file.opt_str("tokenizer.chat_template")?.map(str::to_string),
    };
    let add_bos = file
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(false);
    let add_eos = file
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let post_processor = post_processor(
        add_bos.then_some(special.bos.as_deref()).flatten(),
        add_eos.then_some(special.eos.as_deref()).flatten(),
        &vocab,
    );
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": special.unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
        },
    });
    Ok((doc.to_string(), special))
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split_then_bytes(pattern: &str) -> Value {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
        byte_level(false),
    ]})
}

/// Byte-level offsets, then BOS/EOS where the metadata asks for them.
fn post_processor(
    bos: Option<&str>,
    eos: Option<&str>,
    vocab: &serde_json::Map<String, Value>,
) -> Value {
    let offsets = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    if bos.is_none() && eos.is_none() {
        return offsets;
    }
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = serde_json::Map::new();
    let piece = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    for t in [bos, eos].into_iter().flatten() {
        specials.insert(
            t.to_string(),
            json!({"id": t, "ids": [vocab.get(t).cloned().unwrap_or(json!(0))], "tokens": [t]}),
        );
    }
    for (seq, out) in [("A", &mut single), ("B", &mut pair)] {
        if let Some(b) = bos {
            out.push(piece(b));
        }
        out.push(json!({"Sequence": {"id": seq, "type_id": 0}}));
        if let Some(e) = eos {
            out.push(piece(e));
        }
    }
    let pair: Vec<Value> = single.iter().cloned().chain(pair).collect();
    json!({"type": "Sequence", "processors": [
        offsets,
        {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials},
    ]})
}
