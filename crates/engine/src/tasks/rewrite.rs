//! Rewriting Markdown as the writer asks (shorter, more formal, fixed grammar, or a free
//! instruction), paragraph by paragraph, keeping its structure. Each leaf block (paragraph,
//! heading, list item, table cell) is rewritten as a whole, its inline Markdown included; an
//! answer that would change the document's structure (a lost link or code span, a new list or
//! heading, a broken table row) is not used and that block stays as it was. Code blocks, HTML
//! and front matter are never sent.

use std::ops::Range;
use std::str::FromStr;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

use super::{ChatModel, TaskProgress};
use crate::{EngineError, Result};

/// The rewrites a writer picks from a menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    Shorter,
    Longer,
    Formal,
    Casual,
    Simpler,
    Grammar,
    Active,
}

impl Preset {
    pub const ALL: [Preset; 7] = [
        Preset::Shorter,
        Preset::Longer,
        Preset::Formal,
        Preset::Casual,
        Preset::Simpler,
        Preset::Grammar,
        Preset::Active,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Shorter => "shorter",
            Preset::Longer => "longer",
            Preset::Formal => "formal",
            Preset::Casual => "casual",
            Preset::Simpler => "simpler",
            Preset::Grammar => "grammar",
            Preset::Active => "active",
        }
    }

    /// What the model is asked to do.
    fn ask(self) -> &'static str {
        match self {
            Preset::Shorter => {
                "Rewrite the text below to be shorter and more concise. Keep its meaning."
            }
            Preset::Longer => {
                "Rewrite the text below to be longer, with more detail. Keep its meaning."
            }
            Preset::Formal => "Rewrite the text below in a more formal, professional tone.",
            Preset::Casual => "Rewrite the text below in a more casual, friendly tone.",
            Preset::Simpler => "Rewrite the text below in simpler words and shorter sentences.",
            Preset::Grammar => {
                "Correct the grammar and spelling mistakes in the text below. Change nothing else."
            }
            Preset::Active => "Rewrite the text below in the active voice.",
        }
    }
}

impl FromStr for Preset {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Preset::ALL.iter().map(|p| p.as_str()).collect();
                EngineError::Other(format!(
                    "unknown rewrite preset {s:?}; use one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// What to do to the text: a preset or the writer's own words.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Instruction {
    Preset(Preset),
    Free(String),
}

/// Longest free instruction, in bytes.
pub const MAX_INSTRUCTION_BYTES: usize = 2000;

impl Instruction {
    /// The instruction line of the prompt; a clear error for an empty or overlong one.
    fn prompt_line(&self) -> Result<String> {
        match self {
            Instruction::Preset(p) => Ok(p.ask().to_string()),
            Instruction::Free(s) => {
                let s = s.trim();
                if s.is_empty() {
                    return Err(EngineError::Other(
                        "say how the text should be rewritten".into(),
                    ));
                }
                if s.len() > MAX_INSTRUCTION_BYTES {
                    return Err(EngineError::Other(format!(
                        "the instruction is {} bytes; keep it under {MAX_INSTRUCTION_BYTES}",
                        s.len()
                    )));
                }
                let s = s.replace(['\n', '\r'], " ");
                Ok(format!("Rewrite the text below as follows: {s}"))
            }
        }
    }

    /// Whether the answer may be much longer than the text.
    fn may_grow(&self) -> bool {
        matches!(
            self,
            Instruction::Preset(Preset::Longer) | Instruction::Free(_)
        )
    }

    /// How many answer tokens a block of `source_tokens` may take.
    fn budget(&self, source_tokens: usize) -> usize {
        if self.may_grow() {
            source_tokens * 3 + 32
        } else {
            source_tokens * 2 + 24
        }
    }
}

/// A leaf block to rewrite: its inline content's byte range, and whether it sits in a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub span: Range<usize>,
    pub in_table: bool,
}

/// The rewritable leaf blocks of a document, in order: each one's inline content (from its
/// first inline element to its last), never inside code blocks, HTML blocks or front matter.
pub fn units(markdown: &str) -> Vec<Unit> {
    let mut out = Vec::new();
    let mut span: Option<Range<usize>> = None;
    let mut alphabetic = false;
    let mut skip = 0usize;
    let mut table = 0usize;
    let mut flush = |span: &mut Option<Range<usize>>, alphabetic: &mut bool, in_table: bool| {
        if let Some(s) = span.take()
            && std::mem::take(alphabetic)
        {
            out.push(Unit { span: s, in_table });
        }
        *alphabetic = false;
    };
    for (event, range) in Parser::new_ext(markdown, super::translate::options()).into_offset_iter()
    {
        let inline = match &event {
            Event::Start(Tag::CodeBlock(_) | Tag::MetadataBlock(_) | Tag::HtmlBlock) => {
                skip += 1;
                false
            }
            Event::End(TagEnd::CodeBlock | TagEnd::MetadataBlock(_) | TagEnd::HtmlBlock) => {
                skip = skip.saturating_sub(1);
                false
            }
            Event::Start(Tag::Table(_)) => {
                table += 1;
                false
            }
            Event::End(TagEnd::Table) => {
                table = table.saturating_sub(1);
                false
            }
            Event::Start(
                Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::Link { .. }
                | Tag::Image { .. },
            )
            | Event::Text(_)
            | Event::Code(_)
            | Event::InlineHtml(_)
            | Event::SoftBreak
            | Event::HardBreak
            | Event::FootnoteReference(_) => skip == 0,
            Event::End(TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough) => skip == 0,
            Event::End(TagEnd::Link | TagEnd::Image) => skip == 0,
            Event::TaskListMarker(_) => false,
            _ => {
                flush(&mut span, &mut alphabetic, table > 0);
                false
            }
        };
        if inline {
            if let Event::Text(t) = &event
                && t.chars().any(char::is_alphabetic)
            {
                alphabetic = true;
            }
            span = Some(match span.take() {
                Some(s) => s.start.min(range.start)..s.end.max(range.end),
                None => range,
            });
        }
    }
    flush(&mut span, &mut alphabetic, table > 0);
    // a soft break's range may include the next line's indentation: keep spans tidy
    for u in &mut out {
        let text = &markdown[u.span.clone()];
        u.span.end = u.span.start + text.trim_end().len();
    }
    out
}

/// The document's shape ([`super::translate::structure`]) without emphasis and soft breaks,
/// which a rewrite may move or drop: block kinds, code, HTML, links and images (with their
/// destinations), hard breaks and footnotes.
pub fn skeleton(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, super::translate::options())
        .filter(|e| {
            !matches!(
                e,
                Event::SoftBreak
                    | Event::Start(Tag::Emphasis | Tag::Strong | Tag::Strikethrough)
                    | Event::End(TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough)
            )
        })
        .filter_map(|e| super::translate::event_shape(&e))
        .collect()
}

/// How an assistant's chatter starts ("Sure, ...", "Please share the text"), where a rewrite
/// would not.
const CHATTER: [&str; 9] = [
    "sure",
    "certainly",
    "of course",
    "i'm ready",
    "i am ready",
    "i'd be happy",
    "i would be happy",
    "please provide",
    "please share",
];

/// The model's answer made ready to stand in for `source`, or `None` where it would change
/// the structure or is no rewrite at all: one line, no preamble, no quotes it added, the same
/// links, code and block kind, no new cell separator inside a table, no assistant chatter,
/// and (unless the text `may_grow`) not much longer than the source.
pub fn fitted(source: &str, answer: &str, in_table: bool, may_grow: bool) -> Option<String> {
    let mut text = answer.trim();
    // "Here is the rewritten text:" and the like, on a line of its own
    if let Some((first, rest)) = text.split_once('\n') {
        let lower = first.to_lowercase();
        if first.trim_end().ends_with(':')
            && (lower.contains("rewrit") || lower.contains("here") || lower.contains("version"))
            && !rest.trim().is_empty()
        {
            text = rest.trim();
        }
    }
    // a label the model echoed from the prompt
    for label in ["Rewritten text:", "Text:"] {
        if let Some(rest) = text.strip_prefix(label)
            && !source.trim_start().starts_with(label)
        {
            text = rest.trim_start();
        }
    }
    let quoted = |s: &str| {
        (s.starts_with('"') && s.ends_with('"'))
            || (s.starts_with('\u{201c}') && s.ends_with('\u{201d}'))
    };
    if text.chars().count() >= 2 && quoted(text) && !quoted(source.trim()) {
        let mut chars = text.chars();
        chars.next();
        chars.next_back();
        text = chars.as_str().trim();
    }
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() || !line.chars().any(char::is_alphanumeric) {
        return None;
    }
    if in_table && line.replace("\\|", "").contains('|') {
        return None;
    }
    let (chars, source_chars) = (line.chars().count(), source.chars().count());
    let most = if may_grow {
        source_chars * 6 + 200
    } else {
        source_chars * 2 + 40
    };
    if chars > most {
        return None;
    }
    let lower = line.to_lowercase();
    let source_lower = source.trim_start().to_lowercase();
    if CHATTER
        .iter()
        .any(|c| lower.starts_with(c) && !source_lower.starts_with(c))
    {
        return None;
    }
    (skeleton(&line) == skeleton(source)).then_some(line)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rewrite {
    pub text: String,
    /// Blocks rewritten.
    pub blocks: usize,
    /// Blocks left as they were: the answer was empty, changed their structure, ran far
    /// longer than the text or talked about the task instead.
    pub kept: usize,
}

/// Rewrites `markdown` as `instruction` says, block by block; `on_block(index, total, text)`
/// gets each block's new text, and `on_text` the answer as it streams.
pub fn rewrite(
    runner: &mut dyn ChatModel,
    markdown: &str,
    instruction: &Instruction,
    progress: &mut dyn FnMut(TaskProgress),
    on_block: &mut dyn FnMut(usize, usize, &str),
    on_text: &mut dyn FnMut(&str),
) -> Result<Rewrite> {
    let ask = instruction.prompt_line()?;
    let system = "You are a careful editor. You rewrite the text you are given as you are asked and reply with the rewritten text only, keeping its Markdown formatting, links and code exactly.";
    let units = units(markdown);
    if units.is_empty() {
        return Err(EngineError::Other("there is no text to rewrite".into()));
    }
    let mut replacements: Vec<(Range<usize>, String)> = Vec::new();
    let mut kept = 0;
    for (i, unit) in units.iter().enumerate() {
        progress(TaskProgress {
            stage: "rewrite",
            done: i,
            total: units.len(),
        });
        let source = &markdown[unit.span.clone()];
        let one_line = source.split_whitespace().collect::<Vec<_>>().join(" ");
        let prompt = format!("{ask} Reply with the rewritten text only.\n\nText: {one_line}");
        let max = instruction.budget(runner.count(source));
        let answer = runner.ask(system, &prompt, max, on_text)?;
        let block = match fitted(source, &answer, unit.in_table, instruction.may_grow()) {
            Some(new) => {
                replacements.push((unit.span.clone(), new.clone()));
                new
            }
            None => {
                kept += 1;
                source.to_string()
            }
        };
        on_block(i, units.len(), &block);
    }
    progress(TaskProgress {
        stage: "rewrite",
        done: units.len(),
        total: units.len(),
    });
    let mut text = markdown.to_string();
    for (range, replacement) in replacements.into_iter().rev() {
        text.replace_range(range, &replacement);
    }
    Ok(Rewrite {
        text,
        blocks: units.len(),
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "---\ntitle: Notes\n---\n\n# A heading\n\n**Bold start** and *italic* text with `code` and a [link](https://example.com/a_b),\nover two lines.\n\n- item one\n  - nested item\n- [ ] a task\n\n| Name | Value |\n| ---- | ----- |\n| cat  | soft  |\n\n> a quote\n\n```rust\nfn main() {}\n```\n\n<div>html stays</div>\n";

    fn texts(doc: &str) -> Vec<&str> {
        units(doc).iter().map(|u| &doc[u.span.clone()]).collect()
    }

    #[test]
    fn units_are_whole_leaf_blocks_with_their_inline_markdown() {
        let t = texts(DOC);
        assert_eq!(
            t,
            [
                "A heading",
                "**Bold start** and *italic* text with `code` and a [link](https://example.com/a_b),\nover two lines.",
                "item one",
                "nested item",
                "a task",
                "Name",
                "Value",
                "cat",
                "soft",
                "a quote",
            ]
        );
        let cells: Vec<bool> = units(DOC).iter().map(|u| u.in_table).collect();
        assert_eq!(cells.iter().filter(|c| **c).count(), 4);
    }

    #[test]
    fn an_answer_is_used_only_where_it_keeps_the_structure() {
        let src = "Some **bold** text with `code` and a [link](https://e.com).";
        // emphasis may go, words may change
        assert_eq!(
            fitted(
                src,
                "Bold text with `code`\nand a [link](https://e.com).",
                false,
                false
            )
            .as_deref(),
            Some("Bold text with `code` and a [link](https://e.com).")
        );
        // a lost code span, a changed link, a new list or heading: not used
        assert_eq!(
            fitted(src, "Text and a [link](https://e.com).", false, false),
            None
        );
        assert_eq!(
            fitted(src, "Text `code` [link](https://x.com).", false, false),
            None
        );
        assert_eq!(fitted("plain words", "- a list now", false, false), None);
        assert_eq!(fitted("plain words", "# a heading now", false, false), None);
        assert_eq!(fitted("plain words", "   ", false, false), None);
        // a table cell must not grow a separator
        assert_eq!(fitted("cat", "cat | dog", true, false), None);
        assert_eq!(
            fitted("cat", "a cat", true, false).as_deref(),
            Some("a cat")
        );
        // chatter, or an answer far longer than the text, is no rewrite
        let chat = "I'm ready to help. Please share the notes.";
        assert_eq!(fitted("Meeting notes", chat, false, true), None);
        let long = "A summary of the meeting notes, with all the changes that I made to them.";
        assert_eq!(fitted("Meeting notes", long, false, false), None);
        assert!(fitted("Meeting notes", long, false, true).is_some());
        assert_eq!(
            fitted("a b", "Text: b a", false, false).as_deref(),
            Some("b a")
        );
        // a preamble line and added quotes are dropped
        assert_eq!(
            fitted(
                "it was done by me",
                "Here is the rewritten text:\n\"I did it.\"",
                false,
                false
            )
            .as_deref(),
            Some("I did it.")
        );
    }

    #[test]
    fn replacing_units_keeps_code_front_matter_and_html() {
        let mut text = DOC.to_string();
        for u in units(DOC).into_iter().rev() {
            let new = fitted(
                &DOC[u.span.clone()],
                &DOC[u.span.clone()].to_uppercase(),
                u.in_table,
                false,
            );
            // upper-casing changes the link destination: that block is kept
            if let Some(new) = new {
                text.replace_range(u.span, &new);
            }
        }
        assert!(text.contains("# A HEADING\n"));
        assert!(text.contains("- ITEM ONE\n  - NESTED ITEM\n- [ ] A TASK\n"));
        assert!(text.contains("| CAT  | SOFT  |"));
        assert!(text.starts_with("---\ntitle: Notes\n---\n"));
        assert!(text.contains("```rust\nfn main() {}\n```"));
        assert!(text.contains("<div>html stays</div>"));
        assert!(text.contains("[link](https://example.com/a_b)"));
        assert_eq!(skeleton(&text), skeleton(DOC));
    }

    #[test]
    fn presets_parse_by_name_and_instructions_are_checked() {
        for p in Preset::ALL {
            assert_eq!(p.as_str().parse::<Preset>().unwrap(), p);
        }
        assert!(
            "louder"
                .parse::<Preset>()
                .unwrap_err()
                .to_string()
                .contains("shorter")
        );
        assert!(Instruction::Free("  ".into()).prompt_line().is_err());
        assert!(Instruction::Free("x".repeat(3000)).prompt_line().is_err());
        assert_eq!(
            Instruction::Free("make it\nrhyme".into())
                .prompt_line()
                .unwrap(),
            "Rewrite the text below as follows: make it rhyme"
        );
    }
}
