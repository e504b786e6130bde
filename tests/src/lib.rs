//! Helpers for the end-to-end tests: where the built binaries and the default model are, and
//! a small WebDriver client for the app.

pub mod hub;
pub mod serve;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The cargo target profile dir the tests were built into (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// A binary of the workspace, built by `cargo test --workspace`.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `make test` (cargo test --workspace)",
        path.display()
    );
    path
}

/// A private PENWRIGHT_HOME for one app run: its models folder is the real one (so the
/// default model loads), everything else (recovery, adapters, the webview's storage under
/// `xdg-data`, see [`app_env`]) starts empty.
pub fn private_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("a temporary home");
    let model = default_model();
    // <models>/<name>/<file>
    let models = model.parent().unwrap().parent().unwrap();
    std::os::unix::fs::symlink(models, home.path().join("models")).expect("link the models");
    home
}

/// The app's environment for a home: PENWRIGHT_HOME, and the webview's storage (settings in
/// localStorage) inside it, so that a setting one test changes never reaches another.
pub fn app_env(home: &Path) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("PENWRIGHT_HOME", home.to_path_buf()),
        ("XDG_DATA_HOME", home.join("xdg-data")),
    ]
}

/// The default model, installed by `make setup` (`penwright fetch`).
pub fn default_model() -> PathBuf {
    let entry = penwright_models::Catalog::embedded().default_entry();
    let path = entry.primary_path();
    assert!(
        path.exists(),
        "the default model is not installed at {}: run `make setup` (penwright fetch)",
        path.display()
    );
    path
}

/// Runs `penwright` with the arguments; returns its output.
pub fn penwright(args: &[&str]) -> Output {
    Command::new(binary("penwright"))
        .args(args)
        .output()
        .expect("run penwright")
}

/// Runs `penwright`, expects success, parses the last stdout line as JSON.
pub fn penwright_json(args: &[&str]) -> serde_json::Value {
    let out = penwright(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "penwright {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root")
        .to_path_buf()
}

/// Writes Moby-Dick chapter 1 (tests/data) as 8 Markdown files into `dir`: a small folder of
/// "the writer's documents" for fine-tuning tests.
pub fn write_moby_dick_parts(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the data folder");
    let path = repo_root().join("tests/data/moby-dick-ch1.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let paragraphs: Vec<&str> = text.split("\n\n").filter(|p| p.len() > 200).collect();
    for (i, chunk) in paragraphs.chunks(paragraphs.len().div_ceil(8)).enumerate() {
        std::fs::write(dir.join(format!("part{i}.md")), chunk.join("\n\n")).expect("write a part");
    }
}

/// Penwright's Python environment (made by `make setup` from `tests/python-requirements.txt`),
/// checked to have `module`.
pub fn python_with(module: &str) -> PathBuf {
    let home = std::env::var_os("HOME").expect("$HOME");
    let python = PathBuf::from(home).join(".cache/penwright/python/bin/python");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import {module}: run `make setup`",
        python.display()
    );
    python
}

/// The default model's file with its chat template replaced by `template` (padded with a
/// Jinja comment to the same length, so nothing else in the file moves).
pub fn with_chat_template(template: &str, out: &Path) {
    let mut bytes = std::fs::read(default_model()).unwrap();
    let key = b"tokenizer.chat_template";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the default model has a chat template")
        + key.len();
    assert_eq!(bytes[at..at + 4], 8u32.to_le_bytes(), "a string value");
    let len = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap()) as usize;
    let padding = len - template.len() - "{##}".len();
    let replaced = format!("{template}{{#{}#}}", " ".repeat(padding));
    assert_eq!(replaced.len(), len);
    bytes[at + 12..at + 12 + len].copy_from_slice(replaced.as_bytes());
    std::fs::write(out, bytes).unwrap();
}

/// A chat template that doubles a string forty times: a few hundred steps, a terabyte of
/// text. Rendered in the engine's own process it would abort it.
pub const TEMPLATE_BOMB: &str = "{% set s = namespace(x='ab') %}{% for i in range(40) %}{% set s.x = s.x ~ s.x %}{% endfor %}{{ s.x | length }}";
