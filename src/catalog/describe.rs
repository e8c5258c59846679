//! What a found model is, read from its headers, and whether the loader
//! will take it.

use std::collections::BTreeMap;
use std::path::Path;

use super::stores::Candidate;
use super::{Format, FoundModel};
use crate::gguf::GgufFile;
use crate::model::WeightSource;

/// Describes `c`; `None` for the second and later parts of a split GGUF
/// file, which the first part stands for.
pub(super) fn describe(c: Candidate) -> Option<FoundModel> {
    let mut found = FoundModel {
        name: c.name,
        store: c.store,
        format: c.format,
        path: c.path,
        architecture: None,
        parameters: None,
        dtype: None,
        size_bytes: 0,
        trainable: false,
        note: c.note,
    };
    if let Some(problem) = c.problem {
        found.note = Some(problem);
        return Some(found);
    }
    let verdict = match found.format {
        Format::Gguf => gguf(&mut found)?,
        Format::Hf => hf(&mut found),
    };
    match verdict {
        Ok(()) => found.trainable = true,
        Err(why) => found.note = Some(why),
    }
    Some(found)
}

/// Fills in a GGUF file's facts; `Err` says why it cannot be trained.
fn gguf(found: &mut FoundModel) -> Option<Result<(), String>> {
    found.size_bytes = std::fs::metadata(&found.path).map_or(0, |m| m.len());
    let file = match GgufFile::open(&found.path) {
        Ok(f) => f,
        Err(e) => return Some(Err(e.to_string())),
    };
    let split_count = file.opt_usize("split.count").ok().flatten().unwrap_or(1);
    if file.opt_usize("split.no").ok().flatten().unwrap_or(0) > 0 {
        return None;
    }
    found.architecture = file
        .opt_str("general.architecture")
        .ok()
        .flatten()
        .map(str::to_string);
    found.parameters = Some(file.tensors.values().map(|t| t.numel() as u64).sum());
    let mut by_type = BTreeMap::new();
    for t in file.tensors.values() {
        *by_type.entry(t.ty.name().to_string()).or_insert(0u64) += t.numel() as u64;
    }
    found.dtype = file
        .opt_usize("general.file_type")
        .ok()
        .flatten()
        .and_then(file_type_name)
        .map(str::to_string)
        .or_else(|| dominant(&by_type));
    if split_count > 1 {
        return Some(Err(format!(
            "split into {split_count} files; join them first with `llama-gguf-split --merge`"
        )));
    }
    let verdict = crate::gguf::model_config(&file)
        .and_then(|_| crate::gguf::tokenizer_json(&file))
        .map(|_| ())
        .map_err(|e| e.to_string());
    Some(verdict)
}

/// Fills in a Hugging Face folder's facts; `Err` says why it cannot be
/// trained.
fn hf(found: &mut FoundModel) -> Result<(), String> {
    let dir = found.path.clone();
    found.size_bytes = folder_bytes(&dir);
    found.architecture = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("model_type")?.as_str().map(str::to_string));
    let weights = WeightSource::open(&dir);
    if let Ok(w) = &weights {
        let mut by_type = BTreeMap::new();
        for info in w.tensors().values() {
            *by_type.entry(info.stored_as()).or_insert(0u64) += info.numel() as u64;
        }
        found.parameters = Some(by_type.values().sum());
        found.dtype = dominant(&by_type);
    }
    crate::ModelConfig::from_dir(&dir).map_err(|e| e.to_string())?;
    if let Err(e) = weights {
        if let Some(pickle) = pickle_file(&dir) {
            return Err(format!(
                "its weights are only in {pickle}, a pickle, which Tunesmith never loads; \
                 convert it to safetensors (transformers: save_pretrained(..., safe_serialization=True))"
            ));
        }
        return Err(e.to_string());
    }
    if !dir.join("tokenizer.json").is_file() {
        return Err(format!(
            "{} has no tokenizer.json (the fast tokenizer); save one with transformers' AutoTokenizer",
            dir.display()
        ));
    }
    Ok(())
}

/// The storage type holding the most parameters.
fn dominant(by_type: &BTreeMap<String, u64>) -> Option<String> {
    by_type
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(t, _)| t.clone())
}

/// llama.cpp's name for a `general.file_type` (its `llama_ftype`).
fn file_type_name(id: usize) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        _ => return None,
    })
}

/// Bytes of the files directly in `dir`, links followed.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The name of a PyTorch pickle checkpoint in `dir`, if it has one.
fn pickle_file(dir: &Path) -> Option<String> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin") || n.ends_with(".pt") || n.ends_with(".pth"))
        .collect();
    names.sort();
    names.into_iter().next()
}
