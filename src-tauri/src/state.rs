//! What the app keeps between commands.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::recovery::RecoveryStore;
use penwright_engine::loader::ModelInfo;
use penwright_engine::worker::{DeviceReport, EngineHandle};

#[derive(Default, Clone)]
pub struct ModelStatus {
    pub model: Option<ModelInfo>,
    pub device: Option<DeviceReport>,
    pub adapter: Option<String>,
    /// The tasks that go to a remote engine, and to which.
    pub remotes: RemoteChoice,
}

/// The remote engine chosen for each task that has one.
pub type RemoteChoice = std::collections::BTreeMap<
    penwright_engine::worker::TaskKind,
    crate::commands::remote::RemoteStatus,
>;

pub struct AppState {
    pub engine: EngineHandle,
    pub status: Mutex<ModelStatus>,
    pub recovery: RecoveryStore,
    /// Id of the newest autocomplete request; older ones are stale.
    pub latest_completion: AtomicU64,
    pub completion_cancel: Mutex<Option<Arc<AtomicBool>>>,
    pub task_cancel: Mutex<Option<Arc<AtomicBool>>>,
    /// The running model download's cancel flag (one at a time).
    pub download_cancel: Mutex<Option<Arc<AtomicBool>>>,
    /// Remote engines' keys where no OS keyring answered, by base URL: this session only.
    pub remote_keys: Mutex<std::collections::HashMap<String, String>>,
    /// The paths the webview may name.
    pub paths: crate::paths::PathRegistry,
    /// The OpenAI-compatible server the app runs, when the writer turned it on.
    pub serving: tokio::sync::Mutex<Option<crate::commands::serve::Serving>>,
    /// The server's key where no OS keyring answered: this session only.
    pub serve_key: Mutex<Option<String>>,
}

impl AppState {
    /// The path of the loaded model, if one is loaded.
    pub fn active_model_path(&self) -> Option<std::path::PathBuf> {
        let status = self.status.lock().expect("status lock");
        status.model.as_ref().map(|m| m.path.clone())
    }

    pub fn new() -> Self {
        AppState {
            engine: EngineHandle::spawn(),
            status: Mutex::new(ModelStatus::default()),
            recovery: RecoveryStore::new(penwright_models::paths::recovery_dir()),
            latest_completion: AtomicU64::new(0),
            completion_cancel: Mutex::new(None),
            task_cancel: Mutex::new(None),
            download_cancel: Mutex::new(None),
            remote_keys: Mutex::new(Default::default()),
            paths: crate::paths::PathRegistry::new(penwright_models::paths::penwright_home()),
            serving: tokio::sync::Mutex::new(None),
            serve_key: Mutex::new(None),
        }
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}
