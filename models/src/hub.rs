//! Downloads from the Hugging Face Hub layout: `{endpoint}/{repo}/resolve/{revision}/{path}`.
//!
//! Each file is written to `<file>.part`, resumed with an HTTP `Range` request when a
//! `.part` is already there (pause = cancel, resume = call again), checked against the
//! catalog's size and sha256 when it gives them, fsynced and renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::catalog::{
    CatalogEntry, ModelFile, ModelFormat, Source, check_relative_path, check_repo_id,
};
use crate::checksum::{VerifyStatus, hash_into, sync_dir, verify_file};
use crate::error::{FetchError, io_at, io_error};
use crate::lock::InstallLock;

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Bytes read from the network at a time.
const NET_CHUNK: usize = 64 * 1024;
/// A progress report at least every this many bytes.
const REPORT_EVERY: u64 = 1 << 20;

/// How far the download of one file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// The file's path in the repository.
    pub file: String,
    /// Bytes on disk so far (including a resumed `.part`).
    pub done: u64,
    /// The file's size, when the catalog or the server says it.
    pub total: Option<u64>,
}

/// A client of a Hugging Face Hub (or a mirror with the same URL layout).
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl HubClient {
    /// A client of `endpoint` (e.g. `https://huggingface.co`), without a token.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into().trim().trim_end_matches('/').to_string();
        // an https endpoint is never left for plain http, a redirect included
        let https = endpoint.starts_with("https://");
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(https)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(format!("penwright/{}", env!("CARGO_PKG_VERSION")))
            .build();
        HubClient {
            endpoint,
            token: None,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The endpoint from `$PENWRIGHT_HF_ENDPOINT`, else `$HF_ENDPOINT`, else
    /// [`DEFAULT_ENDPOINT`]; the token (for gated repositories) from `$HF_TOKEN`.
    pub fn from_env() -> Self {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let endpoint = var("PENWRIGHT_HF_ENDPOINT")
            .or_else(|| var("HF_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        HubClient::new(endpoint).with_token(var("HF_TOKEN"))
    }

    /// Sends `Authorization: Bearer <token>` (to the endpoint only, not across redirects).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{path}`.
    pub fn file_url(&self, repo: &str, revision: &str, path: &str) -> String {
        let path: Vec<String> = path.split('/').map(encode_segment).collect();
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode_segment(revision),
            path.join("/")
        )
    }

    /// Downloads the files of a catalog entry (`source.kind = "hf"`) into `dest_dir`;
    /// returns the path to load (the `.gguf` file, or `dest_dir` for safetensors).
    /// Files already there and intact are kept.
    pub fn download_entry(
        &self,
        entry: &CatalogEntry,
        dest_dir: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<PathBuf, FetchError> {
        let _lock = InstallLock::acquire(dest_dir, Some(cancel), &mut |_| {})?;
        self.download_entry_unlocked(entry, dest_dir, progress, cancel)
    }

    /// [`HubClient::download_entry`] with the install lock already held.
    pub(crate) fn download_entry_unlocked(
        &self,
        entry: &CatalogEntry,
        dest_dir: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<PathBuf, FetchError> {
        let Source::Hf { repo, revision } = &entry.source else {
            return Err(FetchError::Invalid(format!(
                "`{}` does not come from the Hugging Face Hub",
                entry.name
            )));
        };
        self.download_files(repo, revision, &entry.files, dest_dir, progress, cancel)?;
        Ok(match entry.format {
            ModelFormat::Gguf => dest_dir.join(&entry.primary_file().path),
            ModelFormat::Safetensors => dest_dir.to_path_buf(),
        })
    }

    /// Downloads `files` of any repository (`owner/name`, as a user types it) at
    /// `revision` into `dest_dir`; returns `dest_dir`. Sizes and checksums are checked
    /// where the [`ModelFile`]s give them (see [`HubClient::list_files`]).
    pub fn download_repo(
        &self,
        repo: &str,
        revision: &str,
        files: &[ModelFile],
        dest_dir: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<PathBuf, FetchError> {
        check_repo_id(repo).map_err(FetchError::Invalid)?;
        if revision.trim().is_empty() {
            return Err(FetchError::Invalid("the revision is empty".into()));
        }
        if files.is_empty() {
            return Err(FetchError::Invalid(format!(
                "no files to download from {repo}"
            )));
        }
        for file in files {
            check_relative_path(&file.path)
                .map_err(|e| FetchError::Invalid(format!("`{}`: {e}", file.path)))?;
        }
        let _lock = InstallLock::acquire(dest_dir, Some(cancel), &mut |_| {})?;
        self.download_files(repo, revision, files, dest_dir, progress, cancel)?;
        Ok(dest_dir.to_path_buf())
    }

    /// The files of a repository at `revision`, with sizes and sha256 (for LFS files) as
    /// the Hub's API gives them: `{endpoint}/api/models/{repo}/revision/{revision}?blobs=true`.
    pub fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<ModelFile>, FetchError> {
        check_repo_id(repo).map_err(FetchError::Invalid)?;
        let url = format!(
            "{}/api/models/{repo}/revision/{}?blobs=true",
            self.endpoint,
            encode_segment(revision)
        );
        let what = format!("the file list of {repo}");
        let mut response = self.get(&url, None, &what)?;
        let status = response.status().as_u16();
        if status == 404 {
            return Err(FetchError::NotFound { url });
        }
        if status != 200 {
            return Err(FetchError::Http { url, status });
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| FetchError::Network {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        parse_file_list(&text).map_err(|e| FetchError::Network {
            url,
            detail: format!("unexpected answer: {e}"),
        })
    }

    fn download_files(
        &self,
        repo: &str,
        revision: &str,
        files: &[ModelFile],
        dest_dir: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<(), FetchError> {
        fs::create_dir_all(dest_dir).map_err(io_at(dest_dir))?;
        for file in files {
            check_relative_path(&file.path)
                .map_err(|e| FetchError::Invalid(format!("`{}`: {e}", file.path)))?;
            let url = self.file_url(repo, revision, &file.path);
            self.download_file(&url, file, &dest_dir.join(&file.path), progress, cancel)?;
        }
        sync_dir(dest_dir);
        Ok(())
    }

    /// One file: skip when intact, else (resume and) download, check, rename into place.
    fn download_file(
        &self,
        url: &str,
        file: &ModelFile,
        dest: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<(), FetchError> {
        if cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        if dest.is_file() {
            if verify_file(dest, file)? == VerifyStatus::Ok {
                let len = fs::metadata(dest).map_err(io_at(dest))?.len();
                progress(DownloadProgress {
                    file: file.path.clone(),
                    done: len,
                    total: Some(len),
                });
                return Ok(());
            }
            fs::remove_file(dest).map_err(io_at(dest))?;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let part = &part_path(dest);
        let mut offset = match fs::metadata(part) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error(part, e)),
        };
        if file.size.is_some_and(|size| offset > size) {
            offset = 0;
        }

        // Already complete (e.g. cancelled during the check): only the check is left.
        let complete = offset > 0 && file.size == Some(offset);
        if !complete {
            self.transfer(url, file, part, offset, progress, cancel)?;
        }

        // Check the whole .part, then put it in place.
        let len = fs::metadata(part).map_err(io_at(part))?.len();
        if let Some(size) = file.size.filter(|&s| s != len) {
            remove_if_exists(part)?;
            return Err(FetchError::SizeMismatch {
                file: file.path.clone(),
                expected: size,
                actual: len,
            });
        }
        if let Some(expected) = &file.sha256 {
            let mut hasher = Sha256::new();
            hash_into(&mut File::open(part).map_err(io_at(part))?, &mut hasher)
                .map_err(io_at(part))?;
            let actual = hex::encode(hasher.finalize());
            if &actual != expected {
                remove_if_exists(part)?;
                return Err(FetchError::ChecksumMismatch {
                    file: file.path.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        fs::rename(part, dest).map_err(io_at(dest))?;
        Ok(())
    }

    /// GETs `url` into `part` (appending from `offset` with a Range request when the
    /// server allows it, else from the start), reporting progress, until done or cancelled.
    fn transfer(
        &self,
        url: &str,
        file: &ModelFile,
        part: &Path,
        mut offset: u64,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<(), FetchError> {
        let mut total = file.size;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let range = (offset > 0).then_some(offset);
            let response = self.get(url, range, &file.path)?;
            let status = response.status().as_u16();
            match status {
                200 => offset = 0,
                206 => {
                    let start = response
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok())
                        .and_then(content_range_start);
                    if start != Some(offset) {
                        // Not the bytes asked for: start over.
                        remove_if_exists(part)?;
                        offset = 0;
                        if attempts < 3 {
                            continue;
                        }
                        return Err(FetchError::Network {
                            url: url.into(),
                            detail: "the server resumed at the wrong offset".into(),
                        });
                    }
                }
                // The .part is as long as (or longer than) the file: start over once.
                416 if attempts < 3 => {
                    remove_if_exists(part)?;
                    offset = 0;
                    continue;
                }
                404 => return Err(FetchError::NotFound { url: url.into() }),
                _ => {
                    return Err(FetchError::Http {
                        url: url.into(),
                        status,
                    });
                }
            }
            if total.is_none() {
                total = response.body().content_length().map(|n| n + offset);
            }
            let mut out = if offset == 0 {
                File::create(part)
            } else {
                OpenOptions::new().append(true).open(part)
            }
            .map_err(io_at(part))?;
            let mut reader = response.into_body().into_reader();
            let mut buf = vec![0u8; NET_CHUNK];
            let mut done = offset;
            let mut reported = done;
            progress(DownloadProgress {
                file: file.path.clone(),
                done,
                total,
            });
            let mut first = true;
            loop {
                if cancel.load(Ordering::Relaxed) {
                    out.flush().map_err(io_at(part))?;
                    return Err(FetchError::Cancelled);
                }
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = out.flush();
                        return Err(FetchError::Network {
                            url: url.into(),
                            detail: format!("the connection broke off ({e})"),
                        });
                    }
                };
                out.write_all(&buf[..n]).map_err(io_at(part))?;
                done += n as u64;
                if first || done - reported >= REPORT_EVERY {
                    first = false;
                    reported = done;
                    progress(DownloadProgress {
                        file: file.path.clone(),
                        done,
                        total,
                    });
                }
            }
            out.flush().map_err(io_at(part))?;
            out.sync_all().map_err(io_at(part))?;
            if reported != done {
                progress(DownloadProgress {
                    file: file.path.clone(),
                    done,
                    total,
                });
            }
            return Ok(());
        }
    }

    /// A GET, with `Range: bytes=<from>-` when resuming; transport errors mapped.
    fn get(
        &self,
        url: &str,
        range_from: Option<u64>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let mut request = self.agent.get(url);
        if let Some(from) = range_from {
            request = request.header("Range", format!("bytes={from}-"));
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request
            .call()
            .map_err(|e| self.transport_error(url, what, e))
    }

    fn transport_error(&self, url: &str, what: &str, err: ureq::Error) -> FetchError {
        let server = host_of(url);
        let offline = |detail: String| FetchError::Offline {
            server: server.clone(),
            what: what.to_string(),
            detail,
        };
        match err {
            ureq::Error::HostNotFound => offline(format!("could not resolve {server}")),
            ureq::Error::ConnectionFailed => offline("the connection failed".into()),
            ureq::Error::Timeout(t) => offline(format!("timed out ({t})")),
            ureq::Error::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkDown
                        | io::ErrorKind::AddrNotAvailable
                        | io::ErrorKind::TimedOut
                ) =>
            {
                offline(e.to_string())
            }
            // std's getaddrinfo failures carry no ErrorKind of their own.
            ureq::Error::Io(e) if is_dns_failure(&e) => {
                offline(format!("could not resolve {server}: {e}"))
            }
            ureq::Error::RequireHttpsOnly(_) => FetchError::Network {
                url: url.into(),
                detail: "refusing to follow a redirect from https to plain http".into(),
            },
            other => FetchError::Network {
                url: url.into(),
                detail: other.to_string(),
            },
        }
    }
}

impl Default for HubClient {
    fn default() -> Self {
        HubClient::from_env()
    }
}

/// The files a Penwright model folder needs, picked from a repository listing: the
/// configs, tokenizer and `*.safetensors` at the top level; or, for a GGUF repository,
/// nothing (the user picks one `.gguf` file).
pub fn runtime_files(listing: &[ModelFile]) -> Vec<ModelFile> {
    const WANTED: &[&str] = &[
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "model.safetensors.index.json",
    ];
    listing
        .iter()
        .filter(|f| !f.path.contains('/'))
        .filter(|f| WANTED.contains(&f.path.as_str()) || f.path.ends_with(".safetensors"))
        .cloned()
        .collect()
}

/// What a repository offers Penwright: GGUF files (the user picks one), and the set of
/// files of a Hugging Face model folder when it has `config.json` and safetensors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoOffer {
    pub gguf: Vec<ModelFile>,
    /// Empty when the repository has no usable safetensors model.
    pub safetensors: Vec<ModelFile>,
}

impl RepoOffer {
    pub fn from_listing(listing: &[ModelFile]) -> RepoOffer {
        let gguf = listing
            .iter()
            .filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf"))
            .cloned()
            .collect();
        let runtime = runtime_files(listing);
        let usable = runtime.iter().any(|f| f.path == "config.json")
            && runtime.iter().any(|f| f.path.ends_with(".safetensors"));
        RepoOffer {
            gguf,
            safetensors: if usable { runtime } else { Vec::new() },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gguf.is_empty() && self.safetensors.is_empty()
    }
}

#[derive(Deserialize)]
struct ApiModel {
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

fn parse_file_list(json: &str) -> Result<Vec<ModelFile>, serde_json::Error> {
    let model: ApiModel = serde_json::from_str(json)?;
    Ok(model
        .siblings
        .into_iter()
        .map(|s| {
            let (lfs_sha, lfs_size) = s.lfs.map_or((None, None), |l| (l.sha256, l.size));
            ModelFile {
                path: s.rfilename,
                size: lfs_size.or(s.size),
                sha256: lfs_sha
                    .map(|h| h.to_ascii_lowercase())
                    .filter(|h| crate::catalog::check_sha256(h).is_ok()),
            }
        })
        .collect())
}

/// Whether an I/O error is a failed host name lookup.
fn is_dns_failure(err: &io::Error) -> bool {
    let msg = err.to_string().to_ascii_lowercase();
    [
        "lookup address",
        "name or service not known",
        "nodename nor servname",
        "no such host",
        "temporary failure in name resolution",
        "name resolution",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// `<dest>.part`.
fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn remove_if_exists(path: &Path) -> Result<(), FetchError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

/// The first byte of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// The host of a URL, for messages.
fn host_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    after_scheme
        .split(['/', '?'])
        .next()
        .unwrap_or(after_scheme)
        .to_string()
}

/// Percent-encodes one URL path segment (keeps RFC 3986 unreserved characters).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::checksum::sha256_bytes;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// One request the test server saw.
    #[derive(Debug, Clone)]
    struct Seen {
        path: String,
        range: Option<String>,
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1: serves `files` (URL path → bytes), honours
    /// `Range: bytes=N-` with 206, answers 404 otherwise; stops after `max_requests`
    /// requests or 30 s, whichever comes first.
    struct TestServer {
        endpoint: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        thread: Option<JoinHandle<()>>,
    }

    impl TestServer {
        fn start(files: HashMap<String, Vec<u8>>, max_requests: usize) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&seen);
            let thread = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut served = 0;
                while served < max_requests && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            served += 1;
                            let _ = serve_one(stream, &files, &log);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => break,
                    }
                }
            });
            TestServer {
                endpoint,
                seen,
                thread: Some(thread),
            }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        /// Waits for the server thread (after its last request).
        fn join(mut self) -> Vec<Seen> {
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
            self.seen()
        }
    }

    fn serve_one(
        stream: TcpStream,
        files: &HashMap<String, Vec<u8>>,
        log: &Mutex<Vec<Seen>>,
    ) -> io::Result<()> {
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
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("range")
            {
                range = Some(value.trim().to_string());
            }
        }
        log.lock().unwrap().push(Seen {
            path: path.clone(),
            range: range.clone(),
        });
        let mut out = stream;
        let Some(body) = files.get(&path) else {
            let msg = b"not found";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                msg.len()
            )?;
            return out.write_all(msg);
        };
        let len = body.len() as u64;
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<u64>().ok());
        match start {
            Some(s) if s >= len => write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            Some(s) => {
                write!(
                    out,
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    len - 1,
                    len - s
                )?;
                out.write_all(&body[s as usize..])
            }
            None => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                )?;
                out.write_all(body)
            }
        }
    }

    fn weights() -> Vec<u8> {
        (0..400_000u32)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect()
    }

    const CONFIG: &[u8] = br#"{"model_type": "llama"}"#;
    const TOKENIZER: &[u8] = br#"{"version": "1.0"}"#;

    /// A safetensors entry of `me/tiny` with the given sha256 for model.safetensors.
    fn entry(weights_sha: &str, weights_size: u64) -> CatalogEntry {
        let text = format!(
            r#"
[[model]]
name = "tiny"
display_name = "Tiny"
architecture = "llama"
format = "safetensors"
params = "1K"
quantization = "f32"
license = "mit"
languages = ["en"]
default = true
description = "a test"
source = {{ kind = "hf", repo = "me/tiny", revision = "main" }}
files = [
  {{ path = "config.json" }},
  {{ path = "model.safetensors", size = {weights_size}, sha256 = "{weights_sha}" }},
  {{ path = "tokenizer.json", sha256 = "{}" }},
]
"#,
            sha256_bytes(TOKENIZER)
        );
        Catalog::parse(&text).unwrap().entries()[0].clone()
    }

    fn repo_files() -> HashMap<String, Vec<u8>> {
        HashMap::from([
            (
                "/me/tiny/resolve/main/config.json".to_string(),
                CONFIG.to_vec(),
            ),
            (
                "/me/tiny/resolve/main/model.safetensors".to_string(),
                weights(),
            ),
            (
                "/me/tiny/resolve/main/tokenizer.json".to_string(),
                TOKENIZER.to_vec(),
            ),
        ])
    }

    fn good_entry() -> CatalogEntry {
        entry(&sha256_bytes(&weights()), weights().len() as u64)
    }

    #[test]
    fn downloads_a_whole_entry_and_checks_it() {
        let server = TestServer::start(repo_files(), 3);
        let client = HubClient::new(format!("{}/", server.endpoint));
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("models/tiny");
        let mut reports = Vec::new();
        let path = client
            .download_entry(
                &good_entry(),
                &dest,
                &mut |p| reports.push(p),
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(path, dest);
        assert_eq!(fs::read(dest.join("model.safetensors")).unwrap(), weights());
        assert_eq!(fs::read(dest.join("config.json")).unwrap(), CONFIG);
        assert_eq!(fs::read(dest.join("tokenizer.json")).unwrap(), TOKENIZER);
        assert!(!part_path(&dest.join("model.safetensors")).exists());
        let last = reports
            .iter()
            .rev()
            .find(|p| p.file == "model.safetensors")
            .unwrap();
        assert_eq!((last.done, last.total), (400_000, Some(400_000)));
        let seen = server.join();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.range.is_none()));
        assert_eq!(
            crate::checksum::verify_file(&dest.join("model.safetensors"), &good_entry().files[1])
                .unwrap(),
            VerifyStatus::Ok
        );

        // Again: everything is there and intact, no request is made (the server is gone).
        let mut reports = Vec::new();
        client
            .download_entry(
                &good_entry(),
                &dest,
                &mut |p| reports.push(p),
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(reports.len(), 3);
    }

    #[test]
    fn resumes_a_partial_download_with_a_range_request() {
        let server = TestServer::start(repo_files(), 1);
        let client = HubClient::new(&server.endpoint);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("tiny");
        fs::create_dir_all(&dest).unwrap();
        let w = weights();
        fs::write(part_path(&dest.join("model.safetensors")), &w[..150_000]).unwrap();
        let file = &good_entry().files[1];
        client
            .download_repo(
                "me/tiny",
                "main",
                std::slice::from_ref(file),
                &dest,
                &mut |_| {},
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(fs::read(dest.join("model.safetensors")).unwrap(), w);
        let seen = server.join();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/me/tiny/resolve/main/model.safetensors");
        assert_eq!(seen[0].range.as_deref(), Some("bytes=150000-"));
    }

    #[test]
    fn checksum_mismatch_leaves_no_file() {
        let server = TestServer::start(repo_files(), 3);
        let client = HubClient::new(&server.endpoint);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("tiny");
        let wrong = entry(&"ab".repeat(32), weights().len() as u64);
        let err = client
            .download_entry(&wrong, &dest, &mut |_| {}, &AtomicBool::new(false))
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::ChecksumMismatch { file, .. } if file == "model.safetensors"),
            "{err:?}"
        );
        assert!(!dest.join("model.safetensors").exists());
        assert!(!part_path(&dest.join("model.safetensors")).exists());
        drop(server);
    }

    #[test]
    fn wrong_size_leaves_no_file() {
        let server = TestServer::start(repo_files(), 3);
        let client = HubClient::new(&server.endpoint);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("tiny");
        let wrong = entry(&sha256_bytes(&weights()), 500_000);
        let err = client
            .download_entry(&wrong, &dest, &mut |_| {}, &AtomicBool::new(false))
            .unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::SizeMismatch {
                    actual: 400_000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!dest.join("model.safetensors").exists());
        drop(server);
    }

    #[test]
    fn missing_file_is_not_found() {
        let server = TestServer::start(repo_files(), 1);
        let client = HubClient::new(&server.endpoint);
        let tmp = tempfile::tempdir().unwrap();
        let err = client
            .download_repo(
                "me/tiny",
                "main",
                &[ModelFile::new("nope.safetensors")],
                &tmp.path().join("x"),
                &mut |_| {},
                &AtomicBool::new(false),
            )
            .unwrap_err();
        match &err {
            FetchError::NotFound { url } => {
                assert_eq!(
                    url,
                    &format!("{}/me/tiny/resolve/main/nope.safetensors", server.endpoint)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().starts_with("not found: "), "{err}");
        assert!(!tmp.path().join("x/nope.safetensors").exists());
        assert!(!tmp.path().join("x/nope.safetensors.part").exists());
    }

    #[test]
    fn cancel_keeps_the_part_and_a_second_call_resumes() {
        let server = TestServer::start(repo_files(), 2);
        let client = HubClient::new(&server.endpoint);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("tiny");
        let file = good_entry().files[1].clone();
        let cancel = AtomicBool::new(false);
        let err = client
            .download_repo(
                "me/tiny",
                "main",
                std::slice::from_ref(&file),
                &dest,
                &mut |p| {
                    if p.done > 0 {
                        cancel.store(true, Ordering::Relaxed);
                    }
                },
                &cancel,
            )
            .unwrap_err();
        assert!(matches!(err, FetchError::Cancelled), "{err:?}");
        let part = part_path(&dest.join("model.safetensors"));
        let kept = fs::metadata(&part).unwrap().len();
        assert!(kept > 0 && kept < 400_000, "{kept}");
        assert!(!dest.join("model.safetensors").exists());

        // Resume.
        cancel.store(false, Ordering::Relaxed);
        client
            .download_repo("me/tiny", "main", &[file], &dest, &mut |_| {}, &cancel)
            .unwrap();
        assert_eq!(fs::read(dest.join("model.safetensors")).unwrap(), weights());
        assert!(!part.exists());
        let seen = server.join();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].range, Some(format!("bytes={kept}-")));
    }

    #[test]
    fn refused_connection_is_offline() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = HubClient::new(format!("http://127.0.0.1:{port}"));
        let tmp = tempfile::tempdir().unwrap();
        let err = client
            .download_entry(
                &good_entry(),
                &tmp.path().join("tiny"),
                &mut |_| {},
                &AtomicBool::new(false),
            )
            .unwrap_err();
        assert!(matches!(err, FetchError::Offline { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("offline: could not reach 127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn dns_failure_is_offline() {
        let client = HubClient::new(DEFAULT_ENDPOINT);
        let url = client.file_url("a/b", "main", "config.json");
        let lookup =
            io::Error::other("failed to lookup address information: Name or service not known");
        let err = client.transport_error(&url, "config.json", ureq::Error::Io(lookup));
        assert_eq!(
            err.to_string(),
            "offline: could not reach huggingface.co to download config.json (could not \
             resolve huggingface.co: failed to lookup address information: Name or service \
             not known)"
        );
        let err = client.transport_error(&url, "config.json", ureq::Error::HostNotFound);
        assert!(matches!(err, FetchError::Offline { .. }));
        let downgrade = client.transport_error(
            &url,
            "x",
            ureq::Error::RequireHttpsOnly("http://cdn.example/x".into()),
        );
        assert!(
            downgrade.to_string().contains("from https to plain http"),
            "{downgrade}"
        );
        let other = client.transport_error(&url, "x", ureq::Error::Io(io::Error::other("boom")));
        assert!(matches!(other, FetchError::Network { .. }));
    }

    #[test]
    fn lists_repository_files() {
        let listing = br#"{"id":"me/tiny","siblings":[
            {"rfilename":"config.json","size":23},
            {"rfilename":"model.safetensors","size":400000,"lfs":{"sha256":"ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB","size":400000,"pointerSize":135}},
            {"rfilename":"onnx/model.onnx"},
            {"rfilename":"README.md","size":10}]}"#;
        let files = HashMap::from([(
            "/api/models/me/tiny/revision/main?blobs=true".to_string(),
            listing.to_vec(),
        )]);
        let server = TestServer::start(files, 1);
        let client = HubClient::new(&server.endpoint);
        let list = client.list_files("me/tiny", "main").unwrap();
        assert_eq!(list.len(), 4);
        assert_eq!(list[1].sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(list[1].size, Some(400_000));
        let runtime: Vec<String> = runtime_files(&list).into_iter().map(|f| f.path).collect();
        assert_eq!(runtime, ["config.json", "model.safetensors"]);
    }

    #[test]
    fn urls_and_headers() {
        let client = HubClient::new("https://hf.example/");
        assert_eq!(client.endpoint(), "https://hf.example");
        assert_eq!(
            client.file_url("Qwen/Qwen2.5-0.5B-Instruct", "main", "model.safetensors"),
            "https://hf.example/Qwen/Qwen2.5-0.5B-Instruct/resolve/main/model.safetensors"
        );
        assert_eq!(
            client.file_url("a/b", "refs/pr/1", "sub dir/x.json"),
            "https://hf.example/a/b/resolve/refs%2Fpr%2F1/sub%20dir/x.json"
        );
        assert_eq!(
            content_range_start("bytes 150000-399999/400000"),
            Some(150_000)
        );
        assert_eq!(content_range_start("bytes */400000"), None);
        assert_eq!(host_of("https://huggingface.co/a/b"), "huggingface.co");
        let bad = client.download_repo(
            "not a repo",
            "main",
            &[ModelFile::new("x")],
            Path::new("/nonexistent"),
            &mut |_| {},
            &AtomicBool::new(false),
        );
        assert!(matches!(bad, Err(FetchError::Invalid(_))));
        let escape = client.download_repo(
            "a/b",
            "main",
            &[ModelFile::new("../x")],
            Path::new("/nonexistent"),
            &mut |_| {},
            &AtomicBool::new(false),
        );
        assert!(matches!(escape, Err(FetchError::Invalid(_))));
    }
}
