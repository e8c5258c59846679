//! Updates in SVD form, `s · A·diag(e)·B` beside a frozen linear layer:
//! AdaLoRA's `P·Λ·Q` and KaSA's `ΔU·ΔΣ·ΔVᵀ` are the same layer, and both
//! keep their singular vectors near-orthonormal with the same kind of
//! regulariser.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, module::linear};

use super::dropout_input;

/// One adapted layer's triplets: `base + s · dropout(x)·A·diag(e)·B`.
#[derive(Module, Debug)]
pub struct TripletAdapter {
    /// The right singular vectors, [in, r] (AdaLoRA's Q, KaSA's ΔV; the
    /// transpose of PEFT's `lora_A`).
    pub a: Param<Tensor<2>>,
    /// The singular values, [r] (AdaLoRA's λ, zero for a pruned triplet;
    /// KaSA's Δσ).
    pub e: Param<Tensor<1>>,
    /// The left singular vectors as rows, [r, out] (AdaLoRA's P, KaSA's
    /// ΔUᵀ; the transpose of PEFT's `lora_B`).
    pub b: Param<Tensor<2>>,
    /// The scale s of the update.
    pub scale: f64,
    pub dropout: f64,
}

impl TripletAdapter {
    /// The layer's output from its input and its frozen output.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<D>,
        base: Tensor<D>,
        dropout: bool,
    ) -> Tensor<D> {
        let x = if self.dropout > 0.0 && dropout {
            dropout_input(x, self.dropout)
        } else {
            x
        };
        let r = self.e.dims()[0];
        let mut shape = [1usize; D];
        shape[D - 1] = r;
        let low = linear(x, self.a.val(), None) * self.e.val().reshape(shape);
        base + linear(low, self.b.val(), None) * self.scale
    }

    /// The rank r.
    pub fn rank(&self) -> usize {
        self.e.dims()[0]
    }

    /// `‖AᵀA − I‖_F` and `‖B·Bᵀ − I‖_F` (r x r): how far the right and
    /// the left singular vectors are from orthonormal, on the tracked
    /// tensors.
    pub fn orthogonality(&self) -> [Tensor<1>; 2] {
        let (a, b) = (self.a.val(), self.b.val());
        let eye = Tensor::<2>::eye(self.rank(), &a.device());
        let off = |gram: Tensor<2>| (gram - eye.clone()).powi_scalar(2).sum().sqrt();
        [
            off(a.clone().transpose().matmul(a)),
            off(b.clone().matmul(b.transpose())),
        ]
    }
}

/// The sum of `terms` (none when empty).
pub(crate) fn sum(terms: impl IntoIterator<Item = Tensor<1>>) -> Option<Tensor<1>> {
    terms.into_iter().reduce(|a, b| a + b)
}
