//! The wizard's commands: bundled files, presets, methods, backends,
//! dialogs, dataset and model inspection, estimates and the TOML preview.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_dialog::DialogExt;
use tunesmith::catalog::Listing;
use tunesmith::config::RunConfig;
use tunesmith::data::{DataReport, Format, LoadOptions};
use tunesmith::methods::catalog::{MethodSpec, catalog};
use tunesmith::plan::Estimate;
use tunesmith::{BackendChoice, ModelSummary, TextTokenizer};

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The bundled model and datasets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundled {
    pub model: Named,
    pub datasets: Vec<Dataset>,
    pub runs_dir: PathBuf,
}

/// A bundled file or folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
    pub path: PathBuf,
}

/// A bundled dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
}

pub(crate) fn bundled_of(state: &AppState) -> Bundled {
    let data = state.assets_dir.join("datasets");
    let dataset = |file: &str, description: &str| Dataset {
        name: file.to_string(),
        path: data.join(file),
        description: description.to_string(),
    };
    Bundled {
        model: Named {
            name: "tiny-llama (random weights, for trying things out)".into(),
            path: state.assets_dir.join("models/tiny-llama"),
        },
        datasets: vec![
            dataset(
                "alpaca-sample.jsonl",
                "381 instruction/answer rows (alpaca format) about capitals, arithmetic and spelling",
            ),
            dataset(
                "chat-sample.jsonl",
                "150 short conversations (messages format), some with a system prompt",
            ),
        ],
        runs_dir: state.runs_dir.clone(),
    }
}

/// `bundled` → the bundled model, sample datasets and the runs folder.
#[tauri::command(rename_all = "snake_case")]
pub fn bundled(state: State<'_, AppState>) -> Bundled {
    bundled_of(&state)
}

/// A preset as the wizard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Preset {
    pub name: String,
    pub title: String,
    pub description: String,
    pub config: RunConfig,
}

/// `presets` → every presets/*.toml, with the bundled model and first
/// sample dataset where the preset leaves them empty, and runs going to the
/// app's runs folder.
#[tauri::command(rename_all = "snake_case")]
pub fn presets(state: State<'_, AppState>) -> AppResult<Vec<Preset>> {
    presets_of(&state)
}

pub(crate) fn presets_of(state: &AppState) -> AppResult<Vec<Preset>> {
    let bundled = bundled_of(state);
    let known = [
        (
            "quickstart",
            "Quickstart",
            "LoRA r16 on all linear layers, a few epochs: see a run work in about a minute.",
        ),
        (
            "sft-guide",
            "SFT guide recipe",
            "Full fine-tuning with a large effective batch and a low constant learning rate, as Pareja et al. 2024 recommend.",
        ),
        (
            "low-memory",
            "Low memory",
            "LoRA r8 on q/v only, micro-batch 1 with accumulation: for big models on small GPUs.",
        ),
    ];
    let mut out = Vec::new();
    for (name, title, description) in known {
        let path = state.presets_dir.join(format!("{name}.toml"));
        let mut config = RunConfig::load(&path, &[])?;
        if config.model.path.as_os_str().is_empty() {
            config.model.path = bundled.model.path.clone();
        }
        if config.data.train.as_os_str().is_empty() {
            config.data.train = bundled.datasets[0].path.clone();
        }
        config.output.runs_dir = state.runs_dir.clone();
        out.push(Preset {
            name: name.into(),
            title: title.into(),
            description: description.into(),
            config,
        });
    }
    if let Some(preset) = real_quickstart(state)? {
        out.insert(1, preset);
    }
    Ok(out)
}

/// The quickstart on the real SmolLM2-135M-Instruct, once `make run` (or
/// `tunesmith models fetch smollm2-135m-instruct`) has put it in the cache.
fn real_quickstart(state: &AppState) -> AppResult<Option<Preset>> {
    use tunesmith::catalog::fetch::{SMOLLM2_135M_INSTRUCT, cached};
    let Some(model) = state
        .fetched_models_dir
        .as_deref()
        .and_then(|dir| cached(&SMOLLM2_135M_INSTRUCT, dir))
    else {
        return Ok(None);
    };
    let path = state.presets_dir.join("quickstart-smollm2.toml");
    if !path.is_file() {
        return Ok(None);
    }
    let mut config = RunConfig::load(&path, &[])?;
    state.grant(&model);
    config.model.path = model;
    config.output.runs_dir = state.runs_dir.clone();
    Ok(Some(Preset {
        name: "quickstart-smollm2".into(),
        title: "Quickstart on SmolLM2".into(),
        description: "LoRA on the real SmolLM2-135M-Instruct: a few minutes on a CPU teach it the Smithy persona; ask base and tuned side by side in Chat afterwards.".into(),
        config,
    }))
}

/// `methods` → one card per method the engine trains, with the fields the
/// method step edits (the engine's own list, as `tunesmith methods --json`).
#[tauri::command(rename_all = "snake_case")]
pub fn methods() -> Vec<MethodSpec> {
    catalog()
}

/// A backend and whether it can run here.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    pub name: String,
    pub available: bool,
    /// The device found, or why the backend is unavailable.
    pub detail: String,
}

/// `backends` → auto, cpu, wgpu and cuda, each tried for real.
#[tauri::command(rename_all = "snake_case")]
pub async fn backends() -> AppResult<Vec<BackendInfo>> {
    blocking(|| {
        Ok(BackendChoice::NAMES
            .iter()
            .filter_map(|n| BackendChoice::parse(n).ok())
            .map(|choice| {
                let (available, detail) = if !choice.is_compiled() {
                    (false, "not compiled into this build".to_string())
                } else {
                    match tunesmith::backend::select(choice) {
                        Ok(d) => (true, d.description),
                        Err(e) => (false, e.to_string()),
                    }
                };
                BackendInfo {
                    name: choice.to_string(),
                    available,
                    detail,
                }
            })
            .collect())
    })
    .await
}

/// What `pick_path` opens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickKind {
    Dataset,
    Model,
    /// A GGUF file as the base model.
    Gguf,
    Export,
}

/// `pick_path` → a path the user chose in a native dialog (and that the
/// app may use from now on), or `null` when cancelled.
#[tauri::command(rename_all = "snake_case")]
pub async fn pick_path<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    kind: PickKind,
    suggested_name: Option<String>,
) -> AppResult<Option<PathBuf>> {
    let dialog = app.dialog().file();
    let (tx, rx) = std::sync::mpsc::channel();
    let send = move |p: Option<tauri_plugin_dialog::FilePath>| {
        let _ = tx.send(p.and_then(|p| p.into_path().ok()));
    };
    match kind {
        PickKind::Dataset => dialog
            .set_title("Choose a dataset")
            .add_filter(
                "Datasets",
                &["jsonl", "json", "csv", "tsv", "parquet", "txt"],
            )
            .pick_file(send),
        PickKind::Model => dialog
            .set_title("Choose a Hugging Face model folder")
            .pick_folder(send),
        PickKind::Gguf => dialog
            .set_title("Choose a GGUF model file")
            .add_filter("GGUF models", &["gguf"])
            .pick_file(send),
        PickKind::Export => dialog
            .set_title("Export to")
            .set_file_name(suggested_name.unwrap_or_else(|| "export".into()))
            .save_file(send),
    }
    let picked = blocking(move || Ok(rx.recv().ok().flatten())).await?;
    if let Some(p) = &picked {
        state.grant(p);
    }
    Ok(picked)
}

/// `inspect_dataset` → the dataset report; rendered and tokenized when a
/// model is given.
#[tauri::command(rename_all = "snake_case")]
pub async fn inspect_dataset(
    state: State<'_, AppState>,
    path: PathBuf,
    model_path: Option<PathBuf>,
    format: Option<Format>,
    max_length: Option<usize>,
) -> AppResult<DataReport> {
    let path = state.check(&path)?;
    let model = model_path.map(|m| state.check(&m)).transpose()?;
    blocking(move || {
        let tokenizer = model.as_deref().map(TextTokenizer::from_dir).transpose()?;
        let options = LoadOptions {
            format: format.unwrap_or(Format::Auto),
            max_length: max_length.unwrap_or(LoadOptions::default().max_length),
            // A report lists every bad row instead of giving up.
            max_bad_fraction: 1.0,
            ..LoadOptions::default()
        };
        Ok(tunesmith::data::inspect(
            &path,
            tokenizer.as_ref(),
            &options,
        )?)
    })
    .await
}

/// `inspect_model` → architecture, sizes and dtypes from the headers.
#[tauri::command(rename_all = "snake_case")]
pub async fn inspect_model(state: State<'_, AppState>, path: PathBuf) -> AppResult<ModelSummary> {
    let path = state.check(&path)?;
    blocking(move || Ok(ModelSummary::from_dir(&path)?)).await
}

/// `list_models` → the models on this machine (HF cache, Ollama, LM
/// Studio, and the granted folders in `dirs`), each with whether it can be
/// trained. What it finds may be opened from then on, as if picked.
#[tauri::command(rename_all = "snake_case")]
pub async fn list_models(
    state: State<'_, AppState>,
    dirs: Option<Vec<PathBuf>>,
) -> AppResult<Listing> {
    let mut roots = state.model_roots.clone();
    for dir in dirs.unwrap_or_default() {
        roots.folders.push(state.check(&dir)?);
    }
    let listing = blocking(move || Ok(tunesmith::catalog::list(&roots))).await?;
    for m in &listing.models {
        state.grant(&m.path);
    }
    Ok(listing)
}

/// `estimate` → trainable parameters and memory for `config`.
#[tauri::command(rename_all = "snake_case")]
pub async fn estimate(state: State<'_, AppState>, config: RunConfig) -> AppResult<Estimate> {
    let config = checked_config(&state, config)?;
    blocking(move || Ok(tunesmith::plan::estimate(&config)?)).await
}

/// `config_toml` → the TOML the run will save.
#[tauri::command(rename_all = "snake_case")]
pub fn config_toml(state: State<'_, AppState>, config: RunConfig) -> AppResult<String> {
    let config = checked_config(&state, config)?;
    config.validate()?;
    Ok(config.to_toml())
}

/// `config` with its paths checked and runs going to the app's folder.
pub(crate) fn checked_config(state: &AppState, mut config: RunConfig) -> AppResult<RunConfig> {
    let need = |what: &str, p: &Path| -> AppResult<PathBuf> {
        if p.as_os_str().is_empty() {
            return Err(AppError::new(format!("choose {what} first")));
        }
        state.check(p)
    };
    config.model.path = need("a model", &config.model.path)?;
    config.data.train = need("a dataset", &config.data.train)?;
    if let Some(val) = &config.data.val {
        config.data.val = Some(state.check(val)?);
    }
    config.output.runs_dir = state.runs_dir.clone();
    Ok(config)
}

/// Runs `f` off the async runtime's threads (file reads, model loads).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| AppError::new(format!("internal error: a worker thread failed: {e}")))?
}
