//! Training: `Session::start` validates a `RunConfig` and runs it on a
//! background thread that reports `TrainEvent`s and obeys a `RunHandle`.

pub mod checkpoint;
pub mod events;
pub mod loss;
pub mod optim;
pub mod params;
pub mod prepare;
pub mod recompute;
pub mod runs;
pub mod schedule;
mod session;
pub mod step;
mod trainer;

use std::path::PathBuf;

use thiserror::Error;

pub use events::TrainEvent;
pub use prepare::{Prepared, load_adapted};
pub(crate) use session::new_stamped_dir;
pub use session::{Control, Controller, RunHandle, Session};
pub use trainer::evaluate;

use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::data::DataError;
use crate::methods::MethodError;
use crate::model::ModelError;
use crate::tokenizer::TokenizerError;

/// Why a run cannot start or continue.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Method(#[from] MethodError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is unusable: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error(
        "{path} has no checkpoint to resume from (a run checkpoints every train.checkpoint_every steps)"
    )]
    NoCheckpoint { path: PathBuf },
    #[error(
        "{path} is not a run directory (no config.toml); pass a folder made by `tunesmith train`"
    )]
    NotARun { path: PathBuf },
    #[error(
        "the tokenizer in {model} has {tokenizer} tokens but the model embeds only {model_vocab}; \
         the tokenizer files belong to another model"
    )]
    VocabMismatch {
        model: PathBuf,
        tokenizer: usize,
        model_vocab: usize,
    },
    #[error("the run is already complete ({step} of {total} steps); nothing to resume")]
    AlreadyComplete { step: usize, total: usize },
}
