//! The fine-tune pane: dataset report, a training job that runs as its own process (closing
//! the window does not stop it), re-attaching to its progress, and the adapters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use penwright_engine::finetune::dataset::DatasetReport;
use penwright_engine::finetune::job::{self, AdapterEntry, JobEnd, JobEvent, JobLine, JobStatus};
use penwright_engine::finetune::train::{FinetuneConfig, TrainingChoices, TrainingPreset};
use serde::{Deserialize, Serialize};
use tauri::State;
use tauri::ipc::Channel;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

fn adapters_dir() -> PathBuf {
    penwright_models::paths::adapters_dir()
}

/// The `penwright` command line next to the app's own binary.
pub(crate) fn penwright_binary() -> CommandResult<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| CommandError::new("io", e.to_string()))?;
    let bin = exe.with_file_name("penwright");
    if !bin.exists() {
        return Err(CommandError::new(
            "missing_binary",
            format!(
                "{} is missing: fine-tuning runs it as a background job",
                bin.display()
            ),
        ));
    }
    Ok(bin)
}

fn active_model(state: &AppState) -> CommandResult<PathBuf> {
    state
        .active_model_path()
        .ok_or_else(|| CommandError::new("no_model", "load a model first"))
}

fn checked_paths(state: &AppState, paths: &[String]) -> CommandResult<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(CommandError::new(
            "invalid_argument",
            "choose files or folders to learn from",
        ));
    }
    paths
        .iter()
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                state.paths.check(&p)
            } else {
                Err(CommandError::new(
                    "invalid_path",
                    format!("{} is not an absolute path", p.display()),
                ))
            }
        })
        .collect()
}

#[tauri::command]
pub async fn dataset_report(
    state: State<'_, AppState>,
    paths: Vec<String>,
) -> CommandResult<DatasetReport> {
    let paths = checked_paths(&state, &paths)?;
    let model = active_model(&state)?;
    tauri::async_runtime::spawn_blocking(move || {
        let tokenizer = penwright_engine::loader::load_tokenizer(&model)?;
        Ok::<_, penwright_engine::EngineError>(
            TrainingChoices::default()
                .config()?
                .dataset(&paths, &tokenizer)?
                .report,
        )
    })
    .await
    .map_err(|e| CommandError::new("engine", e.to_string()))?
    .map_err(Into::into)
}

/// A run the Fine-tune pane starts: its documents and the writer's choices.
#[derive(Deserialize)]
pub struct StartConfig {
    pub paths: Vec<String>,
    #[serde(flatten)]
    pub choices: TrainingChoices,
}

/// The presets' settings, for the pane's advanced fields.
#[tauri::command]
pub fn finetune_presets() -> BTreeMap<TrainingPreset, FinetuneConfig> {
    TrainingPreset::ALL
        .into_iter()
        .map(|p| (p, FinetuneConfig::preset(p)))
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub job_id: String,
}

fn spawn_reaper(mut child: std::process::Child) {
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

#[tauri::command]
pub fn finetune_start(state: State<'_, AppState>, config: StartConfig) -> CommandResult<Started> {
    let paths = checked_paths(&state, &config.paths)?;
    let model = active_model(&state)?;
    let cfg = config.choices.config()?;
    let name = format!(
        "adapter-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let (record, child) = job::start(
        &penwright_binary()?,
        &adapters_dir(),
        &model,
        &paths,
        &name,
        &cfg,
        None,
    )?;
    spawn_reaper(child);
    Ok(Started {
        job_id: record.job_id,
    })
}

#[tauri::command]
pub fn finetune_resume() -> CommandResult<Started> {
    let record = job::current(&adapters_dir())
        .ok_or_else(|| CommandError::new("no_job", "no job to resume"))?;
    let name = record
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (record, child) = job::start(
        &penwright_binary()?,
        &adapters_dir(),
        &record.model,
        &record.data,
        &name,
        &record.config,
        Some(&record.out),
    )?;
    spawn_reaper(child);
    Ok(Started {
        job_id: record.job_id,
    })
}

#[tauri::command]
pub fn finetune_stop() -> CommandResult<()> {
    let record = job::current(&adapters_dir())
        .ok_or_else(|| CommandError::new("no_job", "no job is running"))?;
    job::request_stop(&record)?;
    Ok(())
}

/// Re-attaches to the current job: returns what it has done so far and streams what follows.
#[tauri::command]
pub fn finetune_attach(on_event: Channel<JobEvent>) -> Option<JobStatus> {
    let record = job::current(&adapters_dir())?;
    let status = job::status(&record);
    if status.state == "running" {
        std::thread::spawn(move || {
            let path = job::log_path(&record.out);
            let mut offset = std::fs::metadata(&path).map_or(0, |m| m.len());
            loop {
                std::thread::sleep(Duration::from_millis(400));
                let text = std::fs::read(&path).unwrap_or_default();
                let len = text.len() as u64;
                if len > offset {
                    let new = String::from_utf8_lossy(&text[offset as usize..]).into_owned();
                    // only whole lines
                    let consumed = new.rfind('\n').map_or(0, |i| i + 1);
                    for line in new[..consumed].lines().filter_map(JobLine::parse) {
                        if on_event.send(JobEvent::from(line)).is_err() {
                            return;
                        }
                    }
                    offset += consumed as u64;
                }
                if !job::alive(record.pid) && len <= offset {
                    let s = job::status(&record);
                    if s.state == "failed" {
                        let message = s
                            .error
                            .unwrap_or_else(|| "the fine-tuning job failed".into());
                        let _ = on_event.send(JobEvent::Ended(JobEnd::Error { message }));
                    }
                    return;
                }
            }
        });
    }
    Some(status)
}

/// Adds a PEFT adapter trained elsewhere (a folder the writer picked) to the adapters list.
#[tauri::command]
pub async fn import_adapter(state: State<'_, AppState>, path: String) -> CommandResult<AdapterRow> {
    let path = state.paths.check(Path::new(&path))?;
    let entry =
        tauri::async_runtime::spawn_blocking(move || job::import_adapter(&adapters_dir(), &path))
            .await
            .map_err(|e| CommandError::new("engine", e.to_string()))??;
    state.paths.allow(&entry.path);
    Ok(AdapterRow {
        entry,
        active: false,
    })
}

/// Progress of a measurement: which model is scoring, windows done of total.
pub type MeasureEvent = penwright_engine::finetune::measure::MeasureProgress;

/// Held-out perplexity base → tuned of the adapter at `path` (one trained elsewhere, say) on
/// the held-out text in `paths` (an export's heldout.jsonl, or documents), with the loaded
/// model as the base; kept beside the adapter, so the list shows it from now on. Cancelled
/// by `cancel_task`.
#[tauri::command]
pub async fn measure_adapter(
    state: State<'_, AppState>,
    path: String,
    paths: Vec<String>,
    on_event: Channel<MeasureEvent>,
) -> CommandResult<penwright_engine::finetune::measure::AdapterPerplexity> {
    use penwright_engine::finetune::measure;
    let adapter = state.paths.check(Path::new(&path))?;
    let paths = checked_paths(&state, &paths)?;
    let model = active_model(&state)?;
    // on the device the model runs on
    let device = match state.status.lock().expect("status lock").device.as_ref() {
        Some(d) if d.kind == penwright_engine::device::DeviceKind::Gpu => {
            penwright_engine::device::DeviceChoice::Gpu
        }
        _ => penwright_engine::device::DeviceChoice::Cpu,
    };
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(old) = state
        .task_cancel
        .lock()
        .expect("cancel lock")
        .replace(cancel.clone())
    {
        old.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    tauri::async_runtime::spawn_blocking(move || {
        let texts = measure::read_heldout(&paths)?;
        let device = penwright_engine::device::select(device)?;
        measure::measure_adapter(&model, &adapter, device, &texts, 8192, &cancel, &mut |p| {
            let _ = on_event.send(p);
        })
    })
    .await
    .map_err(|e| CommandError::new("engine", e.to_string()))?
    .map_err(Into::into)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterRow {
    #[serde(flatten)]
    pub entry: AdapterEntry,
    pub active: bool,
}

#[tauri::command]
pub fn list_adapters(state: State<'_, AppState>) -> Vec<AdapterRow> {
    let active = state.status.lock().expect("status lock").adapter.clone();
    let adapters = job::list_adapters(&adapters_dir());
    state
        .paths
        .allow_all(adapters.iter().map(|a| a.path.as_path()));
    adapters
        .into_iter()
        .map(|entry| AdapterRow {
            active: active.as_deref() == Some(entry.path.to_string_lossy().as_ref()),
            entry,
        })
        .collect()
}

/// Activates an adapter for generation (merged into the loaded model) or, with `null`,
/// goes back to the base model.
#[tauri::command]
pub async fn set_adapter(state: State<'_, AppState>, path: Option<String>) -> CommandResult<()> {
    if let Some(p) = &path {
        state.paths.check(Path::new(p))?;
    }
    let job = state
        .engine
        .submit(penwright_engine::worker::request::SetAdapter {
            adapter: path.clone().map(PathBuf::from),
        });
    job.finish(|_| {}).await?;
    state.status.lock().expect("status lock").adapter = path;
    crate::commands::serve::model_changed(&state).await;
    Ok(())
}
