//! The selective methods: which base weights they train, against the
//! selection rules written from their papers in
//! tests/fixtures/make_fixtures.py (tests/fixtures/selection/), and masks
//! that hold exactly in training: after a few AdamW steps every entry
//! outside the trained set is bit-identical to the base, every entry inside
//! has moved, and the optimizer holds moments for the trained entries only.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use tunesmith::CausalLm;
use tunesmith::methods::{HftConfig, Method, MethodState, PrepareContext, hft};
use tunesmith::model::ModelConfig;
use tunesmith::train::params::{self, HostTensor};

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/selection")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn names(selection: &[BTreeSet<&str>]) -> Vec<Vec<String>> {
    selection
        .iter()
        .map(|s| s.iter().map(|m| m.to_string()).collect())
        .collect()
}

/// HFT's partition for several seeds, stages, depths and shares equals the
/// reference's, module for module.
#[test]
fn hft_partition_matches_the_reference() {
    let cases = fixture("hft.json");
    for case in cases["cases"].as_array().unwrap() {
        let config = HftConfig {
            fraction: case["fraction"].as_f64().unwrap(),
            seed: case["seed"].as_u64().unwrap(),
            stage: case["stage"].as_u64().unwrap(),
        };
        let layers = case["layers"].as_u64().unwrap() as usize;
        let qk_norm = case["qk_norm"].as_bool().unwrap();
        let want: Vec<Vec<String>> = serde_json::from_value(case["trained"].clone()).unwrap();
        assert_eq!(
            names(&config.draw(layers, qk_norm)),
            want,
            "the partition of {case}"
        );
    }
}

/// At the paper's half, every layer trains two of four attention matrices
/// and one of two norms, the model half of its feed-forward matrices; a
/// new stage draws a new half.
#[test]
fn hft_trains_half_of_each_category_and_each_stage_redraws() {
    let count = |set: &BTreeSet<&str>, of: &[&str]| set.iter().filter(|m| of.contains(m)).count();
    let attention = ["q_proj", "k_proj", "v_proj", "o_proj"];
    let ffn = ["gate_proj", "up_proj", "down_proj"];
    let norms = ["input_layernorm", "post_attention_layernorm"];
    let first = HftConfig::default().draw(30, false);
    for set in &first {
        assert_eq!(count(set, &attention), 2);
        assert_eq!(count(set, &norms), 1);
        assert!((1..=2).contains(&count(set, &ffn)));
    }
    let ffn_total: usize = first.iter().map(|s| count(s, &ffn)).sum();
    assert_eq!(ffn_total, 45, "half of 3 x 30 feed-forward matrices");
    let second = HftConfig {
        stage: 1,
        ..HftConfig::default()
    }
    .draw(30, false);
    assert_ne!(first, second, "stage 1 drew the same half as stage 0");
}

/// The (layer, module) of a burn parameter path (`layers.1.self_attn.q_proj.weight`).
fn layer_module(name: &str) -> Option<(usize, &str)> {
    let mut parts = name.split('.');
    (parts.next()? == "layers").then_some(())?;
    let layer = parts.next()?.parse().ok()?;
    let module = parts.find(|p| hft::MODULES.contains(p))?;
    Some((layer, module))
}

/// On a qwen3 fixture (which has q_norm and k_norm): exactly the drawn
/// modules train; after three AdamW steps every frozen value is
/// bit-identical and every trained one has moved; the optimizer's moments
/// number twice the trained values; the run's state holds the selection,
/// and a resumed preparation takes it from there.
#[test]
fn hft_masks_are_exact_in_training() {
    let device = Device::flex().autodiff();
    let dir = common::models_dir().join("qwen3");
    let model_config = ModelConfig::from_dir(&dir).unwrap();
    assert!(
        model_config.qk_norm,
        "the qwen3 fixture has q_norm and k_norm"
    );
    let config = HftConfig {
        seed: 3,
        ..HftConfig::default()
    };
    let selection = config.selection(&model_config);
    let (model, _) = CausalLm::load(&dir, &device).unwrap();
    let before = params::read_all(&model);
    let mut rng = StdRng::seed_from_u64(0);
    let mut quiet = |_: usize, _: usize, _: &str| {};
    let mut ctx = PrepareContext::fresh(&mut rng, &mut quiet);
    let prepared = config.prepare(model, &mut ctx).unwrap();
    let (model, state) = (prepared.model, prepared.state);

    let trained: BTreeSet<String> = params::trainable(&model)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in before.keys() {
        let selected = layer_module(name).is_some_and(|(l, m)| selection[l].contains(m));
        assert_eq!(trained.contains(name), selected, "{name}");
    }
    let counted: usize = params::trainable(&model)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(counted as u64, config.trainable_params(&model_config));

    let (model, optim) = common::smoke_steps(model, 3);
    let after = params::read_all(&model);
    for (name, old) in &before {
        let new = &after[name];
        if trained.contains(name) {
            let still = old
                .data
                .iter()
                .zip(&new.data)
                .filter(|(a, b)| a == b)
                .count();
            assert_eq!(still, 0, "{name}: {still} trained values did not move");
        } else {
            assert!(old.data == new.data, "{name}: a frozen value moved");
        }
    }
    let moments: usize = optim.state().values().map(|t| t.data.len()).sum();
    assert_eq!(
        moments,
        2 * counted,
        "AdamW holds m and v for trained values only"
    );

    // The selection is the run's state, and a resume takes it from there
    // whatever the config now says.
    let saved: &HostTensor = &state[hft::STATE_KEY];
    assert_eq!(
        saved.shape,
        vec![model_config.num_layers, hft::MODULES.len()]
    );
    let rows: Vec<BTreeSet<&str>> = saved
        .data
        .chunks(hft::MODULES.len())
        .map(|row| {
            hft::MODULES
                .iter()
                .zip(row)
                .filter(|(_, v)| **v == 1.0)
                .map(|(m, _)| *m)
                .collect()
        })
        .collect();
    assert_eq!(rows, selection);
    let (fresh, _) = CausalLm::load(&dir, &device).unwrap();
    let other = HftConfig {
        seed: 4,
        ..HftConfig::default()
    };
    let saved_state: MethodState = state.clone();
    let mut rng = StdRng::seed_from_u64(0);
    let mut ctx = PrepareContext::fresh(&mut rng, &mut quiet);
    ctx.saved = Some(&saved_state);
    let resumed = other.prepare(fresh, &mut ctx).unwrap();
    let again: BTreeSet<String> = params::trainable(&resumed.model)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        again, trained,
        "the resumed run trains what the saved state says"
    );
}

/// Settings that cannot work are refused naming the key.
#[test]
fn hft_bad_settings_are_refused_naming_the_key() {
    let model = ModelConfig::from_dir(&common::models_dir().join("llama")).unwrap();
    let refused = |fraction: f64| {
        HftConfig {
            fraction,
            ..HftConfig::default()
        }
        .validate(&model)
        .unwrap_err()
        .to_string()
    };
    assert!(
        refused(0.0).contains("method.fraction = 0"),
        "{}",
        refused(0.0)
    );
    assert!(refused(1.5).contains("(0, 1]"));
    let tiny = refused(0.01);
    assert!(tiny.contains("trains nothing"), "{tiny}");
    let mut state = BTreeMap::new();
    state.insert(
        hft::STATE_KEY.to_string(),
        HostTensor {
            shape: vec![1, 3],
            data: vec![1.0; 3],
        },
    );
    let device = Device::flex().autodiff();
    let (fresh, _) = CausalLm::load(&common::models_dir().join("llama"), &device).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut quiet = |_: usize, _: usize, _: &str| {};
    let mut ctx = PrepareContext::fresh(&mut rng, &mut quiet);
    ctx.saved = Some(&state);
    let err = match HftConfig::default().prepare(fresh, &mut ctx) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a misshapen saved selection was accepted"),
    };
    assert!(err.contains(hft::STATE_KEY), "{err}");
}
