//! MiSS and Bone against PEFT's `MissConfig` (tests/fixtures/lora/{miss,
//! bone,miss_mini}.*, written by make_fixtures.py): the initial blocks, the
//! gradients, one AdamW step's loss, gradient norm and updated blocks, and
//! the logits after it, on the CPU and on wgpu.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use safetensors::SafeTensors;
use serde_json::Value;

use common::{batch_from, f32s, i64s, max_abs_diff};
use tunesmith::CausalLm;
use tunesmith::methods::{Method, MissConfig, MissMode};
use tunesmith::train::params::{self, HostTensor};

fn fixture(case: &str) -> (Value, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora");
    let meta =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{case}.json"))).unwrap())
            .unwrap();
    (
        meta,
        std::fs::read(dir.join(format!("{case}.safetensors"))).unwrap(),
    )
}

fn config_of(meta: &Value) -> MissConfig {
    MissConfig {
        rank: meta["r"].as_u64().unwrap() as usize,
        mini_r: meta["mini_r"].as_u64().unwrap() as usize,
        mode: match &meta["init_weights"] {
            Value::Bool(true) => MissMode::Balance,
            Value::String(s) if s == "bat" => MissMode::Bat,
            Value::String(s) if s == "mini" => MissMode::Mini,
            other => panic!("unknown init_weights {other}"),
        },
        dropout: 0.0,
        ..MissConfig::default()
    }
}

/// PEFT's `base_model.model.model.layers.0.self_attn.q_proj.miss_block`
/// is our `layers.0.self_attn.q_proj.adapter.miss.block`; bat's (out/r,
/// r, r) blocks are our [out, r] in the same order.
fn ours(peft: &str, shape: &[usize], data: Vec<f32>) -> (String, HostTensor) {
    let module = peft
        .strip_prefix("base_model.model.model.")
        .and_then(|m| m.strip_suffix(".miss_block"))
        .unwrap_or_else(|| panic!("unexpected PEFT key {peft}"));
    let shape = match shape {
        [blocks, r, c] => vec![blocks * r, *c],
        s => s.to_vec(),
    };
    (
        format!("{module}.adapter.miss.block"),
        HostTensor { shape, data },
    )
}

fn check_case_on(case: &str, device: &Device) {
    let (meta, bytes) = fixture(case);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cfg = config_of(&meta);
    let device = device.clone().autodiff();
    let dir = common::models_dir().join("llama");
    let (model, _) = CausalLm::load(&dir, &device).unwrap();
    let model = cfg
        .prepare_fresh(model, &mut StdRng::seed_from_u64(0))
        .unwrap();

    let mut init = BTreeMap::new();
    let mut grads = BTreeMap::new();
    let mut after = BTreeMap::new();
    for key in st.names() {
        for (prefix, map) in [
            ("init.", &mut init),
            ("grad.", &mut grads),
            ("after.", &mut after),
        ] {
            if let Some(peft) = key.strip_prefix(prefix) {
                let (shape, data) = f32s(&st, key);
                let (name, t) = ours(peft, &shape, data);
                map.insert(name, t);
            }
        }
    }
    // PEFT starts every block at zero, and so do we, in PEFT's shapes.
    let start = params::read_trainable(&model);
    assert_eq!(
        start.keys().collect::<Vec<_>>(),
        init.keys().collect::<Vec<_>>(),
        "{case}: trained parameters"
    );
    for (name, t) in &start {
        assert_eq!(t.shape, init[name].shape, "{case}: shape of {name}");
        assert!(t.data.iter().all(|&v| v == 0.0), "{case}: {name} not zero");
    }
    assert_eq!(
        cfg.trainable_params(&tunesmith::model::ModelConfig::from_dir(&dir).unwrap()),
        start.values().map(|t| t.data.len() as u64).sum::<u64>()
    );

    // The fixture's random blocks, so the forward goes through them.
    let (model, missing) = params::write_params(model, &init);
    assert!(missing.is_empty(), "{missing:?}");
    let batch = batch_from(&st, &device);
    let (model, (loss_rel, norm_rel), train) =
        common::peft_step(case, model, &batch, &meta, &grads);
    let want_norm = meta["grad_norm"].as_f64().unwrap();
    // AdamW's first step moves each entry by lr·g/(|g| + eps): where the
    // clipped gradient is within a hundred eps of zero, the step is as
    // sensitive to the f32 rounding of a cancelling sum as the gradient is
    // small (Bone has such entries: 5.5e-7 before clipping, which the two
    // sides compute 1.4e-7 apart, and some whose sign the rounding decides).
    // Their gradients are held to 1e-5 above like every other; their step
    // only has to stay within the two steps' range (2·lr), every other
    // entry's within 1e-5.
    let coef = (meta["max_grad_norm"].as_f64().unwrap() / (want_norm + 1e-6)).min(1.0) as f32;
    let (lr, eps) = (train.learning_rate as f32, train.eps as f32);
    let now = params::read_trainable(&model);
    let mut worst = 0f32;
    let mut sensitive = 0;
    for (name, expected) in &after {
        let (got, g) = (&now[name].data, &grads[name].data);
        for i in 0..got.len() {
            let d = (got[i] - expected.data[i]).abs();
            if (g[i] * coef).abs() < 100.0 * eps {
                sensitive += 1;
                assert!(
                    d <= 2.0 * lr,
                    "{case}: {name}[{i}] moved by more than a step ({d})"
                );
                continue;
            }
            worst = worst.max(d);
            assert!(
                d < 1e-5,
                "{case}: {name}[{i}] after one step differs by {d}"
            );
        }
    }

    // The logits with PEFT's stepped blocks, as PEFT computes them (our own
    // stepped blocks differ in the near-zero-gradient entries above).
    let (model, missing) = params::write_params(model, &after);
    assert!(missing.is_empty(), "{missing:?}");
    let (shape, ids) = i64s(&st, "input_ids");
    let (_, want) = f32s(&st, "after_logits");
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    let got: Vec<f32> = model.forward(ids, None).into_data().try_to_vec().unwrap();
    let logits = max_abs_diff(&got, &want);
    assert!(
        logits < 1e-4,
        "{case}: logits after the step differ by {logits}"
    );
    eprintln!(
        "{case}: loss {loss_rel:.1e} relative, grad norm {norm_rel:.1e} relative, blocks \
         {worst:.1e} (besides {sensitive} entries of near-zero gradient), logits \
         {logits:.1e} from PEFT"
    );
}

#[test]
fn one_step_matches_peft_with_miss_and_its_padded_shard() {
    check_case_on("miss", &Device::flex());
}

#[test]
fn one_step_matches_peft_with_bone() {
    check_case_on("bone", &Device::flex());
}

#[test]
fn one_step_matches_peft_with_miss_mini() {
    check_case_on("miss_mini", &Device::flex());
}

/// The same on the GPU backend (Mesa's lavapipe in CI).
#[test]
fn one_step_matches_peft_on_wgpu() {
    if let Some(device) = common::wgpu_device() {
        for case in ["miss", "bone", "miss_mini"] {
            check_case_on(case, &device);
        }
    }
}

/// Settings that cannot work are refused before anything loads, naming
/// the key and what to do.
#[test]
fn bad_settings_are_refused_naming_the_key() {
    let model =
        tunesmith::model::ModelConfig::from_dir(&common::models_dir().join("llama")).unwrap();
    let refused = |cfg: MissConfig| cfg.validate(&model).unwrap_err().to_string();
    let bat = |rank| MissConfig {
        rank,
        mode: MissMode::Bat,
        ..MissConfig::default()
    };
    // 6 does not divide the 64-wide inputs; 4 is the largest width up to 6
    // that divides all of them (32, 64, 128).
    let e = refused(bat(6));
    assert!(
        e.contains("method.rank = 6") && e.contains("4 fits every target layer"),
        "{e}"
    );
    let e = refused(MissConfig {
        dropout: 0.1,
        ..bat(8)
    });
    assert!(
        e.contains("method.dropout") && e.contains("set it to 0"),
        "{e}"
    );
    let e = refused(MissConfig {
        mode: MissMode::Mini,
        mini_r: 24,
        ..MissConfig::default()
    });
    assert!(
        e.contains("method.mini_r = 24") && e.contains("16 fits"),
        "{e}"
    );
    let e = refused(MissConfig {
        mini_r: 8,
        ..MissConfig::default()
    });
    assert!(e.contains("mode = \"mini\" only"), "{e}");
    let e = refused(MissConfig {
        rank: 65,
        ..MissConfig::default()
    });
    assert!(e.contains("at most 64"), "{e}");
    assert!(bat(8).quantized_base_refusal().is_some());
    assert!(MissConfig::default().quantized_base_refusal().is_none());
}
