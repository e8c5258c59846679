//! The public face of training: start or resume a run, get its events,
//! steer it.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

use super::TrainError;
use super::checkpoint;
use super::events::TrainEvent;
use super::prepare::{Prepared, run_config};
use super::trainer::{Resume, spawn};
use crate::config::RunConfig;

/// Requests to a running training thread, obeyed between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Stop,
    Checkpoint,
}

/// Starts runs.
pub struct Session;

impl Session {
    /// Validates `config` (model, data, method against the model's shapes,
    /// device), creates the run directory and starts training on a
    /// background thread. Every error happens here, before the thread exists.
    pub fn start(config: RunConfig) -> Result<RunHandle, TrainError> {
        let prepared = Prepared::new(config)?;
        let run_dir = create_run_dir(&prepared.config)?;
        let text = prepared.config.to_toml();
        let path = run_dir.join("config.toml");
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .map_err(|source| TrainError::Io { path, source })?;
        Ok(spawn(prepared, run_dir, None))
    }

    /// Rolls the run in `run_dir` back to its newest checkpoint (after a
    /// divergence, the last good one: a diverged run writes none) and
    /// continues it with `learning_rate`, which its config.toml records
    /// from now on.
    pub fn retry(run_dir: &Path, learning_rate: f64) -> Result<RunHandle, TrainError> {
        let mut config = run_config(run_dir)?;
        config.train.learning_rate = learning_rate;
        config.validate()?;
        let path = run_dir.join("config.toml");
        crate::fsutil::write_atomic(&path, config.to_toml().as_bytes())
            .map_err(|source| TrainError::Io { path, source })?;
        Self::resume(run_dir)
    }

    /// Continues the run in `run_dir` from its newest checkpoint, producing
    /// the same steps an uninterrupted run would have.
    pub fn resume(run_dir: &Path) -> Result<RunHandle, TrainError> {
        let config = run_config(run_dir)?;
        let prepared = Prepared::new(config)?;
        let (_, ckpt) = checkpoint::list(&run_dir.join("checkpoints"))
            .pop()
            .ok_or_else(|| TrainError::NoCheckpoint {
                path: run_dir.to_path_buf(),
            })?;
        let checkpoint::Loaded {
            weights,
            optimizer,
            method,
            state,
        } = checkpoint::load(&ckpt)?;
        if state.step >= prepared.total_steps {
            return Err(TrainError::AlreadyComplete {
                step: state.step,
                total: prepared.total_steps,
            });
        }
        let resume = Resume {
            weights,
            optimizer,
            method,
            state,
        };
        Ok(spawn(prepared, run_dir.to_path_buf(), Some(resume)))
    }
}

fn create_run_dir(config: &RunConfig) -> Result<PathBuf, TrainError> {
    let root = config.runs_dir();
    let name = if config.output.name.trim().is_empty() {
        config.method.method().name().to_string()
    } else {
        sanitize(&config.output.name)
    };
    let dir = new_stamped_dir(&root, &name)?;
    let ck = dir.join("checkpoints");
    std::fs::create_dir_all(&ck).map_err(|source| TrainError::Io { path: ck, source })?;
    Ok(dir)
}

/// Creates `ROOT/<time>-NAME` (or `-NAME-2`, `-3`... when that exists) and
/// returns it: the folder of a new run or of a triage.
pub(crate) fn new_stamped_dir(root: &Path, name: &str) -> Result<PathBuf, TrainError> {
    let stamp = jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string();
    std::fs::create_dir_all(root).map_err(|source| TrainError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    for n in 1.. {
        let dir = if n == 1 {
            root.join(format!("{stamp}-{name}"))
        } else {
            root.join(format!("{stamp}-{name}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(TrainError::Io { path: dir, source }),
        }
    }
    unreachable!("an unbounded loop returns")
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A running (or finished) training thread.
pub struct RunHandle {
    pub(super) run_dir: PathBuf,
    pub(super) events: Receiver<TrainEvent>,
    pub(super) control: Sender<Control>,
    pub(super) thread: Option<JoinHandle<()>>,
}

/// A cloneable remote for a run (for signal handlers and UI callbacks).
#[derive(Clone)]
pub struct Controller(Sender<Control>);

impl Controller {
    /// Sends a request; false when the run has already ended.
    pub fn send(&self, c: Control) -> bool {
        self.0.send(c).is_ok()
    }
}

impl RunHandle {
    /// The run directory (config.toml, metrics.jsonl, checkpoints/).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Events as they happen; the channel closes after Finished or Failed.
    pub fn events(&self) -> &Receiver<TrainEvent> {
        &self.events
    }

    /// A cloneable remote for this run.
    pub fn controller(&self) -> Controller {
        Controller(self.control.clone())
    }

    /// Pauses between steps.
    pub fn pause(&self) {
        let _ = self.control.send(Control::Pause);
    }

    /// Continues after a pause.
    pub fn resume(&self) {
        let _ = self.control.send(Control::Resume);
    }

    /// Stops after the current step, writing a checkpoint first.
    pub fn stop(&self) {
        let _ = self.control.send(Control::Stop);
    }

    /// Writes a checkpoint after the current step.
    pub fn checkpoint_now(&self) {
        let _ = self.control.send(Control::Checkpoint);
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
