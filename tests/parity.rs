//! The engine against transformers: logits, token ids, rendered chat
//! templates and greedy continuations of every fixture model, as computed
//! by tests/fixtures/make_fixtures.py.

mod common;

use std::path::Path;

use burn::tensor::Device;
use serde::Deserialize;
use tunesmith::generate::{GenerateOptions, Sampling, generate};
use tunesmith::logits::{CaseFile, OutputFile, run_cases};
use tunesmith::{CausalLm, TextTokenizer};

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct GreedyFile {
    cases: Vec<GreedyCase>,
}

#[derive(Deserialize)]
struct GreedyCase {
    name: String,
    prompt_ids: Vec<u32>,
    max_new_tokens: usize,
    generated_ids: Vec<u32>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks one model folder on one device; returns the largest deviation.
fn check_model(dir: &Path, device: &Device) -> f32 {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let tokenizer = TextTokenizer::from_dir(dir).unwrap();
    let (model, _) = CausalLm::load(dir, device).unwrap();
    let cases = CaseFile::read(&dir.join("cases.json")).unwrap();
    let expected: OutputFile = read_json(&dir.join("reference.json"));
    let got = run_cases(&model, Some(&tokenizer), &cases).unwrap();
    assert_eq!(got.cases.len(), expected.cases.len(), "{name}: case count");
    let mut worst = 0f32;
    for (g, e) in got.cases.iter().zip(&expected.cases) {
        assert_eq!(g.name, e.name);
        assert_eq!(
            g.rendered, e.rendered,
            "{name}/{}: rendered template",
            e.name
        );
        assert_eq!(g.token_ids, e.token_ids, "{name}/{}: token ids", e.name);
        assert_eq!(g.logits.len(), e.logits.len());
        for (pos, (gr, er)) in g.logits.iter().zip(&e.logits).enumerate() {
            assert_eq!(gr.len(), er.len(), "{name}/{}: vocab", e.name);
            for (tok, (a, b)) in gr.iter().zip(er).enumerate() {
                let diff = (a - b).abs();
                worst = worst.max(diff);
                assert!(
                    diff <= TOLERANCE,
                    "{name}/{}: logit[{pos}][{tok}] = {a}, transformers {b} (diff {diff})",
                    e.name
                );
            }
        }
    }
    let greedy: GreedyFile = read_json(&dir.join("greedy.json"));
    for case in &greedy.cases {
        let options = GenerateOptions {
            max_new_tokens: case.max_new_tokens,
            sampling: Sampling::Greedy,
            stop_ids: tokenizer.stop_ids().to_vec(),
        };
        let out = generate(&model, &case.prompt_ids, &options, |_| {}).unwrap();
        assert_eq!(
            out, case.generated_ids,
            "{name}/{}: greedy continuation",
            case.name
        );
    }
    worst
}

#[test]
fn cpu_matches_transformers() {
    let device = Device::flex();
    for dir in common::fixture_models() {
        let worst = check_model(&dir, &device);
        eprintln!("cpu  {}: max |diff| {worst:.2e}", dir.display());
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_transformers() {
    let Some(device) = common::wgpu_device() else {
        return;
    };
    for dir in common::fixture_models() {
        let worst = check_model(&dir, &device);
        eprintln!("wgpu {}: max |diff| {worst:.2e}", dir.display());
    }
}

/// A batch computes what its rows compute alone, and a KV cache fed one
/// token at a time computes what the full sequence computes.
#[test]
fn batch_and_cache_agree_with_single_sequences() {
    use burn::tensor::{Int, Tensor, TensorData};
    use tunesmith::model::KvCache;

    let device = Device::flex();
    let dir = common::models_dir().join("qwen3");
    let (model, config) = CausalLm::load(&dir, &device).unwrap();
    let vocab = config.vocab_size;
    let rows: [Vec<i64>; 2] = [vec![5, 17, 200, 3, 99, 42], vec![311, 0, 7, 7, 150, 64]];
    let run = |ids: Vec<i64>, b: usize| {
        let n = ids.len() / b;
        let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, n]), &device);
        model
            .forward(t, None)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let batch = run(rows.concat(), 2);
    let singles = [run(rows[0].clone(), 1), run(rows[1].clone(), 1)].concat();
    let worst = max_abs_diff(&batch, &singles);
    assert!(worst < 1e-5, "batch vs single: {worst}");

    let mut cache = KvCache::new();
    let mut stepped = Vec::new();
    for &id in &rows[0] {
        let t = Tensor::<2, Int>::from_data(TensorData::new(vec![id], [1, 1]), &device);
        let logits = model.forward(t, Some(&mut cache));
        stepped.extend(logits.into_data().try_to_vec::<f32>().unwrap());
    }
    assert_eq!(cache.len(), rows[0].len());
    assert_eq!(stepped.len(), rows[0].len() * vocab);
    let worst = max_abs_diff(&stepped, &singles);
    assert!(worst < 1e-5, "cached vs full: {worst}");
}

/// Largest |a - b| over the common prefix of two slices.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}
