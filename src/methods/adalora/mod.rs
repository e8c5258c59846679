//! AdaLoRA (Zhang et al. 2023, "AdaLoRA: Adaptive Budget Allocation for
//! Parameter-Efficient Fine-Tuning"), as PEFT's `AdaLoraConfig` computes
//! it. Each adapted layer gets an update in SVD form, `P·diag(λ)·Q` (PEFT's
//! `lora_B`, `lora_E`, `lora_A`) scaled by `alpha / init_r`; an
//! orthogonality regulariser keeps P and Q near-orthonormal, and after
//! every step a sensitivity score per singular triplet decides which
//! triplets the shrinking rank budget keeps (the others' λ is zeroed), so
//! rank moves to the layers that need it. The budget falls from `init_r`
//! per module to `target_r` on PEFT's cubic schedule between `tinit` and
//! `total - tfinal`.

mod allocator;
mod export;

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::catalog::{FieldKind, FieldSpec, MethodSpec, dropout_field, target_modules_field};
use super::exported::{ExportForm, ModuleTensors};
use super::triplets::TripletAdapter;
use super::{
    LINEAR_MODULES, MemoryTerms, Method, MethodConfig, MethodError, MethodState, PrepareContext,
    PreparedModel, TrainingHooks, is_target, target_shapes,
};
use crate::model::{CausalLm, ModelConfig};

/// The `[method]` keys of `kind = "adalora"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaloraConfig {
    /// Rank each module starts with (PEFT's `init_r`).
    pub init_r: usize,
    /// Average rank per module once the budget has shrunk (`target_r`).
    pub target_r: usize,
    /// Scale numerator: the update is multiplied by `alpha / init_r`
    /// (PEFT's `lora_alpha`).
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Steps of warm-up at the full budget before any triplet is pruned.
    pub tinit: usize,
    /// Final steps trained at the target budget with the ranks fixed.
    pub tfinal: usize,
    /// Steps between two reallocations during the budgeting phase (PEFT's
    /// `deltaT`).
    pub delta_t: usize,
    /// Smoothing of the sensitivity's running average.
    pub beta1: f64,
    /// Smoothing of the sensitivity's uncertainty.
    pub beta2: f64,
    /// Weight of the orthogonality regulariser on P and Q.
    pub orth_reg_weight: f64,
    /// Linear modules to adapt, by HF name.
    pub target_modules: Vec<String>,
}

impl Default for AdaloraConfig {
    fn default() -> Self {
        // PEFT's defaults, but the scale: PEFT's lora_alpha = 8 with
        // init_r = 12 scales by 2/3; 24 gives LoRA's usual 2.
        Self {
            init_r: 12,
            target_r: 8,
            alpha: 24.0,
            dropout: 0.0,
            tinit: 0,
            tfinal: 0,
            delta_t: 1,
            beta1: 0.85,
            beta2: 0.85,
            orth_reg_weight: 0.5,
            target_modules: LINEAR_MODULES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

const PAPER: &str =
    "Zhang et al. 2023, AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning";

fn fields() -> Vec<FieldSpec> {
    let int = |min: i64| FieldKind::Int { min, max: None };
    let unit = FieldKind::Float {
        min: 0.0,
        min_open: true,
        max: Some(1.0),
        max_open: true,
    };
    let positive = |min_open| FieldKind::Float {
        min: 0.0,
        min_open,
        max: None,
        max_open: false,
    };
    vec![
        FieldSpec::new(
            "init_r",
            "Initial rank",
            "rank every adapted module starts with; pruned towards the target during training",
            int(1),
        ),
        FieldSpec::new(
            "target_r",
            "Target rank",
            "average rank per module after the budget has shrunk; layers that matter keep more, others fewer",
            int(1),
        ),
        FieldSpec::new(
            "alpha",
            "Alpha",
            "scale numerator: the update is multiplied by alpha / init_r",
            positive(true),
        ),
        dropout_field("dropout on the adapter's input, training only"),
        FieldSpec::new(
            "tinit",
            "Warm-up steps",
            "steps at the full budget before any rank is pruned",
            int(0),
        ),
        FieldSpec::new(
            "tfinal",
            "Final steps",
            "last steps trained at the target budget with the ranks fixed",
            int(0),
        ),
        FieldSpec::new(
            "delta_t",
            "Reallocate every",
            "steps between two reallocations while the budget shrinks (PEFT's deltaT)",
            int(1),
        ),
        FieldSpec::new(
            "beta1",
            "Sensitivity smoothing",
            "running-average factor of each weight's sensitivity |w * grad|, in (0, 1)",
            unit.clone(),
        ),
        FieldSpec::new(
            "beta2",
            "Uncertainty smoothing",
            "running-average factor of the sensitivity's uncertainty, in (0, 1)",
            unit,
        ),
        FieldSpec::new(
            "orth_reg_weight",
            "Orthogonality weight",
            "weight of the regulariser that keeps the singular vectors orthonormal",
            positive(false),
        ),
        target_modules_field("the linear layers that get an adapter, by HF name"),
    ]
}

/// The AdaLoRA card, selecting `config`.
pub fn spec(config: AdaloraConfig) -> MethodSpec {
    MethodSpec::new(
        "adalora",
        "AdaLoRA",
        Some(PAPER),
        "LoRA whose rank moves during training to the layers that need it: the same budget spent where it counts; the dashboard shows the ranks per layer.",
        MethodConfig::Adalora(config),
        fields(),
    )
}

impl AdaloraConfig {
    /// PEFT's forward scale, `lora_alpha / (ranknum + 1e-5)` with the
    /// rank it started with.
    pub fn scale(&self) -> f64 {
        self.alpha / (self.init_r as f64 + 1e-5)
    }

    fn invalid(key: &'static str, value: impl ToString, reason: &'static str) -> MethodError {
        MethodError::Invalid {
            key,
            value: value.to_string(),
            reason,
        }
    }
}

impl Method for AdaloraConfig {
    fn name(&self) -> &'static str {
        "adalora"
    }

    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError> {
        if self.init_r == 0 {
            return Err(Self::invalid(
                "init_r",
                0,
                "the initial rank must be at least 1 (12 is PEFT's default)",
            ));
        }
        if self.target_r == 0 || self.target_r > self.init_r {
            return Err(Self::invalid(
                "target_r",
                self.target_r,
                "the target rank must be at least 1 and at most method.init_r",
            ));
        }
        super::check_alpha(self.alpha)?;
        super::check_dropout(self.dropout)?;
        if self.delta_t == 0 {
            return Err(Self::invalid(
                "delta_t",
                0,
                "reallocate every 1 step or more",
            ));
        }
        for (key, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(beta > 0.0 && beta < 1.0) {
                return Err(Self::invalid(
                    key,
                    beta,
                    "a smoothing factor lies strictly between 0 and 1 (0.85 is PEFT's default)",
                ));
            }
        }
        if !(self.orth_reg_weight >= 0.0 && self.orth_reg_weight.is_finite()) {
            return Err(Self::invalid(
                "orth_reg_weight",
                self.orth_reg_weight,
                "the weight must be 0 or more (0.5 is PEFT's default)",
            ));
        }
        let shapes = target_shapes(model, &self.target_modules)?;
        let fits = shapes.iter().map(|&(_, i, o)| i.min(o)).min().unwrap_or(0);
        for &(name, inp, out) in &shapes {
            if self.init_r > inp.min(out) {
                return Err(MethodError::Misfit {
                    key: "init_r",
                    value: self.init_r,
                    module: name.to_string(),
                    inp,
                    out,
                    reason: "a rank is at most the layer's smaller width",
                    fits,
                });
            }
        }
        Ok(())
    }

    fn check_steps(&self, total_steps: usize) -> Result<(), MethodError> {
        if self.tinit >= total_steps.saturating_sub(self.tfinal) {
            return Err(MethodError::Schedule {
                tinit: self.tinit,
                tfinal: self.tfinal,
                total: total_steps,
            });
        }
        Ok(())
    }

    fn trainable_params(&self, model: &ModelConfig) -> u64 {
        super::over_layers(model, &self.target_modules, |inp, out| {
            self.init_r * (inp + out + 1)
        })
    }

    fn memory_terms(&self, model: &ModelConfig) -> MemoryTerms {
        let mut layer_values = 0;
        for m in &self.target_modules {
            let Some((inp, _)) = super::linear_shape(model, m) else {
                continue;
            };
            // x·Q and its product with λ, and with dropout LoRA's 1.5
            // input widths (see LoRA's terms).
            layer_values += 2 * self.init_r as u64;
            if self.dropout > 0.0 {
                layer_values += 3 * inp as u64 / 2;
            }
        }
        let params = self.trainable_params(model);
        MemoryTerms {
            // The sensitivity's and the uncertainty's running averages.
            state_values: 2 * params,
            ..MemoryTerms::adapter(params, layer_values)
        }
    }

    fn prepare(
        &self,
        model: CausalLm,
        ctx: &mut PrepareContext<'_>,
    ) -> Result<PreparedModel, MethodError> {
        let mut model = model.no_grad();
        let r = self.init_r;
        // PEFT's init: Q and P normal with std 0.02, λ zero (the update
        // starts at zero). A resumed run's values come from the checkpoint.
        let normal = Normal::new(0.0f64, 0.02).map_err(|e| MethodError::Decomposition {
            module: "adalora".into(),
            reason: e.to_string(),
        })?;
        for (name, layer) in model.linears_mut() {
            if !is_target(&self.target_modules, &name) {
                continue;
            }
            let (inp, out) = layer.dims();
            let device = layer.device();
            let mut draw = |rows: usize, cols: usize| -> Vec<f32> {
                let v: Vec<f32> = (0..rows * cols)
                    .map(|_| normal.sample(&mut *ctx.rng) as f32)
                    .collect();
                super::lora::transpose(&v, rows, cols)
            };
            // Drawn in PEFT's layouts, A (r, in) and B (out, r), stored as
            // ours: [in, r] and [r, out].
            let a = draw(r, inp);
            let b = draw(out, r);
            let tensor = |data: Vec<f32>, shape: [usize; 2]| {
                Param::from_tensor(Tensor::<2>::from_data(
                    TensorData::new(data, shape),
                    &device,
                ))
            };
            layer.adapter = Some(super::Adapter::Adalora(TripletAdapter {
                a: tensor(a, [inp, r]),
                e: Param::from_tensor(Tensor::<1>::zeros([r], &device)),
                b: tensor(b, [r, out]),
                scale: self.scale(),
                dropout: self.dropout,
            }));
        }
        Ok(PreparedModel {
            model,
            state: MethodState::new(),
        })
    }

    fn hooks(
        &self,
        _model: &ModelConfig,
        total_steps: usize,
        saved: Option<&MethodState>,
    ) -> Result<Box<dyn TrainingHooks>, MethodError> {
        Ok(Box::new(allocator::RankAllocator::new(
            self,
            total_steps,
            saved,
        )))
    }

    fn export_form(
        &self,
        model: &ModelConfig,
        adapters: BTreeMap<String, ModuleTensors>,
        state: &MethodState,
    ) -> Result<ExportForm, MethodError> {
        export::form(self, model, adapters, state)
    }
}

/// The HF module of an adapter parameter (`layers.0.self_attn.q_proj.
/// adapter.adalora.e` -> `model.layers.0.self_attn.q_proj`) and which of
/// its tensors it is.
fn module_of(param: &str) -> Option<(String, &str)> {
    let (module, part) = param.split_once(".adapter.adalora.")?;
    Some((format!("model.{module}"), part))
}
