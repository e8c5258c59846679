//! Triage of trial runs (the SFT guide, Pareja et al. 2024): every
//! candidate of a grid runs for the advisor's early window only; the
//! candidates that share an effective batch are ranked by their early
//! dynamics (lower gradient norm and higher loss predict the better final
//! model); the most promising of each effective batch continues to the
//! end, the one with the lowest validation loss is kept, and the others
//! stay stopped, their compute saved.
//!
//! Why not rank across batch sizes: a mini-batch gradient's norm shrinks
//! with the batch by sampling noise alone, and an early window that is a
//! share of the planned steps gives a larger batch fewer updates, so its
//! loss is higher too. Both indicators then favour the largest batch
//! whatever it ends at; on SmolLM2-135M-Instruct (bench/triage.sh, 4
//! learning rates x 2 batches, 3 seeds) the rank over all candidates kept
//! the larger batch every time and never the one that ended best.
//!
//! Candidates are ordinary runs inside one parent folder, which also gets
//! the comparison: `triage.json`, `triage.md` (a table) and `triage.svg`
//! (the overlaid curves).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::advisor::{EarlySummary, Rule, rank_siblings};
use crate::config::{ConfigError, RunConfig};
use crate::report::{ReportError, RunSeries, overlay_chart};
use crate::train::{Session, TrainError, TrainEvent};

/// One axis of the grid: a key and the values to try.
#[derive(Debug, Clone, PartialEq)]
pub struct GridAxis {
    pub key: String,
    pub values: Vec<String>,
}

/// Keys with a short name (any `section.key` of the config works too).
pub const SHORT_KEYS: [(&str, &str); 4] = [
    ("lr", "train.learning_rate"),
    ("rank", "method.rank"),
    ("alpha", "method.alpha"),
    ("epochs", "train.epochs"),
];

impl std::str::FromStr for GridAxis {
    type Err = TriageError;

    /// `lr=1e-5,2e-5`, `effective_batch=32,128`, `method.rank=8,16`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| TriageError::BadGrid {
            grid: s.to_string(),
            reason: reason.to_string(),
        };
        let (key, values) = s
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=V1,V2,..., e.g. lr=1e-5,2e-5"))?;
        let key = key.trim();
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(bad("no values"));
        }
        let known = key == "effective_batch"
            || SHORT_KEYS.iter().any(|(k, _)| *k == key)
            || key.contains('.');
        if !known {
            return Err(bad(
                "unknown key; use lr, effective_batch, rank, alpha, epochs or a section.key of the config",
            ));
        }
        Ok(Self {
            key: key.to_string(),
            values,
        })
    }
}

/// One point of the grid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// E.g. `lr-2e-5_effective_batch-32`.
    pub name: String,
    /// The grid's values, by the keys the user gave.
    pub settings: BTreeMap<String, String>,
    /// The `--set` overrides that make this candidate's config.
    pub overrides: Vec<String>,
}

/// Why triage could not run.
#[derive(Debug, Error)]
pub enum TriageError {
    #[error("--grid {grid}: {reason}")]
    BadGrid { grid: String, reason: String },
    #[error(
        "effective_batch = {value} is not a multiple of train.micro_batch = {micro}; \
         use multiples of {micro} or change train.micro_batch"
    )]
    EffectiveBatch { value: String, micro: usize },
    #[error("triage needs at least two candidates; give --grid with two or more values")]
    TooFew,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("candidate {candidate}: {source}")]
    Run {
        candidate: String,
        source: Box<TrainError>,
    },
    #[error(
        "no candidate got through its early window without diverging; lower the learning rates"
    )]
    AllDiverged,
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Every combination of the axes' values, in order.
pub fn candidates(base: &RunConfig, axes: &[GridAxis]) -> Result<Vec<Candidate>, TriageError> {
    let mut out = vec![Candidate {
        name: String::new(),
        settings: BTreeMap::new(),
        overrides: Vec::new(),
    }];
    for axis in axes {
        let mut next = Vec::new();
        for c in &out {
            for v in &axis.values {
                let mut c = c.clone();
                c.settings.insert(axis.key.clone(), v.clone());
                c.overrides.push(override_for(base, &axis.key, v)?);
                let part = format!("{}-{}", axis.key.replace('.', "-"), v);
                c.name = if c.name.is_empty() {
                    part
                } else {
                    format!("{}_{part}", c.name)
                };
                next.push(c);
            }
        }
        out = next;
    }
    if out.len() < 2 {
        return Err(TriageError::TooFew);
    }
    Ok(out)
}

fn override_for(base: &RunConfig, key: &str, value: &str) -> Result<String, TriageError> {
    if key == "effective_batch" {
        let micro = base.train.micro_batch.max(1);
        let total: usize = value.parse().map_err(|_| TriageError::BadGrid {
            grid: format!("effective_batch={value}"),
            reason: "not a whole number".into(),
        })?;
        if total == 0 || !total.is_multiple_of(micro) {
            return Err(TriageError::EffectiveBatch {
                value: value.to_string(),
                micro,
            });
        }
        return Ok(format!("train.grad_accum={}", total / micro));
    }
    let full = SHORT_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, f)| f);
    Ok(format!("{full}={value}"))
}

/// What triage tells its caller as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "triage", rename_all = "snake_case")]
pub enum TriageEvent {
    /// A candidate starts (its early window, or its way to the end).
    CandidateStarted {
        name: String,
        run_dir: PathBuf,
        to_the_end: bool,
    },
    /// A candidate's training event.
    Train { name: String, event: TrainEvent },
    /// The candidates ranked after their early windows.
    Ranked { order: Vec<String> },
}

/// Whether to run every candidate to the end (to measure how well the early
/// ranking predicts the final one) or only the one triage keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriageOptions {
    pub run_all_to_end: bool,
}

/// One candidate's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateResult {
    pub name: String,
    pub settings: BTreeMap<String, String>,
    pub run_dir: PathBuf,
    /// Examples per optimizer step (micro-batch x accumulation): candidates
    /// are ranked only against those of the same effective batch.
    pub effective_batch: usize,
    /// Steps the early window covers for this candidate.
    pub early_steps: usize,
    pub early: Option<EarlySummary>,
    /// By the guide's indicators among the candidates of its effective
    /// batch, 0 = most promising; `None` when it diverged or failed.
    pub rank: Option<usize>,
    pub likely_worse: bool,
    /// It diverged or failed in its early window.
    pub diverged: bool,
    pub kept: bool,
    /// Steps it ran.
    pub steps: usize,
    pub total_steps: usize,
    pub best_val_loss: Option<f64>,
    /// After running to the end (the kept one, or all with
    /// `run_all_to_end`).
    pub final_val_loss: Option<f64>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct TriageReport {
    pub dir: PathBuf,
    pub candidates: Vec<CandidateResult>,
    /// Index of the candidate kept.
    pub kept: usize,
    /// With `run_all_to_end`: the candidate with the lowest best validation
    /// loss, and whether triage kept it.
    pub best_at_end: Option<usize>,
    pub kept_was_best: Option<bool>,
    /// Optimizer steps run over all candidates, and what running every
    /// candidate to the end would have cost.
    pub steps_run: usize,
    pub steps_all_to_end: usize,
}

/// Runs the triage of `config` (a TOML file, plus `overrides`) over the
/// grid `axes`, writing everything under one new parent run folder.
pub fn triage(
    config_path: &Path,
    overrides: &[String],
    axes: &[GridAxis],
    options: TriageOptions,
    on_event: impl FnMut(&TriageEvent),
) -> Result<TriageReport, TriageError> {
    let base = RunConfig::load(config_path, overrides)?;
    triage_config(&base, axes, options, on_event)
}

/// Runs the triage of `base` over the grid `axes` (what the app calls with
/// the wizard's config).
pub fn triage_config(
    base: &RunConfig,
    axes: &[GridAxis],
    options: TriageOptions,
    mut on_event: impl FnMut(&TriageEvent),
) -> Result<TriageReport, TriageError> {
    let list = candidates(base, axes)?;
    let dir = parent_dir(base)?;
    let early_window = base.early_stopping.early_window;
    let text = base.to_toml();
    let mut results = Vec::new();
    for c in &list {
        // Paths in `base` are absolute already; the overrides are values.
        let mut config = RunConfig::from_toml_str(&text, &c.name, Path::new("/"), &c.overrides)?;
        config.output.runs_dir = dir.clone();
        config.output.name = c.name.clone();
        let effective_batch = config.train.micro_batch * config.train.grad_accum;
        let handle = Session::start(config).map_err(|source| TriageError::Run {
            candidate: c.name.clone(),
            source: Box::new(source),
        })?;
        let run_dir = handle.run_dir().to_path_buf();
        on_event(&TriageEvent::CandidateStarted {
            name: c.name.clone(),
            run_dir: run_dir.clone(),
            to_the_end: false,
        });
        let mut r = CandidateResult {
            name: c.name.clone(),
            settings: c.settings.clone(),
            run_dir,
            effective_batch,
            early_steps: 0,
            early: None,
            rank: None,
            likely_worse: false,
            diverged: false,
            kept: false,
            steps: 0,
            total_steps: 0,
            best_val_loss: None,
            final_val_loss: None,
        };
        let (mut loss, mut norm, mut n) = (0.0, 0.0, 0usize);
        let mut stop_sent = false;
        for event in handle.events().iter() {
            match &event {
                TrainEvent::Started { total_steps, .. } => {
                    r.total_steps = *total_steps;
                    r.early_steps = ((*total_steps as f64) * early_window).ceil().max(1.0) as usize;
                }
                TrainEvent::Step {
                    step,
                    loss: l,
                    grad_norm,
                    ..
                } => {
                    r.steps = *step;
                    if *step <= r.early_steps {
                        loss += l;
                        norm += grad_norm;
                        n += 1;
                    }
                    if *step >= r.early_steps && !stop_sent {
                        handle.stop();
                        stop_sent = true;
                    }
                }
                TrainEvent::Advice(a) if a.stops && a.rule == Rule::Divergence => r.diverged = true,
                TrainEvent::Finished { best_val_loss, .. } => r.best_val_loss = *best_val_loss,
                TrainEvent::Failed { .. } => r.diverged = true,
                _ => {}
            }
            on_event(&TriageEvent::Train {
                name: c.name.clone(),
                event,
            });
        }
        handle.join();
        if n > 0 {
            let summary = EarlySummary {
                mean_loss: loss / n as f64,
                mean_grad_norm: norm / n as f64,
                steps: n,
                complete: n >= r.early_steps,
            };
            if !summary.mean_loss.is_finite() || !summary.mean_grad_norm.is_finite() {
                r.diverged = true;
            }
            r.early = Some(summary);
        } else {
            r.diverged = true;
        }
        results.push(r);
    }

    let healthy: Vec<usize> = (0..results.len())
        .filter(|&i| !results[i].diverged && results[i].early.is_some())
        .collect();
    if healthy.is_empty() {
        return Err(TriageError::AllDiverged);
    }
    let leaders = rank_within_batches(&mut results, &healthy);
    // Leaders first (each batch's best), then each batch's second, ...
    let mut order: Vec<usize> = healthy.clone();
    order.sort_by_key(|&i| (results[i].rank, results[i].effective_batch));
    on_event(&TriageEvent::Ranked {
        order: order.iter().map(|&i| results[i].name.clone()).collect(),
    });

    let to_end: Vec<usize> = if options.run_all_to_end {
        order.clone()
    } else {
        leaders.clone()
    };
    for i in to_end {
        finish(&mut results[i], &mut on_event)?;
    }
    let kept = choose_kept(&results, &leaders);
    results[kept].kept = true;

    let best_at_end = options
        .run_all_to_end
        .then(|| lowest_val_loss(&results, &healthy))
        .flatten();
    let report = TriageReport {
        dir: dir.clone(),
        steps_run: results.iter().map(|r| r.steps).sum(),
        steps_all_to_end: results.iter().map(|r| r.total_steps).sum(),
        kept_was_best: best_at_end.map(|b| b == kept),
        best_at_end,
        kept,
        candidates: results,
    };
    write_comparison(&report)?;
    Ok(report)
}

/// Ranks the `healthy` candidates by the guide's indicators among those of
/// the same effective batch (setting `rank` and `likely_worse`) and returns
/// each batch's most promising one, smallest batch first.
fn rank_within_batches(results: &mut [CandidateResult], healthy: &[usize]) -> Vec<usize> {
    let mut batches: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in healthy {
        batches
            .entry(results[i].effective_batch)
            .or_default()
            .push(i);
    }
    let mut leaders = Vec::new();
    for members in batches.values() {
        let summaries: Vec<EarlySummary> =
            members.iter().filter_map(|&i| results[i].early).collect();
        // Healthy candidates all have a summary, so indices line up.
        debug_assert_eq!(summaries.len(), members.len());
        for v in rank_siblings(&summaries) {
            let r = &mut results[members[v.index]];
            r.rank = Some(v.rank);
            r.likely_worse = v.likely_worse;
        }
        if let Some(&lead) = members.iter().min_by_key(|&&i| results[i].rank) {
            leaders.push(lead);
        }
    }
    leaders
}

/// The candidate kept among the batch leaders, which have run to the end:
/// the lowest best validation loss. Without a validation loss for every
/// leader (no validation split), the guide's rank across the leaders'
/// early summaries decides, with its bias towards larger batches.
fn choose_kept(results: &[CandidateResult], leaders: &[usize]) -> usize {
    let has_val = |i: usize| results[i].best_val_loss.is_some_and(f64::is_finite);
    if leaders.iter().all(|&i| has_val(i))
        && let Some(best) = lowest_val_loss(results, leaders)
    {
        return best;
    }
    let summaries: Vec<EarlySummary> = leaders.iter().filter_map(|&i| results[i].early).collect();
    if summaries.len() == leaders.len()
        && let Some(v) = rank_siblings(&summaries).iter().min_by_key(|v| v.rank)
    {
        return leaders[v.index];
    }
    leaders.first().copied().unwrap_or(0)
}

/// Of `among`, the candidate with the lowest finite best validation loss.
fn lowest_val_loss(results: &[CandidateResult], among: &[usize]) -> Option<usize> {
    among
        .iter()
        .copied()
        .filter_map(|i| Some((i, results[i].best_val_loss.filter(|v| v.is_finite())?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Resumes a candidate from its early-window checkpoint to the end.
fn finish(
    r: &mut CandidateResult,
    on_event: &mut impl FnMut(&TriageEvent),
) -> Result<(), TriageError> {
    let handle = Session::resume(&r.run_dir).map_err(|source| TriageError::Run {
        candidate: r.name.clone(),
        source: Box::new(source),
    })?;
    on_event(&TriageEvent::CandidateStarted {
        name: r.name.clone(),
        run_dir: r.run_dir.clone(),
        to_the_end: true,
    });
    for event in handle.events().iter() {
        match &event {
            TrainEvent::Step { step, .. } => r.steps = *step,
            TrainEvent::Finished {
                best_val_loss,
                final_val_loss,
                ..
            } => {
                r.best_val_loss = *best_val_loss;
                r.final_val_loss = *final_val_loss;
            }
            _ => {}
        }
        on_event(&TriageEvent::Train {
            name: r.name.clone(),
            event,
        });
    }
    handle.join();
    Ok(())
}

fn parent_dir(base: &RunConfig) -> Result<PathBuf, TriageError> {
    let name = if base.output.name.trim().is_empty() {
        "triage".to_string()
    } else {
        format!("triage-{}", base.output.name.trim())
    };
    crate::train::new_stamped_dir(&base.runs_dir(), &name).map_err(|e| match e {
        TrainError::Io { path, source } => TriageError::Write { path, source },
        other => TriageError::Run {
            candidate: name.clone(),
            source: Box::new(other),
        },
    })
}

fn write_comparison(report: &TriageReport) -> Result<(), TriageError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = report.dir.join(name);
        crate::fsutil::write_atomic(&path, bytes)
            .map_err(|source| TriageError::Write { path, source })
    };
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    write("triage.json", json.as_bytes())?;
    write("triage.md", table(report).as_bytes())?;
    let series: Vec<RunSeries> = report
        .candidates
        .iter()
        .map(|c| {
            let mut s = RunSeries::from_run_dir(&c.run_dir);
            s.name = c.name.clone();
            s
        })
        .collect();
    let chart = overlay_chart(&series, 1200, 520)?;
    write("triage.svg", chart.svg.as_bytes())?;
    Ok(())
}

/// The comparison as a Markdown table.
pub fn table(report: &TriageReport) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut out = String::from(
        "| candidate | effective batch | early loss | early grad norm | rank in its batch | verdict | steps | best val loss |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for c in &report.candidates {
        let verdict = if c.diverged {
            "diverged in its early window".to_string()
        } else {
            let standing = if c.kept {
                "kept"
            } else if c.likely_worse {
                "likely worse"
            } else {
                "not kept"
            };
            let end = if c.final_val_loss.is_some() {
                "ran to the end"
            } else {
                "stopped after its early window"
            };
            format!("{standing}, {end}")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {}/{} | {} |\n",
            c.name,
            c.effective_batch,
            f(c.early.map(|e| e.mean_loss)),
            f(c.early.map(|e| e.mean_grad_norm)),
            c.rank.map_or("-".into(), |r| (r + 1).to_string()),
            verdict,
            c.steps,
            c.total_steps,
            f(c.best_val_loss),
        ));
    }
    out.push_str(&format!(
        "\n{} steps run of the {} that running every candidate to the end takes.\n",
        report.steps_run, report.steps_all_to_end
    ));
    if let Some(b) = report.best_at_end {
        out.push_str(&format!(
            "With every candidate run to the end, the best validation loss is {}'s; triage kept {} ({}).\n",
            report.candidates[b].name,
            report.candidates[report.kept].name,
            if b == report.kept { "the same" } else { "a different one" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RunConfig {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        RunConfig::load(&root.join("presets/quickstart.toml"), &[]).unwrap()
    }

    #[test]
    fn the_grid_expands_to_every_combination() {
        let axes: Vec<GridAxis> = ["lr=1e-3,3e-3", "effective_batch=8,16,32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let c = candidates(&base(), &axes).unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(c[0].name, "lr-1e-3_effective_batch-8");
        assert_eq!(
            c[5].overrides,
            ["train.learning_rate=3e-3", "train.grad_accum=4"]
        );
        assert_eq!(c[1].settings["effective_batch"], "16");
    }

    /// A healthy candidate with an early summary (and a validation loss if
    /// it ran to the end).
    fn ran(name: &str, batch: usize, loss: f64, norm: f64, val: Option<f64>) -> CandidateResult {
        CandidateResult {
            name: name.into(),
            settings: BTreeMap::new(),
            run_dir: PathBuf::from(name),
            effective_batch: batch,
            early_steps: 3,
            early: Some(EarlySummary {
                mean_loss: loss,
                mean_grad_norm: norm,
                steps: 3,
                complete: true,
            }),
            rank: None,
            likely_worse: false,
            diverged: false,
            kept: false,
            steps: 3,
            total_steps: 30,
            best_val_loss: val,
            final_val_loss: val,
        }
    }

    #[test]
    fn candidates_are_ranked_within_their_effective_batch_and_the_leaders_compared_at_the_end() {
        // Shaped like SmolLM2's triage: within a batch the higher rate has
        // the lower gradient norm and ends better; the larger batch shows a
        // lower norm and a higher loss at every rate but ends worse.
        let mut c = vec![
            ran("1e-4/8", 8, 4.0, 3.0, Some(3.03)),
            ran("1e-3/8", 8, 3.6, 2.0, Some(1.77)),
            ran("1e-4/16", 16, 4.4, 2.2, Some(3.76)),
            ran("1e-3/16", 16, 4.1, 1.4, Some(2.04)),
        ];
        let all: Vec<EarlySummary> = c.iter().filter_map(|r| r.early).collect();
        let across = rank_siblings(&all);
        assert_eq!(across[3].rank, 0, "ranked across batches, 1e-3/16 leads");

        let leaders = rank_within_batches(&mut c, &[0, 1, 2, 3]);
        assert_eq!(leaders, [1, 3], "each batch's higher rate leads it");
        let ranks: Vec<Option<usize>> = c.iter().map(|r| r.rank).collect();
        assert_eq!(ranks, [Some(1), Some(0), Some(1), Some(0)]);
        assert_eq!(choose_kept(&c, &leaders), 1, "the leader that ends best");

        // No validation split: the leaders' early dynamics decide.
        for r in &mut c {
            r.best_val_loss = None;
        }
        assert_eq!(choose_kept(&c, &leaders), 3);
        // One batch: its leader, as before.
        let mut one = vec![c[0].clone(), c[1].clone()];
        let leaders = rank_within_batches(&mut one, &[0, 1]);
        assert_eq!(leaders, [1]);
        assert_eq!(choose_kept(&one, &leaders), 1);
    }

    #[test]
    fn bad_grids_say_what_to_do() {
        let e = "lr".parse::<GridAxis>().unwrap_err().to_string();
        assert!(e.contains("KEY=V1,V2"), "{e}");
        let e = "speed=1,2".parse::<GridAxis>().unwrap_err().to_string();
        assert!(e.contains("unknown key"), "{e}");
        let axes = ["effective_batch=12,16".parse().unwrap()];
        let e = candidates(&base(), &axes).unwrap_err().to_string();
        assert!(e.contains("multiple of train.micro_batch = 8"), "{e}");
        let axes = ["lr=1e-3".parse().unwrap()];
        assert!(matches!(
            candidates(&base(), &axes),
            Err(TriageError::TooFew)
        ));
        let axes = ["method.rank=4,8".parse().unwrap()];
        assert_eq!(
            candidates(&base(), &axes).unwrap()[1].overrides,
            ["method.rank=8"]
        );
    }
}
