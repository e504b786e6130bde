//! The app: state, commands and the Tauri builder. All model, task and document logic lives
//! in `penwright-engine`; this crate only adapts it to the webview.

pub mod commands;
pub mod error;
pub mod paths;
pub mod recovery;
pub mod state;

use state::AppState;

/// Every command the webview may call; `build.rs` turns each into a permission and
/// `capabilities/default.json` grants exactly these.
#[macro_export]
macro_rules! app_commands {
    () => {
        tauri::generate_handler![
            commands::dialogs::pick_paths,
            commands::dialogs::pick_save_path,
            commands::documents::open_document,
            commands::documents::save_document,
            commands::documents::write_recovery,
            commands::documents::take_recovery,
            commands::documents::clear_recovery,
            commands::documents::recent_files,
            commands::model::app_status,
            commands::model::load_model,
            commands::model::devices,
            commands::library::list_models,
            commands::library::catalog,
            commands::library::import_model,
            commands::library::remove_model,
            commands::library::hub_repo,
            commands::library::download_model,
            commands::library::cancel_download,
            commands::tasks::complete,
            commands::tasks::cancel_complete,
            commands::tasks::complete_alternatives,
            commands::tasks::summarize,
            commands::tasks::translate,
            commands::tasks::rewrite,
            commands::tasks::cancel_task,
            commands::finetune::dataset_report,
            commands::finetune::finetune_presets,
            commands::finetune::finetune_start,
            commands::finetune::finetune_resume,
            commands::finetune::finetune_stop,
            commands::finetune::finetune_attach,
            commands::finetune::list_adapters,
            commands::finetune::import_adapter,
            commands::finetune::measure_adapter,
            commands::finetune::set_adapter,
            commands::remote::remote_models,
            commands::remote::use_remote,
            commands::remote::use_local,
            commands::serve::serve_status,
            commands::serve::serve_start,
            commands::serve::serve_stop,
        ]
    };
}

pub fn builder() -> tauri::Builder<tauri::Wry> {
    // chat templates and documents from untrusted files are checked in a child process of
    // the `penwright` beside the app, under a memory cap (without it, in this process)
    if let Ok(cli) = commands::finetune::penwright_binary() {
        penwright_engine::isolated::use_helper(cli);
    }
    tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(AppState::new())
        .invoke_handler(app_commands!())
}

pub fn run() {
    builder()
        .run(tauri::generate_context!("../tauri.conf.json"))
        .expect("error while running Penwright");
}
