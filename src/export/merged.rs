//! Merged models: the base model's tensors with the trained update added
//! (W + scale * B A for LoRA, rescaled per output row for DoRA, the
//! trained tensor for full fine-tuning), in
//! the base's dtype, as an HF folder transformers loads: the base's config,
//! tokenizer and generation files, and safetensors sharded above 4 GiB.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::View;

use super::gguf::TensorType;
use super::{ExportError, Trained};
use crate::methods::exported::WeightDelta;
use crate::model::{TensorInfo, WeightSource, decode_f32};
use crate::train::params::HostTensor;

/// Largest shard written.
const MAX_SHARD_BYTES: usize = 4 << 30;

/// Files of the base folder never copied: weights (rewritten here) and
/// pickles (never touched).
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        // The base model's card describes the base; ours replaces it.
        || name == "README.md"
        || name.ends_with(".safetensors")
        || name == "model.safetensors.index.json"
        || [".bin", ".pt", ".pth", ".ckpt", ".pkl", ".gguf"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// How one output tensor is made.
pub(super) enum Update<'a> {
    Keep,
    Lora {
        a: &'a HostTensor,
        b: &'a HostTensor,
        scale: f32,
        /// DoRA's magnitude (out).
        magnitude: Option<&'a HostTensor>,
    },
    Replace(&'a HostTensor),
    /// A method's update that depends on the base weight (HF layout).
    Delta(&'a dyn WeightDelta),
}

struct Merged<'a> {
    info: &'a TensorInfo,
    raw: Cow<'a, [u8]>,
    update: Update<'a>,
}

/// The dtype a base tensor is written in: its own, except that a GGUF
/// tensor in ggml blocks (decoded to F32) is written in F16, the type of
/// its blocks' scales, so a merged folder is a 16-bit model as usual.
fn written_dtype(info: &TensorInfo) -> Dtype {
    if info.is_quantized() {
        Dtype::F16
    } else {
        info.dtype
    }
}

fn written_bytes(info: &TensorInfo) -> usize {
    info.numel() * written_dtype(info).bitsize() / 8
}

impl View for Merged<'_> {
    fn dtype(&self) -> Dtype {
        written_dtype(self.info)
    }

    fn shape(&self) -> &[usize] {
        &self.info.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match &self.update {
            Update::Keep if self.dtype() == self.info.dtype => Cow::Borrowed(&*self.raw),
            Update::Keep => Cow::Owned(encode(
                &decode_f32(&self.raw, self.info.dtype).unwrap_or_default(),
                self.dtype(),
            )),
            Update::Replace(t) => Cow::Owned(encode(&t.data, self.dtype())),
            Update::Delta(delta) => {
                let mut w = decode_f32(&self.raw, self.info.dtype).unwrap_or_default();
                delta.apply(&mut w, self.info.shape[0], self.info.shape[1]);
                Cow::Owned(encode(&w, self.dtype()))
            }
            Update::Lora {
                a,
                b,
                scale,
                magnitude,
            } => {
                // Only float weights get updates (checked when planning).
                let mut w = decode_f32(&self.raw, self.info.dtype).unwrap_or_default();
                add_lora(&mut w, a, b, *scale, *magnitude);
                Cow::Owned(encode(&w, self.dtype()))
            }
        }
    }

    fn data_len(&self) -> usize {
        written_bytes(self.info)
    }
}

/// W (out, in) += scale * B (out, r) A (r, in), row by row in parallel;
/// with DoRA's `magnitude` (out), each row o of the sum is then rescaled to
/// the norm m[o], which is what the adapted layer computes.
pub fn add_lora(
    w: &mut [f32],
    a: &HostTensor,
    b: &HostTensor,
    scale: f32,
    magnitude: Option<&HostTensor>,
) {
    let (r, n_in) = (a.shape[0], a.shape[1]);
    // The update is summed in f64 and added once: PiSSA's rank-2r pair
    // holds two nearly cancelling halves as large as W's principal part,
    // whose f32 partial sums would round off what training changed.
    w.par_chunks_mut(n_in).enumerate().for_each(|(o, row)| {
        let mut delta = vec![0f64; n_in];
        for k in 0..r {
            let coef = f64::from(scale) * f64::from(b.data[o * r + k]);
            let a_row = &a.data[k * n_in..(k + 1) * n_in];
            for (d, &y) in delta.iter_mut().zip(a_row) {
                *d += coef * f64::from(y);
            }
        }
        for (x, d) in row.iter_mut().zip(&delta) {
            *x = (f64::from(*x) + d) as f32;
        }
        if let Some(m) = magnitude {
            let norm = row
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            let g = (f64::from(m.data[o]) / norm) as f32;
            row.iter_mut().for_each(|x| *x *= g);
        }
    });
}

/// Rounds to the base dtype (round to nearest even, as torch's casts do).
fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    let ty = match dtype {
        Dtype::F16 => TensorType::F16,
        Dtype::BF16 => TensorType::BF16,
        _ => TensorType::F32,
    };
    ty.encode(values)
}

/// The update of every base tensor the run changed, checked against the
/// base's names, shapes and dtypes.
pub(super) fn plan<'a>(
    trained: &'a Trained,
    source: &'a WeightSource,
) -> Result<BTreeMap<&'a str, Update<'a>>, ExportError> {
    let base_dir = &trained.config.model.path;
    let scale = trained.lora_config().map_or(1.0, |c| c.scaling()) as f32;
    let shape_error = |name: &str, reason: String| ExportError::Checkpoint {
        path: trained.checkpoint.clone(),
        reason: format!(
            "{name}: {reason}; was this run trained on {}?",
            base_dir.display()
        ),
    };
    let mut updates: BTreeMap<&str, Update> = BTreeMap::new();
    let float_weight = |module: &str| {
        let name = format!("{module}.weight");
        let (key, info) = source
            .tensors()
            .get_key_value(&name)
            .ok_or_else(|| shape_error(&name, "not in the base model".into()))?;
        if decode_f32(&[], info.dtype).is_none() {
            return Err(shape_error(
                &name,
                format!(
                    "stored as {:?}; only F32, F16 and BF16 weights can be merged",
                    info.dtype
                ),
            ));
        }
        Ok((name, key, info))
    };
    for (module, delta) in &trained.form.dense {
        let (_, key, info) = float_weight(module)?;
        if info.shape.len() != 2 {
            return Err(shape_error(module, format!("base shape {:?}", info.shape)));
        }
        updates.insert(key.as_str(), Update::Delta(delta.as_ref()));
    }
    for (module, pair) in trained.lora() {
        let (name, key, info) = float_weight(module)?;
        let want = [pair.b.shape[0], pair.a.shape[1]];
        if info.shape != want {
            return Err(shape_error(
                &name,
                format!("base shape {:?}, LoRA update {:?}", info.shape, want),
            ));
        }
        if let Some(m) = &pair.magnitude
            && m.shape != [want[0]]
        {
            return Err(shape_error(
                &name,
                format!("base has {} outputs, DoRA magnitude {:?}", want[0], m.shape),
            ));
        }
        updates.insert(
            key.as_str(),
            Update::Lora {
                a: &pair.a,
                b: &pair.b,
                scale,
                magnitude: pair.magnitude.as_ref(),
            },
        );
    }
    for (name, t) in &trained.full {
        let (key, info) = source
            .tensors()
            .get_key_value(name)
            .ok_or_else(|| shape_error(name, "not in the base model".into()))?;
        if info.shape != t.shape {
            return Err(shape_error(
                name,
                format!("base shape {:?}, trained {:?}", info.shape, t.shape),
            ));
        }
        updates.insert(key.as_str(), Update::Replace(t));
    }
    Ok(updates)
}

/// The merged values of one base tensor as f32 (None for a dtype that is
/// not a float).
pub(super) fn merged_f32(
    info: &TensorInfo,
    raw: &[u8],
    update: Option<&Update>,
) -> Option<Vec<f32>> {
    match update {
        Some(Update::Replace(t)) => Some(t.data.clone()),
        Some(Update::Lora {
            a,
            b,
            scale,
            magnitude,
        }) => {
            let mut w = decode_f32(raw, info.dtype)?;
            add_lora(&mut w, a, b, *scale, *magnitude);
            Some(w)
        }
        Some(Update::Delta(delta)) => {
            let mut w = decode_f32(raw, info.dtype)?;
            delta.apply(&mut w, info.shape[0], info.shape[1]);
            Some(w)
        }
        Some(Update::Keep) | None => decode_f32(raw, info.dtype),
    }
}

/// Writes the merged folder `out`; returns notes for the report.
pub fn write(trained: &Trained, out: &Path, overwrite: bool) -> Result<Vec<String>, ExportError> {
    let base_dir = &trained.config.model.path;
    let source = WeightSource::open(base_dir)?;
    let mut updates = plan(trained, &source)?;
    // Shards in name order, each at most MAX_SHARD_BYTES.
    let mut shards: Vec<Vec<&str>> = vec![Vec::new()];
    let mut size = 0usize;
    let total: usize = source.tensors().values().map(written_bytes).sum();
    for (name, info) in source.tensors() {
        if size > 0 && size + written_bytes(info) > MAX_SHARD_BYTES {
            shards.push(Vec::new());
            size = 0;
        }
        size += written_bytes(info);
        if let Some(last) = shards.last_mut() {
            last.push(name.as_str());
        }
    }
    let n = shards.len();
    let file_name = |i: usize| {
        if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        }
    };
    crate::fsutil::write_dir_atomic(out, overwrite, |dir| -> Result<(), ExportError> {
        let mut weight_map = serde_json::Map::new();
        for (i, names) in shards.iter().enumerate() {
            let path = dir.join(file_name(i));
            let views = names.iter().map(|&name| {
                let info = &source.tensors()[name];
                let update = updates.remove(name).unwrap_or(Update::Keep);
                weight_map.insert(name.to_string(), file_name(i).into());
                (
                    name.to_string(),
                    Merged {
                        info,
                        raw: source.raw(info),
                        update,
                    },
                )
            });
            let views: Vec<(String, Merged)> = views.collect();
            let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
            safetensors::serialize_to_file(views, Some(metadata), &path).map_err(|e| {
                ExportError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            readable(&path)?;
        }
        if n > 1 {
            let index = serde_json::json!({
                "metadata": {"total_size": total},
                "weight_map": weight_map,
            });
            let path = dir.join("model.safetensors.index.json");
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&index).unwrap_or_default(),
            )
            .map_err(|source| ExportError::Io { path, source })?;
        }
        let gguf_base = crate::gguf::locate(base_dir).map_err(crate::model::ModelError::from)?;
        if let Some(gguf) = &gguf_base {
            for (name, text) in super::hf_files::from_gguf(gguf, &trained.model)? {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|source| ExportError::Io { path, source })?;
            }
        }
        let copied_from: Vec<std::io::Result<std::fs::DirEntry>> = if gguf_base.is_some() {
            Vec::new()
        } else {
            std::fs::read_dir(base_dir)
                .map_err(|source| ExportError::Io {
                    path: base_dir.clone(),
                    source,
                })?
                .collect()
        };
        for entry in copied_from {
            let entry = entry.map_err(|source| ExportError::Io {
                path: base_dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if skipped(&name) || !entry.path().is_file() {
                continue;
            }
            std::fs::copy(entry.path(), dir.join(&name)).map_err(|source| ExportError::Io {
                path: entry.path(),
                source,
            })?;
        }
        let card = format!(
            "---\nbase_model: {base}\ntags: [tunesmith, merged]\n---\n\n# Merged model\n\n\
             `{base}` with the update of Tunesmith run `{run}` added (checkpoint after step \
             {step}: {why}). Load it like the base model:\n\n\
             ```python\nfrom transformers import AutoModelForCausalLM\n\
             model = AutoModelForCausalLM.from_pretrained(\"PATH\")\n```\n",
            base = base_dir.display(),
            run = trained.run_dir.display(),
            step = trained.step,
            why = trained.chosen_because,
        );
        let path = dir.join("README.md");
        std::fs::write(&path, card).map_err(|source| ExportError::Io { path, source })?;
        Ok(())
    })?;
    let dtypes: std::collections::BTreeSet<String> = source
        .tensors()
        .values()
        .map(|i| format!("{:?}", written_dtype(i)))
        .collect();
    Ok(vec![format!(
        "{} tensors in {} ({} updated), {n} shard(s); load with \
         AutoModelForCausalLM.from_pretrained(\"{}\")",
        source.tensors().len(),
        dtypes.into_iter().collect::<Vec<_>>().join("/"),
        trained.form.modules() + trained.full.len(),
        out.display()
    )])
}

/// safetensors creates files readable by the owner only; a model folder is
/// meant to be shared like the base's files.
fn readable(path: &Path) -> Result<(), ExportError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(
            |source| ExportError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
