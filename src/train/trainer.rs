//! The training thread: owns the model, runs optimizer steps, evaluates,
//! checkpoints, and reports every event to the channel and metrics.jsonl.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::TrainError;
use super::checkpoint::{self, LoopState};
use super::events::TrainEvent;
use super::loss::{Batch, nll_sum};
use super::optim::AdamW;
use super::params::{self, HostTensor};
use super::prepare::Prepared;
use super::schedule::learning_rate;
use super::session::{Control, RunHandle};
use super::step::{StepOptions, hooked_step};
use crate::advisor::{Advice, Advisor, Rule};
use crate::data::{Example, epoch_batches};
use crate::methods::{HookNote, StepAt, TrainingHooks};
use crate::model::CausalLm;

/// What a resumed run starts from.
pub(super) struct Resume {
    pub weights: BTreeMap<String, HostTensor>,
    pub optimizer: BTreeMap<String, HostTensor>,
    pub method: crate::methods::MethodState,
    pub state: LoopState,
}

/// Starts the training thread.
pub(super) fn spawn(prepared: Prepared, run_dir: PathBuf, resume: Option<Resume>) -> RunHandle {
    let (etx, erx) = channel();
    let (ctx, crx) = channel();
    let reporter = Reporter {
        tx: etx,
        metrics: run_dir.join("metrics.jsonl"),
        last_step: std::sync::atomic::AtomicUsize::new(0),
        advisor: std::sync::Mutex::new(Advisor::new(prepared.config.early_stopping.clone())),
        stop: std::sync::Mutex::new(None),
    };
    let dir = run_dir.clone();
    let thread = std::thread::Builder::new()
        .name("tunesmith-train".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(prepared, &dir, resume, &reporter, &crx)
            }));
            let message = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!("training thread panicked: {}", panic_message(&panic)),
            };
            let step = reporter
                .last_step
                .load(std::sync::atomic::Ordering::Relaxed);
            reporter.emit(TrainEvent::Failed { step, message });
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    RunHandle {
        run_dir,
        events: erx,
        control: ctx,
        thread: Some(thread),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Sends events to the front end and appends them to metrics.jsonl.
struct Reporter {
    tx: Sender<TrainEvent>,
    metrics: PathBuf,
    /// Last completed step, for the Failed event.
    last_step: std::sync::atomic::AtomicUsize,
    /// Reads every step and evaluation.
    advisor: std::sync::Mutex<Advisor>,
    /// Set when advice says the run must end.
    stop: std::sync::Mutex<Option<Advice>>,
}

impl Reporter {
    /// Emits `event`, then whatever the advisor says about it.
    fn emit(&self, event: TrainEvent) {
        let advice = match &event {
            TrainEvent::Step { .. } | TrainEvent::Eval { .. } => self
                .advisor
                .lock()
                .map(|mut a| a.observe(&event))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        self.send(event);
        for a in advice {
            if a.stops
                && let Ok(mut stop) = self.stop.lock()
                && stop.is_none()
            {
                *stop = Some(a.clone());
            }
            self.send(TrainEvent::Advice(a));
        }
    }

    /// The advice that ends the run, if any.
    fn stop_advice(&self) -> Option<Advice> {
        self.stop.lock().ok().and_then(|s| s.clone())
    }

    fn send(&self, event: TrainEvent) {
        if let TrainEvent::Step { step, .. }
        | TrainEvent::Started {
            start_step: step, ..
        } = &event
        {
            self.last_step
                .store(*step, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut line) = serde_json::to_string(&event) {
            line.push('\n');
            // The metrics file is a record, not a control path: a failed
            // write must not kill a run that checkpoints fine.
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.metrics)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        // The run's chart is written before the front end hears the end, so
        // whoever reacts to `finished` finds report.svg in place. Like the
        // metrics, a chart that cannot be drawn does not fail the run.
        if event.is_terminal()
            && let Some(dir) = self.metrics.parent()
            && let Err(e) = crate::report::write_report(dir)
        {
            eprintln!("warning: {e}");
        }
        // A front end that went away does not stop training.
        let _ = self.tx.send(event);
    }
}

/// Where training is in the data: the micro-batches of each epoch are a
/// function of the seed and the epoch alone, so a resumed run sees the same
/// order; `position` counts the micro-batches done in this epoch.
struct Cursor {
    lengths: Vec<usize>,
    micro_batch: usize,
    group_by_length: bool,
    seed: u64,
    epoch: usize,
    position: usize,
    batches: Vec<Vec<usize>>,
}

impl Cursor {
    fn new(
        examples: &[Example],
        data: &crate::config::DataSection,
        micro_batch: usize,
        epoch: usize,
        position: usize,
    ) -> Self {
        let mut c = Self {
            lengths: examples.iter().map(|e| e.ids.len()).collect(),
            micro_batch,
            group_by_length: data.group_by_length,
            seed: data.seed,
            epoch,
            position,
            batches: Vec::new(),
        };
        c.plan();
        c
    }

    fn plan(&mut self) {
        self.batches = epoch_batches(
            &self.lengths,
            self.micro_batch,
            self.seed,
            self.epoch,
            self.group_by_length,
        );
    }

    /// Indices of the next micro-batch (never straddling two epochs).
    fn next(&mut self) -> Vec<usize> {
        if self.position >= self.batches.len() {
            self.epoch += 1;
            self.position = 0;
            self.plan();
        }
        let out = self.batches.get(self.position).cloned().unwrap_or_default();
        self.position += 1;
        out
    }

    fn epoch_progress(&self) -> f64 {
        self.epoch as f64 + self.position as f64 / self.batches.len().max(1) as f64
    }
}

fn batch_of(examples: &[Example], idx: &[usize], pad: u32, device: &Device) -> Batch {
    let rows: Vec<&Example> = idx.iter().map(|&i| &examples[i]).collect();
    Batch::from_examples(&rows, pad, device)
}

/// Mean loss per trained token over `examples`, without gradients.
pub fn evaluate(model: &CausalLm, examples: &[Example], micro_batch: usize, pad: u32) -> f64 {
    let model = model.valid();
    let device = model.embed_tokens.val().device();
    let (mut sum, mut count) = (0f64, 0usize);
    // Similar lengths together: less padding, same sum.
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    idx.sort_by_key(|&i| examples[i].ids.len());
    for chunk in idx.chunks(micro_batch.max(1)) {
        let batch = batch_of(examples, chunk, pad, &device);
        sum += nll_sum(&model, &batch).into_scalar::<f32>() as f64;
        count += batch.trained_tokens;
    }
    sum / count.max(1) as f64
}

/// What the first step on a GPU backend is busy with.
const PREPARING_KERNELS: &str = "preparing kernels (first run only: compiled and tuned once, \
     then cached for later runs)";

fn pad_id(prepared: &Prepared) -> u32 {
    prepared.tokenizer.stop_ids().first().copied().unwrap_or(0)
}

/// Seeds the backend's random stream for one micro-batch so dropout masks
/// depend on (seed, step, micro-batch) only, not on history.
fn seed_for(seed: u64, step: usize, micro: usize) -> u64 {
    seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
        ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (micro as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

fn run(
    prepared: Prepared,
    run_dir: &Path,
    resume: Option<Resume>,
    reporter: &Reporter,
    control: &Receiver<Control>,
) -> Result<(), TrainError> {
    let started = Instant::now();
    // The events report this run's peak, not what the process held before
    // (in the app, an earlier run or a triage).
    crate::memory::reset_peak();
    let cfg = &prepared.config;
    let t = &cfg.train;
    let device = prepared.device.device.clone().autodiff();
    // Before loading, so that a method's long preparation (an SVD per
    // layer) reports its progress inside the started run.
    reporter.emit(TrainEvent::Started {
        run_dir: run_dir.to_path_buf(),
        start_step: resume.as_ref().map_or(0, |r| r.state.step),
        total_steps: prepared.total_steps,
        train_rows: prepared.train.len(),
        val_rows: prepared.val.len(),
        truncated_rows: prepared.truncated,
        bad_rows: prepared.bad_rows.len(),
        trainable_params: prepared.trainable_params,
        total_params: prepared.total_params,
        method: cfg.method.method().name().to_string(),
        backend: prepared.device.description.clone(),
        base_storage: prepared.storage.describe(),
        estimated_memory_bytes: Some(prepared.estimate.memory.total),
        warnings: prepared.warnings.clone(),
    });
    let (model, _) = CausalLm::load_stored(&cfg.model.path, &device, prepared.storage)?;
    let mut rng = StdRng::seed_from_u64(t.seed);
    let method = cfg.method.method();
    let mut progress = |done: usize, total: usize, what: &str| {
        reporter.emit(TrainEvent::Preparing {
            step: resume.as_ref().map_or(0, |r| r.state.step),
            message: format!("{what} ({} of {total})", done + 1),
        });
    };
    let mut ctx = crate::methods::PrepareContext {
        rng: &mut rng,
        saved: resume.as_ref().map(|r| &r.method),
        progress: &mut progress,
        calibration: &prepared.calibration,
    };
    let crate::methods::PreparedModel {
        mut model,
        state: method_state,
    } = method.prepare(model, &mut ctx)?;
    let mut hooks = method.hooks(
        &prepared.model_config,
        prepared.total_steps,
        resume.as_ref().map(|r| &r.method),
    )?;
    let mut optim = AdamW::new(t);
    let ckpt_root = run_dir.join("checkpoints");
    let mut state = LoopState {
        step: 0,
        total_steps: prepared.total_steps,
        epoch: 0,
        position: 0,
        seed: cfg.data.seed,
        tokens: 0,
        elapsed_s: 0.0,
        best_val_loss: None,
        best_step: None,
        last_val_loss: None,
    };
    if let Some(r) = resume {
        let (m, missing) = params::write_params(model, &r.weights);
        model = m;
        if let Some(name) = missing.first() {
            return Err(TrainError::Checkpoint {
                path: ckpt_root,
                reason: format!("tensor {name} does not fit the model"),
            });
        }
        optim.load_state(r.state.step as u64, r.optimizer, &device);
        state = r.state;
        state.total_steps = prepared.total_steps;
    }
    let elapsed_before = state.elapsed_s;
    let pad = pad_id(&prepared);
    let mut cursor = Cursor::new(
        &prepared.train,
        &cfg.data,
        t.micro_batch,
        state.epoch,
        state.position,
    );
    if crate::backend::compiles_per_shape(&prepared.device.device) {
        reporter.emit(TrainEvent::Preparing {
            step: state.step,
            message: PREPARING_KERNELS.into(),
        });
    }

    let save = |model: &CausalLm,
                optim: &AdamW,
                hooks: &dyn TrainingHooks,
                state: &LoopState,
                reason: &str| {
        let mut saved = method_state.clone();
        saved.extend(hooks.state());
        let path = checkpoint::save(
            &ckpt_root,
            &params::read_trainable(model),
            &optim.state(),
            &saved,
            state,
        )?;
        checkpoint::prune(&ckpt_root, t.keep_checkpoints, state.best_step);
        reporter.emit(TrainEvent::Checkpoint {
            step: state.step,
            path,
            reason: reason.to_string(),
        });
        Ok::<(), TrainError>(())
    };
    let eval = |model: &CausalLm, state: &mut LoopState| {
        let val_loss = evaluate(model, &prepared.val, t.micro_batch, pad);
        let best = state.best_val_loss.is_none_or(|b| val_loss < b);
        if best {
            state.best_val_loss = Some(val_loss);
            state.best_step = Some(state.step);
        }
        state.last_val_loss = Some(val_loss);
        reporter.emit(TrainEvent::Eval {
            step: state.step,
            val_loss,
            best,
        });
        best
    };

    // A baseline before the first step, so curves start where the model starts.
    if state.step == 0 && t.eval_every > 0 && !prepared.val.is_empty() {
        eval(&model, &mut state);
    }

    let mut stopped = false;
    while state.step < prepared.total_steps {
        // Requests arrive between steps; a pause blocks here until resumed.
        let mut paused = false;
        let mut checkpoint_now = false;
        loop {
            let next = if paused {
                control.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                control.try_recv()
            };
            match next {
                Ok(Control::Pause) if !paused => {
                    paused = true;
                    reporter.emit(TrainEvent::Paused { step: state.step });
                }
                Ok(Control::Resume) if paused => {
                    paused = false;
                    reporter.emit(TrainEvent::Resumed { step: state.step });
                }
                Ok(Control::Stop) => {
                    stopped = true;
                    break;
                }
                Ok(Control::Checkpoint) => checkpoint_now = true,
                Ok(_) => {}
                // Nobody can resume a paused run whose handle is gone.
                Err(TryRecvError::Disconnected) if paused => {
                    stopped = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if checkpoint_now {
            save(&model, &optim, &*hooks, &state, "requested")?;
        }
        if stopped {
            break;
        }

        let step_start = Instant::now();
        let lr = learning_rate(
            t.learning_rate,
            t.schedule,
            t.warmup_steps,
            state.step,
            prepared.total_steps,
        );
        let micro: Vec<Vec<usize>> = (0..t.grad_accum).map(|_| cursor.next()).collect();
        let batches: Vec<Batch> = micro
            .iter()
            .map(|idx| batch_of(&prepared.train, idx, pad, &device))
            .collect();
        let step = state.step;
        let options = StepOptions {
            max_grad_norm: t.max_grad_norm,
            gradient_checkpointing: t.gradient_checkpointing,
        };
        let at = StepAt {
            index: step,
            total: prepared.total_steps,
        };
        let seed = |i| Some(seed_for(t.seed, step, i));
        let (m, stats) = hooked_step(
            model,
            &mut optim,
            &batches,
            lr,
            options,
            seed,
            &mut *hooks,
            at,
        );
        model = m;
        let (loss_sum, grad_norm, step_tokens) = (stats.loss, stats.grad_norm, stats.tokens);
        state.step += 1;
        state.epoch = cursor.epoch;
        state.position = cursor.position;
        state.tokens += step_tokens as u64;
        state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
        let secs = step_start.elapsed().as_secs_f64().max(1e-9);
        let last = state.step == prepared.total_steps;
        if last || state.step.is_multiple_of(t.log_every) {
            reporter.emit(TrainEvent::Step {
                step: state.step,
                total_steps: prepared.total_steps,
                epoch: cursor.epoch_progress(),
                loss: loss_sum,
                grad_norm,
                lr,
                tokens_per_sec: step_tokens as f64 / secs,
                tokens: state.tokens,
                elapsed_s: state.elapsed_s,
                peak_memory_bytes: crate::memory::peak_rss(),
                terms: stats.terms,
            });
        }
        for note in stats.notes {
            match note {
                HookNote::Ranks { budget, ranks } => reporter.emit(TrainEvent::Ranks {
                    step: state.step,
                    budget,
                    ranks,
                }),
            }
        }
        if reporter
            .stop_advice()
            .is_some_and(|a| a.rule == Rule::Divergence)
        {
            // Collapsed weights make no checkpoint, not even on an interval
            // step: the newest stays the last good one, the roll-back.
            break;
        }
        if !last
            && t.eval_every > 0
            && state.step.is_multiple_of(t.eval_every)
            && eval(&model, &mut state)
        {
            save(&model, &optim, &*hooks, &state, "best")?;
        } else if !last && t.checkpoint_every > 0 && state.step.is_multiple_of(t.checkpoint_every) {
            save(&model, &optim, &*hooks, &state, "interval")?;
        }
        if reporter.stop_advice().is_some() {
            break;
        }
    }
    let advised = reporter.stop_advice();

    state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
    let diverged = advised.as_ref().is_some_and(|a| a.rule == Rule::Divergence);
    let final_val = if stopped || advised.is_some() {
        None
    } else {
        eval(&model, &mut state);
        state.last_val_loss
    };
    // Diverged weights are not worth a checkpoint: the last good one stays
    // the newest, which is the roll-back.
    if !diverged {
        save(
            &model,
            &optim,
            &*hooks,
            &state,
            if stopped || advised.is_some() {
                "stopped"
            } else {
                "final"
            },
        )?;
    }
    let reason = match &advised {
        Some(a) => format!("stopped by the advisor ({:?}): {}", a.rule, a.message),
        None if stopped => "stopped".into(),
        None => "completed".into(),
    };
    reporter.emit(TrainEvent::Finished {
        step: state.step,
        reason,
        final_val_loss: final_val,
        best_val_loss: state.best_val_loss,
        best_step: state.best_step,
        elapsed_s: state.elapsed_s,
        peak_memory_bytes: crate::memory::peak_rss(),
    });
    Ok(())
}
