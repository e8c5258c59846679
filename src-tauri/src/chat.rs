//! The chat panel: one prompt to the base model or to a run's best
//! checkpoint, its text streamed on `chat-token`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Runtime, State};
use tunesmith::chat::{ChatRequest, chat as engine_chat};
use tunesmith::export::CheckpointChoice;
use tunesmith::{BackendChoice, Sampling};

use crate::error::AppResult;
use crate::runs::run_dir_of;
use crate::setup::blocking;
use crate::state::AppState;

/// The event name of streamed chat text.
pub const CHAT_TOKEN: &str = "chat-token";

/// One `chat-token` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatToken {
    pub id: String,
    pub text: String,
}

/// What `chat` returns once generation ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatDone {
    pub text: String,
    pub tokens: usize,
    pub warnings: Vec<String>,
}

/// `chat` → asks the base model (no `run_dir`) or the run's best
/// checkpoint; greedy, so the two sides differ only by the training.
#[tauri::command(rename_all = "snake_case")]
pub async fn chat<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    id: String,
    model_path: PathBuf,
    run_dir: Option<PathBuf>,
    prompt: String,
    max_new_tokens: Option<usize>,
) -> AppResult<ChatDone> {
    // A past run's base model may have been picked in an earlier session
    // of the app: the runs folder vouches for it.
    let model_dir = state.check(&model_path).or_else(|e| {
        tunesmith::train::runs::list_runs(&state.runs_dir)
            .into_iter()
            .filter_map(|r| r.model_path)
            .find(|p| p == &model_path)
            .ok_or(e)
    })?;
    let adapter = match run_dir {
        Some(d) => {
            let dir = run_dir_of(&state, &d)?;
            Some(tunesmith::export::choose_checkpoint(&dir, &CheckpointChoice::Best)?.1)
        }
        None => None,
    };
    let request = ChatRequest {
        model_dir,
        adapter,
        system: None,
        prompt,
        max_new_tokens: max_new_tokens.unwrap_or(128).clamp(1, 4096),
        sampling: Sampling::Greedy,
        backend: BackendChoice::Auto,
    };
    blocking(move || {
        let reply = engine_chat(&request, |text| {
            let _ = app.emit(
                CHAT_TOKEN,
                ChatToken {
                    id: id.clone(),
                    text: text.to_string(),
                },
            );
        })?;
        Ok(ChatDone {
            text: reply.text,
            tokens: reply.tokens,
            warnings: reply.warnings,
        })
    })
    .await
}
