//! Learning-rate schedules with linear warmup, as transformers defines them
//! (`get_{constant,linear,cosine}_schedule_with_warmup`): optimizer step s
//! (0-based) uses `base * factor(s)`.

use std::f64::consts::PI;

use crate::config::Schedule;

/// The learning rate of 0-based optimizer step `step` out of `total`.
pub fn learning_rate(
    base: f64,
    schedule: Schedule,
    warmup: usize,
    step: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    let progress = (step - warmup) as f64 / decay_steps;
    let factor = match schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => (1.0 - progress).max(0.0),
        Schedule::Cosine => (0.5 * (1.0 + (PI * progress).cos())).max(0.0),
    };
    base * factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let lr = |s, sched| learning_rate(1.0, sched, 10, s, 110);
        assert_eq!(lr(0, Schedule::Cosine), 0.0);
        assert!((lr(5, Schedule::Linear) - 0.5).abs() < 1e-12);
        assert_eq!(lr(10, Schedule::Cosine), 1.0);
        assert!((lr(60, Schedule::Cosine) - 0.5).abs() < 1e-12);
        assert!((lr(60, Schedule::Linear) - 0.5).abs() < 1e-12);
        assert_eq!(lr(100, Schedule::Constant), 1.0);
        assert!(lr(109, Schedule::Linear) > 0.0);
    }
}
