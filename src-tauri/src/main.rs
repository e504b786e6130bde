//! Penwright's desktop app: a thin layer of Tauri commands over the engine.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    penwright_app::run();
}
