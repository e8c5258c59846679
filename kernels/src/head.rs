//! The output head and its cross-entropy as one op: `loss[r] =
//! logsumexp(h[r]·W) − (h[r]·W)[target[r]]`, a block of rows at a time, so
//! the [rows, vocab] logits (1.2 GB for 2,048 positions of Qwen's 151,936
//! tokens) never exist at once — only one block of them does.
//!
//! When the head weight is frozen (LoRA and the other adapter methods) the
//! gradient of the hidden states is computed in the forward pass, block by
//! block while the logits are at hand (Liger's recipe), and backward only
//! scales its rows by the upstream gradient: no logits are kept and none
//! are recomputed. When the weight trains too, its gradient needs the
//! upstream gradient first, so backward recomputes each block instead.

use rayon::prelude::*;

use crate::cpu::log_sum_exp;
use crate::mm::matmul_with;

/// Largest logits block, in elements (128 MiB of f32): big enough that
/// streaming the head weight once per block costs little next to the
/// block's matmul, small next to the whole logits of a long batch.
const BLOCK_ELEMS: usize = 32 << 20;

/// The head weight as a logical [width, vocab] matrix: element (i, v) is
/// `data[i * rs + v * cs]`, so a transposed [vocab, width] embedding is read
/// in place.
#[derive(Debug, Clone, Copy)]
pub struct Weight<'a> {
    pub data: &'a [f32],
    pub width: usize,
    pub vocab: usize,
    pub rs: usize,
    pub cs: usize,
}

fn block_rows(vocab: usize) -> usize {
    (BLOCK_ELEMS / vocab.max(1)).max(16)
}

/// Loss of one row of logits. With `grad = Some(g)` the row is overwritten
/// with `g · (softmax(row) − onehot(t))`, the row's logit gradient.
fn row_loss(row: &mut [f32], t: usize, grad: Option<f32>) -> f32 {
    let lse = log_sum_exp(row);
    let loss = lse - row[t];
    if let Some(g) = grad {
        for v in row.iter_mut() {
            *v = g * (*v - lse).exp();
        }
        row[t] -= g;
    }
    loss
}

/// `logits[..c] = hidden[r0..r0 + c] · W`.
fn block_logits(hidden: &[f32], w: Weight, r0: usize, c: usize, logits: &mut [f32]) {
    let width = w.width;
    matmul_with(
        [c, w.vocab, width],
        logits,
        w.vocab,
        false,
        &hidden[r0 * width..(r0 + c) * width],
        [width, 1],
        w.data,
        [w.rs, w.cs],
        1.0,
        true,
    );
}

/// `dh = dlogits · Wᵀ` for one block (Wᵀ's (v, i) element is W's (i, v)).
fn block_hidden_grad(dlogits: &[f32], w: Weight, dh: &mut [f32]) {
    let c = dh.len() / w.width.max(1);
    matmul_with(
        [c, w.width, w.vocab],
        dh,
        w.width,
        false,
        dlogits,
        [w.vocab, 1],
        w.data,
        [w.cs, w.rs],
        1.0,
        true,
    );
}

/// Per-row losses of `targets` under `hidden` [rows, width] · W; with
/// `with_grad`, also the gradient of their sum with respect to `hidden`
/// (each row's upstream gradient taken as 1).
pub fn forward(
    hidden: &[f32],
    w: Weight,
    targets: &[usize],
    with_grad: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    forward_in_blocks(hidden, w, targets, with_grad, block_rows(w.vocab))
}

fn forward_in_blocks(
    hidden: &[f32],
    w: Weight,
    targets: &[usize],
    with_grad: bool,
    block: usize,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (rows, width, vocab) = (targets.len(), w.width, w.vocab);
    assert_eq!(
        hidden.len(),
        rows * width,
        "hidden states are not [rows, width]"
    );
    let block = block.min(rows).max(1);
    let mut logits = vec![0f32; block * vocab];
    let mut loss = vec![0f32; rows];
    let mut dh = with_grad.then(|| vec![0f32; rows * width]);
    for r0 in (0..rows).step_by(block) {
        let c = block.min(rows - r0);
        let l = &mut logits[..c * vocab];
        block_logits(hidden, w, r0, c, l);
        let grad = with_grad.then_some(1.0);
        l.par_chunks_mut(vocab)
            .zip(loss[r0..r0 + c].par_iter_mut())
            .zip(targets[r0..r0 + c].par_iter())
            .for_each(|((row, loss), &t)| *loss = row_loss(row, t, grad));
        if let Some(dh) = dh.as_mut() {
            block_hidden_grad(l, w, &mut dh[r0 * width..(r0 + c) * width]);
        }
    }
    (loss, dh)
}

/// Gradients of `Σ g[r] · loss[r]`, recomputing the logits block by block:
/// with respect to `hidden` when `want_hidden`, and with respect to W as a
/// row-major [width, vocab] matrix.
pub fn backward(
    hidden: &[f32],
    w: Weight,
    targets: &[usize],
    g: &[f32],
    want_hidden: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    backward_in_blocks(hidden, w, targets, g, want_hidden, block_rows(w.vocab))
}

fn backward_in_blocks(
    hidden: &[f32],
    w: Weight,
    targets: &[usize],
    g: &[f32],
    want_hidden: bool,
    block: usize,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (rows, width, vocab) = (targets.len(), w.width, w.vocab);
    assert_eq!(g.len(), rows, "one upstream gradient per row");
    assert_eq!(
        hidden.len(),
        rows * width,
        "hidden states are not [rows, width]"
    );
    let block = block.min(rows).max(1);
    let mut logits = vec![0f32; block * vocab];
    let mut dh = want_hidden.then(|| vec![0f32; rows * width]);
    let mut dw = vec![0f32; width * vocab];
    for r0 in (0..rows).step_by(block) {
        let c = block.min(rows - r0);
        let l = &mut logits[..c * vocab];
        block_logits(hidden, w, r0, c, l);
        l.par_chunks_mut(vocab)
            .zip(targets[r0..r0 + c].par_iter())
            .zip(g[r0..r0 + c].par_iter())
            .for_each(|((row, &t), &g)| {
                row_loss(row, t, Some(g));
            });
        if let Some(dh) = dh.as_mut() {
            block_hidden_grad(l, w, &mut dh[r0 * width..(r0 + c) * width]);
        }
        // dW += hidden[block]ᵀ · dlogits[block]
        matmul_with(
            [width, vocab, c],
            &mut dw,
            vocab,
            r0 > 0,
            &hidden[r0 * width..(r0 + c) * width],
            [1, width],
            l,
            [vocab, 1],
            1.0,
            true,
        );
    }
    (dh, dw)
}

/// Scales row `r` of `dh` [rows, width] by `g[r]`.
pub fn scale_rows(dh: &mut [f32], width: usize, g: &[f32]) {
    dh.par_chunks_mut(width.max(1))
        .zip(g.par_iter())
        .for_each(|(row, &g)| row.iter_mut().for_each(|v| *v *= g));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loss, hidden gradient and weight gradient of `Σ g[r] · loss[r]`,
    /// in f64 loops straight from the definition.
    fn naive(
        h: &[f32],
        w: &[f32],
        width: usize,
        vocab: usize,
        t: &[usize],
        g: &[f32],
    ) -> [Vec<f64>; 3] {
        let rows = t.len();
        let (mut loss, mut dh, mut dw) = (
            vec![0.0; rows],
            vec![0.0; rows * width],
            vec![0.0; width * vocab],
        );
        for r in 0..rows {
            let logits: Vec<f64> = (0..vocab)
                .map(|v| {
                    (0..width)
                        .map(|i| h[r * width + i] as f64 * w[i * vocab + v] as f64)
                        .sum()
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            loss[r] = lse - logits[t[r]];
            for v in 0..vocab {
                let d = g[r] as f64 * ((logits[v] - lse).exp() - f64::from(v == t[r]));
                for i in 0..width {
                    dh[r * width + i] += d * w[i * vocab + v] as f64;
                    dw[i * vocab + v] += d * h[r * width + i] as f64;
                }
            }
        }
        [loss, dh, dw]
    }

    fn close(a: &[f32], b: &[f64], tol: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (k, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x as f64 - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{k}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn blocks_of_rows_give_the_whole_loss_and_both_gradients() {
        let (rows, width, vocab) = (10, 7, 53);
        let pseudo = |k: usize, s: usize| ((k * 7919 + s * 104729) % 1000) as f32 / 250.0 - 2.0;
        let h: Vec<f32> = (0..rows * width).map(|k| pseudo(k, 1)).collect();
        let w: Vec<f32> = (0..width * vocab).map(|k| pseudo(k, 2)).collect();
        let t: Vec<usize> = (0..rows).map(|r| (r * 17) % vocab).collect();
        let g: Vec<f32> = (0..rows).map(|r| 0.5 + r as f32 / 10.0).collect();
        let [loss, dh, dw] = naive(&h, &w, width, vocab, &t, &g);
        let ones = vec![1.0; rows];
        let [_, dh_unit, _] = naive(&h, &w, width, vocab, &t, &ones);
        let view = Weight {
            data: &w,
            width,
            vocab,
            rs: vocab,
            cs: 1,
        };
        // 3 does not divide 10: the last block is short.
        let (l, d) = forward_in_blocks(&h, view, &t, true, 3);
        close(&l, &loss, 1e-5, "loss");
        close(&d.unwrap(), &dh_unit, 1e-5, "eager dh");
        let (d, dwt) = backward_in_blocks(&h, view, &t, &g, true, 3);
        close(&d.unwrap(), &dh, 1e-5, "recomputed dh");
        close(&dwt, &dw, 1e-5, "dw");
        // The same weight stored transposed ([vocab, width], an embedding).
        let wt: Vec<f32> = (0..vocab * width)
            .map(|k| w[(k % width) * vocab + k / width])
            .collect();
        let view_t = Weight {
            data: &wt,
            width,
            vocab,
            rs: 1,
            cs: width,
        };
        let (l, _) = forward_in_blocks(&h, view_t, &t, false, 4);
        close(&l, &loss, 1e-5, "loss, transposed weight");
        let (_, dwt) = backward_in_blocks(&h, view_t, &t, &g, false, 4);
        close(&dwt, &dw, 1e-5, "dw, transposed weight");
    }
}
