//! The app as a writer installs it: the `.deb` that `scripts/deb-check.sh` builds with Tauri's
//! bundler and installs with `apt-get install ./penwright_*.deb` (`make test` runs it), in a
//! real window. Ignored in a plain `cargo test`: they test what is installed on the machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use penwright_e2e::webdriver::{Driver, Session};
use penwright_e2e::{app_env, private_home};
use serde_json::json;

/// The installed app binary, as the package's menu entry starts it.
fn installed_app() -> PathBuf {
    let desktop = std::fs::read_dir("/usr/share/applications")
        .expect("/usr/share/applications")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("Exec=penwright-app")))
        .expect("the package installs a menu entry that starts penwright-app");
    eprintln!("menu entry: {}", desktop.display());
    let app = PathBuf::from("/usr/bin/penwright-app");
    assert!(app.exists(), "{} is not installed", app.display());
    // fine-tuning runs the command line next to the app
    assert!(
        Path::new("/usr/bin/penwright").exists(),
        "/usr/bin/penwright is not installed"
    );
    app
}

#[test]
#[ignore = "needs the installed .deb (scripts/deb-check.sh)"]
fn the_installed_app_opens_and_suggests() {
    let app = installed_app();
    let home = private_home();
    let driver = Driver::start(&app_env(home.path()));
    let session = Session::new(&driver, &app);
    session.wait_until(
        "the default model to load",
        "const s = document.querySelector('[data-testid=status-model]'); return s && /smol/i.test(s.textContent) && !/loading/i.test(s.textContent);",
        Duration::from_secs(120),
    );
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    session.send_keys(&editor, "The quick brown fox jumps over the");
    session.wait_for("[data-testid=ghost-text]", Duration::from_secs(60));
    let suggestion = session.script(
        "return document.querySelector('[data-testid=ghost-text]').shadowRoot.textContent;",
        json!([]),
    );
    eprintln!("installed app suggests: {suggestion}");
    assert!(suggestion.as_str().is_some_and(|s| !s.trim().is_empty()));
    let path = penwright_e2e::target_dir()
        .join("e2e-screenshots")
        .join("installed-app.png");
    session.screenshot(&path);
}

#[test]
#[ignore = "needs the installed .deb (scripts/deb-check.sh)"]
fn the_first_run_offers_the_default_model() {
    let app = installed_app();
    // a home without models: the first run on a new machine
    let home = tempfile::tempdir().unwrap();
    let driver = Driver::start(&app_env(home.path()));
    let session = Session::new(&driver, &app);
    let offer = session.wait_until(
        "the default model to be offered",
        "const b = document.querySelector('[data-testid=welcome-banner]'); return b && b.textContent;",
        Duration::from_secs(60),
    );
    eprintln!("first run: {offer}");
    assert!(offer.as_str().unwrap().contains("SmolLM2"), "{offer}");
    session.wait_for("[data-testid=welcome-download]", Duration::from_secs(5));
}
