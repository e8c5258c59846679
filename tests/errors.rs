//! Bad model folders get clear errors that name the problem, never panics.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use tunesmith::{CausalLm, ModelError, TextTokenizer, TokenizerError};

/// A scratch copy of the llama fixture.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = common::models_dir().join(name);
    let dst = tmp.path().join(name);
    std::fs::create_dir(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dst)
}

fn load_err(dir: &Path) -> ModelError {
    match CausalLm::load(dir, &Device::flex()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

/// Rewrites model.safetensors through `edit`, which gets (name -> (dtype,
/// shape, bytes)).
fn rewrite_weights(
    dir: &Path,
    edit: impl FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut map: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut map);
    let views: Vec<(String, TensorView)> = map
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

#[test]
fn unsupported_model_type_names_it_and_lists_supported() {
    let (_tmp, dir) = copy_fixture("llama");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"llama\"", "\"gpt_neox\""),
    )
    .unwrap();
    let msg = load_err(&dir).to_string();
    assert!(msg.contains("\"gpt_neox\""), "{msg}");
    assert!(msg.contains("llama, mistral, qwen2, qwen3"), "{msg}");
}

#[test]
fn missing_tensor_is_named_with_its_file() {
    let (_tmp, dir) = copy_fixture("llama");
    rewrite_weights(&dir, |m| {
        m.remove("model.layers.1.mlp.down_proj.weight");
    });
    let err = load_err(&dir);
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("model.layers.1.mlp.down_proj.weight"), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn unexpected_tensor_is_named() {
    let (_tmp, dir) = copy_fixture("llama");
    rewrite_weights(&dir, |m| {
        let extra = m["model.norm.weight"].clone();
        m.insert("model.layers.7.extra_norm.weight".into(), extra);
    });
    let msg = load_err(&dir).to_string();
    assert!(msg.contains("model.layers.7.extra_norm.weight"), "{msg}");
    assert!(msg.contains("unexpected"), "{msg}");
}

#[test]
fn misshapen_tensor_reports_both_shapes() {
    let (_tmp, dir) = copy_fixture("llama");
    rewrite_weights(&dir, |m| {
        let (dtype, shape, bytes) = m["model.layers.0.self_attn.q_proj.weight"].clone();
        let half = bytes.len() / 2;
        m.insert(
            "model.layers.0.self_attn.q_proj.weight".into(),
            (dtype, vec![shape[0] / 2, shape[1]], bytes[..half].to_vec()),
        );
    });
    let err = load_err(&dir);
    let msg = err.to_string();
    assert!(matches!(err, ModelError::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("q_proj.weight") && msg.contains("[32, 64]") && msg.contains("[64, 64]"),
        "{msg}"
    );
}

#[test]
fn truncated_safetensors_is_reported_as_corrupt() {
    let (_tmp, dir) = copy_fixture("llama");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&dir);
    assert!(
        matches!(err, ModelError::CorruptSafetensors { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn garbage_header_is_reported_as_corrupt() {
    let (_tmp, dir) = copy_fixture("llama");
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..24].copy_from_slice(b"not json at all!");
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        load_err(&dir),
        ModelError::CorruptSafetensors { .. }
    ));
}

#[test]
fn missing_shard_is_named() {
    let (_tmp, dir) = copy_fixture("mistral");
    let shard = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".safetensors"))
        .expect("the mistral fixture is sharded");
    std::fs::remove_file(&shard).unwrap();
    let msg = load_err(&dir).to_string();
    let file = shard.file_name().unwrap().to_string_lossy().to_string();
    assert!(msg.contains(&file), "{msg}");
}

#[test]
fn pickle_only_folder_is_refused() {
    let (_tmp, dir) = copy_fixture("llama");
    std::fs::rename(dir.join("model.safetensors"), dir.join("pytorch_model.bin")).unwrap();
    let err = load_err(&dir);
    assert!(matches!(err, ModelError::NoWeights { .. }), "{err:?}");
    assert!(err.to_string().contains("pickle"), "{err}");
}

#[test]
fn missing_tokenizer_json_says_what_to_do() {
    let (_tmp, dir) = copy_fixture("llama");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = TextTokenizer::from_dir(&dir)
        .err()
        .expect("no tokenizer.json");
    assert!(
        matches!(err, TokenizerError::MissingTokenizer { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn cli_reports_errors_without_panicking() {
    let (_tmp, dir) = copy_fixture("llama");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .args(["model", "inspect"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no weights"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
