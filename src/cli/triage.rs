//! `tunesmith triage`: run a grid of candidates for the early window, keep
//! the most promising by the SFT guide's indicators, finish it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use tunesmith::train::TrainEvent;
use tunesmith::triage::{GridAxis, TriageEvent, TriageOptions, table, triage};

/// Arguments of `tunesmith triage`.
#[derive(Args)]
pub struct TriageArgs {
    /// The run configuration every candidate starts from.
    pub config: PathBuf,
    /// One axis of the grid, e.g. --grid lr=1e-5,2e-5,5e-5 --grid
    /// effective_batch=32,128 (keys: lr, effective_batch, rank, alpha,
    /// epochs or any section.key).
    #[arg(long = "grid", value_name = "KEY=V1,V2,...", required = true)]
    pub grid: Vec<GridAxis>,
    /// Override one key of every candidate (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where to compute (overrides model.backend).
    #[arg(long)]
    pub backend: Option<String>,
    /// Also run every other candidate to the end, to see whether the one
    /// kept is the one that ends best (costs the compute triage saves).
    #[arg(long)]
    pub run_all: bool,
    /// Print one JSON object per event, then the report.
    #[arg(long)]
    pub json: bool,
}

pub fn triage_cmd(args: TriageArgs) -> Result<()> {
    let mut overrides = args.overrides;
    if let Some(b) = args.backend {
        overrides.push(format!("model.backend={b}"));
    }
    let options = TriageOptions {
        run_all_to_end: args.run_all,
    };
    let json = args.json;
    let report = triage(&args.config, &overrides, &args.grid, options, |e| {
        if json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
            return;
        }
        match e {
            TriageEvent::CandidateStarted {
                name, to_the_end, ..
            } => {
                if *to_the_end {
                    eprintln!("{name}: continuing to the end");
                } else {
                    eprintln!("{name}: early window");
                }
            }
            TriageEvent::Train {
                name,
                event: TrainEvent::Finished { step, reason, .. },
            } => eprintln!("{name}: {reason} at step {step}"),
            TriageEvent::Train {
                name,
                event: TrainEvent::Advice(a),
            } => eprintln!("{name}: advice at step {}: {}", a.step, a.message),
            TriageEvent::Ranked { order } => {
                eprintln!("ranked by early dynamics: {}", order.join(" > "))
            }
            _ => {}
        }
    })?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", table(&report));
        println!("comparison in {}", report.dir.display());
    }
    Ok(())
}
