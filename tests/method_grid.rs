//! One test grid over every card of the method catalogue, so a new method
//! gets it by being registered: its frozen weights never move, the run's
//! trainable-parameter count is what the estimate said, a SIGKILLed run
//! resumes to the same losses and adapter, and the merged export computes
//! the adapted model's logits.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{logits, run_dir_of, run_json, step_losses};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tunesmith::export::{
    CheckpointChoice, ExportFormat, ExportOptions, GgufDtype, ModelDtype, export,
};
use tunesmith::methods::MethodConfig;
use tunesmith::methods::catalog::{MethodSpec, catalog};
use tunesmith::train::params;
use tunesmith::{CausalLm, RunConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `card`'s method, its rank halved until it fits the model in `dir` where
/// the card's own does not (Bone's 64 must divide every layer's widths; the
/// tiny models have 32- and 344-wide ones).
fn fitted(card: &MethodSpec, dir: &Path) -> MethodConfig {
    let model = tunesmith::model::ModelConfig::from_dir(dir).unwrap();
    let mut config = card.config.clone();
    loop {
        let method: MethodConfig = serde_json::from_value(config.clone()).unwrap();
        let rank = config.get("rank").and_then(|r| r.as_u64()).unwrap_or(0);
        match method.method().validate(&model) {
            Ok(()) => return method,
            Err(e) if rank > 1 => {
                eprintln!("{}: {e}; trying rank {}", card.id, rank / 2);
                config["rank"] = (rank / 2).into();
            }
            Err(e) => panic!("{}: the card does not fit {}: {e}", card.id, dir.display()),
        }
    }
}

/// The quickstart preset with its `[method]` table replaced by `card`'s
/// (fitted to the quickstart model), written under `dir`.
fn preset_for(card: &MethodSpec, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("presets/quickstart.toml")).unwrap();
    let start = text.find("[method]").unwrap();
    let end = start + text[start..].find("[train]").unwrap();
    let method = fitted(card, &root().join("assets/models/tiny-llama"));
    let table: toml::Table = toml::Value::try_from(&method).unwrap().try_into().unwrap();
    let mut method = toml::Table::new();
    method.insert("method".into(), toml::Value::Table(table));
    let text = format!(
        "{}{}\n{}",
        &text[..start],
        toml::to_string(&method).unwrap(),
        &text[end..]
    )
    .replace("../assets", &root().join("assets").display().to_string());
    let path = dir.join(format!("{}.toml", card.id));
    std::fs::write(&path, text).unwrap();
    path
}

/// Every frozen parameter of `model` by name.
fn frozen(model: &CausalLm) -> BTreeMap<String, params::HostTensor> {
    let trained: Vec<String> = params::trainable(model)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    params::read_all(model)
        .into_iter()
        .filter(|(n, _)| !trained.contains(n))
        .collect()
}

/// A few optimizer steps of `card` on the llama fixture: frozen tensors are
/// bit-identical afterwards, and the trained parameters number what the
/// method (and so the estimate) says.
#[test]
fn frozen_weights_never_move_and_the_trainable_count_is_the_estimates() {
    let device = Device::flex().autodiff();
    let dir = common::models_dir().join("llama");
    for card in catalog() {
        let method = fitted(&card, &dir);
        let (model, config) = CausalLm::load(&dir, &device).unwrap();
        // Data-aware methods (CorDA) calibrate on a few rows.
        let rows: Vec<Vec<u32>> = (0..4)
            .map(|r| (0..12).map(|i| ((i * 31 + r * 7) % 300) as u32).collect())
            .collect();
        let mut rng = StdRng::seed_from_u64(7);
        let mut quiet = |_: usize, _: usize, _: &str| {};
        let mut ctx = tunesmith::methods::PrepareContext::fresh(&mut rng, &mut quiet);
        if method.method().calibration().is_some() {
            ctx.calibration = &rows;
        }
        let model = method.method().prepare(model, &mut ctx).unwrap().model;
        let counted: usize = params::trainable(&model)
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum();
        assert_eq!(
            counted as u64,
            method.method().trainable_params(&config),
            "{}: the model trains a different number of parameters than the method reports",
            card.id
        );
        let before = frozen(&model);
        let (model, _) = common::smoke_steps(model, 3);
        assert!(
            before == frozen(&model),
            "{}: a frozen tensor changed during training",
            card.id
        );
    }
}

/// The newest checkpoint's trained weights and method state, as bytes.
fn final_checkpoint(run_dir: &Path) -> (Vec<u8>, Option<Vec<u8>>) {
    let (_, last) = tunesmith::train::checkpoint::list(&run_dir.join("checkpoints"))
        .pop()
        .unwrap();
    (
        std::fs::read(last.join(tunesmith::train::checkpoint::WEIGHTS)).unwrap(),
        std::fs::read(last.join(tunesmith::train::checkpoint::METHOD)).ok(),
    )
}

/// Each card trains 8 steps straight, and again SIGKILLed after step 5 and
/// resumed from its step-3 checkpoint: the same losses (1e-6 relative) and
/// the same final weights and method state. The started event reports the
/// estimate's trainable count, and the merged export computes the adapted
/// model's logits (1e-4).
#[test]
fn every_method_resumes_exactly_and_merges_to_its_adapted_model() {
    let tmp = tempfile::tempdir().unwrap();
    for card in catalog() {
        let preset = preset_for(&card, tmp.path());
        let args = |runs: &str| -> Vec<String> {
            [
                "train",
                preset.to_str().unwrap(),
                "--backend",
                "cpu",
                "--set",
                &format!("output.runs_dir={}", tmp.path().join(runs).display()),
                "--set",
                "train.max_steps=8",
                "--set",
                "train.checkpoint_every=3",
                "--set",
                "train.eval_every=0",
                "--set",
                "train.learning_rate=0.01",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let id = card.id;
        let reference = run_json(&args(&format!("{id}-straight")), None);
        let want = step_losses(&reference);
        assert_eq!(want.len(), 8, "{id}");
        let config = RunConfig::load(&preset, &[]).unwrap();
        let estimate = tunesmith::plan::estimate(&config).unwrap();
        assert_eq!(
            reference[0]["trainable_params"].as_u64(),
            Some(estimate.trainable_params),
            "{id}: the run trains another count than the estimate showed"
        );

        let killed = run_json(&args(&format!("{id}-killed")), Some(5));
        let run_dir = run_dir_of(&killed);
        let resumed = run_json(&["resume".to_string(), run_dir.display().to_string()], None);
        assert_eq!(resumed[0]["start_step"], 3, "{id}");
        for (step, loss) in step_losses(&resumed) {
            let expected = want[step - 1].1;
            let rel = (loss - expected).abs() / expected.abs();
            assert!(
                rel <= 1e-6,
                "{id}: step {step}: resumed {loss} vs uninterrupted {expected}"
            );
        }
        assert!(
            final_checkpoint(&run_dir) == final_checkpoint(&run_dir_of(&reference)),
            "{id}: the resumed run ends with other weights or method state"
        );

        let merged = tmp.path().join(format!("{id}-merged"));
        export(
            &run_dir,
            &ExportOptions {
                format: ExportFormat::Merged,
                checkpoint: CheckpointChoice::Last,
                out: merged.clone(),
                gguf_dtype: GgufDtype::F32,
                model_dtype: ModelDtype::F16,
                overwrite: false,
            },
        )
        .unwrap();
        let device = Device::flex();
        let (adapted, _, _) = tunesmith::train::load_adapted(&run_dir, None, &device).unwrap();
        let (plain, _) = CausalLm::load(&merged, &device).unwrap();
        let ids: Vec<i64> = (0..24).map(|i| (i * 37 % 300) as i64).collect();
        let ours = logits(&adapted, &ids);
        let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = ours
            .iter()
            .zip(logits(&plain, &ids))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{id}: merged logits differ by {diff}");
        eprintln!(
            "{id}: resumed exactly; merged logits within {diff:.1e} (max |logit| {scale:.1})"
        );
    }
}
