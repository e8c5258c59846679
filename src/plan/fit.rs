//! Does the estimated run fit the machine, and if not, what to change: each
//! suggestion is the same config with one memory saver applied, estimated
//! again, so the wizard can say "turn on gradient checkpointing: 3.1 GiB,
//! fits" rather than a generic hint.

use serde::Serialize;

use super::Estimate;
use crate::config::{Dtype, Quantize, RunConfig};
use crate::memory::{SystemMemory, human_bytes};

/// The estimate against the memory the run would use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    /// What the memory is (`system RAM`).
    pub memory: String,
    /// Bytes free for the run now.
    pub available: u64,
    /// Bytes installed.
    pub installed: u64,
    /// Whether the estimate is at most `available`.
    pub fits: bool,
    /// One line for the user: "fits: 1.2 GiB of 20.5 GiB free" or "needs
    /// 31.0 GiB, 20.5 GiB free".
    pub verdict: String,
    /// Memory savers that lower the estimate, best first (only when the
    /// run does not fit, or uses more than 80% of what is free).
    pub suggestions: Vec<Suggestion>,
}

/// One change to the config and what the run would need with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// What to change, in the words of the config (`train.gradient_checkpointing = true`).
    pub change: String,
    /// The same change as config keys and values, for a front end to apply.
    pub set: Vec<Setting>,
    /// Why it helps, in a few words.
    pub reason: String,
    /// The estimate's total with this change.
    pub total: u64,
    pub fits: bool,
}

/// One config key (`train.micro_batch`) and its new value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub path: String,
    pub value: serde_json::Value,
}

/// Share of the free memory above which savers are offered even when the
/// run fits (allocator slack, other programs).
const TIGHT: f64 = 0.8;
/// A saver must cut the estimate by at least this share to be offered.
const WORTH_IT: f64 = 0.05;

/// Judges `estimate` of `config` against `memory`; `reestimate` estimates a
/// changed config (None when it cannot).
pub fn judge(
    config: &RunConfig,
    estimate: &Estimate,
    memory: SystemMemory,
    reestimate: impl Fn(&RunConfig) -> Option<Estimate>,
) -> Fit {
    let need = estimate.memory.total;
    let fits = need <= memory.available;
    let verdict = if fits {
        format!(
            "fits: needs {} of {} free",
            human_bytes(need),
            human_bytes(memory.available)
        )
    } else {
        format!(
            "does not fit: needs {}, {} free of {}",
            human_bytes(need),
            human_bytes(memory.available),
            human_bytes(memory.total)
        )
    };
    let tight = need as f64 > TIGHT * memory.available as f64;
    let mut suggestions = Vec::new();
    if tight {
        for (set, reason, changed) in savers(config) {
            let Some(e) = reestimate(&changed) else {
                continue;
            };
            if (e.memory.total as f64) < (1.0 - WORTH_IT) * need as f64 {
                let change = set
                    .iter()
                    .map(|s| format!("{} = {}", s.path, s.value))
                    .collect::<Vec<_>>()
                    .join(", ");
                suggestions.push(Suggestion {
                    change,
                    set,
                    reason: reason.to_string(),
                    total: e.memory.total,
                    fits: e.memory.total <= memory.available,
                });
            }
        }
        suggestions.sort_by_key(|s| s.total);
    }
    Fit {
        memory: "system RAM".into(),
        available: memory.available,
        installed: memory.total,
        fits,
        verdict,
        suggestions,
    }
}

fn setting(path: &str, value: impl Into<serde_json::Value>) -> Setting {
    Setting {
        path: path.into(),
        value: value.into(),
    }
}

/// The config with one memory saver each, where it is not already on.
fn savers(config: &RunConfig) -> Vec<(Vec<Setting>, &'static str, RunConfig)> {
    let mut out = Vec::new();
    if !config.train.gradient_checkpointing {
        let mut c = config.clone();
        c.train.gradient_checkpointing = true;
        out.push((
            vec![setting("train.gradient_checkpointing", true)],
            "recompute each layer in backward instead of keeping its activations",
            c,
        ));
    }
    if matches!(config.model.dtype, Dtype::F32 | Dtype::Auto) {
        let mut c = config.clone();
        c.model.dtype = Dtype::Bf16;
        out.push((
            vec![setting("model.dtype", "bf16")],
            "store the frozen base weights in 16 bits",
            c,
        ));
    }
    if config.model.quantize == Quantize::None
        && config.method.method().quantized_base_refusal().is_none()
    {
        let mut c = config.clone();
        c.model.quantize = Quantize::Q4_0;
        out.push((
            vec![setting("model.quantize", "q4_0")],
            "hold the frozen linear weights in 4-bit blocks (QLoRA)",
            c,
        ));
    }
    if config.data.max_length >= 256 {
        let mut c = config.clone();
        c.data.max_length /= 2;
        out.push((
            vec![setting("data.max_length", c.data.max_length)],
            "shorter sequences keep fewer activations (longer rows are cut)",
            c,
        ));
    }
    if config.train.micro_batch > 1 {
        let mut c = config.clone();
        c.train.micro_batch /= 2;
        c.train.grad_accum *= 2;
        out.push((
            vec![
                setting("train.micro_batch", c.train.micro_batch),
                setting("train.grad_accum", c.train.grad_accum),
            ],
            "the same effective batch in smaller pieces",
            c,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::estimate;

    fn quickstart() -> RunConfig {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut c = RunConfig::load(&root.join("presets/quickstart.toml"), &[]).unwrap();
        c.model.backend = crate::config::BackendName::Cpu;
        c
    }

    fn judged(config: &RunConfig, available: u64) -> Fit {
        let e = estimate(config).unwrap();
        let memory = SystemMemory {
            total: available * 2,
            available,
        };
        judge(config, &e, memory, |c| estimate(c).ok())
    }

    #[test]
    fn a_run_that_fits_easily_gets_no_suggestions() {
        let fit = judged(&quickstart(), 64 << 30);
        assert!(fit.fits, "{fit:?}");
        assert!(fit.verdict.starts_with("fits"), "{}", fit.verdict);
        assert!(fit.suggestions.is_empty());
    }

    #[test]
    fn a_run_that_does_not_fit_is_told_what_to_change() {
        let mut config = quickstart();
        config.data.max_length = 4096;
        config.train.micro_batch = 8;
        let need = estimate(&config).unwrap().memory.total;
        let fit = judged(&config, need / 2);
        assert!(!fit.fits);
        assert!(fit.verdict.starts_with("does not fit"), "{}", fit.verdict);
        let changes: Vec<&str> = fit.suggestions.iter().map(|s| s.change.as_str()).collect();
        assert!(
            changes.contains(&"train.gradient_checkpointing = true"),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .any(|c| c.starts_with("data.max_length = 2048"))
        );
        // Each suggestion is a real, lower estimate, best first.
        for s in &fit.suggestions {
            assert!(s.total < need);
            assert_eq!(s.fits, s.total <= need / 2);
        }
        assert!(fit.suggestions.windows(2).all(|w| w[0].total <= w[1].total));
        // Checkpointing the long batch is what makes it fit.
        let ckpt = fit
            .suggestions
            .iter()
            .find(|s| s.change.starts_with("train.gradient"))
            .unwrap();
        assert!(ckpt.fits, "{ckpt:?}");
    }
}
