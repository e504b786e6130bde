//! A remote engine (an OpenAI-compatible server) in place of the local model: list a
//! server's models, use one for every task or for some (autocomplete on the laptop,
//! summaries on the workstation), go back to the local model. The server's key
//! lives in the OS keyring (Secret Service, Keychain, Credential Manager), never in a file or
//! a log; where no keyring answers, it is kept in memory until the app quits, and the
//! status says so.

use penwright_engine::remote::{RemoteEndpoint, RemoteModel, list_models};
use penwright_engine::worker::{TaskKind, request};
use serde::Serialize;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

const KEYRING_SERVICE: &str = "penwright";

/// The remote engine in use.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteStatus {
    pub base_url: String,
    pub model: String,
    pub context: Option<usize>,
    /// Where the key is: "keyring", "memory" (no keyring answered), or "none".
    pub key: &'static str,
}

fn keyring_entry(base_url: &str) -> Option<keyring::Entry> {
    keyring::Entry::new(KEYRING_SERVICE, base_url).ok()
}

/// The key for `base_url` and where it came from: given now, else remembered (keyring,
/// then this session's memory).
fn key_for(
    state: &AppState,
    base_url: &str,
    given: Option<String>,
) -> Option<(String, &'static str)> {
    if let Some(k) = given.filter(|k| !k.is_empty()) {
        return Some((k, "given"));
    }
    if let Some(k) = keyring_entry(base_url).and_then(|e| e.get_password().ok()) {
        return Some((k, "keyring"));
    }
    let memory = state.remote_keys.lock().expect("keys lock");
    memory.get(base_url).map(|k| (k.clone(), "memory"))
}

/// Remembers `key` for `base_url`: in the keyring when one answers, else in memory.
fn remember_key(state: &AppState, base_url: &str, key: &str) -> &'static str {
    let stored = keyring_entry(base_url).is_some_and(|e| e.set_password(key).is_ok());
    if stored {
        return "keyring";
    }
    state
        .remote_keys
        .lock()
        .expect("keys lock")
        .insert(base_url.to_string(), key.to_string());
    "memory"
}

fn check_url(base_url: &str) -> CommandResult<()> {
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(CommandError::new(
            "invalid_argument",
            "the server's address starts with http:// or https:// (e.g. http://localhost:11434/v1)",
        ));
    }
    Ok(())
}

/// The models a server lists (tests the connection and the key).
#[tauri::command]
pub async fn remote_models(
    state: State<'_, AppState>,
    base_url: String,
    api_key: Option<String>,
) -> CommandResult<Vec<RemoteModel>> {
    check_url(&base_url)?;
    let key = key_for(&state, &base_url, api_key).map(|(k, _)| k);
    let models = tokio::task::spawn_blocking(move || list_models(&base_url, key.as_deref()))
        .await
        .map_err(|e| CommandError::new("engine", e.to_string()))??;
    Ok(models)
}

/// The tasks a command names; none named: every writing task.
fn tasks_or_all(tasks: Option<Vec<TaskKind>>) -> Vec<TaskKind> {
    match tasks {
        Some(tasks) if !tasks.is_empty() => tasks,
        _ => TaskKind::WRITING.to_vec(),
    }
}

/// Uses `model` on the server at `base_url` for `tasks` (every writing task when none are
/// named) from now on; the other tasks keep their engine.
#[tauri::command]
pub async fn use_remote(
    state: State<'_, AppState>,
    base_url: String,
    model: String,
    api_key: Option<String>,
    tasks: Option<Vec<TaskKind>>,
) -> CommandResult<RemoteStatus> {
    check_url(&base_url)?;
    let tasks = tasks_or_all(tasks);
    let key = key_for(&state, &base_url, api_key);
    let job = state.engine.submit(request::UseRemote {
        endpoint: RemoteEndpoint {
            base_url: base_url.clone(),
            model: model.clone(),
            api_key: key.as_ref().map(|(k, _)| k.clone()),
        },
        tasks: tasks.clone(),
    });
    let m = job.finish(|_| {}).await?;
    // the key worked: keep it (only once it did)
    let where_key = match &key {
        Some((k, "given")) => remember_key(&state, &base_url, k),
        Some((_, from)) => from,
        None => "none",
    };
    let status = RemoteStatus {
        base_url,
        model: m.id,
        context: m.context,
        key: where_key,
    };
    let mut app = state.status.lock().expect("status lock");
    for task in tasks {
        app.remotes.insert(task, status.clone());
    }
    Ok(status)
}

/// Goes back to the local model for `tasks` (every task when none are named).
#[tauri::command]
pub async fn use_local(
    state: State<'_, AppState>,
    tasks: Option<Vec<TaskKind>>,
) -> CommandResult<()> {
    let tasks = tasks_or_all(tasks);
    state
        .engine
        .submit(request::UseLocal {
            tasks: tasks.clone(),
        })
        .finish(|_| {})
        .await?;
    let mut app = state.status.lock().expect("status lock");
    for task in tasks {
        app.remotes.remove(&task);
    }
    Ok(())
}
