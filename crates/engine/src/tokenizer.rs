//! Tokenizers: Hugging Face `tokenizer.json` files and GGUF vocabularies, with what generation
//! needs on top (special ids, stop ids, BOS handling, streaming decoding, FIM tokens).
//!
//! A GGUF vocabulary is rebuilt as a `tokenizers` pipeline that reproduces llama.cpp:
//! * `gpt2` (byte-level BPE): the BPE model from `tokenizer.ggml.tokens` / `merges`, the
//!   pre-tokenizer regexes llama.cpp's `llama-vocab.cpp` uses for `tokenizer.ggml.pre`
//!   (each applied as an isolating split, in order), then the byte-level mapping, and the
//!   byte-level decoder.
//! * `llama` (sentencepiece BPE): the equivalent of Hugging Face's GGUF Llama converter — BPE
//!   with byte fallback, `▁` for spaces with one prepended, merges derived from the scores when
//!   the file has none.
//!
//! Control tokens (type 3, and the end-of-turn / FIM tokens llama.cpp detects by their text)
//! become special added tokens: they are matched in the input only when `parse_special` is
//! true (llama.cpp's `special`), and skipped by `decode(.., skip_special = true)`. User-defined
//! tokens (type 4) are matched always and decoded always, as in llama.cpp.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{
    NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence,
};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::{EngineError, Result};

type HfTokenizer = tokenizers::Tokenizer;

/// `tokenizer.ggml.token_type` values.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The tokenizer a GGUF file describes in its `tokenizer.*` metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufTokenizerSpec {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (sentencepiece BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: "smollm", "llama-bpe", "qwen2", "gpt-2", "default", ...
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte (see [`token_type`]).
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    /// Empty for gpt2.
    pub scores: Vec<f32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
}

impl GgufTokenizerSpec {
    /// Reads the `tokenizer.*` keys of a GGUF file. Special ids that are out of range are
    /// dropped; `add_bos` defaults as in llama.cpp (true for `llama` and Llama-3 style BPE).
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Self> {
        let missing = |key: &str| EngineError::MissingMetadata {
            path: file.path.clone(),
            key: key.to_string(),
        };
        let model = file
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| missing("tokenizer.ggml.model"))?
            .to_string();
        let pre = file.get_str("tokenizer.ggml.pre").map(str::to_string);
        let tokens: Vec<String> = file
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or_else(|| missing("tokenizer.ggml.tokens"))?
            .into_iter()
            .map(str::to_string)
            .collect();
        let token_types = match file.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(_) => file
                .get_i64_array("tokenizer.ggml.token_type")
                .ok_or_else(|| missing("tokenizer.ggml.token_type"))?
                .into_iter()
                .map(|t| t as i32)
                .collect(),
        };
        let merges = match file.get("tokenizer.ggml.merges") {
            None => Vec::new(),
            Some(_) => file
                .get_str_array("tokenizer.ggml.merges")
                .ok_or_else(|| missing("tokenizer.ggml.merges"))?
                .into_iter()
                .map(str::to_string)
                .collect(),
        };
        let scores = match file.get("tokenizer.ggml.scores") {
            None => Vec::new(),
            Some(_) => file
                .get_f32_array("tokenizer.ggml.scores")
                .ok_or_else(|| missing("tokenizer.ggml.scores"))?,
        };
        let n = tokens.len() as u64;
        let id = |key: &str| file.get_u64(key).filter(|&i| i < n).map(|i| i as u32);
        let spm = model == "llama";
        let mut spec = GgufTokenizerSpec {
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            unk_id: id("tokenizer.ggml.unknown_token_id"),
            pad_id: id("tokenizer.ggml.padding_token_id"),
            eot_id: id("tokenizer.ggml.eot_token_id"),
            add_bos: file
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or_else(|| spm || default_add_bos(pre.as_deref())),
            add_eos: file
                .get_bool("tokenizer.ggml.add_eos_token")
                .unwrap_or(false),
            chat_template: file.get_str("tokenizer.chat_template").map(str::to_string),
            model,
            pre,
            tokens,
            token_types,
            merges,
            scores,
        };
        if spm {
            // llama.cpp's defaults for sentencepiece vocabularies.
            let has = |i: u32| (i as u64) < n;
            spec.bos_id = spec.bos_id.or(Some(1).filter(|&i| has(i)));
            spec.eos_id = spec.eos_id.or(Some(2).filter(|&i| has(i)));
            spec.unk_id = spec.unk_id.or(Some(0).filter(|&i| has(i)));
        }
        Ok(spec)
    }

    fn token_type(&self, id: usize) -> i32 {
        self.token_types
            .get(id)
            .copied()
            .unwrap_or(token_type::NORMAL)
    }
}

/// llama.cpp turns `add_bos` on by default for these BPE pre-tokenizers.
fn default_add_bos(pre: Option<&str>) -> bool {
    matches!(
        pre,
        Some(
            "llama3"
                | "llama-v3"
                | "llama-bpe"
                | "falcon3"
                | "falcon-h1"
                | "pixtral"
                | "midm-2.0"
                | "lfm2"
                | "tekken"
                | "chameleon"
        )
    )
}

/// Token ids of a fill-in-the-middle prompt: `prefix + before + suffix + after + middle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FimTokens {
    pub prefix: u32,
    pub suffix: u32,
    pub middle: u32,
}

/// Texts llama.cpp treats as end of generation (`special_eog_ids`), besides eos/eot.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    // FIM pad / repo / file separator tokens, which llama.cpp also adds to the EOG set.
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<reponame>",
    "<|file_sep|>",
];

/// Texts of end-of-turn tokens (llama.cpp's EOT detection), in order of preference.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// How a model family spells its three fill-in-the-middle tokens (prefix, suffix, middle:
/// the prompt is `prefix P suffix S middle`, and the model writes what goes between P and S).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FimSpelling {
    pub prefix: &'static str,
    pub suffix: &'static str,
    pub middle: &'static str,
}

const fn fim(prefix: &'static str, suffix: &'static str, middle: &'static str) -> FimSpelling {
    FimSpelling {
        prefix,
        suffix,
        middle,
    }
}

/// The spellings llama.cpp knows: StarCoder/SmolLM, Qwen2.5, Refact, DeepSeek Coder,
/// CodeLlama (and its SentencePiece variant).
pub const FIM_SPELLINGS: &[FimSpelling] = &[
    fim("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    fim("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    fim("<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    fim("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    fim("<PRE>", "<SUF>", "<MID>"),
    fim("▁<PRE>", "▁<SUF>", "▁<MID>"),
];

impl FimSpelling {
    /// The fill-in-the-middle prompt for the text before and after the cursor.
    pub fn prompt(&self, before: &str, after: &str) -> String {
        format!(
            "{}{before}{}{after}{}",
            self.prefix, self.suffix, self.middle
        )
    }

    fn contains(&self, text: &str) -> bool {
        [self.prefix, self.suffix, self.middle].contains(&text)
    }
}

/// Texts llama.cpp forces to "control" whatever the file says.
fn looks_control(text: &str) -> bool {
    EOG_TEXTS.contains(&text)
        || EOT_TEXTS.contains(&text)
        || FIM_SPELLINGS.iter().any(|f| f.contains(text))
}

/// A tokenizer with the special-token facts generation needs. Cheap to clone.
#[derive(Clone)]
pub struct Tokenizer {
    /// Matches special tokens in the input (`parse_special = true`).
    inner: Arc<HfTokenizer>,
    /// Same tokenizer with special tokens treated as plain text (`parse_special = false`).
    plain: Arc<HfTokenizer>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    eot_id: Option<u32>,
    unk_id: Option<u32>,
    pad_id: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Further end-of-generation ids (e.g. from `generation_config.json`).
    extra_stops: Vec<u32>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("eot_id", &self.eot_id)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// The longest token text accepted from a model file (real vocabularies stay under 256).
pub const MAX_TOKEN_BYTES: usize = 4096;

fn tok_err(what: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(what.to_string())
}

/// What `tokenizer_config.json` says (the parts we use).
#[derive(Default)]
struct HfConfig {
    bos_token: Option<String>,
    eos_token: Option<String>,
    unk_token: Option<String>,
    pad_token: Option<String>,
    add_bos_token: Option<bool>,
    add_eos_token: Option<bool>,
    chat_template: Option<String>,
}

/// A token in `tokenizer_config.json`: a string or `{"content": ...}`.
fn config_token(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| EngineError::Malformed {
            path: path.to_path_buf(),
            what: e.to_string(),
        })
}

fn read_hf_config(dir: &Path) -> Result<HfConfig> {
    let mut config = HfConfig::default();
    if let Some(v) = read_json(&dir.join("tokenizer_config.json"))? {
        config.bos_token = config_token(v.get("bos_token"));
        config.eos_token = config_token(v.get("eos_token"));
        config.unk_token = config_token(v.get("unk_token"));
        config.pad_token = config_token(v.get("pad_token"));
        config.add_bos_token = v.get("add_bos_token").and_then(|b| b.as_bool());
        config.add_eos_token = v.get("add_eos_token").and_then(|b| b.as_bool());
        config.chat_template = match v.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
    }
    if config.chat_template.is_none() {
        // Recent transformers save the template next to the config.
        let path = dir.join("chat_template.jinja");
        if path.is_file() {
            config.chat_template =
                Some(std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?);
        }
    }
    Ok(config)
}

/// `eos_token_id` of `generation_config.json` (an id or a list of ids).
fn generation_eos_ids(dir: &Path) -> Result<Vec<u32>> {
    let Some(v) = read_json(&dir.join("generation_config.json"))? else {
        return Ok(Vec::new());
    };
    Ok(match v.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|i| vec![i as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|x| x.as_u64().map(|i| i as u32))
            .collect(),
        _ => Vec::new(),
    })
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`, with `tokenizer_config.json`,
    /// `chat_template.jinja` and `generation_config.json` from the same folder when present.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(EngineError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        // the tokenizers crate panics on some malformed files (a `decoder` it cannot read
        // hits an `expect`, found by fuzzing): a bad file, not a crashed engine
        let inner = std::panic::catch_unwind(|| HfTokenizer::from_file(path))
            .map_err(|_| {
                tok_err(format!(
                    "{}: the tokenizer library cannot read this file (malformed?)",
                    path.display()
                ))
            })?
            .map_err(|e| tok_err(format!("{}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let config = read_hf_config(dir)?;
        let extra_stops = generation_eos_ids(dir)?;
        Ok(Self::from_hf(inner, config, extra_stops))
    }

    /// Loads `tokenizer.json` (and its sibling configs) from a Hugging Face model folder.
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    fn from_hf(inner: HfTokenizer, config: HfConfig, extra_stops: Vec<u32>) -> Self {
        let id = |t: &Option<String>| t.as_deref().and_then(|t| inner.token_to_id(t));
        let mut bos_id = id(&config.bos_token);
        let mut eos_id = id(&config.eos_token);
        // What the post-processor adds tells whether BOS / EOS are wanted.
        let (probe_bos, probe_eos) =
            match (inner.encode_fast("a", false), inner.encode_fast("a", true)) {
                (Ok(plain), Ok(with)) if with.get_ids().len() > plain.get_ids().len() => {
                    let (p, w) = (plain.get_ids(), with.get_ids());
                    let first = (w.first() != p.first()).then(|| w[0]);
                    let last = (w.last() != p.last()).then(|| w[w.len() - 1]);
                    (first, last)
                }
                _ => (None, None),
            };
        bos_id = bos_id.or(probe_bos);
        eos_id = eos_id.or(extra_stops.first().copied());
        let add_bos = config
            .add_bos_token
            .unwrap_or(probe_bos.is_some() && probe_bos == bos_id);
        let add_eos = config
            .add_eos_token
            .unwrap_or(probe_eos.is_some() && probe_eos == eos_id);
        let unk_id = id(&config.unk_token);
        let pad_id = id(&config.pad_token);
        let eot_id = EOT_TEXTS.iter().find_map(|t| inner.token_to_id(t));
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        Tokenizer {
            inner: Arc::new(inner),
            plain: Arc::new(plain),
            bos_id,
            eos_id,
            eot_id,
            unk_id,
            pad_id,
            add_bos,
            add_eos,
            extra_stops,
            chat_template: config.chat_template,
        }
    }

    /// Builds the tokenizer a GGUF file describes (see the module docs).
    pub fn from_gguf_spec(spec: &GgufTokenizerSpec) -> Result<Self> {
        if spec.tokens.is_empty() {
            return Err(tok_err("the GGUF vocabulary is empty"));
        }
        // a token far longer than any real one makes building the tokenizer quadratic
        if let Some((id, t)) = spec
            .tokens
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() > MAX_TOKEN_BYTES)
        {
            return Err(tok_err(format!(
                "token {id} is {} bytes long; Penwright reads tokens of at most {MAX_TOKEN_BYTES} bytes",
                t.len()
            )));
        }
        let n = spec.tokens.len();
        // llama.cpp names empty tokens so that every id keeps a distinct text.
        let texts: Vec<String> = spec
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.clone()
                }
            })
            .collect();
        let vocab: Vocab = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut inner = match spec.model.as_str() {
            "gpt2" => build_gpt2(spec, vocab)?,
            "llama" => build_spm(spec, &texts, vocab)?,
            other => {
                return Err(tok_err(format!(
                    "tokenizer model `{other}` is not supported (Penwright reads `gpt2` and `llama`)"
                )));
            }
        };

        // Special (control / unknown) tokens are matched only when parsing special tokens;
        // user-defined ones always.
        let mut special = Vec::new();
        let mut user = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let ty = spec.token_type(i);
            if ty == token_type::CONTROL || ty == token_type::UNKNOWN || looks_control(text) {
                special.push(AddedToken::from(text.clone(), true).normalized(false));
            } else if ty == token_type::USER_DEFINED {
                user.push(AddedToken::from(text.clone(), false).normalized(false));
            }
        }
        inner.add_special_tokens(special).map_err(tok_err)?;
        inner.add_tokens(user).map_err(tok_err)?;

        let valid = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let eot_id =
            valid(spec.eot_id).or_else(|| EOT_TEXTS.iter().find_map(|t| inner.token_to_id(t)));
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        Ok(Tokenizer {
            inner: Arc::new(inner),
            plain: Arc::new(plain),
            bos_id: valid(spec.bos_id),
            eos_id: valid(spec.eos_id),
            eot_id,
            unk_id: valid(spec.unk_id),
            pad_id: valid(spec.pad_id),
            add_bos: spec.add_bos && valid(spec.bos_id).is_some(),
            add_eos: spec.add_eos && valid(spec.eos_id).is_some(),
            extra_stops: Vec::new(),
            chat_template: spec.chat_template.clone(),
        })
    }

    /// Token ids of `text`, without BOS/EOS. With `parse_special` false, text that looks like
    /// a special token (e.g. `<|im_end|>`) is tokenized as ordinary text.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tok = if parse_special {
            &self.inner
        } else {
            &self.plain
        };
        let encoding = tok.encode_fast(text, false).map_err(tok_err)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of a rendered chat prompt: the template's pieces with special-token
    /// parsing on, the messages' text with it off (a document cannot close a turn).
    pub fn encode_prompt(&self, parts: &[crate::chat::PromptPart]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for part in parts {
            match part {
                crate::chat::PromptPart::Template(text) => ids.extend(self.encode(text, true)?),
                crate::chat::PromptPart::Text(text) => ids.extend(self.encode(text, false)?),
            }
        }
        Ok(ids)
    }

    /// [`Tokenizer::encode`], with BOS in front when the model wants one (and EOS at the end
    /// when it wants that).
    pub fn encode_with_bos(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.add_bos
            && let Some(bos) = self.bos_id
        {
            ids.push(bos);
        }
        ids.extend(self.encode(text, parse_special)?);
        if self.add_eos
            && let Some(eos) = self.eos_id
        {
            ids.push(eos);
        }
        Ok(ids)
    }

    /// The text of `ids`; with `skip_special`, special tokens are left out.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    /// A streaming decoder: feed it ids one at a time, get text that never splits a
    /// UTF-8 character.
    pub fn decode_stream(&self, skip_special: bool) -> DecodeStream {
        DecodeStream {
            tokenizer: Arc::clone(&self.inner),
            skip_special,
            ids: Vec::new(),
            prefix: String::new(),
            prefix_index: 0,
        }
    }

    /// The raw vocabulary text of a token (e.g. `Ġhello` for byte-level BPE, `<|im_end|>`).
    pub fn id_to_piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a raw vocabulary text.
    pub fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `id` is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .id_to_token(id)
            .is_some_and(|t| self.inner.get_added_vocabulary().is_special_token(&t))
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The end-of-turn token (`<|im_end|>`, `<|eot_id|>`, ...), when the vocabulary has one.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot_id
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Whether [`Tokenizer::encode_with_bos`] puts BOS in front.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// The chat template shipped with the tokenizer (GGUF `tokenizer.chat_template`,
    /// `tokenizer_config.json`'s `chat_template` or `chat_template.jinja`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Ids that end generation: eos, eot and the end-of-turn tokens llama.cpp recognises by
    /// their text (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, ...) present in the vocabulary.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut push = |id: u32| {
            if !ids.contains(&id) {
                ids.push(id);
            }
        };
        self.eos_id.into_iter().for_each(&mut push);
        self.eot_id.into_iter().for_each(&mut push);
        self.extra_stops.iter().copied().for_each(&mut push);
        for text in EOG_TEXTS {
            if let Some(id) = self.inner.token_to_id(text) {
                push(id);
            }
        }
        ids
    }

    /// Fill-in-the-middle tokens: `<fim_prefix>`/`<fim_suffix>`/`<fim_middle>` (StarCoder,
    /// SmolLM), `<|fim_prefix|>`... (Qwen2.5) and the other spellings llama.cpp knows.
    pub fn fim_tokens(&self) -> Option<FimTokens> {
        let id = |text| self.inner.token_to_id(text);
        FIM_SPELLINGS.iter().find_map(|f| {
            Some(FimTokens {
                prefix: id(f.prefix)?,
                suffix: id(f.suffix)?,
                middle: id(f.middle)?,
            })
        })
    }

    /// The underlying `tokenizers` tokenizer (special tokens parsed).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Streaming detokenizer ([`Tokenizer::decode_stream`]). Keeps the ids it needs to decode
/// the next piece in context, and returns text only once it ends on a whole character.
#[derive(Clone)]
pub struct DecodeStream {
    tokenizer: Arc<HfTokenizer>,
    skip_special: bool,
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

impl std::fmt::Debug for DecodeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeStream")
            .field("skip_special", &self.skip_special)
            .field("ids", &self.ids)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl DecodeStream {
    /// Adds one id; returns the new text, or `None` while the text so far ends inside a
    /// character (or the token adds no text, e.g. a skipped special token).
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        tokenizers::tokenizer::step_decode_stream(
            &**self.tokenizer,
            vec![id],
            self.skip_special,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        )
        .map_err(tok_err)
    }
}

/// The pre-tokenizer regexes llama.cpp (`llama-vocab.cpp`) applies for a `tokenizer.ggml.pre`,
/// in order, and whether it ignores merges (whole words found in the vocabulary win).
fn bpe_pre_regexes(pre: Option<&str>) -> (Vec<&'static str>, bool) {
    const GPT2: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const PUNCT: &str = r"[\p{P}\$\+<=>\^~\|]+";
    const PORO: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";
    match pre {
        Some(
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
            | "lfm2",
        ) => (vec![LLAMA3], true),
        Some("dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4") => (vec![LLAMA3], false),
        Some(
            "qwen2" | "qwen2.5" | "deepseek-r1-qwen" | "kormo" | "megrez" | "stablelm2" | "hunyuan"
            | "grok-2",
        ) => (vec![QWEN2], false),
        Some(
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b",
        ) => (vec![r"\p{N}", GPT2], false),
        Some(
            "gpt2" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
            | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" | "exaone4",
        ) => (vec![GPT2], false),
        Some("falcon") => (vec![PUNCT, GPT2, "[0-9][0-9][0-9]"], false),
        Some("deepseek-coder") => (
            vec![
                r"[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                "[一-龥ࠀ-一가-퟿]+",
                r"\p{N}",
            ],
            false,
        ),
        Some("deepseek-v3" | "hunyuan-dense") => (
            vec![
                r"\p{N}{1,3}",
                "[一-龥぀-ゟ゠-ヿ]+",
                r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
            ],
            false,
        ),
        Some("poro-chat" | "bloom" | "gpt3-finnish") => (vec![PORO], false),
        Some("viking") => (vec![PORO, r"\p{N}"], false),
        Some("gpt-4o" | "llama4" | "minimax-m2") => (vec![GPT4O], false),
        Some("tekken") => (vec![TEKKEN], true),
        // "default", a missing key and anything unknown: llama.cpp's default set.
        _ => (vec![PUNCT, GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], false),
    }
}

/// `first second` → (first, second), split at the first space after the first byte, as
/// llama.cpp does.
fn split_merge(merge: &str) -> Option<(&str, &str)> {
    let first = merge.chars().next()?.len_utf8();
    let pos = merge[first..].find(' ')? + first;
    Some((&merge[..pos], &merge[pos + 1..]))
}

/// Keeps the merges whose parts and result are in the vocabulary (`tokenizers` refuses others;
/// llama.cpp could never emit them as one token anyway).
fn usable_merges(merges: &[String], vocab: &Vocab) -> Vec<(String, String)> {
    merges
        .iter()
        .filter_map(|m| split_merge(m))
        .filter(|(a, b)| {
            vocab.contains_key(*a)
                && vocab.contains_key(*b)
                && vocab.contains_key(&format!("{a}{b}"))
        })
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn build_gpt2(spec: &GgufTokenizerSpec, vocab: Vocab) -> Result<HfTokenizer> {
    if spec.merges.is_empty() {
        return Err(tok_err(
            "a gpt2 (BPE) vocabulary needs `tokenizer.ggml.merges`",
        ));
    }
    let merges = usable_merges(&spec.merges, &vocab);
    let (regexes, ignore_merges) = bpe_pre_regexes(spec.pre.as_deref());
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(tok_err)?;
    let mut steps = Vec::with_capacity(regexes.len() + 1);
    for re in regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| tok_err(format!("pre-tokenizer regex {re:?}: {e}")))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, true, false,
    )));
    let mut tok = HfTokenizer::new(model);
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreSequence::new(steps))));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    Ok(tok)
}

/// Merges of a sentencepiece vocabulary, derived from the scores the way Hugging Face's GGUF
/// converter does: every split of a token into two vocabulary tokens, ranked by the token's
/// score (higher first; ties keep vocabulary order, then the higher-scored parts first).
fn spm_merges(texts: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        index.insert(t.as_str(), i);
    }
    let score = |t: &str| {
        index
            .get(t)
            .and_then(|&i| scores.get(i))
            .copied()
            .unwrap_or(0.0)
    };
    let desc = |a: f32, b: f32| b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal);
    let mut seen = HashSet::with_capacity(texts.len());
    let mut merges: Vec<(&str, &str, f32)> = Vec::new();
    for piece in texts {
        if !seen.insert(piece.as_str()) {
            continue;
        }
        let piece_score = score(piece);
        let mut local: Vec<(&str, &str, f32)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(l, r)| index.contains_key(l) && index.contains_key(r))
            .map(|(l, r)| (l, r, piece_score))
            .collect();
        local.sort_by(|a, b| {
            desc(score(a.0), score(b.0)).then_with(|| desc(score(a.1), score(b.1)))
        });
        merges.extend(local);
    }
    merges.sort_by(|a, b| desc(a.2, b.2));
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

fn build_spm(spec: &GgufTokenizerSpec, texts: &[String], vocab: Vocab) -> Result<HfTokenizer> {
    let merges = if spec.merges.is_empty() {
        spm_merges(texts, &spec.scores)
    } else {
        usable_merges(&spec.merges, &vocab)
    };
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = spec.unk_id.and_then(|i| texts.get(i as usize)) {
        builder = builder.unk_token(unk.clone());
    }
    let model = builder.build().map_err(tok_err)?;
    let mut tok = HfTokenizer::new(model);
    let normalizer = NormalizerSequence::new(vec![
        NormalizerWrapper::Prepend(Prepend::new("▁".into())),
        NormalizerWrapper::Replace(Replace::new(" ", "▁").map_err(tok_err)?),
    ]);
    tok.with_normalizer(Some(NormalizerWrapper::Sequence(normalizer)))
        .map_err(tok_err)?;
    let decoder = DecoderSequence::new(vec![
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(tok_err)?),
        DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
    ]);
    tok.with_decoder(Some(DecoderWrapper::Sequence(decoder)));
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPT-2's byte → character map (printable bytes map to themselves).
    fn byte_char(b: u8) -> char {
        let printable =
            |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        if printable(b) {
            return b as char;
        }
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + n).unwrap()
    }

    /// A tiny byte-level BPE vocabulary: 3 control tokens, the 256 bytes, a few merges.
    fn tiny_gpt2_spec() -> GgufTokenizerSpec {
        let mut tokens: Vec<String> = vec![
            "<|endoftext|>".into(),
            "<|im_start|>".into(),
            "<|im_end|>".into(),
        ];
        let mut token_types = vec![token_type::CONTROL; 3];
        for b in 0..=255u8 {
            tokens.push(byte_char(b).to_string());
            token_types.push(token_type::NORMAL);
        }
        let merges = [
            "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor ld", "l d",
        ];
        for m in merges {
            let (a, b) = split_merge(m).unwrap();
            let t = format!("{a}{b}");
            if !tokens.contains(&t) {
                tokens.push(t);
                token_types.push(token_type::NORMAL);
            }
        }
        tokens.push("<tool>".into());
        token_types.push(token_type::USER_DEFINED);
        GgufTokenizerSpec {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            tokens,
            token_types,
            merges: merges.iter().map(|m| m.to_string()).collect(),
            scores: Vec::new(),
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: None,
            pad_id: Some(2),
            eot_id: None,
            add_bos: false,
            add_eos: false,
            chat_template: Some("{{ messages }}".into()),
        }
    }

    fn tiny() -> Tokenizer {
        Tokenizer::from_gguf_spec(&tiny_gpt2_spec()).unwrap()
    }

    #[test]
    fn bpe_merges_and_roundtrip() {
        let t = tiny();
        let hello = t.token_to_id("hello").unwrap();
        let world = t.token_to_id("Ġworld").unwrap();
        assert_eq!(t.encode("hello world", false).unwrap(), vec![hello, world]);
        assert_eq!(t.decode(&[hello, world], false).unwrap(), "hello world");
        assert_eq!(t.id_to_piece(world).as_deref(), Some("Ġworld"));
        assert_eq!(t.vocab_size(), tiny_gpt2_spec().tokens.len());
        assert!(t.encode("", false).unwrap().is_empty());
        // Digits are split one by one (smollm pre-tokenizer).
        let one = t.token_to_id("1").unwrap();
        let two = t.token_to_id("2").unwrap();
        assert_eq!(t.encode("12", false).unwrap(), vec![one, two]);
    }

    #[test]
    fn special_tokens_are_text_unless_parsed() {
        let t = tiny();
        let text = "<|im_start|>user\nhello<|im_end|>";
        let plain = t.encode(text, false).unwrap();
        assert!(!plain.contains(&1) && !plain.contains(&2), "{plain:?}");
        assert_eq!(t.decode(&plain, false).unwrap(), text);
        let parsed = t.encode(text, true).unwrap();
        assert_eq!(parsed.first(), Some(&1));
        assert_eq!(parsed.last(), Some(&2));
        assert_eq!(t.decode(&parsed, false).unwrap(), text);
        assert_eq!(t.decode(&parsed, true).unwrap(), "user\nhello");
        assert!(t.is_special(2) && !t.is_special(t.token_to_id("hello").unwrap()));
        // User-defined tokens are always matched and never skipped.
        let tool = t.token_to_id("<tool>").unwrap();
        assert_eq!(
            t.encode("a<tool>", false).unwrap(),
            vec![t.token_to_id("a").unwrap(), tool]
        );
        assert_eq!(t.decode(&[tool], true).unwrap(), "<tool>");
    }

    #[test]
    fn bos_and_stop_ids() {
        let mut spec = tiny_gpt2_spec();
        let t = Tokenizer::from_gguf_spec(&spec).unwrap();
        assert_eq!(
            t.encode_with_bos("hello", false).unwrap(),
            t.encode("hello", false).unwrap()
        );
        assert_eq!((t.bos_id(), t.eos_id()), (Some(1), Some(2)));
        // eos, the detected end of turn (<|im_end|>) and <|endoftext|>.
        let stops = t.stop_ids();
        assert_eq!(stops[0], 2);
        assert!(stops.contains(&0) && !stops.contains(&1), "{stops:?}");
        assert_eq!(t.eot_id(), Some(2));
        assert_eq!(t.chat_template(), Some("{{ messages }}"));
        spec.add_bos = true;
        let t = Tokenizer::from_gguf_spec(&spec).unwrap();
        let ids = t.encode_with_bos("hello", false).unwrap();
        assert_eq!(ids, vec![1, t.token_to_id("hello").unwrap()]);
    }

    #[test]
    fn decode_stream_never_splits_characters() {
        let t = tiny();
        let text = "hello 😀 world 你好, 👨‍👩‍👧 ok";
        let ids = t.encode(text, false).unwrap();
        // Multi-byte characters are several byte tokens here.
        assert!(ids.len() > text.chars().count());
        let mut stream = t.decode_stream(false);
        let mut out = String::new();
        let mut nones = 0;
        for &id in &ids {
            match stream.step(id).unwrap() {
                Some(piece) => {
                    assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
                    out.push_str(&piece);
                }
                None => nones += 1,
            }
        }
        assert!(nones > 0);
        assert_eq!(out, t.decode(&ids, false).unwrap());
        assert_eq!(out, text);
    }

    #[test]
    fn decode_stream_skips_special() {
        let t = tiny();
        let mut ids = t.encode("<|im_start|>hello<|im_end|>", true).unwrap();
        ids.extend(t.encode(" world", false).unwrap());
        let mut stream = t.decode_stream(true);
        let mut out = String::new();
        for &id in &ids {
            if let Some(p) = stream.step(id).unwrap() {
                out.push_str(&p);
            }
        }
        assert_eq!(out, "hello world");
    }

    #[test]
    fn a_token_longer_than_any_real_one_is_refused() {
        let mut spec = tiny_gpt2_spec();
        spec.tokens.push("x".repeat(600_000));
        spec.token_types.push(token_type::NORMAL);
        let started = std::time::Instant::now();
        let err = Tokenizer::from_gguf_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("600000 bytes long"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn fim_tokens_found_by_text() {
        let t = tiny();
        assert_eq!(t.fim_tokens(), None);
        let mut spec = tiny_gpt2_spec();
        for name in ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"] {
            spec.tokens.push(name.into());
            spec.token_types.push(token_type::CONTROL);
        }
        let n = spec.tokens.len() as u32;
        let t = Tokenizer::from_gguf_spec(&spec).unwrap();
        assert_eq!(
            t.fim_tokens(),
            Some(FimTokens {
                prefix: n - 3,
                suffix: n - 2,
                middle: n - 1
            })
        );
    }

    #[test]
    fn pre_tokenizer_regexes_compile() {
        for pre in [
            None,
            Some("default"),
            Some("llama-bpe"),
            Some("qwen2"),
            Some("smollm"),
            Some("gpt-2"),
            Some("falcon"),
            Some("deepseek-coder"),
            Some("deepseek-v3"),
            Some("poro-chat"),
            Some("viking"),
            Some("gpt-4o"),
            Some("tekken"),
            Some("dbrx"),
        ] {
            let mut spec = tiny_gpt2_spec();
            spec.pre = pre.map(str::to_string);
            let t = Tokenizer::from_gguf_spec(&spec).unwrap_or_else(|e| panic!("{pre:?}: {e}"));
            let text = "Hello world 123, it's 4 you!\n\n  ok";
            let ids = t.encode(text, false).unwrap();
            assert_eq!(t.decode(&ids, false).unwrap(), text, "{pre:?}");
        }
    }

    #[test]
    fn llama3_splits_numbers_by_three() {
        let mut spec = tiny_gpt2_spec();
        spec.pre = Some("llama-bpe".into());
        let t = Tokenizer::from_gguf_spec(&spec).unwrap();
        let pieces: Vec<String> = t
            .encode("12345", false)
            .unwrap()
            .iter()
            .map(|&i| t.id_to_piece(i).unwrap())
            .collect();
        // Single bytes only in this vocabulary, so pieces are characters; the split is
        // checked through the pre-tokenizer directly.
        assert_eq!(pieces.concat(), "12345");
        use tokenizers::PreTokenizer;
        let mut pre = tokenizers::PreTokenizedString::from("12345 abc");
        t.inner()
            .get_pre_tokenizer()
            .unwrap()
            .pre_tokenize(&mut pre)
            .unwrap();
        let splits: Vec<String> = pre
            .get_splits(
                tokenizers::OffsetReferential::Original,
                tokenizers::OffsetType::Byte,
            )
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .collect();
        assert_eq!(splits, vec!["123", "45", "Ġabc"]);
    }

    #[test]
    fn unknown_model_is_an_error() {
        let mut spec = tiny_gpt2_spec();
        spec.model = "bert".into();
        let err = Tokenizer::from_gguf_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("bert"), "{err}");
        let mut spec = tiny_gpt2_spec();
        spec.merges.clear();
        assert!(Tokenizer::from_gguf_spec(&spec).is_err());
    }

    /// A tiny sentencepiece vocabulary: `<unk> <s> </s>`, the byte tokens, a few pieces.
    fn tiny_spm_spec() -> GgufTokenizerSpec {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut token_types = vec![
            token_type::UNKNOWN,
            token_type::CONTROL,
            token_type::CONTROL,
        ];
        let mut scores = vec![0.0, 0.0, 0.0];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            token_types.push(token_type::BYTE);
            scores.push(0.0);
        }
        let pieces = [
            ("▁", -1.0),
            ("h", -2.0),
            ("e", -2.0),
            ("l", -2.0),
            ("o", -2.0),
            ("w", -2.0),
            ("r", -2.0),
            ("d", -2.0),
            ("ll", -3.0),
            ("▁h", -4.0),
            ("▁w", -4.0),
            ("he", -5.0),
            ("llo", -6.0),
            ("▁he", -7.0),
            ("▁hello", -8.0),
            ("or", -9.0),
            ("ld", -9.5),
            ("▁wor", -10.0),
            ("▁world", -11.0),
        ];
        for (p, s) in pieces {
            tokens.push(p.into());
            token_types.push(token_type::NORMAL);
            scores.push(s);
        }
        GgufTokenizerSpec {
            model: "llama".into(),
            pre: None,
            tokens,
            token_types,
            merges: Vec::new(),
            scores,
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            pad_id: None,
            eot_id: None,
            add_bos: true,
            add_eos: false,
            chat_template: None,
        }
    }

    #[test]
    fn sentencepiece_vocabulary() {
        let t = Tokenizer::from_gguf_spec(&tiny_spm_spec()).unwrap();
        let hello = t.token_to_id("▁hello").unwrap();
        let world = t.token_to_id("▁world").unwrap();
        assert_eq!(t.encode("hello world", false).unwrap(), vec![hello, world]);
        assert_eq!(
            t.encode_with_bos("hello world", false).unwrap(),
            vec![1, hello, world]
        );
        assert_eq!(t.decode(&[1, hello, world], true).unwrap(), "hello world");
        // Byte fallback: é is two byte tokens, decoded back to one character.
        let ids = t.encode("é", false).unwrap();
        let bytes: Vec<u32> = [0xC3u32, 0xA9].iter().map(|b| b + 3).collect();
        assert_eq!(ids, [vec![t.token_to_id("▁").unwrap()], bytes].concat());
        assert_eq!(t.decode(&ids, false).unwrap(), "é");
        // Special tokens as text or parsed.
        assert_ne!(t.encode("</s>", false).unwrap(), vec![2]);
        assert_eq!(t.encode("</s>", true).unwrap(), vec![2]);
        // Streaming keeps the spaces between words and the characters whole.
        let text = "hello 世界 world 😀";
        let ids = t.encode(text, false).unwrap();
        let mut stream = t.decode_stream(false);
        let mut out = String::new();
        for &id in &ids {
            if let Some(p) = stream.step(id).unwrap() {
                out.push_str(&p);
            }
        }
        assert_eq!(out, text);
        assert_eq!(out, t.decode(&ids, false).unwrap());
        assert_eq!(t.stop_ids(), vec![2]);
    }

    #[test]
    fn spm_merges_follow_scores() {
        let spec = tiny_spm_spec();
        let merges = spm_merges(&spec.tokens, &spec.scores);
        let pos = |a: &str, b: &str| merges.iter().position(|m| m.0 == a && m.1 == b).unwrap();
        assert!(pos("l", "l") < pos("h", "e"));
        assert!(pos("▁", "h") < pos("▁h", "e"));
        assert!(pos("▁he", "llo") > pos("▁", "h"));
    }

    /// Found by the tokenizer_json fuzz target: the tokenizers crate panics on a decoder
    /// with an unknown key instead of returning its error.
    #[test]
    fn a_tokenizer_json_that_panics_the_library_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer.json"),
            r#"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
                "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true,
                "trim_o       ffsets": true, "use_regex": true},
                "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#,
        )
        .unwrap();
        let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn hf_files_with_config() {
        let dir = tempfile::tempdir().unwrap();
        let t = tiny();
        t.inner()
            .save(dir.path().join("tokenizer.json"), false)
            .unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<|im_start|>"}, "eos_token": "<|im_end|>",
                "add_bos_token": true, "chat_template": "{{ bos_token }}"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": [2, 0]}"#,
        )
        .unwrap();
        let h = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!((h.bos_id(), h.eos_id()), (Some(1), Some(2)));
        assert!(h.add_bos());
        assert_eq!(h.chat_template(), Some("{{ bos_token }}"));
        let text = "<|im_start|>hello world 12";
        assert_eq!(
            h.encode(text, false).unwrap(),
            t.encode(text, false).unwrap()
        );
        assert_eq!(h.encode(text, true).unwrap(), t.encode(text, true).unwrap());
        assert_eq!(h.encode_with_bos("hello", false).unwrap()[0], 1);
        assert!(h.stop_ids().starts_with(&[2, 0]));
        assert!(Tokenizer::from_hf_dir(dir.path().join("missing")).is_err());
    }
}
