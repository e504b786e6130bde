//! A remote engine: any OpenAI-compatible server (vLLM, Ollama, llama-server, LM Studio,
//! another `penwright serve`) used in place of the local model. Requests are streamed
//! (server-sent events) so a task can be cancelled between two pieces of text: the
//! connection is dropped and the server stops generating.
//!
//! Every failure is one [`EngineError::Remote`] naming the server and what went wrong:
//! unreachable, timed out, key refused, unknown model, busy (after honouring `Retry-After`
//! once), a server error, or an answer that is not what the API promises.

use std::io::{BufRead, BufReader, Read};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chat::ChatMessage;
use crate::tokenizer::{FIM_SPELLINGS, FimSpelling};
use crate::{EngineError, Result};

/// Where a remote engine is and which of its models to use.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteEndpoint {
    /// The API's base, including `/v1` (`http://localhost:11434/v1`).
    pub base_url: String,
    pub model: String,
    /// Bearer key; never serialized (the app keeps it in the OS keyring).
    #[serde(skip)]
    pub api_key: Option<String>,
}

/// What went wrong talking to a remote engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteFailure {
    Unreachable,
    Timeout,
    /// 401 / 403: the key is missing or wrong.
    Unauthorized,
    /// 404: no such model (or no such API at that address).
    NotFound,
    /// 429, still after waiting as `Retry-After` asked.
    Busy,
    /// A 4xx the server explains in its error JSON.
    Rejected,
    /// 5xx.
    ServerError,
    /// Not JSON, not the API's shape, or a stream cut short.
    BadResponse,
}

/// A model a remote server lists.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteModel {
    pub id: String,
    /// The context the server states for it (`max_model_len`, `context_length`,
    /// `context_window`), if it states one.
    pub context: Option<usize>,
}

/// How a streamed answer ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAnswer {
    pub text: String,
    /// OpenAI's `finish_reason` (`stop`, `length`, ...), when the server gave one.
    pub finish_reason: Option<String>,
    pub completion_tokens: Option<usize>,
}

/// How long and how random an answer may be.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerLimits {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// The answer ends before any of these.
    pub stop: Vec<String>,
    /// Above 1 discourages repeating tokens; sent as `repetition_penalty` (vLLM, Penwright)
    /// and `repeat_penalty` (llama.cpp) when set, extensions local servers take.
    pub repetition_penalty: Option<f32>,
    /// Makes a sampled answer repeatable where the server honours it.
    pub seed: Option<u64>,
}

impl AnswerLimits {
    /// Greedy, at most `max_tokens`.
    pub fn greedy(max_tokens: usize) -> Self {
        AnswerLimits {
            max_tokens,
            temperature: 0.0,
            stop: Vec::new(),
            repetition_penalty: None,
            seed: None,
        }
    }

    fn apply(&self, body: &mut Value) {
        body["max_tokens"] = json!(self.max_tokens);
        body["temperature"] = json!(self.temperature);
        if !self.stop.is_empty() {
            body["stop"] = json!(self.stop);
        }
        if let Some(p) = self.repetition_penalty {
            body["repetition_penalty"] = json!(p);
            body["repeat_penalty"] = json!(p);
        }
        if let Some(seed) = self.seed {
            body["seed"] = json!(seed);
        }
    }
}

/// The context assumed when the server does not state one.
pub const DEFAULT_REMOTE_CONTEXT: usize = 4096;
/// The longest wait a `Retry-After` is honoured for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

pub struct RemoteEngine {
    endpoint: RemoteEndpoint,
    agent: ureq::Agent,
    context: usize,
    /// The server is llama.cpp's llama-server, whose `/infill` fills in the middle with the
    /// model's FIM tokens; cleared once it says the model has none.
    infill: AtomicBool,
    /// `/completions` takes `suffix` (Ollama, Penwright, llama-server); cleared once the
    /// server refuses it.
    takes_suffix: AtomicBool,
    /// The model's fill-in-the-middle tokens, asked of the server's `/tokenize` once it has
    /// refused `suffix` (vLLM): with them the text after the cursor goes in the prompt.
    fim: OnceLock<Option<FimSpelling>>,
}

impl std::fmt::Debug for RemoteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEngine")
            .field("base_url", &self.endpoint.base_url)
            .field("model", &self.endpoint.model)
            .field("context", &self.context)
            .field("infill", &self.infill.load(Ordering::Relaxed))
            .finish()
    }
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        // a token at least this often (servers send keep-alive comments while queueing)
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build();
    ureq::Agent::new_with_config(config)
}

fn remote_error(server: &str, failure: RemoteFailure, message: impl Into<String>) -> EngineError {
    EngineError::Remote {
        server: server.to_string(),
        failure,
        message: message.into(),
    }
}

/// The base URL without a trailing slash.
/// `request` with the bearer `key`, where there is one.
fn with_key<B>(request: ureq::RequestBuilder<B>, key: Option<&str>) -> ureq::RequestBuilder<B> {
    match key {
        Some(key) => request.header("Authorization", format!("Bearer {key}")),
        None => request,
    }
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// Lists the models of the server at `base_url`.
pub fn list_models(base_url: &str, api_key: Option<&str>) -> Result<Vec<RemoteModel>> {
    let agent = agent();
    let url = format!("{}/models", base(base_url));
    let response = with_key(agent.get(&url), api_key)
        .call()
        .map_err(|e| transport_error(base_url, e))?;
    let body = read_ok(base_url, response)?;
    let value: Value = serde_json::from_str(&body).map_err(|e| {
        remote_error(
            base_url,
            RemoteFailure::BadResponse,
            format!("GET /models did not answer JSON: {e}"),
        )
    })?;
    let data = value["data"].as_array().ok_or_else(|| {
        remote_error(
            base_url,
            RemoteFailure::BadResponse,
            "GET /models answered without a `data` list",
        )
    })?;
    Ok(data
        .iter()
        .filter_map(|m| {
            let id = m["id"].as_str()?.to_string();
            let context = ["max_model_len", "context_length", "context_window"]
                .iter()
                .find_map(|k| m[*k].as_u64())
                .map(|n| n as usize);
            Some(RemoteModel { id, context })
        })
        .collect())
}

fn transport_error(server: &str, e: ureq::Error) -> EngineError {
    match e {
        ureq::Error::Timeout(t) => {
            remote_error(server, RemoteFailure::Timeout, format!("timed out ({t})"))
        }
        ureq::Error::HostNotFound => remote_error(
            server,
            RemoteFailure::Unreachable,
            "the host name does not resolve",
        ),
        ureq::Error::ConnectionFailed => {
            remote_error(server, RemoteFailure::Unreachable, "the connection failed")
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => remote_error(
            server,
            RemoteFailure::Unreachable,
            "nothing is listening there (connection refused)",
        ),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            remote_error(server, RemoteFailure::Timeout, io.to_string())
        }
        other => remote_error(server, RemoteFailure::Unreachable, other.to_string()),
    }
}

/// The body of a 2xx answer; anything else as its [`RemoteFailure`], with the server's own
/// message from OpenAI's error JSON where it sent one.
fn read_ok(server: &str, response: ureq::http::Response<ureq::Body>) -> Result<String> {
    let status = response.status().as_u16();
    let mut body = String::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(1 << 20)
        .read_to_string(&mut body);
    if (200..300).contains(&status) {
        return Ok(body);
    }
    Err(status_error(server, status, &body))
}

fn status_error(server: &str, status: u16, body: &str) -> EngineError {
    let said = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or(v["error"].as_str())
                .or(v["message"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    let failure = match status {
        401 | 403 => RemoteFailure::Unauthorized,
        404 => RemoteFailure::NotFound,
        429 => RemoteFailure::Busy,
        500..=599 => RemoteFailure::ServerError,
        _ => RemoteFailure::Rejected,
    };
    remote_error(server, failure, format!("HTTP {status}: {said}"))
}

impl RemoteEngine {
    /// Checks that the server answers and lists `endpoint.model`; learns its context.
    pub fn connect(endpoint: RemoteEndpoint) -> Result<Self> {
        let models = list_models(&endpoint.base_url, endpoint.api_key.as_deref())?;
        let Some(model) = models.iter().find(|m| m.id == endpoint.model) else {
            let names: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
            return Err(remote_error(
                &endpoint.base_url,
                RemoteFailure::NotFound,
                format!(
                    "the server has no model `{}`; it lists: {}",
                    endpoint.model,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        let context = model.context.unwrap_or(DEFAULT_REMOTE_CONTEXT);
        let agent = agent();
        let infill = is_llama_server(&agent, &endpoint);
        Ok(RemoteEngine {
            endpoint,
            agent,
            context,
            infill: AtomicBool::new(infill),
            takes_suffix: AtomicBool::new(true),
            fim: OnceLock::new(),
        })
    }

    /// Whether text after the cursor goes through llama-server's `/infill` (the model's
    /// fill-in-the-middle tokens); otherwise it goes as `/completions`' `suffix`, which
    /// servers that know it use (Ollama, vLLM for FIM models, Penwright).
    pub fn fills_in_through_infill(&self) -> bool {
        self.infill.load(Ordering::Relaxed)
    }

    pub fn endpoint(&self) -> &RemoteEndpoint {
        &self.endpoint
    }

    /// Prompt + answer the remote model holds, in tokens.
    pub fn context(&self) -> usize {
        self.context
    }

    /// `POST url` with `body`, streamed: the answer's head (a 429 is waited out once, as its
    /// `Retry-After` asks, up to 10 s).
    fn open(
        &self,
        url: &str,
        mut body: Value,
        cancel: &AtomicBool,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let server = self.endpoint.base_url.as_str();
        body["stream"] = json!(true);
        body["model"] = json!(self.endpoint.model);
        let payload = body.to_string();
        let mut retried = false;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            let request = self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("Accept", "text/event-stream");
            let response = with_key(request, self.endpoint.api_key.as_deref())
                .send(payload.as_str())
                .map_err(|e| transport_error(server, e))?;
            if response.status().as_u16() == 429 && !retried {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                if wait <= MAX_RETRY_AFTER {
                    retried = true;
                    sleep_unless_cancelled(wait, cancel)?;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// Streams `POST {base}/{path}` with `body` (OpenAI's framing); `on_chunk` gets each
    /// event's JSON.
    fn stream(
        &self,
        path: &str,
        body: Value,
        cancel: &AtomicBool,
        on_chunk: &mut dyn FnMut(&Value) -> Result<()>,
    ) -> Result<()> {
        let url = format!("{}/{path}", base(&self.endpoint.base_url));
        let response = self.open(&url, body, cancel)?;
        self.read_events(response, Framing::OpenAi, cancel, on_chunk)
    }

    /// Reads a streamed answer's events; `on_chunk` gets each one's JSON. OpenAI's streams
    /// end at `[DONE]`; llama-server's own endpoints at the event that says `"stop": true`.
    /// A cancel drops the connection.
    fn read_events(
        &self,
        response: ureq::http::Response<ureq::Body>,
        framing: Framing,
        cancel: &AtomicBool,
        on_chunk: &mut dyn FnMut(&Value) -> Result<()>,
    ) -> Result<()> {
        let server = self.endpoint.base_url.as_str();
        if !response.status().is_success() {
            return Err(read_ok(server, response).expect_err("not a 2xx answer"));
        }
        let reader = BufReader::new(response.into_body().into_reader());
        let mut events = SseEvents::new(reader);
        loop {
            if cancel.load(Ordering::Relaxed) {
                // dropping the reader closes the connection: the server stops generating
                return Err(EngineError::Cancelled);
            }
            let Some(data) = events.next_data().map_err(|e| {
                remote_error(
                    server,
                    RemoteFailure::BadResponse,
                    format!("the stream broke off: {e}"),
                )
            })?
            else {
                return Err(remote_error(
                    server,
                    RemoteFailure::BadResponse,
                    match framing {
                        Framing::OpenAi => "the stream ended without [DONE]",
                        Framing::LlamaServer => "the stream ended before its last event",
                    },
                ));
            };
            if data.trim() == "[DONE]" {
                return Ok(());
            }
            let chunk: Value = serde_json::from_str(&data).map_err(|e| {
                remote_error(
                    server,
                    RemoteFailure::BadResponse,
                    format!("a streamed event is not JSON ({e}): {}", preview(&data)),
                )
            })?;
            if let Some(error) = chunk.get("error") {
                let message = error["message"].as_str().unwrap_or("an error").to_string();
                return Err(remote_error(server, RemoteFailure::ServerError, message));
            }
            on_chunk(&chunk)?;
            if framing == Framing::LlamaServer && chunk["stop"].as_bool() == Some(true) {
                return Ok(());
            }
        }
    }

    /// Continues `prompt` (with `suffix` after the cursor, for servers that fill in the
    /// middle) through `/completions`; `on_text` gets each piece.
    pub fn complete(
        &self,
        prompt: &str,
        suffix: Option<&str>,
        limits: &AnswerLimits,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<RemoteAnswer> {
        let after = suffix.filter(|s| !s.is_empty());
        if let Some(after) = after
            && self.fills_in_through_infill()
        {
            match self.infill(prompt, after, limits, cancel, on_text)? {
                Some(answer) => return Ok(answer),
                // the model has no FIM tokens: the suffix goes as `/completions` has it
                None => self.infill.store(false, Ordering::Relaxed),
            }
        }
        let as_suffix = after.filter(|_| self.takes_suffix.load(Ordering::Relaxed));
        let mut body = json!({ "prompt": prompt });
        limits.apply(&mut body);
        // a server without `suffix` gets the text after the cursor between the model's
        // FIM tokens, where it has them; else the prefix alone
        // (asked only once there is such text: a server that takes `suffix` is never asked)
        let fill_in = |body: &mut Value| {
            if let Some(after) = after
                && let Some(fim) = self.fim_spelling()
            {
                body["prompt"] = json!(fim.prompt(prompt, after));
            }
        };
        match as_suffix {
            Some(after) => body["suffix"] = json!(after),
            None => fill_in(&mut body),
        }
        let text = |choice: &Value| choice["text"].as_str().map(str::to_string);
        match self.collect("completions", body.clone(), cancel, &text, on_text) {
            // a server that refuses `suffix` (vLLM: 400 "suffix is not currently supported")
            // goes without it from now on
            Err(EngineError::Remote {
                failure: RemoteFailure::Rejected,
                ..
            }) if as_suffix.is_some() => {
                self.takes_suffix.store(false, Ordering::Relaxed);
                body.as_object_mut()
                    .expect("a JSON object")
                    .remove("suffix");
                fill_in(&mut body);
                self.collect("completions", body, cancel, &text, on_text)
            }
            answer => answer,
        }
    }

    /// The model's fill-in-the-middle spelling, asked of the server once: each spelling
    /// llama.cpp knows goes to `/tokenize` (vLLM's, at the server's root) until one whose
    /// three tokens are each a single token of the model's vocabulary. `None` when the
    /// server has no `/tokenize` or the model none of them.
    pub fn fim_spelling(&self) -> Option<FimSpelling> {
        *self.fim.get_or_init(|| {
            let url = format!("{}/tokenize", server_root(&self.endpoint.base_url));
            let one_token = |text: &str| -> Option<bool> {
                let body = json!({
                    "model": self.endpoint.model,
                    "prompt": text,
                    "add_special_tokens": false,
                });
                let request = self
                    .agent
                    .post(&url)
                    .config()
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .header("Content-Type", "application/json");
                let response = with_key(request, self.endpoint.api_key.as_deref())
                    .send(body.to_string())
                    .ok()?;
                let answer = read_ok(&self.endpoint.base_url, response).ok()?;
                let tokens = serde_json::from_str::<Value>(&answer).ok()?;
                Some(tokens["tokens"].as_array()?.len() == 1)
            };
            for spelling in FIM_SPELLINGS {
                // no answer at all: the server cannot say, ask no more
                if one_token(spelling.prefix)?
                    && one_token(spelling.suffix)?
                    && one_token(spelling.middle)?
                {
                    return Some(*spelling);
                }
            }
            None
        })
    }

    /// Whether `/completions` is sent the text after the cursor as `suffix`; cleared once
    /// the server refuses it.
    pub fn takes_suffix(&self) -> bool {
        self.takes_suffix.load(Ordering::Relaxed)
    }

    /// Fills in between `prefix` and `suffix` through llama-server's `/infill`; `None` when
    /// the server says the model cannot (no FIM tokens: HTTP 501) or has no such endpoint.
    fn infill(
        &self,
        prefix: &str,
        suffix: &str,
        limits: &AnswerLimits,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<RemoteAnswer>> {
        let mut body = json!({ "input_prefix": prefix, "input_suffix": suffix });
        limits.apply(&mut body);
        body["n_predict"] = json!(limits.max_tokens);
        let url = format!("{}/infill", server_root(&self.endpoint.base_url));
        let response = self.open(&url, body, cancel)?;
        if matches!(response.status().as_u16(), 404 | 501) {
            return Ok(None);
        }
        let mut answer = RemoteAnswer {
            text: String::new(),
            finish_reason: None,
            completion_tokens: None,
        };
        let stop_early = AtomicBool::new(false);
        let result = self.read_events(response, Framing::LlamaServer, cancel, &mut |chunk| {
            if let Some(n) = chunk["tokens_predicted"].as_u64() {
                answer.completion_tokens = Some(n as usize);
            }
            if chunk["stop"].as_bool() == Some(true) {
                let limit = chunk["stop_type"].as_str() == Some("limit");
                answer.finish_reason = Some(if limit { "length" } else { "stop" }.into());
            }
            let piece = chunk["content"].as_str().unwrap_or_default();
            if !piece.is_empty() {
                answer.text.push_str(piece);
                if !on_text(piece) {
                    stop_early.store(true, Ordering::Relaxed);
                    return Err(EngineError::Cancelled);
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(Some(answer)),
            Err(EngineError::Cancelled) if stop_early.load(Ordering::Relaxed) => Ok(Some(answer)),
            Err(e) => Err(e),
        }
    }

    /// One chat exchange through `/chat/completions`; `on_text` gets each piece.
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        limits: &AnswerLimits,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<RemoteAnswer> {
        let mut body = json!({
            "messages": messages,
            "stream_options": {"include_usage": true},
        });
        limits.apply(&mut body);
        self.collect(
            "chat/completions",
            body,
            cancel,
            &|choice| choice["delta"]["content"].as_str().map(str::to_string),
            on_text,
        )
    }

    /// Streams and gathers an answer. `on_text` returning false stops the stream early
    /// (the text so far is the answer).
    fn collect(
        &self,
        path: &str,
        body: Value,
        cancel: &AtomicBool,
        piece_of: &dyn Fn(&Value) -> Option<String>,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<RemoteAnswer> {
        let mut answer = RemoteAnswer {
            text: String::new(),
            finish_reason: None,
            completion_tokens: None,
        };
        let stop_early = AtomicBool::new(false);
        let result = self.stream(path, body, cancel, &mut |chunk| {
            if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
                answer.completion_tokens = Some(n as usize);
            }
            let Some(choice) = chunk["choices"].get(0) else {
                return Ok(());
            };
            if let Some(piece) = piece_of(choice)
                && !piece.is_empty()
            {
                answer.text.push_str(&piece);
                if !on_text(&piece) {
                    stop_early.store(true, Ordering::Relaxed);
                    return Err(EngineError::Cancelled);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                answer.finish_reason = Some(reason.to_string());
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(answer),
            Err(EngineError::Cancelled) if stop_early.load(Ordering::Relaxed) => Ok(answer),
            Err(e) => Err(e),
        }
    }
}

/// How a stream's events end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// OpenAI's: `data: [DONE]` last.
    OpenAi,
    /// llama-server's own endpoints (`/infill`): the event with `"stop": true` is the last.
    LlamaServer,
}

/// The server's root: the base URL without its `/v1` (llama-server's own endpoints live
/// there).
fn server_root(base_url: &str) -> &str {
    let b = base(base_url);
    b.strip_suffix("/v1").unwrap_or(b)
}

/// Whether the server is llama.cpp's llama-server: its `GET /props` answers with its
/// `default_generation_settings` (other servers answer 404, or something else).
fn is_llama_server(agent: &ureq::Agent, endpoint: &RemoteEndpoint) -> bool {
    let url = format!("{}/props", server_root(&endpoint.base_url));
    let request = with_key(agent.get(&url), endpoint.api_key.as_deref());
    let Ok(response) = request.call() else {
        return false;
    };
    read_ok(&endpoint.base_url, response)
        .ok()
        .and_then(|body| serde_json::from_str::<Value>(&body).ok())
        .is_some_and(|v| v.get("default_generation_settings").is_some())
}

fn sleep_unless_cancelled(wait: Duration, cancel: &AtomicBool) -> Result<()> {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn preview(text: &str) -> String {
    text.chars().take(120).collect()
}

/// The `data` of each server-sent event (the fields the OpenAI API uses; comments and
/// other fields are skipped), as the WHATWG event-stream format defines them.
struct SseEvents<R> {
    reader: R,
    line: String,
}

/// The longest event accepted (a hostile server cannot make us buffer without end).
const MAX_EVENT_BYTES: usize = 4 << 20;

impl<R: BufRead> SseEvents<R> {
    fn new(reader: R) -> Self {
        SseEvents {
            reader,
            line: String::new(),
        }
    }

    /// The next event's data; `None` at the end of the stream.
    fn next_data(&mut self) -> std::io::Result<Option<String>> {
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            let n = (&mut self.reader)
                .take(MAX_EVENT_BYTES as u64)
                .read_line(&mut self.line)?;
            if n == 0 {
                return Ok(data);
            }
            let line = self.line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if data.is_some() {
                    return Ok(data);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            if field == "data" {
                let d = data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                if d.len() + value.len() > MAX_EVENT_BYTES {
                    return Err(std::io::Error::other("an event over 4 MiB"));
                }
                d.push_str(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<String> {
        let mut sse = SseEvents::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(d) = sse.next_data().unwrap() {
            out.push(d);
        }
        out
    }

    #[test]
    fn server_sent_events_are_split_as_the_format_says() {
        assert_eq!(
            events(
                "data: {\"a\":1}\n\n: keep-alive\n\ndata:b\r\ndata: c\r\n\r\nevent: x\ndata: [DONE]\n\n"
            ),
            vec!["{\"a\":1}", "b\nc", "[DONE]"]
        );
        // a stream cut in the middle of an event still yields what it has
        assert_eq!(events("data: x"), vec!["x"]);
        assert!(events("").is_empty());
    }

    #[test]
    fn status_codes_become_failures_with_the_servers_message() {
        let e = status_error("http://h/v1", 401, r#"{"error":{"message":"bad key"}}"#);
        let EngineError::Remote {
            failure, message, ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(*failure, RemoteFailure::Unauthorized);
        assert!(message.contains("bad key"), "{message}");
        for (status, failure) in [
            (404, RemoteFailure::NotFound),
            (429, RemoteFailure::Busy),
            (503, RemoteFailure::ServerError),
            (422, RemoteFailure::Rejected),
        ] {
            let e = status_error("s", status, "<html>oops</html>");
            assert!(
                matches!(e, EngineError::Remote { failure: f, .. } if f == failure),
                "{status}: {e}"
            );
            assert!(e.to_string().contains("oops"));
        }
    }

    /// A server that answers as vLLM does: `/models`, no `/props`, `/completions` that
    /// refuses `suffix` with 400 but streams an answer to a prompt alone, and `/tokenize`
    /// whose model has the fill-in-the-middle tokens `fim` (each text a token of its own;
    /// any other text a token per character). Serves until `GET /done` and returns the
    /// request bodies it saw.
    fn refusing_suffix(
        fim: &'static [&'static str],
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                if head.starts_with("GET /done") {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                    );
                    break;
                }
                let (status, kind, answer) = if head.starts_with("GET /v1/models") {
                    (
                        "200 OK",
                        "application/json",
                        r#"{"data":[{"id":"m","max_model_len":2048}]}"#.to_string(),
                    )
                } else if head.starts_with("POST /v1/completions") && body.contains("\"suffix\"") {
                    (
                        "400 Bad Request",
                        "application/json",
                        r#"{"error":{"message":"suffix is not currently supported"}}"#.to_string(),
                    )
                } else if head.starts_with("POST /tokenize") {
                    let prompt = serde_json::from_str::<Value>(&body).unwrap()["prompt"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let tokens: Vec<u32> = if fim.contains(&prompt.as_str()) {
                        vec![151659]
                    } else {
                        prompt.chars().map(|c| c as u32).collect()
                    };
                    let answer = json!({ "count": tokens.len(), "tokens": tokens });
                    ("200 OK", "application/json", answer.to_string())
                } else if head.starts_with("POST /v1/completions") {
                    let event = r#"{"choices":[{"text":" jumps","finish_reason":"length"}]}"#;
                    (
                        "200 OK",
                        "text/event-stream",
                        format!("data: {event}\n\ndata: [DONE]\n\n"),
                    )
                } else {
                    ("404 Not Found", "text/plain", "no".to_string())
                };
                bodies.push(body);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
            bodies
        });
        (base, handle)
    }

    /// Connects to a [`refusing_suffix`] server, completes "The fox" before " over the dog."
    /// twice, and returns the engine, the completions it sent and how many texts it asked
    /// `/tokenize` about.
    fn complete_twice(fim: &'static [&'static str]) -> (RemoteEngine, Vec<Value>, usize) {
        let (base_url, server) = refusing_suffix(fim);
        let done = format!("{}/done", server_root(&base_url));
        let remote = RemoteEngine::connect(RemoteEndpoint {
            base_url,
            model: "m".into(),
            api_key: None,
        })
        .unwrap();
        assert_eq!(remote.context(), 2048);
        assert!(!remote.fills_in_through_infill());
        for _ in 0..2 {
            let answer = remote
                .complete(
                    "The fox",
                    Some(" over the dog."),
                    &AnswerLimits::greedy(4),
                    &AtomicBool::new(false),
                    &mut |_| true,
                )
                .unwrap();
            assert_eq!(answer.text, " jumps");
            assert!(!remote.takes_suffix());
        }
        agent().get(&done).call().unwrap();
        let bodies: Vec<Value> = server
            .join()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect();
        let asked = bodies
            .iter()
            .filter(|b| b.get("add_special_tokens").is_some())
            .count();
        let completions = bodies
            .into_iter()
            .filter(|b| b.get("max_tokens").is_some())
            .collect();
        (remote, completions, asked)
    }

    #[test]
    fn a_server_that_refuses_the_suffix_gets_the_prefix_alone() {
        let (remote, posts, asked) = complete_twice(&[]);
        // each spelling's prefix token, none of them a single token
        assert_eq!(asked, FIM_SPELLINGS.len());
        assert_eq!(remote.fim_spelling(), None);
        assert_eq!(posts.len(), 3, "{posts:?}");
        assert_eq!(posts[0]["suffix"], " over the dog.");
        // remembered: the second completion goes without it at once
        for post in &posts[1..] {
            assert_eq!(post.get("suffix"), None, "{post}");
            assert_eq!(post["prompt"], "The fox");
        }
    }

    #[test]
    fn a_server_that_refuses_the_suffix_gets_it_between_the_models_fim_tokens() {
        let qwen = &["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"];
        let (remote, posts, asked) = complete_twice(qwen);
        // StarCoder's prefix, then Qwen2.5's three, asked once for both completions
        assert_eq!(asked, 4);
        assert_eq!(remote.fim_spelling(), Some(FIM_SPELLINGS[1]));
        assert_eq!(posts.len(), 3, "{posts:?}");
        for post in &posts[1..] {
            assert_eq!(post.get("suffix"), None, "{post}");
            assert_eq!(
                post["prompt"],
                "<|fim_prefix|>The fox<|fim_suffix|> over the dog.<|fim_middle|>"
            );
        }
    }

    #[test]
    fn an_unreachable_server_is_named() {
        // a port nothing listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = list_models(&format!("http://127.0.0.1:{port}/v1"), None).unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::Remote {
                    failure: RemoteFailure::Unreachable,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains(&port.to_string()), "{e}");
    }
}
