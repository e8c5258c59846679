//! Whole runs: the quickstart learns, control requests are obeyed, a run
//! killed with SIGKILL resumes exactly, bad configs fail up front.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{bin, run_dir_of};
use tunesmith::RunConfig;
use tunesmith::train::{Session, TrainEvent};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn quickstart(runs: &Path, extra: &[&str]) -> RunConfig {
    let mut overrides = vec![
        format!("output.runs_dir={}", runs.display()),
        "model.backend=cpu".to_string(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    RunConfig::load(&root().join("presets/quickstart.toml"), &overrides).unwrap()
}

/// Collects a run's events up to the terminal one, calling `on` on each first.
fn follow(handle: &tunesmith::RunHandle, mut on: impl FnMut(&TrainEvent)) -> Vec<TrainEvent> {
    let mut seen = Vec::new();
    for event in handle.events().iter() {
        on(&event);
        let end = event.is_terminal();
        seen.push(event);
        if end {
            break;
        }
    }
    seen
}

fn start_err(config: RunConfig) -> String {
    match Session::start(config) {
        Ok(_) => panic!("the run started"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_configs_are_rejected_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");

    let e = RunConfig::from_toml_str(
        "[method]\nkind = \"lora\"\nrnak = 8\n",
        "test.toml",
        tmp.path(),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rnak"), "{e}");
    let e = RunConfig::from_toml_str("[trian]\n", "test.toml", tmp.path(), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("trian"), "{e}");
    let e = RunConfig::load(
        &root().join("presets/quickstart.toml"),
        &["train.learnin_rate=1".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("learnin_rate"), "{e}");

    let e = start_err(quickstart(&runs, &["method.rank=1000"]));
    assert!(
        e.contains("method.rank = 1000") && e.contains("at most"),
        "{e}"
    );
    let e = start_err(quickstart(&runs, &["method.target_modules=[\"c_attn\"]"]));
    assert!(e.contains("c_attn") && e.contains("q_proj"), "{e}");
    let e = start_err(quickstart(&runs, &["train.learning_rate=0"]));
    assert!(e.contains("train.learning_rate"), "{e}");
    let e = start_err(quickstart(&runs, &["train.learning_rate=-1e-4"]));
    assert!(e.contains("train.learning_rate"), "{e}");
    let e = start_err(quickstart(&runs, &["model.path=/nonexistent/model"]));
    assert!(e.contains("/nonexistent/model"), "{e}");
    let e = start_err(quickstart(&runs, &["data.train=/nonexistent/data.jsonl"]));
    assert!(e.contains("/nonexistent/data.jsonl"), "{e}");
    // Nothing was created for any of them.
    assert!(!runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none());
}

#[test]
fn pause_checkpoint_and_stop_are_obeyed_between_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let config = quickstart(
        tmp.path(),
        &[
            "train.max_steps=40",
            "train.eval_every=0",
            "train.checkpoint_every=0",
        ],
    );
    let handle = Session::start(config).unwrap();
    let seen = follow(&handle, |event| match event {
        TrainEvent::Step { step: 2, .. } => handle.pause(),
        TrainEvent::Paused { .. } => {
            handle.checkpoint_now();
            handle.resume();
        }
        TrainEvent::Resumed { .. } => handle.stop(),
        _ => {}
    });
    let run_dir = handle.run_dir().to_path_buf();
    handle.join();
    let names: Vec<String> = seen
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let paused_at = names.iter().position(|n| n == "paused").unwrap();
    assert_eq!(names[paused_at - 1], "step");
    // No step runs while paused.
    assert_eq!(names[paused_at + 1], "resumed");
    let Some(TrainEvent::Finished { reason, step, .. }) = seen.last() else {
        panic!("no finished event: {names:?}");
    };
    assert_eq!(reason, "stopped");
    assert!(*step < 40);
    let reasons: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Checkpoint { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        reasons.contains(&"requested") && reasons.contains(&"stopped"),
        "{reasons:?}"
    );
    // metrics.jsonl holds the same events, line by line.
    let logged = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let sent: Vec<String> = seen
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert_eq!(logged.lines().collect::<Vec<_>>(), sent);
    assert_eq!(
        tunesmith::train::runs::read_events(&run_dir).len(),
        seen.len()
    );
}

#[test]
fn ctrl_c_stops_with_a_checkpoint_and_the_adapter_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args([
            "train",
            root().join("presets/quickstart.toml").to_str().unwrap(),
            "--backend",
            "cpu",
            "--json",
            "--set",
            &format!("output.runs_dir={}", tmp.path().display()),
            "--set",
            "train.max_steps=200",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut events = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "step" && v["step"] == 2 {
            let ok = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        events.push(v);
    }
    assert!(child.wait().unwrap().success(), "Ctrl-C is a clean stop");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["reason"], "stopped");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "checkpoint" && e["reason"] == "stopped")
    );
    let run_dir = run_dir_of(&events);
    let out = bin()
        .args(["generate", "--backend", "cpu", "--adapter"])
        .arg(&run_dir)
        .args([
            "--chat",
            "--prompt",
            "What is 2 plus 2?",
            "--max-new-tokens",
            "4",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("applied trained weights"));
    // `runs list` shows the run as stopped.
    let out = bin()
        .args(["runs", "list", "--json", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let listed: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(listed["status"], "stopped");
}

#[test]
fn an_error_inside_the_thread_becomes_a_failed_event() {
    let tmp = tempfile::tempdir().unwrap();
    let config = quickstart(
        tmp.path(),
        &[
            "train.max_steps=30",
            "train.eval_every=0",
            "train.checkpoint_every=3",
        ],
    );
    let handle = Session::start(config).unwrap();
    let ckpts = handle.run_dir().join("checkpoints");
    let last = follow(&handle, |event| {
        if let TrainEvent::Step { step: 1, .. } = event {
            // The disk goes away under the run: checkpointing must fail.
            std::fs::remove_dir_all(&ckpts).unwrap();
            std::fs::write(&ckpts, b"not a folder").unwrap();
        }
    })
    .pop();
    handle.join();
    match last {
        Some(TrainEvent::Failed { step, message }) => {
            assert_eq!(step, 3);
            assert!(message.contains("checkpoints"), "{message}");
        }
        other => panic!("expected a failed event, got {other:?}"),
    }
}

/// The validation loss before any step: with packing it must be the same
/// mean over the same trained tokens, only computed in fewer, longer rows.
fn first_val_loss(config: RunConfig) -> (f64, usize) {
    let handle = Session::start(config).unwrap();
    let mut val_rows = 0;
    let mut first = None;
    for event in follow(&handle, |_| {}) {
        match event {
            TrainEvent::Started { val_rows: n, .. } => val_rows = n,
            TrainEvent::Eval {
                step: 0, val_loss, ..
            } => first = first.or(Some(val_loss)),
            TrainEvent::Failed { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    (first.expect("an evaluation at step 0"), val_rows)
}

#[test]
fn packed_runs_train_on_the_same_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let short = ["train.max_steps=2", "train.checkpoint_every=0"];
    let (plain, plain_rows) = first_val_loss(quickstart(&runs, &short));
    let mut packed_args = short.to_vec();
    packed_args.push("data.packing=true");
    let (packed, packed_rows) = first_val_loss(quickstart(&runs, &packed_args));
    assert!(
        packed_rows < plain_rows,
        "{packed_rows} packed sequences vs {plain_rows} rows"
    );
    assert!(
        (packed - plain).abs() < 1e-4 * plain,
        "packed {packed} vs plain {plain}"
    );
}

/// The advice that ended a run.
fn stopping_advice(events: &[TrainEvent]) -> tunesmith::advisor::Advice {
    events
        .iter()
        .find_map(|e| match e {
            TrainEvent::Advice(a) if a.stops => Some(a.clone()),
            _ => None,
        })
        .expect("the advisor stopped the run")
}

/// The run directory named by the `started` event.
fn started_dir(events: &[TrainEvent]) -> PathBuf {
    events
        .iter()
        .find_map(|e| match e {
            TrainEvent::Started { run_dir, .. } => Some(run_dir.clone()),
            _ => None,
        })
        .expect("a started event")
}

/// What `advised_run` returns: the temporary folder (kept alive), the
/// events, the advice that stopped the run, and the run directory.
type Advised = (
    tempfile::TempDir,
    Vec<TrainEvent>,
    tunesmith::advisor::Advice,
    PathBuf,
);

/// A saturating run (learning rate 100) with extra overrides.
fn advised_run(extra: &[&str]) -> Advised {
    let tmp = tempfile::tempdir().unwrap();
    let mut overrides = vec![
        "train.learning_rate=100",
        "train.max_grad_norm=0",
        "train.max_steps=60",
    ];
    overrides.extend_from_slice(extra);
    let handle = Session::start(quickstart(&tmp.path().join("runs"), &overrides)).unwrap();
    let events = follow(&handle, |_| {});
    let stop = stopping_advice(&events);
    let run = started_dir(&events);
    (tmp, events, stop, run)
}

#[test]
fn the_advisor_stops_a_run_that_stopped_learning_and_best_is_exported() {
    // The saturated model's validation loss stops improving; the collapse
    // rule would stop it first, so it only warns here.
    let (_tmp, events, stop, run) = advised_run(&[
        "train.eval_every=5",
        "early_stopping.plateau=\"stop\"",
        "early_stopping.divergence=\"warn\"",
    ]);
    assert_eq!(stop.rule, tunesmith::advisor::Rule::Plateau);
    let tunesmith::advisor::Action::KeepBest { best_step } = stop.action else {
        panic!("{:?}", stop.action);
    };
    let Some(TrainEvent::Finished { step, reason, .. }) = events.last() else {
        panic!("{events:?}");
    };
    assert!(*step < 60, "stopped early, at {step}");
    assert!(
        reason.starts_with("stopped by the advisor (Plateau)"),
        "{reason}"
    );
    let trained =
        tunesmith::export::Trained::load(&run, &tunesmith::export::CheckpointChoice::Best).unwrap();
    assert_eq!(trained.step, best_step);
}

#[test]
fn a_learning_rate_far_too_high_is_stopped_as_divergence() {
    let (_tmp, events, stop, run) = advised_run(&["train.checkpoint_every=2"]);
    assert_eq!(stop.rule, tunesmith::advisor::Rule::Divergence);
    assert!(matches!(
        stop.action,
        // A tenth of the learning rate of that step (at most 100 / 10).
        tunesmith::advisor::Action::RollBack { suggested_lr } if suggested_lr > 0.0 && suggested_lr <= 10.0
    ));
    let Some(TrainEvent::Finished { step, reason, .. }) = events.last() else {
        panic!("{events:?}");
    };
    assert!(*step < 10, "stopped at {step}");
    assert!(reason.contains("collapsed"), "{reason}");
    // Rolled back: no checkpoint holds the collapsed weights.
    let newest = tunesmith::train::checkpoint::list(&run.join("checkpoints"))
        .last()
        .map(|(s, _)| *s)
        .unwrap_or(0);
    assert!(
        newest < stop.step,
        "checkpoint {newest} after the collapse at {}",
        stop.step
    );

    // Retry from the newest checkpoint at a sane rate: the run goes on
    // from there at the new rate. (Whether it recovers depends on that
    // checkpoint: the collapse rule needs three vanished steps to fire, so
    // the newest checkpoint before it may already be saturated.)
    let handle = Session::retry(&run, 3e-3).unwrap();
    let events = follow(&handle, |_| {});
    let Some(TrainEvent::Started { start_step, .. }) = events.first() else {
        panic!("{events:?}");
    };
    assert_eq!(*start_step, newest);
    let lrs: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { lr, .. } => Some(*lr),
            _ => None,
        })
        .collect();
    assert!(
        !lrs.is_empty() && lrs.iter().all(|&lr| lr <= 3e-3),
        "{lrs:?}"
    );
    let config = tunesmith::train::prepare::run_config(&run).unwrap();
    assert_eq!(config.train.learning_rate, 3e-3);
}

#[test]
fn a_run_that_overfits_stops_on_validation_patience_and_best_is_exported() {
    // Eight training rows memorised quickly; validation on forty others.
    let tmp = tempfile::tempdir().unwrap();
    let sample =
        std::fs::read_to_string(root().join("assets/datasets/alpaca-sample.jsonl")).unwrap();
    let lines: Vec<&str> = sample.lines().collect();
    let train = tmp.path().join("train.jsonl");
    let val = tmp.path().join("val.jsonl");
    std::fs::write(&train, lines[..8].join("\n")).unwrap();
    std::fs::write(&val, lines[99..140].join("\n")).unwrap();
    let config = quickstart(
        &tmp.path().join("runs"),
        &[
            &format!("data.train={}", train.display()),
            &format!("data.val={}", val.display()),
            "train.max_steps=300",
            "train.learning_rate=0.003",
            "train.warmup_steps=0",
            "train.eval_every=10",
            "train.micro_batch=8",
            "train.grad_accum=1",
        ],
    );
    let handle = Session::start(config).unwrap();
    let events = follow(&handle, |_| {});
    let stop = stopping_advice(&events);
    assert_eq!(stop.rule, tunesmith::advisor::Rule::Overfitting);
    let tunesmith::advisor::Action::KeepBest { best_step } = stop.action else {
        panic!("{:?}", stop.action);
    };
    let Some(TrainEvent::Finished {
        step,
        best_step: best,
        ..
    }) = events.last()
    else {
        panic!("{events:?}");
    };
    assert!(*step < 300, "stopped early, at {step}");
    assert_eq!(*best, Some(best_step));
    let run = started_dir(&events);
    let out = tmp.path().join("best-adapter");
    let options = tunesmith::export::ExportOptions {
        format: tunesmith::export::ExportFormat::Peft,
        checkpoint: tunesmith::export::CheckpointChoice::Best,
        out: out.clone(),
        gguf_dtype: Default::default(),
        model_dtype: Default::default(),
        overwrite: false,
    };
    let report = tunesmith::export::export(&run, &options).unwrap();
    assert_eq!(report.step, best_step);
    assert!(out.join("adapter_model.safetensors").is_file());
}

/// `tunesmith eval` scores a file as a run's validation does: on the run's
/// own validation file its loss is the run's final validation loss, the
/// base model scores that file differently, and a file with no readable
/// row is refused naming it.
#[test]
fn eval_scores_a_file_as_the_runs_validation_does() {
    let tmp = tempfile::tempdir().unwrap();
    let val = root().join("assets/datasets/chat-sample.jsonl");
    let args: Vec<String> = [
        "train",
        root().join("presets/quickstart.toml").to_str().unwrap(),
        "--backend",
        "cpu",
        "--set",
        &format!("output.runs_dir={}", tmp.path().display()),
        "--set",
        "train.max_steps=12",
        "--set",
        "train.eval_every=0",
        "--set",
        &format!("data.val={}", val.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let events = common::run_json(&args, None);
    let finished = events.last().unwrap();
    assert_eq!(finished["event"], "finished", "{finished}");
    let want = finished["final_val_loss"].as_f64().unwrap();
    let run_dir = run_dir_of(&events);
    let score = |target: &[&str], data: &Path| -> Result<serde_json::Value, String> {
        let out = bin()
            .arg("eval")
            .args(target)
            .arg("--data")
            .arg(data)
            .args(["--backend", "cpu", "--json"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    };
    let tuned = score(&["--adapter", run_dir.to_str().unwrap()], &val).unwrap();
    let got = tuned["loss"].as_f64().unwrap();
    assert!(
        ((got - want) / want).abs() < 1e-6,
        "eval says {got}, the run's validation {want}"
    );
    assert!(tuned["tokens"].as_u64().unwrap() > 0);
    // The base model on the same rows and settings (the run's max_length).
    let model = root().join("assets/models/tiny-llama");
    let base = score(
        &["--model", model.to_str().unwrap(), "--max-length", "128"],
        &val,
    )
    .unwrap();
    assert_eq!(base["tokens"], tuned["tokens"]);
    let base_loss = base["loss"].as_f64().unwrap();
    assert!(
        (base_loss - got).abs() > 1e-3,
        "training did not change the loss ({base_loss} vs {got})"
    );
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"bogus\": 1}\nnot json\n").unwrap();
    let err = score(&["--model", model.to_str().unwrap()], &bad).unwrap_err();
    assert!(err.contains("bad.jsonl"), "{err}");
}
