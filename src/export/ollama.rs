//! Ollama: the merged model as a GGUF file plus a Modelfile whose TEMPLATE
//! is the model's chat template in Ollama's Go-template form, when the
//! template is one we can recognise (ChatML, Llama 3) by what it renders.

use std::path::Path;

use super::gguf_model::{self, ModelDtype};
use super::{ExportError, Trained};
use crate::tokenizer::{ChatMessage, TextTokenizer};

/// The GGUF file's name inside the export folder.
pub const MODEL_FILE: &str = "model.gguf";

const CHATML: &str = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
const LLAMA3: &str = "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n";

/// What a chat template turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// Ollama TEMPLATE text.
    pub template: &'static str,
    /// A system prompt the template adds when the conversation has none.
    pub default_system: Option<String>,
    pub family: &'static str,
}

/// Recognises the model's template by rendering a probe conversation.
pub fn translate(tokenizer: &TextTokenizer) -> Option<Translation> {
    let probe = [
        ChatMessage::new("system", "S"),
        ChatMessage::new("user", "U"),
        ChatMessage::new("assistant", "A"),
    ];
    let full = tokenizer.apply_chat_template(&probe, false).ok()?;
    let bare = tokenizer
        .apply_chat_template(&probe[1..2], true)
        .ok()
        .unwrap_or_default();
    let chatml = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n";
    let llama3 = "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>";
    if full == chatml {
        // Qwen's template writes a default system prompt when there is none.
        let default_system = bare
            .strip_prefix("<|im_start|>system\n")
            .and_then(|rest| rest.split_once("<|im_end|>"))
            .map(|(system, _)| system.to_string());
        return Some(Translation {
            template: CHATML,
            default_system,
            family: "ChatML",
        });
    }
    if full.trim_start_matches("<|begin_of_text|>") == llama3 {
        return Some(Translation {
            template: LLAMA3,
            default_system: None,
            family: "Llama 3",
        });
    }
    None
}

/// The Modelfile text.
pub fn modelfile(trained: &Trained, tokenizer: &TextTokenizer, notes: &mut Vec<String>) -> String {
    let mut out = format!(
        "# Made by Tunesmith from {} (checkpoint after step {}: {}).\n\
         # Create the model with: ollama create NAME -f Modelfile\n\
         FROM ./{MODEL_FILE}\n",
        trained.run_dir.display(),
        trained.step,
        trained.chosen_because
    );
    match translate(tokenizer) {
        Some(t) => {
            out.push_str(&format!("TEMPLATE \"\"\"{}\"\"\"\n", t.template));
            if let Some(system) = t.default_system {
                out.push_str(&format!("SYSTEM \"\"\"{system}\"\"\"\n"));
            }
            notes.push(format!(
                "chat template translated to Ollama's ({})",
                t.family
            ));
        }
        None => {
            out.push_str(
                "# The model's chat template is not one Tunesmith can translate to Ollama's\n\
                 # TEMPLATE (only ChatML and Llama 3 are recognised); the GGUF file carries the\n\
                 # original as tokenizer.chat_template. Add a TEMPLATE here by hand.\n",
            );
            notes.push("chat template not translated; see the Modelfile".into());
        }
    }
    for &id in tokenizer.stop_ids() {
        if let Ok(text) = tokenizer.decode(&[id], false)
            && !text.is_empty()
        {
            out.push_str(&format!(
                "PARAMETER stop \"{}\"\n",
                text.replace('"', "\\\"")
            ));
        }
    }
    out
}

/// Writes the folder `out`: model.gguf and Modelfile.
pub fn write(
    trained: &Trained,
    out: &Path,
    dtype: ModelDtype,
    overwrite: bool,
) -> Result<Vec<String>, ExportError> {
    let tokenizer = TextTokenizer::from_dir(&trained.config.model.path)?;
    let mut notes = Vec::new();
    let text = modelfile(trained, &tokenizer, &mut notes);
    crate::fsutil::write_dir_atomic(out, overwrite, |dir| -> Result<(), ExportError> {
        notes.extend(gguf_model::write(trained, &dir.join(MODEL_FILE), dtype)?);
        let path = dir.join("Modelfile");
        std::fs::write(&path, &text).map_err(|source| ExportError::Io { path, source })
    })?;
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> TextTokenizer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers");
        TextTokenizer::from_dir(&dir.join(name)).unwrap()
    }

    #[test]
    fn known_templates_are_recognised_by_what_they_render() {
        let chatml = translate(&fixture("chatml")).unwrap();
        assert_eq!(chatml.family, "ChatML");
        assert_eq!(
            chatml.default_system.as_deref(),
            Some("You are a helpful assistant.")
        );
        let llama3 = translate(&fixture("llama3")).unwrap();
        assert_eq!(llama3.family, "Llama 3");
        assert_eq!(llama3.default_system, None);
        // A tokenizer folder without a template, given one we do not know.
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/tokenizers/llama3/tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        let mut other = TextTokenizer::from_dir(dir.path()).unwrap();
        other.use_fallback_template("{% for m in messages %}{{ m['content'] }}\n{% endfor %}");
        assert_eq!(translate(&other), None);
    }
}
