//! Just enough of the W3C WebDriver protocol to drive the real app through tauri-driver
//! (which hands the session to WebKitWebDriver): sessions, elements, keys, scripts,
//! screenshots.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running tauri-driver, killed on drop.
pub struct Driver {
    child: Child,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    /// Starts tauri-driver on a free port with WebKitWebDriver as the native driver.
    pub fn start<V: AsRef<std::ffi::OsStr>>(envs: &[(&str, V)]) -> Driver {
        assert!(
            std::env::var("DISPLAY").is_ok(),
            "no DISPLAY: run under scripts/with-xvfb.sh (make test does)"
        );
        let port = free_port();
        let native = free_port();
        let mut cmd = Command::new("tauri-driver");
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .args(["--native-driver", "/usr/bin/WebKitWebDriver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .expect("tauri-driver is installed by `make setup`");
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tauri-driver did not listen on port {port}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Session {
    base: String,
    id: String,
    agent: ureq::Agent,
}

pub const KEY_TAB: &str = "\u{E004}";
pub const KEY_ESCAPE: &str = "\u{E00C}";
pub const KEY_CONTROL: &str = "\u{E009}";
pub const KEY_ENTER: &str = "\u{E007}";
pub const KEY_ALT: &str = "\u{E00A}";
pub const KEY_END: &str = "\u{E010}";

/// A WebDriver error answer.
struct Refusal {
    status: ureq::http::StatusCode,
    text: String,
    /// The WebDriver error code, e.g. "stale element reference".
    error: String,
}

impl Session {
    /// Opens the app binary in a new session.
    pub fn new(driver: &Driver, application: &Path) -> Session {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{}", driver.port);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application}
        }}});
        let mut s = Session {
            base,
            id: String::new(),
            agent,
        };
        // tauri-driver listens before its native WebKitWebDriver does, and drops a request
        // that comes in between: retry the connection (not an answered error) for a while
        let deadline = Instant::now() + Duration::from_secs(20);
        let response = loop {
            match s.send("POST", "/session", Some(caps.clone())) {
                Ok(response) => break response,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("POST /session: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("POST /session: {e}"),
            }
        };
        let v = Self::answer("POST", "/session", response);
        s.id = v["sessionId"].as_str().expect("session id").to_string();
        s
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let response = self
            .send(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Self::answer(method, path, response)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = if path == "/session" {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/session/{}{}", self.base, self.id, path)
        };
        match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        }
    }

    /// The `value` of a WebDriver answer, which must be a success.
    fn answer(method: &str, path: &str, response: ureq::http::Response<ureq::Body>) -> Value {
        Self::outcome(response)
            .unwrap_or_else(|e| panic!("{method} {path} → {}: {}", e.status, e.text))
    }

    /// The `value` of a successful WebDriver answer, or the error it names.
    fn outcome(response: ureq::http::Response<ureq::Body>) -> Result<Value, Refusal> {
        let status = response.status();
        let text = response.into_body().read_to_string().expect("body");
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v["value"].clone());
        }
        let error = v["value"]["error"].as_str().unwrap_or_default().to_string();
        Err(Refusal {
            status,
            text,
            error,
        })
    }

    /// Runs JavaScript in the page; `arguments` are available to it.
    pub fn script(&self, source: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": source, "args": args})),
        )
    }

    /// Runs async JavaScript: the last argument is the callback to call with the result.
    pub fn script_async(&self, source: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({"script": source, "args": args})),
        )
    }

    pub fn find(&self, css: &str) -> Option<String> {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()?
            .first()
            .and_then(|e| e.as_object()?.values().next()?.as_str().map(str::to_string))
    }

    /// Waits until `css` matches an element (or panics after `timeout`).
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {css}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the script returns a truthy value.
    pub fn wait_until(&self, what: &str, source: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.script(source, json!([]));
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() >= deadline {
                // what the writer would see: the status bar and any toast
                let seen = self.script(
                    "return [...document.querySelectorAll('[data-testid^=status], .toast, [role=alert]')].map(e => e.textContent.trim()).join(' | ');",
                    json!([]),
                );
                panic!("timed out waiting for {what}; the window shows: {seen}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    /// Clicks what `css` matches as a user would (a WebDriver click), once the page has
    /// settled: the element is scrolled into view, stays put between two looks 100 ms apart
    /// (a pane sliding in moves it), and is what a click at its centre would hit. A pane that
    /// re-renders its buttons as state changes can still answer "element not interactable"
    /// or "stale element reference" for a moment: those are retried on a fresh element. Any
    /// other error, or still failing at `timeout`, panics.
    pub fn click_css(&self, css: &str, timeout: Duration) {
        const SETTLED: &str = "const e = document.querySelector(arguments[0]);
            if (!e) return null;
            e.scrollIntoView({block: 'nearest'});
            const r = e.getBoundingClientRect();
            const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
            return [r.left, r.top, r.width, r.height, !!hit && (hit === e || e.contains(hit))];";
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            let seen = self.script(SETTLED, json!([css]));
            let settling = if seen.is_null() {
                "not there".to_string()
            } else if seen[4] != json!(true) {
                "covered".to_string()
            } else if seen != last {
                "moving".to_string()
            } else {
                match self.find(css) {
                    None => "not there".to_string(),
                    Some(element) => {
                        let path = format!("/element/{element}/click");
                        let response = self
                            .send("POST", &path, None)
                            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
                        let Refusal {
                            status,
                            text,
                            error,
                        } = match Self::outcome(response) {
                            Ok(_) => return,
                            Err(refusal) => refusal,
                        };
                        assert!(
                            matches!(
                                error.as_str(),
                                "element not interactable" | "stale element reference"
                            ),
                            "POST {path} → {status}: {text}"
                        );
                        error
                    }
                }
            };
            last = seen;
            assert!(
                Instant::now() < deadline,
                "could not click {css} within {timeout:?} ({settling})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Empties an input (WebDriver's Element Clear).
    pub fn clear(&self, element: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
    }

    pub fn send_keys(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    pub fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a PNG screenshot of the window.
    pub fn screenshot(&self, path: &Path) -> PathBuf {
        use std::io::Write;
        let b64 = self.call("GET", "/screenshot", None);
        let bytes = base64_decode(b64.as_str().expect("base64 png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        path.to_path_buf()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let url = format!("{}/session/{}", self.base, self.id);
            let _ = self.agent.delete(&url).call();
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let table = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(table) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
