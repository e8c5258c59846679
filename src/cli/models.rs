//! `tunesmith models list`: models already on this machine — the Hugging
//! Face cache, Ollama, LM Studio and chosen folders — and whether each can
//! be trained; `tunesmith models fetch`: a real model from a registry.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use tunesmith::catalog::{self, Roots, fetch as fetching};
use tunesmith::memory::human_bytes;

/// Arguments of `tunesmith models list`.
#[derive(Args)]
pub struct ListArgs {
    /// Also search this folder, a few levels deep (repeatable).
    #[arg(long)]
    pub dir: Vec<PathBuf>,
    /// Search only the --dir folders, not the HF cache, Ollama or LM Studio.
    #[arg(long)]
    pub only_dirs: bool,
    /// Print one JSON object: the folders searched and every model found.
    #[arg(long)]
    pub json: bool,
}

pub fn list(args: ListArgs) -> Result<()> {
    let mut roots = if args.only_dirs {
        Roots::none()
    } else {
        Roots::from_env()
    };
    roots.folders.extend(args.dir);
    let listing = catalog::list(&roots);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    for (store, dir, exists) in &listing.searched {
        let state = if *exists { "" } else { " (not there)" };
        eprintln!("searched {:<10} {}{state}", store.label(), dir.display());
    }
    if listing.models.is_empty() {
        println!("no models found; pass --dir FOLDER to search elsewhere");
        return Ok(());
    }
    let dash = || "-".to_string();
    for m in &listing.models {
        let verdict = if m.trainable {
            "trainable"
        } else {
            "cannot train"
        };
        println!(
            "{:<10} {}\n           {} · {} params · {} · {} · {verdict}\n           {}",
            m.store.label(),
            m.name,
            m.architecture.clone().unwrap_or_else(dash),
            m.parameters.map_or_else(dash, crate::human_count),
            m.dtype.clone().unwrap_or_else(dash),
            human_bytes(m.size_bytes),
            m.path.display(),
        );
        if let Some(note) = &m.note {
            println!(
                "           {}: {note}",
                if m.trainable { "note" } else { "why" }
            );
        }
    }
    let trainable = listing.models.iter().filter(|m| m.trainable).count();
    println!(
        "{} model(s), {trainable} trainable; use a path above as model.path",
        listing.models.len()
    );
    Ok(())
}

/// Arguments of `tunesmith models fetch`.
#[derive(Args)]
pub struct FetchArgs {
    /// Which model (`smollm2-135m-instruct`).
    #[arg(value_parser = known_id)]
    pub id: String,
    /// Keep it here instead of the cache folder
    /// (`$TUNESMITH_CACHE_DIR/models`, else `~/.cache/tunesmith/models`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn known_id(s: &str) -> Result<String, String> {
    match fetching::find(s) {
        Some(m) => Ok(m.id.to_string()),
        None => Err(format!(
            "unknown model; Tunesmith can fetch: {}",
            fetching::KNOWN
                .iter()
                .map(|m| format!("{} ({})", m.id, m.title))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub fn fetch(args: FetchArgs) -> Result<()> {
    let model = fetching::find(&args.id).context("unknown model id")?;
    let dir = match args.dir {
        Some(d) => d,
        None => fetching::models_dir().ok_or(fetching::FetchError::NoCacheDir)?,
    };
    let path = fetching::fetch(model, &dir, |line| eprintln!("{line}"))?;
    eprintln!("{}: {}, license {}", model.id, model.title, model.license);
    println!("{}", path.display());
    Ok(())
}
