//! GGUF files as base models, against what transformers reads from the
//! same files (tests/fixtures/make_gguf_fixtures.py): every dequantized
//! tensor bit for bit, token ids, and logits to 1e-4.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Deserialize;
use tunesmith::logits::{CaseFile, OutputFile, run_cases};
use tunesmith::model::WeightSource;
use tunesmith::{CausalLm, ModelConfig, ModelError, TextTokenizer};

fn gguf_fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures/gguf exists (run tests/fixtures/make_gguf_fixtures.py)")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.gguf").is_file())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 4, "the four GGUF fixtures: {dirs:?}");
    dirs
}

#[derive(Deserialize)]
struct Tensors {
    tie_word_embeddings: bool,
    fnv1a64_f32: BTreeMap<String, String>,
}

fn fnv1a64(values: &[f32]) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01B3);
        }
    }
    format!("{h:016x}")
}

#[test]
fn every_tensor_equals_transformers_dequantization_bit_for_bit() {
    let mut types = std::collections::BTreeSet::new();
    for dir in gguf_fixtures() {
        let expected: Tensors =
            serde_json::from_str(&std::fs::read_to_string(dir.join("tensors.json")).unwrap())
                .unwrap();
        let config = ModelConfig::from_dir(&dir).unwrap();
        assert_eq!(config.tie_word_embeddings, expected.tie_word_embeddings);
        let source = WeightSource::open(&dir).unwrap();
        assert!(source.is_gguf());
        for info in source.tensors().values() {
            types.insert(info.stored_as());
        }
        for (name, checksum) in &expected.fnv1a64_f32 {
            // transformers lists a tied head under its own name.
            let stored = if name == "lm_head.weight" && config.tie_word_embeddings {
                "model.embed_tokens.weight"
            } else {
                name
            };
            let info = &source.tensors()[stored];
            let values = source
                .read_f32(stored, &info.shape, config.model_type.as_str())
                .unwrap();
            assert_eq!(
                &fnv1a64(&values),
                checksum,
                "{}: {name} ({}) differs from transformers' dequantization",
                dir.display(),
                info.stored_as()
            );
        }
        assert_eq!(
            expected.fnv1a64_f32.len(),
            source.tensors().len() + usize::from(config.tie_word_embeddings),
            "{}: the same tensors on both sides",
            dir.display()
        );
    }
    let want = [
        "BF16", "F16", "F32", "Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K",
        "Q6_K", "Q8_0",
    ];
    for t in want {
        assert!(
            types.contains(t),
            "no fixture tensor of type {t}: {types:?}"
        );
    }
}

#[test]
fn logits_and_token_ids_match_transformers_reading_the_same_file() {
    let device = Device::flex();
    for dir in gguf_fixtures() {
        let tokenizer = TextTokenizer::from_dir(&dir).unwrap();
        let (model, _) = CausalLm::load(&dir, &device).unwrap();
        let cases = CaseFile::read(&dir.join("cases.json")).unwrap();
        let expected: OutputFile =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let got = run_cases(&model, Some(&tokenizer), &cases).unwrap();
        let mut worst = 0f32;
        for (g, e) in got.cases.iter().zip(&expected.cases) {
            assert_eq!(
                g.token_ids,
                e.token_ids,
                "{}/{}: token ids",
                dir.display(),
                e.name
            );
            for (gr, er) in g.logits.iter().zip(&e.logits) {
                for (a, b) in gr.iter().zip(er) {
                    worst = worst.max((a - b).abs());
                }
            }
        }
        eprintln!("{}: max |diff| {worst:.2e}", dir.display());
        assert!(worst <= 1e-4, "{}: logits differ by {worst}", dir.display());
    }
}

#[derive(Deserialize)]
struct SpmCase {
    name: String,
    text: Option<String>,
    messages: Option<Vec<tunesmith::ChatMessage>>,
    #[serde(default)]
    add_generation_prompt: bool,
    add_special_tokens: Option<bool>,
}

#[derive(Deserialize)]
struct SpmExpected {
    name: String,
    token_ids: Vec<u32>,
    decoded: String,
}

/// A SentencePiece (`llama`) vocabulary, as Llama 2, TinyLlama and Mistral
/// files carry it: the ids and decoded text transformers' tokenizer for the
/// same file gives (tests/fixtures/make_gguf_spm_fixture.py), for text with
/// runs of spaces, bytes outside the pieces, special tokens written in the
/// text, and a chat.
#[test]
fn a_sentencepiece_vocabulary_tokenizes_as_transformers_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/spm");
    let tokenizer = TextTokenizer::from_dir(&dir.join("tokenizer.gguf")).unwrap();
    #[derive(Deserialize)]
    struct Cases {
        cases: Vec<SpmCase>,
    }
    #[derive(Deserialize)]
    struct Reference {
        cases: Vec<SpmExpected>,
        vocab_size: usize,
    }
    let cases: Cases =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let expected: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    assert_eq!(tokenizer.vocab_size(), expected.vocab_size);
    assert_eq!(cases.cases.len(), expected.cases.len());
    for (case, want) in cases.cases.iter().zip(&expected.cases) {
        assert_eq!(case.name, want.name);
        let ids = match (&case.text, &case.messages) {
            (Some(text), _) => tokenizer
                .encode(text, case.add_special_tokens.unwrap_or(true))
                .unwrap(),
            (None, Some(messages)) => {
                tokenizer
                    .encode_chat(messages, case.add_generation_prompt)
                    .unwrap()
                    .1
            }
            (None, None) => panic!("case {} has neither text nor messages", case.name),
        };
        assert_eq!(ids, want.token_ids, "{}: token ids", case.name);
        assert_eq!(
            tokenizer.decode(&ids, true).unwrap(),
            want.decoded,
            "{}: decoded text",
            case.name
        );
    }

    // Without the scores there are no merges to recover: the error says so.
    let mut bytes = std::fs::read(dir.join("tokenizer.gguf")).unwrap();
    let at = find(&bytes, b"tokenizer.ggml.scores");
    bytes[at..at + 9].copy_from_slice(b"tokenizeX");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no-scores.gguf");
    std::fs::write(&path, bytes).unwrap();
    let msg = match TextTokenizer::from_dir(&path) {
        Ok(_) => panic!("a SentencePiece vocabulary without scores loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains("tokenizer.ggml.scores") && msg.contains("no-scores.gguf"),
        "{msg}"
    );
}

#[test]
fn a_model_path_may_name_the_file_itself() {
    let dir = &gguf_fixtures()[0];
    let file = dir.join("model.gguf");
    let a = ModelConfig::from_dir(dir).unwrap();
    let b = ModelConfig::from_dir(&file).unwrap();
    assert_eq!(a, b);
    assert!(TextTokenizer::from_dir(&file).is_ok());
}

/// A copy of the llama fixture with `edit` applied to its bytes.
fn broken(edit: impl Fn(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let mut bytes = std::fs::read(gguf_fixtures()[0].join("model.gguf")).unwrap();
    edit(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in the file")
}

fn load_err(path: &Path) -> String {
    match CausalLm::load(path, &Device::flex()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_get_errors_that_name_the_key_or_tensor() {
    // Truncated: the last tensor's data is cut off.
    let (_d, path) = broken(|b| b.truncate(b.len() - 1000));
    let msg = load_err(&path);
    assert!(
        msg.contains("truncated") && msg.contains("tensor \""),
        "{msg}"
    );

    // An unsupported architecture.
    let (_d, path) = broken(|b| {
        let at = find(b, b"general.architecture");
        // The value follows: type (u32), length (u64), then "llama".
        let value = at + "general.architecture".len() + 4 + 8;
        b[value..value + 5].copy_from_slice(b"gemma");
    });
    let msg = load_err(&path);
    assert!(
        msg.contains("\"gemma\"") && msg.contains("llama, mistral"),
        "{msg}"
    );

    // An unknown ggml type on a tensor.
    let (_d, path) = broken(|b| {
        let name = b"output_norm.weight";
        let at = find(b, name) + name.len();
        // n_dims (u32), one dim (u64), then the type id.
        let ty = at + 4 + 8;
        b[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
    });
    let msg = load_err(&path);
    assert!(
        msg.contains("output_norm.weight") && msg.contains("type 99"),
        "{msg}"
    );

    // A tokenizer key renamed away.
    let (_d, path) = broken(|b| {
        let at = find(b, b"tokenizer.ggml.merges");
        b[at..at + 9].copy_from_slice(b"tokenizeX");
    });
    let msg = match TextTokenizer::from_dir(&path) {
        Ok(_) => panic!("a tokenizer without merges loaded"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("tokenizer.ggml.merges"), "{msg}");

    // Not GGUF at all.
    let (_d, path) = broken(|b| b[0] = b'X');
    assert!(matches!(
        ModelConfig::from_dir(&path),
        Err(ModelError::Gguf(_))
    ));
    assert!(load_err(&path).contains("not a GGUF file"));
}
