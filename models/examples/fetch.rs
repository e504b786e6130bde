//! Installs (or verifies) a catalog model without building the engine:
//! `cargo run -p penwright-models --example fetch -- [name]` (default: the default model).

use std::process::ExitCode;
use std::time::Instant;

use penwright_models::{Catalog, fetch};

fn main() -> ExitCode {
    let catalog = Catalog::embedded();
    let entry = match std::env::args().nth(1) {
        None => catalog.default_entry(),
        Some(name) => match catalog.find(&name) {
            Some(e) => e,
            None => {
                eprintln!("`{name}` is not in the catalog");
                return ExitCode::FAILURE;
            }
        },
    };
    let started = Instant::now();
    match fetch::ensure_installed(entry, &mut |event| eprintln!("penwright: {event}")) {
        Ok(path) => {
            println!("{}", path.display());
            eprintln!("({:.2} s)", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("penwright: {e}");
            ExitCode::FAILURE
        }
    }
}
