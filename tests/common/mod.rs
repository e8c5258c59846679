//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
