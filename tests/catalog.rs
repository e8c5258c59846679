//! `tunesmith models list` on fixture layouts of each store, built in a
//! temp dir from the tiny fixture models: the HF cache (blobs and snapshot
//! symlinks, a GGUF repository, an unsupported architecture, a pickle-only
//! checkpoint), Ollama (manifests and blobs, one blob missing), LM Studio
//! (a GGUF file, a truncated one) and a chosen folder.

use std::path::{Path, PathBuf};

use tunesmith::catalog::{self, FoundModel, Roots, Store};
use tunesmith::{ModelConfig, ModelSummary, TextTokenizer};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// A file of a snapshot, stored as the hub does: a blob named by a hash
/// and a link to it from the snapshot (a copy where links are not offered).
fn hub_file(repo: &Path, rev: &str, name: &str, from: &Path) {
    let blob = repo.join("blobs").join(format!("{rev}-{name}"));
    copy(from, &blob);
    let link = repo.join("snapshots").join(rev).join(name);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        Path::new("../../blobs").join(blob.file_name().unwrap()),
        &link,
    )
    .unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&blob, &link).unwrap();
}

fn hf_model(repo: &Path, rev: &str, model: &str) {
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        hub_file(repo, rev, f, &fixture(&format!("models/{model}/{f}")));
    }
}

struct Layout {
    _tmp: tempfile::TempDir,
    roots: Roots,
    ollama_blob: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    let hub = root.join("hf/hub");
    let llama = hub.join("models--tiny--llama");
    hf_model(&llama, "aaaa1111", "llama");
    hf_model(&llama, "bbbb2222", "llama");
    std::fs::create_dir_all(llama.join("refs")).unwrap();
    std::fs::write(llama.join("refs/main"), "bbbb2222").unwrap();
    hub_file(
        &hub.join("models--tiny--qwen2-GGUF"),
        "r1",
        "qwen2-Q8_0.gguf",
        &fixture("gguf/qwen2/model.gguf"),
    );
    let gemma = hub.join("models--org--gemma");
    hf_model(&gemma, "r1", "llama");
    let snap = gemma.join("snapshots/r1");
    let config = std::fs::read_to_string(fixture("models/llama/config.json")).unwrap();
    std::fs::remove_file(snap.join("config.json")).unwrap();
    std::fs::write(
        snap.join("config.json"),
        config.replace("\"llama\"", "\"gemma2\""),
    )
    .unwrap();
    let old = hub.join("models--org--old/snapshots/r1");
    copy(
        &fixture("models/llama/config.json"),
        &old.join("config.json"),
    );
    std::fs::write(old.join("pytorch_model.bin"), b"PK\x03\x04 not loaded").unwrap();

    let ollama = root.join("ollama");
    let digest = "0123456789abcdef".repeat(4);
    let ollama_blob = ollama.join(format!("blobs/sha256-{digest}"));
    copy(&fixture("gguf/llama/model.gguf"), &ollama_blob);
    let manifest = |model: &str, digest: &str, projector: bool| {
        let mut layers = vec![serde_json::json!({
            "mediaType": "application/vnd.ollama.image.model",
            "digest": format!("sha256:{digest}"),
            "size": 1,
        })];
        if projector {
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.ollama.image.projector",
                "digest": "sha256:ffff",
            }));
        }
        let path = ollama
            .join("manifests/registry.ollama.ai/library")
            .join(model);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            serde_json::json!({"schemaVersion": 2, "layers": layers}).to_string(),
        )
        .unwrap();
    };
    manifest("tinyllama/latest", &digest, false);
    manifest("tinyllama/vision", &digest, true);
    manifest("gone/latest", &"9".repeat(64), false);

    let lms = root.join("lmstudio");
    copy(
        &fixture("gguf/mistral/model.gguf"),
        &lms.join("tiny/mistral-GGUF/mistral-Q4_K_M.gguf"),
    );
    let bytes = std::fs::read(fixture("gguf/qwen3/model.gguf")).unwrap();
    std::fs::write(lms.join("tiny/mistral-GGUF/broken.gguf"), &bytes[..2000]).unwrap();

    let mine = root.join("mine");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        copy(
            &fixture(&format!("models/qwen3/{f}")),
            &mine.join("qwen3-run/merged").join(f),
        );
    }

    let roots = Roots {
        hf_cache: vec![hub],
        ollama: vec![ollama],
        lm_studio: vec![lms],
        // Searching the HF cache again as a folder must not list it twice.
        folders: vec![mine, root.join("hf")],
    };
    Layout {
        _tmp: tmp,
        roots,
        ollama_blob,
    }
}

fn find<'a>(models: &'a [FoundModel], name: &str) -> &'a FoundModel {
    models
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} not listed: {:#?}", names(models)))
}

fn names(models: &[FoundModel]) -> Vec<String> {
    models
        .iter()
        .map(|m| format!("{:?} {}", m.store, m.name))
        .collect()
}

#[test]
fn every_store_is_found_with_what_it_holds_and_whether_it_trains() {
    let l = layout();
    let listing = catalog::list(&l.roots);
    let models = &listing.models;
    assert_eq!(
        models.len(),
        11,
        "one entry per model, none twice: {:#?}",
        names(models)
    );

    // HF cache: the snapshot `main` points at by its plain name, the other
    // by its revision; sizes follow the links to the blobs.
    let main = find(models, "tiny/llama");
    let older = find(models, "tiny/llama@aaaa1111");
    assert!(main.path.ends_with("snapshots/bbbb2222"));
    assert!(older.path.ends_with("snapshots/aaaa1111"));
    let summary = ModelSummary::from_dir(&fixture("models/llama")).unwrap();
    for m in [main, older] {
        assert_eq!(m.store, Store::HfCache);
        assert!(m.trainable, "{m:#?}");
        assert_eq!(m.architecture.as_deref(), Some("llama"));
        assert_eq!(m.parameters, Some(summary.parameters));
        assert_eq!(
            m.dtype.as_deref(),
            summary.dtypes.keys().next().map(|s| s.as_str())
        );
        let expected: u64 = [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
        .iter()
        .map(|f| {
            std::fs::metadata(fixture(&format!("models/llama/{f}")))
                .unwrap()
                .len()
        })
        .sum();
        assert_eq!(m.size_bytes, expected);
    }
    let gguf = find(models, "tiny/qwen2-GGUF/qwen2-Q8_0.gguf");
    assert!(gguf.trainable, "{gguf:#?}");
    assert_eq!(gguf.architecture.as_deref(), Some("qwen2"));
    assert_eq!(
        gguf.parameters,
        Some(
            ModelSummary::from_dir(&fixture("gguf/qwen2/model.gguf"))
                .unwrap()
                .parameters
        )
    );
    let gemma = find(models, "org/gemma");
    assert!(!gemma.trainable);
    assert_eq!(gemma.architecture.as_deref(), Some("gemma2"));
    assert!(
        gemma.parameters.is_some(),
        "counted from the headers anyway"
    );
    assert!(
        gemma.note.as_deref().unwrap().contains("gemma2"),
        "{gemma:#?}"
    );
    let old = find(models, "org/old");
    assert!(!old.trainable);
    assert!(
        old.note.as_deref().unwrap().contains("pytorch_model.bin")
            && old.note.as_deref().unwrap().contains("pickle"),
        "{old:#?}"
    );

    // Ollama: the manifest's model layer names the blob, which trains
    // as it is; a vision manifest says what is left aside; a missing blob
    // says how to get it back.
    let ollama = find(models, "tinyllama:latest");
    assert_eq!(ollama.store, Store::Ollama);
    assert_eq!(ollama.path, l.ollama_blob);
    assert!(ollama.trainable, "{ollama:#?}");
    assert_eq!(ollama.architecture.as_deref(), Some("llama"));
    let vision = find(models, "tinyllama:vision");
    assert!(vision.trainable);
    assert!(vision.note.as_deref().unwrap().contains("projector"));
    let gone = find(models, "gone:latest");
    assert!(!gone.trainable);
    assert!(
        gone.note.as_deref().unwrap().contains("ollama pull"),
        "{gone:#?}"
    );

    // LM Studio: publisher/repo/file; a truncated download says so.
    let lms = find(models, "tiny/mistral-GGUF/mistral-Q4_K_M.gguf");
    assert_eq!(lms.store, Store::LmStudio);
    assert!(lms.trainable);
    assert_eq!(
        lms.architecture.as_deref(),
        Some("llama"),
        "mistral GGUFs say llama"
    );
    let broken = find(models, "tiny/mistral-GGUF/broken.gguf");
    assert!(!broken.trainable);
    assert!(
        broken.note.as_deref().unwrap().contains("truncated"),
        "{broken:#?}"
    );

    // A chosen folder: HF folders below it by their relative path.
    let mine = find(models, "qwen3-run/merged");
    assert_eq!(mine.store, Store::Folder);
    assert!(mine.trainable);
    assert_eq!(mine.architecture.as_deref(), Some("qwen3"));

    assert_eq!(listing.searched.len(), 5);
    assert!(listing.searched.iter().all(|(_, _, exists)| *exists));
}

#[test]
fn an_ollama_blob_is_a_model_path_as_it_is() {
    let l = layout();
    let from_blob = ModelConfig::from_dir(&l.ollama_blob).unwrap();
    let from_file = ModelConfig::from_dir(&fixture("gguf/llama/model.gguf")).unwrap();
    assert_eq!(format!("{from_blob:?}"), format!("{from_file:?}"));
    let tok = TextTokenizer::from_dir(&l.ollama_blob).unwrap();
    let reference = TextTokenizer::from_dir(&fixture("gguf/llama/model.gguf")).unwrap();
    assert_eq!(
        tok.encode("Hello, world", true).unwrap(),
        reference.encode("Hello, world", true).unwrap()
    );
}

#[test]
fn standard_places_follow_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    };
    let r = Roots::from_vars(env(&[("HOME", "/h")]));
    assert_eq!(r.hf_cache, [PathBuf::from("/h/.cache/huggingface/hub")]);
    assert_eq!(r.ollama[0], PathBuf::from("/h/.ollama/models"));
    assert_eq!(
        r.lm_studio,
        [
            PathBuf::from("/h/.lmstudio/models"),
            PathBuf::from("/h/.cache/lm-studio/models")
        ]
    );
    assert_eq!(r.folders, [PathBuf::from("/h/.cache/tunesmith/models")]);
    let r = Roots::from_vars(env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]));
    assert_eq!(r.hf_cache, [PathBuf::from("/x/huggingface/hub")]);
    assert_eq!(r.folders, [PathBuf::from("/x/tunesmith/models")]);
    let r = Roots::from_vars(env(&[
        ("HOME", "/h"),
        ("HF_HOME", "/hf"),
        ("XDG_CACHE_HOME", "/x"),
    ]));
    assert_eq!(r.hf_cache, [PathBuf::from("/hf/hub")]);
    let r = Roots::from_vars(env(&[
        ("HF_HOME", "/hf"),
        ("HF_HUB_CACHE", "/c"),
        ("OLLAMA_MODELS", "/o"),
    ]));
    assert_eq!(r.hf_cache, [PathBuf::from("/c")]);
    assert_eq!(r.ollama, [PathBuf::from("/o")]);
    assert!(r.lm_studio.is_empty(), "no home, no LM Studio folder");
}

#[test]
fn the_cli_lists_the_standard_places_of_home() {
    let l = layout();
    let home = tempfile::tempdir().unwrap();
    let link = |from: &Path, to: &str| {
        let to = home.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(from, &to).unwrap();
        #[cfg(not(unix))]
        let _ = (from, to);
    };
    if cfg!(not(unix)) {
        return;
    }
    link(&l.roots.hf_cache[0], ".cache/huggingface/hub");
    link(&l.roots.ollama[0], ".ollama/models");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .args(["models", "list", "--json"])
        .env("HOME", home.path())
        .env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("OLLAMA_MODELS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut listed: Vec<(String, String)> = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["store"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    let hf: Vec<&str> = listed
        .iter()
        .filter(|(s, _)| s == "hf-cache")
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(
        hf,
        [
            "org/gemma",
            "org/old",
            "tiny/llama",
            "tiny/llama@aaaa1111",
            "tiny/qwen2-GGUF/qwen2-Q8_0.gguf"
        ]
    );
    assert!(listed.contains(&("ollama".into(), "tinyllama:latest".into())));

    // The table names each model and its path, and says what cannot train.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .args(["models", "list", "--only-dirs", "--dir"])
        .arg(&l.roots.lm_studio[0])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 model(s), 1 trainable"), "{text}");
    assert!(text.contains("why: "), "{text}");
}
