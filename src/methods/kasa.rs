//! KaSA (Wang, Jiang et al. 2024, "KaSA: Knowledge-Aware Singular-Value
//! Adaptation of Large Language Models", ICLR 2025). Before training, each
//! adapted weight loses its `r` smallest singular components (the paper's
//! knowledge-based SVD truncation: the directions that carry noise and
//! long-tail knowledge); the update is trained in SVD form,
//! `s · ΔU·diag(Δσ)·ΔVᵀ` with `s = alpha / r`, beside two regularisers:
//! `β·‖Δσ‖²` keeps the update's singular values (the knowledge it adds)
//! small, `γ·(‖ΔUᵀΔU − I‖_F + ‖ΔVᵀΔV − I‖_F)` keeps its singular vectors
//! orthonormal, each the mean over the adapted modules.
//!
//! PEFT has no KaSA; tests/fixtures/make_fixtures.py holds a reference
//! implementation in torch that the tests match. Where the authors' code
//! (juyongjiang/KaSA) departs from the paper, this follows the paper: it
//! drops the `r` smallest of `min(in, out)` components (their code keeps
//! the first `in − r`, which drops nothing from a layer wider in than out),
//! and its Gram matrices are r x r (theirs are `in x in` and `out x out`,
//! whose distance from the identity cannot fall below `sqrt(in − r)`).
//! Their initialisation is kept: ΔVᵀ as LoRA's A (Kaiming-uniform), ΔU
//! zero, Δσ standard normal, so the model starts as the truncated base.
//!
//! The dropped components are the method's state: exports add them back
//! as the negated half of a rank-2r LoRA, so the adapter applies to the
//! original base (as PiSSA's exports do).

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::catalog::{FieldKind, FieldSpec, MethodSpec, dropout_field, target_modules_field};
use super::exported::{ExportForm, LoraPair, ModuleTensors};
use super::triplets::{TripletAdapter, sum};
use super::{
    Adapter, LINEAR_MODULES, LoraConfig, LossTerm, MemoryTerms, Method, MethodConfig, MethodError,
    MethodState, PrepareContext, PreparedModel, TrainingHooks, is_target, leaf_name, linear_shape,
    target_shapes,
};
use crate::model::{CausalLm, ModelConfig};
use crate::train::params::HostTensor;

/// The `[method]` keys of `kind = "kasa"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KasaConfig {
    /// Singular components dropped from each base weight, and the rank of
    /// the trained update.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Weight of the singular-value regulariser `‖Δσ‖²`.
    pub beta: f64,
    /// Weight of the orthogonality regulariser on ΔU and ΔV.
    pub gamma: f64,
    /// Linear modules to adapt, by HF name.
    pub target_modules: Vec<String>,
}

impl Default for KasaConfig {
    fn default() -> Self {
        // The authors' settings for instruction tuning: r 8, alpha 16,
        // beta 1e-4, gamma 1e-3.
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            beta: 1e-4,
            gamma: 1e-3,
            target_modules: LINEAR_MODULES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

const PAPER: &str = "Wang, Jiang et al. 2024, KaSA: Knowledge-Aware Singular-Value Adaptation of Large Language Models";

fn fields() -> Vec<FieldSpec> {
    let weight = FieldKind::Float {
        min: 0.0,
        min_open: false,
        max: None,
        max_open: false,
    };
    vec![
        FieldSpec::new(
            "rank",
            "Rank",
            "singular components dropped from each base weight (its smallest), and the rank of the trained update",
            FieldKind::Int { min: 1, max: None },
        ),
        FieldSpec::new(
            "alpha",
            "Alpha",
            "the update is scaled by alpha/r",
            FieldKind::Float {
                min: 0.0,
                min_open: true,
                max: None,
                max_open: false,
            },
        ),
        dropout_field("dropout on the adapter's input, training only"),
        FieldSpec::new(
            "beta",
            "Singular-value weight",
            "weight of the regulariser on the update's singular values, which keeps the added knowledge small",
            weight.clone(),
        ),
        FieldSpec::new(
            "gamma",
            "Orthogonality weight",
            "weight of the regulariser that keeps the update's singular vectors orthonormal",
            weight,
        ),
        target_modules_field("the linear layers that get an adapter, by HF name"),
    ]
}

/// The KaSA card, selecting `config`.
pub fn spec(config: KasaConfig) -> MethodSpec {
    MethodSpec::new(
        "kasa",
        "KaSA",
        Some(PAPER),
        "LoRA that first drops each layer's weakest singular directions (noise and long-tail knowledge) and learns an update in SVD form: for a small model that should keep what it knows while it learns the task.",
        MethodConfig::Kasa(config),
        fields(),
    )
}

/// The state keys of the components dropped from `module`: `a` [in, r]
/// (the left singular vectors times their values) and `b` [r, out] (the
/// right ones as rows), in our layout, so the dropped part is `a·b`.
pub fn dropped_key(module: &str, part: char) -> String {
    format!("{module}.kasa.dropped_{part}")
}

impl KasaConfig {
    /// The update's scale, `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    fn invalid(key: &'static str, value: impl ToString, reason: &'static str) -> MethodError {
        MethodError::Invalid {
            key,
            value: value.to_string(),
            reason,
        }
    }

    /// The components `module` (weight `w` [in, out]) loses: recomputed, or
    /// from the state a checkpoint saved.
    fn dropped(
        &self,
        module: &str,
        w: &[f32],
        inp: usize,
        out: usize,
        saved: Option<&MethodState>,
    ) -> Result<(Vec<f32>, Vec<f32>), MethodError> {
        let r = self.rank;
        if let Some(saved) = saved {
            let get = |part, shape| super::saved_matrix(saved, dropped_key(module, part), shape);
            return Ok((get('a', [inp, r])?, get('b', [r, out])?));
        }
        let tail =
            super::svd::trailing(w, inp, out, r).map_err(|e| MethodError::Decomposition {
                module: module.to_string(),
                reason: e.to_string(),
            })?;
        let a = (0..inp * r)
            .map(|i| (tail.u[i] * tail.s[i % r]) as f32)
            .collect();
        let b = tail.vt.iter().map(|&v| v as f32).collect();
        Ok((a, b))
    }
}

impl Method for KasaConfig {
    fn name(&self) -> &'static str {
        "kasa"
    }

    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError> {
        if self.rank == 0 {
            return Err(Self::invalid(
                "rank",
                0,
                "the rank must be at least 1 (8 is the paper's)",
            ));
        }
        super::check_alpha(self.alpha)?;
        super::check_dropout(self.dropout)?;
        for (key, weight, usual) in [
            (
                "beta",
                self.beta,
                "the weight must be 0 or more (1e-4 is the paper's)",
            ),
            (
                "gamma",
                self.gamma,
                "the weight must be 0 or more (1e-3 is the paper's)",
            ),
        ] {
            if !(weight >= 0.0 && weight.is_finite()) {
                return Err(Self::invalid(key, weight, usual));
            }
        }
        let shapes = target_shapes(model, &self.target_modules)?;
        let fits = shapes
            .iter()
            .map(|&(_, i, o)| i.min(o).saturating_sub(1))
            .min()
            .unwrap_or(0);
        for &(name, inp, out) in &shapes {
            if self.rank >= inp.min(out) {
                return Err(MethodError::Misfit {
                    key: "rank",
                    value: self.rank,
                    module: name.to_string(),
                    inp,
                    out,
                    reason: "KaSA drops that many of the layer's min(in, out) singular \
                             components and must keep at least one",
                    fits,
                });
            }
        }
        Ok(())
    }

    fn trainable_params(&self, model: &ModelConfig) -> u64 {
        super::over_layers(model, &self.target_modules, |inp, out| {
            self.rank * (inp + out + 1)
        })
    }

    fn memory_terms(&self, model: &ModelConfig) -> MemoryTerms {
        let mut layer_values = 0;
        for m in &self.target_modules {
            let Some((inp, _)) = linear_shape(model, m) else {
                continue;
            };
            // x·ΔV and its product with Δσ, and with dropout LoRA's 1.5
            // input widths (see LoRA's terms).
            layer_values += 2 * self.rank as u64;
            if self.dropout > 0.0 {
                layer_values += 3 * inp as u64 / 2;
            }
        }
        MemoryTerms::adapter(self.trainable_params(model), layer_values)
    }

    fn quantized_base_refusal(&self) -> Option<&'static str> {
        // Truncating the quantized weights would quantize twice, as with
        // PiSSA (see LoRA's refusal).
        Some(
            "KaSA drops singular components of the unquantized weights and is not supported on \
             a quantized base yet: use model.quantize = \"none\" (model.dtype = \"bf16\" to save \
             memory) or LoRA on the quantized one",
        )
    }

    fn prepare(
        &self,
        model: CausalLm,
        ctx: &mut PrepareContext<'_>,
    ) -> Result<PreparedModel, MethodError> {
        let mut model = model.no_grad();
        let r = self.rank;
        let mut state = MethodState::new();
        let targets: Vec<_> = model
            .linears_mut()
            .into_iter()
            .filter(|(name, _)| is_target(&self.target_modules, name))
            .collect();
        let total = targets.len();
        for (done, (name, layer)) in targets.into_iter().enumerate() {
            let (inp, out) = layer.dims();
            let device = layer.device();
            if ctx.saved.is_none() {
                (ctx.progress)(done, total, &format!("KaSA: SVD of {name}"));
            }
            let w = HostTensor::from_tensor(layer.frozen_weight()).data;
            let (dropped_a, dropped_b) = self.dropped(&name, &w, inp, out, ctx.saved)?;
            let truncated = super::lora::residual(&w, &dropped_a, &dropped_b, r, 1.0);
            layer
                .replace_frozen_weight(truncated)
                .map_err(|e| MethodError::Decomposition {
                    module: name.clone(),
                    reason: e.to_string(),
                })?;
            // The authors' init: ΔVᵀ Kaiming-uniform as LoRA's A, Δσ
            // standard normal, ΔU zero.
            let a = super::lora::kaiming_a(inp, r, ctx.rng);
            let e: Vec<f32> = (0..r)
                .map(|_| {
                    let v: f64 = StandardNormal.sample(&mut *ctx.rng);
                    v as f32
                })
                .collect();
            let tensor = |data: Vec<f32>, shape: [usize; 2]| {
                Param::from_tensor(Tensor::<2>::from_data(
                    TensorData::new(data, shape),
                    &device,
                ))
            };
            layer.adapter = Some(Adapter::Kasa(TripletAdapter {
                a: tensor(a, [inp, r]),
                e: Param::from_tensor(Tensor::<1>::from_data(TensorData::new(e, [r]), &device)),
                b: tensor(vec![0f32; r * out], [r, out]),
                scale: self.scale(),
                dropout: self.dropout,
            }));
            for (part, shape, data) in [
                ('a', vec![inp, r], dropped_a),
                ('b', vec![r, out], dropped_b),
            ] {
                state.insert(dropped_key(&name, part), HostTensor { shape, data });
            }
        }
        Ok(PreparedModel { model, state })
    }

    fn hooks(
        &self,
        _model: &ModelConfig,
        _total_steps: usize,
        _saved: Option<&MethodState>,
    ) -> Result<Box<dyn TrainingHooks>, MethodError> {
        Ok(Box::new(Regularisers {
            beta: self.beta,
            gamma: self.gamma,
        }))
    }

    fn export_form(
        &self,
        model: &ModelConfig,
        adapters: BTreeMap<String, ModuleTensors>,
        state: &MethodState,
    ) -> Result<ExportForm, MethodError> {
        let r = self.rank;
        let mut pairs = BTreeMap::new();
        for (module, mut parts) in adapters {
            let (inp, out) =
                linear_shape(model, leaf_name(&module)).ok_or_else(|| MethodError::Export {
                    module: module.clone(),
                    reason: "it is not a linear layer of this model".into(),
                })?;
            let mut take = |part: &str, shape: &[usize]| {
                let t =
                    parts
                        .remove(&format!("kasa.{part}"))
                        .ok_or_else(|| MethodError::Export {
                            module: module.clone(),
                            reason: format!("its KaSA tensor `{part}` is not in the checkpoint"),
                        })?;
                if t.shape != shape {
                    return Err(MethodError::Export {
                        module: module.clone(),
                        reason: format!(
                            "its KaSA tensor `{part}` has shape {:?}, not {shape:?} (was method.rank changed?)",
                            t.shape
                        ),
                    });
                }
                Ok(t.data)
            };
            let (a, e, b) = (
                take("a", &[inp, r])?,
                take("e", &[r])?,
                take("b", &[r, out])?,
            );
            if let Some(extra) = parts.keys().next() {
                return Err(MethodError::Export {
                    reason: format!("adapter.{extra} is not a KaSA tensor"),
                    module,
                });
            }
            let get = |part| {
                let key = dropped_key(&module, part);
                state.get(&key).ok_or_else(|| MethodError::State {
                    key,
                    reason: "the dropped singular components are missing from the checkpoint"
                        .into(),
                })
            };
            let (da, db) = (get('a')?, get('b')?);
            if da.shape != [inp, r] || db.shape != [r, out] {
                return Err(MethodError::Export {
                    module,
                    reason: "the dropped components do not fit the trained update".into(),
                });
            }
            pairs.insert(
                module,
                on_original_base(self.scale(), (&a, &e, &b), (&da.data, &db.data), inp, out),
            );
        }
        let mut targets: Vec<String> = pairs.keys().map(|m| leaf_name(m).to_string()).collect();
        targets.sort_unstable();
        targets.dedup();
        let lora = LoraConfig {
            rank: 2 * r,
            // A scale of one: alpha / r and Δσ are in the pairs.
            alpha: (2 * r) as f64,
            dropout: self.dropout,
            target_modules: targets,
            ..LoraConfig::default()
        };
        Ok(ExportForm {
            lora: Some((lora, pairs)),
            notes: vec![format!(
                "trained with KaSA at rank {r} on the base without its {r} smallest singular \
                 components; saved as a plain LoRA of rank {} (the trained update, its scale and \
                 singular values folded in, and the dropped components negated) that applies to \
                 the original base",
                2 * r
            )],
            ..ExportForm::default()
        })
    }
}

/// The rank-2r LoRA pair, in PEFT's layouts with a scale of one, that takes
/// the original base to the trained model: A (2r, in) stacks `diag(Δσ)·aᵀ`
/// on the dropped part's `aᵀ`, B (out, 2r) puts `s·bᵀ` beside the negated
/// dropped `bᵀ`.
fn on_original_base(
    scale: f64,
    (a, e, b): (&[f32], &[f32], &[f32]),
    (da, db): (&[f32], &[f32]),
    inp: usize,
    out: usize,
) -> LoraPair {
    let r = e.len();
    let peft_a: Vec<f32> = (0..r)
        .flat_map(|k| (0..inp).map(move |i| a[i * r + k] * e[k]))
        .chain((0..r).flat_map(|k| (0..inp).map(move |i| da[i * r + k])))
        .collect();
    let peft_b: Vec<f32> = (0..out)
        .flat_map(|o| {
            (0..r)
                .map(move |k| (f64::from(b[k * out + o]) * scale) as f32)
                .chain((0..r).map(move |k| -db[k * out + o]))
        })
        .collect();
    LoraPair {
        a: HostTensor {
            shape: vec![2 * r, inp],
            data: peft_a,
        },
        b: HostTensor {
            shape: vec![out, 2 * r],
            data: peft_b,
        },
        magnitude: None,
    }
}

/// KaSA's two loss terms.
struct Regularisers {
    beta: f64,
    gamma: f64,
}

impl TrainingHooks for Regularisers {
    /// `sv_reg`, the mean over the adapted modules of `‖Δσ‖²`, and
    /// `orth_reg`, their mean of `‖ΔUᵀΔU − I‖_F + ‖ΔVᵀΔV − I‖_F`.
    fn loss_terms(&self, model: &CausalLm) -> Vec<LossTerm> {
        let adapters: Vec<&TripletAdapter> = model
            .linears()
            .into_iter()
            .filter_map(|(_, layer)| match &layer.adapter {
                Some(Adapter::Kasa(ad)) => Some(ad),
                _ => None,
            })
            .collect();
        let count = adapters.len() as f64;
        let mut terms = Vec::new();
        let mut term = |name, weight: f64, total: Option<Tensor<1>>| {
            if let (true, Some(total)) = (weight > 0.0, total) {
                let mean = total / count;
                let value = mean.clone().into_scalar::<f32>() as f64;
                terms.push(LossTerm {
                    name,
                    value,
                    weighted: mean * weight,
                });
            }
        };
        term(
            "sv_reg",
            self.beta,
            sum(adapters.iter().map(|ad| ad.e.val().powi_scalar(2).sum())),
        );
        term(
            "orth_reg",
            self.gamma,
            sum(adapters.iter().map(|ad| {
                let [v, u] = ad.orthogonality();
                u + v
            })),
        );
        terms
    }
}
