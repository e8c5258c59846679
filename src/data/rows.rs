//! Records -> rows of a schema (alpaca, messages, ShareGPT, prompt/
//! completion, text), detected from the field names or configured.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use serde_json::{Map, Value};

use super::source::{FileKind, Unit, for_each_record};
use super::{DataError, Format};
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

/// Known field names, which `data.columns` may map from other names.
pub const CANONICAL_FIELDS: &[&str] = &[
    "instruction",
    "input",
    "output",
    "system",
    "messages",
    "conversations",
    "role",
    "content",
    "from",
    "value",
    "prompt",
    "completion",
    "text",
];

/// Fields that live inside the items of a conversation list.
const ITEM_FIELDS: &[&str] = &["role", "content", "from", "value"];

/// Streams the rows of `path` through `f` with their line (or row) numbers:
/// a parsed row, or the reason it is bad. `columns` maps our field names to
/// the file's. Returns the schema used and how rows are numbered.
pub fn for_each_row(
    path: &Path,
    format: Format,
    columns: &BTreeMap<String, String>,
    mut f: impl FnMut(usize, Result<Row, String>) -> ControlFlow<()>,
) -> Result<(Format, Unit), DataError> {
    let kind = FileKind::of(path)?;
    let mut format = format;
    let mut first_problem: Option<String> = None;
    for_each_record(path, kind, |n, record| {
        let mut obj = match record {
            Ok(obj) => obj,
            Err(reason) => {
                first_problem.get_or_insert_with(|| reason.clone());
                return f(n, Err(reason));
            }
        };
        rename_columns(&mut obj, columns);
        if format == Format::Auto {
            match detect(&obj) {
                Some(found) => format = found,
                None => {
                    let reason = format!(
                        "cannot tell the format from the fields {:?}; expected alpaca \
                         (instruction/output), messages, conversations, prompt/completion or \
                         text; set data.format, or map your names with data.columns",
                        obj.keys().collect::<Vec<_>>()
                    );
                    first_problem.get_or_insert_with(|| reason.clone());
                    return f(n, Err(reason));
                }
            }
        }
        f(n, parse(&obj, format))
    })?;
    if format == Format::Auto {
        return Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
            reason: first_problem.unwrap_or_else(|| "the file has no rows".into()),
        });
    }
    Ok((format, kind.unit()))
}

/// Moves each mapped field to our name, at the top level and, for the
/// role/content names, inside conversation items.
fn rename_columns(obj: &mut Map<String, Value>, columns: &BTreeMap<String, String>) {
    for (ours, theirs) in columns {
        if ITEM_FIELDS.contains(&ours.as_str()) {
            for list in ["messages", "conversations"] {
                if let Some(Value::Array(items)) = obj.get_mut(list) {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(v) = item.remove(theirs) {
                            item.insert(ours.clone(), v);
                        }
                    }
                }
            }
        }
        if let Some(v) = obj.remove(theirs) {
            obj.insert(ours.clone(), v);
        }
    }
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
