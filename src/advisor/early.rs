//! The guide's early-dynamics indicator: over the first share of a run,
//! among runs of the same model and data, lower gradient norms and higher
//! losses predict the better final model (Pareja et al. 2024). Summaries
//! of sibling runs are ranked on both and the weak ones flagged.

use serde::{Deserialize, Serialize};

/// Mean loss and gradient norm over a run's early window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlySummary {
    pub mean_loss: f64,
    pub mean_grad_norm: f64,
    /// Steps summarised, and whether they cover the whole window.
    pub steps: usize,
    pub complete: bool,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Window {
    loss: f64,
    norm: f64,
    n: usize,
    complete: bool,
}

impl Window {
    pub(super) fn add(&mut self, loss: f64, norm: f64, step: usize, window_steps: usize) {
        self.loss += loss;
        self.norm += norm;
        self.n += 1;
        self.complete = step >= window_steps;
    }

    pub(super) fn summary(&self) -> Option<EarlySummary> {
        (self.n > 0).then(|| EarlySummary {
            mean_loss: self.loss / self.n as f64,
            mean_grad_norm: self.norm / self.n as f64,
            steps: self.n,
            complete: self.complete,
        })
    }
}

/// A sibling's standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Index into the summaries given.
    pub index: usize,
    /// Rank by the guide's indicators (0 = most promising).
    pub rank: usize,
    /// Higher gradient norm and lower loss than the siblings' medians: the
    /// guide's sign of a run that ends worse.
    pub likely_worse: bool,
}

/// Ranks sibling runs by the guide's indicators: the sum of each run's rank
/// by gradient norm (ascending) and by loss (descending); ties by gradient
/// norm. A run is flagged when it is on the bad side of the median on both.
pub fn rank_siblings(runs: &[EarlySummary]) -> Vec<Verdict> {
    let n = runs.len();
    let ranks_by = |key: &dyn Fn(&EarlySummary) -> f64| -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| key(&runs[a]).total_cmp(&key(&runs[b])));
        let mut rank = vec![0; n];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        rank
    };
    let by_norm = ranks_by(&|s| s.mean_grad_norm);
    let by_loss = ranks_by(&|s| -s.mean_loss);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        (by_norm[a] + by_loss[a])
            .cmp(&(by_norm[b] + by_loss[b]))
            .then(runs[a].mean_grad_norm.total_cmp(&runs[b].mean_grad_norm))
    });
    let median =
        |key: &dyn Fn(&EarlySummary) -> f64| -> f64 { super::median(runs.iter().map(key)) };
    let norm_median = median(&|s| s.mean_grad_norm);
    let loss_median = median(&|s| s.mean_loss);
    let mut out: Vec<Verdict> = order
        .iter()
        .enumerate()
        .map(|(rank, &index)| Verdict {
            index,
            rank,
            likely_worse: n >= 2
                && runs[index].mean_grad_norm > norm_median
                && runs[index].mean_loss < loss_median,
        })
        .collect();
    out.sort_by_key(|v| v.index);
    out
}
