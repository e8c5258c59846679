//! JSONL rows -> conversations, with the schema detected from the keys.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value};

use super::{DataError, Format, RowError};
use crate::tokenizer::ChatMessage;

/// One row, schema resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A conversation for the chat template (alpaca and messages rows).
    Chat(Vec<ChatMessage>),
    /// Prompt and completion as plain text.
    PromptCompletion { prompt: String, completion: String },
    /// Plain text.
    Text(String),
}

/// Reads every line of a JSONL file. Returns the good rows with their line
/// numbers, the bad ones with reasons, and the schema used.
#[allow(clippy::type_complexity)]
pub fn read_rows(
    path: &Path,
    format: Format,
) -> Result<(Vec<(usize, Row)>, Vec<RowError>, Format), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut format = format;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            break;
        }
        line += 1;
        let bad = |reason: String| RowError {
            file: path.to_path_buf(),
            line,
            reason,
        };
        let Ok(text) = std::str::from_utf8(&buf) else {
            errors.push(bad("not valid UTF-8".into()));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                errors.push(bad("expected a JSON object".into()));
                continue;
            }
            Err(e) => {
                errors.push(bad(format!("invalid JSON: {e}")));
                continue;
            }
        };
        if format == Format::Auto {
            match detect(&obj) {
                Some(f) => format = f,
                None => {
                    errors.push(bad(format!(
                        "cannot tell the format from the keys {:?}; expected alpaca \
                         (instruction/output), messages, prompt/completion or text",
                        obj.keys().collect::<Vec<_>>()
                    )));
                    continue;
                }
            }
        }
        match parse(&obj, format) {
            Ok(row) => rows.push((line, row)),
            Err(reason) => errors.push(bad(reason)),
        }
    }
    if format == Format::Auto {
        return Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
            reason: errors
                .first()
                .map(|e| e.reason.clone())
                .unwrap_or_else(|| "the file has no rows".into()),
        });
    }
    Ok((rows, errors, format))
}

fn detect(obj: &Map<String, Value>) -> Option<Format> {
    if obj.contains_key("messages") {
        Some(Format::Messages)
    } else if obj.contains_key("conversations") {
        Some(Format::Sharegpt)
    } else if obj.contains_key("instruction") && obj.contains_key("output") {
        Some(Format::Alpaca)
    } else if obj.contains_key("prompt") && obj.contains_key("completion") {
        Some(Format::PromptCompletion)
    } else if obj.contains_key("text") {
        Some(Format::Text)
    } else {
        None
    }
}

fn string_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field `{key}` must be a string")),
    }
}

fn required<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match string_field(obj, key)? {
        None => Err(format!("missing field `{key}`")),
        Some(s) if s.trim().is_empty() => Err(format!("field `{key}` is empty")),
        Some(s) => Ok(s),
    }
}

fn parse(obj: &Map<String, Value>, format: Format) -> Result<Row, String> {
    match format {
        Format::Alpaca => {
            let instruction = required(obj, "instruction")?;
            let output = required(obj, "output")?;
            let input = string_field(obj, "input")?.unwrap_or("");
            let mut messages = Vec::with_capacity(3);
            if let Some(system) = string_field(obj, "system")?.filter(|s| !s.trim().is_empty()) {
                messages.push(ChatMessage::new("system", system));
            }
            let user = if input.trim().is_empty() {
                instruction.to_string()
            } else {
                format!("{instruction}\n\n{input}")
            };
            messages.push(ChatMessage::new("user", user));
            messages.push(ChatMessage::new("assistant", output));
            Ok(Row::Chat(messages))
        }
        Format::Messages => conversation(obj, "messages", "role", "content", |r| match r {
            "system" => Some("system"),
            "user" => Some("user"),
            "assistant" => Some("assistant"),
            _ => None,
        }),
        Format::Sharegpt => conversation(obj, "conversations", "from", "value", |r| match r {
            "system" => Some("system"),
            "human" | "user" => Some("user"),
            "gpt" | "assistant" => Some("assistant"),
            _ => None,
        }),
        Format::PromptCompletion => Ok(Row::PromptCompletion {
            prompt: required(obj, "prompt")?.to_string(),
            completion: required(obj, "completion")?.to_string(),
        }),
        Format::Text => Ok(Row::Text(required(obj, "text")?.to_string())),
        Format::Auto => Err("format not resolved".into()),
    }
}

/// A chat list under `list_key` whose items carry a role (mapped to
/// system/user/assistant by `role_of`) and a text.
fn conversation(
    obj: &Map<String, Value>,
    list_key: &str,
    role_key: &str,
    text_key: &str,
    role_of: impl Fn(&str) -> Option<&'static str>,
) -> Result<Row, String> {
    let Some(Value::Array(list)) = obj.get(list_key) else {
        return Err(format!(
            "field `{list_key}` must be a list of {{{role_key}, {text_key}}}"
        ));
    };
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(format!("{list_key}[{i}] is not an object"));
        };
        let raw = required(m, role_key).map_err(|e| format!("{list_key}[{i}]: {e}"))?;
        let role =
            role_of(raw).ok_or_else(|| format!("{list_key}[{i}]: unknown {role_key} `{raw}`"))?;
        let content = required(m, text_key).map_err(|e| format!("{list_key}[{i}]: {e}"))?;
        let previous = messages.last().map(|m| m.role.as_str());
        let expected = matches!(
            (role, previous),
            ("system", None)
                | ("user", None | Some("system") | Some("assistant"))
                | ("assistant", Some("user"))
        );
        if !expected {
            return Err(format!(
                "{list_key}[{i}]: {role_key} `{raw}` out of order (expected an optional system \
                 message, then user and assistant turns alternating)"
            ));
        }
        messages.push(ChatMessage::new(role, content));
    }
    if messages.last().map(|m| m.role.as_str()) != Some("assistant") {
        return Err("the conversation does not end with an assistant message".into());
    }
    Ok(Row::Chat(messages))
}
