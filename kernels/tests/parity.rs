//! Each fused kernel against burn's composed ops on the same inputs: the
//! forward values and the gradients of every input agree to f32 rounding.

use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use tunesmith_kernels::{dropout, fused, head_nll, nll, rms_norm, swiglu};

fn device() -> Device {
    Device::flex().autodiff()
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn random<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<D> {
    let device = device();
    device.seed(seed);
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
}

fn composed_rms_norm(x: Tensor<3>, w: Tensor<1>, eps: f64) -> Tensor<3> {
    let variance = x.clone().powi_scalar(2).mean_dim(2);
    let normed = x * (variance + eps).sqrt().recip();
    normed * w.reshape([1, 1, -1])
}

#[test]
fn cpu_tensors_take_the_fused_path() {
    assert!(fused(&Tensor::<1>::zeros([2], &Device::flex())));
    assert!(fused(&Tensor::<1>::zeros([2], &device())));
}

#[test]
fn rms_norm_matches_composed_ops_and_their_gradients() {
    // Widths that are not a multiple of any SIMD lane count, rows across
    // several rayon tasks.
    for (rows, width) in [(3, 7), (40, 576), (2, 4099)] {
        let x = random([2, rows, width], 1);
        let w = random([width], 2);
        let eps = 1e-5;
        let probe = Tensor::<3>::random([2, rows, width], Distribution::Default, &device());
        let fused_out = rms_norm(x.clone(), w.clone(), eps);
        let plain_out = composed_rms_norm(x.clone(), w.clone(), eps);
        assert!(max_diff(fused_out.clone(), plain_out.clone()) < 1e-5);

        let gf = (fused_out * probe.clone()).sum().backward();
        let gp = (plain_out * probe).sum().backward();
        let dx = max_diff(x.grad(&gf).unwrap(), x.grad(&gp).unwrap());
        let dw = max_diff(w.grad(&gf).unwrap(), w.grad(&gp).unwrap());
        assert!(dx < 1e-4, "dx differs by {dx} at {rows}x{width}");
        assert!(dw < 1e-3, "dw differs by {dw} at {rows}x{width}");
    }
}

#[test]
fn rms_norm_of_a_frozen_weight_gives_only_the_input_gradient() {
    let x = random([1, 5, 33], 3);
    let w = Tensor::<1>::ones([33], &device());
    let g = rms_norm(x.clone(), w.clone(), 1e-6).sum().backward();
    assert!(x.grad(&g).is_some());
    assert!(w.grad(&g).is_none());
}

#[test]
fn swiglu_matches_composed_ops_and_their_gradients() {
    let a = random([3, 17, 1536], 4);
    let b = random([3, 17, 1536], 5);
    let probe = Tensor::<3>::random([3, 17, 1536], Distribution::Default, &device());
    let fused_out = swiglu(a.clone(), b.clone());
    let plain_out = silu(a.clone()) * b.clone();
    assert!(max_diff(fused_out.clone(), plain_out.clone()) < 1e-5);
    let gf = (fused_out * probe.clone()).sum().backward();
    let gp = (plain_out * probe).sum().backward();
    assert!(max_diff(a.grad(&gf).unwrap(), a.grad(&gp).unwrap()) < 1e-5);
    assert!(max_diff(b.grad(&gf).unwrap(), b.grad(&gp).unwrap()) < 1e-5);
}

#[test]
fn dropout_keeps_its_share_scales_survivors_and_masks_the_gradient_alike() {
    let (keep, n) = (0.8, 200_000);
    let x = (random([n], 7).abs() + 0.5).detach().require_grad();
    let probe = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device());
    let out = dropout(x.clone(), keep, 42);
    let y: Vec<f32> = out.clone().into_data().try_to_vec::<f32>().unwrap();
    let xs: Vec<f32> = x.clone().into_data().try_to_vec::<f32>().unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    // Binomial: the standard deviation of the kept share is sqrt(k(1-k)/n)
    // ~ 0.0009; 5 of them.
    let share = kept as f64 / n as f64;
    assert!(
        (share - keep).abs() < 0.0045,
        "kept {share} of the elements"
    );
    for (&y, &x) in y.iter().zip(&xs) {
        assert!(y == 0.0 || (y - x / keep as f32).abs() <= 1e-6 * y.abs());
    }

    // Backward: the upstream gradient through the same mask and scale.
    let g = (out * probe.clone()).sum().backward();
    let dx: Vec<f32> = x.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let ps: Vec<f32> = probe.into_data().try_to_vec::<f32>().unwrap();
    for i in 0..n {
        let expect = if y[i] == 0.0 {
            0.0
        } else {
            ps[i] / keep as f32
        };
        assert!(
            (dx[i] - expect).abs() <= 1e-6 * expect.abs(),
            "gradient {i}"
        );
    }

    // A mask is a function of its seed alone.
    let again: Vec<f32> = dropout(x.clone(), keep, 42)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(y, again);
    let other: Vec<f32> = dropout(x, keep, 43)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let same = y
        .iter()
        .zip(&other)
        .filter(|(a, b)| (**a == 0.0) == (**b == 0.0))
        .count();
    // Two independent masks agree on k^2 + (1-k)^2 = 68% of the elements.
    assert!((same as f64 / n as f64 - 0.68).abs() < 0.01);
}

#[test]
fn nll_matches_log_softmax_and_gather_with_gradients() {
    let (rows, vocab) = (37, 5003);
    let logits = random([rows, vocab], 6) * 4.0;
    let logits = logits.detach().require_grad();
    let targets: Vec<i64> = (0..rows as i64).map(|i| (i * 131) % vocab as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [rows]), &device());
    let weights = Tensor::<1>::random([rows], Distribution::Default, &device());

    let fused_out = nll(logits.clone(), targets.clone());
    let plain_out = log_softmax(logits.clone(), 1)
        .gather(1, targets.reshape([rows, 1]))
        .reshape([rows])
        .neg();
    assert!(max_diff(fused_out.clone(), plain_out.clone()) < 1e-4);
    let gf = (fused_out * weights.clone()).sum().backward();
    let gp = (plain_out * weights).sum().backward();
    let d = max_diff(logits.grad(&gf).unwrap(), logits.grad(&gp).unwrap());
    assert!(d < 1e-6, "logit gradients differ by {d}");
}

#[test]
fn kernels_run_without_autodiff_too() {
    let device = Device::flex();
    let x = Tensor::<2>::random([4, 64], Distribution::Default, &device);
    let w = Tensor::<1>::ones([64], &device);
    let y = rms_norm(x.clone(), w, 1e-6);
    // Unit weight: every row has mean square 1 after the norm.
    let ms = y.powi_scalar(2).mean_dim(1).reshape([4]);
    let ones = Tensor::<1>::ones([4], &device);
    assert!((ms - ones).abs().max().into_scalar::<f32>() < 1e-4);
}

fn composed_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [b, h, t, d] = q.dims();
    let kvh = k.dims()[1];
    let rep = h / kvh;
    let repeat = |x: Tensor<4>| {
        x.unsqueeze_dim::<5>(2)
            .expand([b, kvh, rep, t, d])
            .reshape([b, h, t, d])
    };
    let (k, v) = (repeat(k), repeat(v));
    let mut mask = vec![0f32; t * t];
    for i in 0..t {
        for j in i + 1..t {
            mask[i * t + j] = -1e30;
        }
    }
    let mask = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, t, t]), &q.device());
    let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (d as f64).sqrt()) + mask;
    burn::tensor::activation::softmax(scores, 3).matmul(v)
}

#[test]
fn causal_attention_matches_composed_ops_and_their_gradients() {
    // Grouped heads (3 query heads per KV head), a length that is not a
    // multiple of the query block, and plain multi-head attention.
    for (b, h, kvh, t, d) in [(2, 6, 2, 70, 16), (1, 2, 2, 129, 8), (1, 1, 1, 1, 4)] {
        let q = random([b, h, t, d], 7);
        let k = random([b, kvh, t, d], 8);
        let v = random([b, kvh, t, d], 9);
        let probe = Tensor::<4>::random([b, h, t, d], Distribution::Default, &device());
        let fused_out = tunesmith_kernels::causal_attention(q.clone(), k.clone(), v.clone());
        let plain_out = composed_attention(q.clone(), k.clone(), v.clone());
        let diff = max_diff(fused_out.clone(), plain_out.clone());
        assert!(
            diff < 1e-5,
            "output differs by {diff} at {b}x{h}/{kvh}x{t}x{d}"
        );
        let gf = (fused_out * probe.clone()).sum().backward();
        let gp = (plain_out * probe).sum().backward();
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let diff = max_diff(x.grad(&gf).unwrap(), x.grad(&gp).unwrap());
            assert!(
                diff < 1e-4,
                "d{name} differs by {diff} at {b}x{h}/{kvh}x{t}x{d}"
            );
        }
    }
}

#[test]
fn causal_attention_takes_strided_inputs() {
    // v arrives as a swap_dims view in the model; the kernel must read it
    // the same as a contiguous copy.
    let device = Device::flex();
    let q = Tensor::<4>::random([1, 2, 5, 4], Distribution::Default, &device);
    let k = Tensor::<4>::random([1, 2, 5, 4], Distribution::Default, &device);
    let v_seq = Tensor::<4>::random([1, 5, 2, 4], Distribution::Default, &device);
    let v_view = v_seq.clone().swap_dims(1, 2);
    let v_copy = Tensor::<4>::from_data(v_view.clone().into_data(), &device);
    let a = tunesmith_kernels::causal_attention(q.clone(), k.clone(), v_view);
    let b = tunesmith_kernels::causal_attention(q, k, v_copy);
    assert!(max_diff(a, b) < 1e-7);
}

fn composed_head_nll(hidden: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let rows = targets.dims()[0];
    log_softmax(hidden.matmul(weight), 1)
        .gather(1, targets.reshape([rows, 1]))
        .reshape([rows])
        .neg()
}

#[test]
fn head_nll_of_a_frozen_tied_embedding_matches_composed_ops() {
    let (rows, width, vocab) = (29, 48, 3001);
    let hidden = random([rows, width], 11).detach().require_grad();
    // A tied head: the embedding [vocab, width] read transposed, frozen.
    let embedding = random([vocab, width], 12).detach();
    let targets: Vec<i64> = (0..rows as i64).map(|i| (i * 997) % vocab as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [rows]), &device());
    let weights = Tensor::<1>::random([rows], Distribution::Default, &device());

    let fused_out = head_nll(
        hidden.clone(),
        embedding.clone().transpose(),
        targets.clone(),
    );
    let plain_out = composed_head_nll(hidden.clone(), embedding.transpose(), targets);
    let d = max_diff(fused_out.clone(), plain_out.clone());
    assert!(d < 1e-4, "losses differ by {d}");
    let gf = (fused_out * weights.clone()).sum().backward();
    let gp = (plain_out * weights).sum().backward();
    let d = max_diff(hidden.grad(&gf).unwrap(), hidden.grad(&gp).unwrap());
    assert!(d < 1e-4, "hidden-state gradients differ by {d}");
}

#[test]
fn head_nll_of_a_training_head_gives_its_gradient_too() {
    let (rows, width, vocab) = (17, 32, 1009);
    let hidden = random([rows, width], 13).detach().require_grad();
    let head = random([width, vocab], 14).detach().require_grad();
    let targets: Vec<i64> = (0..rows as i64).map(|i| (i * 61) % vocab as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [rows]), &device());
    let weights = Tensor::<1>::random([rows], Distribution::Default, &device());

    let fused_out = head_nll(hidden.clone(), head.clone(), targets.clone());
    let plain_out = composed_head_nll(hidden.clone(), head.clone(), targets);
    assert!(max_diff(fused_out.clone(), plain_out.clone()) < 1e-4);
    let gf = (fused_out * weights.clone()).sum().backward();
    let gp = (plain_out * weights).sum().backward();
    let d = max_diff(hidden.grad(&gf).unwrap(), hidden.grad(&gp).unwrap());
    assert!(d < 1e-4, "hidden-state gradients differ by {d}");
    let d = max_diff(head.grad(&gf).unwrap(), head.grad(&gp).unwrap());
    assert!(d < 1e-4, "head gradients differ by {d}");
}
