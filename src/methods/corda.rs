//! CorDA (Yang et al. 2024, "CorDA: Context-Oriented Decomposition
//! Adaptation of Large Language Models for Task-Aware Parameter-Efficient
//! Fine-tuning"), as PEFT's `init_lora_weights="corda"` computes it: the
//! covariance C of each linear layer's input over a few calibration
//! samples orients the decomposition `W·C = U·S·Vᵀ`, so `W = U·S·(C⁻¹ᵀV)ᵀ`.
//! The instruction-previewed mode (IPM) trains the r largest components
//! (those the task's inputs use most), the knowledge-preserved mode (KPM)
//! the r smallest, leaving the components that carry what the calibration
//! data (a knowledge file) exercises in the frozen residual.

use std::collections::BTreeMap;

use burn::tensor::{Int, Tensor, TensorData};
use faer::Mat;
use faer::linalg::solvers::DenseSolveCore;
use serde::{Deserialize, Serialize};

use crate::model::{CausalLm, LinearInput};

/// Which components a CorDA adapter trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CordaMode {
    /// Instruction-previewed: the r largest components, from calibration
    /// rows of the training data.
    #[default]
    Ipm,
    /// Knowledge-preserved: the r smallest, from rows of a knowledge file.
    Kpm,
}

impl CordaMode {
    /// The stable name, as in the `[method]` table.
    pub fn name(self) -> &'static str {
        match self {
            CordaMode::Ipm => "ipm",
            CordaMode::Kpm => "kpm",
        }
    }
}

/// Why a CorDA preparation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CordaError {
    #[error(
        "CorDA needs calibration rows, and none came: the run's data (or method.corda_data) \
         has no usable row"
    )]
    NoSamples,
    #[error(
        "calibration row {row} gives the input of layer {layer}'s {input:?} layers values that \
         are all zero or not finite; remove that row from the calibration data"
    )]
    BadInput {
        row: usize,
        layer: usize,
        input: LinearInput,
    },
    #[error("the decomposition of a {rows} x {cols} weight did not converge")]
    Svd { rows: usize, cols: usize },
}

/// The mean input covariance of every decoder linear layer's input, by
/// (layer, input), each [in, in] row-major.
pub type Covariances = BTreeMap<(usize, LinearInput), Vec<f32>>;

/// PEFT's `calib_cov_distribution`: each sample (one row, batch 1) runs
/// through the model; each linear input X [len, in] is scaled by 1/|max X|
/// and XᵀX summed in f32; the sums are divided by the sample count.
/// `progress(done, total)` after each sample.
pub fn covariances(
    model: &CausalLm,
    samples: &[Vec<u32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Covariances, CordaError> {
    if samples.is_empty() {
        return Err(CordaError::NoSamples);
    }
    let device = model.embed_tokens.val().device();
    let mut sums: BTreeMap<(usize, LinearInput), Tensor<2>> = BTreeMap::new();
    let mut bad = None;
    for (row, ids) in samples.iter().enumerate() {
        let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
        let len = ids.len();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
        {
            let mut tap = |layer: usize, input: LinearInput, x: Tensor<3>| {
                let [_, t, width] = x.dims();
                let x = x.detach().reshape([t, width]);
                let scale = x.clone().max().into_scalar::<f32>().abs();
                if !(scale.is_finite() && scale > 0.0) {
                    bad.get_or_insert(CordaError::BadInput { row, layer, input });
                    return;
                }
                let x = x / scale;
                let cov = x.clone().transpose().matmul(x);
                let slot = sums.entry((layer, input));
                match slot {
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        let sum = e.get().clone() + cov;
                        e.insert(sum);
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(cov);
                    }
                }
            };
            model.trace_linear_inputs(tokens, &mut tap);
        }
        if let Some(e) = bad.take() {
            return Err(e);
        }
        progress(row + 1, samples.len());
    }
    let n = samples.len() as f32;
    Ok(sums
        .into_iter()
        .map(|(key, sum)| {
            let host = (sum / n)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            (key, host)
        })
        .collect())
}

/// CorDA's initial (A [in, r], B [r, out]) for the frozen weight `w`
/// [in, out] (row-major) and its input covariance `cov` [in, in], with
/// `scaling` the LoRA scale: PEFT's `collect_eigens_for_layer`,
/// `crop_corda_eigens` and `corda_init`, in f64. The covariance is damped by
/// a multiple of its mean diagonal until its inverse is accurate (PEFT's
/// rule: ‖C·C⁻¹ − I‖ < 0.05, the damping doubling from 1%).
pub fn initial_pair(
    w: &[f32],
    inp: usize,
    out: usize,
    cov: &[f32],
    rank: usize,
    mode: CordaMode,
    scaling: f64,
) -> Result<(Vec<f32>, Vec<f32>), CordaError> {
    let c = Mat::<f64>::from_fn(inp, inp, |i, j| f64::from(cov[i * inp + j]));
    let mean_diag = (0..inp).map(|i| c[(i, i)]).sum::<f64>() / inp as f64;
    let mut damp = 0.01;
    let (fixed, inv) = loop {
        let fixed = Mat::<f64>::from_fn(inp, inp, |i, j| {
            c[(i, j)] + if i == j { mean_diag * damp } else { 0.0 }
        });
        let inv = fixed.partial_piv_lu().inverse();
        let product = &fixed * &inv;
        let error = (0..inp)
            .flat_map(|i| (0..inp).map(move |j| (i, j)))
            .map(|(i, j)| {
                let d = product[(i, j)] - if i == j { 1.0 } else { 0.0 };
                d * d
            })
            .sum::<f64>()
            .sqrt();
        if error < 0.05 || damp > 1e6 {
            break (fixed, inv);
        }
        damp *= 2.0;
    };
    // W in HF's (out, in) layout, times the damped covariance.
    let w_hf = Mat::<f64>::from_fn(out, inp, |o, i| f64::from(w[i * out + o]));
    let oriented = &w_hf * &fixed;
    let svd = oriented.thin_svd().map_err(|_| CordaError::Svd {
        rows: out,
        cols: inp,
    })?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let k = s.nrows();
    if (0..k).any(|j| !s[j].is_finite()) {
        return Err(CordaError::Svd {
            rows: out,
            cols: inp,
        });
    }
    // PEFT's V = (Vᴴ·C⁻¹)ᵀ = C⁻ᵀ·V.
    let v_c = inv.transpose() * v;
    let picked: Vec<usize> = match mode {
        CordaMode::Ipm => (0..rank).collect(),
        CordaMode::Kpm => (k - rank..k).collect(),
    };
    let root: Vec<f64> = picked.iter().map(|&j| (s[j] / scaling).sqrt()).collect();
    let a = (0..inp)
        .flat_map(|i| {
            let (v_c, picked, root) = (&v_c, &picked, &root);
            (0..rank).map(move |j| (v_c[(i, picked[j])] * root[j]) as f32)
        })
        .collect();
    let b = (0..rank)
        .flat_map(|j| {
            let (picked, root) = (&picked, &root);
            (0..out).map(move |o| (u[(o, picked[j])] * root[j]) as f32)
        })
        .collect();
    Ok((a, b))
}
