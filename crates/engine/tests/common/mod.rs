//! Shared by the engine's integration tests that need the real default model.

use std::path::PathBuf;

/// `$PENWRIGHT_DEFAULT_MODEL`, else the catalog's install path (`make setup` fetches it).
pub fn default_model_path() -> PathBuf {
    let path = match std::env::var_os("PENWRIGHT_DEFAULT_MODEL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => penwright_models::Catalog::embedded()
            .default_entry()
            .primary_path(),
    };
    assert!(
        path.is_file(),
        "the default model is missing at {}: run `make setup` (or set PENWRIGHT_DEFAULT_MODEL)",
        path.display()
    );
    path
}
