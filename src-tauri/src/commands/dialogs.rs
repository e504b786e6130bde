//! The open and save dialogs, opened from here rather than from the page: what the writer
//! picks is registered as a path the webview may then use (see `paths.rs`).

use std::path::PathBuf;

use serde::Deserialize;
use tauri::{AppHandle, State};
use tauri_plugin_dialog::{DialogExt, FileDialogBuilder, FilePath};

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Filter {
    pub name: String,
    pub extensions: Vec<String>,
}

fn builder(app: &AppHandle, title: &str, filters: &[Filter]) -> FileDialogBuilder<tauri::Wry> {
    let mut dialog = app.dialog().file().set_title(title);
    for f in filters {
        let extensions: Vec<&str> = f.extensions.iter().map(String::as_str).collect();
        dialog = dialog.add_filter(&f.name, &extensions);
    }
    dialog
}

fn into_paths(picked: Option<Vec<FilePath>>) -> Vec<PathBuf> {
    picked
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.into_path().ok())
        .collect()
}

/// Waits for a dialog's answer (the dialog calls back on the main thread).
async fn answer<T: Send + 'static>(
    show: impl FnOnce(tokio::sync::oneshot::Sender<T>),
) -> CommandResult<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    show(tx);
    rx.await
        .map_err(|_| CommandError::new("dialog", "the dialog closed without an answer"))
}

/// Files or folders the writer picks; each becomes a path the webview may use.
#[tauri::command]
pub async fn pick_paths(
    app: AppHandle,
    state: State<'_, AppState>,
    title: String,
    directory: bool,
    multiple: bool,
    filters: Vec<Filter>,
) -> CommandResult<Vec<PathBuf>> {
    let dialog = builder(&app, &title, &filters);
    let picked = answer(move |tx| match (directory, multiple) {
        (true, true) => dialog.pick_folders(move |p| {
            let _ = tx.send(into_paths(p));
        }),
        (true, false) => dialog.pick_folder(move |p| {
            let _ = tx.send(into_paths(p.map(|p| vec![p])));
        }),
        (false, true) => dialog.pick_files(move |p| {
            let _ = tx.send(into_paths(p));
        }),
        (false, false) => dialog.pick_file(move |p| {
            let _ = tx.send(into_paths(p.map(|p| vec![p])));
        }),
    })
    .await?;
    state.paths.allow_all(picked.iter().map(PathBuf::as_path));
    Ok(picked)
}

/// A name without an extension Penwright saves gets `.md`.
fn with_document_extension(path: PathBuf) -> PathBuf {
    let known = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "md" | "markdown" | "txt"));
    if known {
        path
    } else {
        let mut name = path.into_os_string();
        name.push(".md");
        PathBuf::from(name)
    }
}

/// Where to save: the path the writer types or picks, registered for `save_document`.
#[tauri::command]
pub async fn pick_save_path(
    app: AppHandle,
    state: State<'_, AppState>,
    title: String,
    default_path: String,
    filters: Vec<Filter>,
) -> CommandResult<Option<PathBuf>> {
    let default = PathBuf::from(default_path);
    let mut dialog = builder(&app, &title, &filters);
    if let Some(name) = default.file_name() {
        dialog = dialog.set_file_name(name.to_string_lossy());
    }
    if let Some(dir) = default.parent().filter(|d| d.is_absolute()) {
        dialog = dialog.set_directory(dir);
    }
    let picked = answer(move |tx| {
        dialog.save_file(move |p| {
            let _ = tx.send(into_paths(p.map(|p| vec![p])).pop());
        })
    })
    .await?
    .map(with_document_extension);
    if let Some(p) = &picked {
        state.paths.allow(p);
    }
    Ok(picked)
}
