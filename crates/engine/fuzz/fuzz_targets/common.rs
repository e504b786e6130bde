#![allow(dead_code)] // each target uses the parts it needs
//! What every target shares: Rust's panic hook, a scratch folder of this process (in /dev/shm where there is
//! one, so that writing the input as a file costs little), reused for every input.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Puts back Rust's own panic hook, once: libfuzzer-sys's hook aborts on every panic, even
/// one the engine catches on purpose (a parser's panic on a bad file is that file's error,
/// see `finetune::extract` and `tokenizer`). A panic that escapes still aborts the run.
pub fn panics_caught_by_the_engine_are_errors() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::panic::take_hook()));
}

/// A folder of this process's own, made once.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("penwright-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Writes `data` as `name` in the scratch folder and returns its path.
pub fn as_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("write the input");
    path
}
