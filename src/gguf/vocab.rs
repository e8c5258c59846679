//! The tokenizer of a GGUF file (`tokenizer.ggml.*`) rebuilt as a Hugging
//! Face `tokenizer.json`, so the `tokenizers` crate runs it, the way
//! transformers rebuilds it from the same file. Byte-level BPE (`gpt2`)
//! follows llama.cpp's `tokenizer.ggml.pre` (the split the model was trained
//! with), not a guess from the vocabulary. SentencePiece BPE (`llama`:
//! Llama 2, TinyLlama, Mistral) stores pieces and scores but no merges; the
//! merges are recovered from the scores as transformers recovers them.

use serde_json::{Value, json};

use super::{GgufError, GgufFile};

/// Qwen2's split (llama.cpp's `qwen2` pre-tokenizer).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split (`llama-bpe`): digits in runs of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizers we rebuild, by `tokenizer.ggml.pre`: llama.cpp's names
/// for them (its aliases of one split included), and `gpt2`, which some
/// third-party writers use for llama.cpp's `gpt-2`.
pub const SUPPORTED_PRE: [&str; 9] = [
    "default",
    "gpt-2",
    "gpt2",
    "smollm",
    "qwen2",
    "deepseek-r1-qwen",
    "llama-bpe",
    "llama3",
    "llama-v3",
];

/// ggml token types (`tokenizer.ggml.token_type`).
const UNKNOWN: i64 = 2;
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
    let sentencepiece = match model {
        "gpt2" => false,
        "llama" => true,
        other => {
            return Err(err(format!(
                "tokenizer.ggml.model = \"{other}\": Tunesmith rebuilds byte-level BPE (\"gpt2\") and SentencePiece BPE (\"llama\") vocabularies; use the model's Hugging Face folder instead"
            )));
        }
    };
    let tokens = file.str_array("tokenizer.ggml.tokens")?;
    let types = token_types(file, tokens.len());
    if types.len() != tokens.len() {
        return Err(err(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let special = special_tokens(file, &tokens)?;
    if sentencepiece {
        return sentencepiece_json(file, &tokens, &types, special);
    }
    let merges = file.str_array("tokenizer.ggml.merges")?;
    let pre = file.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let (normalizer, pre_tokenizer, ignore_merges) = match pre {
        "default" | "gpt-2" | "gpt2" => (Value::Null, byte_level(true), false),
        "smollm" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]}),
            false,
        ),
        "qwen2" | "deepseek-r1-qwen" => {
            (json!({"type": "NFC"}), split_then_bytes(QWEN2_SPLIT), false)
        }
        "llama-bpe" | "llama3" | "llama-v3" => (Value::Null, split_then_bytes(LLAMA3_SPLIT), true),
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
    let (add_bos, add_eos) = add_bos_eos(file, false)?;
    let post_processor = post_processor(
        add_bos.then_some(special.bos.as_deref()).flatten(),
        add_eos.then_some(special.eos.as_deref()).flatten(),
        &vocab,
        true,
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

fn token_types(file: &GgufFile, n: usize) -> Vec<i64> {
    match file.metadata.get("tokenizer.ggml.token_type") {
        Some(super::MetaValue::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().map(|t| t as i64).unwrap_or(1))
            .collect(),
        _ => vec![1; n],
    }
}

/// The special tokens the metadata names by id, and the chat template.
fn special_tokens(file: &GgufFile, tokens: &[&str]) -> Result<SpecialTokens, GgufError> {
    let name_of =
        |key: &str| -> Result<Option<String>, GgufError> {
            match file.opt_usize(key)? {
                None => Ok(None),
                Some(id) => tokens.get(id).map(|t| Some(t.to_string())).ok_or_else(|| {
                    GgufError::Tokenizer {
                        path: file.path().to_path_buf(),
                        reason: format!("{key} = {id} is past the {} tokens", tokens.len()),
                    }
                }),
            }
        };
    Ok(SpecialTokens {
        bos: name_of("tokenizer.ggml.bos_token_id")?,
        eos: name_of("tokenizer.ggml.eos_token_id")?,
        pad: name_of("tokenizer.ggml.padding_token_id")?,
        unk: name_of("tokenizer.ggml.unknown_token_id")?,
        chat_template: file.opt_str("tokenizer.chat_template")?.map(str::to_string),
    })
}

/// `(add_bos, add_eos)` from the metadata; `bos_default` where the file
/// does not say (llama.cpp adds BOS to a SentencePiece vocabulary then).
fn add_bos_eos(file: &GgufFile, bos_default: bool) -> Result<(bool, bool), GgufError> {
    Ok((
        file.opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(bos_default),
        file.opt_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false),
    ))
}

/// A SentencePiece BPE vocabulary as transformers' `LlamaTokenizer` runs
/// it: BPE with byte fallback over `▁`-for-space text (Metaspace, a `▁`
/// before the first word), merges recovered from the piece scores.
fn sentencepiece_json(
    file: &GgufFile,
    tokens: &[&str],
    types: &[i64],
    special: SpecialTokens,
) -> Result<(String, SpecialTokens), GgufError> {
    let err = |reason: String| GgufError::Tokenizer {
        path: file.path().to_path_buf(),
        reason,
    };
    let scores = file
        .opt_f64_array("tokenizer.ggml.scores")?
        .ok_or_else(|| {
            err("tokenizer.ggml.scores is missing: a SentencePiece vocabulary needs the piece scores to recover its merges".into())
        })?;
    if scores.len() != tokens.len() {
        return Err(err(format!(
            "tokenizer.ggml.scores has {} entries for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let mut ids = std::collections::HashMap::with_capacity(tokens.len());
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, &token) in tokens.iter().enumerate() {
        if ids.insert(token, id).is_some() {
            return Err(err(format!(
                "token {token:?} (id {id}) appears twice in tokenizer.ggml.tokens"
            )));
        }
        vocab.insert(token.to_string(), json!(id));
    }
    // transformers makes the control and unknown pieces, and every token it
    // is told is bos/eos/unk/pad, special added tokens (so `<s>` in text is
    // BOS), and the user-defined ones plain added tokens.
    let named: Vec<&str> = [&special.bos, &special.eos, &special.unk, &special.pad]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let mut added = Vec::new();
    for (id, (&token, &ty)) in tokens.iter().zip(types).enumerate() {
        let is_special = ty == CONTROL || ty == UNKNOWN || named.contains(&token);
        if is_special || ty == USER_DEFINED {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": is_special,
            }));
        }
    }
    let merges: Vec<Value> = merges_from_scores(tokens, &scores, &ids)
        .into_iter()
        .map(|(l, r)| json!([l, r]))
        .collect();
    // llama.cpp writes SentencePiece's add_dummy_prefix here; transformers
    // always prefixes, which is what every Llama/Mistral file says anyway.
    let prefix = file
        .opt_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let (add_bos, add_eos) = add_bos_eos(file, true)?;
    let post_processor = post_processor(
        add_bos.then_some(special.bos.as_deref()).flatten(),
        add_eos.then_some(special.eos.as_deref()).flatten(),
        &vocab,
        false,
    );
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}",
            "prepend_scheme": if prefix { "first" } else { "never" }, "split": false},
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    });
    Ok((doc.to_string(), special))
}

/// The merges a SentencePiece BPE vocabulary implies: every split of a
/// piece into two pieces, best score first (ties: longer left, then longer
/// right, then file order), as transformers' `generate_merges` orders them,
/// so both tokenize alike.
fn merges_from_scores<'a>(
    tokens: &[&'a str],
    scores: &[f64],
    ids: &std::collections::HashMap<&str, usize>,
) -> Vec<(&'a str, &'a str)> {
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for (&piece, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<(&str, &str, f64)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(l, r)| ids.contains_key(l) && ids.contains_key(r))
            .map(|(l, r)| (l, r, score))
            .collect();
        local.sort_by_key(|(l, r, _)| (ids[l], ids[r]));
        merges.extend(local);
    }
    // Stable, so equal keys keep their order, as Python's sort(reverse=True) does.
    let key = |(l, r, score): &(&str, &str, f64)| (*score, l.chars().count(), r.chars().count());
    merges.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.cmp(&ka.1))
            .then(kb.2.cmp(&ka.2))
    });
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
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

/// Byte-level offsets (for byte-level vocabularies), then BOS/EOS where
/// the metadata asks for them.
fn post_processor(
    bos: Option<&str>,
    eos: Option<&str>,
    vocab: &serde_json::Map<String, Value>,
    byte_level: bool,
) -> Value {
    let offsets = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    if bos.is_none() && eos.is_none() {
        return if byte_level { offsets } else { Value::Null };
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
    let template = json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials});
    if byte_level {
        json!({"type": "Sequence", "processors": [offsets, template]})
    } else {
        template
    }
}
