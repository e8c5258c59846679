//! `tunesmith train`, `resume` and `runs`: drive a `Session` and show its
//! events as a progress bar or as JSON lines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use tunesmith::config::{BackendName, RunConfig};
use tunesmith::memory::human_bytes;
use tunesmith::train::runs::list_runs;
use tunesmith::train::{RunHandle, Session, TrainEvent};

/// Arguments of `tunesmith train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The run configuration (TOML; see presets/ and docs/config.md).
    pub config: PathBuf,
    /// Override one key, e.g. --set train.max_steps=20 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where to compute (overrides model.backend): auto, cpu, wgpu or cuda.
    #[arg(long)]
    pub backend: Option<String>,
    /// Print one JSON object per event on stdout instead of a progress bar
    /// (schema: docs/events.md).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `tunesmith resume`.
#[derive(Args)]
pub struct ResumeArgs {
    /// The run directory to continue from its newest checkpoint.
    pub run_dir: PathBuf,
    /// Continue with this learning rate (after a divergence: roll back to
    /// the last good checkpoint and retry with the rate the advice
    /// suggests). The run's config.toml records it.
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Print one JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn train(args: TrainArgs) -> Result<()> {
    let mut overrides = args.overrides;
    if let Some(b) = args.backend {
        overrides.push(format!("model.backend={b}"));
    }
    let config = RunConfig::load(&args.config, &overrides)?;
    let _: BackendName = config.model.backend;
    let handle = Session::start(config)?;
    follow(handle, args.json)
}

pub fn resume(args: ResumeArgs) -> Result<()> {
    let handle = match args.learning_rate {
        Some(lr) => Session::retry(&args.run_dir, lr)?,
        None => Session::resume(&args.run_dir)?,
    };
    follow(handle, args.json)
}

pub fn runs_list(dir: Option<PathBuf>, json: bool) -> Result<()> {
    let root = dir.unwrap_or_else(tunesmith::config::default_runs_dir);
    let runs = list_runs(&root);
    if json {
        for r in &runs {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    if runs.is_empty() {
        eprintln!("no runs in {}", root.display());
        return Ok(());
    }
    println!(
        "{:<36} {:<6} {:<24} {:>11} {:>9} {:>9}",
        "run", "method", "status", "step", "loss", "best val"
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for r in runs {
        println!(
            "{:<36} {:<6} {:<24} {:>11} {:>9} {:>9}",
            r.name,
            r.method.as_deref().unwrap_or("-"),
            r.status,
            format!("{}/{}", r.step, r.total_steps),
            num(r.last_loss),
            num(r.best_val_loss)
        );
    }
    println!("(in {})", root.display());
    Ok(())
}

pub fn runs_latest(dir: Option<PathBuf>) -> Result<()> {
    let root = dir.unwrap_or_else(tunesmith::config::default_runs_dir);
    match list_runs(&root).pop() {
        Some(r) => {
            println!("{}", r.dir.display());
            Ok(())
        }
        None => bail!("no runs in {}", root.display()),
    }
}

/// Ctrl-C once: stop after the current step with a checkpoint. Twice: quit now.
fn install_ctrl_c(handle: &RunHandle) {
    static PRESSES: AtomicUsize = AtomicUsize::new(0);
    let controller = handle.controller();
    let _ = ctrlc::set_handler(move || {
        if PRESSES.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\nstopping after this step (checkpoint first); Ctrl-C again to quit now");
            controller.send(tunesmith::train::Control::Stop);
        } else {
            std::process::exit(130);
        }
    });
}

fn follow(handle: RunHandle, json: bool) -> Result<()> {
    install_ctrl_c(&handle);
    let run_dir = handle.run_dir().to_path_buf();
    let mut bar: Option<ProgressBar> = None;
    let mut failure = None;
    for event in handle.events().iter() {
        if json {
            println!("{}", serde_json::to_string(&event)?);
        } else {
            show(&event, &mut bar, &run_dir);
        }
        match event {
            TrainEvent::Failed { message, .. } => failure = Some(message),
            TrainEvent::Finished { .. } => break,
            _ => {}
        }
    }
    handle.join();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(message) = failure {
        bail!(
            "training failed: {message} (run directory {})",
            run_dir.display()
        );
    }
    Ok(())
}

fn show(event: &TrainEvent, bar: &mut Option<ProgressBar>, run_dir: &Path) {
    let print = |bar: &Option<ProgressBar>, line: String| match bar {
        Some(b) => b.println(line),
        None => eprintln!("{line}"),
    };
    match event {
        TrainEvent::Started {
            start_step,
            total_steps,
            train_rows,
            val_rows,
            truncated_rows,
            bad_rows,
            trainable_params,
            total_params,
            method,
            backend,
            warnings,
            estimated_memory_bytes,
            base_storage,
            ..
        } => {
            eprintln!("run       {}", run_dir.display());
            eprintln!("backend   {backend}");
            if !base_storage.is_empty() {
                eprintln!("base      {base_storage}");
            }
            if let Some(bytes) = estimated_memory_bytes {
                eprintln!("memory    {} estimated at peak", human_bytes(*bytes));
            }
            eprintln!(
                "method    {method}: {} trainable of {} parameters ({:.2}%)",
                trainable_params,
                total_params,
                100.0 * *trainable_params as f64 / (*total_params).max(1) as f64
            );
            eprintln!(
                "data      {train_rows} train / {val_rows} validation rows; \
                 {truncated_rows} truncated, {bad_rows} bad rows skipped"
            );
            for w in warnings {
                eprintln!("warning   {w}");
            }
            if *start_step > 0 {
                eprintln!("resuming  from step {start_step}");
            }
            let b = ProgressBar::new(*total_steps as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_position(*start_step as u64);
            *bar = Some(b);
        }
        TrainEvent::Preparing { message, .. } => match bar {
            Some(b) => b.set_message(message.clone()),
            None => eprintln!("{message}"),
        },
        TrainEvent::Step {
            step,
            loss,
            grad_norm,
            tokens_per_sec,
            lr,
            terms,
            ..
        } => {
            if let Some(b) = bar {
                b.set_position(*step as u64);
                let terms: String = terms
                    .iter()
                    .map(|(k, v)| format!(" | {k} {v:.4}"))
                    .collect();
                b.set_message(format!(
                    "loss {loss:.4}{terms} | grad {grad_norm:.3} | lr {lr:.2e} | {tokens_per_sec:.0} tok/s"
                ));
            }
        }
        TrainEvent::Ranks { budget, ranks, .. } => {
            // Every reallocation would be a line: the bar says the latest.
            if let Some(b) = bar {
                let kept: usize = ranks.values().sum();
                let message = b.message();
                let head = message.split(" | ranks ").next().unwrap_or_default();
                b.set_message(format!("{head} | ranks {kept}/{budget}"));
            }
        }
        TrainEvent::Eval {
            step,
            val_loss,
            best,
        } => print(
            bar,
            format!(
                "step {step}: validation loss {val_loss:.4}{}",
                if *best { " (best)" } else { "" }
            ),
        ),
        TrainEvent::Checkpoint { path, reason, .. } => {
            print(bar, format!("checkpoint ({reason}) {}", path.display()))
        }
        TrainEvent::Paused { step } => print(bar, format!("paused at step {step}")),
        TrainEvent::Resumed { step } => print(bar, format!("resumed at step {step}")),
        TrainEvent::Finished {
            step,
            reason,
            final_val_loss,
            best_val_loss,
            elapsed_s,
            peak_memory_bytes,
            ..
        } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            let f = |v: &Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
            eprintln!(
                "{reason} at step {step} in {elapsed_s:.1}s; validation loss {} (best {})",
                f(final_val_loss),
                f(best_val_loss)
            );
            if let Some(bytes) = peak_memory_bytes {
                eprintln!("peak memory {} (process resident)", human_bytes(*bytes));
            }
            eprintln!("run directory {}", run_dir.display());
        }
        TrainEvent::Failed { step, message } => {
            print(bar, format!("failed at step {step}: {message}"))
        }
        TrainEvent::Advice(a) => print(
            bar,
            format!(
                "advice    [{:?}] step {}: {}",
                a.severity, a.step, a.message
            ),
        ),
    }
}
