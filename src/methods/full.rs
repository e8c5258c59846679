//! Full fine-tuning: the base weights themselves are trained, all of them
//! or a chosen subset (some modules, some layers).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::catalog::{FieldKind, FieldSpec, MethodSpec};
use super::{
    LINEAR_MODULES, MemoryTerms, Method, MethodConfig, MethodError, PrepareContext, PreparedModel,
    linear_shape,
};
use crate::model::{CausalLm, ModelConfig};

/// Per-layer modules besides the linear layers that full fine-tuning can train.
const NORM_MODULES: [&str; 4] = [
    "input_layernorm",
    "post_attention_layernorm",
    "q_norm",
    "k_norm",
];
/// Modules outside the decoder blocks.
const GLOBAL_MODULES: [&str; 3] = ["embed_tokens", "norm", "lm_head"];

/// The `[method]` keys of `kind = "full"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FullConfig {
    /// Modules to train by HF name, or `"all"`: linear layers (q_proj ...
    /// down_proj), norms (input_layernorm, post_attention_layernorm, q_norm,
    /// k_norm, norm), embed_tokens and lm_head.
    pub modules: Vec<String>,
    /// Decoder layers whose modules are trained (0-based); empty = all.
    pub layers: Vec<usize>,
}

impl Default for FullConfig {
    fn default() -> Self {
        Self {
            modules: vec!["all".into()],
            layers: Vec::new(),
        }
    }
}

/// The full fine-tuning card, selecting `config`.
pub fn spec(config: FullConfig) -> MethodSpec {
    let mut options = vec!["all"];
    options.extend(LINEAR_MODULES);
    options.extend(NORM_MODULES);
    options.extend(GLOBAL_MODULES);
    MethodSpec::new(
        "full",
        "Full fine-tuning",
        None,
        "Trains every weight: the most capacity, but gradients and optimizer state for the whole model (about 4x its size).",
        MethodConfig::Full(config),
        vec![
            FieldSpec::new(
                "modules",
                "Modules",
                "what to train: all, linear layers, norms (q_norm and k_norm on qwen3), embed_tokens, lm_head (untied models)",
                FieldKind::Subset { options },
            ),
            FieldSpec::new(
                "layers",
                "Layers",
                "decoder layers (0-based) whose per-layer modules train; empty = all",
                FieldKind::Layers,
            ),
        ],
    )
}

impl FullConfig {
    fn wants(&self, module: &str) -> bool {
        self.modules.iter().any(|m| m == "all" || m == module)
    }

    fn wants_layer(&self, layer: usize) -> bool {
        self.layers.is_empty() || self.layers.contains(&layer)
    }

    /// Whether the parameter at burn path `path` is trained.
    fn trains(&self, path: &[String]) -> bool {
        match path.first().map(String::as_str) {
            Some("layers") => {
                let layer = path.get(1).and_then(|s| s.parse::<usize>().ok());
                let module = path.iter().find(|p| {
                    LINEAR_MODULES.contains(&p.as_str()) || NORM_MODULES.contains(&p.as_str())
                });
                match (layer, module) {
                    (Some(l), Some(m)) => self.wants_layer(l) && self.wants(m),
                    _ => false,
                }
            }
            Some(top) => self.wants(top),
            None => false,
        }
    }
}

impl Method for FullConfig {
    fn name(&self) -> &'static str {
        "full"
    }

    fn memory_terms(&self, model: &ModelConfig) -> MemoryTerms {
        let head = if model.tie_word_embeddings {
            "embed_tokens"
        } else {
            "lm_head"
        };
        MemoryTerms::trained_base(self.trainable_params(model), !self.wants(head))
    }

    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError> {
        if self.modules.is_empty() {
            return Err(MethodError::NoTargets);
        }
        for m in &self.modules {
            let known = m == "all"
                || LINEAR_MODULES.contains(&m.as_str())
                || NORM_MODULES.contains(&m.as_str())
                || GLOBAL_MODULES.contains(&m.as_str());
            let present = match m.as_str() {
                "q_norm" | "k_norm" => model.qk_norm,
                "lm_head" => !model.tie_word_embeddings,
                _ => true,
            };
            if !known || !present {
                return Err(MethodError::UnknownModule {
                    name: m.clone(),
                    model_type: model.model_type.to_string(),
                    available: format!(
                        "all, {}, {}, {}",
                        LINEAR_MODULES.join(", "),
                        NORM_MODULES.join(", "),
                        GLOBAL_MODULES.join(", ")
                    ),
                });
            }
        }
        if let Some(&layer) = self.layers.iter().find(|&&l| l >= model.num_layers) {
            return Err(MethodError::NoSuchLayer {
                layer,
                num_layers: model.num_layers,
            });
        }
        Ok(())
    }

    fn trains_base_weights(&self) -> bool {
        true
    }

    fn trainable_params(&self, model: &ModelConfig) -> u64 {
        let layers = (0..model.num_layers)
            .filter(|&l| self.wants_layer(l))
            .count();
        let mut per_layer = 0usize;
        for m in LINEAR_MODULES {
            if self.wants(m)
                && let Some((i, o)) = linear_shape(model, m)
            {
                let bias = match m {
                    "q_proj" | "k_proj" | "v_proj" => model.qkv_bias,
                    "o_proj" => model.o_bias,
                    _ => model.mlp_bias,
                };
                per_layer += i * o + if bias { o } else { 0 };
            }
        }
        for m in ["input_layernorm", "post_attention_layernorm"] {
            if self.wants(m) {
                per_layer += model.hidden_size;
            }
        }
        if model.qk_norm {
            for m in ["q_norm", "k_norm"] {
                if self.wants(m) {
                    per_layer += model.head_dim;
                }
            }
        }
        let mut total = per_layer * layers;
        if self.wants("embed_tokens") {
            total += model.vocab_size * model.hidden_size;
        }
        if self.wants("norm") {
            total += model.hidden_size;
        }
        if self.wants("lm_head") && !model.tie_word_embeddings {
            total += model.vocab_size * model.hidden_size;
        }
        total as u64
    }

    fn prepare(
        &self,
        model: CausalLm,
        _ctx: &mut PrepareContext<'_>,
    ) -> Result<PreparedModel, MethodError> {
        Ok(PreparedModel {
            model: mark_trained(model, |path| self.trains(path)),
            state: Default::default(),
        })
    }
}

/// `model` with `require_grad` set on exactly the parameters whose burn
/// path (`layers`, `3`, `mlp`, `up_proj`, ...) `trains` accepts; the others
/// are frozen.
pub(crate) fn mark_trained(model: CausalLm, trains: impl Fn(&[String]) -> bool) -> CausalLm {
    let mut marker = Marker {
        trains,
        path: Vec::new(),
    };
    model.map(&mut marker)
}

struct Marker<F> {
    trains: F,
    path: Vec<String>,
}

impl<F: Fn(&[String]) -> bool> ModuleMapper for Marker<F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        trained_param(param, (self.trains)(&self.path))
    }
}

/// `param` marked as trained or frozen; a trained one becomes an f32
/// master copy whatever the base is stored in.
pub(crate) fn trained_param<const D: usize>(
    param: Param<Tensor<D>>,
    trains: bool,
) -> Param<Tensor<D>> {
    if trains && param.val().dtype() != burn::tensor::DType::F32 {
        let (id, tensor, mapper) = param.consume();
        let wide = crate::model::precision::master(tensor.inner()).autodiff();
        return Param::from_mapped_value(id, wide, mapper).set_require_grad(true);
    }
    param.set_require_grad(trains)
}
