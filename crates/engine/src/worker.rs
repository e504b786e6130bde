//! The model lives on one long-lived worker thread (an actor). Callers hold an
//! [`EngineHandle`] (cheap to clone, usable from async code) and get, per job, a stream of
//! [`Event`]s and a cancel switch that takes effect within one token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::device::{DeviceChoice, select};
use crate::generate::{GenerateRequest, Generation, generate};
use crate::loader::{LoadOptions, LoadedModel, ModelInfo, load_model_with, resolve_model};
use crate::model::KvCache;
use crate::sampler::SamplerConfig;
use crate::tasks::autocomplete::{
    Alternatives, AutocompleteSession, AutocompleteSettings, Completion,
};
use crate::tasks::rewrite::{Instruction, Rewrite, rewrite};
use crate::tasks::summarize::{Summary, SummaryLength, summarize};
use crate::tasks::translate::{Translation, translate};
use crate::tasks::{ChatModel, ChatRunner, RemoteChat, TaskProgress};
use crate::{EngineError, Result};

/// How a prompt is given.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Plain text continued as it is.
    Text(String),
    /// A user message rendered through the model's chat template.
    Chat(String),
    /// A whole conversation rendered through the model's chat template, ending with the
    /// header of the assistant's turn.
    Messages(Vec<crate::chat::ChatMessage>),
    /// Text to fill in between `prefix` and `suffix`: the model's fill-in-the-middle tokens
    /// where it has them, else the prefix continued as plain text.
    Infill {
        prefix: String,
        suffix: String,
    },
    Ids(Vec<u32>),
}

/// The requests the engine takes, one struct each; [`EngineHandle::submit`] answers each
/// with its own reply type (see [`Task`]).
pub mod request {
    use super::*;

    #[derive(Debug, Clone)]
    pub struct Load {
        pub model: Option<String>,
        pub device: DeviceChoice,
        pub options: LoadOptions,
    }

    #[derive(Debug, Clone)]
    pub struct Generate {
        pub prompt: Prompt,
        pub max_tokens: usize,
        pub sampler: SamplerConfig,
        pub stop_strings: Vec<String>,
    }

    #[derive(Debug, Clone)]
    pub struct Complete {
        pub prefix: String,
        pub suffix: String,
        pub settings: AutocompleteSettings,
    }

    /// Other suggestions for the cursor a `Complete` just answered: sampled, distinct from
    /// each other and from `exclude`.
    #[derive(Debug, Clone)]
    pub struct CompleteAlternatives {
        pub prefix: String,
        pub suffix: String,
        pub settings: AutocompleteSettings,
        pub want: Alternatives,
        pub exclude: Vec<String>,
    }

    #[derive(Debug, Clone)]
    pub struct Summarize {
        pub text: String,
        pub length: SummaryLength,
        pub bullets: bool,
    }

    #[derive(Debug, Clone)]
    pub struct Translate {
        pub text: String,
        pub to: String,
        pub from: Option<String>,
    }

    /// Rewrites Markdown block by block as the instruction says.
    #[derive(Debug, Clone)]
    pub struct Rewrite {
        pub text: String,
        pub instruction: Instruction,
        /// 0: the model's most likely answer; another number: a different, sampled one
        /// (the writer's Retry), the same for the same number.
        pub attempt: u64,
    }

    /// Reloads the model with this LoRA adapter merged (or without any, for `None`).
    #[derive(Debug, Clone)]
    pub struct SetAdapter {
        pub adapter: Option<std::path::PathBuf>,
    }

    /// Uses a remote engine (an OpenAI-compatible server) for these tasks from now on;
    /// the others keep the engine they had.
    #[derive(Debug, Clone)]
    pub struct UseRemote {
        pub endpoint: crate::remote::RemoteEndpoint,
        pub tasks: Vec<TaskKind>,
    }

    /// Uses the local model again for these tasks.
    #[derive(Debug, Clone)]
    pub struct UseLocal {
        pub tasks: Vec<TaskKind>,
    }

    /// Panics on the worker (tests of how a bug in one request is contained).
    #[cfg(test)]
    #[derive(Debug, Clone)]
    pub struct Panic;
}

/// The kinds of work an engine is chosen for: each can go to the local model or to a remote
/// engine of its own.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Ghost text and its alternatives.
    Autocomplete,
    Summarize,
    Translate,
    Rewrite,
    /// Plain generation from a prompt (`penwright generate`, the server's requests).
    Generate,
}

impl TaskKind {
    /// Every kind of work.
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Autocomplete,
        TaskKind::Summarize,
        TaskKind::Translate,
        TaskKind::Rewrite,
        TaskKind::Generate,
    ];
    /// The writer's tasks in the app (plain generation stays with the local model there,
    /// which is what the app serves when it serves).
    pub const WRITING: [TaskKind; 4] = [
        TaskKind::Autocomplete,
        TaskKind::Summarize,
        TaskKind::Translate,
        TaskKind::Rewrite,
    ];
}

/// A request and the type of its reply.
pub trait Task: Into<Request> {
    type Reply;
    /// The reply in `outcome`, when `outcome` answers this kind of request.
    fn reply(outcome: Outcome) -> Option<Self::Reply>;
}

/// Declares [`Request`] and [`Outcome`] with one variant per request and its reply, and
/// ties each request struct to its reply type.
macro_rules! requests {
    ($($(#[$meta:meta])* $name:ident => $reply:ty,)*) => {
        /// Work for the engine: one of the [`request`] structs.
        #[derive(Debug, Clone)]
        pub enum Request {
            $($(#[$meta])* $name(request::$name),)*
        }

        /// What a finished job produced: the reply to its request.
        #[derive(Debug, Clone)]
        pub enum Outcome {
            $($(#[$meta])* $name($reply),)*
        }

        $(
            $(#[$meta])*
            impl From<request::$name> for Request {
                fn from(r: request::$name) -> Request {
                    Request::$name(r)
                }
            }

            $(#[$meta])*
            impl Task for request::$name {
                type Reply = $reply;
                fn reply(outcome: Outcome) -> Option<$reply> {
                    #[allow(unreachable_patterns)]
                    match outcome {
                        Outcome::$name(reply) => Some(reply),
                        _ => None,
                    }
                }
            }
        )*
    };
}

requests! {
    Load => Loaded,
    Generate => Generation,
    Complete => Completion,
    /// Alternative suggestions, in the order found.
    CompleteAlternatives => Vec<String>,
    Summarize => Summary,
    Translate => Translation,
    Rewrite => Rewrite,
    SetAdapter => AdapterSet,
    /// The remote engine that answers those tasks from now on.
    UseRemote => crate::remote::RemoteModel,
    UseLocal => (),
    #[cfg(test)]
    Panic => (),
}

/// The device a model was loaded on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceReport {
    pub kind: crate::device::DeviceKind,
    pub name: String,
    pub reason: String,
}

/// A model loaded: what it is, where it runs, how long loading took.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub info: ModelInfo,
    pub device: DeviceReport,
    pub seconds: f64,
}

/// An adapter merged into the model (0 projections: the plain model again).
#[derive(Debug, Clone, Copy)]
pub struct AdapterSet {
    pub merged_projections: usize,
}

/// What a job reports on its way: progress, streamed text, finished blocks.
#[derive(Debug)]
pub enum Event {
    Progress {
        stage: String,
        done: usize,
        total: usize,
    },
    Token(String),
    /// A translated or rewritten block: `index` of `total`, its text.
    Block {
        index: usize,
        total: usize,
        text: String,
    },
}

/// One message from the worker: an event, or the job's end (its last message). The error
/// keeps its kind across the thread boundary.
#[derive(Debug)]
enum Message {
    Event(Event),
    End(Result<Outcome>),
}

/// What a job's handle reads next: an event, or the end with the typed reply.
#[derive(Debug)]
pub enum Step<R> {
    Event(Event),
    End(Result<R>),
}

struct Job {
    request: Request,
    cancel: Arc<AtomicBool>,
    events: UnboundedSender<Message>,
}

/// A running job: its events, its cancel switch and, at the end, its reply `R`.
pub struct JobHandle<R> {
    messages: UnboundedReceiver<Message>,
    cancel: Arc<AtomicBool>,
    reply: fn(Outcome) -> Option<R>,
}

impl<R> JobHandle<R> {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn canceller(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// The next event or the end; `None` after the end.
    pub async fn next(&mut self) -> Option<Step<R>> {
        let message = self.messages.recv().await;
        self.step(message)
    }

    /// Waits for the reply, passing progress and tokens to `on_event`.
    pub async fn finish(mut self, mut on_event: impl FnMut(&Event)) -> Result<R> {
        loop {
            match self.next().await {
                Some(Step::Event(event)) => on_event(&event),
                Some(Step::End(end)) => return end,
                None => return Err(EngineError::WorkerStopped),
            }
        }
    }

    /// Blocking version of [`JobHandle::finish`] for synchronous callers.
    pub fn finish_blocking(mut self, mut on_event: impl FnMut(&Event)) -> Result<R> {
        loop {
            let message = self.messages.blocking_recv();
            match self.step(message) {
                Some(Step::Event(event)) => on_event(&event),
                Some(Step::End(end)) => return end,
                None => return Err(EngineError::WorkerStopped),
            }
        }
    }

    fn step(&self, message: Option<Message>) -> Option<Step<R>> {
        Some(match message? {
            Message::Event(event) => Step::Event(event),
            Message::End(end) => Step::End(end.and_then(|outcome| {
                (self.reply)(outcome)
                    .ok_or_else(|| EngineError::Other("the engine answered another request".into()))
            })),
        })
    }
}

/// The caller's side of the engine actor.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
}

impl EngineHandle {
    /// Starts the worker thread.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("penwright-engine".into())
            .spawn(move || Worker::default().run(rx))
            .expect("spawn the engine thread");
        EngineHandle { jobs: tx }
    }

    /// Queues a job; its events and its reply arrive on the returned handle.
    pub fn submit<T: Task>(&self, task: T) -> JobHandle<T::Reply> {
        let (events, messages) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            request: task.into(),
            cancel: cancel.clone(),
            events,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            let _ = job
                .events
                .send(Message::End(Err(EngineError::WorkerStopped)));
        }
        JobHandle {
            messages,
            cancel,
            reply: T::reply,
        }
    }
}

#[derive(Default)]
struct Worker {
    /// The tasks that go to a server instead of the local model, and their server.
    remotes: std::collections::HashMap<TaskKind, Arc<crate::remote::RemoteEngine>>,
    loaded: Option<LoadedModel>,
    cache: Option<KvCache>,
    autocomplete: Option<AutocompleteSession>,
}

/// Capacity of the session's KV cache (positions), bounded by the model's context.
pub const SESSION_CONTEXT: usize = 4096;

impl Worker {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            if job.cancel.load(Ordering::Relaxed) {
                let _ = job.events.send(Message::End(Err(EngineError::Cancelled)));
                continue;
            }
            let events = job.events.clone();
            // A panic in one request is that request's error: the worker keeps serving. The
            // KV caches may be half written, so they start afresh; the weights are read-only.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(job)))
                    .unwrap_or_else(|panic| {
                        self.reset_caches();
                        Err(EngineError::Panicked(panic_message(panic.as_ref())))
                    });
            let _ = events.send(Message::End(result));
        }
    }

    fn handle(&mut self, job: Job) -> Result<Outcome> {
        let Job {
            request,
            cancel,
            events,
        } = job;
        match request {
            Request::Load(request::Load {
                model,
                device,
                options,
            }) => {
                let path = resolve_model(model.as_deref())?;
                // a file that cannot be a model (corrupt, truncated, hostile, unknown) is
                // refused before the loaded model is let go: the writer keeps working
                crate::loader::inspect_model(&path)?;
                let device = select(device)?;
                self.loaded = None;
                self.cache = None;
                self.autocomplete = None;
                let loaded = load_model_with(&path, device, options, &mut |p| {
                    emit(
                        &events,
                        Event::Progress {
                            stage: p.stage.to_string(),
                            done: p.done,
                            total: p.total,
                        },
                    );
                })?;
                let outcome = Outcome::Load(Loaded {
                    info: loaded.info.clone(),
                    device: DeviceReport {
                        kind: loaded.device.kind,
                        name: loaded.device.name.clone(),
                        reason: loaded.device.reason.clone(),
                    },
                    seconds: loaded.load_seconds,
                });
                self.cache = Some(loaded.model.new_cache(SESSION_CONTEXT));
                self.loaded = Some(loaded);
                Ok(outcome)
            }
            Request::UseRemote(request::UseRemote { endpoint, tasks }) => {
                if tasks.is_empty() {
                    return Err(EngineError::InvalidRequest(
                        "no task named for the remote engine".into(),
                    ));
                }
                let remote = Arc::new(crate::remote::RemoteEngine::connect(endpoint)?);
                let model = crate::remote::RemoteModel {
                    id: remote.endpoint().model.clone(),
                    context: Some(remote.context()),
                };
                for task in tasks {
                    self.remotes.insert(task, remote.clone());
                }
                Ok(Outcome::UseRemote(model))
            }
            Request::UseLocal(request::UseLocal { tasks }) => {
                for task in tasks {
                    self.remotes.remove(&task);
                }
                Ok(Outcome::UseLocal(()))
            }
            Request::CompleteAlternatives(request::CompleteAlternatives {
                prefix,
                suffix,
                settings,
                want,
                exclude,
            }) if self.remotes.contains_key(&TaskKind::Autocomplete) => {
                let remote = &self.remotes[&TaskKind::Autocomplete];
                Ok(Outcome::CompleteAlternatives(
                    crate::tasks::autocomplete::alternatives_remote(
                        remote, &prefix, &suffix, &settings, want, &exclude, &cancel,
                    )?,
                ))
            }
            Request::Generate(request::Generate {
                prompt,
                max_tokens,
                sampler,
                stop_strings,
            }) if self.remotes.contains_key(&TaskKind::Generate) => {
                let remote = &self.remotes[&TaskKind::Generate];
                let limits = crate::remote::AnswerLimits {
                    max_tokens,
                    temperature: sampler.temperature,
                    stop: stop_strings,
                    repetition_penalty: (sampler.repetition_penalty != 1.0)
                        .then_some(sampler.repetition_penalty),
                    seed: (sampler.temperature > 0.0).then_some(sampler.seed),
                };
                let generation = generate_remote(remote, &prompt, &limits, &cancel, &mut |t| {
                    emit(&events, Event::Token(t.to_string()))
                })?;
                Ok(Outcome::Generate(generation))
            }
            Request::Complete(request::Complete {
                prefix,
                suffix,
                settings,
            }) if self.remotes.contains_key(&TaskKind::Autocomplete) => {
                let remote = &self.remotes[&TaskKind::Autocomplete];
                Ok(Outcome::Complete(
                    crate::tasks::autocomplete::complete_remote(
                        remote, &prefix, &suffix, &settings, &cancel,
                    )?,
                ))
            }
            Request::Generate(request::Generate {
                prompt,
                max_tokens,
                sampler,
                stop_strings,
            }) => {
                let loaded = self.loaded.as_ref().ok_or(EngineError::NoModel)?;
                let cache = self.cache.as_mut().expect("cache with model");
                let prompt_ids = prompt_ids(loaded, &prompt)?;
                let req = GenerateRequest {
                    prompt_ids,
                    max_tokens,
                    sampler,
                    stop_strings,
                    stop_ids: Vec::new(),
                };
                let generation = generate(
                    &loaded.model,
                    loaded.tokenizer()?,
                    cache,
                    &req,
                    &cancel,
                    &mut |t| emit(&events, Event::Token(t.to_string())),
                )?;
                Ok(Outcome::Generate(generation))
            }
            Request::Complete(request::Complete {
                prefix,
                suffix,
                settings,
            }) => {
                let (loaded, session) = self.autocomplete_session(&settings)?;
                let completion = session.complete(
                    &loaded.model,
                    loaded.tokenizer()?,
                    &prefix,
                    &suffix,
                    &settings,
                    &cancel,
                )?;
                Ok(Outcome::Complete(completion))
            }
            Request::CompleteAlternatives(request::CompleteAlternatives {
                prefix,
                suffix,
                settings,
                want,
                exclude,
            }) => {
                let (loaded, session) = self.autocomplete_session(&settings)?;
                let found = session.alternatives(
                    &loaded.model,
                    loaded.tokenizer()?,
                    &prefix,
                    &suffix,
                    &settings,
                    want,
                    &exclude,
                    &cancel,
                )?;
                Ok(Outcome::CompleteAlternatives(found))
            }
            Request::Summarize(request::Summarize {
                text,
                length,
                bullets,
            }) => {
                let mut runner = self.runner(TaskKind::Summarize, &cancel, None)?;
                let summary = summarize(
                    runner.as_mut(),
                    &text,
                    length,
                    bullets,
                    &mut |p| send_progress(&events, &p),
                    &mut |t| emit(&events, Event::Token(t.to_string())),
                )?;
                Ok(Outcome::Summarize(summary))
            }
            Request::SetAdapter(request::SetAdapter { adapter }) => {
                // read the adapter before touching the model: a bad one leaves it as it was
                let adapter = adapter
                    .as_deref()
                    .map(crate::lora::Adapter::open)
                    .transpose()?;
                let current = self.loaded.take().ok_or(EngineError::NoModel)?;
                self.cache = None;
                self.autocomplete = None;
                let (path, device) = (current.info.path.clone(), current.device.clone());
                let options = current.options;
                drop(current);
                let mut loaded = load_model_with(&path, device.clone(), options, &mut |_| {})?;
                let merged = match &adapter {
                    Some(adapter) => {
                        match crate::lora::apply_adapter(&mut loaded.model, adapter) {
                            Ok(n) => n,
                            Err(e) => {
                                // the model may hold some of its branches: load it afresh
                                let plain = load_model_with(&path, device, options, &mut |_| {})?;
                                self.cache = Some(plain.model.new_cache(SESSION_CONTEXT));
                                self.loaded = Some(plain);
                                return Err(e);
                            }
                        }
                    }
                    None => 0,
                };
                self.cache = Some(loaded.model.new_cache(SESSION_CONTEXT));
                self.loaded = Some(loaded);
                Ok(Outcome::SetAdapter(AdapterSet {
                    merged_projections: merged,
                }))
            }
            #[cfg(test)]
            Request::Panic(request::Panic) => panic!("a test panic"),
            Request::Translate(request::Translate { text, to, from }) => {
                let mut runner = self.runner(TaskKind::Translate, &cancel, None)?;
                let translation = translate(
                    runner.as_mut(),
                    &text,
                    &to,
                    from.as_deref(),
                    &mut |p| send_progress(&events, &p),
                    &mut |index, total, text| send_block(&events, index, total, text),
                )?;
                Ok(Outcome::Translate(translation))
            }
            Request::Rewrite(request::Rewrite {
                text,
                instruction,
                attempt,
            }) => {
                let mut runner =
                    self.runner(TaskKind::Rewrite, &cancel, (attempt > 0).then_some(attempt))?;
                let rewritten = rewrite(
                    runner.as_mut(),
                    &text,
                    &instruction,
                    &mut |p| send_progress(&events, &p),
                    &mut |index, total, text| send_block(&events, index, total, text),
                    &mut |t| emit(&events, Event::Token(t.to_string())),
                )?;
                Ok(Outcome::Rewrite(rewritten))
            }
        }
    }
}

/// A generation from a remote engine: text prompts through `/completions` (with the
/// suffix, for an infill), chat prompts through `/chat/completions`.
fn generate_remote(
    remote: &crate::remote::RemoteEngine,
    prompt: &Prompt,
    limits: &crate::remote::AnswerLimits,
    cancel: &AtomicBool,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    let started = std::time::Instant::now();
    let mut first = None;
    let mut on_piece = |t: &str| {
        first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
        on_text(t);
        true
    };
    let answer = match prompt {
        Prompt::Text(text) => remote.complete(text, None, limits, cancel, &mut on_piece)?,
        Prompt::Infill { prefix, suffix } => {
            remote.complete(prefix, Some(suffix), limits, cancel, &mut on_piece)?
        }
        Prompt::Chat(message) => {
            let messages = [crate::chat::ChatMessage {
                role: "user".into(),
                content: message.clone(),
            }];
            remote.chat(&messages, limits, cancel, &mut on_piece)?
        }
        Prompt::Messages(messages) => remote.chat(messages, limits, cancel, &mut on_piece)?,
        Prompt::Ids(_) => {
            return Err(EngineError::InvalidRequest(
                "a remote engine takes text, not token ids".into(),
            ));
        }
    };
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let ttft_ms = first.unwrap_or(total_ms);
    let stop = match answer.finish_reason.as_deref() {
        Some("length") => crate::generate::StopReason::MaxTokens,
        _ => crate::generate::StopReason::StopToken,
    };
    let generated = answer.completion_tokens.unwrap_or(0);
    Ok(Generation {
        text: answer.text,
        tokens: Vec::new(),
        stop,
        stats: crate::generate::GenerationStats {
            generated_tokens: generated,
            ttft_ms,
            decode_ms: total_ms - ttft_ms,
            decode_tok_s: generated.saturating_sub(1) as f64
                / ((total_ms - ttft_ms) / 1e3).max(1e-9),
            ..Default::default()
        },
    })
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Sends an event of the job (dropped when its caller has gone).
fn emit(events: &UnboundedSender<Message>, event: Event) {
    let _ = events.send(Message::Event(event));
}

fn send_progress(events: &UnboundedSender<Message>, p: &TaskProgress) {
    emit(
        events,
        Event::Progress {
            stage: p.stage.to_string(),
            done: p.done,
            total: p.total,
        },
    );
}

fn send_block(events: &UnboundedSender<Message>, index: usize, total: usize, text: &str) {
    emit(
        events,
        Event::Block {
            index,
            total,
            text: text.to_string(),
        },
    );
}

impl Worker {
    /// Fresh KV caches for the loaded model (after a request failed midway).
    fn reset_caches(&mut self) {
        self.autocomplete = None;
        self.cache = self
            .loaded
            .as_ref()
            .map(|l| l.model.new_cache(SESSION_CONTEXT));
    }

    /// The loaded model and its autocomplete session (made on first use).
    fn autocomplete_session(
        &mut self,
        settings: &AutocompleteSettings,
    ) -> Result<(&LoadedModel, &mut AutocompleteSession)> {
        let loaded = self.loaded.as_ref().ok_or(EngineError::NoModel)?;
        let session = self
            .autocomplete
            .get_or_insert_with(|| AutocompleteSession::new(&loaded.model, settings));
        Ok((loaded, session))
    }

    /// The engine `task` talks to: the remote one chosen for it, else the local model
    /// through its chat template. `seed`: sampled answers (a Retry), or the most likely
    /// ones without.
    fn runner<'a>(
        &'a mut self,
        task: TaskKind,
        cancel: &'a AtomicBool,
        seed: Option<u64>,
    ) -> Result<Box<dyn ChatModel + 'a>> {
        if let Some(remote) = self.remotes.get(&task) {
            return Ok(Box::new(RemoteChat {
                remote,
                cancel,
                seed,
            }));
        }
        let loaded = self.loaded.as_ref().ok_or(EngineError::NoModel)?;
        Ok(Box::new(ChatRunner {
            model: &loaded.model,
            tokenizer: loaded.tokenizer()?,
            template: loaded
                .chat_template
                .clone()
                .unwrap_or_else(crate::chat::ChatTemplate::fallback_chatml),
            cache: self.cache.as_mut().expect("cache with model"),
            cancel,
            seed,
        }))
    }
}

/// Token ids of a prompt: plain text (BOS added when the tokenizer wants it), chat messages
/// through the model's template (ChatML when the model has none), a fill-in-the-middle
/// prompt, or ids as given.
pub fn prompt_ids(loaded: &LoadedModel, prompt: &Prompt) -> Result<Vec<u32>> {
    let tokenizer = loaded.tokenizer()?;
    match prompt {
        Prompt::Ids(ids) => Ok(ids.clone()),
        Prompt::Text(text) => tokenizer.encode_with_bos(text, false),
        Prompt::Infill { prefix, suffix } => match tokenizer.fim_tokens() {
            Some(fim) if !suffix.is_empty() => {
                let mut ids = vec![fim.prefix];
                ids.extend(tokenizer.encode(prefix, false)?);
                ids.push(fim.suffix);
                ids.extend(tokenizer.encode(suffix, false)?);
                ids.push(fim.middle);
                Ok(ids)
            }
            _ => tokenizer.encode_with_bos(prefix, false),
        },
        Prompt::Chat(message) => prompt_ids(
            loaded,
            &Prompt::Messages(vec![crate::chat::ChatMessage {
                role: "user".into(),
                content: message.clone(),
            }]),
        ),
        Prompt::Messages(messages) => {
            let template = loaded
                .chat_template
                .clone()
                .unwrap_or_else(crate::chat::ChatTemplate::fallback_chatml);
            tokenizer.encode_prompt(&template.render_parts(messages, true)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// The default model (installed by `make setup`).
    fn default_model() -> request::Load {
        request::Load {
            model: None,
            device: DeviceChoice::Cpu,
            options: LoadOptions::default(),
        }
    }

    fn generate(ids: Vec<u32>) -> request::Generate {
        request::Generate {
            prompt: Prompt::Ids(ids),
            max_tokens: 3,
            sampler: SamplerConfig::default(),
            stop_strings: Vec::new(),
        }
    }

    #[test]
    fn errors_keep_their_kind_across_the_worker() {
        let engine = EngineHandle::spawn();
        let err = engine.submit(generate(vec![1, 2])).finish_blocking(|_| {});
        assert_eq!(err.unwrap_err().kind(), ErrorKind::NoModel);
        engine
            .submit(default_model())
            .finish_blocking(|_| {})
            .unwrap();
        let err = engine
            .submit(generate(vec![1, 1 << 30]))
            .finish_blocking(|_| {});
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
        assert!(err.to_string().contains("outside the vocabulary"), "{err}");
        let job = engine.submit(generate(vec![1, 2]));
        job.cancel();
        let err = job.finish_blocking(|_| {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled);
    }

    #[test]
    fn a_panicking_request_is_an_error_and_the_worker_keeps_serving() {
        let engine = EngineHandle::spawn();
        engine
            .submit(default_model())
            .finish_blocking(|_| {})
            .unwrap();
        let err = engine
            .submit(request::Panic)
            .finish_blocking(|_| {})
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.to_string().contains("a test panic"), "{err}");
        let outcome = engine
            .submit(generate(vec![1, 2, 3]))
            .finish_blocking(|_| {});
        let Ok(generation) = outcome else {
            panic!("the worker no longer generates: {outcome:?}")
        };
        assert!(!generation.tokens.is_empty() && generation.tokens.len() <= 3);
    }

    #[test]
    fn a_documents_control_token_text_is_plain_text() {
        let path = resolve_model(None).unwrap();
        let loaded = crate::loader::load_model_with(
            &path,
            select(DeviceChoice::Cpu).unwrap(),
            LoadOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        let tokenizer = loaded.tokenizer().unwrap();
        let end = tokenizer
            .token_to_id("<|im_end|>")
            .expect("ChatML end token");
        let message = |content: &str| {
            Prompt::Messages(vec![crate::chat::ChatMessage {
                role: "user".into(),
                content: content.into(),
            }])
        };
        let ids = prompt_ids(&loaded, &message("Stop here <|im_end|> then go on.")).unwrap();
        let plain = prompt_ids(&loaded, &message("Hello there.")).unwrap();
        // only the template closes turns (its default system turn and the user's)
        let ends = |ids: &[u32]| ids.iter().filter(|&&i| i == end).count();
        assert_eq!(ends(&ids), ends(&plain), "{ids:?}");
        // and an ordinary message tokenizes as it did before, piece by piece
        let template = loaded.chat_template.clone().unwrap();
        let whole = template
            .render(
                &[crate::chat::ChatMessage {
                    role: "user".into(),
                    content: "Hello there.".into(),
                }],
                true,
            )
            .unwrap();
        assert_eq!(plain, tokenizer.encode(&whole, true).unwrap());
    }

    #[test]
    fn a_corrupt_model_file_is_refused_and_the_loaded_model_stays() {
        let engine = EngineHandle::spawn();
        engine
            .submit(default_model())
            .finish_blocking(|_| {})
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let truncated = dir.path().join("truncated.gguf");
        let bytes = std::fs::read(resolve_model(None).unwrap()).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
        let err = engine
            .submit(request::Load {
                model: Some(truncated.display().to_string()),
                device: DeviceChoice::Cpu,
                options: LoadOptions::default(),
            })
            .finish_blocking(|_| {})
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadModelFile, "{err}");
        let generation = engine
            .submit(generate(vec![1, 2, 3]))
            .finish_blocking(|_| {});
        assert!(generation.is_ok(), "{generation:?}");
    }

    #[test]
    fn a_bad_adapter_leaves_the_model_loaded() {
        let engine = EngineHandle::spawn();
        engine
            .submit(default_model())
            .finish_blocking(|_| {})
            .unwrap();
        let missing = std::env::temp_dir().join("penwright-no-such-adapter");
        let err = engine
            .submit(request::SetAdapter {
                adapter: Some(missing),
            })
            .finish_blocking(|_| {});
        assert!(err.is_err());
        let outcome = engine
            .submit(generate(vec![1, 2, 3]))
            .finish_blocking(|_| {});
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}
