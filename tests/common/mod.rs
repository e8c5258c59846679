//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::tensor::Device;
use safetensors::SafeTensors;
use tunesmith::train::loss::Batch;

/// tests/fixtures/models
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

/// Every fixture model folder, sorted.
pub fn fixture_models() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .expect("tests/fixtures/models exists (run tests/fixtures/make_fixtures.py)")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 4,
        "expected the four fixture models, found {dirs:?}"
    );
    dirs
}

/// The wgpu device the parity tests run on. On a machine without any
/// Vulkan driver this fails loudly unless TUNESMITH_SKIP_WGPU=1 says the
/// skip is intended.
pub fn wgpu_device() -> Option<Device> {
    match tunesmith::backend::select(tunesmith::BackendChoice::Wgpu) {
        Ok(d) => Some(d.device),
        Err(e) if std::env::var_os("TUNESMITH_SKIP_WGPU").is_some() => {
            eprintln!("SKIPPING wgpu parity (TUNESMITH_SKIP_WGPU is set): {e}");
            None
        }
        Err(e) => panic!(
            "wgpu is compiled in but unusable: {e}\n\
             install Mesa's lavapipe (apt install mesa-vulkan-drivers) or set TUNESMITH_SKIP_WGPU=1"
        ),
    }
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tunesmith"))
}

/// Runs `tunesmith ARGS --json`, returning its events; with `kill_after`,
/// SIGKILLs it right after that step's event.
pub fn run_json(args: &[String], kill_after: Option<usize>) -> Vec<serde_json::Value> {
    let mut child = bin()
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut events = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let step = (v["event"] == "step").then(|| v["step"].as_u64().unwrap() as usize);
        events.push(v);
        if step.is_some() && step == kill_after {
            child.kill().unwrap(); // SIGKILL: no chance to clean up
            break;
        }
    }
    let status = child.wait().unwrap();
    if kill_after.is_none() {
        assert!(status.success(), "tunesmith {args:?} failed");
    }
    events
}

pub fn step_losses(events: &[serde_json::Value]) -> Vec<(usize, f64)> {
    events
        .iter()
        .filter(|v| v["event"] == "step")
        .map(|v| {
            (
                v["step"].as_u64().unwrap() as usize,
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

pub fn run_dir_of(events: &[serde_json::Value]) -> PathBuf {
    PathBuf::from(events[0]["run_dir"].as_str().unwrap())
}

/// The logits of `ids` (one sequence) as a flat list.
pub fn logits(model: &tunesmith::CausalLm, ids: &[i64]) -> Vec<f32> {
    use burn::tensor::{Int, Tensor, TensorData};
    let device = model.embed_tokens.val().device();
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &device);
    model
        .forward(t, None)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// An f32 tensor of a fixture file: (shape, values).
pub fn f32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let v = st.tensor(name).unwrap();
    let data = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v.shape().to_vec(), data)
}

/// An i64 tensor of a fixture file: (shape, values).
pub fn i64s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<i64>) {
    let v = st.tensor(name).unwrap();
    let data = v
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v.shape().to_vec(), data)
}

/// The largest elementwise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One 16-token row over the fixtures' 320-token vocabulary, its first
/// four tokens masked out of the loss: a batch for training smoke steps.
pub fn synthetic_batch(device: &Device) -> Batch {
    let ids: Vec<u32> = (0..16).map(|i| (i * 53 % 300) as u32).collect();
    let labels: Vec<i64> = ids
        .iter()
        .enumerate()
        .map(|(i, &t)| if i < 4 { -100 } else { t as i64 })
        .collect();
    Batch::new(&[(ids.as_slice(), labels.as_slice())], 0, device)
}

/// `steps` AdamW steps (lr 1e-2, clipped at 1) of `model` on the
/// [`synthetic_batch`]; returns the model and the optimizer (its moments).
pub fn smoke_steps(
    model: tunesmith::CausalLm,
    steps: usize,
) -> (tunesmith::CausalLm, tunesmith::train::optim::AdamW) {
    let device = model.embed_tokens.val().device();
    let train = tunesmith::config::TrainSection {
        learning_rate: 1e-2,
        ..tunesmith::config::TrainSection::default()
    };
    let mut optim = tunesmith::train::optim::AdamW::new(&train);
    let batch = synthetic_batch(&device);
    let mut model = model;
    for _ in 0..steps {
        let options = tunesmith::train::step::StepOptions {
            max_grad_norm: 1.0,
            gradient_checkpointing: false,
        };
        model = tunesmith::train::step::optimizer_step(
            model,
            &mut optim,
            std::slice::from_ref(&batch),
            train.learning_rate,
            options,
            |_| None,
        )
        .0;
    }
    (model, optim)
}

/// The fixture batch `input_ids` / `labels` on `device`.
pub fn batch_from(st: &SafeTensors, device: &Device) -> Batch {
    let (shape, ids) = i64s(st, "input_ids");
    let (_, labels) = i64s(st, "labels");
    let t = shape[1];
    let rows: Vec<(Vec<u32>, Vec<i64>)> = (0..shape[0])
        .map(|r| {
            (
                ids[r * t..(r + 1) * t].iter().map(|&v| v as u32).collect(),
                labels[r * t..(r + 1) * t].to_vec(),
            )
        })
        .collect();
    let refs: Vec<(&[u32], &[i64])> = rows
        .iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect();
    Batch::new(&refs, 0, device)
}

/// One PEFT-fixture step on `model`: its gradients against the fixture's
/// `grads` (1e-5 each), then one AdamW step with the fixture's
/// hyperparameters (`meta`), whose loss and gradient norm must be PEFT's to
/// 1e-5 relative. Returns the stepped model, the (loss, grad norm)
/// relative differences and the hyperparameters.
pub fn peft_step(
    case: &str,
    model: tunesmith::CausalLm,
    batch: &Batch,
    meta: &serde_json::Value,
    grads: &std::collections::BTreeMap<String, tunesmith::train::params::HostTensor>,
) -> (
    tunesmith::CausalLm,
    (f64, f64),
    tunesmith::config::TrainSection,
) {
    use tunesmith::train::params::{self, HostTensor};
    let loss = tunesmith::train::loss::nll_sum(&model, batch) / batch.trained_tokens as f64;
    let g = loss.backward();
    let mut ours = std::collections::BTreeMap::new();
    params::accumulate_grads(&model, &g, &mut ours);
    for (name, expected) in grads {
        let got = HostTensor::from_tensor(ours[name].clone()).data;
        let d = max_abs_diff(&got, &expected.data);
        assert!(d < 1e-5, "{case}: gradient of {name} differs by {d}");
    }
    let train = train_section(meta);
    let mut optim = tunesmith::train::optim::AdamW::new(&train);
    let (model, stats) = tunesmith::train::step::optimizer_step(
        model,
        &mut optim,
        std::slice::from_ref(batch),
        train.learning_rate,
        tunesmith::train::step::StepOptions {
            max_grad_norm: meta["max_grad_norm"].as_f64().unwrap(),
            gradient_checkpointing: false,
        },
        |_| None,
    );
    let want_loss = meta["loss"].as_f64().unwrap();
    let want_norm = meta["grad_norm"].as_f64().unwrap();
    let loss_rel = (stats.loss - want_loss).abs() / want_loss;
    let norm_rel = (stats.grad_norm - want_norm).abs() / want_norm;
    assert!(
        loss_rel < 1e-5,
        "{case}: loss {} vs PEFT {want_loss}",
        stats.loss
    );
    assert!(
        norm_rel < 1e-5,
        "{case}: grad norm {} vs PEFT {want_norm}",
        stats.grad_norm
    );
    (model, (loss_rel, norm_rel), train)
}

/// The AdamW settings a PEFT fixture trained with (`lr`, `betas`, `eps`,
/// `weight_decay` in its JSON).
pub fn train_section(meta: &serde_json::Value) -> tunesmith::config::TrainSection {
    tunesmith::config::TrainSection {
        learning_rate: meta["lr"].as_f64().unwrap(),
        beta1: meta["betas"][0].as_f64().unwrap(),
        beta2: meta["betas"][1].as_f64().unwrap(),
        eps: meta["eps"].as_f64().unwrap(),
        weight_decay: meta["weight_decay"].as_f64().unwrap(),
        ..tunesmith::config::TrainSection::default()
    }
}

/// Row-major [rows, cols] -> [cols, rows].
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = data[r * cols + c];
        }
    }
    t
}

/// The largest difference between `now` and `want` over the tensors of
/// `want`, and where it is.
pub fn worst_diff(
    now: &std::collections::BTreeMap<String, tunesmith::train::params::HostTensor>,
    want: &std::collections::BTreeMap<String, tunesmith::train::params::HostTensor>,
) -> (f32, String) {
    want.iter()
        .map(|(name, t)| (max_abs_diff(&now[name].data, &t.data), name.clone()))
        .fold((0.0, String::new()), |a, b| if b.0 > a.0 { b } else { a })
}

/// The model's adapters as the exports read them from a checkpoint, by HF
/// module.
pub fn adapters_of(
    model: &tunesmith::CausalLm,
) -> std::collections::BTreeMap<String, tunesmith::methods::ModuleTensors> {
    let mut out: std::collections::BTreeMap<String, tunesmith::methods::ModuleTensors> =
        Default::default();
    for (name, t) in tunesmith::train::params::read_trainable(model) {
        let (module, part) = name.split_once(".adapter.").unwrap_or((&name, ""));
        out.entry(format!("model.{module}"))
            .or_default()
            .insert(part.to_string(), t);
    }
    out
}
