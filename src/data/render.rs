//! Rows -> token ids and labels. Chat masks come from rendering the
//! conversation prefix by prefix: the text added by each assistant turn is
//! located by rendering the conversation before it (with the generation
//! prompt) and through it, and the tokens of the full rendering that start
//! inside that text are trained on, up to and including the end-of-turn
//! token. This is exact for any template whose renderings extend one
//! another, and needs no guessing at role markers.

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
    let full = tokenizer.apply_chat_template(messages, false)?;
    if train_on == TrainOn::All {
        let ids = tokenizer.encode(&full, false)?;
        let labels = labels_from(&ids, |_| true);
        return Ok((ids, labels));
    }
    // Byte ranges of the full rendering that each assistant turn adds.
    let mut answers = Vec::new();
    for (turn, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = tokenizer.apply_chat_template(&messages[..turn], true)?;
        let through = tokenizer.apply_chat_template(&messages[..=turn], false)?;
        if !full.starts_with(&through) || !through.starts_with(&before) {
            return Err(RenderError::NotPrefixStable { turn });
        }
        answers.push(before.len()..through.len());
    }
    let (ids, offsets) = tokenizer.encode_with_offsets(&full, false)?;
    let stops = tokenizer.stop_ids();
    let mut trained = vec![false; ids.len()];
    let mut first = 0;
    for range in answers {
        while first < ids.len() && offsets[first].0 < range.start {
            first += 1;
        }
        let mut end = first;
        while end < ids.len() && offsets[end].0 < range.end {
            end += 1;
        }
        // The turn's text may go on past its end-of-turn token (ChatML's
        // newline); the model must learn to stop, not what follows.
        if let Some(last_stop) = (first..end).rev().find(|&i| stops.contains(&ids[i])) {
            end = last_stop + 1;
        }
        for t in &mut trained[first..end] {
            *t = true;
        }
        first = end;
    }
    let labels = labels_from(&ids, |i| trained[i]);
    Ok((ids, labels))
}
