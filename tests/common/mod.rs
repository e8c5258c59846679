//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::tensor::Device;

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
