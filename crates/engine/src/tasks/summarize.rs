//! Summaries of any length: short texts in one pass; long ones split at Markdown section and
//! paragraph boundaries into chunks that fit the context with headroom, each summarized (map),
//! the partial summaries combined (reduce), recursively when they still do not fit. No part
//! of the document is dropped; only the final stage streams.

use super::chunking::chunk_ranges;
use super::{ChatModel, TaskProgress};
use crate::{EngineError, Result};

/// How long the summary should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryLength {
    Short,
    Medium,
    Long,
    #[serde(untagged)]
    Words(usize),
}

impl SummaryLength {
    pub fn words(self) -> usize {
        match self {
            SummaryLength::Short => 50,
            SummaryLength::Medium => 120,
            SummaryLength::Long => 250,
            SummaryLength::Words(n) => n.clamp(10, 1000),
        }
    }
}

impl std::str::FromStr for SummaryLength {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "short" => Ok(SummaryLength::Short),
            "medium" => Ok(SummaryLength::Medium),
            "long" => Ok(SummaryLength::Long),
            n => n
                .parse::<usize>()
                .map(SummaryLength::Words)
                .map_err(|_| format!("length `{n}`: short, medium, long or a number of words")),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub summary: String,
    /// Chunks the document was split into (1 when it fit at once).
    pub chunks: usize,
    pub input_tokens: usize,
}

const SYSTEM: &str = "You are a careful editor. You summarize faithfully, without adding facts.";

fn instruction(words: usize, bullets: bool) -> String {
    if bullets {
        format!(
            "Summarize the text below as bullet points (lines starting with \"- \"), about {words} words in all."
        )
    } else {
        format!("Summarize the text below in one paragraph of about {words} words.")
    }
}

/// Summarizes `text`. Progress per chunk; tokens of the final stage go to `on_text`.
pub fn summarize(
    runner: &mut dyn ChatModel,
    text: &str,
    length: SummaryLength,
    bullets: bool,
    progress: &mut dyn FnMut(TaskProgress),
    on_text: &mut dyn FnMut(&str),
) -> Result<Summary> {
    if text.trim().is_empty() {
        return Err(EngineError::Other("there is no text to summarize".into()));
    }
    let words = length.words();
    let input_tokens = runner.count(text);
    // headroom: the chat template, the instruction and the answer
    let answer_tokens = words * 2 + 32;
    let budget = runner
        .context()
        .saturating_sub(answer_tokens + 160)
        .clamp(256, 1536);
    let mut current = text.to_string();
    let mut chunks_first_round = 0;
    let mut round = 0;
    loop {
        let ranges = chunk_ranges(&current, budget, &|s| runner.count(s));
        if round == 0 {
            chunks_first_round = ranges.len();
        }
        if ranges.len() == 1 {
            progress(TaskProgress {
                stage: if round == 0 { "summarize" } else { "combine" },
                done: 0,
                total: 1,
            });
            let prompt = format!("{}\n\n{}", instruction(words, bullets), current.trim());
            let summary = runner.ask(SYSTEM, &prompt, answer_tokens, on_text)?;
            progress(TaskProgress {
                stage: if round == 0 { "summarize" } else { "combine" },
                done: 1,
                total: 1,
            });
            return Ok(Summary {
                summary,
                chunks: chunks_first_round,
                input_tokens,
            });
        }
        // map: each chunk to a partial summary sized so that they combine in one pass
        let per_chunk = (budget / ranges.len()).clamp(40, 200) / 2;
        let mut partials = Vec::with_capacity(ranges.len());
        for (i, r) in ranges.iter().enumerate() {
            progress(TaskProgress {
                stage: "summarize",
                done: i,
                total: ranges.len(),
            });
            let prompt = format!(
                "Summarize this part of a longer document in about {per_chunk} words. Keep names, numbers and decisions.\n\n{}",
                current[r.clone()].trim()
            );
            let part = runner.ask(SYSTEM, &prompt, per_chunk * 2 + 32, &mut |_| {})?;
            partials.push(part);
        }
        progress(TaskProgress {
            stage: "summarize",
            done: ranges.len(),
            total: ranges.len(),
        });
        current = partials.join("\n\n");
        round += 1;
        if round > 6 {
            return Err(EngineError::Other(
                "the document did not reduce to a summary".into(),
            ));
        }
    }
}
