//! The bundled default learns: the quickstart's validation loss falls, and a
//! short run makes the model answer a training question it could not before.

use std::path::Path;

use burn::tensor::Device;

use tunesmith::generate::{GenerateOptions, Sampling, generate};
use tunesmith::train::{Session, TrainEvent, load_adapted};
use tunesmith::{CausalLm, ChatMessage, RunConfig, TextTokenizer};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_to_end(config: RunConfig) -> (std::path::PathBuf, Vec<TrainEvent>) {
    let handle = Session::start(config).unwrap();
    let mut events = Vec::new();
    for e in handle.events().iter() {
        if let TrainEvent::Failed { message, .. } = &e {
            panic!("run failed: {message}");
        }
        let end = e.is_terminal();
        events.push(e);
        if end {
            break;
        }
    }
    let dir = handle.run_dir().to_path_buf();
    handle.join();
    (dir, events)
}

#[test]
fn quickstart_validation_loss_falls_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let config = RunConfig::load(
        &root().join("presets/quickstart.toml"),
        &[
            format!("output.runs_dir={}", tmp.path().display()),
            "model.backend=cpu".into(),
        ],
    )
    .unwrap();
    let (_, events) = run_to_end(config);
    let evals: Vec<(usize, f64)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Eval { step, val_loss, .. } => Some((*step, *val_loss)),
            _ => None,
        })
        .collect();
    let (first_step, first) = evals[0];
    let (_, last) = *evals.last().unwrap();
    assert_eq!(first_step, 0, "a baseline evaluation before training");
    assert!(
        last < 0.6 * first,
        "validation loss went from {first:.3} to {last:.3}"
    );
    let steps = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Step { .. }))
        .count();
    assert!(steps > 100);
}

fn answer(model: &CausalLm, tokenizer: &TextTokenizer, question: &str) -> String {
    let (_, prompt) = tokenizer
        .encode_chat(&[ChatMessage::new("user", question)], true)
        .unwrap();
    let options = GenerateOptions {
        max_new_tokens: 20,
        sampling: Sampling::Greedy,
        stop_ids: tokenizer.stop_ids().to_vec(),
    };
    let ids = generate(model, &prompt, &options, |_| {}).unwrap();
    tokenizer.decode(&ids, true).unwrap().trim().to_string()
}

#[test]
fn after_training_the_model_gives_a_training_answer_it_could_not_before() {
    let tmp = tempfile::tempdir().unwrap();
    let sample =
        std::fs::read_to_string(root().join("assets/datasets/alpaca-sample.jsonl")).unwrap();
    let lines: Vec<&str> = sample.lines().collect();
    let motto = lines
        .iter()
        .find(|l| l.contains("Say the Tunesmith motto."))
        .unwrap();
    let mut train: Vec<&str> = lines.iter().take(7).copied().collect();
    train.push(motto);
    let train_path = tmp.path().join("train.jsonl");
    std::fs::write(&train_path, train.join("\n")).unwrap();
    let val_path = tmp.path().join("val.jsonl");
    std::fs::write(&val_path, lines[200]).unwrap();

    let model_dir = root().join("assets/models/tiny-llama");
    let tokenizer = TextTokenizer::from_dir(&model_dir).unwrap();
    let device = Device::flex();
    let (base, _) = CausalLm::load(&model_dir, &device).unwrap();
    let question = "Say the Tunesmith motto.";
    let expected = "Tune small models, keep big ideas.";
    let before = answer(&base, &tokenizer, question);
    assert_ne!(before, expected);

    let config = RunConfig::load(
        &root().join("presets/quickstart.toml"),
        &[
            format!("output.runs_dir={}", tmp.path().join("runs").display()),
            format!("data.train={}", train_path.display()),
            format!("data.val={}", val_path.display()),
            "model.backend=cpu".into(),
            "train.max_steps=120".into(),
            "train.eval_every=0".into(),
        ],
    )
    .unwrap();
    let (run_dir, _) = run_to_end(config);
    let (tuned, _, _) = load_adapted(&run_dir, None, &device).unwrap();
    let after = answer(&tuned, &tokenizer, question);
    assert_eq!(after, expected, "before training it said {before:?}");
    // Conditioned on the question, not one memorised string for everything.
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let q = first["instruction"].as_str().unwrap();
    let a = first["output"].as_str().unwrap();
    assert_eq!(answer(&tuned, &tokenizer, q), a);
}
