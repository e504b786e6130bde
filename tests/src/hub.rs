//! A local stand-in for the Hugging Face Hub: serves repositories of real files on disk in
//! the Hub's URL layout, so downloads are tested without the network.
//!
//! - `GET /api/models/{owner}/{name}/revision/{rev}` → `{"siblings": [{rfilename, size, lfs}]}`
//! - `GET /{owner}/{name}/resolve/{rev}/{file}` → the bytes, honouring `Range: bytes=N-`
//!
//! File bodies are sent at a limited rate so a test can pause a download midway.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A file a repository holds.
#[derive(Clone, Debug)]
pub struct HubFile {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
}

/// One request the server answered: its path and `Range` header.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

pub struct HubServer {
    pub endpoint: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl HubServer {
    /// Serves `repos` (repository id → files), sending file bodies at `bytes_per_sec`.
    pub fn start(repos: BTreeMap<String, Vec<HubFile>>, bytes_per_sec: u64) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hub server");
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (Arc::clone(&requests), Arc::clone(&stop));
        let repos = Arc::new(repos);
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (repos, log, halt) =
                            (Arc::clone(&repos), Arc::clone(&log), Arc::clone(&halt));
                        std::thread::spawn(move || {
                            let _ = serve(stream, &repos, &log, &halt, bytes_per_sec);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HubServer {
            endpoint,
            requests,
            stop,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    repos: &BTreeMap<String, Vec<HubFile>>,
    log: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
    bytes_per_sec: u64,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push(Request {
        path: path.clone(),
        range: range.clone(),
    });
    let mut out = stream;
    let route = path.split('?').next().unwrap_or("");
    // the file listing
    if let Some(rest) = route.strip_prefix("/api/models/") {
        let repo = rest.split("/revision/").next().unwrap_or("");
        return match repos.get(repo) {
            Some(files) => {
                let siblings: Vec<serde_json::Value> = files
                    .iter()
                    .map(|f| {
                        let size = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
                        serde_json::json!({"rfilename": f.name, "size": size,
                                           "lfs": {"sha256": f.sha256, "size": size}})
                    })
                    .collect();
                let body = serde_json::json!({ "id": repo, "siblings": siblings }).to_string();
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            }
            None => not_found(&mut out),
        };
    }
    // a file: /{owner}/{name}/resolve/{rev}/{file}
    let Some((repo, file)) = route
        .trim_start_matches('/')
        .split_once("/resolve/")
        .and_then(|(repo, rest)| Some((repo, rest.split_once('/')?.1)))
    else {
        return not_found(&mut out);
    };
    let Some(entry) = repos
        .get(repo)
        .and_then(|files| files.iter().find(|f| f.name == file))
    else {
        return not_found(&mut out);
    };
    let mut body = std::fs::File::open(&entry.path)?;
    let len = body.metadata()?.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        .min(len);
    if start > 0 {
        write!(
            out,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            len.saturating_sub(1),
            len - start
        )?;
    } else {
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        )?;
    }
    body.seek(SeekFrom::Start(start))?;
    // 50 slices a second at the given rate
    let mut buf = vec![0u8; (bytes_per_sec / 50).max(1024) as usize];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = body.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn not_found(out: &mut TcpStream) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
    )
}
