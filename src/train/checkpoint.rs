//! Checkpoints: `checkpoints/step-N/` with the trained weights, the
//! optimizer moments and the loop state (data cursor, best loss...), written
//! to a temporary folder and renamed into place so a crash never leaves a
//! half checkpoint.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use super::TrainError;
use super::params::HostTensor;

/// Weights file of a checkpoint (trainable parameters by module path).
pub const WEIGHTS: &str = "trainable.safetensors";
/// Optimizer moments of a checkpoint.
pub const OPTIMIZER: &str = "optimizer.safetensors";
/// Loop state of a checkpoint.
pub const STATE: &str = "state.json";
/// The method's own state (PiSSA's initial adapter...), empty for most
/// methods; checkpoints written before it existed have none.
pub const METHOD: &str = "method.safetensors";

/// Everything one checkpoint holds.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Trained parameters by module path.
    pub weights: BTreeMap<String, HostTensor>,
    /// AdamW moments by parameter name.
    pub optimizer: BTreeMap<String, HostTensor>,
    /// The method's state ([`crate::methods::MethodState`]).
    pub method: BTreeMap<String, HostTensor>,
    pub state: LoopState,
}

/// Where the loop stood when the checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Optimizer steps completed.
    pub step: usize,
    pub total_steps: usize,
    /// Data cursor: epoch, and micro-batches of that epoch done.
    pub epoch: usize,
    pub position: usize,
    /// Seed of the shuffling and dropout streams (the RNG state is a pure
    /// function of seed, epoch and step).
    pub seed: u64,
    pub tokens: u64,
    pub elapsed_s: f64,
    pub best_val_loss: Option<f64>,
    pub best_step: Option<usize>,
    pub last_val_loss: Option<f64>,
}

/// Name of the checkpoint folder of `step`.
pub fn dir_name(step: usize) -> String {
    format!("step-{step:06}")
}

/// Writes a checkpoint for `state.step` under `root` (the run's
/// checkpoints/ folder) and returns its path.
pub fn save(
    root: &Path,
    weights: &BTreeMap<String, HostTensor>,
    optimizer: &BTreeMap<String, HostTensor>,
    method: &BTreeMap<String, HostTensor>,
    state: &LoopState,
) -> Result<PathBuf, TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let final_dir = root.join(dir_name(state.step));
    let tmp = root.join(format!(
        ".tmp-{}-{}",
        dir_name(state.step),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write_safetensors(&tmp.join(WEIGHTS), weights)?;
    write_safetensors(&tmp.join(OPTIMIZER), optimizer)?;
    write_safetensors(&tmp.join(METHOD), method)?;
    let json = serde_json::to_vec_pretty(state).unwrap_or_default();
    crate::fsutil::write_atomic(&tmp.join(STATE), &json).map_err(io(&tmp))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    if let Ok(d) = std::fs::File::open(root) {
        let _ = d.sync_all();
    }
    Ok(final_dir)
}

/// Reads a checkpoint folder.
pub fn load(dir: &Path) -> Result<Loaded, TrainError> {
    let weights = read_safetensors(&dir.join(WEIGHTS))?;
    let optimizer = read_safetensors(&dir.join(OPTIMIZER))?;
    let method = read_method_state(dir)?;
    let path = dir.join(STATE);
    let text = std::fs::read(&path).map_err(|source| TrainError::Io {
        path: path.clone(),
        source,
    })?;
    let state = serde_json::from_slice(&text).map_err(|e| TrainError::Checkpoint {
        path,
        reason: e.to_string(),
    })?;
    Ok(Loaded {
        weights,
        optimizer,
        method,
        state,
    })
}

/// The method state of the checkpoint folder `dir` (empty when it has none).
pub fn read_method_state(dir: &Path) -> Result<BTreeMap<String, HostTensor>, TrainError> {
    let path = dir.join(METHOD);
    if path.is_file() {
        read_safetensors(&path)
    } else {
        Ok(BTreeMap::new())
    }
}

/// Complete checkpoints under `root`, sorted by step.
pub fn list(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join(STATE).is_file().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Deletes step checkpoints beyond the newest `keep`, sparing `best_step`.
pub fn prune(root: &Path, keep: usize, best_step: Option<usize>) {
    let all = list(root);
    let n = all.len();
    for (i, (step, path)) in all.into_iter().enumerate() {
        if i + keep.max(1) < n && Some(step) != best_step {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// One host tensor as safetensors sees it: its bytes are made one tensor
/// at a time while the file is written, so a checkpoint never holds a
/// second copy of everything it saves.
struct F32View<'a>(&'a HostTensor);

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.0.data.len() * 4
    }
}

/// Writes `tensors` to `path`, streamed. Not atomic by itself: checkpoints
/// are written into a temporary folder that is renamed into place.
fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(), TrainError> {
    let views = tensors.iter().map(|(k, t)| (k.as_str(), F32View(t)));
    safetensors::serialize_to_file(views, None, path).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads an f32 safetensors file into host tensors.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data: Cow<[u8]> = Cow::Borrowed(view.data());
        let values = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // Read under today's names, so older checkpoints resume and export.
        out.insert(
            super::params::current_name(&name),
            HostTensor {
                shape: view.shape().to_vec(),
                data: values,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> LoopState {
        LoopState {
            step,
            total_steps: 10,
            epoch: 0,
            position: 0,
            seed: 1,
            tokens: 0,
            elapsed_s: 0.0,
            best_val_loss: None,
            best_step: None,
            last_val_loss: None,
        }
    }

    #[test]
    fn saves_atomically_and_prunes_all_but_the_newest_and_the_best() {
        let tmp = tempfile::tempdir().unwrap();
        let w = BTreeMap::from([(
            "a".to_string(),
            HostTensor {
                shape: vec![2],
                data: vec![1.0, -2.5],
            },
        )]);
        for step in [2, 4, 6, 8] {
            save(tmp.path(), &w, &BTreeMap::new(), &w, &state(step)).unwrap();
        }
        // A torn write leaves only a hidden temporary folder, never listed.
        std::fs::create_dir(tmp.path().join(".tmp-step-000010-1")).unwrap();
        prune(tmp.path(), 2, Some(4));
        let left: Vec<usize> = list(tmp.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, [4, 6, 8]);
        let loaded = load(&tmp.path().join(dir_name(8))).unwrap();
        assert_eq!(loaded.weights, w);
        assert_eq!(loaded.method, w);
        assert_eq!(loaded.state, state(8));
        // A checkpoint from before method state existed reads as empty.
        std::fs::remove_file(tmp.path().join(dir_name(8)).join(METHOD)).unwrap();
        assert!(
            load(&tmp.path().join(dir_name(8)))
                .unwrap()
                .method
                .is_empty()
        );
    }

    #[test]
    fn checkpoints_written_with_the_rust_variant_name_read_under_the_stable_one() {
        let tmp = tempfile::tempdir().unwrap();
        let t = HostTensor {
            shape: vec![1],
            data: vec![0.5],
        };
        let old = BTreeMap::from([
            ("layers.0.mlp.up_proj.adapter.Lora.a".to_string(), t.clone()),
            (
                "m.layers.0.mlp.up_proj.adapter.Lora.b".to_string(),
                t.clone(),
            ),
        ]);
        let dir = save(tmp.path(), &old, &old, &BTreeMap::new(), &state(1)).unwrap();
        let Loaded {
            weights, optimizer, ..
        } = load(&dir).unwrap();
        let names: Vec<&str> = weights.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "layers.0.mlp.up_proj.adapter.lora.a",
                "m.layers.0.mlp.up_proj.adapter.lora.b"
            ]
        );
        assert_eq!(weights, optimizer);
    }
}
