//! Open, save (atomically), autosave recovery and recent files.

use std::path::{Path, PathBuf};

use penwright_engine::documents::{TextEncoding, encode_document, read_document_as};
use penwright_engine::fs::atomic_write;
use serde::Serialize;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::recovery::Recovery;
use crate::state::AppState;

#[derive(Serialize)]
pub struct Document {
    pub path: PathBuf,
    pub text: String,
    /// What it was read in, and is saved back in.
    pub encoding: TextEncoding,
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

/// Opens a document as UTF-8, or in the encoding the writer chose after a `not_utf8` error.
#[tauri::command]
pub fn open_document(
    state: State<'_, AppState>,
    path: String,
    encoding: Option<TextEncoding>,
) -> CommandResult<Document> {
    let path = state.paths.check(&document_path(&path)?)?;
    let encoding = encoding.unwrap_or_default();
    let text = read_document_as(&path, encoding)?;
    let _ = state.recovery.add_recent(&path);
    Ok(Document {
        path,
        text,
        encoding,
    })
}

/// Saves atomically, in the document's encoding (UTF-8 unless it was opened as another).
#[tauri::command]
pub fn save_document(
    state: State<'_, AppState>,
    path: String,
    text: String,
    encoding: Option<TextEncoding>,
) -> CommandResult<Saved> {
    let path = state.paths.check(&document_path(&path)?)?;
    let bytes = encode_document(&text, encoding.unwrap_or_default())?;
    atomic_write(&path, &bytes)?;
    let _ = state.recovery.add_recent(&path);
    state.recovery.clear()?;
    Ok(Saved {
        path,
        bytes: bytes.len(),
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
    let recovery = state.recovery.read()?;
    if let Some(p) = &recovery.path {
        state.paths.allow(p);
    }
    Some(recovery)
}

#[tauri::command]
pub fn clear_recovery(state: State<'_, AppState>) -> CommandResult<()> {
    Ok(state.recovery.clear()?)
}

#[tauri::command]
pub fn recent_files(state: State<'_, AppState>) -> Vec<PathBuf> {
    let recent = state.recovery.recent();
    state.paths.allow_all(recent.iter().map(PathBuf::as_path));
    recent
}
