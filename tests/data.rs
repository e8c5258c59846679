//! Datasets as training sees them: exact answer masks, bad rows with their
//! line numbers.

use std::path::Path;

use tunesmith::TextTokenizer;
use tunesmith::data::{Format, TrainOn, inspect};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_dir(&root().join("assets/models/tiny-llama")).unwrap()
}

#[test]
fn trained_spans_are_exactly_the_assistant_turns() {
    let path = root().join("assets/datasets/chat-sample.jsonl");
    let tok = tokenizer();
    let report = inspect(&path, Some(&tok), Format::Auto, 512, TrainOn::Assistant).unwrap();
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
    let report = inspect(&path, None, Format::Auto, 512, TrainOn::Assistant).unwrap();
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
    let report = inspect(&messages, None, Format::Auto, 512, TrainOn::Assistant).unwrap();
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
    let report = inspect(&path, Some(&tok), Format::Auto, 512, TrainOn::Assistant).unwrap();
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
