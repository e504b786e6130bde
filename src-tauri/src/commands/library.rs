//! The models on this machine: list, import, download from the Hub (pause = cancel, the
//! next download resumes), remove. The logic is the engine's (`installed`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use penwright_engine::installed::{self, DownloadRequest, ModelEntry};
use penwright_engine::machine::{FitReport, machine_memory};
use penwright_models::HubClient;
use serde::Serialize;
use tauri::State;
use tauri::ipc::Channel;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

fn models_dir() -> PathBuf {
    penwright_models::models_dir()
}

/// Marks the model in use.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    #[serde(flatten)]
    pub entry: ModelEntry,
    pub active: bool,
}

fn listed(state: &AppState, entries: Vec<ModelEntry>) -> Vec<Listed> {
    // what the app lists, the page may load or remove
    state
        .paths
        .allow_all(entries.iter().map(|e| e.path.as_path()));
    let active = state.active_model_path();
    entries
        .into_iter()
        .map(|entry| Listed {
            active: active.as_ref() == Some(&entry.path),
            entry,
        })
        .collect()
}

/// Models installed on this machine (catalog, imported, downloaded).
#[tauri::command]
pub async fn list_models(state: State<'_, AppState>) -> CommandResult<Vec<Listed>> {
    let entries =
        tauri::async_runtime::spawn_blocking(|| installed::installed_models(&models_dir()))
            .await
            .map_err(|e| CommandError::new("engine", e.to_string()))??;
    Ok(listed(&state, entries))
}

/// Catalog models not installed yet.
#[tauri::command]
pub fn catalog(state: State<'_, AppState>) -> Vec<Listed> {
    listed(&state, installed::catalog_suggestions(&models_dir()))
}

/// Adds a `.gguf` file or a Hugging Face folder picked on disk (used where it is).
#[tauri::command]
pub async fn import_model(state: State<'_, AppState>, path: String) -> CommandResult<ModelEntry> {
    let path = state.paths.check(&PathBuf::from(path))?;
    Ok(
        tauri::async_runtime::spawn_blocking(move || installed::import_model(&models_dir(), &path))
            .await
            .map_err(|e| CommandError::new("engine", e.to_string()))??,
    )
}

/// Removes a downloaded model, or forgets an imported one (its file stays).
#[tauri::command]
pub fn remove_model(state: State<'_, AppState>, path: String) -> CommandResult<()> {
    let path = state.paths.check(&PathBuf::from(path))?;
    let active = state
        .status
        .lock()
        .expect("status lock")
        .model
        .as_ref()
        .map(|m| m.path.clone());
    if active.as_ref() == Some(&path) {
        return Err(CommandError::new(
            "invalid_argument",
            "this model is in use: load another one first",
        ));
    }
    Ok(installed::remove_model(&models_dir(), &path)?)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferFile {
    pub path: String,
    pub size_bytes: Option<u64>,
    /// Whether it would run on this machine (`None` when its size is unknown).
    pub fit: Option<FitReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoOffer {
    pub repo: String,
    pub gguf: Vec<OfferFile>,
    /// The size of the safetensors folder, when the repository has one.
    pub safetensors_bytes: Option<u64>,
    pub safetensors_fit: Option<FitReport>,
}

/// What a Hub repository offers (its `.gguf` files and/or a safetensors folder).
#[tauri::command]
pub async fn hub_repo(repo: String, revision: Option<String>) -> CommandResult<RepoOffer> {
    let repo = repo.trim().to_string();
    let revision = revision.unwrap_or_else(|| "main".into());
    let offer = {
        let repo = repo.clone();
        tauri::async_runtime::spawn_blocking(move || {
            installed::repo_offer(&HubClient::from_env(), &repo, &revision)
        })
        .await
        .map_err(|e| CommandError::new("engine", e.to_string()))??
    };
    let machine = machine_memory();
    let fit = |size: Option<u64>| {
        FitReport::new(
            installed::download_estimate(size.unwrap_or_default()),
            machine,
        )
    };
    let safetensors_bytes = (!offer.safetensors.is_empty())
        .then(|| offer.safetensors.iter().filter_map(|f| f.size).sum());
    Ok(RepoOffer {
        repo,
        gguf: offer
            .gguf
            .iter()
            .map(|f| OfferFile {
                path: f.path.clone(),
                size_bytes: f.size,
                fit: fit(f.size),
            })
            .collect(),
        safetensors_bytes,
        safetensors_fit: fit(safetensors_bytes),
    })
}

#[derive(Clone, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "camelCase")]
pub enum DownloadEvent {
    Progress { file: String, done: u64, total: u64 },
}

/// Downloads a catalog model (`name`) or a Hub repository (`repo`, with `file` = one of
/// its `.gguf` files, or none for its safetensors folder). One download at a time.
#[tauri::command]
pub async fn download_model(
    state: State<'_, AppState>,
    name: Option<String>,
    repo: Option<String>,
    file: Option<String>,
    on_event: Channel<DownloadEvent>,
) -> CommandResult<ModelEntry> {
    let request = match (name, repo) {
        (Some(name), None) => DownloadRequest::Catalog(name),
        (None, Some(repo)) => DownloadRequest::Repo {
            repo: repo.trim().to_string(),
            revision: "main".into(),
            file,
        },
        _ => {
            return Err(CommandError::new(
                "invalid_argument",
                "give either a catalog name or a repository id",
            ));
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut slot = state.download_cancel.lock().expect("download lock");
        if slot.is_some() {
            return Err(CommandError::new(
                "busy",
                "a download is already running: wait for it or cancel it",
            ));
        }
        *slot = Some(Arc::clone(&cancel));
    }
    let flag = Arc::clone(&cancel);
    let result = tauri::async_runtime::spawn_blocking(move || {
        installed::download_model(
            &models_dir(),
            &HubClient::from_env(),
            &request,
            &mut |p| {
                let _ = on_event.send(DownloadEvent::Progress {
                    total: p.total.unwrap_or(0),
                    file: p.file,
                    done: p.done,
                });
            },
            &flag,
        )
    })
    .await;
    *state.download_cancel.lock().expect("download lock") = None;
    Ok(result.map_err(|e| CommandError::new("engine", e.to_string()))??)
}

/// Stops the running download; its partial file stays, so downloading again resumes.
#[tauri::command]
pub fn cancel_download(state: State<'_, AppState>) {
    if let Some(flag) = state
        .download_cancel
        .lock()
        .expect("download lock")
        .as_ref()
    {
        flag.store(true, Ordering::Relaxed);
    }
}
