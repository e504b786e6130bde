//! Chat templates: the Jinja templates of Hugging Face `tokenizer_config.json` files and GGUF
//! `tokenizer.chat_template` keys, rendered with minijinja the way transformers renders them
//! (`trim_blocks`, `lstrip_blocks`, `raise_exception`, Python-style `tojson`, `strftime_now`,
//! Python string/dict methods such as `.strip()` and `.items()`, loop controls).

use std::sync::Arc;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value, context};

use crate::{EngineError, Result};

const NAME: &str = "chat";

/// Steps a template may take to render one prompt (minijinja's fuel): thousands of times
/// what a real template needs for a long conversation, and a loop without end stops in
/// well under a second.
pub const TEMPLATE_FUEL: u64 = 5_000_000;
/// The most text one rendering may produce beyond the messages themselves.
pub const TEMPLATE_OUTPUT_BYTES: usize = 1 << 20;
/// The widest `tojson(indent=...)` honoured.
const MAX_JSON_INDENT: i64 = 32;

/// ChatML, the fallback for models without a template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template. Cheap to clone.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    source: Arc<str>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

fn template_err(e: Error) -> EngineError {
    if e.kind() == ErrorKind::OutOfFuel {
        return EngineError::ChatTemplate(format!(
            "the template took more than {TEMPLATE_FUEL} steps to render (a loop without end?)"
        ));
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    EngineError::ChatTemplate(msg)
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` / `eos_token` are the texts the template sees under
    /// those names.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, strip_generation_tags(source))
            .map_err(template_err)?;
        Ok(ChatTemplate {
            env: Arc::new(env),
            source: Arc::from(source),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// ChatML (`<|im_start|>role\n...<|im_end|>\n`), for models that ship no template.
    pub fn fallback_chatml() -> Self {
        Self::new(CHATML_TEMPLATE, "", "<|im_end|>").expect("the ChatML template compiles")
    }

    /// Renders a conversation as pieces that say whose text they are: the template's own
    /// (`PromptPart::Template`, where its control tokens are meant) and the messages' (the
    /// writer's text, in which `<|im_end|>` is just text). Each message's content is stood
    /// in for by a marker while the template runs; a template that alters the marker (it
    /// reshapes the content itself) gets its whole output as template text.
    pub fn render_parts(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<PromptPart>> {
        let marked: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage {
                role: m.role.clone(),
                content: format!("{MARK_OPEN}{i}{MARK_CLOSE}"),
            })
            .collect();
        let rendered = self.render(&marked, add_generation_prompt)?;
        let mut parts = Vec::new();
        let mut rest = rendered.as_str();
        while let Some(start) = rest.find(MARK_OPEN) {
            let after = &rest[start + MARK_OPEN.len_utf8()..];
            let index = after
                .find(MARK_CLOSE)
                .and_then(|end| after[..end].parse::<usize>().ok().map(|i| (i, end)));
            let Some((i, end)) = index.filter(|(i, _)| *i < messages.len()) else {
                return self.render_whole(messages, add_generation_prompt);
            };
            if start > 0 {
                parts.push(PromptPart::Template(rest[..start].to_string()));
            }
            parts.push(PromptPart::Text(messages[i].content.clone()));
            rest = &after[end + MARK_CLOSE.len_utf8()..];
        }
        if rest.contains(MARK_CLOSE) {
            return self.render_whole(messages, add_generation_prompt);
        }
        if !rest.is_empty() {
            parts.push(PromptPart::Template(rest.to_string()));
        }
        Ok(parts)
    }

    fn render_whole(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<PromptPart>> {
        Ok(vec![PromptPart::Template(
            self.render(messages, add_generation_prompt)?,
        )])
    }

    /// Renders a conversation; with `add_generation_prompt`, ends with the header of the
    /// assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_value(Value::from_serialize(messages), add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with messages given as any serializable list (e.g. JSON
    /// objects with extra keys such as `tool_calls`).
    pub fn render_value(&self, messages: Value, add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(template_err)?;
        // the messages' own text, plus what the template may add around it
        let content: usize = messages
            .try_iter()
            .into_iter()
            .flatten()
            .filter_map(|m| m.get_attr("content").ok())
            .map(|c| c.as_str().map_or(0, str::len))
            .sum();
        let mut out = CappedWriter {
            text: Vec::new(),
            cap: content.saturating_mul(2) + TEMPLATE_OUTPUT_BYTES,
            full: false,
        };
        let result = template.render_captured_to(
            context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            },
            &mut out,
        );
        if out.full {
            return Err(EngineError::ChatTemplate(format!(
                "the template's output passed {} bytes",
                out.cap
            )));
        }
        result.map_err(template_err)?;
        String::from_utf8(out.text)
            .map_err(|_| EngineError::ChatTemplate("the template wrote invalid UTF-8".into()))
    }

    /// Renders the conversation shapes Penwright sends (one user turn, with and without a
    /// system prompt, and a longer exchange), to find a template that fails or runs past
    /// its limits before a writer's request does.
    pub fn check(&self) -> Result<()> {
        let document = "A paragraph of the writer's text. ".repeat(64);
        let shapes = [
            vec![ChatMessage::user("Hello.")],
            vec![
                ChatMessage::system("You are a helpful assistant."),
                ChatMessage::user(format!("Summarize this:\n\n{document}")),
            ],
            vec![
                ChatMessage::system("You are a helpful assistant."),
                ChatMessage::user("Hello."),
                ChatMessage::assistant("Hi."),
                ChatMessage::user("Summarize this."),
            ],
        ];
        for messages in &shapes {
            self.render(messages, true)?;
        }
        self.render(&shapes[2], false).map(|_| ())
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }
}

/// Marks around a message's index while a template renders (Unicode private-use
/// characters, which no template writes).
const MARK_OPEN: char = '\u{F8F0}';
const MARK_CLOSE: char = '\u{F8F1}';

/// A piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptPart {
    /// The template's text: its control tokens (`<|im_start|>`) are special tokens.
    Template(String),
    /// A message's text: tokenized as plain text, whatever it contains.
    Text(String),
}

/// A `Write` into memory that refuses past `cap` bytes (and says so in `full`).
struct CappedWriter {
    text: Vec<u8>,
    cap: usize,
    full: bool,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > self.cap {
            self.full = true;
            return Err(std::io::Error::other("the template's output is too long"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Removes transformers' `{% generation %}` / `{% endgeneration %}` markers (its
/// AssistantTracker extension); they only mark spans and render nothing.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        // the `%}` after the `{%` (in `{%}` the two overlap; found by fuzzing)
        let Some(end) = tag[2..].find("%}").map(|e| e + 2) else {
            out.push_str(tag);
            return out;
        };
        let inner = tag[2..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if inner == "generation" || inner == "endgeneration" {
            // A no-op block with the same whitespace control, so that trim_blocks,
            // lstrip_blocks and `-` act as they would on the removed tag.
            let open = tag[2..end]
                .chars()
                .next()
                .filter(|c| *c == '-' || *c == '+');
            let close = tag[2..end]
                .chars()
                .last()
                .filter(|c| *c == '-' || *c == '+');
            out.push_str("{%");
            out.extend(open);
            out.push_str(" if true %}{% endif ");
            out.extend(close);
            out.push_str("%}");
        } else {
            out.push_str(&tag[..end + 2]);
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)` — Python's spacing (`", "`, `": "`).
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(v.as_i64().unwrap_or(0).clamp(0, MAX_JSON_INDENT) as usize)),
        },
    };
    let (item_sep, key_sep) = match separators
        .as_ref()
        .and_then(|s| s.len().filter(|&n| n == 2).map(|_| s))
    {
        Some(s) => (
            s.get_item(&Value::from(0))?.to_string(),
            s.get_item(&Value::from(1))?.to_string(),
        ),
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(value, &style, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json(
    value: &Value,
    style: &JsonStyle,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                out.push_str(&value.to_string());
            } else {
                let f = f64::try_from(value.clone())?;
                if f.is_nan() {
                    out.push_str("NaN");
                } else if f.is_infinite() {
                    out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                } else if f.fract() == 0.0 && f.abs() < 1e16 {
                    out.push_str(&format!("{f:.1}"));
                } else {
                    out.push_str(&format!("{f}"));
                }
            }
        }
        ValueKind::String => write_json_str(value.as_str().unwrap_or_default(), out),
        ValueKind::Bytes => write_json_str(
            &String::from_utf8_lossy(value.as_bytes().unwrap_or_default()),
            out,
        ),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                style.newline(level + 1, out);
                write_json(item, style, level + 1, out)?;
            }
            style.newline(level, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                style.newline(level + 1, out);
                match key.as_str() {
                    Some(s) => write_json_str(s, out),
                    None => write_json_str(&key.to_string(), out),
                }
                out.push_str(&style.key_sep);
                write_json(&value.get_item(key)?, style, level + 1, out)?;
            }
            style.newline(level, out);
            out.push('}');
        }
        ValueKind::Plain | ValueKind::Invalid => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot serialize {} to JSON", value.kind()),
            ));
        }
        // ValueKind is non-exhaustive.
        #[allow(unreachable_patterns)]
        _ => write_json_str(&value.to_string(), out),
    }
    Ok(())
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A point in (UTC) civil time.
struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday.
    weekday: u32,
    /// 1-based.
    yearday: u32,
}

impl DateTime {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yearday = CUM[month as usize - 1] + day + u32::from(leap && month > 2);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 3).rem_euclid(7) as u32,
            yearday,
        }
    }

    /// C `strftime` for the common conversions (and glibc's `%-d` style unpadded ones).
    fn format(&self, fmt: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = chars.next();
            let unpadded = spec == Some('-');
            if unpadded {
                spec = chars.next();
            }
            let num = |n: u32, width: usize| {
                if unpadded {
                    n.to_string()
                } else {
                    format!("{n:0width$}")
                }
            };
            let hour12 = if self.hour.is_multiple_of(12) {
                12
            } else {
                self.hour % 12
            };
            match spec {
                Some('Y') => out.push_str(&self.year.to_string()),
                Some('y') => out.push_str(&num(self.year.rem_euclid(100) as u32, 2)),
                Some('m') => out.push_str(&num(self.month, 2)),
                Some('d') => out.push_str(&num(self.day, 2)),
                Some('e') => out.push_str(&format!("{:2}", self.day)),
                Some('H') => out.push_str(&num(self.hour, 2)),
                Some('I') => out.push_str(&num(hour12, 2)),
                Some('M') => out.push_str(&num(self.minute, 2)),
                Some('S') => out.push_str(&num(self.second, 2)),
                Some('p') => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                Some('j') => out.push_str(&num(self.yearday, 3)),
                Some('B') => out.push_str(MONTHS[self.month as usize - 1]),
                Some('b' | 'h') => out.push_str(&MONTHS[self.month as usize - 1][..3]),
                Some('A') => out.push_str(WEEKDAYS[self.weekday as usize]),
                Some('a') => out.push_str(&WEEKDAYS[self.weekday as usize][..3]),
                Some('u') => out.push_str(&(self.weekday + 1).to_string()),
                Some('w') => out.push_str(&((self.weekday + 1) % 7).to_string()),
                Some('F') => {
                    out.push_str(&format!("{}-{:02}-{:02}", self.year, self.month, self.day))
                }
                Some('T') => out.push_str(&format!(
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                )),
                Some('Z') => out.push_str("UTC"),
                Some('z') => out.push_str("+0000"),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    if unpadded {
                        out.push('-');
                    }
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// `strftime_now(format)`: the current time (UTC), as transformers provides it.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    DateTime::from_unix(secs).format(&format)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tokenizer.chat_template` of SmolLM2-135M-Instruct.Q4_1.gguf.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Meta-Llama-3-8B-Instruct's template.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::system("You are a careful editor."),
            ChatMessage::user("Fix: teh cat"),
        ]
    }

    #[test]
    fn smollm2_template() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(
            t.render(&conversation(), true).unwrap(),
            "<|im_start|>system\nYou are a careful editor.<|im_end|>\n<|im_start|>user\nFix: teh cat<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[ChatMessage::user("Hi")], false).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn fallback_is_chatml() {
        let t = ChatTemplate::fallback_chatml();
        assert_eq!(
            t.render(&conversation(), true).unwrap(),
            "<|im_start|>system\nYou are a careful editor.<|im_end|>\n<|im_start|>user\nFix: teh cat<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let source = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}";
        let t = ChatTemplate::new(source, "", "").unwrap();
        let err = t.render(&conversation(), true).unwrap_err();
        assert!(matches!(err, EngineError::ChatTemplate(_)));
        assert!(
            err.to_string().contains("System role not supported"),
            "{err}"
        );
        assert_eq!(t.render(&[ChatMessage::user("ok")], true).unwrap(), "ok");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
        assert!(matches!(err, EngineError::ChatTemplate(_)), "{err}");
    }

    #[test]
    fn llama3_template_with_bos() {
        let t = ChatTemplate::new(LLAMA3, "<|begin_of_text|>", "<|eot_id|>").unwrap();
        let messages = [
            ChatMessage::system("Be brief."),
            ChatMessage::user("  Hello \n"),
        ];
        assert_eq!(
            t.render(&messages, true).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn trim_and_lstrip_blocks() {
        let source = "{% for message in messages %}\n    {% if message.role == 'user' %}\nU: {{ message.content }}\n    {% else %}\nO: {{ message.content }}\n    {% endif %}\n{% endfor %}\n";
        let t = ChatTemplate::new(source, "", "").unwrap();
        assert_eq!(
            t.render(&conversation(), false).unwrap(),
            "O: You are a careful editor.\nU: Fix: teh cat\n"
        );
    }

    #[test]
    fn python_methods_and_loop_controls() {
        let source = "{% for m in messages %}{% if m.content.startswith('Fix') %}{{ m.content.strip().upper() }}{% break %}{% endif %}{% endfor %}\
{% for k, v in {'a': 1}.items() %}|{{ k }}={{ v }}{% endfor %}\
{{ '|' + '  x '.strip() + '|' + 'a,b'.split(',')[1] }}";
        let t = ChatTemplate::new(source, "", "").unwrap();
        let messages = [
            ChatMessage::user("  no"),
            ChatMessage::user("Fix it  "),
            ChatMessage::user("Fix more"),
        ];
        assert_eq!(t.render(&messages, false).unwrap(), "FIX IT|a=1|x|b");
    }

    fn hostile(source: &str) -> String {
        let started = std::time::Instant::now();
        let t = ChatTemplate::new(source, "", "").expect("compiles");
        let err = t.check().expect_err("a hostile template is refused");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        err.to_string()
    }

    #[test]
    fn hostile_templates_stop_at_their_limits() {
        let loops =
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
        assert!(hostile(loops).contains("steps"), "{}", hostile(loops));
        let recursion = "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}";
        let msg = hostile(recursion);
        assert!(msg.starts_with("chat template:"), "{msg}");
        let wide = "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}";
        assert!(hostile(wide).contains("output passed"), "{}", hostile(wide));
        // an absurd indent is clamped, not allocated
        let t = ChatTemplate::new("{{ [1] | tojson(indent=100000000000) }}", "", "").unwrap();
        assert_eq!(
            t.render(&[], false).unwrap(),
            format!("[\n{}1\n]", " ".repeat(32))
        );
    }

    #[test]
    fn tojson_matches_python() {
        let source = "{{ {'name': 'café \"x\"', 'n': [1, 2.5, true, none], 'e': {}} | tojson }}\n{{ [1, {'b': 'c'}] | tojson(indent=2) }}";
        let t = ChatTemplate::new(source, "", "").unwrap();
        assert_eq!(
            t.render(&[], false).unwrap(),
            "{\"name\": \"café \\\"x\\\"\", \"n\": [1, 2.5, true, null], \"e\": {}}\n[\n  1,\n  {\n    \"b\": \"c\"\n  }\n]"
        );
    }

    #[test]
    fn strftime_now_formats_the_date() {
        let t = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", "", "").unwrap();
        let out = t.render(&[], false).unwrap();
        assert_eq!(out.len(), 10, "{out}");
        assert!(out.starts_with("20"), "{out}");
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let d = DateTime::from_unix(1_709_211_909);
        assert_eq!(
            d.format("%d %b %Y, %A %H:%M:%S %j %-d %p"),
            "29 Feb 2024, Thursday 13:05:09 060 29 PM"
        );
        assert_eq!(
            DateTime::from_unix(0).format("%F %T %a"),
            "1970-01-01 00:00:00 Thu"
        );
    }

    #[test]
    fn a_tag_whose_ends_overlap_is_a_template_error_not_a_panic() {
        for source in [
            "{%}",
            "a {%} b %}",
            "{%}{% generation %}x{% endgeneration %}",
        ] {
            let result = std::panic::catch_unwind(|| ChatTemplate::new(source, "", "").err());
            assert!(result.is_ok(), "{source:?} panicked");
        }
    }

    #[test]
    fn generation_markers_are_ignored() {
        let source = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %};{% endfor %}";
        let t = ChatTemplate::new(source, "", "").unwrap();
        let messages = [ChatMessage::user("a"), ChatMessage::assistant("b")];
        assert_eq!(t.render(&messages, false).unwrap(), "a;b;");
    }

    #[test]
    fn messages_as_values() {
        let t = ChatTemplate::new(
            "{{ messages[0].role }}:{{ messages[0].content }}:{{ messages[0].extra }}",
            "",
            "",
        )
        .unwrap();
        let v = Value::from_serialize(
            serde_json::json!([{"role": "user", "content": "hi", "extra": 3}]),
        );
        assert_eq!(t.render_value(v, false).unwrap(), "user:hi:3");
    }
}
