//! Everything `Session::start` checks before a thread exists: the config,
//! the model folder, the tokenizer, the datasets, the method against the
//! model's shapes, and the device.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::TrainError;
use super::checkpoint;
use super::params::write_params;
use crate::backend::{self, SelectedDevice};
use crate::config::RunConfig;
use crate::data::{self, Example, RowError};
use crate::model::{CausalLm, ModelConfig, ModelSummary};
use crate::tokenizer::TextTokenizer;

/// A validated run, ready for its thread.
pub struct Prepared {
    pub config: RunConfig,
    pub model_config: ModelConfig,
    pub tokenizer: TextTokenizer,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub truncated: usize,
    pub bad_rows: Vec<RowError>,
    /// From reading the data (a fallback chat template...).
    pub warnings: Vec<String>,
    pub device: SelectedDevice,
    pub total_steps: usize,
    pub trainable_params: u64,
    pub total_params: u64,
    /// What the run should cost (the `started` event carries it).
    pub estimate: crate::plan::Estimate,
    /// How the frozen base weights are held (`model.dtype`,
    /// `model.quantize`).
    pub storage: crate::model::precision::Storage,
    /// Token ids of the calibration rows the method asked for (see
    /// `Method::calibration`).
    pub calibration: Vec<Vec<u32>>,
}

impl Prepared {
    /// Validates `config` completely; nothing heavy is loaded but the data.
    pub fn new(config: RunConfig) -> Result<Self, TrainError> {
        config.validate()?;
        let model_dir = &config.model.path;
        let model_config = ModelConfig::from_dir(model_dir)?;
        // Opens every weight header: a broken or missing file fails here.
        let summary = ModelSummary::from_dir(model_dir)?;
        let method = config.method.method();
        method.validate(&model_config)?;
        let tokenizer = TextTokenizer::from_dir(model_dir)?;
        if tokenizer.vocab_size() > model_config.vocab_size {
            return Err(TrainError::VocabMismatch {
                model: model_dir.clone(),
                tokenizer: tokenizer.vocab_size(),
                model_vocab: model_config.vocab_size,
            });
        }
        let d = &config.data;
        let options = d.load_options();
        let train_set = data::load_dataset(&d.train, &tokenizer, &options)?;
        let mut truncated = train_set.truncated;
        let mut bad_rows = train_set.errors;
        let mut warnings = train_set.warnings;
        let (train, val) = match &d.val {
            Some(val_path) => {
                let val_set = data::load_dataset(val_path, &tokenizer, &options)?;
                truncated += val_set.truncated;
                bad_rows.extend(val_set.errors);
                for w in val_set.warnings {
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                (train_set.examples, val_set.examples)
            }
            None => data::split(train_set.examples, d.val_fraction, d.seed)?,
        };
        // After the split, so no validation example shares a sequence with
        // a training one.
        let (train, val) = if d.packing {
            (
                data::pack(train, d.max_length),
                data::pack(val, d.max_length),
            )
        } else {
            (train, val)
        };
        let calibration = match method.calibration() {
            None => Vec::new(),
            Some(request) => {
                let rows = match &request.data {
                    Some(path) => {
                        let set = data::load_dataset(path, &tokenizer, &options)?;
                        for w in set.warnings {
                            if !warnings.contains(&w) {
                                warnings.push(w);
                            }
                        }
                        set.examples
                    }
                    None => train.clone(),
                };
                rows.into_iter().take(request.rows).map(|e| e.ids).collect()
            }
        };
        let device = backend::select(config.model.backend.into())?;
        let t = &config.train;
        let micro_per_epoch = train.len().div_ceil(t.micro_batch);
        let steps_per_epoch = micro_per_epoch.div_ceil(t.grad_accum).max(1);
        let total_steps = if t.max_steps > 0 {
            t.max_steps
        } else {
            t.epochs * steps_per_epoch
        };
        config.method.method().check_steps(total_steps)?;
        let cpu = tunesmith_kernels::on_cpu(&device.device);
        let (dtype, note) = crate::model::precision::storage_dtype(
            config.model.dtype,
            model_config.declared_dtype.as_deref(),
            &device.device,
        );
        warnings.extend(note);
        let quantize = config.model.quantize.format();
        if let Some(format) = quantize {
            crate::model::quant::check_shapes(&model_config, format)?;
        }
        let storage = crate::model::precision::Storage { dtype, quantize };
        let estimate = crate::plan::estimate_for(&config, &model_config, &summary, cpu).map_err(
            |e| match e {
                crate::plan::PlanError::Config(e) => TrainError::Config(e),
                crate::plan::PlanError::Model(e) => TrainError::Model(e),
                crate::plan::PlanError::Method(e) => TrainError::Method(e),
            },
        )?;
        Ok(Self {
            trainable_params: estimate.trainable_params,
            total_params: estimate.total_params,
            estimate,
            config,
            model_config,
            tokenizer,
            train,
            val,
            truncated,
            bad_rows,
            warnings,
            device,
            total_steps,
            storage,
            calibration,
        })
    }
}

/// Resolves an adapter argument: a run directory (its newest checkpoint)
/// or one checkpoint folder. Returns (run dir, checkpoint dir).
pub fn resolve_adapter(path: &Path) -> Result<(PathBuf, PathBuf), TrainError> {
    if path.join(checkpoint::STATE).is_file() {
        let run = path
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| TrainError::NotARun {
                path: path.to_path_buf(),
            })?;
        return Ok((run.to_path_buf(), path.to_path_buf()));
    }
    if !path.join("config.toml").is_file() {
        return Err(TrainError::NotARun {
            path: path.to_path_buf(),
        });
    }
    let latest = checkpoint::list(&path.join("checkpoints"))
        .pop()
        .ok_or_else(|| TrainError::NoCheckpoint {
            path: path.to_path_buf(),
        })?;
    Ok((path.to_path_buf(), latest.1))
}

/// Reads the config.toml of a run directory.
pub fn run_config(run_dir: &Path) -> Result<RunConfig, TrainError> {
    let path = run_dir.join("config.toml");
    if !path.is_file() {
        return Err(TrainError::NotARun {
            path: run_dir.to_path_buf(),
        });
    }
    Ok(RunConfig::load(&path, &[])?)
}

/// Loads the base model of a run (or `model_dir` when given) with the run's
/// trained weights from `adapter` (run dir or checkpoint) applied, for
/// generation and evaluation on `device`.
pub fn load_adapted(
    adapter: &Path,
    model_dir: Option<&Path>,
    device: &burn::tensor::Device,
) -> Result<(CausalLm, ModelConfig, PathBuf), TrainError> {
    let f32 = crate::model::precision::Storage::dense(burn::tensor::DType::F32);
    load_adapted_stored(adapter, model_dir, device, f32)
}

/// [`load_adapted`] with the base held as `storage` says.
pub fn load_adapted_stored(
    adapter: &Path,
    model_dir: Option<&Path>,
    device: &burn::tensor::Device,
    storage: crate::model::precision::Storage,
) -> Result<(CausalLm, ModelConfig, PathBuf), TrainError> {
    let (run_dir, ckpt) = resolve_adapter(adapter)?;
    let config = run_config(&run_dir)?;
    let dir = model_dir
        .map(Path::to_path_buf)
        .unwrap_or(config.model.path.clone());
    let (model, model_config) = CausalLm::load_stored(&dir, device, storage)?;
    config.method.method().validate(&model_config)?;
    let mut rng = StdRng::seed_from_u64(config.train.seed);
    let saved = checkpoint::read_method_state(&ckpt)?;
    let mut quiet = |_: usize, _: usize, _: &str| {};
    let mut ctx = crate::methods::PrepareContext {
        rng: &mut rng,
        saved: Some(&saved),
        progress: &mut quiet,
        calibration: &[],
    };
    let model = config.method.method().prepare(model, &mut ctx)?.model;
    let weights = checkpoint::read_safetensors(&ckpt.join(checkpoint::WEIGHTS))?;
    let (model, missing) = write_params(model, &weights);
    if let Some(name) = missing.first() {
        return Err(TrainError::Checkpoint {
            path: ckpt,
            reason: format!(
                "tensor {name} does not fit model {} (different model or method?)",
                dir.display()
            ),
        });
    }
    Ok((model, model_config, dir))
}
