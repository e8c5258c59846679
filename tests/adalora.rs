//! AdaLoRA against PEFT's `AdaLoraConfig` (tests/fixtures/lora/adalora.*,
//! written by make_fixtures.py): eight AdamW steps across the whole budget
//! schedule (warm-up, the cubic budgeting phase, the final phase with the
//! ranks fixed), each step's loss, orthogonality term and gradient norm,
//! the rank pattern after every reallocation, the tensors after the first
//! and the last step, and the adapter PEFT saves from them; on the CPU and
//! on wgpu.

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
use tunesmith::methods::{AdaloraConfig, HookNote, Method, StepAt};
use tunesmith::model::ModelConfig;
use tunesmith::train::optim::AdamW;
use tunesmith::train::params::{self, HostTensor};
use tunesmith::train::step::{StepOptions, hooked_step};

fn fixture() -> (Value, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora");
    let meta =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adalora.json")).unwrap()).unwrap();
    (
        meta,
        std::fs::read(dir.join("adalora.safetensors")).unwrap(),
    )
}

fn config_of(meta: &Value) -> AdaloraConfig {
    let u = |k: &str| meta[k].as_u64().unwrap() as usize;
    let f = |k: &str| meta[k].as_f64().unwrap();
    AdaloraConfig {
        init_r: u("init_r"),
        target_r: u("target_r"),
        alpha: f("lora_alpha"),
        tinit: u("tinit"),
        tfinal: u("tfinal"),
        delta_t: u("deltaT"),
        beta1: f("beta1"),
        beta2: f("beta2"),
        orth_reg_weight: f("orth_reg_weight"),
        ..AdaloraConfig::default()
    }
}

/// PEFT's `model.layers.0.self_attn.q_proj.lora_A` (r, in) is our
/// `layers.0.self_attn.q_proj.adapter.adalora.a` [in, r]; `lora_E` (r, 1)
/// is `e` [r]; `lora_B` (out, r) is `b` [r, out].
fn ours(peft: &str, shape: &[usize], data: Vec<f32>) -> (String, HostTensor) {
    let peft = peft.strip_prefix("base_model.model.").unwrap_or(peft);
    let (module, part) = peft.rsplit_once('.').unwrap();
    let module = module.strip_prefix("model.").unwrap();
    let t = match part {
        "lora_A" | "lora_B" => HostTensor {
            shape: vec![shape[1], shape[0]],
            data: transpose(&data, shape[0], shape[1]),
        },
        "lora_E" => HostTensor {
            shape: vec![shape[0]],
            data,
        },
        other => panic!("unexpected PEFT tensor {other}"),
    };
    let ours = match part {
        "lora_A" => "a",
        "lora_E" => "e",
        _ => "b",
    };
    (format!("{module}.adapter.adalora.{ours}"), t)
}

fn tensors_with(st: &SafeTensors, prefix: &str) -> BTreeMap<String, HostTensor> {
    st.names()
        .into_iter()
        .filter_map(|key| {
            let peft = key.strip_prefix(prefix)?;
            let (shape, data) = f32s(st, key);
            Some(ours(peft, &shape, data))
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
    let model = cfg
        .prepare_fresh(model, &mut StdRng::seed_from_u64(0))
        .unwrap();

    // PEFT's init in distribution (its draws are torch's): Q and P normal
    // with std 0.02, λ zero, in PEFT's shapes.
    let init = tensors_with(&st, "init.");
    let start = params::read_trainable(&model);
    assert_eq!(
        start.keys().collect::<Vec<_>>(),
        init.keys().collect::<Vec<_>>()
    );
    let mut sq = (0f64, 0usize);
    for (name, t) in &start {
        assert_eq!(t.shape, init[name].shape, "shape of {name}");
        if name.ends_with(".e") {
            assert!(t.data.iter().all(|&v| v == 0.0), "{name} not zero");
        } else {
            sq.0 += t.data.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
            sq.1 += t.data.len();
        }
    }
    let std = (sq.0 / sq.1 as f64).sqrt();
    assert!((std - 0.02).abs() < 0.001, "initial std {std}");
    assert_eq!(
        cfg.trainable_params(&model_config),
        start.values().map(|t| t.data.len() as u64).sum::<u64>()
    );

    // PEFT's drawn tensors, then its eight steps.
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
    let mut reallocations = 0;
    let mut previous = Value::Null;
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
        for (what, got, peft) in [
            ("loss", stats.loss, &want["loss"]),
            ("orth_reg", stats.terms["orth_reg"], &want["orth_reg"]),
            ("grad_norm", stats.grad_norm, &want["grad_norm"]),
        ] {
            let r = rel(got, peft.as_f64().unwrap());
            assert!(r < 1e-5, "step {i}: {what} {got} vs PEFT {peft} ({r:.1e})");
            worst_rel = worst_rel.max(r);
        }
        // Each reallocation keeps exactly PEFT's triplets.
        let want_ranks = &want["ranks"];
        let state = hooks.state();
        if want_ranks.is_null() {
            assert!(stats.notes.is_empty(), "step {i}: no reallocation expected");
            continue;
        }
        if want_ranks == &previous {
            assert!(stats.notes.is_empty(), "step {i}: the ranks did not move");
        }
        for (module, keep) in want_ranks.as_object().unwrap() {
            let got: Vec<u64> = state[&format!("adalora.pattern.{module}")]
                .data
                .iter()
                .map(|&v| v as u64)
                .collect();
            let keep: Vec<u64> = keep
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(got, keep, "step {i}: rank pattern of {module}");
        }
        // A `ranks` note when the pattern moved.
        let moved = want_ranks != &previous;
        previous = want_ranks.clone();
        if moved {
            reallocations += 1;
            let [HookNote::Ranks { budget, ranks }] = stats.notes.as_slice() else {
                panic!("step {i}: expected one reallocation, got {:?}", stats.notes);
            };
            assert_eq!(*budget as u64, want["budget"].as_u64().unwrap(), "step {i}");
            assert_eq!(ranks.values().sum::<usize>(), *budget, "step {i}");
        }
        if i == 0 {
            let (d, name) = worst_diff(
                &params::read_trainable(&model),
                &tensors_with(&st, "after1."),
            );
            assert!(d < 1e-5, "after the first step {name} differs by {d}");
        }
    }
    assert!(reallocations >= 3, "the budget shrinks at steps 3, 4 and 5");
    let now = params::read_trainable(&model);
    let (tensors, name) = worst_diff(&now, &tensors_with(&st, "final."));
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

    // The adapter PEFT saves: resized by the rank pattern, which its
    // config carries.
    let form = cfg
        .export_form(&model_config, adapters_of(&model), &hooks.state())
        .unwrap();
    let peft = form.peft.expect("AdaLoRA writes its own PEFT adapter");
    let saved: BTreeMap<String, (Vec<usize>, Vec<f32>)> = st
        .names()
        .into_iter()
        .filter_map(|k| Some((k.strip_prefix("saved.")?.to_string(), f32s(&st, k))))
        .collect();
    assert_eq!(
        peft.tensors.keys().collect::<Vec<_>>(),
        saved.keys().collect::<Vec<_>>()
    );
    let mut export = 0f32;
    for (key, (shape, data)) in &saved {
        let t = &peft.tensors[key];
        assert_eq!(&t.shape, shape, "{key}");
        export = export.max(max_abs_diff(&t.data, data));
    }
    assert!(export < 1e-5, "exported tensors differ by {export}");
    let pattern = &peft.config["rank_pattern"];
    assert_eq!(pattern, &meta["saved_rank_pattern"]);
    assert_eq!(peft.config["total_step"], total);
    eprintln!(
        "adalora: {total} steps, loss/orth/grad norm within {worst_rel:.1e} relative, the rank \
         pattern equal at all {reallocations} reallocations, tensors {tensors:.1e}, logits \
         {logits:.1e}, PEFT's saved adapter {export:.1e}"
    );
}

#[test]
fn eight_steps_match_peft_across_the_budget_schedule() {
    check_on(&Device::flex());
}

/// The same on the GPU backend (Mesa's lavapipe in CI).
#[test]
fn eight_steps_match_peft_on_wgpu() {
    if let Some(device) = common::wgpu_device() {
        check_on(&device);
    }
}

/// Settings that cannot work are refused before anything loads, naming
/// the key and what to do.
#[test]
fn bad_settings_are_refused_naming_the_key() {
    let model = ModelConfig::from_dir(&common::models_dir().join("llama")).unwrap();
    let refused = |cfg: AdaloraConfig| cfg.validate(&model).unwrap_err().to_string();
    let e = refused(AdaloraConfig {
        target_r: 16,
        ..AdaloraConfig::default()
    });
    assert!(
        e.contains("method.target_r = 16") && e.contains("at most method.init_r"),
        "{e}"
    );
    let e = refused(AdaloraConfig {
        init_r: 40,
        target_r: 8,
        ..AdaloraConfig::default()
    });
    assert!(
        e.contains("method.init_r = 40") && e.contains("32 fits every target layer"),
        "{e}"
    );
    let e = refused(AdaloraConfig {
        beta1: 1.0,
        ..AdaloraConfig::default()
    });
    assert!(e.contains("method.beta1"), "{e}");
    let e = AdaloraConfig {
        tinit: 60,
        tfinal: 40,
        ..AdaloraConfig::default()
    }
    .check_steps(100)
    .unwrap_err()
    .to_string();
    assert!(e.contains("tinit + tfinal < 100"), "{e}");
    assert!(AdaloraConfig::default().check_steps(1).is_ok());
}
