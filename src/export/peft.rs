//! HF PEFT adapters: `adapter_model.safetensors` (for a LoRA, keys
//! `base_model.model.<module>.lora_A.weight`, A as (r, in) and B as
//! (out, r); DoRA's magnitude as `<module>.lora_magnitude_vector`, (out);
//! other methods' own tensors, as `<module>.miss_block`),
//! `adapter_config.json`, and a short model card.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::json;

use super::{ExportError, Trained, f32_bytes};
use crate::methods::LoraConfig;
use crate::methods::exported::{LoraPair, PeftAdapter};

/// File names PEFT looks for.
pub const WEIGHTS: &str = "adapter_model.safetensors";
pub const CONFIG: &str = "adapter_config.json";

/// The files of one adapter: its tensors (full PEFT names), its
/// `adapter_config.json` and its model card.
struct Adapter {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    config: serde_json::Value,
    card: String,
}

/// Writes the adapter folder `out`; returns notes for the report.
pub fn write(trained: &Trained, out: &Path, overwrite: bool) -> Result<Vec<String>, ExportError> {
    let adapter = match (&trained.form.peft, &trained.form.lora) {
        (Some(native), _) => native_adapter(trained, native),
        (None, Some((lora, pairs))) => lora_adapter(trained, lora, pairs),
        (None, None) => {
            return Err(ExportError::NotAnAdapter {
                method: trained.config.method.method().name().to_string(),
                format: "peft".into(),
            });
        }
    };
    let views = adapter
        .tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| ExportError::Checkpoint {
                    path: trained.checkpoint.clone(),
                    reason: format!("{name}: {e}"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights =
        safetensors::serialize(views, Some(metadata)).map_err(|e| ExportError::Checkpoint {
            path: trained.checkpoint.clone(),
            reason: e.to_string(),
        })?;
    let mut config = adapter.config;
    if let Some(keys) = config.as_object_mut() {
        keys.insert("task_type".into(), json!("CAUSAL_LM"));
        keys.insert(
            "base_model_name_or_path".into(),
            json!(trained.config.model.path.display().to_string()),
        );
        keys.insert("inference_mode".into(), json!(true));
        keys.insert("revision".into(), serde_json::Value::Null);
    }
    let config = serde_json::to_string_pretty(&config).unwrap_or_default();
    crate::fsutil::write_dir_atomic(out, overwrite, |dir| -> Result<(), ExportError> {
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| ExportError::Io { path, source })
        };
        write(WEIGHTS, &weights)?;
        write(CONFIG, config.as_bytes())?;
        write("README.md", adapter.card.as_bytes())
    })?;
    Ok(trained
        .form
        .notes
        .iter()
        .cloned()
        .chain([format!(
            "load with PeftModel.from_pretrained({}, \"{}\")",
            base_loader(&trained.config.model.path),
            out.display()
        )])
        .collect())
}

/// A method's own PEFT adapter (MiSS...).
fn native_adapter(trained: &Trained, native: &PeftAdapter) -> Adapter {
    Adapter {
        tensors: native
            .tensors
            .iter()
            .map(|(name, t)| {
                (
                    format!("base_model.model.{name}"),
                    t.shape.clone(),
                    f32_bytes(&t.data),
                )
            })
            .collect(),
        config: native.config.clone(),
        card: model_card(trained, &native.title, &native.summary, "tunesmith"),
    }
}

/// PEFT's LoRA adapter: A, B and DoRA's magnitude per module.
fn lora_adapter(
    trained: &Trained,
    lora: &LoraConfig,
    pairs: &BTreeMap<String, LoraPair>,
) -> Adapter {
    let tensors = pairs
        .iter()
        .flat_map(|(module, pair)| {
            let magnitude = pair.magnitude.as_ref().map(|m| {
                (
                    format!("base_model.model.{module}.lora_magnitude_vector"),
                    m,
                )
            });
            [
                (format!("base_model.model.{module}.lora_A.weight"), &pair.a),
                (format!("base_model.model.{module}.lora_B.weight"), &pair.b),
            ]
            .into_iter()
            .chain(magnitude)
        })
        .map(|(name, t)| (name, t.shape.clone(), f32_bytes(&t.data)))
        .collect();
    let mut targets: Vec<&str> = pairs.keys().filter_map(|m| m.rsplit('.').next()).collect();
    targets.sort_unstable();
    targets.dedup();
    let alpha = if lora.alpha.fract() == 0.0 {
        json!(lora.alpha as i64)
    } else {
        json!(lora.alpha)
    };
    let config = json!({
        "peft_type": "LORA",
        "r": lora.rank,
        "lora_alpha": alpha,
        "lora_dropout": lora.dropout,
        "target_modules": targets,
        "use_rslora": lora.use_rslora,
        "use_dora": lora.use_dora,
        "rank_pattern": {},
        "alpha_pattern": {},
        "fan_in_fan_out": false,
        "bias": "none",
        "modules_to_save": null,
        "init_lora_weights": true,
        "layers_to_transform": null,
        "layers_pattern": null,
    });
    let scaling = if lora.use_rslora {
        "alpha/sqrt(r) (rsLoRA)"
    } else {
        "alpha/r"
    };
    let summary = format!(
        "rank {}, alpha {}, scaling {scaling}, dropout {}; target modules: {}",
        lora.rank,
        lora.alpha,
        lora.dropout,
        lora.target_modules.join(", ")
    );
    Adapter {
        tensors,
        config,
        card: model_card(trained, "LoRA adapter", &summary, "lora, tunesmith"),
    }
}

/// The transformers call that loads the base this adapter was trained on;
/// a GGUF base is read (and dequantized) by transformers' `gguf_file`.
fn base_loader(base: &std::path::Path) -> String {
    match crate::gguf::locate(base).ok().flatten() {
        Some(file) => format!(
            "AutoModelForCausalLM.from_pretrained(\"{}\", gguf_file=\"{}\")",
            file.parent().unwrap_or(base).display(),
            file.file_name().unwrap_or_default().to_string_lossy()
        ),
        None => format!(
            "AutoModelForCausalLM.from_pretrained(\"{}\")",
            base.display()
        ),
    }
}

/// What the card says of a GGUF base: which file, in which quantization.
fn gguf_base_note(base: &std::path::Path) -> String {
    let Some(file) = crate::gguf::locate(base).ok().flatten() else {
        return String::new();
    };
    // The header alone; the card needs no tokenizer.
    let types = crate::gguf::GgufFile::open(&file)
        .map(|f| {
            let names: std::collections::BTreeSet<&str> =
                f.tensors.values().map(|t| t.ty.name()).collect();
            names.into_iter().collect::<Vec<_>>().join(", ")
        })
        .unwrap_or_default();
    format!(
        "- trained against the GGUF file `{}` (tensor types {types}), dequantized as \
         transformers' `gguf_file=` loading does; it expects exactly that file as its base \
         (for llama.cpp, export `--format gguf`, which applies to the same file)\n",
        file.display()
    )
}

fn model_card(trained: &Trained, title: &str, summary: &str, tags: &str) -> String {
    let base = trained.config.model.path.display();
    let notes: String = trained
        .form
        .notes
        .iter()
        .map(|n| format!("- {n}\n"))
        .collect();
    format!(
        "---\nlibrary_name: peft\nbase_model: {base}\ntags: [{tags}]\n---\n\n\
         # {title}\n\n\
         Trained with Tunesmith on `{data}`; this is the checkpoint after optimizer \
         step {step} ({why}).\n\n\
         - {summary}\n\
         {notes}{quantized}{gguf}\n\
         ```python\n\
         from transformers import AutoModelForCausalLM\n\
         from peft import PeftModel\n\
         model = PeftModel.from_pretrained({loader}, \"PATH\")\n\
         ```\n",
        gguf = gguf_base_note(&trained.config.model.path),
        loader = base_loader(&trained.config.model.path),
        data = trained.config.data.train.display(),
        step = trained.step,
        why = trained.chosen_because,
        quantized = match trained.config.model.quantize.format() {
            Some(f) => format!(
                "- trained against a {} block-quantized base (QLoRA); it applies to the \
                 unquantized base as usual\n",
                f.name()
            ),
            None => String::new(),
        },
    )
}
