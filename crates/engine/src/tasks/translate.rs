//! Translating Markdown while keeping its structure: the document is parsed (pulldown-cmark),
//! only the text of headings, paragraphs, list items, table cells, block quotes and link texts
//! is translated, and each translation replaces its source range in place. Code blocks,
//! inline code, URLs, HTML and front matter are never touched, byte for byte.

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::{ChatModel, TaskProgress};
use crate::{EngineError, Result};

pub(crate) fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS
}

/// A leaf block's translatable text runs (byte ranges of the source).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub runs: Vec<Range<usize>>,
}

/// The translatable blocks of a document, in order.
pub fn blocks(markdown: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut current: Vec<Range<usize>> = Vec::new();
    let mut skip = 0usize; // inside code blocks / metadata / html blocks
    let flush = |current: &mut Vec<Range<usize>>, out: &mut Vec<Block>| {
        if !current.is_empty() {
            out.push(Block {
                runs: std::mem::take(current),
            });
        }
    };
    for (event, range) in Parser::new_ext(markdown, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(_) | Tag::MetadataBlock(_) | Tag::HtmlBlock) => skip += 1,
            Event::End(TagEnd::CodeBlock | TagEnd::MetadataBlock(_) | TagEnd::HtmlBlock) => {
                skip = skip.saturating_sub(1)
            }
            Event::Start(
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::Item
                | Tag::TableCell
                | Tag::BlockQuote(_),
            )
            | Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::TableCell
                | TagEnd::BlockQuote(_),
            ) => flush(&mut current, &mut out),
            // only source ranges that are exactly the text (no escapes or entities inside)
            Event::Text(t)
                if skip == 0
                    && t.chars().any(char::is_alphabetic)
                    && markdown.get(range.clone()) == Some(&*t) =>
            {
                current.push(range)
            }
            _ => {}
        }
    }
    flush(&mut current, &mut out);
    out
}

/// The document's shape: every block and inline element kind in order, plus code, HTML and
/// link destinations verbatim — everything but the translatable text.
pub fn structure(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, options())
        .filter_map(|e| event_shape(&e))
        .collect()
}

/// One event of the document's shape (`None` for text): its kind, with code, HTML and link
/// destinations verbatim.
pub(crate) fn event_shape(event: &Event) -> Option<String> {
    Some(match event {
        Event::Start(tag) => match tag {
            Tag::Link { dest_url, .. } => format!("link {dest_url}"),
            Tag::Image { dest_url, .. } => format!("image {dest_url}"),
            Tag::CodeBlock(kind) => format!("codeblock {kind:?}"),
            other => format!("start {:?}", std::mem::discriminant(other)),
        },
        Event::End(tag) => format!("end {tag:?}"),
        Event::Code(c) => format!("code {c}"),
        Event::Html(h) | Event::InlineHtml(h) => format!("html {h}"),
        Event::SoftBreak => "softbreak".into(),
        Event::HardBreak => "hardbreak".into(),
        Event::Rule => "rule".into(),
        Event::TaskListMarker(done) => format!("task {done}"),
        Event::FootnoteReference(f) => format!("footnote {f}"),
        Event::Text(_) => return None,
        other => format!("{other:?}"),
    })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Translation {
    pub text: String,
    pub blocks: usize,
}

/// Full language name for a code (the prompt reads better with names).
pub fn language_name(code: &str) -> String {
    match code.to_ascii_lowercase().as_str() {
        "en" => "English",
        "fr" => "French",
        "de" => "German",
        "es" => "Spanish",
        "it" => "Italian",
        "pt" => "Portuguese",
        "nl" => "Dutch",
        "ja" => "Japanese",
        "zh" => "Chinese",
        "ko" => "Korean",
        "ru" => "Russian",
        "pl" => "Polish",
        "sv" => "Swedish",
        other => return other.to_string(),
    }
    .to_string()
}

/// Keeps a run's leading/trailing whitespace around its translation, on one line.
fn fit(source: &str, translated: &str) -> String {
    let lead = &source[..source.len() - source.trim_start().len()];
    let trail = &source[source.trim_end().len()..];
    let body = translated.trim().replace('\n', " ");
    format!("{lead}{body}{trail}")
}

/// Translates `markdown` into `to` (from `from`, or whatever language it is in), block by
/// block; `on_block(index, total, translated block text)`.
pub fn translate(
    runner: &mut dyn ChatModel,
    markdown: &str,
    to: &str,
    from: Option<&str>,
    progress: &mut dyn FnMut(TaskProgress),
    on_block: &mut dyn FnMut(usize, usize, &str),
) -> Result<Translation> {
    if to.trim().is_empty() {
        return Err(EngineError::Other("a target language is required".into()));
    }
    let target = language_name(to);
    let source_lang = from.map(language_name);
    let system = "You are a professional translator. You translate faithfully and reply with the translation only.";
    let blocks = blocks(markdown);
    let mut replacements: Vec<(Range<usize>, String)> = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        progress(TaskProgress {
            stage: "translate",
            done: i,
            total: blocks.len(),
        });
        let mut translated_block = Vec::new();
        for run in &block.runs {
            let source = &markdown[run.clone()];
            let prompt = match &source_lang {
                Some(s) => format!(
                    "Translate this {s} text into {target}:\n\n{}",
                    source.trim()
                ),
                None => format!("Translate this text into {target}:\n\n{}", source.trim()),
            };
            let max = runner.count(source) * 3 + 16;
            let out = runner.ask(system, &prompt, max, &mut |_| {})?;
            let out = if out.is_empty() {
                source.trim().to_string()
            } else {
                out
            };
            let fitted = fit(source, &out);
            translated_block.push(fitted.clone());
            replacements.push((run.clone(), fitted));
        }
        on_block(i, blocks.len(), &translated_block.join(""));
    }
    progress(TaskProgress {
        stage: "translate",
        done: blocks.len(),
        total: blocks.len(),
    });
    let mut text = markdown.to_string();
    for (range, replacement) in replacements.into_iter().rev() {
        text.replace_range(range, &replacement);
    }
    Ok(Translation {
        text,
        blocks: blocks.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "---\ntitle: Notes\n---\n\n# A heading\n\nSome **bold** and *italic* text with `code` and a [link](https://example.com/a_b).\n\n- item one\n  - nested item\n- item two\n\n| Name | Value |\n| ---- | ----- |\n| cat  | soft  |\n\n> a quote\n\n```rust\nfn main() {}\n```\n\n<div>html stays</div>\n";

    #[test]
    fn finds_text_but_not_code_urls_html_or_front_matter() {
        let texts: Vec<&str> = blocks(DOC)
            .iter()
            .flat_map(|b| b.runs.iter().map(|r| &DOC[r.clone()]))
            .collect();
        assert!(texts.contains(&"A heading"));
        assert!(texts.contains(&"bold"));
        assert!(texts.contains(&"link"));
        assert!(texts.contains(&"nested item"));
        assert!(texts.contains(&"cat"));
        assert!(texts.contains(&"a quote"));
        for t in &texts {
            assert!(!t.contains("fn main"), "{t}");
            assert!(!t.contains("example.com"), "{t}");
            assert!(!t.contains("html stays"), "{t}");
            assert!(!t.contains("title"), "{t}");
            assert!(*t != "code", "{t}");
        }
    }

    #[test]
    fn replacing_runs_keeps_the_structure() {
        let mut text = DOC.to_string();
        let runs: Vec<Range<usize>> = blocks(DOC).into_iter().flat_map(|b| b.runs).collect();
        for r in runs.into_iter().rev() {
            let upper = fit(&DOC[r.clone()], &DOC[r.clone()].to_uppercase());
            text.replace_range(r, &upper);
        }
        assert_ne!(text, DOC);
        assert_eq!(structure(&text), structure(DOC));
        assert!(text.contains("```rust\nfn main() {}\n```"));
        assert!(text.contains("(https://example.com/a_b)"));
    }
}
