//! Open, save (atomically), autosave recovery and recent files.

use std::path::{Path, PathBuf};

use penwright_engine::documents::{Recovery, atomic_write, read_document};
use serde::Serialize;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

#[derive(Serialize)]
pub struct Document {
    pub path: PathBuf,
    pub text: String,
}

#[derive(Serialize)]
pub struct Saved {
    pub path: PathBuf,
    pub bytes: usize,
}

/// Only Markdown and plain-text documents, by absolute path.
fn document_path(path: &str) -> CommandResult<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(CommandError::new(
            "invalid_path",
            format!("{path} is not an absolute path"),
        ));
    }
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !matches!(ext.as_str(), "md" | "markdown" | "txt") {
        return Err(CommandError::new(
            "invalid_path",
            format!("{path}: Penwright opens and saves .md and .txt documents"),
        ));
    }
    Ok(p.to_path_buf())
}

#[tauri::command]
pub fn open_document(state: State<'_, AppState>, path: String) -> CommandResult<Document> {
    let path = document_path(&path)?;
    let text = read_document(&path)?;
    let _ = state.recovery.add_recent(&path);
    Ok(Document { path, text })
}

#[tauri::command]
pub fn save_document(
    state: State<'_, AppState>,
    path: String,
    text: String,
) -> CommandResult<Saved> {
    let path = document_path(&path)?;
    atomic_write(&path, text.as_bytes())?;
    let _ = state.recovery.add_recent(&path);
    state.recovery.clear()?;
    Ok(Saved {
        path,
        bytes: text.len(),
    })
}

#[tauri::command]
pub fn write_recovery(
    state: State<'_, AppState>,
    text: String,
    path: Option<String>,
) -> CommandResult<()> {
    state
        .recovery
        .write(&text, path.as_deref().map(Path::new))?;
    Ok(())
}

#[tauri::command]
pub fn take_recovery(state: State<'_, AppState>) -> Option<Recovery> {
    state.recovery.read()
}

#[tauri::command]
pub fn clear_recovery(state: State<'_, AppState>) -> CommandResult<()> {
    Ok(state.recovery.clear()?)
}

#[tauri::command]
pub fn recent_files(state: State<'_, AppState>) -> Vec<PathBuf> {
    state.recovery.recent()
}
