//! `tunesmith plan`: what a run configuration will cost before it starts —
//! trainable parameters, the memory estimate by part, and whether it fits
//! this machine (with the changes that would make it fit).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use tunesmith::config::RunConfig;
use tunesmith::memory::human_bytes;

/// Arguments of `tunesmith plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// The run configuration (TOML; see presets/ and docs/config.md).
    pub config: PathBuf,
    /// Override one key, e.g. --set data.max_length=1024 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Print the estimate as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn plan(args: PlanArgs) -> Result<()> {
    let config = RunConfig::load(&args.config, &args.overrides)?;
    let e = tunesmith::plan::estimate(&config)?;
    if args.json {
        println!("{}", serde_json::to_string(&e)?);
        return Ok(());
    }
    let m = &e.memory;
    println!(
        "trainable parameters  {} of {}",
        e.trainable_params, e.total_params
    );
    let where_ = if m.cpu_kernels { "CPU" } else { "GPU" };
    println!("memory ({where_})          {}", human_bytes(m.total));
    for (part, bytes) in [
        ("weights", m.weights),
        ("trainable", m.trainable),
        ("gradients", m.gradients),
        ("optimizer", m.optimizer),
        ("activations", m.activations),
        ("runtime", m.runtime),
        ("loading", m.loading),
        ("checkpointing", m.checkpointing),
    ] {
        println!("  {part:<20}{}", human_bytes(bytes));
    }
    if let Some(fit) = &e.fit {
        println!("{}: {}", fit.memory, fit.verdict);
        for s in &fit.suggestions {
            let verdict = if s.fits { "fits" } else { "still too much" };
            println!(
                "  try {} ({}): {}, {verdict}",
                s.change,
                s.reason,
                human_bytes(s.total)
            );
        }
    }
    Ok(())
}
