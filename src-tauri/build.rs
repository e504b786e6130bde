//! Builds the Tauri context from the root `tauri.conf.json` and declares the app's commands,
//! so that each one is a permission the capability file must grant explicitly.

/// Every `#[tauri::command]` of the app (kept in step with `app_commands!` in lib.rs).
const COMMANDS: &[&str] = &[
    "pick_paths",
    "pick_save_path",
    "open_document",
    "save_document",
    "write_recovery",
    "take_recovery",
    "clear_recovery",
    "recent_files",
    "app_status",
    "load_model",
    "devices",
    "list_models",
    "catalog",
    "import_model",
    "remove_model",
    "hub_repo",
    "download_model",
    "cancel_download",
    "complete",
    "cancel_complete",
    "complete_alternatives",
    "summarize",
    "translate",
    "rewrite",
    "cancel_task",
    "dataset_report",
    "finetune_presets",
    "finetune_start",
    "finetune_resume",
    "finetune_stop",
    "finetune_attach",
    "list_adapters",
    "import_adapter",
    "measure_adapter",
    "set_adapter",
    "remote_models",
    "use_remote",
    "use_local",
    "serve_status",
    "serve_start",
    "serve_stop",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .config_path("../tauri.conf.json")
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build script");
}
