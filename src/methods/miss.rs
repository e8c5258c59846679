//! MiSS (Kang & Yin 2024, "MiSS: Balancing LoRA Performance and
//! Efficiency with Simple Shard Sharing", first published as "Bone:
//! Block-Affine Adaptation of Large Language Models"), as PEFT's
//! `MissConfig` computes it. One small trained block `D` per layer is
//! shared by all of the input's shards:
//!
//! - `balance` (PEFT's default): `D` is [r, out]; the input is cut into
//!   shards of r features (the last one zero-padded) that are summed, so
//!   `y = x·W + (Σ shards of x)·D`: a rank-r update whose "A" is fixed.
//! - `mini`: `D` is [r, mini_r], repeated across the outputs, for fewer
//!   parameters.
//! - `bat` (Bone's weight-guided form): `D` is one r×r block per r outputs
//!   and the update of every r×r block `W_bc` of the weight is `W_bc·D_b +
//!   D_b`, so the update depends on the base weight itself.
//!
//! `D` starts at zero in every mode, so training starts from the base.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::{Tensor, module::linear};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::catalog::{FieldKind, FieldSpec, MethodSpec, dropout_field, target_modules_field};
use super::exported::{ExportForm, GgufRefusal, LoraPair, ModuleTensors, PeftAdapter, WeightDelta};
use super::{
    LINEAR_MODULES, LoraConfig, MemoryTerms, Method, MethodConfig, MethodError, MethodState,
    PrepareContext, PreparedModel, dropout_input, is_target, target_shapes,
};
use crate::model::{CausalLm, Linear, ModelConfig};
use crate::train::params::HostTensor;

/// The `[method]` keys of `kind = "miss"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissConfig {
    /// Shard width r (PEFT's `r`): the rank of the update along the input.
    pub rank: usize,
    /// How the shared block is shaped and applied.
    pub mode: MissMode,
    /// With `mode = "mini"`: the block's width along the outputs, which it
    /// is repeated to fill.
    pub mini_r: usize,
    /// Dropout on the input during training (not in `bat` mode).
    pub dropout: f64,
    /// Linear modules to adapt, by HF name.
    pub target_modules: Vec<String>,
}

/// The three forms of MiSS (PEFT's `init_weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissMode {
    /// One [r, out] block for the summed input shards (PEFT's `True`).
    #[default]
    Balance,
    /// Bone: an r×r block per r outputs, applied to the weight's own blocks.
    Bat,
    /// A [r, mini_r] block repeated across the outputs.
    Mini,
}

impl MissMode {
    /// The stable name, as in the `[method]` table.
    pub fn name(self) -> &'static str {
        match self {
            MissMode::Balance => "balance",
            MissMode::Bat => "bat",
            MissMode::Mini => "mini",
        }
    }
}

impl Default for MissConfig {
    fn default() -> Self {
        Self {
            // About LoRA r16's budget on the supported models (r·out per
            // layer against 16·(in + out)); PEFT's own default is 64.
            rank: 32,
            mode: MissMode::Balance,
            mini_r: 1,
            dropout: 0.0,
            target_modules: LINEAR_MODULES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

const PAPER: &str = "Kang & Yin 2024, MiSS: Balancing LoRA Performance and Efficiency with Simple Shard Sharing (first published as Bone: Block-Affine Adaptation)";

fn fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::new(
            "rank",
            "Shard width",
            "shard width r: the input is cut into shards of r features that share one trained block; at most every target layer's input width (bat: divides its input and output widths)",
            FieldKind::Int { min: 1, max: None },
        ),
        FieldSpec::new(
            "mode",
            "Mode",
            "balance (one [r, out] block for the summed shards), bat (Bone: an r x r block per r outputs applied to the weight's own blocks) or mini (a [r, mini_r] block repeated across the outputs)",
            FieldKind::Choice {
                options: vec![
                    MissMode::Balance.name(),
                    MissMode::Bat.name(),
                    MissMode::Mini.name(),
                ],
            },
        ),
        FieldSpec::new(
            "mini_r",
            "Mini width",
            "with mode = mini: the block's width along the outputs; divides every target layer's output width",
            FieldKind::Int { min: 1, max: None },
        ),
        dropout_field("dropout on the input, training only (not with bat)"),
        target_modules_field("the linear layers that get a block, by HF name"),
    ]
}

/// The MiSS card, selecting `config`.
pub fn spec(config: MissConfig) -> MethodSpec {
    MethodSpec::new(
        "miss",
        "MiSS",
        Some(PAPER),
        "A LoRA alternative with one shared block per layer: as many parameters as LoRA, usually a little faster to converge; exports to PEFT and llama.cpp.",
        MethodConfig::Miss(config),
        fields(),
    )
}

/// The Bone card: MiSS in its weight-guided `bat` mode.
pub fn bone_spec() -> MethodSpec {
    MethodSpec::new(
        "bone",
        "Bone",
        Some(PAPER),
        "MiSS's weight-guided form: each block of the weight updates through itself, which can learn more than a low-rank update at the same size; slower, and no llama.cpp adapter (export merged).",
        MethodConfig::Miss(MissConfig {
            rank: 64,
            mode: MissMode::Bat,
            ..MissConfig::default()
        }),
        fields(),
    )
}

impl MissConfig {
    /// The trained block's shape for a layer with `out` features: [r, out],
    /// [r, mini_r], or for bat the (out/r, r, r) blocks stacked as [out, r].
    fn block_shape(&self, out: usize) -> [usize; 2] {
        match self.mode {
            MissMode::Balance => [self.rank, out],
            MissMode::Mini => [self.rank, self.mini_r],
            MissMode::Bat => [out, self.rank],
        }
    }

    fn invalid(key: &'static str, value: impl ToString, reason: &'static str) -> MethodError {
        MethodError::Invalid {
            key,
            value: value.to_string(),
            reason,
        }
    }
}

impl Method for MissConfig {
    fn name(&self) -> &'static str {
        match self.mode {
            MissMode::Bat => "bone",
            _ => "miss",
        }
    }

    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError> {
        if self.rank == 0 {
            return Err(Self::invalid(
                "rank",
                0,
                "the shard width must be at least 1 (32 or 64 are common)",
            ));
        }
        super::check_dropout(self.dropout)?;
        if self.mode == MissMode::Bat && self.dropout > 0.0 {
            return Err(Self::invalid(
                "dropout",
                self.dropout,
                "the bat mode applies no dropout (as in PEFT); set it to 0",
            ));
        }
        if self.mini_r == 0 {
            return Err(Self::invalid("mini_r", 0, "it must be at least 1"));
        }
        if self.mode != MissMode::Mini && self.mini_r != 1 {
            return Err(Self::invalid(
                "mini_r",
                self.mini_r,
                "it applies to mode = \"mini\" only; set it to 1 or choose mini",
            ));
        }
        let shapes = target_shapes(model, &self.target_modules)?;
        // What bat's width and mini's width must divide: every input and
        // output width, or every output width.
        let all = shapes.iter().fold(0, |g, &(_, i, o)| gcd(gcd(g, i), o));
        let outs = shapes.iter().fold(0, |g, &(_, _, o)| gcd(g, o));
        for &(name, inp, out) in &shapes {
            if self.rank > inp {
                return Err(MethodError::RankTooLarge {
                    rank: self.rank,
                    module: name.to_string(),
                    inp,
                    out,
                    max: inp,
                });
            }
            let misfit = |key, value, reason, within| MethodError::Misfit {
                key,
                value,
                module: name.to_string(),
                inp,
                out,
                reason,
                fits: largest_divisor(within, value),
            };
            if self.mode == MissMode::Bat && (inp % self.rank != 0 || out % self.rank != 0) {
                return Err(misfit(
                    "rank",
                    self.rank,
                    "with mode = \"bat\" the shard width must divide the layer's input and output widths",
                    all,
                ));
            }
            if self.mode == MissMode::Mini && out % self.mini_r != 0 {
                return Err(misfit(
                    "mini_r",
                    self.mini_r,
                    "it must divide the layer's output width",
                    outs,
                ));
            }
        }
        Ok(())
    }

    fn trainable_params(&self, model: &ModelConfig) -> u64 {
        super::over_layers(model, &self.target_modules, |_, out| {
            self.block_shape(out).iter().product()
        })
    }

    fn memory_terms(&self, model: &ModelConfig) -> MemoryTerms {
        let mut layer_values = 0;
        let mut layer_fixed = 0;
        for m in &self.target_modules {
            let Some((inp, out)) = super::linear_shape(model, m) else {
                continue;
            };
            match self.mode {
                // The shard sums, and with dropout the dropped input and
                // its mask (as LoRA's).
                MissMode::Balance | MissMode::Mini => {
                    layer_values += self.rank as u64;
                    if self.dropout > 0.0 {
                        layer_values += 3 * inp as u64 / 2;
                    }
                }
                // The weight-shaped update, and the frozen weight in the
                // block layout its gradient reads.
                MissMode::Bat => layer_fixed += 2 * (inp * out) as u64,
            }
        }
        MemoryTerms {
            layer_fixed,
            ..MemoryTerms::adapter(self.trainable_params(model), layer_values)
        }
    }

    fn quantized_base_refusal(&self) -> Option<&'static str> {
        (self.mode == MissMode::Bat).then_some(
            "Bone (MiSS's bat mode) multiplies the base weight itself, so a block trained on \
             quantized weights would change when merged into the unquantized base: use \
             model.quantize = \"none\" (model.dtype = \"bf16\" to save memory), or MiSS's \
             balance mode on the quantized base",
        )
    }

    fn prepare(
        &self,
        model: CausalLm,
        _ctx: &mut PrepareContext<'_>,
    ) -> Result<PreparedModel, MethodError> {
        let mut model = model.no_grad();
        for (name, layer) in model.linears_mut() {
            if !is_target(&self.target_modules, &name) {
                continue;
            }
            let (_, out) = layer.dims();
            let block = Tensor::<2>::zeros(self.block_shape(out), &layer.device());
            layer.adapter = Some(super::Adapter::Miss(MissAdapter {
                block: Param::from_tensor(block),
                rank: self.rank,
                mode: self.mode,
                dropout: self.dropout,
            }));
        }
        Ok(PreparedModel {
            model,
            state: MethodState::new(),
        })
    }

    fn export_form(
        &self,
        model: &ModelConfig,
        adapters: BTreeMap<String, ModuleTensors>,
        _state: &MethodState,
    ) -> Result<ExportForm, MethodError> {
        let mut tensors = BTreeMap::new();
        let mut pairs = BTreeMap::new();
        let mut dense: BTreeMap<String, Box<dyn WeightDelta>> = BTreeMap::new();
        for (module, mut parts) in adapters {
            let Some(block) = parts.remove("miss.block") else {
                return Err(MethodError::Export {
                    module,
                    reason: "its MiSS block is not in the checkpoint".into(),
                });
            };
            if let Some(extra) = parts.keys().next() {
                return Err(MethodError::Export {
                    reason: format!("adapter.{extra} is not a MiSS tensor"),
                    module,
                });
            }
            let [rows, cols] = block.shape[..] else {
                return Err(MethodError::Export {
                    module,
                    reason: format!("its block has shape {:?}", block.shape),
                });
            };
            let r = self.rank;
            let peft_shape = match self.mode {
                MissMode::Bat => vec![rows / r, r, cols],
                _ => vec![rows, cols],
            };
            tensors.insert(
                format!("{module}.miss_block"),
                HostTensor {
                    shape: peft_shape,
                    data: block.data.clone(),
                },
            );
            match self.mode {
                MissMode::Bat => {
                    dense.insert(module, Box::new(BatDelta { block, rank: r }));
                }
                _ => {
                    let (inp, out) = super::linear_shape(model, super::leaf_name(&module))
                        .ok_or_else(|| MethodError::Export {
                            module: module.clone(),
                            reason: "it is not a linear layer of this model".into(),
                        })?;
                    pairs.insert(module, self.as_lora(&block, inp, out));
                }
            }
        }
        let targets = exported_targets(tensors.keys());
        let init_weights = match self.mode {
            MissMode::Balance => json!(true),
            mode => json!(mode.name()),
        };
        let peft = PeftAdapter {
            config: json!({
                "peft_type": "MISS",
                "r": self.rank,
                "mini_r": self.mini_r,
                "miss_dropout": self.dropout,
                "init_weights": init_weights,
                "target_modules": targets,
                "exclude_modules": null,
                "bias": "none",
                "modules_to_save": null,
                "layers_to_transform": null,
                "layers_pattern": null,
            }),
            tensors,
            title: if self.mode == MissMode::Bat {
                "Bone (MiSS bat) adapter".into()
            } else {
                "MiSS adapter".into()
            },
            summary: format!(
                "shard width {}, mode {}{}, dropout {}; target modules: {}",
                self.rank,
                self.mode.name(),
                if self.mode == MissMode::Mini {
                    format!(" (mini_r {})", self.mini_r)
                } else {
                    String::new()
                },
                self.dropout,
                targets.join(", ")
            ),
        };
        let mut form = ExportForm {
            peft: Some(peft),
            dense,
            ..ExportForm::default()
        };
        if self.mode == MissMode::Bat {
            form.gguf_refusal = Some(GgufRefusal {
                method: "Bone (MiSS's bat mode)".into(),
                what: "an update built from the base weight itself".into(),
            });
        } else {
            form.notes.push(format!(
                "the GGUF adapter and the merged model hold MiSS's update as the equal rank-{} \
                 LoRA (A sums the input's shards, B is the trained block)",
                self.rank
            ));
            let lora = LoraConfig {
                rank: self.rank,
                // A scale of one: llama.cpp computes alpha / r.
                alpha: self.rank as f64,
                dropout: self.dropout,
                target_modules: targets,
                ..LoraConfig::default()
            };
            form.lora = Some((lora, pairs));
        }
        Ok(form)
    }
}

impl MissConfig {
    /// The LoRA pair (PEFT layout) equal to a balance or mini block on a
    /// layer of `inp` inputs and `out` outputs: A (r, in) has a one where
    /// input i falls at shard position i mod r, B (out, r) is the block's
    /// transpose, repeated across the outputs for mini.
    fn as_lora(&self, block: &HostTensor, inp: usize, out: usize) -> LoraPair {
        let r = self.rank;
        let width = block.shape[1];
        let mut a = vec![0f32; r * inp];
        for i in 0..inp {
            a[(i % r) * inp + i] = 1.0;
        }
        let b = (0..out)
            .flat_map(|o| (0..r).map(move |k| block.data[k * width + o % width]))
            .collect();
        LoraPair {
            a: HostTensor {
                shape: vec![r, inp],
                data: a,
            },
            b: HostTensor {
                shape: vec![out, r],
                data: b,
            },
            magnitude: None,
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The largest divisor of `n` that is at most `limit` (at least 1).
fn largest_divisor(n: usize, limit: usize) -> usize {
    (1..=limit.min(n).max(1))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

/// The leaf names of the modules behind `tensors` (`model.layers.0.mlp.
/// up_proj.miss_block`), sorted.
fn exported_targets<'a>(tensors: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut targets: Vec<String> = tensors
        .filter_map(|t| t.rsplit('.').nth(1).map(str::to_string))
        .collect();
    targets.sort_unstable();
    targets.dedup();
    targets
}

/// Bone's update of one weight: every r×r block `W_bc` (rows b, columns
/// c of the HF (out, in) layout) gains `W_bc·D_b + D_b`.
#[derive(Debug)]
struct BatDelta {
    /// The (out/r, r, r) blocks stacked as [out, r].
    block: HostTensor,
    rank: usize,
}

impl WeightDelta for BatDelta {
    fn apply(&self, w: &mut [f32], _out: usize, inp: usize) {
        use rayon::prelude::*;
        let r = self.rank;
        let d = &self.block.data;
        // Rows b·r + p; each row's new values depend on that row only.
        w.par_chunks_mut(inp).enumerate().for_each(|(row, values)| {
            let (b, p) = (row / r, row % r);
            let own = &d[(b * r + p) * r..(b * r + p + 1) * r];
            let old: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
            for (c, shard) in values.chunks_mut(r).enumerate() {
                for (q, v) in shard.iter_mut().enumerate() {
                    let mixed: f64 = (0..r)
                        .map(|k| old[c * r + k] * f64::from(d[(b * r + k) * r + q]))
                        .sum();
                    *v = (old[c * r + q] + mixed + f64::from(own[q])) as f32;
                }
            }
        });
    }
}

/// The trainable block of one adapted layer.
#[derive(Module, Debug)]
pub struct MissAdapter {
    /// [r, out] (balance), [r, mini_r] (mini), or bat's (out/r, r, r)
    /// blocks stacked as [out, r]: PEFT's `miss_block` in the same order.
    pub block: Param<Tensor<2>>,
    pub rank: usize,
    #[module(skip)]
    pub mode: MissMode,
    pub dropout: f64,
}

impl MissAdapter {
    /// `base` plus the update of the block for input `x`; `dropout` is off
    /// in evaluation and generation.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<D>,
        base: Tensor<D>,
        layer: &Linear,
        dropout: bool,
    ) -> Tensor<D> {
        if self.mode == MissMode::Bat {
            let delta = self.bat_delta(layer.frozen_weight());
            return base + linear(x, delta, None);
        }
        let x = if dropout && self.dropout > 0.0 {
            dropout_input(x, self.dropout)
        } else {
            x
        };
        let dims = x.dims();
        let inp = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let r = self.rank;
        let pad = (r - inp % r) % r;
        let mut flat = x.reshape([rows, inp]);
        if pad > 0 {
            let zeros = Tensor::<2>::zeros([rows, pad], &flat.device());
            flat = Tensor::cat(vec![flat, zeros], 1);
        }
        let shards = flat
            .reshape([rows, (inp + pad) / r, r])
            .sum_dim(1)
            .reshape([rows, r]);
        let out = base.dims()[D - 1];
        let block = match self.mode {
            MissMode::Mini => {
                let width = self.block.dims()[1];
                self.block.val().repeat_dim(1, out / width)
            }
            _ => self.block.val(),
        };
        base + shards.matmul(block).reshape(base_shape(&dims, out))
    }

    /// Bone's update of the frozen weight `w` [in, out], in the same
    /// layout: the HF (out, in) weight's r×r blocks `W_bc` become `W_bc·D_b
    /// + D_b`.
    fn bat_delta(&self, w: Tensor<2>) -> Tensor<2> {
        let [inp, out] = w.dims();
        let r = self.rank;
        let (ob, ib) = (out / r, inp / r);
        let d = self.block.val().reshape([ob, 1, r, r]);
        // (b, p, c, k) -> (b, c, p, k): the weight's blocks, by output block.
        let blocks = w.transpose().reshape([ob, r, ib, r]).swap_dims(1, 2);
        let delta = blocks.matmul(d.clone().expand([ob, ib, r, r])) + d;
        delta.swap_dims(1, 2).reshape([out, inp]).transpose()
    }
}

/// `dims` with the last one replaced by `out`.
fn base_shape<const D: usize>(dims: &[usize; D], out: usize) -> [usize; D] {
    let mut shape = *dims;
    shape[D - 1] = out;
    shape
}
