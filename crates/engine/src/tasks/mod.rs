//! The writing tasks, built on the generation loop: autocomplete, summarize, translate,
//! rewrite.

pub mod autocomplete;
pub mod chunking;
pub mod rewrite;
pub mod summarize;
pub mod translate;

use std::sync::atomic::AtomicBool;

use crate::Result;
use crate::chat::{ChatMessage, ChatTemplate};
use crate::generate::{GenerateRequest, generate};
use crate::model::{KvCache, LanguageModel};
use crate::sampler::SamplerConfig;
use crate::tokenizer::Tokenizer;

/// Progress of a multi-step task: `stage` ("summarize", "combine", "translate") and
/// `done` of `total` steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskProgress {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}

/// The repetition penalty every task's answer is generated with, local or remote.
const TASK_REPETITION_PENALTY: f32 = 1.1;
/// The temperature of a varied answer (a rewrite's Retry).
const TASK_VARIED_TEMPERATURE: f32 = 0.8;

/// A task's one exchange: its instructions as the system message, the text as the user's.
fn exchange(system: &str, user: &str) -> [ChatMessage; 2] {
    [
        ChatMessage {
            role: "system".into(),
            content: system.into(),
        },
        ChatMessage {
            role: "user".into(),
            content: user.into(),
        },
    ]
}

/// A model a task talks to in chat turns: the local model through its template
/// ([`ChatRunner`]) or a remote engine ([`RemoteChat`]).
pub trait ChatModel {
    /// Token count of a text (estimated where the tokenizer is not at hand).
    fn count(&self, text: &str) -> usize;
    /// Positions in the context for prompt + answer.
    fn context(&self) -> usize;
    /// One exchange: system + user message → the answer, streamed to `on_text`.
    fn ask(
        &mut self,
        system: &str,
        user: &str,
        max_tokens: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String>;
}

/// A remote engine in chat turns.
pub struct RemoteChat<'a> {
    pub remote: &'a crate::remote::RemoteEngine,
    pub cancel: &'a AtomicBool,
    /// Sampled answers with this seed; greedy ones without.
    pub seed: Option<u64>,
}

impl ChatModel for RemoteChat<'_> {
    fn count(&self, text: &str) -> usize {
        // no tokenizer for a remote model: about 3 bytes a token (English is ~4), so
        // chunks stay inside its context
        text.len().div_ceil(3)
    }

    fn context(&self) -> usize {
        self.remote.context()
    }

    fn ask(
        &mut self,
        system: &str,
        user: &str,
        max_tokens: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let messages = exchange(system, user);
        let limits = crate::remote::AnswerLimits {
            repetition_penalty: Some(TASK_REPETITION_PENALTY),
            temperature: self.seed.map_or(0.0, |_| TASK_VARIED_TEMPERATURE),
            seed: self.seed,
            ..crate::remote::AnswerLimits::greedy(max_tokens)
        };
        let answer = self
            .remote
            .chat(&messages, &limits, self.cancel, &mut |t| {
                on_text(t);
                true
            })?;
        Ok(answer.text.trim().to_string())
    }
}

/// What a task needs to talk to the model through its chat template.
pub struct ChatRunner<'a> {
    pub model: &'a LanguageModel,
    pub tokenizer: &'a Tokenizer,
    pub template: ChatTemplate,
    pub cache: &'a mut KvCache,
    pub cancel: &'a AtomicBool,
    /// Sampled answers with this seed; greedy ones without.
    pub seed: Option<u64>,
}

impl ChatModel for ChatRunner<'_> {
    /// Token count of a text (no special tokens).
    fn count(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, false)
            .map_or(text.len() / 3, |t| t.len())
    }

    /// Positions left in the context for prompt + answer.
    fn context(&self) -> usize {
        self.cache.capacity()
    }

    /// One exchange: system + user message → the assistant's answer, streamed to `on_text`.
    fn ask(
        &mut self,
        system: &str,
        user: &str,
        max_tokens: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let messages = exchange(system, user);
        let parts = self.template.render_parts(&messages, true)?;
        let ids = self.tokenizer.encode_prompt(&parts)?;
        let room = self.cache.capacity().saturating_sub(ids.len());
        let mut req = GenerateRequest::new(ids, max_tokens.min(room));
        req.sampler = SamplerConfig {
            temperature: self.seed.map_or(0.0, |_| TASK_VARIED_TEMPERATURE),
            seed: self.seed.unwrap_or(0),
            repetition_penalty: TASK_REPETITION_PENALTY,
            ..SamplerConfig::default()
        };
        let out = generate(
            self.model,
            self.tokenizer,
            self.cache,
            &req,
            self.cancel,
            on_text,
        )?;
        Ok(out.text.trim().to_string())
    }
}
