//! Chat templates rendered with minijinja, configured the way transformers
//! configures Jinja2 for `apply_chat_template`.

use minijinja::value::{Kwargs, Value};
use std::sync::Arc;

use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use super::TokenizerError;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A model's Jinja chat template, compiled once.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    /// The environment holding the compiled template, or the syntax error.
    compiled: Result<Arc<Environment<'static>>, String>,
}

/// The ChatML layout (`<|im_start|>role\ncontent<|im_end|>\n`), used for
/// models whose tokenizer has no chat template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const NAME: &str = "chat_template";

/// Marker prefix so a `raise_exception` from the template can be told apart
/// from a template bug.
const RAISED: &str = "raised by template: ";

impl ChatTemplate {
    /// Wraps template source text.
    pub fn new(source: String) -> Self {
        let mut env = environment();
        let compiled = env
            .add_template_owned(NAME, source.clone())
            .map(|()| Arc::new(env))
            .map_err(|e| format!("{e:#}"));
        Self { source, compiled }
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; `specials` are the tokenizer's special tokens
    /// (bos_token, eos_token...) that templates may refer to.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        specials: &[(&str, &Option<String>)],
    ) -> Result<String, TokenizerError> {
        let env = self
            .compiled
            .as_ref()
            .map_err(|reason| TokenizerError::Template {
                reason: reason.clone(),
            })?;
        let template = env
            .get_template(NAME)
            .map_err(|e| TokenizerError::Template {
                reason: format!("{e:#}"),
            })?;
        let mut ctx = std::collections::BTreeMap::new();
        ctx.insert("messages", Value::from(minijinja::value::Serde(messages)));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        for (name, value) in specials {
            if let Some(v) = value {
                ctx.insert(name, Value::from(v.as_str()));
            }
        }
        template
            .render(Value::from(minijinja::value::Serde(&ctx)))
            .map_err(|e| match e.detail().and_then(|d| d.strip_prefix(RAISED)) {
                Some(message) => TokenizerError::TemplateRaised {
                    message: message.to_string(),
                },
                None => TokenizerError::Template {
                    reason: format!("{e:#}"),
                },
            })
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.trim_blocks(true).lstrip_blocks(true);
    if let Ok(s) = syntax.build() {
        env.set_syntax(s);
    }
    // Python string/dict methods (.strip(), .items(), .startswith()...)
    // that HF templates use.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{RAISED}{msg}"),
        ))
    });
    env.add_function("strftime_now", |fmt: String| -> Result<String, Error> {
        Ok(jiff::Zoned::now().strftime(&fmt).to_string())
    });
    env.add_filter("tojson", tojson);
    env
}

/// `json.dumps(x, ensure_ascii=False, indent=indent)` as transformers'
/// template filter writes it: ", " and ": " separators, keys in insertion
/// order, non-ASCII kept. (minijinja's own tojson HTML-escapes and
/// compacts.)
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let result = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonFormatter,
        )),
    };
    result.map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let text = String::from_utf8(out)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(Value::from_safe_string(text))
}

/// Python's default `json.dumps` separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, msgs: &[ChatMessage], gen_prompt: bool) -> Result<String, TokenizerError> {
        let bos = Some("<s>".to_string());
        ChatTemplate::new(src.into()).render(msgs, gen_prompt, &[("bos_token", &bos)])
    }

    #[test]
    fn trims_blocks_and_knows_python_methods() {
        let src = "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content.strip() }}]\n  {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}>{% endif %}";
        let out = render(src, &[ChatMessage::new("user", "  hi ")], true).unwrap();
        assert_eq!(out, "<s>[hi]\n>");
    }

    #[test]
    fn raise_exception_becomes_a_clear_error() {
        let src = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}";
        let err = render(src, &[ChatMessage::new("assistant", "x")], false).unwrap_err();
        match err {
            TokenizerError::TemplateRaised { message } => assert_eq!(message, "first must be user"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let out = render(
            "{{ messages[0] | tojson }}",
            &[ChatMessage::new("user", "café <b>")],
            false,
        )
        .unwrap();
        assert_eq!(out, r#"{"role": "user", "content": "café <b>"}"#);
    }

    #[test]
    fn loop_controls_work() {
        let src = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}";
        let msgs = [ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
        assert_eq!(render(src, &msgs, false).unwrap(), "a");
    }
}
