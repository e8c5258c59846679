//! What a run trained, read from one of its checkpoints and renamed from
//! burn's module paths to Hugging Face tensor names and layouts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CheckpointChoice, ExportError};
use crate::config::RunConfig;
use crate::methods::lora::LoraConfig;
use crate::methods::{LoraInit, MethodConfig, MethodState};
use crate::model::ModelConfig;
use crate::train::checkpoint::{self, LoopState};
use crate::train::params::HostTensor;

/// One LoRA pair in PEFT's layout: `a` is (r, in), `b` is (out, r), and
/// DoRA's magnitude (out).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub a: HostTensor,
    pub b: HostTensor,
    pub magnitude: Option<HostTensor>,
}

impl LoraPair {
    pub fn rank(&self) -> usize {
        self.a.shape[0]
    }
}

/// The trained weights of one checkpoint.
#[derive(Debug, Clone)]
pub struct Trained {
    pub run_dir: PathBuf,
    pub config: RunConfig,
    pub model: ModelConfig,
    pub checkpoint: PathBuf,
    pub step: usize,
    /// Why this checkpoint was chosen (for the report).
    pub chosen_because: String,
    /// LoRA pairs by HF module (`model.layers.0.self_attn.q_proj`).
    pub lora: BTreeMap<String, LoraPair>,
    /// Fully trained tensors by HF name, in HF layout.
    pub full: BTreeMap<String, HostTensor>,
    /// The LoRA the pairs in `lora` follow, if any: the run's, or for PiSSA
    /// the rank-2r adapter on the original base they were turned into.
    pub adapter: Option<crate::methods::lora::LoraConfig>,
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
        let mut out = Self {
            run_dir: run_dir.to_path_buf(),
            config,
            model,
            checkpoint: dir,
            step,
            chosen_because,
            lora: BTreeMap::new(),
            full: BTreeMap::new(),
            adapter: None,
        };
        out.rename(weights)?;
        if let MethodConfig::Lora(c) = out.config.method.clone() {
            if c.init == LoraInit::Pissa {
                out.subtract_initial(&method_state, c.rank)?;
            }
            out.adapter = Some(c.exported());
        }
        Ok(out)
    }

    /// The LoRA hyperparameters of the exported pairs, if it is a LoRA run
    /// (see [`LoraConfig::exported`]).
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.adapter.as_ref()
    }

    /// PiSSA trained `A·B` on the residual `W − s·A₀·B₀`: on the original
    /// base that is the rank-2r pair `[A; A₀]` (PEFT's A, rows) and
    /// `[B, −B₀]` (PEFT's B, columns).
    fn subtract_initial(&mut self, state: &MethodState, rank: usize) -> Result<(), ExportError> {
        for (module, pair) in &mut self.lora {
            let get = |part| {
                let key = crate::methods::lora::init_key(module, part);
                state.get(&key).ok_or_else(|| ExportError::Checkpoint {
                    path: self.checkpoint.clone(),
                    reason: format!(
                        "{key} (PiSSA's initial adapter) is missing from {}",
                        checkpoint::METHOD
                    ),
                })
            };
            // Ours are [in, r] and [r, out], PEFT's the transposes.
            let a0 = transpose(get('a')?, module)?;
            let b0 = transpose(get('b')?, module)?;
            if a0.shape != pair.a.shape || b0.shape != pair.b.shape || pair.rank() != rank {
                return Err(ExportError::Checkpoint {
                    path: self.checkpoint.clone(),
                    reason: format!(
                        "{module}: PiSSA's initial adapter does not fit the trained one"
                    ),
                });
            }
            let mut a = pair.a.data.clone();
            a.extend_from_slice(&a0.data);
            let out = pair.b.shape[0];
            let b = (0..out)
                .flat_map(|o| {
                    let row = &pair.b.data[o * rank..(o + 1) * rank];
                    let row0 = &b0.data[o * rank..(o + 1) * rank];
                    row.iter().copied().chain(row0.iter().map(|v| -v))
                })
                .collect();
            pair.a = HostTensor {
                shape: vec![2 * rank, pair.a.shape[1]],
                data: a,
            };
            pair.b = HostTensor {
                shape: vec![out, 2 * rank],
                data: b,
            };
        }
        Ok(())
    }

    fn rename(&mut self, weights: BTreeMap<String, HostTensor>) -> Result<(), ExportError> {
        let mut halves: BTreeMap<String, (Option<HostTensor>, Option<HostTensor>)> =
            BTreeMap::new();
        let mut magnitudes: BTreeMap<String, HostTensor> = BTreeMap::new();
        for (name, tensor) in weights {
            if let Some(module) = name.strip_suffix(".adapter.lora.magnitude") {
                magnitudes.insert(format!("model.{module}"), tensor);
                continue;
            }
            if let Some((module, part)) = name
                .strip_suffix(".adapter.lora.a")
                .map(|m| (m, 'a'))
                .or_else(|| name.strip_suffix(".adapter.lora.b").map(|m| (m, 'b')))
            {
                // Ours are a [in, r] and b [r, out]: PEFT stores the
                // transposes.
                let t = transpose(&tensor, &name)?;
                let slot = halves.entry(format!("model.{module}")).or_default();
                if part == 'a' {
                    slot.0 = Some(t);
                } else {
                    slot.1 = Some(t);
                }
                continue;
            }
            let (hf, transposed) = hf_name(&name);
            let t = if transposed {
                transpose(&tensor, &name)?
            } else {
                tensor
            };
            self.full.insert(hf, t);
        }
        for (module, pair) in halves {
            match pair {
                (Some(a), Some(b)) => {
                    let magnitude = magnitudes.remove(&module);
                    self.lora.insert(module, LoraPair { a, b, magnitude });
                }
                _ => {
                    return Err(ExportError::Checkpoint {
                        path: self.checkpoint.clone(),
                        reason: format!("{module} has only half of its LoRA pair"),
                    });
                }
            }
        }
        if let Some(module) = magnitudes.keys().next() {
            return Err(ExportError::Checkpoint {
                path: self.checkpoint.clone(),
                reason: format!("{module} has a DoRA magnitude but no LoRA pair"),
            });
        }
        Ok(())
    }
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
