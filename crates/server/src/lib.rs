//! `penwright serve`: the engine behind an OpenAI-compatible HTTP API, so that any OpenAI
//! client (editors, scripts, another Penwright) can use the writer's local model.
//!
//! - `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` in OpenAI's shapes,
//!   streamed as server-sent events ending with `data: [DONE]` when asked;
//! - every request needs `Authorization: Bearer KEY`; errors are OpenAI's error JSON;
//! - the engine serves one request at a time, in arrival order; at most
//!   [`ServerConfig::max_queue`] requests wait or run, later ones get 429;
//! - a client that disconnects cancels its generation within one token;
//! - `GET /penwright/stats` counts what the server did (requests, completions, cancellations).

pub mod api;
pub mod error;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use penwright_engine::EngineError;
use penwright_engine::chat::ChatMessage;
use penwright_engine::generate::{Generation, StopReason};
use penwright_engine::sampler::SamplerConfig;
use penwright_engine::worker::{EngineHandle, Event, Prompt, Step, request};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::api::{
    AssistantMessage, ChatChoice, ChatChunk, ChatCompletion, ChatRequest, ChunkChoice, Completion,
    CompletionChoice, CompletionRequest, Content, Delta, ModelCard, ModelList, PromptText,
    Sampling, Usage,
};
pub use crate::error::ApiError;

/// How the server treats requests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The bearer key every request must carry.
    pub api_key: String,
    /// Requests running or waiting at once; beyond it, 429 with `Retry-After`.
    pub max_queue: usize,
    /// The largest `max_tokens` a request may ask for (400 beyond it).
    pub max_tokens: usize,
    /// The largest request body (413 beyond it).
    pub max_body_bytes: usize,
}

impl ServerConfig {
    pub fn new(api_key: String) -> Self {
        ServerConfig {
            api_key,
            max_queue: 32,
            max_tokens: 2048,
            max_body_bytes: 1 << 20,
        }
    }
}

/// The model the server answers as.
#[derive(Debug, Clone)]
pub struct ServedModel {
    pub id: String,
    /// Prompt + answer, in tokens.
    pub context: usize,
}

/// What the server has done since it started.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Generations stopped early because their client went away.
    cancelled: AtomicU64,
    /// Requests refused with 429.
    rejected: AtomicU64,
    generated_tokens: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    fn snapshot(&self, in_flight: usize) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": get(&self.requests),
            "completed": get(&self.completed),
            "failed": get(&self.failed),
            "cancelled": get(&self.cancelled),
            "rejected": get(&self.rejected),
            "generated_tokens": get(&self.generated_tokens),
            "in_flight": in_flight,
        })
    }
}

struct Shared {
    engine: EngineHandle,
    model: ServedModel,
    config: ServerConfig,
    stats: Stats,
    in_flight: AtomicUsize,
    next_id: AtomicU64,
    started: u64,
}

/// The server's routes over a loaded engine.
pub fn router(engine: EngineHandle, model: ServedModel, config: ServerConfig) -> Router {
    let limit = config.max_body_bytes;
    let shared = Arc::new(Shared {
        engine,
        model,
        config,
        stats: Stats::default(),
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        started: unix_now(),
    });
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/penwright/stats", get(stats))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), require_key))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

/// Serves `router` on `listener` until Ctrl-C.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// A server running inside a program that does other work (the app): it serves until
/// [`Background::stop`], or until dropped.
pub struct Background {
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Background {
    /// Binds `host:port` (port 0: any free one) and serves `router` there on the current
    /// tokio runtime.
    pub async fn start(
        host: std::net::IpAddr,
        port: u16,
        router: Router,
    ) -> std::io::Result<Background> {
        let listener = tokio::net::TcpListener::bind((host, port)).await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Background {
            address,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where it listens.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Stops listening; answers still streaming get a second to end, then their
    /// connections close (which cancels their generations).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A fresh random key: 32 hex digits after `pw-`.
pub fn generate_key() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pw-{hex}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Equal in time whatever the bytes (no early exit on the first difference).
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_key(
    State(shared): State<Arc<Shared>>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_key(given.trim().as_bytes(), shared.config.api_key.as_bytes()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

async fn not_found(request: HttpRequest) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no route {} {}", request.method(), request.uri().path()),
    )
}

async fn list_models(State(shared): State<Arc<Shared>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: shared.model.id.clone(),
            object: "model",
            created: shared.started,
            owned_by: "penwright",
            max_model_len: shared.model.context,
        }],
    })
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(
        shared
            .stats
            .snapshot(shared.in_flight.load(Ordering::Relaxed)),
    )
}

/// A generation as the engine will run it, from either API's fields.
struct Job {
    prompt: Prompt,
    max_tokens: usize,
    sampler: SamplerConfig,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
}

/// Validates the fields both APIs share.
fn job(
    shared: &Shared,
    model: Option<&str>,
    sampling: Sampling,
    prompt: Prompt,
    default_max_tokens: usize,
) -> Result<Job, ApiError> {
    if let Some(model) = model
        && !model.is_empty()
        && model != shared.model.id
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "the model `{model}` does not exist; this server serves `{}`",
                shared.model.id
            ),
        )
        .with_code("model_not_found"));
    }
    if sampling.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    let cap = shared.config.max_tokens;
    let max_tokens = match sampling.max_completion_tokens.or(sampling.max_tokens) {
        None => default_max_tokens.min(cap),
        Some(0) => {
            return Err(ApiError::invalid(
                "max_tokens",
                "max_tokens must be at least 1",
            ));
        }
        Some(n) if n > cap as u64 => {
            return Err(ApiError::invalid(
                "max_tokens",
                format!("max_tokens is {n}, but this server allows at most {cap}"),
            ));
        }
        Some(n) => n as usize,
    };
    let temperature = sampling.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            "temperature must be between 0 and 2",
        ));
    }
    let top_p = sampling.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid("top_p", "top_p must be in (0, 1]"));
    }
    let penalty = |v: Option<f32>, name: &'static str| match v.unwrap_or(0.0) {
        p if (-2.0..=2.0).contains(&p) => Ok(p),
        _ => Err(ApiError::invalid(
            name,
            format!("{name} must be between -2 and 2"),
        )),
    };
    let presence_penalty = penalty(sampling.presence_penalty, "presence_penalty")?;
    let repetition_penalty = sampling
        .repetition_penalty
        .or(sampling.repeat_penalty)
        .unwrap_or(1.0);
    if !(repetition_penalty > 0.0 && repetition_penalty <= 2.0) {
        return Err(ApiError::invalid(
            "repetition_penalty",
            "repetition_penalty must be in (0, 2]",
        ));
    }
    let frequency_penalty = penalty(sampling.frequency_penalty, "frequency_penalty")?;
    let stop: Vec<String> = sampling
        .stop
        .map(|s| s.into_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if stop.len() > 16 || stop.iter().any(|s| s.len() > 256) {
        return Err(ApiError::invalid(
            "stop",
            "at most 16 stop strings of at most 256 bytes each",
        ));
    }
    let sampler = SamplerConfig {
        temperature,
        top_k: 0,
        top_p,
        min_p: 0.0,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        seed: sampling.seed.unwrap_or_else(rand::random),
        ..SamplerConfig::default()
    };
    Ok(Job {
        prompt,
        max_tokens,
        sampler,
        stop,
        stream: sampling.stream,
        include_usage: sampling.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// What a running generation sends its request handler.
enum Piece {
    Text(String),
    Done(Generation),
    Failed(EngineError),
}

/// Queues `job` on the engine. A task forwards its events as [`Piece`]s; when the handler
/// (the client) goes away, it cancels the generation and counts it as cancelled.
/// Returns the request's number with the receiver.
fn start(shared: &Arc<Shared>, job: &Job) -> Result<(u64, UnboundedReceiver<Piece>), ApiError> {
    Stats::bump(&shared.stats.requests, 1);
    let busy = shared.in_flight.fetch_add(1, Ordering::SeqCst);
    if busy >= shared.config.max_queue {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        Stats::bump(&shared.stats.rejected, 1);
        return Err(ApiError::busy(busy));
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let mut handle = shared.engine.submit(request::Generate {
        prompt: job.prompt.clone(),
        max_tokens: job.max_tokens,
        sampler: job.sampler.clone(),
        stop_strings: job.stop.clone(),
    });
    let (tx, rx) = unbounded_channel();
    let shared = shared.clone();
    tokio::spawn(async move {
        let cancel = handle.canceller();
        let mut gone = false;
        let mut pieces = 0usize;
        loop {
            let event = tokio::select! {
                step = handle.next() => step,
                _ = tx.closed(), if !gone => {
                    gone = true;
                    cancel.store(true, Ordering::Relaxed);
                    continue;
                }
            };
            let Some(step) = event else { break };
            match step {
                Step::Event(Event::Token(text)) => {
                    pieces += 1;
                    if !gone && tx.send(Piece::Text(text)).is_err() {
                        gone = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                Step::End(Ok(generation)) => {
                    Stats::bump(&shared.stats.completed, 1);
                    Stats::bump(
                        &shared.stats.generated_tokens,
                        generation.tokens.len() as u64,
                    );
                    let _ = tx.send(Piece::Done(generation));
                }
                Step::End(Err(EngineError::Cancelled)) if gone => {
                    Stats::bump(&shared.stats.cancelled, 1);
                    eprintln!(
                        "penwright serve: request {id}: the client went away; generation stopped after {pieces} pieces of text"
                    );
                }
                Step::End(Err(e)) => {
                    Stats::bump(&shared.stats.failed, 1);
                    let _ = tx.send(Piece::Failed(e));
                }
                Step::Event(_) => {}
            }
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
    Ok((id, rx))
}

/// The whole answer of a non-streamed request.
async fn collect(mut pieces: UnboundedReceiver<Piece>) -> Result<Generation, ApiError> {
    while let Some(piece) = pieces.recv().await {
        match piece {
            Piece::Text(_) => {}
            Piece::Done(generation) => return Ok(generation),
            Piece::Failed(e) => return Err(e.into()),
        }
    }
    Err(EngineError::WorkerStopped.into())
}

fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::StopToken | StopReason::StopString => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
    }
}

fn usage(generation: &Generation) -> Usage {
    Usage::new(generation.stats.prompt_tokens, generation.tokens.len())
}

fn json_body(value: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).expect("serializable"))
}

/// Streams a generation as server-sent events: `chunk(Some(text), None)` per piece, then
/// `chunk(None, Some(generation))` at the end, an optional usage chunk, and `[DONE]`. The
/// first piece is awaited before answering, so a request that fails at once (a prompt too
/// long) gets its HTTP status rather than a broken stream.
async fn stream_events<F>(
    mut pieces: UnboundedReceiver<Piece>,
    chunk: F,
    usage_chunk: Option<Box<dyn Fn(Usage) -> SseEvent + Send>>,
) -> Result<Response, ApiError>
where
    F: Fn(Option<String>, Option<&Generation>) -> SseEvent + Send + 'static,
{
    let first = pieces.recv().await;
    if let Some(Piece::Failed(e)) = first {
        return Err(e.into());
    }
    enum State {
        Next(Option<Piece>),
        Done,
    }
    let state = State::Next(first);
    let events = stream::unfold(
        (state, pieces, chunk, usage_chunk),
        |(state, mut pieces, chunk, usage_chunk)| async move {
            let piece = match state {
                State::Done => return None,
                State::Next(Some(piece)) => Some(piece),
                State::Next(None) => pieces.recv().await,
            };
            let (events, done): (Vec<SseEvent>, bool) = match piece {
                Some(Piece::Text(text)) => (vec![chunk(Some(text), None)], false),
                Some(Piece::Done(generation)) => {
                    let mut events = vec![chunk(None, Some(&generation))];
                    if let Some(u) = &usage_chunk {
                        events.push(u(usage(&generation)));
                    }
                    events.push(SseEvent::default().data("[DONE]"));
                    (events, true)
                }
                Some(Piece::Failed(e)) => (vec![json_body(&ApiError::from(e).body())], true),
                None => (
                    vec![json_body(
                        &ApiError::from(EngineError::WorkerStopped).body(),
                    )],
                    true,
                ),
            };
            let next = if done { State::Done } else { State::Next(None) };
            Some((
                stream::iter(events.into_iter().map(Ok::<_, Infallible>)),
                (next, pieces, chunk, usage_chunk),
            ))
        },
    )
    .flatten();
    Ok(sse(events))
}

fn sse(events: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn parse<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    // 400 for malformed JSON, 415 without a JSON content type, 413 past the body limit
    body.map(|Json(v)| v).map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "invalid_request_error",
            rejection.body_text(),
        )
    })
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = parse(body)?;
    if request.echo {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    let prompt = match request.prompt {
        PromptText::One(text) => text,
        PromptText::Many(mut texts) if texts.len() == 1 => texts.remove(0),
        PromptText::Many(_) => {
            return Err(ApiError::invalid("prompt", "give one prompt per request"));
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    let prompt = match request.suffix {
        Some(suffix) if !suffix.is_empty() => Prompt::Infill {
            prefix: prompt,
            suffix,
        },
        _ => Prompt::Text(prompt),
    };
    let job = job(
        &shared,
        request.model.as_deref(),
        request.sampling,
        prompt,
        16,
    )?;
    let (number, pieces) = start(&shared, &job)?;
    let id = format!("cmpl-{number}");
    let (created, model) = (unix_now(), shared.model.id.clone());
    if !job.stream {
        let generation = collect(pieces).await?;
        return Ok(Json(Completion {
            id,
            object: "text_completion",
            created,
            model,
            choices: vec![CompletionChoice {
                index: 0,
                text: generation.text.clone(),
                logprobs: None,
                finish_reason: Some(finish_reason(generation.stop)),
            }],
            usage: Some(usage(&generation)),
        })
        .into_response());
    }
    let (id2, model2) = (id.clone(), model.clone());
    let usage_chunk: Option<Box<dyn Fn(Usage) -> SseEvent + Send>> = job.include_usage.then(|| {
        Box::new(move |u: Usage| {
            json_body(&Completion {
                id: id2.clone(),
                object: "text_completion",
                created,
                model: model2.clone(),
                choices: Vec::new(),
                usage: Some(u),
            })
        }) as Box<dyn Fn(Usage) -> SseEvent + Send>
    });
    stream_events(
        pieces,
        move |text, end| {
            json_body(&Completion {
                id: id.clone(),
                object: "text_completion",
                created,
                model: model.clone(),
                choices: vec![CompletionChoice {
                    index: 0,
                    text: text.unwrap_or_default(),
                    logprobs: None,
                    finish_reason: end.map(|g| finish_reason(g.stop)),
                }],
                usage: None,
            })
        },
        usage_chunk,
    )
    .await
}

fn message_text(content: Option<Content>) -> String {
    match content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .filter(|p| p.kind == "text")
            .filter_map(|p| p.text)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = parse(body)?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages is empty"));
    }
    let messages: Vec<ChatMessage> = request
        .messages
        .into_iter()
        .map(|m| ChatMessage {
            role: m.role,
            content: message_text(m.content),
        })
        .collect();
    let default_max = shared.config.max_tokens;
    let job = job(
        &shared,
        request.model.as_deref(),
        request.sampling,
        Prompt::Messages(messages),
        default_max,
    )?;
    let (number, pieces) = start(&shared, &job)?;
    let id = format!("chatcmpl-{number}");
    let (created, model) = (unix_now(), shared.model.id.clone());
    if !job.stream {
        let generation = collect(pieces).await?;
        return Ok(Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: generation.text.clone(),
                },
                logprobs: None,
                finish_reason: finish_reason(generation.stop),
            }],
            usage: usage(&generation),
        })
        .into_response());
    }
    let chunk_of = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: Delta, finish: Option<&'static str>, usage: Option<Usage>| ChatChunk {
            id: id.clone(),
            object: "chat.completion.chunk",
            created,
            model: model.clone(),
            choices: if usage.is_some() {
                Vec::new()
            } else {
                vec![ChunkChoice {
                    index: 0,
                    delta,
                    logprobs: None,
                    finish_reason: finish,
                }]
            },
            usage,
        }
    };
    let chunk_of = Arc::new(chunk_of);
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let usage_chunk: Option<Box<dyn Fn(Usage) -> SseEvent + Send>> = job.include_usage.then(|| {
        let chunk_of = chunk_of.clone();
        Box::new(move |u: Usage| json_body(&chunk_of(Delta::default(), None, Some(u))))
            as Box<dyn Fn(Usage) -> SseEvent + Send>
    });
    stream_events(
        pieces,
        move |text, end| {
            // the first chunk names the role, as OpenAI's do
            let role = first.swap(false, Ordering::Relaxed).then_some("assistant");
            let delta = Delta {
                role,
                content: text.or(role.map(|_| String::new())),
            };
            json_body(&chunk_of(delta, end.map(|g| finish_reason(g.stop)), None))
        },
        usage_chunk,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        assert!(same_key(b"pw-abc", b"pw-abc"));
        assert!(!same_key(b"pw-abc", b"pw-abd"));
        assert!(!same_key(b"pw-ab", b"pw-abc"));
        assert!(!same_key(b"", b"pw-abc"));
    }

    #[test]
    fn generated_keys_differ_and_look_alike() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("pw-") && a.len() == 35);
    }
}
