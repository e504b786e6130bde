//! Inline autocomplete: a short continuation of the text before the cursor that keeps up with
//! typing. The session keeps its KV cache between requests and reuses the longest common
//! token prefix, so time to first token does not grow with the document. Token healing makes
//! mid-word completions continue the word and keeps the seam free of doubled or missing
//! spaces; the suffix is used (FIM when the vocabulary has it) and never repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::generate::{decode_step, prefill};
use crate::model::{KvCache, LanguageModel};
use crate::sampler::argmax;
use crate::tokenizer::Tokenizer;
use crate::{EngineError, Result};

/// Where a suggestion stops, and how much context it sees.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AutocompleteSettings {
    /// Only the last N tokens (about) of the text before the cursor are used.
    pub max_context_tokens: usize,
    pub max_tokens: usize,
    /// Stop after this many words (0 = no limit).
    pub max_words: usize,
    pub stop_at_sentence_end: bool,
    pub stop_at_newline: bool,
    /// Stop at a blank line (the end of the paragraph).
    pub stop_at_paragraph_end: bool,
    /// Use fill-in-the-middle tokens when the model has them and there is text after the cursor.
    pub use_fim: bool,
}

/// How long a suggestion may run: the writer's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuggestionLength {
    /// A few words.
    Words,
    /// To the end of the sentence.
    #[default]
    Sentence,
    /// Up to the end of the paragraph, over several lines.
    Paragraph,
}

impl std::str::FromStr for SuggestionLength {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "words" => Ok(SuggestionLength::Words),
            "sentence" => Ok(SuggestionLength::Sentence),
            "paragraph" => Ok(SuggestionLength::Paragraph),
            other => Err(EngineError::Other(format!(
                "unknown suggestion length {other:?}; use words, sentence or paragraph"
            ))),
        }
    }
}

/// The most tokens a suggestion of any length may take.
pub const MAX_SUGGESTION_TOKENS: usize = 96;

impl AutocompleteSettings {
    /// The settings for a suggestion of this length, with or without the text after the
    /// cursor as fill-in-the-middle context.
    pub fn new(length: SuggestionLength, use_fim: bool) -> Self {
        let base = AutocompleteSettings {
            use_fim,
            ..AutocompleteSettings::default()
        };
        match length {
            SuggestionLength::Words => AutocompleteSettings {
                max_tokens: 8,
                max_words: 4,
                ..base
            },
            SuggestionLength::Sentence => base,
            SuggestionLength::Paragraph => AutocompleteSettings {
                max_tokens: MAX_SUGGESTION_TOKENS,
                max_words: 0,
                stop_at_sentence_end: false,
                stop_at_newline: false,
                stop_at_paragraph_end: true,
                ..base
            },
        }
    }
}

impl Default for AutocompleteSettings {
    fn default() -> Self {
        AutocompleteSettings {
            max_context_tokens: 512,
            max_tokens: 24,
            max_words: 12,
            stop_at_sentence_end: true,
            stop_at_newline: true,
            stop_at_paragraph_end: true,
            use_fim: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    pub completion: String,
    pub ttft_ms: f64,
    pub total_ms: f64,
    pub reused_tokens: usize,
    pub prefilled_tokens: usize,
}

impl Completion {
    /// No suggestion (nothing but whitespace before the cursor).
    fn none() -> Self {
        Completion {
            completion: String::new(),
            ttft_ms: 0.0,
            total_ms: 0.0,
            reused_tokens: 0,
            prefilled_tokens: 0,
        }
    }
}

/// The text before the cursor a suggestion is made from (about the last
/// `max_context_tokens`), or `None` when it is only whitespace.
fn suggestion_window<'p>(prefix: &'p str, settings: &AutocompleteSettings) -> Option<&'p str> {
    let window = &prefix[context_start(prefix, settings.max_context_tokens * 4)..];
    (!window.trim().is_empty()).then_some(window)
}

/// One writer's autocomplete session: its own KV cache and the decoded text of every token.
pub struct AutocompleteSession {
    cache: KvCache,
    /// Shared, so a request holds them while it also mutates the cache.
    pieces: Option<Arc<[String]>>,
}

/// Start of the context window: the latest paragraph (else line, else word) boundary that
/// leaves at most `budget` bytes. Boundaries only move when the text crosses one, so the
/// window start stays put while the writer types and the cached prefix stays reusable.
pub fn context_start(prefix: &str, budget: usize) -> usize {
    if prefix.len() <= budget {
        return 0;
    }
    let min_start = prefix.len() - budget;
    let mut candidates = [None, None, None];
    for (i, _) in prefix.match_indices("\n\n") {
        if i + 2 >= min_start {
            candidates[0].get_or_insert(i + 2);
        }
    }
    for (i, _) in prefix.match_indices('\n') {
        if i + 1 >= min_start {
            candidates[1].get_or_insert(i + 1);
        }
    }
    // word boundary, aligned to a coarse grid so it does not move every keystroke
    let grid = (budget / 4).max(1);
    let aligned = min_start.div_ceil(grid) * grid;
    if let Some(off) = prefix
        .get(aligned.min(prefix.len())..)
        .and_then(|s| s.find(' '))
    {
        candidates[2] = Some(aligned + off + 1);
    }
    candidates
        .into_iter()
        .flatten()
        .find(|&c| c < prefix.len())
        .unwrap_or(min_start)
        .min(prefix.len())
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Cuts `completion` to the stop policy: the first blank line or newline, the end of the
/// first sentence, `max_words` words.
pub fn apply_stop_policy(completion: &str, s: &AutocompleteSettings) -> (String, bool) {
    let mut end = completion.len();
    let mut stopped = false;
    if s.stop_at_paragraph_end {
        // a blank line, once there is text before it
        let start = completion.len() - completion.trim_start().len();
        if let Some(i) = completion[start..].find("\n\n") {
            end = end.min(start + i);
            stopped = true;
        }
    }
    if s.stop_at_newline {
        // a completion may not start with a newline it cannot justify; cut at the first one
        if let Some(i) = completion.find('\n') {
            end = end.min(i);
            stopped = true;
        }
    }
    if s.stop_at_sentence_end {
        let bytes = completion.as_bytes();
        for (i, c) in completion.char_indices() {
            if i >= end {
                break;
            }
            if matches!(c, '.' | '!' | '?') {
                let next = bytes.get(i + 1).copied();
                // a sentence end: punctuation followed by a space or the end (not "3.14", "e.g")
                if next.is_some_and(|b| b == b' ' || b == b'\n' || b == b'"' || b == b')') {
                    let close = if matches!(next, Some(b'"') | Some(b')')) {
                        2
                    } else {
                        1
                    };
                    end = end.min(i + close);
                    stopped = true;
                    break;
                }
            }
        }
    }
    if s.max_words > 0 {
        let mut count = 0;
        let mut in_word = false;
        for (i, c) in completion.char_indices() {
            if i >= end {
                break;
            }
            if c.is_whitespace() {
                in_word = false;
            } else if !in_word {
                in_word = true;
                count += 1;
                if count > s.max_words {
                    end = end.min(i);
                    stopped = true;
                    break;
                }
            }
        }
    }
    (completion[..end].trim_end().to_string(), stopped)
}

/// Cuts the completion where it starts repeating the text after the cursor.
pub fn cut_suffix_repeat(completion: &str, suffix: &str) -> String {
    let suffix = suffix.trim_start();
    if suffix.is_empty() {
        return completion.to_string();
    }
    // the first few words of the suffix, as the writer already has them
    let head: String = suffix.chars().take(24).collect();
    let head = head.trim_end();
    let probe_len = head.len().min(12);
    if probe_len >= 4 {
        let probe = &head[..head
            .char_indices()
            .nth(probe_len)
            .map_or(head.len(), |(i, _)| i)];
        if let Some(i) = completion.find(probe) {
            return completion[..i].trim_end().to_string();
        }
    }
    completion.to_string()
}

/// Drops a completion that merely repeats the last words already typed.
pub fn drop_repeated_words(prefix: &str, completion: &str) -> String {
    let before = words(prefix);
    let after = words(completion);
    for n in (2..=4).rev() {
        if before.len() >= n && after.len() >= n && before[before.len() - n..] == after[..n] {
            // skip the first n words of the completion, keeping the space before the next
            let mut seen = 0;
            let mut in_word = false;
            let mut word_end = 0;
            for (i, c) in completion.char_indices() {
                if c.is_whitespace() {
                    if in_word {
                        word_end = i;
                    }
                    in_word = false;
                } else if !in_word {
                    in_word = true;
                    if seen == n {
                        return completion[word_end..].to_string();
                    }
                    seen += 1;
                }
            }
            return String::new();
        }
    }
    completion.to_string()
}

impl AutocompleteSession {
    pub fn new(model: &LanguageModel, settings: &AutocompleteSettings) -> Self {
        // room for the context, the suffix (FIM) and a completion of any length
        let capacity =
            settings.max_context_tokens * 2 + 256 + settings.max_tokens.max(MAX_SUGGESTION_TOKENS);
        AutocompleteSession {
            cache: model.new_cache(capacity),
            pieces: None,
        }
    }

    fn pieces(&mut self, tokenizer: &Tokenizer) -> Result<Arc<[String]>> {
        if self.pieces.is_none() {
            let n = tokenizer.vocab_size();
            let mut pieces = Vec::with_capacity(n);
            for id in 0..n as u32 {
                pieces.push(tokenizer.decode(&[id], true).unwrap_or_default());
            }
            self.pieces = Some(pieces.into());
        }
        Ok(Arc::clone(self.pieces.as_ref().expect("filled")))
    }

    /// The token ids cached from the previous request.
    pub fn cached_tokens(&self) -> &[u32] {
        self.cache.tokens()
    }

    /// Completes the text at the cursor with the model's most likely continuation.
    pub fn complete(
        &mut self,
        model: &LanguageModel,
        tokenizer: &Tokenizer,
        prefix: &str,
        suffix: &str,
        settings: &AutocompleteSettings,
        cancel: &AtomicBool,
    ) -> Result<Completion> {
        let at = Cursor {
            prefix,
            suffix,
            settings,
        };
        self.suggest(model, tokenizer, &at, cancel, &mut |logits| argmax(logits))
    }

    /// Up to `count` other suggestions for the same cursor, sampled (seeded: the same seed
    /// gives the same ones), distinct from each other and from `exclude`. The prompt is the
    /// one [`AutocompleteSession::complete`] just cached, so only the new tokens cost time.
    #[allow(clippy::too_many_arguments)]
    pub fn alternatives(
        &mut self,
        model: &LanguageModel,
        tokenizer: &Tokenizer,
        prefix: &str,
        suffix: &str,
        settings: &AutocompleteSettings,
        want: Alternatives,
        exclude: &[String],
        cancel: &AtomicBool,
    ) -> Result<Vec<String>> {
        let at = Cursor {
            prefix,
            suffix,
            settings,
        };
        want.collect(exclude, &mut |config| {
            let mut sampler = crate::sampler::Sampler::new(config);
            let c = self.suggest(model, tokenizer, &at, cancel, &mut |logits| {
                sampler.sample(logits, &[])
            })?;
            Ok(c.completion)
        })
    }

    /// A suggestion at the cursor, each token chosen by `pick` from the logits.
    fn suggest(
        &mut self,
        model: &LanguageModel,
        tokenizer: &Tokenizer,
        at: &Cursor,
        cancel: &AtomicBool,
        pick: &mut dyn FnMut(&[f32]) -> u32,
    ) -> Result<Completion> {
        let Cursor {
            prefix,
            suffix,
            settings,
        } = *at;
        let started = Instant::now();
        let Some(window) = suggestion_window(prefix, settings) else {
            return Ok(Completion::none());
        };
        let mut ids = tokenizer.encode(window, false)?;
        if ids.len() > settings.max_context_tokens {
            ids.drain(..ids.len() - settings.max_context_tokens);
        }
        // Token healing: re-generate the last token so that a half-typed word (or a trailing
        // space) is completed the way the model would have written it.
        let healed_text = if ids.len() > 1 {
            let last = *ids.last().expect("non-empty");
            let text = self.pieces(tokenizer)?[last as usize].clone();
            if window.ends_with(&text) && !text.is_empty() {
                ids.pop();
                text
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        let fim = if settings.use_fim && !suffix.trim().is_empty() {
            tokenizer.fim_tokens()
        } else {
            None
        };
        let prompt: Vec<u32> = match fim {
            Some(f) => {
                let mut suffix_ids = tokenizer.encode(suffix, false)?;
                suffix_ids.truncate(128);
                let mut p = vec![f.prefix];
                p.extend(&ids);
                p.push(f.suffix);
                p.extend(suffix_ids);
                p.push(f.middle);
                p
            }
            None => ids,
        };
        let (mut logits, reused) = prefill(model, &mut self.cache, &prompt, cancel)?;
        let stop_ids = tokenizer.stop_ids();
        let pieces = self.pieces(tokenizer)?;
        let mut text = String::new();
        let mut ttft_ms = 0.0;
        for step in 0..settings.max_tokens + 1 {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            if step == 0 && !healed_text.is_empty() {
                // the first token must reproduce the healed text and may extend it
                let fits = |piece: &String| piece.starts_with(&healed_text);
                if pieces.iter().any(fits) {
                    for (l, piece) in logits.iter_mut().zip(pieces.iter()) {
                        if !fits(piece) {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            let next = pick(&logits);
            if step == 0 {
                ttft_ms = started.elapsed().as_secs_f64() * 1e3;
            }
            if stop_ids.contains(&next) {
                break;
            }
            text.push_str(&pieces[next as usize]);
            let visible = text.get(healed_text.len().min(text.len())..).unwrap_or("");
            let (_, stopped) = apply_stop_policy(visible, settings);
            if stopped || step == settings.max_tokens || self.cache.len() >= self.cache.capacity() {
                break;
            }
            logits = decode_step(model, &mut self.cache, next)?;
        }
        let visible = if text.starts_with(&healed_text) {
            text[healed_text.len()..].to_string()
        } else {
            text.clone()
        };
        let completion = finish_suggestion(prefix, suffix, &visible, settings);
        // The completion tokens after the prompt stay cached: typing the suggestion through
        // reuses them.
        Ok(Completion {
            completion,
            ttft_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            reused_tokens: reused,
            prefilled_tokens: prompt.len() - reused,
        })
    }
}

/// Where a suggestion goes: the text around the cursor and the stop policy.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    prefix: &'a str,
    suffix: &'a str,
    settings: &'a AutocompleteSettings,
}

/// What alternatives to look for: how many, and the seed of the first try.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alternatives {
    pub count: usize,
    pub seed: u64,
}

/// How varied alternatives are.
const ALTERNATIVE_TEMPERATURE: f32 = 0.9;

impl Alternatives {
    /// Tries before giving up on finding `count` distinct ones.
    fn attempts(&self) -> u64 {
        self.count as u64 * 3
    }

    fn sampler(&self, attempt: u64) -> crate::sampler::SamplerConfig {
        crate::sampler::SamplerConfig {
            temperature: ALTERNATIVE_TEMPERATURE,
            seed: self.seed.wrapping_add(attempt),
            ..crate::sampler::SamplerConfig::default()
        }
    }

    /// Tries sampled suggestions (`suggest` with each try's sampler) until `count` distinct
    /// new ones are found or the tries run out.
    fn collect(
        &self,
        exclude: &[String],
        suggest: &mut dyn FnMut(crate::sampler::SamplerConfig) -> Result<String>,
    ) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for attempt in 0..self.attempts() {
            if found.len() >= self.count {
                break;
            }
            let text = suggest(self.sampler(attempt))?;
            self.keep(text, exclude, &mut found);
        }
        Ok(found)
    }

    /// Adds `text` to `found` when it is a suggestion not seen yet.
    fn keep(&self, text: String, exclude: &[String], found: &mut Vec<String>) {
        let seen = |t: &String| t.trim() == text.trim();
        if !text.trim().is_empty() && !exclude.iter().any(seen) && !found.iter().any(seen) {
            found.push(text);
        }
    }
}

/// The suggestion a model's raw continuation gives: cut by the stop policy, without what
/// repeats the text after the cursor or the words just before it, no leading space after
/// a space, nothing if only whitespace is left.
fn finish_suggestion(
    prefix: &str,
    suffix: &str,
    continuation: &str,
    settings: &AutocompleteSettings,
) -> String {
    let (mut completion, _) = apply_stop_policy(continuation, settings);
    completion = cut_suffix_repeat(&completion, suffix);
    completion = drop_repeated_words(prefix, &completion);
    if prefix.ends_with(char::is_whitespace) {
        completion = completion.trim_start().to_string();
    }
    if completion.trim().is_empty() {
        completion.clear();
    }
    completion
}

/// Autocomplete from a remote engine: the window before the cursor goes as the prompt (and
/// the text after it as `suffix` with [`AutocompleteSettings::use_fim`]), streamed; the
/// stream is dropped as soon as the stop policy is met. The same stop policy and seam rules
/// as for the local model apply to the remote text.
pub fn complete_remote(
    remote: &crate::remote::RemoteEngine,
    prefix: &str,
    suffix: &str,
    settings: &AutocompleteSettings,
    cancel: &AtomicBool,
) -> Result<Completion> {
    let limits = crate::remote::AnswerLimits::greedy(settings.max_tokens);
    remote_suggestion(remote, prefix, suffix, settings, &limits, cancel)
}

/// [`AutocompleteSession::alternatives`] from a remote engine: sampled with a seed (where the
/// server honours seeds, the same ones again).
#[allow(clippy::too_many_arguments)]
pub fn alternatives_remote(
    remote: &crate::remote::RemoteEngine,
    prefix: &str,
    suffix: &str,
    settings: &AutocompleteSettings,
    want: Alternatives,
    exclude: &[String],
    cancel: &AtomicBool,
) -> Result<Vec<String>> {
    want.collect(exclude, &mut |config| {
        let limits = crate::remote::AnswerLimits {
            temperature: config.temperature,
            seed: Some(config.seed),
            ..crate::remote::AnswerLimits::greedy(settings.max_tokens)
        };
        let c = remote_suggestion(remote, prefix, suffix, settings, &limits, cancel)?;
        Ok(c.completion)
    })
}

fn remote_suggestion(
    remote: &crate::remote::RemoteEngine,
    prefix: &str,
    suffix: &str,
    settings: &AutocompleteSettings,
    limits: &crate::remote::AnswerLimits,
    cancel: &AtomicBool,
) -> Result<Completion> {
    let started = Instant::now();
    let Some(window) = suggestion_window(prefix, settings) else {
        return Ok(Completion::none());
    };
    let mut ttft_ms = 0.0;
    let mut text = String::new();
    let answer = remote.complete(
        window,
        settings.use_fim.then_some(suffix),
        limits,
        cancel,
        &mut |piece| {
            if text.is_empty() {
                ttft_ms = started.elapsed().as_secs_f64() * 1e3;
            }
            text.push_str(piece);
            !apply_stop_policy(&text, settings).1
        },
    )?;
    Ok(Completion {
        completion: finish_suggestion(prefix, suffix, &answer.text, settings),
        ttft_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        reused_tokens: 0,
        prefilled_tokens: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AutocompleteSettings {
        AutocompleteSettings::default()
    }

    #[test]
    fn stops_at_the_end_of_the_first_sentence() {
        let (c, stopped) = apply_stop_policy(" the mat. Then it slept.", &settings());
        assert_eq!(c, " the mat.");
        assert!(stopped);
        // a decimal point is not a sentence end
        let (c, _) = apply_stop_policy(" costs 3.50 dollars. More", &settings());
        assert_eq!(c, " costs 3.50 dollars.");
    }

    #[test]
    fn stops_at_newline_and_word_limit() {
        let (c, _) = apply_stop_policy(" first line\nsecond", &settings());
        assert_eq!(c, " first line");
        let s = AutocompleteSettings {
            max_words: 3,
            stop_at_sentence_end: false,
            ..settings()
        };
        let (c, stopped) = apply_stop_policy(" one two three four five", &s);
        assert_eq!(c, " one two three");
        assert!(stopped);
    }

    #[test]
    fn each_length_stops_where_it_says() {
        let text = " the mat and purred. Then it slept\nby the fire.\n\nThe next day";
        let words = AutocompleteSettings::new(SuggestionLength::Words, false);
        assert_eq!(apply_stop_policy(text, &words).0, " the mat and purred.");
        let words = apply_stop_policy(" one two three four five six", &words).0;
        assert_eq!(words, " one two three four");
        let sentence = AutocompleteSettings::new(SuggestionLength::Sentence, false);
        assert_eq!(apply_stop_policy(text, &sentence).0, " the mat and purred.");
        let paragraph = AutocompleteSettings::new(SuggestionLength::Paragraph, true);
        assert!(paragraph.use_fim);
        assert_eq!(
            apply_stop_policy(text, &paragraph).0,
            " the mat and purred. Then it slept\nby the fire."
        );
        // a paragraph suggestion may start on a new line
        assert_eq!(
            apply_stop_policy("\n\nNext part.\n\nMore", &paragraph).0,
            "\n\nNext part."
        );
    }

    #[test]
    fn alternatives_are_distinct_and_new() {
        let want = Alternatives { count: 2, seed: 7 };
        let mut found = Vec::new();
        let exclude = vec![" the mat.".to_string()];
        for t in [" the mat.", " the rug.", " the rug. ", "  ", " a chair."] {
            want.keep(t.to_string(), &exclude, &mut found);
        }
        assert_eq!(found, [" the rug.", " a chair."]);
        assert_ne!(want.sampler(0).seed, want.sampler(1).seed);
        assert!(want.sampler(0).temperature > 0.0);
    }

    #[test]
    fn cuts_where_the_completion_repeats_the_suffix() {
        let c = cut_suffix_repeat(
            " over the lazy dog and ran away",
            " and ran away into the woods.",
        );
        assert_eq!(c, " over the lazy dog");
        assert_eq!(cut_suffix_repeat(" a b c", ""), " a b c");
    }

    #[test]
    fn drops_repeated_last_words() {
        assert_eq!(
            drop_repeated_words("sat on the mat", " on the mat and purred"),
            " and purred"
        );
        assert_eq!(
            drop_repeated_words("I think", " that that is"),
            " that that is"
        );
    }

    #[test]
    fn context_start_is_stable_while_typing() {
        let para = "word ".repeat(50);
        let text = format!("{para}\n\n{para}\n\n{para}");
        let a = context_start(&text, 300);
        let b = context_start(&format!("{text} more"), 300);
        let c = context_start(&format!("{text} more words"), 300);
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(text.len() - a <= 300 + 4);
        assert_eq!(context_start("short", 300), 0);
    }
}
