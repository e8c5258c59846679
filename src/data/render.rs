//! Rows -> token ids and labels. Chat masks come from rendering the
//! conversation prefix by prefix, so they are exact at token level for any
//! template whose renderings extend one another.

use super::{IGNORE, Row, TrainOn};
use crate::tokenizer::{ChatMessage, TextTokenizer, TokenizerError};

/// Why one row cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(
        "the chat template does not render this conversation prefix by prefix (turn {turn}), \
         so the answer tokens cannot be located; use data.train_on = \"all\""
    )]
    NotPrefixStable { turn: usize },
}

/// Token ids and HF-style labels of one row.
pub fn render_row(
    row: &Row,
    tokenizer: &TextTokenizer,
    train_on: TrainOn,
) -> Result<(Vec<u32>, Vec<i64>), RenderError> {
    match row {
        Row::Chat(messages) => chat(messages, tokenizer, train_on),
        Row::PromptCompletion { prompt, completion } => {
            let mut ids = tokenizer.encode(prompt, true)?;
            let n_prompt = ids.len();
            ids.extend(tokenizer.encode(completion, false)?);
            push_eos(&mut ids, tokenizer);
            let labels = labels_from(&ids, |i| train_on == TrainOn::All || i >= n_prompt);
            Ok((ids, labels))
        }
        Row::Text(text) => {
            let mut ids = tokenizer.encode(text, true)?;
            push_eos(&mut ids, tokenizer);
            let labels = labels_from(&ids, |_| true);
            Ok((ids, labels))
        }
    }
}

fn push_eos(ids: &mut Vec<u32>, tokenizer: &TextTokenizer) {
    if let Some(&eos) = tokenizer.stop_ids().first()
        && ids.last() != Some(&eos)
    {
        ids.push(eos);
    }
}

fn labels_from(ids: &[u32], trained: impl Fn(usize) -> bool) -> Vec<i64> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| if trained(i) { id as i64 } else { IGNORE })
        .collect()
}

fn chat(
    messages: &[ChatMessage],
    tokenizer: &TextTokenizer,
    train_on: TrainOn,
) -> Result<(Vec<u32>, Vec<i64>), RenderError> {
    let (_, ids) = tokenizer.encode_chat(messages, false)?;
    if train_on == TrainOn::All {
        let labels = labels_from(&ids, |_| true);
        return Ok((ids, labels));
    }
    let mut trained = vec![false; ids.len()];
    for (turn, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let (_, before) = tokenizer.encode_chat(&messages[..turn], true)?;
        let (_, through) = tokenizer.encode_chat(&messages[..=turn], false)?;
        let stable = ids.starts_with(&through) && through.starts_with(&before);
        if !stable {
            return Err(RenderError::NotPrefixStable { turn });
        }
        for t in &mut trained[before.len()..through.len()] {
            *t = true;
        }
    }
    let labels = labels_from(&ids, |i| trained[i]);
    Ok((ids, labels))
}
