//! `penwright serve` as a child process for the tests: started on the default model, its
//! address read from what it prints, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary;

/// A `penwright serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base_url: String,
    pub model_id: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `penwright serve` on the default model (CPU, a free port) with `args`.
pub fn start_server(args: &[&str]) -> Server {
    let child = Command::new(binary("penwright"))
        .args(["serve", "--device", "cpu", "--port", "0"])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start penwright serve");
    let mut server = Server {
        child,
        base_url: String::new(),
        model_id: String::new(),
    };
    let stderr = server.child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[serve] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("penwright serve printed no address within 120 s");
        // "penwright: serving MODEL at http://127.0.0.1:PORT/v1 (Ctrl-C stops)"
        if let Some(rest) = line.strip_prefix("penwright: serving ") {
            let (model_id, rest) = rest.split_once(" at ").expect("serving X at URL");
            server.base_url = rest.split_whitespace().next().expect("URL").to_string();
            server.model_id = model_id.to_string();
            return server;
        }
    }
}

impl Server {
    /// What the server counted (`GET /penwright/stats`).
    pub fn stats(&self, key: &str) -> serde_json::Value {
        let url = self.base_url.trim_end_matches("/v1").to_string() + "/penwright/stats";
        let body = ureq::get(&url)
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .expect("stats")
            .into_body()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }
}
