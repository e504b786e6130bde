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
use penwright_engine::tasks::autocomplete::{
    Alternatives, AutocompleteSession, AutocompleteSettings, SuggestionLength,
};
use penwright_engine::tasks::rewrite::{Instruction, Preset, rewrite, skeleton};
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
        seed: None,
    }
}

fn moby_dick() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/moby-dick-ch1.txt");
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn alternatives_differ_from_the_suggestion_and_repeat_with_their_seed() {
    let loaded = load();
    let tokenizer = loaded.tokenizer().unwrap();
    let settings = AutocompleteSettings::new(SuggestionLength::Sentence, false);
    let mut session = AutocompleteSession::new(&loaded.model, &settings);
    let cancel = AtomicBool::new(false);
    let prefix = "It was a dark and stormy night, and";
    let first = session
        .complete(&loaded.model, tokenizer, prefix, "", &settings, &cancel)
        .unwrap()
        .completion;
    let want = Alternatives { count: 2, seed: 11 };
    let shown = vec![first.clone()];
    let alternatives = |session: &mut AutocompleteSession| {
        session
            .alternatives(
                &loaded.model,
                tokenizer,
                prefix,
                "",
                &settings,
                want,
                &shown,
                &cancel,
            )
            .unwrap()
    };
    let found = alternatives(&mut session);
    eprintln!("suggestion {first:?}, alternatives {found:?}");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|a| a.trim() != first.trim() && !a.trim().is_empty())
    );
    assert_ne!(found[0], found[1]);
    assert_eq!(
        alternatives(&mut session),
        found,
        "the same seed gave others"
    );
    // the cached prompt is still there for the next keystroke
    let again = session
        .complete(&loaded.model, tokenizer, prefix, "", &settings, &cancel)
        .unwrap();
    assert_eq!(again.completion, first);
    assert!(again.prefilled_tokens <= 1, "{again:?}");
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

#[test]
fn rewriting_changes_the_words_but_not_the_structure_and_a_retry_differs() {
    let loaded = load();
    let cancel = AtomicBool::new(false);
    let mut cache = loaded.model.new_cache(1024);
    let mut runner = chat_runner(&loaded, &mut cache, &cancel);
    let doc = "# Notes\n\nThe report was written by Anna and the decision was made by the whole team to postpone the launch.\n\n- The cake was eaten by the children at the party.\n- See the [plan](https://example.org/plan) and `dates.csv`.\n\n```sh\nmake launch\n```\n";
    let rewrite_once = |runner: &mut ChatRunner, seed| {
        runner.seed = seed;
        let (mut blocks, mut streamed) = (0, String::new());
        let r = rewrite(
            runner,
            doc,
            &Instruction::Preset(Preset::Active),
            &mut |_| {},
            &mut |_, _, _| blocks += 1,
            &mut |t| streamed.push_str(t),
        )
        .unwrap();
        assert_eq!(blocks, r.blocks);
        assert!(!streamed.is_empty());
        r
    };
    let greedy = rewrite_once(&mut runner, None);
    eprintln!(
        "{}\n(kept {} of {})",
        greedy.text, greedy.kept, greedy.blocks
    );
    assert_eq!(greedy.blocks, 4);
    assert!(greedy.kept < greedy.blocks, "nothing was rewritten");
    assert_ne!(greedy.text, doc);
    assert_eq!(skeleton(&greedy.text), skeleton(doc), "{}", greedy.text);
    assert!(greedy.text.contains("```sh\nmake launch\n```"));
    let retry = rewrite_once(&mut runner, Some(1));
    assert_ne!(retry.text, greedy.text, "a retry gave the same rewrite");
    assert_eq!(skeleton(&retry.text), skeleton(doc));
    assert_eq!(
        rewrite_once(&mut runner, Some(1)).text,
        retry.text,
        "the same seed differs"
    );
}
