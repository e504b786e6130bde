//! The writing tasks on the real default model: autocomplete's warm cache while typing,
//! map-reduce summaries of a document several times the context, Markdown-preserving
//! translation.

mod common;

use common::default_model_path;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use penwright_engine::device::cpu_device;
use penwright_engine::loader::{LoadedModel, load_model};
use penwright_engine::model::KvCache;
use penwright_engine::tasks::autocomplete::{AutocompleteSession, AutocompleteSettings};
use penwright_engine::tasks::summarize::{SummaryLength, summarize};
use penwright_engine::tasks::translate::{structure, translate};
use penwright_engine::tasks::{ChatRunner, TaskProgress};

fn load() -> LoadedModel {
    load_model(&default_model_path(), cpu_device("test"), &mut |_| {}).unwrap()
}

fn chat_runner<'a>(
    loaded: &'a LoadedModel,
    cache: &'a mut KvCache,
    cancel: &'a AtomicBool,
) -> ChatRunner<'a> {
    ChatRunner {
        model: &loaded.model,
        tokenizer: loaded.tokenizer().unwrap(),
        template: loaded.chat_template.clone().unwrap(),
        cache,
        cancel,
    }
}

fn moby_dick() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/moby-dick-ch1.txt");
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn typing_reuses_the_cached_prefix() {
    let loaded = load();
    let tokenizer = loaded.tokenizer().unwrap();
    let settings = AutocompleteSettings {
        max_tokens: 4,
        ..Default::default()
    };
    let mut session = AutocompleteSession::new(&loaded.model, &settings);
    let doc: String = moby_dick().chars().take(1500).collect();
    let typed = " And so I went down to the harbour";
    let cancel = AtomicBool::new(false);
    let (mut reused, mut prefilled) = (0, 0);
    // one request per keystroke, as the editor sends them
    for end in (0..=typed.len()).step_by(3) {
        let prefix = format!("{doc}{}", &typed[..end]);
        let c = session
            .complete(&loaded.model, tokenizer, &prefix, "", &settings, &cancel)
            .unwrap();
        if end > 0 {
            reused += c.reused_tokens;
            prefilled += c.prefilled_tokens;
        }
    }
    let ratio = reused as f64 / (reused + prefilled) as f64;
    eprintln!(
        "typing session: reused {reused}, prefilled {prefilled} ({:.1}% reused)",
        ratio * 100.0
    );
    assert!(
        ratio >= 0.9,
        "only {:.1}% of prompt tokens reused",
        ratio * 100.0
    );
}

#[test]
fn completion_continues_a_half_typed_word_without_a_seam() {
    let loaded = load();
    let tokenizer = loaded.tokenizer().unwrap();
    let settings = AutocompleteSettings::default();
    let mut session = AutocompleteSession::new(&loaded.model, &settings);
    let cancel = AtomicBool::new(false);
    let c = session
        .complete(
            &loaded.model,
            tokenizer,
            "The capital of France is Par",
            "",
            &settings,
            &cancel,
        )
        .unwrap();
    eprintln!("mid-word: {:?}", c.completion);
    assert!(c.completion.starts_with("is"), "{:?}", c.completion);
    let c = session
        .complete(
            &loaded.model,
            tokenizer,
            "The capital of France is ",
            "",
            &settings,
            &cancel,
        )
        .unwrap();
    eprintln!("after space: {:?}", c.completion);
    assert!(
        !c.completion.starts_with(' '),
        "doubled space: {:?}",
        c.completion
    );
}

#[test]
fn long_documents_are_summarized_in_chunks_to_the_end() {
    let loaded = load();
    let cancel = AtomicBool::new(false);
    // a context of 512 positions: the chapter is several times that
    let mut cache = loaded.model.new_cache(512);
    let mut runner = chat_runner(&loaded, &mut cache, &cancel);
    let text = moby_dick();
    let mut progress: Vec<TaskProgress> = Vec::new();
    let mut streamed = String::new();
    let summary = summarize(
        &mut runner,
        &text,
        SummaryLength::Short,
        false,
        &mut |p| progress.push(p),
        &mut |t| streamed.push_str(t),
    )
    .unwrap();
    eprintln!(
        "{} chunks, {} tokens: {}",
        summary.chunks, summary.input_tokens, summary.summary
    );
    assert!(summary.input_tokens > 4 * 512, "{}", summary.input_tokens);
    assert!(summary.chunks >= 4, "{} chunks", summary.chunks);
    let map_steps = progress
        .iter()
        .filter(|p| p.stage == "summarize" && p.total == summary.chunks)
        .count();
    assert!(
        map_steps > summary.chunks,
        "progress per chunk: {progress:?}"
    );
    assert!(progress.iter().any(|p| p.stage == "combine"));
    assert_eq!(streamed.trim(), summary.summary);
    assert!(summary.summary.split_whitespace().count() >= 5);
}

#[test]
fn translation_keeps_the_markdown_structure() {
    let loaded = load();
    let cancel = AtomicBool::new(false);
    let mut cache = loaded.model.new_cache(1024);
    let mut runner = chat_runner(&loaded, &mut cache, &cancel);
    let doc = "# Travel notes\n\nThe *old* town has **narrow** streets and a [small museum](https://example.org/museum).\n\n- Morning: coffee\n  - with `milk`\n- Evening: the river\n\n| Place | Time |\n| ----- | ---- |\n| Bridge | noon |\n\n> Bring a map.\n\n```sh\ncurl https://example.org\n```\n";
    let mut blocks = 0;
    let t = translate(
        &mut runner,
        doc,
        "fr",
        Some("en"),
        &mut |_| {},
        &mut |_, _, _| blocks += 1,
    )
    .unwrap();
    eprintln!("{}", t.text);
    assert_eq!(
        structure(&t.text),
        structure(doc),
        "structure changed:\n{}",
        t.text
    );
    assert!(t.text.contains("```sh\ncurl https://example.org\n```"));
    assert!(t.text.contains("(https://example.org/museum)"));
    assert_eq!(blocks, t.blocks);
    assert_ne!(t.text, doc);
}
