//! LoRA against torch+PEFT, finite differences, and frozen base weights.

mod common;

use common::{batch_from, f32s, i64s, max_abs_diff};

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use safetensors::SafeTensors;
use serde_json::Value;

use tunesmith::CausalLm;
use tunesmith::config::TrainSection;
use tunesmith::data::IGNORE;
use tunesmith::methods::corda::CordaMode;
use tunesmith::methods::{LoraConfig, LoraInit, Method};
use tunesmith::model::precision::Storage;
use tunesmith::model::quant::QuantFormat;
use tunesmith::train::loss::{Batch, nll_sum};
use tunesmith::train::optim::AdamW;
use tunesmith::train::params::{self, HostTensor};
use tunesmith::train::step::{StepOptions, optimizer_step, step_gradients};

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

fn lora_model(rslora: bool, rank: usize, alpha: f64) -> CausalLm {
    lora_model_on(&Device::flex(), rslora, rank, alpha)
}

fn lora_model_on(device: &Device, rslora: bool, rank: usize, alpha: f64) -> CausalLm {
    lora_model_stored(
        device,
        Storage::dense(burn::tensor::DType::F32),
        rslora,
        rank,
        alpha,
    )
}

fn lora_model_stored(
    device: &Device,
    storage: Storage,
    rslora: bool,
    rank: usize,
    alpha: f64,
) -> CausalLm {
    let cfg = LoraConfig {
        rank,
        alpha,
        dropout: 0.0,
        use_rslora: rslora,
        ..LoraConfig::default()
    };
    prepared(device, storage, &cfg)
}

/// The calibration rows of a CorDA case (`calib.0`, `calib.1`...), in order.
fn calibration(st: &SafeTensors) -> Vec<Vec<u32>> {
    (0..)
        .map_while(|i| st.tensor(&format!("calib.{i}")).ok().map(|_| i))
        .map(|i| {
            let (_, ids) = i64s(st, &format!("calib.{i}"));
            ids.into_iter().map(|v| v as u32).collect()
        })
        .collect()
}

/// As [`prepared`], with calibration rows for a data-aware method.
fn prepared_with(
    device: &Device,
    storage: Storage,
    cfg: &LoraConfig,
    calibration: &[Vec<u32>],
) -> CausalLm {
    let device = device.clone().autodiff();
    let dir = common::models_dir().join("llama");
    let (model, _) = CausalLm::load_stored(&dir, &device, storage).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut quiet = |_: usize, _: usize, _: &str| {};
    let mut ctx = tunesmith::methods::PrepareContext::fresh(&mut rng, &mut quiet);
    ctx.calibration = calibration;
    cfg.prepare(model, &mut ctx).unwrap().model
}

/// The llama fixture with `cfg`'s adapters, on `device` with autodiff.
fn prepared(device: &Device, storage: Storage, cfg: &LoraConfig) -> CausalLm {
    let device = device.clone().autodiff();
    let dir = common::models_dir().join("llama");
    let (model, _) = CausalLm::load_stored(&dir, &device, storage).unwrap();
    cfg.prepare_fresh(model, &mut StdRng::seed_from_u64(0))
        .unwrap()
}

/// PEFT key (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`)
/// -> our trainable parameter name, and whether it is A.
fn our_name(trainable: &[(String, Vec<usize>)], peft: &str) -> (String, bool) {
    let rest = peft.strip_prefix("base_model.model.model.").unwrap();
    let (module, which) = rest.rsplit_once(".lora_").unwrap();
    let is_a = which.starts_with('A');
    let suffix = match which {
        "magnitude_vector" => ".magnitude",
        _ if is_a => ".a",
        _ => ".b",
    };
    let name = trainable
        .iter()
        .map(|(n, _)| n)
        .find(|n| n.starts_with(&format!("{module}.")) && n.ends_with(suffix))
        .unwrap_or_else(|| panic!("no parameter for {peft}"))
        .clone();
    (name, is_a)
}

/// PEFT stores A as [r, in] and B as [out, r]; we store the transposes
/// (DoRA's magnitude [out] is the same on both sides).
fn transpose(shape: &[usize], data: &[f32]) -> HostTensor {
    if shape.len() == 1 {
        return HostTensor {
            shape: shape.to_vec(),
            data: data.to_vec(),
        };
    }
    let (r, c) = (shape[0], shape[1]);
    let mut t = vec![0f32; data.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = data[i * c + j];
        }
    }
    HostTensor {
        shape: vec![c, r],
        data: t,
    }
}

fn check_peft_case(case: &str) {
    check_peft_case_on(case, &Device::flex());
}

fn check_peft_case_on(case: &str, device: &Device) {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join(format!("{case}.json"))).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(fixture_dir().join(format!("{case}.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cfg = LoraConfig {
        rank: meta["r"].as_u64().unwrap() as usize,
        alpha: meta["lora_alpha"].as_f64().unwrap(),
        dropout: 0.0,
        use_rslora: meta["use_rslora"].as_bool().unwrap(),
        use_dora: meta["use_dora"].as_bool().unwrap_or(false),
        init: match meta["init"].as_str() {
            Some("pissa") => LoraInit::Pissa,
            Some("corda_ipm" | "corda_kpm") => LoraInit::Corda,
            _ => LoraInit::Default,
        },
        corda_method: match meta["init"].as_str() {
            Some("corda_kpm") => CordaMode::Kpm,
            _ => CordaMode::Ipm,
        },
        // Only validation asks for the knowledge file; the rows come here.
        corda_samples: calibration(&st).len().max(1),
        ..LoraConfig::default()
    };
    let mut model = prepared_with(
        device,
        Storage::dense(burn::tensor::DType::F32),
        &cfg,
        &calibration(&st),
    );
    if cfg.init.decomposes() {
        check_residual_base(case, &mut model, &st);
    }
    let trainable = params::trainable(&model);
    let per_module = if cfg.use_dora { 3 } else { 2 };
    assert_eq!(
        trainable.len(),
        14 * per_module,
        "7 modules x 2 layers x (A, B[, magnitude])"
    );

    let mut init = BTreeMap::new();
    let mut after = BTreeMap::new();
    let mut grads = BTreeMap::new();
    let mut exact = BTreeMap::new();
    for key in st.names() {
        for (prefix, map) in [
            ("exact.", &mut exact),
            ("init.", &mut init),
            ("after.", &mut after),
            ("grad.", &mut grads),
        ] {
            if let Some(peft) = key.strip_prefix(prefix) {
                let (name, _) = our_name(&trainable, peft);
                let (shape, data) = f32s(&st, key);
                map.insert(name, transpose(&shape, &data));
            }
        }
    }
    // PEFT draws A from torch's generator and the fixture gives B random
    // values, so of the initial tensors only DoRA's magnitude (the base's
    // column norms) is ours to match.
    let ours_init = params::read_trainable(&model);
    for (name, expected) in init.iter().filter(|(n, _)| n.ends_with(".magnitude")) {
        let d = max_abs_diff(&ours_init[name].data, &expected.data);
        assert!(d < 1e-5, "{case}: initial {name} differs by {d}");
    }
    if cfg.init.decomposes() {
        // PEFT's f32 SVD is itself only this close to the exact (f64)
        // decomposition on these closely spaced singular values; ours must
        // match the exact one and be no further from PEFT than that. CorDA's
        // covariances are summed in f32 on the device (as PEFT's; an f64
        // product per row would cost hours on a real model), whose rounding
        // its smallest components (KPM) amplify: there ours must be at least
        // twice as close to the exact decomposition as PEFT's (measured: 8x
        // on the CPU, 4x on lavapipe).
        let peft_error = meta["init_f32_error"].as_f64().unwrap() as f32;
        let to_exact = pissa_init_difference(&ours_init, &exact);
        let to_peft = pissa_init_difference(&ours_init, &init);
        let exact_tol = if cfg.init == LoraInit::Corda {
            peft_error / 2.0
        } else {
            1e-6
        };
        assert!(
            to_exact < exact_tol,
            "{case}: initial A/B differ from the exact decomposition's by {to_exact}"
        );
        assert!(
            // The triangle through the exact decomposition.
            to_peft <= to_exact + peft_error + 1e-6,
            "{case}: initial A/B differ from PEFT's by {to_peft}, PEFT from the exact SVD's by {peft_error}"
        );
        eprintln!(
            "{case}: initial A and B {to_exact:.1e} from the exact decomposition's, {to_peft:.1e} \
             from PEFT's (PEFT's own f32: {peft_error:.1e}), up to singular-vector signs"
        );
    }
    let (model, missing) = params::write_params(model, &init);
    assert!(missing.is_empty(), "{missing:?}");
    let device = model.embed_tokens.val().device();
    let batch = batch_from(&st, &device);

    // Gradients, before any clipping, then one step.
    let (model, (loss_rel, norm_rel), _) = common::peft_step(case, model, &batch, &meta, &grads);
    let now = params::read_trainable(&model);
    let mut worst = 0f32;
    for (name, expected) in &after {
        let d = max_abs_diff(&now[name].data, &expected.data);
        worst = worst.max(d);
        assert!(
            d < 1e-5,
            "{case}: {name} after one AdamW step differs by {d}"
        );
    }
    eprintln!(
        "{case}: loss {loss_rel:.3e} relative, grad norm {norm_rel:.3e} relative, updated tensors {worst:.1e} from PEFT"
    );
}

/// The residual base (`W − s·A·B`) of PiSSA or CorDA against PEFT's,
/// every layer; then PEFT's is adopted, so that the step compared next
/// starts from the same numbers on both sides (CorDA's f32 covariances leave
/// the two residuals 1e-5 apart, which the gradients would carry).
fn check_residual_base(case: &str, model: &mut CausalLm, st: &SafeTensors) {
    let mut worst = 0f32;
    for (name, layer) in model.linears_mut() {
        let (shape, data) = f32s(st, &format!("residual.{name}.weight"));
        let want = transpose(&shape, &data);
        let ours = HostTensor::from_tensor(layer.frozen_weight());
        assert_eq!(ours.shape, want.shape, "{name}");
        worst = worst.max(max_abs_diff(&ours.data, &want.data));
        layer.replace_frozen_weight(want.data).unwrap();
    }
    assert!(
        worst < 1e-5,
        "{case}: residual base differs from PEFT's by {worst}"
    );
    eprintln!("{case}: residual base {worst:.1e} from PEFT's");
}

/// Largest difference between our initial PiSSA pairs and PEFT's, each
/// singular component (column k of A, row k of B) taken with the sign that
/// matches PEFT's: an SVD fixes singular vectors only up to sign.
fn pissa_init_difference(
    ours: &BTreeMap<String, HostTensor>,
    peft: &BTreeMap<String, HostTensor>,
) -> f32 {
    let mut worst = 0f32;
    for (name, a) in ours.iter().filter(|(n, _)| n.ends_with(".a")) {
        let b_name = format!("{}.b", name.strip_suffix(".a").unwrap());
        let (b, pa, pb) = (&ours[&b_name], &peft[name], &peft[&b_name]);
        let (inp, r) = (a.shape[0], a.shape[1]);
        let out = b.shape[1];
        for k in 0..r {
            let dot: f32 = (0..inp)
                .map(|i| a.data[i * r + k] * pa.data[i * r + k])
                .sum();
            let sign = dot.signum();
            for i in 0..inp {
                worst = worst.max((sign * a.data[i * r + k] - pa.data[i * r + k]).abs());
            }
            for j in 0..out {
                worst = worst.max((sign * b.data[k * out + j] - pb.data[k * out + j]).abs());
            }
        }
    }
    worst
}

/// Gradients of `case`'s adapters by our parameter names, from `file`.
fn peft_grads(trainable: &[(String, Vec<usize>)], file: &str) -> BTreeMap<String, HostTensor> {
    let bytes = std::fs::read(fixture_dir().join(file)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.names()
        .into_iter()
        .filter_map(|key| {
            let peft = key.strip_prefix("grad.")?;
            let (name, _) = our_name(trainable, peft);
            let (shape, data) = f32s(&st, key);
            Some((name, transpose(&shape, &data)))
        })
        .collect()
}

/// Largest norm-relative difference over a set of gradients.
fn worst_relative(a: &BTreeMap<String, HostTensor>, b: &BTreeMap<String, HostTensor>) -> f64 {
    a.iter()
        .map(|(k, t)| relative_difference(&t.data, &b[k].data))
        .fold(0.0, f64::max)
}

/// One LoRA step on a bf16 base against PEFT on a bf16 base (adapters in
/// f32 on both sides; tests/fixtures/make_lora_bf16.py). PEFT also rounds
/// every activation to bf16, we compute in f32, so the tolerance is what
/// bf16 itself moves PEFT's numbers by: our loss and gradients are at most
/// 1.5x as far from PEFT-bf16 as PEFT's own f32 step is.
#[test]
fn one_bf16_step_matches_peft_in_bf16() {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("lora_bf16.json")).unwrap(),
    )
    .unwrap();
    let st_bytes = std::fs::read(fixture_dir().join("lora.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&st_bytes).unwrap();
    let storage = Storage::dense(burn::tensor::DType::BF16);
    let model = lora_model_stored(&Device::flex(), storage, false, 4, 8.0);
    let trainable = params::trainable(&model);
    let init: BTreeMap<String, HostTensor> = st
        .names()
        .into_iter()
        .filter_map(|key| {
            let peft = key.strip_prefix("init.")?;
            let (name, _) = our_name(&trainable, peft);
            let (shape, data) = f32s(&st, key);
            Some((name, transpose(&shape, &data)))
        })
        .collect();
    let (model, missing) = params::write_params(model, &init);
    assert!(missing.is_empty(), "{missing:?}");
    let batch = batch_from(&st, &model.embed_tokens.val().device());
    let loss = nll_sum(&model, &batch) / batch.trained_tokens as f64;
    let ours_loss = loss.clone().into_scalar::<f32>() as f64;
    let g = loss.backward();
    let mut grads = BTreeMap::new();
    params::accumulate_grads(&model, &g, &mut grads);
    let ours: BTreeMap<String, HostTensor> = grads
        .into_iter()
        .map(|(k, t)| (k, HostTensor::from_tensor(t)))
        .collect();
    let bf16 = peft_grads(&trainable, "lora_bf16.safetensors");
    let f32 = peft_grads(&trainable, "lora.safetensors");
    assert_eq!(ours.len(), bf16.len());
    let (peft_bf16_loss, peft_f32_loss) = (
        meta["loss"].as_f64().unwrap(),
        meta["f32_loss"].as_f64().unwrap(),
    );
    let loss_gap = (ours_loss - peft_bf16_loss).abs();
    let peft_loss_gap = (peft_f32_loss - peft_bf16_loss).abs();
    let grad_gap = worst_relative(&ours, &bf16);
    let peft_grad_gap = worst_relative(&f32, &bf16);
    eprintln!(
        "bf16 step: loss {ours_loss:.6} vs PEFT bf16 {peft_bf16_loss:.6} (PEFT f32 {peft_f32_loss:.6}); \
         gradients {grad_gap:.2e} from PEFT bf16 (PEFT f32: {peft_grad_gap:.2e})"
    );
    assert!(
        loss_gap <= 1.5 * peft_loss_gap,
        "loss {ours_loss} is {loss_gap:.2e} from PEFT bf16's {peft_bf16_loss}, \
         PEFT f32 only {peft_loss_gap:.2e}"
    );
    assert!(
        grad_gap <= 1.5 * peft_grad_gap,
        "gradients differ from PEFT bf16's by {grad_gap:.2e} (norm-relative), \
         PEFT f32's by {peft_grad_gap:.2e}"
    );
}

#[test]
fn one_step_matches_peft() {
    check_peft_case("lora");
}

#[test]
fn one_step_matches_peft_with_dora() {
    check_peft_case("dora");
}

#[test]
fn one_step_matches_peft_with_pissa() {
    check_peft_case("pissa");
}

#[test]
fn one_step_matches_peft_with_corda_ipm() {
    check_peft_case("corda_ipm");
}

#[test]
fn one_step_matches_peft_with_corda_kpm() {
    check_peft_case("corda_kpm");
}

#[test]
fn one_step_matches_peft_with_rslora() {
    check_peft_case("rslora");
}

/// The same training step on the GPU backend (Mesa's lavapipe in CI).
#[test]
fn one_step_matches_peft_on_wgpu() {
    if let Some(device) = common::wgpu_device() {
        check_peft_case_on("rslora", &device);
        check_peft_case_on("dora", &device);
        check_peft_case_on("pissa", &device);
        check_peft_case_on("corda_ipm", &device);
        check_peft_case_on("corda_kpm", &device);
    }
}

/// A quantized base on the GPU backend (tensor-op dequantization of u32
/// codes; Mesa's lavapipe in CI): one LoRA step's loss and gradients as on
/// the CPU's fused kernel.
#[test]
fn quantized_base_on_wgpu_matches_the_cpu() {
    let Some(gpu) = common::wgpu_device() else {
        return;
    };
    let gpu = gpu.autodiff();
    let cpu = Device::flex().autodiff();
    let dir = common::models_dir().join("qwen2");
    let lora = lora_r4();
    let storage = Storage {
        dtype: burn::tensor::DType::F32,
        quantize: Some(QuantFormat::Q4_0),
    };
    let run = |device: &Device| {
        let (model, _) = CausalLm::load_stored(&dir, device, storage).unwrap();
        let model = lora
            .prepare_fresh(model, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let b = random_b(&model);
        let (model, _) = params::write_params(model, &b);
        let batches = micro_batches(device, model.vocab_size() as u32);
        let options = StepOptions {
            max_grad_norm: 1.0,
            gradient_checkpointing: false,
        };
        let (grads, loss, _) = step_gradients(&model, &batches, options, |_| None);
        let grads: BTreeMap<String, Vec<f32>> = grads
            .into_iter()
            .map(|(k, g)| (k, HostTensor::from_tensor(g).data))
            .collect();
        (grads, loss)
    };
    let (g_cpu, loss_cpu) = run(&cpu);
    let (g_gpu, loss_gpu) = run(&gpu);
    assert!(
        (loss_cpu - loss_gpu).abs() <= 1e-4 * loss_cpu.abs(),
        "loss {loss_gpu} on wgpu vs {loss_cpu} on the CPU"
    );
    for (key, a) in &g_cpu {
        let rel = relative_difference(a, &g_gpu[key]);
        assert!(
            rel <= 1e-4,
            "gradient of {key} differs by {rel:.2e} on wgpu"
        );
    }
}

/// GPU backends get bucketed lengths (a bounded set of kernel shapes); the
/// PEFT step above passing on wgpu shows the padding changes no number.
#[test]
fn gpu_batches_are_padded_to_a_bucket_and_cpu_batches_are_not() {
    assert_eq!(small_batch(&Device::flex()).ids.dims(), [2, 10]);
    if let Some(device) = common::wgpu_device() {
        let batch = small_batch(&device);
        assert_eq!(batch.ids.dims(), [2, 16]);
        assert_eq!(batch.tokens, 20, "padding is not counted as tokens");
    }
}

/// Labels as the fixture batch has them: some prompt positions ignored.
fn small_batch(device: &Device) -> Batch {
    let mut rng = StdRng::seed_from_u64(3);
    let rows: Vec<(Vec<u32>, Vec<i64>)> = (0..2)
        .map(|r| {
            let ids: Vec<u32> = (0..10).map(|_| rng.random_range(0..300u32)).collect();
            let labels = ids
                .iter()
                .enumerate()
                .map(|(i, &id)| if i < 3 + r { IGNORE } else { id as i64 })
                .collect();
            (ids, labels)
        })
        .collect();
    let refs: Vec<(&[u32], &[i64])> = rows
        .iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect();
    Batch::new(&refs, 0, device)
}

#[test]
fn lora_gradients_agree_with_finite_differences() {
    let model = lora_model(false, 4, 8.0);
    // B starts at zero, which would leave A's gradient zero: give B values.
    let mut rng = StdRng::seed_from_u64(11);
    let mut values = params::read_trainable(&model);
    for (name, t) in values.iter_mut() {
        if name.ends_with(".b") {
            for v in &mut t.data {
                *v = (rng.random::<f32>() - 0.5) * 0.2;
            }
        }
    }
    let (model, _) = params::write_params(model, &values);
    let device = model.embed_tokens.val().device();
    let batch = small_batch(&device);
    let plain = small_batch(&Device::flex());
    let loss_of = |m: &CausalLm| -> f64 {
        nll_sum(&m.valid(), &plain).into_scalar::<f32>() as f64 / plain.trained_tokens as f64
    };
    let loss = nll_sum(&model, &batch) / batch.trained_tokens as f64;
    let g = loss.backward();
    let mut grads = BTreeMap::new();
    params::accumulate_grads(&model, &g, &mut grads);

    let eps = 1e-2f32;
    let mut checked = 0;
    let mut model = model;
    for name in [
        "layers.0.self_attn.q_proj",
        "layers.1.mlp.down_proj",
        "layers.0.self_attn.v_proj",
    ] {
        for suffix in [".a", ".b"] {
            let full = values
                .keys()
                .find(|k| k.starts_with(&format!("{name}.")) && k.ends_with(suffix))
                .unwrap()
                .clone();
            let analytic = HostTensor::from_tensor(grads[&full].clone()).data;
            // The three largest entries: well above f32 noise.
            let mut idx: Vec<usize> = (0..analytic.len()).collect();
            idx.sort_by(|&a, &b| analytic[b].abs().total_cmp(&analytic[a].abs()));
            for &i in &idx[..3] {
                let mut plus = values.clone();
                plus.get_mut(&full).unwrap().data[i] += eps;
                let mut minus = values.clone();
                minus.get_mut(&full).unwrap().data[i] -= eps;
                let (m, _) = params::write_params(model, &plus);
                let lp = loss_of(&m);
                let (m, _) = params::write_params(m, &minus);
                let lm = loss_of(&m);
                let (m, _) = params::write_params(m, &values);
                model = m;
                let numeric = (lp - lm) / (2.0 * eps as f64);
                let a = analytic[i] as f64;
                let rel = (numeric - a).abs() / a.abs().max(1e-4);
                assert!(
                    rel < 2e-2,
                    "{full}[{i}]: analytic {a}, finite difference {numeric}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 18);
}

#[test]
fn frozen_weights_stay_bit_identical_and_get_no_optimizer_state() {
    let model = lora_model(false, 4, 8.0);
    let before = params::read_all(&model);
    let trainable: Vec<String> = params::trainable(&model)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let device = model.embed_tokens.val().device();
    let batch = small_batch(&device);
    let mut optim = AdamW::new(&TrainSection {
        weight_decay: 0.1,
        ..TrainSection::default()
    });
    let mut model = model;
    for _ in 0..3 {
        let (m, _) = optimizer_step(
            model,
            &mut optim,
            std::slice::from_ref(&batch),
            1e-2,
            StepOptions {
                max_grad_norm: 1.0,
                gradient_checkpointing: false,
            },
            |_| None,
        );
        model = m;
    }
    let after = params::read_all(&model);
    let mut frozen = 0;
    for (name, t) in &before {
        if trainable.contains(name) {
            assert_ne!(t, &after[name], "{name} is trainable but did not change");
        } else {
            let same = t
                .data
                .iter()
                .zip(&after[name].data)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "frozen {name} changed");
            frozen += 1;
        }
    }
    assert!(frozen > 10);
    // Moments for exactly the trainable parameters.
    let state = optim.state();
    assert_eq!(state.len(), 2 * trainable.len());
    assert!(
        trainable
            .iter()
            .all(|n| state.contains_key(&format!("m.{n}")))
    );
}

/// Two micro-batches of random tokens; the second holds a packed row.
fn micro_batches(device: &Device, vocab: u32) -> Vec<Batch> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut ids = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(0..vocab)).collect() };
    let (a, b, c) = (ids(12), ids(9), ids(5));
    let labels = |ids: &[u32], prompt: usize| -> Vec<i64> {
        ids.iter()
            .enumerate()
            .map(|(i, &t)| if i < prompt { IGNORE } else { t as i64 })
            .collect()
    };
    let (la, lb) = (labels(&a, 4), labels(&b, 2));
    let plain = Batch::new(&[(&a[..], &la[..]), (&b[..], &lb[..])], 0, device);
    let mut joined_ids = b.clone();
    joined_ids.extend(&c);
    let mut joined_labels = lb.clone();
    joined_labels.extend(labels(&c, 1));
    let packed = tunesmith::data::Example {
        ids: joined_ids,
        labels: joined_labels,
        line: 1,
        segments: vec![b.len() as u32, c.len() as u32],
    };
    let single = tunesmith::data::Example {
        ids: a.clone(),
        labels: la.clone(),
        line: 2,
        segments: Vec::new(),
    };
    let packed = Batch::from_examples(&[&packed, &single], 0, device);
    vec![plain, packed]
}

/// The trainable values with every LoRA B drawn in ±0.5 (seeded) instead
/// of zero, so every factor has a gradient.
fn random_b(model: &CausalLm) -> BTreeMap<String, HostTensor> {
    let mut values = params::read_trainable(model);
    let mut rng = StdRng::seed_from_u64(2);
    for (key, t) in values.iter_mut() {
        if key.ends_with(".b") {
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.random::<f32>() - 0.5);
        }
    }
    values
}

/// sqrt(sum (a-b)^2) / sqrt(sum a^2): f32 sums taken in another order
/// differ in the last bits, which is large relative to entries near zero
/// but not to the gradient as a whole.
fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    let norm = a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / norm.max(1e-30)
}

#[test]
fn gradient_checkpointing_changes_no_number() {
    let device = Device::flex().autodiff();
    for dir in common::fixture_models() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let methods: Vec<(&str, Box<dyn Method>)> = vec![
            (
                "lora with dropout",
                Box::new(LoraConfig {
                    rank: 4,
                    dropout: 0.2,
                    ..LoraConfig::default()
                }),
            ),
            ("full", Box::new(tunesmith::methods::FullConfig::default())),
        ];
        for (method_name, method) in methods {
            let (model, _) = CausalLm::load(&dir, &device).unwrap();
            let model = method
                .prepare_fresh(model, &mut StdRng::seed_from_u64(1))
                .unwrap();
            let values = random_b(&model);
            let (model, _) = params::write_params(model, &values);
            let batches = micro_batches(&device, model.vocab_size() as u32);
            let run = |checkpointing: bool| {
                let options = StepOptions {
                    max_grad_norm: 1.0,
                    gradient_checkpointing: checkpointing,
                };
                step_gradients(&model, &batches, options, |i| Some(100 + i as u64))
            };
            let (plain, loss, tokens) = run(false);
            let (recomputed, loss_r, tokens_r) = run(true);
            let case = format!("{name}, {method_name}");
            assert_eq!(tokens, tokens_r);
            assert!(
                (loss - loss_r).abs() <= 1e-6 * loss.abs(),
                "{case}: loss {loss} vs {loss_r} with checkpointing"
            );
            assert_eq!(
                plain.keys().collect::<Vec<_>>(),
                recomputed.keys().collect::<Vec<_>>(),
                "{case}: the same parameters get gradients"
            );
            assert_eq!(plain.len(), params::trainable(&model).len(), "{case}");
            let mut worst = (0f64, String::new());
            for (key, g) in &plain {
                let a = HostTensor::from_tensor(g.clone()).data;
                let b = HostTensor::from_tensor(recomputed[key].clone()).data;
                let rel = relative_difference(&a, &b);
                if rel > worst.0 {
                    worst = (rel, key.clone());
                }
            }

            assert!(
                worst.0 <= 1e-6,
                "{case}: gradient of {} differs by {:.2e} relative to its norm",
                worst.1,
                worst.0
            );
        }
    }
}

/// Every value rounded to bf16 (round to nearest even), as f32.
fn round_bf16(values: &BTreeMap<String, HostTensor>) -> BTreeMap<String, HostTensor> {
    values
        .iter()
        .map(|(k, t)| {
            let data = t
                .data
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect();
            let t = HostTensor {
                shape: t.shape.clone(),
                data,
            };
            (k.clone(), t)
        })
        .collect()
}

#[test]
fn bf16_storage_computes_in_f32_on_the_rounded_weights() {
    let device = Device::flex().autodiff();
    let lora = lora_r4();
    for dir in common::fixture_models() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (stored, _) =
            CausalLm::load_stored(&dir, &device, Storage::dense(burn::tensor::DType::BF16))
                .unwrap();
        assert_eq!(stored.embed_tokens.val().dtype(), burn::tensor::DType::BF16);
        let (reference, _) = CausalLm::load(&dir, &device).unwrap();
        // The f32 model with exactly the values bf16 storage holds (norms
        // and biases stay f32 in both).
        let all = params::read_all(&reference);
        let rounded: BTreeMap<String, HostTensor> = round_bf16(&all)
            .into_iter()
            .filter(|(k, _)| {
                k.ends_with("weight") && !k.contains("norm")
                    || k == "embed_tokens"
                    || k == "lm_head"
            })
            .collect();
        let (reference, _) = params::write_params(reference, &rounded);
        let stored = lora
            .prepare_fresh(stored, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let reference = lora
            .prepare_fresh(reference, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let values = random_b(&stored);
        let (stored, _) = params::write_params(stored, &values);
        let (reference, _) = params::write_params(reference, &values);
        // Frozen weights stay bf16 and get no gradient.
        assert_step_matches(&name, &stored, &reference, &device);
    }
}

/// Linear weights [in, out] of `values` replaced by what `format` holds
/// of them (quantized along `in`, as HF's [out, in] rows, and back).
fn dequantized(
    values: &BTreeMap<String, HostTensor>,
    format: QuantFormat,
) -> BTreeMap<String, HostTensor> {
    values
        .iter()
        .filter(|(k, _)| {
            tunesmith::methods::LINEAR_MODULES
                .iter()
                .any(|m| k.ends_with(&format!("{m}.weight")))
        })
        .map(|(k, t)| {
            let (inp, out) = (t.shape[0], t.shape[1]);
            let mut hf = vec![0f32; inp * out];
            for i in 0..inp {
                for o in 0..out {
                    hf[o * inp + i] = t.data[i * out + o];
                }
            }
            let q = tunesmith_kernels::quant::quantize(&hf, inp, format).unwrap();
            let back = q.dequantize();
            let mut data = vec![0f32; inp * out];
            for i in 0..inp {
                for o in 0..out {
                    data[i * out + o] = back[o * inp + i];
                }
            }
            let t = HostTensor {
                shape: t.shape.clone(),
                data,
            };
            (k.clone(), t)
        })
        .collect()
}

#[test]
fn quantized_base_computes_in_f32_on_the_dequantized_weights() {
    let device = Device::flex().autodiff();
    let lora = lora_r4();
    for dir in common::fixture_models() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Nf4] {
            let case = format!("{name}, {format:?}");
            let storage = Storage {
                dtype: burn::tensor::DType::F32,
                quantize: Some(format),
            };
            let (stored, _) = CausalLm::load_stored(&dir, &device, storage).unwrap();
            let held = params::read_all(&stored);
            assert!(
                !held.keys().any(|k| k.ends_with("proj.weight")),
                "{case}: no dense linear weight is held"
            );
            // The f32 model with exactly the values the blocks hold.
            let (reference, _) = CausalLm::load(&dir, &device).unwrap();
            let values = dequantized(&params::read_all(&reference), format);
            assert_eq!(values.len(), 7 * reference.layers.len(), "{case}");
            let (reference, _) = params::write_params(reference, &values);
            let stored = lora
                .prepare_fresh(stored, &mut StdRng::seed_from_u64(1))
                .unwrap();
            let reference = lora
                .prepare_fresh(reference, &mut StdRng::seed_from_u64(1))
                .unwrap();
            let b = random_b(&stored);
            let (stored, _) = params::write_params(stored, &b);
            let (reference, _) = params::write_params(reference, &b);
            assert_step_matches(&case, &stored, &reference, &device);
        }
    }
}

/// The tensor-op dequantization (what GPU backends run) gives the CPU
/// kernel's values bit for bit.
#[test]
fn composed_dequantization_matches_the_kernel() {
    let device = Device::flex();
    let (out, inp) = (24, 192);
    let w: Vec<f32> = (0..out * inp)
        .map(|i| ((i as f32 * 0.31).cos() * 0.2) * if i % 53 == 0 { 4.0 } else { 1.0 })
        .collect();
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Nf4] {
        let q = tunesmith_kernels::quant::quantize(&w, inp, format).unwrap();
        let expected = q.dequantize();
        let held = tunesmith::model::quant::QuantizedWeight::new(q, &device);
        assert_eq!(held.dims(), (inp, out));
        let got = held.dequantize().into_data().try_to_vec::<f32>().unwrap();
        let first = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(
            first,
            None,
            "{format:?}: {:?}",
            first.map(|i| (got[i], expected[i]))
        );
    }
}

/// One step of `stored` (its frozen base held narrower: 16-bit, quantized)
/// against `reference` (the f32 model holding exactly those values): loss
/// and gradients agree to 1e-5 relative; and gradient checkpointing
/// changes nothing on `stored` (1e-6).
fn assert_step_matches(case: &str, stored: &CausalLm, reference: &CausalLm, device: &Device) {
    let batches = micro_batches(device, stored.vocab_size() as u32);
    let options = StepOptions {
        max_grad_norm: 1.0,
        gradient_checkpointing: false,
    };
    let (g_stored, loss_stored, _) = step_gradients(stored, &batches, options, |_| None);
    let (g_ref, loss_ref, _) = step_gradients(reference, &batches, options, |_| None);
    assert!(
        (loss_stored - loss_ref).abs() <= 1e-5 * loss_ref.abs(),
        "{case}: loss {loss_stored} vs {loss_ref} on the f32 reference"
    );
    assert_eq!(g_stored.len(), g_ref.len(), "{case}");
    for (key, g) in &g_ref {
        let a = HostTensor::from_tensor(g.clone()).data;
        let b = HostTensor::from_tensor(g_stored[key].clone()).data;
        let rel = relative_difference(&a, &b);
        assert!(
            rel <= 1e-5,
            "{case}: gradient of {key} differs by {rel:.2e}"
        );
    }
    let ckpt = StepOptions {
        gradient_checkpointing: true,
        ..options
    };
    let (g_ckpt, loss_ckpt, _) = step_gradients(stored, &batches, ckpt, |_| None);
    assert!(
        (loss_ckpt - loss_stored).abs() <= 1e-6 * loss_stored.abs(),
        "{case}: loss with checkpointing"
    );
    for (key, g) in &g_stored {
        let a = HostTensor::from_tensor(g.clone()).data;
        let b = HostTensor::from_tensor(g_ckpt[key].clone()).data;
        assert!(
            relative_difference(&a, &b) <= 1e-6,
            "{case}: {key} with checkpointing"
        );
    }
}

/// LoRA rank 4 without dropout on every linear kind.
fn lora_r4() -> LoraConfig {
    LoraConfig {
        rank: 4,
        dropout: 0.0,
        ..LoraConfig::default()
    }
}

/// PiSSA moves the base's principal part into the adapter without changing
/// the model: before any step the adapted model computes the base model's
/// logits, with the exact SVD and with the randomized one (`pissa_niter`).
/// A quantized base is refused with what to do instead: decomposing the
/// quantized weights and quantizing the residual again put the logits
/// further from the f32 model (0.23) than the q8_0 base itself (0.14).
#[test]
fn pissa_starts_from_the_base_model_and_refuses_a_quantized_one() {
    let device = Device::flex();
    let dir = common::models_dir().join("qwen2");
    let ids: Vec<i64> = (0..20).map(|i| (i * 29 % 300) as i64).collect();
    let f32 = Storage::dense(burn::tensor::DType::F32);
    let (base, _) = CausalLm::load_stored(&dir, &device, f32).unwrap();
    let want = common::logits(&base, &ids);
    for niter in [0, 2] {
        let cfg = LoraConfig {
            rank: 4,
            alpha: 8.0,
            init: LoraInit::Pissa,
            pissa_niter: niter,
            ..LoraConfig::default()
        };
        let (model, _) = CausalLm::load_stored(&dir, &device, f32).unwrap();
        let model = cfg
            .prepare_fresh(model, &mut StdRng::seed_from_u64(3))
            .unwrap();
        let diff = max_abs_diff(&common::logits(&model, &ids), &want);
        assert!(
            diff < 1e-5,
            "pissa_niter {niter}: the prepared model moved the logits by {diff}"
        );
        eprintln!("pissa_niter {niter}: logits within {diff:.1e} of the base's");
    }
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/quickstart.toml");
    let err = tunesmith::RunConfig::load(
        &preset,
        &["method.init=pissa".into(), "model.quantize=q4_0".into()],
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert!(
        err.to_string().contains("model.quantize = \"none\""),
        "{err}"
    );
}
