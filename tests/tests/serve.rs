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
