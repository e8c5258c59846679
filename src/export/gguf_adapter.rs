//! llama.cpp LoRA adapters in GGUF: `blk.N.<attn_q|...>.weight.lora_a` of
//! ggml shape [in, r] and `.lora_b` of [r, out] (PEFT's arrays unchanged),
//! `adapter.lora.alpha` as FLOAT32. llama.cpp scales by alpha / r with one
//! alpha per file, so other scalings are folded into the alpha written.

use super::gguf::{File, Tensor, TensorType, Value};
use super::{ExportError, ExportOptions, GgufDtype, Trained};
use crate::model::{ModelConfig, ModelType};

/// llama.cpp's architecture name for a model type.
pub fn architecture(model_type: ModelType) -> &'static str {
    match model_type {
        // llama.cpp converts Mistral checkpoints to its llama architecture.
        ModelType::Llama | ModelType::Mistral => "llama",
        ModelType::Qwen2 => "qwen2",
        ModelType::Qwen3 => "qwen3",
    }
}

/// llama.cpp's name of a decoder linear module.
fn tensor_name(module: &str) -> Option<String> {
    let rest = module.strip_prefix("model.layers.")?;
    let (layer, path) = rest.split_once('.')?;
    let short = match path {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.weight"))
}

/// llama.cpp's llama architecture stores q and k rows permuted per head
/// (each head's two rotary halves interleaved): rows are reshaped to
/// (heads, 2, head_dim / 2), the middle axes swapped. Rows of B, which
/// index the output features, must follow.
pub fn permute_rows(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let half = rows / heads / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for j in 0..half {
            for k in 0..2 {
                // Source row (h, k, j) lands at (h, j, k).
                let src = (h * 2 + k) * half + j;
                let dst = (h * half + j) * 2 + k;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Builds the GGUF adapter of a LoRA run.
pub fn build(trained: &Trained, dtype: GgufDtype) -> Result<(File, Vec<String>), ExportError> {
    if let Some(refusal) = &trained.form.gguf_refusal {
        return Err(ExportError::NoGgufAdapter {
            method: refusal.method.clone(),
            what: refusal.what.clone(),
        });
    }
    let Some((lora, pairs)) = &trained.form.lora else {
        return Err(ExportError::NotAnAdapter {
            method: trained.config.method.method().name().to_string(),
            format: "gguf".into(),
        });
    };
    let model: &ModelConfig = &trained.model;
    let arch = architecture(model.model_type);
    let ty = match dtype {
        GgufDtype::F32 => TensorType::F32,
        GgufDtype::F16 => TensorType::F16,
    };
    let mut notes = trained.form.notes.clone();
    // llama.cpp computes alpha / r; rsLoRA means alpha / sqrt(r).
    let r = lora.rank as f64;
    let alpha = if lora.use_rslora {
        notes.push(format!(
            "rsLoRA folded in: adapter.lora.alpha = {} x sqrt({}) so that llama.cpp's alpha/r \
             equals alpha/sqrt(r)",
            lora.alpha, lora.rank
        ));
        lora.alpha * r.sqrt()
    } else {
        lora.alpha
    };
    let mut tensors = Vec::with_capacity(2 * pairs.len());
    for (module, pair) in pairs {
        let name = tensor_name(module).ok_or_else(|| ExportError::GgufUnsupported {
            what: format!("a LoRA on {module}"),
        })?;
        let (rank, out_features) = (pair.rank(), pair.b.shape[0]);
        let heads = if arch == "llama" && module.ends_with("q_proj") {
            Some(model.num_heads)
        } else if arch == "llama" && module.ends_with("k_proj") {
            Some(model.num_kv_heads)
        } else {
            None
        };
        let mut b = match heads {
            Some(h) => permute_rows(&pair.b.data, out_features, rank, h),
            None => pair.b.data.clone(),
        };
        // llama.cpp scales each pair by alpha / (its own rank): a pair whose
        // rank is not the config's (AdaLoRA's pruned modules) carries the
        // difference in B.
        if rank != lora.rank {
            let factor = (lora.scaling() * rank as f64 / alpha) as f32;
            b.iter_mut().for_each(|v| *v *= factor);
        }
        tensors.push(Tensor::from_f32(
            format!("{name}.lora_a"),
            &pair.a.shape,
            &pair.a.data,
            ty,
        ));
        tensors.push(Tensor::from_f32(
            format!("{name}.lora_b"),
            &pair.b.shape,
            &b,
            ty,
        ));
    }
    let base = trained.config.model.path.display().to_string();
    let metadata = vec![
        ("general.type".to_string(), Value::Str("adapter".into())),
        ("general.architecture".into(), Value::Str(arch.into())),
        (
            "general.name".into(),
            Value::Str(format!(
                "{} LoRA",
                trained
                    .run_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )),
        ),
        ("adapter.type".into(), Value::Str("lora".into())),
        ("adapter.lora.alpha".into(), Value::F32(alpha as f32)),
        ("tunesmith.base_model".into(), Value::Str(base)),
        ("tunesmith.lora.rank".into(), Value::U32(lora.rank as u32)),
        ("tunesmith.lora.alpha".into(), Value::F32(lora.alpha as f32)),
        (
            "tunesmith.lora.use_rslora".into(),
            Value::Bool(lora.use_rslora),
        ),
        (
            "tunesmith.lora.scaling".into(),
            Value::F32(lora.scaling() as f32),
        ),
        ("tunesmith.step".into(), Value::U32(trained.step as u32)),
    ];
    if arch == "llama" {
        notes.push("q/k lora_b rows permuted per head as llama.cpp stores q/k weights".into());
    }
    Ok((File { metadata, tensors }, notes))
}

/// Writes the adapter file `options.out` atomically.
pub fn write(trained: &Trained, options: &ExportOptions) -> Result<Vec<String>, ExportError> {
    let (file, notes) = build(trained, options.gguf_dtype)?;
    let out = &options.out;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ExportError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    crate::fsutil::write_atomic(out, &file.to_bytes()).map_err(|source| ExportError::Io {
        path: out.clone(),
        source,
    })?;
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_the_rotary_halves_of_each_head() {
        // 2 heads of dim 4, one column: rows h0[a0 a1 b0 b1] h1[c0 c1 d0 d1].
        let rows: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let p = permute_rows(&rows, 8, 1, 2);
        assert_eq!(p, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    #[test]
    fn decoder_linears_get_llama_cpp_names() {
        assert_eq!(
            tensor_name("model.layers.3.self_attn.o_proj").as_deref(),
            Some("blk.3.attn_output.weight")
        );
        assert_eq!(
            tensor_name("model.layers.0.mlp.down_proj").as_deref(),
            Some("blk.0.ffn_down.weight")
        );
        assert_eq!(tensor_name("lm_head"), None);
    }
}
