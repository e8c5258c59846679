//! What a run trained, read from one of its checkpoints and renamed from
//! burn's module paths to Hugging Face tensor names and layouts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CheckpointChoice, ExportError};
use crate::config::RunConfig;
use crate::methods::lora::LoraConfig;
use crate::methods::{ExportForm, LoraPair, ModuleTensors};
use crate::model::ModelConfig;
use crate::train::checkpoint::{self, LoopState};
use crate::train::params::HostTensor;

/// The trained weights of one checkpoint.
#[derive(Debug)]
pub struct Trained {
    pub run_dir: PathBuf,
    pub config: RunConfig,
    pub model: ModelConfig,
    pub checkpoint: PathBuf,
    pub step: usize,
    /// Why this checkpoint was chosen (for the report).
    pub chosen_because: String,
    /// Fully trained tensors by HF name, in HF layout.
    pub full: BTreeMap<String, HostTensor>,
    /// The trained adapter as the method exports it.
    pub form: ExportForm,
}

impl Trained {
    /// Reads the chosen checkpoint of `run_dir`.
    pub fn load(run_dir: &Path, choice: &CheckpointChoice) -> Result<Self, ExportError> {
        let config = crate::train::prepare::run_config(run_dir).map_err(|e| match e {
            crate::train::TrainError::NotARun { path } => ExportError::NotARun { path },
            other => ExportError::Run(Box::new(other)),
        })?;
        let model = ModelConfig::from_dir(&config.model.path)?;
        let (step, dir, chosen_because) = choose_checkpoint(run_dir, choice)?;
        let weights = checkpoint::read_safetensors(&dir.join(checkpoint::WEIGHTS))
            .map_err(|e| ExportError::Run(Box::new(e)))?;
        let method_state =
            checkpoint::read_method_state(&dir).map_err(|e| ExportError::Run(Box::new(e)))?;
        let (full, adapters) = rename(weights, &dir)?;
        let form = config
            .method
            .method()
            .export_form(&model, adapters, &method_state)
            .map_err(|e| ExportError::Checkpoint {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            config,
            model,
            checkpoint: dir,
            step,
            chosen_because,
            full,
            form,
        })
    }

    /// The LoRA the exported pairs follow, if the update is one (see
    /// [`crate::methods::ExportForm::lora`]).
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.form.lora.as_ref().map(|(c, _)| c)
    }

    /// The exported LoRA pairs by HF module (none when the update is not
    /// a LoRA).
    pub fn lora(&self) -> &BTreeMap<String, LoraPair> {
        static NONE: BTreeMap<String, LoraPair> = BTreeMap::new();
        self.form.lora.as_ref().map_or(&NONE, |(_, pairs)| pairs)
    }
}

/// The checkpoint's tensors as fully trained base tensors (HF names and
/// layout) and adapter tensors by HF module and their path below
/// `adapter` (`lora.a`), in our layout for the method to read.
type Renamed = (
    BTreeMap<String, HostTensor>,
    BTreeMap<String, ModuleTensors>,
);

fn rename(weights: BTreeMap<String, HostTensor>, dir: &Path) -> Result<Renamed, ExportError> {
    let mut full = BTreeMap::new();
    let mut adapters: BTreeMap<String, ModuleTensors> = BTreeMap::new();
    for (name, tensor) in weights {
        if let Some((module, part)) = name.split_once(".adapter.") {
            adapters
                .entry(format!("model.{module}"))
                .or_default()
                .insert(part.to_string(), tensor);
            continue;
        }
        let (hf, transposed) = hf_name(&name);
        let t = if transposed {
            transpose(&tensor, &name).map_err(|e| match e {
                ExportError::Checkpoint { reason, .. } => ExportError::Checkpoint {
                    path: dir.to_path_buf(),
                    reason: format!("{name}: {reason}"),
                },
                other => other,
            })?
        } else {
            tensor
        };
        full.insert(hf, t);
    }
    Ok((full, adapters))
}

fn read_state(dir: &Path) -> Result<LoopState, ExportError> {
    let path = dir.join(checkpoint::STATE);
    let bytes = std::fs::read(&path).map_err(|source| ExportError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ExportError::Checkpoint {
        path,
        reason: e.to_string(),
    })
}

/// HF name of a trained parameter and whether its layout is the transpose
/// of ours (linear weights are stored [in, out] here, (out, in) in HF).
fn hf_name(path: &str) -> (String, bool) {
    match path {
        "embed_tokens" => ("model.embed_tokens.weight".into(), false),
        "lm_head" => ("lm_head.weight".into(), true),
        _ => {
            let linear = crate::methods::LINEAR_MODULES
                .iter()
                .any(|m| path.ends_with(&format!("{m}.weight")));
            (format!("model.{path}"), linear)
        }
    }
}

/// The checkpoint of `run_dir` that `choice` names: (step, folder, why).
pub fn choose_checkpoint(
    run_dir: &Path,
    choice: &CheckpointChoice,
) -> Result<(usize, PathBuf, String), ExportError> {
    let all = checkpoint::list(&run_dir.join("checkpoints"));
    let Some((last_step, last_dir)) = all.last().cloned() else {
        return Err(ExportError::NoCheckpoints {
            run: run_dir.to_path_buf(),
        });
    };
    let available = || {
        all.iter()
            .map(|(s, _)| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(match choice {
        CheckpointChoice::Last => (last_step, last_dir, "the newest checkpoint".to_string()),
        CheckpointChoice::Step(want) => {
            let found = all.iter().find(|(s, _)| s == want).cloned();
            let (s, d) = found.ok_or_else(|| ExportError::UnknownCheckpoint {
                run: run_dir.to_path_buf(),
                wanted: format!("step-{want}"),
                available: available(),
            })?;
            (s, d, format!("step {s}, as asked"))
        }
        CheckpointChoice::Best => {
            let state = read_state(&last_dir)?;
            match state
                .best_step
                .and_then(|b| all.iter().find(|(s, _)| *s == b))
            {
                Some((s, d)) => (
                    *s,
                    d.clone(),
                    format!(
                        "the lowest validation loss ({:.4})",
                        state.best_val_loss.unwrap_or(f64::NAN)
                    ),
                ),
                None => (
                    last_step,
                    last_dir,
                    "the newest checkpoint (no validation loss was recorded)".to_string(),
                ),
            }
        }
    })
}

/// The transpose of a 2-D tensor.
pub fn transpose(t: &HostTensor, name: &str) -> Result<HostTensor, ExportError> {
    let [rows, cols] = t.shape[..] else {
        return Err(ExportError::Checkpoint {
            path: PathBuf::from(name),
            reason: format!("expected a matrix, found shape {:?}", t.shape),
        });
    };
    let mut data = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            data[c * rows + r] = t.data[r * cols + c];
        }
    }
    Ok(HostTensor {
        shape: vec![cols, rows],
        data,
    })
}
