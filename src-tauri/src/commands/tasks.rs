//! Writing tasks: inline autocomplete (newest request wins, stale results never delivered),
//! summaries and translations (streamed over a channel, cancellable).

use std::sync::atomic::Ordering;
use std::time::Instant;

use penwright_engine::tasks::autocomplete::{
    Alternatives, AutocompleteSettings, Completion, SuggestionLength,
};
use penwright_engine::tasks::rewrite::{Instruction, Preset};
use penwright_engine::tasks::summarize::SummaryLength;
use penwright_engine::worker::{Event, Task, request};
use serde::{Deserialize, Serialize};
use tauri::State;
use tauri::ipc::Channel;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionReply {
    pub request_id: u64,
    #[serde(flatten)]
    pub completion: Completion,
}

/// How the writer wants suggestions: their length, and whether the model sees the text after
/// the cursor.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SuggestionOptions {
    pub length: SuggestionLength,
    pub text_after_cursor: bool,
}

impl SuggestionOptions {
    fn settings(self) -> AutocompleteSettings {
        AutocompleteSettings::new(self.length, self.text_after_cursor)
    }
}

/// Runs an autocomplete job as the newest one: it cancels the one before, and it answers
/// `None` once a newer request has come in.
async fn newest_completion<T: Task>(
    state: &AppState,
    request_id: u64,
    task: T,
) -> CommandResult<Option<T::Reply>> {
    let previous = state
        .latest_completion
        .fetch_max(request_id, Ordering::SeqCst);
    if previous > request_id {
        return Ok(None);
    }
    let job = state.engine.submit(task);
    if let Some(old) = state
        .completion_cancel
        .lock()
        .expect("cancel lock")
        .replace(job.canceller())
    {
        old.store(true, Ordering::Relaxed);
    }
    let result = job.finish(|_| {}).await;
    if state.latest_completion.load(Ordering::SeqCst) != request_id {
        return Ok(None);
    }
    match result {
        Ok(reply) => Ok(Some(reply)),
        Err(penwright_engine::EngineError::Cancelled) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Completes the text at the cursor. A newer request cancels this one; a superseded request
/// answers `null`.
#[tauri::command]
pub async fn complete(
    state: State<'_, AppState>,
    prefix: String,
    suffix: String,
    request_id: u64,
    options: Option<SuggestionOptions>,
) -> CommandResult<Option<CompletionReply>> {
    let settings = options.unwrap_or_default().settings();
    let task = request::Complete {
        prefix,
        suffix,
        settings,
    };
    let completion = newest_completion(&state, request_id, task).await?;
    Ok(completion.map(|completion| CompletionReply {
        request_id,
        completion,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlternativesReply {
    pub request_id: u64,
    pub alternatives: Vec<String>,
    pub ms: f64,
}

/// Other suggestions for the cursor of the last completion (sampled, distinct from `shown`),
/// as a newer autocomplete request in the same queue: typing supersedes them.
#[tauri::command]
pub async fn complete_alternatives(
    state: State<'_, AppState>,
    prefix: String,
    suffix: String,
    request_id: u64,
    options: Option<SuggestionOptions>,
    shown: Vec<String>,
    count: usize,
) -> CommandResult<Option<AlternativesReply>> {
    if count == 0 || count > 8 || shown.len() > 8 {
        return Err(CommandError::new(
            "invalid_argument",
            "ask for 1 to 8 alternatives",
        ));
    }
    let started = Instant::now();
    let task = request::CompleteAlternatives {
        prefix,
        suffix,
        settings: options.unwrap_or_default().settings(),
        want: Alternatives {
            count,
            seed: request_id,
        },
        exclude: shown,
    };
    let found = newest_completion(&state, request_id, task).await?;
    Ok(found.map(|alternatives| AlternativesReply {
        request_id,
        alternatives,
        ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

#[tauri::command]
pub fn cancel_complete(state: State<'_, AppState>) {
    if let Some(c) = state.completion_cancel.lock().expect("cancel lock").take() {
        c.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "camelCase")]
pub enum TaskEvent {
    Progress {
        stage: String,
        done: usize,
        total: usize,
    },
    Token {
        text: String,
    },
    Block {
        index: usize,
        total: usize,
        text: String,
    },
}

fn forward(event: &Event, channel: &Channel<TaskEvent>) {
    let message = match event {
        Event::Progress { stage, done, total } => TaskEvent::Progress {
            stage: stage.clone(),
            done: *done,
            total: *total,
        },
        Event::Token(text) => TaskEvent::Token { text: text.clone() },
        Event::Block { index, total, text } => TaskEvent::Block {
            index: *index,
            total: *total,
            text: text.clone(),
        },
    };
    let _ = channel.send(message);
}

/// Runs a long task as the one cancellable task of the window.
async fn run_task<T: Task>(
    state: &AppState,
    task: T,
    channel: &Channel<TaskEvent>,
) -> CommandResult<T::Reply> {
    let job = state.engine.submit(task);
    if let Some(old) = state
        .task_cancel
        .lock()
        .expect("cancel lock")
        .replace(job.canceller())
    {
        old.store(true, Ordering::Relaxed);
    }
    Ok(job.finish(|e| forward(e, channel)).await?)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryReply {
    pub summary: String,
    pub chunks: usize,
    pub input_tokens: usize,
    pub seconds: f64,
}

/// `length`: "short" | "medium" | "long" | a number of words.
#[tauri::command]
pub async fn summarize(
    state: State<'_, AppState>,
    text: String,
    length: serde_json::Value,
    bullets: bool,
    on_event: Channel<TaskEvent>,
) -> CommandResult<SummaryReply> {
    let length: SummaryLength = match &length {
        serde_json::Value::Number(n) => SummaryLength::Words(n.as_u64().unwrap_or(120) as usize),
        serde_json::Value::String(s) => s
            .parse()
            .map_err(|e: String| CommandError::new("invalid_argument", e))?,
        _ => SummaryLength::Medium,
    };
    let started = Instant::now();
    let task = request::Summarize {
        text,
        length,
        bullets,
    };
    let s = run_task(&state, task, &on_event).await?;
    Ok(SummaryReply {
        summary: s.summary,
        chunks: s.chunks,
        input_tokens: s.input_tokens,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[derive(Serialize)]
pub struct TranslationReply {
    pub text: String,
    pub blocks: usize,
    pub seconds: f64,
}

#[tauri::command]
pub async fn translate(
    state: State<'_, AppState>,
    text: String,
    to: String,
    from: Option<String>,
    on_event: Channel<TaskEvent>,
) -> CommandResult<TranslationReply> {
    if to.trim().is_empty() || to.len() > 16 {
        return Err(CommandError::new(
            "invalid_argument",
            "choose a target language",
        ));
    }
    let started = Instant::now();
    let t = run_task(&state, request::Translate { text, to, from }, &on_event).await?;
    Ok(TranslationReply {
        text: t.text,
        blocks: t.blocks,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[derive(Serialize)]
pub struct RewriteReply {
    pub text: String,
    pub blocks: usize,
    pub kept: usize,
    pub seconds: f64,
}

/// Rewrites the text with a preset or the writer's instruction; `attempt` 0 is the most
/// likely rewrite, a Retry asks for another.
#[tauri::command]
pub async fn rewrite(
    state: State<'_, AppState>,
    text: String,
    preset: Option<Preset>,
    instruction: Option<String>,
    attempt: u64,
    on_event: Channel<TaskEvent>,
) -> CommandResult<RewriteReply> {
    let instruction = match (preset, instruction) {
        (Some(p), _) => Instruction::Preset(p),
        (None, Some(i)) => Instruction::Free(i),
        (None, None) => {
            return Err(CommandError::new(
                "invalid_argument",
                "choose how to rewrite the text",
            ));
        }
    };
    let started = Instant::now();
    let task = request::Rewrite {
        text,
        instruction,
        attempt,
    };
    let r = run_task(&state, task, &on_event).await?;
    Ok(RewriteReply {
        text: r.text,
        blocks: r.blocks,
        kept: r.kept,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[tauri::command]
pub fn cancel_task(state: State<'_, AppState>) {
    if let Some(c) = state.task_cancel.lock().expect("cancel lock").take() {
        c.store(true, Ordering::Relaxed);
    }
}
