//! Where each store keeps its models, and how to enumerate them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Format, Store};

/// The folders to search, by store.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// Hugging Face hub caches (folders of `models--ORG--NAME`).
    pub hf_cache: Vec<PathBuf>,
    /// Ollama model stores (folders holding `manifests/` and `blobs/`).
    pub ollama: Vec<PathBuf>,
    /// LM Studio models folders (`publisher/repo/file.gguf`).
    pub lm_studio: Vec<PathBuf>,
    /// Any other folders, searched a few levels deep.
    pub folders: Vec<PathBuf>,
}

impl Roots {
    /// The places each tool keeps models on this machine, honouring
    /// `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME` and `OLLAMA_MODELS`, and
    /// the folder of models `tunesmith models fetch` downloaded.
    pub fn from_env() -> Self {
        Self::from_vars(|key| std::env::var_os(key))
    }

    /// As [`Roots::from_env`], with the environment given by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let get = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = get("HOME").or_else(|| get("USERPROFILE"));
        let mut roots = Self::default();

        let hf = get("HF_HUB_CACHE")
            .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
            .or_else(|| get("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| get("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
            .or_else(|| home.as_ref().map(|h| h.join(".cache/huggingface/hub")));
        roots.hf_cache.extend(hf);

        match get("OLLAMA_MODELS") {
            Some(dir) => roots.ollama.push(dir),
            None => {
                roots
                    .ollama
                    .extend(home.as_ref().map(|h| h.join(".ollama/models")));
                // Linux's install script runs Ollama as its own user.
                if cfg!(target_os = "linux") {
                    roots
                        .ollama
                        .push(PathBuf::from("/usr/share/ollama/.ollama/models"));
                }
            }
        }

        if let Some(h) = &home {
            roots.lm_studio.push(h.join(".lmstudio/models"));
            // LM Studio before 0.3 kept models here.
            roots.lm_studio.push(h.join(".cache/lm-studio/models"));
        }
        // What `tunesmith models fetch` keeps.
        roots.folders.extend(super::fetch::models_dir_from(&var));
        roots
    }

    /// No standard places: only folders added with [`Roots::with_folder`]
    /// or set field by field.
    pub fn none() -> Self {
        Self::default()
    }

    /// Also searches `dir`.
    pub fn with_folder(mut self, dir: impl Into<PathBuf>) -> Self {
        self.folders.push(dir.into());
        self
    }

    pub(super) fn all(&self) -> Vec<(Store, PathBuf)> {
        let tag = |store: Store, dirs: &[PathBuf]| -> Vec<(Store, PathBuf)> {
            dirs.iter().map(|d| (store, d.clone())).collect()
        };
        [
            tag(Store::HfCache, &self.hf_cache),
            tag(Store::Ollama, &self.ollama),
            tag(Store::LmStudio, &self.lm_studio),
            tag(Store::Folder, &self.folders),
        ]
        .concat()
    }
}

/// A model's location and name, before anything of it is read.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub store: Store,
    pub name: String,
    pub path: PathBuf,
    pub format: Format,
    /// Something the store says that the files cannot (a missing blob...).
    pub problem: Option<String>,
    /// A remark that does not stop training.
    pub note: Option<String>,
}

impl Candidate {
    fn new(store: Store, name: String, path: PathBuf, format: Format) -> Self {
        Self {
            store,
            name,
            path,
            format,
            problem: None,
            note: None,
        }
    }
}

/// Every model-looking thing of `store` under `root`.
pub(super) fn candidates(store: Store, root: &Path) -> Vec<Candidate> {
    match store {
        Store::HfCache => hf_cache(root),
        Store::Ollama => ollama(root),
        Store::LmStudio | Store::Folder => folder(store, root),
    }
}

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `models--ORG--NAME/snapshots/REV/`: one model per snapshot, or one per
/// GGUF file for the many repositories that publish quantized files.
fn hf_cache(root: &Path) -> Vec<Candidate> {
    let mut out = Vec::new();
    for repo in sorted_entries(root) {
        let Some(id) = file_name(&repo)
            .strip_prefix("models--")
            .map(str::to_string)
        else {
            continue;
        };
        let id = id.replacen("--", "/", 1);
        let main = std::fs::read_to_string(repo.join("refs/main"))
            .ok()
            .map(|s| s.trim().to_string());
        let snapshots: Vec<PathBuf> = sorted_entries(&repo.join("snapshots"))
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        for snap in &snapshots {
            let rev = file_name(snap);
            // Name a revision only when it is not the one `main` points at.
            let name = if snapshots.len() > 1 && main.as_deref() != Some(rev.as_str()) {
                format!("{id}@{}", &rev[..rev.len().min(8)])
            } else {
                id.clone()
            };
            let mut ggufs = Vec::new();
            walk(snap, 2, &mut |p| {
                if p.is_file() && is_gguf(p) {
                    ggufs.push(p.to_path_buf());
                }
                true
            });
            let has_config = snap.join("config.json").is_file();
            if has_config || ggufs.is_empty() {
                let mut c = Candidate::new(Store::HfCache, name.clone(), snap.clone(), Format::Hf);
                if !has_config {
                    c.problem = Some(
                        "no config.json in the snapshot: an unfinished download, or not a model"
                            .to_string(),
                    );
                }
                out.push(c);
            }
            for g in ggufs {
                let rel = g
                    .strip_prefix(snap)
                    .unwrap_or(&g)
                    .to_string_lossy()
                    .into_owned();
                out.push(Candidate::new(
                    Store::HfCache,
                    format!("{name}/{rel}"),
                    g,
                    Format::Gguf,
                ));
            }
        }
    }
    out
}

/// `manifests/HOST/NAMESPACE/MODEL/TAG` (JSON) naming the GGUF blob
/// `blobs/sha256-HEX` by its `application/vnd.ollama.image.model` layer.
fn ollama(root: &Path) -> Vec<Candidate> {
    let manifests = root.join("manifests");
    let mut files = Vec::new();
    walk(&manifests, 4, &mut |p| {
        if p.is_file() {
            files.push(p.to_path_buf());
        }
        true
    });
    let mut out = Vec::new();
    for file in files {
        let Ok(rel) = file.strip_prefix(&manifests) else {
            continue;
        };
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [host, namespace, model, tag] = parts.as_slice() else {
            continue;
        };
        let name = match (host.as_str(), namespace.as_str()) {
            ("registry.ollama.ai", "library") => format!("{model}:{tag}"),
            ("registry.ollama.ai", _) => format!("{namespace}/{model}:{tag}"),
            _ => format!("{host}/{namespace}/{model}:{tag}"),
        };
        out.push(ollama_manifest(root, name, &file));
    }
    out
}

fn ollama_manifest(root: &Path, name: String, manifest: &Path) -> Candidate {
    let mut c = Candidate::new(Store::Ollama, name, manifest.to_path_buf(), Format::Gguf);
    let json: serde_json::Value = match std::fs::read_to_string(manifest)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            c.problem = Some(format!(
                "cannot read the manifest {}: {e}",
                manifest.display()
            ));
            return c;
        }
    };
    let layers = json
        .get("layers")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    let media = |l: &serde_json::Value| {
        l.get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string()
    };
    let model = layers
        .iter()
        .find(|l| media(l) == "application/vnd.ollama.image.model");
    let Some(digest) = model.and_then(|l| l.get("digest")).and_then(|d| d.as_str()) else {
        c.problem = Some(format!(
            "the manifest {} has no model layer",
            manifest.display()
        ));
        return c;
    };
    let blob = root.join("blobs").join(digest.replacen(':', "-", 1));
    c.path = blob.clone();
    if !blob.is_file() {
        c.problem = Some(format!(
            "its weights blob {} is missing; run `ollama pull` again",
            blob.display()
        ));
    }
    let mut notes = Vec::new();
    if layers
        .iter()
        .any(|l| media(l) == "application/vnd.ollama.image.projector")
    {
        notes.push("its vision projector is left aside (text only)");
    }
    if layers
        .iter()
        .any(|l| media(l) == "application/vnd.ollama.image.adapter")
    {
        notes.push("Ollama applies an adapter on top; Tunesmith trains the base blob alone");
    }
    if !notes.is_empty() {
        c.note = Some(notes.join("; "));
    }
    c
}

/// HF folders (config.json) and GGUF files a few levels under `root`.
fn folder(store: Store, root: &Path) -> Vec<Candidate> {
    let mut out = Vec::new();
    let name_of = |p: &Path| match p.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
        _ => file_name(p),
    };
    walk(root, 4, &mut |p| {
        if p.is_dir() && p.join("config.json").is_file() {
            out.push(Candidate::new(
                store,
                name_of(p),
                p.to_path_buf(),
                Format::Hf,
            ));
            // A model folder's subfolders are its own (onnx/, original/...).
            return false;
        }
        if p.is_file() && is_gguf(p) {
            out.push(Candidate::new(
                store,
                name_of(p),
                p.to_path_buf(),
                Format::Gguf,
            ));
        }
        true
    });
    out
}

/// Visits `root` and what lies below it to `max_depth`, in name order,
/// without following symlinked folders or entering hidden ones; `visit`
/// returns whether to descend. Stops after a bounded number of entries so
/// that pointing it at a home folder cannot hang the wizard.
fn walk(root: &Path, max_depth: usize, visit: &mut dyn FnMut(&Path) -> bool) {
    const MAX_ENTRIES: usize = 20_000;
    let mut seen = 0usize;
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((path, depth)) = stack.pop() {
        seen += 1;
        if seen > MAX_ENTRIES {
            return;
        }
        if !visit(&path) || depth == max_depth {
            continue;
        }
        // The root itself may be a link (a cache moved to another disk).
        let is_dir = if depth == 0 {
            path.is_dir()
        } else {
            std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
        };
        if !is_dir {
            continue;
        }
        let children: Vec<PathBuf> = sorted_entries(&path)
            .into_iter()
            .filter(|p| !file_name(p).starts_with('.'))
            .collect();
        stack.extend(children.into_iter().rev().map(|p| (p, depth + 1)));
    }
}
