//! What a method's trained adapter becomes when a run is exported: the
//! forms other tools load (PEFT's own tensors and config, llama.cpp's LoRA
//! pairs) and the update a merged model adds. Each method builds its
//! [`ExportForm`] from its checkpoint tensors in [`Method::export_form`];
//! the writers in `crate::export` only lay the form out in files.
//!
//! [`Method::export_form`]: super::Method::export_form

use std::collections::BTreeMap;

use serde_json::Value;

use super::lora::LoraConfig;
use crate::train::params::HostTensor;

/// The trained tensors of one adapted module, by their path below the
/// module's `adapter` (`lora.a`, `miss.block`), in our layouts.
pub type ModuleTensors = BTreeMap<String, HostTensor>;

/// One LoRA pair in PEFT's layout: `a` is (r, in), `b` is (out, r), and
/// DoRA's magnitude (out).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub a: HostTensor,
    pub b: HostTensor,
    pub magnitude: Option<HostTensor>,
}

impl LoraPair {
    /// The rank r.
    pub fn rank(&self) -> usize {
        self.a.shape[0]
    }
}

/// An update of a base weight that depends on the weight itself, applied
/// when merging (MiSS's bat mode).
pub trait WeightDelta: std::fmt::Debug + Send + Sync {
    /// Adds the update to `w`, the base weight in HF layout (out, in),
    /// row-major.
    fn apply(&self, w: &mut [f32], out: usize, inp: usize);
}

/// A method's own PEFT adapter, for methods that PEFT saves as something
/// other than a LoRA.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// `adapter_config.json` keys of the method (`peft_type`, `r`...);
    /// the writer adds the task, the base model and `inference_mode`.
    pub config: Value,
    /// Tensors by their name after `base_model.model.`, in PEFT's layout.
    pub tensors: BTreeMap<String, HostTensor>,
    /// The model card's title ("MiSS adapter") and its settings line.
    pub title: String,
    pub summary: String,
}

/// Why a run has no llama.cpp GGUF adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufRefusal {
    /// The method as the user knows it ("DoRA").
    pub method: String,
    /// What llama.cpp's plain LoRA pairs cannot hold.
    pub what: String,
}

/// A trained adapter as the exports write it.
#[derive(Debug, Default)]
pub struct ExportForm {
    /// The update as LoRA pairs by HF module (`model.layers.0.self_attn.
    /// q_proj`) with the LoRA they follow (its scale), where the update is
    /// one: what the GGUF adapter holds, what merging adds, and the PEFT
    /// adapter when [`ExportForm::peft`] is none.
    pub lora: Option<(LoraConfig, BTreeMap<String, LoraPair>)>,
    /// The method's own PEFT adapter, written instead of the LoRA pairs.
    pub peft: Option<PeftAdapter>,
    /// Updates by HF module that merging applies to the base weight.
    pub dense: BTreeMap<String, Box<dyn WeightDelta>>,
    /// Set when the update cannot become a GGUF adapter.
    pub gguf_refusal: Option<GgufRefusal>,
    /// What the user should know about the exported adapter (report and
    /// model card).
    pub notes: Vec<String>,
}

impl ExportForm {
    /// How many base modules the update changes.
    pub fn modules(&self) -> usize {
        self.lora.as_ref().map_or(0, |(_, p)| p.len()) + self.dense.len()
    }
}
