//! HFT, half fine-tuning (Hui et al. 2024, "HFT: Half Fine-Tuning for
//! Large Language Models"): full-parameter updates on a seeded random half
//! of each decoder layer's parameters, the other half frozen so that it
//! keeps what the model knew. Frozen weights get neither gradients nor
//! optimizer state, so the optimizer holds moments for the trained half
//! only.
//!
//! The selection is made per category, as the paper partitions a layer:
//! the attention matrices (q, k, v, o), the feed-forward matrices (gate,
//! up, down) and the norms (input and post-attention, plus q_norm and
//! k_norm where the model has them). Of a category with `n` members over
//! `L` layers, `round(fraction · n · L)` train: every layer trains
//! `floor` of its share and a random set of layers one more, so with the
//! default half each layer trains two of its four attention matrices, one
//! of its two norms, and one or two of its three feed-forward matrices
//! (two in a random half of the layers). The embeddings, the final norm
//! and the output head stay frozen.
//!
//! The draw is a SplitMix64 stream of `seed` and `stage` (so a reference
//! implementation in any language reproduces it: make_fixtures.py holds
//! one); a later stage of a multi-stage tune (SFT, then preference tuning,
//! then a new task) sets `stage` to get a new half, as the paper redraws
//! per stage. The selection is the method's state, saved in every
//! checkpoint.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::catalog::{FieldKind, FieldSpec, MethodSpec};
use super::{
    MemoryTerms, Method, MethodConfig, MethodError, MethodState, PrepareContext, PreparedModel,
    linear_shape, saved_matrix,
};
use crate::model::{CausalLm, ModelConfig};
use crate::train::params::HostTensor;

/// The `[method]` keys of `kind = "hft"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HftConfig {
    /// Share of each category's parameter groups that trains (the paper's
    /// half, 0.5).
    pub fraction: f64,
    /// Seed of the draw (separate from `train.seed`, so a run can change
    /// its data order and keep its half).
    pub seed: u64,
    /// The stage of a multi-stage tune: each stage draws a new half.
    pub stage: u64,
}

impl Default for HftConfig {
    fn default() -> Self {
        Self {
            fraction: 0.5,
            seed: 0,
            stage: 0,
        }
    }
}

const PAPER: &str = "Hui et al. 2024, HFT: Half Fine-Tuning for Large Language Models";

/// The key of the selection in the method state: [layers, MODULES.len()],
/// 1 where the module trains.
pub const STATE_KEY: &str = "hft.trained";

/// Every per-layer module HFT may train, in the state's column order.
pub const MODULES: [&str; 11] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "input_layernorm",
    "post_attention_layernorm",
    "q_norm",
    "k_norm",
];

/// The paper's categories of a decoder layer's parameters.
const CATEGORIES: [&[&str]; 3] = [
    &["q_proj", "k_proj", "v_proj", "o_proj"],
    &["gate_proj", "up_proj", "down_proj"],
    &[
        "input_layernorm",
        "post_attention_layernorm",
        "q_norm",
        "k_norm",
    ],
];

/// The HFT card, selecting `config`.
pub fn spec(config: HftConfig) -> MethodSpec {
    MethodSpec::new(
        "hft",
        "HFT (half fine-tuning)",
        Some(PAPER),
        "Full updates on a random half of each layer's matrices and norms, the other half frozen: close to full fine-tuning on the task with far less forgetting, and a fresh half for each stage of a multi-stage tune.",
        MethodConfig::Hft(config),
        vec![
            FieldSpec::new(
                "fraction",
                "Trained share",
                "share of each layer's attention matrices, feed-forward matrices and norms that trains (the paper's half: 0.5)",
                FieldKind::Float {
                    min: 0.0,
                    min_open: true,
                    max: Some(1.0),
                    max_open: false,
                },
            ),
            FieldSpec::new(
                "seed",
                "Selection seed",
                "seed of the random choice of what trains (independent of train.seed)",
                FieldKind::Int { min: 0, max: None },
            ),
            FieldSpec::new(
                "stage",
                "Stage",
                "the stage of a multi-stage tune (0 for the first): each stage trains a new random half",
                FieldKind::Int { min: 0, max: None },
            ),
        ],
    )
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny generator whose stream
/// is easy to reproduce outside Rust, which the selection's reference
/// implementation needs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `items` in a random order (Fisher-Yates from the back).
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

impl HftConfig {
    /// The modules each decoder layer of `model` trains.
    pub fn selection(&self, model: &ModelConfig) -> Vec<BTreeSet<&'static str>> {
        self.draw(model.num_layers, model.qk_norm)
    }

    /// The modules each of `layers` decoder layers trains (with q_norm and
    /// k_norm where `qk_norm`), drawn from `seed` and `stage`.
    pub fn draw(&self, layers: usize, qk_norm: bool) -> Vec<BTreeSet<&'static str>> {
        let mut rng = SplitMix64(
            self.seed
                ^ self
                    .stage
                    .wrapping_add(1)
                    .wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let mut chosen = vec![BTreeSet::new(); layers];
        for category in CATEGORIES {
            let members: Vec<&'static str> = category
                .iter()
                .copied()
                .filter(|m| qk_norm || !matches!(*m, "q_norm" | "k_norm"))
                .collect();
            let total = (self.fraction * (members.len() * layers) as f64).round() as usize;
            let (base, extra) = (total / layers.max(1), total % layers.max(1));
            let mut order: Vec<usize> = (0..layers).collect();
            rng.shuffle(&mut order);
            let mut count = vec![base; layers];
            for &l in &order[..extra] {
                count[l] += 1;
            }
            for (layer, set) in chosen.iter_mut().enumerate() {
                let mut pick = members.clone();
                rng.shuffle(&mut pick);
                set.extend(pick.into_iter().take(count[layer]));
            }
        }
        chosen
    }

    /// The selection as the method state saves it.
    fn state_of(selection: &[BTreeSet<&'static str>]) -> HostTensor {
        let data = selection
            .iter()
            .flat_map(|set| MODULES.map(|m| f32::from(u8::from(set.contains(m)))))
            .collect();
        HostTensor {
            shape: vec![selection.len(), MODULES.len()],
            data,
        }
    }

    /// The selection a checkpoint saved.
    fn saved_selection(
        saved: &MethodState,
        layers: usize,
    ) -> Result<Vec<BTreeSet<&'static str>>, MethodError> {
        let data = saved_matrix(saved, STATE_KEY.into(), [layers, MODULES.len()])?;
        Ok(data
            .chunks(MODULES.len())
            .map(|row| {
                MODULES
                    .iter()
                    .zip(row)
                    .filter(|(_, v)| **v != 0.0)
                    .map(|(m, _)| *m)
                    .collect()
            })
            .collect())
    }
}

/// The number of values of per-layer module `name` (weight and bias).
fn module_params(model: &ModelConfig, name: &str) -> usize {
    if let Some((i, o)) = linear_shape(model, name) {
        let bias = match name {
            "q_proj" | "k_proj" | "v_proj" => model.qkv_bias,
            "o_proj" => model.o_bias,
            _ => model.mlp_bias,
        };
        return i * o + if bias { o } else { 0 };
    }
    match name {
        "q_norm" | "k_norm" => model.head_dim,
        _ => model.hidden_size,
    }
}

impl Method for HftConfig {
    fn name(&self) -> &'static str {
        "hft"
    }

    fn validate(&self, model: &ModelConfig) -> Result<(), MethodError> {
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(MethodError::Invalid {
                key: "fraction",
                value: self.fraction.to_string(),
                reason: "the trained share is in (0, 1]; the paper trains half (0.5)",
            });
        }
        if self.selection(model).iter().all(BTreeSet::is_empty) {
            return Err(MethodError::Invalid {
                key: "fraction",
                value: self.fraction.to_string(),
                reason: "it trains nothing on this model: raise it",
            });
        }
        Ok(())
    }

    fn trains_base_weights(&self) -> bool {
        true
    }

    fn trainable_params(&self, model: &ModelConfig) -> u64 {
        self.selection(model)
            .iter()
            .flatten()
            .map(|m| module_params(model, m) as u64)
            .sum()
    }

    fn memory_terms(&self, model: &ModelConfig) -> MemoryTerms {
        MemoryTerms::trained_base(self.trainable_params(model), true)
    }

    fn prepare(
        &self,
        model: CausalLm,
        ctx: &mut PrepareContext<'_>,
    ) -> Result<PreparedModel, MethodError> {
        let layers = model.layers.len();
        let qk_norm = model
            .layers
            .first()
            .is_some_and(|l| l.self_attn.q_norm.is_some());
        let selection = match ctx.saved {
            Some(saved) => Self::saved_selection(saved, layers)?,
            None => self.draw(layers, qk_norm),
        };
        let trained: usize = selection.iter().map(BTreeSet::len).sum();
        (ctx.progress)(
            1,
            1,
            &format!(
                "HFT stage {}: {trained} of the decoder layers' parameter groups train",
                self.stage
            ),
        );
        let mut state = MethodState::new();
        state.insert(STATE_KEY.into(), Self::state_of(&selection));
        Ok(PreparedModel {
            model: super::full::mark_trained(model, |path| trains(&selection, path)),
            state,
        })
    }
}

/// Whether the parameter at burn path `path` (`layers`, `3`, `mlp`,
/// `up_proj`, `weight`) belongs to a selected module.
fn trains(selection: &[BTreeSet<&'static str>], path: &[String]) -> bool {
    if path.first().map(String::as_str) != Some("layers") {
        return false;
    }
    let Some(set) = path
        .get(1)
        .and_then(|s| s.parse::<usize>().ok())
        .and_then(|l| selection.get(l))
    else {
        return false;
    };
    path.iter().any(|p| set.contains(p.as_str()))
}
