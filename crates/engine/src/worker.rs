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
use crate::tasks::autocomplete::{AutocompleteSession, AutocompleteSettings, Completion};
use crate::tasks::summarize::{Summary, SummaryLength, summarize};
use crate::tasks::translate::{Translation, translate};
use crate::tasks::{ChatRunner, TaskProgress};
use crate::{EngineError, Result};

/// How a prompt is given.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Plain text continued as it is.
    Text(String),
    /// A user message rendered through the model's chat template.
    Chat(String),
    Ids(Vec<u32>),
}

/// Work for the engine.
#[derive(Debug, Clone)]
pub enum Request {
    Load {
        model: Option<String>,
        device: DeviceChoice,
        options: LoadOptions,
    },
    Generate {
        prompt: Prompt,
        max_tokens: usize,
        sampler: SamplerConfig,
        stop_strings: Vec<String>,
    },
    Complete {
        prefix: String,
        suffix: String,
        settings: AutocompleteSettings,
    },
    Summarize {
        text: String,
        length: SummaryLength,
        bullets: bool,
    },
    Translate {
        text: String,
        to: String,
        from: Option<String>,
    },
    /// Reloads the model with this LoRA adapter merged (or without any, for `None`).
    SetAdapter { adapter: Option<std::path::PathBuf> },
}

/// The device a model was loaded on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceReport {
    pub kind: crate::device::DeviceKind,
    pub name: String,
    pub reason: String,
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    Loaded {
        info: ModelInfo,
        device: DeviceReport,
        seconds: f64,
    },
    Generated(Generation),
    Completed(Completion),
    Summarized(Summary),
    Translated(Translation),
    AdapterSet {
        merged_projections: usize,
    },
}

/// Everything a job reports, in order; `Done` or `Error` comes last.
#[derive(Debug, Clone)]
pub enum Event {
    Progress {
        stage: String,
        done: usize,
        total: usize,
    },
    Token(String),
    /// A translated block: `index` of `total`, its text.
    Block {
        index: usize,
        total: usize,
        text: String,
    },
    Done(Outcome),
    Error(String),
}

struct Job {
    request: Request,
    cancel: Arc<AtomicBool>,
    events: UnboundedSender<Event>,
}

/// A running job: its events and its cancel switch.
pub struct JobHandle {
    pub events: UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl JobHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn canceller(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Waits for the outcome, passing progress and tokens to `on_event`.
    pub async fn finish(mut self, mut on_event: impl FnMut(&Event)) -> Result<Outcome> {
        while let Some(event) = self.events.recv().await {
            on_event(&event);
            match event {
                Event::Done(outcome) => return Ok(outcome),
                Event::Error(message) if message == EngineError::Cancelled.to_string() => {
                    return Err(EngineError::Cancelled);
                }
                Event::Error(message) => return Err(EngineError::Other(message)),
                _ => {}
            }
        }
        Err(EngineError::Other("the engine worker stopped".into()))
    }

    /// Blocking version of [`JobHandle::finish`] for synchronous callers.
    pub fn finish_blocking(mut self, mut on_event: impl FnMut(&Event)) -> Result<Outcome> {
        while let Some(event) = self.events.blocking_recv() {
            on_event(&event);
            match event {
                Event::Done(outcome) => return Ok(outcome),
                Event::Error(message) if message == EngineError::Cancelled.to_string() => {
                    return Err(EngineError::Cancelled);
                }
                Event::Error(message) => return Err(EngineError::Other(message)),
                _ => {}
            }
        }
        Err(EngineError::Other("the engine worker stopped".into()))
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

    /// Queues a job; its events arrive on the returned handle.
    pub fn submit(&self, request: Request) -> JobHandle {
        let (events, rx) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            request,
            cancel: cancel.clone(),
            events,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            let _ = job
                .events
                .send(Event::Error("the engine worker stopped".into()));
        }
        JobHandle { events: rx, cancel }
    }
}

#[derive(Default)]
struct Worker {
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
                let _ = job
                    .events
                    .send(Event::Error(EngineError::Cancelled.to_string()));
                continue;
            }
            let events = job.events.clone();
            let result = self.handle(job);
            let _ = events.send(match result {
                Ok(outcome) => Event::Done(outcome),
                Err(e) => Event::Error(e.to_string()),
            });
        }
    }

    fn handle(&mut self, job: Job) -> Result<Outcome> {
        let Job {
            request,
            cancel,
            events,
        } = job;
        match request {
            Request::Load {
                model,
                device,
                options,
            } => {
                let path = resolve_model(model.as_deref())?;
                let device = select(device)?;
                self.loaded = None;
                self.cache = None;
                self.autocomplete = None;
                let loaded = load_model_with(&path, device, options, &mut |p| {
                    let _ = events.send(Event::Progress {
                        stage: p.stage.to_string(),
                        done: p.done,
                        total: p.total,
                    });
                })?;
                let outcome = Outcome::Loaded {
                    info: loaded.info.clone(),
                    device: DeviceReport {
                        kind: loaded.device.kind,
                        name: loaded.device.name.clone(),
                        reason: loaded.device.reason.clone(),
                    },
                    seconds: loaded.load_seconds,
                };
                self.cache = Some(loaded.model.new_cache(SESSION_CONTEXT));
                self.loaded = Some(loaded);
                Ok(outcome)
            }
            Request::Generate {
                prompt,
                max_tokens,
                sampler,
                stop_strings,
            } => {
                let loaded = self
                    .loaded
                    .as_ref()
                    .ok_or_else(|| EngineError::Other("no model is loaded".into()))?;
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
                    &mut |t| {
                        let _ = events.send(Event::Token(t.to_string()));
                    },
                )?;
                Ok(Outcome::Generated(generation))
            }
            Request::Complete {
                prefix,
                suffix,
                settings,
            } => {
                let loaded = self
                    .loaded
                    .as_ref()
                    .ok_or_else(|| EngineError::Other("no model is loaded".into()))?;
                let session = self
                    .autocomplete
                    .get_or_insert_with(|| AutocompleteSession::new(&loaded.model, &settings));
                let completion = session.complete(
                    &loaded.model,
                    loaded.tokenizer()?,
                    &prefix,
                    &suffix,
                    &settings,
                    &cancel,
                )?;
                Ok(Outcome::Completed(completion))
            }
            Request::Summarize {
                text,
                length,
                bullets,
            } => {
                let mut runner = self.runner(&cancel)?;
                let summary = summarize(
                    &mut runner,
                    &text,
                    length,
                    bullets,
                    &mut |p| send_progress(&events, &p),
                    &mut |t| {
                        let _ = events.send(Event::Token(t.to_string()));
                    },
                )?;
                Ok(Outcome::Summarized(summary))
            }
            Request::SetAdapter { adapter } => {
                let current = self
                    .loaded
                    .take()
                    .ok_or_else(|| EngineError::Other("no model is loaded".into()))?;
                self.cache = None;
                self.autocomplete = None;
                let (path, device) = (current.info.path.clone(), current.device.clone());
                let options = current.options;
                drop(current);
                let mut loaded = load_model_with(&path, device, options, &mut |_| {})?;
                let merged = match &adapter {
                    Some(dir) => crate::lora::apply_adapter(
                        &mut loaded.model,
                        &crate::lora::Adapter::open(dir)?,
                    )?,
                    None => 0,
                };
                self.cache = Some(loaded.model.new_cache(SESSION_CONTEXT));
                self.loaded = Some(loaded);
                Ok(Outcome::AdapterSet {
                    merged_projections: merged,
                })
            }
            Request::Translate { text, to, from } => {
                let mut runner = self.runner(&cancel)?;
                let translation = translate(
                    &mut runner,
                    &text,
                    &to,
                    from.as_deref(),
                    &mut |p| send_progress(&events, &p),
                    &mut |index, total, text| {
                        let _ = events.send(Event::Block {
                            index,
                            total,
                            text: text.to_string(),
                        });
                    },
                )?;
                Ok(Outcome::Translated(translation))
            }
        }
    }
}

fn send_progress(events: &UnboundedSender<Event>, p: &TaskProgress) {
    let _ = events.send(Event::Progress {
        stage: p.stage.to_string(),
        done: p.done,
        total: p.total,
    });
}

impl Worker {
    fn runner<'a>(&'a mut self, cancel: &'a AtomicBool) -> Result<ChatRunner<'a>> {
        let loaded = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Other("no model is loaded".into()))?;
        Ok(ChatRunner {
            model: &loaded.model,
            tokenizer: loaded.tokenizer()?,
            template: loaded
                .chat_template
                .clone()
                .unwrap_or_else(crate::chat::ChatTemplate::fallback_chatml),
            cache: self.cache.as_mut().expect("cache with model"),
            cancel,
        })
    }
}

/// Token ids of a prompt: plain text (BOS added when the tokenizer wants it), a chat message
/// through the model's template (ChatML when the model has none), or ids as given.
pub fn prompt_ids(loaded: &LoadedModel, prompt: &Prompt) -> Result<Vec<u32>> {
    match prompt {
        Prompt::Ids(ids) => Ok(ids.clone()),
        Prompt::Text(text) => loaded.tokenizer()?.encode_with_bos(text, false),
        Prompt::Chat(message) => {
            let template = loaded
                .chat_template
                .clone()
                .unwrap_or_else(crate::chat::ChatTemplate::fallback_chatml);
            let rendered = template.render(
                &[crate::chat::ChatMessage {
                    role: "user".into(),
                    content: message.clone(),
                }],
                true,
            )?;
            loaded.tokenizer()?.encode(&rendered, true)
        }
    }
}
