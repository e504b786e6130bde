//! `penwright serve` on the real default model, driven by the official `openai` Python client
//! (installed by `make setup` into Penwright's Python environment).

use std::process::Command;

use penwright_e2e::serve::{Server, start_server};
use penwright_e2e::{binary, default_model, python_with, repo_root};

#[test]
fn the_openai_client_drives_penwright_serve() {
    default_model();
    let python = python_with("openai");
    let mut server = start_server(&["--api-key", "test-key-123", "--max-tokens", "512"]);
    let out = Command::new(python)
        .arg(repo_root().join("tests/openai/client_checks.py"))
        .args([&server.base_url, "test-key-123", &server.model_id])
        .output()
        .expect("run the openai client checks");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai client checks failed:\n{stdout}"
    );
    let seen: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap();
    eprintln!("{seen}");
    assert_eq!(seen["cancelled"], 1);
    // the server outlived every bad request
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
}

#[test]
fn serve_refuses_a_network_address_without_a_key() {
    let out = Command::new(binary("penwright"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .env_remove("PENWRIGHT_API_KEY")
        .output()
        .expect("run penwright serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve on 0.0.0.0 without a key"),
        "{stderr}"
    );
}

/// `penwright` with `--endpoint` against a server: the same JSON as with a local model.
fn remote(server: &Server, key: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary("penwright"))
        .args(args)
        .args(["--endpoint", &server.base_url])
        .args(["--remote-model", &server.model_id])
        .env("PENWRIGHT_API_KEY", key)
        .output()
        .expect("run penwright")
}

fn last_json(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

#[test]
fn the_cli_uses_penwright_serve_as_a_remote_engine() {
    default_model();
    let key = "remote-key-456";
    let server = start_server(&["--api-key", key]);

    let out = remote(
        &server,
        key,
        &[
            "complete",
            "--prefix",
            "The quick brown fox jumps over the",
            "--json",
        ],
    );
    let completion = last_json(&out);
    let text = completion["completion"].as_str().unwrap();
    eprintln!("remote completion {text:?}, {completion}");
    assert!(!text.trim().is_empty(), "{completion}");
    assert!(!text.contains('\n'), "the stop policy holds: {text:?}");

    let chapter = repo_root().join("tests/data/moby-dick-ch1.txt");
    let out = remote(
        &server,
        key,
        &[
            "summarize",
            "--file",
            chapter.to_str().unwrap(),
            "--length",
            "short",
            "--json",
        ],
    );
    let summary = last_json(&out);
    eprintln!("remote summary: {summary}");
    assert!(
        summary["summary"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count()
            >= 5
    );
    assert!(
        summary["chunks"].as_u64().unwrap() >= 2,
        "map-reduce over the remote model"
    );

    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("note.md");
    std::fs::write(
        &doc,
        "# Greeting\n\nHello, my friend.\n\n- one cat\n- two dogs\n",
    )
    .unwrap();
    let out = remote(
        &server,
        key,
        &[
            "translate",
            "--file",
            doc.to_str().unwrap(),
            "--to",
            "fr",
            "--json",
        ],
    );
    let translation = last_json(&out);
    eprintln!("remote translation: {translation}");
    let text = translation["text"].as_str().unwrap();
    assert!(
        text.starts_with("# "),
        "the heading stays a heading: {text:?}"
    );
    assert_eq!(
        text.matches("\n- ").count(),
        2,
        "the list stays a list: {text:?}"
    );

    // a rewrite over the remote model keeps the structure too, and a Retry (attempt 1)
    // samples with a seed the server honours
    let rewrite = |attempt: &str| {
        last_json(&remote(
            &server,
            key,
            &[
                "rewrite",
                "--file",
                doc.to_str().unwrap(),
                "--preset",
                "formal",
                "--attempt",
                attempt,
                "--json",
            ],
        ))
    };
    let rewritten = rewrite("0");
    eprintln!("remote rewrite: {rewritten}");
    let text = rewritten["text"].as_str().unwrap();
    assert!(
        text.starts_with("# ") && text.matches("\n- ").count() == 2,
        "{text:?}"
    );
    assert_eq!(rewritten["blocks"], 4);
    assert_eq!(
        rewrite("3")["text"],
        rewrite("3")["text"],
        "the same seed, the same take"
    );

    let stats = server.stats(key);
    assert!(stats["completed"].as_u64().unwrap() >= 8, "{stats}");
    assert_eq!(stats["failed"], 0, "{stats}");

    // each failure named: a wrong key, a model the server does not have, nobody listening
    let out = remote(
        &server,
        "wrong",
        &["complete", "--prefix", "Hello", "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("HTTP 401"),
        "{stderr}"
    );
    let out = Command::new(binary("penwright"))
        .args([
            "complete",
            "--prefix",
            "Hello",
            "--endpoint",
            &server.base_url,
        ])
        .args(["--remote-model", "gpt-nothing"])
        .env("PENWRIGHT_API_KEY", key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("has no model `gpt-nothing`"),
        "{stderr}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(binary("penwright"))
        .args(["complete", "--prefix", "Hello"])
        .args(["--endpoint", &format!("http://127.0.0.1:{port}/v1")])
        .args(["--remote-model", "m"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("connection refused"),
        "{stderr}"
    );
}

/// The engine sends each task to the engine chosen for it: one task to a server, the others
/// to the local model, and back.
#[test]
fn each_task_goes_to_the_engine_chosen_for_it() {
    use penwright_engine::device::DeviceChoice;
    use penwright_engine::remote::RemoteEndpoint;
    use penwright_engine::tasks::autocomplete::AutocompleteSettings;
    use penwright_engine::tasks::summarize::SummaryLength;
    use penwright_engine::worker::{EngineHandle, TaskKind, request};

    let model = default_model();
    let key = "per-task-key-321";
    let server = start_server(&["--api-key", key]);
    let served = || server.stats(key)["requests"].as_u64().unwrap();
    let engine = EngineHandle::spawn();
    engine
        .submit(request::Load {
            model: Some(model.display().to_string()),
            device: DeviceChoice::Cpu,
            options: Default::default(),
        })
        .finish_blocking(|_| {})
        .expect("load the default model");
    let endpoint = RemoteEndpoint {
        base_url: server.base_url.clone(),
        model: server.model_id.clone(),
        api_key: Some(key.into()),
    };
    let refused = engine
        .submit(request::UseRemote {
            endpoint: endpoint.clone(),
            tasks: Vec::new(),
        })
        .finish_blocking(|_| {})
        .unwrap_err();
    assert!(refused.to_string().contains("no task"), "{refused}");
    engine
        .submit(request::UseRemote {
            endpoint,
            tasks: vec![TaskKind::Summarize],
        })
        .finish_blocking(|_| {})
        .expect("connect the server for summaries");

    let text = "The whale surfaced beside the ship at dawn. The crew watched it for an hour \
                before it dove again. Nobody spoke until the captain called them back to work.";
    let summarize = || {
        engine
            .submit(request::Summarize {
                text: text.into(),
                length: SummaryLength::Short,
                bullets: false,
            })
            .finish_blocking(|_| {})
            .expect("summarize")
    };
    let complete = || {
        engine
            .submit(request::Complete {
                prefix: "The quick brown fox jumps over the".into(),
                suffix: String::new(),
                settings: AutocompleteSettings::default(),
            })
            .finish_blocking(|_| {})
            .expect("complete")
    };
    let start = served();
    let summary = summarize();
    assert!(!summary.summary.trim().is_empty());
    let after_summary = served();
    assert!(
        after_summary > start,
        "the summary did not go to the server"
    );
    let suggestion = complete();
    eprintln!("local suggestion: {:?}", suggestion.completion);
    assert_eq!(served(), after_summary, "autocomplete went to the server");

    engine
        .submit(request::UseLocal {
            tasks: vec![TaskKind::Summarize],
        })
        .finish_blocking(|_| {})
        .unwrap();
    summarize();
    assert_eq!(
        served(),
        after_summary,
        "the summary went to the server after summarize was set back to local"
    );
}

/// llama.cpp's llama-server, built by `scripts/reference/install-llama-server.sh`, as a
/// child process on `model` (killed when dropped). The opt-in tests below use it as a
/// second real engine beside `penwright serve`.
struct LlamaServer {
    child: std::process::Child,
    base_url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn llama_server_dir() -> std::path::PathBuf {
    std::env::var_os("LLAMA_SERVER_DIR").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/penwright/llama-server")
        },
        Into::into,
    )
}

fn start_llama_server(model: &std::path::Path, key: &str) -> LlamaServer {
    let bin = llama_server_dir().join("bin/llama-server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/reference/install-llama-server.sh",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--api-key",
            key,
            "--alias",
            "smollm2",
            "-c",
            "4096",
            "-t",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start llama-server");
    let server = LlamaServer {
        child,
        base_url: format!("http://127.0.0.1:{port}/v1"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while ureq::get(&format!("http://127.0.0.1:{port}/health"))
        .call()
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "llama-server did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    server
}

#[test]
#[ignore = "needs llama-server: scripts/reference/install-llama-server.sh"]
fn the_cli_uses_llama_server_as_a_remote_engine() {
    let key = "llama-server-key-1";
    let server = start_llama_server(&default_model(), key);
    let run = |key: &str, args: &[&str]| {
        Command::new(binary("penwright"))
            .args(args)
            .args(["--endpoint", &server.base_url, "--remote-model", "smollm2"])
            .env("PENWRIGHT_API_KEY", key)
            .output()
            .expect("run penwright")
    };
    for suffix in [None, Some(" and ran into the woods.")] {
        let mut args = vec![
            "complete",
            "--prefix",
            "The quick brown fox jumps over the",
            "--json",
        ];
        if let Some(s) = suffix {
            args.extend(["--suffix", s]);
        }
        let completion = last_json(&run(key, &args));
        eprintln!("llama-server completion (suffix {suffix:?}): {completion}");
        assert!(!completion["completion"].as_str().unwrap().trim().is_empty());
    }
    let chapter = repo_root().join("tests/data/moby-dick-ch1.txt");
    let summary = last_json(&run(
        key,
        &[
            "summarize",
            "--file",
            chapter.to_str().unwrap(),
            "--length",
            "short",
            "--json",
        ],
    ));
    eprintln!("llama-server summary: {summary}");
    assert!(
        summary["summary"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count()
            >= 5
    );
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("note.md");
    std::fs::write(
        &doc,
        "# Greeting\n\nHello, my friend.\n\n- one cat\n- two dogs\n",
    )
    .unwrap();
    let translation = last_json(&run(
        key,
        &[
            "translate",
            "--file",
            doc.to_str().unwrap(),
            "--to",
            "fr",
            "--json",
        ],
    ));
    eprintln!("llama-server translation: {translation}");
    let text = translation["text"].as_str().unwrap();
    assert!(
        text.starts_with("# ") && text.matches("\n- ").count() == 2,
        "{text:?}"
    );
    let refused = run("wrong", &["complete", "--prefix", "Hello", "--json"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("HTTP 401"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs llama-server: scripts/reference/install-llama-server.sh"]
fn text_after_the_cursor_goes_through_llama_servers_infill() {
    use penwright_engine::remote::{AnswerLimits, RemoteEndpoint, RemoteEngine};
    use std::sync::atomic::AtomicBool;
    let key = "llama-server-key-2";
    let connect = |server: &LlamaServer| {
        RemoteEngine::connect(RemoteEndpoint {
            base_url: server.base_url.clone(),
            model: "smollm2".into(),
            api_key: Some(key.into()),
        })
        .expect("connect to llama-server")
    };
    let infill = |remote: &RemoteEngine| {
        let mut pieces = 0;
        let answer = remote
            .complete(
                "The quick brown fox",
                Some(" over the lazy dog."),
                &AnswerLimits::greedy(8),
                &AtomicBool::new(false),
                &mut |_| {
                    pieces += 1;
                    true
                },
            )
            .expect("an infill");
        eprintln!("infill answer: {answer:?} in {pieces} pieces");
        answer
    };
    // a model with FIM tokens: /infill answers, streamed in llama-server's own framing
    let fim = llama_server_dir().join("smollm2-fim.gguf");
    let server = start_llama_server(&fim, key);
    let remote = connect(&server);
    assert!(
        remote.fills_in_through_infill(),
        "llama-server not recognized"
    );
    let answer = infill(&remote);
    assert!(answer.finish_reason.is_some(), "{answer:?}");
    assert!(answer.completion_tokens.unwrap_or(0) >= 1, "{answer:?}");
    assert!(remote.fills_in_through_infill(), "/infill was refused");
    drop(server);
    // a model without: llama-server refuses /infill (501) and the suffix goes as
    // /completions has it
    let server = start_llama_server(&default_model(), key);
    let remote = connect(&server);
    assert!(remote.fills_in_through_infill());
    let answer = infill(&remote);
    assert!(!answer.text.is_empty(), "{answer:?}");
    assert!(
        !remote.fills_in_through_infill(),
        "/infill was not given up"
    );
}
