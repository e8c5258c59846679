//! Datasets as training sees them: every file kind, exact answer masks
//! against transformers, bad rows with their line numbers, packing, and
//! readers that never panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use proptest::prelude::*;
use serde_json::Value;
use tunesmith::data::{
    DataError, DataReport, Example, FallbackTemplate, FileKind, Format, LoadOptions, Row, TrainOn,
    Unit, inspect, load_dataset, pack, render_row,
};
use tunesmith::train::loss::{Batch, nll_sum};
use tunesmith::{CausalLm, ChatMessage, TextTokenizer};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_dir(&root().join("assets/models/tiny-llama")).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/data").join(name)
}

fn options(format: Format) -> LoadOptions {
    LoadOptions {
        format,
        max_bad_fraction: 1.0,
        ..LoadOptions::default()
    }
}

fn read(path: &Path, tok: Option<&TextTokenizer>) -> DataReport {
    inspect(path, tok, &options(Format::Auto)).unwrap()
}

fn trained_texts(report: &DataReport, example: usize) -> Vec<String> {
    report.tokens.as_ref().unwrap().examples[example]
        .spans
        .iter()
        .filter(|s| s.trained)
        .map(|s| s.text.clone())
        .collect()
}

#[test]
fn trained_spans_are_exactly_the_assistant_turns() {
    let path = root().join("assets/datasets/chat-sample.jsonl");
    let tok = tokenizer();
    let report = read(&path, Some(&tok));
    assert_eq!(report.format, Format::Messages);
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let examples = report.tokens.unwrap().examples;
    assert_eq!(examples.len(), 3);
    let mut multi_turn = false;
    for ex in examples {
        let row = &rows[ex.line - 1];
        let answers: Vec<String> = row["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .map(|m| format!("{}<|eot_id|>", m["content"].as_str().unwrap()))
            .collect();
        let trained: Vec<String> = ex
            .spans
            .iter()
            .filter(|s| s.trained)
            .map(|s| s.text.clone())
            .collect();
        assert_eq!(trained, answers, "line {}", ex.line);
        multi_turn |= answers.len() > 1;
    }
    assert!(multi_turn, "the sample starts with a multi-turn row");
}

#[test]
fn every_bad_row_is_reported_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.jsonl");
    let mut bytes = Vec::new();
    bytes
        .extend_from_slice(b"{\"instruction\": \"Hi\", \"input\": \"\", \"output\": \"Hello.\"}\n");
    bytes.extend_from_slice(b"{\"instruction\": \"Hi\", \"output\": \n");
    bytes.extend_from_slice(b"{\"instruction\": \"Hi\", \"input\": \"\"}\n");
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(b"{\"instruction\": \"Hi\", \"input\": \"\", \"output\": \"  \"}\n");
    bytes.extend_from_slice(b"{\"instruction\": \"\xff\xfe\", \"output\": \"x\"}\n");
    bytes.extend_from_slice(b"[1, 2]\n");
    std::fs::write(&path, bytes).unwrap();
    let report = read(&path, None);
    assert_eq!(report.format, Format::Alpaca);
    assert_eq!(report.rows, 1);
    let found: Vec<(usize, &str)> = report
        .errors
        .iter()
        .map(|e| (e.line, e.reason.as_str()))
        .collect();
    let expect = [
        (2, "invalid JSON"),
        (3, "missing field `output`"),
        (5, "field `output` is empty"),
        (6, "not valid UTF-8"),
        (7, "expected a JSON object"),
    ];
    assert_eq!(found.len(), expect.len(), "{found:?}");
    for ((line, reason), (want_line, want)) in found.iter().zip(expect) {
        assert_eq!(*line, want_line);
        assert!(reason.contains(want), "line {line}: {reason}");
    }

    let messages = tmp.path().join("roles.jsonl");
    std::fs::write(
        &messages,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n\
         {\"messages\": [{\"role\": \"assistant\", \"content\": \"b\"}]}\n",
    )
    .unwrap();
    let report = read(&messages, None);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].line, 2);
    assert!(report.errors[0].reason.contains("out of order"));
}

#[test]
fn sharegpt_rows_train_on_the_gpt_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sharegpt.jsonl");
    std::fs::write(
        &path,
        "{\"conversations\": [{\"from\": \"system\", \"value\": \"Be brief.\"}, \
         {\"from\": \"human\", \"value\": \"What is 2 plus 3?\"}, \
         {\"from\": \"gpt\", \"value\": \"2 plus 3 is 5.\"}, \
         {\"from\": \"human\", \"value\": \"And 2 plus 4?\"}, \
         {\"from\": \"gpt\", \"value\": \"2 plus 4 is 6.\"}]}\n\
         {\"conversations\": [{\"from\": \"bot\", \"value\": \"x\"}]}\n",
    )
    .unwrap();
    let tok = tokenizer();
    let report = read(&path, Some(&tok));
    assert_eq!(report.format, Format::Sharegpt);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].line, 2);
    assert!(report.errors[0].reason.contains("unknown from `bot`"));
    let ex = &report.tokens.unwrap().examples[0];
    let trained: Vec<&str> = ex
        .spans
        .iter()
        .filter(|s| s.trained)
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(
        trained,
        ["2 plus 3 is 5.<|eot_id|>", "2 plus 4 is 6.<|eot_id|>"]
    );
}

#[test]
fn chat_templates_and_masks_match_transformers() {
    for flavour in ["llama3", "chatml"] {
        let tok = TextTokenizer::from_dir(&root().join("tests/fixtures/tokenizers").join(flavour))
            .unwrap();
        let text = std::fs::read_to_string(fixture(&format!("templates-{flavour}.json"))).unwrap();
        let cases: Value = serde_json::from_str(&text).unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 4);
        for case in cases {
            let name = format!("{flavour}/{}", case["name"].as_str().unwrap());
            let messages: Vec<ChatMessage> =
                serde_json::from_value(case["messages"].clone()).unwrap();
            let generation = case["add_generation_prompt"].as_bool().unwrap();
            let rendered = tok.apply_chat_template(&messages, generation).unwrap();
            assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{name}: text");
            let want_ids: Vec<u32> = serde_json::from_value(case["token_ids"].clone()).unwrap();
            assert_eq!(
                tok.encode(&rendered, false).unwrap(),
                want_ids,
                "{name}: ids"
            );
            let Some(labels) = case.get("labels") else {
                continue;
            };
            let want_labels: Vec<i64> = serde_json::from_value(labels.clone()).unwrap();
            let (ids, labels) = render_row(&Row::Chat(messages), &tok, TrainOn::Assistant).unwrap();
            assert_eq!(ids, want_ids, "{name}: training ids");
            assert_eq!(labels, want_labels, "{name}: assistant mask");
        }
    }
}

#[test]
fn every_file_kind_gives_the_same_examples() {
    let tok = tokenizer();
    let reference = read(&fixture("alpaca.jsonl"), Some(&tok));
    assert_eq!(reference.rows, 4);
    let kinds = [
        ("alpaca.jsonl", FileKind::Jsonl),
        ("alpaca.json", FileKind::JsonArray),
        ("alpaca.csv", FileKind::Csv),
        ("alpaca.tsv", FileKind::Tsv),
        ("alpaca.parquet", FileKind::Parquet),
    ];
    let shown = |r: &DataReport| {
        format!(
            "{:?}",
            r.tokens.as_ref().unwrap().examples[..3]
                .iter()
                .map(|e| &e.spans)
                .collect::<Vec<_>>()
        )
    };
    for (name, kind) in kinds {
        let r = read(&fixture(name), Some(&tok));
        assert_eq!(r.file_kind, kind, "{name}");
        assert_eq!(r.format, Format::Alpaca, "{name}");
        assert_eq!((r.rows, r.bad_rows), (4, 0), "{name}: {:?}", r.errors);
        let t = r.tokens.as_ref().unwrap();
        let want = reference.tokens.as_ref().unwrap();
        assert_eq!(
            (t.total_tokens, t.trained_tokens),
            (want.total_tokens, want.trained_tokens),
            "{name}"
        );
        assert_eq!(shown(&r), shown(&reference), "{name}");
    }
    // The third row's answer has quotes, a comma and a newline.
    assert_eq!(
        trained_texts(&reference, 2),
        ["She said \"hi\", then left.\nThe end.<|eot_id|>"]
    );

    // Other column names, mapped.
    let renamed = fixture("renamed.csv");
    let err = inspect(&renamed, Some(&tok), &options(Format::Auto)).unwrap_err();
    assert!(matches!(err, DataError::UnknownFormat { .. }), "{err}");
    let mut mapped = options(Format::Auto);
    mapped.columns = BTreeMap::from([
        ("instruction".to_string(), "question".to_string()),
        ("output".to_string(), "answer".to_string()),
    ]);
    let r = inspect(&renamed, Some(&tok), &mapped).unwrap();
    assert_eq!((r.format, r.rows), (Format::Alpaca, 4));
    assert_eq!(trained_texts(&r, 0), ["Red.<|eot_id|>"]);
    mapped.columns.insert("answer".into(), "x".into());
    let err = inspect(&renamed, Some(&tok), &mapped).unwrap_err();
    assert!(err.to_string().contains("`answer` is not a field"), "{err}");

    // Conversations from Parquet lists, paragraphs from text.
    let chats = read(&fixture("chat.parquet"), Some(&tok));
    assert_eq!((chats.format, chats.rows), (Format::Messages, 3));
    assert_eq!(
        trained_texts(&chats, 2),
        ["Hello, how can I help?<|eot_id|>", "1, 2, 3<|eot_id|>"]
    );
    let notes = read(&fixture("notes.txt"), Some(&tok));
    assert_eq!((notes.format, notes.rows), (Format::Text, 2));
    assert_eq!(notes.tokens.as_ref().unwrap().examples[1].line, 5);
}

#[test]
fn bad_rows_of_every_file_kind_carry_their_position() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("bad.csv");
    std::fs::write(
        &csv,
        b"instruction,output\nfine,yes\n\"two\nlines\",\nshort\nok,\xff\n".as_slice(),
    )
    .unwrap();
    let r = read(&csv, None);
    let found: Vec<(usize, &str)> = r
        .errors
        .iter()
        .map(|e| (e.line, e.reason.as_str()))
        .collect();
    assert_eq!(r.rows, 1);
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0].0, 3);
    assert!(found[0].1.contains("missing field `output`"));
    assert_eq!(found[1].0, 5);
    assert!(found[1].1.contains("1 columns where the header has 2"));
    assert_eq!(found[2].0, 6);
    assert!(found[2].1.contains("not valid UTF-8"));

    let array = tmp.path().join("bad.json");
    std::fs::write(
        &array,
        r#"[{"text": "a"}, "b", {"text": ""}, {"text": "d"}]"#,
    )
    .unwrap();
    let r = read(&array, None);
    assert_eq!(r.rows, 2);
    let found: Vec<(usize, Unit)> = r.errors.iter().map(|e| (e.line, e.unit)).collect();
    assert_eq!(found, [(2, Unit::Row), (3, Unit::Row)]);
    assert!(
        r.errors[0]
            .to_string()
            .contains("bad.json row 2: expected a JSON object")
    );

    // A JSON array broken in the middle cannot be read past the break.
    std::fs::write(&array, r#"[{"text": "a"}, {"text": "#).unwrap();
    let err = inspect(&array, None, &options(Format::Auto)).unwrap_err();
    assert!(err.to_string().contains("invalid JSON at line 1"), "{err}");

    let unknown = tmp.path().join("data.xlsx");
    std::fs::write(&unknown, b"PK\x03\x04").unwrap();
    let err = inspect(&unknown, None, &options(Format::Auto)).unwrap_err();
    assert!(err.to_string().contains("unknown kind of file"), "{err}");
}

#[test]
fn models_without_a_chat_template_fall_back_to_chatml_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/fixtures/tokenizers/chatml/tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let tok = TextTokenizer::from_dir(tmp.path()).unwrap();
    assert!(!tok.has_chat_template());
    let path = fixture("chat.parquet");
    let r = inspect(&path, Some(&tok), &options(Format::Auto)).unwrap();
    assert_eq!(r.rows, 3);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("ChatML"), "{:?}", r.warnings);
    let spans = &r.tokens.as_ref().unwrap().examples[0].spans;
    let text: String = spans.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        text,
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n"
    );
    assert_eq!(trained_texts(&r, 0), ["4.<|im_end|>"]);

    let mut strict = options(Format::Auto);
    strict.fallback_template = FallbackTemplate::None;
    let err = inspect(&path, Some(&tok), &strict).unwrap_err();
    assert!(matches!(err, DataError::NoChatTemplate { .. }), "{err}");
    // Plain text needs no template and gets no warning.
    let r = inspect(&fixture("notes.txt"), Some(&tok), &strict).unwrap();
    assert!(r.warnings.is_empty());
}

#[test]
fn a_packed_batch_has_the_loss_of_its_examples_one_by_one() {
    let dir = root().join("tests/fixtures/models/llama");
    let device = Device::flex();
    let (model, _) = CausalLm::load(&dir, &device).unwrap();
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let set = load_dataset(
        &root().join("assets/datasets/chat-sample.jsonl"),
        &tok,
        &options(Format::Auto),
    )
    .unwrap();
    let examples: Vec<Example> = set.examples.into_iter().take(6).collect();
    let separate: f64 = examples
        .iter()
        .map(|e| {
            nll_sum(&model, &Batch::from_examples(&[e], 0, &device)).into_scalar::<f32>() as f64
        })
        .sum();
    let longest = examples.iter().map(|e| e.ids.len()).max().unwrap();
    let packed = pack(examples.clone(), 2 * longest);
    assert!(packed.len() < examples.len(), "something was packed");
    assert!(packed.iter().any(|p| p.segments.len() > 1));
    let rows: Vec<&Example> = packed.iter().collect();
    let batch = Batch::from_examples(&rows, 0, &device);
    let together = nll_sum(&model, &batch).into_scalar::<f32>() as f64;
    let trained: usize = examples.iter().map(Example::trained_tokens).sum();
    assert_eq!(batch.trained_tokens, trained);
    assert!(
        (together - separate).abs() <= 1e-4 * separate.abs(),
        "packed {together} vs one by one {separate}"
    );
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("instruction"),
            Just("output"),
            Just("messages"),
            Just("role"),
            Just("assistant"),
            Just("text")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("instruction".to_string()),
                    Just("input".to_string()),
                    Just("output".to_string()),
                    Just("messages".to_string()),
                    Just("conversations".to_string()),
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("from".to_string()),
                    Just("value".to_string()),
                    Just("prompt".to_string()),
                    Just("completion".to_string()),
                    Just("text".to_string()),
                    ".{0,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const EXTENSIONS: [&str; 7] = ["jsonl", "json", "csv", "tsv", "parquet", "txt", "bin"];

/// Every reader, with and without a tokenizer: an error is fine, a panic
/// is not.
fn read_everything(dir: &Path, name: &str, bytes: &[u8], tok: &TextTokenizer) {
    for ext in EXTENSIONS {
        let path = dir.join(format!("{name}.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        for format in [
            Format::Auto,
            Format::Alpaca,
            Format::Messages,
            Format::Sharegpt,
        ] {
            let _ = inspect(&path, None, &options(format));
            let _ = inspect(&path, Some(tok), &options(format));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn readers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let tmp = tempfile::tempdir().unwrap();
        read_everything(tmp.path(), "bytes", &bytes, &tokenizer());
    }

    #[test]
    fn readers_never_panic_on_arbitrary_json(values in prop::collection::vec(json_value(), 1..5)) {
        let tmp = tempfile::tempdir().unwrap();
        let tok = tokenizer();
        let lines: Vec<String> = values.iter().map(Value::to_string).collect();
        read_everything(tmp.path(), "lines", lines.join("\n").as_bytes(), &tok);
        read_everything(tmp.path(), "array", Value::Array(values).to_string().as_bytes(), &tok);
    }
}

#[test]
fn prompt_completion_trains_on_the_completion_and_text_on_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pc.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"The capital of Peru is\", \"completion\": \" Lima.\"}\n",
    )
    .unwrap();
    let tok = tokenizer();
    let r = read(&path, Some(&tok));
    assert_eq!(r.format, Format::PromptCompletion);
    // The completion and the end-of-sequence token (the first of
    // generation_config.json's eos ids), nothing of the prompt.
    assert_eq!(trained_texts(&r, 0), [" Lima.<|end_of_text|>"]);

    let r = read(&fixture("notes.txt"), Some(&tok));
    let spans = &r.tokens.as_ref().unwrap().examples[1].spans;
    assert_eq!(spans.len(), 1);
    assert!(spans[0].trained);
    assert_eq!(
        spans[0].text,
        "<|begin_of_text|>The second one is short.<|end_of_text|>"
    );
}
