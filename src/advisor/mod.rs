//! The SFT-guide advisor: reads a run's event stream and says when
//! something is wrong or when to stop. Pure logic, no I/O: the CLI, the
//! app and the tests feed it the same `TrainEvent`s.
//!
//! Rules (defaults in docs/advisor.md): divergence (NaN/Inf), gradient-norm
//! spikes against the running median, overfitting (validation loss rising
//! while training loss falls), plateau (no validation improvement), and
//! the early-dynamics comparison of sibling runs from Pareja et al. 2024.

mod early;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::train::TrainEvent;

pub use early::{EarlySummary, Verdict, rank_siblings};

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    Off,
    /// Report only.
    Warn,
    /// Report and end the run.
    Stop,
}

/// The `[early_stopping]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvisorConfig {
    pub divergence: RuleMode,
    pub grad_spike: RuleMode,
    /// A norm above `grad_spike_factor` x the running median is a spike.
    pub grad_spike_factor: f64,
    /// Steps in the running median.
    pub grad_spike_window: usize,
    pub overfitting: RuleMode,
    pub plateau: RuleMode,
    /// Evaluations without improvement before overfitting/plateau fire.
    pub patience: usize,
    /// Smallest validation-loss decrease that counts as improvement.
    pub min_delta: f64,
    /// Share of the planned steps summarised for the early-dynamics rule.
    pub early_window: f64,
}

impl Default for AdvisorConfig {
    fn default() -> Self {
        Self {
            divergence: RuleMode::Stop,
            grad_spike: RuleMode::Warn,
            grad_spike_factor: 10.0,
            grad_spike_window: 20,
            overfitting: RuleMode::Stop,
            plateau: RuleMode::Warn,
            patience: 3,
            min_delta: 1e-3,
            early_window: 0.1,
        }
    }
}

/// Which rule spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Divergence,
    GradSpike,
    Overfitting,
    Plateau,
    EarlyDynamics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// What the user (or the trainer) should do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    /// Keep going; the advice is for information.
    Continue,
    /// Roll back to the last good checkpoint and retry with a lower
    /// learning rate.
    RollBack { suggested_lr: f64 },
    /// Stop; the best checkpoint is the one to keep and export.
    KeepBest { best_step: usize },
    /// Stop this run in favour of its siblings.
    Abandon,
}

/// One piece of advice, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    pub step: usize,
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
    pub numbers: BTreeMap<String, f64>,
    pub action: Action,
    /// The rule is set to `stop`: the run ends here.
    pub stops: bool,
}

/// Watches one run.
#[derive(Debug, Clone)]
pub struct Advisor {
    config: AdvisorConfig,
    norms: VecDeque<f64>,
    last_lr: f64,
    train_losses: Vec<(usize, f64)>,
    best_val: Option<(usize, f64)>,
    evals_since_best: usize,
    rising: usize,
    last_val: Option<f64>,
    plateau_said: bool,
    /// Consecutive steps whose gradient vanished.
    vanished: usize,
    early: early::Window,
}

/// A gradient norm this small means the trainable weights no longer get
/// any signal (a saturated, collapsed model).
const VANISHED: f64 = 1e-7;
/// Steps of vanished gradients that count as a collapse.
const VANISHED_STEPS: usize = 3;

impl Advisor {
    pub fn new(config: AdvisorConfig) -> Self {
        Self {
            config,
            norms: VecDeque::new(),
            last_lr: 0.0,
            train_losses: Vec::new(),
            best_val: None,
            evals_since_best: 0,
            rising: 0,
            last_val: None,
            plateau_said: false,
            vanished: 0,
            early: early::Window::default(),
        }
    }

    /// The early-window summary so far (for sibling comparison).
    pub fn early_summary(&self) -> Option<EarlySummary> {
        self.early.summary()
    }

    /// Advice prompted by one event, most severe first.
    pub fn observe(&mut self, event: &TrainEvent) -> Vec<Advice> {
        let mut out = match event {
            TrainEvent::Step {
                step,
                total_steps,
                loss,
                grad_norm,
                lr,
                ..
            } => self.on_step(*step, *total_steps, *loss, *grad_norm, *lr),
            TrainEvent::Eval { step, val_loss, .. } => self.on_eval(*step, *val_loss),
            _ => Vec::new(),
        };
        out.retain(|a| self.mode(a.rule) != RuleMode::Off);
        for a in &mut out {
            a.stops = self.mode(a.rule) == RuleMode::Stop;
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.severity));
        out
    }

    fn mode(&self, rule: Rule) -> RuleMode {
        match rule {
            Rule::Divergence => self.config.divergence,
            Rule::GradSpike => self.config.grad_spike,
            Rule::Overfitting => self.config.overfitting,
            Rule::Plateau => self.config.plateau,
            Rule::EarlyDynamics => RuleMode::Warn,
        }
    }

    fn on_step(&mut self, step: usize, total: usize, loss: f64, norm: f64, lr: f64) -> Vec<Advice> {
        let mut out = Vec::new();
        if !loss.is_finite() || !norm.is_finite() {
            let suggested_lr = if lr > 0.0 {
                lr / 10.0
            } else {
                self.last_lr / 10.0
            };
            out.push(Advice {
                step,
                rule: Rule::Divergence,
                severity: Severity::Critical,
                message: format!(
                    "training diverged at step {step} (loss {loss}, gradient norm {norm}); roll \
                     back to the last good checkpoint and lower the learning rate to {suggested_lr:.2e}"
                ),
                numbers: numbers(&[("loss", loss), ("grad_norm", norm), ("lr", lr)]),
                action: Action::RollBack { suggested_lr },
                stops: false,
            });
            return out;
        }
        self.last_lr = lr;
        self.vanished = if norm < VANISHED {
            self.vanished + 1
        } else {
            0
        };
        if self.vanished == VANISHED_STEPS {
            let suggested_lr = lr / 10.0;
            out.push(Advice {
                step,
                rule: Rule::Divergence,
                severity: Severity::Critical,
                message: format!(
                    "training collapsed at step {step}: the gradient vanished ({VANISHED_STEPS} \
                     steps with a norm below {VANISHED:e}) and the loss froze at {loss:.4}; the \
                     learning rate ({lr:.2e}) is far too high — roll back to the last good \
                     checkpoint and use {suggested_lr:.2e} or less"
                ),
                numbers: numbers(&[("loss", loss), ("grad_norm", norm), ("lr", lr)]),
                action: Action::RollBack { suggested_lr },
                stops: false,
            });
            return out;
        }
        let window = self.config.grad_spike_window.max(3);
        if self.norms.len() >= window.min(5) {
            let median = median(self.norms.iter().copied());
            if median > 0.0 && norm > self.config.grad_spike_factor * median {
                out.push(Advice {
                    step,
                    rule: Rule::GradSpike,
                    severity: Severity::Warning,
                    message: format!(
                        "gradient norm {norm:.3} at step {step} is {:.0}x its running median \
                         ({median:.3}); a spike this size often precedes divergence — consider a \
                         lower learning rate or a smaller train.max_grad_norm",
                        norm / median
                    ),
                    numbers: numbers(&[("grad_norm", norm), ("median", median)]),
                    action: Action::Continue,
                    stops: false,
                });
            }
        }
        self.norms.push_back(norm);
        if self.norms.len() > window {
            self.norms.pop_front();
        }
        self.train_losses.push((step, loss));
        let early_steps = ((total as f64) * self.config.early_window).ceil().max(1.0) as usize;
        if step <= early_steps {
            self.early.add(loss, norm, step, early_steps);
        }
        out
    }

    fn on_eval(&mut self, step: usize, val: f64) -> Vec<Advice> {
        let mut out = Vec::new();
        if !val.is_finite() {
            return out;
        }
        let improved = self
            .best_val
            .is_none_or(|(_, best)| val < best - self.config.min_delta);
        if improved {
            self.best_val = Some((step, val));
            self.evals_since_best = 0;
            self.plateau_said = false;
        } else {
            self.evals_since_best += 1;
        }
        let rose = self.last_val.is_some_and(|last| val > last);
        self.rising = if rose { self.rising + 1 } else { 0 };
        self.last_val = Some(val);
        let Some((best_step, best)) = self.best_val else {
            return out;
        };
        let patience = self.config.patience.max(1);
        let train_falling = self.train_falling(best_step);
        if self.rising >= patience && train_falling {
            out.push(Advice {
                step,
                rule: Rule::Overfitting,
                severity: Severity::Warning,
                message: format!(
                    "validation loss rose {} evaluations in a row ({best:.4} at step {best_step} \
                     -> {val:.4}) while training loss kept falling: the model is memorising; \
                     keep the checkpoint of step {best_step}",
                    self.rising
                ),
                numbers: numbers(&[("val_loss", val), ("best_val_loss", best)]),
                action: Action::KeepBest { best_step },
                stops: false,
            });
        } else if self.evals_since_best >= patience && !self.plateau_said {
            self.plateau_said = true;
            out.push(Advice {
                step,
                rule: Rule::Plateau,
                severity: Severity::Info,
                message: format!(
                    "no validation improvement above {} for {} evaluations (best {best:.4} at \
                     step {best_step}); more steps are unlikely to help",
                    self.config.min_delta, self.evals_since_best
                ),
                numbers: numbers(&[("val_loss", val), ("best_val_loss", best)]),
                action: Action::KeepBest { best_step },
                stops: false,
            });
        }
        out
    }

    /// Training loss since `since` fell (mean of the later half below the
    /// mean of the earlier half).
    fn train_falling(&self, since: usize) -> bool {
        let recent: Vec<f64> = self
            .train_losses
            .iter()
            .filter(|(s, _)| *s > since)
            .map(|(_, l)| *l)
            .collect();
        if recent.len() < 2 {
            return false;
        }
        let half = recent.len() / 2;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        mean(&recent[half..]) < mean(&recent[..half])
    }
}

/// The finite numbers among `pairs` (JSON has no NaN; the message names
/// the non-finite ones).
fn numbers(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests;
