//! KaSA against its reference implementation (PEFT has none): the torch
//! layer `KasaLinear` in tests/fixtures/make_fixtures.py, which wrote
//! tests/fixtures/lora/kasa.*. The truncated base (each weight without its
//! r smallest singular components), four AdamW steps with the task loss,
//! both regularisers and the gradient norm, the tensors after the first
//! and the last step, the final logits, and the export's rank-2r LoRA on
//! the original base against the reference's merged weights; on the CPU
//! and on wgpu.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use safetensors::SafeTensors;
use serde_json::Value;

use common::{adapters_of, batch_from, f32s, i64s, max_abs_diff, transpose, worst_diff};
use tunesmith::CausalLm;
use tunesmith::methods::{KasaConfig, Method, StepAt};
use tunesmith::model::ModelConfig;
use tunesmith::train::optim::AdamW;
use tunesmith::train::params::{self, HostTensor};
use tunesmith::train::step::{StepOptions, hooked_step};

fn fixture() -> (Value, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora");
    let meta =
        serde_json::from_str(&std::fs::read_to_string(dir.join("kasa.json")).unwrap()).unwrap();
    (meta, std::fs::read(dir.join("kasa.safetensors")).unwrap())
}

fn config_of(meta: &Value) -> KasaConfig {
    KasaConfig {
        rank: meta["r"].as_u64().unwrap() as usize,
        alpha: meta["lora_alpha"].as_f64().unwrap(),
        beta: meta["beta"].as_f64().unwrap(),
        gamma: meta["gamma"].as_f64().unwrap(),
        ..KasaConfig::default()
    }
}

/// The reference's `model.layers.0.self_attn.q_proj.lora_A` (r, in) is our
/// `layers.0.self_attn.q_proj.adapter.kasa.a` [in, r]; `lora_diag` (r) is
/// `e`; `lora_B` (out, r) is `b` [r, out].
fn tensors_with(st: &SafeTensors, prefix: &str) -> BTreeMap<String, HostTensor> {
    st.names()
        .into_iter()
        .filter_map(|key| {
            let rest = key.strip_prefix(prefix)?.strip_prefix("model.")?;
            let (module, part) = rest.rsplit_once('.')?;
            let (shape, data) = f32s(st, key);
            let (ours, t) = match part {
                "lora_A" | "lora_B" => (
                    if part == "lora_A" { "a" } else { "b" },
                    HostTensor {
                        shape: vec![shape[1], shape[0]],
                        data: transpose(&data, shape[0], shape[1]),
                    },
                ),
                "lora_diag" => ("e", HostTensor { shape, data }),
                _ => return None,
            };
            Some((format!("{module}.adapter.kasa.{ours}"), t))
        })
        .collect()
}

/// Each adapted module's frozen weight in HF layout (out, in), by HF name.
fn weights(model: &CausalLm) -> BTreeMap<String, HostTensor> {
    params::read_all(model)
        .into_iter()
        .filter(|(name, t)| name.ends_with("_proj.weight") && t.shape.len() == 2)
        .map(|(name, t)| {
            let (inp, out) = (t.shape[0], t.shape[1]);
            (
                format!("model.{}", name.trim_end_matches(".weight")),
                HostTensor {
                    shape: vec![out, inp],
                    data: transpose(&t.data, inp, out),
                },
            )
        })
        .collect()
}

fn check_on(device: &Device) {
    let (meta, bytes) = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cfg = config_of(&meta);
    let device = device.clone().autodiff();
    let dir = common::models_dir().join("llama");
    let model_config = ModelConfig::from_dir(&dir).unwrap();
    let (model, _) = CausalLm::load(&dir, &device).unwrap();
    let original = weights(&model);
    let mut rng = StdRng::seed_from_u64(0);
    let mut quiet = |_: usize, _: usize, _: &str| {};
    let mut ctx = tunesmith::methods::PrepareContext::fresh(&mut rng, &mut quiet);
    let prepared = cfg.prepare(model, &mut ctx).unwrap();
    let (model, state) = (prepared.model, prepared.state);

    // The truncated base: sign-free, so equal to the reference's own SVD.
    let truncated = weights(&model);
    let mut base = 0f32;
    for (module, t) in &truncated {
        let (_, want) = f32s(&st, &format!("truncated.{module}.weight"));
        base = base.max(max_abs_diff(&t.data, &want));
    }
    assert_eq!(truncated.len(), 2 * 7, "two layers of seven modules");
    assert!(base < 1e-6, "the truncated base differs by {base}");

    // The authors' init in distribution: ΔU zero, Δσ standard normal, ΔVᵀ
    // within LoRA's Kaiming bound.
    let init = tensors_with(&st, "init.");
    let start = params::read_trainable(&model);
    assert_eq!(
        start.keys().collect::<Vec<_>>(),
        init.keys().collect::<Vec<_>>()
    );
    for (name, t) in &start {
        assert_eq!(t.shape, init[name].shape, "shape of {name}");
        if name.ends_with(".b") {
            assert!(t.data.iter().all(|&v| v == 0.0), "{name} not zero");
        } else if name.ends_with(".a") {
            let bound = 1.0 / (t.shape[0] as f32).sqrt();
            assert!(
                t.data.iter().all(|v| v.abs() <= bound),
                "{name} out of bound"
            );
        }
    }
    let sigmas: Vec<f32> = start
        .iter()
        .filter(|(n, _)| n.ends_with(".e"))
        .flat_map(|(_, t)| t.data.clone())
        .collect();
    let var = sigmas.iter().map(|v| v * v).sum::<f32>() / sigmas.len() as f32;
    assert!((0.4..2.0).contains(&var), "Δσ variance {var}");
    assert_eq!(
        cfg.trainable_params(&model_config),
        start.values().map(|t| t.data.len() as u64).sum::<u64>()
    );

    // The reference's drawn tensors, then its steps.
    let (mut model, missing) = params::write_params(model, &init);
    assert!(missing.is_empty(), "{missing:?}");
    let steps = meta["steps"].as_array().unwrap();
    let total = steps.len();
    let mut hooks = cfg.hooks(&model_config, total, None).unwrap();
    let train = common::train_section(&meta);
    let mut optim = AdamW::new(&train);
    let options = StepOptions {
        max_grad_norm: meta["max_grad_norm"].as_f64().unwrap(),
        gradient_checkpointing: false,
    };
    let batch = batch_from(&st, &device);
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    let mut worst_rel = 0f64;
    for (i, want) in steps.iter().enumerate() {
        let at = StepAt { index: i, total };
        let (m, stats) = hooked_step(
            model,
            &mut optim,
            std::slice::from_ref(&batch),
            train.learning_rate,
            options,
            |_| None,
            &mut *hooks,
            at,
        );
        model = m;
        for (what, got, reference) in [
            ("loss", stats.loss, &want["loss"]),
            ("sv_reg", stats.terms["sv_reg"], &want["sv_reg"]),
            ("orth_reg", stats.terms["orth_reg"], &want["orth_reg"]),
            ("grad_norm", stats.grad_norm, &want["grad_norm"]),
        ] {
            let r = rel(got, reference.as_f64().unwrap());
            assert!(
                r < 1e-5,
                "step {i}: {what} {got} vs the reference's {reference} ({r:.1e})"
            );
            worst_rel = worst_rel.max(r);
        }
        if i == 0 {
            let (d, name) = worst_diff(
                &params::read_trainable(&model),
                &tensors_with(&st, "after1."),
            );
            assert!(d < 1e-5, "after the first step {name} differs by {d}");
        }
    }
    let (tensors, name) = worst_diff(
        &params::read_trainable(&model),
        &tensors_with(&st, "final."),
    );
    assert!(
        tensors < 1e-5,
        "after {total} steps {name} differs by {tensors}"
    );
    let (shape, ids) = i64s(&st, "input_ids");
    let (_, want) = f32s(&st, "final_logits");
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    let got: Vec<f32> = model.forward(ids, None).into_data().try_to_vec().unwrap();
    let logits = max_abs_diff(&got, &want);
    assert!(logits < 1e-4, "final logits differ by {logits}");

    // The export: a rank-2r LoRA with a scale of one that takes the
    // ORIGINAL base to the trained model.
    let form = cfg
        .export_form(&model_config, adapters_of(&model), &state)
        .unwrap();
    assert!(form.peft.is_none() && form.gguf_refusal.is_none());
    let (lora, pairs) = form.lora.expect("KaSA exports LoRA pairs");
    assert_eq!(lora.rank, 2 * cfg.rank);
    assert_eq!(lora.scaling(), 1.0);
    assert_eq!(pairs.len(), original.len());
    let mut merged = 0f32;
    for (module, pair) in &pairs {
        let w = &original[module];
        let (out, inp, r) = (w.shape[0], w.shape[1], pair.rank());
        let got: Vec<f32> = (0..out * inp)
            .map(|idx| {
                let (o, i) = (idx / inp, idx % inp);
                let delta: f64 = (0..r)
                    .map(|k| {
                        f64::from(pair.b.data[o * r + k]) * f64::from(pair.a.data[k * inp + i])
                    })
                    .sum();
                (f64::from(w.data[idx]) + delta) as f32
            })
            .collect();
        let (_, want) = f32s(&st, &format!("merged.{module}.weight"));
        merged = merged.max(max_abs_diff(&got, &want));
    }
    assert!(
        merged < 1e-5,
        "the exported update on the original base differs by {merged}"
    );
    eprintln!(
        "kasa: truncated base {base:.1e}; {total} steps, loss/sv_reg/orth_reg/grad norm within \
         {worst_rel:.1e} relative, tensors {tensors:.1e}, logits {logits:.1e}; the rank-{} \
         export on the original base {merged:.1e}",
        2 * cfg.rank
    );
}

#[test]
fn four_steps_match_the_reference_implementation() {
    check_on(&Device::flex());
}

/// The same on the GPU backend (Mesa's lavapipe in CI).
#[test]
fn four_steps_match_the_reference_on_wgpu() {
    if let Some(device) = common::wgpu_device() {
        check_on(&device);
    }
}

/// Settings that cannot work are refused before anything loads, naming
/// the key and what to do.
#[test]
fn bad_settings_are_refused_naming_the_key() {
    let model = ModelConfig::from_dir(&common::models_dir().join("llama")).unwrap();
    let refused = |cfg: KasaConfig| cfg.validate(&model).unwrap_err().to_string();
    let e = refused(KasaConfig {
        rank: 32,
        ..KasaConfig::default()
    });
    assert!(
        e.contains("method.rank = 32") && e.contains("31 fits every target layer"),
        "{e}"
    );
    let e = refused(KasaConfig {
        rank: 0,
        ..KasaConfig::default()
    });
    assert!(e.contains("method.rank = 0"), "{e}");
    let e = refused(KasaConfig {
        gamma: -1.0,
        ..KasaConfig::default()
    });
    assert!(e.contains("method.gamma = -1"), "{e}");
    assert!(KasaConfig::default().validate(&model).is_ok());
    assert!(KasaConfig::default().quantized_base_refusal().is_some());
}
