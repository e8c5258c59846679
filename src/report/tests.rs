use std::collections::BTreeMap;

use super::chart::{short, thin, y_range};
use super::*;
use crate::advisor::{Action, Advice, Rule, Severity};
use crate::train::TrainEvent;

fn step(step: usize, loss: f64, grad_norm: f64) -> TrainEvent {
    TrainEvent::Step {
        step,
        total_steps: 100,
        epoch: step as f64 / 50.0,
        loss,
        grad_norm,
        lr: 1e-3,
        tokens_per_sec: 1000.0 + step as f64,
        tokens: step as u64 * 64,
        elapsed_s: step as f64 * 0.1,
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

fn advice(step: usize, severity: Severity, message: &str) -> TrainEvent {
    TrainEvent::Advice(Advice {
        step,
        rule: Rule::Plateau,
        severity,
        message: message.into(),
        numbers: BTreeMap::new(),
        action: Action::Continue,
        stops: false,
    })
}

fn events() -> Vec<TrainEvent> {
    let mut ev = vec![eval(0, 5.0)];
    for s in 1..=60 {
        ev.push(step(s, 5.0 - s as f64 * 0.05, 1.0 / s as f64));
        if s % 20 == 0 {
            ev.push(eval(
                s,
                5.0 - s as f64 * 0.03 + if s == 60 { 2.0 } else { 0.0 },
            ));
        }
    }
    ev.push(advice(25, Severity::Warning, "gradient spike"));
    ev.push(advice(60, Severity::Critical, "validation loss rose"));
    ev
}

#[test]
fn series_keep_the_last_value_of_a_repeated_step_and_find_the_best() {
    let mut ev = events();
    // A resumed run logs steps 41.. again; the second values count.
    ev.push(step(41, 1.25, 0.5));
    ev.push(TrainEvent::Eval {
        step: 40,
        val_loss: 3.5,
        best: true,
    });
    let s = RunSeries::from_events("r", &ev, 0.1);
    assert_eq!(s.steps.len(), 60);
    assert_eq!(s.steps[40].loss, 1.25);
    assert_eq!(s.total_steps, 100);
    assert_eq!(s.early_steps, 10);
    assert_eq!(s.best(), Some((40, 3.5)));
    assert_eq!(s.last_step(), 60);
    assert_eq!(s.advice.len(), 2);
}

#[test]
fn the_run_chart_places_markers_where_their_steps_are() {
    let s = RunSeries::from_events("r", &events(), 0.1);
    let chart = run_chart(&s, 900, 600).unwrap();
    assert!(chart.svg.starts_with("<svg"), "{}", &chart.svg[..60]);
    assert!(chart.svg.trim_end().ends_with("</svg>"));
    for label in [
        "training loss",
        "validation loss",
        "early window",
        "best checkpoint",
    ] {
        assert!(chart.svg.contains(label), "legend lacks {label}");
    }
    // Best (step 40, val 3.8) and the two advice markers, in step order.
    let best: Vec<&Marker> = chart
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::Best)
        .collect();
    assert_eq!(best.len(), 1);
    assert_eq!(best[0].step, 40);
    let adv: Vec<&Marker> = chart
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::Advice)
        .collect();
    assert_eq!(adv.len(), 2);
    assert!(adv[0].x < best[0].x && best[0].x < adv[1].x);
    assert_eq!(adv[1].severity.as_deref(), Some("critical"));
    assert!(adv[1].text.contains("validation loss rose"));
    // Every marker lies inside the loss panel (the top 58%).
    for m in &chart.markers {
        assert!(
            m.x > 0 && m.x < 900 && m.y > 0 && m.y < 600 * 58 / 100,
            "{m:?}"
        );
    }
    // The x axis spans the planned steps: step 50 of 100 sits mid-plot, so
    // step 60's advice is left of three quarters of the width.
    assert!(adv[1].x < 900 * 3 / 4);
}

#[test]
fn a_diverged_run_still_draws() {
    let mut ev = events();
    ev.push(step(61, f64::NAN, f64::INFINITY));
    ev.push(eval(61, f64::NAN));
    let s = RunSeries::from_events("r", &ev, 0.1);
    let chart = run_chart(&s, 600, 400).unwrap();
    assert!(!chart.svg.contains("NaN") && !chart.svg.contains("inf"));
}

#[test]
fn an_empty_run_draws_a_waiting_chart_and_tiny_sizes_are_refused() {
    let s = RunSeries::from_events("r", &[], 0.1);
    let chart = run_chart(&s, 400, 300).unwrap();
    assert!(chart.svg.contains("waiting for the first step"));
    assert!(chart.markers.is_empty());
    assert!(matches!(
        run_chart(&s, 100, 300),
        Err(ReportError::TooSmall { .. })
    ));
}

#[test]
fn the_overlay_names_every_run_and_marks_each_best() {
    let a = RunSeries::from_events("lr-1e-4", &events(), 0.1);
    let mut ev = events();
    ev.push(eval(60, 0.5));
    let b = RunSeries::from_events("lr-3e-4", &ev, 0.1);
    let chart = overlay_chart(&[a, b], 1000, 420).unwrap();
    assert!(chart.svg.contains("lr-1e-4") && chart.svg.contains("lr-3e-4"));
    let best: Vec<usize> = chart.markers.iter().map(|m| m.step).collect();
    assert_eq!(best, vec![40, 60]);
}

#[test]
fn write_report_puts_report_svg_into_the_run_dir() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = events()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(dir.path().join("metrics.jsonl"), lines).unwrap();
    let path = write_report(dir.path()).unwrap();
    assert_eq!(path, dir.path().join(REPORT_FILE));
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.contains("gradient norm") && svg.contains("tokens/s"));
}

#[test]
fn thinning_bounds_the_points_and_keeps_the_mean() {
    let points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 7) as f64)).collect();
    let out = thin(points.clone(), 300);
    assert!(out.len() <= 600, "{}", out.len());
    let mean = |p: &[(f64, f64)]| p.iter().map(|q| q.1).sum::<f64>() / p.len() as f64;
    assert!((mean(&out) - mean(&points)).abs() < 0.05);
    assert_eq!(
        thin(vec![(0.0, 1.0), (1.0, f64::NAN)], 300),
        vec![(0.0, 1.0)]
    );
}

#[test]
fn ranges_and_labels() {
    assert_eq!(y_range([f64::NAN].into_iter(), false), 0.0..1.0);
    let r = y_range([2.0, 4.0].into_iter(), false);
    assert!(r.start < 2.0 && r.end > 4.0);
    assert_eq!(y_range([2.0, 4.0].into_iter(), true).start, 0.0);
    let flat = y_range([3.0, 3.0].into_iter(), false);
    assert!(flat.start < flat.end);
    assert_eq!(short(0.0003), "3e-4");
    assert_eq!(short(12_500.0), "12.5k");
    assert_eq!(short(2.25), "2.25");
    assert_eq!(short(2.5), "2.5");
    assert_eq!(short(150.0), "150");
}
