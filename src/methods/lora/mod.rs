//! LoRA (Hu et al. 2021) and rsLoRA (Kalajdzievski 2023): a frozen layer
//! `W` gains a trainable low-rank update, `y = x·W + s · dropout(x)·A·B`,
//! with `s = alpha / r` (or `alpha / sqrt(r)` with rsLoRA). Initialised as
//! PEFT does: A uniform in ±1/sqrt(in) (kaiming-uniform with a = sqrt 5),
//! B zero, so training starts from the base model exactly.
//!
//! DoRA (Liu et al. 2024) is LoRA with `use_dora`, as in PEFT: the adapted
//! weight is split into a trained magnitude per output feature `m` and the
//! direction `W + s·A·B` normalised per output column, `W' = m ⊙ (W +
//! s·A·B) / ‖W + s·A·B‖`; `m` starts at the base's column norms, so
//! training again starts from the base exactly. The norm is treated as a
//! constant in backward (the paper's section 4.3, as PEFT does).
//!
//! PiSSA (Meng et al. 2024) is LoRA with `init = "pissa"`, PEFT's
//! `init_lora_weights="pissa"` (or `"pissa_niter_N"` with `pissa_niter`):
//! A and B start from the r leading singular triplets of W, `A·B =
//! U_r·S_r·V_rᵀ / s`, and the frozen base becomes the residual `W − s·A·B`,
//! so the model starts unchanged but trains the principal directions. The
//! initial pair is the method's state: saved with every checkpoint, it
//! rebuilds the residual on resume and turns the trained adapter into one
//! on the original base at export (`A·B − A₀·B₀`, a LoRA of rank 2r).

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData, module::linear};
use rand::RngExt;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

mod export;

use super::catalog::{FieldKind, FieldSpec, MethodSpec, dropout_field, target_modules_field};
use super::corda::CordaMode;
use super::{
    LINEAR_MODULES, MemoryTerms, Method, MethodConfig, MethodError, MethodState, PrepareContext,
    PreparedModel, linear_shape,
};
use crate::model::{CausalLm, Linear, ModelConfig};
use crate::train::params::HostTensor;

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
    /// Weight-decomposed LoRA (DoRA): also train a magnitude per output
    /// feature.
    pub use_dora: bool,
    /// How A and B start.
    pub init: LoraInit,
    /// With `init = "pissa"`: power iterations of a randomized SVD (PEFT's
    /// `pissa_niter_N`); 0 computes the exact SVD.
    pub pissa_niter: usize,
    /// With `init = "corda"`: which components train.
    pub corda_method: CordaMode,
    /// With `init = "corda"`: calibration rows for the input covariances.
    pub corda_samples: usize,
    /// With `init = "corda"`: the file the calibration rows come from (the
    /// knowledge to keep, for KPM); none = the run's training data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corda_data: Option<std::path::PathBuf>,
}

/// How a LoRA adapter starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraInit {
    /// A random (PEFT's kaiming-uniform), B zero.
    #[default]
    Default,
    /// PiSSA: A and B from the leading singular triplets of W, the base
    /// replaced by the residual.
    Pissa,
    /// CorDA: A and B from the decomposition of W oriented by its inputs'
    /// covariance, the base replaced by the residual.
    Corda,
}

impl LoraInit {
    /// The stable name, as in the `[method]` table.
    pub fn name(self) -> &'static str {
        match self {
            LoraInit::Default => "default",
            LoraInit::Pissa => "pissa",
            LoraInit::Corda => "corda",
        }
    }

    /// Whether A and B start from a decomposition of W, the base becoming
    /// the residual (PiSSA, CorDA): the initial pair is then the method's
    /// state, and exports turn the adapter into one on the original base.
    pub fn decomposes(self) -> bool {
        matches!(self, LoraInit::Pissa | LoraInit::Corda)
    }
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            target_modules: LINEAR_MODULES.iter().map(|s| s.to_string()).collect(),
            use_rslora: false,
            use_dora: false,
            init: LoraInit::Default,
            pissa_niter: 0,
            corda_method: CordaMode::Ipm,
            corda_samples: 256,
            corda_data: None,
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

    /// The LoRA an export writes for a run of this config: the same, or
    /// for PiSSA the rank-2r adapter `[A, A₀]·[B; −B₀]` on the original
    /// base with the same scale (PEFT's conversion of a PiSSA adapter).
    pub fn exported(&self) -> LoraConfig {
        if !self.init.decomposes() {
            return self.clone();
        }
        LoraConfig {
            rank: 2 * self.rank,
            alpha: if self.use_rslora {
                self.alpha * 2f64.sqrt()
            } else {
                2.0 * self.alpha
            },
            init: LoraInit::Default,
            pissa_niter: 0,
            corda_method: CordaMode::Ipm,
            corda_samples: LoraConfig::default().corda_samples,
            corda_data: None,
            ..self.clone()
        }
    }

    fn targets(&self, name: &str) -> bool {
        super::is_target(&self.target_modules, name)
    }
}

const LORA_PAPER: &str = "Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models";

/// The LoRA fields, shared by the LoRA, rsLoRA and DoRA cards.
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
        dropout_field("dropout on the adapter input, training only"),
        target_modules_field("the linear layers that get an adapter, by HF name"),
        FieldSpec::new(
            "use_rslora",
            "Rank-stabilised scaling",
            "rank-stabilised scaling alpha/sqrt(r) (rsLoRA)",
            FieldKind::Bool,
        ),
        FieldSpec::new(
            "use_dora",
            "Weight-decomposed (DoRA)",
            "also train a magnitude per output feature (DoRA)",
            FieldKind::Bool,
        ),
        FieldSpec::new(
            "init",
            "Initialisation",
            "how A and B start: default (A random, B zero), pissa (the base's leading singular directions, PiSSA) or corda (directions oriented by the inputs' covariance, CorDA)",
            FieldKind::Choice {
                options: vec![
                    LoraInit::Default.name(),
                    LoraInit::Pissa.name(),
                    LoraInit::Corda.name(),
                ],
            },
        ),
        FieldSpec::new(
            "pissa_niter",
            "PiSSA power iterations",
            "with init = pissa: iterations of a fast randomized SVD; 0 = the exact SVD",
            FieldKind::Int { min: 0, max: None },
        ),
        FieldSpec::new(
            "corda_method",
            "CorDA mode",
            "with init = corda: ipm trains the components the task's inputs use most (fastest learning), kpm the least used ones, keeping what a knowledge file exercises (less forgetting; needs corda_data)",
            FieldKind::Choice {
                options: vec![CordaMode::Ipm.name(), CordaMode::Kpm.name()],
            },
        ),
        FieldSpec::new(
            "corda_samples",
            "CorDA calibration rows",
            "with init = corda: rows run through the model to measure each layer's input covariance (a few hundred)",
            FieldKind::Int { min: 1, max: None },
        ),
        FieldSpec::new(
            "corda_data",
            "CorDA calibration file",
            "with init = corda: a dataset file the calibration rows come from (for kpm, the knowledge to keep); empty = the run's training data",
            FieldKind::File,
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

/// The PiSSA card: LoRA with `init = "pissa"`.
pub fn pissa_spec() -> MethodSpec {
    MethodSpec::new(
        "pissa",
        "PiSSA",
        Some(
            "Meng et al. 2024, PiSSA: Principal Singular Values and Singular Vectors Adaptation of Large Language Models",
        ),
        "LoRA that starts on the base's principal directions: usually converges faster and ends lower than LoRA at the same rank; a short SVD per layer before training.",
        MethodConfig::Lora(LoraConfig {
            init: LoraInit::Pissa,
            ..LoraConfig::default()
        }),
        fields(),
    )
}

/// The CorDA card: LoRA with `init = "corda"`.
pub fn corda_spec() -> MethodSpec {
    MethodSpec::new(
        "corda",
        "CorDA",
        Some(
            "Yang et al. 2024, CorDA: Context-Oriented Decomposition Adaptation of Large Language Models for Task-Aware Parameter-Efficient Fine-tuning",
        ),
        "LoRA that starts from the base's directions as your data uses them: ipm learns fastest, kpm keeps what a knowledge file exercises (less forgetting); a covariance pass over a few hundred rows before training.",
        MethodConfig::Lora(LoraConfig {
            init: LoraInit::Corda,
            ..LoraConfig::default()
        }),
        fields(),
    )
}

/// The DoRA card: LoRA with `use_dora` on.
pub fn dora_spec() -> MethodSpec {
    MethodSpec::new(
        "dora",
        "DoRA",
        Some("Liu et al. 2024, DoRA: Weight-Decomposed Low-Rank Adaptation"),
        "LoRA that also learns each output feature's magnitude: often closer to full fine-tuning at the same rank, a little slower; no llama.cpp adapter (export merged).",
        MethodConfig::Lora(LoraConfig {
            use_dora: true,
            ..LoraConfig::default()
        }),
        fields(),
    )
}

impl Method for LoraConfig {
    fn export_form(
        &self,
        _model: &ModelConfig,
        adapters: std::collections::BTreeMap<String, super::ModuleTensors>,
        state: &MethodState,
    ) -> Result<super::ExportForm, MethodError> {
        self.lora_form(adapters, state)
    }

    fn calibration(&self) -> Option<super::CalibrationRequest> {
        (self.init == LoraInit::Corda).then(|| super::CalibrationRequest {
            rows: self.corda_samples,
            data: self.corda_data.clone(),
        })
    }

    fn name(&self) -> &'static str {
        match (self.init, self.use_dora) {
            (LoraInit::Pissa, _) => "pissa",
            (LoraInit::Corda, _) => "corda",
            (_, true) => "dora",
            _ => "lora",
        }
    }

    fn memory_terms(&self, model: &ModelConfig) -> MemoryTerms {
        let mut layer_values = 0;
        for m in &self.target_modules {
            let Some((inp, out)) = linear_shape(model, m) else {
                continue;
            };
            // x·A, and with dropout the dropped input and its mask. Measured
            // (bench/memory.sh, SmolLM2 and the Qwen2.5-0.5B shape) the pair
            // costs 1.5 input widths, not 2: part of the masks is freed.
            layer_values += self.rank as u64;
            if self.dropout > 0.0 {
                layer_values += 3 * inp as u64 / 2;
            }
            // DoRA multiplies the base output and the update by the
            // magnitude's scale, so backward keeps both (two output widths).
            // Measured (bench/methods.sh, SmolLM2 8 x 128): DoRA's peak is
            // 1332 MiB above LoRA's; these terms add 1215 MiB.
            if self.use_dora {
                layer_values += 2 * out as u64;
            }
        }
        MemoryTerms::adapter(self.trainable_params(model), layer_values)
    }

    fn quantized_base_refusal(&self) -> Option<&'static str> {
        // QPiSSA decomposes the unquantized weights and quantizes only the
        // residual; decomposing the already quantized weights would quantize
        // twice (measured: logits further from the f32 model than the
        // quantized base itself).
        match self.init {
            LoraInit::Pissa => Some(
                "PiSSA on a quantized base (QPiSSA) is not supported yet: train PiSSA on an \
                 unquantized base (model.quantize = \"none\", model.dtype = \"bf16\" to save \
                 memory) or LoRA on the quantized one",
            ),
            LoraInit::Corda => Some(
                "CorDA decomposes the unquantized weights and is not supported on a quantized \
                 base yet: use model.quantize = \"none\" (model.dtype = \"bf16\" to save memory) \
                 or LoRA on the quantized one",
            ),
            LoraInit::Default => None,
        }
    }

    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError> {
        if self.rank == 0 {
            return Err(MethodError::Invalid {
                key: "rank",
                value: "0".into(),
                reason: "the rank must be at least 1 (8 or 16 are common)",
            });
        }
        super::check_alpha(self.alpha)?;
        super::check_dropout(self.dropout)?;
        if self.pissa_niter > 0 && self.init != LoraInit::Pissa {
            return Err(MethodError::Invalid {
                key: "pissa_niter",
                value: self.pissa_niter.to_string(),
                reason: "it applies to init = \"pissa\" only; set it to 0 or choose PiSSA",
            });
        }
        if self.use_dora && self.init.decomposes() {
            return Err(MethodError::Invalid {
                key: "use_dora",
                value: "true".into(),
                reason: "DoRA with init = \"pissa\" or \"corda\" is not supported; use one of the two",
            });
        }
        if self.init != LoraInit::Corda {
            let defaults = LoraConfig::default();
            if self.corda_method != defaults.corda_method
                || self.corda_samples != defaults.corda_samples
                || self.corda_data.is_some()
            {
                return Err(MethodError::Invalid {
                    key: "corda_method",
                    value: self.corda_method.name().into(),
                    reason: "the corda_* keys apply to init = \"corda\" only; remove them or choose CorDA",
                });
            }
        }
        if self.init == LoraInit::Corda {
            if self.corda_samples == 0 {
                return Err(MethodError::Invalid {
                    key: "corda_samples",
                    value: "0".into(),
                    reason: "CorDA needs calibration rows (a few hundred is usual)",
                });
            }
            if self.corda_method == CordaMode::Kpm && self.corda_data.is_none() {
                return Err(MethodError::Invalid {
                    key: "corda_method",
                    value: "kpm".into(),
                    reason: "the knowledge-preserved mode keeps what a knowledge file exercises: \
                             set method.corda_data to a dataset of what the model should not \
                             forget (or use ipm)",
                });
            }
        }
        for (name, inp, out) in super::target_shapes(model, &self.target_modules)? {
            let max = inp.min(out);
            if self.rank > max {
                return Err(MethodError::RankTooLarge {
                    rank: self.rank,
                    module: name.to_string(),
                    inp,
                    out,
                    max,
                });
            }
        }
        Ok(())
    }

    fn trainable_params(&self, model: &ModelConfig) -> u64 {
        super::over_layers(model, &self.target_modules, |i, o| {
            self.rank * (i + o) + if self.use_dora { o } else { 0 }
        })
    }

    fn prepare(
        &self,
        model: CausalLm,
        ctx: &mut PrepareContext<'_>,
    ) -> Result<PreparedModel, MethodError> {
        let mut model = model.no_grad();
        let scaling = self.scaling();
        let mut state = MethodState::new();
        // CorDA's covariances, over the whole model before any layer
        // changes (a resumed run rebuilds from its saved pairs instead).
        let covariances = if self.init == LoraInit::Corda && ctx.saved.is_none() {
            let progress = &mut *ctx.progress;
            let mut report = |done: usize, total: usize| {
                progress(
                    done - 1,
                    total,
                    "CorDA: covariance of the layers' inputs, row",
                )
            };
            super::corda::covariances(&model, ctx.calibration, &mut report).map_err(|e| {
                MethodError::Decomposition {
                    module: "the model".into(),
                    reason: e.to_string(),
                }
            })?
        } else {
            Default::default()
        };
        let targets: Vec<_> = model
            .linears_mut()
            .into_iter()
            .filter(|(name, _)| self.targets(name))
            .collect();
        let total = targets.len();
        for (done, (name, layer)) in targets.into_iter().enumerate() {
            let (inp, out) = layer.dims();
            let device = layer.device();
            let (a, b) = if self.init == LoraInit::Default {
                (
                    kaiming_a(inp, self.rank, ctx.rng),
                    vec![0f32; self.rank * out],
                )
            } else {
                let w = HostTensor::from_tensor(layer.frozen_weight()).data;
                let failed = |reason: String| MethodError::Decomposition {
                    module: name.clone(),
                    reason,
                };
                let (a, b) = match (ctx.saved, self.init) {
                    (Some(saved), _) => {
                        saved_pair(saved, &name, [inp, self.rank], [self.rank, out])?
                    }
                    (None, LoraInit::Corda) => {
                        (ctx.progress)(done, total, &format!("CorDA: decomposition of {name}"));
                        let cov = corda_covariance(&covariances, &name)
                            .ok_or_else(|| failed("no covariance was measured for it".into()))?;
                        super::corda::initial_pair(
                            &w,
                            inp,
                            out,
                            cov,
                            self.rank,
                            self.corda_method,
                            scaling,
                        )
                        .map_err(|e| failed(e.to_string()))?
                    }
                    (None, _) => {
                        (ctx.progress)(done, total, &format!("PiSSA: SVD of {name}"));
                        self.pissa_pair(&w, inp, out, ctx.rng)
                            .map_err(|e| failed(e.to_string()))?
                    }
                };
                let residual = residual(&w, &a, &b, self.rank, scaling);
                layer
                    .replace_frozen_weight(residual)
                    .map_err(|e| failed(e.to_string()))?;
                state.insert(
                    init_key(&name, 'a'),
                    HostTensor {
                        shape: vec![inp, self.rank],
                        data: a.clone(),
                    },
                );
                state.insert(
                    init_key(&name, 'b'),
                    HostTensor {
                        shape: vec![self.rank, out],
                        data: b.clone(),
                    },
                );
                (a, b)
            };
            let a = Tensor::<2>::from_data(TensorData::new(a, [inp, self.rank]), &device);
            let b = Tensor::<2>::from_data(TensorData::new(b, [self.rank, out]), &device);
            // With B zero, ‖W + s·A·B‖ is ‖W‖: the magnitude that leaves the
            // layer as it was.
            let magnitude = self
                .use_dora
                .then(|| Param::from_tensor(column_norms(layer.frozen_weight()).reshape([out])));
            layer.adapter = Some(super::Adapter::Lora(LoraAdapter {
                a: Param::from_tensor(a),
                b: Param::from_tensor(b),
                magnitude,
                scaling,
                dropout: self.dropout,
            }));
        }
        Ok(PreparedModel { model, state })
    }
}

impl LoraConfig {
    /// PiSSA's initial (A [in, r], B [r, out]) for the frozen weight `w`
    /// [in, out]: with `w = U·S·Vᵀ`, `A = U_r·sqrt(S_r/s)`, `B =
    /// sqrt(S_r/s)·V_rᵀ`, the transposes of PEFT's `lora_A`/`lora_B`.
    fn pissa_pair(
        &self,
        w: &[f32],
        inp: usize,
        out: usize,
        rng: &mut StdRng,
    ) -> Result<(Vec<f32>, Vec<f32>), super::svd::SvdError> {
        let r = self.rank;
        let lead = if self.pissa_niter == 0 {
            super::svd::leading(w, inp, out, r)?
        } else {
            super::svd::leading_randomized(w, inp, out, r, self.pissa_niter, rng)?
        };
        let root: Vec<f64> = lead.s.iter().map(|s| (s / self.scaling()).sqrt()).collect();
        let a = (0..inp * r)
            .map(|i| (lead.u[i] * root[i % r]) as f32)
            .collect();
        let b = (0..r * out)
            .map(|i| (root[i / out] * lead.vt[i]) as f32)
            .collect();
        Ok((a, b))
    }
}

/// The covariance of the input of `module` (`model.layers.3.mlp.up_proj`).
fn corda_covariance<'a>(
    covariances: &'a super::corda::Covariances,
    module: &str,
) -> Option<&'a [f32]> {
    let rest = module.strip_prefix("model.layers.")?;
    let (layer, _) = rest.split_once('.')?;
    let input = crate::model::LinearInput::of(super::leaf_name(module))?;
    covariances
        .get(&(layer.parse().ok()?, input))
        .map(Vec::as_slice)
}

/// The state key of PiSSA's or CorDA's initial A or B of `module`
/// (`model.layers.0.self_attn.q_proj`).
pub fn init_key(module: &str, part: char) -> String {
    format!("{module}.lora.init_{part}")
}

/// The initial pair of `module` from a checkpoint's method state.
fn saved_pair(
    saved: &MethodState,
    module: &str,
    a_shape: [usize; 2],
    b_shape: [usize; 2],
) -> Result<(Vec<f32>, Vec<f32>), MethodError> {
    let get = |part, shape| super::saved_matrix(saved, init_key(module, part), shape);
    Ok((get('a', a_shape)?, get('b', b_shape)?))
}

/// `w − s·A·B` (all row-major, w [in, out]), accumulated in f64.
pub fn residual(w: &[f32], a: &[f32], b: &[f32], r: usize, scaling: f64) -> Vec<f32> {
    let out = b.len() / r.max(1);
    let mut res = vec![0f32; w.len()];
    res.par_chunks_mut(out).enumerate().for_each(|(i, row)| {
        let ai = &a[i * r..(i + 1) * r];
        for (j, v) in row.iter_mut().enumerate() {
            let delta: f64 = (0..r).map(|k| ai[k] as f64 * b[k * out + j] as f64).sum();
            *v = (w[i * out + j] as f64 - scaling * delta) as f32;
        }
    });
    res
}

/// PEFT's LoRA A, kaiming-uniform with a = sqrt 5 (uniform in ±1/sqrt(in)),
/// as our [in, r]; drawn in PEFT's row order ([r, in]) so the same seed
/// means the same matrix.
pub(crate) fn kaiming_a(inp: usize, rank: usize, rng: &mut StdRng) -> Vec<f32> {
    let bound = 1.0 / (inp as f64).sqrt();
    let mut a_peft = vec![0f32; rank * inp];
    for v in &mut a_peft {
        *v = ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32;
    }
    transpose(&a_peft, rank, inp)
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

/// ‖w[:, o]‖ for each output column o of `w` [in, out], as [1, out].
fn column_norms(w: Tensor<2>) -> Tensor<2> {
    w.powi_scalar(2).sum_dim(0).sqrt()
}

/// The trainable pair of one adapted layer.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// [in, r] (the transpose of PEFT's `lora_A.weight`).
    pub a: Param<Tensor<2>>,
    /// [r, out] (the transpose of PEFT's `lora_B.weight`).
    pub b: Param<Tensor<2>>,
    /// DoRA's magnitude [out] (PEFT's `lora_magnitude_vector`); none for
    /// plain LoRA.
    pub magnitude: Option<Param<Tensor<1>>>,
    pub scaling: f64,
    pub dropout: f64,
}

impl LoraAdapter {
    /// `base + s · dropout(x)·A·B`, or DoRA's rescaled form of it;
    /// `dropout` is off in evaluation and generation.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<D>,
        base: Tensor<D>,
        layer: &Linear,
        dropout: bool,
    ) -> Tensor<D> {
        let dropped = self.dropout > 0.0 && dropout;
        let x = if dropped {
            super::dropout_input(x, self.dropout)
        } else {
            x
        };
        let low = linear(x.clone(), self.a.val(), None);
        let update = linear(low, self.b.val(), None) * self.scaling;
        let Some(magnitude) = &self.magnitude else {
            return base + update;
        };
        // DoRA, in PEFT's order of operations: base + (g - 1)·x·W + g·s·x·A·B
        // with g = m / ‖W + s·A·B‖ (a constant in backward), where x·W is
        // taken on the dropped-out input when dropout applies.
        let weight = layer.frozen_weight();
        let delta = self.a.val().detach().matmul(self.b.val().detach()) * self.scaling;
        let norms = column_norms(weight.clone() + delta).detach();
        let out = norms.dims()[1];
        let mut shape = [1usize; D];
        shape[D - 1] = out;
        let g = (magnitude.val().reshape([1, out]) / norms).reshape(shape);
        let plain = if dropped {
            linear(x, weight, None)
        } else {
            match layer.bias.as_ref() {
                Some(b) => base.clone() - crate::model::precision::widen(b.val()).reshape(shape),
                None => base.clone(),
            }
        };
        base + (g.clone() - 1.0) * plain + g * update
    }

    /// The rank r.
    pub fn rank(&self) -> usize {
        self.a.dims()[1]
    }
}
