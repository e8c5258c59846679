//! The kernels themselves, on contiguous f32 slices, parallel over rows.
//!
//! Each pass reads its inputs once and writes its output once, where
//! burn's composed ops would run six to ten single-threaded elementwise
//! passes (below 4M elements flex runs elementwise work on one core) and
//! keep every intermediate for backward.

use rayon::prelude::*;

/// Rows per rayon task: big enough to amortise scheduling, small enough to
/// spread a [2048, 576] activation over every core.
const MIN_TASK_ELEMS: usize = 16 * 1024;

fn rows_per_task(width: usize) -> usize {
    (MIN_TASK_ELEMS / width.max(1)).max(1)
}

/// RMSNorm over rows of `width`: `y = x * rstd * w` with
/// `rstd = 1 / sqrt(mean(x²) + eps)`, accumulated in f32 as transformers
/// does. Returns `y` and the per-row `rstd` (kept for backward).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let width = w.len();
    let rows = x.len() / width;
    let mut y = vec![0f32; x.len()];
    let mut rstd = vec![0f32; rows];
    let per = rows_per_task(width);
    y.par_chunks_mut(per * width)
        .zip(rstd.par_chunks_mut(per))
        .zip(x.par_chunks(per * width))
        .for_each(|((y, r), x)| {
            for ((y, r), x) in y
                .chunks_exact_mut(width)
                .zip(r.iter_mut())
                .zip(x.chunks_exact(width))
            {
                let ms = x.iter().map(|v| v * v).sum::<f32>() / width as f32;
                *r = 1.0 / (ms + eps).sqrt();
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                    *y = w * (x * *r);
                }
            }
        });
    (y, rstd)
}

/// Gradients of [`rms_norm`] for the upstream gradient `g`:
/// `dx = rstd · (g·w − x̂ · mean(g·w·x̂))` with `x̂ = x·rstd`, and
/// `dw = Σ_rows g·x̂` when `want_w`.
pub fn rms_norm_backward(
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    g: &[f32],
    want_w: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let width = w.len();
    let per = rows_per_task(width);
    let mut dx = vec![0f32; x.len()];
    let dw_parts: Vec<Vec<f32>> = dx
        .par_chunks_mut(per * width)
        .zip(x.par_chunks(per * width))
        .zip(g.par_chunks(per * width))
        .zip(rstd.par_chunks(per))
        .map(|(((dx, x), g), rstd)| {
            let mut dw = if want_w {
                vec![0f32; width]
            } else {
                Vec::new()
            };
            for (((dx, x), g), &r) in dx
                .chunks_exact_mut(width)
                .zip(x.chunks_exact(width))
                .zip(g.chunks_exact(width))
                .zip(rstd)
            {
                let dot: f32 = x
                    .iter()
                    .zip(g)
                    .zip(w)
                    .map(|((&x, &g), &w)| g * w * x * r)
                    .sum();
                let mean = dot / width as f32;
                for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                    *dx = r * (g * w - x * r * mean);
                }
                if want_w {
                    for ((dw, &x), &g) in dw.iter_mut().zip(x).zip(g) {
                        *dw += g * x * r;
                    }
                }
            }
            dw
        })
        .collect();
    let dw = want_w.then(|| {
        let mut total = vec![0f32; width];
        for part in &dw_parts {
            for (t, p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
        total
    });
    (dx, dw)
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// SwiGLU's gate: `silu(a) · b`, elementwise.
pub fn swiglu(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(MIN_TASK_ELEMS)
        .zip(a.par_chunks(MIN_TASK_ELEMS))
        .zip(b.par_chunks(MIN_TASK_ELEMS))
        .for_each(|((o, a), b)| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = a * sigmoid(a) * b;
            }
        });
    out
}

/// Whether element `i` survives dropout with `keep` probability under
/// `seed`: a counter-based draw (SplitMix64 of seed and index), so any
/// element's mask can be recomputed alone, in any order, in parallel.
#[inline]
fn kept(seed: u64, i: usize, keep: f32) -> bool {
    let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 24 bits as a uniform in [0, 1).
    ((z >> 40) as f32) * (1.0 / (1u32 << 24) as f32) < keep
}

/// Inverted dropout: `x / keep` where the element is kept, else 0. The
/// backward pass is the same function of the upstream gradient (the mask
/// is recomputed from `seed`, never stored).
pub fn dropout(x: &[f32], keep: f32, seed: u64) -> Vec<f32> {
    let scale = 1.0 / keep;
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(MIN_TASK_ELEMS)
        .zip(x.par_chunks(MIN_TASK_ELEMS))
        .enumerate()
        .for_each(|(c, (o, x))| {
            let base = c * MIN_TASK_ELEMS;
            for (j, (o, &x)) in o.iter_mut().zip(x).enumerate() {
                *o = if kept(seed, base + j, keep) {
                    x * scale
                } else {
                    0.0
                };
            }
        });
    out
}

/// Gradients of [`swiglu`]: `da = g·b·s·(1 + a·(1 − s))` with
/// `s = sigmoid(a)`, and `db = g·a·s`.
pub fn swiglu_backward(a: &[f32], b: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut da = vec![0f32; a.len()];
    let mut db = vec![0f32; a.len()];
    da.par_chunks_mut(MIN_TASK_ELEMS)
        .zip(db.par_chunks_mut(MIN_TASK_ELEMS))
        .zip(a.par_chunks(MIN_TASK_ELEMS))
        .zip(
            b.par_chunks(MIN_TASK_ELEMS)
                .zip(g.par_chunks(MIN_TASK_ELEMS)),
        )
        .for_each(|(((da, db), a), (b, g))| {
            for ((((da, db), &a), &b), &g) in da.iter_mut().zip(db).zip(a).zip(b).zip(g) {
                let s = sigmoid(a);
                *da = g * b * s * (1.0 + a * (1.0 - s));
                *db = g * a * s;
            }
        });
    (da, db)
}

/// Per-row negative log-likelihood of `targets` under `logits` [rows,
/// vocab]: `lse(row) − row[target]`. Returns the losses and each row's
/// log-sum-exp (kept for backward).
pub fn nll(logits: &[f32], vocab: usize, targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let rows = targets.len();
    let mut loss = vec![0f32; rows];
    let mut lse = vec![0f32; rows];
    loss.par_iter_mut()
        .zip(lse.par_iter_mut())
        .zip(logits.par_chunks(vocab))
        .zip(targets.par_iter())
        .for_each(|(((loss, lse), row), &t)| {
            *lse = log_sum_exp(row);
            *loss = *lse - row[t];
        });
    (loss, lse)
}

/// `log Σ exp(row)`, shifted by the row's maximum.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // f64 accumulation: a 150k-entry sum of exponentials in f32 loses
    // digits that transformers' (upcast) loss keeps.
    let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// Gradient of [`nll`] for upstream `g` [rows], written over `logits`
/// in place: `g · (softmax(row) − onehot(target))`.
pub fn nll_backward(logits: &mut [f32], vocab: usize, targets: &[usize], lse: &[f32], g: &[f32]) {
    logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .zip(lse.par_iter().zip(g.par_iter()))
        .for_each(|((row, &t), (&lse, &g))| {
            for v in row.iter_mut() {
                *v = g * (*v - lse).exp();
            }
            row[t] -= g;
        });
}
