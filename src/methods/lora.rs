//! LoRA (Hu et al. 2021) and rsLoRA (Kalajdzievski 2023): a frozen layer
//! `W` gains a trainable low-rank update, `y = x·W + s · dropout(x)·A·B`,
//! with `s = alpha / r` (or `alpha / sqrt(r)` with rsLoRA). Initialised as
//! PEFT does: A uniform in ±1/sqrt(in) (kaiming-uniform with a = sqrt 5),
//! B zero, so training starts from the base model exactly.

use burn::module::{Module, Param};
use burn::tensor::{Distribution, Int, Tensor, TensorData, module::linear};
use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::catalog::{FieldKind, FieldSpec, MethodSpec};
use super::{LINEAR_MODULES, Method, MethodConfig, MethodError, leaf_name, linear_shape};
use crate::model::{CausalLm, ModelConfig};

/// The `[method]` keys of `kind = "lora"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank r of the update.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by alpha/r (alpha/sqrt(r)
    /// with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Linear modules to adapt, by HF name.
    pub target_modules: Vec<String>,
    /// Rank-stabilised scaling alpha/sqrt(r).
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            target_modules: LINEAR_MODULES.iter().map(|s| s.to_string()).collect(),
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// The factor the low-rank update is multiplied by.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    fn targets(&self, name: &str) -> bool {
        let leaf = leaf_name(name);
        self.target_modules.iter().any(|t| t == leaf)
    }
}

const LORA_PAPER: &str = "Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models";

/// The LoRA fields, shared by the LoRA and rsLoRA cards.
fn fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::new(
            "rank",
            "Rank",
            "rank r of the update; at most the smaller side of every target layer",
            FieldKind::Int { min: 1, max: None },
        ),
        FieldSpec::new(
            "alpha",
            "Alpha",
            "the update is scaled by alpha/r (alpha/sqrt(r) with rsLoRA)",
            FieldKind::Float {
                min: 0.0,
                min_open: true,
                max: None,
                max_open: false,
            },
        ),
        FieldSpec::new(
            "dropout",
            "Dropout",
            "dropout on the adapter input, training only",
            FieldKind::Float {
                min: 0.0,
                min_open: false,
                max: Some(1.0),
                max_open: true,
            },
        ),
        FieldSpec::new(
            "target_modules",
            "Target modules",
            "the linear layers that get an adapter, by HF name",
            FieldKind::Subset {
                options: LINEAR_MODULES.to_vec(),
            },
        ),
        FieldSpec::new(
            "use_rslora",
            "Rank-stabilised scaling",
            "rank-stabilised scaling alpha/sqrt(r) (rsLoRA)",
            FieldKind::Bool,
        ),
    ]
}

/// The LoRA card, selecting `config`.
pub fn spec(config: LoraConfig) -> MethodSpec {
    MethodSpec::new(
        "lora",
        "LoRA",
        Some(LORA_PAPER),
        "The usual choice: small trainable adapters beside the frozen model; little memory, exports as a small adapter.",
        MethodConfig::Lora(config),
        fields(),
    )
}

/// The rsLoRA card: LoRA with `use_rslora` on.
pub fn rslora_spec() -> MethodSpec {
    MethodSpec::new(
        "rslora",
        "rsLoRA",
        Some("Kalajdzievski 2023, A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA"),
        "LoRA scaled by alpha/sqrt(rank) instead of alpha/rank: learns steadily at high ranks (64 and up).",
        MethodConfig::Lora(LoraConfig {
            use_rslora: true,
            ..LoraConfig::default()
        }),
        fields(),
    )
}

impl Method for LoraConfig {
    fn name(&self) -> &'static str {
        "lora"
    }

    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError> {
        if self.rank == 0 {
            return Err(MethodError::Invalid {
                key: "rank",
                value: "0".into(),
                reason: "the rank must be at least 1 (8 or 16 are common)",
            });
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(MethodError::Invalid {
                key: "alpha",
                value: self.alpha.to_string(),
                reason: "alpha must be a positive number (often twice the rank)",
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(MethodError::Invalid {
                key: "dropout",
                value: self.dropout.to_string(),
                reason: "dropout is a probability in [0, 1)",
            });
        }
        if self.target_modules.is_empty() {
            return Err(MethodError::NoTargets);
        }
        for name in &self.target_modules {
            let Some((inp, out)) = linear_shape(model, name) else {
                return Err(MethodError::UnknownModule {
                    name: name.clone(),
                    model_type: model.model_type.to_string(),
                    available: LINEAR_MODULES.join(", "),
                });
            };
            let max = inp.min(out);
            if self.rank > max {
                return Err(MethodError::RankTooLarge {
                    rank: self.rank,
                    module: name.clone(),
                    inp,
                    out,
                    max,
                });
            }
        }
        Ok(())
    }

    fn trainable_params(&self, model: &ModelConfig) -> u64 {
        let per_layer: usize = self
            .target_modules
            .iter()
            .filter_map(|m| linear_shape(model, m))
            .map(|(i, o)| self.rank * (i + o))
            .sum();
        (per_layer * model.num_layers) as u64
    }

    fn prepare(&self, model: CausalLm, rng: &mut StdRng) -> CausalLm {
        let mut model = model.no_grad();
        let scaling = self.scaling();
        for (name, layer) in model.linears_mut() {
            if !self.targets(&name) {
                continue;
            }
            let (inp, out) = layer.dims();
            let device = layer.device();
            let bound = 1.0 / (inp as f64).sqrt();
            // A is [in, r] here (PEFT stores its transpose [r, in]); draw it in
            // PEFT's row order so the same seed means the same matrix.
            let mut a_peft = vec![0f32; self.rank * inp];
            for v in &mut a_peft {
                *v = ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32;
            }
            let a = transpose(&a_peft, self.rank, inp);
            let a = Tensor::<2>::from_data(TensorData::new(a, [inp, self.rank]), &device);
            let b = Tensor::<2>::zeros([self.rank, out], &device);
            layer.adapter = Some(super::Adapter::Lora(LoraAdapter {
                a: Param::from_tensor(a),
                b: Param::from_tensor(b),
                scaling,
                dropout: self.dropout,
            }));
        }
        model
    }
}

/// Row-major [rows, cols] -> [cols, rows].
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = data[r * cols + c];
        }
    }
    t
}

/// A 64-bit seed drawn from `device`'s random stream.
fn stream_seed(device: &burn::tensor::Device) -> u64 {
    // Int tensors are i32 on some backends: three 30-bit draws.
    let draw = Tensor::<1, Int>::random([3], Distribution::Uniform(0.0, 2f64.powi(30)), device);
    let halves: Vec<i64> = draw
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap_or_default();
    halves
        .iter()
        .fold(0u64, |acc, &h| acc.rotate_left(30) ^ (h as u64))
}

/// The trainable pair of one adapted layer.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// [in, r] (the transpose of PEFT's `lora_A.weight`).
    pub a: Param<Tensor<2>>,
    /// [r, out] (the transpose of PEFT's `lora_B.weight`).
    pub b: Param<Tensor<2>>,
    pub scaling: f64,
    pub dropout: f64,
}

impl LoraAdapter {
    /// `base + s · dropout(x)·A·B`; `dropout` is off in evaluation and
    /// generation.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<D>,
        base: Tensor<D>,
        dropout: bool,
    ) -> Tensor<D> {
        let x = if self.dropout > 0.0 && dropout {
            let keep = 1.0 - self.dropout;
            if tunesmith_kernels::fused(&x) {
                // The mask's seed comes from the backend's stream, so a layer
                // recomputed under checkpointing (which reseeds that stream)
                // draws the same mask again.
                let seed = stream_seed(&x.device());
                tunesmith_kernels::dropout(x, keep, seed)
            } else {
                let mask = x.random_like(Distribution::Bernoulli(keep));
                x * mask / keep
            }
        } else {
            x
        };
        let low = linear(x, self.a.val(), None);
        base + linear(low, self.b.val(), None) * self.scaling
    }

    /// The rank r.
    pub fn rank(&self) -> usize {
        self.a.dims()[1]
    }
}
