//! The real app in a real window (Xvfb), driven over WebDriver (tauri-driver +
//! WebKitWebDriver), on the real default model. Each test saves a screenshot under
//! `<target>/e2e-screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use penwright_e2e::webdriver::{Driver, KEY_TAB, Session};
use penwright_e2e::{binary, default_model, target_dir};
use serde_json::json;

/// A private PENWRIGHT_HOME whose models folder is the real one (so the default model loads)
/// and whose recovery folder starts empty.
fn private_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let model = default_model();
    // <models>/<name>/<file>
    let models = model.parent().unwrap().parent().unwrap();
    std::os::unix::fs::symlink(models, home.path().join("models")).unwrap();
    home
}

fn screenshot(session: &Session, name: &str) -> PathBuf {
    let path = target_dir()
        .join("e2e-screenshots")
        .join(format!("{name}.png"));
    session.screenshot(&path);
    eprintln!("screenshot: {}", path.display());
    path
}

/// One app window at a time: the tests share the display and the machine's two cores.
static ONE_APP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_app(home: &Path) -> (Driver, Session) {
    let driver = Driver::start(&[("PENWRIGHT_HOME", home)]);
    let session = Session::new(&driver, &binary("penwright-app"));
    // the status bar names the model once it is loaded
    session.wait_until(
        "the default model to load",
        "const s = document.querySelector('[data-testid=status-model]'); return s && /smol/i.test(s.textContent) && !/loading/i.test(s.textContent);",
        Duration::from_secs(120),
    );
    (driver, session)
}

fn editor_text(session: &Session) -> String {
    session
        .script(
            "return document.querySelector('.cm-content').innerText;",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn ghost_text_appears_and_tab_accepts_it() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    session.send_keys(&editor, "The quick brown fox jumps over the");
    let ghost = session.wait_for("[data-testid=ghost-text]", Duration::from_secs(60));
    let suggestion = session.text(&ghost);
    eprintln!("suggestion: {suggestion:?}");
    screenshot(&session, "ghost-text");
    assert!(!suggestion.trim().is_empty());
    // the suggestion is a decoration, not document text
    assert_eq!(
        editor_text(&session).trim_end(),
        "The quick brown fox jumps over the"
    );
    session.send_keys(&editor, KEY_TAB);
    let text = editor_text(&session);
    assert!(
        text.trim_end().len() > "The quick brown fox jumps over the".len(),
        "Tab did not insert the suggestion: {text:?}"
    );
    assert!(
        text.contains(suggestion.trim()),
        "{text:?} lacks {suggestion:?}"
    );
    assert!(session.find("[data-testid=ghost-text]").is_none());
}

#[test]
fn summarize_streams_a_summary_of_the_document() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    session.send_keys(
        &editor,
        "Penwright is a writing app that runs a language model on the writer's own computer. \
         Nothing is sent to a server. It suggests the next words while you type, summarizes long drafts, \
         and translates documents while keeping their Markdown structure.",
    );
    let open = session.wait_for("[data-testid=open-summarize]", Duration::from_secs(5));
    session.click(&open);
    let run = session.wait_for("[data-testid=summarize-run]", Duration::from_secs(5));
    session.click(&run);
    let summary = session.wait_until(
        "a streamed summary",
        "const o = document.querySelector('[data-testid=summarize-output]'); return o && o.textContent.trim().split(/\\s+/).length >= 5 && o.textContent;",
        Duration::from_secs(180),
    );
    eprintln!("summary: {summary}");
    screenshot(&session, "summarize");
}

#[test]
fn saving_writes_the_document_to_disk() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    session.send_keys(&editor, "# Notes\n\nA line to keep.");
    let path = home.path().join("notes.md");
    // the native save dialog is not scriptable: save through the app's own command, as the
    // Save button does once a path is chosen
    let result = session.script_async(
        "const done = arguments[arguments.length - 1];
         const text = document.querySelector('.cm-content').innerText;
         window.__TAURI_INTERNALS__.invoke('save_document', {path: arguments[0], text})
           .then(r => done(r), e => done({error: e}));",
        json!([path]),
    );
    assert!(result.get("error").is_none(), "{result}");
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(on_disk.trim_end(), editor_text(&session).trim_end());
    assert!(on_disk.contains("A line to keep."));
    screenshot(&session, "saved");
}

#[test]
fn killed_app_offers_the_recovered_text() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    {
        let (_driver, session) = open_app(home.path());
        let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
        session.click(&editor);
        session.send_keys(&editor, "Unsaved words that must survive a crash.");
        // autosave runs every few seconds
        let recovery = home.path().join("recovery/recovery.json");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&recovery).is_ok_and(|t| t.contains("must survive")) {
            assert!(
                std::time::Instant::now() < deadline,
                "no autosave copy at {}",
                recovery.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // dropping the driver kills the app without a clean shutdown
    }
    let (_driver, session) = open_app(home.path());
    let banner = session.wait_for("[data-testid=recovery-banner]", Duration::from_secs(20));
    screenshot(&session, "recovery");
    let restore = session.wait_for("[data-testid=recovery-restore]", Duration::from_secs(5));
    session.click(&restore);
    let _ = banner;
    assert!(editor_text(&session).contains("Unsaved words that must survive a crash."));
}

#[test]
fn a_three_step_fine_tune_reports_its_perplexity_and_lists_the_adapter() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let data = home.path().join("my-writing");
    penwright_e2e::write_moby_dick_parts(&data);
    let (_driver, session) = open_app(home.path());
    // folders come from the native picker, which WebDriver cannot drive: start the job with the
    // command the Start button sends
    let started = session.script_async(
        "const done = arguments[arguments.length - 1];
         window.__TAURI_INTERNALS__.invoke('finetune_start', {config: {paths: [arguments[0]], preset: 'quick',
           steps: 3, seqLen: 32, batch: 1, learningRate: 0.001, evalEvery: 0}})
           .then(r => done(r), e => done({error: e}));",
        json!([data]),
    );
    assert!(started.get("error").is_none(), "{started}");
    // the job runs as its own process and logs to <adapter>/job.jsonl
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let job_dir = loop {
        let found = std::fs::read_dir(home.path().join("adapters"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("job.jsonl").exists());
        if let Some(dir) = found {
            let log = std::fs::read_to_string(dir.join("job.jsonl")).unwrap_or_default();
            let err = std::fs::read_to_string(dir.join("job.log")).unwrap_or_default();
            if log.contains("tuned_ppl") {
                break dir;
            }
            assert!(!err.contains("Error"), "the job failed: {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fine-tuning job did not finish"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("job finished in {}", job_dir.display());
    let open = session.wait_for("[data-testid=open-finetune]", Duration::from_secs(5));
    session.click(&open);
    let adapters = session.script_async(
        "const done = arguments[arguments.length - 1];
         window.__TAURI_INTERNALS__.invoke('list_adapters').then(a => done(a), e => done({error: e}));",
        json!([]),
    );
    eprintln!("adapters: {adapters}");
    assert!(
        adapters
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["tunedPpl"].is_number()),
        "{adapters}"
    );
    let before_after =
        session.wait_for("[data-testid=finetune-ppl-after]", Duration::from_secs(60));
    eprintln!("tuned perplexity shown: {}", session.text(&before_after));
    let log = std::fs::read_to_string(job_dir.join("job.jsonl")).unwrap();
    let steps = log
        .lines()
        .filter(|l| l.contains("\"event\":\"step\""))
        .count();
    assert_eq!(steps, 3, "{log}");
    let adapters = session.wait_for("[data-testid=finetune-adapter]", Duration::from_secs(30));
    eprintln!("adapter listed: {}", session.text(&adapters));
    screenshot(&session, "finetune");
    let adapter_dir = std::fs::read_dir(home.path().join("adapters"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("adapter_model.safetensors").exists());
    assert!(
        adapter_dir.is_some(),
        "no adapter written under {}",
        home.path().join("adapters").display()
    );
}
