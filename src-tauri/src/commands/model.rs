//! Loading the model and the device it runs on.

use std::path::Path;

use penwright_engine::device::{DeviceChoice, gpu_adapter};
use penwright_engine::loader::ModelInfo;
use penwright_engine::worker::{DeviceReport, Event, request};
use serde::Serialize;
use tauri::State;
use tauri::ipc::Channel;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

#[derive(Serialize)]
pub struct AppStatus {
    pub model: Option<ModelInfo>,
    pub device: Option<DeviceReport>,
    pub adapter: Option<String>,
    /// The tasks a remote engine answers, and which one; the others use the local model.
    pub remotes: crate::state::RemoteChoice,
}

#[tauri::command]
pub fn app_status(state: State<'_, AppState>) -> AppStatus {
    let s = state.status.lock().expect("status lock").clone();
    AppStatus {
        model: s.model,
        device: s.device,
        adapter: s.adapter,
        remotes: s.remotes,
    }
}

#[derive(Clone, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "camelCase")]
pub enum LoadEvent {
    Progress {
        stage: String,
        done: usize,
        total: usize,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Loaded {
    #[serde(flatten)]
    pub info: ModelInfo,
    pub device: DeviceReport,
    pub seconds: f64,
}

/// Loads a model (`spec`: a path or catalog name; `null` = the default model).
#[tauri::command]
pub async fn load_model(
    state: State<'_, AppState>,
    spec: Option<String>,
    device: Option<String>,
    on_event: Channel<LoadEvent>,
) -> CommandResult<Loaded> {
    let device: DeviceChoice = device
        .as_deref()
        .unwrap_or("auto")
        .parse()
        .map_err(|e: String| CommandError::new("invalid_argument", e))?;
    // a path must be one the writer chose or the app listed; a catalog name is not a path
    if let Some(path) = spec.as_deref().filter(|s| Path::new(s).is_absolute()) {
        state.paths.check(Path::new(path))?;
    }
    let job = state.engine.submit(request::Load {
        model: spec,
        device,
        options: Default::default(),
    });
    let loaded = job
        .finish(|event| {
            if let Event::Progress { stage, done, total } = event {
                let _ = on_event.send(LoadEvent::Progress {
                    stage: stage.clone(),
                    done: *done,
                    total: *total,
                });
            }
        })
        .await?;
    let penwright_engine::worker::Loaded {
        info,
        device,
        seconds,
    } = loaded;
    {
        let mut status = state.status.lock().expect("status lock");
        status.model = Some(info.clone());
        status.device = Some(device.clone());
    }
    crate::commands::serve::model_changed(&state).await;
    Ok(Loaded {
        info,
        device,
        seconds,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    pub name: String,
    pub backend: String,
    pub software: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    pub gpu: Option<GpuInfo>,
    pub cpu_threads: usize,
    pub reason: String,
}

#[tauri::command]
pub async fn devices() -> Devices {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    match gpu_adapter() {
        Ok(a) => Devices {
            reason: if a.software {
                format!("{} is a software rasterizer: auto uses the CPU", a.name)
            } else {
                format!("auto uses {}", a.name)
            },
            gpu: Some(GpuInfo {
                name: a.name,
                backend: a.backend,
                software: a.software,
            }),
            cpu_threads: threads,
        },
        Err(e) => Devices {
            gpu: None,
            cpu_threads: threads,
            reason: e,
        },
    }
}
