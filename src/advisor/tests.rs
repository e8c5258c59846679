use proptest::prelude::*;

use super::*;

fn step(step: usize, loss: f64, grad_norm: f64) -> TrainEvent {
    TrainEvent::Step {
        step,
        total_steps: 100,
        epoch: 0.0,
        loss,
        grad_norm,
        lr: 1e-4,
        tokens_per_sec: 0.0,
        tokens: 0,
        elapsed_s: 0.0,
        peak_memory_bytes: None,
        terms: Default::default(),
    }
}

fn eval(step: usize, val_loss: f64) -> TrainEvent {
    TrainEvent::Eval {
        step,
        val_loss,
        best: false,
    }
}

/// Feeds a healthy run: loss decaying, norms jittering around 1,
/// validation loss decaying with it.
fn healthy(advisor: &mut Advisor, seed: u64, steps: usize) -> Vec<Advice> {
    let mut out = Vec::new();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for s in 1..=steps {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5;
        let loss = 2.0 + 3.0 * (-(s as f64) / 30.0).exp() + 0.05 * jitter;
        out.extend(advisor.observe(&step(s, loss, 1.0 + 0.3 * jitter)));
        if s % 10 == 0 {
            out.extend(advisor.observe(&eval(s, 2.2 + 3.0 * (-(s as f64) / 30.0).exp())));
        }
    }
    out
}

#[test]
fn a_nan_loss_stops_the_run_and_asks_for_a_rollback() {
    let mut a = Advisor::new(AdvisorConfig::default());
    assert!(a.observe(&step(1, 3.0, 1.0)).is_empty());
    let advice = a.observe(&step(2, f64::NAN, 1.0));
    assert_eq!(advice.len(), 1);
    assert_eq!(advice[0].rule, Rule::Divergence);
    assert!(advice[0].stops);
    assert_eq!(advice[0].action, Action::RollBack { suggested_lr: 1e-5 });
    let advice = a.observe(&step(3, 3.0, f64::INFINITY));
    assert_eq!(advice[0].rule, Rule::Divergence);
}

#[test]
fn a_vanished_gradient_is_a_collapse() {
    let mut a = Advisor::new(AdvisorConfig::default());
    assert!(a.observe(&step(1, 9.0, 3.0)).is_empty());
    assert!(a.observe(&step(2, 7.6, 0.0)).is_empty());
    assert!(a.observe(&step(3, 7.6, 0.0)).is_empty());
    let advice = a.observe(&step(4, 7.6, 0.0));
    assert_eq!(advice[0].rule, Rule::Divergence);
    assert!(advice[0].stops);
    assert!(advice[0].message.contains("collapsed"));
}

#[test]
fn a_gradient_spike_warns_without_stopping() {
    let mut a = Advisor::new(AdvisorConfig::default());
    for s in 1..=10 {
        assert!(a.observe(&step(s, 3.0, 1.0 + 0.01 * s as f64)).is_empty());
    }
    let advice = a.observe(&step(11, 3.0, 25.0));
    assert_eq!(advice.len(), 1);
    assert_eq!(advice[0].rule, Rule::GradSpike);
    assert!(!advice[0].stops);
    assert!(advice[0].numbers["median"] > 1.0);
}

#[test]
fn rising_validation_with_falling_training_loss_is_overfitting() {
    let mut a = Advisor::new(AdvisorConfig::default());
    let mut fired = Vec::new();
    for s in 1..=60 {
        fired.extend(a.observe(&step(s, 3.0 - 0.04 * s as f64, 1.0)));
        if s % 10 == 0 {
            // Best at step 20, then rising.
            let val = if s <= 20 {
                3.0 - 0.05 * s as f64
            } else {
                2.0 + 0.1 * (s - 20) as f64
            };
            fired.extend(a.observe(&eval(s, val)));
        }
    }
    let over: Vec<&Advice> = fired
        .iter()
        .filter(|a| a.rule == Rule::Overfitting)
        .collect();
    assert!(!over.is_empty(), "{fired:?}");
    assert_eq!(over[0].step, 50);
    assert!(over[0].stops);
    assert_eq!(over[0].action, Action::KeepBest { best_step: 20 });
}

#[test]
fn a_flat_validation_loss_is_a_plateau_said_once() {
    let mut a = Advisor::new(AdvisorConfig::default());
    let mut fired = Vec::new();
    for s in 1..=80 {
        fired.extend(a.observe(&step(s, 2.0, 1.0)));
        if s % 10 == 0 {
            fired.extend(a.observe(&eval(s, if s == 10 { 2.5 } else { 2.0 })));
        }
    }
    let plateau: Vec<&Advice> = fired.iter().filter(|a| a.rule == Rule::Plateau).collect();
    assert_eq!(plateau.len(), 1, "{fired:?}");
    assert_eq!(plateau[0].step, 50);
    assert!(!plateau[0].stops, "plateau warns by default");
}

#[test]
fn rules_can_be_turned_off_or_made_to_stop() {
    let config = AdvisorConfig {
        divergence: RuleMode::Off,
        grad_spike: RuleMode::Stop,
        ..AdvisorConfig::default()
    };
    let mut a = Advisor::new(config);
    assert!(a.observe(&step(1, f64::NAN, 1.0)).is_empty());
    for s in 2..=10 {
        a.observe(&step(s, 3.0, 1.0));
    }
    let advice = a.observe(&step(11, 3.0, 50.0));
    assert_eq!(advice[0].rule, Rule::GradSpike);
    assert!(advice[0].stops, "set to stop, a spike ends the run");
}

#[test]
fn siblings_with_high_norms_and_low_losses_are_flagged() {
    let s = |loss, norm| EarlySummary {
        mean_loss: loss,
        mean_grad_norm: norm,
        steps: 10,
        complete: true,
    };
    let runs = [s(2.5, 0.8), s(2.0, 2.0), s(2.4, 1.0), s(2.1, 1.5)];
    let verdicts = rank_siblings(&runs);
    assert_eq!(verdicts[0].rank, 0);
    assert!(!verdicts[0].likely_worse);
    assert!(verdicts[1].likely_worse);
    assert_eq!(verdicts[1].rank, 3);
    assert!(rank_siblings(&runs[..1]).iter().all(|v| !v.likely_worse));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn healthy_runs_get_no_warnings(seed in any::<u64>()) {
        let mut a = Advisor::new(AdvisorConfig::default());
        let advice = healthy(&mut a, seed, 100);
        prop_assert!(advice.iter().all(|x| x.severity == Severity::Info), "{advice:?}");
        let summary = a.early_summary().unwrap();
        prop_assert!(summary.complete);
        prop_assert_eq!(summary.steps, 10);
    }

    #[test]
    fn any_non_finite_value_is_caught(at in 1usize..50, which in 0usize..3) {
        let mut a = Advisor::new(AdvisorConfig::default());
        let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][which];
        for s in 1..at {
            a.observe(&step(s, 3.0, 1.0));
        }
        let advice = a.observe(&step(at, bad, 1.0));
        prop_assert_eq!(advice[0].rule, Rule::Divergence);
        prop_assert!(advice[0].stops);
    }

    #[test]
    fn ranks_are_a_permutation(losses in prop::collection::vec(0.1f64..10.0, 1..8), seed in any::<u64>()) {
        let runs: Vec<EarlySummary> = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| EarlySummary {
                mean_loss: l,
                mean_grad_norm: ((seed >> (i % 60)) & 0xff) as f64 / 64.0 + 0.1,
                steps: 5,
                complete: true,
            })
            .collect();
        let mut ranks: Vec<usize> = rank_siblings(&runs).iter().map(|v| v.rank).collect();
        ranks.sort_unstable();
        prop_assert_eq!(ranks, (0..runs.len()).collect::<Vec<_>>());
    }
}
