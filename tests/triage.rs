//! Triage on the bundled model and dataset: every candidate runs its early
//! window, the most promising one runs to the end, the comparison is
//! written, and a candidate whose learning rate is far too high is never
//! the one kept.

use std::path::Path;

use tunesmith::triage::{GridAxis, TriageOptions, triage};

#[test]
fn triage_keeps_one_candidate_runs_it_to_the_end_and_writes_the_comparison() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let runs = tempfile::tempdir().unwrap();
    let overrides = vec![
        format!("output.runs_dir={}", runs.path().display()),
        "model.backend=cpu".to_string(),
        "train.max_steps=40".to_string(),
        "train.eval_every=10".to_string(),
        "train.checkpoint_every=0".to_string(),
        // Early window: 20% of 40 steps.
        "early_stopping.early_window=0.2".to_string(),
    ];
    let axes: Vec<GridAxis> = vec!["lr=1e-3,3e-3,200".parse().unwrap()];
    let mut events = 0usize;
    let report = triage(
        &root.join("presets/quickstart.toml"),
        &overrides,
        &axes,
        TriageOptions::default(),
        |_| events += 1,
    )
    .unwrap();
    assert!(events > 40);
    let c = &report.candidates;
    assert_eq!(c.len(), 3);
    for r in c {
        assert_eq!(r.early_steps, 8, "{}", r.name);
        assert!(r.run_dir.starts_with(&report.dir));
    }
    // lr = 200 collapses the tiny model by step 6 (the gradient vanishes;
    // lr = 50 sits on the edge, collapsing at step 8 or 9 with the last
    // digits of rounding): flagged, never ranked/kept.
    let hot = &c[2];
    assert!(hot.diverged, "{hot:?}");
    assert_eq!(hot.rank, None);
    assert!(!hot.kept);
    let kept = &c[report.kept];
    assert!(kept.kept && kept.rank == Some(0));
    assert_eq!(kept.steps, 40, "the kept candidate ran to the end");
    assert!(kept.final_val_loss.is_some());
    for (i, r) in c.iter().enumerate() {
        if i != report.kept {
            assert!(r.steps <= 9, "{} ran {} steps", r.name, r.steps);
        }
    }
    assert!(report.steps_run < report.steps_all_to_end);
    for f in ["triage.json", "triage.md", "triage.svg"] {
        assert!(report.dir.join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(report.dir.join("triage.md")).unwrap();
    assert!(
        md.contains("kept, ran to the end") && md.contains("diverged"),
        "{md}"
    );
    let svg = std::fs::read_to_string(report.dir.join("triage.svg")).unwrap();
    assert!(svg.contains("lr-1e-3") && svg.contains("lr-3e-3"));
}
