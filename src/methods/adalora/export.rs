//! AdaLoRA's exports. PEFT's own adapter keeps only the triplets of the
//! rank pattern (as PEFT's `save_pretrained` resizes them) and carries the
//! pattern in its config, with λ as `lora_E`; llama.cpp and the merge get
//! each module's kept triplets as a plain LoRA pair, λ and the scale
//! folded in, so modules of different ranks sit in one file.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::AdaloraConfig;
use super::allocator::{TOTAL, read_pattern};
use crate::methods::exported::{ExportForm, LoraPair, ModuleTensors, PeftAdapter};
use crate::methods::{LoraConfig, MethodError, MethodState, leaf_name, linear_shape};
use crate::model::ModelConfig;
use crate::train::params::HostTensor;

/// One module's trained triplets in our layouts.
struct Triplets {
    /// [in, r]
    a: HostTensor,
    /// [r]
    e: HostTensor,
    /// [r, out]
    b: HostTensor,
}

impl Triplets {
    fn take(
        module: &str,
        mut parts: ModuleTensors,
        r: usize,
        inp: usize,
        out: usize,
    ) -> Result<Self, MethodError> {
        let mut get = |part: &str, shape: &[usize]| {
            let t =
                parts
                    .remove(&format!("adalora.{part}"))
                    .ok_or_else(|| MethodError::Export {
                        module: module.to_string(),
                        reason: format!("its AdaLoRA tensor `{part}` is not in the checkpoint"),
                    })?;
            if t.shape != shape {
                return Err(MethodError::Export {
                    module: module.to_string(),
                    reason: format!(
                        "its AdaLoRA tensor `{part}` has shape {:?}, not {shape:?} (was method.init_r changed?)",
                        t.shape
                    ),
                });
            }
            Ok(t)
        };
        let me = Self {
            a: get("a", &[inp, r])?,
            e: get("e", &[r])?,
            b: get("b", &[r, out])?,
        };
        if let Some(extra) = parts.keys().next() {
            return Err(MethodError::Export {
                module: module.to_string(),
                reason: format!("adapter.{extra} is not an AdaLoRA tensor"),
            });
        }
        Ok(me)
    }
}

pub(super) fn form(
    config: &AdaloraConfig,
    model: &ModelConfig,
    adapters: BTreeMap<String, ModuleTensors>,
    state: &MethodState,
) -> Result<ExportForm, MethodError> {
    let r = config.init_r;
    let pattern = read_pattern(state);
    let scale = config.scale();
    let mut tensors = BTreeMap::new();
    let mut pairs = BTreeMap::new();
    let mut rank_pattern = serde_json::Map::new();
    let (mut kept_total, mut modules) = (0usize, 0usize);
    for (module, parts) in adapters {
        let (inp, out) =
            linear_shape(model, leaf_name(&module)).ok_or_else(|| MethodError::Export {
                module: module.clone(),
                reason: "it is not a linear layer of this model".into(),
            })?;
        let t = Triplets::take(&module, parts, r, inp, out)?;
        let keep: Vec<bool> = match pattern.as_ref().map(|p| p.get(&module)) {
            None => vec![true; r],
            Some(Some(keep)) if keep.len() == r => keep.clone(),
            Some(_) => {
                return Err(MethodError::State {
                    key: format!("adalora.pattern.{module}"),
                    reason: format!("the rank pattern has no {r} entries for this module"),
                });
            }
        };
        let kept: Vec<usize> = (0..r).filter(|&k| keep[k]).collect();
        kept_total += kept.len();
        modules += 1;
        // PEFT's layouts: lora_A (r, in), lora_E (r, 1), lora_B (out, r).
        let a_rows: Vec<f32> = kept
            .iter()
            .flat_map(|&k| (0..inp).map(move |i| (k, i)))
            .map(|(k, i)| t.a.data[i * r + k])
            .collect();
        let e: Vec<f32> = kept.iter().map(|&k| t.e.data[k]).collect();
        let b_cols: Vec<f32> = (0..out)
            .flat_map(|o| kept.iter().map(move |&k| (o, k)))
            .map(|(o, k)| t.b.data[k * out + o])
            .collect();
        let n = kept.len();
        let host = |shape: Vec<usize>, data: Vec<f32>| HostTensor { shape, data };
        tensors.insert(
            format!("{module}.lora_A"),
            host(vec![n, inp], a_rows.clone()),
        );
        tensors.insert(format!("{module}.lora_E"), host(vec![n, 1], e.clone()));
        tensors.insert(
            format!("{module}.lora_B"),
            host(vec![out, n], b_cols.clone()),
        );
        rank_pattern.insert(format!("{module}.lora_E"), json!(keep));
        if n > 0 {
            // A = diag(λ)·Q, B = s·P: the update B·A with a scale of one.
            let a: Vec<f32> = a_rows
                .chunks(inp)
                .zip(&e)
                .flat_map(|(row, &l)| row.iter().map(move |&v| v * l))
                .collect();
            let b: Vec<f32> = b_cols
                .iter()
                .map(|&v| (f64::from(v) * scale) as f32)
                .collect();
            pairs.insert(
                module,
                LoraPair {
                    a: host(vec![n, inp], a),
                    b: host(vec![out, n], b),
                    magnitude: None,
                },
            );
        }
    }
    let mut targets: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.rsplit('.').nth(1).map(str::to_string))
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let total_step = state
        .get(TOTAL)
        .and_then(|t| t.data.first())
        .map_or(config.tinit + config.tfinal + 1, |&v| v as usize);
    let peft = PeftAdapter {
        config: json!({
            "peft_type": "ADALORA",
            "init_r": r,
            "target_r": config.target_r,
            "lora_alpha": config.alpha,
            "lora_dropout": config.dropout,
            "tinit": config.tinit,
            "tfinal": config.tfinal,
            "deltaT": config.delta_t,
            "beta1": config.beta1,
            "beta2": config.beta2,
            "orth_reg_weight": config.orth_reg_weight,
            "total_step": total_step,
            "rank_pattern": if pattern.is_some() { Value::Object(rank_pattern) } else { Value::Null },
            "target_modules": targets,
            "bias": "none",
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
        }),
        tensors,
        title: "AdaLoRA adapter".into(),
        summary: format!(
            "init_r {r}, target_r {}, alpha {}, {kept_total} of {} triplets kept; target modules: {}",
            config.target_r,
            config.alpha,
            modules * r,
            targets.join(", ")
        ),
    };
    let lora = LoraConfig {
        rank: r,
        // A scale of one: λ and alpha / init_r are in the pairs.
        alpha: r as f64,
        dropout: config.dropout,
        target_modules: targets,
        ..LoraConfig::default()
    };
    Ok(ExportForm {
        lora: Some((lora, pairs)),
        peft: Some(peft),
        notes: vec![format!(
            "AdaLoRA kept {kept_total} of {} singular triplets; the GGUF adapter and the merged \
             model hold each module's kept triplets as a LoRA pair of that rank",
            modules * r
        )],
        ..ExportForm::default()
    })
}
