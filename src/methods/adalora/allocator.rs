//! AdaLoRA's training hooks, in PEFT's order: the orthogonality
//! regulariser joins every step's loss; after each optimizer step the
//! sensitivity `|w · grad|` of every adapter value (with the gradient the
//! optimizer used) updates two running averages, and on the budget
//! schedule the triplets with the lowest scores have their λ zeroed.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};

use super::{AdaloraConfig, module_of};
use crate::methods::{HookNote, LossTerm, MethodState, StepAt, TrainingHooks};
use crate::model::CausalLm;
use crate::train::params::{self, HostTensor};

const IPT: &str = "adalora.ipt.";
const UNC: &str = "adalora.unc.";
const PATTERN: &str = "adalora.pattern.";
/// The run's planned steps, which PEFT's exported config needs.
pub(super) const TOTAL: &str = "adalora.total_step";

/// The state between steps: PEFT's `RankAllocator`.
pub(super) struct RankAllocator {
    config: AdaloraConfig,
    /// Running averages of the sensitivity and of its uncertainty, by
    /// parameter name (flattened, on the device).
    ipt: BTreeMap<String, Tensor<1>>,
    unc: BTreeMap<String, Tensor<1>>,
    /// Saved averages not yet on the device (a resumed run).
    pending: BTreeMap<String, HostTensor>,
    /// Which triplets each module keeps (by HF module name), once the
    /// budget has been allocated.
    pattern: Option<BTreeMap<String, Vec<bool>>>,
    total: usize,
}

impl RankAllocator {
    pub(super) fn new(config: &AdaloraConfig, total: usize, saved: Option<&MethodState>) -> Self {
        let mut me = Self {
            config: config.clone(),
            ipt: BTreeMap::new(),
            unc: BTreeMap::new(),
            pending: BTreeMap::new(),
            pattern: None,
            total,
        };
        if let Some(saved) = saved {
            me.pattern = read_pattern(saved);
            for (key, t) in saved {
                if key.starts_with(IPT) || key.starts_with(UNC) {
                    me.pending.insert(key.clone(), t.clone());
                }
            }
        }
        me
    }

    /// PEFT's `budget_schedule`: the budget after step `step` and whether
    /// the triplets are masked to it then.
    fn schedule(
        &self,
        step: usize,
        total: usize,
        init_budget: usize,
        modules: usize,
    ) -> (usize, bool) {
        let c = &self.config;
        let target = c.target_r * modules;
        if step <= c.tinit {
            (init_budget, false)
        } else if step > total.saturating_sub(c.tfinal) {
            (target, true)
        } else {
            // Cubic decrease, in PEFT's float arithmetic (truncated).
            let span = (total - c.tfinal - c.tinit) as f64;
            let mul = 1.0 - (step - c.tinit) as f64 / span;
            let budget = ((init_budget - target) as f64 * mul.powf(3.0) + target as f64) as usize;
            (budget, step.is_multiple_of(c.delta_t))
        }
    }

    /// Moves a resumed run's saved averages to `device`.
    fn upload(&mut self, device: &Device) {
        for (key, host) in std::mem::take(&mut self.pending) {
            let t = Tensor::<1>::from_data(
                TensorData::new(host.data, [host.shape.iter().product::<usize>()]),
                device,
            );
            if let Some(name) = key.strip_prefix(IPT) {
                self.ipt.insert(name.to_string(), t);
            } else if let Some(name) = key.strip_prefix(UNC) {
                self.unc.insert(name.to_string(), t);
            }
        }
    }

    /// PEFT's `update_ipt` over every adapter value.
    fn update_sensitivity(
        &mut self,
        values: &BTreeMap<String, Tensor<1>>,
        grads: &BTreeMap<String, Tensor<1>>,
    ) {
        let (b1, b2) = (self.config.beta1, self.config.beta2);
        for (name, p) in values {
            let Some(g) = grads.get(name) else { continue };
            let ipt = (p.clone() * g.clone()).abs();
            let avg = match self.ipt.remove(name) {
                Some(prev) => prev * b1 + ipt.clone() * (1.0 - b1),
                None => ipt.clone() * (1.0 - b1),
            };
            let dev = (ipt - avg.clone()).abs() * (1.0 - b2);
            let unc = match self.unc.remove(name) {
                Some(prev) => prev * b2 + dev,
                None => dev,
            };
            self.ipt.insert(name.clone(), avg);
            self.unc.insert(name.clone(), unc);
        }
    }

    /// PEFT's `mask_to_budget`: the triplets whose scores are above the
    /// `(init - budget)`-th smallest are kept.
    fn allocate(
        &self,
        shapes: &BTreeMap<String, (usize, usize)>,
        budget: usize,
    ) -> BTreeMap<String, Vec<bool>> {
        let r = self.config.init_r;
        let score = |name: &str| -> Option<Tensor<1>> {
            Some(self.ipt.get(name)?.clone() * self.unc.get(name)?.clone())
        };
        let mut modules = Vec::new();
        let mut parts = Vec::new();
        for (module, &(inp, out)) in shapes {
            let prefix = format!("{}.adapter.adalora.", module.trim_start_matches("model."));
            let (Some(a), Some(e), Some(b)) = (
                score(&format!("{prefix}a")),
                score(&format!("{prefix}e")),
                score(&format!("{prefix}b")),
            ) else {
                continue;
            };
            // Q's score per triplet is its mean over the inputs, P's over
            // the outputs; a triplet's score is λ's plus theirs.
            let a = a.reshape([inp, r]).mean_dim(0).reshape([r]);
            let b = b.reshape([r, out]).mean_dim(1).reshape([r]);
            parts.push(e + (a + b));
            modules.push(module.clone());
        }
        let scores: Vec<f32> = if parts.is_empty() {
            Vec::new()
        } else {
            Tensor::cat(parts, 0)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        let pruned = (modules.len() * r).saturating_sub(budget);
        let threshold = if pruned == 0 || scores.len() != modules.len() * r {
            f32::NEG_INFINITY
        } else {
            let mut sorted = scores.clone();
            sorted.sort_by(f32::total_cmp);
            sorted[pruned - 1]
        };
        modules
            .into_iter()
            .zip(scores.chunks(r))
            .map(|(m, s)| (m, s.iter().map(|&v| v > threshold).collect()))
            .collect()
    }

    /// Zeroes λ of the triplets `pattern` prunes.
    fn apply(model: CausalLm, pattern: &BTreeMap<String, Vec<bool>>) -> CausalLm {
        let mut values = params::device_values(&model, |n| n.ends_with(".adapter.adalora.e"));
        for (name, e) in values.iter_mut() {
            let Some(keep) = module_of(name).and_then(|(m, _)| pattern.get(&m)) else {
                continue;
            };
            let mask: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::<1>::from_data(TensorData::new(mask, [keep.len()]), &e.device());
            *e = e.clone() * mask;
        }
        params::set_device_values(model, &mut values)
    }

    fn note(&self, budget: usize, pattern: &BTreeMap<String, Vec<bool>>) -> HookNote {
        HookNote::Ranks {
            budget,
            ranks: pattern
                .iter()
                .map(|(m, keep)| (m.clone(), keep.iter().filter(|&&k| k).count()))
                .collect(),
        }
    }
}

impl TrainingHooks for RankAllocator {
    /// PEFT's regulariser: the mean over every Q and P of `‖QᵀQ - I‖_F`
    /// (`‖P·Pᵀ - I‖_F` in our layouts).
    fn loss_terms(&self, model: &CausalLm) -> Vec<LossTerm> {
        let weight = self.config.orth_reg_weight;
        if weight <= 0.0 {
            return Vec::new();
        }
        let mut norms = Vec::new();
        for (_, layer) in model.linears() {
            if let Some(crate::methods::Adapter::Adalora(ad)) = &layer.adapter {
                norms.extend(ad.orthogonality());
            }
        }
        let count = norms.len();
        let Some(total) = crate::methods::triplets::sum(norms) else {
            return Vec::new();
        };
        let mean = total / count as f64;
        let value = mean.clone().into_scalar::<f32>() as f64;
        vec![LossTerm {
            name: "orth_reg",
            value,
            weighted: mean * weight,
        }]
    }

    fn wants_gradients(&self) -> bool {
        true
    }

    fn after_step(
        &mut self,
        model: CausalLm,
        grads: &BTreeMap<String, Tensor<1>>,
        at: StepAt,
    ) -> (CausalLm, Vec<HookNote>) {
        self.total = at.total;
        let shapes: BTreeMap<String, (usize, usize)> = model
            .linears()
            .into_iter()
            .filter(|(_, l)| matches!(l.adapter, Some(crate::methods::Adapter::Adalora(_))))
            .map(|(name, l)| (name, l.dims()))
            .collect();
        let init_budget = shapes.len() * self.config.init_r;
        let final_start = at.total.saturating_sub(self.config.tfinal);
        let step = at.index;
        if step > final_start {
            // The ranks are fixed: the pruned triplets stay pruned.
            return match &self.pattern {
                Some(pattern) => (Self::apply(model, pattern), Vec::new()),
                None => (model, Vec::new()),
            };
        }
        let (budget, masks) = self.schedule(step, at.total, init_budget, shapes.len());
        if step < final_start {
            let values = params::device_values(&model, |n| n.contains(".adapter.adalora."));
            if let Some(device) = values.values().next().map(|t| t.device()) {
                self.upload(&device);
            }
            self.update_sensitivity(&values, grads);
        } else if let Some(device) = grads.values().next().map(|t| t.device()) {
            self.upload(&device);
        }
        // At the start of the final phase the budget is the target's, and
        // masking is forced.
        if !(masks || step == final_start) {
            return (model, Vec::new());
        }
        let pattern = self.allocate(&shapes, budget);
        let model = Self::apply(model, &pattern);
        // Reported when the ranks moved, not at every reallocation.
        let changed = self.pattern.as_ref() != Some(&pattern);
        let notes = if changed {
            vec![self.note(budget, &pattern)]
        } else {
            Vec::new()
        };
        self.pattern = Some(pattern);
        if step == final_start {
            // PEFT's reset_ipt: the averages are not needed any more.
            self.ipt.clear();
            self.unc.clear();
        }
        (model, notes)
    }

    fn state(&self) -> MethodState {
        let mut state = MethodState::new();
        for (prefix, map) in [(IPT, &self.ipt), (UNC, &self.unc)] {
            for (name, t) in map {
                state.insert(
                    format!("{prefix}{name}"),
                    HostTensor::from_tensor(t.clone()),
                );
            }
        }
        for (key, t) in &self.pending {
            state.insert(key.clone(), t.clone());
        }
        if let Some(pattern) = &self.pattern {
            for (module, keep) in pattern {
                state.insert(
                    format!("{PATTERN}{module}"),
                    HostTensor {
                        shape: vec![keep.len()],
                        data: keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect(),
                    },
                );
            }
        }
        state.insert(
            TOTAL.into(),
            HostTensor {
                shape: vec![1],
                data: vec![self.total as f32],
            },
        );
        state
    }
}

/// The rank pattern a checkpoint saved, by HF module.
pub(super) fn read_pattern(state: &MethodState) -> Option<BTreeMap<String, Vec<bool>>> {
    let pattern: BTreeMap<String, Vec<bool>> = state
        .iter()
        .filter_map(|(k, t)| {
            let module = k.strip_prefix(PATTERN)?;
            Some((
                module.to_string(),
                t.data.iter().map(|&v| v > 0.5).collect(),
            ))
        })
        .collect();
    (!pattern.is_empty()).then_some(pattern)
}
