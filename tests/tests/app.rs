//! The real app in a real window (Xvfb), driven over WebDriver (tauri-driver +
//! WebKitWebDriver), on the real default model. Each test saves a screenshot under
//! `<target>/e2e-screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use penwright_e2e::webdriver::{
    Driver, KEY_ALT, KEY_CONTROL, KEY_END, KEY_ENTER, KEY_TAB, Session,
};
use penwright_e2e::{app_env, binary, default_model, private_home, target_dir};
use serde_json::json;

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
    let driver = Driver::start(&app_env(home));
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
            "return [...document.querySelectorAll('.cm-content .cm-line')].map(l => l.textContent).join('\\n');",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Calls an app command as the UI does; `{"ok": reply}` or `{"error": {kind, message}}`.
/// A `"__channel__"` argument becomes a channel whose messages are dropped.
fn invoke(session: &Session, command: &str, args: serde_json::Value) -> serde_json::Value {
    session.script_async(
        "const done = arguments[arguments.length - 1];
         const args = arguments[1];
         for (const k of Object.keys(args)) {
           if (args[k] === '__channel__') {
             args[k] = '__CHANNEL__:' + window.__TAURI_INTERNALS__.transformCallback(() => {});
           }
         }
         window.__TAURI_INTERNALS__.invoke(arguments[0], args).then(r => done({ok: r}), e => done({error: e}));",
        json!([command, args]),
    )
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

/// The text of a ghost widget (`ghost-text`, `ghost-count`): it lives in the shadow root.
fn ghost(session: &Session, testid: &str) -> Option<String> {
    session
        .script(
            "const g = document.querySelector(`[data-testid=${arguments[0]}]`); return g && g.shadowRoot ? g.shadowRoot.textContent : null;",
            json!([testid]),
        )
        .as_str()
        .map(str::to_string)
}

#[test]
fn alternatives_cycle_with_alt_brackets_and_suggestions_stay_out_of_code() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    let typed = "It was a dark and stormy night, and";
    session.send_keys(&editor, typed);
    session.wait_for("[data-testid=ghost-text]", Duration::from_secs(60));
    let first = ghost(&session, "ghost-text").unwrap();
    let asked = std::time::Instant::now();
    session.send_keys(&editor, &format!("{KEY_ALT}]"));
    let count = session.wait_until(
        "the alternatives badge",
        "const c = document.querySelector('[data-testid=ghost-count]'); const t = c && c.shadowRoot.textContent; return t && /^2\\/\\d$/.test(t) && t;",
        Duration::from_secs(60),
    );
    let waited = asked.elapsed().as_millis();
    let second = ghost(&session, "ghost-text").unwrap();
    let speed =
        session.text(&session.wait_for("[data-testid=status-speed]", Duration::from_secs(5)));
    eprintln!(
        "alternatives: {first:?} then {second:?} ({count}); {waited} ms after Alt+], status: {speed}"
    );
    screenshot(&session, "ghost-alternatives");
    assert_ne!(first, second, "the alternative is the same suggestion");
    // Alt+[ goes back to the first; Tab accepts the one shown
    session.send_keys(&editor, &format!("{KEY_ALT}["));
    session.wait_until(
        "the first suggestion again",
        "const c = document.querySelector('[data-testid=ghost-count]'); return c && c.shadowRoot.textContent.startsWith('1/');",
        Duration::from_secs(5),
    );
    assert_eq!(ghost(&session, "ghost-text").unwrap(), first);
    session.send_keys(&editor, KEY_TAB);
    assert!(editor_text(&session).contains(first.trim()));
    // inside a fenced code block nothing is suggested while typing
    session.send_keys(
        &editor,
        &format!("{KEY_ENTER}{KEY_ENTER}```{KEY_ENTER}let total = "),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        session.find("[data-testid=ghost-text]").is_none(),
        "a suggestion appeared inside a code block"
    );
}

#[test]
fn subtle_mode_shows_the_suggestion_only_while_alt_is_held() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    session.click_css("[data-testid=status-settings]", Duration::from_secs(10));
    session.click_css(
        "label.switch:has([data-testid=settings-subtle])",
        Duration::from_secs(5),
    );
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    let typed = "The quick brown fox jumps over the";
    session.send_keys(&editor, typed);
    session.wait_for("[data-testid=ghost-hint]", Duration::from_secs(60));
    assert!(session.find("[data-testid=ghost-text]").is_none());
    // Tab does not accept what cannot be seen; Alt+Enter (Alt held) does
    session.send_keys(&editor, &format!("{KEY_ALT}{KEY_ENTER}"));
    let text = editor_text(&session);
    assert!(
        text.trim_end().len() > typed.len(),
        "Alt+Enter accepted nothing: {text:?}"
    );
    // the setting persists
    let stored = session.script(
        "return JSON.parse(localStorage.getItem('penwright.settings')).subtle;",
        json!([]),
    );
    assert_eq!(stored, json!(true));
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
    session.click_css("[data-testid=open-summarize]", Duration::from_secs(10));
    session.click_css("[data-testid=summarize-run]", Duration::from_secs(10));
    let summary = session.wait_until(
        "a streamed summary",
        "const o = document.querySelector('[data-testid=summarize-output]'); return o && o.textContent.trim().split(/\\s+/).length >= 5 && o.textContent;",
        Duration::from_secs(180),
    );
    eprintln!("summary: {summary}");
    screenshot(&session, "summarize");
}

#[test]
fn translate_keeps_the_markdown_structure() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    // the editor continues a list on Enter, so the second item is typed without its marker
    let typed =
        "# Travel notes\n\nThe train leaves at noon.\n\n- Buy the tickets\nPack a warm coat";
    session.send_keys(&editor, &typed.replace('\n', KEY_ENTER));
    let source = editor_text(&session);
    eprintln!("source:\n{source}");
    let items = |text: &str| {
        text.lines()
            .filter(|l| l.trim_start().starts_with("- "))
            .count()
    };
    assert_eq!(items(&source), 2, "{source}");
    session.click_css("[data-testid=open-translate]", Duration::from_secs(10));
    session.click_css("[data-testid=translate-run]", Duration::from_secs(10));
    session.wait_until(
        "the translation to finish",
        "const a = document.querySelector('[data-testid=translate-actions]'); return a && !a.hidden;",
        Duration::from_secs(240),
    );
    let output =
        session.text(&session.wait_for("[data-testid=translate-output]", Duration::from_secs(5)));
    eprintln!("translation:\n{output}");
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines[0].starts_with("# "),
        "the heading stays a heading: {output}"
    );
    assert_eq!(
        items(&output),
        2,
        "both list items stay list items: {output}"
    );
    assert!(
        lines
            .iter()
            .any(|l| !l.starts_with('#') && !l.trim_start().starts_with("- ")),
        "the paragraph stays a paragraph: {output}"
    );
    screenshot(&session, "translate");
}

#[test]
fn a_rewrite_is_reviewed_as_a_diff_and_accepted_as_one_undo_step() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    let original = "The meeting was attended by all of the team members and a decision was made by them to postpone the launch until the new design is finished.";
    session.send_keys(&editor, original);
    session.send_keys(&editor, &format!("{KEY_CONTROL}a"));
    session.click_css("[data-testid=open-rewrite]", Duration::from_secs(10));
    session.wait_until(
        "the selection to be the source",
        "const b = document.querySelector('[data-testid=rewrite-source-selection]'); return b && b.getAttribute('aria-checked') === 'true';",
        Duration::from_secs(5),
    );
    session.click_css(
        "[data-testid=rewrite-preset-shorter]",
        Duration::from_secs(10),
    );
    session.wait_until(
        "the rewrite to finish",
        "const a = document.querySelector('[data-testid=rewrite-actions]'); return a && !a.hidden;",
        Duration::from_secs(180),
    );
    let marks = session.script(
        "const o = document.querySelector('[data-testid=rewrite-output]'); return [o.querySelectorAll('ins').length, o.querySelectorAll('del').length, document.querySelector('[data-testid=rewrite-stats]').textContent];",
        json!([]),
    );
    eprintln!("diff marks: {marks}");
    screenshot(&session, "rewrite-diff");
    assert!(
        marks[0].as_u64().unwrap() + marks[1].as_u64().unwrap() > 0,
        "the diff marks no change: {marks}"
    );
    // nothing changes before Accept
    assert_eq!(editor_text(&session).trim_end(), original);
    let rewritten = session
        .script(
            "const o = document.querySelector('[data-testid=rewrite-output]').cloneNode(true); o.querySelectorAll('del').forEach(d => d.remove()); return o.textContent;",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    session.click_css("[data-testid=rewrite-accept]", Duration::from_secs(5));
    let accepted = editor_text(&session);
    assert_eq!(accepted.trim_end(), rewritten.trim_end());
    assert_ne!(accepted.trim_end(), original);
    // one undo step brings the original back
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(5));
    session.send_keys(&editor, &format!("{KEY_CONTROL}z"));
    assert_eq!(editor_text(&session).trim_end(), original);
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
    let text = session.script(
        "return document.querySelector('.cm-content').innerText;",
        json!([]),
    );
    let result = invoke(
        &session,
        "save_document",
        json!({"path": path, "text": text}),
    );
    assert!(result.get("error").is_none(), "{result}");
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(on_disk.trim_end(), editor_text(&session).trim_end());
    assert!(on_disk.contains("A line to keep."));
    screenshot(&session, "saved");
    // a path the writer never chose (nor the app listed) is refused, and nothing is written
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join("planted.md");
    for (command, args) in [
        ("save_document", json!({"path": elsewhere, "text": "x"})),
        ("open_document", json!({"path": "/etc/passwd.txt"})),
        ("set_adapter", json!({"path": outside.path()})),
        ("dataset_report", json!({"paths": [outside.path()]})),
    ] {
        let refused = invoke(&session, command, args);
        assert_eq!(
            refused["error"]["kind"], "path_not_allowed",
            "{command}: {refused}"
        );
    }
    assert!(!elsewhere.exists());
}

#[test]
fn a_hostile_or_truncated_model_file_is_refused_by_kind_and_the_app_keeps_working() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    let bad = home.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let real = std::fs::read(default_model()).unwrap();
    let truncated = bad.join("truncated.gguf");
    std::fs::write(&truncated, &real[..real.len() / 3]).unwrap();
    // a header that claims 2^62 tensors and a 1 TiB metadata string
    let hostile = bad.join("hostile.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend((1u64 << 62).to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(4u64.to_le_bytes());
    bytes.extend(b"name");
    bytes.extend(8u32.to_le_bytes()); // a string value
    bytes.extend((1u64 << 40).to_le_bytes());
    bytes.extend(b"short");
    std::fs::write(&hostile, bytes).unwrap();
    for file in [&truncated, &hostile] {
        let imported = invoke(&session, "import_model", json!({"path": file}));
        assert_eq!(imported["error"]["kind"], "bad_model_file", "{imported}");
        let loaded = invoke(
            &session,
            "load_model",
            json!({"spec": file, "device": "cpu", "onEvent": "__channel__"}),
        );
        assert_eq!(loaded["error"]["kind"], "bad_model_file", "{loaded}");
        let message = loaded["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&*file.to_string_lossy()), "{message}");
    }
    // the model that was loaded still is, and still answers
    let status = invoke(&session, "app_status", json!({}));
    let model = status["ok"]["model"]["name"].as_str().unwrap_or_default();
    assert!(model.to_lowercase().contains("smol"), "{status}");
    // a model whose chat template would need a terabyte to render: checked in a child
    // process, it loads with ChatML standing in, and says why
    let bomb = bad.join("template-bomb.gguf");
    penwright_e2e::with_chat_template(penwright_e2e::TEMPLATE_BOMB, &bomb);
    let loaded = invoke(
        &session,
        "load_model",
        json!({"spec": bomb, "device": "cpu", "onEvent": "__channel__"}),
    );
    let note = loaded["ok"]["templateNote"].as_str().unwrap_or_default();
    assert!(
        note.contains("needs more than 1024 MB") && note.contains("ChatML stands in"),
        "{loaded}"
    );
    let reply = invoke(
        &session,
        "complete",
        json!({"prefix": "The ship left the harbour at", "suffix": "", "requestId": 1}),
    );
    assert!(reply["ok"]["completion"].is_string(), "{reply}");
    screenshot(&session, "hostile-model-refused");
}

#[test]
fn an_old_windows_1252_file_opens_when_asked_and_saves_back_in_its_encoding() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let path = home.path().join("old.txt");
    // listed among the recent files while it was UTF-8; then an older editor rewrote it
    std::fs::write(&path, "placeholder").unwrap();
    let (_driver, session) = open_app(home.path());
    let listed = invoke(&session, "open_document", json!({"path": path}));
    assert!(listed.get("error").is_none(), "{listed}");
    std::fs::write(&path, b"Caf\xe9 cr\xe8me, \x805.").unwrap();
    session.click_css("[data-testid=btn-recent]", Duration::from_secs(10));
    session.click_css("[data-testid=recent-item]", Duration::from_secs(10));
    // never silently: the writer is asked
    session.click_css("[data-testid=encoding-open]", Duration::from_secs(10));
    session.wait_until(
        "the file's text",
        "return document.querySelector('.cm-content').innerText.includes('Café crème, €5.');",
        Duration::from_secs(10),
    );
    let badge =
        session.text(&session.wait_for("[data-testid=doc-encoding]", Duration::from_secs(5)));
    assert_eq!(badge, "Windows-1252");
    screenshot(&session, "windows-1252");
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(5));
    session.click(&editor);
    session.send_keys(&editor, &format!("{KEY_CONTROL}{KEY_END}"));
    session.send_keys(&editor, " Déjà vu.");
    session.send_keys(&editor, &format!("{KEY_CONTROL}s"));
    let saved = |what: &str, check: &dyn Fn(&[u8]) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let bytes = std::fs::read(&path).unwrap();
            if check(&bytes) {
                return bytes;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {bytes:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // saved back in Windows-1252, byte for byte where nothing changed
    saved("the Windows-1252 save", &|b| {
        b.starts_with(b"Caf\xe9 cr\xe8me, \x805.") && b.ends_with(b" D\xe9j\xe0 vu.")
    });
    // a character Windows-1252 cannot store: the writer is asked to switch to UTF-8
    session.send_keys(&editor, " ✓");
    session.send_keys(&editor, &format!("{KEY_CONTROL}s"));
    session.click_css("[data-testid=encoding-utf8]", Duration::from_secs(10));
    let bytes = saved("the UTF-8 save", &|b| {
        std::str::from_utf8(b).is_ok_and(|t| t.ends_with("✓"))
    });
    assert!(
        String::from_utf8(bytes)
            .unwrap()
            .starts_with("Café crème, €5. Déjà vu.")
    );
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
        // autosave runs every few seconds; it may have caught the words half typed, so wait
        // for a copy of all of them
        let recovery = home.path().join("recovery/recovery.json");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&recovery).is_ok_and(|t| t.contains("must survive a crash."))
        {
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
    session.click_css("[data-testid=recovery-restore]", Duration::from_secs(10));
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
    let started = invoke(
        &session,
        "finetune_start",
        json!({"config": {"paths": [data], "preset": "quick", "steps": 3, "seqLen": 32,
            "batch": 1, "learningRate": 0.001, "evalEvery": 0, "dropout": 0.1,
            "precision": "f16"}}),
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
    session.script("window.__errs = []; window.addEventListener('unhandledrejection', e => window.__errs.push('rejection: ' + (e.reason && (e.reason.stack || e.reason)))); window.addEventListener('error', e => window.__errs.push('error: ' + e.message));", json!([]));
    session.click_css("[data-testid=open-finetune]", Duration::from_secs(10));
    let adapters = invoke(&session, "list_adapters", json!({}));
    eprintln!("adapters: {adapters}");
    assert!(
        adapters["ok"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["tunedPpl"].is_number()),
        "{adapters}"
    );
    let before_after =
        session.wait_for("[data-testid=finetune-ppl-after]", Duration::from_secs(60));
    eprintln!("tuned perplexity shown: {}", session.text(&before_after));
    // beside the figures: the base and the tuned model continuing the same held-out passage
    let comparison = session.wait_until(
        "the before/after continuations",
        "const b = document.querySelector('[data-testid=finetune-comparison-base]');
         const t = document.querySelector('[data-testid=finetune-comparison-tuned]');
         const p = document.querySelector('[data-testid=finetune-comparison-prompt]');
         return b && t && p && [p.textContent, b.textContent, t.textContent];",
        Duration::from_secs(30),
    );
    eprintln!("comparison: {comparison}");
    assert!(comparison[0].as_str().unwrap().split_whitespace().count() >= 5);
    assert!(comparison[1].as_str().unwrap().len() > 3 && comparison[2].as_str().unwrap().len() > 3);
    session.script(
        "document.querySelector('[data-testid=finetune-comparison]').scrollIntoView();",
        json!([]),
    );
    screenshot(&session, "finetune-before-after");
    // what the model learns from, before a job starts: the pane's preview data
    let report = invoke(&session, "dataset_report", json!({"paths": [data]}))["ok"].clone();
    let samples = report["samples"].as_array().cloned().unwrap_or_default();
    assert!(!samples.is_empty(), "{report}");
    assert!(
        samples[0].as_str().unwrap().split_whitespace().count() >= 20,
        "{report}"
    );
    let held_out = report["heldoutNames"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        held_out.len(),
        report["heldoutDocuments"].as_u64().unwrap() as usize
    );
    // perplexity is measured on held-out tokens, never more than there are
    let evaluated = report["evaluatedTokens"].as_u64().unwrap_or(0);
    assert!(
        evaluated > 0 && evaluated <= report["heldoutTokens"].as_u64().unwrap(),
        "{report}"
    );
    let log = std::fs::read_to_string(job_dir.join("job.jsonl")).unwrap();
    let steps = log
        .lines()
        .filter(|l| l.contains("\"event\":\"step\""))
        .count();
    assert_eq!(steps, 3, "{log}");
    // the advanced settings reach the job: the base model in f16, the adapter's dropout
    assert!(
        log.lines()
            .any(|l| l.contains("\"event\":\"device\"") && l.contains("\"precision\":\"f16\"")),
        "{log}"
    );
    let adapter_config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(job_dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(adapter_config["lora_dropout"], 0.1, "{adapter_config}");
    // and the pane says where the job trained, with the precision
    let device = session.script(
        "return document.querySelector('[data-testid=finetune-device]').textContent;",
        json!([]),
    );
    assert!(
        device
            .as_str()
            .is_some_and(|d| d.contains("base model in f16")),
        "{device}"
    );
    let adapters = session.wait_for("[data-testid=finetune-adapter]", Duration::from_secs(30));
    eprintln!("adapter listed: {}", session.text(&adapters));
    // the chart of the finished job: uPlot's canvas with the loss series
    let chart = session.script(
        "const host = document.querySelector('[data-testid=finetune-chart]');
         return {boxHidden: host.parentElement.hidden, width: host.clientWidth,
                 canvas: !!host.querySelector('canvas'), legend: host.innerText, errors: window.__errs, language: navigator.language};",
        json!([]),
    );
    eprintln!("chart: {chart}");
    session.wait_until(
        "the loss chart to be drawn",
        "return !!document.querySelector('[data-testid=finetune-chart] canvas');",
        Duration::from_secs(10),
    );
    screenshot(&session, "finetune");
    // the advanced settings: dropout among the numbers, the precision choice below them
    session.script(
        "const d = document.querySelector('[data-testid=finetune-advanced]'); d.open = true; d.scrollIntoView();",
        json!([]),
    );
    session.wait_for(
        "[data-testid=finetune-precision-bf16]",
        Duration::from_secs(5),
    );
    screenshot(&session, "finetune-advanced");
    // an adapter trained elsewhere (a cluster trainer's PEFT output) joins the list
    let elsewhere = home.path().join("from-the-cluster");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(job_dir.join(file), elsewhere.join(file)).unwrap();
    }
    let imported = invoke(&session, "import_adapter", json!({"path": elsewhere}));
    assert_eq!(imported["ok"]["name"], "from-the-cluster", "{imported}");
    let listed = invoke(&session, "list_adapters", json!({}));
    assert_eq!(listed["ok"].as_array().map(Vec::len), Some(2), "{listed}");
    // it has no run of its own to report perplexity: the pane offers to measure it, on
    // held-out text such as the export's heldout.jsonl
    let listed_imported = |listed: &serde_json::Value| {
        listed["ok"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "from-the-cluster")
            .cloned()
            .unwrap()
    };
    assert!(listed_imported(&listed)["basePpl"].is_null(), "{listed}");
    let heldout = home.path().join("heldout.jsonl");
    let text = std::fs::read_to_string(data.join("part0.md")).unwrap();
    std::fs::write(&heldout, format!("{}\n", json!({ "text": text }))).unwrap();
    let measured = invoke(
        &session,
        "measure_adapter",
        json!({"path": imported["ok"]["path"], "paths": [heldout], "onEvent": "__channel__"}),
    );
    eprintln!("measured: {measured}");
    let (base, tuned) = (
        measured["ok"]["basePpl"].as_f64().unwrap(),
        measured["ok"]["tunedPpl"].as_f64().unwrap(),
    );
    // the adapter changes what the model predicts
    assert!(
        base.is_finite() && tuned.is_finite() && (tuned - base).abs() > 1e-6,
        "{measured}"
    );
    let listed = invoke(&session, "list_adapters", json!({}));
    assert_eq!(listed_imported(&listed)["tunedPpl"].as_f64(), Some(tuned));
    // a path the writer never chose is refused
    let refused = invoke(
        &session,
        "measure_adapter",
        json!({"path": imported["ok"]["path"], "paths": ["/etc/passwd"], "onEvent": "__channel__"}),
    );
    assert_eq!(refused["error"]["kind"], "path_not_allowed", "{refused}");
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

#[test]
fn a_model_downloads_from_the_hub_with_pause_and_resume_and_is_listed() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    // a home whose models folder is its own (downloads land there), with the default
    // model linked in so the app starts on it
    let home = tempfile::tempdir().unwrap();
    let model = default_model();
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let default_dir = model.parent().unwrap();
    std::os::unix::fs::symlink(default_dir, models.join(default_dir.file_name().unwrap())).unwrap();
    // a local Hub serving a GGUF repository (the default model's file under another name)
    let sha = penwright_models::Catalog::embedded().default_entry().files[0]
        .sha256
        .clone()
        .unwrap();
    let repo = "penwright-test/SmolLM2-135M-GGUF";
    let file = "smollm2-135m-test.Q4_1.gguf";
    let hub = penwright_e2e::hub::HubServer::start(
        [(
            repo.to_string(),
            vec![penwright_e2e::hub::HubFile {
                name: file.into(),
                path: model.clone(),
                sha256: sha.clone(),
            }],
        )]
        .into(),
        8 << 20,
    );
    let mut env = app_env(home.path());
    env.push(("PENWRIGHT_HF_ENDPOINT", PathBuf::from(&hub.endpoint)));
    let driver = Driver::start(&env);
    let session = Session::new(&driver, &binary("penwright-app"));
    session.wait_for("[data-testid=open-models]", Duration::from_secs(60));
    // the pane opens and re-renders its buttons as the offer and the download change state:
    // each click finds its button afresh (see `click_css`)
    session.click_css("[data-testid=open-models]", Duration::from_secs(10));
    let input = session.wait_for("[data-testid=models-repo]", Duration::from_secs(10));
    session.send_keys(&input, repo);
    session.wait_until(
        "the repository typed in",
        &format!("return document.querySelector('[data-testid=models-repo]').value === '{repo}';"),
        Duration::from_secs(10),
    );
    session.click_css("[data-testid=models-find]", Duration::from_secs(10));
    let offered = format!("[data-testid=models-offer-item][data-file='{file}']");
    // the repository's files, or the error the pane shows instead
    let shown = session.wait_until(
        "the repository's files",
        &format!(
            "if (document.querySelector(\"{offered}\")) return 'offered';
             const e = document.querySelector('[data-testid=models-error]');
             return e && !e.hidden && e.textContent;"
        ),
        Duration::from_secs(30),
    );
    assert_eq!(
        shown,
        json!("offered"),
        "the Models pane shows instead: {shown}"
    );
    // read in the page: the list may re-render under a held element reference
    let text = session.script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
        json!([offered]),
    );
    eprintln!("offered: {text}");
    // before the download: whether it runs here, with the numbers behind the verdict
    let fit = session.script(
        "const f = document.querySelector(arguments[0] + ' [data-testid=models-fit]'); return f && [f.dataset.fits, f.textContent, f.title];",
        json!([offered]),
    );
    eprintln!("fit: {fit}");
    assert_eq!(fit[0], "yes", "a small model fits this machine: {fit}");
    assert!(fit[2].as_str().unwrap().contains("free now"), "{fit}");
    let catalog_fits = session.script(
        "return [...document.querySelectorAll('[data-testid=models-catalog-item] [data-testid=models-fit]')].map(f => f.dataset.fits);",
        json!([]),
    );
    assert!(
        catalog_fits.as_array().is_some_and(|a| !a.is_empty()),
        "catalog suggestions carry a fit label: {catalog_fits}"
    );
    screenshot(&session, "models-fit");
    session.click_css(
        "[data-testid=models-offer] [data-testid=models-download]:not([disabled])",
        Duration::from_secs(10),
    );
    // pause once some megabytes are in
    session.wait_until(
        "download progress",
        "const t = document.querySelector('[data-testid=models-offer] .progress-track'); return t && Number(t.getAttribute('aria-valuenow')) >= 10;",
        Duration::from_secs(60),
    );
    session.click_css(
        "[data-testid=models-pause]:not([disabled])",
        Duration::from_secs(10),
    );
    session.wait_for("[data-testid=models-resume]", Duration::from_secs(10));
    let part = models
        .join("hub/penwright-test--SmolLM2-135M-GGUF")
        .join(format!("{file}.part"));
    let paused_at = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let full = std::fs::metadata(&model).unwrap().len();
    eprintln!("paused at {paused_at} of {full} bytes");
    assert!(
        paused_at > 0 && paused_at < full,
        "a partial file stays while paused: {paused_at}"
    );
    screenshot(&session, "models-paused");
    session.click_css(
        "[data-testid=models-resume]:not([disabled])",
        Duration::from_secs(10),
    );
    session.wait_for(
        "[data-testid=models-installed-item][data-origin=hub]",
        Duration::from_secs(120),
    );
    let installed = models
        .join("hub/penwright-test--SmolLM2-135M-GGUF")
        .join(file);
    assert_eq!(
        penwright_models::sha256_file(&installed).unwrap().0,
        sha,
        "the downloaded file is the served file"
    );
    assert!(!part.exists(), "the partial file was renamed into place");
    let resumed = hub
        .requests()
        .iter()
        .any(|r| r.path.contains("/resolve/") && r.range.is_some());
    assert!(resumed, "resuming asks for the rest with a Range request");
    let listed = session.text(&session.wait_for(
        "[data-testid=models-installed-item][data-origin=hub]",
        Duration::from_secs(5),
    ));
    eprintln!("listed: {listed}");
    assert!(
        listed.contains("Q4_1") && listed.contains("llama"),
        "{listed}"
    );
    screenshot(&session, "models");
}

#[test]
fn a_remote_engine_answers_ghost_text_and_summaries() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let key = "app-remote-key-789";
    let server = penwright_e2e::serve::start_server(&["--api-key", key]);
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    session.click_css("[data-testid=open-models]", Duration::from_secs(10));
    let url = session.wait_for("[data-testid=remote-url]", Duration::from_secs(10));
    // the webview may remember an earlier run's server
    session.clear(&url);
    session.send_keys(&url, &server.base_url);
    let key_input = session.wait_for("[data-testid=remote-key]", Duration::from_secs(10));
    session.send_keys(&key_input, key);
    session.click_css("[data-testid=remote-connect]", Duration::from_secs(10));
    session.wait_until(
        "the server's models to be listed",
        "const s = document.querySelector('[data-testid=remote-model]'); return s && !s.hidden && s.options.length > 0;",
        Duration::from_secs(30),
    );
    session.click_css("[data-testid=remote-use]", Duration::from_secs(10));
    let label = session.wait_until(
        "the status bar to name the remote model",
        "const s = document.querySelector('[data-testid=status-model]'); return s && /^Remote · /.test(s.textContent) && s.textContent;",
        Duration::from_secs(30),
    );
    assert_eq!(
        label.as_str().unwrap(),
        format!("Remote · {}", server.model_id)
    );
    screenshot(&session, "remote-engine");
    session.click_css("[data-testid=pane-close]", Duration::from_secs(10));

    // requests, not completions: autocomplete drops its stream once the stop policy is met
    let served = |s: &serde_json::Value| s["requests"].as_u64().unwrap();
    let before = served(&server.stats(key));
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click(&editor);
    session.send_keys(&editor, "The quick brown fox jumps over the");
    let ghost = session.wait_for("[data-testid=ghost-text]", Duration::from_secs(60));
    let suggestion = session.text(&ghost);
    screenshot(&session, "remote-ghost-text");
    eprintln!("remote suggestion: {suggestion:?}");
    assert!(!suggestion.trim().is_empty());
    let after_ghost = served(&server.stats(key));
    assert!(after_ghost > before, "the server answered no completion");

    session.send_keys(
        &editor,
        " lazy dog. Penwright is a writing app that can run its model on a server the writer \
         chooses. It suggests the next words while you type and summarizes long drafts.",
    );
    session.click_css("[data-testid=open-summarize]", Duration::from_secs(10));
    session.click_css("[data-testid=summarize-run]", Duration::from_secs(10));
    let summary = session.wait_until(
        "a streamed summary from the remote engine",
        "const o = document.querySelector('[data-testid=summarize-output]'); return o && o.textContent.trim().split(/\\s+/).length >= 3 && o.textContent;",
        Duration::from_secs(180),
    );
    eprintln!("remote summary: {summary}");
    assert!(
        served(&server.stats(key)) > after_ghost,
        "the summary did not come from the server"
    );
    screenshot(&session, "remote-summarize");

    // one task back on the local model, the others still remote
    session.click_css("[data-testid=open-models]", Duration::from_secs(10));
    session.script(
        "const s = document.querySelector('[data-testid=remote-tasks]'); s.value = 'summarize'; s.dispatchEvent(new Event('change'));",
        serde_json::json!([]),
    );
    session.click_css("[data-testid=remote-local]", Duration::from_secs(10));
    let label = session.wait_until(
        "the status bar to name the local model and the remote tasks",
        "const s = document.querySelector('[data-testid=status-model]'); return s && / \\+ remote: /.test(s.textContent) && s.textContent;",
        Duration::from_secs(30),
    );
    assert!(
        label
            .as_str()
            .unwrap()
            .ends_with("+ remote: autocomplete, translate, rewrite"),
        "{label}"
    );
    let now = session
        .text(&session.wait_for("[data-testid=remote-now-summarize]", Duration::from_secs(5)));
    assert!(now.contains("the local model"), "{now}");
    screenshot(&session, "remote-per-task");
    session.click_css("[data-testid=pane-close]", Duration::from_secs(10));
    let before_local = served(&server.stats(key));
    session.click_css("[data-testid=open-summarize]", Duration::from_secs(10));
    session.click_css("[data-testid=summarize-run]", Duration::from_secs(10));
    session.wait_until(
        "a summary from the local model",
        "const s = document.querySelector('[data-testid=summarize-stats]'); return s && /tokens read/.test(s.textContent);",
        Duration::from_secs(180),
    );
    assert_eq!(
        served(&server.stats(key)),
        before_local,
        "the summary went to the server after summarize was set back to the local model"
    );
    // ghost text still goes to the server
    session.click_css("[data-testid=pane-close]", Duration::from_secs(10));
    session.click(&editor);
    session.send_keys(&editor, &format!("{KEY_CONTROL}{KEY_END}"));
    session.send_keys(&editor, " The server");
    session.wait_for("[data-testid=ghost-text]", Duration::from_secs(60));
    assert!(
        served(&server.stats(key)) > before_local,
        "autocomplete left the server along with summarize"
    );

    // the server goes away: ghost text shows nothing and the status bar says why
    drop(server);
    session.send_keys(&editor, " went away");
    let reason = session.wait_until(
        "the status bar to say why there are no suggestions",
        "const s = document.querySelector('[data-testid=status-suggest]'); return s && s.textContent.startsWith('No suggestions:') && s.textContent;",
        Duration::from_secs(60),
    );
    assert!(
        reason
            .as_str()
            .unwrap_or_default()
            .contains("connection refused"),
        "{reason}"
    );
    assert!(
        session.find("[data-testid=ghost-text]").is_none(),
        "a suggestion showed although its server is gone"
    );
    screenshot(&session, "remote-engine-gone");

    // back to the local model for every task: the app forgets the server (the next start
    // uses no remote)
    session.click_css("[data-testid=open-models]", Duration::from_secs(10));
    session.script(
        "const s = document.querySelector('[data-testid=remote-tasks]'); s.value = 'all'; s.dispatchEvent(new Event('change'));",
        serde_json::json!([]),
    );
    session.click_css("[data-testid=remote-local]", Duration::from_secs(10));
    session.wait_until(
        "the status bar to name the local model",
        "const s = document.querySelector('[data-testid=status-model]'); return s && /smol/i.test(s.textContent) && !/^Remote/.test(s.textContent);",
        Duration::from_secs(30),
    );
    // the reason belonged to the server: the local model starts with a clean slate
    session.wait_until(
        "the status bar to drop the server's failure",
        "const s = document.querySelector('[data-testid=status-suggest]'); return !!s && s.textContent === '';",
        Duration::from_secs(10),
    );
}

#[test]
fn the_app_serves_its_model_to_other_programs_when_turned_on() {
    let _one = ONE_APP.lock().unwrap_or_else(|e| e.into_inner());
    let home = private_home();
    let (_driver, session) = open_app(home.path());
    session.click_css("[data-testid=open-models]", Duration::from_secs(10));
    let port = session.wait_for("[data-testid=serve-port]", Duration::from_secs(10));
    assert!(
        session
            .find("[data-testid=serve-details]:not([hidden])")
            .is_none(),
        "the server runs before it was turned on"
    );
    // any free port, loopback only
    session.clear(&port);
    session.send_keys(&port, "0");
    session.click_css(
        "label.switch:has([data-testid=serve-on])",
        Duration::from_secs(5),
    );
    let base_url = session.wait_until(
        "the server's address",
        "const a = document.querySelector('[data-testid=serve-address]'); return a && a.textContent.startsWith('http://127.0.0.1:') && a.textContent;",
        Duration::from_secs(30),
    );
    let base_url = base_url.as_str().unwrap().to_string();
    let key = session.text(&session.wait_for("[data-testid=serve-key]", Duration::from_secs(5)));
    // the page itself never scrolls: only the pane does (a focused switch once scrolled
    // the whole window out of view)
    let scrolled = session.script(
        "return document.querySelector('.app').scrollTop + document.scrollingElement.scrollTop;",
        json!([]),
    );
    assert_eq!(scrolled, json!(0), "the window scrolled");
    assert!(key.starts_with("pw-"), "{key}");
    session.script(
        "document.querySelector('[data-testid=serve-details]').scrollIntoView({block: 'end'});",
        json!([]),
    );
    screenshot(&session, "serve");

    // a client with the key gets the loaded model; one without is refused
    let models: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{base_url}/models"))
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .expect("list the served models")
            .into_body()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let id = models["data"][0]["id"].as_str().unwrap().to_string();
    assert!(id.to_lowercase().contains("smol"), "{models}");
    let refused = ureq::get(&format!("{base_url}/models")).call();
    assert!(
        matches!(refused, Err(ureq::Error::StatusCode(401))),
        "{refused:?}"
    );
    let body = json!({"model": id, "prompt": "The capital of France is", "max_tokens": 4});
    let completion: serde_json::Value = serde_json::from_str(
        &ureq::post(&format!("{base_url}/completions"))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("a completion from the app's server")
            .into_body()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    eprintln!("served completion: {completion}");
    assert!(completion["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    // the app's own tasks still run beside it
    let editor = session.wait_for("[data-testid=editor]", Duration::from_secs(10));
    session.click_css("[data-testid=pane-close]", Duration::from_secs(10));
    session.click(&editor);
    session.send_keys(&editor, "The quick brown fox jumps over the");
    session.wait_for("[data-testid=ghost-text]", Duration::from_secs(60));

    // turned off: nothing listens there any more, and the setting is remembered
    session.click_css("[data-testid=open-models]", Duration::from_secs(10));
    session.click_css(
        "label.switch:has([data-testid=serve-on])",
        Duration::from_secs(5),
    );
    session.wait_until(
        "the server to stop",
        "const d = document.querySelector('[data-testid=serve-details]'); return d && d.hidden;",
        Duration::from_secs(10),
    );
    let gone = ureq::get(&format!("{base_url}/models"))
        .header("Authorization", format!("Bearer {key}"))
        .call();
    assert!(
        matches!(
            gone,
            Err(ureq::Error::Io(_)) | Err(ureq::Error::ConnectionFailed)
        ),
        "{gone:?}"
    );
    let stored = session.script(
        "return JSON.parse(localStorage.getItem('penwright.settings')).serve;",
        json!([]),
    );
    assert_eq!(stored, json!({"on": false, "port": 0, "network": false}));
}
