//! The one gemm wrapper of the kernels: bounds-checked slices in, gemm's
//! strided call out.

use gemm::{Parallelism, gemm};

/// `c[m, n] = (c if acc) + beta · a[m, k] · b[k, n]`; `c` is row-major with
/// row stride `c_rs`, `a` and `b` are given by (row stride, column stride).
/// `parallel` splits one product over rayon's threads; callers that already
/// run one product per thread pass `false`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    [m, n, k]: [usize; 3],
    c: &mut [f32],
    c_rs: usize,
    acc: bool,
    a: &[f32],
    [a_rs, a_cs]: [usize; 2],
    b: &[f32],
    [b_rs, b_cs]: [usize; 2],
    beta: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * c_rs + n, "matmul: output too small");
    assert!(a.len() > (m - 1) * a_rs + (k.max(1) - 1) * a_cs || k == 0);
    assert!(b.len() > (k.max(1) - 1) * b_rs + (n - 1) * b_cs || k == 0);
    let parallelism = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm touches inside the
    // three slices; `c` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            acc,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// [`matmul_with`] on the calling thread alone.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    mnk: [usize; 3],
    c: &mut [f32],
    c_rs: usize,
    acc: bool,
    a: &[f32],
    a_strides: [usize; 2],
    b: &[f32],
    b_strides: [usize; 2],
    beta: f32,
) {
    matmul_with(mnk, c, c_rs, acc, a, a_strides, b, b_strides, beta, false);
}
