//! What the app holds between commands: where runs and bundled files
//! live, the paths the user granted through dialogs, and the runs this
//! window started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tunesmith::train::Controller;

use crate::error::{AppError, AppResult};

/// The app's state (`tauri::State<AppState>`).
pub struct AppState {
    /// Where new runs go and past runs are listed from.
    pub runs_dir: PathBuf,
    /// The bundled tiny model and sample datasets.
    pub assets_dir: PathBuf,
    /// The run presets (TOML).
    pub presets_dir: PathBuf,
    /// Files and folders the user picked in a dialog (and what is under
    /// them): the only places outside the runs folder and the bundled
    /// files the app reads or writes.
    granted: Mutex<Vec<PathBuf>>,
    /// Controls of the runs started (or resumed) in this window.
    pub(crate) running: Mutex<HashMap<PathBuf, Controller>>,
    /// A triage is running (one at a time).
    pub(crate) triage_running: std::sync::atomic::AtomicBool,
    /// Where `list_models` looks: the HF cache, Ollama and LM Studio.
    pub model_roots: tunesmith::catalog::Roots,
    /// Where `tunesmith models fetch` keeps models: a fetched SmolLM2
    /// there brings its quickstart preset.
    pub fetched_models_dir: Option<PathBuf>,
}

impl AppState {
    /// State over these folders (created when missing, for the runs).
    pub fn new(runs_dir: PathBuf, assets_dir: PathBuf, presets_dir: PathBuf) -> Self {
        let _ = std::fs::create_dir_all(&runs_dir);
        let canon = |p: PathBuf| p.canonicalize().unwrap_or(p);
        Self {
            runs_dir: canon(runs_dir),
            assets_dir: canon(assets_dir),
            presets_dir: canon(presets_dir),
            granted: Mutex::new(Vec::new()),
            running: Mutex::new(HashMap::new()),
            triage_running: std::sync::atomic::AtomicBool::new(false),
            model_roots: tunesmith::catalog::Roots::from_env(),
            fetched_models_dir: tunesmith::catalog::fetch::models_dir(),
        }
    }

    /// The same state, looking for fetched models in `dir` instead of the
    /// user's cache folder.
    pub fn with_fetched_models_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.fetched_models_dir = dir;
        self
    }

    /// The same state, listing models from `roots` instead of this
    /// machine's standard places.
    pub fn with_model_roots(mut self, roots: tunesmith::catalog::Roots) -> Self {
        self.model_roots = roots;
        self
    }

    /// Paths from the environment, else the checkout's own folders and the
    /// user's runs folder: `TUNESMITH_RUNS_DIR`, `TUNESMITH_ASSETS_DIR`,
    /// `TUNESMITH_PRESETS_DIR`.
    pub fn from_env() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let var = |name: &str, default: PathBuf| {
            std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
        };
        Self::new(
            var("TUNESMITH_RUNS_DIR", tunesmith::config::default_runs_dir()),
            var("TUNESMITH_ASSETS_DIR", root.join("assets")),
            var("TUNESMITH_PRESETS_DIR", root.join("presets")),
        )
    }

    /// Lets the app use `path` (picked by the user in a dialog).
    pub fn grant(&self, path: &Path) {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Ok(mut g) = self.granted.lock()
            && !g.contains(&path)
        {
            g.push(path);
        }
    }

    /// `path`, made absolute, when the app may use it: under the runs
    /// folder, the bundled assets, or something the user picked. A path
    /// that does not exist yet (an export target) is judged by its parent.
    pub fn check(&self, path: &Path) -> AppResult<PathBuf> {
        let resolved = resolve(path);
        let granted = self.granted.lock().map(|g| g.clone()).unwrap_or_default();
        let allowed = [&self.runs_dir, &self.assets_dir]
            .into_iter()
            .chain(granted.iter())
            .any(|root| resolved.starts_with(root));
        if allowed {
            Ok(resolved)
        } else {
            Err(AppError::new(format!(
                "{} was not chosen in this window; pick it with the Choose… button first",
                path.display()
            )))
        }
    }
}

/// Canonical form of `path`, or of its nearest existing ancestor with the
/// rest appended (for paths about to be created). `..` is never left in.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let mut tail = Vec::new();
    let mut cur = path;
    while let Some(parent) = cur.parent() {
        match cur.file_name() {
            Some(name) => tail.push(name.to_os_string()),
            // `..` or `.` in a path that does not exist: refuse to guess.
            None => return PathBuf::from("/nonexistent-path-refused"),
        }
        if let Ok(base) = parent.canonicalize() {
            let mut out = base;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return out;
        }
        cur = parent;
    }
    PathBuf::from("/nonexistent-path-refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_places_pass() {
        let runs = tempfile::tempdir().unwrap();
        let assets = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let s = AppState::new(
            runs.path().into(),
            assets.path().into(),
            assets.path().into(),
        );
        assert!(s.check(&runs.path().join("new-run/export/peft")).is_ok());
        assert!(s.check(assets.path()).is_ok());
        let picked = other.path().join("data.jsonl");
        std::fs::write(&picked, "{}").unwrap();
        let e = s.check(&picked).unwrap_err();
        assert!(e.0.contains("Choose"), "{e}");
        // A way out of the runs folder through `..` is refused.
        let escape = runs
            .path()
            .join("..")
            .join(other.path().file_name().unwrap());
        assert!(s.check(&escape).is_err());
        assert!(s.check(&runs.path().join("nope/../../x")).is_err());
        s.grant(&picked);
        assert!(s.check(&picked).is_ok());
        assert!(s.check(&other.path().join("other.jsonl")).is_err());
    }
}
