//! Causal self-attention with grouped KV heads, forward and backward,
//! without materialising the [batch, heads, len, len] scores.
//!
//! Queries go in blocks of [`BLOCK`] rows; a block only meets the keys at
//! or before its last row, so the masked upper triangle is never computed.
//! Forward keeps the output and each row's log-sum-exp; backward recomputes
//! the probabilities block by block from them (FlashAttention's recipe) and
//! accumulates dK and dV over the query heads that share a KV head, so each
//! rayon task owns one (batch, KV head) group and writes disjoint memory.

use crate::mm::matmul;
use rayon::prelude::*;

/// Query rows per block: the score block [BLOCK, len] stays in L2.
const BLOCK: usize = 64;

/// Shapes of one call: q is [batch, heads, len, dim], k and v are
/// [batch, kv_heads, len, dim]; heads is a multiple of kv_heads.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub len: usize,
    pub dim: usize,
}

impl Dims {
    fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// Scores of query rows `i0..i1` against keys `0..i1`, scaled, with the
/// future masked to -inf: `s` is [i1 - i0, i1] row-major.
fn scores(q: &[f32], k: &[f32], d: usize, i0: usize, i1: usize, scale: f32, s: &mut [f32]) {
    let rows = i1 - i0;
    matmul(
        [rows, i1, d],
        s,
        i1,
        false,
        &q[i0 * d..],
        [d, 1],
        k,
        [1, d],
        scale,
    );
    for r in 0..rows {
        let i = i0 + r;
        s[r * i1 + i + 1..(r + 1) * i1].fill(f32::NEG_INFINITY);
    }
}

/// Output [batch, heads, len, dim] and log-sum-exp [batch, heads, len].
pub fn forward(q: &[f32], k: &[f32], v: &[f32], dims: Dims, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let Dims { len: t, dim: d, .. } = dims;
    let rep = dims.rep();
    let mut out = vec![0f32; q.len()];
    let mut lse = vec![0f32; q.len() / d];
    out.par_chunks_mut(rep * t * d)
        .zip(lse.par_chunks_mut(rep * t))
        .zip(q.par_chunks(rep * t * d))
        .zip(k.par_chunks(t * d).zip(v.par_chunks(t * d)))
        .for_each(|(((out, lse), q), (k, v))| {
            let mut s = vec![0f32; BLOCK * t];
            for h in 0..rep {
                let (q, out, lse) = (
                    &q[h * t * d..(h + 1) * t * d],
                    &mut out[h * t * d..(h + 1) * t * d],
                    &mut lse[h * t..(h + 1) * t],
                );
                for i0 in (0..t).step_by(BLOCK) {
                    let i1 = (i0 + BLOCK).min(t);
                    let rows = i1 - i0;
                    let s = &mut s[..rows * i1];
                    scores(q, k, d, i0, i1, scale, s);
                    for (r, row) in s.chunks_exact_mut(i1).enumerate() {
                        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let mut sum = 0f32;
                        for p in row.iter_mut() {
                            *p = (*p - max).exp();
                            sum += *p;
                        }
                        let inv = 1.0 / sum;
                        row.iter_mut().for_each(|p| *p *= inv);
                        lse[i0 + r] = max + sum.ln();
                    }
                    matmul(
                        [rows, d, i1],
                        &mut out[i0 * d..],
                        d,
                        false,
                        s,
                        [i1, 1],
                        v,
                        [d, 1],
                        1.0,
                    );
                }
            }
        });
    (out, lse)
}

/// Saved forward values of one call.
pub struct Saved<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub out: &'a [f32],
    pub lse: &'a [f32],
}

/// Gradients (dq, dk, dv) for the upstream gradient `g` of the output.
pub fn backward(saved: &Saved, g: &[f32], dims: Dims, scale: f32) -> [Vec<f32>; 3] {
    let Dims { len: t, dim: d, .. } = dims;
    let rep = dims.rep();
    let Saved { q, k, v, out, lse } = *saved;
    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![0f32; k.len()];
    let mut dv = vec![0f32; v.len()];
    let group = rep * t * d;
    dq.par_chunks_mut(group)
        .zip(dk.par_chunks_mut(t * d).zip(dv.par_chunks_mut(t * d)))
        .zip(q.par_chunks(group).zip(out.par_chunks(group)))
        .zip(
            g.par_chunks(group)
                .zip(lse.par_chunks(rep * t))
                .zip(k.par_chunks(t * d).zip(v.par_chunks(t * d))),
        )
        .for_each(|(((dq, (dk, dv)), (q, out)), ((g, lse), (k, v)))| {
            let mut p = vec![0f32; BLOCK * t];
            let mut dp = vec![0f32; BLOCK * t];
            for h in 0..rep {
                let span = h * t * d..(h + 1) * t * d;
                let (q, out, g, dq) = (
                    &q[span.clone()],
                    &out[span.clone()],
                    &g[span.clone()],
                    &mut dq[span],
                );
                let lse = &lse[h * t..(h + 1) * t];
                for i0 in (0..t).step_by(BLOCK) {
                    let i1 = (i0 + BLOCK).min(t);
                    let rows = i1 - i0;
                    let (p, dp) = (&mut p[..rows * i1], &mut dp[..rows * i1]);
                    scores(q, k, d, i0, i1, scale, p);
                    for (r, row) in p.chunks_exact_mut(i1).enumerate() {
                        let l = lse[i0 + r];
                        row.iter_mut().for_each(|s| *s = (*s - l).exp());
                    }
                    let g_blk = &g[i0 * d..i1 * d];
                    // dV[0..i1] += Pᵀ · dO
                    matmul([i1, d, rows], dv, d, true, p, [1, i1], g_blk, [d, 1], 1.0);
                    // dP = dO · V[0..i1]ᵀ
                    matmul([rows, i1, d], dp, i1, false, g_blk, [d, 1], v, [1, d], 1.0);
                    // dS = P ∘ (dP − rowsum(dO ∘ O)) · scale, written over dP.
                    for r in 0..rows {
                        let row = (i0 + r) * d..(i0 + r + 1) * d;
                        let delta: f32 = g[row.clone()]
                            .iter()
                            .zip(&out[row])
                            .map(|(a, b)| a * b)
                            .sum();
                        let (pr, dpr) = (&p[r * i1..(r + 1) * i1], &mut dp[r * i1..(r + 1) * i1]);
                        for (ds, &pv) in dpr.iter_mut().zip(pr) {
                            *ds = pv * (*ds - delta) * scale;
                        }
                    }
                    // dQ = dS · K[0..i1];  dK[0..i1] += dSᵀ · Q
                    matmul(
                        [rows, d, i1],
                        &mut dq[i0 * d..],
                        d,
                        false,
                        dp,
                        [i1, 1],
                        k,
                        [d, 1],
                        1.0,
                    );
                    matmul(
                        [i1, d, rows],
                        dk,
                        d,
                        true,
                        dp,
                        [1, i1],
                        &q[i0 * d..],
                        [d, 1],
                        1.0,
                    );
                }
            }
        });
    [dq, dk, dv]
}
