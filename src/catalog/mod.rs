//! Models already on the user's disk: Hugging Face cache snapshots, Ollama's
//! store, LM Studio's folders, and GGUF files or model folders under a
//! chosen directory — each with what it is and whether Tunesmith can train
//! it (and why not).
//!
//! Nothing here loads tensor data: only config.json, safetensors headers
//! and GGUF headers are read, so listing a store of many gigabytes is quick.

mod describe;
pub mod fetch;
mod stores;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use stores::Roots;

/// Where a model was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Store {
    /// A snapshot in the Hugging Face hub cache.
    HfCache,
    /// A model pulled by Ollama (a manifest naming a GGUF blob).
    Ollama,
    /// A file or folder in LM Studio's models folder.
    LmStudio,
    /// A folder the user asked to search.
    Folder,
}

impl Store {
    /// The store's name as users know it.
    pub fn label(self) -> &'static str {
        match self {
            Store::HfCache => "HF cache",
            Store::Ollama => "Ollama",
            Store::LmStudio => "LM Studio",
            Store::Folder => "folder",
        }
    }
}

/// The storage format of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A Hugging Face folder: config.json and safetensors (or other) weights.
    Hf,
    /// A single GGUF file.
    Gguf,
}

/// One model found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct FoundModel {
    /// The name its store gives it: `org/name` for the HF cache,
    /// `name:tag` for Ollama, `publisher/repo/file.gguf` for LM Studio.
    pub name: String,
    pub store: Store,
    pub format: Format,
    /// What to put in a run's `model.path`.
    pub path: PathBuf,
    /// `model_type` of config.json or `general.architecture` of a GGUF file.
    pub architecture: Option<String>,
    /// Parameters stored in the weights.
    pub parameters: Option<u64>,
    /// The dominant storage type ("BF16") or the GGUF file type ("Q4_K_M").
    pub dtype: Option<String>,
    /// Bytes on disk (symlinks followed, as the HF cache uses them).
    pub size_bytes: u64,
    /// Whether Tunesmith can train it.
    pub trainable: bool,
    /// Why not, when it cannot; a note (a vision projector left aside...)
    /// when it can.
    pub note: Option<String>,
}

/// What `tunesmith models list` prints, by store.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The folders that were searched, with whether each exists.
    pub searched: Vec<(Store, PathBuf, bool)>,
    pub models: Vec<FoundModel>,
}

/// Finds and describes every model under `roots`.
pub fn list(roots: &Roots) -> Listing {
    let mut searched = Vec::new();
    let mut models = Vec::new();
    for (store, root) in roots.all() {
        let exists = root.is_dir();
        searched.push((store, root.clone(), exists));
        if !exists {
            continue;
        }
        for candidate in stores::candidates(store, &root) {
            if let Some(found) = describe::describe(candidate) {
                models.push(found);
            }
        }
    }
    // A folder searched explicitly may lie inside a store already listed;
    // within a store, two names for one file (Ollama tags) both stay.
    let in_stores: std::collections::BTreeSet<PathBuf> = models
        .iter()
        .filter(|m| m.store != Store::Folder)
        .map(|m| canonical(&m.path))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    models.retain(|m| {
        m.store != Store::Folder || {
            let path = canonical(&m.path);
            !in_stores.contains(&path) && seen.insert(path)
        }
    });
    Listing { searched, models }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
