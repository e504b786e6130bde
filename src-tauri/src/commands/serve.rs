//! The app as an OpenAI-compatible server (`penwright serve` inside the app): other
//! programs, or Penwright on another computer, use the model this app has loaded. Off by
//! default. It always wants a key: one is made the first time and kept in the OS keyring
//! (in memory for the session where no keyring answers); the pane shows it to copy. It
//! listens on loopback unless the writer lets the network in.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

const KEYRING_SERVICE: &str = "penwright";
const KEYRING_USER: &str = "serve";

/// A server the app runs.
pub struct Serving {
    server: penwright_server::Background,
    status: ServeStatus,
}

/// What the Models pane shows of the server.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServeStatus {
    /// The API's base, for a client's settings (`http://127.0.0.1:8080/v1`).
    pub base_url: String,
    pub model: String,
    pub api_key: String,
    /// Whether other computers may connect (it listens on every interface).
    pub network: bool,
    /// Where the key is kept: "keyring" or "memory".
    pub key_kept: &'static str,
}

/// The server's key: the one kept from before, else a new one (kept from now on).
fn server_key(state: &AppState) -> (String, &'static str) {
    let entry = keyring::Entry::new(KEYRING_SERVICE, KEYRING_USER).ok();
    if let Some(key) = entry.as_ref().and_then(|e| e.get_password().ok()) {
        return (key, "keyring");
    }
    let mut memory = state.serve_key.lock().expect("serve key lock");
    if let Some(key) = memory.clone() {
        return (key, "memory");
    }
    let key = penwright_server::generate_key();
    if entry.is_some_and(|e| e.set_password(&key).is_ok()) {
        return (key, "keyring");
    }
    *memory = Some(key.clone());
    (key, "memory")
}

/// The server running now, if one is.
#[tauri::command]
pub async fn serve_status(state: State<'_, AppState>) -> CommandResult<Option<ServeStatus>> {
    Ok(state
        .serving
        .lock()
        .await
        .as_ref()
        .map(|s| s.status.clone()))
}

/// Starts serving the loaded model on `port` (0 or none: any free port), on loopback
/// unless `network`. A server already running is replaced.
#[tauri::command]
pub async fn serve_start(
    state: State<'_, AppState>,
    port: Option<u16>,
    network: bool,
) -> CommandResult<ServeStatus> {
    let mut serving = state.serving.lock().await;
    if let Some(old) = serving.take() {
        old.server.stop().await;
    }
    let started = start(&state, port.unwrap_or(0), network).await?;
    let status = started.status.clone();
    *serving = Some(started);
    Ok(status)
}

/// Stops the server (nothing to do when none runs).
#[tauri::command]
pub async fn serve_stop(state: State<'_, AppState>) -> CommandResult<()> {
    if let Some(old) = state.serving.lock().await.take() {
        old.server.stop().await;
    }
    Ok(())
}

/// After the loaded model changed: a running server answers as the new one, on the same
/// address.
pub async fn model_changed(state: &AppState) {
    let mut serving = state.serving.lock().await;
    let Some(old) = serving.take() else { return };
    let port = old.server.address().port();
    let network = old.status.network;
    old.server.stop().await;
    // the port was just ours; should it be taken meanwhile, the server stays off and the
    // pane shows it off
    *serving = start(state, port, network).await.ok();
}

async fn start(state: &AppState, port: u16, network: bool) -> CommandResult<Serving> {
    let info = state
        .status
        .lock()
        .expect("status lock")
        .model
        .clone()
        .ok_or_else(|| CommandError::new("no_model", "load a model before serving it"))?;
    let (api_key, key_kept) = server_key(state);
    let served = penwright_server::ServedModel {
        id: info.id(),
        context: info
            .context_length
            .min(penwright_engine::worker::SESSION_CONTEXT),
    };
    let router = penwright_server::router(
        state.engine.clone(),
        served.clone(),
        penwright_server::ServerConfig::new(api_key.clone()),
    );
    let host = if network {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let server = penwright_server::Background::start(host, port, router)
        .await
        .map_err(|e| {
            CommandError::new(
                "serve_failed",
                format!("could not listen on port {port}: {e}"),
            )
        })?;
    Ok(Serving {
        status: ServeStatus {
            // this computer's view; other computers use its network address, same port
            base_url: format!("http://127.0.0.1:{}/v1", server.address().port()),
            model: served.id,
            api_key,
            network,
            key_kept,
        },
        server,
    })
}
